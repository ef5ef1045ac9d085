//! VHDX as a block map (Microsoft "[MS-VHDX] Virtual Hard Disk v2 (VHDX) File Format", v2.0):
//! file identifier, the two headers (CRC-32C, the valid one with the highest sequence number
//! wins), the two region tables, the metadata region (block size, virtual size, logical sector
//! size, HasParent, parent locator) and the BAT with its sector-bitmap entries interleaved every
//! chunk ratio payload entries. Fixed, dynamic and differencing disks are read.
//!
//! Differencing (HasParent, 2.6.2.6): the parent locator's key-value pairs (UTF-16 LE, every
//! offset and length checked against the item) name the parent by `relative_path`,
//! `volume_path` and `absolute_win32_path`, tried in that order as a differencing VHD's
//! locators are (next to the child, relative to it, in `--parent-dir`); the parent must be a
//! VHDX whose current header's DataWriteGuid is the child's `parent_linkage` (or
//! `parent_linkage2`), with the same logical sector size. A block NOT_PRESENT reads from the
//! parent, FULLY_PRESENT from the child, PARTIALLY_PRESENT sector by sector as the chunk's
//! sector bitmap block says (bit set: the child; clear: the parent), and UNDEFINED, ZERO and
//! UNMAPPED read as zero (2.5.1.1 allows zero for all three). QEMU does not read differencing
//! VHDX at all.
//!
//! Refused, with the reason: a non-empty log (the image was not closed cleanly; replaying it
//! would mean writing the input, and reading around it would show stale blocks: QEMU refuses it
//! read-only too), unknown required regions or metadata items, a parent locator of another type
//! than VHDX, a missing parent (every path tried is named) and a parent whose DataWriteGuid is
//! not the child's linkage (the parent was written after the child was made, or is another
//! disk).

mod map;
mod parent;

use std::cell::RefCell;
use std::path::Path;

