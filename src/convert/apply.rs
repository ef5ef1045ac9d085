//! Carrying a plan out: the journal of exactly the plan's steps first (fsynced), then the new
//! length, then the steps in order, then fsync. Works on any [`Disk`]: the image file, or an
//! in-memory disk in the fuzz targets.
// Transitional (issue 11, item 9): this file is not yet under the crate-wide panic lints.
#![allow(clippy::arithmetic_side_effects, clippy::as_conversions)]

use std::path::Path;

use super::faults::Faults;
use super::journal::{self, Journal, SavedRegion};
use super::plan::{Payload, Plan, Step};
use crate::disk::Disk;
use crate::error::{Error, Result};

/// The contents a plan's steps refer to but do not hold.
pub struct Contents<'a> {
    /// The ESP's FAT32 image ([`Payload::Esp`]), exactly the planned ESP's size.
    pub esp: &'a [u8],
}

/// The bytes `step` writes at `rel .. rel + out.len()` inside itself.
fn step_content(step: &Step, contents: &Contents, rel: u64, out: &mut [u8]) -> Result<()> {
    let src: &[u8] = match &step.payload {
        Payload::Bytes(b) => b,
        Payload::Esp => contents.esp,
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
    if contents.esp.len() as u64 != esp_bytes {
        return Err(Error::internal(format!(
            "the ESP image holds {} bytes, the plan {esp_bytes}",
            contents.esp.len(),
        )));
    }
    let expanded;
    let steps: &[Step] = match journal_path {
        Some(jp) => {
            expanded = expand_external(disk, &plan.steps)?;
            journal_of(disk, plan, &expanded, contents)?.write(jp, || faults.tick())?;
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
        Payload::Esp => write_changed(disk, faults, step.offset, contents.esp),
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
    Ok(data.len() as u64)
}

/// Write `bytes` at `offset`, one MiB at a time, skipping blocks whose content is already right
/// (the ESP is mostly zeros and, when the disk grew, lands on a hole).
fn write_changed(
    disk: &mut dyn Disk,
    faults: &mut Faults,
    offset: u64,
    bytes: &[u8],
) -> Result<u64> {
    const STEP: usize = 1 << 20;
    let len = bytes.len() as u64;
    let readable = len.min(disk.len().saturating_sub(offset));
    // holes read as zeros: find them instead of faulting every page in
    let data = disk.data_extents(offset, readable)?;
    let mut have = vec![0u8; STEP];
    let mut written = 0u64;
    for (i, want) in bytes.chunks(STEP).enumerate() {
        let at = offset + (i * STEP) as u64;
        let block_end = at + want.len() as u64;
        let in_hole = !data.iter().any(|&(s, l)| s < block_end && s + l > at);
        let differs = if in_hole {
            want.iter().any(|&b| b != 0)
        } else {
            let cur = have.get_mut(..want.len()).unwrap_or_default();
            disk.read_at(at, cur)?;
            cur != want
        };
        if differs {
            written += write(disk, faults, at, want)?;
        }
    }
    Ok(written)
}
