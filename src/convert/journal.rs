//! The undo journal: the original bytes of every region a conversion writes, the original file
//! length, written and fsynced before the first byte of the image changes.
//!
//! Protocol (so that a conversion killed at any instant is recoverable):
//! 1. the journal is written to `JOURNAL.tmp`, fsynced, renamed to `JOURNAL`, and the directory
//!    fsynced; only then is the image touched. A `JOURNAL.tmp` without `JOURNAL` therefore means
//!    the image was never written.
//! 2. `rollback` writes the old bytes back (only the blocks that differ), restores the length,
//!    fsyncs the image, and only then removes the journal. Rolling back twice is harmless.
//!
//! Format (little-endian), documented in README.md:
//! ```text
//! "VHDTJRN1"  magic
//! u32         format version (1)
//! u64         original file length
//! u64         file length after the conversion
//! u32         region count, then per region:
//!   u64 offset, u64 length, u32 chunk count, then per chunk (non-zero 4 KiB blocks of the
//!   original bytes, merged): u64 offset inside the region, u32 length, bytes
//! u32         count of resize2fs undo files, then per file: u64 partition byte offset,
//!             u32 path length, the path (UTF-8), replayed with e2undo by `rollback`
//! u32         CRC32 of everything above
//! "VHDTEND1"  trailer
//! ```
//! Zero blocks are not stored: a 100 MiB ESP region carved from empty space costs a few bytes.
// Transitional (issue 11, item 9): this file is not yet under the crate-wide panic lints.
#![allow(
    clippy::arithmetic_side_effects,
    clippy::as_conversions,
    clippy::indexing_slicing
)]

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::disk::Disk;
use crate::error::{Error, Result};

mod decode;

const MAGIC: &[u8; 8] = b"VHDTJRN1";
const TRAILER: &[u8; 8] = b"VHDTEND1";
const VERSION: u32 = 1;
/// Granularity of the zero-skipping in the journal.
const BLOCK: usize = 4096;
/// Regions in a journal we will read back (a conversion writes a handful).
const MAX_REGIONS: u32 = 1024;

/// One region's original content: zero except for `chunks`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SavedRegion {
    pub offset: u64,
    pub length: u64,
    /// (offset inside the region, bytes), sorted, not overlapping.
    pub chunks: Vec<(u64, Vec<u8>)>,
}

impl SavedRegion {
    /// Capture `length` bytes at `offset` of `disk`, keeping only the non-zero 4 KiB blocks.
    /// The part of the region past the end of the disk is recorded as zero (it did not exist).
    pub fn capture(disk: &dyn Disk, offset: u64, length: u64) -> Result<Self> {
        let mut chunks: Vec<(u64, Vec<u8>)> = Vec::new();
        let readable = length.min(disk.len().saturating_sub(offset));
        let mut buf = vec![0u8; 1 << 20];
        let mut pos = 0u64;
        while pos < readable {
            let n = (readable - pos).min(buf.len() as u64) as usize;
            disk.read_at(offset + pos, &mut buf[..n])?;
            for (i, block) in buf[..n].chunks(BLOCK).enumerate() {
                if block.iter().all(|&b| b == 0) {
                    continue;
                }
                let rel = pos + (i * BLOCK) as u64;
                match chunks.last_mut() {
                    Some((o, data)) if *o + data.len() as u64 == rel => {
                        data.extend_from_slice(block)
                    }
                    _ => chunks.push((rel, block.to_vec())),
                }
            }
            pos += n as u64;
        }
        Ok(SavedRegion {
            offset,
            length,
            chunks,
        })
    }

    /// The original bytes of `rel .. rel + out.len()` of the region.
    fn fill(&self, rel: u64, out: &mut [u8]) {
        out.fill(0);
        let end = rel + out.len() as u64;
        for (o, data) in &self.chunks {
            let (cs, ce) = (*o, *o + data.len() as u64);
            if ce <= rel || cs >= end {
                continue;
            }
            let s = cs.max(rel);
            let e = ce.min(end);
            out[(s - rel) as usize..(e - rel) as usize]
                .copy_from_slice(&data[(s - cs) as usize..(e - cs) as usize]);
        }
    }
}

/// What the journal holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Journal {
    pub original_len: u64,
    pub converted_len: u64,
    pub regions: Vec<SavedRegion>,
    /// ext2/3/4 partitions (byte offset) shrunk by resize2fs, with the undo file it wrote:
    /// `rollback` replays them with e2undo before restoring the regions.
    pub e2undo: Vec<(u64, PathBuf)>,
}

/// The resize2fs undo file that goes with a journal: `JOURNAL.e2undo`.
pub fn e2undo_path(journal: &Path) -> PathBuf {
    let mut name = journal
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(".e2undo");
    journal.with_file_name(name)
}

