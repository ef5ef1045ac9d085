//! Master Boot Record: the four primary entries, extended/logical chains (bounded), protective
//! MBR detection, and a look at the boot code.
//!
//! Our own reader: third-party MBR crates panic on crafted tables. Every LBA is checked against
//! the disk before it is read, EBR chains are bounded ([`MAX_LOGICALS`], [`MAX_EBRS`]) and loop
//! checked, and every oddity becomes a [`Finding`] rather than an error.
pub mod raw;

use std::collections::BTreeSet;

use serde::Serialize;

use crate::disk::Disk;
use crate::error::{Error, Result};
use crate::finding::Finding;
use crate::units::{Lba, LbaRange};

use raw::{is_extended_type, BOOT_CODE_BYTES, MBR_BYTES, STATUS_ACTIVE, STATUS_INACTIVE};
pub use raw::{protective_mbr, RawMbr, RawMbrEntry};

/// Most logical partitions we follow in one disk (Linux's msdos parser stops near this too;
/// a chain this long is already suspicious).
pub const MAX_LOGICALS: usize = 128;
/// Most EBRs we read in one disk: a chain of empty EBRs (links only) is bounded too.
pub const MAX_EBRS: usize = 2 * MAX_LOGICALS;
/// Most sectors `gap_loader` looks at (1 MiB at 512-byte sectors: the usual first partition).
pub const MAX_GAP_SECTORS: u64 = 2048;

/// CHS address as stored in an MBR entry (decoded, not trusted).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ChsAddr {
    pub cylinder: u16,
    pub head: u8,
    pub sector: u8,
}

/// One partition from the MBR or an EBR.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MbrPartition {
    /// Linux numbering: 1-4 for the primary slots, 5.. for logical partitions in chain order.
    pub index: u32,
    pub bootable: bool,
    /// Raw status byte (0x00 or 0x80 are valid).
    pub status: u8,
    pub type_id: u8,
    /// Absolute start sector on the disk.
    pub start_lba: u64,
    pub sectors: u64,
    pub chs_start: ChsAddr,
    pub chs_end: ChsAddr,
    /// An extended container (0x05, 0x0f, 0x85), not a data partition.
    pub extended: bool,
    pub logical: bool,
}

impl MbrPartition {
    /// One past the last sector (saturating: the inputs are 32-bit fields added to 64-bit bases).
    pub fn end_lba(&self) -> u64 {
        self.start_lba.saturating_add(self.sectors)
    }

    /// The sectors the entry covers, inclusive (`first..=last`, as GPT entries and the
    /// conversion plan count them); `None` for an empty entry or one whose end overflows.
    pub fn lba_range(&self) -> Option<LbaRange> {
        LbaRange::from_start_len(Lba(self.start_lba), self.sectors)
    }

    /// A data partition (not an extended container, not a GPT protective entry).
    pub fn is_data(&self) -> bool {
        !self.extended && self.type_id != raw::TYPE_PROTECTIVE
    }
}

/// The decoded MBR.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Mbr {
    pub disk_signature: u32,
    /// Bytes 0..440 are not all zero.
    pub boot_code_present: bool,
    /// What the boot code looks like ("grub", "windows", "syslinux", ...), when recognised.
    pub boot_code_kind: Option<String>,
    /// Primaries (including extended containers) in slot order, empty slots left out.
    pub primaries: Vec<MbrPartition>,
    /// Logical partitions in chain order.
    pub logicals: Vec<MbrPartition>,
    /// A 0xEE entry is present (a GPT disk's protective MBR, or a hybrid MBR with more entries).
    pub protective: bool,
    pub findings: Vec<Finding>,
}

impl Mbr {
    /// A hybrid MBR: a 0xEE entry next to other primary entries (callers decide what to do).
    pub fn is_hybrid(&self) -> bool {
        self.protective
            && self
                .primaries
                .iter()
                .any(|p| p.type_id != raw::TYPE_PROTECTIVE)
    }

    /// Data partitions (primaries that are not extended or protective, then logicals).
    pub fn data_partitions(&self) -> impl Iterator<Item = &MbrPartition> {
        self.primaries
            .iter()
            .filter(|p| p.is_data())
            .chain(self.logicals.iter())
    }
}

