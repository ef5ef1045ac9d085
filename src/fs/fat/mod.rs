//! Read-only, bounded access to FAT12/16/32 volumes (Microsoft "FAT: General Overview of On-Disk
//! Format", fatgen103, 2000), enough to answer the questions the ESP checks ask: does
//! `\EFI\BOOT\BOOTX64.EFI` exist, what does it contain, what is in a directory.
//!
//! Everything read from the volume is untrusted:
//! - the BPB is validated before any other read (sizes, powers of two, region order, the volume
//!   fits in the partition);
//! - cluster numbers are checked against the cluster count before use; a chain that is longer
//!   than the volume could hold, loops, or runs into a free/bad/reserved entry is `Corrupt`;
//! - directories are bounded by the spec limit of 65 536 entries (2 MiB), files by the volume
//!   size; nothing is allocated that the image cannot hold.
//!
//! Name matching is case-insensitive (Unicode simple upper-casing) on long names (VFAT LFN,
//! UTF-16) and on 8.3 short names (OEM code page 437).

use std::collections::HashSet;

use serde::Serialize;
use zerocopy::FromBytes;

mod geometry;
pub mod raw;

pub use self::geometry::FatType;
use self::geometry::{last_cluster, overflow, Geometry, DIR_ENTRY_BYTES_U64};
use self::raw::{
    RawDirEntry, RawLfnEntry, ATTR_DIRECTORY, ATTR_LONG_NAME, ATTR_LONG_NAME_MASK, ATTR_VOLUME_ID,
    DIR_ENTRY_BYTES, ENTRY_END, ENTRY_FREE, ENTRY_KANJI_E5, LFN_CHARS_PER_ENTRY, LFN_LAST,
    LFN_MAX_ENTRIES, MAX_DIR_ENTRIES, NT_LOWER_BASE, NT_LOWER_EXT,
};
use crate::disk::Disk;
use crate::error::{Error, Result};

/// A length as u64 (lossless on every target Rust supports; saturates otherwise).
fn len64(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}
const MAX_DIR_BYTES: u64 = MAX_DIR_ENTRIES * DIR_ENTRY_BYTES_U64;
/// The deepest path we walk; the names come from the caller, this only stops silly input (each
/// level may read a directory of up to 2 MiB).
const MAX_PATH_COMPONENTS: usize = 32;

/// How [`Fat::chain`] treats its length bound `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChainMode {
    /// A file: exactly the first `max` clusters; the chain must have at least that many (what
    /// follows is not walked).
    Exact,
    /// A directory: the whole chain, which must end within `max` clusters.
    Within,
    /// The first `max` clusters at most, a shorter chain is fine (label scan).
    Prefix,
}

/// What a FAT entry says about the cluster after this one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FatEntry {
    Free,
    Next(u32),
    Bad,
    End,
    /// A reserved value or a cluster number beyond the volume.
    Invalid(u32),
}

// ---------------------------------------------------------------------------------------------
// Directory entries
// ---------------------------------------------------------------------------------------------

/// One entry of a directory listing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DirEntryInfo {
    /// The long name when there is a valid one, else the short name.
    pub name: String,
    /// The 8.3 name as stored ("BOOTX64.EFI"), with the NT lower-case flags applied.
    pub short_name: String,
    pub is_dir: bool,
    /// File size in bytes (0 for directories).
    pub size: u32,
    pub first_cluster: u32,
    /// Raw attribute byte (read-only 0x01, hidden 0x02, system 0x04, dir 0x10, archive 0x20).
    pub attributes: u8,
}

/// Code page 437, bytes 0x80..=0xFF (the OEM code page FAT short names use by default).
const CP437_HIGH: &str = "ÇüéâäàåçêëèïîìÄÅÉæÆôöòûùÿÖÜ¢£¥₧ƒáíóúñÑªº¿⌐¬½¼¡«»░▒▓│┤╡╢╖╕╣║╗╝╜╛┐└┴┬├─┼╞╟╚╔╩╦╠═╬╧╨╤╥╙╘╒╓╫╪┘┌█▄▌▐▀αßΓπΣσµτΦΘΩδ∞φε∩≡±≥≤⌠⌡÷≈°∙·√ⁿ²■\u{a0}";

fn cp437_char(b: u8) -> char {
    if b < 0x80 {
        char::from(b)
    } else {
        CP437_HIGH
            .chars()
            .nth(usize::from(b.wrapping_sub(0x80)))
            .unwrap_or(char::REPLACEMENT_CHARACTER)
    }
}

/// Decode 8.3 bytes (space padded) to text, as in OEM code page 437.
pub(crate) fn decode_oem(bytes: &[u8]) -> String {
    let end = bytes
        .iter()
        .rposition(|&b| b != b' ' && b != 0)
        .map_or(0, |p| p.saturating_add(1));
    bytes
        .get(..end)
        .unwrap_or(&[])
        .iter()
        .map(|&b| cp437_char(b))
        .collect()
}

/// A label as blkid shows it: cut at the first NUL, trailing spaces removed, empty is none.
pub(crate) fn label_text(raw: &[u8; 11]) -> Option<String> {
    let end = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
    let s = decode_oem(raw.get(..end)?);
    (!s.is_empty()).then_some(s)
}

