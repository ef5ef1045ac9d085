//! Input images as one read-only virtual disk: fixed, dynamic and differencing VHD, VHDX, qcow2
//! and raw (only when the caller says so), each format in its own module with its raw layouts
//! declared once.
//!
//! An [`Image`] is a [`Disk`] (positional reads of the virtual disk, writes refused) plus a block
//! map: [`Image::extents`] walks the virtual disk in order and says which ranges hold data and
//! which read as zero (unallocated or zero blocks), in bounded memory, so that a writer can
//! stream the disk and keep the holes ([`write::write_fixed_vhd`]).
//!
//! Every format reader works on a `dyn Disk` (a file read with `pread`, or memory for fuzzing):
//! checked arithmetic, bounded loops and tables, allocations bounded by what the file can hold,
//! and at most [`MAX_CHAIN_DEPTH`] parents or backing files.
mod crc32c;
pub mod detect;
mod file;
pub mod qcow2;
pub mod vhd;
pub mod vhdx;
pub mod write;

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;

use crate::disk::{check_range, Disk, MemDisk};
use crate::error::{Error, Result};
use crate::gpt::guid::Guid;

pub use detect::{damaged_vhd_footer, detect, Detected};
pub use file::FileDisk;

/// Most images in a chain (a differencing disk and its parents, a qcow2 and its backing
/// files). Real chains are a handful deep; the bound stops a file that names itself.
pub const MAX_CHAIN_DEPTH: usize = 16;

/// The formats an [`Image`] can be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Format {
    Raw,
    VhdFixed,
    VhdDynamic,
    VhdDifferencing,
    Vhdx,
    Qcow2,
}

impl Format {
    /// The name `info --json` uses ("vhd-fixed", "qcow2", ...).
    pub fn name(self) -> &'static str {
        match self {
            Format::Raw => "raw",
            Format::VhdFixed => "vhd-fixed",
            Format::VhdDynamic => "vhd-dynamic",
            Format::VhdDifferencing => "vhd-differencing",
            Format::Vhdx => "vhdx",
            Format::Qcow2 => "qcow2",
        }
    }
}

/// What a range of the virtual disk holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ExtentKind {
    /// Bytes stored in the image (or a parent): read them (they may still be zero).
    Data,
    /// Unallocated or zero blocks: they read as zero and need not be read or written.
    Zero,
}

/// A range of the virtual disk: `offset .. offset + len`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Extent {
    pub offset: u64,
    pub len: u64,
    pub kind: ExtentKind,
}

/// How to open an image.
#[derive(Debug, Clone, Default)]
pub struct OpenOptions {
    /// Read the file as a raw disk (the caller said so: a raw file cannot be told from a
    /// damaged VHD safely, so it is never guessed).
    pub raw: bool,
    /// Where to look for parents of differencing disks (and qcow2 backing files) besides the
    /// child's own directory.
    pub parent_dir: Option<PathBuf>,
    /// Parents of an image read from memory ([`Image::from_bytes`]), nearest first: a
    /// differencing disk (or a qcow2 with a backing file) read from memory takes the first as
    /// its parent, with the same identity checks as a parent found on disk; that parent takes
    /// the next one, and so on (fuzzing, tests). Not used for images read from files.
    pub memory_parents: Vec<MemoryImage>,
}

/// An image file held in memory (see [`OpenOptions::memory_parents`]).
#[derive(Clone)]
pub struct MemoryImage(pub Arc<[u8]>);

impl std::fmt::Debug for MemoryImage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MemoryImage({} bytes)", self.0.len())
    }
}

