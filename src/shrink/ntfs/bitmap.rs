//! `$Bitmap` (MFT record 6): read with its own clusters released, then written again for the
//! new volume (ntfsresize `realloc_bitmap_data_attr`, `bitmap_file_data_fixup`), and the bit
//! operations on it.

use zerocopy::little_endian::I64;

use super::record::{encode_runs, Attr, Record, Run};
use super::volume::{read_record, read_runs, refuse_attribute_list, Volume};
use super::{ctx, to_i64, FILE_BITMAP};
use crate::disk::Disk;
use crate::error::{Error, Result};
use crate::fs::ntfs::raw::{RawNonResidentAttr, ATTR_DATA, ATTR_IS_COMPRESSED, ATTR_IS_ENCRYPTED};

/// `$Bitmap` as read: its record, its data attribute, the attribute's header and runs, and the
/// bitmap of the current volume with `$Bitmap`'s own clusters released (it is reallocated, as
/// ntfsresize does).
pub(super) struct BitmapFile {
    rec: Record,
    attr: Attr,
    hdr: RawNonResidentAttr,
    runs: Vec<Run>,
    /// One bit per cluster of the current volume.
    pub(super) bits: Vec<u8>,
}

/// Read `$Bitmap` and release its own clusters.
pub(super) fn read_released(part: &dyn Disk, vol: &Volume) -> Result<BitmapFile> {
    let bitmap_rec = read_record(part, vol, FILE_BITMAP)?;
    refuse_attribute_list(&bitmap_rec)?;
    let bm_attr = bitmap_rec
        .find(ATTR_DATA, "")?
        .ok_or_else(|| Error::corrupt("NTFS MFT record 6 ($Bitmap): no data stream"))?;
    if !bm_attr.non_resident
        || bm_attr.flags & (ATTR_IS_COMPRESSED | ATTR_IS_ENCRYPTED | 0x8000) != 0
    {
        return Err(Error::unsupported(format!(
            "NTFS $Bitmap data is resident or compressed/sparse/encrypted (flags {:#06x}); not rewritten",
            bm_attr.flags
        )));
    }
    let bm_hdr = bitmap_rec.non_resident(&bm_attr)?;
    let bm_runs = bitmap_rec.runs(&bm_attr, vol.clusters)?;
    let used_bytes = vol.clusters.div_ceil(8);
    if u64::try_from(bm_hdr.initialized_size.get()).unwrap_or(0) < used_bytes
        || bm_hdr.lowest_vcn.get() != 0
    {
        return Err(Error::corrupt(format!(
            "NTFS $Bitmap holds {} initialized bytes, {used_bytes} needed for {} clusters",
            bm_hdr.initialized_size.get(),
            vol.clusters
        )));
    }
    let mut bitmap = read_runs(part, vol, &bm_runs, used_bytes).map_err(|e| ctx(e, "$Bitmap"))?;
    for r in &bm_runs {
        if let Some(lcn) = r.lcn {
            set_bits(&mut bitmap, lcn, r.len, false);
        }
    }
    Ok(BitmapFile {
        rec: bitmap_rec,
        attr: bm_attr,
        hdr: bm_hdr,
        runs: bm_runs,
        bits: bitmap,
    })
}

impl BitmapFile {
    /// The new `$Bitmap`: one bit per cluster of the new volume, padded to a multiple of 8 bytes
    /// with the padding bits set, in the first free clusters from cluster 0. Its changed sectors
    /// are appended to `writes`; the result is its record with the new sizes and runlist, and
    /// the note for the plan.
    pub(super) fn rewrite(
        self,
        part: &dyn Disk,
        vol: &Volume,
        new_clusters: u64,
        writes: &mut Vec<(u64, Vec<u8>)>,
    ) -> Result<(Record, String)> {
        let BitmapFile {
            rec: mut bitmap_rec,
            attr: bm_attr,
            hdr: bm_hdr,
            runs: bm_runs,
            bits: mut bitmap,
        } = self;
        let bm_bytes = new_clusters.div_ceil(8).div_ceil(8).saturating_mul(8);
        let bm_clusters = bm_bytes.div_ceil(vol.cluster_bytes);
        let new_lcn = first_fit(&bitmap, new_clusters, bm_clusters).ok_or_else(|| {
            Error::unsupported(format!(
                "NTFS shrink: no {bm_clusters} contiguous free clusters for the new $Bitmap"
            ))
        })?;
        set_bits(&mut bitmap, new_lcn, bm_clusters, true);
        let mut new_bitmap = bitmap;
        new_bitmap.resize(
            usize::try_from(bm_bytes).map_err(|_| Error::unsupported("bitmap size"))?,
            0,
        );
        let pad_bits = bm_bytes.saturating_mul(8).saturating_sub(new_clusters);
        set_bits(&mut new_bitmap, new_clusters, pad_bits, true);
        let dest = new_lcn.saturating_mul(vol.cluster_bytes);
        let old_at_dest = part
            .read_vec(dest, bm_bytes)
            .map_err(|e| ctx(e, "$Bitmap"))?;
        let before = writes.len();
        diff_writes(
            writes,
            dest,
            &old_at_dest,
            &new_bitmap,
            vol.bytes_per_sector,
        );
        let note = format!(
            "NTFS $Bitmap: {bm_bytes} bytes for {new_clusters} clusters at cluster {new_lcn} ({} changed sector(s)); was {} bytes at {}",
            writes.len().saturating_sub(before),
            bm_hdr.data_size.get(),
            describe_runs(&bm_runs)
        );

        let mut h = bm_hdr;
        h.lowest_vcn = I64::new(0);
        h.highest_vcn = I64::new(to_i64(bm_clusters)?.saturating_sub(1));
        h.allocated_size = I64::new(to_i64(bm_clusters.saturating_mul(vol.cluster_bytes))?);
        h.data_size = I64::new(to_i64(bm_bytes)?);
        h.initialized_size = I64::new(to_i64(bm_bytes)?);
        bitmap_rec.set_non_resident(&bm_attr, &h)?;
        let mp = encode_runs(&[Run {
            vcn: 0,
            lcn: Some(new_lcn),
            len: bm_clusters,
        }])?;
        bitmap_rec.set_mapping_pairs(&bm_attr, &mp)?;
        Ok((bitmap_rec, note))
    }
}

