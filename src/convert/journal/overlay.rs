//! resize2fs under our own journal: it never writes the image.
//!
//! An in-place `--room shrink` of an ext2/3/4 partition runs resize2fs on an overlay: a sparse
//! copy of the filesystem's byte range in a temporary file beside the image
//! ([`overlay_path`]; `copy_file_range`, which shares blocks where the filesystem can reflink,
//! and copies only the image's data extents everywhere else). resize2fs shrinks the overlay;
//! the overlay is then compared with the image, block by block over the data extents of both,
//! and every changed run becomes an ordinary [`Step`] of bytes. Those steps are journaled and
//! written like every other step, so `rollback` needs nothing but the journal, and a kill at
//! any point of resize2fs's run (or of an orphaned resize2fs living on after vhdtool) leaves
//! the image untouched: resize2fs only ever held the overlay.
//!
//! Cost: the overlay takes the data extents of the filesystem's range (shared, not copied, on
//! btrfs/XFS), the changed runs are held in memory once (the blocks resize2fs moved, its
//! rewritten metadata) and the journal keeps their old bytes.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::convert::plan::{Payload, Step};
use crate::disk::{merge_ranges, Disk};
use crate::error::{Error, Result};

/// Comparison granularity: a page, the unit resize2fs writes in (its blocks are 1-64 KiB).
const BLOCK: usize = 4096;
/// Buffer of the comparison and of the user-space copy.
const CHUNK: usize = 1 << 20;
/// Changed runs closer than this are merged into one step (the bytes between are rewritten
/// unchanged), so that the journal holds a bounded number of regions.
const MERGE_GAP: u64 = 64 << 10;
/// At most this many steps come out of one resize2fs run: the gap doubles until they fit.
const MAX_STEPS: usize = 256;

/// The overlay of `image`: `.NAME.vhdtool-overlay` in the image's directory.
pub fn overlay_path(image: &Path) -> PathBuf {
    let mut name = std::ffi::OsString::from(".");
    name.push(image.file_name().unwrap_or_default());
    name.push(".vhdtool-overlay");
    image.with_file_name(name)
}

/// Remove an overlay left by a run that was killed (the caller holds the image's exclusive
/// lock, so no other vhdtool is using it; an orphaned resize2fs writing it keeps an unlinked
/// file). Says whether there was one.
pub fn remove_stale(image: &Path) -> Result<bool> {
    let p = overlay_path(image);
    match fs::remove_file(&p) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(Error::io(
            format!("removing the stale overlay {}", p.display()),
            e,
        )),
    }
}

/// What [`shrink_steps`] measured.
#[derive(Debug, Clone, Default)]
pub struct OverlayReport {
    /// Bytes of the filesystem's range (the overlay's size).
    pub span_bytes: u64,
    /// Data bytes copied into the overlay.
    pub copied_bytes: u64,
    /// Bytes the returned steps write.
    pub changed_bytes: u64,
}

