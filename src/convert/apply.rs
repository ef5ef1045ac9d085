//! Carrying a plan out: journal first, then the writes, then fsync.

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::journal::{self, Journal, SavedRegion};
use super::plan::{self, Options, Plan, Room, ShrinkAction, Validation};
use crate::disk::{Access, Disk, MmapDisk};
use crate::error::{Error, Result};
use crate::esp::{EspSpec, EspTree};
use crate::vhd::Format;

/// Fixed timestamp of the files in the ESP when SOURCE_DATE_EPOCH is not set
/// (2020-01-01T00:00:00Z), so the same input always gives the same output.
pub const DEFAULT_EPOCH: i64 = 1_577_836_800;

/// The environment variable of the fault-injection switch used by the tests: the process
/// aborts (as if killed) just before its Nth mutating operation (journal writes, resizes,
/// writes to the image), counting from 0.
pub const FAULT_ENV: &str = "VHDTOOL_FAULT_AFTER_WRITES";

/// Counts mutating operations and aborts at the configured one.
pub struct Faults {
    remaining: Option<u64>,
    pub operations: u64,
}

impl Faults {
    pub fn from_env() -> Self {
        Faults {
            remaining: std::env::var(FAULT_ENV).ok().and_then(|v| v.parse().ok()),
            operations: 0,
        }
    }
    pub fn none() -> Self {
        Faults {
            remaining: None,
            operations: 0,
        }
    }
    /// Called before each mutating operation.
    pub fn tick(&mut self) -> Result<()> {
        if let Some(r) = self.remaining.as_mut() {
            if *r == 0 {
                eprintln!(
                    "vhdtool: fault injection: aborting before operation {}",
                    self.operations
                );
                std::process::abort();
            }
            *r -= 1;
        }
        self.operations += 1;
        Ok(())
    }
}

/// What to tell the user after a conversion, and the facts needed to upload.
#[derive(Debug, Clone, Serialize)]
pub struct Upload {
    pub file_bytes: u64,
    pub hyper_v_generation: &'static str,
    pub az_disk_create: String,
}

/// The outcome of `convert`.
#[derive(Debug, Clone, Serialize)]
pub struct ConvertReport {
    pub image: String,
    pub output: String,
    pub dry_run: bool,
    pub validation: Validation,
    /// Journal kept next to the image (in-place conversions).
    pub journal: Option<String>,
    pub bytes_written: u64,
    /// Files placed in the ESP (paths inside it).
    pub esp_files: Vec<String>,
    /// Boot files taken from the image's Linux partitions (no --boot-files given).
    pub linux_boot: Option<crate::boot::linux::LinuxBoot>,
    /// What the guest still needs after its first Generation-2 boot.
    pub guest_notes: Vec<crate::boot::linux::GuestNote>,
    pub warnings: Vec<String>,
    pub upload: Option<Upload>,
    /// With `--verify`: the proof that only the planned regions changed.
    pub verified: Option<crate::checksum::VerifyReport>,
}

/// SOURCE_DATE_EPOCH, else [`DEFAULT_EPOCH`].
pub fn epoch() -> i64 {
    std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_EPOCH)
}

fn write(
    disk: &mut MmapDisk,
    faults: &mut Faults,
    offset: u64,
    data: &[u8],
    written: &mut u64,
) -> Result<()> {
    faults.tick()?;
    disk.write_at(offset, data)?;
    *written += data.len() as u64;
    Ok(())
}

/// Write `bytes` at `offset`, one MiB at a time, skipping blocks whose content is already right
/// (the ESP is mostly zeros and, when the disk grew, lands on a hole).
fn write_changed(
    disk: &mut MmapDisk,
    faults: &mut Faults,
    offset: u64,
    bytes: &[u8],
    written: &mut u64,
) -> Result<()> {
    const STEP: usize = 1 << 20;
    let end = offset + bytes.len() as u64;
    // holes read as zeros: find them with SEEK_DATA instead of faulting every page in
    let data = super::copy::data_extents_in(disk.file(), offset, end.min(disk.len()))?;
    let mut have = vec![0u8; STEP];
    for (i, want) in bytes.chunks(STEP).enumerate() {
        let at = offset + (i * STEP) as u64;
        let block_end = at + want.len() as u64;
        let in_hole = !data.iter().any(|&(s, l)| s < block_end && s + l > at);
        let differs = if in_hole {
            want.iter().any(|&b| b != 0)
        } else {
            let cur = &mut have[..want.len()];
            disk.read_at(at, cur)?;
            cur != want
        };
        if differs {
            write(disk, faults, at, want, written)?;
        }
    }
    Ok(())
}

/// Format the ESP of `plan` with the boot files.
pub fn build_esp(plan: &Plan, tree: &EspTree) -> Result<Vec<u8>> {
    let spec = EspSpec {
        size_bytes: plan.esp.size_bytes,
        sector_bytes: plan.sector_bytes,
        volume_id: plan.esp.volume_id,
        label: plan.esp.label.clone(),
        timestamp_unix: epoch(),
        // BPB_HiddSec: the partition's start, as mkfs.fat and Windows write it (0 past 2^32)
        hidden_sectors: u32::try_from(plan.esp.first_lba).unwrap_or(0),
    };
    Ok(crate::esp::build_esp(&spec, tree)?.into_bytes())
}

