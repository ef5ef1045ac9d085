//! Master Boot Record: the four primary entries, extended/logical chains (bounded), protective
//! MBR detection, and a look at the boot code.
//!
//! CONTRACT (stub, to be implemented).

use serde::Serialize;

use crate::disk::Disk;
use crate::error::Result;
use crate::finding::Finding;

/// CHS address as stored in an MBR entry (decoded, not trusted).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ChsAddr {
    pub cylinder: u16,
    pub head: u8,
    pub sector: u8,
}

/// One partition from the MBR or an EBR.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MbrPartition {
    /// Linux numbering: 1-4 for the primary slots, 5.. for logical partitions in chain order.
    pub index: u32,
    pub bootable: bool,
    /// Raw status byte (0x00 or 0x80 are valid).
    pub status: u8,
    pub type_id: u8,
    /// Absolute start sector on the disk.
    pub start_lba: u64,
    pub sectors: u64,
    pub chs_start: ChsAddr,
    pub chs_end: ChsAddr,
    /// An extended container (0x05, 0x0f, 0x85), not a data partition.
    pub extended: bool,
    pub logical: bool,
}

/// The decoded MBR.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Mbr {
    pub disk_signature: u32,
    /// Bytes 0..440 are not all zero.
    pub boot_code_present: bool,
    /// What the boot code looks like ("grub", "windows", "syslinux", ...), when recognised.
    pub boot_code_kind: Option<String>,
    /// Primaries (including extended containers) in slot order, empty slots left out.
    pub primaries: Vec<MbrPartition>,
    /// Logical partitions in chain order.
    pub logicals: Vec<MbrPartition>,
    /// A 0xEE entry is present (a GPT disk's protective MBR, or a hybrid MBR with more entries).
    pub protective: bool,
    pub findings: Vec<Finding>,
}

/// Read the MBR at sector 0. `Ok(None)` when there is no 0x55AA signature.
pub fn read(_disk: &dyn Disk, _sector_bytes: u32) -> Result<Option<Mbr>> {
    unimplemented!("mbr::read")
}
