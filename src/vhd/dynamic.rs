//! Dynamic and differencing disks (spec: "Dynamic Disk Header Format" and "Block Allocation
//! Table and Data Blocks"): the header the footer's data offset points at, and a bounded count of
//! the allocated blocks.

use serde::Serialize;
use zerocopy::byteorder::big_endian::{U32, U64};
use zerocopy::{FromBytes, FromZeros, Immutable, IntoBytes, KnownLayout, Unaligned};

use super::footer::{hex, ones_complement_sum, printable};
use super::{DynamicInfo, Footer};
use crate::disk::Disk;
use crate::error::{Error, Result};
use crate::finding::Finding;

/// Size of the dynamic disk header.
pub const HEADER_SIZE: usize = 1024;
/// "cxsparse": the header cookie.
pub const COOKIE: [u8; 8] = *b"cxsparse";
/// The only header version the spec defines.
pub const HEADER_VERSION: u32 = 0x0001_0000;
/// A BAT entry for a block that is not allocated.
pub const BAT_UNALLOCATED: u32 = 0xFFFF_FFFF;
/// Block size Microsoft's tools use (spec: "Block Size", default 2 MiB).
pub const DEFAULT_BLOCK_SIZE: u32 = 0x0020_0000;
/// Bytes per sector: BAT entries and the block bitmap count 512-byte sectors.
const SECTOR: u64 = 512;
/// Byte offset of the header checksum, taken as zero while summing.
const CHECKSUM_OFFSET: usize = 0x24;
/// BAT entries read per chunk while counting (256 KiB of table per read).
const BAT_CHUNK_ENTRIES: u64 = 65536;
/// Parent locator entries in a header (spec: 8).
pub const PARENT_LOCATORS: usize = 8;
/// Longest parent locator path we read (bytes); real ones are a few hundred bytes.
const MAX_LOCATOR_BYTES: u32 = 64 * 1024;

/// Spec "Parent Locator Entry" (24 bytes, big-endian).
#[derive(Clone, Copy, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct RawParentLocator {
    pub platform_code: [u8; 4], // 0x00 "W2ku", "W2ru", "Mac ", "MacX", or zero
    pub platform_data_space: U32, // 0x04 space reserved for the locator (sectors, or bytes)
    pub platform_data_length: U32, // 0x08 bytes of locator data
    pub reserved: U32,          // 0x0c zero
    pub platform_data_offset: U64, // 0x10 absolute file offset of the locator data
}
const _: () = assert!(size_of::<RawParentLocator>() == 24);

/// Spec "Dynamic Disk Header Format" (1024 bytes, big-endian).
#[derive(Clone, Copy, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct RawDynamicHeader {
    pub cookie: [u8; 8],                                      // 0x000 "cxsparse"
    pub data_offset: U64,                                     // 0x008 unused, all ones
    pub table_offset: U64,                                    // 0x010 absolute offset of the BAT
    pub header_version: U32,                                  // 0x018 0x00010000
    pub max_table_entries: U32,                               // 0x01c BAT entries
    pub block_size: U32,                // 0x020 bytes per block (bitmap excluded)
    pub checksum: U32,                  // 0x024 one's complement of the byte sum
    pub parent_unique_id: [u8; 16],     // 0x028 differencing: the parent's footer unique id
    pub parent_timestamp: U32,          // 0x038 differencing: the parent's modification time
    pub reserved1: U32,                 // 0x03c zero
    pub parent_unicode_name: [u8; 512], // 0x040 UTF-16 BE file name of the parent
    pub parent_locators: [RawParentLocator; PARENT_LOCATORS], // 0x240 8 x 24 bytes
    pub reserved2: [u8; 256],           // 0x300 zero
}
const _: () = assert!(size_of::<RawDynamicHeader>() == HEADER_SIZE);

/// One parent locator of a differencing disk: where a platform-specific path to the parent is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ParentLocator {
    pub platform_code: String,
    pub data_space: u32,
    pub data_length: u32,
    pub data_offset: u64,
    /// The path, for "W2ku"/"W2ru" (UTF-16 LE) and "MacX" (UTF-8 URL) locators inside the file.
    pub path: Option<String>,
}

