//! `vhdtool info IMAGE [--json]`.

use std::path::PathBuf;

use clap::Args;

use super::exit;
use super::output;
use crate::disk::{Access, MmapDisk};
use crate::error::Result;
use crate::finding::Finding;
use crate::finding::Severity;
use crate::image::{detect, Detected, Image, OpenOptions};
use crate::info::{inspect, inspect_image, InfoReport};

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

pub fn run(args: &InfoArgs) -> Result<u8> {
    let disk = MmapDisk::open(&args.image, Access::ReadOnly)?;
    let report = report(&disk, args);
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

/// Flat files (fixed VHD, raw) are inspected as they are; other formats through their reader.
/// An image that cannot be opened (a missing parent, a damaged container) is the flat report
/// with an error finding that says why.
fn report(disk: &MmapDisk, args: &InfoArgs) -> InfoReport {
    let name = args.image.display().to_string();
    let through_image = match detect(disk) {
        Detected::Vhdx | Detected::Qcow2 | Detected::Other(_) => true,
        Detected::Vhd => crate::vhd::probe(disk)
            .footer
            .is_some_and(|f| f.disk_type != crate::vhd::footer::DISK_TYPE_FIXED),
        Detected::Raw | Detected::Unknown => false,
    };
    if !through_image {
        return inspect(disk, &name);
    }
    let opts = OpenOptions {
        raw: false,
        parent_dir: args.parent_dir.clone(),
    };
    match Image::open(&args.image, &opts) {
        Ok(image) => inspect_image(disk, &image, &name),
        Err(e) => {
            let mut r = inspect(disk, &name);
            r.findings
                .push(Finding::error("image.unreadable", e.to_string()));
            r
        }
    }
}
