//! Read files from an NTFS volume by path: what the Windows conversion takes out of an image
//! (`\Windows\Boot\EFI\**`, `\Boot\BCD`, `\Windows\System32\config\SYSTEM`, ...), and the
//! volume facts its checks need (dirty flag, hibernation file).
//!
//! Our own reader rather than the `ntfs` crate (0.4.0, a dependency for other uses): that
//! crate panics on short inputs, overflowed an addition under fuzzing, locates index blocks
//! wrongly when clusters are larger than index blocks, and returns LZNT1-compressed and WOF
//! files as raw bytes without a word. What is read here is small (MFT records, directory
//! indexes, runlists), every structure is checked before use, and refusals name the file.
//!
//! What it reads: resident and non-resident `$DATA`, sparse runs (zeros), data past the
//! initialized size (zeros), attributes split over several records by an `$ATTRIBUTE_LIST`,
//! directory B+ trees (`$INDEX_ROOT` + `$INDEX_ALLOCATION`, index blocks smaller or larger than
//! a cluster). Names are matched case-insensitively through the volume's own `$UpCase` table,
//! as Windows does; a DOS 8.3 name finds its file too, but listings give the Win32 (or POSIX)
//! names only, each hard link once per name.
//!
//! What it refuses, naming the file: LZNT1-compressed data, EFS-encrypted files, files with a
//! reparse point (WOF/CompactOS compression has tag 0x80000017; symbolic links, junctions,
//! deduplication and cloud files are reparse points too), files larger than the caller's limit.
//! `$LogFile` is not replayed: callers refuse a dirty volume first ([`VolumeFacts::dirty`]).
//!
//! Bounds: MFT records and index blocks <= 64 KiB, an `$ATTRIBUTE_LIST` <= 1 MiB and
//! [`MAX_EXTENSION_RECORDS`] records, index trees [`MAX_INDEX_DEPTH`] deep, directory listings
//! and walks within the caller's [`Limits`]; a file is allocated only once its size passed the
//! caller's limit and the volume's size.
#![deny(
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    clippy::unwrap_used,
    clippy::as_conversions
)]

mod index;
mod record;

use std::cmp::Ordering;
use std::collections::BTreeSet;

use serde::Serialize;
use zerocopy::FromBytes;

use self::index::{Entry, Key, BLOCK_HEADER_OFFSET, NAMESPACE_DOS, ROOT_HEADER_OFFSET};
use self::record::{
    le32, parse_attr_list, parse_record, value_u16, Attr, Record, Run, Value, ATTR_ATTRIBUTE_LIST,
    ATTR_COMPRESSION_MASK, ATTR_DATA, ATTR_INDEX_ALLOCATION, ATTR_INDEX_ROOT, ATTR_IS_ENCRYPTED,
    ATTR_REPARSE_POINT, ATTR_STANDARD_INFORMATION, ATTR_VOLUME_INFORMATION,
    MFT_RECORD_IS_DIRECTORY,
};
use crate::disk::Disk;
use crate::error::{Error, ErrorKind, Result};
use crate::fs::ntfs::raw::{RawNtfsBootSector, NTFS_OEM};
use crate::fs::ntfs::{record_bytes, sectors_per_cluster, MAX_CLUSTER_BYTES};

/// Well-known MFT records (ntfs-3g `NTFS_SYSTEM_FILES`).
const FILE_MFT: u64 = 0;
const FILE_VOLUME: u64 = 3;
const FILE_ROOT: u64 = 5;
const FILE_UPCASE: u64 = 10;
/// First record of an ordinary file; below are the metafiles ($MFT .. $Extend and reserved).
pub const FIRST_USER_RECORD: u64 = 16;
/// `$UpCase` maps each of the 65536 UTF-16 code units.
const UPCASE_UNITS: usize = 65536;
/// Largest `$ATTRIBUTE_LIST` value we read (Windows keeps them far smaller).
const MAX_ATTRIBUTE_LIST_BYTES: u64 = 1024 * 1024;
/// Most extension records one file may have (each is one MFT record read).
pub const MAX_EXTENSION_RECORDS: usize = 4096;
/// Deepest directory B+ tree we descend (a tree of 4 KiB blocks 8 deep already indexes more
/// names than any volume holds).
pub const MAX_INDEX_DEPTH: usize = 32;
/// Deepest walk whatever the caller's limit (the walk recurses once per level).
pub const MAX_WALK_DEPTH: usize = 256;
/// Path components in one path.
const MAX_PATH_COMPONENTS: usize = 255;
/// `$STANDARD_INFORMATION` file attributes at 0x20 (ntfs-3g `FILE_ATTR_*`).
const SI_FILE_ATTRIBUTES: usize = 0x20;
const FILE_ATTR_REPARSE_POINT: u32 = 0x0400;
const FILE_ATTR_ENCRYPTED: u32 = 0x4000;
/// Cached in index keys for directories (ntfs-3g `FILE_ATTR_DUP_FILE_NAME_INDEX_PRESENT`).
const FILE_ATTR_DIRECTORY: u32 = 0x1000_0000;
/// `$VOLUME_INFORMATION`: version at 0x08/0x09, flags at 0x0A (ntfs-3g `VOLUME_INFORMATION`).
const VOLUME_IS_DIRTY: u16 = 0x0001;
/// Reparse tag of WOF-compressed files (CompactOS; `IO_REPARSE_TAG_WOF`).
pub const REPARSE_TAG_WOF: u32 = 0x8000_0017;
/// First bytes of a hibernation file that holds a hibernated system or a Fast-Startup image
/// ("hibr"/"HIBR" per ntfs-3g `ntfs_volume_check_hiberfile`; "wake" is also left by Windows).
const HIBERNATION_SIGNATURES: [&[u8; 4]; 4] = [b"hibr", b"HIBR", b"wake", b"WAKE"];

