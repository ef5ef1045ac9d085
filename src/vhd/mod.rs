//! VHD ("Virtual Hard Disk Image Format Specification"): footer, CHS geometry, dynamic header.
//!
//! `probe` never fails: anything wrong is a finding, and a file with no footer is a raw disk.
//! Layouts and codecs live in `footer.rs` (the 512-byte footer), `geometry.rs` (CHS) and
//! `dynamic.rs` (the dynamic disk header and its BAT).
pub mod dynamic;
pub mod footer;
pub mod geometry;

use serde::Serialize;

use crate::disk::Disk;
use crate::finding::Finding;

pub use footer::{
    describe_creator, fixed_footer, qemu_sizes_by_current_size, qemu_virtual_size, resize_footer,
};
pub use geometry::chs_for_size;

use footer::{
    DISK_TYPE_DIFFERENCING, DISK_TYPE_DYNAMIC, DISK_TYPE_FIXED, FEATURE_RESERVED,
    FEATURE_TEMPORARY, FIXED_DATA_OFFSET, FIXED_DATA_OFFSET_32, FOOTER_SIZE, FORMAT_VERSION,
    LEGACY_FOOTER_SIZE,
};

/// What kind of image a file is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Format {
    Raw,
    VhdFixed,
    VhdDynamic,
    VhdDifferencing,
}

/// CHS geometry as stored in the footer (spec: cylinders u16, heads u8, sectors per track u8).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Chs {
    pub cylinders: u16,
    pub heads: u8,
    pub sectors_per_track: u8,
}

/// The decoded footer, every field, plus what we computed to compare.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Footer {
    pub cookie: String,
    pub features: u32,
    pub format_version: u32,
    pub data_offset: u64,
    pub timestamp: u32,
    /// ISO 8601 UTC of `timestamp` (seconds since 2000-01-01T00:00:00Z).
    pub timestamp_utc: String,
    pub creator_application: String,
    pub creator_version: u32,
    pub creator_host_os: String,
    pub original_size: u64,
    pub current_size: u64,
    pub geometry: Chs,
    /// Geometry the spec's algorithm gives for `current_size`.
    pub computed_geometry: Chs,
    pub disk_type: u32,
    pub checksum: u32,
    pub computed_checksum: u32,
    /// Lowercase hex, 32 digits.
    pub unique_id: String,
    pub saved_state: u8,
    /// Where the footer was found (byte offset in the file).
    pub offset: u64,
    /// 511-byte footer of images made before Virtual PC 2004.
    pub legacy_511: bool,
    /// What the creator application names (see [`describe_creator`]).
    pub creator_description: &'static str,
    /// The size QEMU (>= 10) gives this disk: the current size, or C*H*S*512 for creators it
    /// sizes by geometry (see [`qemu_sizes_by_current_size`]).
    pub qemu_virtual_bytes: u64,
    /// Every field as stored, reserved bytes included: [`footer::encode`] gives the footer back.
    #[serde(skip)]
    pub fields: footer::FooterFields,
}

/// Dynamic/differencing disk header facts (spec: "Dynamic Disk Header Format").
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DynamicInfo {
    pub table_offset: u64,
    pub header_version: u32,
    pub max_table_entries: u32,
    pub block_size: u32,
    pub checksum: u32,
    pub computed_checksum: u32,
    /// BAT entries that point at a block (not 0xFFFFFFFF), counted over at most the entries the
    /// file can hold.
    pub allocated_blocks: u64,
    pub parent_unique_id: String,
    pub parent_timestamp: u32,
    pub parent_name: Option<String>,
    /// Where the header was read (the footer's data offset).
    pub offset: u64,
    /// BAT entries actually read (fewer than `max_table_entries` when the table runs past the
    /// end of the file).
    pub bat_entries_counted: u64,
    /// Allocated blocks whose bitmap + data would extend past the data area of the file.
    pub blocks_outside_file: u64,
    /// Parent locators in use (differencing disks).
    pub parent_locators: Vec<dynamic::ParentLocator>,
}

/// A file seen as a disk image.
#[derive(Debug, Clone, Serialize)]
pub struct Image {
    pub format: Format,
    pub footer: Option<Footer>,
    pub dynamic: Option<DynamicInfo>,
    /// Bytes of virtual disk data readable at offset 0 of the file (raw: the file; fixed VHD:
    /// the file minus the footer; dynamic/differencing: 0, their data is not laid out flat).
    pub data_bytes: u64,
    /// The disk size the image claims (footer current size; raw: the file length).
    pub virtual_bytes: u64,
    pub findings: Vec<Finding>,
}

