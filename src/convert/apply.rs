//! Carrying a plan out: the journal of exactly the plan's steps first (fsynced), then the new
//! length, then the steps in order, then fsync. Works on any [`Disk`]: the image file, or an
//! in-memory disk in the fuzz targets.

use std::path::Path;

use super::faults::Faults;
use super::journal::{self, Journal, SavedRegion};
use super::plan::{Payload, Plan, Step};
use crate::disk::Disk;
use crate::error::{Error, Result};
use crate::esp::NonZeroRegions;
use crate::units::len_u64;

/// The contents a plan's steps refer to but do not hold.
pub struct Contents<'a> {
    /// The ESP's FAT32 image ([`Payload::Esp`]), exactly the planned ESP's size, sparsely.
    pub esp: SparseImage<'a>,
}

/// An image as its length and its non-zero extents (ascending, disjoint); every other byte is
/// zero. A new ESP is mostly zeros: apply then looks only at the parts that hold data, and at
/// the parts of the disk that are not holes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SparseImage<'a> {
    len: u64,
    extents: Vec<(u64, &'a [u8])>,
}

impl<'a> SparseImage<'a> {
    /// The non-zero 4 KiB blocks of `bytes`, merged ([`NonZeroRegions`]).
    pub fn of(bytes: &'a [u8]) -> Self {
        SparseImage {
            len: len_u64(bytes.len()),
            extents: NonZeroRegions::of(bytes).collect(),
        }
    }

