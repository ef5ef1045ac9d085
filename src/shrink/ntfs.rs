//! Shrinking an NTFS volume whose tail is free, computed from reads only.
//!
//! What changes is what `ntfsresize --size BYTES` (ntfs-3g 2022.10.3, `ntfsprogs/ntfsresize.c`)
//! changes when no cluster needs to move:
//!
//! - the boot sector's `number_of_sectors`: the new cluster count times the sectors per cluster,
//!   the clusters being `(new partition bytes - one sector) / cluster bytes` (ntfsresize `main`);
//! - the backup boot sector, written to the last sector of the new partition (ntfsresize
//!   `update_bootsector` with an exact byte size; `ntfsfix` looks for it there);
//! - `$Bitmap` (MFT record 6): its data is one bit per cluster of the new volume, padded to a
//!   multiple of 8 bytes with the padding bits set (`bitmap_file_data_fixup`); its clusters are
//!   released and allocated again first-fit from cluster 0 (`realloc_bitmap_data_attr`,
//!   `alloc_cluster`), and the attribute's sizes, highest VCN and runlist follow;
//! - `$BadClus:$Bad` (MFT record 8): the sparse stream as long as the volume is truncated to the
//!   new volume (`truncate_badclust_bad_attr`);
//! - `$Volume` (MFT record 3, and its `$MFTMirr` copy): the dirty flag is set, so Windows runs
//!   chkdsk at its next boot (`prepare_volume_fixup`).
//!
//! The dirty flag, decided: set, as ntfsresize does. Like ntfsresize we do not update the sizes
//! cached in `$Bitmap`'s `$FILE_NAME` attributes (in its record and in the root index) nor
//! `$LogFile`; chkdsk reconciles them on the first boot (a one-time scan that takes seconds on
//! a freshly shrunk volume), and a volume that was resized offline is one Windows should check
//! before it writes. Leaving the flag clear would make the result look untouched to Windows
//! while its cached sizes disagree with `$Bitmap`. Consequences: the converted image's first
//! boot runs chkdsk (and `vhdtool` refuses to shrink a volume that is still dirty, so boot it
//! once before converting it again); `ntfsfix -n` and `ntfsresize --info` accept it.
//!
//! Differences from ntfsresize, on purpose:
//! - nothing is relocated: a used cluster past the new end refuses the shrink, naming the file
//!   (found through the runlists of every MFT record); `$MFTMirr` is not moved either (Windows'
//!   format puts it near the start; mkntfs in the middle of the volume, which bounds how far
//!   such a volume shrinks);
//! - volumes with bad clusters, a dirty flag, an unclean `$LogFile` or an active hibernation
//!   file are refused (ntfsresize refuses them too, but can be forced);
//! - `$LogFile` is not reset: the volume must have been shut down cleanly, so there is nothing
//!   to replay, and resetting would write up to 64 MiB for no effect on what Windows does;
//! - `$BadClus:$Bad` keeps its attribute header form and flags (ntfs-3g's truncate rewrites it
//!   in the sparse form, then ntfsresize clears the sparse flag); the sizes and runlist are the
//!   same;
//! - the volume's consistency is not re-checked by walking every MFT record: `$Bitmap` is
//!   trusted, as the volume is required to be clean. The cost follows the metadata touched:
//!   the boot sector, five MFT records, the `$LogFile` restart pages, the root directory's
//!   index (to find `hiberfil.sys`; read with our own parser: the ntfs crate 0.4 mislocates
//!   index blocks when clusters are larger than them) and `$Bitmap`
//!   (volume bytes / cluster bytes / 8: 4 MiB for 127 GiB in 4 KiB clusters). The MFT is walked
//!   only to name the owner of a used cluster when refusing.

#![deny(
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    clippy::unwrap_used
)]

mod record;

use std::io::{Read, Seek, SeekFrom};

use zerocopy::little_endian::{I64, U64};
use zerocopy::FromBytes;

