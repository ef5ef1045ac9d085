//! Room for a conversion's writes, checked before the first one (issue 15, item 7): a
//! conversion that would run out of space is refused while nothing is written (an `Io` error
//! with ENOSPC, exit code 3), instead of being stopped half-way by ENOSPC.
//!
//! The figure is what the filesystem must newly allocate, not the length of the planned
//! regions (most of a new ESP is zeros that are never written, and writes over data allocate
//! nothing): the writes are found exactly as `apply` makes them ([`planned_writes`]: a step of
//! bytes writes its whole range, the ESP only the MiB blocks [`esp_blocks`] picks, judged on the
//! image as the earlier steps leave it), and every filesystem block a write touches that is not
//! allocated yet (a hole of the file, found with `SEEK_DATA`/`SEEK_HOLE`, or past its old end)
//! counts once ([`new_allocation`]). Growing the file (`set_len`) leaves a hole and counts
//! nothing; the backup GPT and the footer written at the new end count.
//!
//! - In place: the undo journal (its encoded length, in blocks) plus the image's new blocks; on
//!   one filesystem the sum, else each on its own. The check runs after the resize2fs overlay of
//!   an ext `--room shrink` is gone (it is removed before the journal is written, so its blocks
//!   are not needed at the same time; a full disk while it exists leaves the image and the
//!   journal untouched, see `journal::overlay`) and before the journal's first byte.
//! - `-o OUT`: on OUT's filesystem, the blocks of the copy (the source's data extents) plus the
//!   plan's writes into the copy's holes, before the partial file is created. resize2fs's own
//!   writes into the copy (ext `--room shrink -o`) cannot be known before it runs: they are
//!   estimated as the data past the filesystem's new end, which it moves ([`resize2fs_moves`]);
//!   a full disk while it runs is an I/O error with ENOSPC, the copy removed, the source as it
//!   was.
//!
//! Margin: none on tmpfs (a page per page written, nothing else counted against its size).
//! Elsewhere, blocks for the filesystem's own metadata: extent-tree blocks for the new extents
//! ([`EXTENTS_PER_BLOCK`], [`TREE_LEVELS`]) and, per new file, a directory block and an
//! extended-attribute block ([`NEW_FILE_BLOCKS`]). On copy-on-write filesystems (btrfs, ZFS,
//! bcachefs) every written block is allocated anew, so all writes count, holes or not.
//! Conservative on purpose: `f_bavail` leaves out the blocks reserved for root, and a copy
//! that shares blocks (reflink) needs fewer than counted.

use std::path::{Path, PathBuf};

use super::apply::{esp_blocks, step_content, Contents};
use super::journal::{self, Journal};
use super::plan::{Payload, Step};
use super::source::Source;
use crate::disk::{fs_space, merge_ranges, no_space, Allocation, Disk, FsSpace};
use crate::error::{Error, Result};

/// Extents one extent-tree block maps, at the least (ext4 fits 340 in a 4 KiB leaf, XFS about
/// 250; half-full blocks are allowed for).
const EXTENTS_PER_BLOCK: u64 = 128;
/// Tree levels above the leaves that may each need one more block.
const TREE_LEVELS: u64 = 2;
/// Blocks a new file may need besides its data: one for its directory entry, one for an
/// extended attribute that does not fit in the inode (the image's journal marker).
const NEW_FILE_BLOCKS: u64 = 2;

/// The blocks of `block` bytes that byte ranges touch, as merged (first block, count) runs.
fn block_runs(ranges: &[(u64, u64)], block: u64) -> Vec<(u64, u64)> {
    let block = block.max(1);
    merge_ranges(
        ranges
            .iter()
            .filter(|r| r.1 > 0)
            .map(|&(o, l)| {
                let first = o.checked_div(block).unwrap_or(0);
                let end = o.saturating_add(l).div_ceil(block);
                (first, end.saturating_sub(first))
            })
            .collect(),
    )
}

/// What a set of writes makes the filesystem allocate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct NewBlocks {
    /// Bytes of the blocks to allocate.
    pub bytes: u64,
    /// Runs of adjacent new blocks: at most this many new extents.
    pub runs: u64,
}

