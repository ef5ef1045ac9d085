//! Byte layout of the Master Boot Record and of its partition entries, and the encoders.
//!
//! Layout: the de-facto IBM PC MBR as documented in the UEFI specification, section 5.2.1
//! ("Legacy Master Boot Record"), table 5-1 and 5-2. All multi-byte fields are little-endian.

use zerocopy::little_endian::U32;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use super::{ChsAddr, MbrPartition};
use crate::error::{Error, Result};

/// Size of the MBR sector as laid out on disk (also on 4K-sector disks: the rest of the sector
/// is not part of the MBR).
pub const MBR_BYTES: usize = 512;
/// Size of the boot code area in front of the disk signature.
pub const BOOT_CODE_BYTES: usize = 440;
/// Boot signature at 0x1FE.
pub const MBR_SIGNATURE: [u8; 2] = [0x55, 0xAA];
/// Number of primary partition slots.
pub const PRIMARY_SLOTS: usize = 4;

/// GPT protective partition type (UEFI spec 5.2.3).
pub const TYPE_PROTECTIVE: u8 = 0xEE;
/// Extended container with CHS addressing (DOS 3.3+).
pub const TYPE_EXTENDED_CHS: u8 = 0x05;
/// Extended container with LBA addressing (Windows 95+).
pub const TYPE_EXTENDED_LBA: u8 = 0x0F;
/// Linux extended container.
pub const TYPE_EXTENDED_LINUX: u8 = 0x85;
/// Status byte of an active (bootable) partition.
pub const STATUS_ACTIVE: u8 = 0x80;
/// Status byte of an inactive partition.
pub const STATUS_INACTIVE: u8 = 0x00;

/// Whether an MBR type byte marks an extended container (its entries link EBRs).
pub fn is_extended_type(type_id: u8) -> bool {
    matches!(
        type_id,
        TYPE_EXTENDED_CHS | TYPE_EXTENDED_LBA | TYPE_EXTENDED_LINUX
    )
}

/// One 16-byte partition entry (UEFI spec table 5-2).
#[repr(C)]
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Default,
    FromBytes,
    IntoBytes,
    Immutable,
    KnownLayout,
    Unaligned,
)]
pub struct RawMbrEntry {
    /// 0x80 active, 0x00 inactive; anything else is invalid.
    pub status: u8, // 0x00
    /// Head, sector (bits 0-5) + cylinder bits 8-9 (bits 6-7), cylinder bits 0-7.
    pub chs_start: [u8; 3], // 0x01
    pub partition_type: u8, // 0x04
    pub chs_end: [u8; 3],   // 0x05
    pub starting_lba: U32,  // 0x08
    pub size_in_lba: U32,   // 0x0C
}
const _: () = assert!(core::mem::size_of::<RawMbrEntry>() == 16);

/// The 512-byte MBR sector (UEFI spec table 5-1).
#[repr(C)]
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout, Unaligned,
)]
pub struct RawMbr {
    pub boot_code: [u8; BOOT_CODE_BYTES], // 0x000
    /// Windows disk signature ("unique MBR disk signature").
    pub disk_signature: U32, // 0x1B8
    /// Zero, or 0x5A5A on "copy-protected" disks.
    pub reserved: [u8; 2], // 0x1BC
    pub entries: [RawMbrEntry; PRIMARY_SLOTS], // 0x1BE
    /// 0x55 0xAA.
    pub signature: [u8; 2], // 0x1FE
}
const _: () = assert!(core::mem::size_of::<RawMbr>() == MBR_BYTES);

impl RawMbr {
    /// Decode the first 512 bytes of `bytes` (fails only when fewer are given). Every byte is
    /// kept, so `to_bytes` gives them back unchanged.
    pub fn from_bytes(bytes: &[u8]) -> Result<RawMbr> {
        RawMbr::read_from_prefix(bytes)
            .map(|(mbr, _)| mbr)
            .map_err(|_| {
                Error::corrupt(format!(
                    "MBR at 0x0: expected {MBR_BYTES} bytes, found {}",
                    bytes.len()
                ))
            })
    }

    /// The 512 bytes of this MBR.
    pub fn to_bytes(&self) -> [u8; MBR_BYTES] {
        let mut out = [0u8; MBR_BYTES];
        out.copy_from_slice(self.as_bytes());
        out
    }

    /// The 0x55AA boot signature is present.
    pub fn has_signature(&self) -> bool {
        self.signature == MBR_SIGNATURE
    }
}

impl ChsAddr {
    /// Decode the 3 on-disk bytes (head, sector | cylinder high bits, cylinder low bits).
    pub fn from_bytes(b: [u8; 3]) -> ChsAddr {
        let [head, sector_cyl_hi, cyl_lo] = b;
        ChsAddr {
            cylinder: (u16::from(sector_cyl_hi & 0xC0) << 2) | u16::from(cyl_lo),
            head,
            sector: sector_cyl_hi & 0x3F,
        }
    }

