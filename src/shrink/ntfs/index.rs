//! Finding a file in the root directory's `$I30` index with our own parser (the ntfs crate 0.4
//! mislocates index blocks when clusters are larger than index blocks).

use super::bitmap::bit;
use super::volume::{attr_parts, joined_runs, read_record, read_runs, Volume};
use super::{FILE_ROOT, MFT_REF_MASK};
use crate::bytes::{le_u16, le_u32, le_u64};
use crate::disk::Disk;
use crate::error::{Error, Result};
use crate::fs::ntfs::raw::{ATTR_BITMAP, ATTR_INDEX_ALLOCATION, ATTR_INDEX_ROOT};

/// Index entry flag: the last entry of a node (no key).
const INDEX_ENTRY_END: u32 = 0x02;
/// Largest index block (ntfs-3g accepts up to 64 KiB) and root index we read.
const MAX_INDEX_BLOCK_BYTES: u64 = 64 * 1024;
const MAX_ROOT_INDEX_BYTES: u64 = 64 * 1024 * 1024;

/// The MFT record number of `name` (ASCII, compared without case) in the root directory's
/// `$I30` index: the entries of `$INDEX_ROOT` and of every in-use `INDX` block of
/// `$INDEX_ALLOCATION` (bounded by its size; no tree walk, so no cycles).
pub(super) fn find_in_root(part: &dyn Disk, vol: &Volume, name: &str) -> Result<Option<u64>> {
    let root = read_record(part, vol, FILE_ROOT)?;
    let want: Vec<u16> = name.to_ascii_lowercase().encode_utf16().collect();
    let bad = |what: &str| Error::corrupt(format!("NTFS root directory index: {what}"));
    let ir = attr_parts(part, vol, &root, ATTR_INDEX_ROOT, "$I30")?;
    let (ir_rec, ir) = ir.first().ok_or_else(|| bad("no $INDEX_ROOT"))?;
    let range = ir_rec.resident_value(ir)?;
    let value = ir_rec.bytes.get(range).unwrap_or_default();
    let block = le_u32(value, 8).map(u64::from).unwrap_or(0);
    if let Some(n) = scan_index(value, 0x10, &want) {
        return Ok(Some(n));
    }
    let ia = attr_parts(part, vol, &root, ATTR_INDEX_ALLOCATION, "$I30")?;
    let Some((ia_rec, ia_first)) = ia.first() else {
        return Ok(None);
    };
    if !block.is_power_of_two() || !(512..=MAX_INDEX_BLOCK_BYTES).contains(&block) {
        return Err(bad(&format!("index block size {block}")));
    }
    let h = ia_rec.non_resident(ia_first)?;
    let size = u64::try_from(h.data_size.get()).unwrap_or(u64::MAX);
    if size > MAX_ROOT_INDEX_BYTES {
        return Err(Error::unsupported(format!(
            "NTFS root directory index of {size} bytes (more than {MAX_ROOT_INDEX_BYTES}); not read"
        )));
    }
    let runs = joined_runs(vol, &ia)?;
    let alloc = read_runs(part, vol, &runs, size)?;
    // which blocks are in use: the $I30 $BITMAP (resident in practice); all when absent
    let bm = attr_parts(part, vol, &root, ATTR_BITMAP, "$I30")?;
    let in_use: Option<Vec<u8>> = match bm.first() {
        Some((r, b)) if !b.non_resident => {
            let range = r.resident_value(b)?;
            r.bytes.get(range).map(<[u8]>::to_vec)
        }
        _ => None,
    };
    let step = usize::try_from(block).map_err(|_| bad("block size"))?;
    for (i, chunk) in alloc.chunks_exact(step).enumerate() {
        if in_use
            .as_ref()
            .is_some_and(|bm| !bit(bm, crate::units::len_u64(i)))
        {
            continue;
        }
        if chunk.get(0..4) != Some(b"INDX".as_slice()) {
            continue;
        }
        let mut b = chunk.to_vec();
        if crate::fs::ntfs::apply_fixup(&mut b).is_none() {
            continue;
        }
        if let Some(n) = scan_index(&b, 0x18, &want) {
            return Ok(Some(n));
        }
    }
    Ok(None)
}

/// The entries of the index header at `hdr` in `buf`: the record number of the entry whose
/// `$FILE_NAME` key is `want` (lowercase UTF-16), compared without ASCII case.
fn scan_index(buf: &[u8], hdr: usize, want: &[u16]) -> Option<u64> {
    let first = usize::try_from(le_u32(buf, hdr)?).ok()?;
    let used = usize::try_from(le_u32(buf, hdr.checked_add(4)?)?).ok()?;
    let end = hdr.checked_add(used)?.min(buf.len());
    let mut p = hdr.checked_add(first)?;
    while p.checked_add(16)? <= end {
        let len = usize::from(le_u16(buf, p.checked_add(8)?)?);
        let key_len = usize::from(le_u16(buf, p.checked_add(10)?)?);
        let flags = le_u32(buf, p.checked_add(12)?)?;
        if flags & INDEX_ENTRY_END != 0 || len < 16 {
            return None;
        }
        let key = p.checked_add(16)?;
        if key_len >= 0x42 {
            let n = usize::from(*buf.get(key.checked_add(0x40)?)?);
            let at = key.checked_add(0x42)?;
            let units = buf.get(at..at.checked_add(n.checked_mul(2)?)?)?;
            let name = units
                .chunks_exact(2)
                .map(|c| <[u8; 2]>::try_from(c).map_or(0, u16::from_le_bytes))
                .map(|u| {
                    if (0x41..=0x5A).contains(&u) {
                        u | 0x20
                    } else {
                        u
                    }
                });
            if name.eq(want.iter().copied()) {
                return Some(le_u64(buf, p)? & MFT_REF_MASK);
            }
        }
        p = p.checked_add(len)?;
    }
    None
}