/// "NAME.EXT" from the 11 stored bytes.
fn short_name(raw: &[u8; 11], nt_res: u8) -> String {
    let mut name = *raw;
    if name[0] == ENTRY_KANJI_E5 {
        name[0] = ENTRY_FREE;
    }
    let (base, ext) = name.split_at(8);
    let mut base = decode_oem(base);
    let mut ext = decode_oem(ext);
    if nt_res & NT_LOWER_BASE != 0 {
        base = base.to_ascii_lowercase();
    }
    if nt_res & NT_LOWER_EXT != 0 {
        ext = ext.to_ascii_lowercase();
    }
    if ext.is_empty() {
        base
    } else {
        format!("{base}.{ext}")
    }
}

/// fatgen103 §7 "ChkSum": the checksum long-name entries carry of their short name.
fn short_name_checksum(name: &[u8; 11]) -> u8 {
    name.iter()
        .fold(0u8, |sum, &b| sum.rotate_right(1).wrapping_add(b))
}

/// Assembles a long name from LFN entries as they appear (last part first).
struct LfnBuilder {
    units: Vec<u16>,
    next_ord: u8,
    checksum: u8,
}

impl LfnBuilder {
    fn start(e: &RawLfnEntry) -> Option<LfnBuilder> {
        let n = e.ord & !LFN_LAST;
        if n == 0 || n > LFN_MAX_ENTRIES {
            return None;
        }
        let mut b = LfnBuilder {
            units: vec![0xFFFF; usize::from(n).checked_mul(LFN_CHARS_PER_ENTRY)?],
            next_ord: n,
            checksum: e.checksum,
        };
        b.add(e).then_some(b)
    }

    /// Add the entry with the expected sequence number; false when it does not fit.
    fn add(&mut self, e: &RawLfnEntry) -> bool {
        let ord = e.ord & !LFN_LAST;
        if ord != self.next_ord || ord == 0 || e.checksum != self.checksum {
            return false;
        }
        let Some(prev) = ord.checked_sub(1) else {
            return false;
        };
        let Some(start) = usize::from(prev).checked_mul(LFN_CHARS_PER_ENTRY) else {
            return false;
        };
        let chars = e
            .name1
            .iter()
            .chain(e.name2.iter())
            .chain(e.name3.iter())
            .map(|u| u.get());
        for (i, c) in chars.enumerate() {
            if let Some(slot) = start.checked_add(i).and_then(|j| self.units.get_mut(j)) {
                *slot = c;
            }
        }
        self.next_ord = prev;
        true
    }

    /// The name, if every part arrived and it belongs to this short name.
    fn finish(self, short: &[u8; 11]) -> Option<String> {
        if self.next_ord != 0 || self.checksum != short_name_checksum(short) {
            return None;
        }
        let end = self
            .units
            .iter()
            .position(|&u| u == 0 || u == 0xFFFF)
            .unwrap_or(self.units.len());
        let name = String::from_utf16_lossy(self.units.get(..end)?);
        (!name.is_empty()).then_some(name)
    }
}

/// Parse the entries of a directory held in `buf` (stops at the end marker).
/// Skips free entries, the volume label, "." and "..".
fn parse_dir(buf: &[u8]) -> Vec<DirEntryInfo> {
    let mut out = Vec::new();
    let mut lfn: Option<LfnBuilder> = None;
    for chunk in buf.chunks_exact(DIR_ENTRY_BYTES) {
        let Ok(e) = RawDirEntry::ref_from_bytes(chunk) else {
            break;
        };
        match e.name[0] {
            ENTRY_END => break,
            ENTRY_FREE => {
                lfn = None;
                continue;
            }
            _ => {}
        }
        if e.attributes & ATTR_LONG_NAME_MASK == ATTR_LONG_NAME {
            let Ok(l) = RawLfnEntry::ref_from_bytes(chunk) else {
                break;
            };
            lfn = if l.ord & LFN_LAST != 0 {
                LfnBuilder::start(l)
            } else {
                lfn.and_then(|mut b| b.add(l).then_some(b))
            };
            continue;
        }
        let long = lfn.take().and_then(|b| b.finish(&e.name));
        if e.attributes & ATTR_VOLUME_ID != 0
            || e.name == *b".          "
            || e.name == *b"..         "
        {
            continue;
        }
        let short = short_name(&e.name, e.nt_reserved);
        let is_dir = e.attributes & ATTR_DIRECTORY != 0;
        out.push(DirEntryInfo {
            name: long.unwrap_or_else(|| short.clone()),
            short_name: short,
            is_dir,
            size: if is_dir { 0 } else { e.file_size.get() },
            first_cluster: e.first_cluster(),
            attributes: e.attributes,
        });
    }
    out
}

/// Case-insensitive name comparison (Unicode simple upper case, as FAT does for long names).
fn name_eq(a: &str, b: &str) -> bool {
    a.chars()
        .flat_map(char::to_uppercase)
        .eq(b.chars().flat_map(char::to_uppercase))
}

/// Where a directory's entries live.
#[derive(Debug, Clone, Copy)]
enum DirLoc {
    /// The fixed FAT12/16 root directory.
    FixedRoot,
    Chain(u32),
}

// ---------------------------------------------------------------------------------------------
// The reader
// ---------------------------------------------------------------------------------------------

/// A read-only FAT12/16/32 volume.
pub struct Fat<'a> {
    part: &'a dyn Disk,
    geo: Geometry,
}

impl std::fmt::Debug for Fat<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fat").field("geo", &self.geo).finish()
    }
}