/// The files of a tree, as paths inside the ESP, in the tree's (deterministic) order.
pub fn tree_paths(tree: &EspTree) -> Vec<String> {
    fn walk(dir: &crate::esp::EspDir, prefix: &str, out: &mut Vec<String>) {
        for (name, node) in dir.entries() {
            let path = if prefix.is_empty() {
                name.to_string()
            } else {
                format!("{prefix}/{name}")
            };
            match node {
                crate::esp::EspNode::File(_) => out.push(path),
                crate::esp::EspNode::Dir(d) => walk(d, &path, out),
            }
        }
    }
    let mut out = Vec::new();
    walk(tree.root(), "", &mut out);
    out
}

/// Carry out `plan` on the open image. With `journal_path`, the undo journal is written (and
/// fsynced) before the first write.
pub fn apply(
    disk: &mut MmapDisk,
    plan: &Plan,
    esp: &[u8],
    journal_path: Option<&Path>,
    faults: &mut Faults,
) -> Result<u64> {
    if esp.len() as u64 != plan.esp.size_bytes {
        return Err(Error::invalid(
            "the ESP image does not match the planned ESP size",
        ));
    }
    if let Some(jp) = journal_path {
        let mut regions = Vec::new();
        for r in plan.regions.iter().filter(|r| !r.external) {
            if r.offset < plan.old_file_bytes {
                regions.push(SavedRegion::capture(disk, r.offset, r.length)?);
            }
        }
        let e2undo = match plan.shrink.as_ref().map(|s| &s.action) {
            Some(ShrinkAction::Resize2fs { part_offset, .. }) => {
                vec![(*part_offset, journal::e2undo_path(jp))]
            }
            _ => Vec::new(),
        };
        let j = Journal {
            original_len: plan.old_file_bytes,
            converted_len: plan.new_file_bytes,
            regions,
            e2undo,
        };
        j.write(jp, || faults.tick())?;
    }
    let mut written = 0u64;
    if plan.new_file_bytes != disk.len() {
        faults.tick()?;
        disk.set_len(plan.new_file_bytes).map_err(|e| {
            if e.raw_os_error() == Some(28) {
                Error::io(
                    format!(
                        "growing the image to {} bytes: the filesystem is full",
                        plan.new_file_bytes
                    ),
                    std::io::Error::from_raw_os_error(28),
                )
            } else {
                e
            }
        })?;
    }
    let sbu = u64::from(plan.sector_bytes);
    // the shrink first: the ESP lands on the partition's old tail
    if let Some(sp) = &plan.shrink {
        match &sp.action {
            ShrinkAction::Writes(w) => {
                for (off, bytes) in w {
                    write(disk, faults, *off, bytes, &mut written)?;
                }
            }
            ShrinkAction::Resize2fs {
                part_offset,
                new_bytes,
            } => {
                faults.tick()?;
                let undo = journal_path.map(journal::e2undo_path);
                let path = disk.path().to_path_buf();
                crate::shrink::ext4::shrink(&path, *part_offset, *new_bytes, undo.as_deref())?;
            }
        }
    }
    if plan.room == Room::Grow && plan.footer.is_some() && plan.old_disk_bytes < plan.new_disk_bytes
    {
        write(disk, faults, plan.old_disk_bytes, &[0u8; 512], &mut written)?;
    }
    write_changed(disk, faults, plan.esp.first_lba * sbu, esp, &mut written)?;
    write(
        disk,
        faults,
        plan.gpt_backup.0,
        &plan.gpt_backup.1,
        &mut written,
    )?;
    if let Some((off, core)) = &plan.core_img {
        write(disk, faults, *off, core, &mut written)?;
    }
    write(
        disk,
        faults,
        plan.gpt_primary.0,
        &plan.gpt_primary.1,
        &mut written,
    )?;
    write(disk, faults, 0, &plan.protective_mbr, &mut written)?;
    if let Some(f) = &plan.footer {
        write(disk, faults, plan.new_disk_bytes, f, &mut written)?;
    }
    disk.sync()?;
    Ok(written)
}

/// The `az` line that creates a managed disk for this image, with the Generation-2 flag.
pub fn az_line(file_bytes: u64) -> String {
    format!(
        "az disk create --resource-group RG --name NAME --location LOCATION --os-type Linux|Windows --hyper-v-generation V2 --for-upload --upload-size-bytes {file_bytes} --sku Premium_LRS"
    )
}

