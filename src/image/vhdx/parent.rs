//! The parent of a differencing VHDX ([MS-VHDX] 2.6.2.6): the parent locator item decoded
//! (every key and value offset and length checked against the item) and the parent found by its
//! paths, opened and checked (format, DataWriteGuid, logical sector size).

use std::path::Path;

use serde::Serialize;
use zerocopy::byteorder::little_endian::{U16, U32};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use super::super::{open_parent, parent_candidates, Format, Image, OpenOptions};
use super::Metadata;
use crate::error::{Error, Result};
use crate::gpt::guid::Guid;

/// The VHDX parent locator type (2.6.2.6.3): the parent is a VHDX file.
pub const LOCATOR_TYPE_VHDX: Guid = Guid::from_u128(0xb04aefb7_d19e_4a81_b789_25b8e9445913);
/// Keys of the VHDX parent locator (2.6.2.6.3): the parent's DataWriteGuid, "{...}".
pub const KEY_PARENT_LINKAGE: &str = "parent_linkage";
pub const KEY_PARENT_LINKAGE2: &str = "parent_linkage2";
/// The keys that locate the parent, in the order the spec says to try them.
pub const PATH_KEYS: [&str; 3] = ["relative_path", "volume_path", "absolute_win32_path"];
/// Bytes of UTF-16 text decoded from one parent locator, at most: an item holds at most 1 MiB,
/// so a locator whose entries point at the same bytes again and again cannot make the reader
/// decode more than that.
const MAX_LOCATOR_TEXT_BYTES: u64 = 1 << 20;

/// 2.6.2.6.1 Parent locator header (20 bytes), followed by `key_value_count` entries.
#[derive(Clone, Copy, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct RawParentLocatorHeader {
    pub locator_type: [u8; 16], // 0x00 LOCATOR_TYPE_VHDX for a VHDX parent
    pub reserved: U16,          // 0x10 zero
    pub key_value_count: U16,   // 0x12
}
const _: () = assert!(size_of::<RawParentLocatorHeader>() == 20);

/// 2.6.2.6.2 Parent locator entry (12 bytes): where a key and its value are in the item, as
/// UTF-16 LE without a trailing NUL.
#[derive(Clone, Copy, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct RawParentLocatorEntry {
    pub key_offset: U32,   // 0x0 from the start of the item, > 0
    pub value_offset: U32, // 0x4 from the start of the item, > 0
    pub key_length: U16,   // 0x8 bytes, > 0
    pub value_length: U16, // 0xa bytes, > 0
}
const _: () = assert!(size_of::<RawParentLocatorEntry>() == 12);

/// One key-value pair of a parent locator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LocatorEntry {
    pub key: String,
    pub value: String,
}

/// A parent locator (2.6.2.6): its type and its key-value pairs, in stored order. The paths
/// are the host's as the child's creator saw them: `info` shows them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ParentLocator {
    pub locator_type: Guid,
    pub entries: Vec<LocatorEntry>,
}

impl ParentLocator {
    /// The value of `key` (keys are unique, case-sensitive).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.entries
            .iter()
            .find(|e| e.key == key)
            .map(|e| e.value.as_str())
    }
}

