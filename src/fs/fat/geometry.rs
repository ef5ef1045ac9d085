//! The layout of a FAT volume, decoded from its boot sector and validated before any other
//! read (sizes, powers of two, region order; fatgen103 sections 3.1-3.5).

use serde::Serialize;
use zerocopy::FromBytes;

use super::raw::{RawBpb, RawBpb16, RawBpb32, DIR_ENTRY_BYTES};
use crate::error::{Error, Result};

// usize -> u64 of a small constant: lossless, and `u64::from` is not const.
#[allow(clippy::as_conversions)]
pub(super) const DIR_ENTRY_BYTES_U64: u64 = DIR_ENTRY_BYTES as u64;
/// fatgen103 §3.5: the cluster count limits that decide the FAT type.
const FAT12_MAX_CLUSTERS: u64 = 4084;
const FAT16_MAX_CLUSTERS: u64 = 65_524;
/// FAT32 entries are 28 bits; 0x0FFFFFF7 is "bad", so the last usable cluster is 0x0FFFFFF6.
const FAT32_MAX_CLUSTERS: u64 = 0x0FFF_FFF5;
/// First data cluster number (clusters 0 and 1 are reserved).
pub(super) const FIRST_CLUSTER: u32 = 2;

/// FAT width.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FatType {
    Fat12,
    Fat16,
    Fat32,
}

/// The layout of a FAT volume, decoded from a validated BPB. All offsets are in bytes from the
/// start of the volume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Geometry {
    pub fat_type: FatType,
    pub bytes_per_sector: u32,
    pub cluster_bytes: u32,
    /// Data clusters (numbered 2 ..= cluster_count + 1).
    pub cluster_count: u32,
    pub total_sectors: u32,
    /// The FAT copy we read (the active one when FAT32 mirroring is off).
    pub fat_offset: u64,
    pub fat_bytes: u64,
    /// FAT12/16 fixed root directory.
    pub root_dir_offset: u64,
    pub root_dir_bytes: u64,
    /// FAT32 root directory first cluster.
    pub root_cluster: u32,
    pub data_offset: u64,
    pub volume_bytes: u64,
    pub volume_id: [u8; 4],
    /// The label in the BPB (the root directory may hold another one).
    pub boot_label: [u8; 11],
}

fn is_pow2(v: u32) -> bool {
    v != 0 && v & v.wrapping_sub(1) == 0
}

pub(super) fn overflow(what: &str) -> Error {
    Error::corrupt(format!("FAT boot sector: {what} overflows"))
}

impl Geometry {
    /// Decode and validate the boot sector (at least 0x5A bytes; 512 are normally given).
    ///
    /// FAT12 vs FAT16 is decided by the cluster count (fatgen103 §3.5), never by the
    /// `fil_sys_type` string. FAT32 is the layout with `fat_sz16 == 0` (as Linux and blkid
    /// decide it): a FAT32 BPB has no fixed root directory and no 16-bit FAT size, so it cannot
    /// be read as FAT16 even when it has fewer than 65 525 clusters (dosfstools makes such
    /// volumes with a warning). A 16-bit layout with 65 525 clusters or more is `Corrupt`.
    pub fn parse(sector: &[u8]) -> Result<Geometry> {
        let (bpb, rest) = RawBpb::read_from_prefix(sector)
            .map_err(|_| Error::corrupt("FAT boot sector: shorter than 0x24 bytes"))?;
        let (bps, spc, reserved, num_fats) = check_bpb(&bpb)?;
        let is_fat32_layout = bpb.fat_size_16.get() == 0;
        let v = VersionFields::read(&bpb, rest, is_fat32_layout)?;
        let total_sectors = match bpb.total_sectors_16.get() {
            0 => bpb.total_sectors_32.get(),
            n => u32::from(n),
        };
        let root_entries = u64::from(bpb.root_entry_count.get());
        if is_fat32_layout && root_entries != 0 {
            return Err(Error::corrupt(format!(
                "FAT32 boot sector at 0x11: {root_entries} root entries, expected 0"
            )));
        }
        let areas = Areas::compute(&bpb, &v, total_sectors, root_entries)?;
        let clusters = areas.clusters;
        let fat_type = fat_type(is_fat32_layout, clusters)?;
        if clusters == 0 {
            return Err(Error::corrupt("FAT boot sector: no data clusters"));
        }
        let cluster_count = u32::try_from(clusters).map_err(|_| overflow("cluster count"))?;
        let fat_bytes = fat_bytes_for(fat_type, clusters, v.fat_sectors, bps)?;
        let active_fat = if fat_type == FatType::Fat32 && v.ext_flags & 0x80 != 0 {
            u64::from(v.ext_flags & 0x0F)
        } else {
            0
        };
        if active_fat >= u64::from(num_fats) {
            return Err(Error::corrupt(format!(
                "FAT32 boot sector at 0x28: active FAT {active_fat}, only {num_fats} FATs"
            )));
        }
        let bps64 = u64::from(bps);
        let all_fats = areas.all_fats;
        let meta_sectors = areas.meta_sectors;
        let reserved_bytes = u64::from(reserved)
            .checked_mul(bps64)
            .ok_or_else(|| overflow("reserved area"))?;
        let fat_offset = active_fat
            .checked_mul(fat_bytes)
            .and_then(|v| v.checked_add(reserved_bytes))
            .ok_or_else(|| overflow("FAT offset"))?;
        let root_dir_offset = all_fats
            .checked_mul(bps64)
            .and_then(|v| v.checked_add(reserved_bytes))
            .ok_or_else(|| overflow("root directory offset"))?;
        let data_offset = meta_sectors
            .checked_mul(bps64)
            .ok_or_else(|| overflow("data offset"))?;
        let volume_bytes = u64::from(total_sectors)
            .checked_mul(bps64)
            .ok_or_else(|| overflow("volume size"))?;
        let cluster_bytes = bps
            .checked_mul(spc)
            .ok_or_else(|| overflow("cluster size"))?;
        let root_cluster = v.root_cluster;
        if fat_type == FatType::Fat32
            && (root_cluster < FIRST_CLUSTER || root_cluster > last_cluster(cluster_count))
        {
            return Err(Error::corrupt(format!(
                "FAT32 boot sector at 0x2c: root cluster {root_cluster}, expected 2..={}",
                last_cluster(cluster_count)
            )));
        }
        Ok(Geometry {
            fat_type,
            bytes_per_sector: bps,
            cluster_bytes,
            cluster_count,
            total_sectors,
            fat_offset,
            fat_bytes,
            root_dir_offset,
            root_dir_bytes: areas.root_dir_bytes,
            root_cluster,
            data_offset,
            volume_bytes,
            volume_id: v.volume_id,
            boot_label: v.boot_label,
        })
    }

