//! VHD as a block map: fixed, dynamic and differencing disks (spec: "Hard Disk Footer Format",
//! "Dynamic Disk Header Format", "Block Allocation Table and Data Blocks", "Implementing a
//! Differencing Hard Disk").
//!
//! The layouts and their decoding live in `crate::vhd` (footer, dynamic header, parent
//! locators): this module only reads through them.
//!
//! Block bitmaps: a sector whose bit is 0 reads as zero in a dynamic disk and from the parent in
//! a differencing disk, as the spec says and Hyper-V does. QEMU's vpc driver ignores the bitmap
//! of a dynamic disk and returns whatever the block holds (QEMU itself writes bitmaps of all
//! ones, so its own images read the same either way): the two differ only for a block whose
//! bitmap clears a sector whose bytes are not zero.

use std::cell::RefCell;
use std::path::Path;

use super::{
    open_parent, parent_candidates, Backend, Format, ImageInfo, OpenOptions, Opened, Piece, Source,
};
use crate::disk::Disk;
use crate::error::{Error, Result};
use crate::vhd::dynamic::{bitmap_bytes, BAT_UNALLOCATED};
use crate::vhd::footer::{
    DISK_TYPE_DIFFERENCING, DISK_TYPE_DYNAMIC, DISK_TYPE_FIXED, VHD_EPOCH_UNIX,
};
use crate::vhd::{self as vhdfmt, footer};

const SECTOR: u64 = 512;
/// Largest block size accepted (the spec's default is 2 MiB; Hyper-V uses up to 256 MiB... of
/// VHDX; a VHD block is at most what a u32 holds, its bitmap at most 1 MiB).
const MAX_BLOCK_BYTES: u32 = 1 << 31;
/// Largest virtual disk (the spec's limit is 2040 GiB; a little room for odd creators).
const MAX_VIRTUAL_BYTES: u64 = 4 << 40;

/// Open a file whose footer [`super::detect`] found.
pub(crate) fn open(
    file: &dyn Disk,
    path: Option<&Path>,
    opts: &OpenOptions,
    depth: usize,
) -> Result<Opened> {
    let shown = super::display(path);
    let img = vhdfmt::probe(file);
    let Some(f) = img.footer.as_ref() else {
        return Err(Error::corrupt(format!("{shown}: no usable VHD footer")));
    };
    let mut unique_id = [0u8; 16];
    unique_id.copy_from_slice(&f.fields.unique_id);
    match f.disk_type {
        DISK_TYPE_FIXED => {
            // The data is flat before the footer: what the file holds is the disk, whatever the
            // footer claims (a damaged or mis-sized footer is what `convert --keep-mbr` repairs).
            let len = img.data_bytes;
            Ok(Opened {
                backend: Box::new(FixedVhd { len }),
                info: ImageInfo {
                    format: Format::VhdFixed,
                    path: None,
                    virtual_bytes: len,
                    logical_sector_bytes: Some(512),
                    block_bytes: 0,
                    unique_id: Some(unique_id),
                    timestamp: Some(f.timestamp),
                    data_write_guid: None,
                    parent_name: None,
                },
                parent: None,
            })
        }
        DISK_TYPE_DYNAMIC | DISK_TYPE_DIFFERENCING => {
            open_sparse(file, path, opts, depth, &img, f, unique_id)
        }
        other => Err(Error::unsupported(format!(
            "{shown}: VHD disk type {other} is not fixed (2), dynamic (3) or differencing (4)"
        ))),
    }
}

