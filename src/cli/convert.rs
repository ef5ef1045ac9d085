//! `vhdtool validate`, `vhdtool convert` and `vhdtool rollback`.

use std::path::PathBuf;

use clap::Args;

use super::args::{parse_map, parse_size};
use super::exit;
use super::output;
use crate::boot::linux::{BootSource, LinuxBoot};
use crate::convert::journal;
use crate::convert::run::{self, ConvertReport, Request};
use crate::convert::{self as conv, Options, RoomChoice, Validation};
use crate::disk::Access;
use crate::error::{Error, ErrorKind, Result};
use crate::esp::EspTree;
use crate::gpt::Guid;

/// `--room`: where the ESP's room comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RoomArg {
    /// Free space if it fits, else shrink the last partition, else grow the disk.
    Auto,
    /// Unallocated space only (a gap of the ESP's size, and room for the backup GPT).
    Free,
    /// Extend the disk past the last partition.
    Grow,
    /// Shrink the last partition (NTFS, ext2/3/4, swap) and put the ESP after it; the disk
    /// size does not change.
    Shrink,
    /// Windows: the System Reserved partition becomes the ESP (reformatted FAT32), as MBR2GPT
    /// does when it is 100 MiB to 1 GiB (260 MiB on 4 KiB sectors) and holds no WinRE.
    Reuse,
}

impl From<RoomArg> for RoomChoice {
    fn from(r: RoomArg) -> Self {
        match r {
            RoomArg::Auto => RoomChoice::Auto,
            RoomArg::Free => RoomChoice::Free,
            RoomArg::Grow => RoomChoice::Grow,
            RoomArg::Shrink => RoomChoice::Shrink,
            RoomArg::Reuse => RoomChoice::Reuse,
        }
    }
}

/// Options shared by `validate` and `convert`: they decide the plan.
#[derive(Debug, Args)]
pub struct PlanArgs {
    /// Where the ESP's room comes from: free space, the last partition (shrunk: NTFS,
    /// ext2/3/4, swap), a larger disk, or auto (free if it fits, else shrink, else grow).
    #[arg(long, value_enum, default_value_t = RoomArg::Auto)]
    pub room: RoomArg,
    /// With --room auto: never grow the disk (fail instead when neither free space nor a
    /// shrink makes room).
    #[arg(long)]
    pub no_grow: bool,
    /// ESP size, e.g. 100M, 260MiB, 1G (default 100 MiB; 260 MiB on 4096-byte sectors).
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub esp_size: Option<u64>,
    /// Logical sector size of a raw image (512 or 4096; a VHD is always 512).
    #[arg(long, value_name = "BYTES")]
    pub sector_size: Option<u32>,
    /// GPT type for an MBR type the built-in table does not know: --map 0x12=<type GUID>.
    #[arg(long = "map", value_name = "MBRTYPE=GUID", value_parser = parse_map)]
    pub maps: Vec<(u8, Guid)>,
    /// Random disk and partition GUIDs (default: derived from the image, so the same input
    /// always gives the same output).
    #[arg(long)]
    pub random_guids: bool,
    /// Boot files: the tree of this folder is copied into the ESP as is (for example
    /// EFI/BOOT/BOOTX64.EFI, EFI/BOOT/grubx64.efi, EFI/BOOT/grub.cfg). Without it, the signed
    /// shim and grub are taken from the image's Linux partitions (ext2/3/4).
    #[arg(long, value_name = "DIR")]
    pub boot_files: Option<PathBuf>,
    /// Create the ESP empty, deliberately: no boot files from --boot-files or from the image
    /// (the disk does not boot under UEFI until boot files are added).
    #[arg(long, conflicts_with = "boot_files")]
    pub no_boot_files: bool,
    /// Keep BIOS boot working too (one disk for Generation 1 and 2): GRUB's core.img moves
    /// into a new BIOS boot partition and the MBR keeps GRUB's boot.img (hybrid MBR).
    #[arg(long)]
    pub hybrid: bool,
    /// A data disk (no OS): GPT without an ESP. Generation-2 VMs attach MBR data disks as they
    /// are, so this is only for a disk that must be GPT (over 2 TiB, more than 4 partitions).
    #[arg(long, conflicts_with_all = ["boot_files", "no_boot_files", "hybrid"])]
    pub data_disk: bool,
    /// Windows: the partition of the installation to convert, when the disk holds several.
    #[arg(long, value_name = "N")]
    pub windows_partition: Option<u32>,
    /// Windows: leave the registry alone (SYSTEM\MountedDevices, ReAgent.xml); Windows then
    /// gives the volumes new drive letters at the first boot.
    #[arg(long)]
    pub no_registry: bool,
    /// Print as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// The image: fixed VHD or raw disk, or a dynamic or differencing VHD, VHDX or qcow2
    /// (validated as the fixed VHD `convert -o` makes of it).
    pub image: PathBuf,
    #[command(flatten)]
    pub input: InputArgs,
    #[command(flatten)]
    pub plan: PlanArgs,
}

