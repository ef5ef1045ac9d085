//! What is at the start of a partition: one small probe per format, each reading a few sectors
//! at fixed offsets (never scanning), each with its on-disk structure declared once.
//!
//! The results follow `blkid -p` (util-linux 2.38, `libblkid/src/superblocks/*.c`): TYPE, UUID
//! and LABEL are derived the way blkid derives them, so that tests can compare with it.
//!
//! Order: formats that must win over a stale or look-alike boot sector come first. LUKS, LVM2
//! and swap keep the first sector free or overwrite it but may leave an older boot sector
//! behind; BitLocker looks like NTFS or FAT32 (To Go); NTFS, ReFS and exFAT are recognised by
//! their OEM id before the FAT BPB heuristics; ext, XFS and btrfs have magic numbers at fixed
//! places; ISO 9660 is last because hybrid images carry a partition table or a FAT up front.

#![deny(
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    clippy::unwrap_used
)]

use zerocopy::big_endian as be;
use zerocopy::little_endian::{U16, U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use super::fat::{self, Fat, FatType};
use super::{ntfs, FsInfo, FsKind};
use crate::disk::Disk;

/// Run the probes in order; the first match wins.
pub(crate) fn probe(part: &dyn Disk) -> Option<FsInfo> {
    const PROBES: &[fn(&dyn Disk) -> Option<FsInfo>] = &[
        luks,
        lvm2,
        swap,
        bitlocker,
        ntfs::probe,
        refs,
        exfat,
        fat,
        ext,
        xfs,
        btrfs,
        iso9660,
    ];
    PROBES.iter().find_map(|p| p(part))
}

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// Read a `T` at `offset`; `None` when the partition is too small or the read fails.
pub(crate) fn read_struct<T: FromBytes>(part: &dyn Disk, offset: u64) -> Option<T> {
    let mut buf = vec![0u8; size_of::<T>()];
    part.read_at(offset, &mut buf).ok()?;
    T::read_from_bytes(&buf).ok()
}

/// A label from a fixed-size byte field, as blkid's `blkid_probe_set_label`: cut at the first
/// NUL, trailing white space removed, empty means none. Non-UTF-8 bytes are replaced.
pub(crate) fn byte_label(raw: &[u8]) -> Option<String> {
    let end = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
    let s = String::from_utf8_lossy(raw.get(..end)?);
    let t = s.trim_end();
    (!t.is_empty()).then(|| t.to_string())
}

/// A label stored as UTF-16LE (NTFS, exFAT): cut at NUL, trailing white space removed.
pub(crate) fn utf16le_label(raw: &[u8]) -> Option<String> {
    let units: Vec<u16> = raw
        .chunks_exact(2)
        .map(|c| {
            u16::from_le_bytes([
                c.first().copied().unwrap_or(0),
                c.get(1).copied().unwrap_or(0),
            ])
        })
        .take_while(|&u| u != 0)
        .collect();
    let s = String::from_utf16_lossy(&units);
    let t = s.trim_end();
    (!t.is_empty()).then(|| t.to_string())
}

/// The canonical lower-case 8-4-4-4-12 form of a 16-byte UUID stored in byte order (ext, XFS,
/// btrfs, swap); `None` for the all-zero UUID, which blkid does not report.
pub(crate) fn uuid_string(u: &[u8; 16]) -> Option<String> {
    if u.iter().all(|&b| b == 0) {
        return None;
    }
    let mut s = String::with_capacity(36);
    for (i, b) in u.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            s.push('-');
        }
        s.push_str(&format!("{b:02x}"));
    }
    Some(s)
}

fn info(kind: FsKind) -> FsInfo {
    FsInfo {
        kind,
        label: None,
        uuid: None,
        encrypted: false,
        block_bytes: None,
        fs_bytes: None,
        version: None,
    }
}

// ---------------------------------------------------------------------------------------------
// LUKS (cryptsetup "LUKS On-Disk Format Specification" 1.2.3; "LUKS2 On-Disk Format" 1.1.x)
// ---------------------------------------------------------------------------------------------

/// The LUKS1 phdr and the LUKS2 binary header agree on magic, version and uuid; LUKS2 adds a
/// label. Big-endian.
#[derive(Debug, Clone, Copy, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
struct RawLuksHeader {
    magic: [u8; 6],            // 0x00 "LUKS\xba\xbe"
    version: be::U16,          // 0x06 1 or 2
    luks2_hdr_size: be::U64,   // 0x08 LUKS2: header size (LUKS1: cipher name)
    luks2_seqid: be::U64,      // 0x10 LUKS2: sequence id
    luks2_label: [u8; 48],     // 0x18 LUKS2: label (LUKS1: cipher name/mode)
    other: [u8; 0x60],         // 0x48 LUKS1: hash, payload offset, digest; LUKS2: csum alg, salt
    uuid: [u8; 40],            // 0xA8 UUID as text, NUL padded (both versions)
    luks2_subsystem: [u8; 48], // 0xD0 LUKS2: subsystem
    luks2_hdr_offset: be::U64, // 0x100 LUKS2: offset of this header
}
const _: () = assert!(size_of::<RawLuksHeader>() == 0x108);

const LUKS_MAGIC: &[u8; 6] = b"LUKS\xba\xbe";

