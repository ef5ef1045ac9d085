//! FAT on-disk layouts, declared once for the reader (fs/fat) and the ESP writer (esp/): the
//! boot sector and BPB, the FSInfo sector, short and long directory entries, and the constants
//! that go with them.
//!
//! Source: Microsoft "FAT: General Overview of On-Disk Format" (fatgen103, 2000): section 3.1
//! (BPB), 3.2 (FAT12/16 extension), 3.3 (FAT32 extension), 5 (FSInfo), 6 (directory entries),
//! 7 (long names). All fields are little-endian.

use zerocopy::little_endian::{U16, U32};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

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
/// The mask that picks the 28 meaningful bits of a FAT32 entry.
pub const FAT32_ENTRY_MASK: u32 = 0x0FFF_FFFF;
/// FAT32 entries at or above this end a chain (fatgen103 section 4).
pub const FAT32_EOC_MIN: u32 = 0x0FFF_FFF8;

/// Directory entry attribute bits (fatgen103 section 6).
pub const ATTR_READ_ONLY: u8 = 0x01;
pub const ATTR_HIDDEN: u8 = 0x02;
pub const ATTR_SYSTEM: u8 = 0x04;
pub const ATTR_VOLUME_ID: u8 = 0x08;
pub const ATTR_DIRECTORY: u8 = 0x10;
/// fatgen103 section 7: READ_ONLY | HIDDEN | SYSTEM | VOLUME_ID marks a long-name entry.
pub const ATTR_LONG_NAME: u8 = ATTR_READ_ONLY | ATTR_HIDDEN | ATTR_SYSTEM | ATTR_VOLUME_ID;
/// The attribute bits compared with [`ATTR_LONG_NAME`].
pub const ATTR_LONG_NAME_MASK: u8 = 0x3F;
/// `DIR_Name[0]`: no more entries in this directory.
pub const ENTRY_END: u8 = 0x00;
/// `DIR_Name[0]`: the entry is free (deleted).
pub const ENTRY_FREE: u8 = 0xE5;
/// `DIR_Name[0]`: the name really starts with 0xE5 (a KANJI lead byte).
pub const ENTRY_KANJI_E5: u8 = 0x05;
/// `DIR_NTRes` bits: base name / extension shown in lower case.
pub const NT_LOWER_BASE: u8 = 0x08;
pub const NT_LOWER_EXT: u8 = 0x10;
/// `LDIR_Ord` bit on the last (first stored) entry of a long name.
pub const LFN_LAST: u8 = 0x40;
/// A long name is at most 255 characters, i.e. 20 entries of 13.
pub const LFN_MAX_ENTRIES: u8 = 20;
pub const LFN_CHARS_PER_ENTRY: usize = 13;
/// Size of a directory entry, short or long.
pub const DIR_ENTRY_BYTES: usize = 32;
/// fatgen103 section 6: "a directory may not be larger than 65 536 32-byte entries".
pub const MAX_DIR_ENTRIES: u64 = 65_536;

/// fatgen103 section 3.1 "Boot Sector and BPB Structure": the fields common to FAT12/16/32.
#[derive(Debug, Clone, Copy, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct RawBpb {
    pub jump_boot: [u8; 3],         // 0x000 BS_jmpBoot: EB xx 90 or E9 xx xx
    pub oem_name: [u8; 8],          // 0x003 BS_OEMName
    pub bytes_per_sector: U16,      // 0x00B BPB_BytsPerSec: 512, 1024, 2048 or 4096
    pub sectors_per_cluster: u8,    // 0x00D BPB_SecPerClus: power of two
    pub reserved_sector_count: U16, // 0x00E BPB_RsvdSecCnt: never 0
    pub num_fats: u8,               // 0x010 BPB_NumFATs: usually 2
    pub root_entry_count: U16,      // 0x011 BPB_RootEntCnt: FAT12/16 root entries; 0 on FAT32
    pub total_sectors_16: U16,      // 0x013 BPB_TotSec16: 0 when total_sectors_32 is used
    pub media: u8,                  // 0x015 BPB_Media: F0, F8..FF
    pub fat_size_16: U16,           // 0x016 BPB_FATSz16: sectors per FAT; 0 on FAT32
    pub sectors_per_track: U16,     // 0x018 BPB_SecPerTrk
    pub num_heads: U16,             // 0x01A BPB_NumHeads
    pub hidden_sectors: U32,        // 0x01C BPB_HiddSec
    pub total_sectors_32: U32,      // 0x020 BPB_TotSec32
}
const _: () = assert!(size_of::<RawBpb>() == 0x24);

