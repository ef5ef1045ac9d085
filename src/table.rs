//! Partition-table reading: the MBR (with its EBR chain) and the GPT (both copies) of a disk,
//! read once, and what kind of table the disk carries. What `info`, `validate`, `convert` and
//! the boot layer plan from.

use serde::Serialize;

use crate::disk::Disk;
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
}

/// Read the MBR and the GPT of `data` (the virtual disk), trying 512-byte sectors, then 4096
/// for a GPT (4K-native disks; a VHD always has 512).
pub fn read_tables(data: &dyn Disk, allow_4k: bool) -> Tables {
    let mut findings = Vec::new();
    let mbr = match mbr::read(data, 512) {
        Ok(m) => m,
        Err(e) => {
            findings.push(Finding::error("mbr.unreadable", format!("MBR at 0x0: {e}")));
            None
        }
    };
    let mut sector_bytes = 512;
    let mut gpt = read_gpt(data, 512, &mut findings);
    if gpt.is_none() && allow_4k && data.len() >= 3 * 4096 {
        let mut f4k = Vec::new();
        if let Some(g) = read_gpt(data, 4096, &mut f4k) {
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
    }
}

fn read_gpt(data: &dyn Disk, sector_bytes: u32, findings: &mut Vec<Finding>) -> Option<Gpt> {
    match gpt::read(data, sector_bytes) {
        Ok(g) => g,
        Err(e) => {
            findings.push(Finding::error(
                "gpt.unreadable",
                format!("GPT ({sector_bytes}-byte sectors): {e}"),
            ));
            None
        }
    }
}