/// Decode a parent locator item (2.6.2.6): the header, the entries, and each key and value
/// (inside the item, non-empty, an even number of bytes, valid UTF-16 without NUL, keys
/// unique). Any type is decoded; opening follows only [`LOCATOR_TYPE_VHDX`].
pub fn decode_parent_locator(item: &[u8]) -> Result<ParentLocator> {
    let len = item.len();
    let (head, rest) = RawParentLocatorHeader::read_from_prefix(item).map_err(|_| {
        Error::corrupt(format!(
            "VHDX parent locator: {len} bytes, smaller than its 20-byte header"
        ))
    })?;
    let count = head.key_value_count.get();
    let (raw_entries, _) =
        <[RawParentLocatorEntry]>::ref_from_prefix_with_elems(rest, usize::from(count)).map_err(
            |_| {
                Error::corrupt(format!(
                    "VHDX parent locator: {count} key-value entries of 12 bytes do not fit in its {len} bytes"
                ))
            },
        )?;
    let mut text_bytes = 0u64;
    let mut entries: Vec<LocatorEntry> = Vec::with_capacity(usize::from(count));
    for (i, e) in raw_entries.iter().enumerate() {
        for n in [e.key_length.get(), e.value_length.get()] {
            text_bytes = text_bytes.saturating_add(u64::from(n));
        }
        if text_bytes > MAX_LOCATOR_TEXT_BYTES {
            return Err(Error::corrupt(format!(
                "VHDX parent locator: its keys and values add up to more than {MAX_LOCATOR_TEXT_BYTES} bytes, more than the item can hold"
            )));
        }
        let key = locator_text(item, i, "key", e.key_offset.get(), e.key_length.get())?;
        let value = locator_text(item, i, "value", e.value_offset.get(), e.value_length.get())?;
        if entries.iter().any(|x| x.key == key) {
            return Err(Error::corrupt(format!(
                "VHDX parent locator: key {key:?} appears twice (entry {i})"
            )));
        }
        entries.push(LocatorEntry { key, value });
    }
    Ok(ParentLocator {
        locator_type: Guid(head.locator_type),
        entries,
    })
}

/// The key or value of entry `i` of a parent locator: `len` bytes at `offset` of the item.
fn locator_text(item: &[u8], i: usize, what: &str, offset: u32, len: u16) -> Result<String> {
    let bad = |why: &str| {
        Error::corrupt(format!(
            "VHDX parent locator entry {i}: {what} of {len} bytes at 0x{offset:x} {why} (item of 0x{:x} bytes)",
            item.len()
        ))
    };
    if offset == 0 || len == 0 {
        return Err(bad("has a zero offset or length"));
    }
    if !len.is_multiple_of(2) {
        return Err(bad("is not whole UTF-16 units"));
    }
    let start = usize::try_from(offset).map_err(|_| bad("lies past the item"))?;
    let bytes = start
        .checked_add(usize::from(len))
        .and_then(|end| item.get(start..end))
        .ok_or_else(|| bad("lies past the item"))?;
    let units = bytes
        .as_chunks::<2>()
        .0
        .iter()
        .map(|c| u16::from_le_bytes(*c));
    let text: String = char::decode_utf16(units)
        .collect::<std::result::Result<String, _>>()
        .map_err(|_| bad("is not valid UTF-16"))?;
    if text.contains('\0') {
        return Err(bad("holds a NUL character"));
    }
    Ok(text)
}

