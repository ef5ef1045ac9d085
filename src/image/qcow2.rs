//! qcow2 (versions 2 and 3) as a block map, read by our own bounded reader (QEMU
//! `docs/interop/qcow2.txt`): header, header extensions (backing file format), the active L1
//! and L2 tables, zero clusters, deflate-compressed clusters and backing files (any format we
//! read, or raw when the backing format extension says so).
//!
//! Refused, with the reason: encryption (AES or LUKS), an external data file, extended L2
//! entries (subclusters), zstd compression, and any incompatible feature bit we do not know.
//! The dirty and corrupt bits are accepted: QEMU opens such images read-only too, and every
//! table access here is bounds-checked.
//!
//! Memory: one L2 table (one cluster, at most 2 MiB) and one decompressed cluster are cached;
//! the L1 table is read entry by entry.

use std::cell::RefCell;
use std::path::{Path, PathBuf};

use zerocopy::byteorder::big_endian::{U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use super::{open_parent, Backend, Format, ImageInfo, OpenOptions, Opened, Piece, Source};
use crate::disk::Disk;
use crate::error::{Error, Result};

/// "QFI\xfb".
pub const MAGIC: [u8; 4] = *b"QFI\xfb";
/// Header extension types.
pub const EXT_END: u32 = 0;
pub const EXT_BACKING_FORMAT: u32 = 0xe279_2aca;
/// Incompatible feature bits (qcow2.txt, "incompatible_features").
pub const INCOMPAT_DIRTY: u64 = 1 << 0;
pub const INCOMPAT_CORRUPT: u64 = 1 << 1;
pub const INCOMPAT_DATA_FILE: u64 = 1 << 2;
pub const INCOMPAT_COMPRESSION: u64 = 1 << 3;
pub const INCOMPAT_EXTL2: u64 = 1 << 4;
/// L1/L2 entry fields.
const OFFSET_MASK: u64 = 0x00ff_ffff_ffff_fe00;
const FLAG_COMPRESSED: u64 = 1 << 62;
const FLAG_ZERO: u64 = 1;
/// Cluster sizes QEMU allows: 512 B .. 2 MiB.
const MIN_CLUSTER_BITS: u32 = 9;
const MAX_CLUSTER_BITS: u32 = 21;
/// QEMU's limits: an L1 table of at most 32 MiB, a backing file name of at most 1023 bytes.
const MAX_L1_BYTES: u64 = 32 << 20;
const MAX_BACKING_NAME: u32 = 1023;
/// Virtual disks up to 64 TiB (far above any Gen2 disk).
const MAX_VIRTUAL_BYTES: u64 = 64 << 40;

/// The version 2 header (72 bytes, big-endian); version 3 appends [`RawHeaderV3`].
#[derive(Clone, Copy, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct RawHeader {
    pub magic: [u8; 4],               // 0x00 "QFI\xfb"
    pub version: U32,                 // 0x04 2 or 3
    pub backing_file_offset: U64,     // 0x08 0: none
    pub backing_file_size: U32,       // 0x10 bytes, no NUL
    pub cluster_bits: U32,            // 0x14 9 ..= 21
    pub size: U64,                    // 0x18 virtual size, bytes
    pub crypt_method: U32,            // 0x20 0 none, 1 AES, 2 LUKS
    pub l1_size: U32,                 // 0x24 L1 entries
    pub l1_table_offset: U64,         // 0x28
    pub refcount_table_offset: U64,   // 0x30
    pub refcount_table_clusters: U32, // 0x38
    pub nb_snapshots: U32,            // 0x3c
    pub snapshots_offset: U64,        // 0x40
}
const _: () = assert!(size_of::<RawHeader>() == 72);

/// The version 3 additions (from 0x48).
#[derive(Clone, Copy, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct RawHeaderV3 {
    pub incompatible_features: U64, // 0x48
    pub compatible_features: U64,   // 0x50
    pub autoclear_features: U64,    // 0x58
    pub refcount_order: U32,        // 0x60
    pub header_length: U32,         // 0x64 72 for v2; 104 or more for v3
}
const _: () = assert!(size_of::<RawHeaderV3>() == 32);
const V2_HEADER_BYTES: u32 = 72;
const V3_HEADER_BYTES: u32 = 104;
/// Byte 104: compression type (0 deflate, 1 zstd), when the header is long enough.
const COMPRESSION_TYPE_AT: usize = 104;