/// The one's-complement checksum of a dynamic header, the field at 0x24 taken as zero.
pub fn checksum(bytes: &[u8; HEADER_SIZE]) -> u32 {
    ones_complement_sum(bytes, CHECKSUM_OFFSET)
}

/// Decode a header read at `offset` (no BAT counting: `allocated_blocks` is 0, locator paths are
/// not read). Fails only when the cookie is not "cxsparse". `differencing` asks for the parent
/// name (UTF-16 BE up to the first NUL).
pub fn decode(bytes: &[u8; HEADER_SIZE], offset: u64, differencing: bool) -> Result<DynamicInfo> {
    let raw: RawDynamicHeader = zerocopy::transmute!(*bytes);
    if raw.cookie != COOKIE {
        return Err(Error::corrupt(format!(
            "dynamic disk header at 0x{offset:x}: cookie is {:?}, expected \"cxsparse\"",
            printable(&raw.cookie)
        )));
    }
    let parent_locators = raw
        .parent_locators
        .iter()
        .filter(|l| l.platform_code != [0; 4])
        .map(|l| ParentLocator {
            platform_code: printable(&l.platform_code),
            data_space: l.platform_data_space.get(),
            data_length: l.platform_data_length.get(),
            data_offset: l.platform_data_offset.get(),
            path: None,
        })
        .collect();
    Ok(DynamicInfo {
        table_offset: raw.table_offset.get(),
        header_version: raw.header_version.get(),
        max_table_entries: raw.max_table_entries.get(),
        block_size: raw.block_size.get(),
        checksum: raw.checksum.get(),
        computed_checksum: checksum(bytes),
        allocated_blocks: 0,
        parent_unique_id: hex(&raw.parent_unique_id),
        parent_timestamp: raw.parent_timestamp.get(),
        parent_name: differencing.then(|| utf16be_until_nul(&raw.parent_unicode_name)),
        offset,
        bat_entries_counted: 0,
        blocks_outside_file: 0,
        parent_locators,
    })
}

/// UTF-16 BE text up to the first NUL unit (unpaired surrogates become U+FFFD).
fn utf16be_until_nul(bytes: &[u8]) -> String {
    let units: Vec<u16> = bytes
        .as_chunks::<2>()
        .0
        .iter()
        .map(|&c| u16::from_be_bytes(c))
        .take_while(|&u| u != 0)
        .collect();
    String::from_utf16_lossy(&units)
}

/// UTF-16 LE text up to the first NUL unit.
fn utf16le_until_nul(bytes: &[u8]) -> String {
    let units: Vec<u16> = bytes
        .as_chunks::<2>()
        .0
        .iter()
        .map(|&c| u16::from_le_bytes(c))
        .take_while(|&u| u != 0)
        .collect();
    String::from_utf16_lossy(&units)
}

/// Bytes of the sector bitmap in front of each block: one bit per sector, rounded up to whole
/// sectors (spec: "Block Allocation Table and Data Blocks").
pub fn bitmap_bytes(block_size: u32) -> u64 {
    let sectors = u64::from(block_size).div_ceil(SECTOR);
    // block_size is a u32: at most 2^32 / 512 / 8 + 512 bytes, no overflow
    sectors.div_ceil(8).div_ceil(SECTOR).saturating_mul(SECTOR)
}

