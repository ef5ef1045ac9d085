//! Directory indexes (`$I30`): the `$INDEX_ROOT` node and `INDX` blocks of
//! `$INDEX_ALLOCATION`, whose entries carry a `$FILE_NAME` key. Layouts from ntfs-3g `layout.h`
//! (`INDEX_ROOT`, `INDEX_BLOCK`, `INDEX_HEADER`, `INDEX_ENTRY`, `FILE_NAME_ATTR`).

use super::record::{le32, le64, utf16_units, MFT_REF_MASK};
use crate::error::{Error, Result};
use crate::fs::ntfs::apply_fixup;

/// Index entry flags (ntfs-3g `INDEX_ENTRY_FLAGS`).
const INDEX_ENTRY_NODE: u16 = 0x01;
const INDEX_ENTRY_END: u16 = 0x02;
/// Smallest index entry: the 0x10-byte header.
const INDEX_ENTRY_HEADER_BYTES: usize = 0x10;
/// Offset of the index header in an `INDX` block and in the `$INDEX_ROOT` value.
pub(super) const BLOCK_HEADER_OFFSET: usize = 0x18;
pub(super) const ROOT_HEADER_OFFSET: usize = 0x10;
/// `$FILE_NAME` key: file attributes at 0x38, name length at 0x40, namespace at 0x41, name
/// from 0x42.
const FN_FILE_ATTRIBUTES: usize = 0x38;
const FN_NAME_LENGTH: usize = 0x40;
const FN_NAMESPACE: usize = 0x41;
const FN_NAME: usize = 0x42;
/// `$FILE_NAME` namespaces (ntfs-3g `FILE_NAME_TYPE_FLAGS`).
pub(super) const NAMESPACE_DOS: u8 = 2;

/// One entry of an index node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Entry {
    /// `None` for the node's end entry (no key).
    pub key: Option<Key>,
    /// VCN of the child node holding the keys sorted before this one.
    pub child: Option<u64>,
}

/// The `$FILE_NAME` key of an index entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Key {
    /// MFT record number (sequence number masked off).
    pub record: u64,
    /// The record's sequence number when the entry was made (0: not checked).
    pub sequence: u16,
    pub name: Vec<u16>,
    pub namespace: u8,
    /// `FILE_ATTR_*` as cached in the index (directory bit 0x10000000, reparse 0x400).
    pub file_attributes: u32,
}

/// The entries of the node whose index header is at `hdr` in `buf`.
pub(super) fn node_entries(buf: &[u8], hdr: usize) -> Result<Vec<Entry>> {
    let bad = |what: String| Error::corrupt(format!("NTFS index node: {what}"));
    let first = le32(buf, hdr).ok_or_else(|| bad("header truncated".into()))?;
    let length = le32(buf, hdr.saturating_add(4)).ok_or_else(|| bad("header truncated".into()))?;
    let to_usize = |v: u32| usize::try_from(v).unwrap_or(usize::MAX);
    let start = hdr.saturating_add(to_usize(first));
    let end = hdr.saturating_add(to_usize(length));
    if end > buf.len() || start > end {
        return Err(bad(format!(
            "entries 0x{start:x}..0x{end:x} outside the node (0x{:x} bytes)",
            buf.len()
        )));
    }
    let mut out = Vec::new();
    let mut off = start;
    // Each entry takes >= 0x10 bytes: the walk ends inside the node.
    while off < end {
        let flags =
            u16::try_from(le32(buf, off.saturating_add(0x0C)).unwrap_or(0) & 0xFFFF).unwrap_or(0);
        let len = usize::from(
            buf.get(off.saturating_add(8)..off.saturating_add(10))
                .map(|b| {
                    u16::from_le_bytes([
                        b.first().copied().unwrap_or(0),
                        b.get(1).copied().unwrap_or(0),
                    ])
                })
                .unwrap_or(0),
        );
        let entry = off
            .checked_add(len)
            .filter(|&e| len >= INDEX_ENTRY_HEADER_BYTES && e <= end)
            .and_then(|e| buf.get(off..e))
            .ok_or_else(|| bad(format!("entry at 0x{off:x}: length {len} out of bounds")))?;
        let child = if flags & INDEX_ENTRY_NODE != 0 {
            let at = len
                .checked_sub(8)
                .filter(|&a| a >= INDEX_ENTRY_HEADER_BYTES);
            Some(
                at.and_then(|a| le64(entry, a))
                    .ok_or_else(|| bad(format!("entry at 0x{off:x}: no room for its child VCN")))?,
            )
        } else {
            None
        };
        if flags & INDEX_ENTRY_END != 0 {
            out.push(Entry { key: None, child });
            return Ok(out);
        }
        let key_len = entry
            .get(0x0A..0x0C)
            .map(|b| {
                usize::from(u16::from_le_bytes([
                    b.first().copied().unwrap_or(0),
                    b.get(1).copied().unwrap_or(0),
                ]))
            })
            .unwrap_or(0);
        let key = INDEX_ENTRY_HEADER_BYTES
            .checked_add(key_len)
            .and_then(|e| entry.get(INDEX_ENTRY_HEADER_BYTES..e))
            .ok_or_else(|| {
                bad(format!(
                    "entry at 0x{off:x}: key of {key_len} bytes out of bounds"
                ))
            })?;
        out.push(Entry {
            key: Some(
                parse_key(key, le64(entry, 0).unwrap_or(0))
                    .ok_or_else(|| bad(format!("entry at 0x{off:x}: $FILE_NAME key truncated")))?,
            ),
            child,
        });
        off = off.saturating_add(len);
    }
    Err(bad("no end entry".into()))
}

