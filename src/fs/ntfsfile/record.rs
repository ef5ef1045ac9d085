//! MFT records, attribute headers and runlists (mapping pairs), as the file reader needs them.
//! Layouts from ntfs-3g `layout.h` and the Linux-NTFS "NTFS Documentation" (Russon & Fledel),
//! "Attribute - Resident", "Attribute - Non-resident" and "Data runs".
//!
//! A record is untrusted: every offset and length is checked against the record before use,
//! the attribute walk is bounded by the record size and a runlist by its attribute's length.

use zerocopy::little_endian::{I64, U16, U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use crate::error::{Error, Result};
use crate::fs::ntfs::apply_fixup;
use crate::fs::ntfs::raw::RawMftRecord;

/// Attribute type codes (ntfs-3g `ATTR_TYPES`).
pub(super) const ATTR_STANDARD_INFORMATION: u32 = 0x10;
pub(super) const ATTR_ATTRIBUTE_LIST: u32 = 0x20;
pub(super) const ATTR_VOLUME_INFORMATION: u32 = 0x70;
pub(super) const ATTR_DATA: u32 = 0x80;
pub(super) const ATTR_INDEX_ROOT: u32 = 0x90;
pub(super) const ATTR_INDEX_ALLOCATION: u32 = 0xA0;
pub(super) const ATTR_REPARSE_POINT: u32 = 0xC0;
const ATTR_END: u32 = 0xFFFF_FFFF;
/// Attribute flags (ntfs-3g `ATTR_FLAGS`): any compression method, encrypted.
pub(super) const ATTR_COMPRESSION_MASK: u16 = 0x00FF;
pub(super) const ATTR_IS_ENCRYPTED: u16 = 0x4000;
/// MFT record flags (ntfs-3g `MFT_RECORD_FLAGS`).
const MFT_RECORD_IN_USE: u16 = 0x0001;
pub(super) const MFT_RECORD_IS_DIRECTORY: u16 = 0x0002;
const FILE_MAGIC: &[u8; 4] = b"FILE";
/// The record number part of an MFT reference (the top 16 bits are the sequence number).
pub(super) const MFT_REF_MASK: u64 = 0x0000_FFFF_FFFF_FFFF;

/// Common attribute header (ntfs-3g `ATTR_RECORD`, first 16 bytes).
#[derive(Debug, Clone, Copy, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
struct RawAttrHeader {
    kind: U32,        // 0x00 attribute type
    length: U32,      // 0x04 length of the attribute record, 8-byte multiple
    non_resident: u8, // 0x08
    name_length: u8,  // 0x09 in UTF-16 units
    name_offset: U16, // 0x0A
    flags: U16,       // 0x0C ATTR_COMPRESSION_MASK / ATTR_IS_ENCRYPTED / 0x8000 sparse
    instance: U16,    // 0x0E
}
const _: () = assert!(size_of::<RawAttrHeader>() == 0x10);

/// Resident attribute value location (ntfs-3g `ATTR_RECORD`, resident form, from 0x10).
#[derive(Debug, Clone, Copy, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
struct RawResidentPart {
    value_length: U32,  // 0x10
    value_offset: U16,  // 0x14
    resident_flags: u8, // 0x16
    reserved: u8,       // 0x17
}
const _: () = assert!(size_of::<RawResidentPart>() == 0x08);

/// Non-resident attribute fields after the common header (ntfs-3g `ATTR_RECORD`, from 0x10).
#[derive(Debug, Clone, Copy, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
struct RawNonResidentPart {
    lowest_vcn: I64,           // 0x10 first VCN this extent maps
    highest_vcn: I64,          // 0x18 last VCN this extent maps
    mapping_pairs_offset: U16, // 0x20
    compression_unit: u8,      // 0x22 log2 of clusters per compression unit
    reserved: [u8; 5],         // 0x23
    allocated_size: I64,       // 0x28 bytes allocated
    data_size: I64,            // 0x30 logical size
    initialized_size: I64,     // 0x38 bytes written; beyond reads as zero
}
const _: () = assert!(size_of::<RawNonResidentPart>() == 0x30);

/// `$ATTRIBUTE_LIST` entry (ntfs-3g `ATTR_LIST_ENTRY`), followed by its name.
#[derive(Debug, Clone, Copy, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
struct RawAttrListEntry {
    kind: U32,          // 0x00 attribute type
    length: U16,        // 0x04 length of this entry, 8-byte multiple
    name_length: u8,    // 0x06 in UTF-16 units
    name_offset: u8,    // 0x07
    lowest_vcn: I64,    // 0x08 first VCN of this extent
    mft_reference: U64, // 0x10 record holding the extent
    instance: U16,      // 0x18
}
const _: () = assert!(size_of::<RawAttrListEntry>() == 0x1A);

/// One run of a non-resident attribute: `clusters` clusters from `vcn`, at `lcn` or sparse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Run {
    pub vcn: u64,
    pub clusters: u64,
    /// `None` for a sparse run (reads as zeros).
    pub lcn: Option<u64>,
}

