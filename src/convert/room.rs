//! Where the ESP goes: the room policy. One function per way of making room (free space,
//! shrinking the last partition, growing the disk) and [`choose`], which applies `--room`.
//! Nothing is written here; the shrinkers only plan.

use serde::Serialize;

use crate::disk::{Disk, Window};
use crate::error::{Error, Result};
use crate::mbr::MbrPartition;
use crate::units::{human_bytes, MIB};
use crate::vhd::Format;

use super::checks::{last_lba, GptGeometry};
use super::options::{Options, Reusable, RoomChoice};

/// Where the ESP's room came from, as planned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Room {
    Free,
    Grow,
    Shrink,
    /// The System Reserved partition of a Windows image became the ESP.
    Reuse,
}

/// How the last partition's filesystem is shrunk.
#[derive(Debug, Clone)]
pub enum ShrinkAction {
    /// Bytes to write at file offsets (NTFS metadata, a swap header), journaled like any region.
    Writes(Vec<(u64, Vec<u8>)>),
    /// `resize2fs` on the partition at this file offset, to this many bytes.
    Resize2fs { part_offset: u64, new_bytes: u64 },
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

/// What the room policy needs to know of the disk.
pub struct Facts<'a> {
    /// The virtual disk (a fixed VHD without its footer).
    pub data: &'a dyn Disk,
    pub format: Format,
    pub parts: &'a [&'a MbrPartition],
    /// Every partition with sectors, the extended container included: (first, last) LBA.
    pub spans: Vec<(u64, u64)>,
    pub sector_bytes: u32,
    pub disk_bytes: u64,
    pub gpt: GptGeometry,
    /// `--hybrid`: the BIOS boot partition's last LBA (the ESP goes after it).
    pub bios_boot_last: Option<u64>,
}

impl Facts<'_> {
    fn sbu(&self) -> u64 {
        u64::from(self.sector_bytes)
    }
    fn total_sectors(&self) -> u64 {
        self.disk_bytes.checked_div(self.sbu()).unwrap_or(0)
    }
    /// Sectors of the backup GPT at the end of the disk: entries + header.
    pub fn tail_sectors(&self) -> u64 {
        self.gpt.array_sectors.saturating_add(1)
    }
    /// The last usable LBA of the disk as it is.
    fn last_usable(&self) -> u64 {
        self.total_sectors()
            .saturating_sub(self.tail_sectors().saturating_add(1))
    }
    fn last_end(&self) -> u64 {
        self.spans.iter().map(|s| s.1).max().unwrap_or(0)
    }
    fn align(&self) -> u64 {
        MIB.checked_div(self.sbu()).unwrap_or(1).max(1)
    }
    /// Azure's whole-MiB rule (raw images are not uploaded as they are).
    fn size_ok(&self) -> bool {
        self.disk_bytes.is_multiple_of(MIB) || self.format == Format::Raw
    }
    fn not_mib(&self) -> Error {
        Error::invalid(format!(
            "the disk size ({} bytes) is not a whole number of MiB, as Azure requires",
            self.disk_bytes
        ))
    }
}

fn align_up(v: u64, a: u64) -> Option<u64> {
    let a = a.max(1);
    v.checked_add(a.saturating_sub(1))
        .and_then(|x| x.checked_div(a))
        .and_then(|q| q.checked_mul(a))
}

/// The room chosen.
pub struct Chosen {
    pub room: Room,
    pub esp_first: u64,
    pub new_disk_bytes: u64,
    /// Why that room was used (and why the others were not).
    pub reason: String,
    pub shrink: Option<ShrinkLayout>,
    /// `Room::Reuse`: the MBR partition that becomes the ESP, and the ESP's sectors (all of it).
    pub reused: Option<(u32, u64)>,
}

/// Reuse: the System Reserved partition of a Windows image, whole, as the ESP: (MBR number,
/// first LBA, sectors).
pub fn reuse(d: &Facts, opts: &Options) -> Result<(u32, u64, u64)> {
    match &opts.reusable {
        None => Err(Error::invalid(
            "only the System Reserved partition of a Windows image is reused",
        )),
        Some(Reusable::No(why)) => Err(Error::invalid(why.clone())),
        Some(Reusable::Yes(n)) => d
            .parts
            .iter()
            .find(|p| p.index == *n)
            .map(|p| (p.index, p.start_lba, p.sectors))
            .ok_or_else(|| Error::internal(format!("partition {n} is not on the disk"))),
    }
}

