//! Finding the Windows installation of a Gen1 disk, as MBR2GPT's validation does: the BIOS store
//! `\Boot\BCD` of the active partition (or the first partition holding one), `{bootmgr}`'s
//! default entry, its osdevice (MBR signature + byte offset) and so the Windows partition. A
//! `locate` or `boot` device (sysprepped images), or a store that cannot be read, falls back to
//! the partition holding `\Windows\System32\winload.exe`. Several installations are refused
//! unless one is named (`--windows-partition N`).
//!
//! Then what the conversion takes from the Windows partition, each read refusing what it cannot
//! copy faithfully: the bcdboot file set ([`crate::boot::windows::files`]), the SYSTEM hive (its
//! logs replayed when it is dirty) and ReAgent.xml, with where their bytes lie on the volume so
//! that they can be patched in place. Every refusal is a failed [`BootCheck`] with its reason
//! and fix; nothing here writes.

use serde::Serialize;

use super::bcd::{read_bios_store, BiosStore, Device, PartitionId};
use super::files::{boot_tree, BootFiles};
use super::hive::{read_system_hive, SystemHive};
use super::reagent::{read_reagent, ReAgent};
use super::version::{read_version, WindowsVersion};
use crate::boot::linux::{BootCheck, Verdict};
use crate::disk::{Disk, Window};
use crate::error::{ErrorKind, Result};
use crate::fs::ntfsfile::{NtfsVolume, VolumeFacts};
use crate::mbr::Mbr;
use crate::table::{self, TableKind};

/// Where the BIOS store is, on the system partition.
pub const BIOS_STORE: &str = "\\Boot\\BCD";
/// A Windows installation has its BIOS loader here.
pub const WINLOAD_EXE: &str = "\\Windows\\System32\\winload.exe";
/// Largest BIOS store read (real ones are 8-64 KiB).
const MAX_STORE_BYTES: u64 = 16 << 20;
/// OEM id of a BitLocker volume's boot sector (offset 3).
const BITLOCKER_OEM: &[u8; 8] = b"-FVE-FS-";

/// What the user said about Windows images.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WindowsOptions {
    /// `--windows-partition N`: the installation to convert when there are several.
    pub partition: Option<u32>,
    /// `--no-registry`: leave SYSTEM\MountedDevices and ReAgent.xml alone (with a warning).
    pub no_registry: bool,
    /// Read the version from the SOFTWARE hive (`info`: a conversion does not need it, and a
    /// real SOFTWARE hive is 30-200 MiB).
    pub version: bool,
}

/// A partition of the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Part {
    /// MBR numbering (1-4 primary, 5.. logical).
    pub index: u32,
    pub offset: u64,
    pub length: u64,
    pub type_id: u8,
    pub active: bool,
}

/// What was found of Windows on the disk, for `info`, `validate` and `convert`.
#[derive(Debug, Clone, Serialize)]
pub struct WindowsInstall {
    pub disk_signature: u32,
    /// The disk's data partitions.
    pub parts: Vec<Part>,
    /// The Windows partition (C:), when one was found.
    pub windows: Option<Part>,
    /// The BIOS system partition: where `\Boot\BCD` is.
    pub system: Option<Part>,
    /// How the Windows partition was found.
    pub found_by: String,
    /// The default entry's description ("Windows 7").
    pub description: Option<String>,
    /// WinRE: the partition holding the image, and its path.
    pub winre: Option<(u32, String)>,
    /// The BIOS system partition holds `\Recovery\WindowsRE`.
    pub system_has_winre: bool,
    /// The version, from the SOFTWARE hive (`None` when it could not be read: `version_error`).
    pub version: Option<WindowsVersion>,
    /// Why the version could not be read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version_error: Option<String>,
    /// Every Windows check, passed or not (ids `windows.*`); `validate` lists them.
    #[serde(skip)]
    pub checks: Vec<BootCheck>,
    #[serde(skip)]
    pub store: Option<BiosStore>,
    #[serde(skip)]
    pub files: Option<BootFiles>,
    #[serde(skip)]
    pub hive: Option<SystemHive>,
    #[serde(skip)]
    pub reagent: Option<ReAgent>,
}

