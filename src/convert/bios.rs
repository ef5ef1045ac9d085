//! What happens to BIOS boot: `--hybrid` (GRUB's core.img moved into a BIOS boot partition),
//! or the boot code that stops working and is cleared.

use crate::disk::Disk;
use crate::error::ErrorKind;
use crate::finding::Finding;
use crate::mbr::{self, Mbr, MbrPartition};

use super::checks::{Checks, GptGeometry};
use crate::boot::linux::hybrid;
use crate::boot::linux::modules::hybrid_relocation;

/// `boot.hybrid`: what can be kept of BIOS boot, or why nothing can (the check fails).
pub fn hybrid_check(
    c: &mut Checks,
    data: &dyn Disk,
    parts: &[&MbrPartition],
    sb: u32,
    first_start: u64,
) -> Option<hybrid::Relocation> {
    match hybrid_relocation(data, parts, sb, first_start) {
        Ok(r) => {
            c.pass(
                "boot.hybrid",
                format!(
                    "GRUB core.img (from LBA {}) rebuilt for GPT ({}) into a BIOS boot partition at LBAs {}-{}; the protective MBR keeps boot.img",
                    r.old_lba, r.changes.join("; "), r.first_lba, r.last_lba
                ),
            );
            Some(r)
        }
        Err(why) => {
            c.fail_as(
                ErrorKind::Unsupported,
                "boot.hybrid",
                why.message(),
                "convert without --hybrid (the disk then boots under UEFI only), or reinstall grub-pc in the guest (core.img in the first MiB, primary partitions) and convert again",
            );
            None
        }
    }
}

/// The protective MBR's boot code: kept (`--hybrid`) or cleared, and why; a note when a loader
/// in the gap after the MBR stops working.
pub fn boot_code(
    notes: &mut Vec<Finding>,
    data: &dyn Disk,
    m: &Mbr,
    sb: u32,
    gpt: GptGeometry,
    hybrid: Option<&hybrid::Relocation>,
) -> String {
    let gap_loader = mbr::gap_loader(data, sb, gpt.first_start);
    if let (Some(kind), None) = (&gap_loader, hybrid) {
        notes.push(Finding::warning(
            "boot.gap-loader",
            format!(
                "boot code in the gap after the MBR ({kind}): the primary GPT overwrites LBAs 1-{}, so BIOS boot stops working after conversion",
                gpt.first_usable.saturating_sub(1)
            ),
        ));
    }
    if let Some(r) = hybrid {
        format!(
            "kept: GRUB boot.img, its core.img pointer moved from LBA {} to LBA {} (the BIOS boot partition); BIOS boot keeps working",
            r.old_lba, r.first_lba
        )
    } else if m.boot_code_present {
        format!(
            "cleared: the old BIOS boot code ({}) expects the MBR partition table and the sectors the GPT now uses; a protective MBR with no boot code fails cleanly under BIOS instead of hanging",
            m.boot_code_kind.as_deref().unwrap_or("unknown")
        )
    } else {
        "cleared (there was no boot code)".to_string()
    }
}