/// Find, open and check the parent of a differencing VHDX (2.6.2.6.3): the locator must be of
/// the VHDX type; its paths are tried in the spec's order (each also by file name next to the
/// child and in `--parent-dir`, as for a differencing VHD); the parent must be a VHDX whose
/// DataWriteGuid is the child's linkage and whose logical sector size is the child's. Returns
/// the parent and the path it was named by.
pub(super) fn open_vhdx_parent(
    path: Option<&Path>,
    opts: &OpenOptions,
    depth: usize,
    meta: &Metadata,
) -> Result<(Image, String)> {
    let shown = super::super::display(path);
    let Some(loc) = meta.parent_locator.as_ref() else {
        return Err(Error::corrupt(format!(
            "{shown}: differencing VHDX without a parent locator"
        )));
    };
    if loc.locator_type != LOCATOR_TYPE_VHDX {
        return Err(Error::unsupported(format!(
            "{shown}: parent locator type {} is not the VHDX type {LOCATOR_TYPE_VHDX}: its parent is not a VHDX file, which vhdtool does not follow",
            loc.locator_type
        )));
    }
    let linkage = |key: &str| -> Result<Option<Guid>> {
        loc.get(key)
            .map(|v| {
                v.parse::<Guid>().map_err(|_| {
                    Error::corrupt(format!("{shown}: parent locator {key} {v:?} is not a GUID"))
                })
            })
            .transpose()
    };
    let Some(linkage1) = linkage(KEY_PARENT_LINKAGE)? else {
        return Err(Error::corrupt(format!(
            "{shown}: the parent locator has no {KEY_PARENT_LINKAGE} (the parent's DataWriteGuid), so no parent can be checked"
        )));
    };
    let linkage2 = linkage(KEY_PARENT_LINKAGE2)?;
    let stored: Vec<String> = PATH_KEYS
        .iter()
        .filter_map(|k| loc.get(k))
        .map(str::to_string)
        .collect();
    let Some(name) = stored.first().cloned() else {
        return Err(Error::corrupt(format!(
            "{shown}: the parent locator has none of {} to find the parent by",
            PATH_KEYS.join(", ")
        )));
    };
    let candidates = parent_candidates(path, &stored, opts);
    let parent = open_parent(path, &candidates, &name, opts, depth, false)?;
    let shown_parent = super::super::display(parent.info().path.as_deref());
    if parent.format() != Format::Vhdx {
        return Err(Error::invalid(format!(
            "{shown}: its parent {shown_parent} is a {} image, but a VHDX parent locator names a VHDX parent",
            parent.format().name()
        )));
    }
    let pid = parent.info().data_write_guid;
    if pid != Some(linkage1) && (linkage2.is_none() || pid != linkage2) {
        let also = linkage2
            .map(|g| format!(" ({KEY_PARENT_LINKAGE2} {g})"))
            .unwrap_or_default();
        return Err(Error::invalid(format!(
            "{shown}: its parent {shown_parent} has DataWriteGuid {}, but the child's {KEY_PARENT_LINKAGE} is {linkage1}{also}: not the disk the child was made from, or it was written to after the child was made (its data changed under the child)",
            pid.map_or_else(|| "(none)".to_string(), |g| g.to_string()),
        )));
    }
    let parent_lss = parent.info().logical_sector_bytes;
    if parent_lss != Some(meta.logical_sector_bytes) {
        return Err(Error::invalid(format!(
            "{shown}: logical sector size {}, but its parent {shown_parent} has {}: a differencing VHDX and its parent must agree (MS-VHDX 2.6.2.4)",
            meta.logical_sector_bytes,
            parent_lss.unwrap_or(0)
        )));
    }
    Ok((parent, name))
}

#[cfg(test)]
#[allow(
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::arithmetic_side_effects,
    clippy::as_conversions
)] // tests: a panic is a failed test
mod tests {
    use super::*;

    fn utf16(s: &str) -> Vec<u8> {
        s.encode_utf16().flat_map(u16::to_le_bytes).collect()
    }