/// Facts about one image of a chain, for reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImageInfo {
    pub format: Format,
    /// The file (`None` when read from memory).
    pub path: Option<PathBuf>,
    pub virtual_bytes: u64,
    /// Bytes per logical sector the format declares (VHDX metadata: 512 or 4096); `None` when
    /// the format does not say (VHD is 512 by definition and says 512).
    pub logical_sector_bytes: Option<u32>,
    /// Allocation unit of the format (VHD/VHDX block, qcow2 cluster); 0 for flat formats.
    pub block_bytes: u64,
    /// The disk's own identity: VHD footer unique id, VHDX virtual disk id (on-disk bytes).
    #[serde(skip)]
    pub unique_id: Option<[u8; 16]>,
    /// VHD footer timestamp (seconds since 2000-01-01T00:00:00Z), checked by differencing
    /// children.
    pub timestamp: Option<u32>,
    /// VHDX: the DataWriteGuid of the header in use, which a differencing child's
    /// `parent_linkage` must name ([MS-VHDX] 2.2.2, 2.6.2.6.3).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_write_guid: Option<Guid>,
    /// The parent or backing file named by the image, as stored.
    pub parent_name: Option<String>,
}

/// Where the bytes of one run of the virtual disk come from (internal to the readers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Source {
    /// Reads as zero.
    Zero,
    /// Stored flat in the file at this offset.
    Host(u64),
    /// Read from the parent (or backing file) at the same virtual offset; zero past its end.
    Parent,
    /// A qcow2 compressed cluster: the stream at `host` of `len` bytes decompresses to the
    /// cluster starting at virtual `cluster_offset`.
    Compressed {
        host: u64,
        len: u64,
        cluster_offset: u64,
    },
}

/// A run of `len` bytes (> 0) of the virtual disk at the offset asked for, and its source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Piece {
    pub len: u64,
    pub source: Source,
}

/// What each format reader provides.
pub(crate) trait Backend {
    /// The virtual disk size.
    fn virtual_bytes(&self) -> u64;
    /// The run starting at `offset` (< virtual size): never empty, never past the end.
    fn piece(&self, file: &dyn Disk, offset: u64) -> Result<Piece>;
    /// Decompress the cluster of a [`Source::Compressed`] (qcow2 only).
    fn decompress(&self, _file: &dyn Disk, _host: u64, _len: u64, _out: &mut [u8]) -> Result<()> {
        Err(Error::corrupt("compressed data in a format that has none"))
    }
    /// Bytes of a decompressed cluster (qcow2 only).
    fn cluster_bytes(&self) -> u64 {
        0
    }
}

/// A read-only virtual disk: one image and its parents.
pub struct Image {
    info: ImageInfo,
    file: Box<dyn Disk>,
    backend: Box<dyn Backend>,
    parent: Option<Box<Image>>,
    /// The last decompressed cluster (virtual offset, bytes): sequential reads decompress each
    /// cluster once.
    cluster_cache: RefCell<Option<(u64, Vec<u8>)>>,
}

impl std::fmt::Debug for Image {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Image")
            .field("info", &self.info)
            .field("parent", &self.parent)
            .finish()
    }
}

fn read_only() -> Error {
    Error::invalid("an input image is read-only: vhdtool never writes its input")
}

impl Image {
    /// Open the image at `path`: detect its format by magic and open its parents. Unknown
    /// content is refused unless `opts.raw` says to read it as a raw disk.
    pub fn open(path: &Path, opts: &OpenOptions) -> Result<Image> {
        open_path(path, opts, 0)
    }

    /// Open an image held in memory (fuzzing, tests). Parents and backing files cannot be
    /// opened from memory: an image that needs one is refused.
    pub fn from_bytes(data: Vec<u8>, opts: &OpenOptions) -> Result<Image> {
        open_disk(Box::new(MemDisk::read_only(data)), None, opts, 0)
    }

    /// Open an already-open disk as an image (`path` names it in messages and locates parents).
    pub fn from_disk(
        disk: Box<dyn Disk>,
        path: Option<&Path>,
        opts: &OpenOptions,
    ) -> Result<Image> {
        open_disk(disk, path, opts, 0)
    }

    pub fn format(&self) -> Format {
        self.info.format
    }

    pub fn info(&self) -> &ImageInfo {
        &self.info
    }