use self::record::{encode_runs, Record, Run};
use super::ShrinkWrites;
use crate::bytes::{le_u16, le_u32, le_u64};
use crate::disk::Disk;
use crate::error::{Error, Result};
use crate::fs::ntfs::raw::{
    RawNtfsBootSector, ATTR_ATTRIBUTE_LIST, ATTR_BITMAP, ATTR_DATA, ATTR_INDEX_ALLOCATION,
    ATTR_INDEX_ROOT, ATTR_IS_COMPRESSED, ATTR_IS_ENCRYPTED, ATTR_VOLUME_INFORMATION, NTFS_OEM,
};
use crate::fs::ntfs::{record_bytes, sectors_per_cluster, MAX_CLUSTER_BYTES};

/// Well-known MFT records (ntfs-3g `NTFS_SYSTEM_FILES`).
const FILE_MFT: u64 = 0;
const FILE_LOGFILE: u64 = 2;
const FILE_VOLUME: u64 = 3;
const FILE_ROOT: u64 = 5;
const FILE_BITMAP: u64 = 6;
const FILE_BADCLUS: u64 = 8;
/// Records the MFT keeps contiguous from its first cluster (ntfsresize requires 16).
const MIN_FIRST_RUN_RECORDS: u64 = 16;
/// `$VOLUME_INFORMATION` flags (ntfs-3g `VOLUME_FLAGS`): chkdsk scheduled.
const VOLUME_IS_DIRTY: u16 = 0x0001;
/// `$LogFile` restart area (ntfs-3g `logfile.h`): no client has the log open / volume clean.
const LOGFILE_NO_CLIENT: u16 = 0xFFFF;
const RESTART_VOLUME_IS_CLEAN: u16 = 0x0002;
/// Largest `$LogFile` system page size we read (ntfs-3g accepts up to 64 KiB).
const MAX_LOG_PAGE_BYTES: u64 = 64 * 1024;
/// Index entry flag: the last entry of a node (no key).
const INDEX_ENTRY_END: u32 = 0x02;
/// Largest index block (ntfs-3g accepts up to 64 KiB) and root index we read.
const MAX_INDEX_BLOCK_BYTES: u64 = 64 * 1024;
const MAX_ROOT_INDEX_BYTES: u64 = 64 * 1024 * 1024;
/// Largest non-resident `$ATTRIBUTE_LIST` we read.
const MAX_ATTRIBUTE_LIST_BYTES: u64 = 1024 * 1024;
/// The record number part of an MFT reference (the top 16 bits are the sequence number).
const MFT_REF_MASK: u64 = 0x0000_FFFF_FFFF_FFFF;
/// Path components followed when naming the owner of a cluster.
const MAX_PATH_DEPTH: usize = 64;
/// Bytes of the MFT read per request while looking for the owner of a cluster.
const MFT_CHUNK_BYTES: u64 = 1 << 20;

/// The volume geometry from the boot sector, checked against the partition.
struct Volume {
    bytes_per_sector: u64,
    sectors_per_cluster: u64,
    cluster_bytes: u64,
    total_sectors: u64,
    clusters: u64,
    mftmirr_lcn: u64,
    record_bytes: u64,
    /// The first sector as stored (the boot sector is its first 512 bytes).
    boot: Vec<u8>,
    /// $MFT's own runlist (from record 0) and its size in records.
    mft_runs: Vec<Run>,
    mft_records: u64,
}

fn ctx(e: Error, what: &str) -> Error {
    e.context(format!("NTFS {what}"))
}

/// Shrink the NTFS volume in `part` (a window over the partition) so that it and its backup
/// boot sector fit in the first `new_bytes` bytes, when the clusters past the new end are free.
///
/// Refuses with [`InvalidInput`](crate::ErrorKind::InvalidInput) when a cluster past the new end is in use, naming
/// the last used cluster and the file that owns it; with `Conflict` when the volume is not
/// cleanly shut down (dirty, unclean `$LogFile`, hibernated); with `Unsupported` for bad
/// clusters or a `$Bitmap` layout we do not rewrite; with `Corrupt` for damaged metadata.
/// Nothing is written: the result is the list of writes.
pub fn plan_shrink(part: &dyn Disk, new_bytes: u64) -> Result<ShrinkWrites> {
    // The ntfs crate can panic on hostile input (see Cargo.toml); our own checks run first,
    // this is the last guard.
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| plan(part, new_bytes))) {
        Ok(r) => r,
        Err(_) => Err(Error::corrupt(
            "NTFS volume: the metadata reader failed on this volume (damaged MFT?); nothing is written",
        )),
    }
}

