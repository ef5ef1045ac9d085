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
pub mod verify;

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

/// Chunk sums in file order, a run of equal sums kept as one entry of 8 bytes: the map of a
/// sparse 127 GiB image at 4 KiB chunks is a few runs, not 33 million sums, and a map of
/// distinct chunks costs what a plain list would. Runs are merged as they are pushed, so two
/// `Sums` are equal exactly when their chunks are.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sums {
    runs: Vec<Run>,
    /// The first chunk index of every [`INDEX_STRIDE`]-th run, for [`Sums::get`].
    index: Vec<u64>,
    /// Chunks held.
    chunks: u64,
}

/// One run: a CRC, and its length in chunks with the zero flag in the top bit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Run {
    crc: u32,
    count_zero: u32,
}

const ZERO_BIT: u32 = 1 << 31;
/// Longest run one entry holds (longer runs take several entries).
const MAX_RUN: u32 = ZERO_BIT - 1;
const INDEX_STRIDE: usize = 1024;

impl Run {
    fn count(self) -> u64 {
        u64::from(self.count_zero & MAX_RUN)
    }
    fn sum(self) -> Sum {
        Sum {
            crc: self.crc,
            zero: self.count_zero & ZERO_BIT != 0,
        }
    }
}

impl Sums {
    pub fn new() -> Sums {
        Sums::default()
    }

    /// Append `n` chunks with sum `s`.
    pub fn push_n(&mut self, s: Sum, mut n: u64) {
        let flag = if s.zero { ZERO_BIT } else { 0 };
        while n > 0 {
            if let Some(last) = self.runs.last_mut() {
                if last.sum() == s && last.count_zero & MAX_RUN < MAX_RUN {
                    let room = u64::from(MAX_RUN.saturating_sub(last.count_zero & MAX_RUN));
                    let add = n.min(room);
                    // add <= room <= MAX_RUN: fits a u32 and the sum stays below the flag
                    last.count_zero = last
                        .count_zero
                        .saturating_add(u32::try_from(add).unwrap_or(0));
                    self.chunks = self.chunks.saturating_add(add);
                    n = n.saturating_sub(add);
                    continue;
                }
            }
            let add = n.min(u64::from(MAX_RUN));
            if self.runs.len().is_multiple_of(INDEX_STRIDE) {
                self.index.push(self.chunks);
            }
            self.runs.push(Run {
                crc: s.crc,
                count_zero: u32::try_from(add).unwrap_or(0) | flag,
            });
            self.chunks = self.chunks.saturating_add(add);
            n = n.saturating_sub(add);
        }
    }

    /// Append one chunk.
    pub fn push(&mut self, s: Sum) {
        self.push_n(s, 1);
    }

    /// Chunks held.
    pub fn len(&self) -> u64 {
        self.chunks
    }

    pub fn is_empty(&self) -> bool {
        self.chunks == 0
    }

    /// Entries held (the memory is 8 bytes each).
    pub fn run_count(&self) -> usize {
        self.runs.len()
    }

    /// `(sum, first chunk, chunks)` per run, in order.
    pub fn runs(&self) -> impl Iterator<Item = (Sum, u64, u64)> + '_ {
        let mut first = 0u64;
        self.runs.iter().map(move |r| {
            let at = first;
            first = first.saturating_add(r.count());
            (r.sum(), at, r.count())
        })
    }

    /// Every chunk's sum, in order (expanded lazily).
    pub fn iter(&self) -> impl Iterator<Item = Sum> + '_ {
        self.runs
            .iter()
            .flat_map(|r| std::iter::repeat_n(r.sum(), usize::try_from(r.count()).unwrap_or(0)))
    }

    /// The sum of chunk `i`.
    pub fn get(&self, i: u64) -> Option<Sum> {
        if i >= self.chunks {
            return None;
        }
        let block = self
            .index
            .partition_point(|&first| first <= i)
            .checked_sub(1)?;
        let mut first = *self.index.get(block)?;
        let start = block.saturating_mul(INDEX_STRIDE);
        for r in self.runs.get(start..)? {
            let end = first.saturating_add(r.count());
            if i < end {
                return Some(r.sum());
            }
            first = end;
        }
        None
    }
}

