//! One conversion from start to end: resolve the inputs (the image, its boot files) -> plan ->
//! apply (in place behind the journal, or into a copy) -> prove (`--verify`).

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::apply::{apply, Contents, SparseImage};
use super::assess::{assess, Assessment, OsType};
use super::copy::PartialOutput;
use super::faults::Faults;
use super::journal;
use super::options::Options;
use super::plan::Plan;
use super::source::{Source, SourceOptions};
use super::validate::Validation;
use crate::boot::linux::GuestNote;
use crate::checksum::compare;
use crate::disk::{Access, MmapDisk};
use crate::error::{Error, Result};
use crate::esp::{EspSpec, EspTree};
use crate::vhd::Format;

/// Fixed timestamp of the files in the ESP when SOURCE_DATE_EPOCH is not set
/// (2020-01-01T00:00:00Z), so the same input always gives the same output.
pub const DEFAULT_EPOCH: i64 = 1_577_836_800;

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
    pub guest_notes: Vec<GuestNote>,
    /// A Windows image: what was found and what the conversion writes for it.
    pub windows: Option<super::windows::WindowsReport>,
    pub warnings: Vec<String>,
    pub upload: Option<Upload>,
    /// With `--verify`: the proof that only the planned regions changed.
    pub verified: Option<compare::VerifyReport>,
}

/// What `convert` is asked to do besides the plan's options.
pub struct Request<'a> {
    pub image: &'a Path,
    /// `-o`: write a converted copy here; IMAGE is only read.
    pub output: Option<&'a Path>,
    /// The undo journal of an in-place conversion (default: IMAGE.vhdtool-journal).
    pub journal: Option<PathBuf>,
    pub boot: &'a crate::boot::linux::BootSource,
    pub dry_run: bool,
    /// Prove that only the planned regions changed.
    pub verify: bool,
    /// How IMAGE is read (`--input-format raw`, `--parent-dir`).
    pub source: SourceOptions,
}

/// The ESP's file times: SOURCE_DATE_EPOCH, else [`DEFAULT_EPOCH`] (one rule with `esp`'s).
pub fn epoch() -> i64 {
    crate::esp::timestamp_from_env().unwrap_or(DEFAULT_EPOCH)
}

