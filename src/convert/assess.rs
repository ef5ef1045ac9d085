//! What `validate` and `convert` both decide before any write, in one place: the boot files
//! (Linux's from the image, or the ones given), the Windows installation, the layout checks with
//! theirs attached, and what the disk boots. A disk that boots nothing is refused unless it is
//! converted as a data disk.

use super::checks::{Check, CheckStatus};
use super::options::Options;
use super::validate::{validate, Validation};
use super::windows::{self, WindowsReport};
use crate::boot::linux::{self, BootSource, Resolved};
use crate::disk::Disk;
use crate::error::{ErrorKind, Result};

/// What the image boots, as far as the conversion knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OsType {
    Linux,
    Windows,
    /// Boot files given (`--boot-files`, `--no-boot-files`): the OS is not known.
    Unknown,
    /// No OS found and no boot files given: a data disk (`--data-disk`).
    None,
}

/// The id of the check that refuses a disk with no operating system.
pub const DATA_DISK_CHECK: &str = "os.found";

/// Said of a disk with no OS on it (the check's detail).
pub const DATA_DISK_NOTE: &str = "no operating system found (no Linux boot chain, no Windows installation): this is a data disk, and a Generation-2 OS disk needs one";

/// How to get past it.
pub const DATA_DISK_FIX: &str = "Generation-2 VMs attach MBR data disks as they are, so a data disk needs no conversion; --data-disk makes it GPT without an ESP; --boot-files DIR (or --no-boot-files) makes an ESP for an OS vhdtool does not recognise";

/// The decisions made before any write.
pub struct Assessment {
    pub validation: Validation,
    pub boot: Resolved,
    pub windows: Option<WindowsReport>,
    /// Warnings of the Windows plan (a carried-over setting that could not be, ...).
    pub warnings: Vec<String>,
    pub os: OsType,
}

/// Resolves the boot files and the Windows installation of `disk`, validates its layout with
/// their checks attached, and refuses a disk that boots nothing (unless `opts.data_disk`).
/// `opts` gains what the room policy needs to know of them (the boot files' size, whether a
/// System Reserved partition may become the ESP).
pub fn assess(disk: &dyn Disk, source: &BootSource, opts: &mut Options) -> Result<Assessment> {
    let sb = opts.sector_bytes.unwrap_or(512);
    let mut boot = linux::resolve(disk, source, sb)?;
    opts.boot_files_bytes = boot.tree.file_bytes();
    let found = windows::discover(disk, source, sb, &opts.windows)?;
    opts.reusable = found.as_ref().map(|w| windows::reusable(w, sb));
    let mut validation = validate(disk, opts);
    super::boot::attach(&mut validation, &mut boot);
    let (windows, warnings) = match found {
        Some(w) => {
            let (r, ws) = windows::attach(&mut validation, &mut boot.tree, w);
            (Some(r), ws)
        }
        None => (None, Vec::new()),
    };
    let os = if opts.data_disk {
        OsType::None
    } else if windows.is_some() {
        OsType::Windows
    } else if boot.linux.is_some() {
        OsType::Linux
    } else if boot.check.is_none() && matches!(source, BootSource::FromImage) {
        OsType::None
    } else {
        // boot files given, or a Linux whose boot files are missing (its own check failed)
        OsType::Unknown
    };
    // said of a disk that is otherwise fine: a damaged or odd one has its own failures first
    if os == OsType::None && !opts.data_disk && validation.passed() {
        refuse_data_disk(&mut validation);
    }
    Ok(Assessment {
        validation,
        boot,
        windows,
        warnings,
        os,
    })
}

/// A disk that boots nothing: MBR2GPT refuses it too ("cannot find OS partition"). Nothing is
/// planned; the fix names the ways on.
fn refuse_data_disk(v: &mut Validation) {
    v.plan = None;
    v.checks.push(Check {
        id: DATA_DISK_CHECK,
        status: CheckStatus::Fail,
        detail: DATA_DISK_NOTE.into(),
        fix: Some(DATA_DISK_FIX.into()),
        kind: ErrorKind::InvalidInput,
    });
}
