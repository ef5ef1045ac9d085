//! `vhdtool info`: everything an image says about itself, as one serializable report.
//!
//! Building the report never prints and never fails on a readable file: a damaged image is a
//! report with error findings. Only the few sectors that hold metadata are read (footer, MBR and
//! EBRs, GPT headers and arrays, filesystem superblocks, the ESP's directories), so the cost does
//! not grow with the disk size.

use serde::Serialize;

use crate::disk::{Disk, Window};
use crate::finding::{Finding, Severity};
use crate::fs::{self, FsInfo, FsKind};
use crate::gpt;
use crate::vhd::{self, DynamicInfo, Footer, Format};

pub use crate::table::{read_tables, TableKind, Tables};

pub use crate::units::MIB;
/// Azure direct upload: smallest virtual size (docs "disks-upload-vhd-to-managed-disk-cli").
pub const AZURE_MIN_BYTES: u64 = 20 * MIB;
/// Azure direct upload: largest virtual size (32 TiB).
pub const AZURE_MAX_BYTES: u64 = 32 << 40;
/// Azure OS disk limit for Generation-1 VMs (2 TiB, MBR).
pub const AZURE_GEN1_OS_MAX_BYTES: u64 = 2 << 40;
/// Azure OS disk limit for Generation-2 VMs (4 TiB).
pub const AZURE_GEN2_OS_MAX_BYTES: u64 = 4 << 40;

/// Partitioning scheme a partition entry comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scheme {
    Mbr,
    Gpt,
}

/// MBR facts other than the partitions.
#[derive(Debug, Clone, Serialize)]
pub struct MbrSummary {
    pub disk_signature: u32,
    pub boot_code_present: bool,
    pub boot_code_kind: Option<String>,
    pub protective: bool,
}

/// GPT facts other than the partitions.
#[derive(Debug, Clone, Serialize)]
pub struct GptSummary {
    pub disk_guid: String,
    pub used: gpt::Copy,
    pub primary_ok: bool,
    pub backup_ok: bool,
    pub header: gpt::GptHeader,
}

/// One partition, from whichever table is in use.
#[derive(Debug, Clone, Serialize)]
pub struct PartitionReport {
    pub index: u32,
    pub start_lba: u64,
    /// Inclusive.
    pub end_lba: u64,
    pub sectors: u64,
    pub size_bytes: u64,
    pub scheme: Scheme,
    /// MBR: "0x83"; GPT: the lowercase type GUID.
    #[serde(rename = "type")]
    pub type_id: String,
    pub type_name: Option<String>,
    pub bootable: bool,
    pub extended: bool,
    pub logical: bool,
    pub name: Option<String>,
    pub guid: Option<String>,
    pub attributes: Option<u64>,
    pub filesystem: Option<FsInfo>,
}

/// A run of sectors no partition uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Unallocated {
    pub start_lba: u64,
    pub end_lba: u64,
    pub sectors: u64,
    pub size_bytes: u64,
}

/// The whole `info` report (the JSON schema is documented in README.md).
#[derive(Debug, Clone, Serialize)]
pub struct InfoReport {
    pub path: String,
    pub file_bytes: u64,
    /// The VHD layer's view of the file (a VHDX or qcow2 is "raw" to it); JSON shows
    /// [`InfoReport::image_format`] as `format`.
    #[serde(skip)]
    pub format: Format,
    /// The format (`vhd-fixed`, `vhd-dynamic`, `vhd-differencing`, `vhdx`, `qcow2`, `raw`).
    #[serde(rename = "format")]
    pub image_format: crate::image::Format,
    /// The container of a format that is not flat (dynamic/differencing VHD, VHDX, qcow2): its
    /// own fields, read through `crate::image`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container: Option<Container>,
    pub footer: Option<Footer>,
    pub dynamic: Option<DynamicInfo>,
    pub virtual_bytes: u64,
    pub data_bytes: u64,
    pub sector_bytes: u32,
    pub partition_table: TableKind,
    pub mbr: Option<MbrSummary>,
    pub gpt: Option<GptSummary>,
    pub partitions: Vec<PartitionReport>,
    /// A bare volume (no partition table, a filesystem at LBA 0): the disk's filesystem.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub filesystem: Option<FsInfo>,
    pub unallocated: Vec<Unallocated>,
    pub findings: Vec<Finding>,
    pub azure_ready: bool,
    pub gen2_ready: bool,
}