/// Read the header `footer` points at, check it, and count the allocated BAT entries (reading
/// at most what the file holds). Blocks must end by `data_end` (the offset of the footer at the
/// end of the file). Problems become findings; `None` when there is no readable header at all.
pub fn read(
    file: &dyn Disk,
    footer: &Footer,
    data_end: u64,
    findings: &mut Vec<Finding>,
) -> Option<DynamicInfo> {
    let len = file.len();
    let at = footer.data_offset;
    let mut buf = [0u8; HEADER_SIZE];
    if file.read_at(at, &mut buf).is_err() {
        findings.push(Finding::error(
            "vhd.dynamic.header-outside-file",
            format!(
                "footer data offset 0x{at:x}: a {HEADER_SIZE}-byte dynamic disk header does not fit in the file (0x{len:x} bytes)"
            ),
        ));
        return None;
    }
    let differencing = footer.disk_type == super::footer::DISK_TYPE_DIFFERENCING;
    let mut info = match decode(&buf, at, differencing) {
        Ok(i) => i,
        Err(e) => {
            findings.push(Finding::error("vhd.dynamic.header-cookie", e.message()));
            return None;
        }
    };
    if info.checksum != info.computed_checksum {
        findings.push(Finding::error(
            "vhd.dynamic.header-checksum",
            format!(
                "dynamic disk header at 0x{at:x}: checksum 0x{:08x}, computed 0x{:08x}",
                info.checksum, info.computed_checksum
            ),
        ));
    }
    if info.header_version != HEADER_VERSION {
        findings.push(Finding::warning(
            "vhd.dynamic.version",
            format!(
                "dynamic disk header at 0x{at:x}: version 0x{:08x}, expected 0x{HEADER_VERSION:08x}",
                info.header_version
            ),
        ));
    }
    let bs = info.block_size;
    if bs == 0 || !u64::from(bs).is_multiple_of(SECTOR) {
        findings.push(Finding::error(
            "vhd.dynamic.block-size",
            format!(
                "dynamic disk header at 0x{at:x}: block size {bs} is not a non-zero multiple of 512"
            ),
        ));
    } else if !bs.is_power_of_two() {
        findings.push(Finding::warning(
            "vhd.dynamic.block-size",
            format!(
                "dynamic disk header at 0x{at:x}: block size {bs} is not a power of two (default {DEFAULT_BLOCK_SIZE})"
            ),
        ));
    }
    // two u32 factors: below 2^64, no overflow
    let addressable = u64::from(info.max_table_entries).saturating_mul(u64::from(bs));
    if addressable < footer.current_size {
        findings.push(Finding::error(
            "vhd.dynamic.table-too-small",
            format!(
                "{} BAT entries of {bs} bytes address {addressable} bytes, but the disk claims {}",
                info.max_table_entries, footer.current_size
            ),
        ));
    }
    if differencing && info.parent_name.as_deref().is_some_and(str::is_empty) {
        findings.push(Finding::warning(
            "vhd.dynamic.parent-name",
            format!("differencing disk header at 0x{at:x}: the parent name is empty"),
        ));
    }
    count_bat(file, &mut info, data_end, findings);
    for loc in &mut info.parent_locators {
        loc.path = read_locator_path(file, loc);
    }
    Some(info)
}

/// Most BAT entries counted (16 MiB of table): at the default 2 MiB block that addresses
/// 8 TiB, four times the largest VHD (2040 GiB). A crafted table of 2^32 entries in a sparse
/// file would otherwise be read whole, 16 GiB, for a count (found by fuzzing:
/// testdata/regress/vhd-bat-four-billion-entries.bin took 14 s).
const MAX_COUNTED_ENTRIES: u64 = 1 << 22;