/// The blocks of `block` bytes that `writes` touch and `allocated` does not (each counted
/// once, however many writes touch it). A block partly allocated is allocated. With
/// `every_write` (copy on write), every block written counts.
pub fn new_allocation(
    allocated: &[(u64, u64)],
    writes: &[(u64, u64)],
    block: u64,
    every_write: bool,
) -> NewBlocks {
    let block = block.max(1);
    let have = if every_write {
        Vec::new()
    } else {
        block_runs(allocated, block)
    };
    let mut out = NewBlocks::default();
    let mut h = have.iter().peekable();
    for (start, count) in block_runs(writes, block) {
        let end = start.saturating_add(count);
        let mut pos = start;
        while pos < end {
            // the allocated runs that end before pos are behind us
            while h.next_if(|&&(s, c)| s.saturating_add(c) <= pos).is_some() {}
            match h.peek() {
                // allocated at pos: skip to its end
                Some(&&(s, c)) if s <= pos => pos = s.saturating_add(c).min(end),
                next => {
                    let hole_end = next.map_or(end, |&&(s, _)| s.min(end));
                    out.bytes = out
                        .bytes
                        .saturating_add(hole_end.saturating_sub(pos).saturating_mul(block));
                    out.runs = out.runs.saturating_add(1);
                    pos = hole_end;
                }
            }
        }
    }
    out
}

/// Metadata blocks a filesystem may need for `extents` new extents and `new_files` new files,
/// in bytes (see the module docs).
fn metadata_bytes(fs: &FsSpace, extents: u64, new_files: u64) -> u64 {
    match fs.allocation {
        Allocation::Pages => 0,
        Allocation::Overwrite | Allocation::CopyOnWrite => {
            let tree = match extents {
                0 => 0,
                n => n.div_ceil(EXTENTS_PER_BLOCK).saturating_add(TREE_LEVELS),
            };
            tree.saturating_add(new_files.saturating_mul(NEW_FILE_BLOCKS))
                .saturating_mul(fs.block_bytes)
        }
    }
}

/// A disk as `apply` leaves it after some of a plan's steps: `base` grown (or cut) to `len`,
/// with the writes made so far on top. Only read.
struct Pending<'a> {
    base: &'a dyn Disk,
    len: u64,
    /// The base's data extents, whole.
    data: Vec<(u64, u64)>,
    /// (where, length, the step whose bytes they are) in the order written.
    writes: Vec<(u64, u64, &'a Step)>,
    contents: &'a Contents<'a>,
}

impl Disk for Pending<'_> {
    fn len(&self) -> u64 {
        self.len
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        let n = crate::units::len_u64(buf.len());
        crate::disk::check_range(self.len, offset, n)?;
        buf.fill(0);
        let end = offset.saturating_add(n);
        let base_end = end.min(self.base.len());
        if base_end > offset {
            let k = usize::try_from(base_end.saturating_sub(offset))
                .map_err(|_| Error::internal("a read that does not fit in memory"))?;
            if let Some(part) = buf.get_mut(..k) {
                self.base.read_at(offset, part)?;
            }
        }
        for &(at, len, step) in &self.writes {
            let (s, e) = (at.max(offset), at.saturating_add(len).min(end));
            if s >= e {
                continue;
            }
            let span = |from: u64| -> Option<std::ops::Range<usize>> {
                let a = usize::try_from(s.saturating_sub(from)).ok()?;
                let b = usize::try_from(e.saturating_sub(from)).ok()?;
                Some(a..b)
            };
            if let Some(dst) = span(offset).and_then(|r| buf.get_mut(r)) {
                step_content(step, self.contents, s.saturating_sub(step.offset), dst)?;
            }
        }
        Ok(())
    }

    fn write_at(&mut self, _offset: u64, _data: &[u8]) -> Result<()> {
        Err(Error::internal("the free-space estimate writes nothing"))
    }

    fn data_extents(&self, from: u64, len: u64) -> Result<Vec<(u64, u64)>> {
        crate::disk::check_range(self.len, from, len)?;
        let end = from.saturating_add(len).min(self.len);
        let all = self
            .data
            .iter()
            .copied()
            .chain(self.writes.iter().map(|&(a, l, _)| (a, l)));
        Ok(merge_ranges(
            all.filter_map(|(s, l)| {
                let (a, b) = (s.max(from), s.saturating_add(l).min(end));
                (a < b).then(|| (a, b.saturating_sub(a)))
            })
            .collect(),
        ))
    }
}

