//! In-place value patcher: change the data of existing values of a hive and get back the few
//! (offset, bytes) writes that do it, instead of rewriting a 10+ MiB SYSTEM hive.
//!
//! New data that fits the value's cell is written there; otherwise a free cell of an existing
//! hive bin is taken (split when larger), the vk record is repointed and the old cell freed. No
//! bin is added and nothing else moves; when no free cell is large enough the patch is refused
//! with the reason. [`HivePatcher::finish`] bumps both sequence numbers (the hive stays clean),
//! recomputes the base-block checksum and reads the result back with our reader.

use std::collections::BTreeMap;

use zerocopy::FromBytes;

use super::raw::*;
use super::read::DataCell;
use super::{Hive, Write};
use crate::error::{Error, Result};

/// Writes closer than this are merged into one.
const MERGE_GAP_BYTES: u64 = 16;

/// Patches collected on a copy of a hive.
#[derive(Debug, Clone)]
pub struct HivePatcher {
    bytes: Vec<u8>,
    /// Touched byte ranges of the file: start -> end.
    touched: BTreeMap<usize, usize>,
}

/// The result: the writes to apply to the hive file, and the patched file as a whole (what the
/// file holds once the writes are applied).
#[derive(Debug, Clone)]
pub struct PatchedHive {
    pub writes: Vec<Write>,
    pub bytes: Vec<u8>,
}

impl PatchedHive {
    /// Number of bytes the writes carry.
    pub fn written_bytes(&self) -> usize {
        self.writes.iter().map(|w| w.bytes.len()).sum()
    }
}

fn to_usize(v: u32) -> usize {
    usize::try_from(v).unwrap_or(usize::MAX)
}

impl HivePatcher {
    /// Start patching `hive`. A dirty hive is refused (replay its logs first, see
    /// [`super::replay_logs`]): patching it would hide the pending log data.
    pub fn new(hive: &[u8]) -> Result<HivePatcher> {
        let h = Hive::parse(hive)?;
        if h.is_dirty() {
            let (p, s) = h.sequence();
            return Err(Error::conflict(format!(
                "registry hive is dirty (sequence numbers {p} and {s} differ): replay its .LOG1/.LOG2 first"
            )));
        }
        Ok(HivePatcher {
            bytes: hive.to_vec(),
            touched: BTreeMap::new(),
        })
    }

    /// The hive as patched so far (base block not yet updated).
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    fn put(&mut self, bins_offset: usize, data: &[u8]) -> Result<()> {
        let at = bins_offset
            .checked_add(BASE_BLOCK_BYTES)
            .ok_or_else(|| Error::corrupt("registry patch: offset overflow"))?;
        let end = at
            .checked_add(data.len())
            .ok_or_else(|| Error::corrupt("registry patch: offset overflow"))?;
        self.bytes
            .get_mut(at..end)
            .ok_or_else(|| {
                Error::corrupt(format!("registry patch: write at {at:#x} past the end"))
            })?
            .copy_from_slice(data);
        self.touch(at, end);
        Ok(())
    }

    fn touch(&mut self, at: usize, end: usize) {
        let e = self.touched.entry(at).or_insert(end);
        *e = (*e).max(end);
    }

