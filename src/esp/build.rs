//! Format a FAT32 ESP in memory with hadris-fat, copy the tree in, make every timestamp the
//! spec's, and check the result with our own reader before handing it out.

use std::cell::Cell;
use std::io::Cursor;
use std::panic::{catch_unwind, AssertUnwindSafe};

use hadris_fat::format::{
    FatFormatOptions, FatTypeSelection, FatVolumeFormatter, MediaType, OemName, SectorSize,
    VolumeLabel,
};
use hadris_fat::time::{FatDateTime, TimeProvider};
use hadris_fat::{FatDir, FatVolume, FatVolumeWriteExt};
use zerocopy::FromBytes;

use super::timestamp::FatTimestamp;
use super::tree::{EspDir, EspNode, EspTree, MAX_DEPTH};
use super::{esp_layout, label_valid, EspImage, EspLayout, EspSpec, ROOT_CLUSTER};
use crate::bytes::le_u32;
use crate::error::{Error, Result};
use crate::fs::fat::raw::{
    RawDirEntry, RawFat32BootSector, RawFsInfo, ATTR_DIRECTORY, ATTR_LONG_NAME, ATTR_VOLUME_ID,
    BOOT_SIGNATURE, DIR_ENTRY_BYTES, ENTRY_END, ENTRY_FREE, EXTENDED_BOOT_SIGNATURE,
    FAT32_ENTRY_MASK, FAT32_EOC_MIN, FAT32_FS_TYPE, FSINFO_LEAD_SIGNATURE, FSINFO_STRUCT_SIGNATURE,
    FSINFO_TRAIL_SIGNATURE, LFN_CHARS_PER_ENTRY, MAX_DIR_ENTRIES, MEDIA_FIXED_DISK,
};
use crate::units::len_u64;

/// `BS_OEMName`: fatgen103 recommends "MSWIN4.1" as the value most drivers expect.
const OEM_NAME: &str = "MSWIN4.1";
/// Sector of the FSInfo structure and of the backup boot sector (fatgen103 section 3.3).
const FSINFO_SECTOR: u64 = 1;
const BACKUP_BOOT_SECTOR: u64 = 6;
/// Files are handed to the writer in pieces of this size.
const WRITE_CHUNK_BYTES: usize = 1 << 20;

thread_local! {
    /// The time [`SpecClock`] reports; set by [`build_esp`] on its own thread before any write.
    static CLOCK: Cell<FatDateTime> = const { Cell::new(FatDateTime::EPOCH) };
}

/// hadris-fat asks a `&'static dyn TimeProvider` for "now" on every directory write; this one
/// answers with the spec's timestamp, so no wall-clock time reaches the image.
#[derive(Debug)]
struct SpecClock;

impl TimeProvider for SpecClock {
    fn now(&self) -> FatDateTime {
        CLOCK.with(Cell::get)
    }
}

static SPEC_CLOCK: SpecClock = SpecClock;

type Volume = FatVolume<Cursor<Vec<u8>>>;

/// Build the ESP described by `spec` holding `files`. Deterministic: the same inputs give the
/// same bytes. Fails (before any formatting) if the size is not a valid FAT32 ESP size, the
/// label is not a valid FAT label, or the tree does not fit.
pub fn build_esp(spec: &EspSpec, files: &EspTree) -> Result<EspImage> {
    let layout = esp_layout(spec.size_bytes, spec.sector_bytes)?;
    if !label_valid(&spec.label) {
        return Err(Error::invalid(format!(
            "ESP label {:?}: expected 1-11 upper-case letters, digits, spaces or ! # $ % & ' ( ) \
             - @ ^ _ ` {{ }} ~",
            spec.label
        )));
    }
    let needed = clusters_needed(files.root(), layout.cluster_bytes, true, "")?;
    if needed > u64::from(layout.cluster_count) {
        let cb = u64::from(layout.cluster_bytes);
        return Err(Error::invalid(format!(
            "ESP of {} MiB too small for its files: they need {} bytes ({needed} clusters of {cb} \
             bytes, directories included; {} bytes of file data), the volume has {} bytes ({} \
             clusters)",
            spec.size_bytes >> 20,
            needed.saturating_mul(cb),
            files.file_bytes(),
            layout.data_bytes(),
            layout.cluster_count
        )));
    }
    let ts = FatTimestamp::from_unix(spec.timestamp_unix);
    let built = catch_unwind(AssertUnwindSafe(|| {
        format_and_fill(spec, &layout, files, ts)
    }));
    let mut bytes = match built {
        Ok(r) => r?,
        Err(_) => {
            return Err(Error::unsupported(
                "ESP: the FAT32 writer (hadris-fat) panicked; no image was produced",
            ))
        }
    };
    patch_label_entry(&mut bytes, &layout, spec, ts)?;
    let used_clusters = verify(&bytes, &layout, spec, ts)
        .map_err(|e| e.context("ESP self-check of the freshly built volume"))?;
    Ok(EspImage {
        bytes,
        layout,
        used_clusters,
    })
}