/// Every byte range `apply` writes when it carries out `steps` on `disk` (whose data extents
/// are `data`) grown to `new_len`, in order. With `skip_data`, ESP blocks that lie wholly in
/// data are left out (they allocate nothing on a filesystem that overwrites in place). A
/// resize2fs step (a copy's) writes what resize2fs decides and adds nothing.
pub fn planned_writes(
    disk: &dyn Disk,
    data: &[(u64, u64)],
    new_len: u64,
    steps: &[Step],
    contents: &Contents,
    skip_data: bool,
) -> Result<Vec<(u64, u64)>> {
    let mut view = Pending {
        base: disk,
        len: new_len,
        data: merge_ranges(data.to_vec()),
        writes: Vec::new(),
        contents,
    };
    let mut out = Vec::new();
    for step in steps {
        let writes: Vec<(u64, u64)> = match step.payload {
            Payload::Bytes(_) | Payload::Zeros => vec![(step.offset, step.length)],
            Payload::Esp => esp_blocks(&view, step.offset, &contents.esp, skip_data)?
                .into_iter()
                .map(|(pos, len)| (step.offset.saturating_add(pos), len))
                .collect(),
            Payload::Resize2fs => Vec::new(),
        };
        for &(at, len) in &writes {
            view.writes.push((at, len, step));
        }
        out.extend(writes);
    }
    Ok(out)
}

/// What a conversion needs on one filesystem, and for what.
#[derive(Debug, Clone, Default)]
struct Need {
    bytes: u64,
    parts: Vec<String>,
}

impl Need {
    fn add(&mut self, bytes: u64, what: String) {
        self.bytes = self.bytes.saturating_add(bytes);
        self.parts.push(what);
    }
}

/// "a", "a and b", "a, b and c".
fn list(parts: &[String]) -> String {
    match parts.split_last() {
        None => String::new(),
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} and {last}", rest.join(", ")),
    }
}

/// Refuse unless the filesystem holding `path` has `need` bytes available (a filesystem that
/// keeps no count is not checked).
fn check(path: &Path, fs: &FsSpace, need: &Need) -> Result<()> {
    match fs.free_bytes {
        Some(free) if free < need.bytes => {
            Err(no_space(path, free, need.bytes, &list(&need.parts)))
        }
        _ => Ok(()),
    }
}

/// The directory a new file at `path` goes into (statfs needs a path that exists).
fn dir_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Bytes a file holds on its filesystem (what removing it gives back); 0 when it is absent.
fn allocated_bytes(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::symlink_metadata(path).map_or(0, |m| m.blocks().saturating_mul(512))
}

/// In place: is there room for the undo `journal` at `journal_path` and for the image's new
/// blocks when `steps` are carried out on `disk` (the file `image`) grown to `new_len`? Refuses
/// (ENOSPC, nothing written) when there is not.
pub fn ensure_in_place(
    disk: &dyn Disk,
    image: &Path,
    journal_path: &Path,
    journal: &Journal,
    new_len: u64,
    steps: &[Step],
    contents: &Contents,
) -> Result<()> {
    let img_fs = fs_space(image)?;
    let jdir = dir_of(journal_path);
    let j_fs = fs_space(&jdir)?;
    let cow = img_fs.allocation == Allocation::CopyOnWrite;
    let data = disk.data_extents(0, disk.len())?;
    let writes = planned_writes(disk, &data, new_len, steps, contents, !cow)?;
    let img = new_allocation(&data, &writes, img_fs.block_bytes, cow);
    let mut image_need = Need::default();
    image_need.add(
        img.bytes
            .saturating_add(metadata_bytes(&img_fs, img.runs, 0)),
        format!("the image's new blocks ({} bytes)", img.bytes),
    );
    let j_len = journal.encoded_len();
    let j_bytes = j_len
        .div_ceil(j_fs.block_bytes)
        .saturating_mul(j_fs.block_bytes)
        .saturating_add(metadata_bytes(&j_fs, 1, 1))
        // a temporary journal left by an earlier run is removed before this one is written
        .saturating_sub(allocated_bytes(&journal::tmp_path(journal_path)));
    let journal_what = format!("the undo journal ({j_len} bytes)");
    if j_fs.device == img_fs.device {
        image_need.parts.insert(0, journal_what);
        image_need.bytes = image_need.bytes.saturating_add(j_bytes);
        check(image, &img_fs, &image_need)
    } else {
        let mut j_need = Need::default();
        j_need.add(j_bytes, journal_what);
        check(&jdir, &j_fs, &j_need)?;
        check(image, &img_fs, &image_need)
    }
}

