//! The undo journal: the original bytes of every region a conversion writes, the original file
//! length and the image's identity, written and fsynced before the first byte of the image
//! changes. It is the only thing `rollback` needs: resize2fs runs on an overlay and its result is
//! applied as ordinary journaled steps ([`overlay`]).
//!
//! Protocol (so that a conversion killed at any instant is recoverable):
//! 1. the journal is written to `JOURNAL.tmp`, fsynced, renamed to `JOURNAL`, and the directory
//!    fsynced; then the image is marked (the extended attribute [`MARKER_XATTR`] names the
//!    journal, best effort); only then is the image touched. A `JOURNAL.tmp` without `JOURNAL`
//!    therefore means the image was never written.
//! 2. `rollback` reads and checks the whole journal and the image's identity before its first
//!    write, writes the old bytes back (only the blocks that differ), restores the length,
//!    fsyncs, reads every region back, and only then removes the journal. Rolling back twice is
//!    harmless.
//!
//! The journal is found by the image's real path (`REALPATH.vhdtool-journal`, symbolic links
//! resolved) or by the marker, so a conversion started through a link or with `--journal FILE`
//! still blocks the next one ([`pending`]).
//!
//! Identity: the journal records the VHD footer's unique id and, for every 4 KiB block of every
//! region, the CRC32 of the bytes the conversion writes there. Before it writes, `rollback`
//! classifies each block as original, converted, or neither; walking the regions in the order
//! they were written, a conversion that stopped anywhere leaves converted blocks, at most one
//! torn block, then original blocks. Anything else (another image's journal, an edit after the
//! conversion) is refused, naming the region and offset, unless `--force`. A block that a later
//! region writes again is not judged. Known limit: an edit of the very last written block alone
//! looks like a torn write and is accepted.
//!
//! Format (little-endian), documented in README.md:
//! ```text
//! "VHDTJRN1"  magic
//! u32         format version (2)
//! u64         original file length
//! u64         file length after the conversion
//! [u8; 16]    unique id of the original VHD footer (zeros: no footer)
//! u32         region count, then per region, in the order the conversion writes them:
//!   u64 offset, u64 length, u32 name length, name (UTF-8),
//!   u32 chunk count, then per chunk (non-zero 4 KiB blocks of the original bytes, merged):
//!     u64 offset inside the region, u32 length, bytes
//!   u32 block count (the region's length in 4 KiB blocks, rounded up), then per block the
//!     CRC32 of the converted bytes
//! u32         CRC32 of everything above
//! "VHDTEND1"  trailer
//! ```
//! Zero blocks are not stored: a 100 MiB ESP region carved from empty space costs a few bytes
//! plus 4 bytes of identity per 4 KiB.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::disk::Disk;
use crate::error::{Error, Result};

mod decode;
pub mod overlay;

const MAGIC: &[u8; 8] = b"VHDTJRN1";
const TRAILER: &[u8; 8] = b"VHDTEND1";
const VERSION: u32 = 2;
/// Granularity of the zero-skipping and of the identity CRCs.
const BLOCK: usize = 4096;
/// [`BLOCK`] as a file offset.
const BLOCK_U64: u64 = 4096;
/// Regions in a journal we will read back (a conversion writes a few hundred at most).
const MAX_REGIONS: u32 = 1024;
/// Buffer of the capture, the checks and the restore.
const CHUNK: usize = 1 << 20;
/// The extended attribute on the image that names its pending journal (absolute path).
pub const MARKER_XATTR: &str = "user.vhdtool.journal";
/// VHD footer: size, cookie, and where its unique id lies (spec: "Unique Id", offset 0x44).
const FOOTER_BYTES: u64 = 512;
const FOOTER_COOKIE: &[u8; 8] = b"conectix";
const FOOTER_UNIQUE_ID: usize = 0x44;