/// Where an attribute's value is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Value {
    Resident(Vec<u8>),
    NonResident {
        lowest_vcn: u64,
        highest_vcn: u64,
        runs: Vec<Run>,
        /// Only meaningful in the extent whose `lowest_vcn` is 0.
        data_size: u64,
        initialized_size: u64,
    },
}

/// One attribute record (one extent of an attribute split by an attribute list).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Attr {
    pub kind: u32,
    pub name: Vec<u16>,
    pub flags: u16,
    pub value: Value,
}

/// An MFT record after fixups: its header facts and its attributes.
#[derive(Debug, Clone)]
pub(super) struct Record {
    pub flags: u16,
    /// Incremented each time the record is reused; MFT references carry it in their top 16 bits.
    pub sequence: u16,
    /// The base record this one extends (0 for a base record).
    pub base: u64,
    pub attrs: Vec<Attr>,
}

/// One `$ATTRIBUTE_LIST` entry: which record holds which attribute extent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ListEntry {
    pub kind: u32,
    pub record: u64,
}

fn le16(b: &[u8], off: usize) -> Option<u16> {
    let s = b.get(off..off.checked_add(2)?)?;
    Some(u16::from_le_bytes(s.try_into().ok()?))
}

pub(super) fn le32(b: &[u8], off: usize) -> Option<u32> {
    let s = b.get(off..off.checked_add(4)?)?;
    Some(u32::from_le_bytes(s.try_into().ok()?))
}

pub(super) fn le64(b: &[u8], off: usize) -> Option<u64> {
    let s = b.get(off..off.checked_add(8)?)?;
    Some(u64::from_le_bytes(s.try_into().ok()?))
}

/// UTF-16LE bytes to code units (an odd trailing byte is dropped).
pub(super) fn utf16_units(b: &[u8]) -> Vec<u16> {
    b.chunks_exact(2)
        .map(|c| {
            u16::from_le_bytes([
                c.first().copied().unwrap_or(0),
                c.get(1).copied().unwrap_or(0),
            ])
        })
        .collect()
}