fn reused(index: u32, first: u64, sectors: u64, bytes: u64, why: &str) -> Chosen {
    let mut c = chosen(Room::Reuse, first, bytes, why, None);
    c.reused = Some((index, sectors));
    c
}

/// Free space: the first gap (the one at the end of the disk preferred) that holds a 1 MiB
/// aligned ESP, with the end of the disk free for the backup GPT. The ESP's first LBA.
pub fn free(d: &Facts, esp_sectors: u64) -> Result<u64> {
    let (last_end, last_usable) = (d.last_end(), d.last_usable());
    let tail = d.tail_sectors();
    if last_end > last_usable || d.total_sectors() <= tail.saturating_add(1) {
        return Err(Error::invalid(format!(
            "the last partition ends at LBA {last_end}, inside the {tail} sectors at the end of the disk the backup GPT needs"
        )));
    }
    let mut spans = d.spans.clone();
    spans.sort_unstable();
    let mut gaps = Vec::new();
    // the BIOS boot partition of --hybrid comes first
    let mut cursor = d.bios_boot_last.map_or(d.gpt.first_usable, |l| {
        d.gpt.first_usable.max(l.saturating_add(1))
    });
    for (s, e) in &spans {
        if *s > cursor {
            gaps.push((cursor, s.saturating_sub(1)));
        }
        cursor = cursor.max(e.saturating_add(1));
    }
    if cursor <= last_usable {
        gaps.push((cursor, last_usable));
    }
    let align = d.align();
    let fits = |(gs, ge): (u64, u64)| -> Option<u64> {
        let start = align_up(gs, align)?;
        let end = start.checked_add(esp_sectors)?.checked_sub(1)?;
        (end <= ge).then_some(start)
    };
    let found = gaps
        .iter()
        .rev()
        .take(1)
        .chain(gaps.iter())
        .find_map(|g| fits(*g));
    match found {
        None => Err(Error::invalid(format!(
            "no unallocated gap holds a 1 MiB-aligned ESP of {}",
            human_bytes(esp_sectors.saturating_mul(d.sbu()))
        ))),
        Some(_) if !d.size_ok() => Err(d.not_mib()),
        Some(s) => Ok(s),
    }
}

/// Grow: the ESP after the last partition, the backup GPT after it, the size rounded up to a
/// whole MiB. The ESP's first LBA and the new disk size.
pub fn grow(d: &Facts, esp_sectors: u64) -> Result<(u64, u64)> {
    let start = align_up(
        d.last_end().saturating_add(1).max(d.gpt.first_usable),
        d.align(),
    );
    start
        .and_then(|start| {
            let needed = start
                .checked_add(esp_sectors)?
                .checked_add(d.tail_sectors())?
                .checked_mul(d.sbu())?;
            let bytes = align_up(needed.max(d.disk_bytes), MIB)?;
            Some((start, bytes))
        })
        .ok_or_else(|| Error::invalid("the grown disk size overflows"))
}