/// What resize2fs may write into holes of a copy it shrinks (ext `--room shrink -o`): an
/// estimate, not a bound (resize2fs decides): the data the file holds past the filesystem's
/// new end, which resize2fs moves below it, in blocks. The shrunk partition is the disk's last,
/// so everything past its new end is its old tail (and the footer).
fn resize2fs_moves(data: &[(u64, u64)], steps: &[Step], block: u64) -> u64 {
    steps
        .iter()
        .filter(|s| s.external())
        .map(|s| {
            let from = s.offset.saturating_add(s.length);
            let tail: Vec<(u64, u64)> = data
                .iter()
                .filter_map(|&(o, l)| {
                    let a = o.max(from);
                    let b = o.saturating_add(l);
                    (a < b).then(|| (a, b.saturating_sub(a)))
                })
                .collect();
            new_allocation(&[], &tail, block, false).bytes
        })
        .fold(0u64, u64::saturating_add)
}

/// `-o OUT`: is there room on OUT's filesystem for the sparse copy of `source` and for the
/// plan's writes into the copy's holes? Refuses (ENOSPC, nothing written) when there is not.
/// The copy of a file holds its data extents; that of an image format at most its data
/// extents (the writer skips all-zero runs): when those do not fit, the data is read to find
/// exactly what the writer will write.
pub fn ensure_copy(
    source: &Source,
    out: &Path,
    new_len: u64,
    steps: &[Step],
    contents: &Contents,
) -> Result<()> {
    let dir = dir_of(out);
    let fs = fs_space(&dir)?;
    let need = |data: &[(u64, u64)]| -> Result<Need> {
        let cow = fs.allocation == Allocation::CopyOnWrite;
        let writes = planned_writes(source, data, new_len, steps, contents, !cow)?;
        let copy = new_allocation(&[], data, fs.block_bytes, false);
        let plan = new_allocation(data, &writes, fs.block_bytes, cow);
        let mut need = Need::default();
        need.add(
            copy.bytes,
            format!("the copy's data ({} bytes)", copy.bytes),
        );
        need.add(
            plan.bytes
                .saturating_add(metadata_bytes(&fs, copy.runs.saturating_add(plan.runs), 1)),
            format!(
                "the conversion's writes into its holes ({} bytes)",
                plan.bytes
            ),
        );
        let moved = resize2fs_moves(data, steps, fs.block_bytes);
        if moved > 0 {
            need.add(
                moved,
                format!("resize2fs's moves (estimated: the data past the new end, {moved} bytes)"),
            );
        }
        Ok(need)
    };
    let mut result = check(&dir, &fs, &need(&source.data_extents(0, source.len())?)?);
    if result.is_err() {
        if let Some(exact) = source.written_extents()? {
            result = check(&dir, &fs, &need(&exact)?);
        }
    }
    result.map_err(|e| e.context("nothing was written"))
}

#[cfg(test)]
#[allow(
    clippy::arithmetic_side_effects,
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::as_conversions
)] // tests: a panic is a failed test
mod tests {
    use super::*;
    use crate::convert::apply::{apply, SparseImage};
    use crate::convert::faults::Faults;
    use crate::convert::plan::{EspLayout, Plan};

    const B: u64 = 4096;
    const MIB: u64 = 1 << 20;

    /// A file in memory with holes: `data` are its allocated ranges (the rest reads as zeros),
    /// and every write allocates what it covers, as a filesystem does. Records the writes.
    struct SparseFile {
        bytes: Vec<u8>,
        data: Vec<(u64, u64)>,
        writes: Vec<(u64, u64)>,
    }

