//! `validate`: every check in order, then the room for the ESP, then the plan. Reads only.

use serde::Serialize;

use crate::disk::{Disk, Window};
use crate::error::ErrorKind;
use crate::finding::Finding;
use crate::table;

use super::bios;
use super::checks::{self, last_lba, Check, CheckStatus, Checks, TableVerdict};
use super::options::Options;
use super::plan::{self, Decided, Plan};
use super::room::{self, Facts};

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

/// Run every check and, if they pass, compute the plan.
pub fn validate(file: &dyn Disk, opts: &Options) -> Validation {
    let mut c = Checks::default();
    let mut notes = Vec::new();
    let mut already_gpt = false;
    let plan = checked_plan(file, opts, &mut c, &mut notes, &mut already_gpt);
    Validation {
        checks: c.0,
        notes,
        already_gpt,
        plan,
    }
}

/// The checks, the room and the plan; `None` where a check stops it.
fn checked_plan(
    file: &dyn Disk,
    opts: &Options,
    c: &mut Checks,
    notes: &mut Vec<Finding>,
    already_gpt: &mut bool,
) -> Option<Plan> {
    let (image, sb) = checks::container(c, file, opts)?;
    let data = match Window::new(file, 0, image.data_bytes) {
        Ok(w) => w,
        Err(e) => {
            c.fail("image.footer", e.to_string(), "check the image");
            return None;
        }
    };
    let tables = table::read_tables(&data, false);
    match checks::table(c, notes, &tables) {
        TableVerdict::AlreadyGpt => {
            *already_gpt = true;
            return None;
        }
        TableVerdict::Refused => return None,
        TableVerdict::Mbr => {}
    }
    let m = tables.mbr.as_ref()?;
    let total_sectors = image.data_bytes.checked_div(u64::from(sb)).unwrap_or(0);
    let parts = checks::partitions(c, m, total_sectors)?;
    let gpt_types = checks::types(c, &parts, &opts.maps);
    let gpt = checks::gpt_room(c, &parts, sb, opts.hybrid);
    checks::encrypted(c, &data, &parts, sb);
    let hybrid = if opts.hybrid {
        bios::hybrid_check(c, &data, &parts, sb, gpt.first_start)
    } else {
        None
    };
    let boot_code = bios::boot_code(notes, &data, m, sb, gpt, hybrid.as_ref());
    let esp_bytes = if opts.data_disk {
        c.pass("esp.size", "--data-disk: no ESP");
        0
    } else {
        checks::esp_size(c, opts, sb)
    };
    let mut esp_sectors = esp_bytes.checked_div(u64::from(sb)).unwrap_or(0);
    let facts = Facts {
        data: &data,
        format: image.format,
        parts: &parts,
        spans: m
            .primaries
            .iter()
            .chain(m.logicals.iter())
            .filter(|p| p.sectors > 0)
            .map(|p| (p.start_lba, last_lba(p)))
            .collect(),
        sector_bytes: sb,
        disk_bytes: image.data_bytes,
        gpt,
        bios_boot_last: hybrid.as_ref().map(|r| r.last_lba),
    };
    let chosen = match room::choose(&facts, opts, esp_sectors) {
        Ok(x) => x,
        Err(why) => {
            c.fail(
                "room.esp",
                why.message(),
                "choose another --room: grow adds the ESP and the backup GPT past the last partition; shrink takes them from the last partition (NTFS, ext2/3/4, swap); free needs unallocated space",
            );
            return None;
        }
    };
    if let Some((_, sectors)) = chosen.reused {
        esp_sectors = sectors;
    }
    if opts.data_disk {
        c.pass("room.esp", chosen.reason.clone());
    } else {
        c.pass(
            "room.esp",
            format!(
                "{}: ESP at LBA {}, {}",
                chosen.reason,
                chosen.esp_first,
                crate::units::human_bytes(esp_sectors.saturating_mul(u64::from(sb)))
            ),
        );
    }
    if let Some(l) = &chosen.shrink {
        notes.extend(
            l.notes
                .iter()
                .map(|n| Finding::info("room.shrink", n.clone())),
        );
    }
    checks::azure_size(c, image.format, chosen.new_disk_bytes);
    if c.failed() {
        return None;
    }
    let decided = Decided {
        image: &image,
        parts: &parts,
        gpt_types: &gpt_types,
        sector_bytes: sb,
        room: chosen.room,
        room_reason: chosen.reason,
        esp_first: chosen.esp_first,
        reused: chosen.reused.map(|r| r.0),
        data_disk: opts.data_disk,
        esp_sectors,
        esp_label: opts.esp_label.clone(),
        new_disk_bytes: chosen.new_disk_bytes,
        boot_code,
        shrink: chosen.shrink,
        hybrid,
        random_guids: opts.random_guids,
    };
    match plan::build(file, decided) {
        Ok(p) => Some(p),
        Err(e) => {
            // the error keeps its kind (and so its exit code): a file cut short while it is
            // planned is an I/O error, only a broken invariant is vhdtool's bug
            let kind = e.kind();
            let fix = if kind == ErrorKind::Internal {
                "report this as a bug with `vhdtool info --json` of the image"
            } else {
                "see the error; the image was not modified"
            };
            c.fail_as(kind, "plan", e.to_string(), fix);
            None
        }
    }
}