/// `usize` to `u64` (lossless on every target Rust supports for this crate: 64-bit Linux).
fn u64_of(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

/// Blocks of [`BLOCK`] bytes covering `length`, rounded up.
fn block_count(length: u64) -> u64 {
    length.div_ceil(BLOCK_U64)
}

/// One region's original content: zero except for `chunks`, and the CRC32 of the converted
/// content of each of its 4 KiB blocks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SavedRegion {
    pub offset: u64,
    pub length: u64,
    /// What the conversion writes there (the plan step's name).
    pub what: String,
    /// (offset inside the region, bytes), sorted, not overlapping.
    pub chunks: Vec<(u64, Vec<u8>)>,
    /// CRC32 of the converted bytes of each 4 KiB block (the last one clipped to `length`).
    pub converted: Vec<u32>,
}

impl SavedRegion {
    /// Capture `length` bytes at `offset` of `disk`, keeping only the non-zero 4 KiB blocks.
    /// The part of the region past the end of the disk is recorded as zero (it did not exist).
    /// The converted CRCs start as those of the current content ([`Self::set_converted`]).
    pub fn capture(disk: &dyn Disk, offset: u64, length: u64) -> Result<Self> {
        let mut chunks: Vec<(u64, Vec<u8>)> = Vec::new();
        let readable = length.min(disk.len().saturating_sub(offset));
        let mut buf = vec![0u8; CHUNK];
        let mut pos = 0u64;
        while pos < readable {
            let n = usize::try_from(readable.saturating_sub(pos))
                .unwrap_or(CHUNK)
                .min(CHUNK);
            let part = buf.get_mut(..n).unwrap_or_default();
            disk.read_at(offset.saturating_add(pos), part)?;
            let mut rel = pos;
            for block in part.chunks(BLOCK) {
                if block.iter().any(|&b| b != 0) {
                    match chunks.last_mut() {
                        Some((o, data)) if o.saturating_add(u64_of(data.len())) == rel => {
                            data.extend_from_slice(block)
                        }
                        _ => chunks.push((rel, block.to_vec())),
                    }
                }
                rel = rel.saturating_add(u64_of(block.len()));
            }
            pos = pos.saturating_add(u64_of(n));
        }
        let mut r = SavedRegion {
            offset,
            length,
            what: String::new(),
            chunks,
            converted: Vec::new(),
        };
        r.converted = r.block_crcs(|rel, out| {
            r.fill(rel, out);
            Ok(())
        })?;
        Ok(r)
    }

    /// Name the region and record its converted content: `content(rel, out)` fills `out` with
    /// the bytes the conversion writes at `rel` inside the region.
    pub fn set_converted(
        &mut self,
        what: &str,
        content: impl FnMut(u64, &mut [u8]) -> Result<()>,
    ) -> Result<()> {
        self.what = what.to_string();
        self.converted = self.block_crcs(content)?;
        Ok(())
    }

    /// CRC32 of each 4 KiB block of the content `content` gives.
    fn block_crcs(
        &self,
        mut content: impl FnMut(u64, &mut [u8]) -> Result<()>,
    ) -> Result<Vec<u32>> {
        let count = usize::try_from(block_count(self.length))
            .map_err(|_| Error::internal("a journal region too large"))?;
        let mut out = Vec::with_capacity(count);
        let mut buf = vec![0u8; BLOCK];
        let mut rel = 0u64;
        while rel < self.length {
            let n = usize::try_from(self.length.saturating_sub(rel))
                .unwrap_or(BLOCK)
                .min(BLOCK);
            let b = buf.get_mut(..n).unwrap_or_default();
            content(rel, b)?;
            out.push(crc32fast::hash(b));
            rel = rel.saturating_add(BLOCK_U64);
        }
        Ok(out)
    }

