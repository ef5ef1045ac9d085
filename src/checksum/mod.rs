//! Parallel CRC32 maps of whole image files: per-chunk CRCs, the whole-file CRC assembled from
//! them, all-zero ranges and holes; and what the maps are for: `verify` against a manifest,
//! `diff` of two images, the ranges an uploader must send, and the proof that `convert` wrote
//! only what it planned.
//!
//! What is checksummed is the file as stored, footer included, in file offsets. A fixed VHD and
//! a raw disk lay the disk out flat from offset 0, so the maps of an image and of its converted
//! copy (which may be longer) line up chunk for chunk; the tail only one of them has is a change.
//!
//! The CRC is CRC-32/ISO-HDLC (zlib's `crc32`, `cksum -a crc32b`, Python's `zlib.crc32`). Holes
//! (found with `SEEK_DATA`/`SEEK_HOLE`) are never read: the CRC of N zero bytes is computed
//! arithmetically (doubling with `crc32fast::Hasher::combine`, O(log N)), once per chunk size,
//! and combined in. Chunks are summed in parallel with rayon, their data read with `pread` into
//! a per-thread buffer that stays in cache (measured faster than reading the memory map, whose
//! page faults and teardown cost more than the CRC; and a mapped read of a file truncated under
//! us, or of a hole on a full tmpfs, is a SIGBUS where `pread` is an error); results come back in
//! file order, so the output is deterministic.

pub mod compare;
pub mod manifest;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crc32fast::Hasher;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::disk::{Disk, MmapDisk};
use crate::error::{Error, Result};
use crate::units::len_u64;

pub use compare::{
    diff_files, upload_ranges, verify_manifest, Change, DiffReport, UploadMap, VerifyReport,
};
pub use manifest::Manifest;

/// Default chunk: 1 MiB (Azure and most tools align to it; 130 k CRCs for a 127 GiB disk).
pub const DEFAULT_CHUNK_BYTES: u64 = 1 << 20;
/// Smallest chunk: one 512-byte sector.
pub const MIN_CHUNK_BYTES: u64 = 512;
/// Largest chunk: 1 GiB.
pub const MAX_CHUNK_BYTES: u64 = 1 << 30;
/// Most chunks a map may hold (64 Mi CRCs: a 32 TiB disk at 512 KiB, 32 GiB at 512 bytes).
/// Bounds the memory a map (and a manifest read from an untrusted file) can take.
pub const MAX_CHUNKS: u64 = 1 << 26;
/// Progress is reported only for files at least this large (smaller ones take under a second).
pub const PROGRESS_MIN_BYTES: u64 = 2 << 30;

/// Bytes hashed and checked for zeros in one step: small enough to stay in L2 between the CRC
/// and the zero check.
const STEP_BYTES: usize = 64 << 10;

/// A half-open byte range of a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Range {
    pub offset: u64,
    pub length: u64,
}

impl Range {
    pub fn new(offset: u64, length: u64) -> Range {
        Range { offset, length }
    }
    /// One past the last byte (saturating: a hostile length cannot wrap).
    pub fn end(&self) -> u64 {
        self.offset.saturating_add(self.length)
    }
    /// The bytes both ranges cover.
    pub fn intersect(&self, other: &Range) -> Option<Range> {
        let start = self.offset.max(other.offset);
        let end = self.end().min(other.end());
        (start < end).then(|| Range::new(start, end.saturating_sub(start)))
    }
}

/// Sort ranges and merge the ones that touch or overlap; empty ranges are dropped.
pub fn merge(mut ranges: Vec<Range>) -> Vec<Range> {
    ranges.retain(|r| r.length > 0);
    ranges.sort_unstable();
    let mut out: Vec<Range> = Vec::with_capacity(ranges.len());
    for r in ranges {
        match out.last_mut() {
            Some(last) if r.offset <= last.end() => {
                let end = last.end().max(r.end());
                last.length = end.saturating_sub(last.offset);
            }
            _ => out.push(r),
        }
    }
    out
}

/// The CRC32 of a piece and whether all its bytes are zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sum {
    pub crc: u32,
    pub zero: bool,
}

