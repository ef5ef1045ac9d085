//! What lives inside a partition: filesystem probes that read a few sectors only
//! ([`probe`], [`probe_at`]), and read-only access to FAT ([`fat::Fat`], for the ESP checks).
//!
//! The probes agree with `blkid -p` (util-linux 2.38) on TYPE, UUID and LABEL for volumes made by
//! the real mkfs tools; where they differ on purpose it is said at the probe.

pub(crate) mod common;
pub mod ext;
pub mod fat;
pub mod ntfs;
mod probe;
pub mod swap;

#[cfg(test)]
mod oracle_tests;
#[cfg(test)]
mod robustness_tests;
#[cfg(test)]
mod testutil;

use serde::Serialize;

use crate::disk::{Disk, Window};

pub use fat::{DirEntryInfo, Fat, FatType};

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
    /// A second identifier: blkid's UUID_SUB for btrfs (this device's UUID), and for BitLocker
    /// the volume GUID of the header at 0xA0 (the identifier `manage-bde -status` shows for
    /// the volume; formatted as a mixed-endian GUID, upper-case, in braces).
    pub uuid_sub: Option<String>,
    /// Format version as blkid's VERSION prints it ("FAT32", "1.0", "2" for LUKS2, ...).
    pub version: Option<String>,
}

/// Identify what is at the start of `part` (a partition window). Reads a few KiB at most per
/// format; a read that fails (tiny or truncated partition) only means "not this format".
pub fn probe(part: &dyn Disk) -> Option<FsInfo> {
    probe::probe(part)
}

/// [`probe`] on `len` bytes of `disk` from `offset`; `None` when the range is not on the disk.
pub fn probe_at(disk: &dyn Disk, offset: u64, len: u64) -> Option<FsInfo> {
    let w = Window::new(disk, offset, len).ok()?;
    probe(&w)
}
