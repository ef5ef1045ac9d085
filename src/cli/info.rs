//! `vhdtool info IMAGE [--json]`.

use std::path::PathBuf;

use clap::Args;

use super::exit;
use super::output;
use crate::convert::windows::WindowsReport;
use crate::disk::{Access, MmapDisk};
use crate::error::Result;
use crate::finding::Finding;
use crate::finding::Severity;
use crate::image::{detect, Detected, Image, OpenOptions};
use crate::info::{inspect, inspect_image, unopened_container, InfoReport};

#[derive(Debug, Args)]
pub struct InfoArgs {
    /// The image: fixed, dynamic or differencing VHD, VHDX, qcow2, or a raw disk.
    pub image: PathBuf,
    /// Where the parents of a differencing disk (or qcow2 backing files) are, besides the
    /// child's own folder.
    #[arg(long, value_name = "DIR")]
    pub parent_dir: Option<PathBuf>,
    /// Print the report as JSON (schema in README.md).
    #[arg(long)]
    pub json: bool,
}

/// `info --json`: the report, and what was found of Windows.
#[derive(serde::Serialize)]
struct WithWindows<'a> {
    #[serde(flatten)]
    info: &'a crate::info::InfoReport,
    windows: Option<&'a WindowsReport>,
}

pub fn run(args: &InfoArgs) -> Result<u8> {
    let disk = MmapDisk::open(&args.image, Access::ReadOnly)?;
    let (mut report, flat) = report(&disk, args);
    // The advice and the Windows discovery read the disk as a fixed VHD or raw disk; an image
    // of another format is reported through its reader only.
    let windows = if flat {
        crate::convert::advice::complete_gen2_finding(&disk, &mut report);
        // Windows: the installation, its version, the BIOS system partition, the default
        // entry, WinRE
        crate::convert::windows::discover(
            &disk,
            &crate::boot::linux::BootSource::FromImage,
            report.sector_bytes,
            &crate::boot::windows::WindowsOptions {
                version: true,
                ..Default::default()
            },
        )
        .ok()
        .flatten()
        .map(WindowsReport::found)
    } else {
        None
    };
    if args.json {
        output::json(&WithWindows {
            info: &report,
            windows: windows.as_ref(),
        })?;
    } else {
        let mut text = output::render_info(&report);
        if let Some(w) = &windows {
            text.push_str(&w.render_info());
        }
        output::text(&text)?;
    }
    Ok(if report.worst() == Some(Severity::Error) {
        exit::FINDINGS
    } else {
        exit::OK
    })
}

/// Flat files (fixed VHD, raw) are inspected as they are; other formats through their reader.
/// An image that cannot be opened (a missing parent, a damaged container) is the flat report
/// with an error finding that says why.
/// The report, and whether the disk was read as it is (fixed VHD or raw: true) rather than
/// through an image format's reader.
fn report(disk: &MmapDisk, args: &InfoArgs) -> (InfoReport, bool) {
    let name = args.image.display().to_string();
    let through_image = match detect(disk) {
        Detected::Vhdx | Detected::Qcow2 | Detected::Other(_) => true,
        Detected::Vhd => crate::vhd::probe(disk)
            .footer
            .is_some_and(|f| f.disk_type != crate::vhd::footer::DISK_TYPE_FIXED),
        Detected::Raw | Detected::Unknown => false,
    };
    if !through_image {
        return (inspect(disk, &name), true);
    }
    let opts = OpenOptions {
        raw: false,
        parent_dir: args.parent_dir.clone(),
        ..OpenOptions::default()
    };
    let report = match Image::open(&args.image, &opts) {
        Ok(image) => inspect_image(disk, &image, &name),
        Err(e) => {
            let mut r = inspect(disk, &name);
            r.findings
                .push(Finding::error("image.unreadable", e.to_string()));
            // what the file says of itself (a VHDX's parent locator: where the parent was)
            r.container = unopened_container(disk);
            r
        }
    };
    (report, false)
}