    /// Encode to the 3 on-disk bytes; the cylinder is cut to its 10 bits and the sector to 6.
    pub fn to_bytes(self) -> [u8; 3] {
        let [cyl_lo, cyl_hi] = self.cylinder.to_le_bytes();
        [
            self.head,
            (self.sector & 0x3F) | ((cyl_hi & 0x03) << 6),
            cyl_lo,
        ]
    }

    /// The CHS address of `lba` in the 255-head, 63-sector translation gdisk and fdisk use, or
    /// 1023/255/63 (bytes FF FF FF, what sgdisk 1.0 writes) when the LBA is beyond what CHS can
    /// address (about 7.8 GiB at 512-byte sectors).
    pub fn from_lba(lba: u64) -> ChsAddr {
        const HEADS: u64 = 255;
        const SECTORS: u64 = 63;
        const CYLINDERS: u64 = 1024;
        const PER_CYLINDER: u64 = HEADS * SECTORS;
        const BEYOND: ChsAddr = ChsAddr {
            cylinder: 1023,
            head: 255,
            sector: 63,
        };
        if lba >= PER_CYLINDER * CYLINDERS {
            return BEYOND;
        }
        let cylinder = lba / PER_CYLINDER;
        let rest = lba % PER_CYLINDER;
        let head = rest / SECTORS;
        let sector = (rest % SECTORS).saturating_add(1);
        match (
            u16::try_from(cylinder),
            u8::try_from(head),
            u8::try_from(sector),
        ) {
            (Ok(cylinder), Ok(head), Ok(sector)) => ChsAddr {
                cylinder,
                head,
                sector,
            },
            _ => BEYOND,
        }
    }
}

/// Build a protective MBR as gdisk does (UEFI spec 5.2.3): the given boot code, disk signature
/// 0, one inactive 0xEE entry from LBA 1 covering the disk (at most 0xFFFFFFFF sectors), CHS
/// start 0/0/2 and CHS end computed like gdisk (FF FF FF beyond CHS range), other slots zero.
///
/// gdisk writes 0xFFFFFFFF also for a disk of exactly 2^32 - 1 sectors (one past its end); we
/// follow the UEFI rule `min(disk_sectors - 1, 0xFFFFFFFF)` there.
pub fn protective_mbr(boot_code: &[u8; BOOT_CODE_BYTES], disk_sectors: u64) -> [u8; MBR_BYTES] {
    let size = u32::try_from(disk_sectors.saturating_sub(1)).unwrap_or(u32::MAX);
    let last_lba = u64::from(size); // start 1 + size - 1
    let entry = RawMbrEntry {
        status: STATUS_INACTIVE,
        chs_start: ChsAddr::from_lba(1).to_bytes(),
        partition_type: TYPE_PROTECTIVE,
        chs_end: ChsAddr::from_lba(last_lba).to_bytes(),
        starting_lba: U32::new(1),
        size_in_lba: U32::new(size),
    };
    RawMbr {
        boot_code: *boot_code,
        disk_signature: U32::new(0),
        reserved: [0; 2],
        entries: [
            entry,
            RawMbrEntry::default(),
            RawMbrEntry::default(),
            RawMbrEntry::default(),
        ],
        signature: MBR_SIGNATURE,
    }
    .to_bytes()
}