    /// The parent (differencing disk) or backing file, if any.
    pub fn parent(&self) -> Option<&Image> {
        self.parent.as_deref()
    }

    /// Every image of the chain, this one first.
    pub fn chain(&self) -> Vec<&ImageInfo> {
        let mut out = vec![&self.info];
        let mut at = self.parent.as_deref();
        while let Some(p) = at {
            out.push(&p.info);
            at = p.parent.as_deref();
        }
        out
    }

    /// Sector sizes to look for partition tables with, in order. A VHDX says its logical
    /// sector size, and only that is tried; a VHD's footer says nothing about the guest's
    /// sectors (its 512 is the format's unit), and a disk imaged from a 4Kn drive keeps a GPT
    /// at byte 4096: 512, then 4096, as for raw and qcow2.
    pub fn table_sector_bytes(&self) -> &'static [u32] {
        match (self.info.format, self.info.logical_sector_bytes) {
            (Format::Vhdx, Some(4096)) => &[4096],
            (Format::Vhdx, _) => &[512],
            _ => &[512, 4096],
        }
    }

    /// The disk's unique id (VHD footer, VHDX virtual disk id), on-disk bytes.
    pub fn unique_id(&self) -> Option<[u8; 16]> {
        self.info.unique_id
    }

    /// The virtual disk's ranges in order: data or zero, adjacent runs of one kind merged, each
    /// at most `max_len` bytes (bounded memory whatever the size).
    pub fn extents(&self) -> Extents<'_> {
        Extents {
            image: self,
            pos: 0,
            max_len: EXTENT_MAX_BYTES,
            failed: false,
        }
    }

    /// The range starting at `offset` (< virtual size), from this image's map and its parents'.
    pub fn extent_at(&self, offset: u64) -> Result<Extent> {
        self.extent_at_depth(offset, 0)
    }

    fn extent_at_depth(&self, offset: u64, depth: usize) -> Result<Extent> {
        let size = self.info.virtual_bytes;
        if offset >= size {
            return Err(Error::invalid(format!(
                "offset 0x{offset:x} is past the end of the virtual disk (0x{size:x} bytes)"
            )));
        }
        let p = self.backend.piece(self.file.as_ref(), offset)?;
        let len = p.len.min(size.saturating_sub(offset));
        let kind = match p.source {
            Source::Zero => ExtentKind::Zero,
            Source::Host(_) | Source::Compressed { .. } => ExtentKind::Data,
            Source::Parent => {
                return match self.parent.as_deref() {
                    Some(parent) if offset < parent.len() && depth < MAX_CHAIN_DEPTH => {
                        let e = parent.extent_at_depth(offset, depth.saturating_add(1))?;
                        Ok(Extent {
                            offset,
                            len: e.len.min(len),
                            kind: e.kind,
                        })
                    }
                    _ => Ok(Extent {
                        offset,
                        len,
                        kind: ExtentKind::Zero,
                    }),
                };
            }
        };
        Ok(Extent { offset, len, kind })
    }

    fn read_piece(&self, offset: u64, source: Source, buf: &mut [u8]) -> Result<()> {
        match source {
            Source::Zero => {
                buf.fill(0);
                Ok(())
            }
            Source::Host(at) => self.file.read_at(at, buf),
            Source::Parent => match self.parent.as_deref() {
                Some(parent) => {
                    // the parent may be shorter than the child: zeros past its end
                    let have = parent.len().saturating_sub(offset);
                    let n = usize::try_from(have).unwrap_or(usize::MAX).min(buf.len());
                    let (inside, past) = buf.split_at_mut(n);
                    if !inside.is_empty() {
                        parent.read_at(offset, inside)?;
                    }
                    past.fill(0);
                    Ok(())
                }
                None => {
                    buf.fill(0);
                    Ok(())
                }
            },
            Source::Compressed {
                host,
                len,
                cluster_offset,
            } => {
                let mut cache = self.cluster_cache.borrow_mut();
                let hit = matches!(&*cache, Some((at, _)) if *at == cluster_offset);
                if !hit {
                    let n = usize::try_from(self.backend.cluster_bytes())
                        .map_err(|_| Error::unsupported("cluster does not fit in memory"))?;
                    let mut out = match cache.take() {
                        Some((_, mut v)) => {
                            v.resize(n, 0);
                            v
                        }
                        None => vec![0u8; n],
                    };
                    self.backend
                        .decompress(self.file.as_ref(), host, len, &mut out)?;
                    *cache = Some((cluster_offset, out));
                }
                let Some((_, data)) = &*cache else {
                    return Err(Error::corrupt("compressed cluster cache is empty"));
                };
                let skip = offset
                    .checked_sub(cluster_offset)
                    .and_then(|s| usize::try_from(s).ok())
                    .ok_or_else(|| Error::corrupt("compressed cluster offset"))?;
                let src = skip
                    .checked_add(buf.len())
                    .and_then(|end| data.get(skip..end))
                    .ok_or_else(|| Error::corrupt("read past a compressed cluster"))?;
                buf.copy_from_slice(src);
                Ok(())
            }
        }
    }
}