use zerocopy::byteorder::little_endian::{U16, U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use super::crc32c::crc32c_without;
use super::{Format, ImageInfo, OpenOptions, Opened};
use crate::disk::Disk;
use crate::error::{Error, Result};
use crate::gpt::guid::Guid;
use map::VhdxBackend;
use parent::open_vhdx_parent;
pub use parent::{
    decode_parent_locator, LocatorEntry, ParentLocator, RawParentLocatorEntry,
    RawParentLocatorHeader, KEY_PARENT_LINKAGE, KEY_PARENT_LINKAGE2, LOCATOR_TYPE_VHDX, PATH_KEYS,
};

/// "vhdxfile" (2.2.1 File Type Identifier).
pub const FILE_SIGNATURE: [u8; 8] = *b"vhdxfile";
/// Headers at 64 KiB and 128 KiB (2.2.2), 4 KiB each.
pub const HEADER_OFFSETS: [u64; 2] = [64 << 10, 128 << 10];
pub const HEADER_BYTES: usize = 4096;
/// "head".
pub const HEADER_SIGNATURE: [u8; 4] = *b"head";
/// Region tables at 192 KiB and 256 KiB (2.2.3), 64 KiB each.
pub const REGION_TABLE_OFFSETS: [u64; 2] = [192 << 10, 256 << 10];
pub const REGION_TABLE_BYTES: usize = 64 << 10;
/// "regi".
pub const REGION_SIGNATURE: [u8; 4] = *b"regi";
/// At most 2047 region table entries (2.2.3.1).
const MAX_REGION_ENTRIES: u32 = 2047;
/// "metadata" (2.6.1.1); the table is 64 KiB, at most 2047 entries.
pub const METADATA_SIGNATURE: [u8; 8] = *b"metadata";
const METADATA_TABLE_BYTES: usize = 64 << 10;
const MAX_METADATA_ENTRIES: u16 = 2047;
/// Offset of the checksum field in headers and region tables.
const CHECKSUM_AT: usize = 4;
const MIB: u64 = 1 << 20;
/// Virtual disks up to 64 TiB (2.6.2.2).
const MAX_VIRTUAL_BYTES: u64 = 64 << 40;
/// A metadata item is at most 1 MiB (2.6.1.2).
const MAX_METADATA_ITEM_BYTES: u32 = 1 << 20;
/// A sector bitmap block is 1 MiB (2.4): one bit for each of 2^23 logical sectors (a chunk).
const SECTOR_BITMAP_BYTES: u64 = 1 << 20;
const SECTORS_PER_CHUNK: u64 = 1 << 23;

/// Region GUIDs (2.2.3.2).
pub const REGION_BAT: Guid = Guid::from_u128(0x2dc27766_f623_4200_9d64_115e9bfd4a08);
pub const REGION_METADATA: Guid = Guid::from_u128(0x8b7ca206_4790_4b9a_b8fe_575f050f886e);
/// Metadata item GUIDs (2.6.2).
pub const META_FILE_PARAMETERS: Guid = Guid::from_u128(0xcaa16737_fa36_4d43_b3b6_33f0aa44e76b);
pub const META_VIRTUAL_DISK_SIZE: Guid = Guid::from_u128(0x2fa54224_cd1b_4876_b211_5dbed83bf4b8);
pub const META_VIRTUAL_DISK_ID: Guid = Guid::from_u128(0xbeca12ab_b2e6_4523_93ef_c309e000c746);
pub const META_LOGICAL_SECTOR_SIZE: Guid = Guid::from_u128(0x8141bf1d_a96f_4709_ba47_f233a8faab5f);
pub const META_PHYSICAL_SECTOR_SIZE: Guid = Guid::from_u128(0xcda348c7_445d_4471_9cc9_e9885251c556);
pub const META_PARENT_LOCATOR: Guid = Guid::from_u128(0xa8d35f2d_b30b_454d_abf7_d3d84834ab0c);

/// BAT payload block states (2.5.1.1).
pub const PAYLOAD_NOT_PRESENT: u64 = 0;
pub const PAYLOAD_UNDEFINED: u64 = 1;
pub const PAYLOAD_ZERO: u64 = 2;
pub const PAYLOAD_UNMAPPED: u64 = 3;
pub const PAYLOAD_FULLY_PRESENT: u64 = 6;
pub const PAYLOAD_PARTIALLY_PRESENT: u64 = 7;
/// Sector bitmap block state (2.5.1.2): allocated at FileOffsetMB.
pub const SB_BLOCK_PRESENT: u64 = 6;

/// 2.2.2 Header (4 KiB; little-endian).
#[derive(Clone, Copy, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct RawHeader {
    pub signature: [u8; 4],        // 0x000 "head"
    pub checksum: U32,             // 0x004 CRC-32C of the 4 KiB, this field zero
    pub sequence_number: U64,      // 0x008 the valid header with the higher one is current
    pub file_write_guid: [u8; 16], // 0x010
    pub data_write_guid: [u8; 16], // 0x020
    pub log_guid: [u8; 16],        // 0x030 zero: the log is empty
    pub log_version: U16,          // 0x040 0
    pub version: U16,              // 0x042 1
    pub log_length: U32,           // 0x044
    pub log_offset: U64,           // 0x048
    pub reserved: [u8; 4016],      // 0x050
}
const _: () = assert!(size_of::<RawHeader>() == HEADER_BYTES);

/// 2.2.3.1 Region table header (16 bytes), followed by the entries.
#[derive(Clone, Copy, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct RawRegionTableHeader {
    pub signature: [u8; 4], // 0x00 "regi"
    pub checksum: U32,      // 0x04 CRC-32C of the 64 KiB table, this field zero
    pub entry_count: U32,   // 0x08 at most 2047
    pub reserved: U32,      // 0x0c
}
const _: () = assert!(size_of::<RawRegionTableHeader>() == 16);

/// 2.2.3.2 Region table entry (32 bytes).
#[derive(Clone, Copy, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct RawRegionEntry {
    pub guid: [u8; 16],   // 0x00 BAT, metadata, or other
    pub file_offset: U64, // 0x10 1 MiB aligned
    pub length: U32,      // 0x18 1 MiB multiple
    pub required: U32,    // 0x1c bit 0: refuse the file if the region is unknown
}
const _: () = assert!(size_of::<RawRegionEntry>() == 32);

