//! `vhdtool info IMAGE [--json]`.

use std::path::PathBuf;

use clap::Args;

use super::exit;
use super::output;
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

pub fn run(args: &InfoArgs) -> Result<u8> {
    let disk = MmapDisk::open(&args.image, Access::ReadOnly)?;
    let mut report = inspect(&disk, &args.image.display().to_string());
    crate::convert::advice::complete_gen2_finding(&disk, &mut report);
    if args.json {
        output::json(&report)?;
    } else {
        output::text(&output::render_info(&report))?;
    }
    Ok(if report.worst() == Some(Severity::Error) {
        exit::FINDINGS
    } else {
        exit::OK
    })
}
