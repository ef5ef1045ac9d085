//! `vhdtool info IMAGE [--json]`.

use std::path::PathBuf;

use clap::Args;

use super::exit;
use super::output;
use crate::convert::windows::WindowsReport;
use crate::disk::{Access, MmapDisk};
use crate::error::Result;
use crate::finding::Severity;
use crate::info::inspect;

#[derive(Debug, Args)]
pub struct InfoArgs {
    /// The image: fixed, dynamic or differencing VHD, or a raw disk.
    pub image: PathBuf,
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
    let mut report = inspect(&disk, &args.image.display().to_string());
    crate::convert::advice::complete_gen2_finding(&disk, &mut report);
    // Windows: the installation, the BIOS system partition, the default entry, WinRE
    let windows = crate::convert::windows::discover(
        &disk,
        &crate::boot::linux::BootSource::FromImage,
        report.sector_bytes,
        &Default::default(),
    )
    .ok()
    .flatten()
    .map(WindowsReport::found);
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