/// Encode an MBR from boot code, a disk signature and up to four primary entries. Each entry
/// goes to slot `index - 1` with its own status, type, CHS fields and LBA range; unused slots
/// are zero. Fails (InvalidInput) on an index outside 1..=4, two entries for one slot, a
/// logical partition, or an LBA range that does not fit 32 bits.
pub fn encode(
    boot_code: &[u8; BOOT_CODE_BYTES],
    disk_signature: u32,
    primaries: &[MbrPartition],
) -> Result<[u8; MBR_BYTES]> {
    let mut entries = [RawMbrEntry::default(); PRIMARY_SLOTS];
    let mut used = [false; PRIMARY_SLOTS];
    for p in primaries {
        let slot = p
            .index
            .checked_sub(1)
            .and_then(|s| usize::try_from(s).ok())
            .filter(|&s| s < PRIMARY_SLOTS && !p.logical)
            .ok_or_else(|| {
                Error::invalid(format!(
                    "MBR entry: expected a primary slot 1..=4, found index {}",
                    p.index
                ))
            })?;
        let (Some(entry), Some(taken)) = (entries.get_mut(slot), used.get_mut(slot)) else {
            return Err(Error::invalid("MBR entry slot out of range"));
        };
        if *taken {
            return Err(Error::invalid(format!(
                "MBR entry: slot {} given twice",
                p.index
            )));
        }
        *taken = true;
        let start = u32::try_from(p.start_lba).map_err(|_| {
            Error::invalid(format!(
                "MBR entry {}: start LBA 0x{:x} does not fit 32 bits",
                p.index, p.start_lba
            ))
        })?;
        let size = u32::try_from(p.sectors).map_err(|_| {
            Error::invalid(format!(
                "MBR entry {}: size 0x{:x} sectors does not fit 32 bits",
                p.index, p.sectors
            ))
        })?;
        *entry = RawMbrEntry {
            status: p.status,
            chs_start: p.chs_start.to_bytes(),
            partition_type: p.type_id,
            chs_end: p.chs_end.to_bytes(),
            starting_lba: U32::new(start),
            size_in_lba: U32::new(size),
        };
    }
    Ok(RawMbr {
        boot_code: *boot_code,
        disk_signature: U32::new(disk_signature),
        reserved: [0; 2],
        entries,
        signature: MBR_SIGNATURE,
    }
    .to_bytes())
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
    fn chs_round_trip_and_gdisk_values() {
        assert_eq!(ChsAddr::from_lba(1).to_bytes(), [0x00, 0x02, 0x00]);
        // 64 MiB disk: sgdisk writes 28 20 08 as the end of the protective entry (LBA 131071)
        assert_eq!(ChsAddr::from_lba(131071).to_bytes(), [0x28, 0x20, 0x08]);
        assert_eq!(ChsAddr::from_lba(1 << 40).to_bytes(), [0xFF, 0xFF, 0xFF]);
        for b in [[0u8, 1, 0], [0xFE, 0xFF, 0xFF], [3, 0x81, 7]] {
            assert_eq!(ChsAddr::from_bytes(b).to_bytes(), b);
        }
        let c = ChsAddr::from_bytes([0xFE, 0xFF, 0xFF]);
        assert_eq!((c.cylinder, c.head, c.sector), (1023, 254, 63));
    }

    #[test]
    fn protective_mbr_matches_sgdisk() {
        // `truncate -s 64M d && sgdisk -o d`: bytes 0x1BE..0x1CE of the result
        let expect = [
            0x00, 0x00, 0x02, 0x00, 0xEE, 0x28, 0x20, 0x08, 0x01, 0x00, 0x00, 0x00, 0xFF, 0xFF,
            0x01, 0x00,
        ];
        let m = protective_mbr(&[0; BOOT_CODE_BYTES], 131072);
        assert_eq!(&m[0x1BE..0x1CE], &expect);
        assert_eq!(&m[0x1CE..0x1FE], &[0u8; 48]);
        assert_eq!(&m[0x1FE..], &MBR_SIGNATURE);
        // 20 GiB disk: sgdisk writes 00 02 00 ee ff ff ff 01 00 00 00 ff ff 7f 02
        let m = protective_mbr(&[0; BOOT_CODE_BYTES], 20 << 21);
        let expect = [
            0x00, 0x00, 0x02, 0x00, 0xEE, 0xFF, 0xFF, 0xFF, 0x01, 0x00, 0x00, 0x00, 0xFF, 0xFF,
            0x7F, 0x02,
        ];
        assert_eq!(&m[0x1BE..0x1CE], &expect);
        // 3 TiB disk: size saturates, CHS end FF FF FF
        let m = protective_mbr(&[0x90; BOOT_CODE_BYTES], 3 << 31);
        assert_eq!(&m[0x1C3..0x1C6], &[0xFF, 0xFF, 0xFF]);
        assert_eq!(&m[0x1CA..0x1CE], &[0xFF; 4]);
        assert_eq!(&m[..440], &[0x90; 440]);
        assert_eq!(&m[440..446], &[0; 6]);
        // a 1-sector disk does not underflow
        let m = protective_mbr(&[0; BOOT_CODE_BYTES], 0);
        assert_eq!(&m[0x1CA..0x1CE], &[0; 4]);
    }

    #[test]
    fn raw_round_trip_keeps_every_byte() {
        let bytes: Vec<u8> = (0..512u32).map(|i| (i * 7 + 3) as u8).collect();
        let raw = RawMbr::from_bytes(&bytes).unwrap();
        assert_eq!(raw.to_bytes().as_slice(), bytes.as_slice());
        assert!(RawMbr::from_bytes(&bytes[..511]).is_err());
    }

    #[test]
    fn encode_rejects_bad_slots() {
        let p = MbrPartition {
            index: 5,
            bootable: false,
            status: 0,
            type_id: 0x83,
            start_lba: 2048,
            sectors: 10,
            chs_start: ChsAddr::from_lba(2048),
            chs_end: ChsAddr::from_lba(2057),
            extended: false,
            logical: false,
        };
        assert!(encode(&[0; 440], 0, std::slice::from_ref(&p)).is_err());
        let p1 = MbrPartition {
            index: 1,
            ..p.clone()
        };
        assert!(encode(&[0; 440], 0, &[p1.clone(), p1.clone()]).is_err());
        let big = MbrPartition {
            start_lba: 1 << 32,
            ..p1.clone()
        };
        assert!(encode(&[0; 440], 0, &[big]).is_err());
        let ok = encode(&[0; 440], 0x1234_5678, &[p1]).unwrap();
        assert_eq!(&ok[0x1B8..0x1BC], &[0x78, 0x56, 0x34, 0x12]);
        assert_eq!(ok[0x1C2], 0x83);
    }
}
