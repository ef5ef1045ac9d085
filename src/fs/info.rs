//! What a probe reports: the kind of filesystem and the facts its superblock gives. Its own
//! module, below every probe, so that the probes and `fs` itself import it without a circle.

use serde::Serialize;

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
