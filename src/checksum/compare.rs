//! Comparing images: `diff` of two files (exact, to the 512-byte sector), `verify` of a file
//! against a manifest (to the chunk), the proof that `convert` wrote only its planned regions,
//! and the ranges an uploader must send.
//!
//! Changed ranges are named by what lives there, read from the partition tables of each side
//! (`info::inspect`, metadata only): "LBA 0: MBR", "LBA 1-33: GPT header and entries",
//! "partition 2 (ext4)", "VHD footer", "unallocated", "beyond the end of A". A range whose
//! meaning differs between the two layouts carries both names.

use std::path::Path;

use serde::Serialize;

use super::{
    chunk_count, chunk_range, chunk_sums, merge, par_chunks, ChecksumMap, Range, Source, Sum, Sums,
    DEFAULT_CHUNK_BYTES,
};
use crate::disk::{Access, Disk, MmapDisk, Region};
use crate::error::Result;
use crate::info::{InfoReport, TableKind};
use crate::units::len_u64;
use crate::vhd::Format;

/// Sector size of the exact comparison: changed ranges of `diff` are whole 512-byte sectors.
pub const SECTOR_BYTES: u64 = 512;

/// What lives where in one image file, as labelled segments.
#[derive(Debug, Clone)]
pub struct Layout {
    name: String,
    file_bytes: u64,
    /// `(start, label)`: the label holds from `start` to the next start (or the file end).
    segments: Vec<(u64, String)>,
}

impl Layout {
    /// Read the layout of an image (metadata only).
    pub fn of(file: &dyn Disk, name: &str) -> Layout {
        Layout::from_report(&crate::info::inspect(file, name), name)
    }

    /// The layout from an `info` report. `name` is used in "beyond the end of NAME".
    pub fn from_report(r: &InfoReport, name: &str) -> Layout {
        let sb = u64::from(r.sector_bytes.max(1));
        let lba = |a: u64, b_incl: u64| -> Option<(u64, u64)> {
            Some((a.checked_mul(sb)?, b_incl.checked_add(1)?.checked_mul(sb)?))
        };
        // (start, end, label): the smallest interval containing a byte names it
        let mut iv: Vec<(u64, u64, String)> = Vec::new();
        let flat = matches!(r.format, Format::Raw | Format::VhdFixed);
        if let Some(f) = &r.footer {
            let n = if f.legacy_511 { 511 } else { 512 };
            iv.push((f.offset, f.offset.saturating_add(n), "VHD footer".into()));
            if !flat {
                iv.push((0, 512, "VHD footer copy".into()));
            }
        }
        if flat {
            let mbr = match &r.mbr {
                Some(m) if m.protective => "LBA 0: protective MBR",
                Some(_) => "LBA 0: MBR",
                None => "LBA 0",
            };
            iv.push((0, sb, mbr.into()));
            if let (Some(g), TableKind::Gpt | TableKind::Hybrid) = (&r.gpt, r.partition_table) {
                let h = &g.header;
                let entry_bytes = u64::from(h.num_partition_entries)
                    .saturating_mul(u64::from(h.size_of_partition_entry));
                let es = entry_bytes.div_ceil(sb);
                let (primary, backup) = match g.used {
                    crate::gpt::Copy::Primary => (h.my_lba, h.alternate_lba),
                    crate::gpt::Copy::Backup => (h.alternate_lba, h.my_lba),
                };
                if primary == 1 {
                    if let Some((a, b)) = lba(1, es.saturating_add(1)) {
                        iv.push((
                            a,
                            b,
                            format!("LBA 1-{}: GPT header and entries", es.saturating_add(1)),
                        ));
                    }
                }
                if backup > es {
                    if let Some((a, b)) = lba(backup.saturating_sub(es), backup) {
                        iv.push((
                            a,
                            b,
                            format!(
                                "LBA {}-{backup}: backup GPT entries and header",
                                backup.saturating_sub(es)
                            ),
                        ));
                    }
                }
            }
            for p in &r.partitions {
                if p.sectors == 0 {
                    continue;
                }
                let fs = p
                    .filesystem
                    .as_ref()
                    .and_then(|f| serde_json::to_value(f.kind).ok())
                    .and_then(|v| v.as_str().map(str::to_string));
                // GPT type names say what a partition is for ("EFI system partition")
                let kind = match (fs, &p.type_name, p.scheme) {
                    (Some(fs), Some(t), crate::info::Scheme::Gpt) => format!("{t}, {fs}"),
                    (Some(fs), _, _) => fs,
                    (None, Some(t), _) => t.clone(),
                    (None, None, _) => p.type_id.clone(),
                };
                let label = if p.extended {
                    format!("extended partition {} (EBRs)", p.index)
                } else if p.logical {
                    format!("partition {} ({kind}, logical)", p.index)
                } else {
                    format!("partition {} ({kind})", p.index)
                };
                if let Some((a, b)) = lba(p.start_lba, p.end_lba) {
                    iv.push((a, b, label));
                }
            }
        }
        let file_bytes = r.file_bytes;
        let data_end = if flat {
            r.data_bytes.min(file_bytes)
        } else {
            0
        };
        let mut cuts: Vec<u64> = iv
            .iter()
            .flat_map(|(a, b, _)| [*a, *b])
            .chain([0, data_end, file_bytes])
            .filter(|&c| c <= file_bytes)
            .collect();
        cuts.sort_unstable();
        cuts.dedup();
        let mut segments: Vec<(u64, String)> = Vec::new();
        for w in cuts.windows(2) {
            let (Some(&a), Some(&b)) = (w.first(), w.get(1)) else {
                continue;
            };
            let label = iv
                .iter()
                .filter(|(s, e, _)| *s <= a && *e >= b)
                .min_by_key(|(s, e, _)| e.saturating_sub(*s))
                .map(|(_, _, l)| l.clone())
                .unwrap_or_else(|| {
                    if !flat {
                        "dynamic VHD headers, block table and blocks".into()
                    } else if a < data_end {
                        "unallocated".into()
                    } else {
                        "after the disk data".into()
                    }
                });
            if segments.last().is_none_or(|(_, l)| *l != label) {
                segments.push((a, label));
            }
        }
        Layout {
            name: name.to_string(),
            file_bytes,
            segments,
        }
    }

