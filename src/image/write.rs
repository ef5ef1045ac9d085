//! Stream an [`Image`] into a sparse fixed VHD.
//!
//! The output is what Azure takes and what Hyper-V and QEMU 7.2+ size alike: the virtual size
//! rounded up to a whole MiB, the data flat, then a 512-byte footer with creator "qem2" and
//! geometry 65535/16/255 (the pair `qemu-img convert -o force_size=on` writes, which QEMU sizes
//! by the current size; Hyper-V and Azure always do). The unique id of the source (VHD footer,
//! VHDX virtual disk id) is kept, so the copy is still known as the same disk.
//!
//! Zero and unallocated ranges, and all-zero chunks of data, are left as holes. Memory is one
//! chunk buffer (1 MiB) plus the readers' caches, whatever the size. The file is written under
//! a temporary name in the output's directory, fsynced, then renamed to the output and the
//! directory fsynced, by [`crate::disk::PartialOutput`] (the rule of every output: a crash
//! leaves either no output or a complete one, and an existing file is never overwritten). The input is only read
//! (and the output may not be any file of the input's chain).

use std::fs::{self, File};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};

use super::{ExtentKind, Image};
use crate::disk::{Disk, PartialOutput};
use crate::error::{Error, Result};
use crate::gpt::guid::Guid;
use crate::vhd::footer::{self, FooterFields, HOST_OS_WINDOWS};
use crate::vhd::geometry::MAX_CHS;

const MIB: u64 = 1 << 20;
/// Bytes read and tested for zero at a time.
pub const CHUNK_BYTES: usize = 1 << 20;
/// Creator application of our footers: QEMU trusts the current size of "qem2" footers.
pub const CREATOR: [u8; 4] = *b"qem2";
/// Creator version written (vhdtool 0.1).
pub const CREATOR_VERSION: u32 = 0x0000_0001;
/// Largest fixed VHD written: Azure's 32 TiB page blob limit less the footer... well above the
/// 4 TiB Gen2 OS disk; QEMU's vpc driver reads up to 2040 GiB.
pub const MAX_OUTPUT_BYTES: u64 = 32 << 40;

/// Options of [`write_fixed_vhd`].
#[derive(Debug, Clone, Default)]
pub struct WriteOptions {
    /// The footer's unique id; `None` keeps the source's (or makes a new one if it has none).
    pub unique_id: Option<[u8; 16]>,
    /// The footer's timestamp (seconds since 2000-01-01); `None` is now.
    pub timestamp: Option<u32>,
}

/// What [`write_fixed_vhd`] wrote.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct WriteReport {
    pub path: PathBuf,
    /// The source's virtual size.
    pub source_bytes: u64,
    /// The output's virtual size (footer current size): the source rounded up to a whole MiB.
    pub virtual_bytes: u64,
    /// Bytes of data written (the rest are holes).
    pub data_bytes_written: u64,
    /// Bytes of the source that were read (data extents).
    pub data_bytes_read: u64,
}

/// The size a source of `len` bytes gets: rounded up to a whole MiB (at least 1 MiB).
pub fn output_size(len: u64) -> Option<u64> {
    len.max(1).div_ceil(MIB).checked_mul(MIB)
}

/// The footer of an output of `size` bytes.
pub fn output_footer(size: u64, unique_id: [u8; 16], timestamp: u32) -> Result<[u8; 512]> {
    let mut f = FooterFields::fixed(
        size,
        unique_id,
        timestamp,
        CREATOR,
        CREATOR_VERSION,
        HOST_OS_WINDOWS,
        size,
    );
    f.geometry = MAX_CHS;
    let bytes = footer::encode(&f);
    // through the reader's own decoder before a byte is written
    let back = footer::decode(&bytes, size, false)?;
    if back.checksum != back.computed_checksum
        || back.current_size != size
        || back.qemu_virtual_bytes != size
    {
        return Err(Error::corrupt(format!(
            "the footer built for {size} bytes does not decode to that size"
        )));
    }
    Ok(bytes)
}

/// Now, in the VHD footer's time (seconds since 2000-01-01T00:00:00Z).
pub fn now_vhd() -> u32 {
    let unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    footer::timestamp_of_unix(i64::try_from(unix).unwrap_or(i64::MAX))
}

