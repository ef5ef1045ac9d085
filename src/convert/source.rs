//! The input side of `convert`: what `IMAGE` is, and how its bytes reach the plan and the copy.
//!
//! A fixed VHD or a raw disk (no signature) is used as it is, as before: planned on the file,
//! converted in place behind the journal or into a sparse copy. Any other format (dynamic or
//! differencing VHD, VHDX, qcow2, or raw when the user says `--input-format raw`) is read
//! through [`crate::image`] and presented to the planner as the fixed VHD it will become
//! ([`FixedView`]: the virtual disk, zeros up to a whole MiB, the footer the writer will write),
//! so the checks and the plan run before anything is written and exactly as for a fixed VHD.
//! The copy is then one streaming pass of the image writer into the partial output, and the
//! same plan is applied to it there. The input is never written: such inputs are converted only
//! into a new file (`-o`).
//!
//! `--keep-mbr` writes the Azure-ready fixed VHD and leaves the partitions as they are (a
//! Generation-1 upload, or a repair of a footer with a bad checksum, a wrong geometry or a size
//! that is not a whole MiB).

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::checksum::compare::{RegionCheck, VerifyReport};
use crate::disk::{check_range, Access, Disk, MmapDisk, PartialOutput, Region};
use crate::error::{Error, Result};
use crate::gpt::guid::Guid;
use crate::image::write::{self, WriteOptions, WriteReport};
use crate::image::{detect, Detected, Format, Image, OpenOptions};

/// How `convert` reads its input (`--input-format`, `--parent-dir`, `--keep-mbr`).
#[derive(Debug, Clone, Default)]
pub struct SourceOptions {
    /// `--input-format raw`: the file is a raw disk, whatever it looks like.
    pub raw: bool,
    /// `--parent-dir DIR`: where parents of differencing disks (and qcow2 backing files) are
    /// looked for besides the child's own directory.
    pub parent_dir: Option<PathBuf>,
}

impl SourceOptions {
    fn image_options(&self) -> OpenOptions {
        OpenOptions {
            raw: self.raw,
            parent_dir: self.parent_dir.clone(),
            ..OpenOptions::default()
        }
    }
}

/// The fixed VHD an image becomes, as a read-only disk: the virtual disk, zeros up to the
/// output's whole-MiB size, then the footer the writer writes.
pub struct FixedView {
    image: Image,
    write: WriteOptions,
    size: u64,
    footer: [u8; 512],
}

impl FixedView {
    /// The view of `image`. The footer's unique id and timestamp are fixed here, so the plan
    /// and the written copy see the same bytes.
    ///
    /// An input without a unique id of its own (qcow2, raw) gets one derived from what it holds
    /// (see [`derived_unique_id`]), and the footer's time from `SOURCE_DATE_EPOCH` when that is
    /// set: `validate` and `convert -o` plan the same GUIDs, and the same input gives the
    /// same bytes.
    pub fn new(image: Image) -> Result<FixedView> {
        let unique_id = match image.unique_id() {
            Some(id) => id,
            None => derived_unique_id(&image)?,
        };
        let timestamp = match image.info().timestamp {
            Some(t) => t,
            None => match crate::esp::source_date_epoch()? {
                Some(unix) => crate::vhd::footer::timestamp_of_unix(unix),
                None => write::now_vhd(),
            },
        };
        let opts = WriteOptions {
            unique_id: Some(unique_id),
            timestamp: Some(timestamp),
        };
        let (size, footer) = write::planned_footer(&image, &opts)?;
        Ok(FixedView {
            image,
            write: opts,
            size,
            footer,
        })
    }

    pub fn image(&self) -> &Image {
        &self.image
    }

    /// Exactly what the copy will hold (the writer skips all-zero runs inside data extents):
    /// the ranges it writes and the footer. Reads all the data.
    pub fn written_extents(&self) -> Result<Vec<(u64, u64)>> {
        let mut out = write::written_ranges(&self.image)?;
        out.push((self.size, 512));
        Ok(out)
    }
}

/// The footer's unique id of an input that has none: name-based (RFC 9562 v8, vhdtool's
/// namespace) over "vhd unique id", the format's name, the virtual size and the disk's first
/// 4 KiB (its MBR, whatever the sector size).
fn derived_unique_id(image: &Image) -> Result<[u8; 16]> {
    let mut first = [0u8; 4096];
    let n = usize::try_from(image.len().min(4096)).unwrap_or(0);
    if let Some(head) = first.get_mut(..n) {
        image.read_at(0, head)?;
    }
    let mut name = b"vhd unique id ".to_vec();
    name.extend_from_slice(image.format().name().as_bytes());
    name.extend_from_slice(&image.len().to_le_bytes());
    name.extend_from_slice(&first);
    Ok(Guid::name_based(super::identity::NAMESPACE, &name).0)
}