    /// A layout that knows only the file size (a manifest's image).
    pub fn size_only(name: &str, file_bytes: u64) -> Layout {
        Layout {
            name: name.to_string(),
            file_bytes,
            segments: vec![(0, "data".into())],
        }
    }

    /// The label at `offset` and where it stops holding.
    fn at(&self, offset: u64) -> (String, u64) {
        if offset >= self.file_bytes {
            return (format!("beyond the end of {}", self.name), u64::MAX);
        }
        let i = self
            .segments
            .partition_point(|(s, _)| *s <= offset)
            .saturating_sub(1);
        let end = self
            .segments
            .get(i.saturating_add(1))
            .map_or(self.file_bytes, |(s, _)| *s);
        let label = self
            .segments
            .get(i)
            .map_or_else(|| "data".to_string(), |(_, l)| l.clone());
        (label, end)
    }
}

/// One changed range and what lives there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    pub offset: u64,
    pub length: u64,
    /// The name by the new layout, with the old one in parentheses where they differ.
    pub what: String,
    /// The name by the new layout (B, or the image being verified).
    pub new: String,
    /// The name by the old layout (A); absent when the old layout is unknown (a manifest).
    pub old: Option<String>,
}

/// Split `ranges` where the names change and name each piece.
pub fn name(ranges: &[Range], new: &Layout, old: Option<&Layout>) -> Vec<Change> {
    let mut out: Vec<Change> = Vec::new();
    for r in ranges {
        let mut pos = r.offset;
        let end = r.end();
        while pos < end {
            let (ln, en) = new.at(pos);
            let (lo, eo) = match old {
                Some(o) => {
                    let (l, e) = o.at(pos);
                    (Some(l), e)
                }
                None => (None, u64::MAX),
            };
            let stop = en.min(eo).min(end).max(pos.saturating_add(1));
            let what = match &lo {
                Some(o) if *o != ln => format!("{ln} (in {}: {o})", old.map_or("", |l| &l.name)),
                _ => ln.clone(),
            };
            match out.last_mut() {
                Some(c) if c.end_matches(pos) && c.new == ln && c.old == lo => {
                    c.length = c.length.saturating_add(stop.saturating_sub(pos));
                }
                _ => out.push(Change {
                    offset: pos,
                    length: stop.saturating_sub(pos),
                    what,
                    new: ln,
                    old: lo,
                }),
            }
            pos = stop;
        }
    }
    out
}

