//! Windows images in a conversion: the boot layer's findings ([`crate::boot::windows`]) become
//! `validate`'s `windows.*` checks, and with a plan: the ESP's files as bcdboot lays them out,
//! the new UEFI store with the plan's GPT GUIDs, and the in-place writes of the SYSTEM hive
//! (`MountedDevices`) and ReAgent.xml as steps of the plan (the plan stays the only place a
//! write is described: apply, the journal, `--verify` and rollback see them as any other).

use std::fmt::Write as _;

use serde::Serialize;

use super::checks::{Check, CheckStatus};
use super::options::Reusable;
use super::plan::{Payload, Plan, Step};
use super::validate::Validation;
use crate::boot::linux::BootSource;
use crate::boot::windows::files::{Source, ESP_BCD};
use crate::boot::windows::target::TargetSummary;
use crate::boot::windows::{self, GptIdentity, WindowsInstall, WindowsOptions};
use crate::disk::{Disk, Window};
use crate::error::{Error, Result};
use crate::esp::EspTree;
use crate::gpt;

/// What to check in the guest after its first Generation-2 boot.
pub const GUEST_NOTES: [&str; 4] = [
    "bcdedit /enum all: {bootmgr} on the ESP (\\EFI\\Microsoft\\Boot\\bootmgfw.efi), the default entry's device and osdevice on C:, its path \\Windows\\system32\\winload.efi",
    "reagentc /info: WinRE enabled (if it is not: reagentc /disable && reagentc /enable)",
    "drive letters: C: and the other volumes keep their letters (diskmgmt.msc or Get-Volume); MountedDevices was rewritten to the GPT form",
    "BitLocker: if protection was suspended before the conversion, delete and re-create the protectors (manage-bde -protectors -delete C: -type tpm; manage-bde -protectors -add C: -tpm), then manage-bde -on C:",
];

/// The Windows part of `validate`'s and `convert`'s reports.
#[derive(Debug, Clone, Serialize)]
pub struct WindowsReport {
    #[serde(flatten)]
    pub install: WindowsInstall,
    /// Files put into the ESP and where each came from.
    pub esp_files: Vec<Source>,
    /// The new store and the in-place writes (with a plan).
    pub target: Option<TargetSummary>,
    pub guest_notes: Vec<&'static str>,
}

impl WindowsReport {
    /// What `info` shows: what was found, no plan.
    pub fn found(install: WindowsInstall) -> WindowsReport {
        WindowsReport {
            esp_files: install
                .files
                .as_ref()
                .map(|f| f.sources.clone())
                .unwrap_or_default(),
            install,
            target: None,
            guest_notes: Vec::new(),
        }
    }

    /// `info`'s text: what was found, and the Windows checks that did not pass.
    pub fn render_info(&self) -> String {
        let mut o = self.render();
        for c in self
            .install
            .checks
            .iter()
            .filter(|c| c.verdict != crate::boot::linux::Verdict::Pass)
        {
            let _ = writeln!(o, "  {:?} {}: {}", c.verdict, c.id, c.detail);
            if let Some(f) = &c.fix {
                let _ = writeln!(o, "      fix: {f}");
            }
        }
        o
    }

    /// Human text for `convert` and `validate`.
    pub fn render(&self) -> String {
        let mut o = String::new();
        let i = &self.install;
        let _ = writeln!(o, "\nWindows");
        if let Some(p) = &i.windows {
            let _ = writeln!(
                o,
                "  Windows partition    {} (found by {})",
                p.index, i.found_by
            );
        }
        if let Some(p) = &i.system {
            let _ = writeln!(o, "  BIOS system partition {}", p.index);
        }
        match (&i.version, &i.version_error) {
            (Some(v), _) => {
                let _ = writeln!(o, "  version              {}", v.display());
            }
            (None, Some(e)) => {
                let _ = writeln!(o, "  version              unknown ({e})");
            }
            (None, None) => {}
        }
        if let Some(d) = &i.description {
            let _ = writeln!(o, "  default entry        {d}");
        }
        if let Some((n, path)) = &i.winre {
            let _ = writeln!(o, "  WinRE                partition {n}: {path}");
        }
        if let Some(t) = &self.target {
            let _ = writeln!(o, "  new default loader   {}", t.loader);
            if !t.mounted_devices_changed.is_empty() {
                let _ = writeln!(
                    o,
                    "  MountedDevices       {} (GPT form)",
                    t.mounted_devices_changed.join(", ")
                );
            }
            for n in &self.guest_notes {
                let _ = writeln!(o, "  after the first Generation-2 boot: {n}");
            }
        }
        o
    }
}