/// LUKS1/2: TYPE crypto_LUKS, VERSION, UUID (the text field, verbatim), LABEL (LUKS2).
fn luks(part: &dyn Disk) -> Option<FsInfo> {
    let h: RawLuksHeader = read_struct(part, 0)?;
    if &h.magic != LUKS_MAGIC {
        return None;
    }
    let version = h.version.get();
    let kind = match version {
        1 => FsKind::Luks1,
        2 if h.luks2_hdr_offset.get() == 0 => FsKind::Luks2,
        _ => return None,
    };
    Some(FsInfo {
        label: if kind == FsKind::Luks2 {
            byte_label(&h.luks2_label)
        } else {
            None
        },
        uuid: byte_label(&h.uuid),
        encrypted: true,
        version: Some(version.to_string()),
        ..info(kind)
    })
}

// ---------------------------------------------------------------------------------------------
// LVM2 physical volume (lvm2 `lib/format_text/layout.h`, `lib/label/label.h`)
// ---------------------------------------------------------------------------------------------

/// `label_header`, in one of the first four 512-byte sectors.
#[derive(Debug, Clone, Copy, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
struct RawLvmLabelHeader {
    id: [u8; 8],    // 0x00 "LABELONE"
    sector_xl: U64, // 0x08 the sector this label is in
    crc_xl: U32,    // 0x10 CRC of 0x14..0x200
    offset_xl: U32, // 0x14 offset of the pv_header from the label sector start
    type_: [u8; 8], // 0x18 "LVM2 001"
}
const _: () = assert!(size_of::<RawLvmLabelHeader>() == 0x20);

const LVM_LABEL_ID: &[u8; 8] = b"LABELONE";
const LVM2_TYPE: &[u8; 8] = b"LVM2 001";
const LVM_SECTOR: u64 = 512;
const LVM_LABEL_SCAN_SECTORS: u64 = 4;
const LVM_ID_LEN: usize = 32;
/// lvm2 `calc_crc` starts from this value and does not invert at the end.
const LVM_INITIAL_CRC: u32 = 0xF597_A6CF;

/// lvm2's CRC: the reflected CRC-32 polynomial, initial 0xf597a6cf, no final inversion.
fn lvm_crc(data: &[u8]) -> u32 {
    // crc32fast computes !raw(!init, data); with init = !LVM_INITIAL_CRC this is !raw(initial)
    let mut h = crc32fast::Hasher::new_with_initial(!LVM_INITIAL_CRC);
    h.update(data);
    !h.finalize()
}

/// blkid's `format_lvm_uuid`: the 32 characters grouped 6-4-4-4-4-4-6.
fn lvm_uuid(raw: &[u8]) -> Option<String> {
    let mut s = String::with_capacity(38);
    for (i, &b) in raw.iter().enumerate() {
        if matches!(i, 6 | 10 | 14 | 18 | 22 | 26) {
            s.push('-');
        }
        s.push(char::from(b));
    }
    (raw.len() == LVM_ID_LEN && raw.iter().all(u8::is_ascii_graphic)).then_some(s)
}

/// LVM2 PV: "LABELONE" in sector 0..=3 whose `sector_xl` names that sector and whose CRC holds,
/// type "LVM2 001"; UUID = the PV UUID. TYPE LVM2_member in blkid.
fn lvm2(part: &dyn Disk) -> Option<FsInfo> {
    (0..LVM_LABEL_SCAN_SECTORS).find_map(|sector| {
        let base = sector.checked_mul(LVM_SECTOR)?;
        let mut buf = [0u8; 512];
        part.read_at(base, &mut buf).ok()?;
        let (h, _) = RawLvmLabelHeader::read_from_prefix(&buf).ok()?;
        if &h.id != LVM_LABEL_ID || &h.type_ != LVM2_TYPE || h.sector_xl.get() != sector {
            return None;
        }
        if lvm_crc(buf.get(0x14..)?) != h.crc_xl.get() {
            return None;
        }
        // pv_header: pv_uuid[32], device_size_xl u64, then disk areas
        let pv_off = u64::from(h.offset_xl.get());
        let mut pv_uuid = [0u8; LVM_ID_LEN];
        part.read_at(base.checked_add(pv_off)?, &mut pv_uuid).ok()?;
        Some(FsInfo {
            uuid: lvm_uuid(&pv_uuid),
            version: Some("LVM2 001".to_string()),
            ..info(FsKind::Lvm2)
        })
    })
}

// ---------------------------------------------------------------------------------------------
// Linux swap (linux `include/linux/swap.h` `union swap_header`)
// ---------------------------------------------------------------------------------------------

/// `swap_header.info`, at 1024 bytes; written in the CPU's byte order.
#[derive(Debug, Clone, Copy, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
struct RawSwapInfo {
    version: [u8; 4],       // 0x400 1
    last_page: [u8; 4],     // 0x404 index of the last usable page
    nr_badpages: [u8; 4],   // 0x408
    uuid: [u8; 16],         // 0x40C
    volume_name: [u8; 16],  // 0x41C
    padding: [u8; 0x80],    // 0x42C padding[0..32]
    padding_32_33: [u8; 8], // 0x4AC padding[32], padding[33]: blkid's "no garbage" check
}
const _: () = assert!(size_of::<RawSwapInfo>() == 0xB4);

const SWAP_INFO_OFFSET: u64 = 0x400;
const SWAP_PAGE_SIZES: [u64; 5] = [4096, 8192, 16384, 32768, 65536];
const SWAP_MAGIC_LEN: u64 = 10;