/// Shrink: the last partition gives up its tail, MBR2GPT's placement: the ESP ends at the last
/// usable LBA and starts on a 1 MiB boundary, the partition ends right before it. Its
/// filesystem is shrunk by the planner for its kind (NTFS, swap: our own writes; ext2/3/4:
/// resize2fs), or the reason it cannot be.
pub fn shrink(d: &Facts, opts: &Options, esp_sectors: u64) -> Result<ShrinkLayout> {
    if !d.size_ok() {
        return Err(d.not_mib());
    }
    let sbu = d.sbu();
    let Some(last) = d.parts.iter().max_by_key(|p| last_lba(p)) else {
        return Err(Error::invalid("no partition"));
    };
    let align = d.align();
    let esp_first = d
        .last_usable()
        .saturating_add(1)
        .checked_sub(esp_sectors)
        .and_then(|s| s.checked_div(align))
        .and_then(|q| q.checked_mul(align))
        .unwrap_or(0);
    if esp_first <= last.start_lba.saturating_add(align) {
        return Err(Error::invalid(format!(
            "partition {} ({}) is too small to give up an ESP of {}",
            last.index,
            human_bytes(last.sectors.saturating_mul(sbu)),
            human_bytes(esp_sectors.saturating_mul(sbu))
        )));
    }
    // esp_first > start_lba + align (checked above)
    let new_sectors = esp_first.saturating_sub(last.start_lba);
    if new_sectors >= last.sectors {
        return Err(Error::invalid(format!(
            "partition {} already ends before the ESP would start",
            last.index
        )));
    }
    let (Some(part_offset), Some(part_bytes), Some(new_bytes)) = (
        last.start_lba.checked_mul(sbu),
        last.sectors.checked_mul(sbu),
        new_sectors.checked_mul(sbu),
    ) else {
        return Err(Error::invalid(format!(
            "partition {}: its byte offset or length does not fit 64 bits",
            last.index
        )));
    };
    let window = Window::new(d.data, part_offset, part_bytes)?;
    let fs = crate::fs::probe(&window).map(|f| f.kind);
    let name = fs
        .map(|k| format!("{k:?}").to_lowercase())
        .unwrap_or_else(|| "unknown".into());
    let planned = plan_fs_shrink(fs, &window, opts, part_offset, new_bytes)
        .map_err(|e| e.context(format!("partition {} ({name})", last.index)))?;
    Ok(ShrinkLayout {
        mbr_index: last.index,
        esp_first,
        start_lba: last.start_lba,
        new_sectors,
        old_sectors: last.sectors,
        fs_name: name,
        method: planned.0,
        action: planned.1,
        notes: planned.2,
    })
}

