//! Reading both copies of a GPT: load and check each header and its entry array on its own,
//! pick the copy to trust, and say in findings what is wrong with the other.

use zerocopy::{FromBytes, IntoBytes};

use super::entries::decode_entries;
use super::raw::{self, RawGptHeader, ENTRY_BYTES, HEADER_BYTES, REVISION_1_0, SIGNATURE};
use super::{
    check_sector_bytes, Copy, Geometry, Gpt, GptHeader, Guid, MAX_ENTRY_ARRAY_BYTES,
    MAX_ENTRY_BYTES,
};
use crate::disk::Disk;
use crate::error::Result;
use crate::finding::Finding;

/// One copy (header + array) as loaded from the disk.
enum Loaded {
    /// No "EFI PART" at that LBA (or the LBA is not on the disk).
    NoSignature,
    /// A signature, but the copy is unusable; the header is decoded if it could be.
    Bad { header: GptHeader, reason: String },
    /// Header and array valid.
    Good {
        header: GptHeader,
        array: Vec<u8>,
        notes: Vec<Finding>,
    },
}

/// Read the GPT of a disk with `sector_bytes` sectors. `Ok(None)` when neither the primary nor
/// the backup header carries the "EFI PART" signature. See the module docs for what a damaged
/// table gives.
pub fn read(disk: &dyn Disk, sector_bytes: u32) -> Result<Option<Gpt>> {
    check_sector_bytes(sector_bytes)?;
    let geo = Geometry {
        sector_bytes,
        disk_sectors: disk.len().checked_div(u64::from(sector_bytes)).unwrap_or(0),
    };
    let last_lba = geo.disk_sectors.checked_sub(1);
    let primary = load(disk, geo, 1)?;
    let (backup, backup_lba) = load_backup(disk, geo, &primary, last_lba)?;
    if matches!(
        (&primary, &backup),
        (Loaded::NoSignature, Loaded::NoSignature)
    ) {
        return Ok(None);
    }

    let mut findings = Vec::new();
    let primary_ok = matches!(primary, Loaded::Good { .. });
    let backup_ok = matches!(backup, Loaded::Good { .. });
    copy_findings(&primary, &backup, backup_lba, sector_bytes, &mut findings);
    if let (Loaded::Good { header: p, .. }, Loaded::Good { header: b, .. }) = (&primary, &backup) {
        compare_copies(p, b, &mut findings);
    }
    if let Some(l) = last_lba {
        backup_position(&primary, backup_ok, backup_lba, l, &mut findings);
    }

    let (used, chosen) = match (primary, backup) {
        (p @ Loaded::Good { .. }, _) => (Copy::Primary, p),
        (_, b @ Loaded::Good { .. }) => (Copy::Backup, b),
        (p @ Loaded::Bad { .. }, _) => (Copy::Primary, p),
        (_, b) => (Copy::Backup, b),
    };
    let (header, partitions) = match chosen {
        Loaded::Good {
            header,
            array,
            notes,
        } => {
            findings.extend(notes);
            let partitions = decode_entries(&header, &array, &mut findings);
            (header, partitions)
        }
        Loaded::Bad { header, .. } => (header, Vec::new()),
        // unreachable by the matches above (NoSignature on both returned None); keep it total
        Loaded::NoSignature => return Ok(None),
    };
    Ok(Some(Gpt {
        sector_bytes,
        used,
        header,
        primary_ok,
        backup_ok,
        partitions,
        findings,
    }))
}

/// Load the backup copy and the LBA it was looked for at. Where to look: where a valid
/// primary says, then the last LBA, then where a damaged primary says (a hint only: one more
/// bounded read, validated like any other).
fn load_backup(
    disk: &dyn Disk,
    geo: Geometry,
    primary: &Loaded,
    last_lba: Option<u64>,
) -> Result<(Loaded, u64)> {
    let mut candidates: Vec<u64> = Vec::with_capacity(3);
    if let Loaded::Good { header, .. } = primary {
        candidates.push(header.alternate_lba);
    }
    if let Some(l) = last_lba {
        candidates.push(l);
    }
    if let Loaded::Bad { header, .. } = primary {
        candidates.push(header.alternate_lba);
    }
    candidates.dedup();
    let mut backup = Loaded::NoSignature;
    let mut backup_lba = candidates.first().copied().unwrap_or(0);
    for &lba in candidates.iter().filter(|&&l| l > 1) {
        let b = load(disk, geo, lba)?;
        let good = matches!(b, Loaded::Good { .. });
        if good || matches!(backup, Loaded::NoSignature) {
            backup = b;
            backup_lba = lba;
        }
        if good {
            break;
        }
    }
    Ok((backup, backup_lba))
}

