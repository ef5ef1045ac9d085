//! Byte-addressable storage for disk images.
//!
//! Parsers take `&dyn Disk` and use positional reads only (no shared seek cursor). Two
//! implementations: [`MmapDisk`] over a file (the only `unsafe` in the crate lives in `mmap.rs`)
//! and [`MemDisk`] for tests and fuzzing. [`Window`] restricts a disk to a sub-range, which is
//! how a fixed VHD's data area (the file minus its footer) and a partition are presented.

mod extents;
mod file;
mod mem;
mod mmap;
mod output;
mod space;

pub use extents::{data_extents, data_extents_in, merge_ranges};
pub use file::{open_regular, read_bounded, still_holds, OpenError};
pub use mem::MemDisk;
pub use mmap::{Access, MmapDisk};
pub use output::{partial_path, sync_dir, PartialOutput};
pub use space::{fs_space, no_space, Allocation, FsSpace};

use crate::error::{Error, Result};
use crate::units::len_u64;

/// Positional access to a sequence of bytes.
pub trait Disk {
    /// Length in bytes.
    fn len(&self) -> u64;

    /// True when the disk holds no bytes.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Fill `buf` from `offset`. Fails (Corrupt) when the range is not wholly inside the disk.
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()>;

    /// Write `data` at `offset`. Fails when the range is not wholly inside the disk or the disk
    /// is read-only.
    fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<()>;

    /// The whole disk as one slice when it is memory-resident or mapped (fast paths such as
    /// checksums use it); `None` otherwise.
    fn as_slice(&self) -> Option<&[u8]> {
        None
    }

    /// Change the length (growing adds zeros, or a hole in a file). Disks that cannot change
    /// their length refuse.
    fn set_len(&mut self, len: u64) -> Result<()> {
        Err(Error::unsupported(format!(
            "this disk cannot be resized (to {len} bytes)"
        )))
    }

    /// Make the writes so far durable (a file: `fdatasync`). In-memory disks have nothing to do.
    fn sync(&mut self) -> Result<()> {
        Ok(())
    }

    /// The file behind the disk, for external tools that work on it (resize2fs); `None` for
    /// disks that are not a file.
    fn path(&self) -> Option<&std::path::Path> {
        None
    }

    /// The parts of `from .. from + len` that may hold data, as (offset, length), in order;
    /// everything else reads as zeros and need not be read. The default says "all of it".
    fn data_extents(&self, from: u64, len: u64) -> Result<Vec<(u64, u64)>> {
        check_range(self.len(), from, len)?;
        Ok(if len == 0 {
            Vec::new()
        } else {
            vec![(from, len)]
        })
    }

    /// Read `len` bytes at `offset` into a new vector. The length is checked against the disk
    /// before anything is allocated, so a hostile size field cannot make us allocate more than
    /// the image holds.
    fn read_vec(&self, offset: u64, len: u64) -> Result<Vec<u8>> {
        check_range(self.len(), offset, len)?;
        let n = usize::try_from(len).map_err(|_| {
            Error::unsupported(format!("read of {len} bytes does not fit in memory"))
        })?;
        let mut buf = vec![0u8; n];
        self.read_at(offset, &mut buf)?;
        Ok(buf)
    }
}

/// A named byte range of a disk image: what a conversion writes there ("LBA 0: protective MBR").
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Region {
    pub offset: u64,
    pub length: u64,
    pub what: String,
}

/// Check that `offset .. offset + len` lies inside a disk of `disk_len` bytes.
pub fn check_range(disk_len: u64, offset: u64, len: u64) -> Result<()> {
    match offset.checked_add(len) {
        Some(end) if end <= disk_len => Ok(()),
        _ => Err(Error::corrupt(format!(
            "range 0x{offset:x}+0x{len:x} is outside the disk (0x{disk_len:x} bytes)"
        ))),
    }
}

/// A sub-range of another disk: offsets are relative to `start`, and nothing outside
/// `start .. start + len` can be read or written through it.
pub struct Window<'a, D: Disk + ?Sized> {
    inner: &'a D,
    start: u64,
    len: u64,
}

impl<'a, D: Disk + ?Sized> Window<'a, D> {
    /// Fails when the window does not lie inside `inner`.
    pub fn new(inner: &'a D, start: u64, len: u64) -> Result<Self> {
        check_range(inner.len(), start, len)?;
        Ok(Window { inner, start, len })
    }
}

impl<D: Disk + ?Sized> Disk for Window<'_, D> {
    fn len(&self) -> u64 {
        self.len
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        check_range(self.len, offset, len_u64(buf.len()))?;
        // cannot overflow: offset + len <= self.len and start + self.len <= inner.len()
        let at = self
            .start
            .checked_add(offset)
            .ok_or_else(|| Error::internal(format!("window offset 0x{offset:x} overflows")))?;
        self.inner.read_at(at, buf)
    }
    fn write_at(&mut self, _offset: u64, _data: &[u8]) -> Result<()> {
        Err(Error::invalid("a read-only window cannot be written"))
    }
    fn as_slice(&self) -> Option<&[u8]> {
        let s = self.inner.as_slice()?;
        let start = usize::try_from(self.start).ok()?;
        let end = usize::try_from(self.start.checked_add(self.len)?).ok()?;
        s.get(start..end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_bounds() {
        let d = MemDisk::new((0u8..=255).collect());
        let w = Window::new(&d, 16, 32).unwrap();
        let mut b = [0u8; 4];
        w.read_at(0, &mut b).unwrap();
        assert_eq!(b, [16, 17, 18, 19]);
        assert!(w.read_at(30, &mut b).is_err());
        assert!(w.read_at(u64::MAX - 1, &mut b).is_err());
        assert!(Window::new(&d, 250, 32).is_err());
        assert_eq!(w.as_slice().unwrap().len(), 32);
    }

    #[test]
    fn read_vec_refuses_sizes_beyond_the_disk() {
        let d = MemDisk::new(vec![0; 100]);
        assert!(d.read_vec(0, 1 << 40).is_err());
        assert!(d.read_vec(u64::MAX, 2).is_err());
        assert_eq!(d.read_vec(90, 10).unwrap().len(), 10);
    }
}