fn plan(part: &dyn Disk, new_bytes: u64) -> Result<ShrinkWrites> {
    let vol = read_volume(part)?;
    let bps = vol.bytes_per_sector;
    if !new_bytes.is_multiple_of(bps) || new_bytes > part.len() {
        return Err(Error::invalid(format!(
            "NTFS shrink: new partition length {new_bytes} bytes is not a multiple of the {bps}-byte sector, or exceeds the partition ({} bytes)",
            part.len()
        )));
    }
    // ntfsresize main(): the backup boot sector is not part of the volume.
    let new_clusters = new_bytes
        .checked_sub(bps)
        .map(|b| b.checked_div(vol.cluster_bytes).unwrap_or(0))
        .unwrap_or(0);
    let min_clusters = MIN_FIRST_RUN_RECORDS.saturating_add(1);
    if new_clusters < min_clusters {
        return Err(Error::invalid(format!(
            "NTFS shrink: {new_bytes} bytes leave {new_clusters} clusters, fewer than the volume's metadata needs"
        )));
    }
    if new_clusters >= vol.clusters {
        return backup_only(&vol, new_bytes);
    }

    check_clean(part, &vol)?;

    let mut writes = Vec::new();
    let mut notes = Vec::new();

    // $BadClus:$Bad: refuse bad clusters (ntfsresize does without --bad-sectors).
    let mut badclus = read_record(part, &vol, FILE_BADCLUS)?;
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

    // $Bitmap: read it, release its own clusters (it is reallocated, as ntfsresize does).
    let mut bitmap_rec = read_record(part, &vol, FILE_BITMAP)?;
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
    let mut bitmap = read_runs(part, &vol, &bm_runs, used_bytes).map_err(|e| ctx(e, "$Bitmap"))?;
    for r in &bm_runs {
        if let Some(lcn) = r.lcn {
            set_bits(&mut bitmap, lcn, r.len, false);
        }
    }

    // The tail must be free.
    if let Some(last) = last_set_bit(&bitmap, new_clusters, vol.clusters) {
        let owner = owner_of(part, &vol, last);
        return Err(tail_in_use(&vol, new_clusters, last, owner));
    }

    // The new $Bitmap: one bit per cluster of the new volume, 8-byte multiple.
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
    diff_writes(&mut writes, dest, &old_at_dest, &new_bitmap, bps);
    notes.push(format!(
        "NTFS $Bitmap: {bm_bytes} bytes for {new_clusters} clusters at cluster {new_lcn} ({} changed sector(s)); was {} bytes at {}",
        writes.len().saturating_sub(before),
        bm_hdr.data_size.get(),
        describe_runs(&bm_runs)
    ));

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

    // $BadClus:$Bad: a hole as long as the new volume.
    let mut h = badclus.non_resident(&bad)?;
    let new_vol_bytes = to_i64(new_clusters.saturating_mul(vol.cluster_bytes))?;
    h.lowest_vcn = I64::new(0);
    h.highest_vcn = I64::new(to_i64(new_clusters)?.saturating_sub(1));
    h.allocated_size = I64::new(new_vol_bytes);
    h.data_size = I64::new(new_vol_bytes);
    h.initialized_size = I64::new(h.initialized_size.get().min(new_vol_bytes));
    badclus.set_non_resident(&bad, &h)?;
    let mp = encode_runs(&[Run {
        vcn: 0,
        lcn: None,
        len: new_clusters,
    }])?;
    badclus.set_mapping_pairs(&bad, &mp)?;
    notes.push(format!(
        "NTFS $BadClus:$Bad: sparse stream truncated to {new_vol_bytes} bytes"
    ));

    // $Volume: schedule chkdsk.
    let mut volume = read_record(part, &vol, FILE_VOLUME)?;
    let vi = volume
        .find(ATTR_VOLUME_INFORMATION, "")?
        .ok_or_else(|| Error::corrupt("NTFS MFT record 3 ($Volume): no $VOLUME_INFORMATION"))?;
    let range = volume.resident_value(&vi)?;
    let flags_at = range.start.saturating_add(10);
    let flags = volume_flags(&volume, &range)?;
    if let Some(d) = volume.bytes.get_mut(flags_at..flags_at.saturating_add(2)) {
        d.copy_from_slice(&(flags | VOLUME_IS_DIRTY).to_le_bytes());
    }
    notes.push(
        "NTFS $Volume: marked dirty, so Windows runs chkdsk at its next boot (as after ntfsresize)"
            .to_string(),
    );

    for rec in [&bitmap_rec, &badclus, &volume] {
        push_record(&mut writes, &vol, rec)?;
    }

    // Boot sector and its backup at the end of the new partition.
    let new_sectors = new_clusters.saturating_mul(vol.sectors_per_cluster);
    let boot = boot_with_sectors(&vol, new_sectors)?;
    notes.push(format!(
        "NTFS volume: {} -> {} clusters of {} bytes ({} -> {} sectors); backup boot sector at byte {:#x}",
        vol.clusters,
        new_clusters,
        vol.cluster_bytes,
        vol.total_sectors,
        new_sectors,
        new_bytes.saturating_sub(bps)
    ));
    // Every metadata write must land inside the shrunk volume: on a consistent volume the MFT
    // records written lie in clusters $Bitmap marks used, which the tail check kept below the
    // new end; a crafted or damaged one can place them past it (found by fuzzing).
    let volume_end = new_clusters.saturating_mul(vol.cluster_bytes);
    if let Some((off, b)) = writes
        .iter()
        .find(|(off, b)| off.saturating_add(b.len() as u64) > volume_end)
    {
        return Err(Error::corrupt(format!(
            "NTFS volume: metadata at byte {off:#x} (+{}) lies past the shrunk volume's end ({volume_end:#x}) although $Bitmap marks that space free; the volume is inconsistent: run chkdsk in the guest, or use --room grow",
            b.len()
        )));
    }
    writes.push((0, boot.clone()));
    writes.push((new_bytes.saturating_sub(bps), boot));
    Ok(ShrinkWrites { writes, notes })
}

