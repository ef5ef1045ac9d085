//! Whether Windows left the volume clean (the dirty flag, `$LogFile`, an active hibernation
//! file), and marking it dirty so that chkdsk runs after the shrink.

use zerocopy::little_endian::U64;
use zerocopy::FromBytes;

use super::index::find_in_root;
use super::record::Record;
use super::volume::{attr_parts, joined_runs, read_record, read_runs, Volume};
use super::{FILE_LOGFILE, FILE_VOLUME};
use crate::bytes::{le_u16, le_u32};
use crate::disk::Disk;
use crate::error::{Error, Result};
use crate::fs::ntfs::raw::{ATTR_DATA, ATTR_VOLUME_INFORMATION};

/// `$VOLUME_INFORMATION` flags (ntfs-3g `VOLUME_FLAGS`): chkdsk scheduled.
const VOLUME_IS_DIRTY: u16 = 0x0001;
/// `$LogFile` restart area (ntfs-3g `logfile.h`): no client has the log open / volume clean.
const LOGFILE_NO_CLIENT: u16 = 0xFFFF;
const RESTART_VOLUME_IS_CLEAN: u16 = 0x0002;
/// Largest `$LogFile` system page size we read (ntfs-3g accepts up to 64 KiB).
const MAX_LOG_PAGE_BYTES: u64 = 64 * 1024;

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
pub(super) fn check_clean(part: &dyn Disk, vol: &Volume) -> Result<()> {
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

/// `$Volume` (MFT record 3) with the dirty flag set in its `$VOLUME_INFORMATION`, so Windows
/// runs chkdsk at its next boot (ntfsresize `prepare_volume_fixup`).
pub(super) fn mark_dirty(part: &dyn Disk, vol: &Volume) -> Result<Record> {
    let mut volume = read_record(part, vol, FILE_VOLUME)?;
    let vi = volume
        .find(ATTR_VOLUME_INFORMATION, "")?
        .ok_or_else(|| Error::corrupt("NTFS MFT record 3 ($Volume): no $VOLUME_INFORMATION"))?;
    let range = volume.resident_value(&vi)?;
    let flags_at = range.start.saturating_add(10);
    let flags = volume_flags(&volume, &range)?;
    if let Some(d) = volume.bytes.get_mut(flags_at..flags_at.saturating_add(2)) {
        d.copy_from_slice(&(flags | VOLUME_IS_DIRTY).to_le_bytes());
    }
    Ok(volume)
}
