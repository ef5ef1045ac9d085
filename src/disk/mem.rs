//! An in-memory disk, for tests and fuzzing.

use super::{check_range, Disk};
use crate::error::{Error, Result};

/// A disk held in a `Vec<u8>`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemDisk {
    data: Vec<u8>,
    read_only: bool,
}

impl MemDisk {
    pub fn new(data: Vec<u8>) -> Self {
        MemDisk {
            data,
            read_only: false,
        }
    }
    /// A disk whose writes fail, as a read-only file would.
    pub fn read_only(data: Vec<u8>) -> Self {
        MemDisk {
            data,
            read_only: true,
        }
    }
    pub fn into_inner(self) -> Vec<u8> {
        self.data
    }
    pub fn data(&self) -> &[u8] {
        &self.data
    }
    /// The bytes `offset .. offset + len`, refused (Corrupt) when outside the disk.
    fn range(&self, offset: u64, len: usize) -> Result<&[u8]> {
        check_range(self.len(), offset, crate::units::len_u64(len))?;
        let start = usize::try_from(offset).unwrap_or(usize::MAX);
        self.data
            .get(start..start.saturating_add(len))
            .ok_or_else(|| Error::internal("MemDisk range checked but not addressable"))
    }
}

impl Disk for MemDisk {
    fn len(&self) -> u64 {
        crate::units::len_u64(self.data.len())
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        let src = self.range(offset, buf.len())?;
        buf.copy_from_slice(src);
        Ok(())
    }
    fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<()> {
        if self.read_only {
            return Err(Error::conflict("the disk is read-only"));
        }
        self.range(offset, data.len())?;
        let start = usize::try_from(offset).unwrap_or(usize::MAX);
        let end = start.saturating_add(data.len());
        let dst = self
            .data
            .get_mut(start..end)
            .ok_or_else(|| Error::internal("MemDisk range checked but not addressable"))?;
        dst.copy_from_slice(data);
        Ok(())
    }
    fn as_slice(&self) -> Option<&[u8]> {
        Some(&self.data)
    }
    /// Zero-filled when growing, as `File::set_len` does.
    fn set_len(&mut self, len: u64) -> Result<()> {
        if self.read_only {
            return Err(Error::conflict("the disk is read-only"));
        }
        let n = usize::try_from(len)
            .map_err(|_| Error::unsupported("length does not fit in memory"))?;
        self.data.resize(n, 0);
        Ok(())
    }
}