impl Change {
    fn end_matches(&self, pos: u64) -> bool {
        self.offset.saturating_add(self.length) == pos
    }
}

/// The outcome of `diff` and `verify`.
#[derive(Debug, Clone, Serialize)]
pub struct DiffReport {
    /// "diff" (two files, exact to the sector) or "verify" (a file against a manifest, to the
    /// chunk).
    pub kind: &'static str,
    /// The old side: file A, or the manifest.
    pub a: String,
    /// The new side: file B, or the image verified.
    pub b: String,
    pub a_bytes: u64,
    pub b_bytes: u64,
    /// Changed ranges are whole units of this size (the last one of a file may be shorter).
    pub granularity_bytes: u64,
    /// No changed range and the same size. `diff` reads the shorter file as zero-extended, so
    /// two files that differ only by a tail of zeros have no changed range but are not
    /// identical.
    pub identical: bool,
    pub changed_bytes: u64,
    pub changed: Vec<Change>,
    /// `verify`: the whole-file CRC32 the manifest records and the one computed now.
    pub expected_crc32: Option<String>,
    pub actual_crc32: Option<String>,
}

/// Exact changed ranges of two sources, to the sector. The shorter file reads as zero-extended
/// to the longer one's length (a grown disk gains zeros): past its end, only the longer file's
/// non-zero sectors are changes; the sizes themselves are compared by the caller. Chunks that are
/// holes in both are skipped, others compared byte for byte (equal slices compare at memory
/// speed), and a chunk that differs is searched sector by sector.
pub fn changed_ranges(
    a: &Source<'_>,
    b: &Source<'_>,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<Vec<Range>> {
    let common = a.len().min(b.len());
    let longer_len = a.len().max(b.len());
    let longer = if a.len() >= b.len() { a } else { b };
    let chunk = DEFAULT_CHUNK_BYTES;
    let n = chunk_count(longer_len, chunk)?;
    let per_chunk = par_chunks(
        n,
        longer_len,
        |i| {
            let r = chunk_range(i, chunk, longer_len);
            let f = || -> Result<Vec<Range>> {
                let mut out: Vec<Range> = Vec::new();
                if let Some(c) = r.intersect(&Range::new(0, common)) {
                    if !(a.in_hole(c) && b.in_hole(c)) {
                        for_steps(c, |at, x, y| {
                            a.read(at, x)?;
                            b.read(at, y)?;
                            if x != y {
                                for ((at, sx), sy) in sector_pieces(at, x).zip(y.chunks(SECTOR)) {
                                    if sx != sy {
                                        push_range(&mut out, at, len_u64(sy.len()));
                                    }
                                }
                            }
                            Ok(())
                        })?;
                    }
                }
                if let Some(t) = r.intersect(&Range::new(common, longer_len.saturating_sub(common)))
                {
                    if !longer.in_hole(t) {
                        for_steps(t, |at, x, _| {
                            longer.read(at, x)?;
                            if !super::is_zero(x) {
                                for (at, sx) in sector_pieces(at, x) {
                                    if !super::is_zero(sx) {
                                        push_range(&mut out, at, len_u64(sx.len()));
                                    }
                                }
                            }
                            Ok(())
                        })?;
                    }
                }
                Ok(out)
            };
            (f(), r.length)
        },
        progress,
    )?;
    Ok(merge(per_chunk.into_iter().flatten().collect()))
}

/// Sector size of the exact comparison, as a slice length.
const SECTOR: usize = 512;

/// The 512-byte pieces of `bytes` read at file offset `base`, with their offsets.
fn sector_pieces(base: u64, bytes: &[u8]) -> impl Iterator<Item = (u64, &[u8])> {
    bytes.chunks(SECTOR).enumerate().map(move |(k, s)| {
        (
            base.saturating_add(len_u64(k).saturating_mul(SECTOR_BYTES)),
            s,
        )
    })
}

