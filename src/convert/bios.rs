//! What happens to BIOS boot: `--hybrid` (GRUB's core.img moved into a BIOS boot partition),
//! or the boot code that stops working and is cleared.

use crate::disk::{Disk, Window};
use crate::error::{Error, ErrorKind, Result};
use crate::finding::Finding;
use crate::mbr::{self, Mbr, MbrPartition};

use super::checks::{Checks, GptGeometry};
use super::hybrid;

/// `boot.hybrid`: what can be kept of BIOS boot, or why nothing can (the check fails).
pub fn hybrid_check(
    c: &mut Checks,
    data: &dyn Disk,
    parts: &[&MbrPartition],
    sb: u32,
    first_start: u64,
) -> Option<hybrid::Relocation> {
    match relocation(data, parts, sb, first_start) {
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

fn relocation(
    data: &dyn Disk,
    parts: &[&MbrPartition],
    sb: u32,
    first_start: u64,
) -> Result<hybrid::Relocation> {
    if sb != 512 {
        return Err(Error::unsupported(format!(
            "BIOS boot needs 512-byte sectors, the disk has {sb}"
        )));
    }
    let mut sector0 = [0u8; 512];
    data.read_at(0, &mut sector0)
        .map_err(|e| e.context("reading the MBR"))?;
    // GPT entries follow the order of `parts` (see plan::partitions)
    let gpt_index = |mbr_index: u32| {
        parts
            .iter()
            .position(|p| p.index == mbr_index)
            .and_then(|i| u32::try_from(i + 1).ok())
    };
    let mut modules = || grub_modules(data, parts, sb).map_err(|e| e.message().to_string());
    hybrid::plan(data, &sector0, first_start, &gpt_index, &mut modules).map_err(Error::unsupported)
}

/// part_gpt.mod (and part_msdos.mod, to compare) from the image's GRUB i386-pc folder: the one
/// grub-install fills (/boot/grub/i386-pc, or /grub/i386-pc on a separate /boot), else the
/// package's (/usr/lib/grub/i386-pc).
fn grub_modules(data: &dyn Disk, parts: &[&MbrPartition], sb: u32) -> Result<hybrid::GrubModules> {
    use crate::bootfiles::ext4::{read_file, with_ext4};
    use crate::fs::FsKind;
    const DIRS: [&str; 3] = [
        "/boot/grub/i386-pc",
        "/grub/i386-pc",
        "/usr/lib/grub/i386-pc",
    ];
    const MAX_MODULE: u64 = 1 << 20;
    let sbu = u64::from(sb);
    let mut problems = Vec::new();
    for dir in DIRS {
        for p in parts {
            let Some(w) = p
                .start_lba
                .checked_mul(sbu)
                .zip(p.sectors.checked_mul(sbu))
                .and_then(|(o, l)| Window::new(data, o, l).ok())
            else {
                continue;
            };
            if !matches!(
                crate::fs::probe(&w).map(|f| f.kind),
                Some(FsKind::Ext2 | FsKind::Ext3 | FsKind::Ext4)
            ) {
                continue;
            }
            let what = format!("partition {}", p.index);
            let found = with_ext4(&w, &what, |fs| {
                let gpt = read_file(fs, &format!("{dir}/part_gpt.mod"), MAX_MODULE)?;
                let msdos = read_file(fs, &format!("{dir}/part_msdos.mod"), MAX_MODULE)?;
                Ok(gpt.map(|g| (g, msdos)))
            });
            match found {
                Ok(Some((part_gpt, part_msdos))) => {
                    return Ok(hybrid::GrubModules {
                        location: format!("{what}:{dir}"),
                        part_gpt,
                        part_msdos,
                    })
                }
                Ok(None) => {}
                Err(e) => problems.push(e.to_string()),
            }
        }
    }
    Err(Error::unsupported(format!(
        "core.img lacks the part_gpt module and no ext2/3/4 partition holds part_gpt.mod in {}{}: install grub-pc-bin in the guest",
        DIRS.join(", "),
        if problems.is_empty() {
            String::new()
        } else {
            format!(" ({})", problems.join("; "))
        }
    )))
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
                gpt.first_usable - 1
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