/// Swap: "SWAPSPACE2" (or the old "SWAP-SPACE") in the last 10 bytes of the first page, for
/// page sizes 4 KiB..64 KiB; version 1 in either byte order, last page not 0. UUID and LABEL
/// only when padding words 32 and 33 are zero, as blkid does.
fn swap(part: &dyn Disk) -> Option<FsInfo> {
    SWAP_PAGE_SIZES.iter().find_map(|&page| {
        let mut magic = [0u8; 10];
        part.read_at(page.checked_sub(SWAP_MAGIC_LEN)?, &mut magic)
            .ok()?;
        match &magic {
            b"SWAP-SPACE" => Some(FsInfo {
                version: Some("0".to_string()),
                block_bytes: u32::try_from(page).ok(),
                ..info(FsKind::Swap)
            }),
            b"SWAPSPACE2" => {
                let h: RawSwapInfo = read_struct(part, SWAP_INFO_OFFSET)?;
                let big = match (u32::from_le_bytes(h.version), u32::from_be_bytes(h.version)) {
                    (1, _) => false,
                    (_, 1) => true,
                    _ => return None,
                };
                let last_page = if big {
                    u32::from_be_bytes(h.last_page)
                } else {
                    u32::from_le_bytes(h.last_page)
                };
                if last_page == 0 {
                    return None;
                }
                let clean = h.padding_32_33.iter().all(|&b| b == 0);
                Some(FsInfo {
                    label: if clean {
                        byte_label(&h.volume_name)
                    } else {
                        None
                    },
                    uuid: if clean { uuid_string(&h.uuid) } else { None },
                    block_bytes: u32::try_from(page).ok(),
                    fs_bytes: u64::from(last_page).checked_add(1)?.checked_mul(page),
                    version: Some("1".to_string()),
                    ..info(FsKind::Swap)
                })
            }
            _ => None,
        }
    })
}

// ---------------------------------------------------------------------------------------------
// BitLocker (libbde "BitLocker Drive Encryption (BDE) format"; blkid `bitlocker.c`)
// ---------------------------------------------------------------------------------------------

/// Windows 7+ BitLocker volume header (replaces the NTFS boot sector).
#[derive(Debug, Clone, Copy, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
struct RawBdeHeaderWin7 {
    jump: [u8; 3],                 // 0x00 EB 58 90 (Vista: EB 52 90)
    signature: [u8; 8],            // 0x03 "-FVE-FS-"
    bpb: [u8; 0x38],               // 0x0B
    volume_serial: U32,            // 0x43 blkid prints "%016d" of it (usually 0)
    volume_label: [u8; 11],        // 0x47 "NO NAME    "
    reserved: [u8; 0x4E],          // 0x52
    guid: [u8; 16],                // 0xA0 BitLocker identifier
    fve_metadata_offset: [U64; 3], // 0xB0 offsets of the three FVE metadata blocks
}
const _: () = assert!(size_of::<RawBdeHeaderWin7>() == 0xC8);

/// BitLocker To Go header: a FAT32 boot sector ("MSWIN4.1") with FVE pointers near the end.
#[derive(Debug, Clone, Copy, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
struct RawBdeHeaderToGo {
    jump: [u8; 3],                 // 0x00 EB 58 90
    oem: [u8; 8],                  // 0x03 "MSWIN4.1"
    fat32: [u8; 0x19D],            // 0x0B
    guid: [u8; 16],                // 0x1A8
    fve_metadata_offset: [U64; 3], // 0x1B8
}
const _: () = assert!(size_of::<RawBdeHeaderToGo>() == 0x1D0);

/// FVE metadata block header: "-FVE-FS-", size, version.
#[derive(Debug, Clone, Copy, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
struct RawFveBlockHeader {
    signature: [u8; 8], // 0x00 "-FVE-FS-"
    size: U16,          // 0x08
    version: U16,       // 0x0A 1 (Vista) or 2 (Windows 7+)
}
const _: () = assert!(size_of::<RawFveBlockHeader>() == 0x0C);

const BDE_SIGNATURE: &[u8; 8] = b"-FVE-FS-";
const BDE_JUMP_VISTA: [u8; 3] = [0xEB, 0x52, 0x90];
const BDE_TOGO_OEM: &[u8; 8] = b"MSWIN4.1";

fn fve_version(part: &dyn Disk, offset: u64) -> Option<u16> {
    let h: RawFveBlockHeader = read_struct(part, offset)?;
    (&h.signature == BDE_SIGNATURE).then(|| h.version.get())
}

/// BitLocker: "-FVE-FS-" at 3 (Vista with jump EB 52 90, Windows 7+ otherwise), or a To Go
/// FAT32 look-alike ("MSWIN4.1") whose FVE metadata pointer leads to "-FVE-FS-". VERSION from
/// the first FVE metadata block. Unlike blkid, a Windows 7 header whose metadata block cannot be
/// read (truncated partition) is still reported as BitLocker: encrypted beats unknown.
fn bitlocker(part: &dyn Disk) -> Option<FsInfo> {
    let mut sector = [0u8; 512];
    part.read_at(0, &mut sector).ok()?;
    let win7 = RawBdeHeaderWin7::read_from_prefix(&sector).ok()?.0;
    if &win7.signature == BDE_SIGNATURE {
        let vista = win7.jump == BDE_JUMP_VISTA;
        let version = if vista {
            None
        } else {
            fve_version(part, win7.fve_metadata_offset[0].get())
        };
        // blkid: UUID only for the Windows 7 layout, "%016d" of a signed 32-bit serial
        let serial = i32::from_le_bytes(win7.volume_serial.get().to_le_bytes());
        return Some(FsInfo {
            uuid: (!vista && serial != 0).then(|| format!("{serial:016}")),
            encrypted: true,
            version: version.map(|v| v.to_string()),
            ..info(FsKind::Bitlocker)
        });
    }
    let togo = RawBdeHeaderToGo::read_from_prefix(&sector).ok()?.0;
    if &togo.oem == BDE_TOGO_OEM {
        let version = fve_version(part, togo.fve_metadata_offset[0].get())?;
        return Some(FsInfo {
            encrypted: true,
            version: Some(version.to_string()),
            ..info(FsKind::Bitlocker)
        });
    }
    None
}