/// Append `at+len` to `out`, extending the last range when they touch.
fn push_range(out: &mut Vec<Range>, at: u64, len: u64) {
    match out.last_mut() {
        Some(last) if last.end() == at => last.length = last.length.saturating_add(len),
        _ => out.push(Range::new(at, len)),
    }
}

/// Bytes compared in one step: two buffers of this size stay in L2 between the reads and the
/// comparison (1 MiB buffers measured 3 times slower).
const STEP_BYTES: usize = 64 << 10;

/// Run `f(offset, x, y)` over `r` in steps of at most [`STEP_BYTES`], on two per-thread buffers
/// of the step's length: the two sides of a comparison are read into them with `pread`, never
/// through a memory map, so memory stays at two steps a thread whatever the image size, and a
/// file truncated under us is an I/O error, not a SIGBUS.
fn for_steps(r: Range, mut f: impl FnMut(u64, &mut [u8], &mut [u8]) -> Result<()>) -> Result<()> {
    thread_local! {
        static BUFS: std::cell::RefCell<(Vec<u8>, Vec<u8>)> =
            std::cell::RefCell::new((vec![0; STEP_BYTES], vec![0; STEP_BYTES]));
    }
    BUFS.with_borrow_mut(|(x, y)| {
        let mut at = r.offset;
        while at < r.end() {
            let n = usize::try_from(r.end().saturating_sub(at))
                .unwrap_or(STEP_BYTES)
                .min(STEP_BYTES);
            let (Some(x), Some(y)) = (x.get_mut(..n), y.get_mut(..n)) else {
                return Err(crate::error::Error::internal("step buffers too short"));
            };
            f(at, x, y)?;
            at = at.saturating_add(len_u64(n));
        }
        Ok(())
    })
}

pub(super) fn file_name(p: &Path) -> String {
    p.file_name().map_or_else(
        || p.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}

/// `vhdtool diff A B`.
pub fn diff_files(a: &Path, b: &Path, progress: &mut dyn FnMut(u64, u64)) -> Result<DiffReport> {
    let da = MmapDisk::open(a, Access::ReadOnly)?;
    let db = MmapDisk::open(b, Access::ReadOnly)?;
    let (sa, sb) = (Source::open(&da)?, Source::open(&db)?);
    let ranges = changed_ranges(&sa, &sb, progress)?;
    da.still_whole()?;
    db.still_whole()?;
    let (na, nb) = (file_name(a), file_name(b));
    let (na, nb) = if na == nb {
        (a.display().to_string(), b.display().to_string())
    } else {
        (na, nb)
    };
    let la = Layout::of(&da, &na);
    let lb = Layout::of(&db, &nb);
    let changed = name(&ranges, &lb, Some(&la));
    Ok(DiffReport {
        kind: "diff",
        a: a.display().to_string(),
        b: b.display().to_string(),
        a_bytes: da.len(),
        b_bytes: db.len(),
        granularity_bytes: SECTOR_BYTES,
        identical: changed.is_empty() && da.len() == db.len(),
        changed_bytes: ranges.iter().map(|r| r.length).sum(),
        changed,
        expected_crc32: None,
        actual_crc32: None,
    })
}

/// Append `r` to sorted `ranges`, merged with the last one when they touch (memory: the
/// changed stretches, not the changed chunks).
pub(super) fn push_merged(ranges: &mut Vec<Range>, r: Range) {
    match ranges.last_mut() {
        Some(last) if last.end() >= r.offset => {
            last.length = last.end().max(r.end()).saturating_sub(last.offset);
        }
        _ => ranges.push(r),
    }
}

pub use super::verify::verify_manifest;

/// What an uploader must send: the non-zero ranges, aligned to pages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UploadMap {
    pub page_bytes: u64,
    pub file_bytes: u64,
    /// Page-aligned ranges (the last one ends at the file end), merged.
    pub ranges: Vec<Range>,
    pub total_bytes: u64,
    /// Put-page calls of at most `page_bytes` each.
    pub pages: u64,
}