/// How much a listing or walk may return, and how large a file may be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Entries in one directory.
    pub max_dir_entries: usize,
    /// Directories below the walk's start (0: the start directory only); at most
    /// [`MAX_WALK_DEPTH`].
    pub max_depth: usize,
    /// Entries (files and directories) in one walk.
    pub max_walk_entries: usize,
}

impl Default for Limits {
    /// Generous for `\Windows\Boot` (a few hundred files, 3 levels) and far below what would
    /// strain memory.
    fn default() -> Self {
        Limits {
            max_dir_entries: 100_000,
            max_depth: 16,
            max_walk_entries: 20_000,
        }
    }
}

/// A name in a directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DirEntry {
    /// The Win32 or POSIX name (DOS 8.3 aliases are not listed).
    pub name: String,
    /// MFT record number; below [`FIRST_USER_RECORD`] it is a metafile (`$MFT`, `$Extend`, ...).
    pub record: u64,
    pub is_dir: bool,
    /// The name's file has a reparse point (reading it will be refused).
    pub is_reparse: bool,
}

/// One entry of a recursive walk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WalkEntry {
    /// Path relative to the walk's start, components joined by `\`.
    pub path: String,
    pub record: u64,
    pub is_dir: bool,
}

/// The volume's hibernation file (`\hiberfil.sys`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HiberFile {
    /// Its size in bytes.
    pub bytes: u64,
    /// Its first four bytes; `None` when they cannot be read plainly (compressed, encrypted,
    /// reparse point, shorter than 4 bytes).
    pub signature: Option<[u8; 4]>,
}

impl HiberFile {
    /// True when the file holds a hibernated system or a Fast-Startup image: Windows must resume
    /// or shut down fully before the volume is changed offline.
    pub fn is_hibernated(&self) -> bool {
        self.signature
            .is_some_and(|s| HIBERNATION_SIGNATURES.iter().any(|h| **h == s))
    }
}

/// What the conversion checks need to know about a Windows volume.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VolumeFacts {
    /// NTFS version (major, minor) from `$Volume`.
    pub version: (u8, u8),
    /// `$Volume`'s dirty flag: chkdsk is due, and `$LogFile` may hold unreplayed changes.
    pub dirty: bool,
    /// `\hiberfil.sys`, when there is one.
    pub hiberfil: Option<HiberFile>,
    pub cluster_bytes: u64,
    /// The volume serial number (boot sector 0x48).
    pub serial: u64,
}

/// A non-resident or resident stream: where its bytes are.
enum Stream {
    Resident(Vec<u8>),
    NonResident {
        runs: Vec<Run>,
        data_size: u64,
        initialized_size: u64,
        flags: u16,
    },
}

/// A directory's `$INDEX_ALLOCATION` stream and its index block size in bytes.
type Alloc = (Stream, u64);

/// An NTFS volume opened for reading files.
pub struct NtfsVolume<'a> {
    part: &'a dyn Disk,
    cluster_bytes: u64,
    clusters: u64,
    record_bytes: u64,
    mft_runs: Vec<Run>,
    mft_bytes: u64,
    upcase: Vec<u16>,
    serial: u64,
}

fn to_usize(v: u64) -> Result<usize> {
    usize::try_from(v).map_err(|_| Error::unsupported(format!("{v} bytes do not fit in memory")))
}

impl<'a> NtfsVolume<'a> {
    /// Open the NTFS volume at the start of `part` (a partition window): boot sector, `$MFT`'s
    /// runlist, `$UpCase`. Corrupt when any of them is broken or outside `part`.
    pub fn open(part: &'a dyn Disk) -> Result<Self> {
        let mut boot = [0u8; 512];
        part.read_at(0, &mut boot)
            .map_err(|e| e.context("NTFS boot sector"))?;
        let bs = RawNtfsBootSector::read_from_bytes(&boot)
            .map_err(|_| Error::corrupt("NTFS boot sector truncated"))?;
        if &bs.oem_id != NTFS_OEM {
            return Err(Error::invalid(
                "not an NTFS volume (no \"NTFS    \" at 0x3)",
            ));
        }
        let bps = u64::from(bs.bytes_per_sector.get());
        if !bps.is_power_of_two() || !(256..=4096).contains(&bps) {
            return Err(Error::corrupt(format!(
                "NTFS boot sector: {bps} bytes per sector"
            )));
        }
        let spc = sectors_per_cluster(bs.sectors_per_cluster).ok_or_else(|| {
            Error::corrupt(format!(
                "NTFS boot sector: sectors per cluster 0x{:02x}",
                bs.sectors_per_cluster
            ))
        })?;
        let cluster_bytes = bps
            .checked_mul(spc)
            .filter(|&c| c <= MAX_CLUSTER_BYTES)
            .ok_or_else(|| Error::corrupt("NTFS boot sector: cluster larger than 2 MiB"))?;
        let rec_bytes =
            record_bytes(bs.clusters_per_mft_record, cluster_bytes).ok_or_else(|| {
                Error::corrupt(format!(
                    "NTFS boot sector: MFT record size code 0x{:02x}",
                    bs.clusters_per_mft_record
                ))
            })?;
        let clusters = bs.number_of_sectors.get().checked_div(spc).unwrap_or(0);
        // The volume must lie inside the partition: every cluster read is then a partition read.
        let fits = clusters
            .checked_mul(cluster_bytes)
            .is_some_and(|b| b <= part.len());
        if !fits || clusters == 0 {
            return Err(Error::corrupt(format!(
                "NTFS boot sector: {clusters} clusters of {cluster_bytes} bytes do not fit the partition (0x{:x} bytes)",
                part.len()
            )));
        }
        let mft_off = bs
            .mft_lcn
            .get()
            .checked_mul(cluster_bytes)
            .filter(|&o| o.checked_add(rec_bytes).is_some_and(|e| e <= part.len()))
            .ok_or_else(|| {
                Error::corrupt(format!(
                    "NTFS boot sector: $MFT at LCN {} is outside the volume",
                    bs.mft_lcn.get()
                ))
            })?;
        let mut vol = NtfsVolume {
            part,
            cluster_bytes,
            clusters,
            record_bytes: rec_bytes,
            mft_runs: Vec::new(),
            mft_bytes: 0,
            upcase: Vec::new(),
            serial: bs.volume_serial_number.get(),
        };
        let rec0 = parse_record(part.read_vec(mft_off, rec_bytes)?, FILE_MFT, clusters)?;
        // $MFT's own runlist: first from record 0 alone, enough to reach its extension records.
        let mut attrs = rec0.attrs.clone();
        vol.set_mft(&attrs)?;
        if rec0.attrs.iter().any(|a| a.kind == ATTR_ATTRIBUTE_LIST) {
            attrs = vol.with_extensions(FILE_MFT, rec0)?;
            vol.set_mft(&attrs)?;
        }
        vol.upcase = vol.read_upcase()?;
        Ok(vol)
    }

