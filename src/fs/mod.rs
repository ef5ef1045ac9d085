//! What lives inside a partition: filesystem probes that read a few sectors only
//! ([`probe`], [`probe_at`]), and read-only access to FAT ([`fat::Fat`], for the ESP checks).
//!
//! The probes agree with `blkid -p` (util-linux 2.38) on TYPE, UUID and LABEL for volumes made by
//! the real mkfs tools; where they differ on purpose it is said at the probe.

pub(crate) mod common;
pub mod ext;
pub mod fat;
mod info;
pub mod ntfs;
pub mod ntfsfile;
mod probe;
pub mod swap;

#[cfg(test)]
mod oracle_tests;
#[cfg(test)]
mod robustness_tests;
#[cfg(test)]
mod testutil;

use crate::disk::{Disk, Window};

pub use fat::{DirEntryInfo, Fat, FatType};
pub use info::{FsInfo, FsKind};

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
