//! The layout checks `validate` runs, each a small function: it records its verdict (a stable
//! id, what was found, and on failure the fix and the kind of refusal) and hands what it learned
//! to the next.

use serde::Serialize;

use crate::disk::{Disk, Window};
use crate::error::ErrorKind;
use crate::finding::{Finding, Severity};
use crate::gpt::{self, Guid};
use crate::info::{AZURE_GEN2_OS_MAX_BYTES, AZURE_MAX_BYTES, AZURE_MIN_BYTES};
use crate::mbr::{Mbr, MbrPartition};
use crate::table::{TableKind, Tables};
use crate::units::MIB;
use crate::vhd::{self, Format};

use super::options::Options;

/// GPT partition entries we write (the UEFI minimum array is 16 KiB: 128 entries of 128 bytes).
pub const GPT_ENTRIES: u32 = 128;
/// Size of one GPT partition entry we write.
pub const GPT_ENTRY_BYTES: u32 = 128;
/// MBR2GPT's attributes for WinRE: PLATFORM_REQUIRED (bit 0) | NO_DRIVE_LETTER (bit 63).
pub const WINRE_ATTRIBUTES: u64 = 1 | (1 << 63);

/// The outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckStatus {
    Pass,
    Warn,
    Fail,
}

/// One layout check, as `validate` prints it.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub id: &'static str,
    pub status: CheckStatus,
    /// What was found (on a pass, too: "first partition starts at LBA 2048").
    pub detail: String,
    /// How to get past a failure.
    pub fix: Option<String>,
    /// What kind of refusal a failure is (decides `convert`'s exit code).
    #[serde(skip)]
    pub kind: ErrorKind,
}

/// The checks recorded so far, in order.
#[derive(Debug, Default)]
pub struct Checks(pub Vec<Check>);

impl Checks {
    pub fn pass(&mut self, id: &'static str, detail: impl Into<String>) {
        self.push(
            id,
            CheckStatus::Pass,
            detail.into(),
            None,
            ErrorKind::InvalidInput,
        );
    }
    pub fn warn(&mut self, id: &'static str, detail: impl Into<String>, fix: Option<String>) {
        self.push(
            id,
            CheckStatus::Warn,
            detail.into(),
            fix,
            ErrorKind::InvalidInput,
        );
    }
    pub fn fail(&mut self, id: &'static str, detail: impl Into<String>, fix: impl Into<String>) {
        self.fail_as(ErrorKind::InvalidInput, id, detail, fix);
    }
    pub fn fail_as(
        &mut self,
        kind: ErrorKind,
        id: &'static str,
        detail: impl Into<String>,
        fix: impl Into<String>,
    ) {
        self.push(id, CheckStatus::Fail, detail.into(), Some(fix.into()), kind);
    }
    fn push(
        &mut self,
        id: &'static str,
        status: CheckStatus,
        detail: String,
        fix: Option<String>,
        kind: ErrorKind,
    ) {
        self.0.push(Check {
            id,
            status,
            detail,
            fix,
            kind,
        });
    }
    pub fn failed(&self) -> bool {
        self.0.iter().any(|k| k.status == CheckStatus::Fail)
    }
}

/// The GPT type for an MBR type (MBR2GPT's and gdisk's mapping), and the attributes it gets.
pub fn map_type(t: u8, maps: &[(u8, Guid)]) -> Option<(Guid, u64)> {
    if let Some((_, g)) = maps.iter().find(|(m, _)| *m == t) {
        return Some((*g, 0));
    }
    Some(match t {
        0x07 | 0x01 | 0x04 | 0x06 | 0x0b | 0x0c | 0x0e => (gpt::guid::BASIC_DATA, 0),
        0x27 => (gpt::guid::WINRE, WINRE_ATTRIBUTES),
        0x83 => (gpt::guid::LINUX_FS, 0),
        0x82 => (gpt::guid::LINUX_SWAP, 0),
        0x8e => (gpt::guid::LINUX_LVM, 0),
        0xfd => (gpt::guid::LINUX_RAID, 0),
        0xef => (gpt::guid::ESP, 0),
        _ => return None,
    })
}

