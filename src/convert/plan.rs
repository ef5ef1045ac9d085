//! The plan: every write of a conversion, as a list of [`Step`]s, built from reads only.
//!
//! The steps are the only place a write is described. `apply` carries them out in order, the
//! journal saves the old bytes of exactly these steps, `validate` and `--dry-run` print them,
//! `--verify` proves that nothing else changed, and the fuzz targets run the same `apply` on an
//! in-memory disk. A new write (a registry hive patch, a BCD store) is one more step, built here.

use serde::ser::SerializeStruct;
use serde::Serialize;

use crate::disk::{Disk, Region};
use crate::error::{Error, Result};
use crate::gpt::{self, GptPartition, Guid};
use crate::mbr::{self, MbrPartition};
use crate::vhd::{self, Format};

use super::checks::GPT_ENTRIES;
use super::identity::Identity;
use super::room::{Room, ShrinkAction, ShrinkLayout};
use crate::boot::linux::hybrid;

/// What a step writes.
#[derive(Debug, Clone)]
pub enum Payload {
    /// These bytes, as they are.
    Bytes(Vec<u8>),
    /// Zeros over the whole step (the old VHD footer, now inside a grown disk).
    Zeros,
    /// The ESP's FAT32 image, built from the boot files ([`Plan::esp`]) before the first write.
    /// Only the MiB blocks that differ from what the image holds are written.
    Esp,
    /// An external tool: `resize2fs` shrinks the ext2/3/4 filesystem of the partition at the
    /// step's offset to the step's length. In place, `apply` runs it on an overlay first and
    /// replaces the step by the journaled writes of its result (`journal::overlay`).
    Resize2fs,
}

/// One write of the plan: where, how much, what it is (for people and the journal), and its
/// payload.
#[derive(Debug, Clone)]
pub struct Step {
    pub offset: u64,
    pub length: u64,
    pub what: String,
    pub payload: Payload,
}

impl Step {
    fn bytes(offset: u64, bytes: Vec<u8>, what: impl Into<String>) -> Step {
        Step {
            offset,
            length: crate::units::len_u64(bytes.len()),
            what: what.into(),
            payload: Payload::Bytes(bytes),
        }
    }
    /// Written by an external tool with its own undo: its old bytes are not copied into the
    /// journal.
    pub fn external(&self) -> bool {
        matches!(self.payload, Payload::Resize2fs)
    }
    /// Where the step writes, named.
    pub fn region(&self) -> Region {
        Region {
            offset: self.offset,
            length: self.length,
            what: self.what.clone(),
        }
    }
}

/// A step prints as the region it writes (`regions` in `validate --json`).
impl Serialize for Step {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let mut st = s.serialize_struct("Step", if self.external() { 4 } else { 3 })?;
        st.serialize_field("offset", &self.offset)?;
        st.serialize_field("length", &self.length)?;
        st.serialize_field("what", &self.what)?;
        if self.external() {
            st.serialize_field("external", &true)?;
        }
        st.end()
    }
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
}

/// One entry of the new GPT (the same fields as an entry read from a disk), and where it came
/// from.
#[derive(Debug, Clone, Serialize)]
pub struct NewPartition {
    #[serde(flatten)]
    pub entry: GptPartition,
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
    /// The ESP; `None` for `--data-disk`.
    pub esp: Option<EspLayout>,
    /// The shrink step (`room: shrink`).
    pub shrink: Option<ShrinkPlan>,
    /// Every write, in file offsets, in the order `apply` carries them out.
    #[serde(rename = "regions")]
    pub steps: Vec<Step>,
    /// The boot code area of the protective MBR: kept or cleared, and why.
    pub boot_code: String,
    /// `--hybrid`: the BIOS boot partition that now holds GRUB's core.img.
    pub bios_boot: Option<BiosBoot>,
}

impl Plan {
    /// The regions the steps write (for `--verify` and the journal's readers).
    pub fn regions(&self) -> Vec<Region> {
        self.steps.iter().map(Step::region).collect()
    }
}

/// What the checks and the room policy decided, from which the plan is built.
pub struct Decided<'a> {
    pub image: &'a vhd::Image,
    pub parts: &'a [&'a MbrPartition],
    pub gpt_types: &'a [(Guid, u64)],
    pub sector_bytes: u32,
    pub room: Room,
    pub room_reason: String,
    pub esp_first: u64,
    pub esp_sectors: u64,
    pub esp_label: String,
    pub new_disk_bytes: u64,
    pub boot_code: String,
    pub shrink: Option<ShrinkLayout>,
    pub hybrid: Option<hybrid::Relocation>,
    pub random_guids: bool,
    /// `Room::Reuse`: the MBR partition that becomes the ESP (its GPT slot and LBAs).
    pub reused: Option<u32>,
    /// `--data-disk`: no ESP at all.
    pub data_disk: bool,
}

/// The ESP's last LBA (inclusive).
fn esp_last(d: &Decided) -> u64 {
    d.esp_first.saturating_add(d.esp_sectors).saturating_sub(1)
}

