//! A read-only file disk read with `pread`: no memory map, so reading a large image streams
//! through the page cache without growing the process's resident memory (a map would count
//! every page read as resident), and a file truncated while read gives an error, not SIGBUS.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::disk::{check_range, Disk};
use crate::error::{Error, Result};

/// A file opened read-only.
pub struct FileDisk {
    file: File,
    path: PathBuf,
    len: u64,
}

impl FileDisk {
    /// Open `path` read-only (a regular file).
    pub fn open(path: &Path) -> Result<FileDisk> {
        let shown = path.display();
        let file = File::open(path).map_err(|e| Error::io(format!("opening {shown}"), e))?;
        let meta = file
            .metadata()
            .map_err(|e| Error::io(format!("reading metadata of {shown}"), e))?;
        if !meta.is_file() {
            return Err(Error::invalid(format!("{shown} is not a regular file")));
        }
        Ok(FileDisk {
            file,
            path: path.to_path_buf(),
            len: meta.len(),
        })
    }

    /// A file already open (and checked) elsewhere, of `len` bytes: the input's identity is the
    /// one established when it was first opened, not whatever the path names later.
    pub fn from_file(file: File, path: &Path, len: u64) -> FileDisk {
        FileDisk {
            file,
            path: path.to_path_buf(),
            len,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn file(&self) -> &File {
        &self.file
    }
}

impl Disk for FileDisk {
    fn len(&self) -> u64 {
        self.len
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        let n = u64::try_from(buf.len()).map_err(|_| Error::invalid("read too large"))?;
        check_range(self.len, offset, n)?;
        self.file.read_exact_at(buf, offset).map_err(|e| {
            Error::io(
                format!(
                    "reading {} bytes at 0x{offset:x} of {}",
                    buf.len(),
                    self.path.display()
                ),
                e,
            )
        })
    }

    fn write_at(&mut self, _offset: u64, _data: &[u8]) -> Result<()> {
        Err(Error::invalid(format!(
            "{} is opened read-only",
            self.path.display()
        )))
    }
}
