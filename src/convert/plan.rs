//! Layout checks and the conversion plan, built from reads only.
//!
//! `validate` runs every check (each with a stable id, and on failure the reason and the fix)
//! and, when they pass, computes the [`Plan`]: the new partition table, the room for the ESP,
//! the new disk size and every byte range `apply` will write. `convert --dry-run` and
//! `validate` print it; `convert` carries it out.

use serde::Serialize;

use crate::disk::{Disk, Window};
use crate::error::{Error, ErrorKind, Result};
use crate::finding::{Finding, Severity};
use crate::gpt::{self, GptPartition, Guid};
use crate::info::{
    self, TableKind, AZURE_GEN2_OS_MAX_BYTES, AZURE_MAX_BYTES, AZURE_MIN_BYTES, MIB,
};
use crate::mbr::{self, MbrPartition};
use crate::vhd::{self, Format};

use crate::boot::linux::hybrid;
use crate::boot::linux::modules::hybrid_relocation;

/// GPT partition entries we write (the UEFI minimum array is 16 KiB: 128 entries of 128 bytes).
pub const GPT_ENTRIES: u32 = 128;
/// Size of one GPT partition entry we write.
pub const GPT_ENTRY_BYTES: u32 = 128;
/// MBR2GPT's attributes for WinRE: PLATFORM_REQUIRED (bit 0) | NO_DRIVE_LETTER (bit 63).
pub const WINRE_ATTRIBUTES: u64 = 1 | (1 << 63);

/// Where the ESP's room comes from, as asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum RoomChoice {
    /// Free space if it fits, else grow the disk.
    Auto,
    /// Unallocated space only (a gap of the ESP's size, and room for the backup GPT).
    Free,
    /// Extend the disk past the last partition.
    Grow,
    /// Shrink the last partition (NTFS, ext2/3/4, swap) and put the ESP after it; the disk
    /// size does not change.
    Shrink,
}

/// Where the ESP's room came from, as planned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Room {
    Free,
    Grow,
    Shrink,
}

/// What the user asked for.
#[derive(Debug, Clone)]
pub struct Options {
    pub room: RoomChoice,
    /// ESP size in bytes; `None` = 100 MiB at 512-byte sectors, 260 MiB at 4096.
    pub esp_bytes: Option<u64>,
    /// Logical sector size of a raw image (a VHD is always 512).
    pub sector_bytes: Option<u32>,
    /// Extra MBR type -> GPT type mappings (`--map 0x12=<guid>`), winning over the built-in ones.
    pub maps: Vec<(u8, Guid)>,
    /// Random disk and partition GUIDs instead of ones derived from the image.
    pub random_guids: bool,
    /// Total bytes of the boot files going into the ESP (checked against its size).
    pub boot_files_bytes: u64,
    /// ESP volume label.
    pub esp_label: String,
    /// `auto` never grows the disk (marketplace images, sized SKUs).
    pub no_grow: bool,
    /// The image file, for the shrink steps that run e2fsprogs on it.
    pub image_path: Option<std::path::PathBuf>,
    /// Keep BIOS boot working: GRUB's core.img moves into a BIOS boot partition and the MBR
    /// keeps boot.img in a hybrid MBR (see `hybrid.rs`).
    pub hybrid: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            room: RoomChoice::Auto,
            esp_bytes: None,
            sector_bytes: None,
            maps: Vec::new(),
            random_guids: false,
            boot_files_bytes: 0,
            esp_label: "SYSTEM".to_string(),
            no_grow: false,
            image_path: None,
            hybrid: false,
        }
    }
}

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
    pub kind: crate::error::ErrorKind,
}

/// A byte range of the image file that `apply` writes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Region {
    pub offset: u64,
    pub length: u64,
    pub what: String,
    /// Written by an external tool with its own undo (resize2fs): not copied into the journal.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub external: bool,
}

impl Region {
    pub fn new(offset: u64, length: u64, what: impl Into<String>) -> Self {
        Region {
            offset,
            length,
            what: what.into(),
            external: false,
        }
    }
}

/// How the last partition's filesystem is shrunk.
#[derive(Debug, Clone)]
pub enum ShrinkAction {
    /// Bytes to write at file offsets (NTFS metadata, a swap header), journaled like any region.
    Writes(Vec<(u64, Vec<u8>)>),
    /// `resize2fs` on the partition at this file offset, to this many bytes.
    Resize2fs { part_offset: u64, new_bytes: u64 },
}

/// The shrink step of a plan.
#[derive(Debug, Clone, Serialize)]
pub struct ShrinkPlan {
    /// GPT entry of the shrunk partition.
    pub partition: u32,
    pub mbr_index: u32,
    pub filesystem: String,
    pub old_bytes: u64,
    pub new_bytes: u64,
    pub method: String,
    #[serde(skip)]
    pub action: ShrinkAction,
}

/// A shrink that fits: where the ESP goes and what to do.
#[derive(Debug, Clone)]
pub struct ShrinkLayout {
    pub mbr_index: u32,
    pub esp_first: u64,
    pub start_lba: u64,
    pub new_sectors: u64,
    pub old_sectors: u64,
    pub fs_name: String,
    pub method: String,
    pub action: ShrinkAction,
    pub notes: Vec<String>,
}