/// The last LBA of an MBR partition (inclusive).
pub fn last_lba(p: &MbrPartition) -> u64 {
    p.start_lba.saturating_add(p.sectors).saturating_sub(1)
}

/// `image.footer` and `layout.sector-size`: what container the image is, and its sector size.
pub fn container(c: &mut Checks, file: &dyn Disk, opts: &Options) -> Option<(vhd::Image, u32)> {
    let image = vhd::probe(file);
    match (image.format, &image.footer) {
        (Format::VhdFixed, Some(f)) if f.checksum != f.computed_checksum => c.fail_as(
            ErrorKind::Corrupt,
            "image.footer",
            format!("VHD footer checksum is 0x{:08x}, computed 0x{:08x}", f.checksum, f.computed_checksum),
            "repair the footer (qemu-img convert -f vpc -O vpc -o subformat=fixed,force_size=on IN OUT.vhd rewrites it) and check the image",
        ),
        (Format::VhdFixed, Some(f)) if f.current_size != image.data_bytes => c.fail_as(
            ErrorKind::Corrupt,
            "image.footer",
            format!(
                "VHD footer says {} bytes of disk, the file holds {} bytes before the footer",
                f.current_size, image.data_bytes
            ),
            "the file was truncated or extended behind the footer's back; restore it from its source",
        ),
        (Format::VhdFixed, Some(f)) => c.pass(
            "image.footer",
            format!("fixed VHD, footer valid, {} bytes of disk", f.current_size),
        ),
        (Format::Raw, _) => c.pass(
            "image.footer",
            format!("raw disk image, {} bytes", image.data_bytes),
        ),
        (fmt, _) => {
            c.fail_as(
                ErrorKind::Unsupported,
                "image.footer",
                format!("this is a {} VHD; vhdtool converts fixed VHDs and raw images", if fmt == Format::VhdDynamic { "dynamic" } else { "differencing" }),
                "make it fixed first: qemu-img convert -f vpc -O vpc -o subformat=fixed,force_size=on IN.vhd FIXED.vhd",
            );
            return None;
        }
    }
    let sb = match (image.format, opts.sector_bytes) {
        (Format::VhdFixed, Some(s)) if s != 512 => {
            c.fail(
                "layout.sector-size",
                format!("a VHD has 512-byte sectors, --sector-size {s} was given"),
                "leave --sector-size out for VHDs",
            );
            return None;
        }
        (_, Some(s)) => s,
        (_, None) => 512,
    };
    if sb != 512 && sb != 4096 {
        c.fail(
            "layout.sector-size",
            format!("sector size {sb} bytes"),
            "use 512 or 4096",
        );
        return None;
    }
    c.pass("layout.sector-size", format!("{sb}-byte sectors"));
    Some((image, sb))
}

/// What `table.mbr` found.
pub enum TableVerdict {
    /// Already GPT: nothing to convert.
    AlreadyGpt,
    /// No MBR to convert (the check failed).
    Refused,
    /// An MBR.
    Mbr,
}