// ---------------------------------------------------------------------------------------------
// ReFS (blkid `refs.c`; libfsrefs "Resilient File System (ReFS)")
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
struct RawRefsBootSector {
    jump: [u8; 3],            // 0x00 zero
    fs_name: [u8; 8],         // 0x03 "ReFS\0\0\0\0"
    must_be_zero: [u8; 5],    // 0x0B
    identifier: [u8; 4],      // 0x10 "FSRS"
    length: U16,              // 0x14
    checksum: U16,            // 0x16
    sectors: U64,             // 0x18 volume size in sectors
    bytes_per_sector: U32,    // 0x20
    sectors_per_cluster: U32, // 0x24
    major_version: u8,        // 0x28
    minor_version: u8,        // 0x29
    unknown: [u8; 14],        // 0x2A
    volume_serial: U64,       // 0x38 blkid prints "%016llx"
}
const _: () = assert!(size_of::<RawRefsBootSector>() == 0x40);

/// ReFS: "ReFS\0\0\0\0" at 3 and "FSRS" at 0x10; UUID = serial in lower-case hex.
fn refs(part: &dyn Disk) -> Option<FsInfo> {
    let b: RawRefsBootSector = read_struct(part, 0)?;
    if &b.fs_name != b"ReFS\0\0\0\0" || &b.identifier != b"FSRS" {
        return None;
    }
    let bps = b.bytes_per_sector.get();
    let cluster = bps.checked_mul(b.sectors_per_cluster.get());
    let serial = b.volume_serial.get();
    Some(FsInfo {
        uuid: (serial != 0).then(|| format!("{serial:016x}")),
        block_bytes: cluster,
        fs_bytes: b.sectors.get().checked_mul(u64::from(bps)),
        version: Some(format!("{}.{}", b.major_version, b.minor_version)),
        ..info(FsKind::Refs)
    })
}

// ---------------------------------------------------------------------------------------------
// exFAT (Microsoft "exFAT file system specification", 2019, §3.1 Main Boot Sector)
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
struct RawExfatBootSector {
    jump_boot: [u8; 3],                   // 0x00 EB 76 90
    file_system_name: [u8; 8],            // 0x03 "EXFAT   "
    must_be_zero: [u8; 53],               // 0x0B
    partition_offset: U64,                // 0x40
    volume_length: U64,                   // 0x48 sectors
    fat_offset: U32,                      // 0x50 sectors
    fat_length: U32,                      // 0x54 sectors
    cluster_heap_offset: U32,             // 0x58 sectors
    cluster_count: U32,                   // 0x5C
    first_cluster_of_root_directory: U32, // 0x60
    volume_serial_number: [u8; 4],        // 0x64 blkid prints "%02X%02X-%02X%02X" of bytes 3,2,1,0
    file_system_revision: U16,            // 0x68 major in the high byte
    volume_flags: U16,                    // 0x6A
    bytes_per_sector_shift: u8,           // 0x6C 9..=12
    sectors_per_cluster_shift: u8,        // 0x6D <= 25 - bytes_per_sector_shift
    number_of_fats: u8,                   // 0x6E 1 or 2
    drive_select: u8,                     // 0x6F
    percent_in_use: u8,                   // 0x70
    reserved: [u8; 7],                    // 0x71
    boot_code: [u8; 390],                 // 0x78
    boot_signature: U16,                  // 0x1FE 0xAA55
}
const _: () = assert!(size_of::<RawExfatBootSector>() == 512);

/// exFAT §7.3 Volume Label Directory Entry.
#[derive(Debug, Clone, Copy, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
struct RawExfatLabelEntry {
    entry_type: u8,         // 0x00 0x83
    character_count: u8,    // 0x01 0..=11
    volume_label: [u8; 22], // 0x02 UTF-16LE
    reserved: [u8; 8],      // 0x18
}
const _: () = assert!(size_of::<RawExfatLabelEntry>() == 32);

const EXFAT_NAME: &[u8; 8] = b"EXFAT   ";
const EXFAT_ENTRY_LABEL: u8 = 0x83;
const EXFAT_ENTRY_EOD: u8 = 0x00;
/// Root directory entries examined for the label (the first cluster only, at most 8 KiB).
const EXFAT_LABEL_SCAN_ENTRIES: u64 = 256;

