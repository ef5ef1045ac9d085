//! `--hybrid`: the converted disk keeps booting under BIOS (Generation 1) as well as UEFI.
//!
//! A Gen1 Linux image boots with GRUB's i386-pc loader: boot.img in the MBR's boot code,
//! core.img in the sectors after the MBR. The primary GPT takes LBAs 1-33, which is where
//! core.img starts, so a plain conversion ends BIOS boot. With `--hybrid` vhdtool does what
//! `grub-bios-setup` does on a GPT disk:
//!
//! - core.img (diskboot.img plus every sector its blocklist names) is decoded
//!   (`grubcore.rs`), given the `part_gpt` module (taken from the image's
//!   /boot/grub/i386-pc, after proving that folder holds the modules core.img was built
//!   from: its part_msdos.mod must equal core.img's copy), its prefix and embedded config
//!   rewritten from `msdosN` to the same partition's `gptM`, re-encoded, and written into a
//!   BIOS boot partition (type 21686148-6449-6e6f-744e-656564454649) between the primary GPT
//!   and the first partition; GRUB's msdos reader ignores any MBR holding a 0xEE entry
//!   ("dummy mbr"), so without part_gpt core.img could not find /boot again;
//! - boot.img's kernel-sector pointer (offset 0x5c) and diskboot.img's blocklist (offset
//!   0x1f4: start LBA, sector count, load segment) point at the new place; nothing else in
//!   either image refers to a disk address;
//! - the protective MBR keeps boot.img (with the new pointer); its table is the plain 0xEE
//!   entry, as on any GPT disk that grub-pc boots (Ubuntu's cloud images, for one).
//!
//! Only what can be proven is done: GRUB 2's boot.img, a diskboot.img with a well-formed
//! blocklist inside the gap, a core.img that decodes and re-encodes to the same modules, the
//! image's own part_gpt.mod, and 512-byte sectors.

use super::grubcore::{u16_at, u64_at, Core};
use crate::disk::Disk;
use crate::mbr::contains;

/// boot.img: LBA of core.img's first sector (diskboot.img), u64 little-endian.
const KERNEL_SECTOR: usize = 0x5c;
/// diskboot.img: the first blocklist entry; further ones grow downwards.
const FIRST_LIST: usize = 0x1f4;
const LIST_ENTRY: usize = 12;
/// Bound on blocklist entries (the list area ends where diskboot's code does).
const MAX_LISTS: usize = 16;
/// Where the BIOS boot partition starts: the first 4 KiB boundary after a 128-entry GPT.
pub const BIOS_BOOT_FIRST: u64 = 40;
/// The BIOS boot partition never reaches past the first MiB.
const BIOS_BOOT_END: u64 = 2048;

/// GRUB's BIOS loader as found on the disk, and its relocated form.
#[derive(Debug, Clone)]
pub struct Relocation {
    /// Where core.img started (boot.img's kernel sector).
    pub old_lba: u64,
    /// Sectors of the new core.img.
    pub core_sectors: u64,
    /// The BIOS boot partition.
    pub first_lba: u64,
    pub last_lba: u64,
    /// boot.img with its kernel sector pointing into the BIOS boot partition.
    pub boot_code: [u8; 440],
    /// The new core.img (diskboot.img with its blocklist patched), to be written at `first_lba`.
    pub core: Vec<u8>,
    /// What was changed inside core.img ("part_gpt module added from ...", "prefix ...").
    pub changes: Vec<String>,
}

/// GRUB modules taken from the image for core.img.
#[derive(Debug, Clone)]
pub struct GrubModules {
    /// "partition 1:/boot/grub/i386-pc".
    pub location: String,
    pub part_gpt: Vec<u8>,
    /// The same folder's part_msdos.mod: compared with core.img's copy to prove the folder
    /// holds the modules core.img was built from.
    pub part_msdos: Option<Vec<u8>>,
}