impl<'a> Fat<'a> {
    /// Read and validate the boot sector of the FAT volume at the start of `part`.
    pub fn open(part: &'a dyn Disk) -> Result<Fat<'a>> {
        let fs = Fat::open_truncated(part)?;
        let geo = &fs.geo;
        if geo.volume_bytes > part.len() {
            return Err(Error::corrupt(format!(
                "FAT boot sector at 0x13/0x20: the volume claims 0x{:x} bytes, the partition \
                 holds 0x{:x}",
                geo.volume_bytes,
                part.len()
            )));
        }
        Ok(fs)
    }

    /// Like [`Fat::open`], but a volume larger than the partition is accepted (the probe
    /// identifies truncated volumes too; reads past the end then fail as `Corrupt`).
    pub(crate) fn open_truncated(part: &'a dyn Disk) -> Result<Fat<'a>> {
        let mut sector = [0u8; 512];
        part.read_at(0, &mut sector)
            .map_err(|e| e.context("FAT boot sector"))?;
        let geo = Geometry::parse(&sector)?;
        Ok(Fat { part, geo })
    }

    pub fn fat_type(&self) -> FatType {
        self.geo.fat_type
    }

    pub fn cluster_bytes(&self) -> u32 {
        self.geo.cluster_bytes
    }

    pub fn cluster_count(&self) -> u32 {
        self.geo.cluster_count
    }

    /// Size of the volume in bytes, from the BPB.
    pub fn volume_bytes(&self) -> u64 {
        self.geo.volume_bytes
    }

    /// The volume serial number as blkid prints it ("ABCD-1234").
    pub fn volume_id(&self) -> String {
        format_volume_id(self.geo.volume_id)
    }

    pub(crate) fn raw_volume_id(&self) -> [u8; 4] {
        self.geo.volume_id
    }

    /// The volume label from the root directory (what Windows and blkid show), if any.
    pub fn volume_label(&self) -> Result<Option<String>> {
        Ok(self.root_label_raw()?.and_then(|l| label_text(&l)))
    }

    /// The label copy in the boot sector (blkid's LABEL_FATBOOT); "NO NAME" counts as none.
    pub fn boot_label(&self) -> Option<String> {
        label_text(&self.geo.boot_label).filter(|l| l != "NO NAME")
    }

    /// Does `path` ("EFI/BOOT/BOOTX64.EFI", '/' or '\\' separated) name a file or directory?
    pub fn exists(&self, path: &str) -> Result<bool> {
        Ok(self.lookup(path)?.is_some())
    }

    /// The entry `path` names, `None` when it does not exist. The root has no entry: `stat("/")`
    /// gives a synthetic directory entry.
    pub fn stat(&self, path: &str) -> Result<Option<DirEntryInfo>> {
        self.lookup(path)
    }

    /// The contents of the file at `path`, `None` when there is no such file or directory.
    /// A directory is `InvalidInput`; a size or chain the volume cannot hold is `Corrupt`.
    pub fn read_file(&self, path: &str) -> Result<Option<Vec<u8>>> {
        let Some(entry) = self.lookup(path)? else {
            return Ok(None);
        };
        if entry.is_dir {
            return Err(Error::invalid(format!(
                "FAT: {path} is a directory, not a file"
            )));
        }
        self.read_entry(&entry).map(Some)
    }

    /// The entries of the directory at `path` (without "." and ".."). A missing path or a file is
    /// `InvalidInput`.
    pub fn list_dir(&self, path: &str) -> Result<Vec<DirEntryInfo>> {
        match self.lookup(path)? {
            Some(e) if e.is_dir => Ok(parse_dir(&self.read_dir_bytes(self.dir_loc(&e)?)?)),
            Some(_) => Err(Error::invalid(format!(
                "FAT: {path} is a file, not a directory"
            ))),
            None => Err(Error::invalid(format!("FAT: no such directory: {path}"))),
        }
    }

    // --- internals -------------------------------------------------------------------------

    fn root_entry(&self) -> DirEntryInfo {
        DirEntryInfo {
            name: String::new(),
            short_name: String::new(),
            is_dir: true,
            size: 0,
            first_cluster: if self.geo.fat_type == FatType::Fat32 {
                self.geo.root_cluster
            } else {
                0
            },
            attributes: ATTR_DIRECTORY,
        }
    }

    fn dir_loc(&self, e: &DirEntryInfo) -> Result<DirLoc> {
        // A ".." entry pointing at the root stores cluster 0, on FAT32 too.
        if e.first_cluster == 0 {
            return Ok(match self.geo.fat_type {
                FatType::Fat32 => DirLoc::Chain(self.geo.root_cluster),
                _ => DirLoc::FixedRoot,
            });
        }
        if !self.geo.is_valid_cluster(e.first_cluster) {
            return Err(Error::corrupt(format!(
                "FAT: directory {} starts at cluster {}, outside 2..={}",
                e.name,
                e.first_cluster,
                last_cluster(self.geo.cluster_count)
            )));
        }
        Ok(DirLoc::Chain(e.first_cluster))
    }

    fn lookup(&self, path: &str) -> Result<Option<DirEntryInfo>> {
        let parts: Vec<&str> = path
            .split(['/', '\\'])
            .filter(|p| !p.is_empty() && *p != ".")
            .collect();
        if parts.len() > MAX_PATH_COMPONENTS {
            return Err(Error::invalid(format!(
                "FAT: path has {} components, at most {MAX_PATH_COMPONENTS}",
                parts.len()
            )));
        }
        let mut cur = self.root_entry();
        for part in parts {
            if !cur.is_dir {
                return Ok(None);
            }
            let entries = parse_dir(&self.read_dir_bytes(self.dir_loc(&cur)?)?);
            match entries
                .into_iter()
                .find(|e| name_eq(&e.name, part) || name_eq(&e.short_name, part))
            {
                Some(e) => cur = e,
                None => return Ok(None),
            }
        }
        Ok(Some(cur))
    }

    fn fat_entry(&self, cluster: u32) -> Result<FatEntry> {
        let c = u64::from(cluster);
        let (off, width) = match self.geo.fat_type {
            FatType::Fat12 => (c.checked_add(c / 2), 2u64),
            FatType::Fat16 => (c.checked_mul(2), 2),
            FatType::Fat32 => (c.checked_mul(4), 4),
        };
        let off = off.ok_or_else(|| overflow("FAT entry offset"))?;
        let end = off
            .checked_add(width)
            .ok_or_else(|| overflow("FAT entry offset"))?;
        if end > self.geo.fat_bytes {
            return Err(Error::corrupt(format!(
                "FAT: entry for cluster {cluster} at 0x{off:x} is beyond the FAT (0x{:x} bytes)",
                self.geo.fat_bytes
            )));
        }
        let pos = self
            .geo
            .fat_offset
            .checked_add(off)
            .ok_or_else(|| overflow("FAT entry offset"))?;
        let mut b = [0u8; 4];
        let slice = b
            .get_mut(..usize::try_from(width).unwrap_or(4))
            .ok_or_else(|| overflow("FAT entry width"))?;
        self.part
            .read_at(pos, slice)
            .map_err(|e| e.context(format!("FAT entry for cluster {cluster}")))?;
        let raw = u32::from_le_bytes(b);
        let (value, bad, end_min) = match self.geo.fat_type {
            FatType::Fat12 => {
                let v = if cluster & 1 == 1 { raw >> 4 } else { raw } & 0xFFF;
                (v, 0xFF7, 0xFF8)
            }
            FatType::Fat16 => (raw & 0xFFFF, 0xFFF7, 0xFFF8),
            FatType::Fat32 => (raw & 0x0FFF_FFFF, 0x0FFF_FFF7, 0x0FFF_FFF8),
        };
        Ok(match value {
            0 => FatEntry::Free,
            v if v >= end_min => FatEntry::End,
            v if v == bad => FatEntry::Bad,
            v if self.geo.is_valid_cluster(v) => FatEntry::Next(v),
            v => FatEntry::Invalid(v),
        })
    }

    /// The clusters of a chain from `start`, at most `max` of them (see [`ChainMode`]).
    fn chain(&self, start: u32, max: u64, mode: ChainMode) -> Result<Vec<u32>> {
        let limit = max.min(u64::from(self.geo.cluster_count));
        let mut out = Vec::new();
        let mut seen = HashSet::new();
        let mut cur = start;
        loop {
            if !self.geo.is_valid_cluster(cur) {
                return Err(Error::corrupt(format!(
                    "FAT: chain from cluster {start} reaches cluster {cur}, outside 2..={}",
                    last_cluster(self.geo.cluster_count)
                )));
            }
            if !seen.insert(cur) {
                return Err(Error::corrupt(format!(
                    "FAT: chain from cluster {start} loops back to cluster {cur}"
                )));
            }
            out.push(cur);
            if mode != ChainMode::Within && len64(out.len()) >= max {
                return Ok(out);
            }
            match self.fat_entry(cur)? {
                FatEntry::End => break,
                FatEntry::Next(n) => {
                    if mode == ChainMode::Within && len64(out.len()) >= limit {
                        return Err(Error::corrupt(format!(
                            "FAT: chain from cluster {start} is longer than {limit} clusters"
                        )));
                    }
                    cur = n;
                }
                other => {
                    return Err(Error::corrupt(format!(
                        "FAT: chain from cluster {start}: entry of cluster {cur} is {other:?}"
                    )))
                }
            }
        }
        if mode == ChainMode::Exact && (len64(out.len())) < max {
            return Err(Error::corrupt(format!(
                "FAT: chain from cluster {start} has {} clusters, the size needs {max}",
                out.len()
            )));
        }
        Ok(out)
    }

    /// Read the clusters of `chain` into one buffer of `len` bytes (`len` <= chain bytes).
    fn read_chain(&self, chain: &[u32], len: u64) -> Result<Vec<u8>> {
        let n = usize::try_from(len).map_err(|_| overflow("read size"))?;
        let cb = usize::try_from(self.geo.cluster_bytes).map_err(|_| overflow("cluster size"))?;
        let mut buf = vec![0u8; n];
        let mut i = 0usize;
        let mut filled = 0usize;
        while filled < n {
            // coalesce a run of consecutive clusters into one read
            let first = *chain.get(i).ok_or_else(|| overflow("chain length"))?;
            let mut run = 1usize;
            while chain
                .get(i.saturating_add(run))
                .zip(first.checked_add(u32::try_from(run).unwrap_or(u32::MAX)))
                .is_some_and(|(&c, want)| c == want)
            {
                run = run.saturating_add(1);
            }
            let want = run.saturating_mul(cb).min(n.saturating_sub(filled));
            let dst = buf
                .get_mut(filled..filled.saturating_add(want))
                .ok_or_else(|| overflow("read size"))?;
            self.part
                .read_at(self.geo.cluster_offset(first)?, dst)
                .map_err(|e| e.context(format!("FAT: cluster {first}")))?;
            filled = filled.saturating_add(want);
            i = i.saturating_add(run);
        }
        Ok(buf)
    }

    fn read_dir_bytes(&self, loc: DirLoc) -> Result<Vec<u8>> {
        match loc {
            DirLoc::FixedRoot => self
                .part
                .read_vec(self.geo.root_dir_offset, self.geo.root_dir_bytes)
                .map_err(|e| e.context("FAT root directory")),
            DirLoc::Chain(start) => {
                let max = MAX_DIR_BYTES.div_ceil(u64::from(self.geo.cluster_bytes));
                let chain = self.chain(start, max, ChainMode::Within)?;
                let bytes = len64(chain.len())
                    .checked_mul(u64::from(self.geo.cluster_bytes))
                    .ok_or_else(|| overflow("directory size"))?;
                self.read_chain(&chain, bytes)
            }
        }
    }

    fn read_entry(&self, e: &DirEntryInfo) -> Result<Vec<u8>> {
        let size = u64::from(e.size);
        if size == 0 {
            return Ok(Vec::new());
        }
        let data_bytes = u64::from(self.geo.cluster_count)
            .checked_mul(u64::from(self.geo.cluster_bytes))
            .ok_or_else(|| overflow("data area"))?;
        if size > data_bytes {
            return Err(Error::corrupt(format!(
                "FAT: file {} claims {size} bytes, the data area holds {data_bytes}",
                e.name
            )));
        }
        let needed = size.div_ceil(u64::from(self.geo.cluster_bytes));
        let chain = self.chain(e.first_cluster, needed, ChainMode::Exact)?;
        self.read_chain(&chain, size)
    }

    /// The volume-label entry of the root directory, found the way blkid does: the first entry
    /// with VOLUME_ID (and not DIRECTORY) set, no cluster, not a long-name part. Reads one sector
    /// at a time and stops at the end marker; at most [`MAX_LABEL_SCAN_BYTES`].
    pub(crate) fn root_label_raw(&self) -> Result<Option<[u8; 11]>> {
        let bps = u64::from(self.geo.bytes_per_sector);
        let mut sectors: Vec<u64> = Vec::new();
        match self.geo.fat_type {
            FatType::Fat32 => {
                let per_cluster = u64::from(self.geo.cluster_bytes)
                    .checked_div(bps)
                    .ok_or_else(|| overflow("sector size"))?;
                let max_clusters = MAX_LABEL_SCAN_BYTES.div_ceil(u64::from(self.geo.cluster_bytes));
                let chain = self.chain(self.geo.root_cluster, max_clusters, ChainMode::Prefix)?;
                for c in chain {
                    let base = self.geo.cluster_offset(c)?;
                    for s in 0..per_cluster {
                        sectors.push(
                            s.checked_mul(bps)
                                .and_then(|o| o.checked_add(base))
                                .ok_or_else(|| overflow("root directory"))?,
                        );
                    }
                }
            }
            _ => {
                let n = self
                    .geo
                    .root_dir_bytes
                    .min(MAX_LABEL_SCAN_BYTES)
                    .div_ceil(bps.max(1));
                for s in 0..n {
                    sectors.push(
                        s.checked_mul(bps)
                            .and_then(|o| o.checked_add(self.geo.root_dir_offset))
                            .ok_or_else(|| overflow("root directory"))?,
                    );
                }
            }
        }
        let mut buf = vec![0u8; usize::try_from(bps).map_err(|_| overflow("sector size"))?];
        for off in sectors.into_iter().take(MAX_LABEL_SCAN_SECTORS) {
            self.part.read_at(off, &mut buf)?;
            for chunk in buf.chunks_exact(DIR_ENTRY_BYTES) {
                let Ok(e) = RawDirEntry::ref_from_bytes(chunk) else {
                    break;
                };
                match e.name[0] {
                    ENTRY_END => return Ok(None),
                    ENTRY_FREE => continue,
                    _ => {}
                }
                if e.attributes & ATTR_LONG_NAME_MASK == ATTR_LONG_NAME || e.first_cluster() != 0 {
                    continue;
                }
                if e.attributes & (ATTR_VOLUME_ID | ATTR_DIRECTORY) == ATTR_VOLUME_ID {
                    let mut name = e.name;
                    if name[0] == ENTRY_KANJI_E5 {
                        name[0] = ENTRY_FREE;
                    }
                    return Ok(Some(name));
                }
            }
        }
        Ok(None)
    }
}

/// The label scan reads at most this much of the root directory (the label entry is normally
/// the first one; mkfs.fat and Windows put it there).
const MAX_LABEL_SCAN_BYTES: u64 = 64 * 1024;
const MAX_LABEL_SCAN_SECTORS: usize = 128;

/// "ABCD-1234" from the little-endian serial bytes, as blkid prints FAT and exFAT serials.
pub(crate) fn format_volume_id(id: [u8; 4]) -> String {
    let [a, b, c, d] = id;
    format!("{d:02X}{c:02X}-{b:02X}{a:02X}")
}

#[cfg(test)]
#[allow(
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    clippy::unwrap_used,
    clippy::as_conversions
)]
pub(crate) mod tests {
    use super::*;
    use crate::disk::MemDisk;
    use crate::error::ErrorKind;