/// exFAT: the boot sector checks blkid makes (jump, zero BPB area, shifts, FAT count, region
/// order); label from the root directory's label entry (first cluster, bounded).
fn exfat(part: &dyn Disk) -> Option<FsInfo> {
    let b: RawExfatBootSector = read_struct(part, 0)?;
    if &b.file_system_name != EXFAT_NAME
        || b.jump_boot != [0xEB, 0x76, 0x90]
        || b.must_be_zero.iter().any(|&x| x != 0)
        || b.boot_signature.get() != 0xAA55
        || !(9..=12).contains(&b.bytes_per_sector_shift)
        || u32::from(b.sectors_per_cluster_shift)
            > 25u32.checked_sub(u32::from(b.bytes_per_sector_shift))?
        || !(1..=2).contains(&b.number_of_fats)
    {
        return None;
    }
    let sector = 1u64.checked_shl(u32::from(b.bytes_per_sector_shift))?;
    let cluster = sector.checked_shl(u32::from(b.sectors_per_cluster_shift))?;
    let fats_end = u64::from(b.fat_length.get())
        .checked_mul(u64::from(b.number_of_fats))?
        .checked_add(u64::from(b.fat_offset.get()))?;
    let heap = u64::from(b.cluster_heap_offset.get());
    if b.fat_offset.get() < 24 || heap < fats_end {
        return None;
    }
    let root = b.first_cluster_of_root_directory.get();
    let label = (|| {
        if root < 2 || root > b.cluster_count.get() {
            return None;
        }
        let root_off = u64::from(root)
            .checked_sub(2)?
            .checked_mul(cluster)?
            .checked_add(heap.checked_mul(sector)?)?;
        let entries = EXFAT_LABEL_SCAN_ENTRIES.min(cluster / 32);
        for i in 0..entries {
            let e: RawExfatLabelEntry =
                read_struct(part, root_off.checked_add(i.checked_mul(32)?)?)?;
            match e.entry_type {
                EXFAT_ENTRY_EOD => return None,
                EXFAT_ENTRY_LABEL => {
                    let n = usize::from(e.character_count).min(11).checked_mul(2)?;
                    return utf16le_label(e.volume_label.get(..n)?);
                }
                _ => {}
            }
        }
        None
    })();
    let rev = b.file_system_revision.get().to_be_bytes();
    let serial = b.volume_serial_number;
    Some(FsInfo {
        label,
        uuid: (serial != [0; 4]).then(|| fat::format_volume_id(serial)),
        block_bytes: u32::try_from(cluster).ok(),
        fs_bytes: b.volume_length.get().checked_mul(sector),
        version: Some(format!("{}.{}", rev[0], rev[1])),
        ..info(FsKind::Exfat)
    })
}

// ---------------------------------------------------------------------------------------------
// FAT12/16/32 (fatgen103; the BPB and reader live in fat.rs)
// ---------------------------------------------------------------------------------------------

/// FAT: blkid's candidate test (a jump instruction, a FAT type string or the 0xAA55 marker; OS/2
/// "JFS"/"HPFS" pseudo-BPBs excluded), then the validated BPB. LABEL comes only from the root
/// directory's volume-label entry, as blkid does (the boot-sector label is often stale: Windows
/// and mlabel update the root entry); UUID is the volume id as "ABCD-1234".
fn fat(part: &dyn Disk) -> Option<FsInfo> {
    let mut sector = [0u8; 512];
    part.read_at(0, &mut sector).ok()?;
    let typ16 = sector.get(0x36..0x3E)?;
    let typ32 = sector.get(0x52..0x5A)?;
    let has_magic = [b"FAT12   ", b"FAT16   ", b"FAT     "]
        .iter()
        .any(|m| typ16 == m.as_slice())
        || typ16.starts_with(b"MSDOS")
        || typ32 == b"FAT32   "
        || typ32.starts_with(b"MSWIN");
    let marker = sector.get(0x1FE..0x200) == Some(&[0x55, 0xAA][..]);
    // blkid: without a type string the boot-sector marker must be there (a jump alone is not
    // enough), and OS/2 pseudo-BPBs of JFS and HPFS are not FAT
    if !has_magic && (!marker || typ16 == b"JFS     " || typ16 == b"HPFS    ") {
        return None;
    }
    let fs = Fat::open(part).ok()?;
    let label = fs.root_label_raw().ok().flatten().and_then(|l| {
        let s = fat::decode_oem(&l);
        (!s.is_empty()).then_some(s)
    });
    let id = fs.raw_volume_id();
    Some(FsInfo {
        label,
        uuid: (id != [0; 4]).then(|| fat::format_volume_id(id)),
        block_bytes: Some(fs.cluster_bytes()),
        fs_bytes: Some(fs.volume_bytes()),
        version: Some(
            match fs.fat_type() {
                FatType::Fat12 => "FAT12",
                FatType::Fat16 => "FAT16",
                FatType::Fat32 => "FAT32",
            }
            .to_string(),
        ),
        ..info(match fs.fat_type() {
            FatType::Fat12 => FsKind::Fat12,
            FatType::Fat16 => FsKind::Fat16,
            FatType::Fat32 => FsKind::Fat32,
        })
    })
}

// ---------------------------------------------------------------------------------------------
// ext2/3/4 (e2fsprogs `lib/ext2fs/ext2_fs.h` struct ext2_super_block)
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
struct RawExtSuperblock {
    s_inodes_count: U32,           // 0x00
    s_blocks_count_lo: U32,        // 0x04
    s_r_blocks_count_lo: U32,      // 0x08
    s_free_blocks_count_lo: U32,   // 0x0C
    s_free_inodes_count: U32,      // 0x10
    s_first_data_block: U32,       // 0x14
    s_log_block_size: U32,         // 0x18 block = 1024 << this
    s_log_cluster_size: U32,       // 0x1C
    s_blocks_per_group: U32,       // 0x20
    s_clusters_per_group: U32,     // 0x24
    s_inodes_per_group: U32,       // 0x28
    s_mtime: U32,                  // 0x2C
    s_wtime: U32,                  // 0x30
    s_mnt_count: U16,              // 0x34
    s_max_mnt_count: U16,          // 0x36
    s_magic: U16,                  // 0x38 0xEF53
    s_state: U16,                  // 0x3A
    s_errors: U16,                 // 0x3C
    s_minor_rev_level: U16,        // 0x3E
    s_lastcheck: U32,              // 0x40
    s_checkinterval: U32,          // 0x44
    s_creator_os: U32,             // 0x48
    s_rev_level: U32,              // 0x4C
    s_def_resuid: U16,             // 0x50
    s_def_resgid: U16,             // 0x52
    s_first_ino: U32,              // 0x54
    s_inode_size: U16,             // 0x58
    s_block_group_nr: U16,         // 0x5A
    s_feature_compat: U32,         // 0x5C
    s_feature_incompat: U32,       // 0x60
    s_feature_ro_compat: U32,      // 0x64
    s_uuid: [u8; 16],              // 0x68
    s_volume_name: [u8; 16],       // 0x78
    s_last_mounted: [u8; 64],      // 0x88
    s_algorithm_usage_bitmap: U32, // 0xC8
    s_prealloc: [u8; 4],           // 0xCC prealloc blocks, dir blocks, reserved GDT blocks
    s_journal_uuid: [u8; 16],      // 0xD0
    s_journal: [u8; 0x70],         // 0xE0 journal inode .. s_jnl_blocks
    s_blocks_count_hi: U32,        // 0x150 (INCOMPAT_64BIT)
    s_rest: [u8; 0x2A8],           // 0x154
    s_checksum: U32,               // 0x3FC crc32c of 0x000..0x3FC (metadata_csum)
}
const _: () = assert!(size_of::<RawExtSuperblock>() == 1024);

