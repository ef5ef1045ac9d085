//! `vhdtool checksum`, `vhdtool verify` and `vhdtool diff`.

use std::fmt::Write as _;
use std::path::PathBuf;

use clap::Args;
use serde::Serialize;

use super::args::parse_size;
use super::exit;
use super::output::{self, human, Progress};
use crate::checksum::{
    self, compare, manifest, DiffReport, Manifest, Range, UploadMap, DEFAULT_CHUNK_BYTES,
    PROGRESS_MIN_BYTES,
};
use crate::disk::{Access, Disk, MmapDisk};
use crate::error::{Error, Result};

#[derive(Debug, Args)]
pub struct ChecksumArgs {
    /// The image file (checksummed as stored: the whole file, footer included).
    pub image: PathBuf,
    /// Chunk size: a multiple of 512 bytes, from 512 to 1G (default 1M).
    #[arg(long, value_name = "SIZE", value_parser = parse_size, default_value = "1M")]
    pub chunk: u64,
    /// Write the manifest (JSON, schema in README.md) to FILE.
    #[arg(long, value_name = "FILE")]
    pub manifest: Option<PathBuf>,
    /// Print the ranges an uploader must send: the pages holding a non-zero byte, and the page
    /// of the VHD footer.
    #[arg(long)]
    pub upload_ranges: bool,
    /// Page size of --upload-ranges (default 4M: Azure page blobs take at most 4 MiB per Put
    /// Page call).
    #[arg(long, value_name = "SIZE", value_parser = parse_size, default_value = "4M")]
    pub page: u64,
    /// Print as JSON: the manifest, plus `upload` with --upload-ranges.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The image file.
    pub image: PathBuf,
    /// The manifest written by `vhdtool checksum --manifest`.
    #[arg(long, value_name = "FILE")]
    pub manifest: PathBuf,
    /// Print as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct DiffArgs {
    /// The old image.
    pub a: PathBuf,
    /// The new image (changed ranges are named by its layout, and by A's where it differs).
    pub b: PathBuf,
    /// Print as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `checksum --json`: the manifest, and the upload map when asked for.
#[derive(Debug, Serialize)]
pub struct ChecksumReport {
    #[serde(flatten)]
    pub manifest: Manifest,
    pub upload: Option<UploadMap>,
}

fn progress(label: &'static str) -> (Progress, impl FnMut(&mut Progress, u64, u64)) {
    (Progress::new(label), |bar: &mut Progress, done, total| {
        if total >= PROGRESS_MIN_BYTES {
            bar.update(done, total);
        }
    })
}

pub fn run_checksum(args: &ChecksumArgs) -> Result<u8> {
    checksum::check_chunk(args.chunk)?;
    if args.upload_ranges && (args.page == 0 || !args.page.is_multiple_of(512)) {
        return Err(Error::invalid(format!(
            "page size {} bytes: expected a multiple of 512",
            args.page
        )));
    }
    // the upload map needs zero flags at least as fine as a page
    let chunk = if args.upload_ranges && !args.page.is_multiple_of(args.chunk) {
        gcd(args.page, args.chunk)
    } else {
        args.chunk
    };
    let disk = MmapDisk::open(&args.image, Access::ReadOnly)?;
    let shown = args.image.display().to_string();
    let identity = manifest::identity(&disk, &shown);
    let mut src = checksum::Source::open(&disk)?;
    let (mut bar, mut tick) = progress("checksum");
    let map = checksum::map(&mut src, chunk, &mut |d, t| tick(&mut bar, d, t))?;
    disk.still_whole()?;
    bar.finish();
    let footer = identity
        .unique_id
        .as_ref()
        .and_then(|_| disk.len().checked_sub(512))
        .map(|at| Range::new(at, 512));
    let upload = args
        .upload_ranges
        .then(|| compare::upload_ranges(&map, args.page, footer));
    let m = Manifest::from_map(identity, map);
    if let Some(path) = &args.manifest {
        m.write(path)?;
    }
    let report = ChecksumReport {
        manifest: m,
        upload,
    };
    if args.json {
        output::json(&report)?;
    } else {
        output::text(&render_checksum(&report, args.manifest.as_ref()))?;
    }
    Ok(exit::OK)
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    // checked_rem is None exactly when b == 0, where Euclid stops.
    while let Some(r) = a.checked_rem(b) {
        (a, b) = (b, r);
    }
    a
}

pub fn run_verify(args: &VerifyArgs) -> Result<u8> {
    let m = Manifest::read(&args.manifest)?;
    let (mut bar, mut tick) = progress("verify");
    let report = compare::verify_manifest(
        &args.image,
        &m,
        &args.manifest.display().to_string(),
        &mut |d, t| tick(&mut bar, d, t),
    )?;
    bar.finish();
    finish_diff(&report, args.json)
}

pub fn run_diff(args: &DiffArgs) -> Result<u8> {
    let (mut bar, mut tick) = progress("diff");
    let report = checksum::diff_files(&args.a, &args.b, &mut |d, t| tick(&mut bar, d, t))?;
    bar.finish();
    finish_diff(&report, args.json)
}

fn finish_diff(report: &DiffReport, json: bool) -> Result<u8> {
    if json {
        output::json(report)?;
    } else {
        output::text(&render_diff(report))?;
    }
    Ok(if report.identical {
        exit::OK
    } else {
        exit::FINDINGS
    })
}

fn ranges_line(o: &mut String, label: &str, ranges: &[Range]) {
    let total: u64 = ranges.iter().map(|r| r.length).sum();
    let _ = writeln!(
        o,
        "\n{label}: {} range(s), {}",
        ranges.len(),
        output::bytes(total)
    );
    for r in ranges {
        let _ = writeln!(
            o,
            "  0x{:012x} +{:<14} {}",
            r.offset,
            r.length,
            human(r.length)
        );
    }
}

/// The human form of `checksum`.
pub fn render_checksum(r: &ChecksumReport, manifest: Option<&PathBuf>) -> String {
    let m = &r.manifest;
    let mut o = String::new();
    let _ = writeln!(o, "{}: {}", m.image.path, m.image.format);
    let _ = writeln!(o, "  file size      {}", output::bytes(m.image.file_bytes));
    if let Some(id) = &m.image.unique_id {
        let _ = writeln!(o, "  unique id      {id}");
    }
    let _ = writeln!(
        o,
        "  chunks         {} of {}",
        m.chunk_count().unwrap_or(0),
        human(m.chunk_bytes)
    );
    let _ = writeln!(o, "  CRC32 (whole)  {}", m.whole_crc32);
    if m.chunk_bytes != DEFAULT_CHUNK_BYTES {
        let _ = writeln!(o, "  (chunk size {} bytes)", m.chunk_bytes);
    }
    if let Some(p) = manifest {
        let _ = writeln!(o, "  manifest       {}", p.display());
    }
    ranges_line(&mut o, "all-zero ranges", &m.zero_ranges);
    ranges_line(&mut o, "holes (not read)", &m.hole_ranges);
    if let Some(u) = &r.upload {
        let _ = writeln!(
            o,
            "\nupload ranges ({} pages): {} range(s), {} of {} to send in {} Put Page call(s)",
            human(u.page_bytes),
            u.ranges.len(),
            output::bytes(u.total_bytes),
            human(u.file_bytes),
            u.pages
        );
        for r in &u.ranges {
            let _ = writeln!(
                o,
                "  0x{:012x} +{:<14} {}",
                r.offset,
                r.length,
                human(r.length)
            );
        }
    }
    o
}

/// The human form of `diff` and `verify`.
pub fn render_diff(r: &DiffReport) -> String {
    let mut o = String::new();
    let unit = if r.kind == "diff" {
        "exact to the 512-byte sector".to_string()
    } else {
        format!("to the {} chunk", human(r.granularity_bytes))
    };
    let _ = writeln!(
        o,
        "{} ({}) vs {} ({})",
        r.a,
        output::bytes(r.a_bytes),
        r.b,
        output::bytes(r.b_bytes)
    );
    if let (Some(e), Some(a)) = (&r.expected_crc32, &r.actual_crc32) {
        let _ = writeln!(o, "  CRC32 (whole)  manifest {e}, image {a}");
    }
    if r.identical {
        let _ = writeln!(o, "identical");
        return o;
    }
    if r.a_bytes != r.b_bytes && r.kind == "diff" {
        let _ = writeln!(
            o,
            "sizes differ: the shorter file is compared as if zero-extended"
        );
    }
    let _ = writeln!(
        o,
        "changed: {} range(s), {} ({unit})",
        r.changed.len(),
        output::bytes(r.changed_bytes)
    );
    for c in &r.changed {
        let _ = writeln!(
            o,
            "  0x{:012x} +{:<14} {:>10}  {}",
            c.offset,
            c.length,
            human(c.length),
            c.what
        );
    }
    o
}