fn parse_key(k: &[u8], mref: u64) -> Option<Key> {
    let name_len = usize::from(*k.get(FN_NAME_LENGTH)?);
    let name = k.get(FN_NAME..FN_NAME.checked_add(name_len.checked_mul(2)?)?)?;
    Some(Key {
        record: mref & MFT_REF_MASK,
        sequence: u16::try_from(mref >> 48).ok()?,
        name: utf16_units(name),
        namespace: *k.get(FN_NAMESPACE)?,
        file_attributes: le32(k, FN_FILE_ATTRIBUTES)?,
    })
}

/// Check an `INDX` block read at VCN `vcn`, apply its fixups; the index header is then at
/// [`BLOCK_HEADER_OFFSET`].
pub(super) fn fix_block(buf: &mut [u8], vcn: u64) -> Result<()> {
    if buf.get(0..4) != Some(b"INDX".as_slice()) {
        return Err(Error::corrupt(format!(
            "NTFS index block at VCN {vcn}: no INDX signature"
        )));
    }
    apply_fixup(buf).ok_or_else(|| {
        Error::corrupt(format!(
            "NTFS index block at VCN {vcn}: update sequence (fixup) mismatch"
        ))
    })?;
    match le64(buf, 0x10) {
        Some(v) if v == vcn => Ok(()),
        other => Err(Error::corrupt(format!(
            "NTFS index block at VCN {vcn}: says it is VCN {other:?}"
        ))),
    }
}

#[cfg(test)]
#[allow(
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::arithmetic_side_effects,
    clippy::as_conversions
)]
mod tests {
    use super::*;

    /// A node with one key "A" (record 0x40, Win32 namespace) and an end entry with a child.
    fn node() -> Vec<u8> {
        let mut b = vec![0u8; 0x100];
        b[0..4].copy_from_slice(&0x10u32.to_le_bytes()); // entries at header + 0x10
        let key_len = 0x42 + 2;
        let e1_len = (0x10 + key_len + 7) & !7;
        let e2_len = 0x18;
        b[4..8].copy_from_slice(&((0x10 + e1_len + e2_len) as u32).to_le_bytes()); // index length
        let e = 0x10;
        b[e..e + 8].copy_from_slice(&0x0001_0000_0000_0040u64.to_le_bytes()); // mref
        b[e + 8..e + 10].copy_from_slice(&(e1_len as u16).to_le_bytes()); // entry length
        b[e + 10..e + 12].copy_from_slice(&(key_len as u16).to_le_bytes()); // key length
        b[e + 0x10 + 0x38..e + 0x10 + 0x3C].copy_from_slice(&0x20u32.to_le_bytes()); // attrs
        b[e + 0x10 + 0x40] = 1; // name length
        b[e + 0x10 + 0x41] = 1; // Win32
        b[e + 0x10 + 0x42] = b'A';
        let e2 = e + e1_len;
        b[e2 + 8..e2 + 10].copy_from_slice(&(e2_len as u16).to_le_bytes()); // entry length
        b[e2 + 0x0C] = (INDEX_ENTRY_END | INDEX_ENTRY_NODE) as u8; // flags
        b[e2 + 0x10..e2 + 0x18].copy_from_slice(&7u64.to_le_bytes()); // child VCN
        b
    }

    #[test]
    fn entries_of_a_node() {
        let e = node_entries(&node(), 0).unwrap();
        assert_eq!(e.len(), 2);
        let k = e[0].key.as_ref().unwrap();
        assert_eq!(
            (k.record, k.name.as_slice(), k.namespace),
            (0x40, [0x41u16].as_slice(), 1)
        );
        assert_eq!(
            e[1],
            Entry {
                key: None,
                child: Some(7)
            }
        );
    }

    #[test]
    fn broken_nodes_are_corrupt() {
        let mut b = node();
        b[4..8].copy_from_slice(&0x1000u32.to_le_bytes()); // index length past the buffer
        assert!(node_entries(&b, 0).is_err());
        let mut b = node();
        b[0x18..0x1A].copy_from_slice(&4u16.to_le_bytes()); // entry length below the header
        assert!(node_entries(&b, 0).is_err());
        let mut b = node();
        b[0x10 + 0x10 + 0x40] = 200; // name longer than the key
        assert!(node_entries(&b, 0).is_err());
        assert!(node_entries(&[0u8; 4], 0).is_err());
    }
}