fn open_sparse(
    file: &dyn Disk,
    path: Option<&Path>,
    opts: &OpenOptions,
    depth: usize,
    img: &vhdfmt::Image,
    f: &vhdfmt::Footer,
    unique_id: [u8; 16],
) -> Result<Opened> {
    let shown = super::display(path);
    if f.checksum != f.computed_checksum {
        return Err(Error::corrupt(format!(
            "{shown}: VHD footer at 0x{:x}: checksum 0x{:08x}, computed 0x{:08x}; a dynamic disk with a damaged footer is not read",
            f.offset, f.checksum, f.computed_checksum
        )));
    }
    let Some(d) = img.dynamic.as_ref() else {
        return Err(Error::corrupt(format!(
            "{shown}: the dynamic disk header the footer points at (0x{:x}) is missing or damaged",
            f.data_offset
        )));
    };
    if d.checksum != d.computed_checksum {
        return Err(Error::corrupt(format!(
            "{shown}: dynamic disk header at 0x{:x}: checksum 0x{:08x}, computed 0x{:08x}",
            d.offset, d.checksum, d.computed_checksum
        )));
    }
    let bs = d.block_size;
    if bs == 0 || !u64::from(bs).is_multiple_of(SECTOR) || bs > MAX_BLOCK_BYTES {
        return Err(Error::corrupt(format!(
            "{shown}: dynamic disk header at 0x{:x}: block size {bs} is not a multiple of 512 between 512 and 2 GiB",
            d.offset
        )));
    }
    let size = f.current_size;
    if size > MAX_VIRTUAL_BYTES || !size.is_multiple_of(SECTOR) {
        return Err(Error::corrupt(format!(
            "{shown}: VHD current size {size} is not a multiple of 512 up to 4 TiB"
        )));
    }
    let blocks = size.div_ceil(u64::from(bs));
    if blocks > u64::from(d.max_table_entries) {
        return Err(Error::corrupt(format!(
            "{shown}: {} BAT entries of {bs} bytes cannot address the {size} bytes the footer claims",
            d.max_table_entries
        )));
    }
    let table_end = blocks
        .checked_mul(4)
        .and_then(|n| d.table_offset.checked_add(n));
    if table_end.is_none_or(|end| end > file.len()) {
        return Err(Error::corrupt(format!(
            "{shown}: BAT at 0x{:x} of {blocks} entries does not fit in the file (0x{:x} bytes)",
            d.table_offset,
            file.len()
        )));
    }
    let differencing = f.disk_type == DISK_TYPE_DIFFERENCING;
    let mut parent = None;
    let mut parent_name = None;
    if differencing {
        let (p, name) = open_vhd_parent(path, opts, depth, d)?;
        parent = Some(p);
        parent_name = Some(name);
    }
    Ok(Opened {
        backend: Box::new(SparseVhd {
            size,
            block_bytes: bs,
            bitmap_bytes: bitmap_bytes(bs),
            table_offset: d.table_offset,
            differencing,
            bitmap: RefCell::new(None),
        }),
        info: ImageInfo {
            format: if differencing {
                Format::VhdDifferencing
            } else {
                Format::VhdDynamic
            },
            path: None,
            virtual_bytes: size,
            logical_sector_bytes: Some(512),
            block_bytes: u64::from(bs),
            unique_id: Some(unique_id),
            timestamp: Some(f.timestamp),
            data_write_guid: None,
            parent_name,
        },
        parent,
    })
}

/// Find, open and check the parent of a differencing disk: the locators (W2ru relative, then
/// W2ku absolute, each also by file name next to the child and in `--parent-dir`), then the
/// header's parent name. The parent's unique id must be the one the child recorded, and its
/// timestamp the recorded one (the parent's footer timestamp, or the file's modification time
/// that Virtual PC recorded).
fn open_vhd_parent(
    path: Option<&Path>,
    opts: &OpenOptions,
    depth: usize,
    d: &vhdfmt::DynamicInfo,
) -> Result<(super::Image, String)> {
    let mut stored: Vec<String> = Vec::new();
    for code in ["W2ru", "W2ku", "MacX"] {
        for loc in d.parent_locators.iter().filter(|l| l.platform_code == code) {
            if let Some(p) = &loc.path {
                let p = p.strip_prefix("file://").unwrap_or(p).to_string();
                stored.push(p);
            }
        }
    }
    if let Some(n) = d.parent_name.as_ref().filter(|n| !n.is_empty()) {
        stored.push(n.clone());
    }
    let name = stored
        .iter()
        .find(|s| !s.is_empty())
        .cloned()
        .unwrap_or_default();
    if name.is_empty() {
        return Err(Error::corrupt(format!(
            "{}: differencing disk without a parent name or locator",
            super::display(path)
        )));
    }
    let candidates = parent_candidates(path, &stored, opts);
    let parent = open_parent(path, &candidates, &name, opts, depth, false)?;
    let shown_parent = super::display(parent.info().path.as_deref());
    if !matches!(
        parent.format(),
        Format::VhdFixed | Format::VhdDynamic | Format::VhdDifferencing
    ) {
        return Err(Error::invalid(format!(
            "{}: its parent {shown_parent} is a {} image, not a VHD",
            super::display(path),
            parent.format().name()
        )));
    }
    let pid = parent
        .unique_id()
        .map(|id| footer::hex(&id))
        .unwrap_or_default();
    if pid != d.parent_unique_id {
        return Err(Error::invalid(format!(
            "{}: its parent {shown_parent} has unique id {pid}, but the child was made from {}: not its parent (or the parent was replaced)",
            super::display(path),
            d.parent_unique_id
        )));
    }
    let footer_ts = parent.info().timestamp;
    let mtime = parent.info().path.as_deref().and_then(vhd_mtime);
    if footer_ts != Some(d.parent_timestamp) && mtime != Some(d.parent_timestamp) {
        return Err(Error::invalid(format!(
            "{}: its parent {shown_parent} has timestamp {} ({}), but the child recorded {} ({}): the parent changed after the child was made",
            super::display(path),
            footer_ts.unwrap_or(0),
            footer::timestamp_utc(footer_ts.unwrap_or(0)),
            d.parent_timestamp,
            footer::timestamp_utc(d.parent_timestamp)
        )));
    }
    Ok((parent, name))
}