fn set_bits(bm: &mut [u8], start: u64, len: u64, on: bool) {
    for c in start..start.saturating_add(len) {
        let Some(b) = usize::try_from(c / 8).ok().and_then(|i| bm.get_mut(i)) else {
            return;
        };
        let mask = 1u8 << (c % 8);
        if on {
            *b |= mask;
        } else {
            *b &= !mask;
        }
    }
}

pub(super) fn bit(bm: &[u8], c: u64) -> bool {
    usize::try_from(c / 8)
        .ok()
        .and_then(|i| bm.get(i))
        .is_some_and(|b| b & (1 << (c % 8)) != 0)
}

/// The last set bit in `from..to`.
pub(super) fn last_set_bit(bm: &[u8], from: u64, to: u64) -> Option<u64> {
    let mut c = to;
    while c > from {
        // skip whole zero bytes
        if c.is_multiple_of(8) && c.saturating_sub(8) >= from {
            let byte = usize::try_from((c / 8).saturating_sub(1))
                .ok()
                .and_then(|i| bm.get(i));
            if byte == Some(&0) {
                c = c.saturating_sub(8);
                continue;
            }
        }
        c = c.saturating_sub(1);
        if bit(bm, c) {
            return Some(c);
        }
    }
    None
}

/// First run of `len` clear bits in `0..limit`, scanning from 0 (ntfsresize `find_free_cluster`
/// with its position at 0, as it is when nothing was relocated).
fn first_fit(bm: &[u8], limit: u64, len: u64) -> Option<u64> {
    let mut start = 0u64;
    let mut c = 0u64;
    while c < limit {
        if c.is_multiple_of(8) && c.saturating_add(8) <= limit {
            let byte = usize::try_from(c / 8).ok().and_then(|i| bm.get(i)).copied();
            if byte == Some(0xFF) {
                c = c.saturating_add(8);
                start = c;
                continue;
            }
        }
        if bit(bm, c) {
            start = c.saturating_add(1);
        } else if c.saturating_add(1).saturating_sub(start) >= len {
            return Some(start);
        }
        c = c.saturating_add(1);
    }
    None
}

/// Writes for the sectors where `new` differs from `old` (both at `offset`), adjacent sectors
/// merged.
fn diff_writes(writes: &mut Vec<(u64, Vec<u8>)>, offset: u64, old: &[u8], new: &[u8], sector: u64) {
    let step = usize::try_from(sector).unwrap_or(512).max(1);
    let mut pending: Option<(u64, Vec<u8>)> = None;
    for (i, (o, n)) in old.chunks(step).zip(new.chunks(step)).enumerate() {
        let at = offset.saturating_add(crate::units::len_u64(i).saturating_mul(sector));
        if o == n {
            if let Some(w) = pending.take() {
                writes.push(w);
            }
            continue;
        }
        match &mut pending {
            Some((_, buf)) => buf.extend_from_slice(n),
            None => pending = Some((at, n.to_vec())),
        }
    }
    if let Some(w) = pending {
        writes.push(w);
    }
}

fn describe_runs(runs: &[Run]) -> String {
    runs.iter()
        .map(|r| match r.lcn {
            Some(l) => format!("cluster {l}+{}", r.len),
            None => format!("hole+{}", r.len),
        })
        .collect::<Vec<_>>()
        .join(", ")
}