fn format_and_fill(
    spec: &EspSpec,
    layout: &EspLayout,
    files: &EspTree,
    ts: FatTimestamp,
) -> Result<Vec<u8>> {
    let len = usize::try_from(spec.size_bytes).map_err(|_| {
        Error::unsupported(format!(
            "ESP of {} bytes does not fit in memory",
            spec.size_bytes
        ))
    })?;
    let sector_size = SectorSize::try_from(u32_usize(spec.sector_bytes)).map_err(|_| {
        Error::unsupported(format!(
            "ESP: sector size {} not supported",
            spec.sector_bytes
        ))
    })?;
    let options = FatFormatOptions {
        volume_size: spec.size_bytes,
        volume_label: VolumeLabel::new(&spec.label),
        oem_name: OemName::new(OEM_NAME),
        sector_size,
        // layout_for() keeps sectors_per_cluster <= 4096 / 512 = 8.
        sectors_per_cluster: Some(u8::try_from(layout.sectors_per_cluster).unwrap_or(1)),
        fat_type: FatTypeSelection::Fat32,
        fat_copies: 2,
        hidden_sectors: spec.hidden_sectors,
        media_type: MediaType::FixedDisk,
        volume_id: Some(spec.volume_id),
        ..FatFormatOptions::default()
    };
    // Our geometry must be the formatter's, since the verifier and the size checks use ours.
    let p = FatVolumeFormatter::calculate_params(&options).map_err(|e| hadris_err("", e))?;
    let theirs = (
        p.cluster_count,
        p.sectors_per_fat,
        p.data_start_sector,
        u32::from(p.reserved_sectors),
    );
    let ours = (
        layout.cluster_count,
        layout.fat_sectors,
        layout.data_start_sector,
        layout.reserved_sectors,
    );
    if theirs != ours {
        return Err(Error::unsupported(format!(
            "ESP: the formatter's geometry (clusters, FAT sectors, data start, reserved) is \
             {theirs:?}, expected {ours:?}"
        )));
    }

    CLOCK.with(|c| c.set(FatDateTime::from_raw(ts.date, ts.time, ts.tenth)));
    let formatted = FatVolumeFormatter::format(Cursor::new(vec![0u8; len]), options)
        .map_err(|e| hadris_err("", e))?;
    // Reopen with our clock: format() mounts with the default (wall-clock) provider.
    let mut data = formatted.into_inner();
    // The volume reads its boot sector from the current position.
    data.set_position(0);
    let fs = FatVolume::builder(data)
        .time_provider(&SPEC_CLOCK)
        .open()
        .map_err(|e| hadris_err("", e))?;
    let root = fs.root_dir();
    fill_dir(&fs, &root, files.root(), "", ts, 0)?;
    fs.sync().map_err(|e| hadris_err("", e))?;
    Ok(fs.into_inner().into_inner())
}

/// Create `node`'s children in `dir`. Names that are exact 8.3 names go first: hadris-fat gives
/// a long name the short form of its first 8.3 characters without a numeric tail, and refuses a
/// later exact 8.3 name that collides with it; created first, the exact name wins and the long
/// name gets a "~N" tail.
fn fill_dir<'a>(
    fs: &'a Volume,
    dir: &FatDir<'a, Cursor<Vec<u8>>>,
    node: &EspDir,
    path: &str,
    ts: FatTimestamp,
    depth: usize,
) -> Result<()> {
    if depth > MAX_DEPTH {
        return Err(Error::invalid(format!(
            "ESP path {path:?}: more than {MAX_DEPTH} levels"
        )));
    }
    let exact = node.entries().filter(|(n, _)| is_exact_short_name(n));
    let long = node.entries().filter(|(n, _)| !is_exact_short_name(n));
    for (name, child) in exact.chain(long) {
        let child_path = format!("{path}/{name}");
        match child {
            EspNode::Dir(d) => {
                let sub = fs
                    .create_dir(dir, name)
                    .map_err(|e| hadris_err(&child_path, e))?;
                fill_dir(fs, &sub, d, &child_path, ts, depth.saturating_add(1))?;
            }
            EspNode::File(bytes) => write_file(fs, dir, name, bytes, &child_path, ts)?,
        }
    }
    Ok(())
}

fn write_file<'a>(
    fs: &'a Volume,
    dir: &FatDir<'a, Cursor<Vec<u8>>>,
    name: &str,
    bytes: &[u8],
    path: &str,
    ts: FatTimestamp,
) -> Result<()> {
    let err = |e| hadris_err(path, e);
    let entry = fs.create_file(dir, name).map_err(err)?;
    let mut w = fs.write_file(&entry).map_err(err)?;
    let dt = FatDateTime::from_raw(ts.date, ts.time, ts.tenth);
    w.set_created(dt).set_modified(dt).set_accessed(ts.date);
    for chunk in bytes.chunks(WRITE_CHUNK_BYTES) {
        let mut done = 0;
        // Each round writes at least one byte or fails, so this ends.
        while let Some(rest) = chunk.get(done..).filter(|r| !r.is_empty()) {
            let n = w.write(rest).map_err(err)?;
            if n == 0 {
                return Err(Error::invalid(format!(
                    "ESP file {path:?}: the volume took no more bytes after {done} of {}",
                    chunk.len()
                )));
            }
            done = done.saturating_add(n);
        }
    }
    w.finish().map_err(err)
}