/// Shrink the ext2/3/4 filesystem at `part_offset` of `image` (the file behind `disk`) to
/// `new_bytes` on an overlay, and return the writes that make the image hold the result, as
/// steps named after `what`. The image is only read; the overlay is removed whatever happens.
pub fn shrink_steps(
    disk: &dyn Disk,
    image: &Path,
    part_offset: u64,
    new_bytes: u64,
    what: &str,
) -> Result<(Vec<Step>, OverlayReport)> {
    let span = crate::shrink::ext4::geometry(image, part_offset)?.fs_bytes();
    let span_end = part_offset
        .checked_add(span)
        .filter(|&e| e <= disk.len())
        .ok_or_else(|| {
            Error::corrupt(format!(
                "the ext filesystem at 0x{part_offset:x} ({span} bytes) runs past the end of {}",
                image.display()
            ))
        })?;
    let path = overlay_path(image);
    remove_stale(image)?;
    let result = (|| -> Result<(Vec<Step>, OverlayReport)> {
        let overlay = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| Error::io(format!("creating the overlay {}", path.display()), e))?;
        overlay
            .set_len(span)
            .map_err(|e| Error::io(format!("sizing the overlay {}", path.display()), e))?;
        let source =
            File::open(image).map_err(|e| Error::io(format!("opening {}", image.display()), e))?;
        let extents = disk.data_extents(part_offset, span)?;
        let mut copied = 0u64;
        for &(start, len) in &extents {
            let rel = start
                .checked_sub(part_offset)
                .ok_or_else(|| Error::internal("a data extent before the filesystem"))?;
            copy_range(&source, start, &overlay, rel, len)
                .map_err(|e| Error::io(format!("copying {} to the overlay", image.display()), e))?;
            copied = copied.saturating_add(len);
        }
        drop(overlay);
        // a full disk here (the overlay's copy above, or resize2fs's writes) is an I/O error
        // with ENOSPC, and the image and the journal are untouched: the overlay is a scratch
        // file, removed below, and nothing else has been written yet
        crate::shrink::ext4::shrink(&path, 0, new_bytes, None)
            .map_err(|e| e.context("shrinking the overlay (the image is untouched)"))?;
        let overlay = File::open(&path)
            .map_err(|e| Error::io(format!("opening the overlay {}", path.display()), e))?;
        let mut ranges: Vec<(u64, u64)> = crate::disk::data_extents(&overlay, span)?;
        for &(start, len) in &extents {
            ranges.push((start.saturating_sub(part_offset), len));
        }
        let runs = changed_runs(disk, part_offset, &overlay, &merge_ranges(ranges))?;
        let runs = coalesce(runs);
        let mut steps = Vec::with_capacity(runs.len());
        let mut changed = 0u64;
        for (rel, len) in runs {
            let n = usize::try_from(len).map_err(|_| Error::internal("a changed run too large"))?;
            let mut bytes = vec![0u8; n];
            overlay
                .read_exact_at(&mut bytes, rel)
                .map_err(|e| Error::io(format!("reading the overlay {}", path.display()), e))?;
            let offset = part_offset
                .checked_add(rel)
                .filter(|&o| o.saturating_add(len) <= span_end)
                .ok_or_else(|| Error::internal("a changed run outside the filesystem"))?;
            changed = changed.saturating_add(len);
            steps.push(Step {
                offset,
                length: len,
                what: format!("{what}: blocks resize2fs rewrote"),
                payload: Payload::Bytes(bytes),
            });
        }
        Ok((
            steps,
            OverlayReport {
                span_bytes: span,
                copied_bytes: copied,
                changed_bytes: changed,
            },
        ))
    })();
    let removed = fs::remove_file(&path);
    let out = result?;
    removed.map_err(|e| Error::io(format!("removing the overlay {}", path.display()), e))?;
    Ok(out)
}

/// Copy `len` bytes at `from` of `src` to `at` of `dst`: `copy_file_range` (shared blocks
/// where the filesystem reflinks), else through a buffer, all-zero buffers left as holes.
fn copy_range(src: &File, from: u64, dst: &File, at: u64, len: u64) -> io::Result<()> {
    let mut done = 0u64;
    let mut kernel = true;
    let mut buf = Vec::new();
    while done < len {
        let left = len.saturating_sub(done);
        let want = usize::try_from(left).unwrap_or(CHUNK).min(CHUNK);
        let (mut off_in, mut off_out) = (from.saturating_add(done), at.saturating_add(done));
        let n = if kernel {
            match rustix::fs::copy_file_range(src, Some(&mut off_in), dst, Some(&mut off_out), want)
            {
                Ok(n) => n,
                Err(e) => {
                    use rustix::io::Errno;
                    if matches!(
                        e,
                        Errno::XDEV | Errno::INVAL | Errno::NOSYS | Errno::OPNOTSUPP
                    ) {
                        kernel = false;
                        continue;
                    }
                    return Err(io::Error::from(e));
                }
            }
        } else {
            buf.resize(want, 0);
            let n = src.read_at(&mut buf, off_in)?;
            let got = buf.get(..n).unwrap_or_default();
            if got.iter().any(|&b| b != 0) {
                dst.write_all_at(got, off_out)?;
            }
            n
        };
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the image ended early",
            ));
        }
        done = done.saturating_add(u64::try_from(n).unwrap_or(u64::MAX));
    }
    Ok(())
}

