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

use super::grubcore::{put_le, u16_at, u64_at, Core};
use crate::disk::Disk;
use crate::error::{Error, Result};
use crate::mbr::contains;

/// Bytes of a sector: BIOS boot and GRUB's i386-pc blocklists work in 512-byte sectors.
const SECTOR: u64 = 512;
const SECTOR_USIZE: usize = 512;
/// boot.img: LBA of core.img's first sector (diskboot.img), u64 little-endian.
const KERNEL_SECTOR: usize = 0x5c;
/// boot.img: the boot code before the partition table.
const BOOT_CODE_BYTES: usize = 440;
/// diskboot.img: the first blocklist entry; further ones grow downwards.
const FIRST_LIST: usize = 0x1f4;
const LIST_ENTRY: usize = 12;
/// diskboot.img's code ends here: a blocklist entry below it would be code.
const LIST_FLOOR: usize = 0x100;
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

/// One entry of diskboot.img's blocklist: where it sits in diskboot.img, and the sectors it
/// names.
#[derive(Debug, Clone, Copy)]
struct BlockList {
    at: usize,
    start: u64,
    sectors: u64,
}

/// Byte offset of `lba`, or a Corrupt error (an LBA this large is no GRUB install).
fn lba_bytes(lba: u64) -> Result<u64> {
    lba.checked_mul(SECTOR)
        .ok_or_else(|| Error::corrupt(format!("LBA {lba} is past any disk")))
}

/// diskboot.img's blocklist: (start, len, segment) entries from [`FIRST_LIST`] downwards,
/// terminated by len == 0, each inside the gap before `gap_end` (exclusive).
fn blocklists(diskboot: &[u8; 512], gap_end: u64) -> Result<Vec<BlockList>> {
    let mut lists = Vec::new();
    let mut at = FIRST_LIST;
    loop {
        if lists.len() >= MAX_LISTS {
            return Err(Error::corrupt("diskboot.img's blocklist has no end"));
        }
        let (Some(start), Some(len)) = (
            u64_at(diskboot, at),
            at.checked_add(8).and_then(|a| u16_at(diskboot, a)),
        ) else {
            return Err(Error::corrupt(
                "diskboot.img's blocklist runs off its sector",
            ));
        };
        if len == 0 {
            break;
        }
        let end = start.saturating_add(u64::from(len));
        if start == 0 || end > gap_end {
            return Err(Error::unsupported(format!(
                "diskboot.img's blocklist names LBAs {start}-{}, outside the gap before the first partition",
                end.saturating_sub(1)
            )));
        }
        lists.push(BlockList {
            at,
            start,
            sectors: u64::from(len),
        });
        at = match at.checked_sub(LIST_ENTRY) {
            Some(a) if a >= LIST_FLOOR => a,
            _ => {
                return Err(Error::corrupt(
                    "diskboot.img's blocklist runs into its code",
                ))
            }
        };
    }
    if lists.is_empty() {
        return Err(Error::corrupt("diskboot.img's blocklist is empty"));
    }
    Ok(lists)
}

/// core.img after diskboot.img: the sectors the blocklist names, in load order.
fn read_body(disk: &dyn Disk, lists: &[BlockList]) -> Result<Vec<u8>> {
    let mut body = Vec::new();
    for l in lists {
        // the blocklist lies inside the first MiB (checked), so this is at most 1 MiB
        let bytes = lba_bytes(l.sectors)?;
        let run = disk
            .read_vec(lba_bytes(l.start)?, bytes)
            .map_err(|e| e.context(format!("reading core.img at LBA {}", l.start)))?;
        body.extend_from_slice(&run);
    }
    Ok(body)
}

/// Adds part_gpt to `core` when it lacks it, from `modules`, after checking that their folder
/// holds the modules core.img was built from. Returns the change made, if any.
fn add_part_gpt(
    core: &mut Core,
    modules: &mut dyn FnMut() -> Result<GrubModules>,
) -> Result<Option<String>> {
    if core.module("part_gpt").is_some() {
        return Ok(None);
    }
    let m = modules()?;
    if let (Some(embedded), Some(file)) = (core.module("part_msdos"), &m.part_msdos) {
        let mut padded = file.clone();
        padded.resize(
            file.len().checked_next_multiple_of(4).unwrap_or(file.len()),
            0,
        );
        if embedded != padded.as_slice() {
            return Err(Error::unsupported(format!(
                "the GRUB modules in {} are not the ones core.img was built from (part_msdos.mod differs from core.img's copy): reinstall grub-pc in the guest (grub-install) and convert again",
                m.location
            )));
        }
    }
    core.add_module(&m.part_gpt);
    Ok(Some(format!("part_gpt module added from {}", m.location)))
}