/// Decoded header facts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub version: u32,
    pub cluster_bits: u32,
    pub size: u64,
    pub l1_size: u32,
    pub l1_table_offset: u64,
    pub incompatible_features: u64,
    pub backing_file: Option<String>,
    pub backing_format: Option<String>,
}

/// Decode and check the header (the first cluster of the file).
pub fn read_header(file: &dyn Disk) -> Result<Header> {
    let mut head = [0u8; 112];
    let n = usize::try_from(file.len())
        .unwrap_or(usize::MAX)
        .min(head.len());
    file.read_at(0, head.get_mut(..n).unwrap_or_default())?;
    let (raw, rest) =
        RawHeader::read_from_prefix(&head).map_err(|_| Error::corrupt("qcow2 header is short"))?;
    if raw.magic != MAGIC {
        return Err(Error::corrupt("qcow2: magic is not QFI\\xfb"));
    }
    let version = raw.version.get();
    if version != 2 && version != 3 {
        return Err(Error::unsupported(format!(
            "qcow2 version {version}; only 2 and 3 are read"
        )));
    }
    let cluster_bits = raw.cluster_bits.get();
    if !(MIN_CLUSTER_BITS..=MAX_CLUSTER_BITS).contains(&cluster_bits) {
        return Err(Error::corrupt(format!(
            "qcow2 cluster_bits {cluster_bits}, expected 9..=21"
        )));
    }
    if raw.crypt_method.get() != 0 {
        return Err(Error::unsupported(format!(
            "qcow2 image is encrypted (crypt_method {}); decrypt it first (qemu-img convert with its key)",
            raw.crypt_method.get()
        )));
    }
    let (incompat, header_length) = if version == 3 {
        let (v3, _) = RawHeaderV3::read_from_prefix(rest)
            .map_err(|_| Error::corrupt("qcow2 v3 header is short"))?;
        (v3.incompatible_features.get(), v3.header_length.get())
    } else {
        (0, V2_HEADER_BYTES)
    };
    if version == 3 && header_length < V3_HEADER_BYTES {
        return Err(Error::corrupt(format!(
            "qcow2 v3 header_length {header_length}, at least {V3_HEADER_BYTES}"
        )));
    }
    let known = INCOMPAT_DIRTY | INCOMPAT_CORRUPT | INCOMPAT_COMPRESSION;
    if incompat & INCOMPAT_DATA_FILE != 0 {
        return Err(Error::unsupported(
            "qcow2 image keeps its data in an external data file, which is not read",
        ));
    }
    if incompat & INCOMPAT_EXTL2 != 0 {
        return Err(Error::unsupported(
            "qcow2 image uses extended L2 entries (subclusters), which are not read",
        ));
    }
    if incompat & !known != 0 {
        return Err(Error::unsupported(format!(
            "qcow2 image has unknown incompatible features 0x{:x}",
            incompat & !known
        )));
    }
    if incompat & INCOMPAT_COMPRESSION != 0 {
        let ct = if header_length > V3_HEADER_BYTES {
            head.get(COMPRESSION_TYPE_AT).copied().unwrap_or(0)
        } else {
            0
        };
        if ct != 0 {
            return Err(Error::unsupported(format!(
                "qcow2 compression type {ct} (zstd); only deflate is read"
            )));
        }
    }
    let size = raw.size.get();
    if size > MAX_VIRTUAL_BYTES {
        return Err(Error::unsupported(format!(
            "qcow2 virtual size {size} is above 64 TiB"
        )));
    }
    let cluster = 1u64 << cluster_bits;
    let l2_entries = cluster / 8;
    let needed = size.div_ceil(cluster).div_ceil(l2_entries);
    let l1_size = raw.l1_size.get();
    if u64::from(l1_size) < needed || u64::from(l1_size).saturating_mul(8) > MAX_L1_BYTES {
        return Err(Error::corrupt(format!(
            "qcow2 L1 table of {l1_size} entries; the {size}-byte disk needs {needed} (at most 4 Mi)"
        )));
    }
    let l1_table_offset = raw.l1_table_offset.get();
    let l1_end = l1_table_offset.checked_add(u64::from(l1_size).saturating_mul(8));
    if needed > 0 && l1_end.is_none_or(|e| e > file.len()) {
        return Err(Error::corrupt(format!(
            "qcow2 L1 table at 0x{l1_table_offset:x} ({l1_size} entries) lies outside the file (0x{:x} bytes)",
            file.len()
        )));
    }
    let backing_file = match raw.backing_file_offset.get() {
        0 => None,
        at => {
            let n = raw.backing_file_size.get();
            if n == 0 || n > MAX_BACKING_NAME {
                return Err(Error::corrupt(format!(
                    "qcow2 backing file name of {n} bytes (1 ..= {MAX_BACKING_NAME})"
                )));
            }
            let b = file
                .read_vec(at, u64::from(n))
                .map_err(|e| e.context("qcow2 backing file name"))?;
            Some(String::from_utf8_lossy(&b).into_owned())
        }
    };
    let backing_format = read_extensions(file, header_length, cluster)?;
    Ok(Header {
        version,
        cluster_bits,
        size,
        l1_size,
        l1_table_offset,
        incompatible_features: incompat,
        backing_file,
        backing_format,
    })
}