/// GPT entry names, as gdisk gives converted partitions (its type names) and Windows its ESP.
fn entry_name(t: &Guid) -> String {
    gpt::guid::type_name(t).unwrap_or("Unknown").to_string()
}

fn new_partition(index: u32, type_guid: Guid, unique_guid: Guid, lbas: (u64, u64)) -> NewPartition {
    NewPartition {
        entry: GptPartition {
            index,
            type_guid,
            type_name: gpt::guid::type_name(&type_guid),
            unique_guid,
            first_lba: lbas.0,
            last_lba: lbas.1,
            attributes: 0,
            name: entry_name(&type_guid),
        },
        from: String::new(),
    }
}

fn gpt_index(i: usize) -> Result<u32> {
    u32::try_from(i.saturating_add(1)).map_err(|_| Error::invalid("too many partitions"))
}

/// The new GPT's entries: the MBR partitions (same LBAs; the shrunk one shorter), the ESP, and
/// with `--hybrid` the BIOS boot partition; and the shrink step's description.
fn partitions(d: &Decided, id: &Identity) -> Result<(Vec<NewPartition>, Option<ShrinkPlan>)> {
    let sbu = u64::from(d.sector_bytes);
    let mut out = Vec::new();
    let mut shrink_plan = None;
    let esp_entry = |index: u32, from: String| {
        let esp_lbas = (d.esp_first, esp_last(d));
        let mut esp = new_partition(index, gpt::guid::ESP, id.guid("esp"), esp_lbas);
        esp.entry.name = "EFI system partition".to_string();
        esp.from = from;
        esp
    };
    for (i, (p, (ty, attrs))) in d.parts.iter().zip(d.gpt_types).enumerate() {
        let index = gpt_index(i)?;
        if d.reused == Some(p.index) {
            let from = format!(
                "MBR partition {} (System Reserved), reformatted as the EFI system partition",
                p.index
            );
            out.push(esp_entry(index, from));
            continue;
        }
        let mut sectors = p.sectors;
        if let Some(l) = d.shrink.as_ref().filter(|l| l.mbr_index == p.index) {
            sectors = l.new_sectors;
            shrink_plan = Some(ShrinkPlan {
                partition: index,
                mbr_index: p.index,
                filesystem: l.fs_name.clone(),
                old_bytes: l.old_sectors.saturating_mul(sbu),
                new_bytes: l.new_sectors.saturating_mul(sbu),
                method: l.method.clone(),
            });
        }
        let mut e = new_partition(
            index,
            *ty,
            id.guid(&format!("partition {}", p.index)),
            (
                p.start_lba,
                p.start_lba.saturating_add(sectors).saturating_sub(1),
            ),
        );
        e.entry.attributes = *attrs;
        e.from = format!(
            "MBR partition {} (type 0x{:02x}{})",
            p.index,
            p.type_id,
            if p.logical { ", logical" } else { "" }
        );
        out.push(e);
    }
    let esp_index = gpt_index(out.len())?;
    if d.reused.is_none() && !d.data_disk {
        out.push(esp_entry(esp_index, "new EFI system partition".to_string()));
    }
    if let Some(r) = &d.hybrid {
        let mut b = new_partition(
            gpt_index(out.len())?,
            gpt::guid::BIOS_BOOT,
            id.guid("bios boot"),
            (r.first_lba, r.last_lba),
        );
        b.entry.name = "BIOS boot partition".to_string();
        b.from = format!(
            "new BIOS boot partition (GRUB core.img from LBA {})",
            r.old_lba
        );
        out.push(b);
    }
    Ok((out, shrink_plan))
}

/// Build the plan: the partitions, then every write in the order it is carried out.
pub fn build(file: &dyn Disk, d: Decided) -> Result<Plan> {
    let sbu = u64::from(d.sector_bytes);
    let id = Identity::of(file, d.image, d.random_guids)?;
    let disk_guid = id.guid("disk");
    let (partitions, shrink_plan) = partitions(&d, &id)?;
    let esp_index = match partitions
        .iter()
        .find(|p| p.entry.type_guid == gpt::guid::ESP && p.entry.first_lba == d.esp_first)
    {
        Some(p) => p.entry.index,
        None if d.data_disk => gpt_index(partitions.len())?,
        None => return Err(Error::internal("the plan has no ESP")),
    };
    let bios_index = partitions
        .iter()
        .find(|p| p.entry.type_guid == gpt::guid::BIOS_BOOT)
        .map_or(esp_index.saturating_add(1), |p| p.entry.index);
    let bios_boot = d.hybrid.as_ref().map(|r| BiosBoot {
        index: bios_index,
        first_lba: r.first_lba,
        last_lba: r.last_lba,
        core_from_lba: r.old_lba,
        core_sectors: r.core_sectors,
    });
    let footer = match (&d.image.format, &d.image.footer) {
        (Format::VhdFixed, Some(_)) => {
            let mut raw = [0u8; 512];
            file.read_at(d.image.data_bytes, &mut raw)?;
            Some(vhd::footer::converted_footer(&raw, d.new_disk_bytes)?)
        }
        _ => None,
    };
    let new_file_bytes = d
        .new_disk_bytes
        .saturating_add(if footer.is_some() { 512 } else { 0 });
    let shrink = d.shrink.as_ref().zip(shrink_plan.as_ref());
    let steps = steps(&d, &partitions, disk_guid, esp_index, shrink, footer)?;
    let esp_guid = id.guid("esp volume");
    let esp_last_lba = esp_last(&d);
    Ok(Plan {
        format: d.image.format,
        sector_bytes: d.sector_bytes,
        old_file_bytes: file.len(),
        new_file_bytes,
        old_disk_bytes: d.image.data_bytes,
        new_disk_bytes: d.new_disk_bytes,
        room: d.room,
        room_reason: d.room_reason,
        disk_guid,
        partitions,
        esp: (!d.data_disk).then(|| EspLayout {
            index: esp_index,
            first_lba: d.esp_first,
            last_lba: esp_last_lba,
            size_bytes: d.esp_sectors.saturating_mul(sbu),
            label: d.esp_label,
            volume_id: u32::from_le_bytes([
                esp_guid.0[0],
                esp_guid.0[1],
                esp_guid.0[2],
                esp_guid.0[3],
            ]),
        }),
        shrink: shrink_plan,
        steps,
        boot_code: d.boot_code,
        bios_boot,
    })
}