impl WindowsInstall {
    /// The byte offset of partition `index`.
    pub fn offset_of(&self, index: u32) -> Option<u64> {
        self.parts
            .iter()
            .find(|p| p.index == index)
            .map(|p| p.offset)
    }
    /// MBR2GPT's rule for reusing the BIOS system partition as the ESP: not the Windows
    /// partition, no WinRE on it, 100 MiB to 1 GiB (260 MiB with 4 KiB sectors), NTFS or FAT
    /// (0x07, 0x0b, 0x0c). `Ok(index)` or why not.
    pub fn reusable(&self, sector_bytes: u32) -> std::result::Result<u32, String> {
        let sys = self
            .system
            .ok_or_else(|| "no BIOS system partition (\\Boot\\BCD) was found".to_string())?;
        let n = sys.index;
        if self.windows.is_some_and(|w| w.index == n) {
            return Err(format!(
                "partition {n} holds both the boot manager and Windows"
            ));
        }
        if self.winre.as_ref().is_some_and(|(i, _)| *i == n) || self.system_has_winre {
            return Err(format!("partition {n} holds WinRE (\\Recovery\\WindowsRE)"));
        }
        let min = if sector_bytes >= 4096 {
            260u64 << 20
        } else {
            100 << 20
        };
        if sys.length < min || sys.length > 1 << 30 {
            return Err(format!(
                "partition {n} is {} MiB; MBR2GPT reuses 100 MiB-1 GiB (260 MiB with 4 KiB sectors)",
                sys.length >> 20
            ));
        }
        if !matches!(sys.type_id, 0x07 | 0x0b | 0x0c) {
            return Err(format!("partition {n} has type 0x{:02x}", sys.type_id));
        }
        Ok(n)
    }
    /// True when no Windows check failed.
    pub fn ready(&self) -> bool {
        self.checks.iter().all(|c| c.verdict != Verdict::Fail)
    }
    fn pass(&mut self, id: &'static str, detail: impl Into<String>) {
        self.checks
            .push(check(id, Verdict::Pass, detail.into(), None));
    }
    fn warn(&mut self, id: &'static str, detail: impl Into<String>, fix: impl Into<String>) {
        self.checks
            .push(check(id, Verdict::Warn, detail.into(), Some(fix.into())));
    }
    fn fail(&mut self, id: &'static str, detail: impl Into<String>, fix: impl Into<String>) {
        self.checks
            .push(check(id, Verdict::Fail, detail.into(), Some(fix.into())));
    }
}

fn check(id: &'static str, verdict: Verdict, detail: String, fix: Option<String>) -> BootCheck {
    BootCheck {
        id,
        verdict,
        detail,
        fix,
        kind: ErrorKind::Unsupported,
    }
}

/// One partition as the search sees it.
struct Seen<'a> {
    part: Part,
    window: Window<'a, dyn Disk + 'a>,
    bitlocker: bool,
    ntfs: bool,
    has_store: bool,
    has_winload: bool,
}

/// The data partitions of an MBR disk.
pub fn partitions(m: &Mbr, sector_bytes: u32) -> Vec<Part> {
    let sbu = u64::from(sector_bytes);
    m.primaries
        .iter()
        .chain(m.logicals.iter())
        .filter(|p| !p.extended && p.sectors > 0 && p.type_id != 0)
        .filter_map(|p| {
            Some(Part {
                index: p.index,
                offset: p.start_lba.checked_mul(sbu)?,
                length: p.sectors.checked_mul(sbu)?,
                type_id: p.type_id,
                active: p.bootable,
            })
        })
        .collect()
}

fn seen<'a>(data: &'a dyn Disk, part: Part) -> Option<Seen<'a>> {
    let window = Window::new(data, part.offset, part.length).ok()?;
    let mut boot = [0u8; 11];
    window.read_at(0, &mut boot).ok()?;
    let bitlocker = boot.get(3..11) == Some(BITLOCKER_OEM.as_slice());
    let (mut ntfs, mut has_store, mut has_winload) = (false, false, false);
    if let Ok(vol) = NtfsVolume::open(&window) {
        ntfs = true;
        has_store = vol.exists(BIOS_STORE).unwrap_or(false);
        has_winload = vol.exists(WINLOAD_EXE).unwrap_or(false);
    }
    Some(Seen {
        part,
        window,
        bitlocker,
        ntfs,
        has_store,
        has_winload,
    })
}