/// Most runs merged into one extent by [`Extents`].
const MAX_MERGED: usize = 4096;

/// Longest extent [`Extents`] yields (a writer reads data extents in smaller chunks anyway).
const EXTENT_MAX_BYTES: u64 = 1 << 30;

impl Disk for Image {
    fn len(&self) -> u64 {
        self.info.virtual_bytes
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        let total = u64::try_from(buf.len()).map_err(|_| Error::invalid("read too large"))?;
        check_range(self.info.virtual_bytes, offset, total)?;
        let mut done = 0usize;
        // every piece is at least one byte long: at most buf.len() iterations
        while done < buf.len() {
            let at = offset.saturating_add(u64::try_from(done).unwrap_or(u64::MAX));
            let piece = self.backend.piece(self.file.as_ref(), at)?;
            if piece.len == 0 {
                return Err(Error::corrupt(format!(
                    "{} reader returned an empty run at 0x{at:x}",
                    self.info.format.name()
                )));
            }
            let left = buf.len().saturating_sub(done);
            let n = usize::try_from(piece.len).unwrap_or(usize::MAX).min(left);
            let end = done.saturating_add(n);
            let part = buf
                .get_mut(done..end)
                .ok_or_else(|| Error::corrupt("read split"))?;
            self.read_piece(at, piece.source, part)?;
            done = end;
        }
        Ok(())
    }

    fn write_at(&mut self, _offset: u64, _data: &[u8]) -> Result<()> {
        Err(read_only())
    }
}

/// The iterator of [`Image::extents`].
pub struct Extents<'a> {
    image: &'a Image,
    pos: u64,
    max_len: u64,
    failed: bool,
}

impl Iterator for Extents<'_> {
    type Item = Result<Extent>;

    fn next(&mut self) -> Option<Result<Extent>> {
        let size = self.image.len();
        if self.failed || self.pos >= size {
            return None;
        }
        let first = match self.image.extent_at(self.pos) {
            Ok(e) => e,
            Err(e) => {
                self.failed = true;
                return Some(Err(e));
            }
        };
        let mut ext = Extent {
            len: first.len.max(1).min(self.max_len),
            ..first
        };
        // merge following runs of the same kind; each step advances by at least one byte, and
        // at most MAX_MERGED runs are looked up per extent (a crafted 4 TiB disk of 512-byte
        // blocks costs bounded time per call, not a walk of the whole map)
        for _ in 0..MAX_MERGED {
            let next = ext.offset.saturating_add(ext.len);
            if next >= size || ext.len >= self.max_len {
                break;
            }
            match self.image.extent_at(next) {
                Ok(e) if e.kind == ext.kind => {
                    let room = self.max_len.saturating_sub(ext.len);
                    ext.len = ext.len.saturating_add(e.len.max(1).min(room));
                }
                Ok(_) => break,
                Err(e) => {
                    self.failed = true;
                    return Some(Err(e));
                }
            }
        }
        self.pos = ext.offset.saturating_add(ext.len);
        Some(Ok(ext))
    }
}