    /// The original bytes of `rel .. rel + out.len()` of the region.
    fn fill(&self, rel: u64, out: &mut [u8]) {
        out.fill(0);
        let end = rel.saturating_add(u64_of(out.len()));
        for (o, data) in &self.chunks {
            let (cs, ce) = (*o, o.saturating_add(u64_of(data.len())));
            if ce <= rel || cs >= end {
                continue;
            }
            let (s, e) = (cs.max(rel), ce.min(end));
            let to = usize::try_from(s.saturating_sub(rel))
                .ok()
                .zip(usize::try_from(e.saturating_sub(rel)).ok());
            let from = usize::try_from(s.saturating_sub(cs))
                .ok()
                .zip(usize::try_from(e.saturating_sub(cs)).ok());
            if let (Some((a, b)), Some((c, d))) = (to, from) {
                if let (Some(dst), Some(src)) = (out.get_mut(a..b), data.get(c..d)) {
                    dst.copy_from_slice(src);
                }
            }
        }
    }
}

/// What the journal holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Journal {
    pub original_len: u64,
    pub converted_len: u64,
    /// The original VHD footer's unique id; zeros for an image without a footer.
    pub unique_id: [u8; 16],
    /// In the order the conversion writes them.
    pub regions: Vec<SavedRegion>,
}

/// The unique id of the VHD footer in the last 512 bytes of the first `len` bytes of `disk`,
/// if there is one there (cookie "conectix").
pub fn footer_unique_id(disk: &dyn Disk, len: u64) -> Result<Option<[u8; 16]>> {
    let Some(at) = len.checked_sub(FOOTER_BYTES).filter(|_| len <= disk.len()) else {
        return Ok(None);
    };
    let mut f = [0u8; 512];
    disk.read_at(at, &mut f)?;
    if f.get(..8) != Some(FOOTER_COOKIE.as_slice()) {
        return Ok(None);
    }
    Ok(crate::bytes::array_at::<16>(&f, FOOTER_UNIQUE_ID))
}

/// The default journal path: next to the image's real path (symbolic links resolved),
/// `REALPATH.vhdtool-journal`. An image that does not exist keeps the name it was given.
pub fn default_path(image: &Path) -> PathBuf {
    let real = fs::canonicalize(image).unwrap_or_else(|_| image.to_path_buf());
    let mut name = real
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(".vhdtool-journal");
    real.with_file_name(name)
}

pub fn tmp_path(journal: &Path) -> PathBuf {
    let mut name = journal
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(".tmp");
    journal.with_file_name(name)
}

/// Mark `image` (open and locked by the caller) as having the pending journal `journal`: the extended
/// attribute [`MARKER_XATTR`] holds the journal's absolute path. Best effort: a filesystem
/// without user extended attributes keeps only the name-based lookup.
pub fn mark(image: &Path, journal: &Path) -> bool {
    let Ok(abs) = std::path::absolute(journal) else {
        return false;
    };
    rustix::fs::setxattr(
        image,
        MARKER_XATTR,
        abs.as_os_str().as_encoded_bytes(),
        rustix::fs::XattrFlags::empty(),
    )
    .is_ok()
}

/// The journal the marker on `image` names, if any.
pub fn marked(image: &Path) -> Option<PathBuf> {
    let mut buf = vec![0u8; 4096];
    let n = rustix::fs::getxattr(image, MARKER_XATTR, &mut buf[..]).ok()?;
    let s = std::str::from_utf8(buf.get(..n)?).ok()?;
    Some(PathBuf::from(s))
}

/// Remove the marker (best effort: it is only a pointer, checked before use).
fn unmark(image: &Path) {
    let _ = rustix::fs::removexattr(image, MARKER_XATTR);
}

/// Every pending journal of `image`: the one given, the one beside its real path, the one its
/// marker names (each only if it exists, without repeats).
pub fn pending(image: &Path, given: Option<&Path>) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = Vec::new();
    let candidates = [
        given.map(Path::to_path_buf),
        Some(default_path(image)),
        marked(image),
    ];
    for p in candidates.into_iter().flatten() {
        let key = fs::canonicalize(&p).unwrap_or_else(|_| p.clone());
        if p.is_file()
            && !out
                .iter()
                .any(|q| fs::canonicalize(q).ok().as_ref() == Some(&key))
        {
            out.push(p);
        }
    }
    out
}