    const BPS: usize = 512;
    const TOTAL_SECTORS: usize = 128;
    /// reserved 1 + 2 FATs of 1 sector + 1 root directory sector
    const DATA_SECTOR: usize = 4;
    const ROOT_SECTOR: usize = 3;

    /// The fixture's file contents: `BOOTX64.EFI` spans clusters 7, 9, 8 (out of order).
    pub(crate) fn bootx64_content() -> Vec<u8> {
        (0..1300u32).map(|i| (i * 7 % 251) as u8).collect()
    }
    pub(crate) fn long_content() -> Vec<u8> {
        (0..700u32).map(|i| (i % 13) as u8 + b'a').collect()
    }

    fn set_fat12(img: &mut [u8], cluster: usize, value: u16) {
        for fat in 0..2 {
            let base = (1 + fat) * BPS; // FATs follow the one reserved sector
            let off = base + cluster + cluster / 2;
            if cluster.is_multiple_of(2) {
                img[off] = value as u8;
                img[off + 1] = (img[off + 1] & 0xF0) | ((value >> 8) as u8 & 0x0F);
            } else {
                img[off] = (img[off] & 0x0F) | (((value & 0xF) as u8) << 4);
                img[off + 1] = (value >> 4) as u8;
            }
        }
    }

    fn cluster_off(c: usize) -> usize {
        (DATA_SECTOR + c - 2) * BPS
    }