    fn set_mft(&mut self, attrs: &[Attr]) -> Result<()> {
        match stream(attrs, ATTR_DATA, &[], "$MFT")? {
            Some(Stream::NonResident {
                runs,
                data_size,
                initialized_size,
                ..
            }) => {
                self.mft_runs = runs;
                self.mft_bytes = data_size.min(initialized_size);
                Ok(())
            }
            _ => Err(Error::corrupt("NTFS $MFT has no non-resident $DATA")),
        }
    }

    fn read_upcase(&self) -> Result<Vec<u16>> {
        let attrs = self.attrs_of(FILE_UPCASE)?;
        let s = stream(&attrs, ATTR_DATA, &[], "$UpCase")?
            .ok_or_else(|| Error::corrupt("NTFS $UpCase has no $DATA"))?;
        let bytes = self.read_stream(&s, "$UpCase", 2 * 65536)?;
        let table = record::utf16_units(&bytes);
        if table.len() != UPCASE_UNITS {
            return Err(Error::corrupt(format!(
                "NTFS $UpCase holds {} entries, expected 65536",
                table.len()
            )));
        }
        Ok(table)
    }

    /// Bytes per cluster.
    pub fn cluster_bytes(&self) -> u64 {
        self.cluster_bytes
    }

    /// The volume's size in bytes (clusters times cluster size).
    pub fn volume_bytes(&self) -> u64 {
        self.clusters.saturating_mul(self.cluster_bytes)
    }

    /// Dirty flag, version, hibernation file.
    pub fn facts(&self) -> Result<VolumeFacts> {
        let attrs = self.attrs_of(FILE_VOLUME)?;
        let info = attrs
            .iter()
            .find_map(|a| match (&a.value, a.kind) {
                (Value::Resident(v), ATTR_VOLUME_INFORMATION) => Some(v.as_slice()),
                _ => None,
            })
            .ok_or_else(|| Error::corrupt("NTFS $Volume has no resident $VOLUME_INFORMATION"))?;
        let (Some(&major), Some(&minor), Some(flags)) =
            (info.get(8), info.get(9), value_u16(info, 0x0A))
        else {
            return Err(Error::corrupt("NTFS $VOLUME_INFORMATION truncated"));
        };
        let hiberfil = match self.lookup_record(&["hiberfil.sys"], "\\hiberfil.sys")? {
            None => None,
            Some(n) => Some(self.hiberfile(n)?),
        };
        Ok(VolumeFacts {
            version: (major, minor),
            dirty: flags & VOLUME_IS_DIRTY != 0,
            hiberfil,
            cluster_bytes: self.cluster_bytes,
            serial: self.serial,
        })
    }

    fn hiberfile(&self, n: u64) -> Result<HiberFile> {
        let attrs = self.attrs_of(n)?;
        let s = stream(&attrs, ATTR_DATA, &[], "\\hiberfil.sys")?;
        let plain = !attrs.iter().any(|a| a.kind == ATTR_REPARSE_POINT)
            && si_attributes(&attrs) & FILE_ATTR_ENCRYPTED == 0;
        Ok(match s {
            None => HiberFile {
                bytes: 0,
                signature: None,
            },
            Some(Stream::Resident(v)) => HiberFile {
                bytes: u64::try_from(v.len()).unwrap_or(u64::MAX),
                signature: v
                    .get(0..4)
                    .and_then(|s| s.try_into().ok())
                    .filter(|_| plain),
            },
            Some(Stream::NonResident {
                runs,
                data_size,
                initialized_size,
                flags,
            }) => {
                let readable = plain
                    && flags & (ATTR_COMPRESSION_MASK | ATTR_IS_ENCRYPTED) == 0
                    && data_size >= 4;
                let mut sig = [0u8; 4];
                if readable {
                    self.read_runs(&runs, initialized_size, 0, &mut sig)?;
                }
                HiberFile {
                    bytes: data_size,
                    signature: readable.then_some(sig),
                }
            }
        })
    }

    /// True when `path` names a file or directory.
    pub fn exists(&self, path: &str) -> Result<bool> {
        Ok(self.lookup(path)?.is_some())
    }