/// The runs (offset inside the filesystem, length) where the overlay differs from the image,
/// in whole [`BLOCK`]s (the last one clipped to the range), looking only at `ranges`.
fn changed_runs(
    disk: &dyn Disk,
    part_offset: u64,
    overlay: &File,
    ranges: &[(u64, u64)],
) -> Result<Vec<(u64, u64)>> {
    let mut runs: Vec<(u64, u64)> = Vec::new();
    let mut old = vec![0u8; CHUNK];
    let mut new = vec![0u8; CHUNK];
    for &(start, len) in ranges {
        let end = start.saturating_add(len);
        let mut pos = start;
        while pos < end {
            let n = usize::try_from(end.saturating_sub(pos))
                .unwrap_or(CHUNK)
                .min(CHUNK);
            let (o, w) = (
                old.get_mut(..n).unwrap_or_default(),
                new.get_mut(..n).unwrap_or_default(),
            );
            disk.read_at(part_offset.saturating_add(pos), o)?;
            overlay
                .read_exact_at(w, pos)
                .map_err(|e| Error::io("reading the overlay", e))?;
            let mut at = pos;
            for (a, b) in o.chunks(BLOCK).zip(w.chunks(BLOCK)) {
                let l = u64::try_from(a.len()).unwrap_or(0);
                if a != b {
                    match runs.last_mut() {
                        Some((rs, rl)) if rs.saturating_add(*rl) == at => {
                            *rl = rl.saturating_add(l)
                        }
                        _ => runs.push((at, l)),
                    }
                }
                at = at.saturating_add(l);
            }
            pos = pos.saturating_add(u64::try_from(n).unwrap_or(u64::MAX));
        }
    }
    Ok(runs)
}

/// Merge runs separated by less than a gap that doubles from [`MERGE_GAP`] until at most
/// [`MAX_STEPS`] are left.
fn coalesce(runs: Vec<(u64, u64)>) -> Vec<(u64, u64)> {
    let mut gap = MERGE_GAP;
    let mut runs = runs;
    loop {
        let mut out: Vec<(u64, u64)> = Vec::with_capacity(runs.len());
        for &(s, l) in &runs {
            match out.last_mut() {
                Some((ps, pl)) if s.saturating_sub(ps.saturating_add(*pl)) < gap => {
                    *pl = s.saturating_add(l).saturating_sub(*ps);
                }
                _ => out.push((s, l)),
            }
        }
        if out.len() <= MAX_STEPS || gap > u64::MAX / 4 {
            return out;
        }
        runs = out;
        gap = gap.saturating_mul(2);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merging_and_coalescing() {
        assert_eq!(
            merge_ranges(vec![(10, 5), (0, 4), (4, 2), (12, 10)]),
            vec![(0, 6), (10, 12)]
        );
        assert_eq!(coalesce(vec![(0, 4096), (8192, 4096)]), vec![(0, 12288)]);
        assert_eq!(
            coalesce(vec![(0, 4096), (1 << 20, 4096)]),
            vec![(0, 4096), (1 << 20, 4096)]
        );
        let many: Vec<(u64, u64)> = (0..10_000u64).map(|i| (i << 20, 4096)).collect();
        let few = coalesce(many);
        assert!(few.len() <= MAX_STEPS, "{}", few.len());
        assert_eq!(few.first().map(|r| r.0), Some(0));
        let last = few.last().copied().unwrap();
        assert_eq!(last.0 + last.1, (9_999 << 20) + 4096);
    }

    #[test]
    fn overlay_names() {
        assert_eq!(
            overlay_path(Path::new("/a/disk.vhd")),
            PathBuf::from("/a/.disk.vhd.vhdtool-overlay")
        );
        assert_eq!(
            overlay_path(Path::new("disk.vhd")),
            PathBuf::from(".disk.vhd.vhdtool-overlay")
        );
    }
}