/// fatgen103 section 3.2 "FAT12 and FAT16 Structure Starting at Offset 36".
#[derive(Debug, Clone, Copy, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct RawBpb16 {
    pub drive_number: u8,       // 0x024 BS_DrvNum
    pub reserved1: u8,          // 0x025 BS_Reserved1
    pub boot_signature: u8,     // 0x026 BS_BootSig: 0x29 when the next three are present
    pub volume_id: U32,         // 0x027 BS_VolID
    pub volume_label: [u8; 11], // 0x02B BS_VolLab
    pub fs_type: [u8; 8],       // 0x036 BS_FilSysType: informational only ("FAT12   ")
}
const _: () = assert!(size_of::<RawBpb16>() == 0x3E - 0x24);

/// fatgen103 section 3.3 "FAT32 Structure Starting at Offset 36".
#[derive(Debug, Clone, Copy, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct RawBpb32 {
    pub fat_size_32: U32,        // 0x024 BPB_FATSz32: sectors per FAT
    pub ext_flags: U16,          // 0x028 BPB_ExtFlags: bit 7 mirroring off, bits 0-3 active FAT
    pub fs_version: U16,         // 0x02A BPB_FSVer: must be 0
    pub root_cluster: U32,       // 0x02C BPB_RootClus: first cluster of the root directory
    pub fs_info_sector: U16,     // 0x030 BPB_FSInfo
    pub backup_boot_sector: U16, // 0x032 BPB_BkBootSec
    pub reserved: [u8; 12],      // 0x034 BPB_Reserved
    pub drive_number: u8,        // 0x040 BS_DrvNum
    pub reserved1: u8,           // 0x041 BS_Reserved1
    pub boot_signature: u8,      // 0x042 BS_BootSig: 0x29
    pub volume_id: U32,          // 0x043 BS_VolID
    pub volume_label: [u8; 11],  // 0x047 BS_VolLab
    pub fs_type: [u8; 8],        // 0x052 BS_FilSysType: "FAT32   "
}
const _: () = assert!(size_of::<RawBpb32>() == 0x5A - 0x24);

/// A whole FAT32 boot sector: the BPB, the FAT32 extension, boot code and the signature.
#[derive(Debug, Clone, Copy, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct RawFat32BootSector {
    pub bpb: RawBpb,          // 0x000
    pub bpb32: RawBpb32,      // 0x024
    pub boot_code: [u8; 420], // 0x05A
    pub signature: [u8; 2],   // 0x1FE 0x55 0xAA
}
const _: () = assert!(size_of::<RawFat32BootSector>() == 512);

/// The FSInfo sector (fatgen103 section 5).
#[derive(Debug, Clone, Copy, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
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
const _: () = assert!(size_of::<RawFsInfo>() == 512);

/// fatgen103 section 6 "FAT Directory Structure": a short (8.3) directory entry.
#[derive(Debug, Clone, Copy, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct RawDirEntry {
    pub name: [u8; 11],  // 0x00 DIR_Name: 8.3, space padded; [0]: ENTRY_END/FREE/KANJI
    pub attributes: u8,  // 0x0B DIR_Attr: ATTR_*
    pub nt_reserved: u8, // 0x0C DIR_NTRes: NT_LOWER_BASE / NT_LOWER_EXT
    pub create_time_tenth: u8, // 0x0D DIR_CrtTimeTenth
    pub create_time: U16, // 0x0E DIR_CrtTime
    pub create_date: U16, // 0x10 DIR_CrtDate
    pub last_access_date: U16, // 0x12 DIR_LstAccDate
    pub first_cluster_high: U16, // 0x14 DIR_FstClusHI (FAT32)
    pub write_time: U16, // 0x16 DIR_WrtTime
    pub write_date: U16, // 0x18 DIR_WrtDate
    pub first_cluster_low: U16, // 0x1A DIR_FstClusLO
    pub file_size: U32,  // 0x1C DIR_FileSize
}
const _: () = assert!(size_of::<RawDirEntry>() == DIR_ENTRY_BYTES);

impl RawDirEntry {
    /// The first cluster, from its high (FAT32) and low halves.
    pub fn first_cluster(&self) -> u32 {
        (u32::from(self.first_cluster_high.get()) << 16) | u32::from(self.first_cluster_low.get())
    }
}