/// Read the MBR at sector 0. `Ok(None)` when there is no 0x55AA signature (or the disk is
/// shorter than 512 bytes). `sector_bytes` is the unit of the LBA fields (512 or 4096).
pub fn read(disk: &dyn Disk, sector_bytes: u32) -> Result<Option<Mbr>> {
    if sector_bytes < 512 || !sector_bytes.is_power_of_two() {
        return Err(Error::invalid(format!(
            "sector size: expected a power of two >= 512, found {sector_bytes}"
        )));
    }
    if disk.len() < 512 {
        return Ok(None);
    }
    let mut sector = [0u8; MBR_BYTES];
    disk.read_at(0, &mut sector)?;
    let raw = RawMbr::from_bytes(&sector)?;
    if !raw.has_signature() {
        return Ok(None);
    }
    let disk_sectors = disk.len().checked_div(u64::from(sector_bytes)).unwrap_or(0);
    let mut findings = Vec::new();

    let boot_code_present = raw.boot_code.iter().any(|&b| b != 0);
    let boot_code_kind = boot_code_present.then(|| boot_code_kind(&raw.boot_code).to_string());

    let mut primaries = Vec::new();
    let mut protective = false;
    for (slot, entry) in (1u32..).zip(raw.entries.iter()) {
        let Some(p) = decode_entry(entry, slot, 0, false, &mut findings) else {
            continue;
        };
        if p.type_id == raw::TYPE_PROTECTIVE {
            protective = true;
        }
        primaries.push(p);
    }

    let mut chain = Chain {
        disk,
        sector_bytes,
        disk_sectors,
        visited: BTreeSet::new(),
        ebrs_read: 0,
        logicals: Vec::new(),
        findings: &mut findings,
        stopped: false,
    };
    for ext in primaries.iter().filter(|p| p.extended) {
        chain.follow(ext)?;
    }
    let logicals = chain.logicals;

    check_layout(&primaries, &logicals, disk_sectors, &mut findings);

    Ok(Some(Mbr {
        disk_signature: raw.disk_signature.get(),
        boot_code_present,
        boot_code_kind,
        primaries,
        logicals,
        protective,
        findings,
    }))
}

/// Decode one entry; `None` for an empty slot (type 0) or a zero-size entry (a finding).
/// `base_lba` is added to the entry's start (the EBR's LBA for logicals).
fn decode_entry(
    entry: &RawMbrEntry,
    index: u32,
    base_lba: u64,
    logical: bool,
    findings: &mut Vec<Finding>,
) -> Option<MbrPartition> {
    if entry.partition_type == 0 {
        return None;
    }
    let where_ = if logical {
        format!("logical partition {index}")
    } else {
        format!("MBR entry {index}")
    };
    if entry.size_in_lba.get() == 0 {
        findings.push(Finding::warning(
            "mbr.partition.zero-size",
            format!(
                "{where_}: type 0x{:02x} with a size of 0 sectors (ignored)",
                entry.partition_type
            ),
        ));
        return None;
    }
    if entry.status != STATUS_ACTIVE && entry.status != STATUS_INACTIVE {
        findings.push(Finding::warning(
            "mbr.partition.status",
            format!(
                "{where_}: status byte is 0x{:02x}, expected 0x00 or 0x80",
                entry.status
            ),
        ));
    }
    Some(MbrPartition {
        index,
        bootable: entry.status == STATUS_ACTIVE,
        status: entry.status,
        type_id: entry.partition_type,
        start_lba: base_lba.saturating_add(u64::from(entry.starting_lba.get())),
        sectors: u64::from(entry.size_in_lba.get()),
        chs_start: ChsAddr::from_bytes(entry.chs_start),
        chs_end: ChsAddr::from_bytes(entry.chs_end),
        extended: !logical && is_extended_type(entry.partition_type),
        logical,
    })
}

/// State of the walk over the EBR chains of a disk (shared by all extended containers, so the
/// bounds hold for the whole disk).
struct Chain<'a> {
    disk: &'a dyn Disk,
    sector_bytes: u32,
    disk_sectors: u64,
    visited: BTreeSet<u64>,
    ebrs_read: usize,
    logicals: Vec<MbrPartition>,
    findings: &'a mut Vec<Finding>,
    /// A bound was hit: stop reading further chains too.
    stopped: bool,
}

