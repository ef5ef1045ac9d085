//! `--hybrid`'s inputs from the image: the MBR's boot code, the GPT numbering of the MBR's
//! partitions, and GRUB's i386-pc modules (part_gpt.mod) from an ext2/3/4 partition.

use super::ext4::{read_file, with_ext4};
use super::hybrid::{self, GrubModules, Relocation};
use crate::disk::{Disk, Window};
use crate::error::{Error, Result};
use crate::fs::FsKind;
use crate::mbr::MbrPartition;

/// Where grub-install puts the i386-pc modules (/boot/grub/i386-pc, or /grub/i386-pc on a
/// separate /boot), then the package's own folder.
const MODULE_DIRS: [&str; 3] = [
    "/boot/grub/i386-pc",
    "/grub/i386-pc",
    "/usr/lib/grub/i386-pc",
];
/// A GRUB module is a few KiB; refuse to read anything claiming more.
const MAX_MODULE_BYTES: u64 = 1 << 20;

/// `--hybrid`: what can be kept of BIOS boot, or why nothing can. `parts`: the MBR's data
/// partitions in the order the GPT will carry them (GPT entry i+1 is `parts[i]`); `sb`: the
/// logical sector size; `first_start`: the first partition's LBA (the end of the gap).
pub fn hybrid_relocation(
    data: &dyn Disk,
    parts: &[&MbrPartition],
    sb: u32,
    first_start: u64,
) -> Result<Relocation> {
    if sb != 512 {
        return Err(Error::unsupported(format!(
            "BIOS boot needs 512-byte sectors, the disk has {sb}"
        )));
    }
    let mut sector0 = [0u8; 512];
    data.read_at(0, &mut sector0)
        .map_err(|e| e.context("reading the MBR"))?;
    let gpt_index = |mbr_index: u32| {
        parts
            .iter()
            .position(|p| p.index == mbr_index)
            .and_then(|i| i.checked_add(1))
            .and_then(|i| u32::try_from(i).ok())
    };
    let mut modules = || grub_modules(data, parts, sb);
    hybrid::plan(data, &sector0, first_start, &gpt_index, &mut modules)
}

/// part_gpt.mod (and part_msdos.mod, to compare) from the image's GRUB i386-pc folder (see
/// `MODULE_DIRS`), searched folder by folder over the ext2/3/4 partitions of `parts`.
pub fn grub_modules(data: &dyn Disk, parts: &[&MbrPartition], sb: u32) -> Result<GrubModules> {
    let sbu = u64::from(sb);
    let mut problems = Vec::new();
    for dir in MODULE_DIRS {
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
                let gpt = read_file(fs, &format!("{dir}/part_gpt.mod"), MAX_MODULE_BYTES)?;
                let msdos = read_file(fs, &format!("{dir}/part_msdos.mod"), MAX_MODULE_BYTES)?;
                Ok(gpt.map(|g| (g, msdos)))
            });
            match found {
                Ok(Some((part_gpt, part_msdos))) => {
                    return Ok(GrubModules {
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
        MODULE_DIRS.join(", "),
        if problems.is_empty() {
            String::new()
        } else {
            format!(" ({})", problems.join("; "))
        }
    )))
}