/// A file's modification time in VHD seconds (since 2000-01-01T00:00:00Z).
fn vhd_mtime(path: &Path) -> Option<u32> {
    let m = std::fs::metadata(path).ok()?.modified().ok()?;
    let unix = m.duration_since(std::time::UNIX_EPOCH).ok()?.as_secs();
    let since = unix.checked_sub(u64::try_from(VHD_EPOCH_UNIX).ok()?)?;
    u32::try_from(since).ok()
}

/// A fixed disk: the file up to the footer.
struct FixedVhd {
    len: u64,
}

impl Backend for FixedVhd {
    fn virtual_bytes(&self) -> u64 {
        self.len
    }
    fn piece(&self, _file: &dyn Disk, offset: u64) -> Result<Piece> {
        Ok(Piece {
            len: self.len.saturating_sub(offset).min(1 << 30),
            source: Source::Host(offset),
        })
    }
}

/// A dynamic or differencing disk.
struct SparseVhd {
    size: u64,
    block_bytes: u32,
    bitmap_bytes: u64,
    table_offset: u64,
    differencing: bool,
    /// The bitmap of the last block read (BAT index, bytes).
    bitmap: RefCell<Option<(u64, Vec<u8>)>>,
}

impl SparseVhd {
    fn bat_entry(&self, file: &dyn Disk, block: u64) -> Result<u32> {
        let at = block
            .checked_mul(4)
            .and_then(|b| self.table_offset.checked_add(b))
            .ok_or_else(|| Error::corrupt("BAT offset overflows"))?;
        let mut b = [0u8; 4];
        file.read_at(at, &mut b)
            .map_err(|e| e.context(format!("BAT entry {block}")))?;
        Ok(u32::from_be_bytes(b))
    }

    /// Sectors `first..` of the block whose bits equal the first one's: (bit, count).
    fn bitmap_run(
        &self,
        file: &dyn Disk,
        block: u64,
        host: u64,
        first: u64,
        sectors: u64,
    ) -> Result<(bool, u64)> {
        let mut cache = self.bitmap.borrow_mut();
        if !matches!(&*cache, Some((b, _)) if *b == block) {
            let bytes = file
                .read_vec(host, self.bitmap_bytes)
                .map_err(|e| e.context(format!("bitmap of block {block} at 0x{host:x}")))?;
            *cache = Some((block, bytes));
        }
        let Some((_, bits)) = &*cache else {
            return Err(Error::corrupt("bitmap cache is empty"));
        };
        // spec: bit 7 of byte 0 is the block's first sector
        let bit = |s: u64| -> bool {
            let byte = usize::try_from(s / 8)
                .ok()
                .and_then(|i| bits.get(i))
                .copied();
            let shift = 7u64.saturating_sub(s % 8);
            byte.is_some_and(|b| (u64::from(b) >> shift) & 1 == 1)
        };
        let want = bit(first);
        let mut s = first.saturating_add(1);
        while s < sectors && bit(s) == want {
            s = s.saturating_add(1);
        }
        Ok((want, s.saturating_sub(first)))
    }
}

impl Backend for SparseVhd {
    fn virtual_bytes(&self) -> u64 {
        self.size
    }

    fn piece(&self, file: &dyn Disk, offset: u64) -> Result<Piece> {
        let bs = u64::from(self.block_bytes);
        // block_bytes is non-zero (checked at open)
        let block = offset.checked_div(bs).unwrap_or(0);
        let within = offset.checked_rem(bs).unwrap_or(0);
        let block_start = offset.saturating_sub(within);
        let block_end = block_start.saturating_add(bs).min(self.size);
        let to_block_end = block_end.saturating_sub(offset);
        let absent = if self.differencing {
            Source::Parent
        } else {
            Source::Zero
        };
        let entry = self.bat_entry(file, block)?;
        if entry == BAT_UNALLOCATED {
            return Ok(Piece {
                len: to_block_end,
                source: absent,
            });
        }
        let host = u64::from(entry).saturating_mul(SECTOR);
        let data = host.saturating_add(self.bitmap_bytes);
        let sectors = block_end.saturating_sub(block_start).div_ceil(SECTOR);
        let first = within / SECTOR;
        let (set, count) = self.bitmap_run(file, block, host, first, sectors)?;
        let run_end = block_start
            .saturating_add(first.saturating_add(count).saturating_mul(SECTOR))
            .min(block_end);
        let len = run_end.saturating_sub(offset);
        let source = if set {
            Source::Host(data.saturating_add(within))
        } else {
            absent
        };
        Ok(Piece { len, source })
    }
}