/// Parse the MFT record `number` read into `buf` (fixups applied here). `in_use` false and a
/// bad magic are errors: a reference to such a record is a broken directory entry.
pub(super) fn parse_record(mut buf: Vec<u8>, number: u64, cluster_limit: u64) -> Result<Record> {
    let bad = |what: &str| Error::corrupt(format!("NTFS MFT record {number}: {what}"));
    if buf.get(0..4) != Some(FILE_MAGIC.as_slice()) {
        return Err(bad("no FILE signature"));
    }
    apply_fixup(&mut buf).ok_or_else(|| bad("update sequence (fixup) mismatch"))?;
    let hdr = RawMftRecord::read_from_prefix(&buf)
        .map_err(|_| bad("truncated header"))?
        .0;
    let flags = hdr.flags.get();
    if flags & MFT_RECORD_IN_USE == 0 {
        return Err(bad("not in use"));
    }
    let limit = usize::try_from(hdr.bytes_in_use.get())
        .ok()
        .filter(|&n| n <= buf.len())
        .ok_or_else(|| bad("bytes in use beyond the record"))?;
    let mut attrs = Vec::new();
    let mut off = usize::from(hdr.attrs_offset.get());
    // Every attribute record is at least 0x18 bytes: the walk ends within the record.
    for _ in 0..buf.len().checked_div(0x18).unwrap_or(0) {
        let Some(kind) = le32(&buf, off) else {
            return Err(bad("attribute list runs past the record"));
        };
        if kind == ATTR_END {
            break;
        }
        let end = off.checked_add(size_of::<RawAttrHeader>());
        let h = end
            .filter(|&e| e <= limit)
            .and_then(|_| buf.get(off..))
            .and_then(|b| RawAttrHeader::read_from_prefix(b).ok())
            .ok_or_else(|| bad(&format!("attribute header at 0x{off:x} truncated")))?
            .0;
        let len = usize::try_from(h.length.get()).unwrap_or(usize::MAX);
        let rec = off
            .checked_add(len)
            .filter(|&e| len >= 0x18 && e <= limit)
            .and_then(|e| buf.get(off..e))
            .ok_or_else(|| {
                bad(&format!(
                    "attribute at 0x{off:x}: length {len} out of bounds"
                ))
            })?;
        attrs.push(
            parse_attr(rec, &h, cluster_limit).map_err(|e| {
                e.context(format!("NTFS MFT record {number}, attribute at 0x{off:x}"))
            })?,
        );
        off = off
            .checked_add(len)
            .ok_or_else(|| bad("attribute offset overflow"))?;
    }
    Ok(Record {
        flags,
        sequence: hdr.sequence_number.get(),
        base: hdr.base_mft_record.get() & MFT_REF_MASK,
        attrs,
    })
}

fn parse_attr(rec: &[u8], h: &RawAttrHeader, cluster_limit: u64) -> Result<Attr> {
    let name_off = usize::from(h.name_offset.get());
    let name_len = usize::from(h.name_length).saturating_mul(2);
    let name = name_off
        .checked_add(name_len)
        .and_then(|e| rec.get(name_off..e))
        .ok_or_else(|| Error::corrupt("attribute name out of bounds"))?;
    let name = utf16_units(name);
    let tail = rec.get(size_of::<RawAttrHeader>()..).unwrap_or(&[]);
    let value = if h.non_resident == 0 {
        let r = RawResidentPart::read_from_prefix(tail)
            .map_err(|_| Error::corrupt("resident attribute header truncated"))?
            .0;
        let v_off = usize::from(r.value_offset.get());
        let v_len = usize::try_from(r.value_length.get()).unwrap_or(usize::MAX);
        let v = v_off
            .checked_add(v_len)
            .and_then(|e| rec.get(v_off..e))
            .ok_or_else(|| {
                Error::corrupt(format!(
                    "resident value 0x{v_off:x}+0x{v_len:x} out of bounds"
                ))
            })?;
        Value::Resident(v.to_vec())
    } else {
        let n = RawNonResidentPart::read_from_prefix(tail)
            .map_err(|_| Error::corrupt("non-resident attribute header truncated"))?
            .0;
        let nonneg = |v: i64, what: &str| {
            u64::try_from(v).map_err(|_| Error::corrupt(format!("negative {what} {v}")))
        };
        let lowest_vcn = nonneg(n.lowest_vcn.get(), "lowest VCN")?;
        let highest = n.highest_vcn.get();
        // An empty attribute has highest VCN -1.
        let highest_vcn = if highest == -1 {
            lowest_vcn.saturating_sub(1)
        } else {
            nonneg(highest, "highest VCN")?
        };
        let data_size = nonneg(n.data_size.get(), "data size")?;
        let initialized_size = nonneg(n.initialized_size.get(), "initialized size")?;
        let mp = usize::from(n.mapping_pairs_offset.get());
        let pairs = rec.get(mp..).filter(|_| mp >= 0x40).ok_or_else(|| {
            Error::corrupt(format!("mapping pairs offset 0x{mp:x} out of bounds"))
        })?;
        let runs = decode_runs(pairs, lowest_vcn, cluster_limit)?;
        Value::NonResident {
            lowest_vcn,
            highest_vcn,
            runs,
            data_size,
            initialized_size,
        }
    };
    Ok(Attr {
        kind: h.kind.get(),
        name,
        flags: h.flags.get(),
        value,
    })
}