/// `table.mbr` and `table.consistent`; the table's findings that are not errors become notes.
pub fn table(c: &mut Checks, notes: &mut Vec<Finding>, tables: &Tables) -> TableVerdict {
    match tables.kind {
        TableKind::Gpt | TableKind::Hybrid => {
            c.pass(
                "table.mbr",
                "the disk already has a GUID partition table: nothing to convert",
            );
            return TableVerdict::AlreadyGpt;
        }
        TableKind::None => {
            c.fail(
                "table.mbr",
                "no MBR partition table (no 0x55AA signature, or no partitions)",
                "vhdtool converts MBR-partitioned disks; partition the disk first",
            );
            return TableVerdict::Refused;
        }
        TableKind::Mbr => {}
    }
    let Some(m) = tables.mbr.as_ref() else {
        c.fail(
            "table.mbr",
            "MBR unreadable",
            "check the image with vhdtool info",
        );
        return TableVerdict::Refused;
    };
    c.pass(
        "table.mbr",
        format!("MBR, disk signature 0x{:08x}", m.disk_signature),
    );
    let errors: Vec<String> = tables
        .findings
        .iter()
        .filter(|f| f.severity == Severity::Error)
        .map(|f| format!("{} ({})", f.message, f.id))
        .collect();
    if errors.is_empty() {
        c.pass("table.consistent", "partition entries are consistent");
    } else if tables.io_error {
        c.fail_as(ErrorKind::Io, "table.consistent", errors.join("; "), "the image could not be read (cut short or changed while vhdtool read it?): check the file and its storage, then run the command again");
    } else {
        c.fail_as(ErrorKind::Corrupt, "table.consistent", errors.join("; "), "repair the partition table (fdisk/sfdisk) so that every partition lies inside the disk and none overlap");
    }
    notes.extend(
        tables
            .findings
            .iter()
            .filter(|f| f.severity != Severity::Error)
            .cloned(),
    );
    TableVerdict::Mbr
}

/// `table.partitions`, `layout.inside-disk`, `layout.no-overlap`, `layout.extended`: the data
/// partitions (primaries and logicals, not the extended container), or `None` when there are
/// none.
pub fn partitions<'a>(
    c: &mut Checks,
    m: &'a Mbr,
    total_sectors: u64,
) -> Option<Vec<&'a MbrPartition>> {
    let parts: Vec<&MbrPartition> = m
        .primaries
        .iter()
        .chain(m.logicals.iter())
        .filter(|p| !p.extended && p.sectors > 0 && p.type_id != 0)
        .collect();
    if parts.is_empty() {
        c.fail(
            "table.partitions",
            "the MBR holds no partitions",
            "nothing to convert",
        );
        return None;
    }
    let outside: Vec<String> = parts
        .iter()
        .filter(|p| last_lba(p) >= total_sectors)
        .map(|p| format!("partition {} ends at LBA {}", p.index, last_lba(p)))
        .collect();
    if outside.is_empty() {
        c.pass(
            "layout.inside-disk",
            format!(
                "all {} partitions lie inside the disk ({} sectors)",
                parts.len(),
                total_sectors
            ),
        );
    } else {
        c.fail(
            "layout.inside-disk",
            format!(
                "{} but the disk has {} sectors",
                outside.join(", "),
                total_sectors
            ),
            "the image is truncated or the table is wrong; restore the image from its source",
        );
    }
    let mut spans: Vec<(u64, u64, u32)> = parts
        .iter()
        .map(|p| (p.start_lba, last_lba(p), p.index))
        .collect();
    spans.sort_unstable();
    let overlaps: Vec<String> = spans
        .windows(2)
        .filter_map(|w| match w {
            [a, b] if b.0 <= a.1 => Some(format!("partitions {} and {} overlap", a.2, b.2)),
            _ => None,
        })
        .collect();
    if overlaps.is_empty() {
        c.pass("layout.no-overlap", "no partitions overlap");
    } else {
        c.fail(
            "layout.no-overlap",
            overlaps.join(", "),
            "repair the partition table: overlapping partitions cannot be converted safely",
        );
    }
    if m.logicals.is_empty() {
        c.pass("layout.extended", "no extended partition");
    } else {
        c.warn(
            "layout.extended",
            format!("{} logical partitions in an extended partition become ordinary GPT entries (MBR2GPT refuses them)", m.logicals.len()),
            None,
        );
    }
    Some(parts)
}

