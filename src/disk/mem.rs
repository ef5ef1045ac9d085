//! An in-memory disk, for tests and fuzzing.
// Transitional (issue 11, item 9): this file is not yet under the crate-wide panic lints.
#![allow(
    clippy::arithmetic_side_effects,
    clippy::as_conversions,
    clippy::indexing_slicing
)]

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
}

impl Disk for MemDisk {
    fn len(&self) -> u64 {
        self.data.len() as u64
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        check_range(self.len(), offset, buf.len() as u64)?;
        // in range: checked above, and the whole vector is addressable
        let start = offset as usize;
        buf.copy_from_slice(&self.data[start..start + buf.len()]);
        Ok(())
    }
    fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<()> {
        if self.read_only {
            return Err(Error::conflict("the disk is read-only"));
        }
        check_range(self.len(), offset, data.len() as u64)?;
        let start = offset as usize;
        self.data[start..start + data.len()].copy_from_slice(data);
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
