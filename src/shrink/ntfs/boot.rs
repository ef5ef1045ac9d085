//! The boot sector with a new sector count, and the shrink that only moves the backup boot
//! sector (the volume already fits).

use zerocopy::little_endian::U64;
use zerocopy::FromBytes;

use super::volume::Volume;
use crate::error::{Error, Result};
use crate::fs::ntfs::raw::RawNtfsBootSector;
use crate::shrink::ShrinkWrites;

/// The volume already fits: only the boot sector's sector count (when it reaches into the new
/// last sector) and the backup boot sector change.
pub(super) fn backup_only(vol: &Volume, new_bytes: u64) -> Result<ShrinkWrites> {
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

pub(super) fn boot_with_sectors(vol: &Volume, sectors: u64) -> Result<Vec<u8>> {
    let mut boot = vol.boot.clone();
    let (mut bs, _) = RawNtfsBootSector::read_from_prefix(&boot)
        .map_err(|_| Error::corrupt("NTFS boot sector shorter than 512 bytes"))?;
    bs.number_of_sectors = U64::new(sectors);
    if let Some(d) = boot.get_mut(..size_of::<RawNtfsBootSector>()) {
        d.copy_from_slice(zerocopy::IntoBytes::as_bytes(&bs));
    }
    Ok(boot)
}