/// The volume already fits: only the boot sector's sector count (when it reaches into the new
/// last sector) and the backup boot sector change.
fn backup_only(vol: &Volume, new_bytes: u64) -> Result<ShrinkWrites> {
    let bps = vol.bytes_per_sector;
    let backup_at = new_bytes.saturating_sub(bps);
    let sectors = if vol.total_sectors.saturating_mul(bps) > backup_at {
        vol.clusters.saturating_mul(vol.sectors_per_cluster)
    } else {
        vol.total_sectors
    };
    let boot = boot_with_sectors(vol, sectors)?;
    let mut writes = Vec::new();
    if boot != vol.boot {
        writes.push((0, boot.clone()));
    }
    writes.push((backup_at, boot));
    Ok(ShrinkWrites {
        writes,
        notes: vec![format!(
            "NTFS volume ({} clusters) already fits; backup boot sector written at byte {backup_at:#x}",
            vol.clusters
        )],
    })
}

fn to_i64(v: u64) -> Result<i64> {
    i64::try_from(v).map_err(|_| Error::unsupported(format!("NTFS size {v} does not fit")))
}

fn boot_with_sectors(vol: &Volume, sectors: u64) -> Result<Vec<u8>> {
    let mut boot = vol.boot.clone();
    let (mut bs, _) = RawNtfsBootSector::read_from_prefix(&boot)
        .map_err(|_| Error::corrupt("NTFS boot sector shorter than 512 bytes"))?;
    bs.number_of_sectors = U64::new(sectors);
    if let Some(d) = boot.get_mut(..size_of::<RawNtfsBootSector>()) {
        d.copy_from_slice(zerocopy::IntoBytes::as_bytes(&bs));
    }
    Ok(boot)
}

