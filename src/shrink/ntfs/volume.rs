//! The volume: its geometry from the boot sector (checked against the partition), and the
//! reads through it: MFT records at their place in `$MFT`'s runs, attributes (also when an
//! `$ATTRIBUTE_LIST` spreads them over several records) and the streams their runs hold.

use zerocopy::FromBytes;

use super::record::{self, Record, Run};
use super::{FILE_MFT, MFT_REF_MASK, MIN_FIRST_RUN_RECORDS};
use crate::bytes::{le_u16, le_u32, le_u64};
use crate::disk::Disk;
use crate::error::{Error, Result};
use crate::fs::ntfs::geometry::NtfsGeometry;
use crate::fs::ntfs::raw::{RawNtfsBootSector, ATTR_ATTRIBUTE_LIST, ATTR_DATA};

/// Largest non-resident `$ATTRIBUTE_LIST` we read.
const MAX_ATTRIBUTE_LIST_BYTES: u64 = 1024 * 1024;

/// The volume geometry from the boot sector, checked against the partition.
pub(super) struct Volume {
    pub(super) bytes_per_sector: u64,
    pub(super) sectors_per_cluster: u64,
    pub(super) cluster_bytes: u64,
    pub(super) total_sectors: u64,
    pub(super) clusters: u64,
    pub(super) mftmirr_lcn: u64,
    pub(super) record_bytes: u64,
    /// The first sector as stored (the boot sector is its first 512 bytes).
    pub(super) boot: Vec<u8>,
    /// $MFT's own runlist (from record 0) and its size in records.
    pub(super) mft_runs: Vec<Run>,
    pub(super) mft_records: u64,
}

/// Boot sector, geometry and $MFT's runlist, every value checked against the partition.
pub(super) fn read_volume(part: &dyn Disk) -> Result<Volume> {
    let (mut vol, mft_lcn) = read_boot_sector(part)?;
    read_mft_runs(part, &mut vol, mft_lcn)?;
    Ok(vol)
}

/// The geometry from the boot sector, with `$MFT` taken to hold its first 16 records from the
/// boot sector's `$MFT` cluster (enough to read record 0); and that cluster.
fn read_boot_sector(part: &dyn Disk) -> Result<(Volume, u64)> {
    let boot_bytes = crate::units::len_u64(size_of::<RawNtfsBootSector>());
    if part.len() < boot_bytes {
        return Err(Error::invalid(format!(
            "NTFS shrink: the partition is {} bytes, smaller than a boot sector",
            part.len()
        )));
    }
    let first = part.read_vec(0, boot_bytes)?;
    let (bs, _) = RawNtfsBootSector::read_from_prefix(&first)
        .map_err(|_| Error::corrupt("NTFS boot sector shorter than 512 bytes"))?;
    let geo = NtfsGeometry::parse(&bs, part.len()).map_err(|e| e.context("NTFS shrink"))?;
    let (bps, cluster_bytes, rec) = (geo.bytes_per_sector, geo.cluster_bytes, geo.record_bytes);
    // Valid NTFS, but the shrink rewrites the boot sector as one sector of at least 512 bytes.
    if bps < 512 {
        return Err(Error::unsupported(format!(
            "NTFS shrink: {bps}-byte sectors are not handled (512 to 4096 are)"
        )));
    }
    let mft_lcn = geo.mft_lcn;
    let boot = part.read_vec(0, bps)?;
    let vol = Volume {
        bytes_per_sector: bps,
        sectors_per_cluster: geo.sectors_per_cluster,
        cluster_bytes,
        total_sectors: geo.total_sectors,
        clusters: geo.clusters,
        mftmirr_lcn: geo.mftmirr_lcn,
        record_bytes: rec,
        boot,
        mft_runs: vec![Run {
            vcn: 0,
            lcn: Some(mft_lcn),
            len: MIN_FIRST_RUN_RECORDS
                .saturating_mul(rec)
                .div_ceil(cluster_bytes),
        }],
        mft_records: MIN_FIRST_RUN_RECORDS,
    };
    Ok((vol, mft_lcn))
}

