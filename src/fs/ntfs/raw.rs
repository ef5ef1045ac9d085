//! NTFS on-disk layouts, declared once for the probe (fs/ntfs) and the shrink (shrink/ntfs):
//! the boot sector, the MFT record header and the attribute record headers. From ntfs-3g
//! `layout.h` and the Linux-NTFS "NTFS Documentation" (Russon & Fledel): "Boot Sector", "File
//! Record", "Attribute - Resident" and "Attribute - Non-resident". All fields little-endian.

use zerocopy::little_endian::{I64, U16, U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

/// `oem_id` of an NTFS boot sector.
pub const NTFS_OEM: &[u8; 8] = b"NTFS    ";
/// `magic` of an MFT record.
pub const FILE_MAGIC: &[u8; 4] = b"FILE";
/// MFT record `flags`: the record is in use.
pub const MFT_RECORD_IN_USE: u16 = 0x0001;
/// The update sequence stride is always 512 bytes, whatever the sector size.
pub const USA_STRIDE: usize = 512;

/// Attribute type codes (ntfs-3g `ATTR_TYPES`).
pub const ATTR_ATTRIBUTE_LIST: u32 = 0x20;
pub const ATTR_VOLUME_NAME: u32 = 0x60;
pub const ATTR_VOLUME_INFORMATION: u32 = 0x70;
pub const ATTR_DATA: u32 = 0x80;
pub const ATTR_INDEX_ROOT: u32 = 0x90;
pub const ATTR_INDEX_ALLOCATION: u32 = 0xA0;
pub const ATTR_BITMAP: u32 = 0xB0;
/// The type code that ends a record's attribute list.
pub const ATTR_END: u32 = 0xFFFF_FFFF;
/// Attribute flags (ntfs-3g `ATTR_FLAGS`).
pub const ATTR_IS_COMPRESSED: u16 = 0x00FF;
pub const ATTR_IS_ENCRYPTED: u16 = 0x4000;

/// NTFS boot sector (ntfs-3g `NTFS_BOOT_SECTOR`).
#[derive(Debug, Clone, Copy, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct RawNtfsBootSector {
    pub jump: [u8; 3],                 // 0x00
    pub oem_id: [u8; 8],               // 0x03 "NTFS    "
    pub bytes_per_sector: U16,         // 0x0B 256..=4096, power of two
    pub sectors_per_cluster: u8,       // 0x0D 1..=128, or 0xF4..=0xFF meaning 2^(256 - v)
    pub reserved_sectors: U16,         // 0x0E must be 0
    pub fats: u8,                      // 0x10 must be 0
    pub root_entries: U16,             // 0x11 must be 0
    pub sectors: U16,                  // 0x13 must be 0
    pub media_type: u8,                // 0x15
    pub sectors_per_fat: U16,          // 0x16 must be 0
    pub sectors_per_track: U16,        // 0x18
    pub heads: U16,                    // 0x1A
    pub hidden_sectors: U32,           // 0x1C
    pub large_sectors: U32,            // 0x20 must be 0
    pub physical_drive: u8,            // 0x24
    pub current_head: u8,              // 0x25
    pub extended_boot_signature: u8,   // 0x26
    pub reserved2: u8,                 // 0x27
    pub number_of_sectors: U64,        // 0x28 volume size, excluding the backup boot sector
    pub mft_lcn: U64,                  // 0x30 first cluster of $MFT
    pub mftmirr_lcn: U64,              // 0x38 first cluster of $MFTMirr
    pub clusters_per_mft_record: u8,   // 0x40 i8: > 0 clusters, < 0 record = 2^(-v) bytes
    pub reserved0: [u8; 3],            // 0x41
    pub clusters_per_index_record: u8, // 0x44 same encoding
    pub reserved1: [u8; 3],            // 0x45
    pub volume_serial_number: U64,     // 0x48 blkid prints it as %016X
    pub checksum: U32,                 // 0x50
    pub bootstrap: [u8; 426],          // 0x54
    pub end_of_sector_marker: U16,     // 0x1FE 0xAA55
}
const _: () = assert!(size_of::<RawNtfsBootSector>() == 512);

/// MFT record header (ntfs-3g `MFT_RECORD`, NTFS 3.1).
#[derive(Debug, Clone, Copy, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct RawMftRecord {
    pub magic: [u8; 4],          // 0x00 "FILE"
    pub usa_ofs: U16,            // 0x04 offset of the update sequence array
    pub usa_count: U16,          // 0x06 1 + number of 512-byte strides
    pub lsn: U64,                // 0x08
    pub sequence_number: U16,    // 0x10
    pub link_count: U16,         // 0x12
    pub attrs_offset: U16,       // 0x14 first attribute
    pub flags: U16,              // 0x16 0x0001 in use
    pub bytes_in_use: U32,       // 0x18
    pub bytes_allocated: U32,    // 0x1C
    pub base_mft_record: U64,    // 0x20
    pub next_attr_instance: U16, // 0x28
    pub reserved: U16,           // 0x2A
    pub mft_record_number: U32,  // 0x2C
}
const _: () = assert!(size_of::<RawMftRecord>() == 0x30);