    /// A 32-byte short entry.
    fn short_entry(name: &[u8; 11], attr: u8, cluster: u16, size: u32) -> [u8; 32] {
        let mut e = [0u8; 32];
        e[..11].copy_from_slice(name); // 0x00 name
        e[0x0B] = attr; // 0x0B attributes
        e[0x1A..0x1C].copy_from_slice(&cluster.to_le_bytes()); // 0x1A first cluster (low)
        e[0x1C..0x20].copy_from_slice(&size.to_le_bytes()); // 0x1C size
        e
    }

    /// Long-name entries for `name` (stored order: last part first), bound to `short`.
    fn lfn_entries(name: &str, short: &[u8; 11]) -> Vec<[u8; 32]> {
        let mut units: Vec<u16> = name.encode_utf16().collect();
        if !units.len().is_multiple_of(13) {
            units.push(0);
        }
        while !units.len().is_multiple_of(13) {
            units.push(0xFFFF);
        }
        let n = units.len() / 13;
        let sum = short_name_checksum(short);
        (0..n)
            .rev()
            .map(|i| {
                let mut e = [0u8; 32];
                e[0] = (i + 1) as u8 | if i + 1 == n { LFN_LAST } else { 0 }; // ord
                e[0x0B] = ATTR_LONG_NAME; // attributes
                e[0x0D] = sum; // checksum of the short name
                let part = &units[i * 13..i * 13 + 13];
                let slots = (0..5)
                    .map(|k| 1 + 2 * k)
                    .chain((0..6).map(|k| 0x0E + 2 * k))
                    .chain((0..2).map(|k| 0x1C + 2 * k));
                for (slot, u) in slots.zip(part) {
                    e[slot..slot + 2].copy_from_slice(&u.to_le_bytes());
                }
                e
            })
            .collect()
    }