/// Look for Windows on the disk `data` (the virtual disk, without a VHD footer). `None` when
/// the disk is not MBR or shows no sign of Windows (no BIOS store, no winload.exe, no
/// BitLocker volume).
pub fn discover(
    data: &dyn Disk,
    sector_bytes: u32,
    opts: &WindowsOptions,
) -> Result<Option<WindowsInstall>> {
    let tables = table::read_tables(data, false);
    let (TableKind::Mbr, Some(m)) = (tables.kind, tables.mbr.as_ref()) else {
        return Ok(None);
    };
    let all: Vec<Seen> = partitions(m, sector_bytes)
        .into_iter()
        .filter_map(|p| seen(data, p))
        .collect();
    if !all.iter().any(|s| s.has_store || s.has_winload) {
        return Ok(None);
    }
    let mut w = WindowsInstall {
        disk_signature: m.disk_signature,
        parts: all.iter().map(|s| s.part).collect(),
        windows: None,
        system: None,
        found_by: String::new(),
        description: None,
        winre: None,
        system_has_winre: false,
        version: None,
        version_error: None,
        checks: Vec::new(),
        store: None,
        files: None,
        hive: None,
        reagent: None,
    };
    read_store(&mut w, &all);
    let chosen = choose_windows(&mut w, &all, opts);
    if let Some(win) = chosen {
        carry_entry_of(&mut w, win);
    }
    w.winre = w.store.as_ref().and_then(|st| {
        let re = st.winre.as_ref()?;
        let s = named(&all, w.disk_signature, &re.wim_partition)?;
        Some((s.part.index, re.wim_path.clone()))
    });
    let Some(win) = chosen else {
        return Ok(Some(w));
    };
    w.windows = Some(win.part);
    if win.bitlocker {
        w.fail(
            "windows.bitlocker",
            format!("partition {} (the Windows partition) is BitLocker-encrypted: its files cannot be read offline", win.part.index),
            "decrypt it in Windows (manage-bde -off C:, wait for it to finish), convert, then turn BitLocker on again",
        );
        return Ok(Some(w));
    }
    let vol = match NtfsVolume::open(&win.window) {
        Ok(v) => v,
        Err(e) => {
            w.fail(
                "windows.volume",
                format!("partition {}: {e}", win.part.index),
                "run chkdsk on the volume in Windows",
            );
            return Ok(Some(w));
        }
    };
    if !volume_checks(&mut w, &vol, win.part.index) {
        return Ok(Some(w));
    }
    take_files(&mut w, &vol, opts);
    Ok(Some(w))
}

/// When the store's default entry does not boot the Windows partition found (its default is a
/// WinPE ramdisk, a `locate` or `boot` device, another disk), the entry that does boot it names
/// what the new store carries over (description, locale, WinRE), as MBR2GPT keeps that
/// entry's settings; with no such entry the default's stay.
fn carry_entry_of(w: &mut WindowsInstall, win: &Seen) {
    let Some(store) = &w.store else { return };
    let names_it = matches!(
        &store.os_device,
        Device::Partition { partition: PartitionId::Mbr { signature, offset }, .. }
            if *signature == w.disk_signature && *offset == win.part.offset
    );
    if names_it {
        return;
    }
    let Some(alt) = store.entry_for(w.disk_signature, win.part.offset) else {
        return;
    };
    w.pass(
        "windows.entry",
        format!(
            "the default entry {{{}}} \"{}\" does not boot partition {}; entry {{{}}} \"{}\" does: the new store carries it (its description, locale and WinRE)",
            store.default_loader,
            store.description.as_deref().unwrap_or(""),
            win.part.index,
            alt.default_loader,
            alt.description.as_deref().unwrap_or("")
        ),
    );
    w.description.clone_from(&alt.description);
    w.store = Some(alt);
}