const EXT_SUPERBLOCK_OFFSET: u64 = 1024;
const EXT_MAGIC: u16 = 0xEF53;
const EXT3_FEATURE_COMPAT_HAS_JOURNAL: u32 = 0x0004;
const EXT3_FEATURE_INCOMPAT_JOURNAL_DEV: u32 = 0x0008;
const EXT4_FEATURE_INCOMPAT_64BIT: u32 = 0x0080;
/// blkid `ext.c`: what ext2 and ext3 understand (FILETYPE | META_BG, + RECOVER for ext3;
/// SPARSE_SUPER | LARGE_FILE | BTREE_DIR). Anything else makes it ext4.
const EXT2_FEATURE_INCOMPAT_SUPP: u32 = 0x0002 | 0x0010;
const EXT3_FEATURE_INCOMPAT_SUPP: u32 = 0x0002 | 0x0004 | 0x0010;
const EXT_FEATURE_RO_COMPAT_SUPP: u32 = 0x0001 | 0x0002 | 0x0004;
/// e2fsprogs: block sizes 1 KiB..64 KiB.
const EXT_MAX_LOG_BLOCK_SIZE: u32 = 6;

/// ext2/3/4: magic 0xEF53 at 0x438; the kind as blkid decides it (journal -> ext3 unless a
/// feature ext3 does not know is set -> ext4; external journal devices are not filesystems).
/// The metadata_csum superblock checksum is not required to hold (blkid 2.38 does not check it
/// either): a damaged ext4 is still reported as ext4.
fn ext(part: &dyn Disk) -> Option<FsInfo> {
    let mut raw = [0u8; 1024];
    part.read_at(EXT_SUPERBLOCK_OFFSET, &mut raw).ok()?;
    let sb = RawExtSuperblock::read_from_bytes(&raw).ok()?;
    if sb.s_magic.get() != EXT_MAGIC || sb.s_log_block_size.get() > EXT_MAX_LOG_BLOCK_SIZE {
        return None;
    }
    let compat = sb.s_feature_compat.get();
    let incompat = sb.s_feature_incompat.get();
    let ro_compat = sb.s_feature_ro_compat.get();
    if incompat & EXT3_FEATURE_INCOMPAT_JOURNAL_DEV != 0 {
        return None;
    }
    let ro_extra = ro_compat & !EXT_FEATURE_RO_COMPAT_SUPP != 0;
    let kind = if compat & EXT3_FEATURE_COMPAT_HAS_JOURNAL != 0 {
        if ro_extra || incompat & !EXT3_FEATURE_INCOMPAT_SUPP != 0 {
            FsKind::Ext4
        } else {
            FsKind::Ext3
        }
    } else if ro_extra || incompat & !EXT2_FEATURE_INCOMPAT_SUPP != 0 {
        FsKind::Ext4
    } else {
        FsKind::Ext2
    };
    let block = 1024u64.checked_shl(sb.s_log_block_size.get())?;
    let hi = if incompat & EXT4_FEATURE_INCOMPAT_64BIT != 0 {
        u64::from(sb.s_blocks_count_hi.get())
    } else {
        0
    };
    let blocks = (hi << 32) | u64::from(sb.s_blocks_count_lo.get());
    Some(FsInfo {
        label: byte_label(&sb.s_volume_name),
        uuid: uuid_string(&sb.s_uuid),
        block_bytes: u32::try_from(block).ok(),
        fs_bytes: blocks.checked_mul(block),
        version: Some(format!(
            "{}.{}",
            sb.s_rev_level.get(),
            sb.s_minor_rev_level.get()
        )),
        ..info(kind)
    })
}

// ---------------------------------------------------------------------------------------------
// XFS (xfsprogs `libxfs/xfs_format.h` struct xfs_dsb; big-endian)
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
struct RawXfsSuperblock {
    sb_magicnum: [u8; 4],   // 0x00 "XFSB"
    sb_blocksize: be::U32,  // 0x04
    sb_dblocks: be::U64,    // 0x08 data blocks
    sb_rblocks: be::U64,    // 0x10
    sb_rextents: be::U64,   // 0x18
    sb_uuid: [u8; 16],      // 0x20
    sb_logstart: be::U64,   // 0x30
    sb_rootino: be::U64,    // 0x38
    sb_rbmino: be::U64,     // 0x40
    sb_rsumino: be::U64,    // 0x48
    sb_rextsize: be::U32,   // 0x50
    sb_agblocks: be::U32,   // 0x54
    sb_agcount: be::U32,    // 0x58
    sb_rbmblocks: be::U32,  // 0x5C
    sb_logblocks: be::U32,  // 0x60
    sb_versionnum: be::U16, // 0x64 low nibble: version (4 or 5)
    sb_sectsize: be::U16,   // 0x66
    sb_inodesize: be::U16,  // 0x68
    sb_inopblock: be::U16,  // 0x6A
    sb_fname: [u8; 12],     // 0x6C label
    sb_blocklog: u8,        // 0x78
    sb_sectlog: u8,         // 0x79
    sb_inodelog: u8,        // 0x7A
    sb_inopblog: u8,        // 0x7B
    sb_agblklog: u8,        // 0x7C
    sb_rextslog: u8,        // 0x7D
    sb_inprogress: u8,      // 0x7E mkfs did not finish
    sb_imax_pct: u8,        // 0x7F
}
const _: () = assert!(size_of::<RawXfsSuperblock>() == 0x80);