/// The pages of `map` that hold a non-zero byte, plus the page holding `always` (the VHD
/// footer). `page_bytes` must be a multiple of the map's chunk size.
pub fn upload_ranges(map: &ChecksumMap, page_bytes: u64, always: Option<Range>) -> UploadMap {
    let len = map.file_bytes;
    let page = page_bytes.max(1);
    let page_of = |r: Range| -> Range {
        let start = r.offset.checked_div(page).unwrap_or(0).saturating_mul(page);
        let end = r.end().div_ceil(page).saturating_mul(page).min(len);
        Range::new(start, end.saturating_sub(start))
    };
    let mut ranges: Vec<Range> = Vec::new();
    for (_, first, n) in map.chunks.runs().filter(|(s, _, _)| !s.zero) {
        push_merged(
            &mut ranges,
            page_of(super::chunks_range(first, n, map.chunk_bytes, len)),
        );
    }
    if let Some(r) = always.and_then(|r| r.intersect(&Range::new(0, len))) {
        ranges.push(page_of(r));
    }
    let ranges = merge(ranges);
    UploadMap {
        page_bytes: page,
        file_bytes: len,
        total_bytes: ranges.iter().map(|r| r.length).sum(),
        pages: ranges.iter().map(|r| r.length.div_ceil(page)).sum(),
        ranges,
    }
}

/// One planned region and whether its bytes changed.
#[derive(Debug, Clone, Serialize)]
pub struct RegionCheck {
    pub offset: u64,
    pub length: u64,
    pub what: String,
    pub changed: bool,
}

/// The proof that a conversion changed only its planned regions.
#[derive(Debug, Clone, Serialize)]
pub struct VerifyReport {
    /// True when no byte outside the planned regions changed.
    pub ok: bool,
    /// How it was proven.
    pub method: String,
    /// Bytes outside the planned regions that were compared.
    pub checked_bytes: u64,
    pub regions: Vec<RegionCheck>,
    /// Changes outside the planned regions (empty when `ok`).
    pub unplanned: Vec<Range>,
}

/// `r` minus the (merged, sorted) `cut` ranges.
pub fn subtract(r: Range, cut: &[Range]) -> Vec<Range> {
    let mut out = Vec::new();
    let mut pos = r.offset;
    for c in cut {
        if c.end() <= pos {
            continue;
        }
        if c.offset >= r.end() {
            break;
        }
        if c.offset > pos {
            out.push(Range::new(pos, c.offset.saturating_sub(pos)));
        }
        pos = pos.max(c.end());
    }
    if pos < r.end() {
        out.push(Range::new(pos, r.end().saturating_sub(pos)));
    }
    out
}

fn planned(regions: &[Region]) -> Vec<Range> {
    merge(
        regions
            .iter()
            .map(|r| Range::new(r.offset, r.length))
            .collect(),
    )
}

/// The state of an image before an in-place conversion: chunk CRCs of everything outside the
/// planned regions (chunks that touch a region are split around it) and the sums of the
/// regions themselves.
pub struct Snapshot {
    file_bytes: u64,
    chunk_bytes: u64,
    chunks: Sums,
    /// Pieces of chunks that touch a planned region, outside the regions.
    pieces: Vec<(Range, Sum)>,
    /// Per region: the sum of its part inside the old file.
    regions: Vec<(Region, Option<(Range, Sum)>)>,
}