impl Chain<'_> {
    /// Follow the EBR chain of the extended container `ext`: each EBR holds one logical
    /// partition (start relative to the EBR) and a link to the next EBR (start relative to the
    /// container's first sector).
    fn follow(&mut self, ext: &MbrPartition) -> Result<()> {
        let base = ext.start_lba;
        let mut ebr_lba = base;
        loop {
            if self.stopped {
                return Ok(());
            }
            if !self.visited.insert(ebr_lba) {
                self.findings.push(Finding::error(
                    "mbr.ebr.loop",
                    format!(
                        "EBR chain of MBR entry {} comes back to LBA {ebr_lba}: loop cut there",
                        ext.index
                    ),
                ));
                return Ok(());
            }
            if self.ebrs_read >= MAX_EBRS || self.logicals.len() >= MAX_LOGICALS {
                self.findings.push(Finding::error(
                    "mbr.ebr.too-many",
                    format!(
                        "more than {MAX_LOGICALS} logical partitions or {MAX_EBRS} EBRs: the rest of the chain is ignored"
                    ),
                ));
                self.stopped = true;
                return Ok(());
            }
            let offset = ebr_lba.checked_mul(u64::from(self.sector_bytes));
            let in_disk = ebr_lba < self.disk_sectors
                && offset.is_some_and(|o| o.checked_add(512).is_some_and(|e| e <= self.disk.len()));
            let Some(offset) = offset.filter(|_| in_disk) else {
                self.findings.push(Finding::error(
                    "mbr.ebr.outside-disk",
                    format!(
                        "EBR at LBA {ebr_lba} is outside the disk ({} sectors): chain cut there",
                        self.disk_sectors
                    ),
                ));
                return Ok(());
            };
            let mut sector = [0u8; MBR_BYTES];
            self.disk.read_at(offset, &mut sector)?;
            self.ebrs_read = self.ebrs_read.saturating_add(1);
            let ebr = RawMbr::from_bytes(&sector)?;
            if !ebr.has_signature() {
                let [a, b] = ebr.signature;
                self.findings.push(Finding::error(
                    "mbr.ebr.bad-signature",
                    format!(
                        "EBR at 0x{offset:x} (LBA {ebr_lba}): signature is {a:02x} {b:02x}, expected 55 aa: chain cut there"
                    ),
                ));
                return Ok(());
            }
            // As Linux does: the first non-extended entry is the logical partition, the first
            // extended entry is the link; other entries are ignored.
            let data = ebr
                .entries
                .iter()
                .find(|e| e.partition_type != 0 && !is_extended_type(e.partition_type));
            if let Some(entry) = data {
                let index = u32::try_from(self.logicals.len())
                    .ok()
                    .and_then(|n| n.checked_add(5))
                    .unwrap_or(u32::MAX);
                if let Some(p) = decode_entry(entry, index, ebr_lba, true, self.findings) {
                    if p.start_lba < ext.start_lba || p.end_lba() > ext.end_lba() {
                        self.findings.push(Finding::warning(
                            "mbr.logical.outside-extended",
                            format!(
                                "logical partition {index} (LBA {}..{}) is not inside its extended partition (LBA {}..{})",
                                p.start_lba, p.end_lba(), ext.start_lba, ext.end_lba()
                            ),
                        ));
                    }
                    self.logicals.push(p);
                }
            }
            let link = ebr
                .entries
                .iter()
                .find(|e| is_extended_type(e.partition_type) && e.size_in_lba.get() != 0);
            match link {
                Some(l) => ebr_lba = base.saturating_add(u64::from(l.starting_lba.get())),
                None => return Ok(()),
            }
        }
    }
}