/// Look at a whole file and say what image it is.
///
/// Where the footer is looked for, in order (spec: "Hard Disk Footer Format"): the last 512
/// bytes; the last 511 bytes (footers of images made before Virtual PC 2004); the copy dynamic
/// disks keep at offset 0. A damaged end footer (bad checksum) gives way to a sound copy at
/// offset 0. Without a footer the file is a raw disk.
pub fn probe(file: &dyn Disk) -> Image {
    let len = file.len();
    let mut findings = Vec::new();
    let Some(found) = find_footer(file, &mut findings) else {
        return Image {
            format: Format::Raw,
            footer: None,
            dynamic: None,
            data_bytes: len,
            virtual_bytes: len,
            findings,
        };
    };
    let f = found.footer;
    // blocks of a dynamic disk lie before the footer at the end of the file
    let data_end = len.saturating_sub(found.size);
    check_footer(&f, &mut findings);
    let (format, data_bytes, dynamic) = match f.disk_type {
        DISK_TYPE_FIXED => (
            Format::VhdFixed,
            check_fixed(&f, len, found.size, &mut findings),
            None,
        ),
        DISK_TYPE_DYNAMIC | DISK_TYPE_DIFFERENCING => {
            let format = if f.disk_type == DISK_TYPE_DYNAMIC {
                Format::VhdDynamic
            } else {
                Format::VhdDifferencing
            };
            (format, 0, dynamic::read(file, &f, data_end, &mut findings))
        }
        other => {
            // Not a type we know: lay it out by what its data offset says.
            let fixed_like = is_fixed_data_offset(f.data_offset);
            findings.push(Finding::error(
                "vhd.footer.disk-type",
                format!(
                    "footer at 0x{:x}: disk type {other} is not fixed (2), dynamic (3) or differencing (4); treated as {} because the data offset is 0x{:x}",
                    f.offset,
                    if fixed_like { "fixed" } else { "dynamic" },
                    f.data_offset
                ),
            ));
            if fixed_like {
                (
                    Format::VhdFixed,
                    check_fixed(&f, len, found.size, &mut findings),
                    None,
                )
            } else {
                (
                    Format::VhdDynamic,
                    0,
                    dynamic::read(file, &f, data_end, &mut findings),
                )
            }
        }
    };
    Image {
        format,
        virtual_bytes: f.current_size,
        footer: Some(f),
        dynamic,
        data_bytes,
        findings,
    }
}

/// A footer, and how many bytes at the end of the file a footer takes (512; 511 for a legacy
/// footer; 0 when the end holds none and the copy at offset 0 is used).
struct Found {
    footer: Footer,
    size: u64,
}

/// Read and decode a footer at `offset` (`size` 512, or 511 padded with a zero byte). `None`
/// when the bytes are not there or the cookie is not "conectix".
fn footer_at(file: &dyn Disk, offset: u64, size: usize) -> Option<Footer> {
    let mut buf = [0u8; FOOTER_SIZE];
    let part = buf.get_mut(..size)?;
    file.read_at(offset, part).ok()?;
    footer::decode(&buf, offset, size == LEGACY_FOOTER_SIZE).ok()
}

fn checksum_ok(f: &Footer) -> bool {
    f.checksum == f.computed_checksum
}

fn is_sparse(f: &Footer) -> bool {
    f.disk_type == DISK_TYPE_DYNAMIC || f.disk_type == DISK_TYPE_DIFFERENCING
}

fn is_fixed_data_offset(o: u64) -> bool {
    o == FIXED_DATA_OFFSET || o == FIXED_DATA_OFFSET_32
}

fn find_footer(file: &dyn Disk, findings: &mut Vec<Finding>) -> Option<Found> {
    let len = file.len();
    let footer_size = u64::try_from(FOOTER_SIZE).ok()?; // 512: always converts
    let end = len
        .checked_sub(footer_size)
        .and_then(|at| footer_at(file, at, FOOTER_SIZE));
    // A copy at 0 is a different sector from the end footer only when the file has two.
    let copy = if len >= footer_size.saturating_mul(2) {
        footer_at(file, 0, FOOTER_SIZE)
    } else {
        None
    };
    if let Some(end) = end {
        if checksum_ok(&end) {
            if is_sparse(&end) {
                compare_copy(&end, copy.as_ref(), findings);
            }
            return Some(Found {
                footer: end,
                size: footer_size,
            });
        }
        if let Some(copy) = copy.filter(|c| checksum_ok(c) && is_sparse(c)) {
            findings.push(checksum_finding(&end));
            findings.push(Finding::warning(
                "vhd.footer.copy-at-zero",
                format!(
                    "the footer at the end of the file (0x{:x}) is damaged; using the sound copy at offset 0",
                    end.offset
                ),
            ));
            return Some(Found {
                footer: copy,
                size: footer_size,
            });
        }
        return Some(Found {
            footer: end,
            size: footer_size,
        });
    }
    let legacy_size = u64::try_from(LEGACY_FOOTER_SIZE).ok()?; // 511: always converts
    if let Some(legacy) = len
        .checked_sub(legacy_size)
        .and_then(|at| footer_at(file, at, LEGACY_FOOTER_SIZE))
    {
        findings.push(Finding::warning(
            "vhd.footer.legacy-511",
            format!(
                "511-byte footer at 0x{:x} (made before Virtual PC 2004); Azure and most tools expect 512 bytes",
                legacy.offset
            ),
        ));
        return Some(Found {
            footer: legacy,
            size: legacy_size,
        });
    }
    let copy = copy?;
    if is_sparse(&copy) {
        findings.push(Finding::warning(
            "vhd.footer.copy-at-zero",
            format!(
                "no footer at the end of the file (0x{len:x} bytes: truncated or overwritten?); using the copy at offset 0"
            ),
        ));
        Some(Found {
            footer: copy,
            size: 0,
        })
    } else {
        findings.push(Finding::warning(
            "vhd.footer.copy-at-zero",
            format!(
                "offset 0 holds a VHD footer of disk type {} but the end of the file has none; only dynamic disks keep a copy there, so the file is treated as a raw disk",
                copy.disk_type
            ),
        ));
        None
    }
}

/// Dynamic disks keep a copy of the footer at offset 0; it should match the one at the end.
fn compare_copy(end: &Footer, copy: Option<&Footer>, findings: &mut Vec<Finding>) {
    match copy {
        None => findings.push(Finding::warning(
            "vhd.footer.copy-missing",
            "dynamic disk without the footer copy at offset 0 (spec: \"Dynamic Disk Header Format\")",
        )),
        Some(c) if c.fields != end.fields => findings.push(Finding::warning(
            "vhd.footer.copy-mismatch",
            format!(
                "the footer copy at offset 0 differs from the footer at 0x{:x}",
                end.offset
            ),
        )),
        Some(_) => {}
    }
}

