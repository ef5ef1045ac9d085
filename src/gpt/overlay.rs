//! A sparse read-only view of a disk, so an encoded GPT can be read back without allocating
//! a disk-sized buffer.

use crate::disk::Disk;
use crate::error::{Error, Result};

/// A read-only disk of `len` zero bytes with a few regions of data laid over it.
pub(super) struct Overlay<'a> {
    pub(super) len: u64,
    pub(super) regions: [(u64, &'a [u8]); 2],
}

impl Disk for Overlay<'_> {
    fn len(&self) -> u64 {
        self.len
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        let n = u64::try_from(buf.len()).unwrap_or(u64::MAX);
        crate::disk::check_range(self.len, offset, n)?;
        buf.fill(0);
        let end = offset.saturating_add(n);
        for &(start, data) in &self.regions {
            let dlen = u64::try_from(data.len()).unwrap_or(u64::MAX);
            let lo = start.max(offset);
            let hi = start.saturating_add(dlen).min(end);
            if lo >= hi {
                continue;
            }
            let src = usize::try_from(lo.saturating_sub(start)).ok();
            let dst = usize::try_from(lo.saturating_sub(offset)).ok();
            let len = usize::try_from(hi.saturating_sub(lo)).ok();
            if let (Some(s), Some(d), Some(l)) = (src, dst, len) {
                let from = data.get(s..s.saturating_add(l));
                let to = buf.get_mut(d..d.saturating_add(l));
                if let (Some(from), Some(to)) = (from, to) {
                    to.copy_from_slice(from);
                }
            }
        }
        Ok(())
    }
    fn write_at(&mut self, _offset: u64, _data: &[u8]) -> Result<()> {
        Err(Error::invalid("an overlay view cannot be written"))
    }
}