/// How IMAGE is read (`validate` and `convert`).
#[derive(Debug, Args)]
pub struct InputArgs {
    /// How IMAGE is read; `raw` for a raw disk (a raw file cannot be told from a damaged VHD).
    #[arg(long, value_enum, default_value_t = InputFormat::Auto)]
    pub input_format: InputFormat,
    /// Where the parents of a differencing disk (or qcow2 backing files) are, besides the
    /// child's own folder.
    #[arg(long, value_name = "DIR")]
    pub parent_dir: Option<PathBuf>,
}

/// `--input-format`: how IMAGE is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum InputFormat {
    /// By its signature: fixed, dynamic or differencing VHD, VHDX, qcow2; a file without one
    /// is a raw disk (converted as it is, in place or into a raw copy).
    Auto,
    /// A raw disk, whatever it looks like (with -o: written as a fixed VHD).
    Raw,
}

#[derive(Debug, Args)]
pub struct ConvertArgs {
    /// The image: fixed VHD or raw disk (converted in place unless -o is given), or a dynamic
    /// or differencing VHD, VHDX or qcow2 (converted into a new fixed VHD with -o only).
    pub image: PathBuf,
    #[command(flatten)]
    pub input: InputArgs,
    /// Write an Azure-ready fixed VHD (whole MiB, a footer every reader sizes alike) and leave
    /// the partitions as they are: a Generation-1 upload, or a repair of a damaged footer.
    /// Needs -o.
    #[arg(long, requires = "output", conflicts_with_all = ["dry_run", "verify", "journal"])]
    pub keep_mbr: bool,
    /// Write the converted disk to this new file (sparse copy) and leave IMAGE untouched.
    #[arg(short = 'o', long, value_name = "OUTPUT")]
    pub output: Option<PathBuf>,
    /// Undo journal path for an in-place conversion (default: IMAGE.vhdtool-journal).
    #[arg(long, value_name = "FILE")]
    pub journal: Option<PathBuf>,
    /// Print the plan and write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Prove that only the planned regions changed: a CRC32 map before the first write against
    /// the image after the last (in place), or a byte comparison of the copy with the source
    /// (-o). Exits 1 when anything else changed.
    #[arg(long)]
    pub verify: bool,
    #[command(flatten)]
    pub plan: PlanArgs,
}

#[derive(Debug, Args)]
pub struct RollbackArgs {
    /// The image that was converted in place.
    pub image: PathBuf,
    /// The undo journal (default: IMAGE.vhdtool-journal).
    #[arg(long, value_name = "FILE")]
    pub journal: Option<PathBuf>,
    /// Restore even if the image's length matches neither the original nor the converted one.
    #[arg(long)]
    pub force: bool,
    /// Print as JSON.
    #[arg(long)]
    pub json: bool,
}

fn options(a: &PlanArgs, image: &std::path::Path) -> Options {
    Options {
        room: a.room.into(),
        esp_bytes: a.esp_size,
        sector_bytes: a.sector_size,
        maps: a.maps.clone(),
        random_guids: a.random_guids,
        boot_files_bytes: 0,
        esp_label: "SYSTEM".into(),
        no_grow: a.no_grow,
        image_path: Some(image.to_path_buf()),
        hybrid: a.hybrid,
        windows: crate::boot::windows::WindowsOptions {
            partition: a.windows_partition,
            no_registry: a.no_registry,
            // info's: a conversion needs no version (the SOFTWARE hive is large)
            version: false,
        },
        reusable: None,
        data_disk: a.data_disk,
    }
}

fn boot_source(a: &PlanArgs) -> Result<BootSource> {
    match &a.boot_files {
        Some(dir) => Ok(BootSource::Given(EspTree::from_dir(dir)?)),
        None if a.no_boot_files => Ok(BootSource::Empty),
        None => Ok(BootSource::FromImage),
    }
}

/// `validate --json`: the validation, plus the boot files taken from the image.
#[derive(serde::Serialize)]
struct ValidateReport<'a> {
    /// The input's format when it is validated as the fixed VHD `convert -o` makes of it.
    #[serde(skip_serializing_if = "Option::is_none")]
    input_format: Option<&'static str>,
    #[serde(flatten)]
    validation: &'a Validation,
    linux_boot: Option<&'a LinuxBoot>,
    windows: Option<&'a crate::convert::windows::WindowsReport>,
}

/// Exit code of a refused plan.
fn refusal_code(v: &Validation) -> u8 {
    if v.already_gpt {
        return exit::ALREADY_GPT;
    }
    v.first_failure()
        .map_or(exit::OK, |c| ErrorKind::exit_code(c.kind))
}

