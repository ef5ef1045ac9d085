//! A file-backed disk: reads with `pread`, writes with `pwrite`; a shared read-only memory map
//! only for the callers that ask for the whole file as a slice ([`Disk::as_slice`]: `upload`).
//!
//! This is the only file of the crate with `unsafe` code (the mapping itself).
//!
//! Why neither reads nor writes go through the map: a load from a mapped hole of a sparse file
//! on a full tmpfs (which allocates a page on a read fault), or from a page past the end of a
//! file truncated under us (a lock is advisory: anything not vhdtool can truncate), raises
//! SIGBUS and kills the process; a store into a hole on a full filesystem does the same instead
//! of returning ENOSPC. `pread` and `pwrite` return those as errors (a hole reads as zeros
//! without allocating, a truncated range as a short read), so they become `Io` errors the
//! journal can roll back from (issue 15, item 7). Linux keeps `pwrite` and the shared map
//! coherent (one page cache), so the map sees every write.
//!
//! Every open disk holds a file lock: shared for read-only access, exclusive for read-write. A
//! converter (exclusive) and an inspector (shared) therefore never work on the same file at once.
#![allow(unsafe_code)]

use std::fs::{File, TryLockError};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use memmap2::{Mmap, MmapOptions};

use super::{check_range, Disk};
use crate::error::{Error, Result};

/// How an image is opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Inspection: shared lock, no writes.
    ReadOnly,
    /// Conversion: exclusive lock, writes allowed.
    ReadWrite,
}

/// A memory-mapped image file.
pub struct MmapDisk {
    file: File,
    path: PathBuf,
    map: Option<Mmap>,
    len: u64,
    access: Access,
}

impl MmapDisk {
    /// Open and map `path`, taking the file lock that `access` calls for (never waiting for it).
    pub fn open(path: &Path, access: Access) -> Result<Self> {
        let shown = path.display();
        // EROFS (a read-only mount), EACCES (file modes) and EPERM (`chattr +i`) all mean "this
        // file cannot be written": one conflict, whichever the cause (issue 15, item 15). For
        // a read-only open they are a plain I/O error: the file cannot be read.
        const EPERM: i32 = 1;
        const EACCES: i32 = 13;
        const EROFS: i32 = 30;
        let file = super::open_regular(path, access == Access::ReadWrite).map_err(|e| match e {
            super::OpenError::Os(e)
                if access == Access::ReadWrite
                    && matches!(e.raw_os_error(), Some(EROFS | EACCES | EPERM)) =>
            {
                Error::conflict(format!(
                    "{shown} cannot be opened for writing ({e}); it is read-only: use -o OUTPUT to write a converted copy"
                ))
            }
            super::OpenError::Os(e) if matches!(e.raw_os_error(), Some(EACCES | EPERM)) => {
                Error::io(format!("{shown} cannot be opened for reading"), e)
            }
            other => other.into_error(path),
        })?;
        Self::from_file(file, path, access)
    }

    /// Map an open file, taking the lock `access` calls for (a file whose open file description
    /// already holds that lock, e.g. a `try_clone` of it, keeps it).
    pub fn from_file(file: File, path: &Path, access: Access) -> Result<Self> {
        let shown = path.display();
        let meta = file
            .metadata()
            .map_err(|e| Error::io(format!("reading metadata of {shown}"), e))?;
        if !meta.is_file() {
            return Err(Error::invalid(format!("{shown} is not a regular file")));
        }
        let locked = match access {
            Access::ReadOnly => file.try_lock_shared(),
            Access::ReadWrite => file.try_lock(),
        };
        match locked {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                return Err(Error::conflict(format!(
                    "{shown} is locked by another process (another vhdtool converting it?); try again when it has finished"
                )))
            }
            Err(TryLockError::Error(e)) => return Err(Error::io(format!("locking {shown}"), e)),
        }
        let mut disk = MmapDisk {
            file,
            path: path.to_path_buf(),
            map: None,
            len: 0,
            access,
        };
        disk.remap()?;
        Ok(disk)
    }

    /// The path the disk was opened from.
    pub fn file_path(&self) -> &Path {
        &self.path
    }

    /// The open file (for `copy_file_range`, `SEEK_DATA`, `fsync`).
    pub fn file(&self) -> &File {
        &self.file
    }

    /// The file still holds the bytes it held when opened ([`super::still_holds`]).
    pub fn still_whole(&self) -> Result<()> {
        super::still_holds(&self.file, &self.path, self.len, "reading")
    }

    /// Change the file length (growing leaves a hole) and map the new length.
    fn resize(&mut self, len: u64) -> Result<()> {
        self.require_write()?;
        self.map = None;
        let r = self.file.set_len(len).map_err(|e| {
            Error::io(
                format!("resizing {} to {len} bytes", self.path.display()),
                e,
            )
        });
        // map again whatever happened, so the disk stays usable after a failed resize
        self.remap()?;
        r
    }

    /// Flush written data to stable storage (`fdatasync`).
    fn sync_data(&self) -> Result<()> {
        self.file
            .sync_data()
            .map_err(|e| Error::io(format!("syncing {}", self.path.display()), e))
    }

    fn require_write(&self) -> Result<()> {
        match self.access {
            Access::ReadWrite => Ok(()),
            Access::ReadOnly => Err(Error::invalid(format!(
                "{} was opened read-only",
                self.path.display()
            ))),
        }
    }

    fn remap(&mut self) -> Result<()> {
        let len = self
            .file
            .metadata()
            .map_err(|e| Error::io(format!("reading metadata of {}", self.path.display()), e))?
            .len();
        self.len = len;
        self.map = if len == 0 {
            None // an empty mapping is refused by mmap(2); an empty disk needs none
        } else {
            // SAFETY: the mapping is read-only and private to this process's view. The memory may
            // change under us only through writes to the file; we hold a file lock for as long as
            // the map lives (shared or exclusive, see the module docs), so no cooperating process
            // truncates it, and our own resizes drop the map first (`set_len`). Content changes
            // are harmless for `&[u8]` readers of plain bytes (no invariants on the bytes).
            let map = unsafe {
                MmapOptions::new()
                    .len(
                        usize::try_from(len)
                            .map_err(|_| Error::unsupported("file too large to map"))?,
                    )
                    .map(&self.file)
            }
            .map_err(|e| Error::io(format!("mapping {}", self.path.display()), e))?;
            Some(map)
        };
        Ok(())
    }
}