/// `$MFT`'s own runlist and size in records, from its record 0, which sits at its first cluster.
fn read_mft_runs(part: &dyn Disk, vol: &mut Volume, mft_lcn: u64) -> Result<()> {
    let (clusters, cluster_bytes, rec) = (vol.clusters, vol.cluster_bytes, vol.record_bytes);
    let mft = read_record(part, vol, FILE_MFT)?;
    let data = mft
        .find(ATTR_DATA, "")?
        .ok_or_else(|| Error::corrupt("NTFS MFT record 0 ($MFT): no data stream"))?;
    let h = mft.non_resident(&data)?;
    let runs = mft.runs(&data, clusters)?;
    let first = runs.first().copied();
    let first_records = first
        .map(|r| {
            r.len
                .saturating_mul(cluster_bytes)
                .checked_div(rec)
                .unwrap_or(0)
        })
        .unwrap_or(0);
    if first.and_then(|r| r.lcn) != Some(mft_lcn) || first_records < MIN_FIRST_RUN_RECORDS {
        return Err(Error::corrupt(
            "NTFS $MFT: its first run does not start at the boot sector's $MFT cluster with 16 records",
        ));
    }
    vol.mft_records = u64::try_from(h.data_size.get())
        .unwrap_or(0)
        .checked_div(rec)
        .unwrap_or(0);
    vol.mft_runs = runs;
    Ok(())
}

/// Read MFT record `n`, which must lie in $MFT's runs.
pub(super) fn read_record(part: &dyn Disk, vol: &Volume, n: u64) -> Result<Record> {
    let off = record_offset(vol, n)
        .ok_or_else(|| Error::corrupt(format!("NTFS MFT record {n} is outside $MFT's runs")))?;
    let raw = part.read_vec(off, vol.record_bytes)?;
    Record::parse(n, off, raw)
}

pub(super) fn record_offset(vol: &Volume, n: u64) -> Option<u64> {
    let byte = n.checked_mul(vol.record_bytes)?;
    let vcn = byte.checked_div(vol.cluster_bytes)?;
    let run = vol
        .mft_runs
        .iter()
        .find(|r| vcn >= r.vcn && vcn < r.vcn.saturating_add(r.len))?;
    let lcn = run.lcn?.checked_add(vcn.checked_sub(run.vcn)?)?;
    lcn.checked_mul(vol.cluster_bytes)?
        .checked_add(byte.checked_rem(vol.cluster_bytes)?)
}

pub(super) fn refuse_attribute_list(rec: &Record) -> Result<()> {
    if rec.find(ATTR_ATTRIBUTE_LIST, "")?.is_some() {
        return Err(Error::unsupported(format!(
            "NTFS MFT record {} has an attribute list (heavily fragmented metadata); not rewritten",
            rec.number
        )));
    }
    Ok(())
}

/// The record as it goes to disk, at its place and, for the records `$MFTMirr` copies (the
/// first four, or a cluster's worth: ntfs-3g `mftmirr_size`), in the mirror too.
pub(super) fn push_record(
    writes: &mut Vec<(u64, Vec<u8>)>,
    vol: &Volume,
    rec: &Record,
) -> Result<()> {
    let bytes = rec.encode()?;
    let mirrored = if vol.cluster_bytes <= vol.record_bytes.saturating_mul(4) {
        4
    } else {
        vol.cluster_bytes.checked_div(vol.record_bytes).unwrap_or(0)
    };
    if rec.number < mirrored {
        let at = vol
            .mftmirr_lcn
            .saturating_mul(vol.cluster_bytes)
            .saturating_add(rec.number.saturating_mul(vol.record_bytes));
        writes.push((at, bytes.clone()));
    }
    writes.push((rec.offset, bytes));
    Ok(())
}

