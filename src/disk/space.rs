//! Free space on the filesystem that will receive a conversion's writes, checked before the
//! first write (issue 15, item 7): a conversion that cannot finish for want of space is refused
//! while the image is untouched, rather than stopped half-way by ENOSPC.

use std::path::Path;

use crate::error::{Error, Result};

/// How a filesystem allocates the blocks a write needs, as far as the free-space estimate cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Allocation {
    /// tmpfs: a page per page of data written into a hole, and nothing else is counted against
    /// its size (inodes, directory entries and extended attributes are accounted apart).
    Pages,
    /// ext2/3/4, XFS and most others: a write into a hole allocates its blocks, a write over
    /// allocated blocks allocates nothing, and new extents may need a metadata block.
    Overwrite,
    /// btrfs, ZFS, bcachefs: every written block is allocated anew (copy on write), holes or not.
    CopyOnWrite,
}

/// `statfs(2)` magic numbers (linux/magic.h) of the filesystems [`Allocation`] tells apart.
const TMPFS_MAGIC: i64 = 0x0102_1994;
const BTRFS_SUPER_MAGIC: i64 = 0x9123_683e;
const ZFS_SUPER_MAGIC: i64 = 0x2fc1_2fc1;
const BCACHEFS_SUPER_MAGIC: i64 = 0xca45_1a4e;

/// The filesystem holding a path, as the free-space check of a conversion needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FsSpace {
    /// Bytes an unprivileged writer may still allocate (`f_bavail` times the fragment size);
    /// `None` for a filesystem that keeps no count (`f_blocks` is 0: ramfs, some FUSE).
    pub free_bytes: Option<u64>,
    /// The allocation unit: `f_frsize` (the unit of the counts), else `f_bsize`.
    pub block_bytes: u64,
    /// The device (`st_dev`) of the path: two paths on one filesystem share its free space.
    pub device: u64,
    pub allocation: Allocation,
}

/// The filesystem holding `path` (a file or a directory): free space, block size, device and
/// how it allocates.
pub fn fs_space(path: &Path) -> Result<FsSpace> {
    use std::os::unix::fs::MetadataExt;
    let err = |e: std::io::Error| {
        Error::io(
            format!(
                "reading the free space of the filesystem of {}",
                path.display()
            ),
            e,
        )
    };
    let st = rustix::fs::statfs(path).map_err(|e| err(e.into()))?;
    let device = std::fs::metadata(path).map_err(err)?.dev();
    let unit = |v| u64::try_from(v).unwrap_or(0);
    let block_bytes = match unit(st.f_frsize) {
        0 => unit(st.f_bsize),
        n => n,
    }
    .max(1);
    // the magic is an unsigned 32-bit value, sign-extended on some targets
    #[allow(clippy::useless_conversion)] // f_type is i64 here, i32 or u32 on other targets
    let magic = i64::from(st.f_type) & 0xffff_ffff;
    let allocation = match magic {
        TMPFS_MAGIC => Allocation::Pages,
        BTRFS_SUPER_MAGIC | ZFS_SUPER_MAGIC | BCACHEFS_SUPER_MAGIC => Allocation::CopyOnWrite,
        _ => Allocation::Overwrite,
    };
    Ok(FsSpace {
        free_bytes: (st.f_blocks != 0).then(|| st.f_bavail.saturating_mul(block_bytes)),
        block_bytes,
        device,
        allocation,
    })
}

/// The refusal of a run the filesystem cannot hold: an `Io` error with ENOSPC (exit code 3),
/// the free and the needed bytes; the caller says what was (not) written.
pub fn no_space(path: &Path, free: u64, needed_bytes: u64, what: &str) -> Error {
    Error::io(
        format!(
            "{} has {free} bytes free, {needed_bytes} are needed for {what}; free some space or write elsewhere (-o)",
            path.display()
        ),
        std::io::Error::from_raw_os_error(rustix::io::Errno::NOSPC.raw_os_error()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_refusal_is_enospc() {
        let e = no_space(Path::new("/x"), 1, 2, "the test");
        assert_eq!(e.kind(), crate::error::ErrorKind::Io);
        assert_eq!(e.raw_os_error(), Some(28), "ENOSPC: {e}");
        assert!(e.message().contains("2 are needed for the test"), "{e}");
    }

    #[test]
    fn the_filesystem_of_a_path_is_described() {
        use std::os::unix::fs::MetadataExt;
        let dir = std::env::temp_dir();
        let fs = fs_space(&dir).unwrap();
        assert!(fs.block_bytes >= 512, "{fs:?}");
        assert_eq!(fs.device, std::fs::metadata(&dir).unwrap().dev());
        assert!(fs_space(Path::new("/no/such/dir")).is_err());
        // /proc keeps no block count: not checked rather than always full
        assert_eq!(fs_space(Path::new("/proc")).unwrap().free_bytes, None);
    }
}
