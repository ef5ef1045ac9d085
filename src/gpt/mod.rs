//! GUID Partition Table (UEFI spec 2.10, chapter 5.3): both headers and entry arrays, CRC32s,
//! validation, fallback to the backup, and an encoder for new tables.
//!
//! Our own reader: third-party GPT crates panic or abort on crafted tables. Every size field
//! is checked before it is used: the entry array must lie inside the disk and be at most
//! [`MAX_ENTRY_ARRAY_BYTES`] long before anything is allocated.
//!
//! What [`read`] returns:
//! - `Ok(None)`: neither LBA 1 nor the backup location carries "EFI PART".
//! - `Ok(Some(gpt))` with `primary_ok`/`backup_ok` telling which copies are valid; the
//!   partitions come from the primary when it is valid, else from the backup (finding
//!   `gpt.primary.bad`, error). A bad or missing backup is the finding `gpt.backup.bad` (error).
//! - When a signature is present but neither copy is usable, still `Ok(Some(gpt))` so that an
//!   inspection can show what was found: `primary_ok = backup_ok = false`, `partitions` empty,
//!   `header` decoded (untrusted) from the copy that had the signature, and findings saying why.
//! - `Err` only for I/O errors and a `sector_bytes` that is not a power of two in 512..=65536.
mod encode;
mod entries;
pub mod guid;
mod overlay;
pub mod raw;
mod read;

use serde::Serialize;

pub use encode::{encode, usable_lbas, GptImage};
pub use guid::{type_name, Guid};
pub use read::read;

use crate::error::{Error, Result};
use crate::finding::Finding;
use crate::units::{Lba, LbaRange};

/// Largest entry we accept (a page; the spec allows any 128 * 2^n, nobody uses more than 128).
pub const MAX_ENTRY_BYTES: u32 = 4096;
/// Largest entry array we read (8192 entries of 128 bytes; the spec minimum is 16 KiB and
/// every tool we know writes exactly that). Larger arrays make the copy unusable, so a hostile
/// `num_partition_entries` can never make us allocate much.
pub const MAX_ENTRY_ARRAY_BYTES: u64 = 1 << 20;
/// Entries the encoder writes by default (16 KiB array, UEFI spec minimum).
pub const DEFAULT_NUM_ENTRIES: u32 = 128;
/// Smallest entry array the spec allows (5.3.2: "a minimum of 16,384 bytes").
pub const MIN_ENTRY_ARRAY_BYTES: u64 = 16384;
/// Most findings of one kind about entries, so a crafted array cannot flood a report.
const MAX_ENTRY_FINDINGS: usize = 16;

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
    /// Well-known name of the type as gdisk prints it ("EFI system partition", ...).
    pub type_name: Option<&'static str>,
    pub unique_guid: Guid,
    pub first_lba: u64,
    pub last_lba: u64,
    pub attributes: u64,
    pub name: String,
}

impl GptPartition {
    /// Length in sectors (0 for a reversed entry).
    pub fn sectors(&self) -> u64 {
        self.last_lba
            .checked_sub(self.first_lba)
            .and_then(|d| d.checked_add(1))
            .unwrap_or(0)
    }

    /// `first_lba..=last_lba`; `None` for a reversed entry.
    pub fn lba_range(&self) -> Option<LbaRange> {
        LbaRange::new(Lba(self.first_lba), Lba(self.last_lba))
    }
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

#[derive(Clone, Copy)]
struct Geometry {
    sector_bytes: u32,
    disk_sectors: u64,
}

impl Geometry {
    fn offset(&self, lba: u64) -> Option<u64> {
        lba.checked_mul(u64::from(self.sector_bytes))
    }
    /// Sectors needed for `bytes` bytes.
    fn sectors_for(&self, bytes: u64) -> Option<u64> {
        let sb = u64::from(self.sector_bytes);
        bytes.checked_add(sb.checked_sub(1)?)?.checked_div(sb)
    }
}

fn check_sector_bytes(sector_bytes: u32) -> Result<()> {
    if (512..=65536).contains(&sector_bytes) && sector_bytes.is_power_of_two() {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "sector size: expected a power of two in 512..=65536, found {sector_bytes}"
        )))
    }
}