/// `crc(A || B)` from `crc(A)`, `crc(B)` and the length of B.
pub fn combine(crc_a: u32, crc_b: u32, len_b: u64) -> u32 {
    let mut h = Hasher::new_with_initial(crc_a);
    h.combine(&Hasher::new_with_initial_len(crc_b, len_b));
    h.finalize()
}

/// CRC32 of `n` zero bytes, by doubling: O(log n) combines, nothing read.
pub fn zero_crc(n: u64) -> u32 {
    let one = crc32fast::hash(&[0]);
    let mut crc = 0u32; // the CRC of the empty string
    let mut len = 0u64;
    for bit in (0..u64::BITS.saturating_sub(n.leading_zeros())).rev() {
        crc = combine(crc, crc, len); // doubling: zeros(len) || zeros(len)
        len = len.saturating_mul(2);
        if n.checked_shr(bit).unwrap_or(0) & 1 == 1 {
            crc = combine(crc, one, 1);
            len = len.saturating_add(1);
        }
    }
    debug_assert_eq!(len, n);
    crc
}

/// Is every byte zero? Ors 256 bytes at a time (vectorised) and stops at the first non-zero
/// block, so data costs almost nothing and only real zeros are scanned in full.
pub fn is_zero(b: &[u8]) -> bool {
    let mut blocks = b.chunks_exact(256);
    for block in &mut blocks {
        if block.iter().fold(0u8, |acc, &x| acc | x) != 0 {
            return false;
        }
    }
    blocks.remainder().iter().all(|&x| x == 0)
}

/// The bytes of a file and where its holes are.
pub struct Source<'a> {
    /// Where the bytes come from: a file (read with `pread`, never through its memory map) or
    /// bytes in memory.
    bytes: Bytes<'a>,
    len: u64,
    /// Sorted, disjoint holes (they read as zeros and are never read).
    holes: Vec<Range>,
    /// The zero CRC of the chunk size in use, computed once.
    zero_cache: (u64, u32),
}