    fn put_entries(img: &mut [u8], mut off: usize, entries: &[[u8; 32]]) {
        for e in entries {
            img[off..off + 32].copy_from_slice(e);
            off += 32;
        }
    }

    /// A 64 KiB FAT12 volume built field by field:
    /// `/FIXTURE` label, `/Long File Name.txt` (700 bytes, clusters 3-4),
    /// `/EFI/BOOT/BOOTX64.EFI` (1300 bytes, clusters 7 -> 9 -> 8), `/EFI/Empty` (0 bytes).
    pub(crate) fn fat12_image() -> Vec<u8> {
        let mut img = vec![0u8; TOTAL_SECTORS * BPS];
        let b = &mut img[..BPS];
        b[0..3].copy_from_slice(&[0xEB, 0x3C, 0x90]); // 0x00 jump
        b[3..11].copy_from_slice(b"MSWIN4.1"); // 0x03 OEM name
        b[0x0B..0x0D].copy_from_slice(&(BPS as u16).to_le_bytes()); // bytes per sector
        b[0x0D] = 1; // sectors per cluster
        b[0x0E..0x10].copy_from_slice(&1u16.to_le_bytes()); // reserved sectors
        b[0x10] = 2; // FATs
        b[0x11..0x13].copy_from_slice(&16u16.to_le_bytes()); // root entries: one sector
        b[0x13..0x15].copy_from_slice(&(TOTAL_SECTORS as u16).to_le_bytes()); // total sectors
        b[0x15] = 0xF8; // media
        b[0x16..0x18].copy_from_slice(&1u16.to_le_bytes()); // sectors per FAT
        b[0x26] = 0x29; // extended boot signature
        b[0x27..0x2B].copy_from_slice(&0x1234_ABCDu32.to_le_bytes()); // volume id
        b[0x2B..0x36].copy_from_slice(b"BOOTLABEL  "); // boot-sector label
        b[0x36..0x3E].copy_from_slice(b"FAT12   "); // type string
        b[0x1FE] = 0x55;
        b[0x1FF] = 0xAA;
        set_fat12(&mut img, 0, 0xFF8); // media copy
        set_fat12(&mut img, 1, 0xFFF);
        set_fat12(&mut img, 3, 4); // long file: 3 -> 4 -> end
        set_fat12(&mut img, 4, 0xFFF);
        set_fat12(&mut img, 5, 0xFFF); // EFI directory
        set_fat12(&mut img, 6, 0xFFF); // EFI/BOOT directory
        set_fat12(&mut img, 7, 9); // BOOTX64.EFI: 7 -> 9 -> 8 -> end
        set_fat12(&mut img, 9, 8);
        set_fat12(&mut img, 8, 0xFFF);

        let long_short = *b"LONGFI~1TXT";
        let mut root = vec![short_entry(b"FIXTURE    ", ATTR_VOLUME_ID, 0, 0)];
        root.extend(lfn_entries("Long File Name.txt", &long_short));
        root.push(short_entry(&long_short, 0x20, 3, 700));
        root.push(short_entry(b"EFI        ", ATTR_DIRECTORY, 5, 0));
        let mut deleted = short_entry(b"GONE    TXT", 0x20, 0, 0);
        deleted[0] = ENTRY_FREE;
        root.push(deleted);
        put_entries(&mut img, ROOT_SECTOR * BPS, &root);

        let efi = [
            short_entry(b".          ", ATTR_DIRECTORY, 5, 0),
            short_entry(b"..         ", ATTR_DIRECTORY, 0, 0),
            short_entry(b"BOOT       ", ATTR_DIRECTORY, 6, 0),
        ];
        let mut efi = efi.to_vec();
        efi.extend(lfn_entries("Empty", b"EMPTY      "));
        efi.push(short_entry(b"EMPTY      ", 0x20, 0, 0));
        put_entries(&mut img, cluster_off(5), &efi);
        let boot = [
            short_entry(b".          ", ATTR_DIRECTORY, 6, 0),
            short_entry(b"..         ", ATTR_DIRECTORY, 5, 0),
            short_entry(b"BOOTX64 EFI", 0x20, 7, 1300),
        ];
        put_entries(&mut img, cluster_off(6), &boot);

        let data = bootx64_content();
        for (i, c) in [7usize, 9, 8].iter().enumerate() {
            let chunk = &data[i * BPS..((i + 1) * BPS).min(data.len())];
            img[cluster_off(*c)..cluster_off(*c) + chunk.len()].copy_from_slice(chunk);
        }
        let long = long_content();
        img[cluster_off(3)..cluster_off(3) + 700].copy_from_slice(&long);
        img
    }