/// The header every attribute record starts with (ntfs-3g `ATTR_RECORD`, first 16 bytes).
#[derive(Debug, Clone, Copy, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct RawAttrHeader {
    pub kind: U32,        // 0x00 attribute type; ATTR_END ends the list
    pub length: U32,      // 0x04 length of the attribute record, 8-byte multiple
    pub non_resident: u8, // 0x08
    pub name_length: u8,  // 0x09 in UTF-16 units
    pub name_offset: U16, // 0x0A
    pub flags: U16,       // 0x0C ATTR_IS_COMPRESSED / ATTR_IS_ENCRYPTED / ATTR_IS_SPARSE
    pub instance: U16,    // 0x0E
}
const _: () = assert!(size_of::<RawAttrHeader>() == 0x10);

/// A resident attribute record's header (ntfs-3g `ATTR_RECORD`, resident form).
#[derive(Debug, Clone, Copy, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct RawResidentAttr {
    pub header: RawAttrHeader, // 0x00
    pub value_length: U32,     // 0x10
    pub value_offset: U16,     // 0x14 from the start of the attribute record
    pub resident_flags: u8,    // 0x16
    pub reserved: u8,          // 0x17
}
const _: () = assert!(size_of::<RawResidentAttr>() == 0x18);

/// A non-resident attribute record's header (ntfs-3g `ATTR_RECORD`, non-resident form).
/// Compressed and sparse attributes carry a `compressed_size` (i64) at 0x40 after it.
#[derive(Debug, Clone, Copy, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct RawNonResidentAttr {
    pub header: RawAttrHeader,     // 0x00
    pub lowest_vcn: I64,           // 0x10 first VCN this record maps
    pub highest_vcn: I64,          // 0x18 last VCN this record maps
    pub mapping_pairs_offset: U16, // 0x20
    pub compression_unit: u8,      // 0x22 log2 of clusters per compression unit
    pub reserved: [u8; 5],         // 0x23
    pub allocated_size: I64,       // 0x28 bytes allocated (clusters x cluster size)
    pub data_size: I64,            // 0x30 logical size
    pub initialized_size: I64,     // 0x38 bytes written; beyond reads as zero
}
const _: () = assert!(size_of::<RawNonResidentAttr>() == 0x40);

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn boot_sector_round_trip() {
        let b = super::super::tests::boot_sector();
        let bs = RawNtfsBootSector::read_from_bytes(&b).unwrap();
        assert_eq!(&bs.oem_id, NTFS_OEM);
        assert_eq!(bs.bytes_per_sector.get(), 512);
        assert_eq!(bs.mft_lcn.get(), 4);
        assert_eq!(bs.volume_serial_number.get(), 0x0123_4567_89AB_CDEF);
        assert_eq!(bs.end_of_sector_marker.get(), 0xAA55);
        assert_eq!(
            bs.as_bytes(),
            &b[..],
            "decode -> encode gives the same bytes"
        );
        assert!(RawNtfsBootSector::read_from_bytes(&b[..511]).is_err());
    }

    #[test]
    fn attribute_headers_share_their_first_16_bytes() {
        let mut a = [0u8; 0x40];
        a[0..4].copy_from_slice(&ATTR_DATA.to_le_bytes()); // kind
        a[4..8].copy_from_slice(&0x48u32.to_le_bytes()); // length
        a[8] = 1; // non-resident
        a[0x0C..0x0E].copy_from_slice(&0x4000u16.to_le_bytes()); // flags
        a[0x10..0x14].copy_from_slice(&6u32.to_le_bytes()); // value_length / lowest_vcn
        a[0x14..0x16].copy_from_slice(&0x18u16.to_le_bytes()); // value_offset
        a[0x30..0x38].copy_from_slice(&4096i64.to_le_bytes()); // data_size
        let (r, _) = RawResidentAttr::read_from_prefix(&a).unwrap();
        let (n, _) = RawNonResidentAttr::read_from_prefix(&a).unwrap();
        assert_eq!(r.header.as_bytes(), n.header.as_bytes());
        assert_eq!(r.header.kind.get(), ATTR_DATA);
        assert_eq!(n.header.flags.get(), ATTR_IS_ENCRYPTED);
        assert_eq!((r.value_length.get(), r.value_offset.get()), (6, 0x18));
        assert_eq!(
            (n.lowest_vcn.get(), n.data_size.get()),
            (0x0018_0000_0006, 4096)
        );
        assert_eq!(n.as_bytes(), &a[..]);
    }
}