    /// Byte offset of a data cluster (already range-checked by the caller).
    pub(super) fn cluster_offset(&self, cluster: u32) -> Result<u64> {
        u64::from(cluster)
            .checked_sub(u64::from(FIRST_CLUSTER))
            .and_then(|n| n.checked_mul(u64::from(self.cluster_bytes)))
            .and_then(|n| n.checked_add(self.data_offset))
            .ok_or_else(|| Error::corrupt(format!("FAT: cluster {cluster} is out of range")))
    }

    pub(super) fn is_valid_cluster(&self, cluster: u32) -> bool {
        cluster >= FIRST_CLUSTER && cluster <= last_cluster(self.cluster_count)
    }
}

pub(super) fn last_cluster(cluster_count: u32) -> u32 {
    // cluster_count <= FAT32_MAX_CLUSTERS, so this cannot saturate in practice
    cluster_count.saturating_add(1)
}

/// The BPB fields every FAT type shares, checked: (bytes per sector, sectors per cluster,
/// reserved sectors, FAT count).
fn check_bpb(bpb: &RawBpb) -> Result<(u32, u32, u32, u32)> {
    let bps = u32::from(bpb.bytes_per_sector.get());
    if !is_pow2(bps) || !(512..=4096).contains(&bps) {
        return Err(Error::corrupt(format!(
            "FAT boot sector at 0xb: bytes per sector {bps}, expected 512, 1024, 2048 or 4096"
        )));
    }
    let spc = u32::from(bpb.sectors_per_cluster);
    if !is_pow2(spc) {
        return Err(Error::corrupt(format!(
            "FAT boot sector at 0xd: sectors per cluster {spc}, expected a power of two"
        )));
    }
    let reserved = u32::from(bpb.reserved_sector_count.get());
    if reserved == 0 {
        return Err(Error::corrupt("FAT boot sector at 0xe: 0 reserved sectors"));
    }
    let num_fats = u32::from(bpb.num_fats);
    if num_fats == 0 {
        return Err(Error::corrupt("FAT boot sector at 0x10: 0 FATs"));
    }
    if !(bpb.media == 0xF0 || bpb.media >= 0xF8) {
        return Err(Error::corrupt(format!(
            "FAT boot sector at 0x15: media 0x{:02x}, expected 0xf0 or 0xf8..0xff",
            bpb.media
        )));
    }
    Ok((bps, spc, reserved, num_fats))
}

/// The fields whose place differs between the FAT32 and the FAT12/16 BPB.
struct VersionFields {
    fat_sectors: u32,
    root_cluster: u32,
    ext_flags: u16,
    volume_id: [u8; 4],
    boot_label: [u8; 11],
}