/// fatgen103 section 7 "FAT Long Directory Entries".
#[derive(Debug, Clone, Copy, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct RawLfnEntry {
    pub ord: u8,         // 0x00 LDIR_Ord: 1..=20, | LFN_LAST on the last (first stored)
    pub name1: [U16; 5], // 0x01 LDIR_Name1: characters 1-5
    pub attributes: u8,  // 0x0B LDIR_Attr: ATTR_LONG_NAME
    pub kind: u8,        // 0x0C LDIR_Type: 0
    pub checksum: u8,    // 0x0D LDIR_Chksum: of the short name
    pub name2: [U16; 6], // 0x0E LDIR_Name2: characters 6-11
    pub first_cluster_low: U16, // 0x1A LDIR_FstClusLO: 0
    pub name3: [U16; 2], // 0x1C LDIR_Name3: characters 12-13
}
const _: () = assert!(size_of::<RawLfnEntry>() == DIR_ENTRY_BYTES);

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::fs::testutil::{have_tool, run, TempImage};

    #[test]
    fn layouts_read_from_bytes() {
        let mut sector = [0u8; 512];
        sector[0x0B] = 0x00; // bytes per sector 0x0200
        sector[0x0C] = 0x02;
        sector[0x42] = EXTENDED_BOOT_SIGNATURE;
        sector[0x1FE..].copy_from_slice(&BOOT_SIGNATURE);
        let bs = RawFat32BootSector::read_from_bytes(&sector).unwrap();
        assert_eq!(bs.bpb.bytes_per_sector.get(), 512);
        assert_eq!(bs.bpb32.boot_signature, EXTENDED_BOOT_SIGNATURE);
        assert!(RawFat32BootSector::read_from_bytes(&sector[..511]).is_err());
        assert!(RawDirEntry::read_from_bytes(&[0u8; 31]).is_err());
        let mut e = [0u8; 32];
        e[0x14..0x16].copy_from_slice(&0x0012u16.to_le_bytes()); // first cluster high
        e[0x1A..0x1C].copy_from_slice(&0x3456u16.to_le_bytes()); // first cluster low
        assert_eq!(
            RawDirEntry::read_from_bytes(&e).unwrap().first_cluster(),
            0x0012_3456
        );
    }

    /// A boot sector and FSInfo made by mkfs.fat decode to the values asked for, and encode
    /// back to the same bytes.
    #[test]
    fn mkfs_fat_boot_sector_round_trip() {
        if !have_tool("mkfs.fat", "dosfstools") {
            return;
        }
        let img = TempImage::new("fat-raw", 64 << 20);
        run(
            "mkfs.fat",
            &[
                "-F",
                "32",
                "-S",
                "512",
                "-s",
                "1",
                "-i",
                "1234ABCD",
                "-n",
                "RAWTEST",
                img.s(),
            ],
        );
        let bytes = img.bytes();
        let bs = RawFat32BootSector::read_from_bytes(&bytes[..512]).unwrap();
        assert_eq!(bs.bpb.bytes_per_sector.get(), 512);
        assert_eq!(bs.bpb.sectors_per_cluster, 1);
        assert_eq!(bs.bpb.fat_size_16.get(), 0);
        assert_eq!(bs.bpb.total_sectors_32.get(), 64 << 11);
        assert_eq!(bs.bpb32.volume_id.get(), 0x1234_ABCD);
        assert_eq!(&bs.bpb32.volume_label, b"RAWTEST    ");
        assert_eq!(bs.bpb32.fs_type, FAT32_FS_TYPE);
        assert_eq!(bs.signature, BOOT_SIGNATURE);
        assert_eq!(bs.as_bytes(), &bytes[..512]);
        let (bpb, rest) = RawBpb::read_from_prefix(&bytes[..512]).unwrap();
        let (b32, _) = RawBpb32::read_from_prefix(rest).unwrap();
        assert_eq!(bpb.as_bytes(), bs.bpb.as_bytes());
        assert_eq!(b32.as_bytes(), bs.bpb32.as_bytes());
        let fsinfo_at = usize::from(bs.bpb32.fs_info_sector.get()) * 512;
        let fsi = RawFsInfo::read_from_bytes(&bytes[fsinfo_at..fsinfo_at + 512]).unwrap();
        assert_eq!(fsi.lead_signature.get(), FSINFO_LEAD_SIGNATURE);
        assert_eq!(fsi.struct_signature.get(), FSINFO_STRUCT_SIGNATURE);
        assert_eq!(fsi.trail_signature.get(), FSINFO_TRAIL_SIGNATURE);
        assert_eq!(fsi.as_bytes(), &bytes[fsinfo_at..fsinfo_at + 512]);
    }
}