/// Look for Windows when the ESP's files come from the image (not with `--boot-files` or
/// `--no-boot-files`). `None`: not MBR, or no sign of Windows.
pub fn discover(
    file: &dyn Disk,
    source: &BootSource,
    sector_bytes: u32,
    opts: &WindowsOptions,
) -> Result<Option<WindowsInstall>> {
    if !matches!(source, BootSource::FromImage) {
        return Ok(None);
    }
    let image = crate::vhd::probe(file);
    if !matches!(
        image.format,
        crate::vhd::Format::Raw | crate::vhd::Format::VhdFixed
    ) {
        return Ok(None);
    }
    let data = Window::new(file, 0, image.data_bytes)?;
    windows::discover(&data, sector_bytes, opts)
}

/// The System Reserved partition's verdict for the room policy.
pub fn reusable(w: &WindowsInstall, sector_bytes: u32) -> Reusable {
    match w.reusable(sector_bytes) {
        Ok(n) => Reusable::Yes(n),
        Err(why) => Reusable::No(why),
    }
}

/// The GPT identity of `plan`: its disk GUID, the ESP's GUID, and each old partition's offset
/// with its new GUID.
fn identity(plan: &Plan) -> Result<GptIdentity> {
    let sbu = u64::from(plan.sector_bytes);
    let index = plan
        .esp
        .as_ref()
        .map(|e| e.index)
        .ok_or_else(|| Error::invalid("--data-disk: this disk holds Windows, and a Windows disk without an ESP cannot boot as Generation 2 (leave out --data-disk)"))?;
    let esp = plan
        .partitions
        .iter()
        .find(|p| p.entry.index == index)
        .ok_or_else(|| Error::internal("the plan has no ESP entry"))?;
    // the ESP too: reused, it is the old System Reserved partition, and MountedDevices may
    // name it by its offset
    let partitions = plan
        .partitions
        .iter()
        .filter(|p| p.entry.type_guid != gpt::guid::BIOS_BOOT)
        .filter_map(|p| Some((p.entry.first_lba.checked_mul(sbu)?, p.entry.unique_guid)))
        .collect();
    Ok(GptIdentity {
        disk: plan.disk_guid,
        esp: esp.entry.unique_guid,
        partitions,
    })
}

/// Add the Windows checks to `v`; with a plan, fill the ESP `tree` (bcdboot's files and the new
/// store) and add the in-place writes to the plan. A failed check drops the plan. Returns the
/// report and the warnings for `convert`.
pub fn attach(
    v: &mut Validation,
    tree: &mut EspTree,
    install: WindowsInstall,
) -> (WindowsReport, Vec<String>) {
    let mut report = WindowsReport::found(install);
    if v.already_gpt {
        return (report, Vec::new());
    }
    v.checks
        .extend(report.install.checks.iter().map(Check::from));
    if !report.install.ready() {
        v.plan = None;
        return (report, Vec::new());
    }
    let Some(plan) = v.plan.as_mut() else {
        return (report, Vec::new());
    };
    match plan_windows(plan, tree, &report.install) {
        Ok((summary, warnings)) => {
            report.target = Some(summary);
            report.guest_notes = GUEST_NOTES.to_vec();
            (report, warnings)
        }
        Err(e) => {
            v.checks.push(Check {
                id: "windows.plan",
                status: CheckStatus::Fail,
                detail: e.to_string(),
                fix: Some(if e.kind() == crate::error::ErrorKind::Internal {
                    "report this with `vhdtool info --json` of the image".into()
                } else {
                    "leave out --data-disk".into()
                }),
                kind: e.kind(),
            });
            v.plan = None;
            (report, Vec::new())
        }
    }
}

/// The ESP's files and the store, and the in-place writes as steps (before the ESP's step, so
/// every write inside the Windows partition is done while the disk is still MBR).
fn plan_windows(
    plan: &mut Plan,
    tree: &mut EspTree,
    install: &WindowsInstall,
) -> Result<(TargetSummary, Vec<String>)> {
    let id = identity(plan)?;
    let target = windows::convert_install(install, &id)?;
    let mut t = install
        .files
        .as_ref()
        .map(|f| f.tree.clone())
        .ok_or_else(|| Error::internal("Windows plan without boot files"))?;
    t.add_file(ESP_BCD, target.store.bytes.clone())?;
    *tree = t;
    let at = plan
        .steps
        .iter()
        .position(|s| matches!(s.payload, Payload::Esp))
        .unwrap_or(0);
    for (k, w) in target.writes.iter().enumerate() {
        let step = Step {
            offset: w.offset,
            length: u64::try_from(w.bytes.len()).unwrap_or(u64::MAX),
            what: w.what.clone(),
            payload: Payload::Bytes(w.bytes.clone()),
        };
        plan.steps.insert(at.saturating_add(k), step);
    }
    Ok((target.summary(), target.warnings.clone()))
}