/// The default journal path: next to the image, `IMAGE.vhdtool-journal`.
pub fn default_path(image: &Path) -> PathBuf {
    let mut name = image
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(".vhdtool-journal");
    image.with_file_name(name)
}

fn tmp_path(journal: &Path) -> PathBuf {
    let mut name = journal
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(".tmp");
    journal.with_file_name(name)
}

impl Journal {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&VERSION.to_le_bytes());
        out.extend_from_slice(&self.original_len.to_le_bytes());
        out.extend_from_slice(&self.converted_len.to_le_bytes());
        out.extend_from_slice(&(self.regions.len() as u32).to_le_bytes());
        for r in &self.regions {
            out.extend_from_slice(&r.offset.to_le_bytes());
            out.extend_from_slice(&r.length.to_le_bytes());
            out.extend_from_slice(&(r.chunks.len() as u32).to_le_bytes());
            for (o, data) in &r.chunks {
                out.extend_from_slice(&o.to_le_bytes());
                out.extend_from_slice(&(data.len() as u32).to_le_bytes());
                out.extend_from_slice(data);
            }
        }
        out.extend_from_slice(&(self.e2undo.len() as u32).to_le_bytes());
        for (offset, path) in &self.e2undo {
            let p = path.as_os_str().as_encoded_bytes();
            out.extend_from_slice(&offset.to_le_bytes());
            out.extend_from_slice(&(p.len() as u32).to_le_bytes());
            out.extend_from_slice(p);
        }
        let crc = crc32fast::hash(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out.extend_from_slice(TRAILER);
        out
    }

    /// Write the journal durably: temp file, fsync, rename, fsync the directory.
    pub fn write(&self, path: &Path, mut step: impl FnMut()) -> Result<()> {
        let tmp = tmp_path(path);
        let bytes = self.encode();
        // a temporary journal left by a run that died before its rename (ENOSPC, a kill): the
        // image was never written then, and the caller holds the image's exclusive lock, so no
        // other conversion is writing it
        if tmp.exists() {
            fs::remove_file(&tmp).map_err(|e| {
                Error::io(
                    format!("removing the stale temporary journal {}", tmp.display()),
                    e,
                )
            })?;
        }
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(|e| Error::io(format!("creating the undo journal {}", tmp.display()), e))?;
        f.write_all(&bytes)
            .map_err(|e| Error::io(format!("writing the undo journal {}", tmp.display()), e))?;
        f.sync_all()
            .map_err(|e| Error::io(format!("syncing the undo journal {}", tmp.display()), e))?;
        drop(f);
        step();
        fs::rename(&tmp, path).map_err(|e| {
            Error::io(
                format!("renaming the undo journal to {}", path.display()),
                e,
            )
        })?;
        sync_dir(path)?;
        step();
        Ok(())
    }
}

pub use crate::disk::sync_dir;

/// What `rollback` did.
#[derive(Debug, Clone, Serialize)]
pub struct RollbackReport {
    pub image: String,
    pub journal: String,
    /// "restored", or "nothing to restore" when the conversion stopped before touching the image.
    pub outcome: String,
    pub regions_restored: usize,
    /// resize2fs undo files replayed with e2undo.
    pub external_undone: usize,
    pub bytes_written: u64,
    pub file_bytes: u64,
}