/// Find GRUB's i386-pc loader (boot.img in `sector0`, core.img in the gap before
/// `first_partition_lba`) and rebuild it for the GPT disk: part_gpt added (from `modules`, asked
/// only when core.img lacks it), `msdosN` partition names turned into `gptM` by `gpt_index`,
/// moved into a BIOS boot partition. `Err` says why `--hybrid` cannot keep BIOS boot working.
pub fn plan(
    disk: &dyn Disk,
    sector0: &[u8; 512],
    first_partition_lba: u64,
    gpt_index: &dyn Fn(u32) -> Option<u32>,
    modules: &mut dyn FnMut() -> std::result::Result<GrubModules, String>,
) -> std::result::Result<Relocation, String> {
    let mut boot_code = [0u8; 440];
    boot_code.copy_from_slice(&sector0[..440]);
    if crate::mbr::boot_code_kind(&boot_code) != "grub" {
        return Err(format!(
            "the MBR's boot code is {}, not GRUB's boot.img: --hybrid keeps GRUB (grub-pc) BIOS boot only",
            crate::mbr::boot_code_kind(&boot_code)
        ));
    }
    let old_lba = u64_at(&boot_code, KERNEL_SECTOR).unwrap_or(0);
    if old_lba == 0 || old_lba >= first_partition_lba {
        return Err(format!(
            "boot.img loads its core.img from LBA {old_lba}, not from the gap before the first partition (LBA {first_partition_lba}): a core.img inside a filesystem (blocklist install) cannot be moved"
        ));
    }
    let mut diskboot = [0u8; 512];
    disk.read_at(old_lba * 512, &mut diskboot)
        .map_err(|e| format!("reading core.img at LBA {old_lba}: {e}"))?;
    if !(contains(&diskboot, b"loading\0") && contains(&diskboot, b"Geom\0")) {
        return Err(format!(
            "LBA {old_lba}, where boot.img looks for core.img, does not hold GRUB's diskboot.img"
        ));
    }
    // the blocklist: (start, len, segment), terminated by len == 0
    let mut lists = Vec::new();
    let mut at = FIRST_LIST;
    loop {
        if lists.len() >= MAX_LISTS {
            return Err("diskboot.img's blocklist has no end".into());
        }
        let (Some(start), Some(len)) = (u64_at(&diskboot, at), u16_at(&diskboot, at + 8)) else {
            return Err("diskboot.img's blocklist runs off its sector".into());
        };
        if len == 0 {
            break;
        }
        let end = start.saturating_add(u64::from(len));
        if start == 0 || end > first_partition_lba.min(BIOS_BOOT_END) {
            return Err(format!(
                "diskboot.img's blocklist names LBAs {start}-{}, outside the gap before the first partition",
                end.saturating_sub(1)
            ));
        }
        lists.push((at, start, u64::from(len)));
        at = match at.checked_sub(LIST_ENTRY) {
            Some(a) if a >= 0x100 => a,
            _ => return Err("diskboot.img's blocklist runs into its code".into()),
        };
    }
    if lists.is_empty() {
        return Err("diskboot.img's blocklist is empty".into());
    }
    let segment = u16_at(&diskboot, FIRST_LIST + 10).unwrap_or(0x820);
    // core.img after diskboot.img, in load order
    let mut body = Vec::new();
    for &(_, start, len) in &lists {
        let mut run = vec![0u8; usize::try_from(len * 512).map_err(|_| "core.img too large")?];
        disk.read_at(start * 512, &mut run)
            .map_err(|e| format!("reading core.img at LBA {start}: {e}"))?;
        body.extend_from_slice(&run);
    }
    let mut core = Core::decode(&body)?;
    let mut changes = Vec::new();
    if core.module("part_gpt").is_none() {
        let m = modules()?;
        if let (Some(embedded), Some(file)) = (core.module("part_msdos"), &m.part_msdos) {
            let mut padded = file.clone();
            padded.resize(padded.len().div_ceil(4) * 4, 0);
            if embedded != padded.as_slice() {
                return Err(format!(
                    "the GRUB modules in {} are not the ones core.img was built from (part_msdos.mod differs from core.img's copy): reinstall grub-pc in the guest (grub-install) and convert again",
                    m.location
                ));
            }
        }
        core.add_module(&m.part_gpt);
        changes.push(format!("part_gpt module added from {}", m.location));
    }
    changes.extend(core.remap(gpt_index)?);
    let new_body = core.encode()?;
    let body_sectors = u64::try_from(new_body.len().div_ceil(512)).map_err(|_| "too large")?;
    let core_sectors = 1 + body_sectors;
    let first_lba = BIOS_BOOT_FIRST;
    let last_lba = first_partition_lba.min(BIOS_BOOT_END) - 1;
    if last_lba < first_lba || last_lba - first_lba + 1 < core_sectors {
        return Err(format!(
            "core.img takes {core_sectors} sectors; between the GPT (LBA {first_lba}) and the first partition (LBA {first_partition_lba}) there is no room for it"
        ));
    }
    let len = u16::try_from(body_sectors).map_err(|_| "core.img too large for one blocklist")?;
    // one blocklist entry for the whole (contiguous) body; the old entries below it cleared
    let mut patched = diskboot;
    for &(a, _, _) in &lists {
        patched[a..a + LIST_ENTRY].fill(0);
    }
    patched[FIRST_LIST..FIRST_LIST + 8].copy_from_slice(&(first_lba + 1).to_le_bytes());
    patched[FIRST_LIST + 8..FIRST_LIST + 10].copy_from_slice(&len.to_le_bytes());
    patched[FIRST_LIST + 10..FIRST_LIST + 12].copy_from_slice(&segment.to_le_bytes());
    let mut bytes = patched.to_vec();
    bytes.extend_from_slice(&new_body);
    bytes.resize(
        usize::try_from(core_sectors * 512).map_err(|_| "too large")?,
        0,
    );
    boot_code[KERNEL_SECTOR..KERNEL_SECTOR + 8].copy_from_slice(&first_lba.to_le_bytes());
    Ok(Relocation {
        old_lba,
        core_sectors,
        first_lba,
        last_lba,
        boot_code,
        core: bytes,
        changes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::convert::grubcore::fixture;
    use crate::disk::MemDisk;

    fn no_modules() -> std::result::Result<GrubModules, String> {
        Err("no modules here".into())
    }

    /// A disk with a GRUB-like boot.img and, at LBA 1, diskboot.img followed by a core.img
    /// body of `n` sectors (the fixture's encoded core, then filler).
    fn grub_disk(len: Option<u16>) -> (MemDisk, [u8; 512], Vec<u8>) {
        let body = fixture::sample().encode().unwrap();
        let n = len.unwrap_or(u16::try_from(body.len().div_ceil(512)).unwrap());
        let mut d = vec![0u8; 4096 * 512];
        let mut mbr = [0u8; 512];
        mbr[0x180..0x180 + 26].copy_from_slice(b"GRUB \0Geom\0Hard Disk\0Read\0");
        mbr[0x19a..0x19a + 7].copy_from_slice(b" Error\0");
        mbr[KERNEL_SECTOR..KERNEL_SECTOR + 8].copy_from_slice(&1u64.to_le_bytes());
        mbr[510] = 0x55;
        mbr[511] = 0xaa;
        d[..512].copy_from_slice(&mbr);
        let db = &mut d[512..1024];
        db[0x100..0x108].copy_from_slice(b"loading\0");
        db[0x108..0x10d].copy_from_slice(b"Geom\0");
        db[FIRST_LIST..FIRST_LIST + 8].copy_from_slice(&2u64.to_le_bytes());
        db[FIRST_LIST + 8..FIRST_LIST + 10].copy_from_slice(&n.to_le_bytes());
        db[FIRST_LIST + 10..FIRST_LIST + 12].copy_from_slice(&0x820u16.to_le_bytes());
        d[1024..1024 + body.len()].copy_from_slice(&body);
        (MemDisk::new(d), mbr, body)
    }

    #[test]
    fn rebuilds_core_with_part_gpt_and_patches_pointers() {
        let (disk, mbr, _) = grub_disk(None);
        let mut asked = 0;
        let mut modules = || {
            asked += 1;
            Ok(GrubModules {
                location: "partition 1:/boot/grub/i386-pc".into(),
                part_gpt: fixture::elf("part_gpt"),
                part_msdos: Some(fixture::elf("part_msdos")),
            })
        };
        let r = plan(&disk, &mbr, 2048, &|n| Some(n + 1), &mut modules).unwrap();
        assert_eq!(asked, 1);
        assert_eq!(r.old_lba, 1);
        assert_eq!((r.first_lba, r.last_lba), (40, 2047));
        assert_eq!(u64_at(&r.boot_code, KERNEL_SECTOR), Some(40));
        assert_eq!(r.core.len() as u64, r.core_sectors * 512);
        assert_eq!(u64_at(&r.core, FIRST_LIST), Some(41));
        assert_eq!(
            u64::from(u16_at(&r.core, FIRST_LIST + 8).unwrap()),
            r.core_sectors - 1
        );
        assert_eq!(u16_at(&r.core, FIRST_LIST + 10), Some(0x820));
        assert_eq!(u16_at(&r.core, FIRST_LIST - LIST_ENTRY + 8), Some(0));
        let core = Core::decode(&r.core[512..]).unwrap();
        assert_eq!(core.module_names(), vec!["part_msdos", "part_gpt"]);
        assert_eq!(
            core.string(crate::convert::grubcore::OBJ_PREFIX).unwrap(),
            "(hd0,gpt2)/boot/grub"
        );
        assert!(r
            .changes
            .iter()
            .any(|c| c.contains("part_gpt module added")));
    }

    fn body_sectors(body: &[u8]) -> usize {
        body.len().div_ceil(512)
    }

    #[test]
    fn refuses_what_it_cannot_prove() {
        let (disk, mut mbr, body) = grub_disk(None);
        let n = u64::try_from(body_sectors(&body)).unwrap();
        // modules from another GRUB build
        let mut other = || {
            Ok(GrubModules {
                location: "partition 1:/boot/grub/i386-pc".into(),
                part_gpt: fixture::elf("part_gpt"),
                part_msdos: Some(fixture::elf("part_msdosX")),
            })
        };
        let e = plan(&disk, &mbr, 2048, &|n| Some(n), &mut other).unwrap_err();
        assert!(e.contains("not the ones core.img was built from"), "{e}");
        // no modules
        let e = plan(&disk, &mbr, 2048, &|n| Some(n), &mut no_modules).unwrap_err();
        assert!(e.contains("no modules here"), "{e}");
        // the prefix names a partition the GPT does not carry
        let mut ok = || {
            Ok(GrubModules {
                location: "x".into(),
                part_gpt: fixture::elf("part_gpt"),
                part_msdos: None,
            })
        };
        let e = plan(&disk, &mbr, 2048, &|_| None, &mut ok).unwrap_err();
        assert!(e.contains("msdos1"), "{e}");
        // blocklist past the first partition
        let e = plan(&disk, &mbr, n, &|n| Some(n), &mut no_modules).unwrap_err();
        assert!(e.contains("outside the gap"), "{e}");
        // no room in the gap for the rebuilt core.img
        let e = plan(&disk, &mbr, 40 + n, &|n| Some(n), &mut ok).unwrap_err();
        assert!(e.contains("no room"), "{e}");
        // kernel sector inside a filesystem
        mbr[KERNEL_SECTOR..KERNEL_SECTOR + 8].copy_from_slice(&5000u64.to_le_bytes());
        let e = plan(&disk, &mbr, 2048, &|n| Some(n), &mut no_modules).unwrap_err();
        assert!(e.contains("cannot be moved"), "{e}");
        // not GRUB
        let blank = [0u8; 512];
        let e = plan(&disk, &blank, 2048, &|n| Some(n), &mut no_modules).unwrap_err();
        assert!(e.contains("zero"), "{e}");
        // an unterminated blocklist
        let (mut d2, mbr2, _) = grub_disk(Some(3));
        let mut db = [0u8; 512];
        d2.read_at(512, &mut db).unwrap();
        let mut at = FIRST_LIST;
        while at >= 0x110 {
            db[at..at + 8].copy_from_slice(&2u64.to_le_bytes());
            db[at + 8..at + 10].copy_from_slice(&1u16.to_le_bytes());
            at -= LIST_ENTRY;
        }
        d2.write_at(512, &db).unwrap();
        assert!(plan(&d2, &mbr2, 2048, &|n| Some(n), &mut no_modules).is_err());
        // a core.img that is not GRUB's format
        let (mut d3, mbr3, _) = grub_disk(Some(8));
        d3.write_at(1024, &[0x55u8; 4096]).unwrap();
        let e = plan(&d3, &mbr3, 2048, &|n| Some(n), &mut no_modules).unwrap_err();
        assert!(e.contains("core.img"), "{e}");
    }
}