/// Findings about the partitions as a whole: outside the disk, overlaps, active flags.
fn check_layout(
    primaries: &[MbrPartition],
    logicals: &[MbrPartition],
    disk_sectors: u64,
    findings: &mut Vec<Finding>,
) {
    for p in primaries.iter().chain(logicals) {
        if p.end_lba() <= disk_sectors {
            continue;
        }
        if p.type_id == raw::TYPE_PROTECTIVE {
            // gdisk writes 0xFFFFFFFF sectors for disks over 2 TiB; a grown disk leaves it short
            if p.sectors != u64::from(u32::MAX) {
                findings.push(Finding::warning(
                    "mbr.protective.size",
                    format!(
                        "protective entry {} covers LBA {}..{}, beyond the disk's {disk_sectors} sectors",
                        p.index,
                        p.start_lba,
                        p.end_lba()
                    ),
                ));
            }
            continue;
        }
        findings.push(Finding::error(
            "mbr.partition.outside-disk",
            format!(
                "partition {} (type 0x{:02x}) covers LBA {}..{}, but the disk has {disk_sectors} sectors",
                p.index,
                p.type_id,
                p.start_lba,
                p.end_lba()
            ),
        ));
    }

    // Overlaps among data partitions and extended containers, except a logical against its
    // own container; 0xEE entries overlap hybrid partners by design.
    let all: Vec<&MbrPartition> = primaries
        .iter()
        .chain(logicals)
        .filter(|p| p.type_id != raw::TYPE_PROTECTIVE)
        .collect();
    for (i, a) in all.iter().enumerate() {
        for b in all.iter().skip(i.saturating_add(1)) {
            if (a.extended && b.logical) || (a.logical && b.extended) {
                continue;
            }
            if a.start_lba < b.end_lba() && b.start_lba < a.end_lba() {
                findings.push(Finding::error(
                    "mbr.partition.overlap",
                    format!(
                        "partitions {} (LBA {}..{}) and {} (LBA {}..{}) overlap",
                        a.index,
                        a.start_lba,
                        a.end_lba(),
                        b.index,
                        b.start_lba,
                        b.end_lba()
                    ),
                ));
            }
        }
    }

    let active: Vec<u32> = primaries
        .iter()
        .filter(|p| p.bootable)
        .map(|p| p.index)
        .collect();
    if active.len() > 1 {
        findings.push(Finding::warning(
            "mbr.active.multiple",
            format!("more than one active partition: {active:?}"),
        ));
    }
}

/// Whether `needle` occurs in `hay`.
pub(crate) fn contains(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}

/// Name the boot code by the strings it prints: "grub" (GRUB 2 boot.img, GRUB legacy stage1),
/// "windows" (Windows MBRs from NT to 11), "syslinux" (mbr.bin / gptmbr.bin), "zero" when the
/// area is blank, else "unknown".
pub fn boot_code_kind(boot_code: &[u8; BOOT_CODE_BYTES]) -> &'static str {
    if boot_code.iter().all(|&b| b == 0) {
        return "zero";
    }
    let has = |s: &[u8]| contains(boot_code, s);
    if has(b"GRUB ") && has(b"Geom") && has(b" Error") {
        "grub"
    } else if has(b"Invalid partition table")
        && (has(b"Error loading operating system") || has(b"Missing operating system"))
    {
        "windows"
    } else if has(b"Operating system load error") || has(b"Multiple active partitions") {
        // syslinux mbr.S / gptmbr.S message strings
        "syslinux"
    } else {
        "unknown"
    }
}

/// Look at the gap between the MBR and the first partition (sectors 1 .. `first_partition_lba`,
/// at most [`MAX_GAP_SECTORS`]) for a second-stage loader. `Some("grub core.img")` when GRUB 2's
/// diskboot.img starts at LBA 1, `Some("unknown data")` when any byte is nonzero, `None` when
/// the gap is all zero, empty or outside the disk. Read errors count as no data.
pub fn gap_loader(disk: &dyn Disk, sector_bytes: u32, first_partition_lba: u64) -> Option<String> {
    let sb = u64::from(sector_bytes);
    let gap_sectors = first_partition_lba
        .saturating_sub(1)
        .min(MAX_GAP_SECTORS)
        .min(disk.len().checked_div(sb).unwrap_or(0).saturating_sub(1));
    if gap_sectors == 0 {
        return None;
    }
    let gap_bytes = gap_sectors.checked_mul(sb)?;
    // GRUB 2 core.img: diskboot.img (one 512-byte block) at LBA 1, then lzma_decompress.img.
    let mut first = [0u8; 512];
    disk.read_at(sb, &mut first).ok()?;
    if contains(&first, b"Geom\0Read\0 Error\0") && contains(&first, b"loading\0") {
        return Some("grub core.img".to_string());
    }
    // Otherwise any nonzero byte, read in bounded chunks.
    const CHUNK: u64 = 64 * 1024;
    let mut buf = vec![0u8; 0];
    let mut done = 0u64;
    while done < gap_bytes {
        let n = (gap_bytes.saturating_sub(done)).min(CHUNK);
        buf.resize(usize::try_from(n).ok()?, 0);
        disk.read_at(sb.checked_add(done)?, &mut buf).ok()?;
        if buf.iter().any(|&b| b != 0) {
            return Some("unknown data".to_string());
        }
        done = done.saturating_add(n);
    }
    None
}

#[cfg(test)]
#[allow(
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::arithmetic_side_effects,
    clippy::as_conversions
)] // tests: a panic is a failed test
mod tests {
    use super::*;
    use crate::disk::MemDisk;
    use crate::finding::Severity;
    use std::process::Command;