/// `types.known` and `types.existing-esp`: the GPT type of each partition (in `parts` order)
/// when every type is known.
pub fn types(c: &mut Checks, parts: &[&MbrPartition], maps: &[(u8, Guid)]) -> Vec<(Guid, u64)> {
    let mut gpt_types = Vec::new();
    let mut unknown = Vec::new();
    for p in parts {
        match map_type(p.type_id, maps) {
            Some(t) => gpt_types.push(t),
            None => unknown.push(format!(
                "partition {} has type 0x{:02x}",
                p.index, p.type_id
            )),
        }
    }
    if unknown.is_empty() {
        c.pass("types.known", "every partition type has a GPT equivalent");
    } else {
        c.fail("types.known", unknown.join(", "), "name the GPT type for it: --map 0xNN=<type GUID> (for example --map 0x12=ebd0a0a2-b9e5-4433-87c0-68b6b72699c7)");
    }
    if parts.iter().any(|p| p.type_id == 0xef) {
        c.fail(
            "types.existing-esp",
            "an MBR partition of type 0xEF (EFI system) already exists",
            "vhdtool creates the ESP itself; remove or retype the existing 0xEF partition first",
        );
    }
    gpt_types
}

/// Where the GPT goes: sectors of its entry array and the first usable LBA.
#[derive(Debug, Clone, Copy)]
pub struct GptGeometry {
    pub array_sectors: u64,
    pub first_usable: u64,
    /// Where the first partition starts today.
    pub first_start: u64,
}

/// `layout.primary-gpt-room` and `layout.gpt-entry-free`.
pub fn gpt_room(c: &mut Checks, parts: &[&MbrPartition], sb: u32, hybrid: bool) -> GptGeometry {
    let array_sectors = u64::from(GPT_ENTRIES * GPT_ENTRY_BYTES).div_ceil(u64::from(sb));
    let first_usable = array_sectors.saturating_add(2);
    let first_start = parts.iter().map(|p| p.start_lba).min().unwrap_or(0);
    if first_start >= first_usable {
        c.pass(
            "layout.primary-gpt-room",
            format!(
                "the first partition starts at LBA {first_start}; the primary GPT needs LBAs 1-{}",
                first_usable.saturating_sub(1)
            ),
        );
    } else {
        c.fail(
            "layout.primary-gpt-room",
            format!("the first partition starts at LBA {first_start}, inside the primary GPT's LBAs 1-{}", first_usable.saturating_sub(1)),
            "the first partition must start at LBA 34 or later (512-byte sectors); move it (offline, e.g. with gparted) or keep the disk on MBR",
        );
    }
    let used_entries = u32::try_from(parts.len()).unwrap_or(u32::MAX);
    let new_entries = if hybrid { 2 } else { 1 };
    if used_entries.saturating_add(new_entries) <= GPT_ENTRIES {
        c.pass(
            "layout.gpt-entry-free",
            format!(
                "{used_entries} of {GPT_ENTRIES} GPT entries used, {new_entries} free for the ESP{}",
                if hybrid { " and the BIOS boot partition" } else { "" }
            ),
        );
    } else {
        c.fail(
            "layout.gpt-entry-free",
            format!("{used_entries} partitions leave no GPT entry for the ESP"),
            "remove a partition",
        );
    }
    GptGeometry {
        array_sectors,
        first_usable,
        first_start,
    }
}

/// `layout.encrypted`: encrypted volumes are left untouched (neither free nor grow writes inside
/// a partition).
pub fn encrypted(c: &mut Checks, data: &dyn Disk, parts: &[&MbrPartition], sb: u32) {
    let sbu = u64::from(sb);
    let found: Vec<String> = parts
        .iter()
        .filter_map(|p| {
            let w = Window::new(
                data,
                p.start_lba.checked_mul(sbu)?,
                p.sectors.checked_mul(sbu)?,
            )
            .ok()?;
            let fs = crate::fs::probe(&w)?;
            fs.encrypted
                .then(|| format!("partition {} ({:?})", p.index, fs.kind))
        })
        .collect();
    if found.is_empty() {
        c.pass("layout.encrypted", "no encrypted volume");
    } else {
        c.warn(
            "layout.encrypted",
            format!("{} encrypted: left untouched (the ESP comes from free space or a larger disk, never from inside a partition)", found.join(", ")),
            Some("BitLocker: suspend protection in the guest before the first Gen2 boot (the measured boot chain changes)".into()),
        );
    }
}