    /// Set the data of the value `value_name` of the key at `key_path` (the type is kept).
    pub fn set_value_data(&mut self, key_path: &str, value_name: &str, data: &[u8]) -> Result<()> {
        let file = self.bytes.clone();
        let hive = Hive::parse(&file)?;
        let key = hive.open(key_path)?.ok_or_else(|| {
            Error::invalid(format!(
                "registry patch: key {key_path:?} is not in the hive"
            ))
        })?;
        let v = hive.value(&key, value_name)?.ok_or_else(|| {
            Error::invalid(format!(
                "registry patch: value {value_name:?} is not in key {key_path:?}"
            ))
        })?;
        let old = hive.data_cell(&v)?;
        let len = data.len();
        let len32 = u32::try_from(len)
            .ok()
            .filter(|&l| l & DATA_INLINE == 0)
            .ok_or_else(|| Error::invalid("registry patch: data too large"))?;
        if hive.minor_version() >= 4 && len > BIG_DATA_SEGMENT_BYTES {
            return Err(Error::unsupported(format!(
                "registry patch: {len} bytes need a big data record, not written in place"
            )));
        }
        if let DataCell::BigData { offset } = old {
            return Err(Error::unsupported(format!(
                "registry patch: value {value_name:?} is stored as big data at {offset:#x}"
            )));
        }
        let vk = to_usize(v.offset).saturating_add(4);
        let size_field = vk.saturating_add(4);
        let offset_field = vk.saturating_add(8);

        if len <= 4 {
            let mut inline = [0u8; 4];
            inline
                .get_mut(..len)
                .unwrap_or_default()
                .copy_from_slice(data);
            self.put(size_field, &(len32 | DATA_INLINE).to_le_bytes())?;
            self.put(offset_field, &inline)?;
            if let DataCell::Cell { offset, .. } = old {
                self.free_cell(&hive, offset)?;
            }
        } else {
            match old {
                DataCell::Cell { offset, capacity } if to_usize(capacity) >= len => {
                    self.put(to_usize(offset).saturating_add(4), data)?;
                    self.put(size_field, &len32.to_le_bytes())?;
                }
                _ => {
                    let cell = self.allocate(&hive, len)?;
                    self.put(to_usize(cell).saturating_add(4), data)?;
                    self.put(size_field, &len32.to_le_bytes())?;
                    self.put(offset_field, &cell.to_le_bytes())?;
                    if let DataCell::Cell { offset, .. } = old {
                        self.free_cell(&hive, offset)?;
                    }
                }
            }
        }
        // keep the key's "largest value data" field true
        let max_field = to_usize(key.offset).saturating_add(4).saturating_add(0x40);
        let cur = hive
            .bins()
            .get(max_field..max_field.saturating_add(4))
            .and_then(|b| <[u8; 4]>::try_from(b).ok())
            .map(u32::from_le_bytes)
            .unwrap_or(0);
        if len32 > cur {
            self.put(max_field, &len32.to_le_bytes())?;
        }
        Ok(())
    }

    /// Mark an allocated cell free (its size positive). Neighbours are not merged: readers and
    /// Windows accept adjacent free cells.
    fn free_cell(&mut self, hive: &Hive<'_>, offset: u32) -> Result<()> {
        let (size, _) = hive.raw_cell(offset)?;
        let free = size.checked_neg().filter(|s| *s > 0).ok_or_else(|| {
            Error::corrupt(format!(
                "registry patch: cell at {offset:#x} is not allocated"
            ))
        })?;
        self.put(to_usize(offset), &free.to_le_bytes())
    }

    /// Take a free cell for `len` data bytes: the first free cell large enough, in file order.
    fn allocate(&mut self, hive: &Hive<'_>, len: usize) -> Result<u32> {
        let need = len
            .checked_add(4)
            .and_then(|n| n.checked_next_multiple_of(8))
            .ok_or_else(|| Error::invalid("registry patch: data too large"))?;
        let bins = hive.bins();
        let starts = hive.bin_starts();
        for (i, &start) in starts.iter().enumerate() {
            let end = starts
                .get(i.saturating_add(1))
                .copied()
                .unwrap_or(bins.len());
            let mut at = start.saturating_add(HBIN_HEADER_BYTES);
            // each step advances by at least 8 bytes, so this ends within the bin
            while at < end {
                let size = bins
                    .get(at..at.saturating_add(4))
                    .and_then(|b| <[u8; 4]>::try_from(b).ok())
                    .map(i32::from_le_bytes)
                    .ok_or_else(|| {
                        Error::corrupt(format!("registry hive: cell at {at:#x} truncated"))
                    })?;
                let abs = to_usize(size.unsigned_abs());
                if abs < 8 || !abs.is_multiple_of(8) || at.checked_add(abs).is_none_or(|e| e > end)
                {
                    return Err(Error::corrupt(format!(
                        "registry hive: cell at {at:#x} has size {size}, the cells of the bin at {start:#x} do not tile it"
                    )));
                }
                if size > 0 && abs >= need && self.untouched(at, abs) {
                    let cell = u32::try_from(at).map_err(|_| Error::corrupt("offset"))?;
                    let rest = abs.saturating_sub(need);
                    let taken = if rest >= 8 { need } else { abs };
                    let neg = i32::try_from(taken)
                        .map_err(|_| Error::corrupt("size"))?
                        .wrapping_neg();
                    self.put(at, &neg.to_le_bytes())?;
                    if rest >= 8 {
                        let free = i32::try_from(rest).map_err(|_| Error::corrupt("size"))?;
                        self.put(at.saturating_add(need), &free.to_le_bytes())?;
                    }
                    return Ok(cell);
                }
                at = at.saturating_add(abs);
            }
        }
        Err(Error::unsupported(format!(
            "registry patch: no free cell of {need} bytes in the hive's bins (growing the hive file is not done in place)"
        )))
    }