/// Boot sector, geometry and $MFT's runlist, every value checked against the partition.
fn read_volume(part: &dyn Disk) -> Result<Volume> {
    const BOOT_BYTES: u64 = size_of::<RawNtfsBootSector>() as u64;
    if part.len() < BOOT_BYTES {
        return Err(Error::invalid(format!(
            "NTFS shrink: the partition is {} bytes, smaller than a boot sector",
            part.len()
        )));
    }
    let first = part.read_vec(0, BOOT_BYTES)?;
    let (bs, _) = RawNtfsBootSector::read_from_prefix(&first)
        .map_err(|_| Error::corrupt("NTFS boot sector shorter than 512 bytes"))?;
    if &bs.oem_id != NTFS_OEM {
        return Err(Error::invalid(
            "NTFS shrink: the partition does not hold NTFS (OEM id)",
        ));
    }
    let bps = u64::from(bs.bytes_per_sector.get());
    if !bps.is_power_of_two() || !(512..=4096).contains(&bps) {
        return Err(Error::corrupt(format!(
            "NTFS boot sector: {bps} bytes per sector"
        )));
    }
    let spc = sectors_per_cluster(bs.sectors_per_cluster).ok_or_else(|| {
        Error::corrupt(format!(
            "NTFS boot sector: sectors per cluster byte {:#04x}",
            bs.sectors_per_cluster
        ))
    })?;
    let cluster_bytes = bps
        .checked_mul(spc)
        .filter(|&c| c <= MAX_CLUSTER_BYTES)
        .ok_or_else(|| Error::corrupt("NTFS boot sector: cluster larger than 2 MiB"))?;
    let rec = record_bytes(bs.clusters_per_mft_record, cluster_bytes).ok_or_else(|| {
        Error::corrupt(format!(
            "NTFS boot sector: clusters per MFT record byte {:#04x}",
            bs.clusters_per_mft_record
        ))
    })?;
    let total_sectors = bs.number_of_sectors.get();
    let vol_bytes = total_sectors.checked_mul(bps).filter(|&b| b <= part.len());
    if vol_bytes.is_none() {
        return Err(Error::corrupt(format!(
            "NTFS boot sector: {total_sectors} sectors of {bps} bytes do not fit the {}-byte partition",
            part.len()
        )));
    }
    let clusters = total_sectors.checked_div(spc).unwrap_or(0);
    let (mft_lcn, mftmirr_lcn) = (bs.mft_lcn.get(), bs.mftmirr_lcn.get());
    if mft_lcn >= clusters || mftmirr_lcn >= clusters || mft_lcn == 0 {
        return Err(Error::corrupt(format!(
            "NTFS boot sector: $MFT at cluster {mft_lcn} / $MFTMirr at {mftmirr_lcn}, volume has {clusters}"
        )));
    }
    let boot = part.read_vec(0, bps)?;
    let mut vol = Volume {
        bytes_per_sector: bps,
        sectors_per_cluster: spc,
        cluster_bytes,
        total_sectors,
        clusters,
        mftmirr_lcn,
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
    // $MFT's own record sits at its first cluster.
    let mft = read_record(part, &vol, FILE_MFT)?;
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
    Ok(vol)
}

/// Read MFT record `n`, which must lie in $MFT's runs.
fn read_record(part: &dyn Disk, vol: &Volume, n: u64) -> Result<Record> {
    let off = record_offset(vol, n)
        .ok_or_else(|| Error::corrupt(format!("NTFS MFT record {n} is outside $MFT's runs")))?;
    let raw = part.read_vec(off, vol.record_bytes)?;
    Record::parse(n, off, raw)
}

fn record_offset(vol: &Volume, n: u64) -> Option<u64> {
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

fn refuse_attribute_list(rec: &Record) -> Result<()> {
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
fn push_record(writes: &mut Vec<(u64, Vec<u8>)>, vol: &Volume, rec: &Record) -> Result<()> {
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

fn volume_flags(volume: &Record, range: &std::ops::Range<usize>) -> Result<u16> {
    // $VOLUME_INFORMATION: 8 reserved bytes, major u8, minor u8, flags u16
    volume
        .bytes
        .get(range.clone())
        .filter(|v| v.len() >= 12)
        .and_then(|v| le_u16(v, 10))
        .ok_or_else(|| Error::corrupt("NTFS $VOLUME_INFORMATION shorter than 12 bytes"))
}

/// Refuse volumes Windows did not leave cleanly: dirty flag, unclean `$LogFile`, hibernation.
fn check_clean(part: &dyn Disk, vol: &Volume) -> Result<()> {
    let volume = read_record(part, vol, FILE_VOLUME)?;
    let vi = volume
        .find(ATTR_VOLUME_INFORMATION, "")?
        .ok_or_else(|| Error::corrupt("NTFS MFT record 3 ($Volume): no $VOLUME_INFORMATION"))?;
    let flags = volume_flags(&volume, &volume.resident_value(&vi)?)?;
    if flags & VOLUME_IS_DIRTY != 0 {
        return Err(Error::conflict(
            "NTFS volume is marked dirty (chkdsk scheduled): boot Windows so chkdsk runs, shut it down, then convert",
        ));
    }
    check_logfile(part, vol)?;
    check_hibernation(part, vol)?;
    Ok(())
}

/// `$LogFile` must be empty (all 0xFF, as ntfs-3g leaves it) or its newest restart area must say
/// that no client has it open or that the volume is clean (ntfs-3g `ntfs_is_logfile_clean`).
fn check_logfile(part: &dyn Disk, vol: &Volume) -> Result<()> {
    let rec = read_record(part, vol, FILE_LOGFILE)?;
    let data = rec
        .find(ATTR_DATA, "")?
        .ok_or_else(|| Error::corrupt("NTFS MFT record 2 ($LogFile): no data stream"))?;
    let runs = rec.runs(&data, vol.clusters)?;
    let log_bytes = runs
        .iter()
        .fold(0u64, |n, r| n.saturating_add(r.len))
        .saturating_mul(vol.cluster_bytes);
    let unclean = |why: String| {
        Error::conflict(format!(
            "NTFS $LogFile {why}: Windows did not shut down cleanly (or Fast Startup is on); boot it and shut it down with `shutdown /s /t 0`, then convert"
        ))
    };
    let head = read_runs(part, vol, &runs, 512.min(log_bytes))?;
    if head.iter().all(|&b| b == 0xFF) {
        return Ok(());
    }
    let page = le_u32(&head, 0x10)
        .map(u64::from)
        .filter(|p| p.is_power_of_two() && (512..=MAX_LOG_PAGE_BYTES).contains(p))
        .filter(|&p| p.saturating_mul(2) <= log_bytes)
        .ok_or_else(|| unclean("has no readable restart page".to_string()))?;
    let pages = read_runs(part, vol, &runs, page.saturating_mul(2))?;
    let mut best: Option<(u64, u16, u16)> = None;
    for chunk in pages.chunks_exact(usize::try_from(page).unwrap_or(usize::MAX)) {
        let mut p = chunk.to_vec();
        if p.get(0..4) != Some(b"RSTR".as_slice()) || crate::fs::ntfs::apply_fixup(&mut p).is_none()
        {
            continue;
        }
        let Some(ra) = le_u16(&p, 0x18).map(usize::from) else {
            continue;
        };
        let lsn = p
            .get(ra..)
            .and_then(|a| U64::read_from_prefix(a).ok())
            .map(|(v, _)| v.get());
        let (Some(lsn), Some(in_use), Some(flags)) = (
            lsn,
            le_u16(&p, ra.saturating_add(0xC)),
            le_u16(&p, ra.saturating_add(0xE)),
        ) else {
            continue;
        };
        if best.is_none_or(|(l, _, _)| lsn > l) {
            best = Some((lsn, in_use, flags));
        }
    }
    match best {
        Some((_, in_use, flags))
            if in_use == LOGFILE_NO_CLIENT || flags & RESTART_VOLUME_IS_CLEAN != 0 =>
        {
            Ok(())
        }
        Some(_) => Err(unclean("is not clean".to_string())),
        None => Err(unclean("has no valid restart page".to_string())),
    }
}

/// Positional reader over a [`Disk`] for the ntfs crate (`Read + Seek`).
struct DiskReader<'a> {
    disk: &'a dyn Disk,
    pos: u64,
}

impl Read for DiskReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let left = self.disk.len().saturating_sub(self.pos);
        let n = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
        let dst = buf.get_mut(..n).unwrap_or_default();
        self.disk
            .read_at(self.pos, dst)
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        self.pos = self.pos.saturating_add(n as u64);
        Ok(n)
    }
}

impl Seek for DiskReader<'_> {
    fn seek(&mut self, to: SeekFrom) -> std::io::Result<u64> {
        let new = match to {
            SeekFrom::Start(p) => Some(p),
            SeekFrom::End(d) => self.disk.len().checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        self.pos = new.ok_or_else(|| std::io::Error::other("seek out of range"))?;
        Ok(self.pos)
    }
}

/// A `hiberfil.sys` whose header is "hibr" or "wake" (ntfs-3g `ntfs_volume_check_hiberfile`)
/// means Windows is hibernated or shut down with Fast Startup: its memory image would
/// overwrite whatever we change. The root directory's `$I30` index is read with our own parser
/// (the ntfs crate 0.4 mislocates index blocks when clusters are larger than index blocks).
fn check_hibernation(part: &dyn Disk, vol: &Volume) -> Result<()> {
    let Some(number) = find_in_root(part, vol, "hiberfil.sys")? else {
        return Ok(());
    };
    let rec = read_record(part, vol, number)?;
    let parts = attr_parts(part, vol, &rec, ATTR_DATA, "")?;
    let Some((first, data)) = parts.first() else {
        return Ok(());
    };
    let magic = if data.non_resident {
        let runs = joined_runs(vol, &parts)?;
        let have = runs
            .iter()
            .fold(0u64, |n, r| n.saturating_add(r.len))
            .saturating_mul(vol.cluster_bytes);
        read_runs(part, vol, &runs, have.min(4))?
    } else {
        let range = first.resident_value(data)?;
        first
            .bytes
            .get(range)
            .unwrap_or_default()
            .iter()
            .take(4)
            .copied()
            .collect()
    };
    let magic = magic.to_ascii_lowercase();
    if magic == b"hibr" || magic == b"wake" {
        return Err(Error::conflict(
            "NTFS volume is hibernated (hiberfil.sys is active: hibernation or Fast Startup); boot Windows and shut it down with `shutdown /s /t 0`, then convert",
        ));
    }
    Ok(())
}

/// The fragments of attribute `kind`/`name` of the file whose base record is `base`: in the
/// base record, or, when it has an `$ATTRIBUTE_LIST`, in the records the list names (bounded
/// by the list's size), ordered by lowest VCN. Each comes with the record that holds it.
fn attr_parts(
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
fn joined_runs(vol: &Volume, parts: &[(Record, record::Attr)]) -> Result<Vec<Run>> {
    let mut runs = Vec::new();
    for (r, a) in parts {
        runs.extend(r.runs(a, vol.clusters)?);
    }
    Ok(runs)
}

/// The MFT record number of `name` (ASCII, compared without case) in the root directory's
/// `$I30` index: the entries of `$INDEX_ROOT` and of every in-use `INDX` block of
/// `$INDEX_ALLOCATION` (bounded by its size; no tree walk, so no cycles).
fn find_in_root(part: &dyn Disk, vol: &Volume, name: &str) -> Result<Option<u64>> {
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
        if in_use.as_ref().is_some_and(|bm| !bit(bm, i as u64)) {
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

/// Read the first `len` bytes of a stream stored in `runs` (holes read as zero).
fn read_runs(part: &dyn Disk, vol: &Volume, runs: &[Run], len: u64) -> Result<Vec<u8>> {
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
        let want = len.saturating_sub(out.len() as u64);
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

fn bit(bm: &[u8], c: u64) -> bool {
    usize::try_from(c / 8)
        .ok()
        .and_then(|i| bm.get(i))
        .is_some_and(|b| b & (1 << (c % 8)) != 0)
}

/// The last set bit in `from..to`.
fn last_set_bit(bm: &[u8], from: u64, to: u64) -> Option<u64> {
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
        let at = offset.saturating_add((i as u64).saturating_mul(sector));
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

/// The owner of a used cluster: MFT record number and path, when it can be found.
struct Owner {
    record: u64,
    path: Option<String>,
}

fn tail_in_use(vol: &Volume, new_clusters: u64, last: u64, owner: Option<Owner>) -> Error {
    let owner_record = owner.as_ref().map(|o| o.record);
    let who = match owner {
        Some(Owner {
            record,
            path: Some(p),
        }) => format!(" by {p} (MFT record {record})"),
        Some(Owner { record, path: None }) => format!(" by MFT record {record}"),
        None => String::new(),
    };
    let system = match owner_record {
        Some(r) if r < MIN_FIRST_RUN_RECORDS => " (an NTFS system file, which Windows' defrag may not move: then only --room grow helps)",
        _ => "",
    };
    Error::invalid(format!(
        "NTFS volume: cluster {last} (byte {:#x} of the partition) is in use{who}{system}, past the new end of the volume at cluster {new_clusters}; \
         free the end of the volume first: defragment in the guest (`defrag C: /U /V`, then shut Windows down), or use `--room grow`",
        last.saturating_mul(vol.cluster_bytes)
    ))
}

/// Walk the MFT (bounded by $MFT's size and runs) for the record whose non-resident runs hold
/// `lcn`; its base record's path comes from the ntfs crate.
fn owner_of(part: &dyn Disk, vol: &Volume, lcn: u64) -> Option<Owner> {
    let per_chunk = MFT_CHUNK_BYTES
        .checked_div(vol.record_bytes)
        .unwrap_or(1)
        .max(1);
    let mut n = 0u64;
    while n < vol.mft_records {
        let count = per_chunk.min(vol.mft_records.saturating_sub(n));
        // records in one chunk must be contiguous on disk: stop at run boundaries
        let start = record_offset(vol, n)?;
        let mut k = 1u64;
        while k < count
            && record_offset(vol, n.saturating_add(k))
                == start.checked_add(k.saturating_mul(vol.record_bytes))
        {
            k = k.saturating_add(1);
        }
        let buf = part
            .read_vec(start, k.saturating_mul(vol.record_bytes))
            .ok()?;
        for (i, raw) in buf
            .chunks_exact(usize::try_from(vol.record_bytes).ok()?)
            .enumerate()
        {
            let number = n.saturating_add(i as u64);
            let Ok(rec) = Record::parse(number, 0, raw.to_vec()) else {
                continue;
            };
            let Ok(attrs) = rec.attributes() else {
                continue;
            };
            let holds = attrs.iter().filter(|a| a.non_resident).any(|a| {
                rec.runs(a, vol.clusters).is_ok_and(|runs| {
                    runs.iter().any(|r| {
                        r.lcn
                            .is_some_and(|l| lcn >= l && lcn < l.saturating_add(r.len))
                    })
                })
            });
            if holds {
                let base = match rec.base_record() {
                    0 => number,
                    b => b,
                };
                return Some(Owner {
                    record: base,
                    path: path_of(part, base),
                });
            }
        }
        n = n.saturating_add(k);
    }
    None
}

/// `\dir\file` for MFT record `record`, following parent references (bounded).
fn path_of(part: &dyn Disk, record: u64) -> Option<String> {
    use ntfs::structured_values::NtfsFileNamespace;
    use ntfs::Ntfs;
    let mut rd = DiskReader { disk: part, pos: 0 };
    let fs = Ntfs::new(&mut rd).ok()?;
    let mut parts = Vec::new();
    let mut n = record;
    for _ in 0..MAX_PATH_DEPTH {
        if n == FILE_ROOT {
            parts.reverse();
            return Some(format!("\\{}", parts.join("\\")));
        }
        let file = fs.file(&mut rd, n).ok()?;
        let name = [
            NtfsFileNamespace::Win32,
            NtfsFileNamespace::Win32AndDos,
            NtfsFileNamespace::Posix,
        ]
        .into_iter()
        .find_map(|ns| file.name(&mut rd, Some(ns), None)?.ok())
        .or_else(|| file.name(&mut rd, None, None)?.ok())?;
        parts.push(name.name().to_string_lossy());
        n = name.parent_directory_reference().file_record_number();
    }
    None
}