/// Every write, in order: the filesystem shrink first (the ESP lands on the partition's old
/// tail), the old footer inside a grown disk, the ESP, the backup GPT, `--hybrid`'s core.img,
/// the primary GPT, the protective MBR, and the VHD footer last (until then the file still reads
/// as the old disk).
fn steps(
    d: &Decided,
    partitions: &[NewPartition],
    disk_guid: Guid,
    esp_index: u32,
    shrink: Option<(&ShrinkLayout, &ShrinkPlan)>,
    footer: Option<[u8; 512]>,
) -> Result<Vec<Step>> {
    let sbu = u64::from(d.sector_bytes);
    let new_sectors = d.new_disk_bytes.checked_div(sbu).unwrap_or(0);
    let entries: Vec<GptPartition> = partitions.iter().map(|p| p.entry.clone()).collect();
    let image_gpt = gpt::encode(
        disk_guid,
        &entries,
        GPT_ENTRIES,
        d.sector_bytes,
        new_sectors,
    )?;
    let mut steps = Vec::new();
    if d.room == Room::Grow && footer.is_some() && d.image.data_bytes < d.new_disk_bytes {
        steps.push(Step {
            offset: d.image.data_bytes,
            length: 512,
            what: "old VHD footer (now disk space, zeroed)".into(),
            payload: Payload::Zeros,
        });
    }
    if let Some((l, sp)) = shrink {
        steps.extend(shrink_steps(&l.action, sp));
    }
    if !d.data_disk {
        steps.push(Step {
            offset: d.esp_first.saturating_mul(sbu),
            length: d.esp_sectors.saturating_mul(sbu),
            what: format!("partition {esp_index}: EFI system partition (FAT32)"),
            payload: Payload::Esp,
        });
    }
    steps.push(Step::bytes(
        image_gpt.backup_entries_lba.saturating_mul(sbu),
        image_gpt.backup,
        "backup GPT entries and header",
    ));
    if let Some(r) = &d.hybrid {
        let what = format!(
            "LBA {}-{}: GRUB core.img in the BIOS boot partition (moved from LBA {})",
            r.first_lba,
            r.first_lba.saturating_add(r.core_sectors).saturating_sub(1),
            r.old_lba
        );
        steps.push(Step::bytes(
            r.first_lba.saturating_mul(sbu),
            r.core.clone(),
            what,
        ));
    }
    let primary_what = format!(
        "LBA 1-{}: primary GPT header and entries",
        crate::units::len_u64(image_gpt.primary.len())
            .checked_div(sbu)
            .unwrap_or(0)
    );
    steps.push(Step::bytes(sbu, image_gpt.primary, primary_what));
    let (boot_code, what) = match &d.hybrid {
        None => ([0u8; 440], "LBA 0: protective MBR"),
        Some(r) => (r.boot_code, "LBA 0: protective MBR (GRUB boot.img kept)"),
    };
    let pmbr = mbr::protective_mbr(&boot_code, new_sectors);
    steps.push(Step::bytes(0, pmbr.to_vec(), what));
    if let Some(f) = footer {
        steps.push(Step::bytes(d.new_disk_bytes, f.to_vec(), "VHD footer"));
    }
    Ok(steps)
}

/// The shrink's writes: our own (NTFS, swap), or resize2fs's.
fn shrink_steps(action: &ShrinkAction, sp: &ShrinkPlan) -> Vec<Step> {
    let what = format!(
        "partition {} ({}): {}",
        sp.partition, sp.filesystem, sp.method
    );
    match action {
        ShrinkAction::Writes(w) => w
            .iter()
            .map(|(off, bytes)| Step::bytes(*off, bytes.clone(), what.clone()))
            .collect(),
        ShrinkAction::Resize2fs {
            part_offset,
            new_bytes,
        } => vec![Step {
            offset: *part_offset,
            length: *new_bytes,
            what,
            payload: Payload::Resize2fs,
        }],
    }
}