/// 2.6.1.1 Metadata table header (32 bytes).
#[derive(Clone, Copy, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct RawMetadataHeader {
    pub signature: [u8; 8],  // 0x00 "metadata"
    pub reserved: U16,       // 0x08
    pub entry_count: U16,    // 0x0a at most 2047
    pub reserved2: [u8; 20], // 0x0c
}
const _: () = assert!(size_of::<RawMetadataHeader>() == 32);

/// 2.6.1.2 Metadata table entry (32 bytes).
#[derive(Clone, Copy, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct RawMetadataEntry {
    pub item_id: [u8; 16], // 0x00
    pub offset: U32,       // 0x10 from the start of the metadata region
    pub length: U32,       // 0x14
    pub flags: U32,        // 0x18 bit 0 IsUser, bit 1 IsVirtualDisk, bit 2 IsRequired
    pub reserved: U32,     // 0x1c
}
const _: () = assert!(size_of::<RawMetadataEntry>() == 32);
const META_FLAG_REQUIRED: u32 = 0x4;

/// 2.6.2.1 File parameters.
#[derive(Clone, Copy, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct RawFileParameters {
    pub block_size: U32, // 0x0 1 MiB .. 256 MiB, a power of two
    pub flags: U32,      // 0x4 bit 0 LeaveBlocksAllocated, bit 1 HasParent
}
const FILE_PARAM_HAS_PARENT: u32 = 0x2;

/// The header this reader uses, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub offset: u64,
    pub sequence_number: u64,
    pub file_write_guid: Guid,
    /// Changed before the first write of the virtual disk's data: a differencing child names
    /// its parent's (2.2.2).
    pub data_write_guid: Guid,
    pub log_guid: Guid,
    pub version: u16,
    pub log_offset: u64,
    pub log_length: u32,
}

/// What the metadata region says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metadata {
    pub block_bytes: u32,
    pub has_parent: bool,
    pub virtual_bytes: u64,
    pub logical_sector_bytes: u32,
    pub physical_sector_bytes: Option<u32>,
    pub virtual_disk_id: Option<[u8; 16]>,
    /// The parent locator of a differencing disk (read only when HasParent is set).
    pub parent_locator: Option<ParentLocator>,
}

fn read_array<const N: usize>(file: &dyn Disk, at: u64, what: &str) -> Result<Box<[u8; N]>> {
    let v = file
        .read_vec(at, u64::try_from(N).unwrap_or(u64::MAX))
        .map_err(|e| e.context(format!("VHDX {what} at 0x{at:x}")))?;
    v.into_boxed_slice()
        .try_into()
        .map_err(|_| Error::corrupt(format!("VHDX {what} at 0x{at:x}: short read")))
}

/// The current header: both are read, a header counts when its signature and CRC-32C are
/// right, and of two valid ones the higher sequence number wins (2.2.2.1).
pub fn read_header(file: &dyn Disk) -> Result<Header> {
    let mut best: Option<Header> = None;
    let mut why = Vec::new();
    for at in HEADER_OFFSETS {
        let bytes = match read_array::<HEADER_BYTES>(file, at, "header") {
            Ok(b) => b,
            Err(e) => {
                why.push(e.to_string());
                continue;
            }
        };
        let raw = RawHeader::read_from_bytes(&bytes[..])
            .map_err(|_| Error::corrupt("VHDX header size"))?;
        if raw.signature != HEADER_SIGNATURE {
            why.push(format!("header at 0x{at:x}: signature is not \"head\""));
            continue;
        }
        let computed = crc32c_without(&bytes[..], CHECKSUM_AT);
        if computed != raw.checksum.get() {
            why.push(format!(
                "header at 0x{at:x}: CRC-32C is 0x{:08x}, computed 0x{computed:08x}",
                raw.checksum.get()
            ));
            continue;
        }
        let h = Header {
            offset: at,
            sequence_number: raw.sequence_number.get(),
            file_write_guid: Guid(raw.file_write_guid),
            data_write_guid: Guid(raw.data_write_guid),
            log_guid: Guid(raw.log_guid),
            version: raw.version.get(),
            log_offset: raw.log_offset.get(),
            log_length: raw.log_length.get(),
        };
        if best
            .as_ref()
            .is_none_or(|b| h.sequence_number > b.sequence_number)
        {
            best = Some(h);
        }
    }
    best.ok_or_else(|| Error::corrupt(format!("VHDX: no valid header ({})", why.join("; "))))
}