impl Disk for FixedView {
    fn len(&self) -> u64 {
        self.size.saturating_add(512)
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        let total = u64::try_from(buf.len()).map_err(|_| Error::invalid("read too large"))?;
        check_range(self.len(), offset, total)?;
        let data = self.image.len();
        let mut done = 0usize;
        // at most three parts: image, zero padding, footer
        while let Some(rest) = buf.get_mut(done..).filter(|r| !r.is_empty()) {
            let at = offset.saturating_add(u64::try_from(done).unwrap_or(u64::MAX));
            let (limit, part) = if at < data {
                (data, 0u8)
            } else if at < self.size {
                (self.size, 1)
            } else {
                (self.len(), 2)
            };
            let n = usize::try_from(limit.saturating_sub(at))
                .unwrap_or(usize::MAX)
                .min(rest.len());
            let piece = rest
                .get_mut(..n)
                .ok_or_else(|| Error::internal("view split"))?;
            match part {
                0 => self.image.read_at(at, piece)?,
                1 => piece.fill(0),
                _ => {
                    let skip = usize::try_from(at.saturating_sub(self.size)).unwrap_or(0);
                    let src = self
                        .footer
                        .get(skip..skip.saturating_add(n))
                        .ok_or_else(|| Error::internal("view footer split"))?;
                    piece.copy_from_slice(src);
                }
            }
            if n == 0 {
                return Err(Error::internal("empty read in the fixed view"));
            }
            done = done.saturating_add(n);
        }
        Ok(())
    }

    fn write_at(&mut self, _offset: u64, _data: &[u8]) -> Result<()> {
        Err(Error::invalid(
            "an input image is read-only: vhdtool never writes its input",
        ))
    }

    /// The image's data extents (what the writer may write; it skips all-zero runs inside
    /// them) and the footer; the rest (unallocated blocks, the padding) stays a hole.
    fn data_extents(&self, from: u64, len: u64) -> Result<Vec<(u64, u64)>> {
        check_range(self.len(), from, len)?;
        let end = from.saturating_add(len);
        let mut out: Vec<(u64, u64)> = Vec::new();
        for e in self.image.extents() {
            let e = e?;
            if e.offset >= end {
                break;
            }
            let (s, t) = (e.offset.max(from), e.offset.saturating_add(e.len).min(end));
            if e.kind == crate::image::ExtentKind::Data && s < t {
                match out.last_mut() {
                    Some((ls, ll)) if ls.saturating_add(*ll) == s => *ll = t.saturating_sub(*ls),
                    _ => out.push((s, t.saturating_sub(s))),
                }
            }
        }
        let footer = self.size.max(from);
        if end > footer {
            out.push((footer, end.saturating_sub(footer)));
        }
        Ok(out)
    }
}

/// The input of a conversion.
pub enum Source {
    /// A fixed VHD or raw disk, used as it is.
    File(MmapDisk),
    /// Another format, read through the image readers; the file stays share-locked.
    Image {
        view: Box<FixedView>,
        _lock: MmapDisk,
    },
}

/// Open the input of `convert` with the lock `access` calls for; `copy`: there is an `-o`.
/// Formats other than fixed VHD and raw are converted only into a copy: without `-o` they are
/// refused (dry runs too), with the `-o` hint.
pub fn open(path: &Path, opts: &SourceOptions, access: Access, copy: bool) -> Result<Source> {
    let lock = MmapDisk::open(path, Access::ReadOnly)?;
    let found = if opts.raw {
        Detected::Raw
    } else {
        detect(&lock)
    };
    // the format's name when it is read through the image readers
    let through_image = match found {
        // --input-format raw: a raw copy is wrapped into a fixed VHD; in place it is what it is
        Detected::Raw => copy.then_some("raw"),
        Detected::Vhd => match crate::vhd::probe(&lock).footer.map(|f| f.disk_type) {
            Some(crate::vhd::footer::DISK_TYPE_DYNAMIC) => Some("vhd-dynamic"),
            Some(crate::vhd::footer::DISK_TYPE_DIFFERENCING) => Some("vhd-differencing"),
            _ => None,
        },
        Detected::Vhdx => Some("vhdx"),
        Detected::Qcow2 => Some("qcow2"),
        // refused by the image reader, with the format named
        Detected::Other(name) => Some(name),
        Detected::Unknown => {
            if let Some(why) = crate::image::damaged_vhd_footer(&lock) {
                return Err(Error::invalid(format!(
                    "{}: not converted: it looks like a VHD whose footer is damaged ({why}); if it is a raw disk, say so with --input-format raw",
                    path.display()
                )));
            }
            None
        }
    };
    let Some(format) = through_image else {
        return reopen(lock, path, access).map(Source::File);
    };
    if !copy && !matches!(found, Detected::Other(_)) {
        return Err(Error::unsupported(format!(
            "{} is a {format} image: vhdtool never writes such an input; it converts it into a new fixed VHD: vhdtool convert {} -o OUT.vhd",
            path.display(),
            path.display()
        )));
    }
    let image = Image::from_disk(
        Box::new(locked_file(&lock, path)?),
        Some(path),
        &opts.image_options(),
    )?;
    Ok(Source::Image {
        view: Box::new(FixedView::new(image)?),
        _lock: lock,
    })
}