fn is_zero(buf: &[u8]) -> bool {
    let (words, rest) = buf.as_chunks::<8>();
    words.iter().all(|w| u64::from_ne_bytes(*w) == 0) && rest.iter().all(|&b| b == 0)
}

/// Refuse an output that is one of the input's files (the input is never written).
fn check_not_input(image: &Image, out: &Path) -> Result<()> {
    let Ok(o) = fs::metadata(out) else {
        return Ok(());
    };
    for info in image.chain() {
        if let Some(p) = &info.path {
            if let Ok(m) = fs::metadata(p) {
                if m.dev() == o.dev() && m.ino() == o.ino() {
                    return Err(Error::invalid(format!(
                        "the output {} is the input file {}: vhdtool never writes its input",
                        out.display(),
                        p.display()
                    )));
                }
            }
        }
    }
    Ok(())
}

/// The output's size (the source's rounded up to a whole MiB) and footer for `image` with
/// `opts`. A random unique id is drawn when neither `opts` nor the source has one: callers that
/// need the footer twice (a plan, then the copy) fix `opts.unique_id` first.
pub fn planned_footer(image: &Image, opts: &WriteOptions) -> Result<(u64, [u8; 512])> {
    let source_bytes = image.len();
    let size = output_size(source_bytes)
        .filter(|&s| s <= MAX_OUTPUT_BYTES)
        .ok_or_else(|| {
            Error::unsupported(format!(
                "a {source_bytes}-byte disk is larger than the {MAX_OUTPUT_BYTES} bytes a fixed VHD is written for"
            ))
        })?;
    let unique_id = match opts.unique_id.or_else(|| image.unique_id()) {
        Some(id) => id,
        // a new disk: a random unique id, as Hyper-V gives one
        None => Guid::random()?.0,
    };
    let footer = output_footer(size, unique_id, opts.timestamp.unwrap_or_else(now_vhd))?;
    Ok((size, footer))
}

/// Write `image` as a sparse fixed VHD at `out` (see the module documentation).
pub fn write_fixed_vhd(image: &Image, out: &Path, opts: &WriteOptions) -> Result<WriteReport> {
    check_not_input(image, out)?;
    let partial = PartialOutput::create(out)?;
    let report = write_fixed_vhd_into(image, &partial, opts)?;
    // fsync, rename to OUT, fsync the directory (dropped on an error above: removed)
    partial.finish()?;
    Ok(report)
}

/// Write `image` as a sparse fixed VHD into the partial output `partial`, which is left
/// unfinished (the caller may convert it further before [`PartialOutput::finish`]).
pub fn write_fixed_vhd_into(
    image: &Image,
    partial: &PartialOutput,
    opts: &WriteOptions,
) -> Result<WriteReport> {
    let source_bytes = image.len();
    check_not_input(image, &partial.output)?;
    let (size, footer) = planned_footer(image, opts)?;
    let file = &partial.file;
    let shown = partial.partial.display().to_string();
    let io = |what: &str, e: std::io::Error| Error::io(format!("{what} {shown}"), e);
    file.set_len(size.saturating_add(512))
        .map_err(|e| io("sizing", e))?;
    let (read, written) = copy_data(image, file, &shown)?;
    file.write_all_at(&footer, size)
        .map_err(|e| io("writing the footer of", e))?;
    Ok(WriteReport {
        path: partial.output.clone(),
        source_bytes,
        virtual_bytes: size,
        data_bytes_written: written,
        data_bytes_read: read,
    })
}

/// Granularity of holes inside data: all-zero runs of this many bytes are not written.
const HOLE_BYTES: usize = 64 << 10;

/// The parts of `buf` that are not all-zero [`HOLE_BYTES`] pieces (counted from its start),
/// consecutive non-zero pieces merged, as (from, to) indices.
fn nonzero_runs(buf: &[u8]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut start: Option<usize> = None;
    let mut pos = 0usize;
    for piece in buf.chunks(HOLE_BYTES) {
        let end = pos.saturating_add(piece.len());
        match (is_zero(piece), start) {
            (false, None) => start = Some(pos),
            (true, Some(s)) => {
                out.push((s, pos));
                start = None;
            }
            _ => {}
        }
        pos = end;
    }
    if let Some(s) = start {
        out.push((s, pos));
    }
    out
}