impl Disk for MmapDisk {
    fn len(&self) -> u64 {
        self.len
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        check_range(self.len, offset, crate::units::len_u64(buf.len()))?;
        self.file.read_exact_at(buf, offset).map_err(|e| {
            Error::io(
                format!(
                    "reading {} bytes at 0x{offset:x} of {} (was it truncated or changed while vhdtool ran?)",
                    buf.len(),
                    self.path.display()
                ),
                e,
            )
        })
    }

    fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<()> {
        self.require_write()?;
        check_range(self.len, offset, crate::units::len_u64(data.len()))?;
        self.file.write_all_at(data, offset).map_err(|e| {
            Error::io(
                format!(
                    "writing {} bytes at 0x{offset:x} of {}",
                    data.len(),
                    self.path.display()
                ),
                e,
            )
        })
    }

    /// The memory map. Reading it can raise SIGBUS (see the module docs): only callers that
    /// need one slice of the whole file use it; everything else reads with [`Disk::read_at`].
    fn as_slice(&self) -> Option<&[u8]> {
        Some(self.map.as_deref().unwrap_or(&[]))
    }

    fn set_len(&mut self, len: u64) -> Result<()> {
        self.resize(len)
    }

    fn sync(&mut self) -> Result<()> {
        self.sync_data()
    }

    fn path(&self) -> Option<&Path> {
        Some(&self.path)
    }

    fn data_extents(&self, from: u64, len: u64) -> Result<Vec<(u64, u64)>> {
        check_range(self.len, from, len)?;
        super::data_extents_in(&self.file, from, from.saturating_add(len))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn temp(name: &str, bytes: &[u8]) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("vhdtool-mmap-{}-{name}", std::process::id()));
        let mut f = File::create(&dir).unwrap();
        f.write_all(bytes).unwrap();
        dir
    }

    #[test]
    fn read_write_and_grow() {
        let p = temp("rw", &[1, 2, 3, 4]);
        let mut d = MmapDisk::open(&p, Access::ReadWrite).unwrap();
        let mut b = [0u8; 2];
        d.read_at(2, &mut b).unwrap();
        assert_eq!(b, [3, 4]);
        d.write_at(0, &[9]).unwrap();
        d.read_at(0, &mut b).unwrap();
        assert_eq!(b, [9, 2], "the map sees pwrite's data");
        d.set_len(4096).unwrap();
        assert_eq!(d.len(), 4096);
        assert!(d.write_at(4095, &[1, 2]).is_err());
        drop(d);
        std::fs::remove_file(p).unwrap();
    }

    #[test]
    fn empty_file_and_locks() {
        let p = temp("empty", &[]);
        let d = MmapDisk::open(&p, Access::ReadOnly).unwrap();
        assert_eq!(d.len(), 0);
        assert_eq!(d.as_slice().unwrap().len(), 0);
        let second = MmapDisk::open(&p, Access::ReadOnly);
        assert!(second.is_ok(), "readers share the lock");
        let writer = MmapDisk::open(&p, Access::ReadWrite);
        assert_eq!(
            writer.err().unwrap().kind(),
            crate::error::ErrorKind::Conflict
        );
        drop((d, second));
        std::fs::remove_file(p).unwrap();
    }

    #[test]
    fn a_file_truncated_under_the_disk_is_an_io_error() {
        let p = temp("trunc", &[7u8; 8192]);
        let d = MmapDisk::open(&p, Access::ReadOnly).unwrap();
        // another program (locks are advisory) cuts the file to one page
        File::options()
            .write(true)
            .open(&p)
            .unwrap()
            .set_len(4096)
            .unwrap();
        let mut b = [0u8; 16];
        d.read_at(0, &mut b).unwrap();
        let e = d.read_at(6000, &mut b).unwrap_err();
        assert_eq!(e.kind(), crate::error::ErrorKind::Io, "{e}");
        assert!(e.message().contains("truncated"), "{e}");
        drop(d);
        std::fs::remove_file(p).unwrap();
    }
}