/// diskboot.img with one blocklist entry for the whole (contiguous) new body at
/// `first_lba + 1`; the old entries cleared.
fn patch_diskboot(
    diskboot: &[u8; 512],
    lists: &[BlockList],
    first_lba: u64,
    body_sectors: u16,
    segment: u16,
) -> Result<Vec<u8>> {
    let mut patched = diskboot.to_vec();
    let zero = [0u8; LIST_ENTRY];
    let body_lba = first_lba.saturating_add(1);
    lists
        .iter()
        .try_for_each(|l| put_le(&mut patched, l.at, &zero))
        .and_then(|()| put_le(&mut patched, FIRST_LIST, &body_lba.to_le_bytes()))
        .and_then(|()| {
            put_le(
                &mut patched,
                FIRST_LIST.checked_add(8)?,
                &body_sectors.to_le_bytes(),
            )
        })
        .and_then(|()| {
            put_le(
                &mut patched,
                FIRST_LIST.checked_add(10)?,
                &segment.to_le_bytes(),
            )
        })
        // the offsets are constants and checked entries inside the 512-byte sector
        .ok_or_else(|| Error::corrupt("diskboot.img's blocklist runs off its sector"))?;
    Ok(patched)
}

/// Find GRUB's i386-pc loader (boot.img in `sector0`, core.img in the gap before
/// `first_partition_lba`) and rebuild it for the GPT disk: part_gpt added (from `modules`, asked
/// only when core.img lacks it), `msdosN` partition names turned into `gptM` by `gpt_index`,
/// moved into a BIOS boot partition. `Err` says why `--hybrid` cannot keep BIOS boot working:
/// Corrupt for a loader that contradicts itself, Unsupported for one that cannot be moved.
pub fn plan(
    disk: &dyn Disk,
    sector0: &[u8; 512],
    first_partition_lba: u64,
    gpt_index: &dyn Fn(u32) -> Option<u32>,
    modules: &mut dyn FnMut() -> Result<GrubModules>,
) -> Result<Relocation> {
    // 440 of 512 bytes: always there
    let mut boot_code = *sector0
        .first_chunk::<BOOT_CODE_BYTES>()
        .unwrap_or(&[0; BOOT_CODE_BYTES]);
    let kind = crate::mbr::boot_code_kind(&boot_code);
    if kind != "grub" {
        return Err(Error::unsupported(format!(
            "the MBR's boot code is {kind}, not GRUB's boot.img: --hybrid keeps GRUB (grub-pc) BIOS boot only"
        )));
    }
    let old_lba = u64_at(&boot_code, KERNEL_SECTOR).unwrap_or(0);
    if old_lba == 0 || old_lba >= first_partition_lba {
        return Err(Error::unsupported(format!(
            "boot.img loads its core.img from LBA {old_lba}, not from the gap before the first partition (LBA {first_partition_lba}): a core.img inside a filesystem (blocklist install) cannot be moved"
        )));
    }
    let mut diskboot = [0u8; SECTOR_USIZE];
    disk.read_at(lba_bytes(old_lba)?, &mut diskboot)
        .map_err(|e| e.context(format!("reading core.img at LBA {old_lba}")))?;
    if !(contains(&diskboot, b"loading\0") && contains(&diskboot, b"Geom\0")) {
        return Err(Error::unsupported(format!(
            "LBA {old_lba}, where boot.img looks for core.img, does not hold GRUB's diskboot.img"
        )));
    }
    let gap_end = first_partition_lba.min(BIOS_BOOT_END);
    let lists = blocklists(&diskboot, gap_end)?;
    let segment = FIRST_LIST
        .checked_add(10)
        .and_then(|a| u16_at(&diskboot, a))
        .unwrap_or(0x820);
    let mut core = Core::decode(&read_body(disk, &lists)?)?;
    let mut changes: Vec<String> = add_part_gpt(&mut core, modules)?.into_iter().collect();
    changes.extend(core.remap(gpt_index)?);
    let new_body = core.encode()?;
    let too_large = || Error::unsupported("core.img too large for one blocklist");
    let body_sectors =
        u64::try_from(new_body.len().div_ceil(SECTOR_USIZE)).map_err(|_| too_large())?;
    let core_sectors = body_sectors.checked_add(1).ok_or_else(too_large)?;
    let first_lba = BIOS_BOOT_FIRST;
    // gap_end > old_lba >= 1 (checked above), so this does not wrap
    let last_lba = gap_end.saturating_sub(1);
    let room = last_lba
        .checked_sub(first_lba)
        .and_then(|r| r.checked_add(1));
    if room.is_none_or(|r| r < core_sectors) {
        return Err(Error::unsupported(format!(
            "core.img takes {core_sectors} sectors; between the GPT (LBA {first_lba}) and the first partition (LBA {first_partition_lba}) there is no room for it"
        )));
    }
    let len = u16::try_from(body_sectors).map_err(|_| too_large())?;
    let mut bytes = patch_diskboot(&diskboot, &lists, first_lba, len, segment)?;
    bytes.extend_from_slice(&new_body);
    let core_bytes =
        lba_bytes(core_sectors).and_then(|b| usize::try_from(b).map_err(|_| too_large()))?;
    bytes.resize(core_bytes, 0);
    put_le(&mut boot_code, KERNEL_SECTOR, &first_lba.to_le_bytes())
        .ok_or_else(|| Error::corrupt("boot.img: kernel sector past its boot code"))?;
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
#[allow(
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::arithmetic_side_effects,
    clippy::as_conversions
)] // tests: a panic is a failed test
mod tests {
    use super::super::grubcore::{fixture, OBJ_PREFIX};
    use super::*;
    use crate::disk::MemDisk;