fn display(path: Option<&Path>) -> String {
    path.map_or_else(|| "image".to_string(), |p| p.display().to_string())
}

fn open_path(path: &Path, opts: &OpenOptions, depth: usize) -> Result<Image> {
    let disk = FileDisk::open(path)?;
    open_disk(Box::new(disk), Some(path), opts, depth)
}

fn open_disk(
    file: Box<dyn Disk>,
    path: Option<&Path>,
    opts: &OpenOptions,
    depth: usize,
) -> Result<Image> {
    if depth > MAX_CHAIN_DEPTH {
        return Err(Error::unsupported(format!(
            "{}: the chain of parents/backing files is deeper than {MAX_CHAIN_DEPTH}",
            display(path)
        )));
    }
    let detected = if opts.raw {
        Detected::Raw
    } else {
        detect(file.as_ref())
    };
    let shown = display(path);
    let opened = match detected {
        Detected::Raw => Opened {
            backend: Box::new(RawBackend { len: file.len() }),
            info: ImageInfo {
                format: Format::Raw,
                path: None,
                virtual_bytes: file.len(),
                logical_sector_bytes: None,
                block_bytes: 0,
                unique_id: None,
                timestamp: None,
                data_write_guid: None,
                parent_name: None,
            },
            parent: None,
        },
        Detected::Vhd => vhd::open(file.as_ref(), path, opts, depth)?,
        Detected::Vhdx => vhdx::open(file.as_ref(), path, opts, depth)?,
        Detected::Qcow2 => qcow2::open(file.as_ref(), path, opts, depth)?,
        Detected::Other(name) => {
            return Err(Error::unsupported(format!(
                "{shown} is a {name} image, which vhdtool does not read; convert it first (for example to qcow2 or VHDX)"
            )))
        }
        Detected::Unknown => {
            return Err(Error::unsupported(format!(
                "{shown}: no VHD footer, VHDX, qcow2 or other known signature; if it is a raw disk, say so (--input-format raw): a raw disk cannot be told apart from a damaged image safely"
            )))
        }
    };
    let mut info = opened.info;
    info.virtual_bytes = opened.backend.virtual_bytes();
    info.path = path.map(Path::to_path_buf);
    Ok(Image {
        info,
        file,
        backend: opened.backend,
        parent: opened.parent.map(Box::new),
        cluster_cache: RefCell::new(None),
    })
}

/// What a format module hands back from `open`.
pub(crate) struct Opened {
    pub backend: Box<dyn Backend>,
    pub info: ImageInfo,
    pub parent: Option<Image>,
}

/// A raw disk: the file is the virtual disk.
struct RawBackend {
    len: u64,
}

impl Backend for RawBackend {
    fn virtual_bytes(&self) -> u64 {
        self.len
    }
    fn piece(&self, _file: &dyn Disk, offset: u64) -> Result<Piece> {
        Ok(Piece {
            len: self.len.saturating_sub(offset).min(EXTENT_MAX_BYTES),
            source: Source::Host(offset),
        })
    }
}