    /// Length in bytes, zeros included.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The non-zero extents as (offset, bytes).
    pub fn extents(&self) -> &[(u64, &'a [u8])] {
        &self.extents
    }

    /// The extents that overlap `at..at + len`.
    fn overlapping(&self, at: u64, len: u64) -> impl Iterator<Item = &(u64, &'a [u8])> {
        let end = at.saturating_add(len);
        self.extents
            .iter()
            .filter(move |(o, b)| *o < end && o.saturating_add(len_u64(b.len())) > at)
    }

    /// Fill `buf` with the image's bytes at `at..at + buf.len()`.
    fn read_into(&self, at: u64, buf: &mut [u8]) {
        buf.fill(0);
        for (o, b) in self.overlapping(at, len_u64(buf.len())) {
            // The overlap, as offsets into the extent and into `buf`.
            let from = at.max(*o);
            let to = at
                .saturating_add(len_u64(buf.len()))
                .min(o.saturating_add(len_u64(b.len())));
            let span = |base: u64| {
                let s = usize::try_from(from.saturating_sub(base)).ok()?;
                let e = usize::try_from(to.saturating_sub(base)).ok()?;
                Some(s..e)
            };
            if let (Some(src), Some(dst)) = (span(*o), span(at)) {
                if let (Some(src), Some(dst)) = (b.get(src), buf.get_mut(dst)) {
                    dst.copy_from_slice(src);
                }
            }
        }
    }
}

/// The bytes `step` writes at `rel .. rel + out.len()` inside itself.
pub(super) fn step_content(
    step: &Step,
    contents: &Contents,
    rel: u64,
    out: &mut [u8],
) -> Result<()> {
    let src: &[u8] = match &step.payload {
        Payload::Bytes(b) => b,
        Payload::Esp => {
            contents.esp.read_into(rel, out);
            return Ok(());
        }
        Payload::Zeros | Payload::Resize2fs => &[],
    };
    out.fill(0);
    let from = usize::try_from(rel).unwrap_or(usize::MAX);
    if let Some(have) = src.get(from..) {
        let n = have.len().min(out.len());
        if let (Some(dst), Some(s)) = (out.get_mut(..n), have.get(..n)) {
            dst.copy_from_slice(s);
        }
    }
    Ok(())
}

/// The undo journal of `steps` (the plan's, resize2fs's expanded): the old bytes of every step
/// that lies in the old file, with the checksums of what the step writes, and the image's VHD
/// unique id.
pub fn journal_of(
    disk: &dyn Disk,
    plan: &Plan,
    steps: &[Step],
    contents: &Contents,
) -> Result<Journal> {
    let mut regions = Vec::new();
    for s in steps {
        if s.external() {
            return Err(Error::internal(format!(
                "step {} is carried out by an external tool and has no bytes to journal",
                s.what
            )));
        }
        if s.offset < plan.old_file_bytes {
            let mut r = SavedRegion::capture(disk, s.offset, s.length)?;
            r.set_converted(&s.what, |rel, out| step_content(s, contents, rel, out))?;
            regions.push(r);
        }
    }
    Ok(Journal {
        original_len: plan.old_file_bytes,
        converted_len: plan.new_file_bytes,
        unique_id: journal::footer_unique_id(disk, plan.old_file_bytes)?.unwrap_or_default(),
        regions,
    })
}

/// The plan's steps, with each resize2fs step replaced by the writes that give its result,
/// found by running resize2fs on an overlay (the image is only read).
fn expand_external(disk: &dyn Disk, steps: &[Step]) -> Result<Vec<Step>> {
    let mut out = Vec::with_capacity(steps.len());
    for s in steps {
        if s.external() {
            let path = disk.path().map(Path::to_path_buf).ok_or_else(|| {
                Error::internal("resize2fs needs the image as a file, and this disk is not one")
            })?;
            let (steps, _) =
                journal::overlay::shrink_steps(disk, &path, s.offset, s.length, &s.what)?;
            out.extend(steps);
        } else {
            out.push(s.clone());
        }
    }
    Ok(out)
}

/// Carry out `plan` on `disk`. With `journal_path`, the undo journal is written (and fsynced)
/// before the first write, and resize2fs runs on an overlay whose result is written as
/// journaled steps; without it (a copy), resize2fs shrinks the disk's file directly. Returns
/// the bytes written.
pub fn apply(
    disk: &mut dyn Disk,
    plan: &Plan,
    contents: &Contents,
    journal_path: Option<&Path>,
    faults: &mut Faults,
) -> Result<u64> {
    let esp_bytes = plan.esp.as_ref().map_or(0, |e| e.size_bytes);
    if contents.esp.len() != esp_bytes {
        return Err(Error::internal(format!(
            "the ESP image holds {} bytes, the plan {esp_bytes}",
            contents.esp.len(),
        )));
    }
    let expanded;
    let steps: &[Step] = match journal_path {
        Some(jp) => {
            expanded = expand_external(disk, &plan.steps)?;
            let journal = journal_of(disk, plan, &expanded, contents)?;
            // room for the journal and the image's new blocks, before the journal's first byte
            if let Some(image) = disk.path() {
                super::space::ensure_in_place(
                    disk,
                    image,
                    jp,
                    &journal,
                    plan.new_file_bytes,
                    &expanded,
                    contents,
                )?;
            }
            journal.write(jp, || faults.tick())?;
            if let Some(image) = disk.path() {
                journal::mark(image, jp);
            }
            &expanded
        }
        None => &plan.steps,
    };
    if plan.new_file_bytes != disk.len() {
        faults.tick();
        disk.set_len(plan.new_file_bytes).map_err(|e| {
            if e.raw_os_error() == Some(28) {
                Error::io(
                    format!(
                        "growing the image to {} bytes: the filesystem is full",
                        plan.new_file_bytes
                    ),
                    std::io::Error::from_raw_os_error(28),
                )
            } else {
                e
            }
        })?;
    }
    let mut written = 0u64;
    for step in steps {
        written = written.saturating_add(write_step(disk, step, contents, faults)?);
    }
    disk.sync()?;
    Ok(written)
}

fn write_step(
    disk: &mut dyn Disk,
    step: &Step,
    contents: &Contents,
    faults: &mut Faults,
) -> Result<u64> {
    let n = usize::try_from(step.length)
        .map_err(|_| Error::internal(format!("step {} is too large", step.what)))?;
    match &step.payload {
        Payload::Bytes(b) if b.len() == n => write(disk, faults, step.offset, b),
        Payload::Bytes(b) => Err(Error::internal(format!(
            "step {}: {} bytes planned, {} given",
            step.what,
            n,
            b.len()
        ))),
        Payload::Zeros => write(disk, faults, step.offset, &vec![0u8; n]),
        Payload::Esp => write_changed(disk, faults, step.offset, &contents.esp),
        Payload::Resize2fs => {
            faults.tick();
            let path = disk.path().map(Path::to_path_buf).ok_or_else(|| {
                Error::internal("resize2fs needs the image as a file, and this disk is not one")
            })?;
            // resize2fs writes the file behind our back: our own writes are durable first
            disk.sync()?;
            // a copy only: an in-place conversion ran resize2fs on an overlay instead
            crate::shrink::ext4::shrink(&path, step.offset, step.length, None)?;
            Ok(0)
        }
    }
}

fn write(disk: &mut dyn Disk, faults: &mut Faults, offset: u64, data: &[u8]) -> Result<u64> {
    faults.tick();
    disk.write_at(offset, data)?;
    Ok(len_u64(data.len()))
}

/// Granularity of the ESP's writes: a block is written whole when any of its bytes differs.
const ESP_BLOCK: u64 = 1 << 20;

/// Write `image` at `offset`, one MiB at a time, skipping blocks whose content is already right
/// (the ESP is mostly zeros and, when the disk grew, lands on a hole). A block is written whole
/// when any of its bytes differs, so the bytes written are those of a full comparison.
fn write_changed(
    disk: &mut dyn Disk,
    faults: &mut Faults,
    offset: u64,
    image: &SparseImage,
) -> Result<u64> {
    let mut want = Vec::new();
    let mut written = 0u64;
    for (pos, len) in esp_blocks(disk, offset, image, false)? {
        let n = usize::try_from(len)
            .map_err(|_| Error::internal("an ESP block does not fit in memory"))?;
        want.resize(n, 0);
        image.read_into(pos, &mut want);
        written = written.saturating_add(write(disk, faults, offset.saturating_add(pos), &want)?);
    }
    Ok(written)
}

/// The MiB blocks [`write_changed`] writes when it puts `image` at `offset` of `disk` as the
/// disk is now: those whose bytes differ, as (offset inside the image, length). A block wholly
/// in a hole differs exactly where the image has data, and is not read. With `skip_data`,
/// blocks wholly in data are left out unread: the free-space estimate, to which writing them
/// makes no difference on a filesystem that overwrites in place.
pub(super) fn esp_blocks(
    disk: &dyn Disk,
    offset: u64,
    image: &SparseImage,
    skip_data: bool,
) -> Result<Vec<(u64, u64)>> {
    let len = image.len();
    let readable = len.min(disk.len().saturating_sub(offset));
    // holes read as zeros: find them instead of reading them
    let data = disk.data_extents(offset, readable)?;
    let mut want = Vec::new();
    let mut have = Vec::new();
    let mut out = Vec::new();
    let mut pos = 0u64;
    while pos < len {
        let block = ESP_BLOCK.min(len.saturating_sub(pos));
        let at = offset.saturating_add(pos);
        let block_end = at.saturating_add(block);
        let overlaps = |&(s, l): &(u64, u64)| s < block_end && s.saturating_add(l) > at;
        let in_hole = !data.iter().any(overlaps);
        let in_data = data
            .iter()
            .any(|&(s, l)| s <= at && s.saturating_add(l) >= block_end);
        // A hole reads as zeros: it differs exactly where the image has data.
        let differs = if in_hole {
            image.overlapping(pos, block).next().is_some()
        } else if skip_data && in_data {
            false
        } else {
            let n = usize::try_from(block)
                .map_err(|_| Error::internal("an ESP block does not fit in memory"))?;
            want.resize(n, 0);
            have.resize(n, 0);
            image.read_into(pos, &mut want);
            disk.read_at(at, &mut have)?;
            have != want
        };
        if differs {
            out.push((pos, block));
        }
        pos = pos.saturating_add(block);
    }
    Ok(out)
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    clippy::as_conversions
)] // tests: a panic is a failed test
mod tests {
    use super::*;
    use crate::disk::MemDisk;

