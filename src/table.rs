//! Partition-table reading: the MBR (with its EBR chain) and the GPT (both copies) of a disk,
//! read once, and what kind of table the disk carries. What `info`, `validate`, `convert` and
//! the boot layer plan from.

use serde::Serialize;

use crate::disk::Disk;
use crate::error::ErrorKind;
use crate::finding::Finding;
use crate::gpt::{self, Gpt};
use crate::mbr::{self, Mbr};

/// Which partition table the disk carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TableKind {
    Mbr,
    Gpt,
    Hybrid,
    None,
}

/// The partition tables of a disk, read once: what `info`, `validate` and `convert` plan from.
#[derive(Debug, Clone)]
pub struct Tables {
    pub sector_bytes: u32,
    pub mbr: Option<Mbr>,
    pub gpt: Option<Gpt>,
    pub kind: TableKind,
    pub findings: Vec<Finding>,
    /// A table could not be read because the file could not (an I/O error: the file was cut
    /// or changed while read), not because its bytes are wrong.
    pub io_error: bool,
}

/// Read the MBR and the GPT of `data` (the virtual disk), trying 512-byte sectors, then 4096
/// for a GPT (4K-native disks; a VHD always has 512).
pub fn read_tables(data: &dyn Disk, allow_4k: bool) -> Tables {
    let mut findings = Vec::new();
    let mut io_error = false;
    let mbr = match mbr::read(data, 512) {
        // a volume boot record is not an MBR: its boot code and BPB read as four garbage entries
        Ok(Some(_)) if volume_boot_record(data).is_some() => {
            let why = volume_boot_record(data).unwrap_or_default();
            findings.push(Finding::info(
                "table.bare-volume",
                format!("sector 0 is a volume boot record ({why}), not an MBR: the disk is one bare volume with no partition table"),
            ));
            None
        }
        Ok(m) => m,
        Err(e) => {
            io_error |= e.kind() == ErrorKind::Io;
            findings.push(Finding::error("mbr.unreadable", format!("MBR at 0x0: {e}")));
            None
        }
    };
    let mut sector_bytes = 512;
    let mut gpt = read_gpt(data, 512, &mut findings, &mut io_error);
    if gpt.is_none() && allow_4k && data.len() >= 3 * 4096 {
        let mut f4k = Vec::new();
        if let Some(g) = read_gpt(data, 4096, &mut f4k, &mut io_error) {
            sector_bytes = 4096;
            gpt = Some(g);
            findings.append(&mut f4k);
        }
    }
    let protective = mbr.as_ref().is_some_and(|m| m.protective);
    let kind = match (&mbr, &gpt) {
        (Some(m), Some(_)) if m.protective && m.primaries.iter().any(|p| p.type_id != 0xee) => {
            TableKind::Hybrid
        }
        (_, Some(_)) => {
            if !protective {
                findings.push(Finding::warning(
                    "gpt.no-protective-mbr",
                    "a GPT is present but sector 0 holds no protective MBR (no 0xEE entry); MBR-only tools may overwrite the disk",
                ));
            }
            TableKind::Gpt
        }
        (Some(m), None) if m.protective => {
            findings.push(Finding::error(
                "gpt.missing",
                "the MBR is protective (type 0xEE) but neither the primary nor the backup GPT header was found",
            ));
            TableKind::None
        }
        (Some(m), None) if m.primaries.is_empty() => TableKind::None,
        (Some(_), None) => TableKind::Mbr,
        (None, None) => TableKind::None,
    };
    if let Some(m) = &mbr {
        // a protective MBR's findings (the 0xEE entry covering the disk) are the GPT's business
        if kind != TableKind::Gpt {
            findings.extend(m.findings.iter().cloned());
        }
    }
    if let Some(g) = &gpt {
        findings.extend(g.findings.iter().cloned());
    }
    Tables {
        sector_bytes,
        mbr,
        gpt,
        kind,
        findings,
        io_error,
    }
}

/// Why sector 0 is a volume boot record (a FAT, exFAT or NTFS boot sector: a jump, then a BIOS
/// parameter block with a sane sector size and cluster size), or `None` when it is not one. MBR
/// boot code starts with code, not a jump over a BPB (GRUB's boot.img jumps, but its BPB space
/// is zero: no sector size). Layouts: Microsoft FAT specification 3.1 (BPB), exFAT
/// specification 3.1, NTFS boot sector (same BPB offsets).
pub fn volume_boot_record(data: &dyn Disk) -> Option<&'static str> {
    let mut s = [0u8; 512];
    data.read_at(0, &mut s).ok()?;
    let b = |i: usize| s.get(i).copied().unwrap_or(0);
    let jump = (b(0) == 0xeb && b(2) == 0x90) || b(0) == 0xe9;
    if !jump {
        return None;
    }
    let oem = s.get(3..11)?;
    if oem == b"EXFAT   " {
        return Some("exFAT");
    }
    let bytes_per_sector = u16::from_le_bytes([b(11), b(12)]);
    let sectors_per_cluster = b(13);
    let bpb_sane = matches!(bytes_per_sector, 512 | 1024 | 2048 | 4096)
        && sectors_per_cluster != 0
        && sectors_per_cluster.is_power_of_two();
    if !bpb_sane {
        return None;
    }
    if oem == b"NTFS    " {
        return Some("NTFS");
    }
    if s.get(3..11) == Some(b"-FVE-FS-") {
        return Some("BitLocker");
    }
    // FAT: reserved sectors and FAT count
    let reserved = u16::from_le_bytes([b(14), b(15)]);
    let fats = b(16);
    (reserved != 0 && matches!(fats, 1 | 2)).then_some("FAT")
}

fn read_gpt(
    data: &dyn Disk,
    sector_bytes: u32,
    findings: &mut Vec<Finding>,
    io_error: &mut bool,
) -> Option<Gpt> {
    match gpt::read(data, sector_bytes) {
        Ok(g) => g,
        Err(e) => {
            *io_error |= e.kind() == ErrorKind::Io;
            findings.push(Finding::error(
                "gpt.unreadable",
                format!("GPT ({sector_bytes}-byte sectors): {e}"),
            ));
            None
        }
    }
}