pub fn run_validate(args: &ValidateArgs) -> Result<u8> {
    let source = boot_source(&args.plan)?;
    let mut opts = options(&args.plan, &args.image);
    // read as `convert` reads it: another format is validated as the fixed VHD `convert -o`
    // makes of it; a raw disk named so as it is (what an in-place conversion would change)
    let disk = conv::source::open(
        &args.image,
        &source_options(&args.input),
        Access::ReadOnly,
        args.input.input_format != InputFormat::Raw,
    )?;
    let conv::assess::Assessment {
        validation: v,
        boot,
        windows,
        ..
    } = conv::assess::assess(&disk, &source, &mut opts)?;
    if args.plan.json {
        output::json(&ValidateReport {
            input_format: disk.image_format(),
            validation: &v,
            linux_boot: boot.linux.as_ref(),
            windows: windows.as_ref(),
        })?;
    } else {
        let mut text = String::new();
        if let Some(format) = disk.image_format() {
            text.push_str(&format!(
                "{} is a {format} image: validated as the fixed VHD `vhdtool convert {} -o OUT.vhd` writes (a {format} image is never converted in place)\n",
                args.image.display(),
                args.image.display()
            ));
        }
        text.push_str(&output::render_validation(
            &args.image.display().to_string(),
            &v,
        ));
        if let Some(lb) = &boot.linux {
            text.push_str(&lb.render());
        }
        if let Some(w) = &windows {
            text.push_str(&w.render());
        }
        output::text(&text)?;
    }
    Ok(match refusal_code(&v) {
        exit::OK => exit::OK,
        exit::ALREADY_GPT => exit::ALREADY_GPT,
        _ => exit::FINDINGS,
    })
}

fn source_options(args: &InputArgs) -> conv::source::SourceOptions {
    conv::source::SourceOptions {
        raw: args.input_format == InputFormat::Raw,
        parent_dir: args.parent_dir.clone(),
    }
}

/// `convert --keep-mbr`: the fixed VHD, partitions untouched.
fn run_keep_mbr(args: &ConvertArgs, out: &std::path::Path) -> Result<u8> {
    let r = conv::source::keep_mbr(&args.image, out, &source_options(&args.input))?;
    if args.plan.json {
        output::json(&r)?;
    } else {
        let mut text = format!(
            "{} ({}) -> {}: fixed VHD of {} bytes ({} bytes of data written), partitions unchanged\n",
            r.image,
            r.input_format.name(),
            r.output,
            r.written.virtual_bytes,
            r.written.data_bytes_written
        );
        for fix in &r.repaired {
            text.push_str(&format!("  repaired: {fix}\n"));
        }
        text.push_str(&format!(
            "upload as Generation {}: {}\n",
            r.upload.hyper_v_generation, r.upload.az_disk_create
        ));
        output::text(&text)?;
    }
    Ok(exit::OK)
}

pub fn run_convert(args: &ConvertArgs) -> Result<u8> {
    if let (true, Some(out)) = (args.keep_mbr, args.output.as_deref()) {
        return run_keep_mbr(args, out);
    }
    let source = boot_source(&args.plan)?;
    let opts = options(&args.plan, &args.image);
    let mut bar = output::Progress::new("copying");
    let request = Request {
        image: &args.image,
        output: args.output.as_deref(),
        journal: args.journal.clone(),
        boot: &source,
        dry_run: args.dry_run,
        verify: args.verify,
        source: source_options(&args.input),
    };
    let report: ConvertReport =
        run::convert(&request, &opts, &mut |done, total| bar.update(done, total))?;
    bar.finish();
    if args.plan.json {
        output::json(&report)?;
    } else {
        let mut text = output::render_convert(&report);
        if let Some(v) = &report.verified {
            text.push_str(&output::render_verified(v));
        }
        output::text(&text)?;
    }
    if report.verified.as_ref().is_some_and(|v| !v.ok) {
        return Ok(exit::FINDINGS);
    }
    Ok(refusal_code(&report.validation))
}

pub fn run_rollback(args: &RollbackArgs) -> Result<u8> {
    let jp = journal::journal_for(&args.image, args.journal.as_deref());
    if !args.image.exists() {
        return Err(Error::invalid(format!(
            "{} does not exist",
            args.image.display()
        )));
    }
    let r = journal::rollback(&args.image, &jp, args.force)?;
    if args.json {
        output::json(&r)?;
    } else {
        output::text(&format!(
            "{}: {} ({} regions, {} bytes written, file is {} bytes); journal {} removed\n",
            r.image, r.outcome, r.regions_restored, r.bytes_written, r.file_bytes, r.journal
        ))?;
    }
    Ok(exit::OK)
}
