//! Byte layout of the GPT header and partition entry (UEFI spec 2.10, section 5.3.2 table 5-5
//! "GPT Header", and 5.3.3 table 5-6 "GPT Partition Entry"). All fields little-endian.

use zerocopy::little_endian::{U16, U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

/// "EFI PART" at the start of every GPT header.
pub const SIGNATURE: [u8; 8] = *b"EFI PART";
/// Revision 1.0 (the only one the spec defines).
pub const REVISION_1_0: u32 = 0x0001_0000;
/// Size of the defined header fields (the rest of the sector is reserved, zero).
pub const HEADER_BYTES: u32 = 92;
/// Size of one partition entry as defined (larger entry sizes are 128 * 2^n).
pub const ENTRY_BYTES: u32 = 128;
/// Byte offset of the header CRC32 field (zeroed while the CRC is computed).
pub const HEADER_CRC_OFFSET: usize = 0x10;
/// UTF-16 code units in a partition name.
pub const NAME_UNITS: usize = 36;

/// The GPT header (the sector it lives in continues with reserved zero bytes).
#[repr(C)]
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout, Unaligned,
)]
pub struct RawGptHeader {
    pub signature: [u8; 8],               // 0x00 "EFI PART"
    pub revision: U32,                    // 0x08 0x00010000
    pub header_size: U32,                 // 0x0C 92..=sector size
    pub header_crc32: U32,                // 0x10 CRC32 of header_size bytes, this field zero
    pub reserved: U32,                    // 0x14 zero
    pub my_lba: U64,                      // 0x18 LBA of this header
    pub alternate_lba: U64,               // 0x20 LBA of the other header
    pub first_usable_lba: U64,            // 0x28
    pub last_usable_lba: U64,             // 0x30 inclusive
    pub disk_guid: [u8; 16],              // 0x38
    pub partition_entry_lba: U64,         // 0x48 start of the entry array
    pub num_partition_entries: U32,       // 0x50
    pub size_of_partition_entry: U32,     // 0x54 128 * 2^n
    pub partition_entry_array_crc32: U32, // 0x58 CRC32 of num * size bytes
}
const _: () = assert!(core::mem::size_of::<RawGptHeader>() == 92);

/// One partition entry (the first 128 bytes of an entry of `size_of_partition_entry` bytes).
#[repr(C)]
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout, Unaligned,
)]
pub struct RawGptEntry {
    pub partition_type_guid: [u8; 16],   // 0x00 all zero: unused entry
    pub unique_partition_guid: [u8; 16], // 0x10
    pub starting_lba: U64,               // 0x20
    pub ending_lba: U64,                 // 0x28 inclusive
    pub attributes: U64,                 // 0x30
    pub partition_name: [U16; NAME_UNITS], // 0x38 UTF-16LE, NUL-terminated if shorter
}
const _: () = assert!(core::mem::size_of::<RawGptEntry>() == 128);

/// CRC32 of a header's first `header_size` bytes with the CRC field taken as zero.
/// `bytes` must hold at least 0x14 bytes; shorter input gives the CRC of what there is.
pub fn header_crc32(bytes: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    let (before, rest) = bytes.split_at(HEADER_CRC_OFFSET.min(bytes.len()));
    h.update(before);
    let zeroed = rest.len().min(4);
    h.update([0u8; 4].get(..zeroed).unwrap_or(&[]));
    h.update(rest.get(zeroed..).unwrap_or(&[]));
    h.finalize()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)] // tests: a panic is a failed test
mod tests {
    use super::*;

    #[test]
    fn crc_skips_its_own_field() {
        let mut h = [0u8; 92];
        h[..8].copy_from_slice(&SIGNATURE);
        let a = header_crc32(&h);
        h[0x10..0x14].copy_from_slice(&[1, 2, 3, 4]);
        assert_eq!(header_crc32(&h), a);
        assert_eq!(
            a,
            crc32fast::hash(&{
                let mut z = h;
                z[0x10..0x14].fill(0);
                z
            })
        );
        assert_eq!(header_crc32(&h[..3]), crc32fast::hash(&h[..3]));
        h[0x20] = 1;
        assert_ne!(header_crc32(&h), a);
    }
}