/// `\Boot\BCD` from the active partition, else the first partition holding one.
fn read_store(w: &mut WindowsInstall, all: &[Seen]) {
    let Some(sys) = all
        .iter()
        .find(|s| s.part.active && s.has_store)
        .or_else(|| all.iter().find(|s| s.has_store))
    else {
        w.warn(
            "windows.bcd",
            "no partition holds a BIOS store (\\Boot\\BCD)",
            "the Windows partition is found by its winload.exe instead",
        );
        return;
    };
    w.system = Some(sys.part);
    let vol = NtfsVolume::open(&sys.window);
    w.system_has_winre = vol
        .as_ref()
        .is_ok_and(|v| v.exists("\\Recovery\\WindowsRE").unwrap_or(true));
    let read = vol
        .and_then(|v| v.read_file(BIOS_STORE, MAX_STORE_BYTES))
        .and_then(|b| read_bios_store(&b));
    match read {
        Ok(store) => {
            w.description.clone_from(&store.description);
            w.pass(
                "windows.bcd",
                format!(
                    "BIOS store on partition {}: default entry {{{}}} \"{}\"",
                    sys.part.index,
                    store.default_loader,
                    store.description.as_deref().unwrap_or("")
                ),
            );
            w.store = Some(store);
        }
        Err(e) => w.warn(
            "windows.bcd",
            format!(
                "the BIOS store on partition {} cannot be used: {e}",
                sys.part.index
            ),
            "the Windows partition is found by its winload.exe instead",
        ),
    }
}

/// The partition an MBR partition id names on this disk.
fn named<'s, 'a>(all: &'s [Seen<'a>], signature: u32, id: &PartitionId) -> Option<&'s Seen<'a>> {
    match *id {
        PartitionId::Mbr {
            signature: sig,
            offset,
        } if sig == signature => all.iter().find(|s| s.part.offset == offset),
        _ => None,
    }
}

/// The Windows partition: as named by `--windows-partition`, by the store's osdevice, or as the
/// one partition holding winload.exe.
fn choose_windows<'s, 'a>(
    w: &mut WindowsInstall,
    all: &'s [Seen<'a>],
    opts: &WindowsOptions,
) -> Option<&'s Seen<'a>> {
    let installs: Vec<&Seen> = all.iter().filter(|s| s.has_winload).collect();
    let list = installs
        .iter()
        .map(|s| s.part.index.to_string())
        .collect::<Vec<_>>()
        .join(", ");
    if let Some(n) = opts.partition {
        return match all.iter().find(|s| s.part.index == n) {
            Some(s) if s.has_winload => {
                w.found_by = format!("--windows-partition {n}");
                w.pass(
                    "windows.install",
                    format!("Windows on partition {n}, as named"),
                );
                Some(s)
            }
            _ => {
                w.fail(
                    "windows.install",
                    format!("--windows-partition {n}: partition {n} holds no {WINLOAD_EXE} (installations on: {list})"),
                    "name a partition that holds Windows",
                );
                None
            }
        };
    }
    if installs.len() > 1 {
        w.fail(
            "windows.install",
            format!("several Windows installations, on partitions {list}: the conversion writes one boot configuration"),
            "name the one to boot with --windows-partition N",
        );
        return None;
    }
    let by_store = w.store.as_ref().and_then(|st| match &st.os_device {
        Device::Partition { partition, .. } => named(all, w.disk_signature, partition),
        _ => None,
    });
    if let Some(s) = by_store {
        if s.bitlocker || s.has_winload {
            w.found_by = "the BIOS store's default entry (osdevice)".into();
            w.pass(
                "windows.install",
                format!(
                    "Windows on partition {} (the default entry's osdevice)",
                    s.part.index
                ),
            );
            return Some(s);
        }
    }
    let why = match w.store.as_ref().map(|s| &s.os_device) {
        Some(Device::Locate(_)) => {
            "the default entry's osdevice is a locate device (a sysprepped store)"
        }
        Some(Device::Boot) => "the default entry's osdevice is the boot device",
        Some(Device::Ramdisk { .. }) => "the default entry's osdevice is a ramdisk (a WinPE entry)",
        Some(Device::Partition { .. }) => {
            "the default entry's osdevice is not a partition of this disk holding Windows"
        }
        Some(_) => "the default entry's osdevice is not a partition",
        None => "no usable BIOS store",
    };
    match installs.first() {
        Some(s) => {
            w.found_by = format!("{WINLOAD_EXE} ({why})");
            w.pass(
                "windows.install",
                format!(
                    "Windows on partition {}, the one holding {WINLOAD_EXE} ({why})",
                    s.part.index
                ),
            );
            Some(*s)
        }
        None => {
            // no winload.exe anywhere: the store may name a BitLocker volume
            if let Some(s) = by_store.filter(|s| s.bitlocker) {
                return Some(s);
            }
            if let Some(s) = all.iter().find(|s| s.bitlocker && !s.ntfs) {
                w.found_by = "the only BitLocker volume".into();
                return Some(s);
            }
            w.fail(
                "windows.install",
                format!("no partition holds {WINLOAD_EXE} ({why})"),
                "check that this is a Windows image; a data disk needs no conversion (Gen2 VMs attach MBR data disks)",
            );
            None
        }
    }
}