/// Walk the header extensions (inside the first cluster) and return the backing format.
fn read_extensions(file: &dyn Disk, header_length: u32, cluster: u64) -> Result<Option<String>> {
    let mut at = u64::from(header_length);
    let end = cluster.min(file.len());
    let mut format = None;
    // each extension takes at least 8 bytes: at most cluster / 8 of them
    while at.saturating_add(8) <= end {
        let mut b = [0u8; 8];
        file.read_at(at, &mut b)?;
        let (t, l) = b.split_at(4);
        let kind = u32::from_be_bytes(t.try_into().unwrap_or_default());
        let len = u64::from(u32::from_be_bytes(l.try_into().unwrap_or_default()));
        if kind == EXT_END {
            break;
        }
        let data = at.saturating_add(8);
        if data.checked_add(len).is_none_or(|e| e > end) {
            return Err(Error::corrupt(format!(
                "qcow2 header extension 0x{kind:08x} at 0x{at:x} ({len} bytes) runs past the first cluster"
            )));
        }
        if kind == EXT_BACKING_FORMAT && len <= 64 {
            let v = file.read_vec(data, len)?;
            format = Some(
                String::from_utf8_lossy(&v)
                    .trim_end_matches('\0')
                    .to_string(),
            );
        }
        at = data.saturating_add(len.div_ceil(8).saturating_mul(8));
    }
    Ok(format)
}

/// Open a qcow2 image and its backing chain.
pub(crate) fn open(
    file: &dyn Disk,
    path: Option<&Path>,
    opts: &OpenOptions,
    depth: usize,
) -> Result<Opened> {
    let shown = super::display(path);
    let h = read_header(file).map_err(|e| e.context(&shown))?;
    let parent = match &h.backing_file {
        Some(name) => {
            let raw = match h.backing_format.as_deref() {
                None | Some("qcow2" | "vpc" | "vhdx") => false,
                Some("raw") => true,
                Some(other) => {
                    return Err(Error::unsupported(format!(
                        "{shown}: backing file {name:?} is of format {other:?}, which is not read"
                    )))
                }
            };
            let candidates = backing_candidates(path, name, opts);
            Some(open_parent(path, &candidates, name, opts, depth, raw)?)
        }
        None => None,
    };
    let cluster = 1u64 << h.cluster_bits;
    Ok(Opened {
        backend: Box::new(Qcow2 {
            size: h.size,
            cluster_bits: h.cluster_bits,
            l1_size: h.l1_size,
            l1_table_offset: h.l1_table_offset,
            has_backing: parent.is_some(),
            l2: RefCell::new(None),
        }),
        info: ImageInfo {
            format: Format::Qcow2,
            path: None,
            virtual_bytes: h.size,
            logical_sector_bytes: None,
            block_bytes: cluster,
            unique_id: None,
            timestamp: None,
            data_write_guid: None,
            parent_name: h.backing_file.clone(),
        },
        parent,
    })
}