    fn no_modules() -> Result<GrubModules> {
        Err(Error::unsupported("no modules here"))
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
        assert_eq!(core.string(OBJ_PREFIX).unwrap(), "(hd0,gpt2)/boot/grub");
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
        assert!(
            e.message().contains("not the ones core.img was built from"),
            "{e}"
        );
        // no modules
        let e = plan(&disk, &mbr, 2048, &|n| Some(n), &mut no_modules).unwrap_err();
        assert!(e.message().contains("no modules here"), "{e}");
        // the prefix names a partition the GPT does not carry
        let mut ok = || {
            Ok(GrubModules {
                location: "x".into(),
                part_gpt: fixture::elf("part_gpt"),
                part_msdos: None,
            })
        };
        let e = plan(&disk, &mbr, 2048, &|_| None, &mut ok).unwrap_err();
        assert!(e.message().contains("msdos1"), "{e}");
        // blocklist past the first partition
        let e = plan(&disk, &mbr, n, &|n| Some(n), &mut no_modules).unwrap_err();
        assert!(e.message().contains("outside the gap"), "{e}");
        // no room in the gap for the rebuilt core.img
        let e = plan(&disk, &mbr, 40 + n, &|n| Some(n), &mut ok).unwrap_err();
        assert!(e.message().contains("no room"), "{e}");
        // kernel sector inside a filesystem
        mbr[KERNEL_SECTOR..KERNEL_SECTOR + 8].copy_from_slice(&5000u64.to_le_bytes());
        let e = plan(&disk, &mbr, 2048, &|n| Some(n), &mut no_modules).unwrap_err();
        assert!(e.message().contains("cannot be moved"), "{e}");
        // not GRUB
        let blank = [0u8; 512];
        let e = plan(&disk, &blank, 2048, &|n| Some(n), &mut no_modules).unwrap_err();
        assert!(e.message().contains("zero"), "{e}");
        assert_eq!(e.kind(), crate::error::ErrorKind::Unsupported);
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
        assert!(e.message().contains("core.img"), "{e}");
        assert_eq!(e.kind(), crate::error::ErrorKind::Corrupt);
    }
}