/// Dirty NTFS, hibernation: false when the volume must not be changed.
fn volume_checks(w: &mut WindowsInstall, vol: &NtfsVolume, index: u32) -> bool {
    let facts: VolumeFacts = match vol.facts() {
        Ok(f) => f,
        Err(e) => {
            w.fail(
                "windows.volume",
                format!("partition {index}: {e}"),
                "run chkdsk on the volume in Windows",
            );
            return false;
        }
    };
    let mut ok = true;
    if facts.dirty {
        ok = false;
        w.fail(
            "windows.dirty",
            format!("partition {index}: the NTFS volume is marked dirty (chkdsk is due; $LogFile may hold changes not yet written)"),
            "boot Windows and shut it down cleanly (or run chkdsk /f), then convert",
        );
    }
    if facts.hiberfil.as_ref().is_some_and(|h| h.is_hibernated()) {
        ok = false;
        w.fail(
            "windows.hibernated",
            format!("partition {index}: \\hiberfil.sys holds a hibernated system or a Fast Startup image"),
            "in Windows: powercfg /h off (or shut down with shutdown /s /f /t 0 and Fast Startup disabled), then convert",
        );
    }
    if ok {
        w.pass(
            "windows.volume",
            format!(
                "partition {index}: NTFS {}.{}, clean, not hibernated",
                facts.version.0, facts.version.1
            ),
        );
    }
    ok
}

/// The version (when asked), the boot files, the SYSTEM hive and ReAgent.xml.
fn take_files(w: &mut WindowsInstall, vol: &NtfsVolume, opts: &WindowsOptions) {
    if opts.version {
        match read_version(vol) {
            Ok(v) => w.version = v,
            Err(e) => w.version_error = Some(format!("SOFTWARE hive: {e}")),
        }
    }
    match boot_tree(vol) {
        Ok(f) => {
            w.pass(
                "windows.bootfiles",
                format!(
                    "{} files ({} bytes) from \\Windows\\Boot for the ESP, as bcdboot lays them out",
                    f.sources.len(),
                    f.tree.file_bytes()
                ),
            );
            w.files = Some(f);
        }
        Err(e) => {
            let fix = if e.kind() == ErrorKind::Unsupported {
                "decompress the boot files in Windows (compact /u /s:C:\\Windows\\Boot), then convert"
            } else {
                "repair the boot files in Windows (sfc /scannow), then convert"
            };
            w.fail("windows.bootfiles", e.message().to_string(), fix);
        }
    }
    if opts.no_registry {
        w.warn(
            "windows.registry",
            "--no-registry: SYSTEM\\MountedDevices is left in its MBR form, so Windows gives the volumes new drive letters (C: included) at the first boot",
            "leave out --no-registry to have the drive letters kept",
        );
        return;
    }
    match read_system_hive(vol) {
        Ok(h) => {
            let detail = h.summary();
            w.pass("windows.registry", detail);
            w.hive = Some(h);
        }
        Err(e) => w.fail(
            "windows.registry",
            format!("SYSTEM hive: {e}"),
            "boot Windows and shut it down cleanly (the hive's logs are then written back), or pass --no-registry to skip the drive-letter update",
        ),
    }
    match read_reagent(vol) {
        Ok(r) => w.reagent = r,
        Err(e) => w.warn(
            "windows.winre",
            format!("ReAgent.xml: {e}"),
            "after the first boot: reagentc /disable && reagentc /enable",
        ),
    }
}