fn hadris_err(path: &str, e: hadris_fat::Error) -> Error {
    let what = if path.is_empty() {
        "formatting the ESP".to_string()
    } else {
        format!("adding {path:?} to the ESP")
    };
    Error::invalid(format!("{what}: FAT32 writer error: {e}"))
}

/// Is `name`, upper-cased, a valid 8.3 short name (so that it is stored as its own short name)?
fn is_exact_short_name(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    let (base, ext) = match upper.split_once('.') {
        Some((b, e)) => (b, Some(e)),
        None => (upper.as_str(), None),
    };
    let ok_char =
        |c: char| c.is_ascii_uppercase() || c.is_ascii_digit() || "!#$%&'()-@^_`{}~".contains(c);
    let part_ok = |s: &str, max: usize| !s.is_empty() && s.len() <= max && s.chars().all(ok_char);
    part_ok(base, 8) && ext.is_none_or(|e| part_ok(e, 3))
}

/// Clusters the directory `dir` and everything below it take (the root's label entry included).
fn clusters_needed(dir: &EspDir, cluster_bytes: u32, is_root: bool, path: &str) -> Result<u64> {
    let cb = u64::from(cluster_bytes);
    // The root holds the volume label entry; other directories "." and "..".
    let mut entries: u64 = if is_root { 1 } else { 2 };
    let mut below = 0u64;
    for (name, node) in dir.entries() {
        let lfn = if is_exact_short_name(name) {
            0
        } else {
            name.encode_utf16().count().div_ceil(LFN_CHARS_PER_ENTRY)
        };
        // Saturating: the sums are compared with MAX_DIR_ENTRIES and the cluster count below.
        entries = entries.saturating_add(len_u64(lfn).saturating_add(1));
        let clusters = match node {
            EspNode::File(b) => len_u64(b.len()).div_ceil(cb),
            EspNode::Dir(d) => clusters_needed(d, cluster_bytes, false, &format!("{path}/{name}"))?,
        };
        below = below.saturating_add(clusters);
    }
    if entries > MAX_DIR_ENTRIES {
        return Err(Error::invalid(format!(
            "ESP directory {:?}: needs {entries} directory entries, FAT allows {MAX_DIR_ENTRIES}",
            if path.is_empty() { "/" } else { path }
        )));
    }
    let own = entries
        .saturating_mul(len_u64(DIR_ENTRY_BYTES))
        .div_ceil(cb)
        .max(1);
    Ok(own.saturating_add(below))
}

/// hadris-fat stamps the root's volume-label entry with the wall clock while formatting; give it
/// the spec's time like every other entry.
fn patch_label_entry(
    bytes: &mut [u8],
    layout: &EspLayout,
    spec: &EspSpec,
    ts: FatTimestamp,
) -> Result<()> {
    let off = to_usize(layout.cluster_offset(ROOT_CLUSTER))?;
    let slot = bytes
        .get_mut(off..off.saturating_add(DIR_ENTRY_BYTES))
        .ok_or_else(|| Error::corrupt(format!("ESP root directory at {off:#x} is out of range")))?;
    let entry = RawDirEntry::mut_from_bytes(slot)
        .map_err(|_| Error::corrupt(format!("ESP root entry at {off:#x}: short read")))?;
    if entry.attributes != ATTR_VOLUME_ID {
        return Err(Error::corrupt(format!(
            "ESP root entry at {off:#x}: volume label (attributes 0x08) expected, found \
             attributes {:#04x}",
            entry.attributes
        )));
    }
    if entry.name != label_bytes(&spec.label) {
        return Err(Error::corrupt(format!(
            "ESP root entry at {off:#x}: label {:?} expected, found {:?}",
            spec.label,
            String::from_utf8_lossy(&entry.name)
        )));
    }
    set_timestamps(entry, ts);
    Ok(())
}

fn set_timestamps(e: &mut RawDirEntry, ts: FatTimestamp) {
    e.create_time_tenth = ts.tenth;
    e.create_time.set(ts.time);
    e.create_date.set(ts.date);
    e.last_access_date.set(ts.date);
    e.write_time.set(ts.time);
    e.write_date.set(ts.date);
}

fn label_bytes(label: &str) -> [u8; 11] {
    let mut out = [b' '; 11];
    for (o, b) in out.iter_mut().zip(label.bytes()) {
        *o = b;
    }
    out
}

/// A u32 count or size as usize (lossless on the 32- and 64-bit targets we build for; saturating
/// otherwise, which the bounded `.get()` calls then refuse).
fn u32_usize(v: u32) -> usize {
    usize::try_from(v).unwrap_or(usize::MAX)
}