    /// A memory disk whose first `data_end` bytes are data and the rest a hole (reads as zeros).
    struct HoleDisk {
        inner: MemDisk,
        data_end: u64,
    }

    impl Disk for HoleDisk {
        fn len(&self) -> u64 {
            self.inner.len()
        }
        fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
            self.inner.read_at(offset, buf)
        }
        fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<()> {
            self.inner.write_at(offset, data)
        }
        fn data_extents(&self, from: u64, len: u64) -> Result<Vec<(u64, u64)>> {
            let end = (from + len).min(self.data_end);
            Ok(if end > from {
                vec![(from, end - from)]
            } else {
                Vec::new()
            })
        }
    }

    /// An ESP-like image: 5 MiB, data at the start, in the middle (across a MiB boundary) and
    /// in the last, short block.
    fn image() -> Vec<u8> {
        let mut img = vec![0u8; 5 * (1 << 20) + 4096 * 3];
        img[..600].fill(0xEB);
        img[(2 << 20) - 10..(2 << 20) + 5000].fill(0x11);
        let n = img.len();
        img[n - 1] = 0x42;
        img
    }

    /// The sparse write gives the very bytes a full write gives, over old data (garbage, zeros)
    /// and over a hole, and writes whole MiB blocks exactly where they differ.
    #[test]
    fn sparse_esp_write_is_the_full_image() {
        let img = image();
        let sparse = SparseImage::of(&img);
        assert_eq!(sparse.len(), img.len() as u64);
        assert_eq!(sparse.extents().len(), 3);
        let offset: u64 = 3 << 20;
        let total = offset + img.len() as u64 + (1 << 20);
        let garbage = |end: u64| -> Vec<u8> {
            (0..total)
                .map(|i| if i < end { (i % 251) as u8 } else { 0 })
                .collect()
        };
        // (where the hole starts, the old bytes: garbage before the hole, zeros in it)
        let cases = [
            (total, garbage(total)),
            (offset + (4 << 20), garbage(offset + (4 << 20))),
            (offset, garbage(offset)),
            (total, vec![0u8; total as usize]),
        ];
        for (data_end, start) in cases {
            let mut disk = HoleDisk {
                inner: MemDisk::new(start.clone()),
                data_end,
            };
            let written = write_changed(&mut disk, &mut Faults::none(), offset, &sparse).unwrap();
            let mut want = start.clone();
            want[offset as usize..offset as usize + img.len()].copy_from_slice(&img);
            let mut got = vec![0u8; total as usize];
            disk.read_at(0, &mut got).unwrap();
            assert!(got == want, "hole from {data_end}");
            // the full comparison's count: every differing MiB block, whole
            let expect: u64 = img
                .chunks(1 << 20)
                .enumerate()
                .filter(|(blk, chunk)| {
                    let at = offset as usize + blk * (1 << 20);
                    start[at..at + chunk.len()] != **chunk
                })
                .map(|(_, chunk)| chunk.len() as u64)
                .sum();
            assert_eq!(written, expect, "hole from {data_end}");
        }
    }
}