    /// The free cell at `at` was not written by this patcher already (it reads the hive as it
    /// was when the current value was looked up; our own allocations are in `self.bytes`).
    fn untouched(&self, at: usize, len: usize) -> bool {
        let file_at = at.saturating_add(BASE_BLOCK_BYTES);
        let file_end = file_at.saturating_add(len);
        // a cell we split or took is no longer free in self.bytes
        let now = self
            .bytes
            .get(file_at..file_at.saturating_add(4))
            .and_then(|b| <[u8; 4]>::try_from(b).ok())
            .map(i32::from_le_bytes)
            .unwrap_or(0);
        now > 0
            && to_usize(now.unsigned_abs()) >= len
            && !self
                .touched
                .range(..file_end)
                .any(|(&s, &e)| s < file_end && e > file_at && s != file_at)
    }

    /// Bump the sequence numbers (both to primary + 1), recompute the checksum, check the result
    /// with our reader, and give the writes.
    pub fn finish(mut self) -> Result<PatchedHive> {
        if self.touched.is_empty() {
            return Ok(PatchedHive {
                writes: Vec::new(),
                bytes: self.bytes,
            });
        }
        let (mut base, _) = RawBaseBlock::read_from_prefix(&self.bytes)
            .map_err(|_| Error::corrupt("registry hive: base block truncated"))?;
        let seq = base.primary_sequence.get().wrapping_add(1);
        base.primary_sequence = seq.into();
        base.secondary_sequence = seq.into();
        let sum = base_block_checksum(zerocopy::IntoBytes::as_bytes(&base)).unwrap_or(1);
        base.checksum = sum.into();
        self.bytes
            .get_mut(..core::mem::size_of::<RawBaseBlock>())
            .ok_or_else(|| Error::corrupt("registry hive: base block truncated"))?
            .copy_from_slice(zerocopy::IntoBytes::as_bytes(&base));
        self.touch(4, 12);
        self.touch(508, 512);

        let check = Hive::parse(&self.bytes)?;
        if check.is_dirty() {
            return Err(Error::corrupt("registry patch: result is dirty"));
        }
        check.read_tree()?;

        let mut writes: Vec<Write> = Vec::new();
        let mut ranges: Vec<(usize, usize)> = Vec::new();
        for (&s, &e) in &self.touched {
            match ranges.last_mut() {
                Some(last)
                    if u64::try_from(s).unwrap_or(u64::MAX)
                        <= u64::try_from(last.1)
                            .unwrap_or(0)
                            .saturating_add(MERGE_GAP_BYTES) =>
                {
                    last.1 = last.1.max(e)
                }
                _ => ranges.push((s, e)),
            }
        }
        for (s, e) in ranges {
            writes.push(Write {
                offset: u64::try_from(s).unwrap_or(u64::MAX),
                bytes: self.bytes.get(s..e).unwrap_or_default().to_vec(),
            });
        }
        Ok(PatchedHive {
            writes,
            bytes: self.bytes,
        })
    }
}