    impl Disk for SparseFile {
        fn len(&self) -> u64 {
            self.bytes.len() as u64
        }
        fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
            crate::disk::check_range(self.len(), offset, buf.len() as u64)?;
            buf.copy_from_slice(&self.bytes[offset as usize..offset as usize + buf.len()]);
            Ok(())
        }
        fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<()> {
            crate::disk::check_range(self.len(), offset, data.len() as u64)?;
            self.bytes[offset as usize..offset as usize + data.len()].copy_from_slice(data);
            self.writes.push((offset, data.len() as u64));
            self.data =
                merge_ranges([self.data.clone(), vec![(offset, data.len() as u64)]].concat());
            Ok(())
        }
        fn set_len(&mut self, len: u64) -> Result<()> {
            self.bytes.resize(len as usize, 0);
            Ok(())
        }
        fn data_extents(&self, from: u64, len: u64) -> Result<Vec<(u64, u64)>> {
            let end = from + len;
            Ok(self
                .data
                .iter()
                .filter_map(|&(s, l)| {
                    let (a, b) = (s.max(from), (s + l).min(end));
                    (a < b).then(|| (a, b - a))
                })
                .collect())
        }
    }

    /// The writes the estimate finds are the writes `apply` makes, on a disk that grows from
    /// 10 to 13 MiB with a 4 MiB ESP at 8 MiB: its first MiB over a hole (written), its second
    /// over allocated bytes that differ (written), its third over the old footer, which the
    /// step before zeroes, and the hole past the old end (all zeros: not written), its fourth
    /// past the old end (written); the backup GPT and the footer past the old end, the primary
    /// GPT into a hole at the start. The blocks they allocate are counted as a filesystem does.
    #[test]
    fn the_estimate_sees_the_writes_apply_makes() {
        let old_len = 10 * MIB + 512;
        let (esp_at, esp_len) = (8 * MIB, 4 * MIB);
        let new_len = 13 * MIB + 512;
        let mut bytes = vec![0u8; old_len as usize];
        bytes[..600].fill(0x11);
        bytes[(9 * MIB + 8) as usize] = 0x22;
        bytes[(10 * MIB) as usize..].fill(0x33); // the old footer
        let data = vec![(0, B), (9 * MIB, MIB), (10 * MIB, 512)];
        let mut esp = vec![0u8; esp_len as usize];
        esp[..512].fill(0xeb);
        esp[(3 * MIB + 100) as usize] = 0x44;
        let contents = Contents {
            esp: SparseImage::of(&esp),
        };
        let step = |offset, length, payload| Step {
            offset,
            length,
            what: String::new(),
            payload,
        };
        let steps = vec![
            step(10 * MIB, 512, Payload::Zeros),
            step(esp_at, esp_len, Payload::Esp),
            step(13 * MIB - 16896, 16896, Payload::Bytes(vec![0x55; 16896])),
            step(512, 16896, Payload::Bytes(vec![0x66; 16896])),
            step(13 * MIB, 512, Payload::Bytes(vec![0x77; 512])),
        ];
        let original = || SparseFile {
            bytes: bytes.clone(),
            data: data.clone(),
            writes: Vec::new(),
        };
        let estimated =
            planned_writes(&original(), &data, new_len, &steps, &contents, false).unwrap();
        let plan = Plan {
            format: crate::vhd::Format::VhdFixed,
            sector_bytes: 512,
            old_file_bytes: old_len,
            new_file_bytes: new_len,
            old_disk_bytes: 10 * MIB,
            new_disk_bytes: 13 * MIB,
            room: crate::convert::room::Room::Grow,
            room_reason: String::new(),
            disk_guid: crate::gpt::Guid([0; 16]),
            partitions: Vec::new(),
            esp: Some(EspLayout {
                index: 1,
                first_lba: esp_at / 512,
                last_lba: (esp_at + esp_len) / 512 - 1,
                size_bytes: esp_len,
                label: "SYSTEM".into(),
                volume_id: 0,
            }),
            shrink: None,
            steps: steps.clone(),
            boot_code: String::new(),
            bios_boot: None,
        };
        let mut applied = original();
        apply(&mut applied, &plan, &contents, None, &mut Faults::none()).unwrap();
        assert_eq!(estimated, applied.writes);
        assert_eq!(
            estimated[1..4],
            [(8 * MIB, MIB), (9 * MIB, MIB), (11 * MIB, MIB)],
            "ESP blocks 0, 1 and 3"
        );
        // new blocks: ESP MiB 0 and 3 (256 each), the backup GPT (16896 bytes ending on a
        // block boundary: 5) and the footer after it (1), the primary GPT (LBA 1-33, blocks
        // 0-4, of which 0 is allocated: 4); ESP MiB 1 and the zeroed old footer are allocated
        let n = new_allocation(&data, &estimated, B, false);
        assert_eq!(n.bytes, (256 + 256 + 5 + 1 + 4) * B);
        assert_eq!(n.runs, 4);
        // on 64 KiB blocks: the primary GPT is in the allocated block 0, the backup GPT and
        // the footer touch two blocks (one shared with nothing written: 13 MiB - 64 KiB)
        let n = new_allocation(&data, &estimated, 64 << 10, false);
        assert_eq!(n.bytes, 2 * MIB + 2 * (64 << 10));
        // skipping blocks wholly in data leaves out ESP MiB 1 unread, and allocates the same
        let skipped = planned_writes(&original(), &data, new_len, &steps, &contents, true).unwrap();
        assert!(!skipped.contains(&(9 * MIB, MIB)));
        assert_eq!(
            new_allocation(&data, &skipped, B, false),
            new_allocation(&data, &estimated, B, false)
        );
        // copy on write: every block written, the allocated ones too
        let n = new_allocation(&data, &estimated, B, true);
        assert_eq!(n.bytes, (256 * 3 + 1 + 5 + 1 + 5) * B);
    }

    /// Blocks are counted once, partial blocks whole, allocated blocks not at all.
    #[test]
    fn holes_are_counted_in_whole_blocks_once() {
        // nothing allocated: a 1-byte write costs a block, a write across a boundary two
        assert_eq!(new_allocation(&[], &[(10, 1)], B, false).bytes, B);
        assert_eq!(new_allocation(&[], &[(B - 1, 2)], B, false).bytes, 2 * B);
        // two writes into one block: one block
        let n = new_allocation(&[], &[(0, 100), (200, 100)], B, false);
        assert_eq!((n.bytes, n.runs), (B, 1));
        // data in blocks 0-1 (a partly allocated block is allocated), hole 2-4, data 5
        let data = [(0, B + 1), (5 * B, B)];
        // a write over blocks 1..=5: only 2, 3, 4 are new
        let n = new_allocation(&data, &[(B, 5 * B)], B, false);
        assert_eq!((n.bytes, n.runs), (3 * B, 1));
        // writes on allocated blocks only: nothing
        assert_eq!(
            new_allocation(&data, &[(0, 2 * B), (5 * B, 10)], B, false).bytes,
            0
        );
        // a write in the middle hole and one past the allocated end (the grown file)
        let n = new_allocation(&data, &[(3 * B + 5, 10), (100 * B, 16896)], B, false);
        assert_eq!((n.bytes, n.runs), (B + 5 * B, 2));
        // copy on write: every written block
        assert_eq!(new_allocation(&data, &[(0, 2 * B)], B, true).bytes, 2 * B);
        // another block size rounds to it
        assert_eq!(new_allocation(&[], &[(0, 1)], 65536, false).bytes, 65536);
        // a hole between allocated blocks inside one write: two runs
        let data = [(0, B), (2 * B, B), (4 * B, B)];
        let n = new_allocation(&data, &[(0, 5 * B)], B, false);
        assert_eq!((n.bytes, n.runs), (2 * B, 2));
        // unsorted, overlapping input
        let n = new_allocation(
            &[(4 * B, B), (0, B)],
            &[(3 * B, 2 * B), (0, 4 * B)],
            B,
            false,
        );
        assert_eq!((n.bytes, n.runs), (3 * B, 1));
    }

    #[test]
    fn parts_are_listed() {
        let p = |v: &[&str]| list(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(p(&["a"]), "a");
        assert_eq!(p(&["a", "b"]), "a and b");
        assert_eq!(p(&["a", "b", "c"]), "a, b and c");
    }

    #[test]
    fn metadata_margin_is_none_on_tmpfs() {
        let fs = |allocation| FsSpace {
            free_bytes: Some(0),
            block_bytes: B,
            device: 0,
            allocation,
        };
        assert_eq!(metadata_bytes(&fs(Allocation::Pages), 1000, 1), 0);
        assert_eq!(metadata_bytes(&fs(Allocation::Overwrite), 0, 0), 0);
        assert_eq!(
            metadata_bytes(&fs(Allocation::Overwrite), 129, 1),
            (2 + TREE_LEVELS + NEW_FILE_BLOCKS) * B
        );
    }
}