    /// A parent locator item: the header (VHDX type), the entries, then the strings.
    fn locator(pairs: &[(&str, &str)]) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&LOCATOR_TYPE_VHDX.0); // 0x00 locator type
        v.extend_from_slice(&0u16.to_le_bytes()); // 0x10 reserved
        v.extend_from_slice(&(pairs.len() as u16).to_le_bytes()); // 0x12 count
        let mut text = Vec::new();
        let base = 20 + 12 * pairs.len();
        for (k, val) in pairs {
            let (k, val) = (utf16(k), utf16(val));
            let ko = base + text.len();
            text.extend_from_slice(&k);
            let vo = base + text.len();
            text.extend_from_slice(&val);
            v.extend_from_slice(&(ko as u32).to_le_bytes()); // key offset
            v.extend_from_slice(&(vo as u32).to_le_bytes()); // value offset
            v.extend_from_slice(&(k.len() as u16).to_le_bytes()); // key length
            v.extend_from_slice(&(val.len() as u16).to_le_bytes()); // value length
        }
        v.extend_from_slice(&text);
        v
    }

    #[test]
    fn parent_locator_decodes() {
        let item = locator(&[
            ("parent_linkage", "{83ed0ec3-24c8-49a6-a959-5e4bf1288bfb}"),
            ("relative_path", "..\\base\\pärent.vhdx"),
            ("absolute_win32_path", "\\\\?\\D:\\VMs\\base\\pärent.vhdx"),
        ]);
        let l = decode_parent_locator(&item).unwrap();
        assert_eq!(l.locator_type, LOCATOR_TYPE_VHDX);
        assert_eq!(l.entries.len(), 3);
        assert_eq!(l.get("relative_path"), Some("..\\base\\pärent.vhdx"));
        assert_eq!(
            l.get(KEY_PARENT_LINKAGE).unwrap().parse::<Guid>().unwrap(),
            Guid::from_u128(0x83ed0ec3_24c8_49a6_a959_5e4bf1288bfb)
        );
        assert_eq!(l.get("volume_path"), None);
        // no entries at all decodes (open refuses it for want of parent_linkage)
        assert!(decode_parent_locator(&locator(&[]))
            .unwrap()
            .entries
            .is_empty());
    }

    #[test]
    fn hostile_parent_locators_are_refused() {
        let good = locator(&[("parent_linkage", "{x}"), ("relative_path", "a.vhdx")]);
        let msg = |v: &[u8]| decode_parent_locator(v).unwrap_err().to_string();
        // shorter than the header
        assert!(msg(&good[..19]).contains("20-byte header"));
        // a huge count: the table does not fit in the item
        let mut v = good.clone();
        v[0x12..0x14].copy_from_slice(&u16::MAX.to_le_bytes());
        assert!(msg(&v).contains("65535 key-value entries"), "{}", msg(&v));
        // entry 1's value offset past the item
        let mut v = good.clone();
        v[20 + 12 + 4..20 + 12 + 8].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(msg(&v).contains("entry 1: value") && msg(&v).contains("past the item"));
        // a value running one unit past the end
        let mut v = good.clone();
        let vl = u16::from_le_bytes([v[20 + 12 + 10], v[20 + 12 + 11]]) + 2;
        v[20 + 12 + 10..20 + 12 + 12].copy_from_slice(&vl.to_le_bytes());
        assert!(msg(&v).contains("past the item"), "{}", msg(&v));
        // an odd length
        let mut v = good.clone();
        v[20 + 8..20 + 10].copy_from_slice(&3u16.to_le_bytes());
        assert!(msg(&v).contains("whole UTF-16"), "{}", msg(&v));
        // zero offset, zero length
        let mut v = good.clone();
        v[20..24].fill(0);
        assert!(msg(&v).contains("zero offset"));
        let mut v = good.clone();
        v[20 + 10..20 + 12].fill(0);
        assert!(msg(&v).contains("zero offset or length"));
        // a NUL inside, an unpaired surrogate
        let nul = locator(&[("parent_linkage", "a\0b")]);
        assert!(msg(&nul).contains("NUL"));
        let mut v = locator(&[("parent_linkage", "ab")]);
        let at = v.len() - 4;
        v[at..at + 2].copy_from_slice(&0xd800u16.to_le_bytes());
        assert!(msg(&v).contains("UTF-16"));
        // a key twice
        let twice = locator(&[("relative_path", "a"), ("relative_path", "b")]);
        assert!(msg(&twice).contains("twice"));
        // 100 keys whose values all point at one 60000-byte string: bounded by the text limit
        let count = 100usize;
        let long = utf16(&"x".repeat(30_000));
        let mut v = good[..20].to_vec();
        v[0x12..0x14].copy_from_slice(&(count as u16).to_le_bytes());
        let value_at = 20 + 12 * count;
        let keys_at = value_at + long.len();
        for i in 0..count {
            v.extend_from_slice(&((keys_at + 8 * i) as u32).to_le_bytes()); // key offset
            v.extend_from_slice(&(value_at as u32).to_le_bytes()); // value offset
            v.extend_from_slice(&8u16.to_le_bytes()); // key length
            v.extend_from_slice(&(long.len() as u16).to_le_bytes()); // value length
        }
        v.extend_from_slice(&long);
        for i in 0..count {
            v.extend_from_slice(&utf16(&format!("k{i:03}")));
        }
        assert!(msg(&v).contains("add up to more than"), "{}", msg(&v));
    }
}