/// Read the first `len` bytes of a stream stored in `runs` (holes read as zero).
pub(super) fn read_runs(part: &dyn Disk, vol: &Volume, runs: &[Run], len: u64) -> Result<Vec<u8>> {
    let total = runs
        .iter()
        .fold(0u64, |n, r| n.saturating_add(r.len))
        .saturating_mul(vol.cluster_bytes);
    if len > total {
        return Err(Error::corrupt(format!(
            "stream of {len} bytes is longer than its {total} allocated bytes"
        )));
    }
    let mut out = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
    for r in runs {
        let want = len.saturating_sub(crate::units::len_u64(out.len()));
        if want == 0 {
            break;
        }
        let n = r.len.saturating_mul(vol.cluster_bytes).min(want);
        match r.lcn {
            Some(lcn) => out.extend(part.read_vec(lcn.saturating_mul(vol.cluster_bytes), n)?),
            None => out.resize(out.len().saturating_add(usize::try_from(n).unwrap_or(0)), 0),
        }
    }
    Ok(out)
}

/// The fragments of attribute `kind`/`name` of the file whose base record is `base`: in the
/// base record, or, when it has an `$ATTRIBUTE_LIST`, in the records the list names (bounded
/// by the list's size), ordered by lowest VCN. Each comes with the record that holds it.
pub(super) fn attr_parts(
    part: &dyn Disk,
    vol: &Volume,
    base: &Record,
    kind: u32,
    name: &str,
) -> Result<Vec<(Record, record::Attr)>> {
    let Some(list) = base.find(ATTR_ATTRIBUTE_LIST, "")? else {
        return Ok(base
            .find(kind, name)?
            .map(|a| (base.clone(), a))
            .into_iter()
            .collect());
    };
    let bytes = if list.non_resident {
        let h = base.non_resident(&list)?;
        let size = u64::try_from(h.data_size.get()).unwrap_or(u64::MAX);
        if size > MAX_ATTRIBUTE_LIST_BYTES {
            return Err(Error::unsupported(format!(
                "NTFS MFT record {}: attribute list of {size} bytes; not read",
                base.number
            )));
        }
        read_runs(part, vol, &base.runs(&list, vol.clusters)?, size)?
    } else {
        let r = base.resident_value(&list)?;
        base.bytes.get(r).unwrap_or_default().to_vec()
    };
    let want: Vec<u16> = name.encode_utf16().collect();
    let mut seen: Vec<(u64, u64)> = Vec::new();
    let mut p = 0usize;
    while let (Some(t), Some(len)) = (le_u32(&bytes, p), le_u16(&bytes, p.saturating_add(4))) {
        let len = usize::from(len);
        if len < 0x1A {
            break;
        }
        let nl = usize::from(*bytes.get(p.saturating_add(6)).unwrap_or(&0));
        let no = usize::from(*bytes.get(p.saturating_add(7)).unwrap_or(&0));
        let at = p.saturating_add(no);
        let n: Vec<u16> = bytes
            .get(at..at.saturating_add(nl.saturating_mul(2)))
            .unwrap_or_default()
            .chunks_exact(2)
            .map(|c| <[u8; 2]>::try_from(c).map_or(0, u16::from_le_bytes))
            .collect();
        let vcn = le_u64(&bytes, p.saturating_add(8)).unwrap_or(0);
        let rec = le_u64(&bytes, p.saturating_add(16)).unwrap_or(0) & MFT_REF_MASK;
        if t == kind && n == want && !seen.contains(&(vcn, rec)) {
            seen.push((vcn, rec));
        }
        p = p.saturating_add(len);
    }
    seen.sort_unstable();
    let mut out = Vec::new();
    for (vcn, n) in seen {
        let r = if n == base.number {
            base.clone()
        } else {
            read_record(part, vol, n)?
        };
        let found = r.attributes()?.into_iter().find(|a| {
            a.kind == kind
                && a.name == want
                && (!a.non_resident
                    || r.non_resident(a)
                        .is_ok_and(|h| u64::try_from(h.lowest_vcn.get()).ok() == Some(vcn)))
        });
        if let Some(a) = found {
            out.push((r, a));
        }
    }
    Ok(out)
}

/// The runs of a non-resident attribute stored in `parts`, joined.
pub(super) fn joined_runs(vol: &Volume, parts: &[(Record, record::Attr)]) -> Result<Vec<Run>> {
    let mut runs = Vec::new();
    for (r, a) in parts {
        runs.extend(r.runs(a, vol.clusters)?);
    }
    Ok(runs)
}