/// XFS: "XFSB" and the geometry checks blkid's `xfs_verify_sb` makes (sizes are powers of two
/// matching their logs, agcount > 0, dblocks > 0, imax_pct <= 100).
fn xfs(part: &dyn Disk) -> Option<FsInfo> {
    let sb: RawXfsSuperblock = read_struct(part, 0)?;
    if &sb.sb_magicnum != b"XFSB" {
        return None;
    }
    let pow_ok = |size: u64, log: u8, lo: u8, hi: u8| {
        (lo..=hi).contains(&log) && 1u64.checked_shl(u32::from(log)) == Some(size)
    };
    let blocksize = u64::from(sb.sb_blocksize.get());
    if sb.sb_agcount.get() == 0
        || !pow_ok(u64::from(sb.sb_sectsize.get()), sb.sb_sectlog, 9, 15)
        || !pow_ok(blocksize, sb.sb_blocklog, 9, 16)
        || !pow_ok(u64::from(sb.sb_inodesize.get()), sb.sb_inodelog, 8, 11)
        || sb.sb_blocklog.checked_sub(sb.sb_inodelog) != Some(sb.sb_inopblog)
        || sb.sb_imax_pct > 100
        || sb.sb_dblocks.get() == 0
        || sb.sb_inprogress != 0
    {
        return None;
    }
    Some(FsInfo {
        label: byte_label(&sb.sb_fname),
        uuid: uuid_string(&sb.sb_uuid),
        block_bytes: u32::try_from(blocksize).ok(),
        fs_bytes: sb.sb_dblocks.get().checked_mul(blocksize),
        version: Some((sb.sb_versionnum.get() & 0xF).to_string()),
        ..info(FsKind::Xfs)
    })
}

// ---------------------------------------------------------------------------------------------
// btrfs (btrfs-progs `kernel-shared/ctree.h` struct btrfs_super_block)
// ---------------------------------------------------------------------------------------------

/// `btrfs_dev_item` (this device).
#[derive(Debug, Clone, Copy, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
struct RawBtrfsDevItem {
    devid: U64,        // 0x00
    total_bytes: U64,  // 0x08 size of this device
    bytes_used: U64,   // 0x10
    io_align: U32,     // 0x18
    io_width: U32,     // 0x1C
    sector_size: U32,  // 0x20
    type_: U64,        // 0x24
    generation: U64,   // 0x2C
    start_offset: U64, // 0x34
    dev_group: U32,    // 0x3C
    seek_speed: u8,    // 0x40
    bandwidth: u8,     // 0x41
    uuid: [u8; 16],    // 0x42 device UUID (blkid UUID_SUB)
    fsid: [u8; 16],    // 0x52
}
const _: () = assert!(size_of::<RawBtrfsDevItem>() == 0x62);

#[derive(Debug, Clone, Copy, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
struct RawBtrfsSuperblock {
    csum: [u8; 32],             // 0x00
    fsid: [u8; 16],             // 0x20 filesystem UUID
    bytenr: U64,                // 0x30 where this copy lives (0x10000)
    flags: U64,                 // 0x38
    magic: [u8; 8],             // 0x40 "_BHRfS_M"
    generation: U64,            // 0x48
    root: U64,                  // 0x50
    chunk_root: U64,            // 0x58
    log_root: U64,              // 0x60
    log_root_transid: U64,      // 0x68
    total_bytes: U64,           // 0x70 all devices
    bytes_used: U64,            // 0x78
    root_dir_objectid: U64,     // 0x80
    num_devices: U64,           // 0x88
    sectorsize: U32,            // 0x90
    nodesize: U32,              // 0x94
    leafsize: U32,              // 0x98
    stripesize: U32,            // 0x9C
    sys_chunk_array_size: U32,  // 0xA0
    chunk_root_generation: U64, // 0xA4
    compat_flags: U64,          // 0xAC
    compat_ro_flags: U64,       // 0xB4
    incompat_flags: U64,        // 0xBC
    csum_type: U16,             // 0xC4
    root_level: u8,             // 0xC6
    chunk_root_level: u8,       // 0xC7
    log_root_level: u8,         // 0xC8
    dev_item: RawBtrfsDevItem,  // 0xC9
    label: [u8; 256],           // 0x12B
}
const _: () = assert!(size_of::<RawBtrfsSuperblock>() == 0x22B);

const BTRFS_SUPER_OFFSET: u64 = 0x10000;
const BTRFS_MAGIC: &[u8; 8] = b"_BHRfS_M";