/// QEMU resolves a relative backing name against the image's directory; an absolute one is
/// used as it is. Its file name in `--parent-dir` is tried last.
fn backing_candidates(child: Option<&Path>, name: &str, opts: &OpenOptions) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let p = Path::new(name);
    if p.is_absolute() {
        out.push(p.to_path_buf());
    } else if let Some(dir) = child.and_then(Path::parent) {
        out.push(dir.join(p));
    }
    if let (Some(pd), Some(file)) = (&opts.parent_dir, p.file_name()) {
        out.push(pd.join(file));
    }
    out
}

struct Qcow2 {
    size: u64,
    cluster_bits: u32,
    l1_size: u32,
    l1_table_offset: u64,
    has_backing: bool,
    /// The last L2 table read (its file offset, entries).
    l2: RefCell<Option<(u64, Vec<u64>)>>,
}

impl Qcow2 {
    fn cluster(&self) -> u64 {
        1u64 << self.cluster_bits
    }

    fn absent(&self) -> Source {
        if self.has_backing {
            Source::Parent
        } else {
            Source::Zero
        }
    }

    /// What one L2 entry says about its cluster; `None` for an ordinary data cluster (its host
    /// offset is returned separately).
    fn classify(&self, entry: u64, cluster_index: u64) -> Result<Source> {
        let cluster = self.cluster();
        let vstart = cluster_index.saturating_mul(cluster);
        if entry & FLAG_COMPRESSED != 0 {
            // qcow2.txt "Compressed Clusters Descriptor": x = 62 - (cluster_bits - 8)
            let x = 62u32.saturating_sub(self.cluster_bits.saturating_sub(8));
            let host = entry & ((1u64 << x).saturating_sub(1));
            let sectors_mask = (1u64 << self.cluster_bits.saturating_sub(8)).saturating_sub(1);
            let nb = ((entry >> x) & sectors_mask).saturating_add(1);
            let len = nb.saturating_mul(512).saturating_sub(host & 511);
            return Ok(Source::Compressed {
                host,
                len,
                cluster_offset: vstart,
            });
        }
        let host = entry & OFFSET_MASK;
        if entry & FLAG_ZERO != 0 {
            return Ok(Source::Zero);
        }
        if host == 0 {
            return Ok(self.absent());
        }
        if !host.is_multiple_of(cluster) {
            return Err(Error::corrupt(format!(
                "qcow2 L2 entry of cluster {cluster_index}: data offset 0x{host:x} is not cluster-aligned"
            )));
        }
        Ok(Source::Host(host))
    }

    fn with_l2<T>(
        &self,
        file: &dyn Disk,
        l2_offset: u64,
        f: impl FnOnce(&[u64]) -> T,
    ) -> Result<T> {
        let mut cache = self.l2.borrow_mut();
        if !matches!(&*cache, Some((o, _)) if *o == l2_offset) {
            let bytes = file
                .read_vec(l2_offset, self.cluster())
                .map_err(|e| e.context(format!("qcow2 L2 table at 0x{l2_offset:x}")))?;
            let entries = bytes
                .as_chunks::<8>()
                .0
                .iter()
                .map(|c| u64::from_be_bytes(*c))
                .collect();
            *cache = Some((l2_offset, entries));
        }
        match &*cache {
            Some((_, e)) => Ok(f(e)),
            None => Err(Error::corrupt("qcow2 L2 cache is empty")),
        }
    }
}

impl Backend for Qcow2 {
    fn virtual_bytes(&self) -> u64 {
        self.size
    }

    fn cluster_bytes(&self) -> u64 {
        self.cluster()
    }

