//! Byte layouts of the FAT32 structures the ESP builder checks and patches, and the conversion of
//! Unix time to FAT timestamps.
//!
//! Source: Microsoft "FAT: General Overview of On-Disk Format" (fatgen103), sections 3.1-3.3
//! (BPB), 5 (FSInfo) and 6 (directory entries). All fields are little-endian.

use zerocopy::little_endian::{U16, U32};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// `BS_BootSig` value that says the three fields after it (volume id, label, type) are present.
pub const EXTENDED_BOOT_SIGNATURE: u8 = 0x29;
/// `BS_FilSysType` of a FAT32 volume (informational only, but blkid and people read it).
pub const FAT32_FS_TYPE: [u8; 8] = *b"FAT32   ";
/// The two bytes at offset 0x1FE of a boot sector (fatgen103 section 3.2).
pub const BOOT_SIGNATURE: [u8; 2] = [0x55, 0xAA];
/// `FSI_LeadSig`, `FSI_StrucSig` and `FSI_TrailSig` (fatgen103 section 5).
pub const FSINFO_LEAD_SIGNATURE: u32 = 0x4161_5252;
pub const FSINFO_STRUCT_SIGNATURE: u32 = 0x6141_7272;
pub const FSINFO_TRAIL_SIGNATURE: u32 = 0xAA55_0000;
/// `BPB_Media` for fixed disks; FAT[0] repeats it in its low byte.
pub const MEDIA_FIXED_DISK: u8 = 0xF8;
/// Directory entry attribute bits (fatgen103 section 6).
pub const ATTR_VOLUME_ID: u8 = 0x08;
pub const ATTR_DIRECTORY: u8 = 0x10;
pub const ATTR_LONG_NAME: u8 = 0x0F;
/// The mask that picks the 28 meaningful bits of a FAT32 entry.
pub const FAT32_ENTRY_MASK: u32 = 0x0FFF_FFFF;

/// The FAT32 boot sector: BPB (fatgen103 section 3.1) plus the FAT32 extension (section 3.3).
#[derive(Debug, Clone, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
pub struct RawFat32BootSector {
    pub jump_boot: [u8; 3],         // 0x000 BS_jmpBoot
    pub oem_name: [u8; 8],          // 0x003 BS_OEMName
    pub bytes_per_sector: U16,      // 0x00B BPB_BytsPerSec
    pub sectors_per_cluster: u8,    // 0x00D BPB_SecPerClus
    pub reserved_sector_count: U16, // 0x00E BPB_RsvdSecCnt
    pub num_fats: u8,               // 0x010 BPB_NumFATs
    pub root_entry_count: U16,      // 0x011 BPB_RootEntCnt (0 on FAT32)
    pub total_sectors_16: U16,      // 0x013 BPB_TotSec16 (0 on FAT32)
    pub media: u8,                  // 0x015 BPB_Media
    pub fat_size_16: U16,           // 0x016 BPB_FATSz16 (0 on FAT32)
    pub sectors_per_track: U16,     // 0x018 BPB_SecPerTrk
    pub num_heads: U16,             // 0x01A BPB_NumHeads
    pub hidden_sectors: U32,        // 0x01C BPB_HiddSec
    pub total_sectors_32: U32,      // 0x020 BPB_TotSec32
    pub fat_size_32: U32,           // 0x024 BPB_FATSz32
    pub ext_flags: U16,             // 0x028 BPB_ExtFlags
    pub fs_version: U16,            // 0x02A BPB_FSVer
    pub root_cluster: U32,          // 0x02C BPB_RootClus
    pub fs_info_sector: U16,        // 0x030 BPB_FSInfo
    pub backup_boot_sector: U16,    // 0x032 BPB_BkBootSec
    pub reserved: [u8; 12],         // 0x034 BPB_Reserved
    pub drive_number: u8,           // 0x040 BS_DrvNum
    pub reserved1: u8,              // 0x041 BS_Reserved1
    pub boot_signature: u8,         // 0x042 BS_BootSig
    pub volume_id: U32,             // 0x043 BS_VolID
    pub volume_label: [u8; 11],     // 0x047 BS_VolLab
    pub fs_type: [u8; 8],           // 0x052 BS_FilSysType
    pub boot_code: [u8; 420],       // 0x05A boot code
    pub signature: [u8; 2],         // 0x1FE 0x55 0xAA
}
const _: () = assert!(core::mem::size_of::<RawFat32BootSector>() == 512);

/// The FSInfo sector (fatgen103 section 5).
#[derive(Debug, Clone, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
pub struct RawFsInfo {
    pub lead_signature: U32,   // 0x000 FSI_LeadSig 0x41615252
    pub reserved1: [u8; 480],  // 0x004 FSI_Reserved1
    pub struct_signature: U32, // 0x1E4 FSI_StrucSig 0x61417272
    pub free_count: U32,       // 0x1E8 FSI_Free_Count
    pub next_free: U32,        // 0x1EC FSI_Nxt_Free
    pub reserved2: [u8; 12],   // 0x1F0 FSI_Reserved2
    pub trail_signature: U32,  // 0x1FC FSI_TrailSig 0xAA550000
}
const _: () = assert!(core::mem::size_of::<RawFsInfo>() == 512);