/// `esp.size` and `esp.boot-files-fit`: the ESP's size in bytes.
pub fn esp_size(c: &mut Checks, opts: &Options, sb: u32) -> u64 {
    let esp_bytes = opts
        .esp_bytes
        .unwrap_or_else(|| crate::esp::default_esp_bytes(sb));
    let recommended = crate::esp::default_esp_bytes(sb);
    match crate::esp::check_esp_size(esp_bytes, sb) {
        Ok(()) if esp_bytes >= recommended => {
            c.pass("esp.size", format!("ESP of {} MiB", esp_bytes / MIB))
        }
        // FAT32 can be this small; Windows' own tools do not make it (MBR2GPT, bcdboot)
        Ok(()) => c.warn(
            "esp.size",
            format!(
                "ESP of {} MiB: below Microsoft's minimum of {} MiB for {sb}-byte sectors (valid FAT32; firmware and Linux take it, Windows setup and servicing may not)",
                esp_bytes / MIB,
                recommended / MIB
            ),
            Some(format!("leave --esp-size out for {} MiB", recommended / MIB)),
        ),
        Err(e) => {
            let min = crate::esp::min_esp_bytes(sb).map_or(String::new(), |m| {
                format!("at least {} MiB (the smallest FAT32 ESP at {sb}-byte sectors); ", m / MIB)
            });
            c.fail(
                "esp.size",
                e.to_string(),
                format!(
                    "choose --esp-size in whole MiB, {min}Microsoft's minimum is {} MiB",
                    recommended / MIB
                ),
            )
        }
    }
    if opts.boot_files_bytes > 0 {
        // FAT32 metadata (two FATs, reserved sectors, directories) takes at most a few percent
        let room_for_files = esp_bytes.saturating_sub(esp_bytes / 16);
        if opts.boot_files_bytes <= room_for_files {
            c.pass(
                "esp.boot-files-fit",
                format!("boot files: {} bytes", opts.boot_files_bytes),
            );
        } else {
            c.fail(
                "esp.boot-files-fit",
                format!(
                    "boot files take {} bytes, the ESP holds about {} bytes of files",
                    opts.boot_files_bytes, room_for_files
                ),
                "use a larger --esp-size",
            );
        }
    }
    esp_bytes
}

/// `azure.size-mib` and `azure.size-limits`: the resulting disk size against Azure's rules (a
/// raw image is only warned about: it is not uploaded as it is).
pub fn azure_size(c: &mut Checks, format: Format, new_disk_bytes: u64) {
    if new_disk_bytes.is_multiple_of(MIB) || format == Format::Raw {
        c.pass(
            "azure.size-mib",
            format!("resulting disk size {new_disk_bytes} bytes"),
        );
    } else {
        c.fail(
            "azure.size-mib",
            format!("resulting disk size {new_disk_bytes} bytes is not a whole number of MiB"),
            "use --room grow, which rounds the size up to a whole MiB",
        );
    }
    if !(AZURE_MIN_BYTES..=AZURE_MAX_BYTES).contains(&new_disk_bytes) {
        let msg = format!(
            "resulting disk size {new_disk_bytes} bytes is outside Azure's 20 MiB - 32 TiB"
        );
        if format == Format::Raw {
            c.warn("azure.size-limits", msg, None);
        } else {
            c.fail("azure.size-limits", msg, "Azure cannot take this disk");
        }
    } else if new_disk_bytes > AZURE_GEN2_OS_MAX_BYTES {
        c.warn("azure.size-limits", format!("{new_disk_bytes} bytes: above the 4 TiB Generation-2 OS disk limit (usable as a data disk)"), None);
    } else {
        c.pass(
            "azure.size-limits",
            "within Azure's limits (Generation-2 OS disks: up to 4 TiB)",
        );
    }
}