impl InfoReport {
    /// The highest severity among the findings.
    pub fn worst(&self) -> Option<Severity> {
        self.findings.iter().map(|f| f.severity).max()
    }
}

/// Inspect a whole image file (`file` is the file as stored: data plus footer).
pub fn inspect(file: &dyn Disk, path: &str) -> InfoReport {
    let image = vhd::probe(file);
    let mut findings = image.findings.clone();
    let mut report = InfoReport {
        path: path.to_string(),
        file_bytes: file.len(),
        format: image.format,
        image_format: image_format(image.format),
        container: None,
        footer: image.footer.clone(),
        dynamic: image.dynamic.clone(),
        virtual_bytes: image.virtual_bytes,
        data_bytes: image.data_bytes,
        sector_bytes: 512,
        partition_table: TableKind::None,
        mbr: None,
        gpt: None,
        partitions: Vec::new(),
        filesystem: None,
        unallocated: Vec::new(),
        findings: Vec::new(),
        azure_ready: false,
        gen2_ready: false,
    };
    let data = match Window::new(file, 0, image.data_bytes.min(file.len())) {
        Ok(w) => w,
        Err(e) => {
            findings.push(Finding::error("image.data-outside-file", e.to_string()));
            report.findings = findings;
            return report;
        }
    };
    if matches!(image.format, Format::VhdDynamic | Format::VhdDifferencing) {
        findings.push(Finding::info(
            "vhd.dynamic.not-inspected",
            "the partitions of a dynamic or differencing VHD are read through the image (vhdtool info reads them unless its parents are missing); vhdtool convert IN -o OUT.vhd makes it fixed",
        ));
    } else {
        // a disk imaged from a 4Kn drive keeps its GPT at byte 4096, in a fixed VHD too (the
        // VHD's 512 is the format's unit, not the guest's sector)
        inspect_data(
            &data,
            matches!(image.format, Format::Raw | Format::VhdFixed),
            &mut report,
            &mut findings,
        );
    }
    if image.format == Format::Raw && crate::image::detect(file) == crate::image::Detected::Unknown
    {
        if let Some(why) = crate::image::damaged_vhd_footer(file) {
            findings.push(Finding::warning("vhd.footer-damaged", why));
        }
    }
    report.azure_ready = azure_verdict(&report, &image, &mut findings);
    report.findings = findings;
    report
}

/// The partition tables, partitions and filesystems of the virtual disk `data`, into `report`.
fn inspect_data(
    data: &dyn Disk,
    allow_4k: bool,
    report: &mut InfoReport,
    findings: &mut Vec<Finding>,
) {
    let tables = read_tables(data, allow_4k);
    findings.extend(tables.findings.iter().cloned());
    report.sector_bytes = tables.sector_bytes;
    report.partition_table = tables.kind;
    report.mbr = tables.mbr.as_ref().map(|m| MbrSummary {
        disk_signature: m.disk_signature,
        boot_code_present: m.boot_code_present,
        boot_code_kind: m.boot_code_kind.clone(),
        protective: m.protective,
    });
    report.gpt = tables.gpt.as_ref().map(|g| GptSummary {
        disk_guid: g.header.disk_guid.to_string(),
        used: g.used,
        primary_ok: g.primary_ok,
        backup_ok: g.backup_ok,
        header: g.header.clone(),
    });
    report.partitions = partitions(&tables);
    report.filesystem = None;
    if tables.kind == TableKind::None && tables.gpt.is_none() {
        report.filesystem = fs::probe(data);
    }
    for p in &mut report.partitions {
        probe_partition(data, report.sector_bytes, p, findings);
    }
    report.unallocated = unallocated(&tables, &report.partitions, data.len());
    report.gen2_ready = gen2_verdict(data, report, findings);
}

/// The `info` name of a VHD-layer format.
fn image_format(f: Format) -> crate::image::Format {
    use crate::image::Format as I;
    match f {
        Format::Raw => I::Raw,
        Format::VhdFixed => I::VhdFixed,
        Format::VhdDynamic => I::VhdDynamic,
        Format::VhdDifferencing => I::VhdDifferencing,
    }
}