/// Count allocated BAT entries, over at most the entries the file holds (and at most
/// [`MAX_COUNTED_ENTRIES`]), in bounded chunks.
fn count_bat(file: &dyn Disk, info: &mut DynamicInfo, data_end: u64, findings: &mut Vec<Finding>) {
    let len = file.len();
    let table = info.table_offset;
    let entries = u64::from(info.max_table_entries);
    let table_bytes = entries.saturating_mul(4); // < 2^34: no overflow
    let fits = table.checked_add(table_bytes).is_some_and(|end| end <= len);
    let readable = if fits {
        entries
    } else {
        let readable = len.saturating_sub(table) / 4;
        findings.push(Finding::error(
            "vhd.dynamic.bat-outside-file",
            format!(
                "BAT at 0x{table:x} of {entries} entries ({table_bytes} bytes) does not fit in the file (0x{len:x} bytes); counted the {readable} entries it holds"
            ),
        ));
        readable
    };
    let readable = if readable > MAX_COUNTED_ENTRIES {
        findings.push(Finding::warning(
            "vhd.dynamic.bat-huge",
            format!(
                "BAT at 0x{table:x} has {entries} entries; counted the first {MAX_COUNTED_ENTRIES}"
            ),
        ));
        MAX_COUNTED_ENTRIES
    } else {
        readable
    };
    // both below 2^33: no overflow
    let block_span = bitmap_bytes(info.block_size).saturating_add(u64::from(info.block_size));
    let mut allocated = 0u64;
    let mut outside = 0u64;
    let mut first_outside: Option<(u64, u32)> = None;
    let mut done = 0u64;
    let mut chunk = Vec::new();
    while done < readable {
        let n = readable.saturating_sub(done).min(BAT_CHUNK_ENTRIES);
        // n <= 65536 entries: at most 256 KiB, and inside the file (checked above)
        chunk.resize(usize::try_from(n.saturating_mul(4)).unwrap_or(0), 0);
        // the table was checked against the file length: neither fails
        let Some(at) = done.checked_mul(4).and_then(|b| table.checked_add(b)) else {
            break;
        };
        if file.read_at(at, &mut chunk).is_err() {
            break;
        }
        for (index, &e) in (done..).zip(chunk.as_chunks::<4>().0) {
            let sector = u32::from_be_bytes(e);
            if sector == BAT_UNALLOCATED {
                continue;
            }
            // both counts are at most `readable` (<= 2^22): never saturate
            allocated = allocated.saturating_add(1);
            let end = u64::from(sector)
                .checked_mul(SECTOR)
                .and_then(|s| s.checked_add(block_span));
            if end.is_none_or(|end| end > data_end) {
                outside = outside.saturating_add(1);
                first_outside.get_or_insert((index, sector));
            }
        }
        done = done.saturating_add(n);
    }
    info.allocated_blocks = allocated;
    info.bat_entries_counted = done;
    info.blocks_outside_file = outside;
    if let Some((index, sector)) = first_outside {
        findings.push(Finding::error(
            "vhd.dynamic.block-outside-file",
            format!(
                "{outside} allocated block(s) extend past the data area (0x{data_end:x} bytes); first: BAT entry {index} -> sector 0x{sector:x} (offset 0x{:x})",
                u64::from(sector) * SECTOR
            ),
        ));
    }
}

/// The path a "W2ku"/"W2ru" (UTF-16 LE) or "MacX" (UTF-8) locator stores, when it lies in the
/// file and is of a sane length.
fn read_locator_path(file: &dyn Disk, loc: &ParentLocator) -> Option<String> {
    if loc.data_length == 0 || loc.data_length > MAX_LOCATOR_BYTES {
        return None;
    }
    let bytes = file
        .read_vec(loc.data_offset, u64::from(loc.data_length))
        .ok()?;
    match loc.platform_code.as_str() {
        "W2ku" | "W2ru" => Some(utf16le_until_nul(&bytes)),
        "MacX" => Some(
            String::from_utf8_lossy(&bytes)
                .trim_end_matches('\0')
                .to_string(),
        ),
        _ => None,
    }
}

/// Build a header (tests and fixtures): the given table, entries and block size, the checksum
/// computed. `parent` = (unique id, timestamp, name) for differencing disks.
pub fn encode_header(
    table_offset: u64,
    max_table_entries: u32,
    block_size: u32,
    parent: Option<([u8; 16], u32, &str)>,
) -> [u8; HEADER_SIZE] {
    let mut name = [0u8; 512];
    let (pid, pts) = match parent {
        Some((id, ts, n)) => {
            for (slot, u) in name.chunks_exact_mut(2).zip(n.encode_utf16()) {
                slot.copy_from_slice(&u.to_be_bytes());
            }
            (id, ts)
        }
        None => ([0; 16], 0),
    };
    let raw = RawDynamicHeader {
        cookie: COOKIE,
        data_offset: U64::new(u64::MAX),
        table_offset: U64::new(table_offset),
        header_version: U32::new(HEADER_VERSION),
        max_table_entries: U32::new(max_table_entries),
        block_size: U32::new(block_size),
        checksum: U32::new(0),
        parent_unique_id: pid,
        parent_timestamp: U32::new(pts),
        reserved1: U32::new(0),
        parent_unicode_name: name,
        parent_locators: [RawParentLocator::new_zeroed(); PARENT_LOCATORS],
        reserved2: [0; 256],
    };
    let mut bytes: [u8; HEADER_SIZE] = zerocopy::transmute!(raw);
    let sum = checksum(&bytes);
    bytes[CHECKSUM_OFFSET..CHECKSUM_OFFSET + 4].copy_from_slice(&sum.to_be_bytes());
    bytes
}