/// Decode mapping pairs starting at VCN `vcn`. Every allocated run must lie inside the volume
/// (`cluster_limit` clusters). The number of runs is bounded by the bytes (each takes >= 2).
pub(super) fn decode_runs(mut b: &[u8], mut vcn: u64, cluster_limit: u64) -> Result<Vec<Run>> {
    let mut runs = Vec::new();
    let mut lcn: i64 = 0;
    loop {
        let Some((&head, rest)) = b.split_first() else {
            return Err(Error::corrupt("runlist has no terminator"));
        };
        if head == 0 {
            return Ok(runs);
        }
        let len_bytes = usize::from(head & 0x0F);
        let off_bytes = usize::from(head >> 4);
        if len_bytes == 0 || len_bytes > 8 || off_bytes > 8 {
            return Err(Error::corrupt(format!("runlist header byte 0x{head:02x}")));
        }
        let field_end = len_bytes.saturating_add(off_bytes);
        let fields = rest
            .get(..field_end)
            .ok_or_else(|| Error::corrupt("runlist truncated"))?;
        let (len_f, off_f) = fields.split_at(len_bytes);
        let clusters = signed_le(len_f);
        let clusters = u64::try_from(clusters)
            .ok()
            .filter(|&c| c > 0)
            .ok_or_else(|| Error::corrupt(format!("runlist run of {clusters} clusters")))?;
        let run_lcn = if off_bytes == 0 {
            None
        } else {
            lcn = lcn
                .checked_add(signed_le(off_f))
                .ok_or_else(|| Error::corrupt("runlist LCN overflow"))?;
            let start = u64::try_from(lcn)
                .map_err(|_| Error::corrupt(format!("runlist LCN {lcn} is negative")))?;
            match start.checked_add(clusters) {
                Some(end) if end <= cluster_limit => {}
                _ => {
                    return Err(Error::corrupt(format!(
                        "run of {clusters} clusters at LCN {start} is outside the volume ({cluster_limit} clusters)"
                    )))
                }
            }
            Some(start)
        };
        runs.push(Run {
            vcn,
            clusters,
            lcn: run_lcn,
        });
        vcn = vcn
            .checked_add(clusters)
            .ok_or_else(|| Error::corrupt("runlist VCN overflow"))?;
        b = rest.get(field_end..).unwrap_or(&[]);
    }
}

/// A little-endian two's complement integer of 1..=8 bytes.
fn signed_le(b: &[u8]) -> i64 {
    let mut v = [0u8; 8];
    let fill = if b.last().is_some_and(|&x| x & 0x80 != 0) {
        0xFF
    } else {
        0
    };
    for (i, slot) in v.iter_mut().enumerate() {
        *slot = b.get(i).copied().unwrap_or(fill);
    }
    i64::from_le_bytes(v)
}