impl<'a> Source<'a> {
    /// Bytes with no holes (tests, in-memory images).
    pub fn from_slice(data: &'a [u8]) -> Source<'a> {
        Source {
            bytes: Bytes::Memory(data),
            len: len_u64(data.len()),
            holes: Vec::new(),
            zero_cache: (0, 0),
        }
    }

    /// An image file and its holes, as the filesystem reports them.
    pub fn open(disk: &'a MmapDisk) -> Result<Source<'a>> {
        let len = disk.len();
        let extents = crate::disk::data_extents(disk.file(), len)?;
        let mut holes = Vec::new();
        let mut pos = 0u64;
        for (start, length) in extents {
            if start > pos {
                holes.push(Range::new(pos, start.saturating_sub(pos)));
            }
            pos = start.saturating_add(length).max(pos);
        }
        if pos < len {
            holes.push(Range::new(pos, len.saturating_sub(pos)));
        }
        Ok(Source {
            bytes: Bytes::File(disk),
            len,
            holes,
            zero_cache: (0, 0),
        })
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The holes of the file (sorted, disjoint).
    pub fn holes(&self) -> &[Range] {
        &self.holes
    }

    /// Fill `buf` with the bytes at `offset` (the range must lie inside the file). A file is read
    /// with `pread`: a range truncated away under us is an I/O error, never a signal.
    pub fn read(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        match self.bytes {
            Bytes::File(d) => d.read_at(offset, buf),
            Bytes::Memory(m) => {
                crate::disk::check_range(self.len, offset, len_u64(buf.len()))?;
                let start = usize::try_from(offset).unwrap_or(usize::MAX);
                let src = m
                    .get(start..start.saturating_add(buf.len()))
                    .ok_or_else(|| Error::internal("checked range not addressable"))?;
                buf.copy_from_slice(src);
                Ok(())
            }
        }
    }

    /// Is all of `r` inside one hole?
    pub fn in_hole(&self, r: Range) -> bool {
        let i = self.holes.partition_point(|h| h.end() <= r.offset);
        self.holes
            .get(i)
            .is_some_and(|h| h.offset <= r.offset && h.end() >= r.end())
    }

    fn zero_crc_cached(&self, n: u64) -> u32 {
        if n == self.zero_cache.0 {
            self.zero_cache.1
        } else {
            zero_crc(n)
        }
    }

    /// CRC and zero flag of `r`: holes are combined in arithmetically, data is read.
    pub fn sum(&self, r: Range) -> Result<Sum> {
        crate::disk::check_range(self.len(), r.offset, r.length)?;
        let mut h = Hasher::new();
        let mut zero = true;
        let mut pos = r.offset;
        let end = r.end();
        let mut i = self.holes.partition_point(|h| h.end() <= pos);
        while pos < end {
            let hole = self.holes.get(i).filter(|h| h.offset < end);
            match hole {
                Some(hole) if hole.offset <= pos => {
                    let stop = hole.end().min(end);
                    let n = stop.saturating_sub(pos);
                    h.combine(&Hasher::new_with_initial_len(self.zero_crc_cached(n), n));
                    pos = stop;
                    i = i.saturating_add(1);
                }
                _ => {
                    let stop = hole.map_or(end, |h| h.offset);
                    // pread into a per-thread buffer that stays in cache. Faster than reading
                    // the map: no page-table work (faulting in and tearing down 4 KiB mappings
                    // cost more than the CRC itself in a profile)
                    thread_local! {
                        static BUF: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(vec![0; STEP_BYTES]);
                    }
                    BUF.with_borrow_mut(|buf| -> Result<()> {
                        let mut at = pos;
                        while at < stop {
                            let n = usize::try_from(stop.saturating_sub(at))
                                .unwrap_or(STEP_BYTES)
                                .min(STEP_BYTES);
                            let step = buf
                                .get_mut(..n)
                                .ok_or_else(|| Error::internal("step buffer too short"))?;
                            self.read(at, step)?;
                            h.update(step);
                            if zero && !is_zero(step) {
                                zero = false;
                            }
                            at = at.saturating_add(len_u64(n));
                        }
                        Ok(())
                    })?;
                    pos = stop;
                }
            }
        }
        Ok(Sum {
            crc: h.finalize(),
            zero,
        })
    }
}

/// Check a chunk size: a multiple of 512 between 512 bytes and 1 GiB.
pub fn check_chunk(chunk_bytes: u64) -> Result<()> {
    if !(MIN_CHUNK_BYTES..=MAX_CHUNK_BYTES).contains(&chunk_bytes)
        || !chunk_bytes.is_multiple_of(MIN_CHUNK_BYTES)
    {
        return Err(Error::invalid(format!(
            "chunk size {chunk_bytes} bytes: expected a multiple of 512 between 512 bytes and 1 GiB"
        )));
    }
    Ok(())
}

/// Number of chunks of `chunk_bytes` covering `len` bytes, refused above [`MAX_CHUNKS`].
pub fn chunk_count(len: u64, chunk_bytes: u64) -> Result<u64> {
    check_chunk(chunk_bytes)?;
    let n = len.div_ceil(chunk_bytes);
    if n > MAX_CHUNKS {
        return Err(Error::invalid(format!(
            "{len} bytes in chunks of {chunk_bytes} bytes make {n} chunks, more than {MAX_CHUNKS}: choose a larger --chunk"
        )));
    }
    Ok(n)
}

/// The range of chunk `i` of a file of `len` bytes (the last one may be shorter).
pub fn chunk_range(i: u64, chunk_bytes: u64, len: u64) -> Range {
    let start = i.saturating_mul(chunk_bytes).min(len);
    Range::new(start, chunk_bytes.min(len.saturating_sub(start)))
}

/// The checksum map of a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChecksumMap {
    pub file_bytes: u64,
    pub chunk_bytes: u64,
    /// One per chunk, in file order.
    pub chunks: Vec<Sum>,
    /// CRC32 of the whole file, assembled from the chunk CRCs.
    pub whole_crc32: u32,
    /// Holes of the file (never read).
    pub holes: Vec<Range>,
}

impl ChecksumMap {
    /// Runs of all-zero chunks, merged (holes included: they read as zeros). Built in one pass
    /// in file order, so its memory is the runs, not the chunks.
    pub fn zero_ranges(&self) -> Vec<Range> {
        let mut out: Vec<Range> = Vec::new();
        for (i, _) in self.chunks.iter().enumerate().filter(|(_, s)| s.zero) {
            let r = chunk_range(len_u64(i), self.chunk_bytes, self.file_bytes);
            match out.last_mut() {
                Some(last) if last.end() == r.offset => {
                    last.length = last.length.saturating_add(r.length);
                }
                _ => out.push(r),
            }
        }
        out
    }

    /// The range of chunk `i`.
    pub fn range(&self, i: usize) -> Range {
        chunk_range(len_u64(i), self.chunk_bytes, self.file_bytes)
    }
}

/// The whole-file CRC from chunk CRCs of a file of `len` bytes.
pub fn whole_crc(crcs: impl IntoIterator<Item = u32>, chunk_bytes: u64, len: u64) -> u32 {
    let mut h = Hasher::new();
    for (i, crc) in crcs.into_iter().enumerate() {
        let r = chunk_range(len_u64(i), chunk_bytes, len);
        h.combine(&Hasher::new_with_initial_len(crc, r.length));
    }
    h.finalize()
}

/// Run `f` over chunk indices `0..n` in parallel and collect the results in index order. `f`
/// gives its result and the bytes it covered; `progress` is called on this thread with the bytes
/// done and `total` (from a poll every 100 ms, and once at the end).
pub fn par_chunks<T: Send>(
    n: u64,
    total: u64,
    f: impl Fn(u64) -> (Result<T>, u64) + Sync,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<Vec<T>> {
    let done = AtomicU64::new(0);
    let waiting = std::thread::current();
    let result = std::thread::scope(|s| {
        let worker = s.spawn(|| {
            let r = (0..n)
                .into_par_iter()
                .map(|i| {
                    let (r, bytes) = f(i);
                    done.fetch_add(bytes, Ordering::Relaxed);
                    r
                })
                .collect::<Result<Vec<T>>>();
            waiting.unpark();
            r
        });
        while !worker.is_finished() {
            progress(done.load(Ordering::Relaxed), total);
            std::thread::park_timeout(Duration::from_millis(100));
        }
        worker.join()
    });
    progress(total, total);
    match result {
        Ok(r) => r,
        Err(_) => Err(Error::invalid("a checksum worker thread panicked")),
    }
}

/// Sum the chunks of `src` in `0..limit` in parallel, in file order.
pub fn chunk_sums(
    src: &mut Source<'_>,
    limit: u64,
    chunk_bytes: u64,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<Vec<Sum>> {
    let limit = limit.min(src.len());
    let n = chunk_count(limit, chunk_bytes)?;
    src.zero_cache = (chunk_bytes, zero_crc(chunk_bytes));
    let src: &Source<'_> = src;
    par_chunks(
        n,
        limit,
        |i| {
            let r = chunk_range(i, chunk_bytes, limit);
            (src.sum(r), r.length)
        },
        progress,
    )
}

/// The checksum map of a whole file.
pub fn map(
    src: &mut Source<'_>,
    chunk_bytes: u64,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<ChecksumMap> {
    let len = src.len();
    let chunks = chunk_sums(src, len, chunk_bytes, progress)?;
    Ok(ChecksumMap {
        file_bytes: len,
        chunk_bytes,
        whole_crc32: whole_crc(chunks.iter().map(|s| s.crc), chunk_bytes, len),
        chunks,
        holes: src.holes().to_vec(),
    })
}

/// Open `path` read-only (shared lock) and map it.
pub fn map_file(
    path: &std::path::Path,
    chunk_bytes: u64,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<ChecksumMap> {
    let disk = MmapDisk::open(path, crate::disk::Access::ReadOnly)?;
    let mut src = Source::open(&disk)?;
    let m = map(&mut src, chunk_bytes, progress)?;
    disk.still_whole()?;
    Ok(m)
}

/// Lower-case 8-digit hex of a CRC, as the manifest stores it.
pub fn hex(crc: u32) -> String {
    format!("{crc:08x}")
}

/// Where a [`Source`]'s bytes come from.
#[derive(Clone, Copy)]
enum Bytes<'a> {
    File(&'a MmapDisk),
    Memory(&'a [u8]),
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects, clippy::as_conversions)]
mod tests {
    use super::*;

    /// A small deterministic generator (xorshift) so the tests need no crate.
    pub(crate) fn noise(seed: u64, n: usize) -> Vec<u8> {
        let mut x = seed | 1;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect()
    }

    #[test]
    fn combine_matches_plain_crc_for_random_splits() {
        let data = noise(7, 100_000);
        let whole = crc32fast::hash(&data);
        let cuts = noise(99, 64);
        for w in cuts.chunks(2) {
            let a = (usize::from(w[0]) * 391) % data.len();
            let b = (usize::from(w[1]) * 389) % data.len();
            let (a, b) = (a.min(b), a.max(b));
            let c1 = crc32fast::hash(&data[..a]);
            let c2 = crc32fast::hash(&data[a..b]);
            let c3 = crc32fast::hash(&data[b..]);
            let ab = combine(c1, c2, (b - a) as u64);
            assert_eq!(combine(ab, c3, (data.len() - b) as u64), whole, "{a} {b}");
        }
        for chunk in [512u64, 4096, 777 * 512] {
            let crcs: Vec<u32> = data.chunks(chunk as usize).map(crc32fast::hash).collect();
            assert_eq!(whole_crc(crcs, chunk, data.len() as u64), whole);
        }
    }

    #[test]
    fn zero_crc_arithmetic() {
        for n in [0u64, 1, 2, 3, 511, 512, 4096, 65_537, 1 << 20, 3 << 20] {
            assert_eq!(zero_crc(n), crc32fast::hash(&vec![0; n as usize]), "{n}");
        }
        // known value: zlib.crc32(bytes(1 << 20))
        assert_eq!(zero_crc(1 << 20), 0xa738_ea1c);
    }

    #[test]
    fn holes_are_combined_not_read() {
        let mut data = noise(3, 40_000);
        // holes must read as zero: zero the bytes the fake holes cover
        for r in [(1000usize, 3000usize), (20_000, 19_000)] {
            data[r.0..r.0 + r.1].fill(0);
        }
        let mut src = Source::from_slice(&data);
        src.holes = vec![Range::new(1000, 3000), Range::new(20_000, 19_000)];
        let m = map(&mut src, 4096, &mut |_, _| {}).unwrap();
        assert_eq!(m.whole_crc32, crc32fast::hash(&data));
        for (i, s) in m.chunks.iter().enumerate() {
            let r = m.range(i);
            let bytes = &data[r.offset as usize..r.end() as usize];
            assert_eq!(s.crc, crc32fast::hash(bytes), "chunk {i}");
            assert_eq!(s.zero, bytes.iter().all(|&b| b == 0), "chunk {i}");
        }
        assert_eq!(m.zero_ranges(), vec![Range::new(20_480, 16_384)]);
        assert!(src.in_hole(Range::new(1000, 3000)));
        assert!(!src.in_hole(Range::new(999, 10)));
    }

    #[test]
    fn chunk_limits() {
        assert!(check_chunk(0).is_err());
        assert!(check_chunk(513).is_err());
        assert!(check_chunk(2 << 30).is_err());
        assert!(chunk_count(u64::MAX, 512).is_err());
        assert_eq!(chunk_count(1025, 512).unwrap(), 3);
        assert_eq!(chunk_range(2, 512, 1025), Range::new(1024, 1));
        assert_eq!(
            merge(vec![
                Range::new(10, 5),
                Range::new(0, 10),
                Range::new(30, 0),
                Range::new(40, 2)
            ]),
            vec![Range::new(0, 15), Range::new(40, 2)]
        );
    }

    #[test]
    fn empty_file() {
        let mut src = Source::from_slice(&[]);
        let m = map(&mut src, 512, &mut |_, _| {}).unwrap();
        assert!(m.chunks.is_empty());
        assert_eq!(m.whole_crc32, 0);
    }
}