    fn piece(&self, file: &dyn Disk, offset: u64) -> Result<Piece> {
        let cb = self.cluster_bits;
        let cluster = self.cluster();
        let l2_bits = cb.saturating_sub(3);
        let l2_entries = 1u64 << l2_bits;
        let cluster_index = offset >> cb;
        let within = offset & cluster.saturating_sub(1);
        let l1_index = cluster_index >> l2_bits;
        let l2_index = cluster_index & l2_entries.saturating_sub(1);
        // the run may extend to the end of this L2 table's range, never past the disk
        let table_end = (l1_index.saturating_add(1) << l2_bits)
            .saturating_mul(cluster)
            .min(self.size);
        if l1_index >= u64::from(self.l1_size) {
            return Err(Error::corrupt(format!(
                "qcow2: offset 0x{offset:x} needs L1 entry {l1_index} of {}",
                self.l1_size
            )));
        }
        let mut b = [0u8; 8];
        let at = self
            .l1_table_offset
            .saturating_add(l1_index.saturating_mul(8));
        file.read_at(at, &mut b)
            .map_err(|e| e.context(format!("qcow2 L1 entry {l1_index}")))?;
        let l2_offset = u64::from_be_bytes(b) & OFFSET_MASK;
        if l2_offset == 0 {
            return Ok(Piece {
                len: table_end.saturating_sub(offset),
                source: self.absent(),
            });
        }
        if !l2_offset.is_multiple_of(cluster) {
            return Err(Error::corrupt(format!(
                "qcow2 L1 entry {l1_index}: L2 table offset 0x{l2_offset:x} is not cluster-aligned"
            )));
        }
        let entries = self.with_l2(file, l2_offset, |t| -> Result<(Source, u64)> {
            let i = usize::try_from(l2_index).unwrap_or(usize::MAX);
            let first = self.classify(t.get(i).copied().unwrap_or(0), cluster_index)?;
            if matches!(first, Source::Compressed { .. }) {
                return Ok((first, 1));
            }
            // merge following clusters of the same kind (contiguous for data)
            let mut n = 1u64;
            for (k, &e) in t.iter().enumerate().skip(i.saturating_add(1)) {
                let ci = cluster_index.saturating_add(n);
                let next = self.classify(e, ci)?;
                let same = match (first, next) {
                    (Source::Host(a), Source::Host(b)) => {
                        b == a.saturating_add(n.saturating_mul(cluster))
                    }
                    (a, b) => a == b && !matches!(a, Source::Compressed { .. }),
                };
                if !same {
                    break;
                }
                n = n.saturating_add(1);
                let _ = k;
            }
            Ok((first, n))
        })??;
        let (source, clusters) = entries;
        let run_end = cluster_index
            .saturating_add(clusters)
            .saturating_mul(cluster)
            .min(self.size);
        let len = run_end.saturating_sub(offset);
        let source = match source {
            Source::Host(h) => Source::Host(h.saturating_add(within)),
            other => other,
        };
        Ok(Piece { len, source })
    }

    fn decompress(&self, file: &dyn Disk, host: u64, len: u64, out: &mut [u8]) -> Result<()> {
        use miniz_oxide::inflate::core::{decompress, inflate_flags, DecompressorOxide};
        use miniz_oxide::inflate::TINFLStatus;
        // the descriptor's sector count may run past the end of the file (the last cluster)
        let avail = file.len().saturating_sub(host).min(len);
        if avail == 0 {
            return Err(Error::corrupt(format!(
                "qcow2 compressed cluster at 0x{host:x} lies outside the file"
            )));
        }
        let input = file.read_vec(host, avail)?;
        let mut d = Box::<DecompressorOxide>::default();
        // raw deflate (no zlib header); the whole input is given at once
        let flags = inflate_flags::TINFL_FLAG_USING_NON_WRAPPING_OUTPUT_BUF;
        let (status, _, produced) = decompress(&mut d, &input, out, 0, flags);
        let ok = matches!(
            status,
            TINFLStatus::Done | TINFLStatus::HasMoreOutput | TINFLStatus::NeedsMoreInput
        );
        // QEMU accepts a stream that fills the cluster exactly (qcow2_zlib_decompress)
        if !ok || produced != out.len() {
            return Err(Error::corrupt(format!(
                "qcow2 compressed cluster at 0x{host:x} ({avail} bytes): inflate gave {produced} of {} bytes ({status:?})",
                out.len()
            )));
        }
        Ok(())
    }
}