/// Take the snapshot before `regions` are written.
pub fn snapshot(disk: &MmapDisk, regions: &[Region]) -> Result<Snapshot> {
    let mut src = Source::open(disk)?;
    let len = src.len();
    let chunk = DEFAULT_CHUNK_BYTES;
    let chunks = chunk_sums(&mut src, len, chunk, &mut |_, _| {})?;
    let cut = planned(regions);
    let mut pieces = Vec::new();
    for i in 0..chunks.len() {
        let r = chunk_range(i, chunk, len);
        if cut.iter().any(|c| c.intersect(&r).is_some()) {
            for p in subtract(r, &cut) {
                pieces.push((p, src.sum(p)?));
            }
        }
    }
    let regions = regions
        .iter()
        .map(|g| {
            let inside = Range::new(g.offset, g.length).intersect(&Range::new(0, len));
            let sum = inside.map(|r| src.sum(r).map(|s| (r, s))).transpose()?;
            Ok((g.clone(), sum))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Snapshot {
        file_bytes: len,
        chunk_bytes: chunk,
        chunks,
        pieces,
        regions,
    })
}

/// Prove, after the writes, that only the snapshot's regions changed.
pub fn prove(before: &Snapshot, disk: &MmapDisk) -> Result<VerifyReport> {
    let mut src = Source::open(disk)?;
    let new_len = src.len();
    let old_len = before.file_bytes;
    let chunk = before.chunk_bytes;
    let regions: Vec<Region> = before.regions.iter().map(|(g, _)| g.clone()).collect();
    let cut = planned(&regions);
    let after = chunk_sums(&mut src, old_len.min(new_len), chunk, &mut |_, _| {})?;
    let mut unplanned = Vec::new();
    let mut checked = 0u64;
    let mut now = after.iter();
    for (i, b) in (0u64..).zip(before.chunks.iter()) {
        let a = now.next();
        let r = chunk_range(i, chunk, old_len);
        if cut.iter().any(|c| c.intersect(&r).is_some()) {
            continue; // compared piece by piece below
        }
        checked = checked.saturating_add(r.length);
        let same =
            a.is_some_and(|a| chunk_range(i, chunk, old_len.min(new_len)) == r && a.crc == b.crc);
        if !same {
            unplanned.push(r);
        }
    }
    for (p, b) in &before.pieces {
        checked = checked.saturating_add(p.length);
        let same = p.end() <= new_len && src.sum(*p)?.crc == b.crc;
        if !same {
            unplanned.push(*p);
        }
    }
    // what the file gained outside the regions must read as zeros (a grown disk's new space)
    if new_len > old_len {
        for p in subtract(Range::new(old_len, new_len.saturating_sub(old_len)), &cut) {
            checked = checked.saturating_add(p.length);
            if !src.sum(p)?.zero {
                unplanned.push(p);
            }
        }
    }
    let mut checks = Vec::new();
    for (g, b) in &before.regions {
        let r = Range::new(g.offset, g.length);
        let inside_new = r.intersect(&Range::new(0, new_len));
        let changed = match (b, inside_new) {
            (Some((rb, sb)), Some(rn)) => {
                let old_part = rn.intersect(rb);
                let old_same = match old_part {
                    Some(op) if op == *rb => src.sum(op)?.crc == sb.crc,
                    _ => false,
                };
                let extra_zero = subtract(rn, &[*rb])
                    .into_iter()
                    .map(|p| src.sum(p).map(|s| s.zero))
                    .collect::<Result<Vec<_>>>()?
                    .into_iter()
                    .all(|z| z);
                !(old_same && extra_zero)
            }
            (None, Some(rn)) => !src.sum(rn)?.zero,
            (Some(_), None) => true,
            (None, None) => false,
        };
        checks.push(RegionCheck {
            offset: g.offset,
            length: g.length,
            what: g.what.clone(),
            changed,
        });
    }
    let unplanned = merge(unplanned);
    Ok(VerifyReport {
        ok: unplanned.is_empty(),
        method: format!(
            "CRC32 map of the image before and after the writes ({} KiB chunks, split around the planned regions)",
            chunk >> 10
        ),
        checked_bytes: checked,
        regions: checks,
        unplanned,
    })
}

/// Do `a` and `b` differ anywhere in `r`? Past the end of `a`, `b` must read as zeros (growth);
/// past the end of `b`, every byte is a change (it was lost).
fn differs(a: &Source<'_>, b: &Source<'_>, r: Range) -> Result<bool> {
    if r.end() > b.len() {
        return Ok(true);
    }
    let mut differ = false;
    if let Some(c) = r.intersect(&Range::new(0, a.len())) {
        for_steps(c, |at, x, y| {
            a.read(at, x)?;
            b.read(at, y)?;
            differ |= x != y;
            Ok(())
        })?;
    }
    if let Some(t) = r.intersect(&Range::new(a.len(), b.len().saturating_sub(a.len()))) {
        differ |= !b.sum(t)?.zero;
    }
    Ok(differ)
}

/// Prove that `output` (a converted copy) differs from `source` only inside `regions`, by a
/// byte-for-byte comparison.
pub fn prove_copy(source: &Path, output: &Path, regions: &[Region]) -> Result<VerifyReport> {
    let da = MmapDisk::open(source, Access::ReadOnly)?;
    let db = MmapDisk::open(output, Access::ReadOnly)?;
    let (sa, sb) = (Source::open(&da)?, Source::open(&db)?);
    let changed = changed_ranges(&sa, &sb, &mut |_, _| {})?;
    da.still_whole()?;
    db.still_whole()?;
    let cut = planned(regions);
    let mut unplanned = Vec::new();
    for r in changed.iter().flat_map(|r| subtract(*r, &cut)) {
        // `changed` is whole sectors; a planned region may end inside one (a shrunk NTFS's new
        // $Bitmap), so what is left of a changed sector outside the regions is compared again
        // byte for byte before it is called a change (issue 15, item 16). What the copy gained
        // past the source's end is growth when it reads as zeros.
        if differs(&sa, &sb, r)? {
            unplanned.push(r);
        }
    }
    let unplanned = merge(unplanned);
    let checks = regions
        .iter()
        .map(|g| {
            let r = Range::new(g.offset, g.length);
            RegionCheck {
                offset: g.offset,
                length: g.length,
                what: g.what.clone(),
                changed: changed.iter().any(|c| c.intersect(&r).is_some()),
            }
        })
        .collect();
    let all = sa.len().max(sb.len());
    let planned_bytes: u64 = cut.iter().map(|r| r.length).sum();
    Ok(VerifyReport {
        ok: unplanned.is_empty(),
        method: "byte-for-byte comparison of the source and the converted copy".into(),
        checked_bytes: all.saturating_sub(planned_bytes),
        regions: checks,
        unplanned,
    })
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects, clippy::as_conversions)]
mod tests {
    use super::super::tests::noise;
    use super::super::{hex, map, Manifest, Source};
    use super::*;

