//! Byte layouts of a registry hive file (regf), declared once.
//!
//! Source: M. Suhanov, "Windows registry file format specification" (msuhanov/regf), sections
//! "Base block", "Hive bin", "Cells" and "Format of transaction log files". hivex
//! `lib/hivex-internal.h` agrees. All fields are little-endian. Cell offsets are relative to the
//! start of the hive bins data (file offset 0x1000).

use zerocopy::little_endian::{U16, U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

/// Size of the base block (the first "page" of the file).
pub const BASE_BLOCK_BYTES: usize = 4096;
/// The base block checksum covers the first 508 bytes; it is stored at 508.
pub const CHECKSUM_COVERED_BYTES: usize = 508;
/// Hive bins are multiples of this.
pub const HBIN_ALIGN: usize = 4096;
/// Size of a hive bin header.
pub const HBIN_HEADER_BYTES: usize = 32;
/// "Invalid offset" marker in cell references.
pub const NO_CELL: u32 = 0xFFFF_FFFF;

pub const REGF_SIGNATURE: [u8; 4] = *b"regf";
pub const HBIN_SIGNATURE: [u8; 4] = *b"hbin";
pub const NK_SIGNATURE: [u8; 2] = *b"nk";
pub const VK_SIGNATURE: [u8; 2] = *b"vk";
pub const SK_SIGNATURE: [u8; 2] = *b"sk";
pub const LF_SIGNATURE: [u8; 2] = *b"lf";
pub const LH_SIGNATURE: [u8; 2] = *b"lh";
pub const LI_SIGNATURE: [u8; 2] = *b"li";
pub const RI_SIGNATURE: [u8; 2] = *b"ri";
pub const DB_SIGNATURE: [u8; 2] = *b"db";
/// Transaction log entry of the new (Windows 8.1+) format.
pub const HVLE_SIGNATURE: [u8; 4] = *b"HvLE";

/// Base block file type: primary file.
pub const FILE_TYPE_PRIMARY: u32 = 0;
/// Base block file type of a transaction log in the new format (HvLE entries).
pub const FILE_TYPE_LOG_NEW: u32 = 6;
/// Base block file format: direct memory load.
pub const FILE_FORMAT_DIRECT: u32 = 1;

/// nk flag: key is the hive's entry point (root).
pub const KEY_HIVE_ENTRY: u16 = 0x0004;
/// nk flag: key cannot be deleted.
pub const KEY_NO_DELETE: u16 = 0x0008;
/// nk flag: the name is stored as Latin-1 bytes ("compressed"), else UTF-16LE.
pub const KEY_COMP_NAME: u16 = 0x0020;
/// vk flag: the value name is stored as Latin-1 bytes.
pub const VALUE_COMP_NAME: u16 = 0x0001;
/// Bit 31 of the vk data size: the data (at most 4 bytes) sits in the data offset field.
pub const DATA_INLINE: u32 = 0x8000_0000;
/// Largest data one `db` segment (or one plain data cell in hives >= 1.4) holds.
pub const BIG_DATA_SEGMENT_BYTES: usize = 16344;

/// The base block (spec "Base block"): the first 512 bytes carry all fields; the rest of the
/// 4096 bytes is reserved (boot type/recover at 4040/4044).
#[repr(C)]
#[derive(Debug, Clone, Copy, FromBytes, IntoBytes, Immutable, KnownLayout, Unaligned)]
pub struct RawBaseBlock {
    pub signature: [u8; 4],       // 0x000 "regf"
    pub primary_sequence: U32,    // 0x004
    pub secondary_sequence: U32,  // 0x008 equal to primary when the hive is clean
    pub last_written: U64,        // 0x00C FILETIME
    pub major_version: U32,       // 0x014 1
    pub minor_version: U32,       // 0x018 3 (BCD), 5, 6
    pub file_type: U32,           // 0x01C 0 primary, 1/2 old logs, 6 new log
    pub file_format: U32,         // 0x020 1
    pub root_cell_offset: U32,    // 0x024
    pub hive_bins_data_size: U32, // 0x028 multiple of 4096
    pub clustering_factor: U32,   // 0x02C 1
    pub file_name: [u8; 64],      // 0x030 UTF-16LE, tail of the path
    pub reserved: [u8; 396],      // 0x070 RmId, LogId, flags, TmId, "rmtm", ...
    pub checksum: U32,            // 0x1FC XOR-32 of 0x000..0x1FC
}
const _: () = assert!(core::mem::size_of::<RawBaseBlock>() == 512);

/// Hive bin header (spec "Hive bin").
#[repr(C)]
#[derive(Debug, Clone, Copy, FromBytes, IntoBytes, Immutable, KnownLayout, Unaligned)]
pub struct RawHbin {
    pub signature: [u8; 4], // 0x00 "hbin"
    /// Offset of this bin relative to the start of the hive bins data.
    pub offset: U32, // 0x04
    pub size: U32,          // 0x08 multiple of 4096
    pub reserved: [u8; 8],  // 0x0C
    pub timestamp: U64,     // 0x14 FILETIME (meaningful in the first bin only)
    pub spare: U32,         // 0x1C
}
const _: () = assert!(core::mem::size_of::<RawHbin>() == HBIN_HEADER_BYTES);

/// Key node (spec "Key node"), without its name; the name follows at 0x4C.
#[repr(C)]
#[derive(Debug, Clone, Copy, FromBytes, IntoBytes, Immutable, KnownLayout, Unaligned)]
pub struct RawNk {
    pub signature: [u8; 2],         // 0x00 "nk"
    pub flags: U16,                 // 0x02
    pub last_written: U64,          // 0x04 FILETIME
    pub access_bits: U32,           // 0x0C
    pub parent: U32,                // 0x10
    pub subkey_count: U32,          // 0x14
    pub volatile_subkey_count: U32, // 0x18
    pub subkey_list: U32,           // 0x1C
    pub volatile_subkey_list: U32,  // 0x20
    pub value_count: U32,           // 0x24
    pub value_list: U32,            // 0x28
    pub security: U32,              // 0x2C sk cell
    pub class_name: U32,            // 0x30
    pub max_subkey_name_bytes: U32, // 0x34 UTF-16 bytes (low 16 bits)
    pub max_class_name_bytes: U32,  // 0x38
    pub max_value_name_bytes: U32,  // 0x3C
    pub max_value_data_bytes: U32,  // 0x40
    pub work_var: U32,              // 0x44
    pub name_length: U16,           // 0x48 bytes as stored
    pub class_name_length: U16,     // 0x4A
}
const _: () = assert!(core::mem::size_of::<RawNk>() == 0x4C);

/// Key value (spec "Key value"), without its name; the name follows at 0x14.
#[repr(C)]
#[derive(Debug, Clone, Copy, FromBytes, IntoBytes, Immutable, KnownLayout, Unaligned)]
pub struct RawVk {
    pub signature: [u8; 2], // 0x00 "vk"
    pub name_length: U16,   // 0x02 0 = the default value
    /// Bit 31 set: the data sits in `data_offset` itself.
    pub data_size: U32, // 0x04
    pub data_offset: U32,   // 0x08
    pub data_type: U32,     // 0x0C REG_*
    pub flags: U16,         // 0x10
    pub spare: U16,         // 0x12
}
const _: () = assert!(core::mem::size_of::<RawVk>() == 0x14);

/// Key security (spec "Key security"); the self-relative security descriptor follows at 0x14.
#[repr(C)]
#[derive(Debug, Clone, Copy, FromBytes, IntoBytes, Immutable, KnownLayout, Unaligned)]
pub struct RawSk {
    pub signature: [u8; 2],   // 0x00 "sk"
    pub reserved: U16,        // 0x02
    pub flink: U32,           // 0x04 next sk in the circular list
    pub blink: U32,           // 0x08 previous sk
    pub reference_count: U32, // 0x0C number of nk cells using it
    pub descriptor_size: U32, // 0x10
}
const _: () = assert!(core::mem::size_of::<RawSk>() == 0x14);

/// Header of a subkey list (lf, lh, li, ri) or of a big data record's count.
#[repr(C)]
#[derive(Debug, Clone, Copy, FromBytes, IntoBytes, Immutable, KnownLayout, Unaligned)]
pub struct RawListHeader {
    pub signature: [u8; 2], // 0x00
    pub count: U16,         // 0x02
}
const _: () = assert!(core::mem::size_of::<RawListHeader>() == 4);

/// One element of an lf/lh list: key node offset + name hint (lf) or name hash (lh).
#[repr(C)]
#[derive(Debug, Clone, Copy, FromBytes, IntoBytes, Immutable, KnownLayout, Unaligned)]
pub struct RawHashEntry {
    pub key_node: U32, // 0x00
    pub hash: U32,     // 0x04
}
const _: () = assert!(core::mem::size_of::<RawHashEntry>() == 8);

/// Big data record (spec "Big data"): the value data is split in segments listed in a cell.
#[repr(C)]
#[derive(Debug, Clone, Copy, FromBytes, IntoBytes, Immutable, KnownLayout, Unaligned)]
pub struct RawDb {
    pub signature: [u8; 2], // 0x00 "db"
    pub segment_count: U16, // 0x02
    pub segment_list: U32,  // 0x04 cell of u32 offsets
}
const _: () = assert!(core::mem::size_of::<RawDb>() == 8);

/// Header of a new-format transaction log entry (spec "New format", "Log entry").
#[repr(C)]
#[derive(Debug, Clone, Copy, FromBytes, IntoBytes, Immutable, KnownLayout, Unaligned)]
pub struct RawLogEntry {
    pub signature: [u8; 4],       // 0x00 "HvLE"
    pub size: U32,                // 0x04 whole entry, multiple of 512
    pub flags: U32,               // 0x08 copy of the base block flags
    pub sequence: U32,            // 0x0C
    pub hive_bins_data_size: U32, // 0x10
    pub dirty_page_count: U32,    // 0x14
    /// Marvin32 of the entry from 0x28 to its end.
    pub hash1: U64, // 0x18
    /// Marvin32 of the first 32 bytes of the entry (hash1 included).
    pub hash2: U64, // 0x20
}
const _: () = assert!(core::mem::size_of::<RawLogEntry>() == 0x28);

/// A dirty page reference of a log entry: where the page goes in the hive bins data.
#[repr(C)]
#[derive(Debug, Clone, Copy, FromBytes, IntoBytes, Immutable, KnownLayout, Unaligned)]
pub struct RawDirtyPage {
    pub offset: U32, // 0x00 relative to the start of the hive bins data
    pub size: U32,   // 0x04
}
const _: () = assert!(core::mem::size_of::<RawDirtyPage>() == 8);

/// XOR-32 checksum of the first 508 bytes of a base block (spec "Base block": 0 becomes 1 and
/// 0xFFFFFFFF becomes 0xFFFFFFFE). `block` shorter than 508 bytes gives `None`.
pub fn base_block_checksum(block: &[u8]) -> Option<u32> {
    let covered = block.get(..CHECKSUM_COVERED_BYTES)?;
    let x = covered
        .chunks_exact(4)
        .map(|c| c.try_into().map(u32::from_le_bytes).unwrap_or(0))
        .fold(0u32, |a, w| a ^ w);
    Some(match x {
        0 => 1,
        0xFFFF_FFFF => 0xFFFF_FFFE,
        x => x,
    })
}

/// The lh hash of a key name (spec "Hash leaf"): H = 37 * H + upcase(c) over its UTF-16 units.
pub fn lh_hash(name: &str) -> u32 {
    name.encode_utf16()
        .map(upcase_unit)
        .fold(0u32, |h, c| h.wrapping_mul(37).wrapping_add(u32::from(c)))
}

/// The lf hint of a key name (spec "Fast leaf"): its first 4 characters as stored (Latin-1
/// bytes of a compressed name; for a UTF-16 name, the low byte of its first 4 units), padded with
/// zeros.
pub fn lf_hint(name: &str) -> u32 {
    let mut hint = [0u8; 4];
    for (slot, unit) in hint.iter_mut().zip(name.encode_utf16()) {
        *slot = unit.to_le_bytes()[0];
    }
    u32::from_le_bytes(hint)
}

/// Upper-case one UTF-16 unit as Windows' RtlUpcaseUnicodeChar does for the characters that
/// occur in key and value names: a simple one-to-one upper-case mapping inside the BMP; units
/// whose upper case is not a single BMP unit (e.g. 'ß') stay as they are.
pub fn upcase_unit(unit: u16) -> u16 {
    if unit < 0x80 {
        return u16::from(u8::try_from(unit).map_or(0, |b| b.to_ascii_uppercase()));
    }
    let Some(c) = char::from_u32(u32::from(unit)) else {
        return unit; // a surrogate half
    };
    let mut up = c.to_uppercase();
    match (up.next(), up.next()) {
        (Some(u), None) => u16::try_from(u32::from(u)).unwrap_or(unit),
        _ => unit,
    }
}

/// Names compared as Windows does: equal after upper-casing each UTF-16 unit.
pub fn names_equal(a: &str, b: &str) -> bool {
    a.encode_utf16()
        .map(upcase_unit)
        .eq(b.encode_utf16().map(upcase_unit))
}

/// The order Windows keeps subkey lists in: by upper-cased UTF-16 units.
pub fn name_order(a: &str, b: &str) -> core::cmp::Ordering {
    a.encode_utf16()
        .map(upcase_unit)
        .cmp(b.encode_utf16().map(upcase_unit))
}