    /// The MFT record of `path` (`\`- or `/`-separated, case-insensitive), `None` when a
    /// component does not exist.
    pub fn lookup(&self, path: &str) -> Result<Option<u64>> {
        let comps = components(path)?;
        self.lookup_record(&comps, path)
    }

    fn lookup_record(&self, comps: &[&str], path: &str) -> Result<Option<u64>> {
        let mut cur = FILE_ROOT;
        for c in comps {
            let want: Vec<u16> = c.encode_utf16().collect();
            match self.find_in_dir(cur, &want, path)? {
                Some(k) => {
                    // A stale entry names a record since reused for another file (ntfs-3g
                    // `ntfs_file_record_read` refuses it too).
                    let rec = self.record(k.record)?;
                    if k.sequence != 0 && k.sequence != rec.sequence {
                        return Err(Error::corrupt(format!(
                            "NTFS: {path}: the index names MFT record {} sequence {}, the record has sequence {}",
                            k.record, k.sequence, rec.sequence
                        )));
                    }
                    cur = k.record;
                }
                None => return Ok(None),
            }
        }
        Ok(Some(cur))
    }

    /// Read the unnamed `$DATA` of the file at `path`, refusing files over `max_bytes`, and
    /// compressed, encrypted or reparse-point files (Unsupported, naming the file). A missing
    /// file or a directory is InvalidInput.
    pub fn read_file(&self, path: &str, max_bytes: u64) -> Result<Vec<u8>> {
        let n = self
            .lookup(path)?
            .ok_or_else(|| Error::invalid(format!("NTFS: no file {path}")))?;
        self.read_record_file(n, path, max_bytes)
    }

    /// [`read_file`](Self::read_file) by MFT record number (from a listing or walk); `path` is
    /// only used in messages.
    pub fn read_record_file(&self, n: u64, path: &str, max_bytes: u64) -> Result<Vec<u8>> {
        let (flags, attrs) = self.record_attrs(n)?;
        if flags & MFT_RECORD_IS_DIRECTORY != 0 {
            return Err(Error::invalid(format!("NTFS: {path} is a directory")));
        }
        refuse_special(&attrs, path)?;
        let s = stream(&attrs, ATTR_DATA, &[], path)?
            .ok_or_else(|| Error::corrupt(format!("NTFS: {path} has no $DATA attribute")))?;
        if let Stream::NonResident { flags, .. } = &s {
            if flags & ATTR_COMPRESSION_MASK != 0 {
                return Err(Error::unsupported(format!(
                    "NTFS: {path} is compressed (LZNT1): decompress it in Windows (compact /u) first"
                )));
            }
            if flags & ATTR_IS_ENCRYPTED != 0 {
                return Err(Error::unsupported(format!("NTFS: {path} is EFS-encrypted")));
            }
        }
        self.read_stream(&s, path, max_bytes)
    }

    /// The names in the directory at `path`, in index (upper-case) order.
    pub fn list_dir(&self, path: &str, limits: &Limits) -> Result<Vec<DirEntry>> {
        let n = self
            .lookup(path)?
            .ok_or_else(|| Error::invalid(format!("NTFS: no directory {path}")))?;
        self.list_record(n, path, limits)
    }

    fn list_record(&self, n: u64, path: &str, limits: &Limits) -> Result<Vec<DirEntry>> {
        let mut keys = Vec::new();
        self.index_keys(n, path, limits.max_dir_entries, &mut keys)?;
        Ok(keys
            .into_iter()
            .filter(|k| {
                k.namespace != NAMESPACE_DOS && !(k.record == n && k.name == [u16::from(b'.')])
            })
            .map(|k| DirEntry {
                name: String::from_utf16_lossy(&k.name),
                record: k.record,
                is_dir: k.file_attributes & FILE_ATTR_DIRECTORY != 0,
                is_reparse: k.file_attributes & FILE_ATTR_REPARSE_POINT != 0,
            })
            .collect())
    }

    /// Every file and directory below the directory `path`, depth first, parents before
    /// children. Exceeding a limit, or meeting a directory with a reparse point (junction,
    /// symbolic link), is an error naming the path: a partial copy of boot files is worse
    /// than none.
    pub fn walk(&self, path: &str, limits: &Limits) -> Result<Vec<WalkEntry>> {
        let n = self
            .lookup(path)?
            .ok_or_else(|| Error::invalid(format!("NTFS: no directory {path}")))?;
        let mut out = Vec::new();
        let mut on_path = vec![n];
        self.walk_dir(n, path, "", 0, limits, &mut on_path, &mut out)?;
        Ok(out)
    }

    #[allow(clippy::too_many_arguments)]
    fn walk_dir(
        &self,
        n: u64,
        abs: &str,
        rel: &str,
        depth: usize,
        limits: &Limits,
        on_path: &mut Vec<u64>,
        out: &mut Vec<WalkEntry>,
    ) -> Result<()> {
        for e in self.list_record(n, abs, limits)? {
            if out.len() >= limits.max_walk_entries {
                return Err(Error::unsupported(format!(
                    "NTFS: more than {} entries below {abs}",
                    limits.max_walk_entries
                )));
            }
            let rel_path = if rel.is_empty() {
                e.name.clone()
            } else {
                format!("{rel}\\{}", e.name)
            };
            let abs_path = format!("{}\\{}", abs.trim_end_matches(['\\', '/']), e.name);
            out.push(WalkEntry {
                path: rel_path.clone(),
                record: e.record,
                is_dir: e.is_dir,
            });
            if !e.is_dir {
                continue;
            }
            if e.is_reparse {
                return Err(Error::unsupported(format!(
                    "NTFS: {abs_path} is a directory with a reparse point (junction or link)"
                )));
            }
            if on_path.contains(&e.record) {
                return Err(Error::corrupt(format!(
                    "NTFS: {abs_path} is its own ancestor"
                )));
            }
            if depth >= limits.max_depth.min(MAX_WALK_DEPTH) {
                return Err(Error::unsupported(format!(
                    "NTFS: {abs_path} is more than {} levels deep",
                    limits.max_depth
                )));
            }
            on_path.push(e.record);
            self.walk_dir(
                e.record,
                &abs_path,
                &rel_path,
                depth.saturating_add(1),
                limits,
                on_path,
                out,
            )?;
            on_path.pop();
        }
        Ok(())
    }