fn to_usize(v: u64) -> Result<usize> {
    usize::try_from(v).map_err(|_| Error::corrupt(format!("offset {v:#x} does not fit in memory")))
}

/// Our own reading of the built volume: boot sector and its backup, FSInfo, both FATs, and every
/// directory and cluster chain (no cross-links, no lost clusters, chain lengths match file
/// sizes, every timestamp is the spec's). Returns the number of clusters in use.
fn verify(bytes: &[u8], layout: &EspLayout, spec: &EspSpec, ts: FatTimestamp) -> Result<u32> {
    verify_boot_sector(bytes, layout, spec)?;
    let (fsi, fsinfo_at) = verify_fsinfo(bytes, layout)?;
    let (fat, fat0_at) = verify_fats(bytes, layout)?;
    let fat_entry = |c: u32| -> u32 {
        le_u32(fat, u32_usize(c).saturating_mul(4)).map_or(0, |v| v & FAT32_ENTRY_MASK)
    };
    if fat_entry(0) & 0xFF != u32::from(MEDIA_FIXED_DISK) {
        return Err(Error::corrupt(format!(
            "FAT[0] at {fat0_at:#x} is {:#x}, expected the media byte 0xF8 in its low byte",
            fat_entry(0)
        )));
    }

    let mut walker = Walker {
        bytes,
        layout,
        used: vec![false; u32_usize(layout.cluster_count).saturating_add(2)],
        fat_entry: &fat_entry,
        ts,
    };
    walker.dir(ROOT_CLUSTER, "/", 0)?;

    let end = layout.cluster_count.saturating_add(2);
    let allocated = (2..end).filter(|&c| fat_entry(c) != 0).count();
    let used = walker.used.iter().filter(|&&u| u).count();
    if allocated != used {
        return Err(Error::corrupt(format!(
            "FAT at {fat0_at:#x}: {allocated} clusters allocated, {used} reachable from the root"
        )));
    }
    let used = u32::try_from(used).unwrap_or(u32::MAX);
    let free = layout.cluster_count.saturating_sub(used);
    if fsi.free_count.get() != free {
        return Err(Error::corrupt(format!(
            "FSInfo at {:#x}: free count is {}, counted {free}",
            fsinfo_at.saturating_add(0x1E8),
            fsi.free_count.get()
        )));
    }
    Ok(used)
}

/// The boot sector's fields are the layout's and the spec's, and its backup is identical.
fn verify_boot_sector(bytes: &[u8], layout: &EspLayout, spec: &EspSpec) -> Result<()> {
    let sector = u32_usize(layout.sector_bytes);
    let bs = RawFat32BootSector::read_from_prefix(bytes)
        .map_err(|_| Error::corrupt("boot sector: image shorter than 512 bytes"))?
        .0;
    expect_bpb(&bs, layout, spec)?;
    if bs.bpb32.volume_label != label_bytes(&spec.label) || bs.bpb32.fs_type != FAT32_FS_TYPE {
        return Err(Error::corrupt(format!(
            "boot sector: label/type at 0x047 are {:?}/{:?}, expected {:?}/\"FAT32\"",
            String::from_utf8_lossy(&bs.bpb32.volume_label),
            String::from_utf8_lossy(&bs.bpb32.fs_type),
            spec.label
        )));
    }
    if bs.signature != BOOT_SIGNATURE {
        return Err(Error::corrupt("boot sector: no 0x55AA signature at 0x1FE"));
    }
    let backup_at = to_usize(BACKUP_BOOT_SECTOR)?.saturating_mul(sector);
    if bytes.get(..sector) != bytes.get(backup_at..backup_at.saturating_add(sector)) {
        return Err(Error::corrupt(format!(
            "backup boot sector at {backup_at:#x} differs from the boot sector"
        )));
    }
    Ok(())
}