/// Open a parent or backing file named `name` (as stored in the child) for the child at
/// `child`. `candidates` are the paths tried, in order; the first that exists is opened. A
/// child read from memory takes the first of `opts.memory_parents` instead.
pub(crate) fn open_parent(
    child: Option<&Path>,
    candidates: &[PathBuf],
    name: &str,
    opts: &OpenOptions,
    depth: usize,
    raw: bool,
) -> Result<Image> {
    let Some(child) = child else {
        let Some((first, rest)) = opts.memory_parents.split_first() else {
            return Err(Error::unsupported(format!(
                "the image needs its parent {name:?}, which cannot be opened for an image read from memory"
            )));
        };
        let popts = OpenOptions {
            raw,
            parent_dir: None,
            memory_parents: rest.to_vec(),
        };
        let disk = MemDisk::read_only(first.0.to_vec());
        return open_disk(Box::new(disk), None, &popts, depth.saturating_add(1))
            .map_err(|e| e.context(format!("parent {name:?} (held in memory)")));
    };
    let found = candidates.iter().find(|p| p.is_file());
    let Some(found) = found else {
        let tried: Vec<String> = candidates.iter().map(|p| p.display().to_string()).collect();
        return Err(Error::invalid(format!(
            "{}: its parent {name:?} is missing (looked for {}); the child holds only the changes, so it cannot be read without the parent: put the parent next to it or name its folder with --parent-dir DIR",
            child.display(),
            if tried.is_empty() { "nothing usable".to_string() } else { tried.join(", ") }
        )));
    };
    let popts = OpenOptions {
        raw,
        parent_dir: opts.parent_dir.clone(),
        memory_parents: Vec::new(),
    };
    open_path(found, &popts, depth.saturating_add(1))
        .map_err(|e| e.context(format!("parent {} of {}", found.display(), child.display())))
}

/// The candidate paths of a parent named `stored` (a Windows or POSIX path, absolute or
/// relative): relative to the child's directory, then its file name next to the child, then in
/// `parent_dir`. Duplicates are dropped.
pub(crate) fn parent_candidates(
    child: Option<&Path>,
    stored: &[String],
    opts: &OpenOptions,
) -> Vec<PathBuf> {
    let dir = child
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let mut out: Vec<PathBuf> = Vec::new();
    let mut push = |p: PathBuf| {
        if !out.contains(&p) {
            out.push(p);
        }
    };
    for s in stored {
        if s.is_empty() || s.len() > 4096 {
            continue;
        }
        let unix = s.replace('\\', "/");
        let is_windows_abs = unix.as_bytes().get(1) == Some(&b':') || unix.starts_with("//");
        if unix.starts_with('/') && !unix.starts_with("//") {
            push(PathBuf::from(&unix));
        } else if !is_windows_abs {
            push(dir.join(unix.trim_start_matches("./")));
        }
        if let Some(name) = unix.rsplit('/').next().filter(|n| !n.is_empty()) {
            push(dir.join(name));
            if let Some(pd) = &opts.parent_dir {
                push(pd.join(name));
            }
        }
    }
    out
}

#[cfg(test)]
#[allow(
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::arithmetic_side_effects,
    clippy::as_conversions
)] // tests: a panic is a failed test
mod tests {
    use super::*;

    #[test]
    fn candidates_for_windows_and_relative_paths() {
        let opts = OpenOptions {
            parent_dir: Some(PathBuf::from("/p")),
            ..OpenOptions::default()
        };
        let c = parent_candidates(
            Some(Path::new("/d/child.vhd")),
            &[
                "C:\\VMs\\base.vhd".to_string(),
                ".\\sub\\base.vhd".to_string(),
            ],
            &opts,
        );
        assert_eq!(
            c,
            [
                PathBuf::from("/d/base.vhd"),
                PathBuf::from("/p/base.vhd"),
                PathBuf::from("/d/sub/base.vhd"),
            ]
        );
    }

    #[test]
    fn raw_only_when_asked() {
        let e = Image::from_bytes(vec![0; 4096], &OpenOptions::default()).unwrap_err();
        assert!(e.message().contains("--input-format raw"), "{e}");
        let opts = OpenOptions {
            raw: true,
            ..OpenOptions::default()
        };
        let img = Image::from_bytes(vec![7; 4096], &opts).unwrap();
        assert_eq!(img.format(), Format::Raw);
        let ext: Vec<_> = img.extents().collect::<Result<_>>().unwrap();
        assert_eq!(
            ext,
            [Extent {
                offset: 0,
                len: 4096,
                kind: ExtentKind::Data
            }]
        );
        let mut b = [0u8; 3];
        img.read_at(4093, &mut b).unwrap();
        assert_eq!(b, [7; 3]);
        assert!(img.read_at(4094, &mut b).is_err());
    }
}
