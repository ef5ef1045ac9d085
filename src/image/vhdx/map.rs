//! The block map of a VHDX: BAT entries to pieces of the virtual disk (2.5), and for a
//! differencing disk the sector bitmaps of partially present blocks (2.4).

use std::cell::RefCell;

use super::super::{Backend, Piece, Source};
use super::{
    MIB, PAYLOAD_FULLY_PRESENT, PAYLOAD_NOT_PRESENT, PAYLOAD_PARTIALLY_PRESENT, PAYLOAD_UNDEFINED,
    PAYLOAD_UNMAPPED, PAYLOAD_ZERO, SB_BLOCK_PRESENT, SECTOR_BITMAP_BYTES,
};
use crate::disk::Disk;
use crate::error::{Error, Result};

/// The reader of one VHDX file's virtual disk (pieces from the child, its parent, or zero).
pub(super) struct VhdxBackend {
    pub(super) size: u64,
    pub(super) block_bytes: u64,
    pub(super) chunk_ratio: u64,
    pub(super) bat_offset: u64,
    /// Logical sector size: the unit of the sector bitmap.
    pub(super) sector_bytes: u64,
    pub(super) differencing: bool,
    /// The sector bitmap of the last partially present block read (payload block index, the
    /// block's part of its chunk's bitmap: one bit per logical sector).
    pub(super) bitmap: RefCell<Option<(u64, Vec<u8>)>>,
}

impl VhdxBackend {
    fn bat_entry(&self, file: &dyn Disk, index: u64) -> Result<u64> {
        let at = index
            .checked_mul(8)
            .and_then(|o| self.bat_offset.checked_add(o))
            .ok_or_else(|| Error::corrupt("VHDX BAT offset overflows"))?;
        let mut b = [0u8; 8];
        file.read_at(at, &mut b)
            .map_err(|e| e.context(format!("VHDX BAT entry {index}")))?;
        Ok(u64::from_le_bytes(b))
    }

    /// The file offset of a block of `len` bytes a BAT entry points at, checked to lie after
    /// the header section and inside the file.
    fn host(&self, file: &dyn Disk, entry: u64, len: u64, index: u64, what: &str) -> Result<u64> {
        let host = (entry >> 20).saturating_mul(MIB);
        if host < MIB || host.checked_add(len).is_none_or(|end| end > file.len()) {
            return Err(Error::corrupt(format!(
                "VHDX BAT entry {index}: {what} at 0x{host:x} lies outside the file (0x{:x} bytes)",
                file.len()
            )));
        }
        Ok(host)
    }

    /// Sectors `first..sectors` of payload block `block` (within its chunk at bitmap entry
    /// `sb_index`) whose sector bitmap bits equal the first one's: (bit, count).
    fn bitmap_run(
        &self,
        file: &dyn Disk,
        block: u64,
        sb_index: u64,
        first: u64,
        sectors: u64,
    ) -> Result<(bool, u64)> {
        let mut cache = self.bitmap.borrow_mut();
        if !matches!(&*cache, Some((b, _)) if *b == block) {
            let entry = self.bat_entry(file, sb_index)?;
            if entry & 7 != SB_BLOCK_PRESENT {
                return Err(Error::corrupt(format!(
                    "VHDX BAT entry {sb_index}: the sector bitmap of partially present block {block} is in state {}, not present (6)",
                    entry & 7
                )));
            }
            let host = self.host(file, entry, SECTOR_BITMAP_BYTES, sb_index, "sector bitmap")?;
            // this block's bits: its place in the chunk times its sectors, in bytes (the
            // sectors per block are a power of two of at least 256)
            let per_block = self.block_bytes.checked_div(self.sector_bytes).unwrap_or(0);
            let within = block
                .checked_rem(self.chunk_ratio)
                .unwrap_or(0)
                .saturating_mul(per_block)
                / 8;
            let at = host.saturating_add(within);
            let bytes = file.read_vec(at, per_block / 8).map_err(|e| {
                e.context(format!("sector bitmap of VHDX block {block} at 0x{at:x}"))
            })?;
            *cache = Some((block, bytes));
        }
        let Some((_, bits)) = &*cache else {
            return Err(Error::corrupt("VHDX sector bitmap cache is empty"));
        };
        Ok(bit_run(bits, first, sectors))
    }
}