    // --- records and attributes -------------------------------------------------------------

    /// Read and parse MFT record `n`.
    fn record(&self, n: u64) -> Result<Record> {
        let off = n
            .checked_mul(self.record_bytes)
            .filter(|&o| {
                o.checked_add(self.record_bytes)
                    .is_some_and(|e| e <= self.mft_bytes)
            })
            .ok_or_else(|| {
                Error::corrupt(format!(
                    "NTFS: MFT record {n} is beyond $MFT (0x{:x} bytes)",
                    self.mft_bytes
                ))
            })?;
        let mut buf = vec![0u8; to_usize(self.record_bytes)?];
        self.read_runs(&self.mft_runs, self.mft_bytes, off, &mut buf)?;
        parse_record(buf, n, self.clusters)
    }

    /// Record flags and every attribute of file `n` (its extension records included).
    fn record_attrs(&self, n: u64) -> Result<(u16, Vec<Attr>)> {
        let rec = self.record(n)?;
        if rec.base != 0 {
            return Err(Error::corrupt(format!(
                "NTFS: MFT record {n} is an extension record, not a file"
            )));
        }
        let flags = rec.flags;
        let attrs = if rec.attrs.iter().any(|a| a.kind == ATTR_ATTRIBUTE_LIST) {
            self.with_extensions(n, rec)?
        } else {
            rec.attrs
        };
        Ok((flags, attrs))
    }

    fn attrs_of(&self, n: u64) -> Result<Vec<Attr>> {
        Ok(self.record_attrs(n)?.1)
    }

    /// The base record's attributes plus those of the extension records its `$ATTRIBUTE_LIST`
    /// names (each record read once).
    fn with_extensions(&self, n: u64, base: Record) -> Result<Vec<Attr>> {
        let list = stream(&base.attrs, ATTR_ATTRIBUTE_LIST, &[], "$ATTRIBUTE_LIST")?
            .ok_or_else(|| Error::corrupt("NTFS: no $ATTRIBUTE_LIST"))?;
        let list = self
            .read_stream(&list, "$ATTRIBUTE_LIST", MAX_ATTRIBUTE_LIST_BYTES)
            .map_err(|e| e.context(format!("NTFS MFT record {n}")))?;
        let records: BTreeSet<u64> = parse_attr_list(&list)
            .map_err(|e| e.context(format!("NTFS MFT record {n}")))?
            .into_iter()
            .map(|e| e.record)
            .filter(|&r| r != n)
            .collect();
        if records.len() > MAX_EXTENSION_RECORDS {
            return Err(Error::unsupported(format!(
                "NTFS MFT record {n}: {} extension records (at most {MAX_EXTENSION_RECORDS})",
                records.len()
            )));
        }
        let mut attrs = base.attrs;
        for r in records {
            let ext = self.record(r)?;
            if ext.base != n {
                return Err(Error::corrupt(format!(
                    "NTFS MFT record {n}: extension record {r} belongs to record {}",
                    ext.base
                )));
            }
            attrs.extend(
                ext.attrs
                    .into_iter()
                    .filter(|a| a.kind != ATTR_ATTRIBUTE_LIST),
            );
        }
        Ok(attrs)
    }

    // --- data --------------------------------------------------------------------------------

    /// A whole stream, refused over `max_bytes` or over the volume's size.
    fn read_stream(&self, s: &Stream, what: &str, max_bytes: u64) -> Result<Vec<u8>> {
        match s {
            Stream::Resident(v) => {
                if u64::try_from(v.len()).unwrap_or(u64::MAX) > max_bytes {
                    return Err(too_big(
                        what,
                        u64::try_from(v.len()).unwrap_or(u64::MAX),
                        max_bytes,
                    ));
                }
                Ok(v.clone())
            }
            Stream::NonResident {
                runs,
                data_size,
                initialized_size,
                ..
            } => {
                if *data_size > max_bytes {
                    return Err(too_big(what, *data_size, max_bytes));
                }
                if *data_size > self.volume_bytes() {
                    return Err(Error::unsupported(format!(
                        "NTFS: {what} is {data_size} bytes, more than the volume holds (a sparse file)"
                    )));
                }
                let mut buf = vec![0u8; to_usize(*data_size)?];
                self.read_runs(runs, *initialized_size, 0, &mut buf)
                    .map_err(|e| e.context(format!("NTFS: {what}")))?;
                Ok(buf)
            }
        }
    }