/// The container's own fields (formats that are not flat), for forensic users too: the parent
/// paths it names leak the host's folders.
#[derive(Debug, Clone, Serialize)]
pub struct Container {
    /// This image, then its parents or backing files, as opened; empty when the image could
    /// not be opened (a missing parent: the `image.unreadable` finding says why).
    pub chain: Vec<crate::image::ImageInfo>,
    /// Bytes of the virtual disk that are allocated (data) in the chain; `None` when the image
    /// could not be opened.
    pub allocated_bytes: Option<u64>,
    /// VHDX: the current header, and the metadata region's fields.
    pub vhdx: Option<VhdxFields>,
}

/// The VHDX fields `info` shows.
#[derive(Debug, Clone, Serialize)]
pub struct VhdxFields {
    /// Offset of the header in use (0x10000 or 0x20000: the higher valid sequence number).
    pub header_offset: u64,
    pub sequence_number: u64,
    pub version: u16,
    pub log_guid: String,
    pub log_offset: u64,
    pub log_bytes: u32,
    pub block_bytes: u32,
    pub logical_sector_bytes: u32,
    pub physical_sector_bytes: Option<u32>,
    pub file_write_guid: String,
    /// What a differencing child's `parent_linkage` names.
    pub data_write_guid: String,
    pub has_parent: bool,
    /// A differencing disk's parent locator: its type and key-value pairs (`parent_linkage`,
    /// `relative_path`, `volume_path`, `absolute_win32_path`: the host's paths as stored).
    pub parent_locator: Option<crate::image::vhdx::ParentLocator>,
}

/// Inspect an image of any format: `file` is the file as stored, `image` the same file opened
/// through [`crate::image`]. Flat formats (fixed VHD, raw) are [`inspect`]ed as they are; the
/// others get the VHD layer's facts (footer and dynamic header of a VHD), their container
/// fields, and the partitions and filesystems of their virtual disk.
pub fn inspect_image(file: &dyn Disk, image: &crate::image::Image, path: &str) -> InfoReport {
    use crate::image::Format as I;
    let mut report = inspect(file, path);
    if matches!(image.format(), I::Raw | I::VhdFixed) {
        return report;
    }
    let mut findings = std::mem::take(&mut report.findings);
    findings.retain(|f| {
        !matches!(
            f.id,
            "vhd.dynamic.not-inspected" | "azure.not-vhd" | "azure.not-fixed-vhd"
        )
    });
    report.image_format = image.format();
    report.virtual_bytes = image.len();
    report.data_bytes = 0;
    let allocated = image
        .extents()
        .filter_map(|e| e.ok())
        .filter(|e| e.kind == crate::image::ExtentKind::Data)
        .map(|e| e.len)
        .fold(0u64, u64::saturating_add);
    let vhdx = (image.format() == I::Vhdx)
        .then(|| vhdx_fields(file))
        .flatten();
    report.container = Some(Container {
        chain: image.chain().into_iter().cloned().collect(),
        allocated_bytes: Some(allocated),
        vhdx,
    });
    report.partitions.clear();
    report.unallocated.clear();
    report.mbr = None;
    report.gpt = None;
    // the VHDX logical sector size says which (see Image::table_sector_bytes)
    let allow_4k = image.table_sector_bytes().contains(&4096);
    inspect_data(image, allow_4k, &mut report, &mut findings);
    report.azure_ready = false;
    findings.push(Finding::warning(
        "azure.not-fixed-vhd",
        format!(
            "Azure takes fixed VHDs only; this is a {} image: vhdtool convert IN -o OUT.vhd (--keep-mbr to leave the partitions as they are)",
            image.format().name()
        ),
    ));
    report.findings = findings;
    report
}

/// The container fields of an image that could not be opened (a differencing VHDX whose parent
/// is missing or is not its parent): what the file itself says, its parent locator included,
/// so that `info` still shows where the parent was. `None` for other formats.
pub fn unopened_container(file: &dyn Disk) -> Option<Container> {
    if crate::image::detect(file) != crate::image::Detected::Vhdx {
        return None;
    }
    Some(Container {
        chain: Vec::new(),
        allocated_bytes: None,
        vhdx: Some(vhdx_fields(file)?),
    })
}

