//! What lives inside a partition: filesystem probes that read a few sectors only, and read-only
//! access to FAT (for the ESP checks).
//!
//! CONTRACT (stub, to be implemented): `probe(part) -> Option<FsInfo>`; `fat` module with a
//! bounded reader able to answer "does this path exist" (case-insensitive, long names).

pub mod fat;

use serde::Serialize;

use crate::disk::Disk;

/// A recognised filesystem or volume format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FsKind {
    Ntfs,
    Fat12,
    Fat16,
    Fat32,
    Exfat,
    Ext2,
    Ext3,
    Ext4,
    Xfs,
    Btrfs,
    Swap,
    Lvm2,
    Luks1,
    Luks2,
    Bitlocker,
    Refs,
    Iso9660,
}

/// Facts about a filesystem, from its superblock / boot sector.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FsInfo {
    pub kind: FsKind,
    pub label: Option<String>,
    /// As blkid prints it (ext4/xfs/btrfs/swap: canonical GUID; FAT: "ABCD-1234"; NTFS: 16 hex
    /// digits upper-case).
    pub uuid: Option<String>,
    /// Encrypted volumes (LUKS, BitLocker) must never be touched blindly.
    pub encrypted: bool,
    /// Cluster or block size in bytes.
    pub block_bytes: Option<u32>,
    /// The size the filesystem believes it has, in bytes (compare with the partition).
    pub fs_bytes: Option<u64>,
}

/// Identify what is at the start of `part` (a partition window).
pub fn probe(_part: &dyn Disk) -> Option<FsInfo> {
    unimplemented!("fs::probe")
}