/// Findings about each copy on its own, and about which one the partitions come from.
fn copy_findings(
    primary: &Loaded,
    backup: &Loaded,
    backup_lba: u64,
    sector_bytes: u32,
    findings: &mut Vec<Finding>,
) {
    match primary {
        Loaded::Good { .. } => {}
        Loaded::NoSignature => findings.push(Finding::error(
            "gpt.primary.bad",
            format!(
                "primary GPT header at 0x{:x} (LBA 1): no \"EFI PART\" signature",
                sector_bytes
            ),
        )),
        Loaded::Bad { reason, .. } => findings.push(Finding::error(
            "gpt.primary.bad",
            format!("primary GPT at LBA 1: {reason}"),
        )),
    }
    match backup {
        Loaded::Good { .. } => {}
        Loaded::NoSignature => findings.push(Finding::error(
            "gpt.backup.bad",
            format!("backup GPT header at LBA {backup_lba}: no \"EFI PART\" signature"),
        )),
        Loaded::Bad { reason, .. } => findings.push(Finding::error(
            "gpt.backup.bad",
            format!("backup GPT at LBA {backup_lba}: {reason}"),
        )),
    }
    let primary_ok = matches!(primary, Loaded::Good { .. });
    let backup_ok = matches!(backup, Loaded::Good { .. });
    if primary_ok && !backup_ok {
        findings.push(Finding::info(
            "gpt.using-primary",
            "partitions read from the primary table",
        ));
    }
    if !primary_ok && backup_ok {
        findings.push(Finding::warning(
            "gpt.using-backup",
            format!("partitions read from the backup table at LBA {backup_lba}"),
        ));
    }
}

/// A finding when the trusted backup header is not at the disk's last LBA `last_lba`.
fn backup_position(
    primary: &Loaded,
    backup_ok: bool,
    backup_lba: u64,
    last_lba: u64,
    findings: &mut Vec<Finding>,
) {
    let expected = match (primary, backup_ok) {
        (Loaded::Good { header, .. }, _) => Some(header.alternate_lba),
        (_, true) => Some(backup_lba),
        _ => None,
    };
    if let Some(at) = expected.filter(|&at| at != last_lba) {
        findings.push(Finding::warning(
            "gpt.backup.not-at-end",
            format!(
                "the backup GPT header is at LBA {at}, but the disk's last LBA is {last_lba} (disk resized?)"
            ),
        ));
    }
}

/// Decode the header fields of a sector that starts with "EFI PART"; `None` otherwise.
fn decode_header(sector: &[u8]) -> Option<GptHeader> {
    let (raw, _) = RawGptHeader::read_from_prefix(sector).ok()?;
    if raw.signature != SIGNATURE {
        return None;
    }
    // CRC over header_size bytes when that fits the sector, else over the 92 defined bytes
    let size = usize::try_from(raw.header_size.get()).ok();
    let covered = size
        .and_then(|n| sector.get(..n))
        .filter(|_| raw.header_size.get() >= HEADER_BYTES)
        .unwrap_or_else(|| raw.as_bytes());
    Some(GptHeader {
        revision: raw.revision.get(),
        header_size: raw.header_size.get(),
        header_crc32: raw.header_crc32.get(),
        computed_header_crc32: raw::header_crc32(covered),
        my_lba: raw.my_lba.get(),
        alternate_lba: raw.alternate_lba.get(),
        first_usable_lba: raw.first_usable_lba.get(),
        last_usable_lba: raw.last_usable_lba.get(),
        disk_guid: Guid(raw.disk_guid),
        partition_entry_lba: raw.partition_entry_lba.get(),
        num_partition_entries: raw.num_partition_entries.get(),
        size_of_partition_entry: raw.size_of_partition_entry.get(),
        partition_entry_array_crc32: raw.partition_entry_array_crc32.get(),
        computed_partition_entry_array_crc32: 0,
    })
}