/// The file `lock` detected and locked, to be read through the image readers (not whatever the
/// path names by now).
fn locked_file(lock: &MmapDisk, path: &Path) -> Result<crate::image::FileDisk> {
    let file = lock
        .file()
        .try_clone()
        .map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
    Ok(crate::image::FileDisk::from_file(file, path, lock.len()))
}

/// The input as `access` needs it, from the file `lock` opened and detected. Read-only: that
/// file itself. For writing: the path again (a shared lock cannot become exclusive atomically),
/// refused unless it is still the same file of the same length, so a file swapped or cut
/// between the two opens is never converted as if it were the one detected.
fn reopen(lock: MmapDisk, path: &Path, access: Access) -> Result<MmapDisk> {
    use std::os::unix::fs::MetadataExt;
    if access == Access::ReadOnly {
        return Ok(lock);
    }
    let meta = |d: &MmapDisk| {
        d.file()
            .metadata()
            .map(|m| (m.dev(), m.ino()))
            .map_err(|e| Error::io(format!("reading metadata of {}", path.display()), e))
    };
    let before = meta(&lock)?;
    let len = lock.len();
    drop(lock);
    let disk = MmapDisk::open(path, access)?;
    if meta(&disk)? != before {
        return Err(Error::conflict(format!(
            "{}: another file took its name while vhdtool opened it; nothing was written: run the command again",
            path.display()
        )));
    }
    crate::disk::still_holds(disk.file(), path, len, "opening")?;
    if disk.len() != len {
        return Err(Error::conflict(format!(
            "{}: its size changed while vhdtool opened it ({len} bytes, then {}); nothing was written: run the command again",
            path.display(),
            disk.len()
        )));
    }
    Ok(disk)
}

impl Source {
    /// True when the input is used as the file it is (fixed VHD, raw).
    pub fn is_file(&self) -> bool {
        matches!(self, Source::File(_))
    }

    /// The input's format when it is read through the image readers (what `validate` names:
    /// it validates the fixed VHD `convert -o` makes of it); `None` for a fixed VHD or raw file.
    pub fn image_format(&self) -> Option<&'static str> {
        match self {
            Source::File(_) => None,
            Source::Image { view, .. } => Some(view.image.format().name()),
        }
    }

    /// The file for an in-place conversion (other formats were refused by [`open`]).
    pub fn in_place(&mut self) -> Result<&mut MmapDisk> {
        match self {
            Source::File(d) => Ok(d),
            Source::Image { .. } => Err(Error::internal(
                "an image format was opened for an in-place conversion",
            )),
        }
    }

    /// Fill the partial output with the source: a sparse copy of the file, or one streaming
    /// pass of the image writer. `progress` gets (done, total) bytes.
    pub fn copy_into(
        &self,
        partial: &PartialOutput,
        name: &Path,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<()> {
        match self {
            Source::File(d) => {
                super::copy::sparse_copy(d.file(), name, &partial.file, d.len(), |a, b| {
                    progress(a, b)
                })?;
            }
            Source::Image { view, .. } => {
                let r = write::write_fixed_vhd_into(&view.image, partial, &view.write)?;
                progress(r.data_bytes_read, r.data_bytes_read);
            }
        }
        Ok(())
    }

    /// What the copy of an image format holds, exactly (by reading all its data); `None` for a
    /// file, whose copy holds its data extents ([`Disk::data_extents`]).
    pub fn written_extents(&self) -> Result<Option<Vec<(u64, u64)>>> {
        match self {
            Source::File(_) => Ok(None),
            Source::Image { view, .. } => view.written_extents().map(Some),
        }
    }

    /// `--verify` of a copy: only the planned regions differ from the source.
    pub fn prove_copy(&self, image: &Path, out: &Path, regions: &[Region]) -> Result<VerifyReport> {
        match self {
            Source::File(_) => crate::checksum::compare::prove_copy(image, out, regions),
            Source::Image { view, .. } => prove_view(view, out, regions),
        }
    }
}