/// Parse an `$ATTRIBUTE_LIST` value (bounded by its length: each entry is >= 0x1A bytes).
pub(super) fn parse_attr_list(b: &[u8]) -> Result<Vec<ListEntry>> {
    let mut out = Vec::new();
    let mut off = 0usize;
    while off < b.len() {
        let e = b
            .get(off..)
            .and_then(|s| RawAttrListEntry::read_from_prefix(s).ok())
            .ok_or_else(|| Error::corrupt(format!("attribute list entry at 0x{off:x} truncated")))?
            .0;
        let len = usize::from(e.length.get());
        if len < size_of::<RawAttrListEntry>() {
            return Err(Error::corrupt(format!(
                "attribute list entry at 0x{off:x}: length {len}"
            )));
        }
        out.push(ListEntry {
            kind: e.kind.get(),
            record: e.mft_reference.get() & MFT_REF_MASK,
        });
        off = off
            .checked_add(len)
            .ok_or_else(|| Error::corrupt("attribute list overflow"))?;
    }
    Ok(out)
}

/// Read a little-endian u16 field of a value (for `$VOLUME_INFORMATION` and friends).
pub(super) fn value_u16(b: &[u8], off: usize) -> Option<u16> {
    le16(b, off)
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

    #[test]
    fn runs_decode_with_sparse_and_negative_offsets() {
        // 0x21: 1 length byte, 2 offset bytes: 0x10 clusters at LCN 0x100
        // 0x01: 1 length byte, no offset: 8 sparse clusters
        // 0x11: 4 clusters at LCN 0x100 - 0x10 (offset byte 0xF0 = -16)
        let b = [0x21, 0x10, 0x00, 0x01, 0x01, 0x08, 0x11, 0x04, 0xF0, 0x00];
        let r = decode_runs(&b, 0, 1000).unwrap();
        assert_eq!(
            r,
            vec![
                Run {
                    vcn: 0,
                    clusters: 0x10,
                    lcn: Some(0x100)
                },
                Run {
                    vcn: 0x10,
                    clusters: 8,
                    lcn: None
                },
                Run {
                    vcn: 0x18,
                    clusters: 4,
                    lcn: Some(0xF0)
                },
            ]
        );
    }

    #[test]
    fn runs_refuse_bad_input() {
        assert!(decode_runs(&[0x21, 0x10], 0, 1000).is_err()); // truncated
        assert!(decode_runs(&[0x21, 0x10, 0x00, 0x01], 0, 1000).is_err()); // no terminator
        assert!(decode_runs(&[0x21, 0x10, 0x00, 0x10, 0x00], 0, 0x1000).is_err()); // past volume
        assert!(decode_runs(&[0x11, 0x10, 0x80, 0x00], 0, 1000).is_err()); // negative LCN
        assert!(decode_runs(&[0x09, 0x00], 0, 1000).is_err()); // 9 length bytes
        assert!(decode_runs(&[0x11, 0x00, 0x01, 0x00], 0, 1000).is_err()); // zero length
        assert!(decode_runs(&[0x01, 0xFF, 0x00], 0, 1000).is_err()); // negative length
        assert_eq!(decode_runs(&[0x00], 0, 1000).unwrap(), vec![]);
    }

    #[test]
    fn attr_list_entries() {
        let mut b = vec![0u8; 0x20];
        b[0..4].copy_from_slice(&0x80u32.to_le_bytes()); // type $DATA
        b[4..6].copy_from_slice(&0x20u16.to_le_bytes()); // length
        b[0x10..0x18].copy_from_slice(&(0x0005_0000_0000_0042u64).to_le_bytes()); // seq 5, rec 0x42
        assert_eq!(
            parse_attr_list(&b).unwrap(),
            vec![ListEntry {
                kind: 0x80,
                record: 0x42
            }]
        );
        b[4..6].copy_from_slice(&0x08u16.to_le_bytes()); // too short: no progress
        assert!(parse_attr_list(&b).is_err());
        assert!(parse_attr_list(&b[..0x10]).is_err());
    }
}
