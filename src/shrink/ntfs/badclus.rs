//! `$BadClus:$Bad` (MFT record 8): volumes with bad clusters are refused; otherwise the sparse
//! stream, as long as the volume, is truncated to the new volume (ntfsresize
//! `truncate_badclust_bad_attr`).

use zerocopy::little_endian::I64;

use super::record::{encode_runs, Attr, Record, Run};
use super::volume::{read_record, refuse_attribute_list, Volume};
use super::{to_i64, FILE_BADCLUS};
use crate::disk::Disk;
use crate::error::{Error, Result};
use crate::fs::ntfs::raw::ATTR_DATA;

/// `$BadClus` as read: its record and its `$Bad` stream.
pub(super) struct BadClus {
    pub(super) rec: Record,
    bad: Attr,
}

/// Read `$BadClus`; refuse bad clusters (ntfsresize does without `--bad-sectors`).
pub(super) fn read_without_bad_clusters(part: &dyn Disk, vol: &Volume) -> Result<BadClus> {
    let badclus = read_record(part, vol, FILE_BADCLUS)?;
    refuse_attribute_list(&badclus)?;
    let bad = badclus
        .find(ATTR_DATA, "$Bad")?
        .ok_or_else(|| Error::corrupt("NTFS MFT record 8 ($BadClus): no $Bad data stream"))?;
    let bad_runs = badclus.runs(&bad, vol.clusters)?;
    let bad_clusters: u64 = bad_runs
        .iter()
        .filter(|r| r.lcn.is_some())
        .fold(0u64, |n, r| n.saturating_add(r.len));
    if bad_clusters > 0 {
        return Err(Error::unsupported(format!(
            "NTFS volume has {bad_clusters} bad cluster(s) listed in $BadClus; run `chkdsk C: /r` in Windows and copy the data to a sound disk first"
        )));
    }
    Ok(BadClus { rec: badclus, bad })
}

impl BadClus {
    /// `$Bad` made a hole as long as the new volume; the note for the plan.
    pub(super) fn truncate(&mut self, vol: &Volume, new_clusters: u64) -> Result<String> {
        let BadClus { rec: badclus, bad } = self;
        let mut h = badclus.non_resident(bad)?;
        let new_vol_bytes = to_i64(new_clusters.saturating_mul(vol.cluster_bytes))?;
        h.lowest_vcn = I64::new(0);
        h.highest_vcn = I64::new(to_i64(new_clusters)?.saturating_sub(1));
        h.allocated_size = I64::new(new_vol_bytes);
        h.data_size = I64::new(new_vol_bytes);
        h.initialized_size = I64::new(h.initialized_size.get().min(new_vol_bytes));
        badclus.set_non_resident(bad, &h)?;
        let mp = encode_runs(&[Run {
            vcn: 0,
            lcn: None,
            len: new_clusters,
        }])?;
        badclus.set_mapping_pairs(bad, &mp)?;
        Ok(format!(
            "NTFS $BadClus:$Bad: sparse stream truncated to {new_vol_bytes} bytes"
        ))
    }
}