/// btrfs: primary superblock at 64 KiB, magic at 0x40; UUID = fsid; fs_bytes = this device's
/// size (dev_item.total_bytes), block size = sectorsize.
fn btrfs(part: &dyn Disk) -> Option<FsInfo> {
    let sb: RawBtrfsSuperblock = read_struct(part, BTRFS_SUPER_OFFSET)?;
    if &sb.magic != BTRFS_MAGIC {
        return None;
    }
    let sectorsize = sb.sectorsize.get();
    Some(FsInfo {
        label: byte_label(&sb.label),
        uuid: uuid_string(&sb.fsid),
        block_bytes: (sectorsize.is_power_of_two()).then_some(sectorsize),
        fs_bytes: Some(sb.dev_item.total_bytes.get()),
        ..info(FsKind::Btrfs)
    })
}

// ---------------------------------------------------------------------------------------------
// ISO 9660 (ECMA-119 §8.4 Primary Volume Descriptor; Joliet = supplementary descriptor)
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
struct RawIsoVolumeDescriptor {
    vd_type: u8,                     // 0x000 1 primary, 2 supplementary, 255 terminator
    standard_id: [u8; 5],            // 0x001 "CD001"
    version: u8,                     // 0x006
    flags: u8,                       // 0x007
    system_id: [u8; 32],             // 0x008
    volume_id: [u8; 32],             // 0x028 label (d-characters; UCS-2BE for Joliet)
    unused1: [u8; 8],                // 0x048
    volume_space_size_le: U32,       // 0x050 logical blocks (both-endian: LE then BE)
    volume_space_size_be: be::U32,   // 0x054
    escape_sequences: [u8; 32],      // 0x058 Joliet: "%/@", "%/C" or "%/E"
    volume_set_size: [u8; 4],        // 0x078
    volume_sequence_number: [u8; 4], // 0x07C
    logical_block_size_le: U16,      // 0x080
    logical_block_size_be: be::U16,  // 0x082
    path_table: [u8; 0x18],          // 0x084
    root_directory_record: [u8; 34], // 0x09C
    identifiers: [u8; 0x26F],        // 0x0BE volume set, publisher, preparer, application, files
    creation_date: [u8; 17],         // 0x32D "YYYYMMDDHHMMSScc" + tz offset
    modification_date: [u8; 17],     // 0x33E
}
const _: () = assert!(size_of::<RawIsoVolumeDescriptor>() == 0x34F);

const ISO_FIRST_DESCRIPTOR: u64 = 0x8000;
const ISO_SECTOR: u64 = 2048;
/// Descriptors looked at after the primary one, for a Joliet label.
const ISO_MAX_DESCRIPTORS: u64 = 8;
const ISO_VD_PRIMARY: u8 = 1;
const ISO_VD_SUPPLEMENTARY: u8 = 2;
const ISO_VD_TERMINATOR: u8 = 255;

/// blkid's ISO UUID: the modification date (else the creation date) as
/// "YYYY-MM-DD-HH-mm-ss-cc", unless it is all '0' with a zero offset.
fn iso_date_uuid(d: &[u8; 17]) -> Option<String> {
    let (digits, tz) = d.split_at(16);
    if digits.iter().all(|&c| c == b'0') && tz.first() == Some(&0) {
        return None;
    }
    let t = |r: std::ops::Range<usize>| {
        String::from_utf8_lossy(digits.get(r).unwrap_or(&[])).into_owned()
    };
    Some(format!(
        "{}-{}-{}-{}-{}-{}-{}",
        t(0..4),
        t(4..6),
        t(6..8),
        t(8..10),
        t(10..12),
        t(12..14),
        t(14..16)
    ))
}

/// ISO 9660: "CD001" primary descriptor at 32 KiB; LABEL = the Joliet volume id when a Joliet
/// descriptor follows (it keeps case and length), else the primary one; UUID from the dates.
fn iso9660(part: &dyn Disk) -> Option<FsInfo> {
    let pvd: RawIsoVolumeDescriptor = read_struct(part, ISO_FIRST_DESCRIPTOR)?;
    if pvd.vd_type != ISO_VD_PRIMARY || &pvd.standard_id != b"CD001" {
        return None;
    }
    let mut joliet = None;
    for i in 1..=ISO_MAX_DESCRIPTORS {
        let off = i
            .checked_mul(ISO_SECTOR)?
            .checked_add(ISO_FIRST_DESCRIPTOR)?;
        let Some(vd) = read_struct::<RawIsoVolumeDescriptor>(part, off) else {
            break;
        };
        if &vd.standard_id != b"CD001" || vd.vd_type == ISO_VD_TERMINATOR {
            break;
        }
        let esc = vd.escape_sequences.get(..3)?;
        if vd.vd_type == ISO_VD_SUPPLEMENTARY && matches!(esc, b"%/@" | b"%/C" | b"%/E") {
            let units: Vec<u16> = vd
                .volume_id
                .chunks_exact(2)
                .map(|c| {
                    u16::from_be_bytes([
                        c.first().copied().unwrap_or(0),
                        c.get(1).copied().unwrap_or(0),
                    ])
                })
                .take_while(|&u| u != 0)
                .collect();
            let s = String::from_utf16_lossy(&units).trim_end().to_string();
            if !s.is_empty() {
                joliet = Some(s);
            }
            break;
        }
    }
    let block = pvd.logical_block_size_le.get();
    Some(FsInfo {
        label: joliet.or_else(|| byte_label(&pvd.volume_id)),
        uuid: iso_date_uuid(&pvd.modification_date).or_else(|| iso_date_uuid(&pvd.creation_date)),
        block_bytes: Some(u32::from(block)),
        fs_bytes: u64::from(pvd.volume_space_size_le.get()).checked_mul(u64::from(block)),
        ..info(FsKind::Iso9660)
    })
}