/// The filesystem shrink of one partition: (method, action, notes).
fn plan_fs_shrink(
    kind: Option<crate::fs::FsKind>,
    window: &dyn Disk,
    opts: &Options,
    part_offset: u64,
    new_bytes: u64,
) -> Result<(String, ShrinkAction, Vec<String>)> {
    use crate::fs::FsKind;
    use crate::shrink;
    let at_offset = |writes: Vec<(u64, Vec<u8>)>| {
        writes
            .into_iter()
            .map(|(o, b)| (o.saturating_add(part_offset), b))
            .collect()
    };
    Ok(match kind {
        Some(FsKind::Ntfs) => {
            let w = shrink::ntfs::plan_shrink(window, new_bytes)?;
            (
                "NTFS shrunk by vhdtool (boot sectors, $Bitmap, $BadClus)".to_string(),
                ShrinkAction::Writes(at_offset(w.writes)),
                w.notes,
            )
        }
        Some(FsKind::Swap) => {
            let w = shrink::swap::plan_swap_shrink(window, new_bytes)?;
            (
                "swap header re-created smaller, same UUID and label".to_string(),
                ShrinkAction::Writes(at_offset(w.writes)),
                w.notes,
            )
        }
        Some(FsKind::Ext2 | FsKind::Ext3 | FsKind::Ext4) => {
            let Some(path) = opts.image_path.as_deref() else {
                return Err(Error::invalid(
                    "shrinking ext2/3/4 runs resize2fs on the image file, and no file was given",
                ));
            };
            shrink::ext4::check_tools()?;
            shrink::ext4::fsck(path, part_offset)?;
            let min = shrink::ext4::min_size(path, part_offset)?;
            let g = shrink::ext4::geometry(path, part_offset)?;
            let fits = new_bytes
                .checked_div(g.block_bytes)
                .unwrap_or(0)
                .saturating_mul(g.block_bytes);
            if min > fits {
                return Err(Error::invalid(format!(
                    "the filesystem needs at least {min} bytes (resize2fs -P), the shrunk partition would hold {fits}: free space in the guest, or use --room grow"
                )));
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
            return Err(Error::unsupported(
                shrink::refuse::refusal(other).unwrap_or_else(|| {
                    "no shrinker for this filesystem; use --room grow".to_string()
                }),
            ))
        }
    })
}

/// Apply `--room`: `free`, `grow` and `shrink` as asked, or `auto`: free space when it fits,
/// else shrink, else grow (unless `--no-grow`), saying why the others were not taken. Shrinking
/// is only planned when it may be used (it runs e2fsck, reads `$Bitmap`).
pub fn choose(d: &Facts, opts: &Options, esp_sectors: u64) -> Result<Chosen> {
    let (bytes, with) = (d.disk_bytes, |e: Error| e.message().to_string());
    let as_asked = |e: Error, flag: &str| Error::invalid(format!("--room {flag}: {}", with(e)));
    if opts.data_disk {
        // no ESP: room for the backup GPT only, from free space at the end or a larger disk
        return match opts.room {
            RoomChoice::Auto | RoomChoice::Free | RoomChoice::Grow => free(d, 0)
                .map(|s| {
                    chosen(
                        Room::Free,
                        s,
                        bytes,
                        "--data-disk: no ESP; the end of the disk is free for the backup GPT",
                        None,
                    )
                })
                .or_else(|nf| match opts.room {
                    RoomChoice::Free => Err(as_asked(nf, "free")),
                    _ => grow_unless(d, opts, 0).map(|(s, b)| {
                        chosen(
                            Room::Grow,
                            s,
                            b,
                            "--data-disk: no ESP; the disk grows for the backup GPT",
                            None,
                        )
                    }),
                }),
            RoomChoice::Shrink | RoomChoice::Reuse => Err(Error::invalid(
                "--data-disk makes no ESP: --room shrink and reuse do not apply",
            )),
        };
    }
    match opts.room {
        RoomChoice::Free => free(d, esp_sectors)
            .map(|s| {
                chosen(
                    Room::Free,
                    s,
                    bytes,
                    "free space, as asked (--room free)",
                    None,
                )
            })
            .map_err(|e| as_asked(e, "free")),
        RoomChoice::Grow => grow_unless(d, opts, esp_sectors)
            .map(|(s, b)| {
                chosen(
                    Room::Grow,
                    s,
                    b,
                    "grow the disk, as asked (--room grow)",
                    None,
                )
            })
            .map_err(|e| as_asked(e, "grow")),
        RoomChoice::Shrink => shrink(d, opts, esp_sectors)
            .map(|l| {
                let why = format!("shrink partition {}, as asked (--room shrink)", l.mbr_index);
                chosen(Room::Shrink, l.esp_first, bytes, &why, Some(l))
            })
            .map_err(|e| as_asked(e, "shrink")),
        RoomChoice::Reuse => reuse(d, opts)
            .map(|(n, first, sectors)| {
                let why = format!(
                    "System Reserved (partition {n}) becomes the ESP, as asked (--room reuse)"
                );
                reused(n, first, sectors, bytes, &why)
            })
            .map_err(|e| as_asked(e, "reuse")),
        RoomChoice::Auto => {
            let nf = match free(d, esp_sectors) {
                Ok(s) => {
                    return Ok(chosen(
                        Room::Free,
                        s,
                        bytes,
                        "free space: a gap fits the ESP and the end of the disk the backup GPT",
                        None,
                    ))
                }
                Err(e) => with(e),
            };
            // Windows (MBR2GPT's order): System Reserved before shrinking C:
            if let Ok((n, first, sectors)) = reuse(d, opts) {
                let why = format!("System Reserved (partition {n}) becomes the ESP, as MBR2GPT does; free space does not do ({nf})");
                return Ok(reused(n, first, sectors, bytes, &why));
            }
            let ns = match shrink(d, opts, esp_sectors) {
                Ok(l) => {
                    let why = format!(
                        "shrink partition {} ({}); free space does not do ({nf})",
                        l.mbr_index, l.fs_name
                    );
                    return Ok(chosen(Room::Shrink, l.esp_first, bytes, &why, Some(l)));
                }
                Err(e) => with(e),
            };
            match grow_unless(d, opts, esp_sectors) {
                Ok((s, b)) => Ok(chosen(Room::Grow, s, b, &format!("grow the disk: free space does not do ({nf}); shrinking does not either ({ns})"), None)),
                Err(ng) => Err(Error::invalid(format!(
                    "free space does not do ({nf}); shrinking does not either ({ns}); growing: {}", with(ng)
                ))),
            }
        }
    }
}

fn grow_unless(d: &Facts, opts: &Options, esp_sectors: u64) -> Result<(u64, u64)> {
    if opts.no_grow {
        return Err(Error::invalid("--no-grow"));
    }
    grow(d, esp_sectors)
}

fn chosen(
    room: Room,
    esp_first: u64,
    new_disk_bytes: u64,
    reason: &str,
    shrink: Option<ShrinkLayout>,
) -> Chosen {
    Chosen {
        room,
        esp_first,
        new_disk_bytes,
        reason: reason.to_string(),
        shrink,
        reused: None,
    }
}