    #[test]
    fn geometry_of_the_fixture() {
        let img = fat12_image();
        let g = Geometry::parse(&img[..512]).unwrap();
        assert_eq!(g.fat_type, FatType::Fat12);
        assert_eq!(g.cluster_count, 124);
        assert_eq!(g.data_offset, 4 * 512);
        assert_eq!(g.root_dir_offset, 3 * 512);
        assert_eq!(g.volume_bytes, 128 * 512);
        assert_eq!(format_volume_id(g.volume_id), "1234-ABCD");
    }

    #[test]
    fn reads_files_case_insensitively() {
        let d = MemDisk::new(fat12_image());
        let fs = Fat::open(&d).unwrap();
        assert!(fs.exists("/EFI/BOOT/BOOTX64.EFI").unwrap());
        assert!(fs.exists("efi\\boot\\bootx64.efi").unwrap());
        assert!(fs.exists("/").unwrap());
        assert!(!fs.exists("/EFI/BOOT/BOOTIA32.EFI").unwrap());
        assert!(!fs.exists("/EFI/BOOT/BOOTX64.EFI/x").unwrap());
        assert_eq!(
            fs.read_file("EFI/BOOT/BOOTX64.EFI").unwrap().unwrap(),
            bootx64_content()
        );
        assert_eq!(
            fs.read_file("/long file name.TXT").unwrap().unwrap(),
            long_content()
        );
        assert_eq!(
            fs.read_file("/LONGFI~1.TXT").unwrap().unwrap(),
            long_content()
        );
        assert_eq!(
            fs.read_file("/efi/empty").unwrap().unwrap(),
            Vec::<u8>::new()
        );
        assert_eq!(fs.read_file("/nope").unwrap(), None);
        assert_eq!(
            fs.read_file("/EFI").unwrap_err().kind(),
            ErrorKind::InvalidInput
        );
        assert_eq!(fs.volume_label().unwrap().as_deref(), Some("FIXTURE"));
        assert_eq!(fs.boot_label().as_deref(), Some("BOOTLABEL"));
    }