    #[test]
    fn lba_range_is_the_inclusive_form_of_start_and_count() {
        let chs = ChsAddr {
            cylinder: 0,
            head: 0,
            sector: 0,
        };
        let p = MbrPartition {
            index: 1,
            bootable: false,
            status: 0,
            type_id: 0x83,
            start_lba: 2048,
            sectors: 1000,
            chs_start: chs,
            chs_end: chs,
            extended: false,
            logical: false,
        };
        let r = p.lba_range().unwrap();
        assert_eq!((r.first().get(), r.last().get()), (2048, 3047));
        assert_eq!(r.end_exclusive().map(|l| l.get()), Some(p.end_lba()));
        assert_eq!(
            MbrPartition {
                sectors: 0,
                ..p.clone()
            }
            .lba_range(),
            None
        );
        let top = MbrPartition {
            start_lba: u64::MAX,
            sectors: 2,
            ..p
        };
        assert_eq!(top.lba_range(), None, "end overflows (end_lba saturates)");
    }

    /// One 16-byte entry: status, CHS start, type, CHS end, start LBA, size.
    fn entry(status: u8, type_id: u8, start: u32, size: u32) -> [u8; 16] {
        let mut e = [0u8; 16];
        e[0] = status; // 0x00 status
        e[1..4].copy_from_slice(&[0xFE, 0xFF, 0xFF]); // 0x01 CHS start (beyond CHS)
        e[4] = type_id; // 0x04 type
        e[5..8].copy_from_slice(&[0xFE, 0xFF, 0xFF]); // 0x05 CHS end
        e[8..12].copy_from_slice(&start.to_le_bytes()); // 0x08 start LBA
        e[12..16].copy_from_slice(&size.to_le_bytes()); // 0x0C size in sectors
        e
    }

    /// A sector with the given entries in slots 0.. and the 0x55AA signature.
    fn table(entries: &[[u8; 16]]) -> [u8; 512] {
        let mut s = [0u8; 512];
        for (i, e) in entries.iter().enumerate() {
            s[0x1BE + 16 * i..0x1BE + 16 * (i + 1)].copy_from_slice(e);
        }
        s[0x1FE] = 0x55;
        s[0x1FF] = 0xAA;
        s
    }

    fn disk_with(sectors: usize, at: &[(usize, [u8; 512])]) -> MemDisk {
        let mut d = vec![0u8; sectors * 512];
        for (lba, s) in at {
            d[lba * 512..lba * 512 + 512].copy_from_slice(s);
        }
        MemDisk::new(d)
    }