impl Disk for Source {
    fn len(&self) -> u64 {
        match self {
            Source::File(d) => d.len(),
            Source::Image { view, .. } => view.len(),
        }
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        match self {
            Source::File(d) => d.read_at(offset, buf),
            Source::Image { view, .. } => view.read_at(offset, buf),
        }
    }
    fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<()> {
        match self {
            Source::File(d) => d.write_at(offset, data),
            Source::Image { view, .. } => view.write_at(offset, data),
        }
    }
    fn as_slice(&self) -> Option<&[u8]> {
        match self {
            Source::File(d) => d.as_slice(),
            Source::Image { .. } => None,
        }
    }
    fn path(&self) -> Option<&Path> {
        match self {
            Source::File(d) => Disk::path(d),
            Source::Image { .. } => None,
        }
    }
    fn data_extents(&self, from: u64, len: u64) -> Result<Vec<(u64, u64)>> {
        match self {
            Source::File(d) => d.data_extents(from, len),
            Source::Image { view, .. } => view.data_extents(from, len),
        }
    }
}

/// Most unplanned ranges listed (the proof has failed long before).
const MAX_UNPLANNED: usize = 1000;
/// Bytes compared at a time by [`prove_view`].
const PROVE_CHUNK: usize = 1 << 20;

/// Compare the converted copy `out` with the view of its source, byte for byte, outside the
/// planned `regions` (what the copy gained past the view's end must read as zero: growth).
fn prove_view(view: &FixedView, out: &Path, regions: &[Region]) -> Result<VerifyReport> {
    use crate::checksum::Range;
    let file = File::open(out).map_err(|e| Error::io(format!("opening {}", out.display()), e))?;
    let out_len = file
        .metadata()
        .map_err(|e| Error::io(format!("reading metadata of {}", out.display()), e))?
        .len();
    let src_len = view.len();
    let all = src_len.max(out_len);
    let mut unplanned: Vec<Range> = Vec::new();
    let mut changed_regions = vec![false; regions.len()];
    let mut checked = 0u64;
    let mut a = vec![0u8; PROVE_CHUNK];
    let mut b = vec![0u8; PROVE_CHUNK];
    let step = u64::try_from(PROVE_CHUNK).unwrap_or(1 << 20);
    let mut at = 0u64;
    while at < all {
        let n = all.saturating_sub(at).min(step);
        let nz = usize::try_from(n).unwrap_or(PROVE_CHUNK);
        let (pa, pb) = (
            a.get_mut(..nz).ok_or_else(|| Error::internal("chunk"))?,
            b.get_mut(..nz).ok_or_else(|| Error::internal("chunk"))?,
        );
        read_padded(view, at, pa)?;
        read_file_padded(&file, out_len, at, pb, out)?;
        if pa != pb {
            for (i, (x, y)) in pa.iter().zip(pb.iter()).enumerate() {
                if x == y {
                    continue;
                }
                let off = at.saturating_add(u64::try_from(i).unwrap_or(0));
                let mut planned = false;
                for (g, c) in regions.iter().zip(changed_regions.iter_mut()) {
                    if off >= g.offset && off < g.offset.saturating_add(g.length) {
                        *c = true;
                        planned = true;
                    }
                }
                let growth = off >= src_len && *y == 0;
                if !planned && !growth {
                    let room = unplanned.len() < MAX_UNPLANNED;
                    match unplanned.last_mut() {
                        Some(r) if r.offset.saturating_add(r.length) == off => {
                            r.length = r.length.saturating_add(1);
                        }
                        _ if room => unplanned.push(Range::new(off, 1)),
                        _ => {}
                    }
                }
            }
        }
        checked = checked.saturating_add(n);
        at = at.saturating_add(n);
    }
    let planned_bytes: u64 = regions.iter().map(|g| g.length).sum();
    Ok(VerifyReport {
        ok: unplanned.is_empty(),
        method: "byte-for-byte comparison of the source (read through its format) and the converted copy".into(),
        checked_bytes: checked.saturating_sub(planned_bytes),
        regions: regions
            .iter()
            .zip(changed_regions)
            .map(|(g, changed)| RegionCheck {
                offset: g.offset,
                length: g.length,
                what: g.what.clone(),
                changed,
            })
            .collect(),
        unplanned,
    })
}