    /// Fill `buf` with the stream bytes from `offset`: sparse runs and bytes at or past
    /// `initialized` read as zeros; a range the runs do not cover is Corrupt.
    fn read_runs(&self, runs: &[Run], initialized: u64, offset: u64, buf: &mut [u8]) -> Result<()> {
        let len = u64::try_from(buf.len()).unwrap_or(u64::MAX);
        let end = offset
            .checked_add(len)
            .ok_or_else(|| Error::corrupt("stream range overflow"))?;
        buf.fill(0);
        let want_end = end.min(initialized);
        let mut covered = offset;
        for r in runs {
            if covered >= want_end {
                break;
            }
            let (Some(start), Some(run_bytes)) = (
                r.vcn.checked_mul(self.cluster_bytes),
                r.clusters.checked_mul(self.cluster_bytes),
            ) else {
                return Err(Error::corrupt("run offset overflow"));
            };
            let run_end = start
                .checked_add(run_bytes)
                .ok_or_else(|| Error::corrupt("run offset overflow"))?;
            if run_end <= covered {
                continue;
            }
            if start > covered {
                break; // a hole in the runlist
            }
            let piece_end = run_end.min(want_end);
            // covered >= offset, start <= covered < piece_end: all differences are in range.
            let (Some(dst_from), Some(dst_to), Some(in_run)) = (
                covered
                    .checked_sub(offset)
                    .and_then(|v| usize::try_from(v).ok()),
                piece_end
                    .checked_sub(offset)
                    .and_then(|v| usize::try_from(v).ok()),
                covered.checked_sub(start),
            ) else {
                return Err(Error::corrupt("run offset overflow"));
            };
            let dst = buf
                .get_mut(dst_from..dst_to)
                .ok_or_else(|| Error::corrupt("run offset overflow"))?;
            if let Some(lcn) = r.lcn {
                let at = lcn
                    .checked_mul(self.cluster_bytes)
                    .and_then(|b| b.checked_add(in_run))
                    .ok_or_else(|| Error::corrupt("LCN overflow"))?;
                self.part.read_at(at, dst)?;
            }
            covered = piece_end;
        }
        if covered < want_end {
            return Err(Error::corrupt(format!(
                "runlist ends at byte 0x{covered:x}, the data goes to 0x{want_end:x}"
            )));
        }
        Ok(())
    }

    // --- directory indexes -------------------------------------------------------------------

    /// Compare two names as NTFS's `COLLATION_FILE_NAME` does: code units through `$UpCase`,
    /// then length.
    fn collate(&self, a: &[u16], b: &[u16]) -> Ordering {
        let up = |c: u16| self.upcase.get(usize::from(c)).copied().unwrap_or(c);
        a.iter().map(|&c| up(c)).cmp(b.iter().map(|&c| up(c)))
    }

    /// The `$I30` index of directory `n`: its root entries, and the allocation stream with the
    /// index block size (`None` when the index fits in the root).
    fn dir_index(&self, n: u64, path: &str) -> Result<(Vec<Entry>, Option<Alloc>)> {
        let (flags, attrs) = self.record_attrs(n)?;
        let i30: Vec<u16> = "$I30".encode_utf16().collect();
        if flags & MFT_RECORD_IS_DIRECTORY == 0 {
            return Err(Error::invalid(format!("NTFS: {path} is not a directory")));
        }
        let root = match stream(&attrs, ATTR_INDEX_ROOT, &i30, path)? {
            Some(Stream::Resident(v)) => v,
            _ => {
                return Err(Error::corrupt(format!(
                    "NTFS: directory {path} has no resident $INDEX_ROOT"
                )))
            }
        };
        let block_bytes = u64::from(le32(&root, 0x08).unwrap_or(0));
        let entries = index::node_entries(&root, ROOT_HEADER_OFFSET)
            .map_err(|e| e.context(format!("NTFS: directory {path}")))?;
        let alloc = stream(&attrs, ATTR_INDEX_ALLOCATION, &i30, path)?;
        let alloc = match alloc {
            None => None,
            Some(s) => {
                if !block_bytes.is_power_of_two() || !(512..=65536).contains(&block_bytes) {
                    return Err(Error::corrupt(format!(
                        "NTFS: directory {path}: index block size {block_bytes}"
                    )));
                }
                Some((s, block_bytes))
            }
        };
        Ok((entries, alloc))
    }

    /// Read the index block at `vcn` of an allocation stream.
    fn index_block(
        &self,
        alloc: &Stream,
        block_bytes: u64,
        vcn: u64,
        path: &str,
    ) -> Result<Vec<Entry>> {
        let Stream::NonResident {
            runs,
            data_size,
            initialized_size,
            flags,
        } = alloc
        else {
            return Err(Error::corrupt(format!(
                "NTFS: directory {path}: resident $INDEX_ALLOCATION"
            )));
        };
        if flags & (ATTR_COMPRESSION_MASK | ATTR_IS_ENCRYPTED) != 0 {
            return Err(Error::unsupported(format!(
                "NTFS: directory {path}: compressed or encrypted index"
            )));
        }
        // Index VCNs count clusters, or 512-byte units when a block is smaller than a cluster
        // (ntfs-3g `index_vcn_size`).
        let unit = if block_bytes >= self.cluster_bytes {
            self.cluster_bytes
        } else {
            512
        };
        let off = vcn
            .checked_mul(unit)
            .filter(|&o| o.checked_add(block_bytes).is_some_and(|e| e <= *data_size))
            .ok_or_else(|| {
                Error::corrupt(format!(
                    "NTFS: directory {path}: index VCN {vcn} beyond its allocation"
                ))
            })?;
        let mut buf = vec![0u8; to_usize(block_bytes)?];
        self.read_runs(runs, *initialized_size, off, &mut buf)?;
        index::fix_block(&mut buf, vcn)
            .map_err(|e| e.context(format!("NTFS: directory {path}")))?;
        index::node_entries(&buf, BLOCK_HEADER_OFFSET)
            .map_err(|e| e.context(format!("NTFS: directory {path}, index VCN {vcn}")))
    }