impl Journal {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let u32_of = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&VERSION.to_le_bytes());
        out.extend_from_slice(&self.original_len.to_le_bytes());
        out.extend_from_slice(&self.converted_len.to_le_bytes());
        out.extend_from_slice(&self.unique_id);
        out.extend_from_slice(&u32_of(self.regions.len()).to_le_bytes());
        for r in &self.regions {
            out.extend_from_slice(&r.offset.to_le_bytes());
            out.extend_from_slice(&r.length.to_le_bytes());
            out.extend_from_slice(&u32_of(r.what.len()).to_le_bytes());
            out.extend_from_slice(r.what.as_bytes());
            out.extend_from_slice(&u32_of(r.chunks.len()).to_le_bytes());
            for (o, data) in &r.chunks {
                out.extend_from_slice(&o.to_le_bytes());
                out.extend_from_slice(&u32_of(data.len()).to_le_bytes());
                out.extend_from_slice(data);
            }
            out.extend_from_slice(&u32_of(r.converted.len()).to_le_bytes());
            for c in &r.converted {
                out.extend_from_slice(&c.to_le_bytes());
            }
        }
        let crc = crc32fast::hash(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out.extend_from_slice(TRAILER);
        out
    }

    /// The length of [`Self::encode`]'s output, without encoding (the free-space check needs it
    /// before the journal is written; the journal of a shrink can hold hundreds of MiB).
    pub fn encoded_len(&self) -> u64 {
        // magic, version, two lengths, unique id, region count; CRC32 and trailer
        let mut n: u64 = 8 + 4 + 8 + 8 + 16 + 4 + 4 + 8;
        for r in &self.regions {
            // offset, length, name length, name, chunk count, block count, the block CRCs
            n = n
                .saturating_add(8 + 8 + 4 + 4 + 4)
                .saturating_add(u64_of(r.what.len()))
                .saturating_add(u64_of(r.converted.len()).saturating_mul(4));
            for (_, data) in &r.chunks {
                n = n.saturating_add(8 + 4).saturating_add(u64_of(data.len()));
            }
        }
        n
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

    /// Is the image in `disk` one this journal's conversion left, at any point of it? Checks
    /// the footer's unique id and the state of every journaled block (module docs); the error
    /// (a conflict) names the first region and offset that does not fit.
    pub fn check_identity(&self, disk: &dyn Disk) -> Result<()> {
        if self.unique_id != [0u8; 16] {
            let here = [
                footer_unique_id(disk, disk.len())?,
                footer_unique_id(disk, self.original_len)?,
            ];
            let found: Vec<[u8; 16]> = here.into_iter().flatten().collect();
            if !found.is_empty() && !found.contains(&self.unique_id) {
                return Err(Error::conflict(format!(
                    "the VHD footer's unique id is {}, the journal's image had {}: this journal belongs to another image; --force restores anyway",
                    hex(found.first().map_or(&[][..], |f| &f[..])),
                    hex(&self.unique_id)
                )));
            }
        }
        let mut seen_original = false;
        let mut torn: Option<(String, u64)> = None;
        let mut buf = vec![0u8; BLOCK];
        let mut old = vec![0u8; BLOCK];
        let limit = disk.len().min(self.original_len);
        for b in self.final_blocks() {
            let (r, rel, at, new_crc) = (b.region, b.rel, b.at, b.crc);
            let (n, end) = (b.len, b.at.saturating_add(b.len));
            // past the old end (not restored)
            if end > limit {
                continue;
            }
            let n = usize::try_from(n).unwrap_or(BLOCK);
            let (cur, was) = (
                buf.get_mut(..n).unwrap_or_default(),
                old.get_mut(..n).unwrap_or_default(),
            );
            disk.read_at(at, cur)?;
            r.fill(rel, was);
            let crc = crc32fast::hash(cur);
            let is_new = crc == new_crc;
            let is_old = cur == was;
            let name = if r.what.is_empty() {
                "a region"
            } else {
                r.what.as_str()
            };
            let bad = |what: &str, at: u64, why: &str| {
                Error::conflict(format!(
                        "the image does not fit its journal: {what} at 0x{at:x} {why}: it was changed after the conversion, or the journal belongs to another image; --force restores anyway"
                    ))
            };
            let neither = "holds neither the original nor the converted bytes";
            match (is_old, is_new) {
                (true, true) => {}
                (true, false) => seen_original = true,
                (false, true) => {
                    if let Some((tw, tat)) = &torn {
                        return Err(bad(tw, *tat, neither));
                    }
                    if seen_original {
                        return Err(bad(
                            name,
                            at,
                            "holds the converted bytes after blocks the conversion had not reached",
                        ));
                    }
                }
                (false, false) => {
                    if let Some((tw, tat)) = &torn {
                        return Err(bad(tw, *tat, &format!("{neither}, and so does 0x{at:x}")));
                    }
                    if seen_original {
                        return Err(bad(
                            name,
                            at,
                            &format!("{neither}, after blocks the conversion had not reached"),
                        ));
                    }
                    torn = Some((name.to_string(), at));
                }
            }
        }
        Ok(())
    }
}