/// One entry of the new GPT, and where it came from.
#[derive(Debug, Clone, Serialize)]
pub struct NewPartition {
    pub index: u32,
    pub type_guid: Guid,
    pub type_name: Option<&'static str>,
    pub unique_guid: Guid,
    pub first_lba: u64,
    pub last_lba: u64,
    pub attributes: u64,
    pub name: String,
    /// "MBR partition 2 (type 0x07)" or "new EFI system partition".
    pub from: String,
}

/// The ESP to create.
#[derive(Debug, Clone, Serialize)]
pub struct EspLayout {
    pub index: u32,
    pub first_lba: u64,
    pub last_lba: u64,
    pub size_bytes: u64,
    pub label: String,
    pub volume_id: u32,
}

/// `--hybrid`: GRUB's core.img, moved.
#[derive(Debug, Clone, Serialize)]
pub struct BiosBoot {
    /// GPT entry of the BIOS boot partition.
    pub index: u32,
    pub first_lba: u64,
    pub last_lba: u64,
    /// Where core.img was (LBA) and how many sectors it takes.
    pub core_from_lba: u64,
    pub core_sectors: u64,
}

/// Everything `convert` will do, computed from reads only.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub format: Format,
    pub sector_bytes: u32,
    pub old_file_bytes: u64,
    pub new_file_bytes: u64,
    pub old_disk_bytes: u64,
    pub new_disk_bytes: u64,
    pub room: Room,
    /// Why that room was used (and why the others were not).
    pub room_reason: String,
    pub disk_guid: Guid,
    pub partitions: Vec<NewPartition>,
    pub esp: EspLayout,
    /// The shrink step (`room: shrink`).
    pub shrink: Option<ShrinkPlan>,
    /// Every region written, in file offsets, in the order `apply` writes them.
    pub regions: Vec<Region>,
    /// The boot code area of the protective MBR: kept or cleared, and why.
    pub boot_code: String,
    /// `--hybrid`: the BIOS boot partition that now holds GRUB's core.img.
    pub bios_boot: Option<BiosBoot>,
    #[serde(skip)]
    pub protective_mbr: [u8; 512],
    #[serde(skip)]
    pub gpt_primary: (u64, Vec<u8>),
    #[serde(skip)]
    pub gpt_backup: (u64, Vec<u8>),
    #[serde(skip)]
    pub footer: Option<[u8; 512]>,
    /// `--hybrid`: core.img at its new place (file offset, bytes).
    #[serde(skip)]
    pub core_img: Option<(u64, Vec<u8>)>,
    /// Seed of the deterministic ESP volume id and GUIDs (for reproducibility).
    #[serde(skip)]
    pub seed: Vec<u8>,
}

/// What `validate` found: the checks, notes, and the plan when every check passed.
#[derive(Debug, Clone, Serialize)]
pub struct Validation {
    pub checks: Vec<Check>,
    /// Things the user should know that are not failures (logical partitions converted, BIOS
    /// boot code that stops working, ...).
    pub notes: Vec<Finding>,
    /// The disk already has a GPT: nothing to convert.
    pub already_gpt: bool,
    pub plan: Option<Plan>,
}

impl Validation {
    /// True when no check failed.
    pub fn passed(&self) -> bool {
        !self.already_gpt && self.checks.iter().all(|c| c.status != CheckStatus::Fail)
    }
    /// The first failed check, as an error for commands that stop on it.
    pub fn first_failure(&self) -> Option<&Check> {
        self.checks.iter().find(|c| c.status == CheckStatus::Fail)
    }
}

struct Checks(Vec<Check>);