    /// B+ tree search of directory `dir` for `name` (case-insensitive).
    fn find_in_dir(&self, dir: u64, name: &[u16], path: &str) -> Result<Option<Key>> {
        let (mut entries, alloc) = self.dir_index(dir, path)?;
        for _ in 0..MAX_INDEX_DEPTH {
            let mut next = None;
            for e in entries {
                match &e.key {
                    Some(k) => match self.collate(name, &k.name) {
                        Ordering::Equal => return Ok(Some(k.clone())),
                        Ordering::Less => {
                            next = e.child;
                            break;
                        }
                        Ordering::Greater => {}
                    },
                    None => {
                        next = e.child;
                        break;
                    }
                }
            }
            let Some(vcn) = next else {
                return Ok(None);
            };
            let Some((s, bb)) = &alloc else {
                return Err(Error::corrupt(format!("NTFS: directory {path}: index entry points to a block but there is no $INDEX_ALLOCATION")));
            };
            entries = self.index_block(s, *bb, vcn, path)?;
        }
        Err(Error::corrupt(format!(
            "NTFS: directory {path}: index more than {MAX_INDEX_DEPTH} levels deep"
        )))
    }

    /// Every key of directory `n`, in order (each child node before the entry that follows it).
    fn index_keys(&self, n: u64, path: &str, max: usize, out: &mut Vec<Key>) -> Result<()> {
        let (root, alloc) = self.dir_index(n, path)?;
        let mut seen = BTreeSet::new();
        self.node_keys(root, alloc.as_ref(), 0, &mut seen, path, max, out)
    }

    #[allow(clippy::too_many_arguments)]
    fn node_keys(
        &self,
        entries: Vec<Entry>,
        alloc: Option<&Alloc>,
        depth: usize,
        seen: &mut BTreeSet<u64>,
        path: &str,
        max: usize,
        out: &mut Vec<Key>,
    ) -> Result<()> {
        for e in entries {
            if let Some(vcn) = e.child {
                let Some((s, bb)) = alloc else {
                    return Err(Error::corrupt(format!("NTFS: directory {path}: index entry points to a block but there is no $INDEX_ALLOCATION")));
                };
                if depth >= MAX_INDEX_DEPTH {
                    return Err(Error::corrupt(format!(
                        "NTFS: directory {path}: index more than {MAX_INDEX_DEPTH} levels deep"
                    )));
                }
                if !seen.insert(vcn) {
                    return Err(Error::corrupt(format!(
                        "NTFS: directory {path}: index block VCN {vcn} is reached twice"
                    )));
                }
                let child = self.index_block(s, *bb, vcn, path)?;
                self.node_keys(child, alloc, depth.saturating_add(1), seen, path, max, out)?;
            }
            if let Some(k) = e.key {
                if out.len() >= max {
                    return Err(Error::unsupported(format!(
                        "NTFS: directory {path} has more than {max} entries"
                    )));
                }
                out.push(k);
            }
        }
        Ok(())
    }
}

fn too_big(what: &str, size: u64, max: u64) -> Error {
    Error::unsupported(format!(
        "NTFS: {what} is {size} bytes, more than the {max} bytes allowed"
    ))
}

/// `$STANDARD_INFORMATION`'s file attributes (0 when absent).
fn si_attributes(attrs: &[Attr]) -> u32 {
    attrs
        .iter()
        .find_map(|a| match (&a.value, a.kind) {
            (Value::Resident(v), ATTR_STANDARD_INFORMATION) => le32(v, SI_FILE_ATTRIBUTES),
            _ => None,
        })
        .unwrap_or(0)
}

/// Refuse encrypted files and files with a reparse point, naming the file.
fn refuse_special(attrs: &[Attr], path: &str) -> Result<()> {
    if let Some(a) = attrs.iter().find(|a| a.kind == ATTR_REPARSE_POINT) {
        let tag = match &a.value {
            Value::Resident(v) => le32(v, 0),
            Value::NonResident { .. } => None,
        };
        return Err(match tag {
            Some(REPARSE_TAG_WOF) => Error::unsupported(format!(
                "NTFS: {path} is WOF-compressed (CompactOS, reparse tag 0x80000017): run `compact /u` on it in Windows first"
            )),
            Some(t) => Error::unsupported(format!("NTFS: {path} is a reparse point (tag 0x{t:08x}), not a plain file")),
            None => Error::unsupported(format!("NTFS: {path} is a reparse point, not a plain file")),
        });
    }
    let si = si_attributes(attrs);
    if si & FILE_ATTR_ENCRYPTED != 0 {
        return Err(Error::unsupported(format!("NTFS: {path} is EFS-encrypted")));
    }
    if si & FILE_ATTR_REPARSE_POINT != 0 {
        return Err(Error::unsupported(format!(
            "NTFS: {path} is marked as a reparse point"
        )));
    }
    Ok(())
}