#[cfg(test)]
#[allow(
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::arithmetic_side_effects,
    clippy::as_conversions
)] // tests: a panic is a failed test
mod tests {
    use super::*;

    /// The first 0x28 bytes of the header `qemu-img create -f vpc F 10M` wrote at 0x200 (QEMU
    /// 10.0.2); the rest of the 1024 bytes is zero.
    const QEMU_HEADER_10M_HEAD: [u8; 0x28] = [
        b'c', b'x', b's', b'p', b'a', b'r', b's', b'e', // 0x00 cookie
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, // 0x08 data offset: unused
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x06, 0x00, // 0x10 table offset 0x600
        0x00, 0x01, 0x00, 0x00, // 0x18 header version 1.0
        0x00, 0x00, 0x00, 0x06, // 0x1c max table entries 6
        0x00, 0x20, 0x00, 0x00, // 0x20 block size 2 MiB
        0xff, 0xff, 0xf4, 0x71, // 0x24 checksum
    ];

    fn qemu_header() -> [u8; HEADER_SIZE] {
        let mut b = [0u8; HEADER_SIZE];
        b[..0x28].copy_from_slice(&QEMU_HEADER_10M_HEAD);
        b
    }

    #[test]
    fn decodes_a_qemu_header() {
        let b = qemu_header();
        let d = decode(&b, 0x200, false).unwrap();
        assert_eq!(d.table_offset, 0x600);
        assert_eq!(d.header_version, HEADER_VERSION);
        assert_eq!(d.max_table_entries, 6);
        assert_eq!(d.block_size, DEFAULT_BLOCK_SIZE);
        assert_eq!(d.checksum, 0xffff_f471);
        assert_eq!(d.computed_checksum, 0xffff_f471);
        assert_eq!(d.parent_name, None);
        assert_eq!(d.parent_unique_id, "0".repeat(32));
        assert!(d.parent_locators.is_empty());
        assert_eq!(encode_header(0x600, 6, DEFAULT_BLOCK_SIZE, None), b);
    }

    #[test]
    fn differencing_header_names_its_parent() {
        let b = encode_header(
            0x600,
            6,
            DEFAULT_BLOCK_SIZE,
            Some(([7; 16], 42, "bäse.vhd")),
        );
        let d = decode(&b, 0x200, true).unwrap();
        assert_eq!(d.checksum, d.computed_checksum);
        assert_eq!(d.parent_name.as_deref(), Some("bäse.vhd"));
        assert_eq!(d.parent_unique_id, "07".repeat(16));
        assert_eq!(d.parent_timestamp, 42);
        // 256 UTF-16 units without a NUL: the whole field, no overrun
        let long = "x".repeat(300);
        let b = encode_header(0x600, 6, DEFAULT_BLOCK_SIZE, Some(([0; 16], 0, &long)));
        let d = decode(&b, 0, true).unwrap();
        assert_eq!(d.parent_name.unwrap().len(), 256);
    }

    #[test]
    fn bad_cookie_and_checksum() {
        let mut b = qemu_header();
        b[0x1c..0x20].copy_from_slice(&[0xff; 4]); // hostile max table entries
        let d = decode(&b, 0x200, false).unwrap();
        assert_eq!(d.max_table_entries, u32::MAX);
        assert_ne!(d.checksum, d.computed_checksum);
        b[0] = b'X';
        let e = decode(&b, 0x200, false).unwrap_err();
        assert!(
            e.message().contains("0x200") && e.message().contains("Xxsparse"),
            "{e}"
        );
        assert!(decode(&[0xff; HEADER_SIZE], 0, false).is_err());
    }

    #[test]
    fn bitmap_sizes() {
        assert_eq!(bitmap_bytes(DEFAULT_BLOCK_SIZE), 512);
        assert_eq!(bitmap_bytes(512), 512);
        assert_eq!(bitmap_bytes(0), 0);
        // 2^31 bytes = 2^22 sectors = 2^19 bitmap bytes
        assert_eq!(bitmap_bytes(1 << 31), 1 << 19);
        assert_eq!(bitmap_bytes(u32::MAX), 1 << 20);
    }
}
