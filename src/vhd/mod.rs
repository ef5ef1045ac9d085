//! VHD ("Virtual Hard Disk Image Format Specification"): footer, CHS geometry, dynamic header.
//!
//! CONTRACT (stub, to be implemented): see the items below. `probe` never fails: anything wrong
//! is a finding, and a file with no footer is a raw disk.

use serde::Serialize;

use crate::disk::Disk;
use crate::finding::Finding;

/// What kind of image a file is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Format {
    Raw,
    VhdFixed,
    VhdDynamic,
    VhdDifferencing,
}

/// CHS geometry as stored in the footer (spec: cylinders u16, heads u8, sectors per track u8).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Chs {
    pub cylinders: u16,
    pub heads: u8,
    pub sectors_per_track: u8,
}

/// The decoded footer, every field, plus what we computed to compare.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Footer {
    pub cookie: String,
    pub features: u32,
    pub format_version: u32,
    pub data_offset: u64,
    pub timestamp: u32,
    /// ISO 8601 UTC of `timestamp` (seconds since 2000-01-01T00:00:00Z).
    pub timestamp_utc: String,
    pub creator_application: String,
    pub creator_version: u32,
    pub creator_host_os: String,
    pub original_size: u64,
    pub current_size: u64,
    pub geometry: Chs,
    /// Geometry the spec's algorithm gives for `current_size`.
    pub computed_geometry: Chs,
    pub disk_type: u32,
    pub checksum: u32,
    pub computed_checksum: u32,
    /// Lowercase hex, 32 digits.
    pub unique_id: String,
    pub saved_state: u8,
    /// Where the footer was found (byte offset in the file).
    pub offset: u64,
    /// 511-byte footer of images made before Virtual PC 2004.
    pub legacy_511: bool,
}

/// Dynamic/differencing disk header facts (spec: "Dynamic Disk Header Format").
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DynamicInfo {
    pub table_offset: u64,
    pub header_version: u32,
    pub max_table_entries: u32,
    pub block_size: u32,
    pub checksum: u32,
    pub computed_checksum: u32,
    /// BAT entries that point at a block (not 0xFFFFFFFF), counted over at most the entries the
    /// file can hold.
    pub allocated_blocks: u64,
    pub parent_unique_id: String,
    pub parent_timestamp: u32,
    pub parent_name: Option<String>,
}

/// A file seen as a disk image.
#[derive(Debug, Clone, Serialize)]
pub struct Image {
    pub format: Format,
    pub footer: Option<Footer>,
    pub dynamic: Option<DynamicInfo>,
    /// Bytes of virtual disk data readable at offset 0 of the file (raw: the file; fixed VHD:
    /// the file minus the footer; dynamic/differencing: 0, their data is not laid out flat).
    pub data_bytes: u64,
    /// The disk size the image claims (footer current size; raw: the file length).
    pub virtual_bytes: u64,
    pub findings: Vec<Finding>,
}

/// Look at a whole file and say what image it is.
pub fn probe(_file: &dyn Disk) -> Image {
    unimplemented!("vhd::probe")
}
