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
            (format, 0, dynamic::read(file, &f, &mut findings))
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
                    dynamic::read(file, &f, &mut findings),
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

/// A footer and how many bytes it takes at its place (512, or 511 for a legacy footer).
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
    let footer_size = FOOTER_SIZE as u64;
    let end = len
        .checked_sub(footer_size)
        .and_then(|at| footer_at(file, at, FOOTER_SIZE));
    // A copy at 0 is a different sector from the end footer only when the file has two.
    let copy = if len >= 2 * footer_size {
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
    let legacy_size = LEGACY_FOOTER_SIZE as u64;
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
            size: footer_size,
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
    if f.current_size % 512 != 0 {
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
                f.current_size - data
            ),
        ));
    } else if f.current_size < data {
        findings.push(Finding::error(
            "vhd.footer.size-mismatch",
            format!(
                "fixed disk: footer current size {} bytes, but the file holds {data} data bytes before the footer ({len} bytes minus {footer_len}); {} bytes more than claimed",
                f.current_size,
                data - f.current_size
            ),
        ));
    }
    data
}