impl Journal {
    /// Whether `disk` holds everything this journal's conversion wrote, i.e. the conversion
    /// finished: the converted length, and the converted bytes in every journaled block that no
    /// later region writes again.
    pub fn is_complete(&self, disk: &dyn Disk) -> Result<bool> {
        if disk.len() != self.converted_len {
            return Ok(false);
        }
        let mut buf = vec![0u8; BLOCK];
        for b in self.final_blocks() {
            if b.at.saturating_add(b.len) > disk.len() {
                return Ok(false);
            }
            let cur = buf
                .get_mut(..usize::try_from(b.len).unwrap_or(BLOCK))
                .unwrap_or_default();
            disk.read_at(b.at, cur)?;
            if crc32fast::hash(cur) != b.crc {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Every journaled block in write order, but those a later region writes again: the
    /// blocks whose converted bytes are the conversion's last word.
    fn final_blocks(&self) -> impl Iterator<Item = JournaledBlock<'_>> + '_ {
        self.regions.iter().enumerate().flat_map(move |(i, r)| {
            let later = self.regions.get(i.saturating_add(1)..).unwrap_or_default();
            r.converted
                .iter()
                .enumerate()
                .map(move |(k, &crc)| {
                    let rel = u64_of(k).saturating_mul(BLOCK_U64);
                    JournaledBlock {
                        region: r,
                        rel,
                        at: r.offset.saturating_add(rel),
                        len: r.length.saturating_sub(rel).min(BLOCK_U64),
                        crc,
                    }
                })
                .filter(move |b| {
                    let end = b.at.saturating_add(b.len);
                    !later
                        .iter()
                        .any(|l| l.offset < end && l.offset.saturating_add(l.length) > b.at)
                })
        })
    }
}

/// One block of a journaled region: where it is, and the CRC32 of its converted bytes.
struct JournaledBlock<'a> {
    region: &'a SavedRegion,
    /// Offset inside the region.
    rel: u64,
    /// Offset in the image.
    at: u64,
    len: u64,
    crc: u32,
}

/// The journal of an unfinished conversion of `image` in `disk`, if there is one: a pending
/// journal (by any of its names) that cannot be read, or whose conversion the image does not
/// hold in full. A finished conversion's journal (kept until the user removes it) is not one.
pub fn unfinished(image: &Path, given: Option<&Path>, disk: &dyn Disk) -> Option<PathBuf> {
    pending(image, given).into_iter().find(|p| {
        let Ok(bytes) = crate::disk::read_bounded(p, journal_limit(disk)) else {
            return true;
        };
        match Journal::decode(&bytes) {
            Ok(j) => !j.is_complete(disk).unwrap_or(false),
            Err(_) => true,
        }
    })
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
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
    pub bytes_written: u64,
    pub file_bytes: u64,
}

/// Which journal `rollback` uses: the one given; else the one beside the image's real path;
/// else the one the image's marker names.
pub fn journal_for(image: &Path, given: Option<&Path>) -> PathBuf {
    if let Some(g) = given {
        return g.to_path_buf();
    }
    let default = default_path(image);
    if default.exists() || tmp_path(&default).exists() {
        return default;
    }
    marked(image)
        .filter(|m| m.exists() || tmp_path(m).exists())
        .unwrap_or(default)
}

/// Restore an image from its journal, byte for byte, then remove the journal. Every input is
/// read and checked (the journal's CRC, its length and identity against the image) before the
/// first write; the journal is removed only after every region reads back as the original.
pub fn rollback(image: &Path, journal_path: &Path, force: bool) -> Result<RollbackReport> {
    use crate::disk::{Access, MmapDisk};
    let tmp = tmp_path(journal_path);
    let mut report = RollbackReport {
        image: image.display().to_string(),
        journal: journal_path.display().to_string(),
        outcome: String::new(),
        regions_restored: 0,
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
            overlay::remove_stale(image)?;
            report.outcome = "nothing to restore: the conversion stopped before it wrote to the image; removed the incomplete journal".into();
            report.file_bytes = disk.len();
            return Ok(report);
        }
        return Err(Error::conflict(format!(
            "no undo journal at {}: nothing to roll back (give its path with --journal)",
            journal_path.display()
        )));
    }
    let bytes = crate::disk::read_bounded(journal_path, journal_limit(&disk))
        .map_err(|e| e.context(format!("reading the journal {}", journal_path.display())))?;
    let j = Journal::decode(&bytes).map_err(|e| {
        e.context(format!(
            "the journal {} (nothing was written)",
            journal_path.display()
        ))
    })?;
    let len = disk.len();
    if len != j.original_len && len != j.converted_len && !force {
        return Err(Error::conflict(format!(
            "{} is {len} bytes; the journal expects {} (before) or {} (after the conversion): the image was changed since; --force restores anyway",
            image.display(),
            j.original_len,
            j.converted_len
        )));
    }
    if !force {
        j.check_identity(&disk)?;
    }
    // every input checked: the first write
    if len < j.original_len {
        disk.set_len(j.original_len)?;
    }
    let mut want = vec![0u8; CHUNK];
    let mut have = vec![0u8; CHUNK];
    for r in &j.regions {
        report.bytes_written = report.bytes_written.saturating_add(restore_region(
            &mut disk,
            r,
            j.original_len,
            &mut want,
            &mut have,
            true,
        )?);
        report.regions_restored = report.regions_restored.saturating_add(1);
    }
    if disk.len() != j.original_len {
        disk.set_len(j.original_len)?;
    }
    disk.sync()?;
    // read back before the journal goes
    for r in &j.regions {
        if restore_region(&mut disk, r, j.original_len, &mut want, &mut have, false)? != 0 {
            return Err(Error::io(
                format!(
                    "{} at 0x{:x} does not read back as the original after the restore; the journal {} is kept",
                    r.what, r.offset, journal_path.display()
                ),
                std::io::Error::other("read-back mismatch"),
            ));
        }
    }
    report.file_bytes = disk.len();
    drop(disk);
    fs::remove_file(journal_path)
        .map_err(|e| Error::io(format!("removing {}", journal_path.display()), e))?;
    sync_dir(journal_path)?;
    unmark(image);
    overlay::remove_stale(image)?;
    report.outcome = "restored".into();
    Ok(report)
}

/// The largest journal worth reading for `disk`: its original bytes cannot exceed the image
/// (plus the identity CRCs and names), with room for a grown image's regions.
fn journal_limit(disk: &dyn Disk) -> u64 {
    disk.len()
        .saturating_add(disk.len() / 512)
        .saturating_add(64 << 20)
}

/// Compare region `r` (up to `end`) with its original bytes; with `write`, write the blocks
/// that differ. Returns the bytes that differed.
fn restore_region(
    disk: &mut dyn Disk,
    r: &SavedRegion,
    end: u64,
    want: &mut [u8],
    have: &mut [u8],
    write: bool,
) -> Result<u64> {
    let end = r.offset.saturating_add(r.length).min(end);
    let mut pos = r.offset;
    let mut differed = 0u64;
    while pos < end {
        let n = usize::try_from(end.saturating_sub(pos))
            .unwrap_or(want.len())
            .min(want.len());
        let w = want.get_mut(..n).unwrap_or_default();
        r.fill(pos.saturating_sub(r.offset), w);
        let cur = n.min(usize::try_from(disk.len().saturating_sub(pos)).unwrap_or(n));
        let h = have.get_mut(..cur).unwrap_or_default();
        disk.read_at(pos, h)?;
        if w.get(..cur) != Some(&*h) || cur < n {
            if write {
                disk.write_at(pos, w)?;
            }
            differed = differed.saturating_add(u64_of(n));
        }
        pos = pos.saturating_add(u64_of(n));
    }
    Ok(differed)
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects, clippy::as_conversions)]
mod tests {
    use super::*;
    use crate::disk::MemDisk;