/// Check a header read at `lba` on its own (everything but the array CRC). Returns the array's
/// byte length, or why the header is unusable.
fn validate_header(h: &GptHeader, lba: u64, geo: Geometry) -> std::result::Result<u64, String> {
    let sb = geo.sector_bytes;
    if h.header_size < HEADER_BYTES || h.header_size > sb {
        return Err(format!(
            "header_size is {}, expected {HEADER_BYTES}..={sb}",
            h.header_size
        ));
    }
    if h.header_crc32 != h.computed_header_crc32 {
        return Err(format!(
            "header CRC32 is 0x{:08x}, computed 0x{:08x}",
            h.header_crc32, h.computed_header_crc32
        ));
    }
    if h.my_lba != lba {
        return Err(format!(
            "my_lba is {}, but the header was read at LBA {lba}",
            h.my_lba
        ));
    }
    if h.first_usable_lba > h.last_usable_lba || h.last_usable_lba >= geo.disk_sectors {
        return Err(format!(
            "usable LBAs {}..={} are not an ordered range inside the disk ({} sectors)",
            h.first_usable_lba, h.last_usable_lba, geo.disk_sectors
        ));
    }
    if (h.first_usable_lba..=h.last_usable_lba).contains(&lba) {
        return Err(format!(
            "the header's own LBA {lba} lies inside the usable LBAs {}..={}",
            h.first_usable_lba, h.last_usable_lba
        ));
    }
    let esize = h.size_of_partition_entry;
    if esize < ENTRY_BYTES || !esize.is_power_of_two() || esize > MAX_ENTRY_BYTES {
        return Err(format!(
            "size_of_partition_entry is {esize}, expected 128 * 2^n up to {MAX_ENTRY_BYTES}"
        ));
    }
    let array_bytes = u64::from(h.num_partition_entries).saturating_mul(u64::from(esize));
    if array_bytes > MAX_ENTRY_ARRAY_BYTES {
        return Err(format!(
            "entry array of {} entries x {esize} bytes = {array_bytes} bytes is larger than the {MAX_ENTRY_ARRAY_BYTES} bytes we read",
            h.num_partition_entries
        ));
    }
    let array_sectors = geo.sectors_for(array_bytes).unwrap_or(u64::MAX);
    let array_end = h.partition_entry_lba.checked_add(array_sectors);
    let Some(array_end) = array_end.filter(|&e| e <= geo.disk_sectors) else {
        return Err(format!(
            "entry array at LBA {} ({array_sectors} sectors) does not fit in the disk ({} sectors)",
            h.partition_entry_lba, geo.disk_sectors
        ));
    };
    if array_sectors > 0 {
        let start = h.partition_entry_lba;
        if start <= h.last_usable_lba && h.first_usable_lba < array_end {
            return Err(format!(
                "entry array LBA {start}..{array_end} overlaps the usable LBAs {}..={}",
                h.first_usable_lba, h.last_usable_lba
            ));
        }
        if (start..array_end).contains(&lba) {
            return Err(format!(
                "entry array LBA {start}..{array_end} covers the header's own LBA {lba}"
            ));
        }
    }
    Ok(array_bytes)
}

/// Load and validate the copy whose header is at `lba`.
fn load(disk: &dyn Disk, geo: Geometry, lba: u64) -> Result<Loaded> {
    let sb = u64::from(geo.sector_bytes);
    let Some(offset) = geo.offset(lba).filter(|_| lba < geo.disk_sectors) else {
        return Ok(Loaded::NoSignature);
    };
    let sector = disk.read_vec(offset, sb)?;
    let Some(mut header) = decode_header(&sector) else {
        return Ok(Loaded::NoSignature);
    };
    let array_bytes = match validate_header(&header, lba, geo) {
        Ok(n) => n,
        Err(reason) => {
            return Ok(Loaded::Bad {
                header,
                reason: format!("header at 0x{offset:x}: {reason}"),
            })
        }
    };
    // in range: validate_header checked the array lies inside the disk
    let array_offset = geo.offset(header.partition_entry_lba).unwrap_or(u64::MAX);
    let array = disk.read_vec(array_offset, array_bytes)?;
    header.computed_partition_entry_array_crc32 = crc32fast::hash(&array);
    if header.computed_partition_entry_array_crc32 != header.partition_entry_array_crc32 {
        let reason = format!(
            "entry array at 0x{array_offset:x}: CRC32 is 0x{:08x}, computed 0x{:08x}",
            header.partition_entry_array_crc32, header.computed_partition_entry_array_crc32
        );
        return Ok(Loaded::Bad { header, reason });
    }
    let mut notes = Vec::new();
    if header.revision != REVISION_1_0 {
        notes.push(Finding::warning(
            "gpt.header.revision",
            format!(
                "GPT header at LBA {lba}: revision is 0x{:08x}, expected 0x{REVISION_1_0:08x}",
                header.revision
            ),
        ));
    }
    if header.size_of_partition_entry != ENTRY_BYTES {
        let severity_warn = header.size_of_partition_entry > geo.sector_bytes;
        let msg = format!(
            "GPT header at LBA {lba}: entries are {} bytes (128 is usual{})",
            header.size_of_partition_entry,
            if severity_warn {
                "; larger than a sector"
            } else {
                ""
            }
        );
        notes.push(if severity_warn {
            Finding::warning("gpt.entry-size", msg)
        } else {
            Finding::info("gpt.entry-size", msg)
        });
    }
    Ok(Loaded::Good {
        header,
        array,
        notes,
    })
}

