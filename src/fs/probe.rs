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

use zerocopy::big_endian as be;
use zerocopy::little_endian::{U16, U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use super::common::{byte_label, info, read_struct, utf16be_label, utf16le_label, uuid_string};
use super::fat::{self, Fat, FatType};
use super::info::{FsInfo, FsKind};
use super::{ext, ntfs, swap};
use crate::disk::Disk;

/// Run the probes in order; the first match wins.
pub(crate) fn probe(part: &dyn Disk) -> Option<FsInfo> {
    const PROBES: &[fn(&dyn Disk) -> Option<FsInfo>] = &[
        luks,
        lvm2,
        swap::probe,
        bitlocker,
        ntfs::probe,
        refs,
        exfat,
        fat,
        ext::probe,
        xfs,
        btrfs,
        iso9660,
    ];
    PROBES.iter().find_map(|p| p(part))
}

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// A mixed-endian GUID (first three fields little-endian) as Windows prints it:
/// "{4967D63B-2E29-4AD8-8399-F6A339E3D001}"; `None` when all zero.
fn windows_guid(g: &[u8; 16]) -> Option<String> {
    if g.iter().all(|&b| b == 0) {
        return None;
    }
    let [a0, a1, a2, a3, b0, b1, c0, c1, rest @ ..] = *g;
    let tail: String = rest.iter().map(|b| format!("{b:02X}")).collect();
    Some(format!(
        "{{{:08X}-{:04X}-{:04X}-{}-{}}}",
        u32::from_le_bytes([a0, a1, a2, a3]),
        u16::from_le_bytes([b0, b1]),
        u16::from_le_bytes([c0, c1]),
        tail.get(..4)?,
        tail.get(4..)?
    ))
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
            uuid_sub: if vista {
                None
            } else {
                windows_guid(&win7.guid)
            },
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
            uuid_sub: windows_guid(&togo.guid),
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

/// ReFS: blkid's magic, three zero bytes then "ReFS\0" (blkid 2.38 reports TYPE only, so no
/// UUID is given here either; the serial at 0x38 is not what any tool calls the UUID). Version
/// and sizes come from the FSRS block when it is there.
fn refs(part: &dyn Disk) -> Option<FsInfo> {
    let b: RawRefsBootSector = read_struct(part, 0)?;
    if b.jump != [0; 3] || !b.fs_name.starts_with(b"ReFS\0") {
        return None;
    }
    if &b.identifier != b"FSRS" {
        return Some(info(FsKind::Refs));
    }
    let bps = b.bytes_per_sector.get();
    Some(FsInfo {
        block_bytes: bps.checked_mul(b.sectors_per_cluster.get()),
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
/// Root directory bytes examined for the label, across its cluster chain: 128 Ki entries.
/// blkid reads up to 256 MiB; a label lives in the first entries of any volume a tool made, and
/// a bound this size keeps a hostile chain from making a probe read for long.
const EXFAT_LABEL_SCAN_BYTES: u64 = 4 << 20;
/// exFAT §4.1: FAT entries from 0xFFFFFFF7 (bad cluster) up to 0xFFFFFFFF (end of chain) end a
/// cluster chain.
const EXFAT_FAT_BAD: u32 = 0xFFFF_FFF7;

/// The volume label: the first label entry (type 0x83; a deleted one, 0x03, is skipped) of the
/// root directory, followed through its cluster chain in the FAT (exFAT §7.3, §4.1; the root
/// directory has no stream extension, so no NoFatChain flag: its chain is always in the FAT),
/// as blkid does. Bounded by [`EXFAT_LABEL_SCAN_BYTES`]; a chain that leaves the heap stops.
fn exfat_label(
    part: &dyn Disk,
    b: &RawExfatBootSector,
    sector: u64,
    cluster: u64,
) -> Option<String> {
    let heap = u64::from(b.cluster_heap_offset.get()).checked_mul(sector)?;
    let fat = u64::from(b.fat_offset.get()).checked_mul(sector)?;
    // valid cluster numbers: 2 ..= cluster_count + 1
    let last_cluster = u64::from(b.cluster_count.get()).checked_add(1)?;
    let mut c = u64::from(b.first_cluster_of_root_directory.get());
    let mut scanned = 0u64;
    while scanned < EXFAT_LABEL_SCAN_BYTES {
        if c < 2 || c > last_cluster {
            return None;
        }
        let at = c.checked_sub(2)?.checked_mul(cluster)?.checked_add(heap)?;
        let n = cluster.min(EXFAT_LABEL_SCAN_BYTES.saturating_sub(scanned));
        let bytes = part.read_vec(at, n).ok()?;
        for e in bytes.chunks_exact(size_of::<RawExfatLabelEntry>()) {
            let e = RawExfatLabelEntry::read_from_bytes(e).ok()?;
            match e.entry_type {
                EXFAT_ENTRY_EOD => return None,
                EXFAT_ENTRY_LABEL => {
                    let n = usize::from(e.character_count).min(11).checked_mul(2)?;
                    return utf16le_label(e.volume_label.get(..n)?);
                }
                _ => {}
            }
        }
        scanned = scanned.saturating_add(n);
        let next: U32 = read_struct(part, fat.checked_add(c.checked_mul(4)?)?)?;
        if next.get() >= EXFAT_FAT_BAD {
            return None;
        }
        c = u64::from(next.get());
    }
    None
}

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
    let label = exfat_label(part, &b, sector, cluster);
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
    // a truncated volume is still FAT (blkid does not compare sizes either); fs_bytes tells
    let fs = Fat::open_truncated(part).ok()?;
    let label = fs.volume_label().ok().flatten();
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
        uuid_sub: uuid_string(&sb.dev_item.uuid),
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
            if let Some(s) = utf16be_label(&vd.volume_id) {
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

#[cfg(test)]
#[allow(
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    clippy::unwrap_used,
    clippy::as_conversions
)]
pub(crate) mod tests {
    use super::*;
    use crate::disk::MemDisk;
    use crate::fs::testutil::{have_tool, probe_matches_blkid, TempImage};

    fn put(b: &mut [u8], off: usize, v: &[u8]) {
        b[off..off + v.len()].copy_from_slice(v);
    }

    /// Our result on `img`; when blkid is installed it must agree on TYPE, UUID and LABEL.
    fn check(tag: &str, img: &[u8]) -> FsInfo {
        let ours = probe(&MemDisk::new(img.to_vec())).unwrap();
        if have_tool("blkid", "util-linux") {
            let f = TempImage::with_bytes(tag, img);
            assert_eq!(probe_matches_blkid(&f), ours);
        }
        ours
    }

    /// LVM2 PV label as pvcreate writes it: label_header in sector 1, pv_header after it.
    /// 4 MiB: blkid does not look for RAID members (LVM) on floppy-sized devices.
    pub(crate) fn lvm2_image() -> Vec<u8> {
        let mut img = vec![0u8; 4 << 20];
        let s = 512;
        put(&mut img, s, b"LABELONE"); // 0x00 id
        put(&mut img, s + 0x08, &1u64.to_le_bytes()); // 0x08 sector_xl: this is sector 1
        put(&mut img, s + 0x14, &32u32.to_le_bytes()); // 0x14 offset_xl of pv_header
        put(&mut img, s + 0x18, b"LVM2 001"); // 0x18 type
        put(&mut img, s + 0x20, b"abcdefGHIJKLmnopqrSTUVWXyz012345"); // pv_uuid
        put(&mut img, s + 0x40, &(1u64 << 20).to_le_bytes()); // device_size_xl
        put(&mut img, s + 0x48, &(1u64 << 19).to_le_bytes()); // data area 0: offset
                                                              // (size 0 = rest of the device), then a zero list terminator, metadata area list
        put(&mut img, s + 0x68, &4096u64.to_le_bytes()); // metadata area 0: offset
        put(&mut img, s + 0x70, &(4096u64 * 100).to_le_bytes()); // metadata area 0: size
        let crc = lvm_crc(&img[s + 0x14..s + 0x200]);
        put(&mut img, s + 0x10, &crc.to_le_bytes()); // 0x10 crc_xl
        img
    }

    #[test]
    fn lvm2_label() {
        let info = check("lvm2", &lvm2_image());
        assert_eq!(info.kind, FsKind::Lvm2);
        assert_eq!(
            info.uuid.as_deref(),
            Some("abcdef-GHIJ-KLmn-opqr-STUV-WXyz-012345")
        );
        let mut bad = lvm2_image();
        bad[512 + 0x30] ^= 1; // inside the CRC-covered area
        assert_eq!(lvm2(&MemDisk::new(bad)), None);
        let mut moved = lvm2_image();
        moved[512 + 0x08] = 2; // sector_xl does not name the sector it is in
        assert_eq!(lvm2(&MemDisk::new(moved)), None);
    }

    #[test]
    fn lvm_crc_is_the_nibble_table_crc() {
        // lvm2's own calc_crc, transcribed: 4 bits at a time, initial 0xf597a6cf, no final xor
        const T: [u32; 16] = [
            0x00000000, 0x1db71064, 0x3b6e20c8, 0x26d930ac, 0x76dc4190, 0x6b6b51f4, 0x4db26158,
            0x5005713c, 0xedb88320, 0xf00f9344, 0xd6d6a3e8, 0xcb61b38c, 0x9b64c2b0, 0x86d3d2d4,
            0xa00ae278, 0xbdbdf21c,
        ];
        let data: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
        let mut crc = LVM_INITIAL_CRC;
        for &b in &data {
            crc ^= u32::from(b);
            crc = (crc >> 4) ^ T[(crc & 0xf) as usize];
            crc = (crc >> 4) ^ T[(crc & 0xf) as usize];
        }
        assert_eq!(lvm_crc(&data), crc);
    }

    /// exFAT boot region (sectors 0..=11 with the boot checksum) and a root directory holding a
    /// label entry. 512-byte sectors, 4 KiB clusters, 8 MiB.
    pub(crate) fn exfat_image(label: &str) -> Vec<u8> {
        let mut img = vec![0u8; 8 << 20];
        let b = &mut img[..512];
        put(b, 0, &[0xEB, 0x76, 0x90]); // jump
        put(b, 3, b"EXFAT   "); // file system name
        put(b, 0x48, &16384u64.to_le_bytes()); // volume length (sectors)
        put(b, 0x50, &128u32.to_le_bytes()); // FAT offset
        put(b, 0x54, &128u32.to_le_bytes()); // FAT length
        put(b, 0x58, &256u32.to_le_bytes()); // cluster heap offset
        put(b, 0x5C, &2016u32.to_le_bytes()); // cluster count
        put(b, 0x60, &4u32.to_le_bytes()); // root directory cluster
        put(b, 0x64, &0xDEAD_BEEFu32.to_le_bytes()); // serial
        put(b, 0x68, &0x0100u16.to_le_bytes()); // revision 1.0
        b[0x6C] = 9; // bytes per sector shift
        b[0x6D] = 3; // sectors per cluster shift
        b[0x6E] = 1; // number of FATs
        b[0x6F] = 0x80; // drive select
        put(b, 0x1FE, &[0x55, 0xAA]); // boot signature
        for s in 1..=8 {
            put(&mut img, s * 512 + 508, &[0, 0, 0x55, 0xAA]); // extended boot signatures
        }
        // exFAT §3.4 boot checksum over sectors 0..=10, skipping VolumeFlags and PercentInUse
        let mut sum = 0u32;
        for (i, &byte) in img[..11 * 512].iter().enumerate() {
            if matches!(i, 0x6A | 0x6B | 0x70) {
                continue;
            }
            sum = sum.rotate_right(1).wrapping_add(u32::from(byte));
        }
        for k in 0..128 {
            put(&mut img, 11 * 512 + 4 * k, &sum.to_le_bytes());
        }
        // FAT: media + reserved entry, clusters 2-3 (bitmap, upcase), 4 = root: end of chain
        for (c, v) in [(0usize, 0xFFFF_FFF8u32), (1, !0), (2, !0), (3, !0), (4, !0)] {
            put(&mut img, 128 * 512 + 4 * c, &v.to_le_bytes());
        }
        let root = 256 * 512 + 2 * 4096;
        let units: Vec<u16> = label.encode_utf16().collect();
        img[root] = 0x83; // volume label entry
        img[root + 1] = units.len() as u8; // character count
        for (i, u) in units.iter().enumerate() {
            put(&mut img, root + 2 + 2 * i, &u.to_le_bytes());
        }
        img
    }

    #[test]
    fn exfat_boot_sector_and_label() {
        let info = check("exfat", &exfat_image("Ëxfat Vol"));
        assert_eq!(info.kind, FsKind::Exfat);
        assert_eq!(info.uuid.as_deref(), Some("DEAD-BEEF"));
        assert_eq!(info.label.as_deref(), Some("Ëxfat Vol"));
        assert_eq!(info.block_bytes, Some(4096));
        assert_eq!(info.fs_bytes, Some(8 << 20));
        assert_eq!(info.version.as_deref(), Some("1.0"));
        let mut bad = exfat_image("x");
        bad[0x20] = 1; // inside the must-be-zero area
        assert_ne!(
            probe(&MemDisk::new(bad)).map(|i| i.kind),
            Some(FsKind::Exfat)
        );
    }

    /// Issue 15, item 18: the label in the root directory's tenth cluster, after a deleted
    /// label entry (type 0x03) and nine clusters of other entries, found by following the FAT
    /// chain 4 -> 5 -> ... -> 13; blkid agrees. A chain that loops is bounded.
    #[test]
    fn exfat_label_in_the_tenth_root_cluster() {
        let mut img = exfat_image("First");
        let cluster_at = |c: usize| 256 * 512 + (c - 2) * 4096;
        img[cluster_at(4)] = 0x03; // the label entry of exfat_image, deleted
        for c in 4..=12 {
            // FAT: c -> c + 1
            put(&mut img, 128 * 512 + 4 * c, &(c as u32 + 1).to_le_bytes());
            for e in 0..128 {
                let at = cluster_at(c) + 32 * e;
                if img[at] == 0 {
                    img[at] = 0x05; // a deleted file entry: not the end, not a label
                }
            }
        }
        put(&mut img, 128 * 512 + 4 * 13, &0xFFFF_FFFFu32.to_le_bytes());
        let tenth = cluster_at(13);
        img[tenth] = 0x83;
        img[tenth + 1] = 5;
        for (i, u) in "Tenth".encode_utf16().enumerate() {
            put(&mut img, tenth + 2 + 2 * i, &u.to_le_bytes());
        }
        // check() compares with blkid (LABEL included) when it is installed
        let info = check("exfat", &img);
        assert_eq!(info.label.as_deref(), Some("Tenth"));
        // a chain that points back to itself: no label, and the scan ends
        let mut looped = img.clone();
        put(&mut looped, 128 * 512 + 4 * 12, &4u32.to_le_bytes());
        let label = |b: Vec<u8>| probe(&MemDisk::new(b)).unwrap().label;
        assert_eq!(label(looped), None);
        // a chain that leaves the cluster heap: no label
        let mut out = img;
        put(&mut out, 128 * 512 + 4 * 12, &0x00FF_FFFFu32.to_le_bytes());
        assert_eq!(label(out), None);
    }

    /// A Windows 7+ BitLocker header with its first FVE metadata block at 64 KiB.
    pub(crate) fn bitlocker_image(jump: [u8; 3], serial: u32) -> Vec<u8> {
        let mut img = vec![0u8; 1 << 20];
        put(&mut img, 0, &jump); // jump
        put(&mut img, 3, b"-FVE-FS-"); // signature
        put(&mut img, 0x0B, &512u16.to_le_bytes()); // bytes per sector
        img[0x0D] = 8; // sectors per cluster
        img[0x15] = 0xF8; // media
        put(&mut img, 0x43, &serial.to_le_bytes()); // volume serial
        put(&mut img, 0x47, b"NO NAME    "); // label
        put(
            &mut img,
            0xA0,
            &[0x3B, 0xD6, 0x67, 0x49, 0x29, 0x2E, 0xD8, 0x4A],
        ); // GUID
        put(
            &mut img,
            0xA8,
            &[0x83, 0x99, 0xF6, 0xA3, 0x39, 0xE3, 0xD0, 0x01],
        );
        put(&mut img, 0xB0, &0x10000u64.to_le_bytes()); // FVE metadata block 1
        put(&mut img, 0xB8, &0x20000u64.to_le_bytes()); // FVE metadata block 2
        put(&mut img, 0xC0, &0x30000u64.to_le_bytes()); // FVE metadata block 3
        put(&mut img, 0x1FE, &[0x55, 0xAA]);
        for off in [0x10000usize, 0x20000, 0x30000] {
            put(&mut img, off, b"-FVE-FS-"); // FVE block signature
            put(&mut img, off + 8, &0x40u16.to_le_bytes()); // size
            put(&mut img, off + 10, &2u16.to_le_bytes()); // version 2
        }
        img
    }

    #[test]
    fn bitlocker_windows7_vista_and_to_go() {
        let info = check("bde7", &bitlocker_image([0xEB, 0x58, 0x90], 305_419_896));
        assert_eq!(info.kind, FsKind::Bitlocker);
        assert!(info.encrypted);
        assert_eq!(info.uuid.as_deref(), Some("0000000305419896"));
        assert_eq!(
            info.uuid_sub.as_deref(),
            Some("{4967D63B-2E29-4AD8-8399-F6A339E3D001}")
        );
        assert_eq!(info.version.as_deref(), Some("2"));
        let info = check("bde7neg", &bitlocker_image([0xEB, 0x58, 0x90], 0xFFFF_FFFE));
        assert_eq!(info.uuid.as_deref(), Some("-000000000000002"));
        let info = check("bdevista", &bitlocker_image([0xEB, 0x52, 0x90], 7));
        assert_eq!((info.kind, info.uuid), (FsKind::Bitlocker, None));

        // To Go: a FAT32 look-alike with the FVE pointers at 0x1B8
        let mut togo = vec![0u8; 1 << 20];
        put(&mut togo, 0, &[0xEB, 0x58, 0x90]);
        put(&mut togo, 3, b"MSWIN4.1");
        put(&mut togo, 0x0B, &512u16.to_le_bytes());
        togo[0x0D] = 8;
        put(&mut togo, 0x0E, &32u16.to_le_bytes());
        togo[0x10] = 2;
        togo[0x15] = 0xF8;
        put(&mut togo, 0x20, &2048u32.to_le_bytes());
        put(&mut togo, 0x24, &8u32.to_le_bytes());
        put(&mut togo, 0x2C, &2u32.to_le_bytes());
        put(&mut togo, 0x52, b"FAT32   ");
        put(&mut togo, 0x1B8, &0x10000u64.to_le_bytes()); // FVE metadata block 1
        put(&mut togo, 0x1FE, &[0x55, 0xAA]);
        put(&mut togo, 0x10000, b"-FVE-FS-");
        put(&mut togo, 0x1000A, &2u16.to_le_bytes());
        let info = check("bdetogo", &togo);
        assert_eq!(info.kind, FsKind::Bitlocker);
        assert!(info.encrypted);
        // without the FVE block it is the FAT32 it pretends to be
        put(&mut togo, 0x10000, b"--------");
        assert_ne!(
            bitlocker(&MemDisk::new(togo)).map(|i| i.kind),
            Some(FsKind::Bitlocker)
        );
    }

    #[test]
    fn refs_boot_sector() {
        let mut img = vec![0u8; 1 << 20];
        put(&mut img, 3, b"ReFS\0\0\0\0"); // file system name (jump is zero)
        put(&mut img, 0x10, b"FSRS"); // identifier
        put(&mut img, 0x14, &0x200u16.to_le_bytes()); // length
        put(&mut img, 0x18, &2048u64.to_le_bytes()); // sectors
        put(&mut img, 0x20, &512u32.to_le_bytes()); // bytes per sector
        put(&mut img, 0x24, &128u32.to_le_bytes()); // sectors per cluster: 64 KiB
        img[0x28] = 3; // major version
        img[0x29] = 4; // minor version
        put(&mut img, 0x38, &0x0123_4567_89AB_CDEFu64.to_le_bytes()); // serial
        let info = check("refs", &img);
        assert_eq!(info.kind, FsKind::Refs);
        assert_eq!(info.uuid, None);
        assert_eq!(info.version.as_deref(), Some("3.4"));
        assert_eq!(info.block_bytes, Some(65536));
        assert_eq!(info.fs_bytes, Some(1 << 20));
        img[0] = 0xEB; // blkid's magic wants the jump bytes zero
        assert_eq!(refs(&MemDisk::new(img)), None);
    }

    /// An ISO 9660 image: primary descriptor, optional Joliet descriptor, terminator.
    pub(crate) fn iso_image(joliet: Option<&str>) -> Vec<u8> {
        let mut img = vec![0u8; 40 * 2048];
        let mut vd = 0x8000;
        let descriptor = |img: &mut Vec<u8>, off: usize, kind: u8| {
            img[off] = kind; // type
            put(img, off + 1, b"CD001"); // standard id
            img[off + 6] = 1; // version
            put(img, off + 0x50, &40u32.to_le_bytes()); // space size, LE
            put(img, off + 0x54, &40u32.to_be_bytes()); // space size, BE
            put(img, off + 0x80, &2048u16.to_le_bytes()); // block size, LE
            put(img, off + 0x82, &2048u16.to_be_bytes()); // block size, BE
            put(img, off + 0x32D, b"2024010203040506\x04"); // creation date, GMT+1
            put(img, off + 0x33E, b"0000000000000000\0"); // modification date: unset
        };
        descriptor(&mut img, vd, 1);
        put(&mut img, vd + 0x08, &[b' '; 32]); // system id
        let mut vol = [b' '; 32];
        vol[..12].copy_from_slice(b"MY_ISO_LABEL");
        put(&mut img, vd + 0x28, &vol); // volume id
        vd += 2048;
        if let Some(j) = joliet {
            descriptor(&mut img, vd, 2);
            put(&mut img, vd + 0x58, b"%/E"); // Joliet UCS-2 level 3
            let mut units: Vec<u8> = j.encode_utf16().flat_map(u16::to_be_bytes).collect();
            while units.len() < 32 {
                units.extend_from_slice(&[0, b' ']);
            }
            put(&mut img, vd + 0x28, &units[..32]); // volume id, UCS-2BE
            vd += 2048;
        }
        img[vd] = 255; // terminator
        put(&mut img, vd + 1, b"CD001");
        img[vd + 6] = 1;
        img
    }

    #[test]
    fn iso9660_primary_and_joliet() {
        let info = check("iso", &iso_image(None));
        assert_eq!(info.kind, FsKind::Iso9660);
        assert_eq!(info.label.as_deref(), Some("MY_ISO_LABEL"));
        assert_eq!(info.uuid.as_deref(), Some("2024-01-02-03-04-05-06"));
        assert_eq!(info.fs_bytes, Some(40 * 2048));
        let info = check("isojoliet", &iso_image(Some("My ISO label")));
        assert_eq!(info.label.as_deref(), Some("My ISO label"));
        let mut bad = iso_image(None);
        bad[0x8001] = b'X'; // standard id "XD001"
        assert_eq!(iso9660(&MemDisk::new(bad)), None);
        assert_eq!(
            iso9660(&MemDisk::new(iso_image(None)[..0x8100].to_vec())),
            None
        );
    }

    /// LUKS headers: LUKS1 phdr, LUKS2 binary header with a label.
    #[test]
    fn luks_headers() {
        for version in [1u16, 2] {
            let mut img = vec![0u8; 1 << 20];
            put(&mut img, 0, LUKS_MAGIC); // magic
            put(&mut img, 6, &version.to_be_bytes()); // version, big-endian
            put(&mut img, 0xA8, b"0f1e2d3c-4b5a-4968-8776-655443322110"); // uuid text
            if version == 2 {
                put(&mut img, 0x08, &16384u64.to_be_bytes()); // hdr_size
                put(&mut img, 0x18, b"vault"); // label
                put(&mut img, 0x48, b"sha256"); // checksum algorithm
            } else {
                put(&mut img, 0x08, b"aes"); // cipher name
            }
            let info = luks(&MemDisk::new(img.clone())).unwrap();
            assert_eq!(
                info.kind,
                if version == 1 {
                    FsKind::Luks1
                } else {
                    FsKind::Luks2
                }
            );
            assert!(info.encrypted);
            assert_eq!(
                info.uuid.as_deref(),
                Some("0f1e2d3c-4b5a-4968-8776-655443322110")
            );
            assert_eq!(info.label.as_deref(), (version == 2).then_some("vault"));
            put(&mut img, 6, &3u16.to_be_bytes());
            assert_eq!(luks(&MemDisk::new(img)), None);
        }
    }

    /// ext superblock fixture: block size, counts and features as given.
    pub(crate) fn ext_image(compat: u32, incompat: u32, ro_compat: u32, hi: u32) -> Vec<u8> {
        let mut img = vec![0u8; 4096];
        let s = 1024;
        put(&mut img, s + 0x04, &8192u32.to_le_bytes()); // s_blocks_count_lo
        put(&mut img, s + 0x18, &2u32.to_le_bytes()); // s_log_block_size: 4 KiB
        put(&mut img, s + 0x38, &0xEF53u16.to_le_bytes()); // s_magic
        put(&mut img, s + 0x4C, &1u32.to_le_bytes()); // s_rev_level
        put(&mut img, s + 0x5C, &compat.to_le_bytes()); // s_feature_compat
        put(&mut img, s + 0x60, &incompat.to_le_bytes()); // s_feature_incompat
        put(&mut img, s + 0x64, &ro_compat.to_le_bytes()); // s_feature_ro_compat
        put(&mut img, s + 0x68, &[0x11; 16]); // s_uuid
        put(&mut img, s + 0x78, b"root\0garbage"); // s_volume_name: cut at NUL
        put(&mut img, s + 0x150, &hi.to_le_bytes()); // s_blocks_count_hi
        img
    }

    #[test]
    fn ext_kind_follows_blkid_feature_rules() {
        let kind = |c, i, r| {
            ext::probe(&MemDisk::new(ext_image(c, i, r, 0)))
                .unwrap()
                .kind
        };
        assert_eq!(kind(0, 0x2, 0x3), FsKind::Ext2); // filetype, sparse_super + large_file
        assert_eq!(kind(0x4, 0x2, 0x3), FsKind::Ext3); // + has_journal
        assert_eq!(kind(0x4, 0x6, 0x3), FsKind::Ext3); // + needs_recovery
        assert_eq!(kind(0x4, 0x42, 0x3), FsKind::Ext4); // + extents
        assert_eq!(kind(0, 0x2, 0x8), FsKind::Ext4); // huge_file without a journal
        assert_eq!(kind(0, 0x6, 0), FsKind::Ext4); // recovery flag without journal: blkid says ext4
        assert_eq!(ext::probe(&MemDisk::new(ext_image(0x4, 0x8, 0, 0))), None); // journal device
        let info = ext::probe(&MemDisk::new(ext_image(0, 0x80, 0, 1))).unwrap();
        assert_eq!(info.fs_bytes, Some(((1u64 << 32) + 8192) * 4096)); // 64bit: hi counts
        assert_eq!(info.label.as_deref(), Some("root"));
        assert_eq!(
            info.uuid.as_deref(),
            Some("11111111-1111-1111-1111-111111111111")
        );
        let info = ext::probe(&MemDisk::new(ext_image(0, 0, 0, 1))).unwrap();
        assert_eq!(info.fs_bytes, Some(8192 * 4096)); // no 64bit: hi ignored
        let mut bad = ext_image(0, 0, 0, 0);
        put(&mut bad, 1024 + 0x18, &40u32.to_le_bytes()); // absurd block size
        assert_eq!(ext::probe(&MemDisk::new(bad)), None);
        assert_eq!(
            ext::probe(&MemDisk::new(ext_image(0, 0, 0, 0)[..1500].to_vec())),
            None
        );
    }

    #[test]
    fn swap_in_both_byte_orders_and_page_sizes() {
        for (page, big) in [(4096usize, false), (4096, true), (65536, false)] {
            let mut img = vec![0u8; 1 << 20];
            let ver = if big {
                1u32.to_be_bytes()
            } else {
                1u32.to_le_bytes()
            };
            let last = if big {
                255u32.to_be_bytes()
            } else {
                255u32.to_le_bytes()
            };
            put(&mut img, 0x400, &ver); // version
            put(&mut img, 0x404, &last); // last_page
            put(&mut img, 0x40C, &[0xAB; 16]); // uuid
            put(&mut img, 0x41C, b"swp"); // volume name
            put(&mut img, page - 10, b"SWAPSPACE2"); // magic
            let info = swap::probe(&MemDisk::new(img.clone())).unwrap();
            assert_eq!(info.fs_bytes, Some(256 * page as u64));
            assert_eq!(info.label.as_deref(), Some("swp"));
            put(&mut img, 0x4AC, &[1]); // garbage in padding[32]: no uuid/label
            let info = swap::probe(&MemDisk::new(img.clone())).unwrap();
            assert_eq!((info.label, info.uuid), (None, None));
            put(&mut img, 0x404, &[0; 4]); // last_page 0
            assert_eq!(swap::probe(&MemDisk::new(img)), None);
        }
    }

    #[test]
    fn xfs_and_btrfs_superblocks() {
        let mut x = vec![0u8; 4096];
        put(&mut x, 0, b"XFSB"); // magic
        put(&mut x, 4, &4096u32.to_be_bytes()); // blocksize
        put(&mut x, 8, &1000u64.to_be_bytes()); // dblocks
        put(&mut x, 0x20, &[0x22; 16]); // uuid
        put(&mut x, 0x58, &4u32.to_be_bytes()); // agcount
        put(&mut x, 0x64, &0xB4A5u16.to_be_bytes()); // versionnum: v5
        put(&mut x, 0x66, &512u16.to_be_bytes()); // sectsize
        put(&mut x, 0x68, &512u16.to_be_bytes()); // inodesize
        put(&mut x, 0x6C, b"xfs-root"); // fname
        x[0x78] = 12; // blocklog
        x[0x79] = 9; // sectlog
        x[0x7A] = 9; // inodelog
        x[0x7B] = 3; // inopblog
        let info = xfs(&MemDisk::new(x.clone())).unwrap();
        assert_eq!(info.fs_bytes, Some(4096 * 1000));
        assert_eq!(info.label.as_deref(), Some("xfs-root"));
        x[0x7B] = 4; // inopblog inconsistent with blocklog - inodelog
        assert_eq!(xfs(&MemDisk::new(x)), None);

        let mut b = vec![0u8; 0x10000 + 4096];
        let s = 0x10000;
        put(&mut b, s + 0x20, &[0x33; 16]); // fsid
        put(&mut b, s + 0x40, BTRFS_MAGIC); // magic
        put(&mut b, s + 0x70, &(1u64 << 30).to_le_bytes()); // total_bytes
        put(&mut b, s + 0x90, &4096u32.to_le_bytes()); // sectorsize
        put(&mut b, s + 0xC9 + 0x08, &(1u64 << 29).to_le_bytes()); // dev_item.total_bytes
        put(&mut b, s + 0x12B, b"btr"); // label
        let info = btrfs(&MemDisk::new(b.clone())).unwrap();
        assert_eq!(info.fs_bytes, Some(1 << 29));
        assert_eq!(
            info.uuid.as_deref(),
            Some("33333333-3333-3333-3333-333333333333")
        );
        assert_eq!(btrfs(&MemDisk::new(b[..0x10040].to_vec())), None); // truncated
    }

    #[test]
    fn fat_probe_on_the_fixture() {
        let info = check("fat12", &crate::fs::fat::tests::fat12_image());
        assert_eq!(info.kind, FsKind::Fat12);
        assert_eq!(info.label.as_deref(), Some("FIXTURE"));
        assert_eq!(info.uuid.as_deref(), Some("1234-ABCD"));
        assert_eq!(info.version.as_deref(), Some("FAT12"));
        // truncated after the root directory: still FAT12, with the size it claims
        let img = crate::fs::fat::tests::fat12_image();
        let info = probe(&MemDisk::new(img[..4096].to_vec())).unwrap();
        assert_eq!(info.kind, FsKind::Fat12);
        assert_eq!(info.label.as_deref(), Some("FIXTURE"));
        assert_eq!(info.fs_bytes, Some(img.len() as u64));
        // truncated inside the boot sector: nothing
        assert_eq!(probe(&MemDisk::new(img[..300].to_vec())), None);
    }

    #[test]
    fn nothing_on_empty_or_tiny_disks() {
        for n in [0usize, 1, 3, 11, 511, 512, 1024, 4096, 70_000] {
            assert_eq!(probe(&MemDisk::new(vec![0; n])), None, "{n}");
            assert_eq!(probe(&MemDisk::new(vec![0xFF; n])), None, "{n}");
        }
    }

    #[test]
    fn label_and_uuid_helpers() {
        assert_eq!(byte_label(b"abc  \0xyz"), Some("abc".into()));
        assert_eq!(byte_label(b"   "), None);
        assert_eq!(
            utf16le_label(&[b'a', 0, 0xE9, 0, 0, 0, b'z', 0]),
            Some("aé".into())
        );
        assert_eq!(uuid_string(&[0; 16]), None);
        assert_eq!(
            uuid_string(&[0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef, 0, 1, 2, 3, 4, 5, 6, 7]),
            Some("01234567-89ab-cdef-0001-020304050607".into())
        );
        assert_eq!(lvm_uuid(b"short"), None);
    }
}