/// A region: where, how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Region {
    pub offset: u64,
    pub length: u64,
}

/// The BAT and metadata regions from the first valid region table (the second is its copy).
/// Unknown regions marked required are refused (2.2.3.2).
pub fn read_regions(file: &dyn Disk) -> Result<(Region, Region)> {
    let mut why = Vec::new();
    for at in REGION_TABLE_OFFSETS {
        match read_region_table(file, at) {
            Ok(r) => return Ok(r),
            Err(e) if e.kind() == crate::error::ErrorKind::Unsupported => return Err(e),
            Err(e) => why.push(e.to_string()),
        }
    }
    Err(Error::corrupt(format!(
        "VHDX: no valid region table ({})",
        why.join("; ")
    )))
}

fn read_region_table(file: &dyn Disk, at: u64) -> Result<(Region, Region)> {
    let bytes = read_array::<REGION_TABLE_BYTES>(file, at, "region table")?;
    let (head, rest) = RawRegionTableHeader::read_from_prefix(&bytes[..])
        .map_err(|_| Error::corrupt("VHDX region table size"))?;
    if head.signature != REGION_SIGNATURE {
        return Err(Error::corrupt(format!(
            "region table at 0x{at:x}: signature is not \"regi\""
        )));
    }
    let computed = crc32c_without(&bytes[..], CHECKSUM_AT);
    if computed != head.checksum.get() {
        return Err(Error::corrupt(format!(
            "region table at 0x{at:x}: CRC-32C is 0x{:08x}, computed 0x{computed:08x}",
            head.checksum.get()
        )));
    }
    let count = head.entry_count.get();
    if count > MAX_REGION_ENTRIES {
        return Err(Error::corrupt(format!(
            "region table at 0x{at:x}: {count} entries, at most {MAX_REGION_ENTRIES}"
        )));
    }
    let (entries, _) = <[RawRegionEntry]>::ref_from_prefix_with_elems(
        rest,
        usize::try_from(count).unwrap_or(usize::MAX),
    )
    .map_err(|_| Error::corrupt("VHDX region table entries"))?;
    let mut bat = None;
    let mut meta = None;
    for e in entries {
        let r = Region {
            offset: e.file_offset.get(),
            length: u64::from(e.length.get()),
        };
        let g = Guid(e.guid);
        if g == REGION_BAT {
            bat = Some(r);
        } else if g == REGION_METADATA {
            meta = Some(r);
        } else if e.required.get() & 1 != 0 {
            return Err(Error::unsupported(format!(
                "VHDX region table at 0x{at:x}: unknown required region {g}"
            )));
        }
    }
    match (bat, meta) {
        (Some(b), Some(m)) => Ok((b, m)),
        _ => Err(Error::corrupt(format!(
            "region table at 0x{at:x}: the BAT or metadata region is missing"
        ))),
    }
}

/// The bytes of a metadata item of `min..=max` bytes, inside the region.
fn item(
    file: &dyn Disk,
    region: Region,
    e: &RawMetadataEntry,
    min: u32,
    max: u32,
) -> Result<Vec<u8>> {
    let len = e.length.get();
    let off = u64::from(e.offset.get());
    let end = off.checked_add(u64::from(len));
    if !(min..=max).contains(&len) || end.is_none_or(|end| end > region.length) {
        let want = if min == max {
            format!("{min} bytes")
        } else {
            format!("{min} to {max} bytes")
        };
        return Err(Error::corrupt(format!(
            "VHDX metadata item {}: {len} bytes at 0x{off:x} of the region (expected {want} inside its 0x{:x})",
            Guid(e.item_id),
            region.length
        )));
    }
    let at = region
        .offset
        .checked_add(off)
        .ok_or_else(|| Error::corrupt("VHDX metadata offset overflows"))?;
    file.read_vec(at, u64::from(len))
}

fn le32(b: &[u8]) -> u32 {
    b.get(..4)
        .and_then(|s| <[u8; 4]>::try_from(s).ok())
        .map_or(0, u32::from_le_bytes)
}

fn le64(b: &[u8]) -> u64 {
    b.get(..8)
        .and_then(|s| <[u8; 8]>::try_from(s).ok())
        .map_or(0, u64::from_le_bytes)
}