/// The stream `(kind, name)` of a file's attributes: one resident value, or the extents of a
/// non-resident one joined in VCN order (they must follow each other without a gap).
fn stream(attrs: &[Attr], kind: u32, name: &[u16], what: &str) -> Result<Option<Stream>> {
    let mut parts: Vec<&Attr> = attrs
        .iter()
        .filter(|a| a.kind == kind && a.name == name)
        .collect();
    let Some(first) = parts.first() else {
        return Ok(None);
    };
    if let Value::Resident(v) = &first.value {
        if parts.len() != 1 {
            return Err(Error::corrupt(format!(
                "NTFS: {what}: a resident attribute with several extents"
            )));
        }
        return Ok(Some(Stream::Resident(v.clone())));
    }
    let vcn_of = |a: &Attr| match &a.value {
        Value::NonResident { lowest_vcn, .. } => Some(*lowest_vcn),
        Value::Resident(_) => None,
    };
    if parts.iter().any(|a| vcn_of(a).is_none()) {
        return Err(Error::corrupt(format!(
            "NTFS: {what}: resident and non-resident extents mixed"
        )));
    }
    parts.sort_by_key(|a| vcn_of(a));
    let mut runs = Vec::new();
    let mut next_vcn = 0u64;
    let mut head = None;
    for a in &parts {
        let Value::NonResident {
            lowest_vcn,
            highest_vcn,
            runs: r,
            data_size,
            initialized_size,
        } = &a.value
        else {
            continue;
        };
        if *lowest_vcn != next_vcn {
            return Err(Error::corrupt(format!(
                "NTFS: {what}: attribute extent starts at VCN {lowest_vcn}, expected {next_vcn}"
            )));
        }
        if head.is_none() {
            head = Some((*data_size, *initialized_size, a.flags));
        }
        runs.extend_from_slice(r);
        next_vcn = runs
            .last()
            .map_or(Some(next_vcn), |l| l.vcn.checked_add(l.clusters))
            .ok_or_else(|| Error::corrupt("VCN overflow"))?;
        // An extent maps exactly lowest..=highest (an empty one: highest = lowest - 1).
        if next_vcn != highest_vcn.saturating_add(1)
            && !(r.is_empty() && *highest_vcn < *lowest_vcn)
        {
            return Err(Error::corrupt(format!(
                "NTFS: {what}: extent maps VCNs to {next_vcn}, its header says {highest_vcn}"
            )));
        }
    }
    let Some((data_size, initialized_size, flags)) = head else {
        return Ok(None);
    };
    if initialized_size > data_size {
        return Err(Error::corrupt(format!(
            "NTFS: {what}: initialized size {initialized_size} exceeds data size {data_size}"
        )));
    }
    Ok(Some(Stream::NonResident {
        runs,
        data_size,
        initialized_size,
        flags,
    }))
}

/// Split a path at `\` and `/`; empty components (leading, doubled, trailing separators) are
/// dropped, `.` and `..` refused.
fn components(path: &str) -> Result<Vec<&str>> {
    let comps: Vec<&str> = path.split(['\\', '/']).filter(|c| !c.is_empty()).collect();
    if comps.len() > MAX_PATH_COMPONENTS {
        return Err(Error::invalid(format!(
            "NTFS path has more than {MAX_PATH_COMPONENTS} components"
        )));
    }
    if comps.iter().any(|c| *c == "." || *c == "..") {
        return Err(Error::invalid(format!(
            "NTFS path {path}: . and .. are not allowed"
        )));
    }
    Ok(comps)
}

/// True when an error is a refusal to read a file (compressed, encrypted, reparse point,
/// too large) rather than damage.
pub fn is_refusal(e: &Error) -> bool {
    e.kind() == ErrorKind::Unsupported
}

#[cfg(test)]
#[allow(
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::arithmetic_side_effects,
    clippy::as_conversions
)]
mod tests {
    use super::*;
    use crate::disk::MemDisk;
    use crate::fs::ntfs::tests::boot_sector;

    fn disk_with(boot: [u8; 512], len: usize) -> MemDisk {
        let mut d = vec![0u8; len];
        d[..512].copy_from_slice(&boot);
        MemDisk::new(d)
    }

    #[test]
    fn open_refuses_without_panicking() {
        // too short to hold a boot sector
        for n in [0, 1, 100, 511] {
            assert!(NtfsVolume::open(&MemDisk::new(vec![0; n])).is_err());
        }
        // not NTFS
        let e = NtfsVolume::open(&MemDisk::new(vec![0; 4096]))
            .err()
            .unwrap();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        // a volume larger than its partition (1 MiB volume in 64 KiB)
        let e = NtfsVolume::open(&disk_with(boot_sector(), 65536))
            .err()
            .unwrap();
        assert_eq!(e.kind(), ErrorKind::Corrupt, "{e}");
        // MFT past the end
        let mut b = boot_sector();
        b[0x30..0x38].copy_from_slice(&u64::MAX.to_le_bytes());
        assert_eq!(
            NtfsVolume::open(&disk_with(b, 1 << 20))
                .err()
                .unwrap()
                .kind(),
            ErrorKind::Corrupt
        );
        // bad geometry codes
        for (off, v) in [(0x0D, 3u8), (0x40, 0x00), (0x40, 0xE0), (0x0B, 0x03)] {
            let mut b = boot_sector();
            b[off] = v;
            assert!(
                NtfsVolume::open(&disk_with(b, 1 << 20)).is_err(),
                "0x{off:x} = 0x{v:x}"
            );
        }
        // a plausible boot sector over zeros: the MFT record has no FILE signature
        let e = NtfsVolume::open(&disk_with(boot_sector(), 1 << 20))
            .err()
            .unwrap();
        assert_eq!(e.kind(), ErrorKind::Corrupt, "{e}");
        assert!(e.message().contains("MFT record 0"), "{e}");
    }

    #[test]
    fn paths_split_and_refuse_dots() {
        assert_eq!(
            components("\\Windows//Boot\\").unwrap(),
            vec!["Windows", "Boot"]
        );
        assert!(components("").unwrap().is_empty());
        assert!(components("\\a\\..\\b").is_err());
        assert!(components(&"a\\".repeat(300)).is_err());
    }

    #[test]
    fn hibernation_signatures() {
        let h = |s: &[u8; 4]| {
            HiberFile {
                bytes: 4096,
                signature: Some(*s),
            }
            .is_hibernated()
        };
        assert!(h(b"HIBR") && h(b"hibr") && h(b"wake"));
        assert!(!h(&[0; 4]) && !h(b"RSTR"));
        assert!(!HiberFile {
            bytes: 0,
            signature: None
        }
        .is_hibernated());
    }
}