/// In `bits` (bit 0 of byte 0 is the first sector, 2.4), the run of equal bits from `first`
/// up to `end`: (the bit, how many). Bits past `bits` read as clear.
fn bit_run(bits: &[u8], first: u64, end: u64) -> (bool, u64) {
    let byte_at = |s: u64| -> u8 {
        usize::try_from(s / 8)
            .ok()
            .and_then(|i| bits.get(i))
            .copied()
            .unwrap_or(0)
    };
    let bit = |s: u64| (byte_at(s) >> (s % 8)) & 1 == 1;
    let want = bit(first);
    let full = if want { 0xff } else { 0x00 };
    let mut s = first.saturating_add(1);
    while s < end {
        // whole bytes of the same bit at once
        if s.is_multiple_of(8) && s.saturating_add(8) <= end && byte_at(s) == full {
            s = s.saturating_add(8);
        } else if bit(s) == want {
            s = s.saturating_add(1);
        } else {
            break;
        }
    }
    (want, s.saturating_sub(first))
}

impl Backend for VhdxBackend {
    fn virtual_bytes(&self) -> u64 {
        self.size
    }

    fn piece(&self, file: &dyn Disk, offset: u64) -> Result<Piece> {
        let bs = self.block_bytes;
        let block = offset.checked_div(bs).unwrap_or(0);
        let within = offset.checked_rem(bs).unwrap_or(0);
        let block_start = offset.saturating_sub(within);
        let block_end = block_start.saturating_add(bs).min(self.size);
        let len = block_end.saturating_sub(offset);
        // payload entry i sits after i / chunk_ratio sector-bitmap entries (2.5)
        let chunk = block.checked_div(self.chunk_ratio).unwrap_or(0);
        let index = block.saturating_add(chunk);
        let entry = self.bat_entry(file, index)?;
        let source = match entry & 7 {
            PAYLOAD_NOT_PRESENT if self.differencing => Source::Parent,
            PAYLOAD_NOT_PRESENT | PAYLOAD_UNDEFINED | PAYLOAD_ZERO | PAYLOAD_UNMAPPED => {
                Source::Zero
            }
            PAYLOAD_FULLY_PRESENT => {
                let host = self.host(file, entry, bs, index, &format!("block {block}"))?;
                Source::Host(host.saturating_add(within))
            }
            PAYLOAD_PARTIALLY_PRESENT if self.differencing => {
                let host = self.host(file, entry, bs, index, &format!("block {block}"))?;
                // the chunk's sector bitmap entry follows its chunk_ratio payload entries
                let sb_index = chunk
                    .saturating_add(1)
                    .saturating_mul(self.chunk_ratio.saturating_add(1))
                    .saturating_sub(1);
                let ss = self.sector_bytes;
                let sectors = block_end.saturating_sub(block_start).div_ceil(ss);
                let first = within.checked_div(ss).unwrap_or(0);
                let (set, count) = self.bitmap_run(file, block, sb_index, first, sectors)?;
                let run_end = block_start
                    .saturating_add(first.saturating_add(count).saturating_mul(ss))
                    .min(block_end);
                let source = if set {
                    Source::Host(host.saturating_add(within))
                } else {
                    Source::Parent
                };
                return Ok(Piece {
                    len: run_end.saturating_sub(offset),
                    source,
                });
            }
            other => {
                return Err(Error::corrupt(format!(
                    "VHDX BAT entry {index}: payload block state {other} is not valid in a {} disk",
                    if self.differencing {
                        "differencing"
                    } else {
                        "fixed or dynamic"
                    }
                )))
            }
        };
        Ok(Piece { len, source })
    }
}

#[cfg(test)]
#[allow(
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::arithmetic_side_effects,
    clippy::as_conversions
)] // tests: a panic is a failed test
mod tests {
    use super::*;

    #[test]
    fn sector_bitmap_runs() {
        // bit 0 of byte 0 is sector 0: sectors 0-2 set, 3-15 clear, 16-31 set
        let bits = [0b0000_0111, 0x00, 0xff, 0xff];
        assert_eq!(bit_run(&bits, 0, 32), (true, 3));
        assert_eq!(bit_run(&bits, 1, 32), (true, 2));
        assert_eq!(bit_run(&bits, 3, 32), (false, 13));
        assert_eq!(bit_run(&bits, 16, 32), (true, 16));
        assert_eq!(bit_run(&bits, 16, 20), (true, 4));
        // past the bytes: clear
        assert_eq!(bit_run(&bits, 30, 40), (true, 2));
        assert_eq!(bit_run(&bits, 32, 40), (false, 8));
    }
}