/// Read the metadata table and the items this reader needs (2.6).
pub fn read_metadata(file: &dyn Disk, region: Region) -> Result<Metadata> {
    if region.length < u64::try_from(METADATA_TABLE_BYTES).unwrap_or(u64::MAX) {
        return Err(Error::corrupt(format!(
            "VHDX metadata region at 0x{:x} is {} bytes, smaller than its 64 KiB table",
            region.offset, region.length
        )));
    }
    let bytes = read_array::<METADATA_TABLE_BYTES>(file, region.offset, "metadata table")?;
    let (head, rest) = RawMetadataHeader::read_from_prefix(&bytes[..])
        .map_err(|_| Error::corrupt("VHDX metadata table size"))?;
    if head.signature != METADATA_SIGNATURE {
        return Err(Error::corrupt(format!(
            "VHDX metadata table at 0x{:x}: signature is not \"metadata\"",
            region.offset
        )));
    }
    let count = head.entry_count.get();
    if count > MAX_METADATA_ENTRIES {
        return Err(Error::corrupt(format!(
            "VHDX metadata table: {count} entries, at most {MAX_METADATA_ENTRIES}"
        )));
    }
    let (entries, _) = <[RawMetadataEntry]>::ref_from_prefix_with_elems(rest, usize::from(count))
        .map_err(|_| Error::corrupt("VHDX metadata entries"))?;
    let mut params = None;
    let mut size = None;
    let mut lss = None;
    let mut pss = None;
    let mut id = None;
    let mut locator = None;
    for e in entries {
        let g = Guid(e.item_id);
        if g == META_FILE_PARAMETERS {
            let b = item(file, region, e, 8, 8)?;
            params = Some((le32(&b), le32(b.get(4..).unwrap_or_default())));
        } else if g == META_VIRTUAL_DISK_SIZE {
            size = Some(le64(&item(file, region, e, 8, 8)?));
        } else if g == META_LOGICAL_SECTOR_SIZE {
            lss = Some(le32(&item(file, region, e, 4, 4)?));
        } else if g == META_PHYSICAL_SECTOR_SIZE {
            pss = Some(le32(&item(file, region, e, 4, 4)?));
        } else if g == META_VIRTUAL_DISK_ID {
            let b = item(file, region, e, 16, 16)?;
            id = <[u8; 16]>::try_from(b.as_slice()).ok();
        } else if g == META_PARENT_LOCATOR {
            // read below when HasParent says it is used
            locator = Some(e);
        } else if e.flags.get() & META_FLAG_REQUIRED != 0 {
            return Err(Error::unsupported(format!(
                "VHDX metadata: unknown required item {g}"
            )));
        }
    }
    let missing = |what: &str| Error::corrupt(format!("VHDX metadata: no {what} item"));
    let (block_bytes, flags) = params.ok_or_else(|| missing("file parameters"))?;
    let virtual_bytes = size.ok_or_else(|| missing("virtual disk size"))?;
    let logical_sector_bytes = lss.ok_or_else(|| missing("logical sector size"))?;
    if !(MIB..=256 * MIB).contains(&u64::from(block_bytes)) || !block_bytes.is_power_of_two() {
        return Err(Error::corrupt(format!(
            "VHDX block size {block_bytes} is not a power of two from 1 MiB to 256 MiB"
        )));
    }
    if logical_sector_bytes != 512 && logical_sector_bytes != 4096 {
        return Err(Error::corrupt(format!(
            "VHDX logical sector size {logical_sector_bytes}, expected 512 or 4096"
        )));
    }
    if virtual_bytes == 0
        || virtual_bytes > MAX_VIRTUAL_BYTES
        || !virtual_bytes.is_multiple_of(u64::from(logical_sector_bytes))
    {
        return Err(Error::corrupt(format!(
            "VHDX virtual size {virtual_bytes} is not a multiple of the {logical_sector_bytes}-byte sector up to 64 TiB"
        )));
    }
    let has_parent = flags & FILE_PARAM_HAS_PARENT != 0;
    let parent_locator = match (has_parent, locator) {
        (false, _) => None,
        (true, None) => {
            return Err(Error::corrupt(
                "VHDX metadata: HasParent is set but there is no parent locator item",
            ))
        }
        (true, Some(e)) => {
            let header = u32::try_from(size_of::<RawParentLocatorHeader>()).unwrap_or(u32::MAX);
            let b = item(file, region, e, header, MAX_METADATA_ITEM_BYTES)?;
            Some(decode_parent_locator(&b)?)
        }
    };
    Ok(Metadata {
        block_bytes,
        has_parent,
        virtual_bytes,
        logical_sector_bytes,
        physical_sector_bytes: pss,
        virtual_disk_id: id,
        parent_locator,
    })
}