impl Checks {
    fn pass(&mut self, id: &'static str, detail: impl Into<String>) {
        self.0.push(Check {
            id,
            status: CheckStatus::Pass,
            detail: detail.into(),
            fix: None,
            kind: ErrorKind::InvalidInput,
        });
    }
    fn warn(&mut self, id: &'static str, detail: impl Into<String>, fix: Option<String>) {
        self.0.push(Check {
            id,
            status: CheckStatus::Warn,
            detail: detail.into(),
            fix,
            kind: ErrorKind::InvalidInput,
        });
    }
    fn fail(&mut self, id: &'static str, detail: impl Into<String>, fix: impl Into<String>) {
        self.fail_as(ErrorKind::InvalidInput, id, detail, fix);
    }
    fn fail_as(
        &mut self,
        kind: ErrorKind,
        id: &'static str,
        detail: impl Into<String>,
        fix: impl Into<String>,
    ) {
        self.0.push(Check {
            id,
            status: CheckStatus::Fail,
            detail: detail.into(),
            fix: Some(fix.into()),
            kind,
        });
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

fn align_up(v: u64, a: u64) -> Option<u64> {
    v.checked_add(a - 1).map(|x| x / a * a)
}

/// Run every check and, if they pass, compute the plan.
pub fn validate(file: &dyn Disk, opts: &Options) -> Validation {
    let mut c = Checks(Vec::new());
    let mut notes = Vec::new();
    let mut v = Validation {
        checks: Vec::new(),
        notes: Vec::new(),
        already_gpt: false,
        plan: None,
    };

    // ---- the container: fixed VHD or raw
    let image = vhd::probe(file);
    match (image.format, &image.footer) {
        (Format::VhdFixed, Some(f)) => {
            if f.checksum != f.computed_checksum {
                c.fail_as(
                    ErrorKind::Corrupt,
                    "image.footer",
                    format!("VHD footer checksum is 0x{:08x}, computed 0x{:08x}", f.checksum, f.computed_checksum),
                    "repair the footer (qemu-img convert -f vpc -O vpc -o subformat=fixed,force_size=on IN OUT.vhd rewrites it) and check the image",
                );
            } else if f.current_size != image.data_bytes {
                c.fail_as(
                    ErrorKind::Corrupt,
                    "image.footer",
                    format!(
                        "VHD footer says {} bytes of disk, the file holds {} bytes before the footer",
                        f.current_size, image.data_bytes
                    ),
                    "the file was truncated or extended behind the footer's back; restore it from its source",
                );
            } else {
                c.pass(
                    "image.footer",
                    format!("fixed VHD, footer valid, {} bytes of disk", f.current_size),
                );
            }
        }
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
            v.checks = c.0;
            return v;
        }
    }
    let sb = match (image.format, opts.sector_bytes) {
        (Format::VhdFixed, Some(s)) if s != 512 => {
            c.fail(
                "layout.sector-size",
                format!("a VHD has 512-byte sectors, --sector-size {s} was given"),
                "leave --sector-size out for VHDs",
            );
            v.checks = c.0;
            return v;
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
        v.checks = c.0;
        return v;
    }
    c.pass("layout.sector-size", format!("{sb}-byte sectors"));
    let data = match Window::new(file, 0, image.data_bytes) {
        Ok(w) => w,
        Err(e) => {
            c.fail("image.footer", e.to_string(), "check the image");
            v.checks = c.0;
            return v;
        }
    };
    let sbu = u64::from(sb);
    let total_sectors = image.data_bytes / sbu;

    // ---- the partition table
    let tables = info::read_tables(&data, false);
    match tables.kind {
        TableKind::Gpt | TableKind::Hybrid => {
            v.already_gpt = true;
            c.pass(
                "table.mbr",
                "the disk already has a GUID partition table: nothing to convert",
            );
            v.checks = c.0;
            return v;
        }
        TableKind::None => {
            c.fail(
                "table.mbr",
                "no MBR partition table (no 0x55AA signature, or no partitions)",
                "vhdtool converts MBR-partitioned disks; partition the disk first",
            );
            v.checks = c.0;
            return v;
        }
        TableKind::Mbr => {}
    }
    let Some(m) = tables.mbr.as_ref() else {
        c.fail(
            "table.mbr",
            "MBR unreadable",
            "check the image with vhdtool info",
        );
        v.checks = c.0;
        return v;
    };
    c.pass(
        "table.mbr",
        format!("MBR, disk signature 0x{:08x}", m.disk_signature),
    );
    let table_errors: Vec<&Finding> = tables
        .findings
        .iter()
        .filter(|f| f.severity == Severity::Error)
        .collect();
    if table_errors.is_empty() {
        c.pass("table.consistent", "partition entries are consistent");
    } else {
        let msgs: Vec<String> = table_errors
            .iter()
            .map(|f| format!("{} ({})", f.message, f.id))
            .collect();
        c.fail_as(ErrorKind::Corrupt, "table.consistent", msgs.join("; "), "repair the partition table (fdisk/sfdisk) so that every partition lies inside the disk and none overlap");
    }
    notes.extend(
        tables
            .findings
            .iter()
            .filter(|f| f.severity != Severity::Error)
            .cloned(),
    );

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
        v.checks = c.0;
        return v;
    }
    let end_of = |p: &MbrPartition| p.start_lba.saturating_add(p.sectors).saturating_sub(1);
    // inside the disk
    let outside: Vec<String> = parts
        .iter()
        .filter(|p| end_of(p) >= total_sectors)
        .map(|p| format!("partition {} ends at LBA {}", p.index, end_of(p)))
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
    // no overlap
    let mut spans: Vec<(u64, u64, u32)> = parts
        .iter()
        .map(|p| (p.start_lba, end_of(p), p.index))
        .collect();
    spans.sort_unstable();
    let overlaps: Vec<String> = spans
        .windows(2)
        .filter(|w| w[1].0 <= w[0].1)
        .map(|w| format!("partitions {} and {} overlap", w[0].2, w[1].2))
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
    // logical partitions
    if m.logicals.is_empty() {
        c.pass("layout.extended", "no extended partition");
    } else {
        c.warn(
            "layout.extended",
            format!("{} logical partitions in an extended partition become ordinary GPT entries (MBR2GPT refuses them)", m.logicals.len()),
            None,
        );
    }

    // ---- types
    let mut gpt_types = Vec::new();
    let mut unknown = Vec::new();
    for p in &parts {
        match map_type(p.type_id, &opts.maps) {
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

    // ---- GPT geometry
    let array_sectors = u64::from(GPT_ENTRIES * GPT_ENTRY_BYTES).div_ceil(sbu);
    let first_usable = 2 + array_sectors;
    let first_start = parts.iter().map(|p| p.start_lba).min().unwrap_or(0);
    if first_start >= first_usable {
        c.pass(
            "layout.primary-gpt-room",
            format!(
                "the first partition starts at LBA {first_start}; the primary GPT needs LBAs 1-{}",
                first_usable - 1
            ),
        );
    } else {
        c.fail(
            "layout.primary-gpt-room",
            format!("the first partition starts at LBA {first_start}, inside the primary GPT's LBAs 1-{}", first_usable - 1),
            "the first partition must start at LBA 34 or later (512-byte sectors); move it (offline, e.g. with gparted) or keep the disk on MBR",
        );
    }
    let used_entries = u32::try_from(parts.len()).unwrap_or(u32::MAX);
    let new_entries = if opts.hybrid { 2 } else { 1 };
    if used_entries.saturating_add(new_entries) <= GPT_ENTRIES {
        c.pass(
            "layout.gpt-entry-free",
            format!(
                "{used_entries} of {GPT_ENTRIES} GPT entries used, {new_entries} free for the ESP{}",
                if opts.hybrid { " and the BIOS boot partition" } else { "" }
            ),
        );
    } else {
        c.fail(
            "layout.gpt-entry-free",
            format!("{used_entries} partitions leave no GPT entry for the ESP"),
            "remove a partition",
        );
    }
    // encrypted volumes: neither free nor grow writes inside a partition
    let encrypted: Vec<String> = parts
        .iter()
        .filter_map(|p| {
            let w = Window::new(
                &data,
                p.start_lba.checked_mul(sbu)?,
                p.sectors.checked_mul(sbu)?,
            )
            .ok()?;
            let fs = crate::fs::probe(&w)?;
            fs.encrypted
                .then(|| format!("partition {} ({:?})", p.index, fs.kind))
        })
        .collect();
    if encrypted.is_empty() {
        c.pass("layout.encrypted", "no encrypted volume");
    } else {
        c.warn(
            "layout.encrypted",
            format!("{} encrypted: left untouched (the ESP comes from free space or a larger disk, never from inside a partition)", encrypted.join(", ")),
            Some("BitLocker: suspend protection in the guest before the first Gen2 boot (the measured boot chain changes)".into()),
        );
    }

    // ---- --hybrid: GRUB's BIOS loader moves into a BIOS boot partition
    let hybrid = if opts.hybrid {
        let found = hybrid_relocation(&data, &parts, sb, first_start);
        match &found {
            Ok(r) => c.pass(
                "boot.hybrid",
                format!(
                    "GRUB core.img (from LBA {}) rebuilt for GPT ({}) into a BIOS boot partition at LBAs {}-{}; the protective MBR keeps boot.img",
                    r.old_lba, r.changes.join("; "), r.first_lba, r.last_lba
                ),
            ),
            Err(why) => c.fail_as(
                ErrorKind::Unsupported,
                "boot.hybrid",
                why.to_string(),
                "convert without --hybrid (the disk then boots under UEFI only), or reinstall grub-pc in the guest (core.img in the first MiB, primary partitions) and convert again",
            ),
        }
        found.ok()
    } else {
        None
    };

    // ---- boot code that stops working
    let gap_loader = mbr::gap_loader(&data, sb, first_start);
    if let (Some(kind), None) = (&gap_loader, &hybrid) {
        notes.push(Finding::warning(
            "boot.gap-loader",
            format!(
                "boot code in the gap after the MBR ({kind}): the primary GPT overwrites LBAs 1-{}, so BIOS boot stops working after conversion",
                first_usable - 1
            ),
        ));
    }
    let boot_code = if let Some(r) = &hybrid {
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
    };

    // ---- the ESP and its room
    let esp_bytes = opts
        .esp_bytes
        .unwrap_or_else(|| crate::esp::default_esp_bytes(sb));
    match crate::esp::check_esp_size(esp_bytes, sb) {
        Ok(()) => c.pass("esp.size", format!("ESP of {} MiB", esp_bytes / MIB)),
        Err(e) => c.fail(
            "esp.size",
            e.to_string(),
            "choose --esp-size in whole MiB, at least 100 MiB (260 MiB on 4096-byte sectors)",
        ),
    }
    if opts.boot_files_bytes > 0 {
        // FAT32 metadata (two FATs, reserved sectors, directories) takes at most a few percent
        let room_for_files = esp_bytes - esp_bytes / 16;
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
    let align = (MIB / sbu).max(1);
    let esp_sectors = esp_bytes / sbu;
    let last_end = m
        .primaries
        .iter()
        .chain(m.logicals.iter())
        .filter(|p| p.sectors > 0)
        .map(&end_of)
        .max()
        .unwrap_or(0);
    let tail_sectors = array_sectors + 1; // backup entries + backup header
    let last_usable_now = total_sectors.saturating_sub(tail_sectors + 1);
    let backup_room = last_end <= last_usable_now && total_sectors > tail_sectors + 1;
    let size_ok = image.data_bytes.is_multiple_of(MIB) || image.format == Format::Raw;
    let not_mib = format!(
        "the disk size ({} bytes) is not a whole number of MiB, as Azure requires",
        image.data_bytes
    );

    // free: the first gap (end of disk preferred) that holds an aligned ESP
    let mut spans_all: Vec<(u64, u64)> = m
        .primaries
        .iter()
        .chain(m.logicals.iter())
        .filter(|p| p.sectors > 0)
        .map(|p| (p.start_lba, end_of(p)))
        .collect();
    spans_all.sort_unstable();
    let mut gaps = Vec::new();
    // the BIOS boot partition of --hybrid comes first
    let mut cursor = hybrid
        .as_ref()
        .map_or(first_usable, |r| first_usable.max(r.last_lba + 1));
    for (s, e) in &spans_all {
        if *s > cursor {
            gaps.push((cursor, s - 1));
        }
        cursor = cursor.max(e.saturating_add(1));
    }
    if cursor <= last_usable_now {
        gaps.push((cursor, last_usable_now));
    }
    let fits = |(gs, ge): (u64, u64)| -> Option<u64> {
        let start = align_up(gs, align)?;
        let end = start.checked_add(esp_sectors)?.checked_sub(1)?;
        (end <= ge).then_some(start)
    };
    let free_start = gaps
        .iter()
        .rev()
        .take(1)
        .chain(gaps.iter())
        .find_map(|g| fits(*g));
    let free: std::result::Result<u64, String> = match free_start {
        _ if !backup_room => Err(format!(
            "the last partition ends at LBA {last_end}, inside the {tail_sectors} sectors at the end of the disk the backup GPT needs"
        )),
        None => Err(format!(
            "no unallocated gap holds a 1 MiB-aligned ESP of {} MiB",
            esp_bytes / MIB
        )),
        Some(_) if !size_ok => Err(not_mib.clone()),
        Some(s) => Ok(s),
    };

    // shrink: only computed when it may be used (it runs e2fsck / reads $Bitmap)
    let want_shrink = match opts.room {
        RoomChoice::Shrink => true,
        RoomChoice::Auto => free.is_err(),
        _ => false,
    };
    let shrink: std::result::Result<ShrinkLayout, String> = if want_shrink {
        if size_ok {
            shrink_layout(&data, &parts, opts, sb, last_usable_now, esp_sectors, align)
        } else {
            Err(not_mib.clone())
        }
    } else {
        Err("not needed".into())
    };

    // grow: the ESP after the last partition, the backup GPT after it, size rounded up to MiB
    let grow_start = align_up(last_end.saturating_add(1).max(first_usable), align);
    let grow: std::result::Result<(u64, u64), String> = if opts.no_grow {
        Err("--no-grow".into())
    } else {
        grow_start
            .and_then(|start| {
                let needed = start
                    .checked_add(esp_sectors)?
                    .checked_add(tail_sectors)?
                    .checked_mul(sbu)?;
                let bytes = align_up(needed.max(image.data_bytes), MIB)?;
                Some((start, bytes))
            })
            .ok_or_else(|| "the grown disk size overflows".to_string())
    };

    let chosen: std::result::Result<(Room, u64, u64, String, Option<ShrinkLayout>), String> =
        match opts.room {
            RoomChoice::Free => free
                .map(|s| (Room::Free, s, image.data_bytes, "free space, as asked (--room free)".into(), None))
                .map_err(|why| format!("--room free: {why}")),
            RoomChoice::Grow => grow
                .map(|(s, b)| (Room::Grow, s, b, "grow the disk, as asked (--room grow)".into(), None))
                .map_err(|why| format!("--room grow: {why}")),
            RoomChoice::Shrink => shrink
                .map(|l| {
                    let why = format!("shrink partition {}, as asked (--room shrink)", l.mbr_index);
                    (Room::Shrink, l.esp_first, image.data_bytes, why, Some(l))
                })
                .map_err(|why| format!("--room shrink: {why}")),
            RoomChoice::Auto => match (free, shrink, grow) {
                (Ok(s), _, _) => Ok((
                    Room::Free,
                    s,
                    image.data_bytes,
                    "free space: a gap fits the ESP and the end of the disk the backup GPT".into(),
                    None,
                )),
                (Err(nf), Ok(l), _) => Ok((
                    Room::Shrink,
                    l.esp_first,
                    image.data_bytes,
                    format!("shrink partition {} ({}); free space does not do ({nf})", l.mbr_index, l.fs_name),
                    Some(l),
                )),
                (Err(nf), Err(ns), Ok((s, b))) => Ok((
                    Room::Grow,
                    s,
                    b,
                    format!("grow the disk: free space does not do ({nf}); shrinking does not either ({ns})"),
                    None,
                )),
                (Err(nf), Err(ns), Err(ng)) => Err(format!(
                    "free space does not do ({nf}); shrinking does not either ({ns}); growing: {ng}"
                )),
            },
        };
    let (room, esp_first, new_disk_bytes, room_reason, shrink) = match chosen {
        Ok(x) => x,
        Err(why) => {
            c.fail(
                "room.esp",
                why,
                "choose another --room: grow adds the ESP and the backup GPT past the last partition; shrink takes them from the last partition (NTFS, ext2/3/4, swap); free needs unallocated space",
            );
            v.checks = c.0;
            v.notes = notes;
            return v;
        }
    };
    c.pass(
        "room.esp",
        format!(
            "{}: ESP at LBA {esp_first}, {} MiB",
            room_reason,
            esp_bytes / MIB
        ),
    );
    if let Some(l) = &shrink {
        notes.extend(
            l.notes
                .iter()
                .map(|n| Finding::info("room.shrink", n.clone())),
        );
    }

    // ---- the resulting size
    if new_disk_bytes % MIB == 0 || image.format == Format::Raw {
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
        if image.format == Format::Raw {
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

    v.notes = notes;
    if c.0.iter().any(|k| k.status == CheckStatus::Fail) {
        v.checks = c.0;
        return v;
    }

    // ---- the plan
    match build_plan(
        file,
        &image,
        m,
        &parts,
        &gpt_types,
        opts,
        sb,
        room,
        room_reason,
        esp_first,
        esp_sectors,
        new_disk_bytes,
        boot_code,
        shrink,
        hybrid,
    ) {
        Ok(p) => v.plan = Some(p),
        Err(e) => c.fail(
            "plan",
            e.to_string(),
            "report this as a bug with `vhdtool info --json` of the image",
        ),
    }
    v.checks = c.0;
    v
}

/// Where the ESP goes when the last partition gives up its tail, and how its filesystem is
/// shrunk; or why it cannot be.
fn shrink_layout(
    data: &dyn Disk,
    parts: &[&MbrPartition],
    opts: &Options,
    sb: u32,
    last_usable: u64,
    esp_sectors: u64,
    align: u64,
) -> std::result::Result<ShrinkLayout, String> {
    use crate::fs::FsKind;
    use crate::shrink;
    let sbu = u64::from(sb);
    let end_of = |p: &MbrPartition| p.start_lba.saturating_add(p.sectors).saturating_sub(1);
    let Some(last) = parts.iter().max_by_key(|p| end_of(p)) else {
        return Err("no partition".into());
    };
    // the ESP ends at the last usable LBA, starts on a 1 MiB boundary; the partition ends right
    // before it (MBR2GPT's placement)
    let esp_first = (last_usable + 1)
        .checked_sub(esp_sectors)
        .map(|s| s / align * align)
        .unwrap_or(0);
    if esp_first <= last.start_lba.saturating_add(align) {
        return Err(format!(
            "partition {} ({} MiB) is too small to give up an ESP of {} MiB",
            last.index,
            last.sectors * sbu / MIB,
            esp_sectors * sbu / MIB
        ));
    }
    let new_sectors = esp_first - last.start_lba;
    if new_sectors >= last.sectors {
        return Err(format!(
            "partition {} already ends before the ESP would start",
            last.index
        ));
    }
    let part_offset = last.start_lba * sbu;
    let new_bytes = new_sectors * sbu;
    let window = Window::new(data, part_offset, last.sectors * sbu).map_err(|e| e.to_string())?;
    let fs = crate::fs::probe(&window);
    let kind = fs.as_ref().map(|f| f.kind);
    let name = kind
        .map(|k| format!("{k:?}").to_lowercase())
        .unwrap_or_else(|| "unknown".into());
    let refuse = |why: &str| Err(format!("partition {} ({name}): {why}", last.index));
    let (method, action, notes) = match kind {
        Some(FsKind::Ntfs) => {
            let w = shrink::ntfs::plan_shrink(&window, new_bytes)
                .map_err(|e| format!("partition {} (ntfs): {e}", last.index))?;
            let writes = w
                .writes
                .into_iter()
                .map(|(o, b)| (o + part_offset, b))
                .collect();
            (
                "NTFS shrunk by vhdtool (boot sectors, $Bitmap, $BadClus)".to_string(),
                ShrinkAction::Writes(writes),
                w.notes,
            )
        }
        Some(FsKind::Swap) => {
            let w = shrink::swap::plan_swap_shrink(&window, new_bytes)
                .map_err(|e| format!("partition {} (swap): {e}", last.index))?;
            let writes = w
                .writes
                .into_iter()
                .map(|(o, b)| (o + part_offset, b))
                .collect();
            (
                "swap header re-created smaller, same UUID and label".to_string(),
                ShrinkAction::Writes(writes),
                w.notes,
            )
        }
        Some(FsKind::Ext2 | FsKind::Ext3 | FsKind::Ext4) => {
            let Some(path) = opts.image_path.as_deref() else {
                return refuse(
                    "shrinking ext2/3/4 runs resize2fs on the image file, and no file was given",
                );
            };
            let e = |e: crate::error::Error| format!("partition {} ({name}): {e}", last.index);
            shrink::ext4::check_tools().map_err(e)?;
            shrink::ext4::fsck(path, part_offset).map_err(e)?;
            let min = shrink::ext4::min_size(path, part_offset).map_err(e)?;
            let g = shrink::ext4::geometry(path, part_offset).map_err(e)?;
            let fits = new_bytes / g.block_bytes.max(1) * g.block_bytes;
            if min > fits {
                return refuse(&format!(
                    "the filesystem needs at least {min} bytes (resize2fs -P), the shrunk partition would hold {fits}: free space in the guest, or use --room grow"
                ));
            }
            (
                "resized by resize2fs (e2fsprogs) behind its undo file".to_string(),
                ShrinkAction::Resize2fs {
                    part_offset,
                    new_bytes,
                },
                vec![format!(
                    "resize2fs -P: the filesystem needs at least {min} bytes; it gets {new_bytes}"
                )],
            )
        }
        // one place for the reasons: shrink::refuse
        other => {
            return refuse(
                &shrink::refuse::refusal(other).unwrap_or_else(|| {
                    "no shrinker for this filesystem; use --room grow".to_string()
                }),
            )
        }
    };
    Ok(ShrinkLayout {
        mbr_index: last.index,
        esp_first,
        start_lba: last.start_lba,
        new_sectors,
        old_sectors: last.sectors,
        fs_name: name,
        method,
        action,
        notes,
    })
}

/// GPT entry names, as gdisk gives converted partitions (its type names) and Windows its ESP.
fn entry_name(t: &Guid) -> String {
    gpt::guid::type_name(t).unwrap_or("Unknown").to_string()
}

#[allow(clippy::too_many_arguments)]
fn build_plan(
    file: &dyn Disk,
    image: &vhd::Image,
    m: &mbr::Mbr,
    parts: &[&MbrPartition],
    gpt_types: &[(Guid, u64)],
    opts: &Options,
    sb: u32,
    room: Room,
    room_reason: String,
    esp_first: u64,
    esp_sectors: u64,
    new_disk_bytes: u64,
    boot_code: String,
    shrink: Option<ShrinkLayout>,
    hybrid: Option<hybrid::Relocation>,
) -> Result<Plan> {
    let sbu = u64::from(sb);
    let new_sectors = new_disk_bytes / sbu;
    // deterministic identity: the footer's unique id, the MBR sector and the disk size
    let mut seed = Vec::with_capacity(600);
    if let Some(f) = &image.footer {
        seed.extend_from_slice(f.unique_id.as_bytes());
    }
    let mut sector0 = [0u8; 512];
    file.read_at(0, &mut sector0)?;
    seed.extend_from_slice(&sector0);
    seed.extend_from_slice(&image.data_bytes.to_le_bytes());
    if opts.random_guids {
        seed.extend_from_slice(&random_bytes());
    }
    let guid_for = |what: &str| {
        let mut s = seed.clone();
        s.extend_from_slice(what.as_bytes());
        Guid::from_hash(&s)
    };
    let disk_guid = guid_for("disk");
    let mut partitions: Vec<NewPartition> = Vec::new();
    let mut shrink_plan = None;
    for (i, (p, (ty, attrs))) in parts.iter().zip(gpt_types).enumerate() {
        let index = u32::try_from(i + 1).map_err(|_| Error::invalid("too many partitions"))?;
        let mut sectors = p.sectors;
        if let Some(l) = shrink.as_ref().filter(|l| l.mbr_index == p.index) {
            sectors = l.new_sectors;
            shrink_plan = Some(ShrinkPlan {
                partition: index,
                mbr_index: p.index,
                filesystem: l.fs_name.clone(),
                old_bytes: l.old_sectors * sbu,
                new_bytes: l.new_sectors * sbu,
                method: l.method.clone(),
                action: l.action.clone(),
            });
        }
        partitions.push(NewPartition {
            index,
            type_guid: *ty,
            type_name: gpt::guid::type_name(ty),
            unique_guid: guid_for(&format!("partition {}", p.index)),
            first_lba: p.start_lba,
            last_lba: p.start_lba + sectors - 1,
            attributes: *attrs,
            name: entry_name(ty),
            from: format!(
                "MBR partition {} (type 0x{:02x}{})",
                p.index,
                p.type_id,
                if p.logical { ", logical" } else { "" }
            ),
        });
    }
    let esp_index =
        u32::try_from(partitions.len() + 1).map_err(|_| Error::invalid("too many partitions"))?;
    let esp_last = esp_first + esp_sectors - 1;
    partitions.push(NewPartition {
        index: esp_index,
        type_guid: gpt::guid::ESP,
        type_name: gpt::guid::type_name(&gpt::guid::ESP),
        unique_guid: guid_for("esp"),
        first_lba: esp_first,
        last_lba: esp_last,
        attributes: 0,
        name: "EFI system partition".to_string(),
        from: "new EFI system partition".to_string(),
    });
    let bios_boot = hybrid.as_ref().map(|r| BiosBoot {
        index: esp_index + 1,
        first_lba: r.first_lba,
        last_lba: r.last_lba,
        core_from_lba: r.old_lba,
        core_sectors: r.core_sectors,
    });
    if let Some(b) = &bios_boot {
        partitions.push(NewPartition {
            index: b.index,
            type_guid: gpt::guid::BIOS_BOOT,
            type_name: gpt::guid::type_name(&gpt::guid::BIOS_BOOT),
            unique_guid: guid_for("bios boot"),
            first_lba: b.first_lba,
            last_lba: b.last_lba,
            attributes: 0,
            name: "BIOS boot partition".to_string(),
            from: format!(
                "new BIOS boot partition (GRUB core.img from LBA {})",
                b.core_from_lba
            ),
        });
    }
    let esp_guid = guid_for("esp volume");
    let volume_id =
        u32::from_le_bytes([esp_guid.0[0], esp_guid.0[1], esp_guid.0[2], esp_guid.0[3]]);

    let entries: Vec<GptPartition> = partitions
        .iter()
        .map(|p| GptPartition {
            index: p.index,
            type_guid: p.type_guid,
            type_name: p.type_name,
            unique_guid: p.unique_guid,
            first_lba: p.first_lba,
            last_lba: p.last_lba,
            attributes: p.attributes,
            name: p.name.clone(),
        })
        .collect();
    let image_gpt = gpt::encode(disk_guid, &entries, GPT_ENTRIES, sb, new_sectors)?;
    let protective_mbr = match &hybrid {
        None => mbr::protective_mbr(&[0u8; 440], new_sectors),
        Some(r) => mbr::protective_mbr(&r.boot_code, new_sectors),
    };

    let footer = match (&image.format, &image.footer) {
        (Format::VhdFixed, Some(_)) => {
            let mut raw = [0u8; 512];
            file.read_at(image.data_bytes, &mut raw)?;
            Some(converted_footer(&raw, new_disk_bytes)?)
        }
        _ => None,
    };
    let footer_len = if footer.is_some() { 512 } else { 0 };
    let new_file_bytes = new_disk_bytes + footer_len;

    // every region, in the order apply writes them
    let mut regions = Vec::new();
    if room == Room::Grow && footer.is_some() && image.data_bytes < new_disk_bytes {
        regions.push(Region::new(
            image.data_bytes,
            512,
            "old VHD footer (now disk space, zeroed)",
        ));
    }
    if let Some(sp) = &shrink_plan {
        let what = format!(
            "partition {} ({}): {}",
            sp.partition, sp.filesystem, sp.method
        );
        match &sp.action {
            ShrinkAction::Writes(w) => {
                for (off, bytes) in w {
                    regions.push(Region::new(*off, bytes.len() as u64, what.clone()));
                }
            }
            ShrinkAction::Resize2fs {
                part_offset,
                new_bytes,
            } => regions.push(Region {
                offset: *part_offset,
                length: *new_bytes,
                what,
                external: true,
            }),
        }
    }
    regions.push(Region::new(
        esp_first * sbu,
        esp_sectors * sbu,
        format!("partition {esp_index}: EFI system partition (FAT32)"),
    ));
    regions.push(Region::new(
        image_gpt.backup_entries_lba * sbu,
        image_gpt.backup.len() as u64,
        "backup GPT entries and header",
    ));
    let core_img = hybrid.map(|r| (r.first_lba * sbu, r.core));
    if let (Some((off, bytes)), Some(b)) = (&core_img, &bios_boot) {
        regions.push(Region::new(
            *off,
            bytes.len() as u64,
            format!(
                "LBA {}-{}: GRUB core.img in the BIOS boot partition (moved from LBA {})",
                b.first_lba,
                b.first_lba + b.core_sectors - 1,
                b.core_from_lba
            ),
        ));
    }
    regions.push(Region::new(
        sbu,
        image_gpt.primary.len() as u64,
        format!(
            "LBA 1-{}: primary GPT header and entries",
            image_gpt.primary.len() as u64 / sbu
        ),
    ));
    regions.push(Region::new(
        0,
        512,
        if bios_boot.is_some() {
            "LBA 0: protective MBR (GRUB boot.img kept)"
        } else {
            "LBA 0: protective MBR"
        },
    ));
    if footer.is_some() {
        regions.push(Region::new(new_disk_bytes, 512, "VHD footer"));
    }
    let _ = m;
    Ok(Plan {
        format: image.format,
        sector_bytes: sb,
        old_file_bytes: file.len(),
        new_file_bytes,
        old_disk_bytes: image.data_bytes,
        new_disk_bytes,
        room,
        room_reason,
        disk_guid,
        partitions,
        esp: EspLayout {
            index: esp_index,
            first_lba: esp_first,
            last_lba: esp_last,
            size_bytes: esp_sectors * sbu,
            label: opts.esp_label.clone(),
            volume_id,
        },
        shrink: shrink_plan,
        regions,
        boot_code,
        bios_boot,
        protective_mbr,
        gpt_primary: (sbu, image_gpt.primary),
        gpt_backup: (image_gpt.backup_entries_lba * sbu, image_gpt.backup),
        footer,
        core_img,
        seed,
    })
}

/// Creator applications whose footers every QEMU sizes by the current size (QEMU 7.2's table;
/// QEMU 10 trusts every creator but "vpc " and "qemu").
const QEMU_TRUSTED_CREATORS: [[u8; 4]; 5] = [*b"win ", *b"qem2", *b"d2v ", *b"CTXS", *b"tap\0"];

/// The footer of the converted disk: the old one with the new current size, the spec's
/// geometry and a new checksum; unique id, timestamp and original size kept.
///
/// Hyper-V and Azure size a VHD by its current size; QEMU 7.2 does so only for the creators in
/// [`QEMU_TRUSTED_CREATORS`] or for the maximum geometry 65535/16/255, and sizes every other
/// footer by C*H*S, which would cut the disk short of the backup GPT. So a footer from another
/// creator ("vpc ", "qemu", ...) gets the pair qemu-img's `force_size` writes, creator "qem2"
/// with geometry 65535/16/255: every reader then takes the current size.
pub fn converted_footer(raw: &[u8; 512], new_size: u64) -> Result<[u8; 512]> {
    use crate::vhd::footer::{encode, resize_footer, FooterFields};
    let mut f = FooterFields::from_bytes(raw);
    let resized = if QEMU_TRUSTED_CREATORS.contains(&f.creator_application) {
        resize_footer(raw, new_size)?
    } else {
        resize_footer(raw, new_size)?;
        f.creator_application = *b"qem2";
        f.creator_version = 0x0005_0003;
        f.creator_host_os = *b"Wi2k";
        f.current_size = new_size;
        f.geometry = crate::vhd::geometry::MAX_CHS;
        encode(&f)
    };
    Ok(resized)
}

/// Bytes for `--random-guids`: the time and the process id through a hash are enough for
/// uniqueness (not secrecy).
fn random_bytes() -> Vec<u8> {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let mut v = t.to_le_bytes().to_vec();
    v.extend_from_slice(&std::process::id().to_le_bytes());
    v
}