/// `convert`: validate, then (unless `dry_run`) convert in place behind a journal, or into a
/// sparse copy at `output`.
pub fn convert(
    image: &Path,
    output: Option<&Path>,
    journal_path: Option<PathBuf>,
    opts: &Options,
    boot: &crate::boot::linux::BootSource,
    dry_run: bool,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<ConvertReport> {
    convert_verified(
        image,
        output,
        journal_path,
        opts,
        boot,
        dry_run,
        false,
        progress,
    )
}

/// [`convert`], and with `verify` the proof that only the planned regions changed: in place, a
/// CRC32 map taken before the first write is compared with the image after the last; with
/// `output`, the copy is compared with the source byte for byte (`ConvertReport::verified`).
#[allow(clippy::too_many_arguments)]
pub fn convert_verified(
    image: &Path,
    output: Option<&Path>,
    journal_path: Option<PathBuf>,
    opts: &Options,
    boot: &crate::boot::linux::BootSource,
    dry_run: bool,
    verify: bool,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<ConvertReport> {
    let mut opts = opts.clone();
    // plan on the source, under its lock (shared for a copy, exclusive in place)
    let access = if output.is_none() && !dry_run {
        Access::ReadWrite
    } else {
        Access::ReadOnly
    };
    let disk = MmapDisk::open(image, access)?;
    // boot files: --boot-files, --no-boot-files, or taken from the image's Linux partitions
    let mut boot = crate::boot::linux::resolve(&disk, boot, opts.sector_bytes.unwrap_or(512))?;
    opts.boot_files_bytes = boot.tree.file_bytes();
    let mut validation = plan::validate(&disk, &opts);
    super::boot::attach(&mut validation, &mut boot);
    let tree = &boot.tree;
    let mut report = ConvertReport {
        image: image.display().to_string(),
        output: output.unwrap_or(image).display().to_string(),
        dry_run,
        validation,
        journal: None,
        bytes_written: 0,
        esp_files: tree_paths(tree),
        guest_notes: boot
            .linux
            .as_ref()
            .map(|l| l.guest_notes.clone())
            .unwrap_or_default(),
        linux_boot: boot.linux.clone(),
        warnings: Vec::new(),
        upload: None,
        verified: None,
    };
    // --hybrid: grub-pc keeps working, so the notes about it change
    if report
        .validation
        .plan
        .as_ref()
        .is_some_and(|p| p.bios_boot.is_some())
    {
        report
            .guest_notes
            .retain(|n| !n.needs_bios_boot_partition());
        report
            .guest_notes
            .insert(0, crate::boot::linux::GuestNote::HybridKeepsGrubPc);
    }
    // refused: the report says why (the caller maps it to an exit code); nothing was written
    if !report.validation.passed() {
        return Ok(report);
    }
    let Some(plan) = report.validation.plan.clone() else {
        return Err(Error::invalid("validation passed but produced no plan"));
    };
    if tree.entry_count() == 0 {
        report.warnings.push(
            "no --boot-files: the ESP is created empty, and the disk will not boot under UEFI until boot files are added (EFI/BOOT/BOOTX64.EFI)".into(),
        );
    }
    if plan.format == Format::Raw {
        report.warnings.push("the image is raw: Azure takes fixed VHDs (wrap it with qemu-img convert -f raw -O vpc -o subformat=fixed,force_size=on)".into());
    }
    // build the ESP before touching anything: a tree that does not fit fails here
    let esp = build_esp(&plan, tree)?;
    if dry_run {
        return Ok(report);
    }
    let mut faults = Faults::from_env();
    match output {
        None => {
            let jp = journal_path.unwrap_or_else(|| journal::default_path(image));
            if jp.exists() {
                return Err(Error::conflict(format!(
                    "an undo journal from an earlier conversion exists at {}: run `vhdtool rollback {}` first, or remove the journal if that conversion is to be kept",
                    jp.display(),
                    image.display()
                )));
            }
            // opened read-write before planning: the exclusive lock has been held since, so
            // the plan still describes the file
            let mut disk = disk;
            let before = verify
                .then(|| crate::checksum::compare::snapshot(&disk, &plan.regions))
                .transpose()?;
            report.bytes_written = apply(&mut disk, &plan, &esp, Some(&jp), &mut faults)?;
            report.journal = Some(jp.display().to_string());
            report.verified = before
                .map(|b| crate::checksum::compare::prove(&b, &disk))
                .transpose()?;
        }
        Some(out) => {
            drop(disk);
            super::copy::sparse_copy(image, out, progress)?;
            let result = (|| {
                let mut disk = MmapDisk::open(out, Access::ReadWrite)?;
                apply(&mut disk, &plan, &esp, None, &mut faults)
            })();
            match result {
                Ok(n) => {
                    report.bytes_written = n;
                    report.verified = verify
                        .then(|| crate::checksum::compare::prove_copy(image, out, &plan.regions))
                        .transpose()?;
                }
                Err(e) => {
                    let _ = std::fs::remove_file(out);
                    return Err(
                        e.context(format!("converting the copy {} (removed)", out.display()))
                    );
                }
            }
        }
    }
    report.upload = Some(Upload {
        file_bytes: plan.new_file_bytes,
        hyper_v_generation: "V2",
        az_disk_create: az_line(plan.new_file_bytes),
    });
    Ok(report)
}