impl VersionFields {
    fn read(bpb: &RawBpb, rest: &[u8], is_fat32_layout: bool) -> Result<VersionFields> {
        let (fat_sectors, root_cluster, ext_flags, volume_id, boot_label) = if is_fat32_layout {
            let (b32, _) = RawBpb32::read_from_prefix(rest)
                .map_err(|_| Error::corrupt("FAT32 boot sector: shorter than 0x5a bytes"))?;
            (
                b32.fat_size_32.get(),
                b32.root_cluster.get(),
                b32.ext_flags.get(),
                b32.volume_id.get().to_le_bytes(),
                b32.volume_label,
            )
        } else {
            let (b16, _) = RawBpb16::read_from_prefix(rest)
                .map_err(|_| Error::corrupt("FAT boot sector: shorter than 0x3e bytes"))?;
            (
                u32::from(bpb.fat_size_16.get()),
                0,
                0,
                b16.volume_id.get().to_le_bytes(),
                b16.volume_label,
            )
        };
        if fat_sectors == 0 {
            return Err(Error::corrupt(
                "FAT boot sector at 0x24: FAT size is 0 sectors",
            ));
        }
        Ok(VersionFields {
            fat_sectors,
            root_cluster,
            ext_flags,
            volume_id,
            boot_label,
        })
    }
}

/// The sizes of the regions before the data area, and the data clusters after them.
struct Areas {
    root_dir_bytes: u64,
    /// Sectors of all FAT copies.
    all_fats: u64,
    /// Reserved + FAT + fixed root directory sectors.
    meta_sectors: u64,
    clusters: u64,
}

impl Areas {
    fn compute(
        bpb: &RawBpb,
        v: &VersionFields,
        total_sectors: u32,
        root_entries: u64,
    ) -> Result<Areas> {
        let bps64 = u64::from(bpb.bytes_per_sector.get());
        let spc = u32::from(bpb.sectors_per_cluster);
        let reserved = u32::from(bpb.reserved_sector_count.get());
        let num_fats = u32::from(bpb.num_fats);
        let fat_sectors = v.fat_sectors;
        // fatgen103 §3.5: RootDirSectors = ceil(RootEntCnt * 32 / BytsPerSec).
        let root_dir_bytes = root_entries
            .checked_mul(DIR_ENTRY_BYTES_U64)
            .ok_or_else(|| overflow("root directory size"))?;
        let root_dir_sectors = root_dir_bytes.div_ceil(bps64);
        let all_fats = u64::from(fat_sectors)
            .checked_mul(u64::from(num_fats))
            .ok_or_else(|| overflow("FAT area"))?;
        let meta_sectors = u64::from(reserved)
            .checked_add(all_fats)
            .and_then(|v| v.checked_add(root_dir_sectors))
            .ok_or_else(|| overflow("metadata area"))?;
        let data_sectors = u64::from(total_sectors)
            .checked_sub(meta_sectors)
            .filter(|&d| d > 0)
            .ok_or_else(|| {
                Error::corrupt(format!(
                    "FAT boot sector: {total_sectors} total sectors leave no data area after \
                     {meta_sectors} reserved/FAT/root sectors"
                ))
            })?;
        let clusters = data_sectors
            .checked_div(u64::from(spc))
            .ok_or_else(|| overflow("cluster count"))?;
        Ok(Areas {
            root_dir_bytes,
            all_fats,
            meta_sectors,
            clusters,
        })
    }
}

/// fatgen103 §3.5: the FAT type from the layout and the cluster count.
fn fat_type(is_fat32_layout: bool, clusters: u64) -> Result<FatType> {
    Ok(if is_fat32_layout {
        if clusters > FAT32_MAX_CLUSTERS {
            return Err(Error::corrupt(format!(
                "FAT32 boot sector: {clusters} clusters, at most {FAT32_MAX_CLUSTERS}"
            )));
        }
        FatType::Fat32
    } else if clusters <= FAT12_MAX_CLUSTERS {
        FatType::Fat12
    } else if clusters <= FAT16_MAX_CLUSTERS {
        FatType::Fat16
    } else {
        return Err(Error::corrupt(format!(
            "FAT boot sector: {clusters} clusters need FAT32, but the BPB at 0x16 has a \
             16-bit FAT size"
        )));
    })
}

/// The size of one FAT in bytes, after checking it holds an entry for every cluster.
fn fat_bytes_for(fat_type: FatType, clusters: u64, fat_sectors: u32, bps: u32) -> Result<u64> {
    let bps64 = u64::from(bps);
    // The FAT must hold an entry for every cluster (plus the two reserved ones).
    let entries_needed = clusters
        .checked_add(u64::from(FIRST_CLUSTER))
        .ok_or_else(|| overflow("FAT entries"))?;
    let fat_bytes = u64::from(fat_sectors)
        .checked_mul(bps64)
        .ok_or_else(|| overflow("FAT size"))?;
    let bits_needed = entries_needed
        .checked_mul(match fat_type {
            FatType::Fat12 => 12,
            FatType::Fat16 => 16,
            FatType::Fat32 => 32,
        })
        .ok_or_else(|| overflow("FAT size"))?;
    if bits_needed.div_ceil(8) > fat_bytes {
        return Err(Error::corrupt(format!(
            "FAT boot sector: a FAT of {fat_bytes} bytes cannot map {clusters} clusters"
        )));
    }
    Ok(fat_bytes)
}