    #[test]
    fn lists_directories() {
        let d = MemDisk::new(fat12_image());
        let fs = Fat::open(&d).unwrap();
        let root = fs.list_dir("/").unwrap();
        let names: Vec<&str> = root.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["Long File Name.txt", "EFI"]);
        assert_eq!(root[0].short_name, "LONGFI~1.TXT");
        assert_eq!(root[0].size, 700);
        assert!(root[1].is_dir);
        let efi = fs.list_dir("/EFI").unwrap();
        let names: Vec<&str> = efi.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["BOOT", "Empty"]);
        assert_eq!(
            fs.list_dir("/nope").unwrap_err().kind(),
            ErrorKind::InvalidInput
        );
        assert_eq!(
            fs.list_dir("/EFI/BOOT/BOOTX64.EFI").unwrap_err().kind(),
            ErrorKind::InvalidInput
        );
    }

    #[test]
    fn lfn_with_wrong_checksum_is_ignored() {
        let mut img = fat12_image();
        // the checksum byte of the first LFN entry of "Long File Name.txt" (root entry 1)
        img[ROOT_SECTOR * BPS + 32 + 0x0D] ^= 0xFF;
        let d = MemDisk::new(img);
        let fs = Fat::open(&d).unwrap();
        assert!(!fs.exists("/Long File Name.txt").unwrap());
        assert!(fs.exists("/LONGFI~1.TXT").unwrap());
    }

    #[test]
    fn chain_loop_is_corrupt() {
        let mut img = fat12_image();
        set_fat12(&mut img, 8, 7); // 7 -> 9 -> 8 -> 7
        let mut grown = img.clone();
        let d = MemDisk::new(img);
        let fs = Fat::open(&d).unwrap();
        // the file needs 3 clusters: the loop is not reached
        assert!(fs.read_file("/EFI/BOOT/BOOTX64.EFI").is_ok());
        // a directory chain that loops
        set_fat12(&mut grown, 6, 6);
        let d = MemDisk::new(grown);
        let fs = Fat::open(&d).unwrap();
        let err = fs.exists("/EFI/BOOT/BOOTX64.EFI").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Corrupt);
        assert!(err.message().contains("loops"), "{err}");
    }

    #[test]
    fn file_loop_within_its_size_is_corrupt() {
        let mut img = fat12_image();
        set_fat12(&mut img, 9, 7); // 7 -> 9 -> 7: the third cluster is the first again
        let d = MemDisk::new(img);
        let fs = Fat::open(&d).unwrap();
        let err = fs.read_file("/EFI/BOOT/BOOTX64.EFI").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Corrupt);
    }

    #[test]
    fn short_chains_free_and_out_of_range_clusters_are_corrupt() {
        for (cluster, value) in [(9usize, 0xFFFu16), (9, 0), (9, 0xFF7), (9, 0x500)] {
            let mut img = fat12_image();
            set_fat12(&mut img, cluster, value);
            let d = MemDisk::new(img);
            let fs = Fat::open(&d).unwrap();
            let err = fs.read_file("/EFI/BOOT/BOOTX64.EFI").unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Corrupt, "value 0x{value:x}: {err}");
        }
    }

    #[test]
    fn oversized_file_is_corrupt() {
        let mut img = fat12_image();
        let off = cluster_off(6) + 2 * 32 + 0x1C; // BOOTX64.EFI size
        img[off..off + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        let d = MemDisk::new(img);
        let fs = Fat::open(&d).unwrap();
        let err = fs.read_file("/EFI/BOOT/BOOTX64.EFI").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Corrupt);
        assert!(err.message().contains("claims"), "{err}");
    }

    #[test]
    fn rejects_bad_bpbs() {
        let cases: &[(usize, &[u8], &str)] = &[
            (0x0B, &[0, 3], "bytes per sector"), // 768
            (0x0D, &[3], "sectors per cluster"), // not a power of two
            (0x0E, &[0, 0], "reserved"),         // no reserved sectors
            (0x10, &[0], "0 FATs"),              // no FAT
            (0x15, &[0x12], "media"),            // bad media byte
            (0x13, &[4, 0], "no data area"),     // 4 sectors total
            (0x16, &[0, 0], "root entries"),     // FAT32 layout with a FAT12 root
        ];
        for (off, bytes, want) in cases {
            let mut img = fat12_image();
            img[*off..off + bytes.len()].copy_from_slice(bytes);
            let err = Fat::open(&MemDisk::new(img)).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Corrupt);
            assert!(err.message().contains(want), "{want}: {err}");
        }
        // the volume claims more than the partition holds
        let img = fat12_image();
        let err = Fat::open(&MemDisk::new(img[..32 * 1024].to_vec())).unwrap_err();
        assert!(err.message().contains("partition holds"), "{err}");
        assert!(Fat::open(&MemDisk::new(vec![0; 100])).is_err());
    }

    #[test]
    fn short_names_and_checksum() {
        assert_eq!(short_name(b"BOOTX64 EFI", 0), "BOOTX64.EFI");
        assert_eq!(
            short_name(b"BOOTX64 EFI", NT_LOWER_BASE | NT_LOWER_EXT),
            "bootx64.efi"
        );
        assert_eq!(short_name(b"README     ", 0), "README");
        assert_eq!(short_name(b"\x05BC     TXT", 0), "σBC.TXT"); // 0x05 stands for 0xE5
        assert_eq!(decode_oem(b"\x80\xFF"), "Ç\u{a0}");
        // fatgen103 §7 worked by hand: "A       TXT"
        let mut sum = 0u8;
        for &b in b"A          " {
            sum = (if sum & 1 != 0 { 0x80u8 } else { 0 })
                .wrapping_add(sum >> 1)
                .wrapping_add(b);
        }
        assert_eq!(short_name_checksum(b"A          "), sum);
        assert!(name_eq("bootx64.efi", "BOOTX64.EFI"));
        assert!(name_eq("Ünïcode", "üNÏCODE"));
    }
}