fn checksum_finding(f: &Footer) -> Finding {
    Finding::error(
        "vhd.footer.checksum",
        format!(
            "footer checksum 0x{:08x}, computed 0x{:08x} (footer at 0x{:x})",
            f.checksum, f.computed_checksum, f.offset
        ),
    )
}

/// Findings on the footer fields themselves (any disk type).
fn check_footer(f: &Footer, findings: &mut Vec<Finding>) {
    let at = f.offset;
    if !checksum_ok(f) {
        findings.push(checksum_finding(f));
    }
    if f.format_version != FORMAT_VERSION {
        findings.push(Finding::warning(
            "vhd.footer.version",
            format!(
                "footer at 0x{at:x}: file format version 0x{:08x}, expected 0x{FORMAT_VERSION:08x}",
                f.format_version
            ),
        ));
    }
    if f.features & FEATURE_RESERVED == 0 {
        findings.push(Finding::warning(
            "vhd.footer.features",
            format!(
                "footer at 0x{at:x}: features 0x{:08x} lack the reserved bit 0x2 the spec requires",
                f.features
            ),
        ));
    }
    let unknown = f.features & !(FEATURE_RESERVED | FEATURE_TEMPORARY);
    if unknown != 0 {
        findings.push(Finding::warning(
            "vhd.footer.features",
            format!(
                "footer at 0x{at:x}: features 0x{:08x} set bits 0x{unknown:x} the spec does not define",
                f.features
            ),
        ));
    }
    if f.features & FEATURE_TEMPORARY != 0 {
        findings.push(Finding::info(
            "vhd.footer.features",
            format!("footer at 0x{at:x}: marked temporary (features bit 0x1): a candidate for deletion on shutdown"),
        ));
    }
    if f.saved_state != 0 {
        findings.push(Finding::warning(
            "vhd.saved-state",
            format!(
                "footer at 0x{at:x}: saved state is 0x{:02x}: the disk belongs to a VM saved mid-run; its data may not be consistent",
                f.saved_state
            ),
        ));
    }
    if !f.current_size.is_multiple_of(512) {
        findings.push(Finding::error(
            "vhd.footer.current-size-unaligned",
            format!(
                "footer at 0x{at:x}: current size {} is not a multiple of 512 ({} bytes over)",
                f.current_size,
                f.current_size % 512
            ),
        ));
    }
    if f.geometry != f.computed_geometry {
        let creator = footer::printable(&f.fields.creator_application);
        if f.geometry.is_max() && f.fields.creator_application == *b"qem2" {
            findings.push(Finding::info(
                "vhd.footer.geometry",
                format!(
                    "footer at 0x{at:x}: CHS 65535/16/255 (qemu-img force_size: size taken from the current size, not CHS; the spec computes {})",
                    f.computed_geometry
                ),
            ));
        } else {
            findings.push(Finding::warning(
                "vhd.footer.geometry",
                format!(
                    "footer at 0x{at:x}: stored CHS {} ({} bytes) differs from the CHS {} the spec computes for the current size {} (creator {creator:?})",
                    f.geometry,
                    f.geometry.size_bytes(),
                    f.computed_geometry,
                    f.current_size
                ),
            ));
        }
    }
    if f.qemu_virtual_bytes != f.current_size {
        findings.push(Finding::warning(
            "vhd.footer.qemu-size",
            format!(
                "footer at 0x{at:x}: QEMU sizes disks of creator {:?} by CHS {}: it will see {} bytes, not the current size {}",
                footer::printable(&f.fields.creator_application),
                f.geometry,
                f.qemu_virtual_bytes,
                f.current_size
            ),
        ));
    }
}

/// Fixed-disk checks; returns the data bytes (the file before the footer).
fn check_fixed(f: &Footer, len: u64, footer_len: u64, findings: &mut Vec<Finding>) -> u64 {
    let at = f.offset;
    if !is_fixed_data_offset(f.data_offset) {
        findings.push(Finding::warning(
            "vhd.footer.data-offset",
            format!(
                "footer at 0x{at:x}: fixed disk with data offset 0x{:x}, expected 0xffffffffffffffff (or 0xffffffff)",
                f.data_offset
            ),
        ));
    }
    // the footer was read from the end, so the file holds at least footer_len bytes
    let data = len.saturating_sub(footer_len);
    if f.current_size > data {
        findings.push(Finding::error(
            "vhd.footer.size-mismatch",
            format!(
                "fixed disk: footer current size {} bytes exceeds the {data} data bytes in the file ({len} bytes minus the {footer_len}-byte footer); {} bytes are missing",
                f.current_size,
                f.current_size.abs_diff(data)
            ),
        ));
    } else if f.current_size < data {
        findings.push(Finding::error(
            "vhd.footer.size-mismatch",
            format!(
                "fixed disk: footer current size {} bytes, but the file holds {data} data bytes before the footer ({len} bytes minus {footer_len}); {} bytes more than claimed",
                f.current_size,
                data.abs_diff(f.current_size)
            ),
        ));
    }
    data
}

#[cfg(test)]
#[allow(
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::arithmetic_side_effects,
    clippy::as_conversions
)] // tests: a panic is a failed test
mod tests {
    use super::footer::{encode, FooterFields, HOST_OS_WINDOWS};
    use super::*;
    use crate::disk::MemDisk;
    use crate::finding::Severity;

    const MIB: u64 = 1 << 20;