    /// `verify` compares the image with the manifest run by run as it is summed; the changed
    /// ranges are those of a chunk-by-chunk comparison, for a change inside a long run of
    /// hole chunks, an image cut mid-chunk or on a chunk boundary, and a longer image.
    #[test]
    fn verify_streams_and_agrees_with_a_chunk_by_chunk_comparison() {
        use std::os::unix::fs::FileExt;
        let dir = std::env::temp_dir().join(format!("vhdtool-verify-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let chunk = 4096u64;
        let len = 300_000u64;
        // data, then a hole of 200 KiB (whole chunks in one hole: one run), then data
        let data = noise(9, len as usize);
        let write = |path: &Path, bytes: &[u8], size: u64| {
            let f = std::fs::File::create(path).unwrap();
            f.set_len(size).unwrap();
            for (a, b) in [(0usize, 40_000usize), (240_000, bytes.len())] {
                if a < bytes.len() {
                    f.write_all_at(&bytes[a..b.min(bytes.len())], a as u64)
                        .unwrap();
                }
            }
        };
        let mut old = data.clone();
        old[40_000..240_000].fill(0);
        let orig = dir.join("orig.raw");
        write(&orig, &old, len);
        let disk = MmapDisk::open(&orig, Access::ReadOnly).unwrap();
        let m = map(&mut Source::open(&disk).unwrap(), chunk, &mut |_, _| {}).unwrap();
        assert!(m.chunks.run_count() < 40, "the hole is one run");
        let manifest = Manifest::new(super::super::manifest::identity(&disk, "orig.raw"), &m);
        drop(disk);
        let crcs = |b: &[u8], size: u64| -> Vec<u32> {
            let mut full = b.to_vec();
            full.resize(size as usize, 0);
            full.chunks(chunk as usize).map(crc32fast::hash).collect()
        };
        let old_crcs = crcs(&old, len);
        for (case, size, flip) in [
            ("same", len, None),
            ("a byte inside the hole run", len, Some(150_001usize)),
            ("cut mid-chunk", len - 5000, None),
            ("cut on a chunk boundary", 73 * chunk, None),
            ("longer", len + 10_000, Some(3usize)),
        ] {
            let mut new = old.clone();
            new.resize(size as usize, 0);
            if let Some(at) = flip {
                new[at] ^= 0x55;
            }
            let img = dir.join(format!("{}.raw", case.replace(' ', "-")));
            let f = std::fs::File::create(&img).unwrap();
            f.set_len(size).unwrap();
            f.write_all_at(&new[..40_000.min(new.len())], 0).unwrap();
            if new.len() > 40_000 {
                // the changed byte (if any) and the data after the hole
                f.write_all_at(&new[40_000..], 40_000).unwrap();
            }
            drop(f);
            let r = verify_manifest(&img, &manifest, "m.json", &mut |_, _| {}).unwrap();
            // chunk by chunk, on the manifest's grid
            let limit = size.min(len);
            let new_crcs = crcs(&new[..limit as usize], limit);
            let mut want: Vec<Range> = Vec::new();
            for (i, c) in old_crcs.iter().enumerate() {
                let r_old = chunk_range(i as u64, chunk, len);
                let same = new_crcs
                    .get(i)
                    .is_some_and(|n| n == c && chunk_range(i as u64, chunk, limit) == r_old);
                if !same {
                    push_merged(&mut want, r_old);
                }
            }
            if size > len {
                push_merged(&mut want, Range::new(len, size - len));
            }
            let got: Vec<Range> = r
                .changed
                .iter()
                .map(|c| Range::new(c.offset, c.length))
                .collect();
            assert_eq!(merge(got), merge(want), "{case}");
            assert_eq!(r.identical, case == "same", "{case}");
            assert_eq!(
                r.actual_crc32.as_deref(),
                Some(hex(crc32fast::hash(&new)).as_str()),
                "{case}"
            );
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn exact_changes_and_tail() {
        let a = noise(1, 5 << 20);
        let mut b = a.clone();
        b[100] ^= 1;
        b[(3 << 20) + 1000..(3 << 20) + 1500].fill(7);
        b.extend_from_slice(&[1; 4096]);
        let (sa, sb) = (Source::from_slice(&a), Source::from_slice(&b));
        let r = changed_ranges(&sa, &sb, &mut |_, _| {}).unwrap();
        assert_eq!(
            r,
            vec![
                Range::new(0, 512),
                Range::new((3 << 20) + 512, 1024),
                Range::new(5 << 20, 4096)
            ]
        );
        assert!(changed_ranges(&sa, &sa, &mut |_, _| {}).unwrap().is_empty());
    }

    #[test]
    fn upload_pages() {
        let mut data = vec![0u8; 10 << 20];
        data[5 << 20] = 1;
        data[(10 << 20) - 1] = 9; // a "footer"
        let mut src = Source::from_slice(&data);
        let m = map(&mut src, 1 << 20, &mut |_, _| {}).unwrap();
        let u = upload_ranges(&m, 4 << 20, Some(Range::new((10 << 20) - 512, 512)));
        assert_eq!(u.ranges, vec![Range::new(4 << 20, 6 << 20)], "merged");
        assert_eq!(u.total_bytes, 6 << 20);
        assert_eq!(u.pages, 2);
        let zero = ChecksumMap {
            chunks: m.chunks.iter().map(|s| Sum { zero: true, ..s }).collect(),
            ..m.clone()
        };
        let u = upload_ranges(&zero, 4 << 20, Some(Range::new((10 << 20) - 512, 512)));
        assert_eq!(
            u.ranges,
            vec![Range::new(8 << 20, 2 << 20)],
            "footer page kept"
        );
    }

    #[test]
    fn subtract_and_names() {
        let cut = [Range::new(10, 10), Range::new(30, 5)];
        assert_eq!(
            subtract(Range::new(0, 40), &cut),
            vec![Range::new(0, 10), Range::new(20, 10), Range::new(35, 5)]
        );
        assert!(subtract(Range::new(12, 3), &cut).is_empty());
        let new = Layout {
            name: "B".into(),
            file_bytes: 2048,
            segments: vec![
                (0, "LBA 0: protective MBR".into()),
                (512, "unallocated".into()),
            ],
        };
        let old = Layout {
            name: "A".into(),
            file_bytes: 1024,
            segments: vec![(0, "LBA 0: MBR".into()), (512, "unallocated".into())],
        };
        let c = name(&[Range::new(0, 2048)], &new, Some(&old));
        let got: Vec<(u64, u64, &str)> = c
            .iter()
            .map(|c| (c.offset, c.length, c.what.as_str()))
            .collect();
        assert_eq!(
            got,
            vec![
                (0, 512, "LBA 0: protective MBR (in A: LBA 0: MBR)"),
                (512, 512, "unallocated"),
                (1024, 1024, "unallocated (in A: beyond the end of A)"),
            ]
        );
    }
}
