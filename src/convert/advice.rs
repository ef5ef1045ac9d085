//! What `info` may promise about `convert`. `info` sits below `convert` in the layers and cannot
//! run its checks itself, so the command line asks here: "vhdtool convert makes it GPT" is said
//! only of a disk `validate` passes; of any other the Gen2 finding names the failed check
//! instead (issue 15, item 20).

use crate::boot::linux::BootSource;
use crate::disk::Disk;
use crate::info::{InfoReport, TableKind};

use super::options::Options;

/// The id of `info`'s finding "Generation-2 VMs boot from GPT disks; this disk has ...".
pub const GEN2_NO_GPT: &str = "gen2.no-gpt";

/// Complete `info`'s no-GPT finding with `convert`'s verdict on `file` (default options).
pub fn complete_gen2_finding(file: &dyn Disk, report: &mut InfoReport) {
    if !matches!(report.partition_table, TableKind::Mbr | TableKind::Hybrid) {
        return;
    }
    let Some(finding) = report.findings.iter_mut().find(|f| f.id == GEN2_NO_GPT) else {
        return;
    };
    // what `vhdtool validate IMAGE` decides: default options, boot files from the image
    let mut opts = Options::default();
    let v = match super::assess::assess(file, &BootSource::FromImage, &mut opts) {
        Ok(a) => a.validation,
        Err(e) => {
            finding.message.push_str(&format!(
                "; vhdtool convert refuses it as it is ({e}; `vhdtool validate` says more)"
            ));
            return;
        }
    };
    if v.passed() {
        finding.message.push_str(" (vhdtool convert makes it GPT)");
    } else if let Some(c) = v.first_failure() {
        finding.message.push_str(&format!(
            "; vhdtool convert refuses it as it is ({}: {}; `vhdtool validate` says more)",
            c.id, c.detail
        ));
    }
}