fn vhdx_fields(file: &dyn Disk) -> Option<VhdxFields> {
    use crate::image::vhdx;
    let h = vhdx::read_header(file).ok()?;
    let (_, meta) = vhdx::read_regions(file).ok()?;
    let m = vhdx::read_metadata(file, meta).ok()?;
    Some(VhdxFields {
        header_offset: h.offset,
        sequence_number: h.sequence_number,
        version: h.version,
        log_guid: h.log_guid.to_string(),
        log_offset: h.log_offset,
        log_bytes: h.log_length,
        block_bytes: m.block_bytes,
        logical_sector_bytes: m.logical_sector_bytes,
        physical_sector_bytes: m.physical_sector_bytes,
        file_write_guid: h.file_write_guid.to_string(),
        data_write_guid: h.data_write_guid.to_string(),
        has_parent: m.has_parent,
        parent_locator: m.parent_locator,
    })
}

/// The partitions of whichever table is in use, in a common shape.
pub fn partitions(tables: &Tables) -> Vec<PartitionReport> {
    let sb = u64::from(tables.sector_bytes);
    match (tables.kind, &tables.gpt, &tables.mbr) {
        (TableKind::Gpt | TableKind::Hybrid, Some(g), _) => g
            .partitions
            .iter()
            .map(|p| {
                let sectors = p.last_lba.saturating_sub(p.first_lba).saturating_add(1);
                PartitionReport {
                    index: p.index,
                    start_lba: p.first_lba,
                    end_lba: p.last_lba,
                    sectors,
                    size_bytes: sectors.saturating_mul(sb),
                    scheme: Scheme::Gpt,
                    type_id: p.type_guid.to_string(),
                    type_name: p.type_name.map(str::to_string),
                    bootable: p.attributes & (1 << 2) != 0,
                    extended: false,
                    logical: false,
                    name: Some(p.name.clone()),
                    guid: Some(p.unique_guid.to_string()),
                    attributes: Some(p.attributes),
                    filesystem: None,
                }
            })
            .collect(),
        (TableKind::Mbr, _, Some(m)) => m
            .primaries
            .iter()
            .chain(m.logicals.iter())
            .map(|p| PartitionReport {
                index: p.index,
                start_lba: p.start_lba,
                end_lba: p.start_lba.saturating_add(p.sectors).saturating_sub(1),
                sectors: p.sectors,
                size_bytes: p.sectors.saturating_mul(sb),
                scheme: Scheme::Mbr,
                type_id: format!("0x{:02x}", p.type_id),
                type_name: mbr_type_name(p.type_id).map(str::to_string),
                bootable: p.bootable,
                extended: p.extended,
                logical: p.logical,
                name: None,
                guid: None,
                attributes: None,
                filesystem: None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

fn probe_partition(
    data: &dyn Disk,
    sector_bytes: u32,
    p: &mut PartitionReport,
    findings: &mut Vec<Finding>,
) {
    if p.extended || p.sectors == 0 {
        return;
    }
    let sb = u64::from(sector_bytes);
    let Some(start) = p.start_lba.checked_mul(sb) else {
        return;
    };
    // a partition that runs past the disk is probed over the part that exists (the table's own
    // finding already says it is outside)
    let len = p.size_bytes.min(data.len().saturating_sub(start));
    let Ok(window) = Window::new(data, start, len) else {
        return;
    };
    if len == 0 {
        return;
    }
    p.filesystem = fs::probe(&window);
    if let Some(info) = &p.filesystem {
        if let Some(fs_bytes) = info.fs_bytes {
            if fs_bytes > p.size_bytes {
                findings.push(Finding::error(
                    "fs.larger-than-partition",
                    format!(
                        "partition {}: the {:?} filesystem says it has {} bytes, the partition holds {} bytes",
                        p.index, info.kind, fs_bytes, p.size_bytes
                    ),
                ));
            }
        }
        if info.encrypted {
            findings.push(Finding::warning(
                "fs.encrypted",
                format!(
                    "partition {} is an encrypted volume ({:?}); vhdtool never writes inside it, and the Azure Gen1 to Trusted Launch upgrade does not support BitLocker-encrypted OS volumes",
                    p.index, info.kind
                ),
            ));
        }
    }
}

/// Runs of sectors that no partition covers, inside the area partitions may use.
pub fn unallocated(
    tables: &Tables,
    parts: &[PartitionReport],
    data_bytes: u64,
) -> Vec<Unallocated> {
    let sb = u64::from(tables.sector_bytes);
    // A zero sector size (never produced by read_tables) gives no sectors, so no runs.
    let total = data_bytes.checked_div(sb).unwrap_or(0);
    let (first, last) = match (&tables.gpt, tables.kind) {
        (Some(g), TableKind::Gpt | TableKind::Hybrid) => {
            (g.header.first_usable_lba, g.header.last_usable_lba)
        }
        _ if total == 0 => return Vec::new(),
        _ => (1, total.saturating_sub(1)),
    };
    let mut used: Vec<(u64, u64)> = parts
        .iter()
        .filter(|p| !p.logical && p.sectors > 0)
        .map(|p| (p.start_lba, p.end_lba))
        .collect();
    used.sort_unstable();
    let mut out = Vec::new();
    let mut cursor = first;
    for (s, e) in used {
        if s > cursor && cursor <= last {
            // s > cursor, so s >= 1.
            let end = s.saturating_sub(1).min(last);
            out.push(range(cursor, end, sb));
        }
        cursor = cursor.max(e.saturating_add(1));
    }
    if cursor <= last && last < total.max(1) {
        out.push(range(cursor, last, sb));
    }
    out
}

fn range(start_lba: u64, end_lba: u64, sb: u64) -> Unallocated {
    // Callers pass start_lba <= end_lba.
    let sectors = end_lba.saturating_sub(start_lba).saturating_add(1);
    Unallocated {
        start_lba,
        end_lba,
        sectors,
        size_bytes: sectors.saturating_mul(sb),
    }
}

fn azure_verdict(report: &InfoReport, image: &vhd::Image, findings: &mut Vec<Finding>) -> bool {
    let mut ready = true;
    let mut no = |id: &'static str, msg: String, findings: &mut Vec<Finding>| {
        ready = false;
        findings.push(Finding::warning(id, msg));
    };
    match (&image.format, &image.footer) {
        (Format::VhdFixed, Some(f)) => {
            if f.checksum != f.computed_checksum {
                no("azure.footer-invalid", "the footer checksum is wrong; Azure rejects the upload".into(), findings);
            }
            if f.current_size != image.data_bytes {
                no(
                    "azure.size-mismatch",
                    format!(
                        "the file must be exactly current size + 512 bytes: current size {}, file {} bytes",
                        f.current_size, report.file_bytes
                    ),
                    findings,
                );
            }
        }
        (Format::Raw, _) => no(
            "azure.not-vhd",
            "Azure takes fixed VHDs only; this is a raw disk (wrap it: qemu-img convert -f raw -O vpc -o subformat=fixed,force_size=on IN OUT.vhd)".into(),
            findings,
        ),
        _ => no(
            "azure.not-fixed-vhd",
            "Azure takes fixed VHDs only (qemu-img convert -f vpc -O vpc -o subformat=fixed,force_size=on IN OUT.vhd)".into(),
            findings,
        ),
    }
    let size = image.virtual_bytes;
    if !size.is_multiple_of(MIB) {
        no(
            "azure.size-not-mib-aligned",
            format!(
                "virtual size {size} bytes is not a whole number of MiB (Azure: \"unsupported virtual size\"); the next valid size is {} bytes",
                size.div_ceil(MIB).saturating_mul(MIB)
            ),
            findings,
        );
    }
    if size < AZURE_MIN_BYTES {
        no(
            "azure.size-too-small",
            format!("virtual size {size} bytes is below Azure's minimum of 20 MiB"),
            findings,
        );
    }
    if size > AZURE_MAX_BYTES {
        no(
            "azure.size-too-large",
            format!("virtual size {size} bytes is above Azure's maximum of 32 TiB"),
            findings,
        );
    }
    if ready {
        if size > AZURE_GEN2_OS_MAX_BYTES {
            findings.push(Finding::info(
                "azure.data-disk-only",
                "larger than 4 TiB: usable as a data disk only (OS disks: Gen1 up to 2 TiB, Gen2 up to 4 TiB)",
            ));
        } else if size > AZURE_GEN1_OS_MAX_BYTES {
            findings.push(Finding::info(
                "azure.gen2-os-disk-only",
                "larger than 2 TiB: as an OS disk it needs a Generation-2 VM (Gen1 OS disks stop at 2 TiB)",
            ));
        }
    }
    ready
}

/// The ESP (GPT type EFI System) of the report, if there is one.
pub fn esp_partition(report: &InfoReport) -> Option<&PartitionReport> {
    let esp = gpt::guid::ESP.to_string();
    report
        .partitions
        .iter()
        .find(|p| p.scheme == Scheme::Gpt && p.type_id == esp)
}

/// The boot loaders UEFI firmware would start from an ESP, in the order the checks name them.
pub const UEFI_LOADERS: [&str; 2] = ["EFI/BOOT/BOOTX64.EFI", "EFI/Microsoft/Boot/bootmgfw.efi"];

fn gen2_verdict(data: &dyn Disk, report: &InfoReport, findings: &mut Vec<Finding>) -> bool {
    let mut no = |id: &'static str, msg: String| {
        findings.push(Finding::warning(id, msg));
        false
    };
    if report.partition_table != TableKind::Gpt {
        return no(
            "gen2.no-gpt",
            format!(
                "Generation-2 VMs boot from GPT disks; this disk has {}",
                match report.partition_table {
                    TableKind::Mbr => "an MBR partition table",
                    TableKind::Hybrid => "a hybrid MBR",
                    _ => "no partition table",
                }
            ),
        );
    }
    let Some(esp) = esp_partition(report) else {
        return no(
            "gen2.no-esp",
            "no EFI System Partition (type c12a7328-f81f-11d2-ba4b-00a0c93ec93b)".into(),
        );
    };
    if !matches!(
        esp.filesystem.as_ref().map(|f| f.kind),
        Some(FsKind::Fat12 | FsKind::Fat16 | FsKind::Fat32)
    ) {
        return no(
            "gen2.esp-not-fat",
            format!(
                "the EFI System Partition (partition {}) is not FAT formatted",
                esp.index
            ),
        );
    }
    let sb = u64::from(report.sector_bytes);
    let found = esp
        .start_lba
        .checked_mul(sb)
        .and_then(|start| Window::new(data, start, esp.size_bytes).ok())
        .and_then(|w| {
            let fat = fs::fat::Fat::open(&w).ok()?;
            UEFI_LOADERS
                .iter()
                .find(|p| fat.exists(p).unwrap_or(false))
                .map(|p| p.to_string())
        });
    match found {
        Some(_) => true,
        None => no(
            "gen2.no-boot-loader",
            format!(
                "the EFI System Partition (partition {}) holds neither \\EFI\\BOOT\\BOOTX64.EFI nor \\EFI\\Microsoft\\Boot\\bootmgfw.efi",
                esp.index
            ),
        ),
    }
}

/// Names of common MBR partition types (as fdisk names them).
pub fn mbr_type_name(t: u8) -> Option<&'static str> {
    Some(match t {
        0x01 => "FAT12",
        0x04 => "FAT16 <32M",
        0x05 => "Extended",
        0x06 => "FAT16",
        0x07 => "HPFS/NTFS/exFAT",
        0x0b => "W95 FAT32",
        0x0c => "W95 FAT32 (LBA)",
        0x0e => "W95 FAT16 (LBA)",
        0x0f => "W95 Ext'd (LBA)",
        0x11 => "Hidden FAT12",
        0x12 => "Compaq diagnostics",
        0x14 => "Hidden FAT16 <32M",
        0x16 => "Hidden FAT16",
        0x17 => "Hidden HPFS/NTFS",
        0x1b => "Hidden W95 FAT32",
        0x1c => "Hidden W95 FAT32 (LBA)",
        0x1e => "Hidden W95 FAT16 (LBA)",
        0x27 => "Hidden NTFS WinRE",
        0x42 => "SFS",
        0x82 => "Linux swap / Solaris",
        0x83 => "Linux",
        0x85 => "Linux extended",
        0x8e => "Linux LVM",
        0xa5 => "FreeBSD",
        0xa6 => "OpenBSD",
        0xa8 => "Darwin UFS",
        0xa9 => "NetBSD",
        0xaf => "HFS / HFS+",
        0xee => "GPT",
        0xef => "EFI (FAT-12/16/32)",
        0xfd => "Linux raid autodetect",
        _ => return None,
    })
}
