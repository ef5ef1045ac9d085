//! `vhdtool verify IMAGE --manifest FILE`: the image summed on the manifest's chunk grid and
//! compared with the manifest's runs as it is summed, so that nothing but the manifest's runs
//! and the changed ranges is kept in memory.

use std::path::Path;

use super::compare::{file_name, name, push_merged, DiffReport, Layout};
use super::{hex, merge, Manifest, Range, Source};
use crate::disk::{Access, MmapDisk};
use crate::error::Result;

/// `vhdtool verify IMAGE --manifest FILE`: the image's chunks against the manifest's, on the
/// manifest's chunk grid.
pub fn verify_manifest(
    image: &Path,
    manifest: &Manifest,
    manifest_name: &str,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<DiffReport> {
    let disk = MmapDisk::open(image, Access::ReadOnly)?;
    let mut src = Source::open(&disk)?;
    // the manifest's runs as they are (a map with zero flags would be a second copy)
    let old_bytes = manifest.image.file_bytes;
    let old_whole = super::manifest::parse_crc(&manifest.whole_crc32)?;
    let len = src.len();
    let chunk = manifest.chunk_bytes;
    // the image on the manifest's grid, cut at the manifest's length, compared run by run as
    // it is summed: nothing but the manifest's runs and the changed ranges is kept
    let limit = old_bytes.min(len);
    // chunks from this index on differ in length between the two grids (the image is shorter)
    let cut_from = if limit < old_bytes {
        limit.checked_div(chunk).unwrap_or(0)
    } else {
        u64::MAX
    };
    let mut ranges: Vec<Range> = Vec::new();
    let mut before = manifest.chunks.runs();
    let mut pending: Option<(u32, u64)> = None; // the manifest run being compared, chunks left
    let mut i = 0u64;
    let mut whole = (len == old_bytes).then(|| super::WholeCrc::new(chunk, len));
    let compare = &mut |s: super::Sum, mut n: u64| -> Result<()> {
        if let Some(w) = whole.as_mut() {
            w.push(s.crc, n);
        }
        while n > 0 {
            let (crc, left) = match pending.take() {
                Some(p) => p,
                None => match before.next() {
                    Some(p) => p,
                    None => return Ok(()), // past the manifest's chunks: its tail is added below
                },
            };
            // a run is split where the grids stop agreeing
            let k = match cut_from.checked_sub(i) {
                Some(to_cut) if to_cut > 0 => n.min(left).min(to_cut),
                _ => n.min(left),
            };
            let same = crc == s.crc && i < cut_from;
            if !same {
                push_merged(&mut ranges, super::chunks_range(i, k, chunk, old_bytes));
            }
            if left > k {
                pending = Some((crc, left.saturating_sub(k)));
            }
            i = i.saturating_add(k);
            n = n.saturating_sub(k);
        }
        Ok(())
    };
    super::each_chunk_sum(&mut src, old_bytes, chunk, progress, compare)?;
    disk.still_whole()?;
    // the manifest's chunks the image does not reach
    let listed = manifest.chunk_count()?;
    if i < listed {
        push_merged(
            &mut ranges,
            super::chunks_range(i, listed.saturating_sub(i), chunk, old_bytes),
        );
    }
    if len > old_bytes {
        ranges.push(Range::new(old_bytes, len.saturating_sub(old_bytes)));
    }
    let ranges = merge(ranges);
    let actual = match whole {
        Some(w) => w.finish(),
        None => {
            // the grid was cut at the manifest's length: sum the whole image for the record
            let mut w = super::WholeCrc::new(chunk, len);
            super::each_chunk_sum(&mut src, len, chunk, &mut |_, _| {}, &mut |s, n| {
                w.push(s.crc, n);
                Ok(())
            })?;
            w.finish()
        }
    };
    let name_b = file_name(image);
    let layout = Layout::of(&disk, &name_b);
    let old_layout = Layout::size_only(manifest_name, old_bytes);
    let changed = name(&ranges, &layout, Some(&old_layout))
        .into_iter()
        .map(|mut c| {
            // the manifest knows no layout: name it only when the range is past its end
            if c.old.as_deref() == Some("data") {
                c.what.clone_from(&c.new);
                c.old = None;
            }
            c
        })
        .collect::<Vec<_>>();
    Ok(DiffReport {
        kind: "verify",
        a: manifest_name.to_string(),
        b: image.display().to_string(),
        a_bytes: old_bytes,
        b_bytes: len,
        granularity_bytes: chunk,
        identical: changed.is_empty(),
        changed_bytes: ranges.iter().map(|r| r.length).sum(),
        changed,
        expected_crc32: Some(hex(old_whole)),
        actual_crc32: Some(hex(actual)),
    })
}