/// Write the parts of `buf` (at file offset `at`) that are not all-zero [`HOLE_BYTES`] runs,
/// consecutive non-zero runs in one write. Returns the bytes written.
fn write_nonzero(file: &File, buf: &[u8], at: u64, shown: &str) -> Result<u64> {
    let mut written = 0u64;
    for (from, to) in nonzero_runs(buf) {
        let part = buf.get(from..to).unwrap_or_default();
        let off = at.saturating_add(u64::try_from(from).unwrap_or(0));
        file.write_all_at(part, off).map_err(|e| {
            Error::io(
                format!("writing 0x{:x} bytes at 0x{off:x} of {shown}", part.len()),
                e,
            )
        })?;
        written = written.saturating_add(u64::try_from(part.len()).unwrap_or(0));
    }
    Ok(written)
}

/// The pieces [`copy_data`] reads: the data extents of an image cut at [`CHUNK_BYTES`]
/// boundaries (so that chunks stay aligned), as (offset, length).
struct DataChunks<'a> {
    extents: super::Extents<'a>,
    /// The rest of the current data extent: (next offset, end).
    current: (u64, u64),
}

impl<'a> DataChunks<'a> {
    fn of(image: &'a Image) -> Self {
        DataChunks {
            extents: image.extents(),
            current: (0, 0),
        }
    }
}

impl Iterator for DataChunks<'_> {
    type Item = Result<(u64, usize)>;

    fn next(&mut self) -> Option<Self::Item> {
        let chunk = u64::try_from(CHUNK_BYTES).unwrap_or(MIB);
        loop {
            let (at, end) = self.current;
            if at < end {
                let next = at
                    .saturating_add(chunk)
                    .checked_div(chunk)
                    .unwrap_or(0)
                    .saturating_mul(chunk)
                    .min(end);
                self.current.0 = next;
                let n = usize::try_from(next.saturating_sub(at)).unwrap_or(CHUNK_BYTES);
                return Some(Ok((at, n)));
            }
            match self.extents.next()? {
                Err(e) => return Some(Err(e)),
                Ok(ext) if ext.kind == ExtentKind::Zero => {}
                Ok(ext) => self.current = (ext.offset, ext.offset.saturating_add(ext.len)),
            }
        }
    }
}

/// Every byte range of the virtual disk that [`write_fixed_vhd_into`] writes (the footer
/// aside), in order, adjacent ranges merged: what the copy allocates. Reads all the data.
pub fn written_ranges(image: &Image) -> Result<Vec<(u64, u64)>> {
    let mut out: Vec<(u64, u64)> = Vec::new();
    let mut buf = vec![0u8; CHUNK_BYTES];
    for c in DataChunks::of(image) {
        let (at, n) = c?;
        let part = buf.get_mut(..n).unwrap_or_default();
        image.read_at(at, part)?;
        for (from, to) in nonzero_runs(part) {
            let s = at.saturating_add(u64::try_from(from).unwrap_or(0));
            let l = u64::try_from(to.saturating_sub(from)).unwrap_or(0);
            match out.last_mut() {
                Some((ps, pl)) if ps.saturating_add(*pl) == s => *pl = pl.saturating_add(l),
                _ => out.push((s, l)),
            }
        }
    }
    Ok(out)
}

/// Chunk buffers in flight between the reading thread and the writing thread: reads (page
/// cache, decompression) overlap writes (which block while the kernel writes dirty pages back),
/// as qemu-img's parallel requests do; memory stays at this many chunks.
const BUFFERS: usize = 4;