    fn journal_of(d: &MemDisk, regions: &[(u64, u64, u8)]) -> Journal {
        // each region converted to bytes of one value
        let regions = regions
            .iter()
            .map(|&(o, l, v)| {
                let mut r = SavedRegion::capture(d, o, l).unwrap();
                r.set_converted(&format!("fill {v}"), |_, out| {
                    out.fill(v);
                    Ok(())
                })
                .unwrap();
                r
            })
            .collect();
        Journal {
            original_len: d.len(),
            converted_len: d.len(),
            unique_id: [0; 16],
            regions,
        }
    }

    #[test]
    fn capture_keeps_only_nonzero_blocks_and_round_trips() {
        let mut data = vec![0u8; 3 << 20];
        data[5000] = 7;
        data[(2 << 20) + 1] = 9;
        let d = MemDisk::new(data.clone());
        let r = SavedRegion::capture(&d, 4096, 3 << 20).unwrap();
        assert_eq!(r.chunks.len(), 2);
        assert_eq!(r.converted.len(), 768);
        let j = Journal {
            original_len: 3 << 20,
            converted_len: 4 << 20,
            unique_id: [3; 16],
            regions: vec![r],
        };
        let enc = j.encode();
        assert!(enc.len() < 20_000, "zero blocks are not stored");
        assert_eq!(j.encoded_len(), enc.len() as u64);
        let back = Journal::decode(&enc).unwrap();
        assert_eq!(back, j);
        let mut out = vec![0u8; 8192];
        back.regions[0].fill(0, &mut out);
        assert_eq!(&out[..], &data[4096..4096 + 8192]);
    }