    fn ids(m: &Mbr) -> Vec<&'static str> {
        m.findings.iter().map(|f| f.id).collect()
    }

    /// Skip (or fail under CI) when a tool is missing.
    fn have(tool: &str, package: &str) -> bool {
        let ok = Command::new("sh")
            .arg("-c")
            .arg(format!("command -v {tool}"))
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        if !ok {
            assert!(
                std::env::var_os("CI").is_none(),
                "{tool} is missing: apt-get install {package}"
            );
            eprintln!("skipped: {tool} is missing (apt-get install {package})");
        }
        ok
    }

    fn extended_disk() -> MemDisk {
        // primaries: 1 = 0x07 active at 2048+2048, 2 = extended at 4096+4096
        let mbr = table(&[entry(0x80, 0x07, 2048, 2048), entry(0x00, 0x0F, 4096, 4096)]);
        // EBR 1 at 4096: logical at +63 (1000 sectors), link to base + 2048
        let ebr1 = table(&[entry(0, 0x83, 63, 1000), entry(0, 0x05, 2048, 2048)]);
        // EBR 2 at 6144: logical at +63 (500 sectors), end of chain
        let ebr2 = table(&[entry(0, 0x82, 63, 500)]);
        disk_with(8192, &[(0, mbr), (4096, ebr1), (6144, ebr2)])
    }

    #[test]
    fn primaries_and_logicals() {
        let m = read(&extended_disk(), 512).unwrap().unwrap();
        assert!(m.findings.is_empty(), "{:?}", m.findings);
        assert_eq!(m.primaries.len(), 2);
        assert!(m.primaries[0].bootable && m.primaries[1].extended);
        let l: Vec<_> = m
            .logicals
            .iter()
            .map(|p| (p.index, p.type_id, p.start_lba, p.sectors, p.logical))
            .collect();
        assert_eq!(l, [(5, 0x83, 4159, 1000, true), (6, 0x82, 6207, 500, true)]);
        assert!(!m.protective && !m.is_hybrid());
        assert!(!m.boot_code_present && m.boot_code_kind.is_none());
        assert_eq!(m.data_partitions().count(), 3);
    }

    #[test]
    fn no_signature_or_short_disk() {
        assert!(read(&MemDisk::new(vec![0; 4096]), 512).unwrap().is_none());
        assert!(read(&MemDisk::new(vec![0; 100]), 512).unwrap().is_none());
        assert!(read(&MemDisk::new(vec![0; 4096]), 100).is_err());
    }

    #[test]
    fn ebr_loop_is_a_finding() {
        let mbr = table(&[entry(0, 0x05, 100, 100)]);
        // EBR links back to itself (link start 0 = the container's first sector)
        let ebr = table(&[entry(0, 0x83, 1, 10), entry(0, 0x05, 0, 100)]);
        let m = read(&disk_with(256, &[(0, mbr), (100, ebr)]), 512)
            .unwrap()
            .unwrap();
        assert_eq!(ids(&m), ["mbr.ebr.loop"]);
        assert_eq!(m.logicals.len(), 1);
        // two EBRs pointing at each other
        let e1 = table(&[entry(0, 0x83, 1, 10), entry(0, 0x05, 50, 50)]);
        let e2 = table(&[entry(0, 0x83, 1, 10), entry(0, 0x05, 0, 50)]);
        let m = read(&disk_with(256, &[(0, mbr), (100, e1), (150, e2)]), 512)
            .unwrap()
            .unwrap();
        assert!(ids(&m).contains(&"mbr.ebr.loop"));
        assert_eq!(m.logicals.len(), 2);
    }

    #[test]
    fn ebr_outside_disk_and_bad_signature() {
        let mbr = table(&[entry(0, 0x0F, 100, 0xFFFF_FFF0)]);
        let ebr = table(&[entry(0, 0x83, 1, 10), entry(0, 0x05, 0xFFFF_FF00, 16)]);
        let m = read(&disk_with(256, &[(0, mbr), (100, ebr)]), 512)
            .unwrap()
            .unwrap();
        let f = ids(&m);
        assert!(f.contains(&"mbr.ebr.outside-disk"), "{f:?}");
        assert!(f.contains(&"mbr.partition.outside-disk"), "{f:?}");
        let m = read(&disk_with(256, &[(0, mbr)]), 512).unwrap().unwrap();
        assert!(ids(&m).contains(&"mbr.ebr.bad-signature"));
        assert!(m.logicals.is_empty());
    }

    #[test]
    fn ebr_chain_is_bounded() {
        // 200 EBRs, each with one logical, every 2 sectors
        let n = 200;
        let mut at = vec![(0, table(&[entry(0, 0x05, 10, 2 * n as u32)]))];
        for i in 0..n {
            let link = if i + 1 < n {
                entry(0, 0x05, 2 * (i as u32 + 1), 2)
            } else {
                [0; 16]
            };
            at.push((10 + 2 * i, table(&[entry(0, 0x83, 1, 1), link])));
        }
        let m = read(&disk_with(10 + 2 * n, &at), 512).unwrap().unwrap();
        assert_eq!(m.logicals.len(), MAX_LOGICALS);
        assert_eq!(ids(&m), ["mbr.ebr.too-many"]);
        assert_eq!(m.logicals.last().unwrap().index, 4 + MAX_LOGICALS as u32);
    }

    #[test]
    fn layout_findings() {
        let mbr = table(&[
            entry(0x80, 0x83, 2048, 4096),
            entry(0x80, 0x83, 4000, 100),  // overlaps 1; second active
            entry(0x12, 0x07, 7000, 5000), // past the end, bad status
            entry(0, 0x07, 100, 0),        // zero size
        ]);
        let m = read(&disk_with(8192, &[(0, mbr)]), 512).unwrap().unwrap();
        let mut f = ids(&m);
        f.sort();
        assert_eq!(
            f,
            [
                "mbr.active.multiple",
                "mbr.partition.outside-disk",
                "mbr.partition.overlap",
                "mbr.partition.status",
                "mbr.partition.zero-size",
            ]
        );
        assert_eq!(m.primaries.len(), 3);
        let outside = m
            .findings
            .iter()
            .find(|f| f.id == "mbr.partition.outside-disk");
        assert_eq!(outside.unwrap().severity, Severity::Error);
    }

    #[test]
    fn protective_and_hybrid() {
        let d = disk_with(1024, &[(0, protective_mbr(&[0; 440], 1024))]);
        let m = read(&d, 512).unwrap().unwrap();
        assert!(m.protective && !m.is_hybrid());
        assert!(m.findings.is_empty(), "{:?}", m.findings);
        let hybrid = table(&[entry(0, 0xEE, 1, 1023), entry(0x80, 0x07, 2048, 10)]);
        let m = read(&disk_with(4096, &[(0, hybrid)]), 512)
            .unwrap()
            .unwrap();
        assert!(m.protective && m.is_hybrid());
        assert!(m.findings.is_empty(), "{:?}", m.findings);
        // 0xFFFFFFFF sectors on a small disk is what gdisk writes for > 2 TiB: no finding
        let big = table(&[entry(0, 0xEE, 1, u32::MAX)]);
        let m = read(&disk_with(64, &[(0, big)]), 512).unwrap().unwrap();
        assert!(m.findings.is_empty());
    }

    #[test]
    fn four_k_sectors() {
        let mut d = vec![0u8; 4096 * 64];
        d[..512].copy_from_slice(&table(&[entry(0, 0x0F, 10, 20)]));
        d[10 * 4096..10 * 4096 + 512].copy_from_slice(&table(&[entry(0, 0x83, 2, 5)]));
        let m = read(&MemDisk::new(d), 4096).unwrap().unwrap();
        assert_eq!(m.logicals[0].start_lba, 12);
        assert!(m.findings.is_empty(), "{:?}", m.findings);
    }

    #[test]
    fn decode_encode_round_trip() {
        let mut s = table(&[
            entry(0x80, 0x07, 2048, 204800),
            entry(0x00, 0x07, 206848, 1000),
        ]);
        s[..440].copy_from_slice(&[0x33; 440]);
        s[0x1B8..0x1BC].copy_from_slice(&0xdead_beefu32.to_le_bytes());
        let d = disk_with(300_000, &[(0, s)]);
        let m = read(&d, 512).unwrap().unwrap();
        assert_eq!(m.disk_signature, 0xdead_beef);
        assert_eq!(m.boot_code_kind.as_deref(), Some("unknown"));
        let raw = RawMbr::from_bytes(&s).unwrap();
        let again = raw::encode(&raw.boot_code, m.disk_signature, &m.primaries).unwrap();
        assert_eq!(again, s);
        assert_eq!(raw.to_bytes(), s);
    }

    #[test]
    fn boot_code_recognition() {
        let mut code = [0u8; 440];
        assert_eq!(boot_code_kind(&code), "zero");
        code[0x180..0x1A1].copy_from_slice(b"GRUB \0Geom\0Hard Disk\0Read\0 Error\0");
        assert_eq!(boot_code_kind(&code), "grub");
        let mut code = [0x90u8; 440];
        code[0x12b..0x142].copy_from_slice(b"Invalid partition table");
        code[0x150..0x16e].copy_from_slice(b"Error loading operating system");
        assert_eq!(boot_code_kind(&code), "windows");
        let mut code = [0x90u8; 440];
        code[0x100..0x11b].copy_from_slice(b"Operating system load error");
        assert_eq!(boot_code_kind(&code), "syslinux");
        if let Ok(img) = std::fs::read("/usr/lib/grub/i386-pc/boot.img") {
            let mut code = [0u8; 440];
            code.copy_from_slice(&img[..440]);
            assert_eq!(boot_code_kind(&code), "grub");
        }
    }

    #[test]
    fn gap_loader_names_grub_core() {
        let d = disk_with(4096, &[]);
        assert_eq!(gap_loader(&d, 512, 2048), None);
        assert_eq!(gap_loader(&d, 512, 0), None);
        assert_eq!(gap_loader(&d, 512, u64::MAX), None);
        // diskboot.img strings as GRUB 2.06/2.12 place them (0x11b "loading", 0x128 messages)
        let mut s = [0u8; 512];
        s[..6].copy_from_slice(&[0x52, 0x56, 0xbe, 0x1b, 0x81, 0xe8]);
        s[0x11b..0x123].copy_from_slice(b"loading\0");
        s[0x128..0x139].copy_from_slice(b"Geom\0Read\0 Error\0");
        let d = disk_with(4096, &[(1, s)]);
        assert_eq!(gap_loader(&d, 512, 2048).as_deref(), Some("grub core.img"));
        let mut junk = [0u8; 512];
        junk[511] = 1;
        let d = disk_with(4096, &[(2000, junk)]);
        assert_eq!(gap_loader(&d, 512, 2048).as_deref(), Some("unknown data"));
        assert_eq!(gap_loader(&d, 512, 1999), None, "only the gap is read");
        // a real core.img, when grub-mkimage is installed
        let out = std::env::temp_dir().join(format!("vhdtool-core-{}.img", std::process::id()));
        if have("grub-mkimage", "grub-pc-bin")
            && Command::new("grub-mkimage")
                .args(["-O", "i386-pc", "-p", "/boot/grub", "-o"])
                .arg(&out)
                .args(["biosdisk", "part_msdos", "ext2"])
                .status()
                .map(|s| s.success())
                .unwrap_or(false)
        {
            let core = std::fs::read(&out).unwrap();
            let _ = std::fs::remove_file(&out);
            let mut data = vec![0u8; 4096 * 512];
            data[512..512 + core.len()].copy_from_slice(&core);
            let d = MemDisk::new(data);
            assert_eq!(gap_loader(&d, 512, 2048).as_deref(), Some("grub core.img"));
        }
    }

    #[test]
    fn sfdisk_fixture() {
        if !have("sfdisk", "fdisk") {
            return;
        }
        let path = std::env::temp_dir().join(format!("vhdtool-sfdisk-{}.img", std::process::id()));
        std::fs::write(&path, vec![0u8; 64 << 20]).unwrap();
        let script = "label: dos\nlabel-id: 0x12345678\n\
            start=2048, size=20480, type=7, bootable\n\
            start=22528, size=40960, type=5\n\
            start=24576, size=8192, type=83\n\
            start=34816, size=4096, type=82\n";
        let mut child = Command::new("sfdisk")
            .arg("-q")
            .arg(&path)
            .stdin(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(script.as_bytes())
            .unwrap();
        assert!(child.wait().unwrap().success());
        let bytes = std::fs::read(&path).unwrap();
        let _ = std::fs::remove_file(&path);
        let m = read(&MemDisk::new(bytes.clone()), 512).unwrap().unwrap();
        assert!(m.findings.is_empty(), "{:?}", m.findings);
        assert_eq!(m.disk_signature, 0x1234_5678);
        let p: Vec<_> = m
            .primaries
            .iter()
            .chain(&m.logicals)
            .map(|p| (p.index, p.type_id, p.start_lba, p.sectors))
            .collect();
        assert_eq!(
            p,
            [
                (1, 0x07, 2048, 20480),
                (2, 0x05, 22528, 40960),
                (5, 0x83, 24576, 8192),
                (6, 0x82, 34816, 4096)
            ]
        );
        let raw = RawMbr::from_bytes(&bytes).unwrap();
        let again = raw::encode(&raw.boot_code, m.disk_signature, &m.primaries).unwrap();
        assert_eq!(again.as_slice(), &bytes[..512]);
    }

    /// xorshift64: deterministic pseudo-random bytes for the no-panic loop.
    fn xorshift(state: &mut u64) -> u64 {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        *state
    }

    #[test]
    fn random_disks_never_panic() {
        let mut st = 0x9E37_79B9_7F4A_7C15u64;
        for round in 0..2000 {
            let mut d = vec![0u8; 64 * 1024];
            // sparse random content so tables are plausible: random entries and EBRs
            for _ in 0..64 {
                let at = (xorshift(&mut st) % (d.len() as u64 - 8)) as usize;
                d[at..at + 8].copy_from_slice(&xorshift(&mut st).to_le_bytes());
            }
            for e in 0..4 {
                let at = 0x1BE + 16 * e;
                d[at..at + 8].copy_from_slice(&xorshift(&mut st).to_le_bytes());
                let small = (xorshift(&mut st) % 160) as u32;
                d[at + 8..at + 12].copy_from_slice(&small.to_le_bytes());
                d[at + 4] = [0x05, 0x0F, 0x85, 0x83, 0xEE][(xorshift(&mut st) % 5) as usize];
            }
            for s in 0..128 {
                if round % 2 == 0 || s == 0 {
                    d[s * 512 + 510] = 0x55;
                    d[s * 512 + 511] = 0xAA;
                }
            }
            let disk = MemDisk::new(d);
            let _ = read(&disk, 512);
            let _ = gap_loader(&disk, 512, xorshift(&mut st) % 200);
        }
    }
}
