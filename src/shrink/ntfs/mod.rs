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
mod badclus;
mod bitmap;
mod boot;
mod clean;
mod index;
mod owner;
mod record;
mod volume;

use self::bitmap::last_set_bit;
use self::volume::{push_record, read_volume, Volume};
use super::ShrinkWrites;
use crate::disk::Disk;
use crate::error::{Error, Result};

/// Well-known MFT records (ntfs-3g `NTFS_SYSTEM_FILES`).
const FILE_MFT: u64 = 0;
const FILE_LOGFILE: u64 = 2;
const FILE_VOLUME: u64 = 3;
const FILE_ROOT: u64 = 5;
const FILE_BITMAP: u64 = 6;
const FILE_BADCLUS: u64 = 8;
/// Records the MFT keeps contiguous from its first cluster (ntfsresize requires 16).
const MIN_FIRST_RUN_RECORDS: u64 = 16;
/// The record number part of an MFT reference (the top 16 bits are the sequence number).
const MFT_REF_MASK: u64 = 0x0000_FFFF_FFFF_FFFF;

fn ctx(e: Error, what: &str) -> Error {
    e.context(format!("NTFS {what}"))
}

fn to_i64(v: u64) -> Result<i64> {
    i64::try_from(v).map_err(|_| Error::unsupported(format!("NTFS size {v} does not fit")))
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
    let new_clusters = new_cluster_count(&vol, part.len(), new_bytes)?;
    if new_clusters >= vol.clusters {
        return boot::backup_only(&vol, new_bytes);
    }

    clean::check_clean(part, &vol)?;

    let mut writes = Vec::new();
    let mut notes = Vec::new();

    let mut badclus = badclus::read_without_bad_clusters(part, &vol)?;
    let bitmap = bitmap::read_released(part, &vol)?;
    // The tail must be free.
    if let Some(last) = last_set_bit(&bitmap.bits, new_clusters, vol.clusters) {
        return Err(owner::refuse_used_tail(part, &vol, new_clusters, last));
    }
    let (bitmap_rec, note) = bitmap.rewrite(part, &vol, new_clusters, &mut writes)?;
    notes.push(note);
    notes.push(badclus.truncate(&vol, new_clusters)?);
    let volume = clean::mark_dirty(part, &vol)?;
    notes.push(
        "NTFS $Volume: marked dirty, so Windows runs chkdsk at its next boot (as after ntfsresize)"
            .to_string(),
    );

    for rec in [&bitmap_rec, &badclus.rec, &volume] {
        push_record(&mut writes, &vol, rec)?;
    }

    // Boot sector and its backup at the end of the new partition.
    let bps = vol.bytes_per_sector;
    let new_sectors = new_clusters.saturating_mul(vol.sectors_per_cluster);
    let boot = boot::boot_with_sectors(&vol, new_sectors)?;
    notes.push(format!(
        "NTFS volume: {} -> {} clusters of {} bytes ({} -> {} sectors); backup boot sector at byte {:#x}",
        vol.clusters,
        new_clusters,
        vol.cluster_bytes,
        vol.total_sectors,
        new_sectors,
        new_bytes.saturating_sub(bps)
    ));
    check_inside_volume(&writes, new_clusters.saturating_mul(vol.cluster_bytes))?;
    writes.push((0, boot.clone()));
    writes.push((new_bytes.saturating_sub(bps), boot));
    Ok(ShrinkWrites { writes, notes })
}

/// The cluster count of the volume shrunk to fit `new_bytes` of a `part_len`-byte partition
/// with its backup boot sector, refused when it is not a whole number of sectors inside the
/// partition or leaves too little for the metadata.
fn new_cluster_count(vol: &Volume, part_len: u64, new_bytes: u64) -> Result<u64> {
    let bps = vol.bytes_per_sector;
    if !new_bytes.is_multiple_of(bps) || new_bytes > part_len {
        return Err(Error::invalid(format!(
            "NTFS shrink: new partition length {new_bytes} bytes is not a multiple of the {bps}-byte sector, or exceeds the partition ({part_len} bytes)"
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
    Ok(new_clusters)
}

/// Every metadata write must land inside the shrunk volume (`volume_end` bytes): on a
/// consistent volume the MFT records written lie in clusters $Bitmap marks used, which the tail
/// check kept below the new end; a crafted or damaged one can place them past it (found by
/// fuzzing).
fn check_inside_volume(writes: &[(u64, Vec<u8>)], volume_end: u64) -> Result<()> {
    if let Some((off, b)) = writes
        .iter()
        .find(|(off, b)| off.saturating_add(crate::units::len_u64(b.len())) > volume_end)
    {
        return Err(Error::corrupt(format!(
            "NTFS volume: metadata at byte {off:#x} (+{}) lies past the shrunk volume's end ({volume_end:#x}) although $Bitmap marks that space free; the volume is inconsistent: run chkdsk in the guest, or use --room grow",
            b.len()
        )));
    }
    Ok(())
}