    #[test]
    fn damaged_journals_are_errors() {
        let d = MemDisk::new(vec![1u8; 10_000]);
        let j = journal_of(&d, &[(0, 5000, 2)]);
        let enc = j.encode();
        assert_eq!(j.encoded_len(), enc.len() as u64);
        for cut in 0..enc.len() {
            assert!(Journal::decode(&enc[..cut]).is_err(), "truncated at {cut}");
        }
        let mut flipped = enc.clone();
        flipped[20] ^= 1;
        assert!(Journal::decode(&flipped).is_err());
        // a hostile chunk length behind a valid CRC
        let mut body = Vec::new();
        body.extend_from_slice(MAGIC);
        body.extend_from_slice(&VERSION.to_le_bytes());
        body.extend_from_slice(&0u64.to_le_bytes());
        body.extend_from_slice(&0u64.to_le_bytes());
        body.extend_from_slice(&[0u8; 16]);
        body.extend_from_slice(&1u32.to_le_bytes());
        body.extend_from_slice(&0u64.to_le_bytes());
        body.extend_from_slice(&10u64.to_le_bytes());
        body.extend_from_slice(&0u32.to_le_bytes());
        body.extend_from_slice(&1u32.to_le_bytes());
        body.extend_from_slice(&0u64.to_le_bytes());
        body.extend_from_slice(&u32::MAX.to_le_bytes());
        let crc = crc32fast::hash(&body);
        body.extend_from_slice(&crc.to_le_bytes());
        body.extend_from_slice(TRAILER);
        assert!(Journal::decode(&body).is_err());
        // a block count that does not fit the region
        let mut wrong = j.clone();
        wrong.regions[0].converted.pop();
        assert!(Journal::decode(&wrong.encode()).is_err());
    }