impl FromIterator<Sum> for Sums {
    fn from_iter<I: IntoIterator<Item = Sum>>(iter: I) -> Sums {
        let mut out = Sums::new();
        for s in iter {
            out.push(s);
        }
        out
    }
}

/// `crc(A || B)` from `crc(A)`, `crc(B)` and the length of B.
pub fn combine(crc_a: u32, crc_b: u32, len_b: u64) -> u32 {
    let mut h = Hasher::new_with_initial(crc_a);
    h.combine(&Hasher::new_with_initial_len(crc_b, len_b));
    h.finalize()
}

/// CRC32 of `n` zero bytes, by doubling: O(log n) combines, nothing read.
pub fn zero_crc(n: u64) -> u32 {
    repeat_crc(crc32fast::hash(&[0]), 1, n)
}

/// CRC32 of `n` copies of a piece of `piece_len` bytes whose CRC is `crc`, by doubling:
/// O(log n) combines.
pub fn repeat_crc(crc: u32, piece_len: u64, n: u64) -> u32 {
    let mut acc = 0u32; // the CRC of the empty string
    let mut copies = 0u64;
    for bit in (0..u64::BITS.saturating_sub(n.leading_zeros())).rev() {
        // doubling: acc || acc
        acc = combine(acc, acc, copies.saturating_mul(piece_len));
        copies = copies.saturating_mul(2);
        if n.checked_shr(bit).unwrap_or(0) & 1 == 1 {
            acc = combine(acc, crc, piece_len);
            copies = copies.saturating_add(1);
        }
    }
    debug_assert_eq!(copies, n);
    acc
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

    /// How many whole chunks from chunk `i` on lie inside the hole holding chunk `i`'s start
    /// (0: chunk `i` is not all hole). A shorter last chunk is never counted.
    fn whole_chunks_in_hole(&self, i: u64, chunk_bytes: u64, limit: u64) -> u64 {
        let start = i.saturating_mul(chunk_bytes);
        let k = self.holes.partition_point(|h| h.end() <= start);
        match self.holes.get(k) {
            Some(h) if h.offset <= start => h
                .end()
                .min(limit)
                .saturating_sub(start)
                .checked_div(chunk_bytes)
                .unwrap_or(0),
            _ => 0,
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
    /// One per chunk, in file order (runs of equal sums held once).
    pub chunks: Sums,
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
        for (_, first, n) in self.chunks.runs().filter(|(s, _, _)| s.zero) {
            let r = chunks_range(first, n, self.chunk_bytes, self.file_bytes);
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
    pub fn range(&self, i: u64) -> Range {
        chunk_range(i, self.chunk_bytes, self.file_bytes)
    }
}

/// The bytes of chunks `first..first + n` of a file of `len` bytes.
pub fn chunks_range(first: u64, n: u64, chunk_bytes: u64, len: u64) -> Range {
    let start = first.saturating_mul(chunk_bytes).min(len);
    let end = first.saturating_add(n).saturating_mul(chunk_bytes).min(len);
    Range::new(start, end.saturating_sub(start))
}

/// The whole-file CRC from chunk CRCs of a file of `len` bytes.
pub fn whole_crc(crcs: impl IntoIterator<Item = u32>, chunk_bytes: u64, len: u64) -> u32 {
    whole_crc_runs(crcs.into_iter().map(|c| (c, 1)), chunk_bytes, len)
}

/// The whole-file CRC from runs `(crc, chunks)` of chunk CRCs of a file of `len` bytes: a run
/// costs O(log n) combines, not n.
pub fn whole_crc_runs(
    runs: impl IntoIterator<Item = (u32, u64)>,
    chunk_bytes: u64,
    len: u64,
) -> u32 {
    let mut w = WholeCrc::new(chunk_bytes, len);
    for (crc, n) in runs {
        w.push(crc, n);
    }
    w.finish()
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

/// Chunks summed in parallel in one go: 64 Ki sums (512 KiB) at a time, so the memory of a map
/// is its runs whatever the file's size and the chunk size.
const WINDOW_CHUNKS: u64 = 1 << 16;

/// Sum the chunks of `src` in `0..limit` in parallel, in file order. Stretches of whole chunks
/// inside one hole are one run, computed without a step per chunk.
pub fn chunk_sums(
    src: &mut Source<'_>,
    limit: u64,
    chunk_bytes: u64,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<Sums> {
    let mut out = Sums::new();
    each_chunk_sum(src, limit, chunk_bytes, progress, &mut |s, n| {
        out.push_n(s, n);
        Ok(())
    })?;
    Ok(out)
}

/// [`chunk_sums`] handed to `sink` as `(sum, chunks)` in file order (a window at a time), for
/// a caller that compares or writes them as they come instead of keeping them.
pub fn each_chunk_sum(
    src: &mut Source<'_>,
    limit: u64,
    chunk_bytes: u64,
    progress: &mut dyn FnMut(u64, u64),
    sink: &mut dyn FnMut(Sum, u64) -> Result<()>,
) -> Result<()> {
    let limit = limit.min(src.len());
    let n = chunk_count(limit, chunk_bytes)?;
    let zero_chunk = zero_crc(chunk_bytes);
    src.zero_cache = (chunk_bytes, zero_chunk);
    let src: &Source<'_> = src;
    let mut i = 0u64;
    while i < n {
        let in_hole = src.whole_chunks_in_hole(i, chunk_bytes, limit);
        if in_hole > 0 {
            sink(
                Sum {
                    crc: zero_chunk,
                    zero: true,
                },
                in_hole,
            )?;
            i = i.saturating_add(in_hole);
            progress(chunks_range(0, i, chunk_bytes, limit).length, limit);
            continue;
        }
        // up to the next stretch inside a hole, at most a window
        let mut end = i.saturating_add(1);
        while end < n
            && end.saturating_sub(i) < WINDOW_CHUNKS
            && src.whole_chunks_in_hole(end, chunk_bytes, limit) == 0
        {
            end = end.saturating_add(1);
        }
        let base = chunks_range(0, i, chunk_bytes, limit).length;
        let window = chunks_range(i, end.saturating_sub(i), chunk_bytes, limit).length;
        let sums = par_chunks(
            end.saturating_sub(i),
            window,
            |k| {
                let r = chunk_range(i.saturating_add(k), chunk_bytes, limit);
                (src.sum(r), r.length)
            },
            &mut |d, _| progress(base.saturating_add(d), limit),
        )?;
        for s in sums {
            sink(s, 1)?;
        }
        i = end;
    }
    Ok(())
}

/// The whole-file CRC assembled from `(crc, chunks)` runs as they come.
pub struct WholeCrc {
    h: Hasher,
    next: u64,
    chunk_bytes: u64,
    len: u64,
}

impl WholeCrc {
    pub fn new(chunk_bytes: u64, len: u64) -> WholeCrc {
        WholeCrc {
            h: Hasher::new(),
            next: 0,
            chunk_bytes,
            len,
        }
    }

    /// The next `n` chunks, all with CRC `crc`.
    pub fn push(&mut self, crc: u32, n: u64) {
        let r = chunks_range(self.next, n, self.chunk_bytes, self.len);
        // every chunk of the run is whole but perhaps the file's last one, which is shorter
        let full = r.length.checked_div(self.chunk_bytes).unwrap_or(0).min(n);
        if full > 0 {
            let bytes = full.saturating_mul(self.chunk_bytes);
            self.h.combine(&Hasher::new_with_initial_len(
                repeat_crc(crc, self.chunk_bytes, full),
                bytes,
            ));
        }
        let rest = r
            .length
            .saturating_sub(full.saturating_mul(self.chunk_bytes));
        if rest > 0 {
            self.h.combine(&Hasher::new_with_initial_len(crc, rest));
        }
        self.next = self.next.saturating_add(n);
    }

    pub fn finish(self) -> u32 {
        self.h.finalize()
    }
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
        whole_crc32: whole_crc_runs(chunks.runs().map(|(s, _, n)| (s.crc, n)), chunk_bytes, len),
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
        for (i, s) in (0u64..).zip(m.chunks.iter()) {
            let r = m.range(i);
            let bytes = &data[r.offset as usize..r.end() as usize];
            assert_eq!(s.crc, crc32fast::hash(bytes), "chunk {i}");
            assert_eq!(s.zero, bytes.iter().all(|&b| b == 0), "chunk {i}");
        }
        assert_eq!(m.zero_ranges(), vec![Range::new(20_480, 16_384)]);
        assert!(src.in_hole(Range::new(1000, 3000)));
        assert!(!src.in_hole(Range::new(999, 10)));
    }

    /// A map of runs equals the plain per-chunk list: sums, lookups, whole CRC and zero
    /// ranges, for holes that start and end mid-chunk, a short last chunk, and a stretch of
    /// whole chunks inside a hole (one run, computed without a step per chunk).
    #[test]
    fn runs_hold_what_a_plain_list_holds() {
        for (len, chunk) in [
            (300_000usize, 4096u64),
            (300_000, 512),
            (262_144, 4096),
            (1, 512),
        ] {
            let mut data = noise(11, len);
            let holes = [(700usize, 9000usize), (40_000, 200_000)];
            let mut hole_ranges = Vec::new();
            for (a, n) in holes {
                if a + n <= len {
                    data[a..a + n].fill(0);
                    hole_ranges.push(Range::new(a as u64, n as u64));
                }
            }
            let mut src = Source::from_slice(&data);
            src.holes = hole_ranges;
            let m = map(&mut src, chunk, &mut |_, _| {}).unwrap();
            let plain: Vec<Sum> = data
                .chunks(chunk as usize)
                .map(|c| Sum {
                    crc: crc32fast::hash(c),
                    zero: c.iter().all(|&b| b == 0),
                })
                .collect();
            assert_eq!(m.chunks.len(), plain.len() as u64);
            assert_eq!(m.chunks.iter().collect::<Vec<_>>(), plain);
            for (i, s) in plain.iter().enumerate() {
                assert_eq!(m.chunks.get(i as u64), Some(*s), "chunk {i}");
            }
            assert_eq!(m.chunks.get(plain.len() as u64), None);
            assert_eq!(m.whole_crc32, crc32fast::hash(&data), "{len} {chunk}");
            assert_eq!(m.chunks, plain.iter().copied().collect::<Sums>());
            if len > 250_000 {
                assert!(
                    m.chunks.run_count() < plain.len() / 2,
                    "the hole is one run: {} runs for {} chunks",
                    m.chunks.run_count(),
                    plain.len()
                );
            }
        }
    }

    #[test]
    fn long_runs_and_the_lookup_index() {
        let z = Sum { crc: 1, zero: true };
        let d = Sum {
            crc: 2,
            zero: false,
        };
        let mut s = Sums::new();
        s.push_n(z, u64::from(MAX_RUN) + 5);
        assert_eq!(
            s.run_count(),
            2,
            "a run longer than an entry holds takes two"
        );
        for k in 0..3000u64 {
            s.push(if k % 2 == 0 { d } else { z });
        }
        let base = u64::from(MAX_RUN) + 5;
        assert_eq!(s.len(), base + 3000);
        assert_eq!(s.get(0), Some(z));
        assert_eq!(s.get(base - 1), Some(z));
        assert_eq!(s.get(base), Some(d));
        assert_eq!(s.get(base + 2999), Some(z));
        assert_eq!(s.get(base + 1777), Some(z));
        assert_eq!(s.get(base + 1778), Some(d));
        assert_eq!(s.get(base + 3000), None);
        assert_eq!(
            repeat_crc(crc32fast::hash(b"abc"), 3, 5),
            crc32fast::hash(&b"abc".repeat(5))
        );
        assert_eq!(
            whole_crc_runs(
                [(crc32fast::hash(b"ab"), 3), (crc32fast::hash(b"c"), 1)],
                2,
                7
            ),
            crc32fast::hash(b"abababc")
        );
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