/// A short (8.3) directory entry (fatgen103 section 6).
#[derive(Debug, Clone, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
pub struct RawDirEntry {
    pub name: [u8; 11],          // 0x00 DIR_Name
    pub attributes: u8,          // 0x0B DIR_Attr
    pub nt_reserved: u8,         // 0x0C DIR_NTRes (case flags)
    pub create_time_tenth: u8,   // 0x0D DIR_CrtTimeTenth
    pub create_time: U16,        // 0x0E DIR_CrtTime
    pub create_date: U16,        // 0x10 DIR_CrtDate
    pub last_access_date: U16,   // 0x12 DIR_LstAccDate
    pub first_cluster_high: U16, // 0x14 DIR_FstClusHI
    pub write_time: U16,         // 0x16 DIR_WrtTime
    pub write_date: U16,         // 0x18 DIR_WrtDate
    pub first_cluster_low: U16,  // 0x1A DIR_FstClusLO
    pub file_size: U32,          // 0x1C DIR_FileSize
}
const _: () = assert!(core::mem::size_of::<RawDirEntry>() == 32);

/// A FAT timestamp: date and time words plus the 10 ms creation-time field.
///
/// Date: bits 15-9 year since 1980, 8-5 month, 4-0 day. Time: bits 15-11 hour, 10-5 minute,
/// 4-0 seconds / 2. Tenth: 0..=199 units of 10 ms added to the 2-second time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FatTimestamp {
    pub date: u16,
    pub time: u16,
    pub tenth: u8,
}

/// 1980-01-01T00:00:00Z, the earliest time FAT can store.
pub const FAT_EPOCH_UNIX: i64 = 315_532_800;
/// 2107-12-31T23:59:59Z, the latest time FAT can store.
pub const FAT_MAX_UNIX: i64 = 4_354_819_199;
const SECONDS_PER_DAY: i64 = 86_400;

impl FatTimestamp {
    /// The FAT time of `unix` seconds (UTC; FAT has no time zone and we never apply the local
    /// one, so the result does not depend on the machine). Times outside 1980..=2107 are clamped.
    pub fn from_unix(unix: i64) -> Self {
        let t = unix.clamp(FAT_EPOCH_UNIX, FAT_MAX_UNIX);
        let days = t.div_euclid(SECONDS_PER_DAY);
        let secs = t.rem_euclid(SECONDS_PER_DAY);
        let (year, month, day) = civil_from_days(days);
        let hour = secs / 3600;
        let minute = secs % 3600 / 60;
        let second = secs % 60;
        // Clamped above: 1980 <= year <= 2107, so the subtraction fits in 7 bits.
        let date = (((year - 1980) as u16) << 9) | ((month as u16) << 5) | day as u16;
        let time = ((hour as u16) << 11) | ((minute as u16) << 5) | (second as u16 / 2);
        let tenth = if second % 2 == 1 { 100 } else { 0 };
        FatTimestamp { date, time, tenth }
    }
}

/// Proleptic Gregorian date of a day count since 1970-01-01 (Howard Hinnant's `civil_from_days`).
/// Only called with clamped inputs (1980..=2107), so no overflow is possible.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fat_epoch_is_the_smallest_timestamp() {
        let t = FatTimestamp::from_unix(FAT_EPOCH_UNIX);
        assert_eq!((t.date, t.time, t.tenth), ((1 << 5) | 1, 0, 0));
        assert_eq!(FatTimestamp::from_unix(0), t, "1970 clamps to 1980");
        assert_eq!(FatTimestamp::from_unix(i64::MIN), t);
    }

    #[test]
    fn known_dates() {
        // 2020-09-13T12:26:40Z
        let t = FatTimestamp::from_unix(1_600_000_000);
        assert_eq!(t.date, (40 << 9) | (9 << 5) | 13);
        assert_eq!(t.time, (12 << 11) | (26 << 5) | 20);
        assert_eq!(t.tenth, 0);
        // 2000-02-29T23:59:59Z: leap day, odd second -> 100 tenths.
        let t = FatTimestamp::from_unix(951_868_799);
        assert_eq!(t.date, (20 << 9) | (2 << 5) | 29);
        assert_eq!(t.time, (23 << 11) | (59 << 5) | 29);
        assert_eq!(t.tenth, 100);
    }

    #[test]
    fn far_future_clamps_to_2107() {
        let t = FatTimestamp::from_unix(i64::MAX);
        assert_eq!(t.date, (127 << 9) | (12 << 5) | 31);
        assert_eq!(t.time, (23 << 11) | (59 << 5) | 29);
    }

    #[test]
    fn layouts_read_from_bytes() {
        let mut sector = [0u8; 512];
        sector[0x0B] = 0x00; // bytes per sector 0x0200
        sector[0x0C] = 0x02;
        sector[0x42] = EXTENDED_BOOT_SIGNATURE;
        sector[0x1FE..].copy_from_slice(&BOOT_SIGNATURE);
        let bs = RawFat32BootSector::read_from_bytes(&sector).unwrap();
        assert_eq!(bs.bytes_per_sector.get(), 512);
        assert_eq!(bs.boot_signature, EXTENDED_BOOT_SIGNATURE);
        assert!(RawFat32BootSector::read_from_bytes(&sector[..511]).is_err());
        assert!(RawDirEntry::read_from_bytes(&[0u8; 31]).is_err());
    }
}