/// Restore an image from its journal, byte for byte, then remove the journal.
pub fn rollback(image: &Path, journal_path: &Path, force: bool) -> Result<RollbackReport> {
    use crate::disk::{Access, MmapDisk};
    let tmp = tmp_path(journal_path);
    let mut report = RollbackReport {
        image: image.display().to_string(),
        journal: journal_path.display().to_string(),
        outcome: String::new(),
        regions_restored: 0,
        external_undone: 0,
        bytes_written: 0,
        file_bytes: 0,
    };
    // the image's exclusive lock first: a conversion still running holds it, and its journal
    // (or the temporary one it is writing) must not be touched under it (tests/faults.rs)
    let mut disk = MmapDisk::open(image, Access::ReadWrite)?;
    if !journal_path.exists() {
        if tmp.exists() {
            // step 1 of the protocol never finished: the image was not written
            fs::remove_file(&tmp)
                .map_err(|e| Error::io(format!("removing {}", tmp.display()), e))?;
            sync_dir(&tmp)?;
            report.outcome = "nothing to restore: the conversion stopped before it wrote to the image; removed the incomplete journal".into();
            report.file_bytes = fs::metadata(image).map(|m| m.len()).unwrap_or(0);
            return Ok(report);
        }
        return Err(Error::invalid(format!(
            "no undo journal at {}: nothing to roll back (give its path with --journal)",
            journal_path.display()
        )));
    }
    let bytes = fs::read(journal_path)
        .map_err(|e| Error::io(format!("reading {}", journal_path.display()), e))?;
    let j = Journal::decode(&bytes)?;
    let len = disk.len();
    if len != j.original_len && len != j.converted_len && !force {
        return Err(Error::conflict(format!(
            "{} is {len} bytes; the journal expects {} (before) or {} (after the conversion): the image was changed since; --force restores anyway",
            image.display(),
            j.original_len,
            j.converted_len
        )));
    }
    if len < j.original_len {
        disk.set_len(j.original_len)?;
    }
    let mut want = vec![0u8; 1 << 20];
    let mut have = vec![0u8; 1 << 20];
    for r in &j.regions {
        let end = r.offset.saturating_add(r.length).min(j.original_len);
        let mut pos = r.offset;
        while pos < end {
            let n = (end - pos).min(want.len() as u64) as usize;
            r.fill(pos - r.offset, &mut want[..n]);
            let cur = n.min(disk.len().saturating_sub(pos) as usize);
            disk.read_at(pos, &mut have[..cur])?;
            if want[..cur] != have[..cur] || cur < n {
                disk.write_at(pos, &want[..n])?;
                report.bytes_written += n as u64;
            }
            pos += n as u64;
        }
        report.regions_restored += 1;
    }
    if disk.len() != j.original_len {
        disk.set_len(j.original_len)?;
    }
    disk.sync()?;
    // then resize2fs's own undo: it restores the blocks resize2fs wrote (the regions above
    // restored everything vhdtool wrote, including the partition's old tail, which e2fsck
    // reads when it checks the restored filesystem)
    for (offset, undo) in &j.e2undo {
        if undo.exists() {
            crate::shrink::ext4::undo(image, *offset, undo)?;
            report.external_undone += 1;
        }
    }
    report.file_bytes = disk.len();
    drop(disk);
    fs::remove_file(journal_path)
        .map_err(|e| Error::io(format!("removing {}", journal_path.display()), e))?;
    for (_, undo) in &j.e2undo {
        for f in [
            undo.clone(),
            crate::shrink::ext4::superblock_save_path(undo),
        ] {
            if f.exists() {
                fs::remove_file(&f)
                    .map_err(|e| Error::io(format!("removing {}", f.display()), e))?;
            }
        }
    }
    sync_dir(journal_path)?;
    report.outcome = "restored".into();
    Ok(report)
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects, clippy::as_conversions)]
mod tests {
    use super::*;
    use crate::disk::MemDisk;

    #[test]
    fn capture_keeps_only_nonzero_blocks_and_round_trips() {
        let mut data = vec![0u8; 3 << 20];
        data[5000] = 7;
        data[(2 << 20) + 1] = 9;
        let d = MemDisk::new(data.clone());
        let r = SavedRegion::capture(&d, 4096, 3 << 20).unwrap();
        assert_eq!(r.chunks.len(), 2);
        let j = Journal {
            original_len: 3 << 20,
            converted_len: 4 << 20,
            regions: vec![r],
            e2undo: vec![(1 << 20, PathBuf::from("/tmp/x.e2undo"))],
        };
        let enc = j.encode();
        assert!(enc.len() < 10_000, "zero blocks are not stored");
        let back = Journal::decode(&enc).unwrap();
        assert_eq!(back, j);
        let mut out = vec![0u8; 8192];
        back.regions[0].fill(0, &mut out);
        assert_eq!(&out[..], &data[4096..4096 + 8192]);
    }

    #[test]
    fn damaged_journals_are_errors() {
        let j = Journal {
            original_len: 1,
            converted_len: 2,
            regions: vec![],
            e2undo: vec![],
        };
        let enc = j.encode();
        for cut in 0..enc.len() {
            assert!(Journal::decode(&enc[..cut]).is_err(), "truncated at {cut}");
        }
        let mut flipped = enc.clone();
        flipped[20] ^= 1;
        assert!(Journal::decode(&flipped).is_err());
        // a hostile chunk length behind a valid CRC
        let mut body = Vec::new();
        body.extend_from_slice(MAGIC);
        body.extend_from_slice(&1u32.to_le_bytes());
        body.extend_from_slice(&0u64.to_le_bytes());
        body.extend_from_slice(&0u64.to_le_bytes());
        body.extend_from_slice(&1u32.to_le_bytes());
        body.extend_from_slice(&0u64.to_le_bytes());
        body.extend_from_slice(&10u64.to_le_bytes());
        body.extend_from_slice(&1u32.to_le_bytes());
        body.extend_from_slice(&0u64.to_le_bytes());
        body.extend_from_slice(&u32::MAX.to_le_bytes());
        let crc = crc32fast::hash(&body);
        body.extend_from_slice(&crc.to_le_bytes());
        body.extend_from_slice(TRAILER);
        assert!(Journal::decode(&body).is_err());
    }
}