/// Read `buf` at `at` from `disk`, zeros past its end.
fn read_padded(disk: &dyn Disk, at: u64, buf: &mut [u8]) -> Result<()> {
    let have = usize::try_from(disk.len().saturating_sub(at))
        .unwrap_or(usize::MAX)
        .min(buf.len());
    let (head, tail) = buf.split_at_mut(have);
    if !head.is_empty() {
        disk.read_at(at, head)?;
    }
    tail.fill(0);
    Ok(())
}

fn read_file_padded(file: &File, len: u64, at: u64, buf: &mut [u8], name: &Path) -> Result<()> {
    let have = usize::try_from(len.saturating_sub(at))
        .unwrap_or(usize::MAX)
        .min(buf.len());
    let (head, tail) = buf.split_at_mut(have);
    file.read_exact_at(head, at)
        .map_err(|e| Error::io(format!("reading {}", name.display()), e))?;
    tail.fill(0);
    Ok(())
}

/// What `convert --keep-mbr` wrote.
#[derive(Debug, Clone, Serialize)]
pub struct KeepMbrReport {
    pub image: String,
    /// The input's format (`vhd-dynamic`, `qcow2`, ...).
    pub input_format: Format,
    pub output: String,
    pub written: WriteReport,
    /// The footer of a fixed-VHD input that was repaired (bad checksum, geometry, size).
    pub repaired: Vec<String>,
    pub upload: super::run::Upload,
}

/// `convert IN -o OUT.vhd --keep-mbr`: the Azure-ready fixed VHD, partitions untouched.
pub fn keep_mbr(image: &Path, output: &Path, opts: &SourceOptions) -> Result<KeepMbrReport> {
    let lock = MmapDisk::open(image, Access::ReadOnly)?;
    let repaired = footer_repairs(&lock);
    let img = Image::from_disk(
        Box::new(locked_file(&lock, image)?),
        Some(image),
        &opts.image_options(),
    )?;
    let input_format = img.format();
    let view = FixedView::new(img)?;
    let written = write::write_fixed_vhd(&view.image, output, &view.write)?;
    drop(lock);
    let file_bytes = written.virtual_bytes.saturating_add(512);
    let generation = if protective_mbr(&view)? { "V2" } else { "V1" };
    Ok(KeepMbrReport {
        image: image.display().to_string(),
        input_format,
        output: output.display().to_string(),
        repaired,
        upload: super::run::Upload {
            file_bytes,
            hyper_v_generation: generation,
            az_disk_create: format!(
                "az disk create --resource-group RG --name NAME --location LOCATION --os-type Linux|Windows --hyper-v-generation {generation} --for-upload --upload-size-bytes {file_bytes} --sku Premium_LRS"
            ),
        },
        written,
    })
}

/// A GPT disk (protective MBR entry 0xEE): Generation 2; anything else uploads as Generation 1.
fn protective_mbr(disk: &dyn Disk) -> Result<bool> {
    let mut t = [0u8; 1];
    if disk.len() < 512 {
        return Ok(false);
    }
    disk.read_at(0x1c2, &mut t)?;
    Ok(t == [0xee])
}

/// What is wrong with the footer of a fixed VHD that the new footer repairs.
fn footer_repairs(file: &dyn Disk) -> Vec<String> {
    let img = crate::vhd::probe(file);
    let Some(f) = img.footer.as_ref() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    if f.checksum != f.computed_checksum {
        out.push(format!(
            "footer checksum 0x{:08x}, computed 0x{:08x}",
            f.checksum, f.computed_checksum
        ));
    }
    if f.current_size != img.data_bytes {
        out.push(format!(
            "footer current size {} bytes, the file holds {} bytes of data",
            f.current_size, img.data_bytes
        ));
    }
    if img.data_bytes.checked_rem(1 << 20) != Some(0) {
        out.push(format!(
            "size {} bytes is not a whole MiB (Azure needs one)",
            img.data_bytes
        ));
    }
    let g = &f.geometry;
    if (g.cylinders, g.heads, g.sectors_per_track) != (65535, 16, 255) {
        out.push("geometry is not the 65535/16/255 every reader sizes by the footer".into());
    }
    out
}
