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
mod attrs;
mod dir;
mod extents;
mod index;
mod lookup;
mod record;

use std::cmp::Ordering;
use std::collections::BTreeSet;

use serde::Serialize;
use zerocopy::FromBytes;

pub use self::extents::{Extent, FileExtents};

use self::attrs::{si_attributes, stream};
use self::index::{Entry, Key, BLOCK_HEADER_OFFSET, NAMESPACE_DOS, ROOT_HEADER_OFFSET};
use self::record::{
    le32, parse_attr_list, parse_record, value_u16, Attr, Record, Run, Value, ATTR_ATTRIBUTE_LIST,
    ATTR_COMPRESSION_MASK, ATTR_DATA, ATTR_INDEX_ALLOCATION, ATTR_INDEX_ROOT, ATTR_IS_ENCRYPTED,
    ATTR_REPARSE_POINT, ATTR_STANDARD_INFORMATION, ATTR_VOLUME_INFORMATION,
    MFT_RECORD_IS_DIRECTORY,
};
use crate::disk::Disk;
use crate::error::{Error, ErrorKind, Result};
use crate::fs::ntfs::geometry::NtfsGeometry;
use crate::fs::ntfs::raw::RawNtfsBootSector;

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
        let geo = NtfsGeometry::parse(&bs, part.len())?;
        let (cluster_bytes, clusters, rec_bytes) =
            (geo.cluster_bytes, geo.clusters, geo.record_bytes);
        // Inside the volume (checked by the parser), so inside the partition.
        let mft_off = geo.mft_lcn.saturating_mul(cluster_bytes);
        let mut vol = NtfsVolume {
            part,
            cluster_bytes,
            clusters,
            record_bytes: rec_bytes,
            mft_runs: Vec::new(),
            mft_bytes: 0,
            upcase: Vec::new(),
            serial: geo.serial,
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
}

fn too_big(what: &str, size: u64, max: u64) -> Error {
    Error::unsupported(format!(
        "NTFS: {what} is {size} bytes, more than the {max} bytes allowed"
    ))
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