/// Each BPB field we set, compared with what the layout and the spec say it must be.
fn expect_bpb(bs: &RawFat32BootSector, layout: &EspLayout, spec: &EspSpec) -> Result<()> {
    let sector = u32_usize(layout.sector_bytes);
    let expect = |what: &str, found: u64, expected: u64| -> Result<()> {
        if found != expected {
            return Err(Error::corrupt(format!(
                "boot sector: {what} is {found:#x}, expected {expected:#x}"
            )));
        }
        Ok(())
    };
    expect("jump byte (0x000)", bs.bpb.jump_boot[0].into(), 0xEB)?;
    expect(
        "bytes per sector (0x00B)",
        bs.bpb.bytes_per_sector.get().into(),
        len_u64(sector),
    )?;
    expect(
        "sectors per cluster (0x00D)",
        bs.bpb.sectors_per_cluster.into(),
        layout.sectors_per_cluster.into(),
    )?;
    expect(
        "reserved sectors (0x00E)",
        bs.bpb.reserved_sector_count.get().into(),
        layout.reserved_sectors.into(),
    )?;
    expect(
        "FAT count (0x010)",
        bs.bpb.num_fats.into(),
        layout.fat_count.into(),
    )?;
    expect(
        "root entry count (0x011)",
        bs.bpb.root_entry_count.get().into(),
        0,
    )?;
    expect(
        "16-bit total sectors (0x013)",
        bs.bpb.total_sectors_16.get().into(),
        0,
    )?;
    expect(
        "media (0x015)",
        bs.bpb.media.into(),
        MEDIA_FIXED_DISK.into(),
    )?;
    expect(
        "16-bit FAT size (0x016)",
        bs.bpb.fat_size_16.get().into(),
        0,
    )?;
    expect(
        "hidden sectors (0x01C)",
        bs.bpb.hidden_sectors.get().into(),
        spec.hidden_sectors.into(),
    )?;
    expect(
        "total sectors (0x020)",
        bs.bpb.total_sectors_32.get().into(),
        layout.total_sectors.into(),
    )?;
    expect(
        "FAT size (0x024)",
        bs.bpb32.fat_size_32.get().into(),
        layout.fat_sectors.into(),
    )?;
    expect(
        "root cluster (0x02C)",
        bs.bpb32.root_cluster.get().into(),
        ROOT_CLUSTER.into(),
    )?;
    expect(
        "FSInfo sector (0x030)",
        bs.bpb32.fs_info_sector.get().into(),
        FSINFO_SECTOR,
    )?;
    expect(
        "backup boot sector (0x032)",
        bs.bpb32.backup_boot_sector.get().into(),
        BACKUP_BOOT_SECTOR,
    )?;
    expect(
        "boot signature (0x042)",
        bs.bpb32.boot_signature.into(),
        EXTENDED_BOOT_SIGNATURE.into(),
    )?;
    expect(
        "volume id (0x043)",
        bs.bpb32.volume_id.get().into(),
        spec.volume_id.into(),
    )?;
    Ok(())
}

/// The FSInfo sector and its byte offset, after checking its three signatures.
fn verify_fsinfo(bytes: &[u8], layout: &EspLayout) -> Result<(RawFsInfo, usize)> {
    let sector = u32_usize(layout.sector_bytes);
    let fsinfo_at = to_usize(FSINFO_SECTOR)?.saturating_mul(sector);
    let fsi = RawFsInfo::read_from_prefix(bytes.get(fsinfo_at..).unwrap_or_default())
        .map_err(|_| Error::corrupt(format!("FSInfo at {fsinfo_at:#x}: out of range")))?
        .0;
    if fsi.lead_signature.get() != FSINFO_LEAD_SIGNATURE
        || fsi.struct_signature.get() != FSINFO_STRUCT_SIGNATURE
        || fsi.trail_signature.get() != FSINFO_TRAIL_SIGNATURE
    {
        return Err(Error::corrupt(format!(
            "FSInfo at {fsinfo_at:#x}: bad signatures"
        )));
    }
    Ok((fsi, fsinfo_at))
}

/// The first FAT and its byte offset, after checking the second is identical.
fn verify_fats<'a>(bytes: &'a [u8], layout: &EspLayout) -> Result<(&'a [u8], usize)> {
    let sector = u32_usize(layout.sector_bytes);
    let fat_len = u32_usize(layout.fat_sectors).saturating_mul(sector);
    let fat0_at = to_usize(layout.fat_offset(0))?;
    let fat1_at = to_usize(layout.fat_offset(1))?;
    let fat = bytes
        .get(fat0_at..fat0_at.saturating_add(fat_len))
        .ok_or_else(|| Error::corrupt(format!("FAT at {fat0_at:#x}: out of range")))?;
    if bytes.get(fat1_at..fat1_at.saturating_add(fat_len)) != Some(fat) {
        return Err(Error::corrupt(format!(
            "second FAT at {fat1_at:#x} differs from the first at {fat0_at:#x}"
        )));
    }
    Ok((fat, fat0_at))
}

struct Walker<'a> {
    bytes: &'a [u8],
    layout: &'a EspLayout,
    used: Vec<bool>,
    fat_entry: &'a dyn Fn(u32) -> u32,
    ts: FatTimestamp,
}