#[cfg(test)]
#[allow(
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::arithmetic_side_effects,
    clippy::as_conversions
)] // tests: a panic is a failed test
mod tests {
    use super::super::{Extent, ExtentKind, Image, OpenOptions};
    use super::*;
    use crate::vhd::dynamic::encode_header;
    use crate::vhd::footer::{encode, FooterFields};

    const BLOCK: u32 = 4096; // 8 sectors: one bitmap sector per block

    /// A dynamic VHD of `blocks` 4 KiB blocks; block 1 allocated with bitmap `bits` and every
    /// data byte 0xAB.
    fn dynamic(blocks: u32, bits: u8, tweak: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
        let size = u64::from(blocks * BLOCK);
        let mut f = FooterFields::fixed(size, [3; 16], 0, *b"win ", 0, *b"Wi2k", size);
        f.disk_type = DISK_TYPE_DYNAMIC;
        f.data_offset = 0x200;
        let mut v = vec![0u8; 0xa00];
        v[0x200..0x600].copy_from_slice(&encode_header(0x600, blocks, BLOCK, None));
        v[0x600..0x600 + blocks as usize * 4].fill(0xff);
        v[0x604..0x608].copy_from_slice(&(0xa00u32 / 512).to_be_bytes());
        let mut bitmap = vec![0u8; 512];
        bitmap[0] = bits;
        v.extend_from_slice(&bitmap);
        v.extend_from_slice(&[0xab; BLOCK as usize]);
        tweak(&mut v);
        let footer = encode(&f);
        v[..512].copy_from_slice(&footer);
        v.extend_from_slice(&footer);
        v
    }

    #[test]
    fn bitmap_zero_bits_read_as_zero() {
        // sectors 0-1 and 4 of block 1 present (bit 7 is sector 0)
        let img =
            Image::from_bytes(dynamic(4, 0b1100_1000, |_| {}), &OpenOptions::default()).unwrap();
        assert_eq!(img.format(), Format::VhdDynamic);
        let mut got = vec![0u8; 4 * BLOCK as usize];
        img.read_at(0, &mut got).unwrap();
        let mut want = vec![0u8; 4 * BLOCK as usize];
        for s in [0usize, 1, 4] {
            let at = BLOCK as usize + s * 512;
            want[at..at + 512].fill(0xab);
        }
        assert!(got == want);
        let ext: Vec<Extent> = img.extents().collect::<Result<_>>().unwrap();
        let e = |offset: u64, len: u64, kind| Extent { offset, len, kind };
        assert_eq!(
            ext,
            [
                e(0, 4096, ExtentKind::Zero),
                e(4096, 1024, ExtentKind::Data),
                e(5120, 1024, ExtentKind::Zero),
                e(6144, 512, ExtentKind::Data),
                e(6656, 3 * 512 + 2 * 4096, ExtentKind::Zero),
            ]
        );
    }

    #[test]
    fn damage_is_refused_with_the_reason() {
        let open = |v: Vec<u8>| Image::from_bytes(v, &OpenOptions::default());
        // header checksum
        let e = open(dynamic(4, 0xff, |v| v[0x210] ^= 1)).unwrap_err();
        assert!(e.message().contains("checksum"), "{e}");
        // a block past the end of the file: an error on read, not a panic
        let img = open(dynamic(4, 0xff, |v| {
            v[0x608..0x60c].copy_from_slice(&0x00ff_0000u32.to_be_bytes())
        }))
        .unwrap();
        let mut b = vec![0u8; 4 * BLOCK as usize];
        assert!(img.read_at(0, &mut b).is_err());
        // a BAT too small for the size
        let mut v = dynamic(4, 0xff, |_| {});
        let mut h: [u8; 1024] = v[0x200..0x600].try_into().unwrap();
        h[0x1c..0x20].copy_from_slice(&2u32.to_be_bytes());
        let s = crate::vhd::dynamic::checksum(&h);
        h[0x24..0x28].copy_from_slice(&s.to_be_bytes());
        v[0x200..0x600].copy_from_slice(&h);
        let e = open(v).unwrap_err();
        assert!(e.message().contains("BAT entries"), "{e}");
    }
}
