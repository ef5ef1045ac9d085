//! GUID Partition Table (UEFI spec, chapter 5.3): both headers and entry arrays, CRC32s,
//! validation, fallback to the backup.
//!
//! CONTRACT (stub, to be implemented).

pub mod guid;

use serde::Serialize;

pub use guid::Guid;

use crate::disk::Disk;
use crate::error::Result;
use crate::finding::Finding;

/// A decoded GPT header (field names from the UEFI spec).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GptHeader {
    pub revision: u32,
    pub header_size: u32,
    pub header_crc32: u32,
    pub computed_header_crc32: u32,
    pub my_lba: u64,
    pub alternate_lba: u64,
    pub first_usable_lba: u64,
    pub last_usable_lba: u64,
    pub disk_guid: Guid,
    pub partition_entry_lba: u64,
    pub num_partition_entries: u32,
    pub size_of_partition_entry: u32,
    pub partition_entry_array_crc32: u32,
    pub computed_partition_entry_array_crc32: u32,
}

/// One used partition entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GptPartition {
    /// 1-based entry number in the array (as gdisk and Linux number them).
    pub index: u32,
    pub type_guid: Guid,
    /// Well-known name of the type ("EFI System", "Microsoft basic data", ...).
    pub type_name: Option<&'static str>,
    pub unique_guid: Guid,
    pub first_lba: u64,
    pub last_lba: u64,
    pub attributes: u64,
    pub name: String,
}

/// Which copy the partition list came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Copy {
    Primary,
    Backup,
}

/// The GPT as read: the header and entries we trust, and the state of both copies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Gpt {
    pub sector_bytes: u32,
    pub used: Copy,
    pub header: GptHeader,
    /// Primary header and array valid.
    pub primary_ok: bool,
    /// Backup header and array valid.
    pub backup_ok: bool,
    pub partitions: Vec<GptPartition>,
    pub findings: Vec<Finding>,
}

/// Read the GPT of a disk with `sector_bytes` sectors. `Ok(None)` when neither the primary nor
/// the backup header carries the "EFI PART" signature.
pub fn read(_disk: &dyn Disk, _sector_bytes: u32) -> Result<Option<Gpt>> {
    unimplemented!("gpt::read")
}