impl Walker<'_> {
    /// Follow and claim the chain starting at `start`; bounded by the cluster count, since each
    /// cluster may be claimed once.
    fn chain(&mut self, start: u32, what: &str) -> Result<Vec<u32>> {
        let mut out = Vec::new();
        let mut c = start;
        loop {
            let Some(slot) = self.used.get_mut(u32_usize(c)).filter(|_| c >= 2) else {
                return Err(Error::corrupt(format!(
                    "{what}: chain reaches cluster {c:#x}, outside 2..{:#x}",
                    self.layout.cluster_count.saturating_add(2)
                )));
            };
            if *slot {
                return Err(Error::corrupt(format!(
                    "{what}: cluster {c:#x} is used twice (cross-link or loop)"
                )));
            }
            *slot = true;
            out.push(c);
            let next = (self.fat_entry)(c);
            if next >= FAT32_EOC_MIN {
                return Ok(out);
            }
            c = next;
        }
    }

    fn dir(&mut self, start: u32, path: &str, depth: usize) -> Result<()> {
        if depth > MAX_DEPTH.saturating_add(1) {
            return Err(Error::corrupt(format!("directory {path}: nested too deep")));
        }
        let cb = u32_usize(self.layout.cluster_bytes);
        for c in self.chain(start, &format!("directory {path}"))? {
            let at = to_usize(self.layout.cluster_offset(c))?;
            let data = self.bytes.get(at..at.saturating_add(cb)).ok_or_else(|| {
                Error::corrupt(format!("cluster {c:#x} at {at:#x}: out of range"))
            })?;
            for (i, raw) in data.chunks_exact(DIR_ENTRY_BYTES).enumerate() {
                let off = at.saturating_add(i.saturating_mul(DIR_ENTRY_BYTES));
                let e = RawDirEntry::read_from_bytes(raw)
                    .map_err(|_| Error::corrupt(format!("entry at {off:#x}: short")))?;
                let [first_byte, ..] = e.name;
                if first_byte == ENTRY_END {
                    return Ok(());
                }
                if first_byte == ENTRY_FREE || e.attributes == ATTR_LONG_NAME {
                    continue;
                }
                let stamp = (
                    e.create_date.get(),
                    e.create_time.get(),
                    e.create_time_tenth,
                );
                let write = (
                    e.write_date.get(),
                    e.write_time.get(),
                    e.last_access_date.get(),
                );
                let want = self.ts;
                if stamp != (want.date, want.time, want.tenth)
                    || write != (want.date, want.time, want.date)
                {
                    return Err(Error::corrupt(format!(
                        "entry at {off:#x} in {path}: timestamps {stamp:?}/{write:?}, expected \
                         date {:#06x} time {:#06x} tenth {}",
                        want.date, want.time, want.tenth
                    )));
                }
                if e.attributes & ATTR_VOLUME_ID != 0 || first_byte == b'.' {
                    continue;
                }
                let first = e.first_cluster();
                let name = String::from_utf8_lossy(&e.name).into_owned();
                if e.attributes & ATTR_DIRECTORY != 0 {
                    self.dir(
                        first,
                        &format!("{path}{}/", name.trim_end()),
                        depth.saturating_add(1),
                    )?;
                } else {
                    let size = e.file_size.get();
                    let what = format!("file {path}{name}");
                    let clusters = if first == 0 {
                        0
                    } else {
                        self.chain(first, &what)?.len()
                    };
                    let expected = u32_usize(size).div_ceil(cb);
                    if clusters != expected {
                        return Err(Error::corrupt(format!(
                            "{what} (entry at {off:#x}): {size} bytes need {expected} clusters, \
                             its chain has {clusters}"
                        )));
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects, clippy::as_conversions)]
mod tests {
    use super::*;
    use crate::esp::MAX_ESP_BYTES;
    use std::path::{Path, PathBuf};
    use std::process::Command;

    const MIB: u64 = 1 << 20;
    const TS: i64 = 1_600_000_000; // 2020-09-13T12:26:40Z

    /// The path of an external tool, or None (test skipped) outside CI; under CI a missing tool
    /// fails the test with the install command.
    fn tool(name: &str, apt_package: &str) -> Option<PathBuf> {
        let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).collect())
            .unwrap_or_default();
        dirs.extend(["/usr/sbin", "/sbin", "/usr/bin"].map(PathBuf::from));
        if let Some(p) = dirs.iter().map(|d| d.join(name)).find(|p| p.is_file()) {
            return Some(p);
        }
        let msg = format!("{name} not found: apt-get install {apt_package}");
        if std::env::var_os("CI").is_some() {
            panic!("{msg}");
        }
        eprintln!("SKIPPED: {msg}");
        None
    }

    fn run(tool: &Path, args: &[&str]) -> (bool, Vec<u8>, String) {
        let out = Command::new(tool)
            .args(args)
            .env("MTOOLS_SKIP_CHECK", "1")
            .env("TZ", "UTC")
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), out.stdout, text)
    }

    fn sample(len: usize, seed: u8) -> Vec<u8> {
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
            .collect()
    }

    fn boot_tree() -> EspTree {
        let mut t = EspTree::new();
        t.add_file("EFI/BOOT/BOOTX64.EFI", sample(1_234_567, 1))
            .unwrap();
        t.add_file("EFI/BOOT/fbx64.efi", sample(70_000, 2)).unwrap();
        t.add_file("EFI/BOOT/BOOTX64.CSV", b"shimx64.efi,ubuntu,,\n".to_vec())
            .unwrap();
        t.add_file("EFI/ubuntu/shimx64.efi.signed", sample(900_000, 3))
            .unwrap();
        t.add_file("EFI/ubuntu/SHIMX64E.SIG", sample(10, 4))
            .unwrap();
        t.add_file("EFI/ubuntu/grubx64.efi", sample(2_000_000, 5))
            .unwrap();
        t.add_file("EFI/ubuntu/grub.cfg", b"search.fs_uuid x root\n".to_vec())
            .unwrap();
        t.add_file("EFI/Microsoft/Boot/bootmgfw.efi", sample(1_500_000, 6))
            .unwrap();
        t.add_file("EFI/Microsoft/Boot/BCD", sample(32_768, 7))
            .unwrap();
        t.add_file(
            "EFI/Microsoft/Boot/en-US/bootmgfw.efi.mui",
            sample(50_000, 8),
        )
        .unwrap();
        t.add_file("EFI/Microsoft/Recovery/empty.txt", Vec::new())
            .unwrap();
        t.add_dir("EFI/Linux").unwrap();
        t.add_file("café.txt", b"x".to_vec()).unwrap();
        t
    }

    /// Write the image as a sparse file the way the caller does: zeroed range + non-zero regions.
    fn write_image(img: &EspImage, name: &str) -> PathBuf {
        use std::os::unix::fs::FileExt;
        let path =
            std::env::temp_dir().join(format!("vhdtool-esp-{}-{name}.img", std::process::id()));
        let f = std::fs::File::create(&path).unwrap();
        f.set_len(img.len()).unwrap();
        for (off, b) in img.nonzero_regions() {
            f.write_all_at(b, off).unwrap();
        }
        path
    }

    fn check_with_tools(spec: &EspSpec, tree: &EspTree, name: &str) {
        let img = build_esp(spec, tree).unwrap();
        assert_eq!(img.len(), spec.size_bytes);
        assert!(img.nonzero_bytes() < spec.size_bytes / 10, "mostly zeros");
        let path = write_image(&img, name);
        assert_eq!(std::fs::read(&path).unwrap(), img.as_bytes());
        let p = path.to_str().unwrap();

        if let Some(fsck) = tool("fsck.fat", "dosfstools") {
            let (ok, _, text) = run(&fsck, &["-n", p]);
            assert!(ok, "fsck.fat -n failed:\n{text}");
            // A clean check prints its version and the summary line, nothing else.
            let summary = format!("{p}: ");
            assert!(
                text.lines()
                    .all(|l| l.starts_with("fsck.fat ") || l.starts_with(&summary)),
                "fsck.fat reported problems:\n{text}"
            );
        }
        if let Some(blkid) = tool("blkid", "util-linux") {
            let (ok, out, text) = run(&blkid, &["-p", "-o", "export", p]);
            assert!(ok, "blkid: {text}");
            let out = String::from_utf8(out).unwrap();
            let id = format!(
                "{:04X}-{:04X}",
                spec.volume_id >> 16,
                spec.volume_id & 0xFFFF
            );
            for want in [
                "TYPE=vfat".to_string(),
                "VERSION=FAT32".to_string(),
                format!("UUID={id}"),
                format!("LABEL={}", spec.label),
            ] {
                assert!(out.lines().any(|l| l == want), "blkid lacks {want}:\n{out}");
            }
            assert!(!out.contains("SEC_TYPE"), "{out}");
        }
        if let Some(mdir) = tool("mdir", "mtools") {
            let (ok, _, text) = run(&mdir, &["-i", p, "::/EFI/BOOT"]);
            assert!(ok, "mdir: {text}");
            for want in [
                "BOOTX64  EFI",
                "fbx64    efi",
                "BOOTX64  CSV",
                "2020-09-13  12:26",
            ] {
                assert!(text.contains(want), "mdir lacks {want:?}:\n{text}");
            }
            let (ok, _, text) = run(&mdir, &["-i", p, "::/EFI/ubuntu"]);
            assert!(ok, "mdir: {text}");
            assert!(
                text.contains("shimx64.efi.signed") && text.contains("SHIMX64E SIG"),
                "{text}"
            );
        }
        if let Some(mcopy) = tool("mcopy", "mtools") {
            for file in [
                "EFI/BOOT/BOOTX64.EFI",
                "EFI/ubuntu/shimx64.efi.signed",
                "EFI/ubuntu/SHIMX64E.SIG",
                "EFI/Microsoft/Boot/bootmgfw.efi",
                "EFI/Microsoft/Boot/en-US/bootmgfw.efi.mui",
                "café.txt",
            ] {
                let (ok, out, text) = run(&mcopy, &["-n", "-i", p, &format!("::/{file}"), "-"]);
                assert!(ok, "mcopy {file}: {text}");
                let Some(EspNode::File(want)) = tree.get(file) else {
                    panic!("{file}")
                };
                assert!(
                    out == *want,
                    "mcopy {file}: {} bytes differ from the {} given",
                    out.len(),
                    want.len()
                );
            }
        }
        std::fs::remove_file(&path).unwrap();
    }

    fn spec(size: u64, sector: u32) -> EspSpec {
        EspSpec {
            size_bytes: size,
            sector_bytes: sector,
            volume_id: 0x1234_ABCD,
            label: "SYSTEM".into(),
            timestamp_unix: TS,
            hidden_sectors: 2048,
        }
    }

    #[test]
    fn fat32_512_byte_sectors_passes_independent_tools() {
        check_with_tools(&spec(100 * MIB, 512), &boot_tree(), "512");
    }

    #[test]
    fn fat32_4k_sectors_passes_independent_tools() {
        check_with_tools(&spec(260 * MIB, 4096), &boot_tree(), "4k");
    }

    #[test]
    fn deterministic_and_clock_free() {
        let s = spec(100 * MIB, 512);
        let a = build_esp(&s, &boot_tree()).unwrap();
        let b = build_esp(&s, &boot_tree()).unwrap();
        assert!(a == b, "same inputs, same bytes");
        let mut s2 = s.clone();
        s2.timestamp_unix = TS + 2;
        let c = build_esp(&s2, &boot_tree()).unwrap();
        assert!(a != c, "the timestamp is used");
        // An empty tree: just the label; the volume is still valid.
        let e = build_esp(&s, &EspTree::new()).unwrap();
        assert_eq!(e.used_clusters(), 1);
        assert_eq!(
            e.free_bytes(),
            u64::from(e.layout().cluster_count - 1) * u64::from(e.layout().cluster_bytes)
        );
    }

    #[test]
    fn many_long_names_grow_directories() {
        let mut t = EspTree::new();
        for i in 0..300 {
            t.add_file(
                &format!("EFI/many/a rather long file name number {i:04}.efi"),
                vec![i as u8; 3],
            )
            .unwrap();
            t.add_file(&format!("EFI/many/S{i:04}.EFI"), vec![1])
                .unwrap();
        }
        check_with_tools_small(&t);
    }

    fn check_with_tools_small(tree: &EspTree) {
        let s = spec(40 * MIB, 512);
        let img = build_esp(&s, tree).unwrap();
        let path = write_image(&img, "small");
        if let Some(fsck) = tool("fsck.fat", "dosfstools") {
            let (ok, _, text) = run(&fsck, &["-n", path.to_str().unwrap()]);
            assert!(ok, "{text}");
        }
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn refuses_trees_larger_than_the_esp() {
        let mut t = EspTree::new();
        t.add_file("EFI/big.bin", vec![7u8; 40 * MIB as usize])
            .unwrap();
        let e = build_esp(&spec(40 * MIB, 512), &t).unwrap_err();
        assert!(e.message().contains("too small for its files"), "{e}");
        assert!(e.message().contains("41943040 bytes of file data"), "{e}");
        // The same file fits a 100 MiB ESP.
        let img = build_esp(&spec(100 * MIB, 512), &t).unwrap();
        assert!(img.free_bytes() < 60 * MIB);
    }

    #[test]
    fn refuses_bad_specs() {
        let t = EspTree::new();
        let mut s = spec(100 * MIB, 512);
        s.label = "lower".into();
        assert!(build_esp(&s, &t).is_err());
        assert!(build_esp(&spec(100 * MIB, 4096), &t).is_err());
        assert!(build_esp(&spec(100 * MIB + 512, 512), &t).is_err());
        assert!(build_esp(&spec(MAX_ESP_BYTES * 2, 512), &t).is_err());
    }

    #[test]
    fn exact_short_names() {
        for n in [
            "BOOTX64.EFI",
            "grubx64.efi",
            "BCD",
            "a",
            "A~1.X",
            "12345678.123",
        ] {
            assert!(is_exact_short_name(n), "{n}");
        }
        for n in [
            "shimx64.efi.signed",
            "123456789",
            "a.abcd",
            ".x",
            "a b",
            "café",
            "a+b",
            "",
        ] {
            assert!(!is_exact_short_name(n), "{n}");
        }
    }

    #[test]
    fn verifier_catches_damage() {
        let s = spec(40 * MIB, 512);
        let img = build_esp(&s, &boot_tree()).unwrap();
        let ts = FatTimestamp::from_unix(TS);
        let l = *img.layout();
        let good = img.into_bytes();
        assert!(verify(&good, &l, &s, ts).is_ok());

        let mut bad = good.clone();
        bad[0x43] ^= 1; // volume id
        assert!(verify(&bad, &l, &s, ts)
            .unwrap_err()
            .message()
            .contains("volume id"));

        let mut bad = good.clone();
        let fat1 = l.fat_offset(1) as usize;
        bad[fat1 + 4 * 100] = 0xFF; // second FAT differs
        assert!(verify(&bad, &l, &s, ts)
            .unwrap_err()
            .message()
            .contains("differs"));

        let mut bad = good.clone();
        let last = (l.cluster_count + 1) as usize * 4;
        for fat in [0, 1] {
            let at = l.fat_offset(fat) as usize + last;
            bad[at..at + 4].copy_from_slice(&0x0FFF_FFFFu32.to_le_bytes()); // lost cluster
        }
        assert!(verify(&bad, &l, &s, ts)
            .unwrap_err()
            .message()
            .contains("reachable"));

        let other = FatTimestamp::from_unix(TS + 60);
        assert!(verify(&good, &l, &s, other)
            .unwrap_err()
            .message()
            .contains("timestamps"));
        assert!(verify(&good[..100], &l, &s, ts).is_err());
    }
}