/// Open a VHDX: fixed, dynamic, or differencing (its parent found, opened and checked).
pub(crate) fn open(
    file: &dyn Disk,
    path: Option<&Path>,
    opts: &OpenOptions,
    depth: usize,
) -> Result<Opened> {
    let shown = super::display(path);
    let ctx = |e: Error| e.context(&shown);
    let header = read_header(file).map_err(ctx)?;
    if header.version != 1 {
        return Err(ctx(Error::unsupported(format!(
            "VHDX header at 0x{:x}: version {}, only 1 is defined",
            header.offset, header.version
        ))));
    }
    if !header.log_guid.is_nil() {
        return Err(ctx(Error::unsupported(format!(
            "VHDX log is not empty (log GUID {} in the header at 0x{:x}): the disk was not closed cleanly and its log must be replayed first; attach it once in Hyper-V (or Mount-VHD and Dismount-VHD on Windows), which replays the log; vhdtool never writes its input",
            header.log_guid, header.offset
        ))));
    }
    let (bat, meta_region) = read_regions(file).map_err(ctx)?;
    let meta = read_metadata(file, meta_region).map_err(ctx)?;
    let bs = u64::from(meta.block_bytes);
    let lss = u64::from(meta.logical_sector_bytes);
    // (2^23 * sector) / block: 2^32 / 2^20 at most, at least 2^32 / 2^28 = 16 (1 for 512 / 256M)
    let chunk_ratio = SECTORS_PER_CHUNK
        .saturating_mul(lss)
        .checked_div(bs)
        .filter(|&r| r > 0)
        .ok_or_else(|| ctx(Error::corrupt("VHDX chunk ratio is zero")))?;
    let blocks = meta.virtual_bytes.div_ceil(bs);
    // 2.5: a differencing disk's BAT reaches the sector bitmap entry of its last chunk; a
    // fixed or dynamic one's ends with the last payload entry
    let entries = if meta.has_parent {
        blocks
            .div_ceil(chunk_ratio)
            .saturating_mul(chunk_ratio.saturating_add(1))
    } else {
        blocks.saturating_add(
            blocks
                .saturating_sub(1)
                .checked_div(chunk_ratio)
                .unwrap_or(0),
        )
    };
    let bat_bytes = entries.saturating_mul(8);
    if bat.length < bat_bytes
        || bat
            .offset
            .checked_add(bat_bytes)
            .is_none_or(|e| e > file.len())
    {
        return Err(ctx(Error::corrupt(format!(
            "VHDX BAT at 0x{:x} ({} bytes, inside a file of 0x{:x}) cannot hold the {entries} entries of a {} byte {}disk in {bs}-byte blocks",
            bat.offset,
            bat.length,
            file.len(),
            meta.virtual_bytes,
            if meta.has_parent { "differencing " } else { "" }
        ))));
    }
    let (parent, parent_name) = if meta.has_parent {
        let (p, name) = open_vhdx_parent(path, opts, depth, &meta)?;
        (Some(p), Some(name))
    } else {
        (None, None)
    };
    Ok(Opened {
        backend: Box::new(VhdxBackend {
            size: meta.virtual_bytes,
            block_bytes: bs,
            chunk_ratio,
            bat_offset: bat.offset,
            sector_bytes: lss,
            differencing: meta.has_parent,
            bitmap: RefCell::new(None),
        }),
        info: ImageInfo {
            format: Format::Vhdx,
            path: None,
            virtual_bytes: meta.virtual_bytes,
            logical_sector_bytes: Some(meta.logical_sector_bytes),
            block_bytes: bs,
            unique_id: meta.virtual_disk_id,
            timestamp: None,
            data_write_guid: Some(header.data_write_guid),
            parent_name,
        },
        parent,
    })
}