/// Format the ESP of `plan` with the boot files (nothing for `--data-disk`).
pub fn build_esp(plan: &Plan, tree: &EspTree) -> Result<Vec<u8>> {
    let Some(esp) = plan.esp.as_ref() else {
        return Ok(Vec::new());
    };
    let spec = EspSpec {
        size_bytes: esp.size_bytes,
        sector_bytes: plan.sector_bytes,
        volume_id: esp.volume_id,
        label: esp.label.clone(),
        timestamp_unix: epoch(),
        // BPB_HiddSec: the partition's start, as mkfs.fat and Windows write it (0 past 2^32)
        hidden_sectors: u32::try_from(esp.first_lba).unwrap_or(0),
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

/// The `az` line that creates a managed disk for this image: with the Generation-2 flag for a
/// bootable disk, as a plain data disk otherwise (never a V2 line for a disk that is not
/// Gen2-ready).
pub fn az_line(file_bytes: u64, os: OsType) -> String {
    let flags = match os {
        OsType::Linux => "--os-type Linux --hyper-v-generation V2 ",
        OsType::Windows => "--os-type Windows --hyper-v-generation V2 ",
        OsType::Unknown => "--os-type Linux|Windows --hyper-v-generation V2 ",
        OsType::None => "",
    };
    format!(
        "az disk create --resource-group RG --name NAME --location LOCATION {flags}--for-upload --upload-size-bytes {file_bytes} --sku Premium_LRS"
    )
}

/// `convert`: validate, then (unless a dry run) convert in place behind a journal, or into a
/// sparse copy; with `verify`, the proof that only the planned regions changed (in place: a
/// CRC32 map before the first write against the image after the last; a copy: compared with
/// the source byte for byte).
pub fn convert(
    req: &Request,
    opts: &Options,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<ConvertReport> {
    let mut opts = opts.clone();
    // plan on the source, under its lock (shared for a copy, exclusive in place), held until
    // the copy is made or the conversion done, so the plan still describes the file
    let access = if req.output.is_none() && !req.dry_run {
        Access::ReadWrite
    } else {
        Access::ReadOnly
    };
    if req.output.is_none() && !req.dry_run {
        refuse_unfinished(req)?;
    }
    let mut disk = super::source::open(req.image, &req.source, access, req.output.is_some())?;
    if !disk.is_file() {
        // planned on the fixed VHD the image becomes: there is no such file to run tools on yet
        opts.image_path = None;
    }
    let Assessment {
        validation,
        boot,
        windows,
        warnings,
        os,
    } = assess(&disk, req.boot, &mut opts)?;
    let mut report = ConvertReport {
        image: req.image.display().to_string(),
        output: req.output.unwrap_or(req.image).display().to_string(),
        dry_run: req.dry_run,
        validation,
        journal: None,
        bytes_written: 0,
        esp_files: tree_paths(&boot.tree),
        guest_notes: boot
            .linux
            .as_ref()
            .map(|l| l.guest_notes.clone())
            .unwrap_or_default(),
        linux_boot: boot.linux.clone(),
        windows,
        warnings,
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
        report.guest_notes.insert(0, GuestNote::HybridKeepsGrubPc);
    }
    // refused: the report says why (the caller maps it to an exit code); nothing was written
    if !report.validation.passed() {
        return Ok(report);
    }
    let Some(plan) = report.validation.plan.as_ref() else {
        return Err(Error::internal("validation passed but produced no plan"));
    };
    if opts.data_disk {
        report.warnings.push("--data-disk: GPT without an ESP; upload it as a data disk (Generation-2 VMs attach MBR data disks as they are, too)".into());
    } else if boot.tree.entry_count() == 0 {
        report.warnings.push(
            "no --boot-files: the ESP is created empty, and the disk will not boot under UEFI until boot files are added (EFI/BOOT/BOOTX64.EFI)".into(),
        );
    }
    if plan.format == Format::Raw {
        report.warnings.push("the image is raw: Azure takes fixed VHDs (wrap it with qemu-img convert -f raw -O vpc -o subformat=fixed,force_size=on)".into());
    }
    // build the ESP before touching anything: a tree that does not fit fails here
    let esp = build_esp(plan, &boot.tree)?;
    if req.dry_run {
        return Ok(report);
    }
    let contents = Contents {
        esp: SparseImage::of(&esp),
    };
    let mut faults = Faults::from_env();
    let (written, verified, journal) = match req.output {
        None => in_place(disk.in_place()?, req, plan, &contents, &mut faults)?,
        Some(out) => {
            let r = into_copy(
                &disk,
                req.image,
                out,
                plan,
                &contents,
                &mut faults,
                progress,
            )?;
            let verified = req
                .verify
                .then(|| disk.prove_copy(req.image, out, &plan.regions()))
                .transpose()?;
            (r, verified, None)
        }
    };
    let new_file_bytes = plan.new_file_bytes;
    report.bytes_written = written;
    report.verified = verified;
    report.journal = journal;
    report.upload = Some(Upload {
        file_bytes: new_file_bytes,
        hyper_v_generation: if os == OsType::None {
            "none (a data disk)"
        } else {
            "V2"
        },
        az_disk_create: az_line(new_file_bytes, os),
    });
    Ok(report)
}

/// In place, before anything else (a half-written image may look like anything, a damaged VHD
/// included): a conversion that a kill or an error stopped must be rolled back first.
fn refuse_unfinished(req: &Request) -> Result<()> {
    let Ok(disk) = MmapDisk::open(req.image, Access::ReadOnly) else {
        return Ok(()); // the open below reports it
    };
    match journal::unfinished(req.image, req.journal.as_deref(), &disk) {
        Some(found) => Err(pending_journal(req.image, &found)),
        None => Ok(()),
    }
}

fn pending_journal(image: &Path, found: &Path) -> Error {
    Error::conflict(format!(
        "an undo journal from an earlier conversion exists at {}: run `vhdtool rollback {} --journal {}` first, or remove the journal if that conversion is to be kept",
        found.display(),
        image.display(),
        found.display()
    ))
}

/// In place: the journal must not exist yet; the image was opened read-write before planning,
/// and its exclusive lock has been held since.
fn in_place(
    disk: &mut MmapDisk,
    req: &Request,
    plan: &Plan,
    contents: &Contents,
    faults: &mut Faults,
) -> Result<(u64, Option<compare::VerifyReport>, Option<String>)> {
    let jp = req
        .journal
        .clone()
        .unwrap_or_else(|| journal::default_path(req.image));
    // any journal of this image, whatever name the earlier conversion reached it by
    if let Some(found) = journal::pending(req.image, Some(&jp)).first() {
        return Err(pending_journal(req.image, found));
    }
    let before = req
        .verify
        .then(|| compare::snapshot(disk, &plan.regions()))
        .transpose()?;
    let written = apply(disk, plan, contents, Some(&jp), faults).map_err(|e| {
        if jp.exists() {
            e.context(format!(
                "the conversion stopped with the image half written; `vhdtool rollback {}` restores it from {}",
                req.image.display(),
                jp.display()
            ))
        } else {
            e.context("nothing was written to the image")
        }
    })?;
    let verified = before.map(|b| compare::prove(&b, disk)).transpose()?;
    Ok((written, verified, Some(jp.display().to_string())))
}

/// Into a copy: the source stays locked (shared) while it is copied to a temporary name beside
/// OUTPUT; the copy is converted, fsynced and renamed. On failure nothing is left behind.
fn into_copy(
    source: &Source,
    image: &Path,
    out: &Path,
    plan: &Plan,
    contents: &Contents,
    faults: &mut Faults,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<u64> {
    // room for the copy and the conversion's writes, before the partial file exists
    super::space::ensure_copy(source, out, plan.new_file_bytes, &plan.steps, contents)?;
    let partial = PartialOutput::create(out)?;
    let result = (|| {
        source.copy_into(&partial, image, progress)?;
        let file = partial
            .file
            .try_clone()
            .map_err(|e| Error::io(format!("opening {}", partial.partial.display()), e))?;
        let mut copy = MmapDisk::from_file(file, &partial.partial, Access::ReadWrite)?;
        apply(&mut copy, plan, contents, None, faults)
    })();
    match result {
        Ok(n) => {
            partial.finish()?;
            Ok(n)
        }
        Err(e) => {
            let shown = out.display().to_string();
            partial.discard();
            Err(e.context(format!("converting the copy {shown} (removed)")))
        }
    }
}