    /// Write region `i` of `regions` as the conversion would (fill with its value).
    fn convert(d: &mut MemDisk, regions: &[(u64, u64, u8)], upto: usize) {
        for &(o, l, v) in &regions[..upto] {
            d.write_at(o, &vec![v; l as usize]).unwrap();
        }
    }

    #[test]
    fn identity_accepts_every_stop_and_refuses_edits() {
        let original: Vec<u8> = (0..64 * 1024).map(|i| (i % 251) as u8).collect();
        let regions = [
            (0u64, 4096u64, 0xa1u8),
            (32 * 1024, 12 * 1024, 0xb2),
            (8192, 8192, 0xc3),
        ];
        let j = journal_of(&MemDisk::new(original.clone()), &regions);
        for upto in 0..=regions.len() {
            let mut d = MemDisk::new(original.clone());
            convert(&mut d, &regions, upto);
            j.check_identity(&d)
                .unwrap_or_else(|e| panic!("stopped after {upto}: {e}"));
            // torn: half of the next block written
            if let Some(&(o, _, v)) = regions.get(upto) {
                d.write_at(o, &[v; 100]).unwrap();
                j.check_identity(&d)
                    .unwrap_or_else(|e| panic!("torn after {upto}: {e}"));
            }
        }
        // an edit in a converted region, the rest converted: named
        let mut d = MemDisk::new(original.clone());
        convert(&mut d, &regions, 3);
        d.write_at(32 * 1024 + 5000, b"edited").unwrap();
        let e = j.check_identity(&d).unwrap_err();
        assert_eq!(e.kind(), crate::error::ErrorKind::Conflict);
        assert!(e.message().contains("fill 178 at 0x9000"), "{e}");
        // converted bytes after original ones: not a stop of this conversion
        let mut d = MemDisk::new(original.clone());
        d.write_at(8192, &[0xc3; 8192]).unwrap();
        assert!(j.check_identity(&d).is_err());
        // another image entirely
        let d = MemDisk::new(vec![0x55; 64 * 1024]);
        assert!(j.check_identity(&d).is_err());
    }

    #[test]
    fn identity_checks_the_footer_unique_id() {
        let mut img = vec![0u8; 8192];
        img[8192 - 512..8192 - 504].copy_from_slice(FOOTER_COOKIE);
        img[8192 - 512 + 0x44..8192 - 512 + 0x54].copy_from_slice(&[7; 16]);
        let d = MemDisk::new(img.clone());
        assert_eq!(footer_unique_id(&d, d.len()).unwrap(), Some([7; 16]));
        let mut j = journal_of(&d, &[]);
        j.unique_id = [7; 16];
        j.check_identity(&d).unwrap();
        j.unique_id = [8; 16];
        let e = j.check_identity(&d).unwrap_err();
        assert!(e.message().contains("another image"), "{e}");
    }
}