/// Copy the data extents of `image` to `file` at the same offsets, skipping all-zero runs.
/// This thread reads; a scoped thread writes. Returns (bytes read, bytes written).
fn copy_data(image: &Image, file: &File, shown: &str) -> Result<(u64, u64)> {
    use std::sync::mpsc;
    let (to_writer, from_reader) = mpsc::sync_channel::<(u64, Vec<u8>)>(BUFFERS);
    let (to_reader, returned) = mpsc::channel::<Vec<u8>>();
    std::thread::scope(|scope| {
        let writer = scope.spawn(move || -> Result<u64> {
            let mut written = 0u64;
            for (at, buf) in from_reader {
                written = written.saturating_add(write_nonzero(file, &buf, at, shown)?);
                // the reader may have finished: a lost buffer is simply freed
                let _ = to_reader.send(buf);
            }
            Ok(written)
        });
        let mut allocated = 0usize;
        let mut read = 0u64;
        let mut failed: Option<Error> = None;
        for c in DataChunks::of(image) {
            let (at, n) = match c {
                Ok(c) => c,
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            };
            let mut buf = match returned.try_recv() {
                Ok(b) => b,
                Err(_) if allocated < BUFFERS => {
                    allocated = allocated.saturating_add(1);
                    Vec::with_capacity(CHUNK_BYTES)
                }
                Err(_) => match returned.recv() {
                    Ok(b) => b,
                    // the writer stopped (its error is collected below)
                    Err(_) => break,
                },
            };
            buf.resize(n, 0);
            if let Err(e) = image.read_at(at, &mut buf) {
                failed = Some(e);
                break;
            }
            read = read.saturating_add(u64::try_from(n).unwrap_or(0));
            if to_writer.send((at, buf)).is_err() {
                break; // the writer stopped
            }
        }
        drop(to_writer);
        let written = writer.join().map_err(|_| {
            Error::io(
                format!("writing {shown}"),
                std::io::Error::other("the writer thread panicked"),
            )
        })?;
        match (failed, written) {
            (Some(e), _) | (None, Err(e)) => Err(e),
            (None, Ok(w)) => Ok((read, w)),
        }
    })
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
    use crate::image::OpenOptions as ImgOpts;

    #[test]
    fn sizes_round_up_to_mib() {
        assert_eq!(output_size(0), Some(MIB));
        assert_eq!(output_size(1), Some(MIB));
        assert_eq!(output_size(MIB), Some(MIB));
        assert_eq!(output_size(MIB + 512), Some(2 * MIB));
        assert_eq!(output_size(u64::MAX), None);
    }

    #[test]
    fn footer_is_force_size_style() {
        let b = output_footer(3 * MIB, [5; 16], 7).unwrap();
        let f = footer::decode(&b, 0, false).unwrap();
        assert_eq!(f.creator_application, "qem2");
        assert_eq!(f.geometry, MAX_CHS);
        assert_eq!((f.current_size, f.original_size), (3 * MIB, 3 * MIB));
        assert_eq!(f.disk_type, footer::DISK_TYPE_FIXED);
        assert_eq!(f.checksum, f.computed_checksum);
    }

    #[test]
    fn writes_raw_with_holes_and_footer() {
        let dir = std::env::temp_dir().join(format!("vhdtool-write-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let mut data = vec![0u8; 3 * MIB as usize + 512];
        data[5] = 1;
        data[2 * MIB as usize + 7] = 2;
        let opts = ImgOpts {
            raw: true,
            ..ImgOpts::default()
        };
        let img = Image::from_bytes(data.clone(), &opts).unwrap();
        let out = dir.join("o.vhd");
        let r = write_fixed_vhd(&img, &out, &WriteOptions::default()).unwrap();
        assert_eq!(r.virtual_bytes, 4 * MIB);
        assert_eq!(r.data_bytes_written, 2 * (64 << 10));
        // what the free-space check counts is what was written
        assert_eq!(
            written_ranges(&img).unwrap(),
            vec![(0, 64 << 10), (2 * MIB, 64 << 10)]
        );
        let got = fs::read(&out).unwrap();
        assert_eq!(got.len() as u64, 4 * MIB + 512);
        assert_eq!(&got[..data.len()], &data[..]);
        assert!(got[data.len()..4 * MIB as usize].iter().all(|&b| b == 0));
        // the output read back as a VHD gives the data
        let back = Image::open(&out, &ImgOpts::default()).unwrap();
        assert_eq!(back.format(), crate::image::Format::VhdFixed);
        assert_eq!(back.len(), 4 * MIB);
        // writing over an input is refused
        let e = write_fixed_vhd(&back, &out, &WriteOptions::default()).unwrap_err();
        assert!(e.message().contains("never writes its input"), "{e}");
        fs::remove_dir_all(&dir).unwrap();
    }
}