    fn ids(img: &Image) -> Vec<&'static str> {
        img.findings.iter().map(|f| f.id).collect()
    }

    fn find<'a>(img: &'a Image, id: &str) -> &'a Finding {
        img.findings
            .iter()
            .find(|f| f.id == id)
            .unwrap_or_else(|| panic!("no finding {id} in {:#?}", img.findings))
    }

    fn fields(size: u64, app: &[u8; 4]) -> FooterFields {
        FooterFields::fixed(
            size,
            [0x11; 16],
            0x3296_e66f,
            *app,
            0x000a_0000,
            HOST_OS_WINDOWS,
            size,
        )
    }

    /// `size` zero bytes of data and a footer made of `f`.
    fn fixed_with(size: u64, f: &FooterFields) -> MemDisk {
        let mut v = vec![0u8; size as usize];
        v.extend_from_slice(&encode(f));
        MemDisk::new(v)
    }

    fn fixed(size: u64, app: &[u8; 4]) -> MemDisk {
        fixed_with(size, &fields(size, app))
    }

    /// A dynamic disk laid out as qemu-img does: footer copy at 0, header at 0x200, BAT at
    /// 0x600, then the blocks named in `allocated` (bitmap + data each), then the footer.
    /// `tweak` may change the footer fields and the header bytes before they are written.
    fn dynamic_with(
        size: u64,
        block: u32,
        allocated: &[u32],
        parent: Option<([u8; 16], u32, &str)>,
        tweak: impl FnOnce(&mut FooterFields, &mut [u8; dynamic::HEADER_SIZE]),
    ) -> Vec<u8> {
        let entries = u32::try_from(size.div_ceil(u64::from(block))).unwrap();
        let bat_bytes = (u64::from(entries) * 4).div_ceil(512) * 512;
        let mut f = fields(size, b"vpc ");
        f.data_offset = 0x200;
        f.disk_type = if parent.is_some() {
            DISK_TYPE_DIFFERENCING
        } else {
            DISK_TYPE_DYNAMIC
        };
        let mut h = dynamic::encode_header(0x600, entries, block, parent);
        tweak(&mut f, &mut h);
        let span = dynamic::bitmap_bytes(block) + u64::from(block);
        let mut v = vec![0u8; (0x600 + bat_bytes) as usize];
        v[0x200..0x600].copy_from_slice(&h);
        v[0x600..0x600 + entries as usize * 4].fill(0xff);
        for &i in allocated {
            let sector = u32::try_from(v.len() / 512).unwrap();
            let e = 0x600 + i as usize * 4;
            v[e..e + 4].copy_from_slice(&sector.to_be_bytes());
            v.resize(v.len() + span as usize, 0);
        }
        let footer = encode(&f);
        v[..512].copy_from_slice(&footer);
        v.extend_from_slice(&footer);
        v
    }

    fn dynamic(size: u64, allocated: &[u32]) -> Vec<u8> {
        dynamic_with(
            size,
            dynamic::DEFAULT_BLOCK_SIZE,
            allocated,
            None,
            |_, _| {},
        )
    }

    /// Recompute the header checksum after a test edits header bytes.
    fn reseal(h: &mut [u8; dynamic::HEADER_SIZE]) {
        let sum = dynamic::checksum(h);
        h[0x24..0x28].copy_from_slice(&sum.to_be_bytes());
    }

    #[test]
    fn tiny_files_are_raw() {
        for n in [0usize, 1, 511, 512, 513, 1023, 1024] {
            let img = probe(&MemDisk::new(vec![0; n]));
            assert_eq!(img.format, Format::Raw, "{n}");
            assert_eq!((img.data_bytes, img.virtual_bytes), (n as u64, n as u64));
            assert!(img.findings.is_empty());
        }
        for n in [512usize, 4096] {
            assert_eq!(probe(&MemDisk::new(vec![0xff; n])).format, Format::Raw);
        }
    }

    #[test]
    fn sound_fixed_disks_have_no_findings() {
        // qemu-img's own footer bytes (10M rounded up to 302/4/17)
        let bytes = footer::tests::full(&footer::tests::QEMU_FIXED_10M_HEAD);
        let size = 0xa0_7000;
        let mut v = vec![0u8; size];
        v.extend_from_slice(&bytes);
        let img = probe(&MemDisk::new(v));
        assert_eq!(img.format, Format::VhdFixed);
        assert_eq!(
            (img.data_bytes, img.virtual_bytes),
            (size as u64, size as u64)
        );
        assert!(img.findings.is_empty(), "{:#?}", img.findings);
        // Hyper-V style: whole MiB, spec geometry
        let img = probe(&fixed(MIB, b"win "));
        assert!(img.findings.is_empty(), "{:#?}", img.findings);
        let f = img.footer.unwrap();
        assert_eq!((f.offset, f.legacy_511), (MIB, false));
        // an empty fixed disk: just a footer
        let img = probe(&fixed(0, b"win "));
        assert_eq!((img.format, img.data_bytes), (Format::VhdFixed, 0));
        assert!(img.findings.is_empty(), "{:#?}", img.findings);
    }

    #[test]
    fn force_size_geometry_is_info() {
        let bytes = footer::tests::full(&footer::tests::QEMU_FORCE_SIZE_10M_HEAD);
        let mut v = vec![0u8; 10 << 20];
        v.extend_from_slice(&bytes);
        let img = probe(&MemDisk::new(v));
        assert_eq!(ids(&img), ["vhd.footer.geometry"]);
        assert_eq!(img.findings[0].severity, Severity::Info);
        // the same geometry from another creator is a warning
        let mut f = fields(10 * MIB, b"win ");
        f.geometry = geometry::MAX_CHS;
        let img = probe(&fixed_with(10 * MIB, &f));
        assert_eq!(
            find(&img, "vhd.footer.geometry").severity,
            Severity::Warning
        );
    }

    #[test]
    fn chs_sized_creators_get_a_qemu_size_warning() {
        // 10 MiB is not CHS-representable: QEMU sizes a "vpc " disk at 301*4*17 sectors
        let img = probe(&fixed(10 * MIB, b"vpc "));
        let w = find(&img, "vhd.footer.qemu-size");
        assert!(
            w.message.contains("10479616") && w.message.contains("10485760"),
            "{}",
            w.message
        );
        assert_eq!(img.footer.unwrap().qemu_virtual_bytes, 10_479_616);
        assert!(probe(&fixed(10 * MIB, b"win ")).findings.is_empty());
    }

    #[test]
    fn bad_checksum() {
        let mut d = fixed(MIB, b"win ").into_inner();
        d[MIB as usize + 0x30] ^= 0x01; // current size changed, checksum not
        let img = probe(&MemDisk::new(d));
        assert_eq!(img.format, Format::VhdFixed);
        let e = find(&img, "vhd.footer.checksum");
        assert_eq!(e.severity, Severity::Error);
        let f = img.footer.as_ref().unwrap();
        assert_eq!(
            e.message,
            format!(
                "footer checksum 0x{:08x}, computed 0x{:08x} (footer at 0x100000)",
                f.checksum, f.computed_checksum
            )
        );
    }

    #[test]
    fn size_mismatch_says_both_numbers() {
        let mut f = fields(MIB, b"win ");
        f.current_size = 2 * MIB;
        f.geometry = chs_for_size(2 * MIB);
        let img = probe(&fixed_with(MIB, &f));
        let e = find(&img, "vhd.footer.size-mismatch");
        assert_eq!(e.severity, Severity::Error);
        assert!(
            e.message.contains("2097152") && e.message.contains("1048576"),
            "{}",
            e.message
        );
        assert_eq!((img.data_bytes, img.virtual_bytes), (MIB, 2 * MIB));
        // smaller than the data
        f.current_size = MIB / 2;
        f.geometry = chs_for_size(MIB / 2);
        let img = probe(&fixed_with(MIB, &f));
        assert!(find(&img, "vhd.footer.size-mismatch")
            .message
            .contains("524288"));
    }

    #[test]
    fn overflowing_sizes_do_not_panic() {
        let mut f = fields(0, b"win ");
        f.current_size = u64::MAX;
        f.original_size = u64::MAX;
        f.geometry = chs_for_size(u64::MAX);
        let img = probe(&fixed_with(4096, &f));
        assert_eq!(img.virtual_bytes, u64::MAX);
        let got = ids(&img);
        assert!(got.contains(&"vhd.footer.size-mismatch"), "{got:?}");
        assert!(
            got.contains(&"vhd.footer.current-size-unaligned"),
            "{got:?}"
        );
        // the same as a dynamic disk: the table cannot address it
        let v = dynamic_with(4 * MIB, dynamic::DEFAULT_BLOCK_SIZE, &[], None, |f, _| {
            f.current_size = u64::MAX;
        });
        let img = probe(&MemDisk::new(v));
        assert!(ids(&img).contains(&"vhd.dynamic.table-too-small"));
    }

    #[test]
    fn all_ff_footer_does_not_panic() {
        let mut v = vec![0u8; 4096];
        v.extend_from_slice(b"conectix");
        v.extend_from_slice(&[0xff; 504]);
        let img = probe(&MemDisk::new(v));
        let got = ids(&img);
        for id in [
            "vhd.footer.checksum",
            "vhd.footer.version",
            "vhd.footer.features",
            "vhd.saved-state",
            "vhd.footer.current-size-unaligned",
            "vhd.footer.disk-type",
            "vhd.footer.size-mismatch",
        ] {
            assert!(got.contains(&id), "{id} missing from {got:?}");
        }
        // data offset all ones: laid out as fixed
        assert_eq!(img.format, Format::VhdFixed);
        // the same with a data offset that points nowhere: dynamic, header outside the file
        let mut v = vec![0u8; 4096];
        let mut b = [0xffu8; 512];
        b[..8].copy_from_slice(b"conectix");
        b[0x10..0x18].copy_from_slice(&0xffff_fff0_u64.to_be_bytes());
        v.extend_from_slice(&b);
        let img = probe(&MemDisk::new(v));
        assert_eq!(img.format, Format::VhdDynamic);
        assert!(ids(&img).contains(&"vhd.dynamic.header-outside-file"));
    }

    #[test]
    fn field_findings() {
        let mut f = fields(MIB, b"win ");
        f.format_version = 0x0002_0000;
        f.features = 0;
        f.saved_state = 1;
        f.data_offset = 0;
        let img = probe(&fixed_with(MIB, &f));
        let got = ids(&img);
        for id in [
            "vhd.footer.version",
            "vhd.footer.features",
            "vhd.saved-state",
            "vhd.footer.data-offset",
        ] {
            assert!(got.contains(&id), "{id} missing from {got:?}");
        }
        assert!(!got.contains(&"vhd.footer.checksum"));
        // the spec's 32-bit data offset is fine
        f = fields(MIB, b"win ");
        f.data_offset = 0xffff_ffff;
        assert!(probe(&fixed_with(MIB, &f)).findings.is_empty());
        // unaligned current size
        f = fields(MIB, b"win ");
        f.current_size = MIB - 1;
        let img = probe(&fixed_with(MIB - 1, &f));
        assert_eq!(ids(&img), ["vhd.footer.current-size-unaligned"]);
    }

    #[test]
    fn legacy_511_byte_footer() {
        let mut d = fixed(MIB, b"vpc ").into_inner();
        assert_eq!(d.pop(), Some(0)); // the last reserved byte
        let img = probe(&MemDisk::new(d));
        assert_eq!(img.format, Format::VhdFixed);
        assert_eq!(img.data_bytes, MIB);
        assert!(img.footer.as_ref().unwrap().legacy_511);
        assert_eq!(img.footer.as_ref().unwrap().offset, MIB);
        assert_eq!(
            find(&img, "vhd.footer.legacy-511").severity,
            Severity::Warning
        );
        assert!(!ids(&img).contains(&"vhd.footer.checksum"));
        // a 511-byte file that is only a legacy footer
        let mut only = encode(&fields(0, b"vpc ")).to_vec();
        only.pop();
        let img = probe(&MemDisk::new(only));
        assert_eq!((img.format, img.data_bytes), (Format::VhdFixed, 0));
    }

    #[test]
    fn dynamic_disk_counts_blocks() {
        let img = probe(&MemDisk::new(dynamic(10 * MIB, &[0, 3])));
        assert_eq!(img.format, Format::VhdDynamic);
        assert_eq!((img.data_bytes, img.virtual_bytes), (0, 10 * MIB));
        let d = img.dynamic.as_ref().unwrap();
        assert_eq!(d.allocated_blocks, 2);
        assert_eq!(d.bat_entries_counted, 5);
        assert_eq!(d.blocks_outside_file, 0);
        assert_eq!(d.parent_name, None);
        // "vpc " sizes by CHS in QEMU; 10 MiB is not CHS-representable
        assert_eq!(ids(&img), ["vhd.footer.qemu-size"]);
    }

    #[test]
    fn differencing_disk() {
        let v = dynamic_with(
            4 * MIB,
            dynamic::DEFAULT_BLOCK_SIZE,
            &[1],
            Some(([0xab; 16], 7, "base.vhd")),
            |f, _| f.creator_application = *b"win ",
        );
        let img = probe(&MemDisk::new(v));
        assert_eq!(img.format, Format::VhdDifferencing);
        assert!(img.findings.is_empty(), "{:#?}", img.findings);
        let d = img.dynamic.unwrap();
        assert_eq!(d.parent_name.as_deref(), Some("base.vhd"));
        assert_eq!(d.parent_unique_id, "ab".repeat(16));
        assert_eq!(d.allocated_blocks, 1);
        assert!(d.parent_locators.is_empty());
    }

    #[test]
    fn parent_locator_paths() {
        let mut v = dynamic_with(
            4 * MIB,
            dynamic::DEFAULT_BLOCK_SIZE,
            &[],
            Some(([0xab; 16], 7, "base.vhd")),
            |_, _| {},
        );
        let path: Vec<u8> = "C:\\vms\\base.vhd"
            .encode_utf16()
            .flat_map(u16::to_le_bytes)
            .collect();
        v[0x700..0x700 + path.len()].copy_from_slice(&path);
        let mut h: [u8; dynamic::HEADER_SIZE] = v[0x200..0x600].try_into().unwrap();
        h[0x240..0x244].copy_from_slice(b"W2ku"); // platform code
        h[0x244..0x248].copy_from_slice(&512u32.to_be_bytes()); // data space
        h[0x248..0x24c].copy_from_slice(&(path.len() as u32).to_be_bytes()); // data length
        h[0x250..0x258].copy_from_slice(&0x700u64.to_be_bytes()); // data offset
        h[0x258..0x25c].copy_from_slice(b"W2ru"); // a second locator pointing nowhere
        h[0x25c..0x260].copy_from_slice(&u32::MAX.to_be_bytes());
        h[0x260..0x264].copy_from_slice(&u32::MAX.to_be_bytes());
        h[0x268..0x270].copy_from_slice(&u64::MAX.to_be_bytes());
        reseal(&mut h);
        v[0x200..0x600].copy_from_slice(&h);
        let img = probe(&MemDisk::new(v));
        assert!(
            img.findings.iter().all(|f| f.id == "vhd.footer.qemu-size"),
            "{:#?}",
            img.findings
        );
        let locs = &img.dynamic.as_ref().unwrap().parent_locators;
        assert_eq!(locs.len(), 2);
        assert_eq!(locs[0].platform_code, "W2ku");
        assert_eq!(locs[0].path.as_deref(), Some("C:\\vms\\base.vhd"));
        assert_eq!(
            (locs[1].platform_code.as_str(), locs[1].path.as_deref()),
            ("W2ru", None)
        );
        let json = serde_json::to_value(&img).unwrap();
        assert_eq!(json["format"], "vhd-differencing");
        assert_eq!(json["dynamic"]["parent_name"], "base.vhd");
        assert!(json["footer"].get("fields").is_none());
    }

    #[test]
    fn damaged_end_footer_uses_the_copy() {
        let mut v = dynamic(4 * MIB, &[]);
        let n = v.len();
        v[n - 512 + 0x30] ^= 0x80; // end footer current size: checksum now wrong
        let img = probe(&MemDisk::new(v.clone()));
        assert_eq!(img.format, Format::VhdDynamic);
        assert_eq!(img.footer.as_ref().unwrap().offset, 0);
        assert_eq!(img.virtual_bytes, 4 * MIB);
        let got = ids(&img);
        assert!(got.contains(&"vhd.footer.copy-at-zero"), "{got:?}");
        assert!(got.contains(&"vhd.footer.checksum"), "{got:?}");
        // the end footer cut off: the last block ends the file and is still inside it
        let mut cut = dynamic(4 * MIB, &[1]);
        cut.truncate(cut.len() - 512);
        let img = probe(&MemDisk::new(cut));
        assert_eq!(
            ids(&img),
            ["vhd.footer.copy-at-zero", "vhd.footer.qemu-size"]
        );
        assert_eq!(img.dynamic.unwrap().allocated_blocks, 1);
        // the end footer gone altogether (zeroed)
        v[n - 512..].fill(0);
        let img = probe(&MemDisk::new(v));
        assert_eq!(img.format, Format::VhdDynamic);
        assert_eq!(
            find(&img, "vhd.footer.copy-at-zero").severity,
            Severity::Warning
        );
    }

    #[test]
    fn copy_mismatch_and_missing() {
        let mut v = dynamic(4 * MIB, &[]);
        let mut f = FooterFields::from_bytes(v[..512].try_into().unwrap());
        f.timestamp += 1;
        v[..512].copy_from_slice(&encode(&f));
        assert!(ids(&probe(&MemDisk::new(v.clone()))).contains(&"vhd.footer.copy-mismatch"));
        v[..512].fill(0);
        assert!(ids(&probe(&MemDisk::new(v))).contains(&"vhd.footer.copy-missing"));
    }

    #[test]
    fn fixed_footer_at_zero_only_is_raw() {
        let mut v = encode(&fields(MIB, b"win ")).to_vec();
        v.resize(MIB as usize, 0);
        let img = probe(&MemDisk::new(v));
        assert_eq!(img.format, Format::Raw);
        assert_eq!(img.data_bytes, MIB);
        assert_eq!(ids(&img), ["vhd.footer.copy-at-zero"]);
    }

    #[test]
    fn dynamic_header_checksum() {
        let v = dynamic_with(4 * MIB, dynamic::DEFAULT_BLOCK_SIZE, &[], None, |_, h| {
            h[0x30] = 1; // a parent id byte, checksum not updated
        });
        let img = probe(&MemDisk::new(v));
        let e = find(&img, "vhd.dynamic.header-checksum");
        assert!(
            e.message
                .starts_with("dynamic disk header at 0x200: checksum 0x"),
            "{}",
            e.message
        );
        // wrong cookie: no header
        let v = dynamic_with(4 * MIB, dynamic::DEFAULT_BLOCK_SIZE, &[], None, |_, h| {
            h[0] = 0;
            reseal(h);
        });
        let img = probe(&MemDisk::new(v));
        assert!(img.dynamic.is_none());
        assert_eq!(img.format, Format::VhdDynamic);
        assert!(ids(&img).contains(&"vhd.dynamic.header-cookie"));
    }

    #[test]
    fn hostile_bat() {
        // max table entries 2^32-1 in a file of a few KiB: counted over what the file holds
        let v = dynamic_with(4 * MIB, dynamic::DEFAULT_BLOCK_SIZE, &[0], None, |_, h| {
            h[0x1c..0x20].copy_from_slice(&u32::MAX.to_be_bytes());
            reseal(h);
        });
        let len = v.len() as u64;
        let img = probe(&MemDisk::new(v));
        let d = img.dynamic.as_ref().unwrap();
        assert_eq!(d.max_table_entries, u32::MAX);
        assert_eq!(d.bat_entries_counted, (len - 0x600) / 4);
        assert!(ids(&img).contains(&"vhd.dynamic.bat-outside-file"));
        // table offset beyond the file and near u64::MAX
        for table in [len + 4096, u64::MAX - 2] {
            let v = dynamic_with(4 * MIB, dynamic::DEFAULT_BLOCK_SIZE, &[], None, |_, h| {
                h[0x10..0x18].copy_from_slice(&table.to_be_bytes());
                reseal(h);
            });
            let img = probe(&MemDisk::new(v));
            assert_eq!(img.dynamic.as_ref().unwrap().bat_entries_counted, 0);
            assert!(ids(&img).contains(&"vhd.dynamic.bat-outside-file"));
        }
        // a BAT entry pointing past the end of the file
        let mut v = dynamic(4 * MIB, &[]);
        v[0x604..0x608].copy_from_slice(&0xffff_fff0_u32.to_be_bytes());
        let img = probe(&MemDisk::new(v));
        assert_eq!(img.dynamic.as_ref().unwrap().blocks_outside_file, 1);
        assert!(find(&img, "vhd.dynamic.block-outside-file")
            .message
            .contains("BAT entry 1"));
        // block size zero and not a power of two
        for (bs, sev) in [(0u32, Severity::Error), (3 * 512, Severity::Warning)] {
            let v = dynamic_with(4 * MIB, dynamic::DEFAULT_BLOCK_SIZE, &[], None, |_, h| {
                h[0x20..0x24].copy_from_slice(&bs.to_be_bytes());
                reseal(h);
            });
            let img = probe(&MemDisk::new(v));
            assert_eq!(find(&img, "vhd.dynamic.block-size").severity, sev);
        }
    }

    #[test]
    fn truncated_images_do_not_panic() {
        let v = dynamic(4 * MIB, &[0, 1]);
        for cut in [1usize, 511, 512, 513, 1024, 0x600, 0x700, v.len() - 513] {
            let _ = probe(&MemDisk::new(v[..cut].to_vec()));
            let _ = probe(&MemDisk::new(v[v.len() - cut..].to_vec()));
        }
        let d = fixed(4096, b"win ").into_inner();
        for cut in 0..d.len() {
            let _ = probe(&MemDisk::new(d[cut..].to_vec()));
        }
    }

    #[test]
    fn mutated_images_do_not_panic() {
        // deterministic xorshift mutations of footers, header and BAT, checksums made valid
        // half of the time so that the checks behind them run too
        let base = dynamic_with(256 << 10, 64 << 10, &[0, 1], None, |_, _| {});
        let mut x = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for round in 0..1000 {
            let mut v = base.clone();
            let n = v.len();
            for _ in 0..(next() % 8 + 1) {
                let r = next();
                let pos = match r % 3 {
                    0 => (r >> 8) as usize % 512,
                    1 => 0x200 + (r >> 8) as usize % 0x500,
                    _ => n - 512 + (r >> 8) as usize % 512,
                };
                v[pos] = (r >> 40) as u8;
            }
            if round % 2 == 0 {
                for at in [0, n - 512] {
                    let sum = footer::checksum(v[at..at + 512].try_into().unwrap());
                    v[at + 0x40..at + 0x44].copy_from_slice(&sum.to_be_bytes());
                }
                let mut h: [u8; dynamic::HEADER_SIZE] = v[0x200..0x600].try_into().unwrap();
                reseal(&mut h);
                v[0x200..0x600].copy_from_slice(&h);
            }
            let img = probe(&MemDisk::new(v));
            let _ = serde_json::to_string(&img).unwrap();
        }
    }

    /// qemu-img, or None (skipped outside CI; under CI a missing tool fails the test).
    fn qemu_img() -> Option<std::path::PathBuf> {
        let ok = std::process::Command::new("qemu-img")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
        if ok {
            return Some("qemu-img".into());
        }
        let msg = "qemu-img not found: install it with `apt-get install qemu-utils`";
        assert!(std::env::var_os("CI").is_none(), "{msg}");
        eprintln!("skipped: {msg}");
        None
    }

    fn run(args: &[&str], dir: &std::path::Path) -> String {
        let out = std::process::Command::new("qemu-img")
            .args(args)
            .current_dir(dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "qemu-img {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// "virtual-size" from `qemu-img info --output=json -f vpc`.
    fn qemu_virtual_size(dir: &std::path::Path, name: &str) -> u64 {
        let out = run(&["info", "--output=json", "-f", "vpc", name], dir);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        v["virtual-size"].as_u64().unwrap()
    }

    fn open(path: &std::path::Path) -> crate::disk::MmapDisk {
        crate::disk::MmapDisk::open(path, crate::disk::Access::ReadOnly).unwrap()
    }

    #[test]
    fn images_made_by_qemu_img() {
        if qemu_img().is_none() {
            return;
        }
        let dir = std::env::temp_dir().join(format!("vhdtool-vhd-qemu-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        // fixed, CHS-rounded
        for size in ["1M", "10M", "100M"] {
            let name = format!("fixed-{size}.vhd");
            run(
                &[
                    "create",
                    "-q",
                    "-f",
                    "vpc",
                    "-o",
                    "subformat=fixed",
                    &name,
                    size,
                ],
                &dir,
            );
            let img = probe(&open(&dir.join(&name)));
            assert_eq!(img.format, Format::VhdFixed, "{name}");
            assert!(img.findings.is_empty(), "{name}: {:#?}", img.findings);
            assert_eq!(img.virtual_bytes, qemu_virtual_size(&dir, &name), "{name}");
            let f = img.footer.unwrap();
            assert_eq!(f.geometry, chs_for_size(f.current_size));
            assert_eq!(Some(f.geometry), geometry::qemu_round_up(f.original_size));
            assert_eq!(f.creator_application, "qemu");
        }
        // force_size, from a raw file with data
        let raw = dir.join("r.img");
        let mut data = vec![0u8; 6 * MIB as usize];
        data[0] = 1;
        data[5 * MIB as usize] = 2;
        std::fs::write(&raw, &data).unwrap();
        run(
            &[
                "convert",
                "-O",
                "vpc",
                "-o",
                "subformat=fixed,force_size=on",
                "r.img",
                "fs.vhd",
            ],
            &dir,
        );
        let img = probe(&open(&dir.join("fs.vhd")));
        assert_eq!(img.format, Format::VhdFixed);
        assert_eq!((img.data_bytes, img.virtual_bytes), (6 * MIB, 6 * MIB));
        assert_eq!(ids(&img), ["vhd.footer.geometry"]);
        assert_eq!(img.findings[0].severity, Severity::Info);
        assert_eq!(img.virtual_bytes, qemu_virtual_size(&dir, "fs.vhd"));
        // the converter's own footer for this disk is accepted by qemu-img likewise
        let f = img.footer.unwrap();
        let mut mine = data.clone();
        mine.extend_from_slice(&fixed_footer(
            6 * MIB,
            [0x22; 16],
            f.timestamp,
            *b"win ",
            0x000a_0000,
            HOST_OS_WINDOWS,
            6 * MIB,
        ));
        std::fs::write(dir.join("mine.vhd"), &mine).unwrap();
        assert_eq!(qemu_virtual_size(&dir, "mine.vhd"), 6 * MIB);
        assert!(probe(&MemDisk::new(mine)).findings.is_empty());
        // dynamic: blocks 0 and 2 of 2 MiB hold data
        run(&["convert", "-O", "vpc", "r.img", "d.vhd"], &dir);
        let img = probe(&open(&dir.join("d.vhd")));
        assert_eq!(img.format, Format::VhdDynamic);
        assert!(img.findings.is_empty(), "{:#?}", img.findings);
        assert_eq!(img.virtual_bytes, qemu_virtual_size(&dir, "d.vhd"));
        let d = img.dynamic.unwrap();
        assert_eq!(d.allocated_blocks, 2);
        assert_eq!(d.block_size, dynamic::DEFAULT_BLOCK_SIZE);
        assert_eq!(d.checksum, d.computed_checksum);
        // an empty dynamic disk
        run(&["create", "-q", "-f", "vpc", "e.vhd", "10M"], &dir);
        let img = probe(&open(&dir.join("e.vhd")));
        assert_eq!(img.format, Format::VhdDynamic);
        assert!(img.findings.is_empty(), "{:#?}", img.findings);
        assert_eq!(img.dynamic.unwrap().allocated_blocks, 0);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