/// Findings when two valid copies disagree.
fn compare_copies(p: &GptHeader, b: &GptHeader, findings: &mut Vec<Finding>) {
    let mut diffs = Vec::new();
    if p.alternate_lba != b.my_lba {
        diffs.push(format!(
            "primary alternate_lba {} vs backup at LBA {}",
            p.alternate_lba, b.my_lba
        ));
    }
    if b.alternate_lba != p.my_lba {
        diffs.push(format!(
            "backup alternate_lba is {}, expected 1",
            b.alternate_lba
        ));
    }
    if p.disk_guid != b.disk_guid {
        diffs.push(format!("disk GUID {} vs {}", p.disk_guid, b.disk_guid));
    }
    if (p.first_usable_lba, p.last_usable_lba) != (b.first_usable_lba, b.last_usable_lba) {
        diffs.push(format!(
            "usable LBAs {}..={} vs {}..={}",
            p.first_usable_lba, p.last_usable_lba, b.first_usable_lba, b.last_usable_lba
        ));
    }
    if (p.num_partition_entries, p.size_of_partition_entry)
        != (b.num_partition_entries, b.size_of_partition_entry)
    {
        diffs.push(format!(
            "entries {} x {} vs {} x {}",
            p.num_partition_entries,
            p.size_of_partition_entry,
            b.num_partition_entries,
            b.size_of_partition_entry
        ));
    }
    if p.partition_entry_array_crc32 != b.partition_entry_array_crc32 {
        diffs.push(format!(
            "entry array CRC32 0x{:08x} vs 0x{:08x}",
            p.partition_entry_array_crc32, b.partition_entry_array_crc32
        ));
    }
    if !diffs.is_empty() {
        findings.push(Finding::error(
            "gpt.copies.differ",
            format!(
                "primary and backup GPT disagree: {}; the primary is used",
                diffs.join("; ")
            ),
        ));
    }
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
    use crate::gpt::raw::RawGptEntry;
    use crate::gpt::*;
    use std::process::Command;
    use zerocopy::little_endian::{U16, U32, U64};

    const MIB: u64 = 1 << 20;

    fn part(index: u32, type_guid: Guid, first: u64, last: u64, name: &str) -> GptPartition {
        GptPartition {
            index,
            type_guid,
            type_name: type_name(&type_guid),
            unique_guid: Guid::name_based(Guid::NIL, format!("part {index}").as_bytes()),
            first_lba: first,
            last_lba: last,
            attributes: if index == 3 { 0x8000_0000_0000_0001 } else { 0 },
            name: name.to_string(),
        }
    }

    fn sample_parts(sb: u32) -> Vec<GptPartition> {
        let s = MIB / sb as u64; // sectors per MiB
        vec![
            part(1, guid::ESP, s, 3 * s - 1, "EFI system partition"),
            part(2, guid::BASIC_DATA, 3 * s, 10 * s - 1, "Basic data"),
            part(3, guid::WINRE, 10 * s, 12 * s - 1, "Récupération ✓"),
        ]
    }

    /// A disk of `disk_sectors` sectors with a protective MBR and an encoded GPT.
    fn disk(sb: u32, disk_sectors: u64, parts: &[GptPartition]) -> Vec<u8> {
        let img = encode(
            Guid::name_based(Guid::NIL, b"disk"),
            parts,
            128,
            sb,
            disk_sectors,
        )
        .unwrap();
        let mut d = vec![0u8; (disk_sectors * sb as u64) as usize];
        d[..512].copy_from_slice(&crate::mbr::protective_mbr(&[0; 440], disk_sectors));
        let p = sb as usize;
        d[p..p + img.primary.len()].copy_from_slice(&img.primary);
        let b = (img.backup_entries_lba * sb as u64) as usize;
        d[b..b + img.backup.len()].copy_from_slice(&img.backup);
        d
    }

    fn ids(g: &Gpt) -> Vec<&'static str> {
        g.findings.iter().map(|f| f.id).collect()
    }

    fn header_at(d: &mut [u8], sb: u32, lba: u64) -> &mut RawGptHeader {
        let at = (lba * sb as u64) as usize;
        RawGptHeader::mut_from_prefix(&mut d[at..]).unwrap().0
    }

    /// Change a header field and fix its CRC.
    fn patch_header(d: &mut [u8], sb: u32, lba: u64, f: impl FnOnce(&mut RawGptHeader)) {
        let h = header_at(d, sb, lba);
        f(h);
        let size = (h.header_size.get() as usize).clamp(92, sb as usize);
        let at = (lba * sb as u64) as usize;
        let crc = raw::header_crc32(&d[at..at + size]);
        header_at(d, sb, lba).header_crc32 = U32::new(crc);
    }

    /// Change entry `index` of the copy whose header is at `lba` and fix both CRCs.
    fn patch_entry(
        d: &mut [u8],
        sb: u32,
        lba: u64,
        index: usize,
        f: impl FnOnce(&mut RawGptEntry),
    ) {
        let h = *header_at(d, sb, lba);
        let start = (h.partition_entry_lba.get() * sb as u64) as usize;
        let esize = h.size_of_partition_entry.get() as usize;
        let at = start + (index - 1) * esize;
        f(RawGptEntry::mut_from_prefix(&mut d[at..]).unwrap().0);
        let len = h.num_partition_entries.get() as usize * esize;
        let crc = crc32fast::hash(&d[start..start + len]);
        patch_header(d, sb, lba, |h| {
            h.partition_entry_array_crc32 = U32::new(crc)
        });
    }

    fn read_vec(d: Vec<u8>, sb: u32) -> Option<Gpt> {
        read(&MemDisk::new(d), sb).unwrap()
    }

    #[test]
    fn encode_read_round_trip() {
        for sb in [512u32, 4096] {
            let sectors = 16 * MIB / sb as u64;
            let parts = sample_parts(sb);
            let g = read_vec(disk(sb, sectors, &parts), sb).unwrap();
            assert!(g.findings.is_empty(), "{:?}", g.findings);
            assert!(g.primary_ok && g.backup_ok);
            assert_eq!(g.used, Copy::Primary);
            assert_eq!(g.partitions, parts);
            let h = &g.header;
            let array_sectors = 16384 / sb as u64;
            assert_eq!(h.first_usable_lba, 2 + array_sectors);
            assert_eq!(h.last_usable_lba, sectors - 2 - array_sectors);
            assert_eq!(h.alternate_lba, sectors - 1);
            assert_eq!(h.partition_entry_lba, 2);
            assert_eq!(g.partitions[2].type_name, Some("Windows RE"));
        }
        assert_eq!(usable_lbas(128, 512, 32768).unwrap(), (34, 32734));
    }

    #[test]
    fn encode_rejects_bad_input() {
        let sb = 512;
        let n = 32768;
        let g = Guid::name_based(Guid::NIL, b"d");
        let ok = part(1, guid::LINUX_FS, 2048, 4095, "x");
        let cases = [
            vec![GptPartition {
                type_guid: Guid::NIL,
                ..ok.clone()
            }],
            vec![GptPartition {
                first_lba: 33,
                ..ok.clone()
            }],
            vec![GptPartition {
                last_lba: 32735,
                ..ok.clone()
            }],
            vec![GptPartition {
                first_lba: 5000,
                ..ok.clone()
            }],
            vec![GptPartition {
                index: 0,
                ..ok.clone()
            }],
            vec![GptPartition {
                index: 129,
                ..ok.clone()
            }],
            vec![GptPartition {
                name: "n".repeat(37),
                ..ok.clone()
            }],
            vec![GptPartition {
                name: "a\0b".into(),
                ..ok.clone()
            }],
            vec![
                ok.clone(),
                GptPartition {
                    index: 2,
                    first_lba: 4095,
                    last_lba: 5000,
                    ..ok.clone()
                },
            ],
            vec![
                ok.clone(),
                GptPartition {
                    first_lba: 8192,
                    last_lba: 9000,
                    ..ok.clone()
                },
            ],
        ];
        for c in &cases {
            assert!(encode(g, c, 128, sb, n).is_err(), "{c:?}");
        }
        assert!(encode(g, std::slice::from_ref(&ok), 127, sb, n).is_err());
        assert!(encode(g, std::slice::from_ref(&ok), u32::MAX, sb, n).is_err());
        assert!(encode(g, std::slice::from_ref(&ok), 128, 1000, n).is_err());
        assert!(encode(g, &[], 128, sb, 60).is_err());
        assert!(encode(
            g,
            &[GptPartition {
                name: "n".repeat(36),
                ..ok
            }],
            128,
            sb,
            n
        )
        .is_ok());
    }

    #[test]
    fn no_gpt() {
        assert!(read_vec(vec![0; 1 << 16], 512).is_none());
        assert!(read_vec(vec![0; 100], 512).is_none());
        assert!(read_vec(vec![], 4096).is_none());
        assert!(read(&MemDisk::new(vec![0; 4096]), 520).is_err());
    }

    #[test]
    fn bad_primary_header_crc_uses_backup() {
        let mut d = disk(512, 32768, &sample_parts(512));
        d[512 + 0x20] ^= 1; // alternate_lba, CRC not fixed
        let g = read_vec(d, 512).unwrap();
        assert!(!g.primary_ok && g.backup_ok);
        assert_eq!(g.used, Copy::Backup);
        assert_eq!(g.partitions, sample_parts(512));
        assert_eq!(ids(&g), ["gpt.primary.bad", "gpt.using-backup"]);
        assert!(
            g.findings[0].message.contains("CRC32"),
            "{}",
            g.findings[0].message
        );
        assert_eq!(g.header.my_lba, 32767);
    }

    #[test]
    fn bad_entries_crc() {
        let mut d = disk(512, 32768, &sample_parts(512));
        d[1024 + 0x38] ^= 1; // first entry's name, array CRC not fixed
        let g = read_vec(d.clone(), 512).unwrap();
        assert_eq!(g.used, Copy::Backup);
        assert!(
            g.findings[0].message.contains("entry array"),
            "{:?}",
            g.findings
        );
        // the backup's array damaged instead
        let mut d = disk(512, 32768, &sample_parts(512));
        let b = (32768 - 33) * 512;
        d[b] ^= 1;
        let g = read_vec(d, 512).unwrap();
        assert!(g.primary_ok && !g.backup_ok);
        assert_eq!(ids(&g), ["gpt.backup.bad", "gpt.using-primary"]);
    }

    #[test]
    fn hostile_sizes() {
        let base = disk(512, 32768, &sample_parts(512));
        type Patch = fn(&mut RawGptHeader);
        let cases: [(Patch, &str); 7] = [
            (
                |h| h.num_partition_entries = U32::new(u32::MAX),
                "entry array",
            ),
            (
                |h| h.size_of_partition_entry = U32::new(0),
                "size_of_partition_entry",
            ),
            (
                |h| h.size_of_partition_entry = U32::new(100),
                "size_of_partition_entry",
            ),
            (
                |h| h.size_of_partition_entry = U32::new(8192),
                "size_of_partition_entry",
            ),
            (|h| h.header_size = U32::new(0), "header_size"),
            (|h| h.header_size = U32::new(10000), "header_size"),
            (|h| h.last_usable_lba = U64::new(u64::MAX), "usable"),
        ];
        for (f, word) in cases {
            let mut d = base.clone();
            patch_header(&mut d, 512, 1, f);
            let g = read_vec(d.clone(), 512).unwrap();
            assert!(!g.primary_ok && g.backup_ok, "{word}");
            assert!(g.findings[0].message.contains(word), "{:?}", g.findings);
            // both copies broken: still Some, nothing trusted
            patch_header(&mut d, 512, 32767, f);
            let g = read_vec(d, 512).unwrap();
            assert!(!g.primary_ok && !g.backup_ok && g.partitions.is_empty());
            assert_eq!(ids(&g), ["gpt.primary.bad", "gpt.backup.bad"]);
        }
        // more entries than the disk holds, within the read cap
        let mut d = base.clone();
        patch_header(&mut d, 512, 1, |h| h.num_partition_entries = U32::new(8192));
        let g = read_vec(d, 512).unwrap();
        assert!(
            !g.primary_ok,
            "8192 entries at LBA 2 overlap the usable LBAs"
        );
        // my_lba wrong
        let mut d = base;
        patch_header(&mut d, 512, 1, |h| h.my_lba = U64::new(2));
        assert!(read_vec(d, 512).unwrap().findings[0]
            .message
            .contains("my_lba"));
    }

    #[test]
    fn large_entries_are_accepted_with_a_finding() {
        // 4 entries of 4096 bytes = 16 KiB: same array sectors as 128 x 128
        let mut d = disk(512, 32768, &sample_parts(512));
        let mut array = vec![0u8; 16384];
        for i in 0..3 {
            array[i * 4096..i * 4096 + 128]
                .copy_from_slice(&d[1024 + i * 128..1024 + (i + 1) * 128]);
        }
        let crc = crc32fast::hash(&array);
        for (hdr, arr) in [(1u64, 2u64), (32767, 32735)] {
            d[arr as usize * 512..arr as usize * 512 + 16384].copy_from_slice(&array);
            patch_header(&mut d, 512, hdr, |h| {
                h.size_of_partition_entry = U32::new(4096);
                h.num_partition_entries = U32::new(4);
                h.partition_entry_array_crc32 = U32::new(crc);
            });
        }
        let g = read_vec(d, 512).unwrap();
        assert!(g.primary_ok && g.backup_ok);
        assert_eq!(g.partitions, sample_parts(512));
        assert_eq!(ids(&g), ["gpt.entry-size"]);
    }

    #[test]
    fn entry_findings() {
        let mut d = disk(512, 32768, &sample_parts(512));
        for lba in [1, 32767] {
            patch_entry(&mut d, 512, lba, 2, |e| e.starting_lba = U64::new(4000)); // overlaps 1
            patch_entry(&mut d, 512, lba, 3, |e| e.ending_lba = U64::new(40000)); // outside
            patch_entry(&mut d, 512, lba, 5, |e| {
                e.partition_type_guid = guid::LINUX_FS.0;
                e.starting_lba = U64::new(100);
                e.ending_lba = U64::new(50); // reversed
            });
            patch_entry(&mut d, 512, lba, 6, |e| {
                e.partition_type_guid = guid::LINUX_FS.0;
                e.starting_lba = U64::new(1000);
                e.ending_lba = U64::new(1001);
                e.partition_name[0] = U16::new(0xD800); // lone surrogate
                e.partition_name[1] = U16::new(u16::from(b'z'));
            });
            patch_header(&mut d, 512, lba, |h| h.revision = U32::new(0x0002_0000));
        }
        let g = read_vec(d, 512).unwrap();
        assert!(g.primary_ok && g.backup_ok);
        let mut f = ids(&g);
        f.sort();
        assert_eq!(
            f,
            [
                "gpt.header.revision",
                "gpt.partition.outside-usable",
                "gpt.partition.overlap",
                "gpt.partition.reversed"
            ]
        );
        assert_eq!(g.partitions.len(), 5);
        assert_eq!(g.partitions[4].name, "\u{FFFD}z");
        assert_eq!(g.partitions[3].sectors(), 0);
        assert_eq!(g.partitions[3].lba_range(), None, "reversed entry");
        for p in &g.partitions[..3] {
            let r = p.lba_range().unwrap();
            assert_eq!((r.first().get(), r.last().get()), (p.first_lba, p.last_lba));
            assert_eq!(r.sectors(), p.sectors());
        }
    }

    #[test]
    fn resized_disk_and_differing_copies() {
        // a GPT made for 32768 sectors on a disk grown to 40000: backup found where the
        // primary says, with a finding
        let mut d = disk(512, 32768, &sample_parts(512));
        d.resize(40000 * 512, 0);
        let g = read_vec(d.clone(), 512).unwrap();
        assert!(g.primary_ok && g.backup_ok);
        assert_eq!(ids(&g), ["gpt.backup.not-at-end"]);
        // the primary's CRC damaged too: its alternate_lba is still tried as a hint
        d[512 + 0x30] ^= 1;
        let g = read_vec(d.clone(), 512).unwrap();
        assert_eq!(g.used, Copy::Backup);
        assert_eq!(g.partitions, sample_parts(512));
        assert_eq!(
            ids(&g),
            [
                "gpt.primary.bad",
                "gpt.using-backup",
                "gpt.backup.not-at-end"
            ]
        );
        // without a primary signature there is nothing to say where the backup is
        d[512] = 0;
        assert!(read_vec(d, 512).is_none());
        // copies with different disk GUIDs
        let mut d = disk(512, 32768, &sample_parts(512));
        patch_header(&mut d, 512, 32767, |h| h.disk_guid = [7; 16]);
        let g = read_vec(d, 512).unwrap();
        assert_eq!(ids(&g), ["gpt.copies.differ"]);
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

    fn temp(name: &str) -> std::path::PathBuf {
        std::env::temp_dir().join(format!("vhdtool-gpt-{}-{name}.img", std::process::id()))
    }

    #[test]
    fn sgdisk_accepts_our_gpt() {
        if !have("sgdisk", "gdisk") {
            return;
        }
        for sb in [512u32, 4096] {
            let path = temp(&format!("verify{sb}"));
            std::fs::write(&path, disk(sb, 16 * MIB / sb as u64, &sample_parts(sb))).unwrap();
            let out = Command::new("sgdisk")
                .arg("-v")
                .arg(&path)
                .output()
                .unwrap();
            let text = String::from_utf8_lossy(&out.stdout);
            let _ = std::fs::remove_file(&path);
            if sb == 512 {
                assert!(text.contains("No problems found"), "{text}");
            } else {
                // sgdisk takes a regular file to have 512-byte sectors: it must find no GPT
                // damage other than the sector-size mismatch
                assert!(!text.contains("CRC"), "{text}");
            }
        }
    }

    #[test]
    fn sgdisk_fixture() {
        if !have("sgdisk", "gdisk") {
            return;
        }
        let path = temp("fixture");
        std::fs::write(&path, vec![0u8; (32 * MIB) as usize]).unwrap();
        let st = Command::new("sgdisk")
            .args([
                "-n",
                "1:2048:+1M",
                "-t",
                "1:ef00",
                "-c",
                "1:EFI system partition",
            ])
            .args(["-n", "2:0:+8M", "-t", "2:0700", "-c", "2:data"])
            .args([
                "-n",
                "5:0:0",
                "-t",
                "5:8300",
                "-u",
                "5:01234567-89ab-cdef-0123-456789abcdef",
            ])
            .arg("-U")
            .arg("aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee")
            .arg(&path)
            .output()
            .unwrap();
        assert!(st.status.success(), "{st:?}");
        let bytes = std::fs::read(&path).unwrap();
        let _ = std::fs::remove_file(&path);
        let g = read_vec(bytes.clone(), 512).unwrap();
        assert!(g.findings.is_empty(), "{:?}", g.findings);
        assert_eq!(
            g.header.disk_guid.to_string(),
            "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"
        );
        let p: Vec<_> = g
            .partitions
            .iter()
            .map(|p| {
                (
                    p.index,
                    p.type_name,
                    p.first_lba,
                    p.last_lba,
                    p.name.as_str(),
                )
            })
            .collect();
        assert_eq!(
            p,
            [
                (
                    1,
                    Some("EFI system partition"),
                    2048,
                    4095,
                    "EFI system partition"
                ),
                (2, Some("Microsoft basic data"), 4096, 20479, "data"),
                (5, Some("Linux filesystem"), 20480, 65502, ""),
            ]
        );
        assert_eq!(
            g.partitions[2].unique_guid.to_string(),
            "01234567-89ab-cdef-0123-456789abcdef"
        );
        // re-encoding gdisk's table gives gdisk's bytes
        let img = encode(g.header.disk_guid, &g.partitions, 128, 512, 65536).unwrap();
        assert_eq!(img.primary.as_slice(), &bytes[512..512 * 34]);
        assert_eq!(img.backup.as_slice(), &bytes[512 * (65536 - 33)..]);
        let m = crate::mbr::read(&MemDisk::new(bytes), 512)
            .unwrap()
            .unwrap();
        assert!(m.protective && !m.is_hybrid() && m.findings.is_empty());
    }

    fn xorshift(state: &mut u64) -> u64 {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        *state
    }

    #[test]
    fn random_disks_never_panic() {
        // 64 KiB disks: a valid GPT with random bytes changed, CRCs fixed in half the rounds,
        // and pure noise with the signatures in place
        let mut st = 0x2545_F491_4F6C_DD1Du64;
        let parts = [part(1, guid::LINUX_FS, 40, 90, "p")];
        let valid = disk(512, 128, &parts);
        for round in 0..3000 {
            let mut d = valid.clone();
            if round % 3 == 0 {
                for chunk in d.chunks_mut(8) {
                    chunk.copy_from_slice(&xorshift(&mut st).to_le_bytes()[..chunk.len()]);
                }
                d[512..520].copy_from_slice(&SIGNATURE);
                d[127 * 512..127 * 512 + 8].copy_from_slice(&SIGNATURE);
            }
            for _ in 0..(1 + xorshift(&mut st) % 8) {
                // mostly the headers and the first entries
                let at = match xorshift(&mut st) % 4 {
                    0 => 512 + (xorshift(&mut st) % 92) as usize,
                    1 => 127 * 512 + (xorshift(&mut st) % 92) as usize,
                    2 => 1024 + (xorshift(&mut st) % 256) as usize,
                    _ => (xorshift(&mut st) % d.len() as u64) as usize,
                };
                d[at] = xorshift(&mut st) as u8;
            }
            if round % 2 == 0 {
                for lba in [1u64, 127] {
                    let h = *header_at(&mut d, 512, lba);
                    let start = h.partition_entry_lba.get().saturating_mul(512);
                    let len = u64::from(h.num_partition_entries.get())
                        .saturating_mul(u64::from(h.size_of_partition_entry.get()));
                    if let Some(a) = d.get(start as usize..start.saturating_add(len) as usize) {
                        let crc = crc32fast::hash(a);
                        header_at(&mut d, 512, lba).partition_entry_array_crc32 = U32::new(crc);
                    }
                    patch_header(&mut d, 512, lba, |_| {});
                }
            }
            let disk = MemDisk::new(d);
            for sb in [512, 4096] {
                if let Ok(Some(g)) = read(&disk, sb) {
                    // whatever was trusted re-encodes or is refused, without panicking
                    let _ = encode(g.header.disk_guid, &g.partitions, 128, 512, 128);
                }
            }
        }
    }
}
