//! Units that get mixed up: a logical sector size that can only be 512 or 4096 bytes
//! ([`SectorSize`]), a sector number ([`Lba`]), and an inclusive run of sectors
//! ([`LbaRange`], `first..=last`, the way GPT entries and the conversion plan count) with
//! checked conversions to byte offsets.
//!
//! MBR entries store a start and a count (exclusive end); GPT entries store first and last
//! (inclusive). Converting between the two at every call site is where off-by-one errors come
//! from: both models give an [`LbaRange`] instead.

use std::fmt;

/// Bytes in a MiB.
pub const MIB: u64 = 1 << 20;

/// A byte count with a binary unit and at most one decimal, never rounded to zero: "512 B",
/// "1023.5 KiB", "1 MiB", "1.5 GiB". The unit is the largest that keeps the value at least 1, so
/// a size below 1 MiB is given in KiB, not as "0 MiB" (issue 15, item 20).
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut unit = 0usize;
    let mut div = 1u128;
    while u128::from(n) >= div.saturating_mul(1024) && unit.saturating_add(1) < UNITS.len() {
        div = div.saturating_mul(1024);
        unit = unit.saturating_add(1);
    }
    let name = UNITS.get(unit).copied().unwrap_or("B");
    if unit == 0 {
        return format!("{n} B");
    }
    // tenths of the unit, rounded half up (div >= 1024: no division by zero)
    let tenths = u128::from(n)
        .saturating_mul(10)
        .saturating_add(div / 2)
        .checked_div(div)
        .unwrap_or(0);
    let (whole, frac) = (tenths / 10, tenths % 10);
    if frac == 0 {
        format!("{whole} {name}")
    } else {
        format!("{whole}.{frac} {name}")
    }
}

/// A length or index as u64: lossless on every target Rust supports (usize is at most 64 bits),
/// saturating otherwise, so it never panics.
pub fn len_u64(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

use serde::Serialize;

use crate::error::{Error, Result};

/// A logical sector size this tool converts: 512 or 4096 bytes (the two sizes Hyper-V and Azure
/// disks have; FAT32 ESP size rules are defined for them). Built only by [`SectorSize::new`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct SectorSize(u32);

impl SectorSize {
    /// 512-byte sectors (every VHD).
    pub const B512: SectorSize = SectorSize(512);
    /// 4096-byte sectors ("4Kn" disks).
    pub const B4096: SectorSize = SectorSize(4096);

    /// The one validating constructor: 512 or 4096, anything else is `Unsupported`.
    pub fn new(bytes: u32) -> Result<SectorSize> {
        match bytes {
            512 => Ok(Self::B512),
            4096 => Ok(Self::B4096),
            _ => Err(Error::unsupported(format!(
                "sector size 512 or 4096 expected, found {bytes}"
            ))),
        }
    }

    /// The size in bytes.
    pub fn bytes(self) -> u32 {
        self.0
    }

    /// The size in bytes, as u64 for offset arithmetic.
    pub fn bytes_u64(self) -> u64 {
        u64::from(self.0)
    }

    /// The number of whole sectors in `bytes` (rounded down).
    pub fn sectors_in(self, bytes: u64) -> u64 {
        // self.0 is 512 or 4096: never zero
        bytes.checked_div(self.bytes_u64()).unwrap_or(0)
    }
}

impl TryFrom<u32> for SectorSize {
    type Error = Error;
    fn try_from(bytes: u32) -> Result<SectorSize> {
        SectorSize::new(bytes)
    }
}

impl From<SectorSize> for u32 {
    fn from(s: SectorSize) -> u32 {
        s.0
    }
}

impl fmt::Display for SectorSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A logical block address: a sector number, in units of a [`SectorSize`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct Lba(pub u64);

impl Lba {
    /// The sector number.
    pub fn get(self) -> u64 {
        self.0
    }

    /// The byte offset of this sector; `None` on overflow.
    pub fn to_bytes(self, sector: SectorSize) -> Option<u64> {
        self.0.checked_mul(sector.bytes_u64())
    }

    /// `n` sectors further on; `None` on overflow.
    pub fn checked_add(self, n: u64) -> Option<Lba> {
        self.0.checked_add(n).map(Lba)
    }
}

impl fmt::Display for Lba {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// An inclusive, non-empty run of sectors `first..=last`. The sector count always fits in a
/// u64 (the constructors refuse `0..=u64::MAX`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct LbaRange {
    first: Lba,
    last: Lba,
}

impl LbaRange {
    /// `first..=last`; `None` when `last < first`, or for `0..=u64::MAX` (count overflows).
    pub fn new(first: Lba, last: Lba) -> Option<LbaRange> {
        last.0.checked_sub(first.0)?.checked_add(1)?;
        Some(LbaRange { first, last })
    }

    /// `sectors` sectors from `first` (an MBR entry's start and count); `None` when `sectors` is
    /// 0 or the end overflows.
    pub fn from_start_len(first: Lba, sectors: u64) -> Option<LbaRange> {
        let last = first.0.checked_add(sectors.checked_sub(1)?)?;
        LbaRange::new(first, Lba(last))
    }

    pub fn first(&self) -> Lba {
        self.first
    }

    pub fn last(&self) -> Lba {
        self.last
    }

    /// One past the last sector (the exclusive end); `None` when `last` is `u64::MAX`.
    pub fn end_exclusive(&self) -> Option<Lba> {
        self.last.checked_add(1)
    }

    /// The number of sectors (at least 1).
    pub fn sectors(&self) -> u64 {
        // new() checked that this neither underflows nor overflows
        self.last
            .0
            .checked_sub(self.first.0)
            .and_then(|d| d.checked_add(1))
            .unwrap_or(u64::MAX)
    }

    pub fn contains(&self, lba: Lba) -> bool {
        self.first <= lba && lba <= self.last
    }

    /// Do the two ranges share a sector?
    pub fn overlaps(&self, other: &LbaRange) -> bool {
        self.first <= other.last && other.first <= self.last
    }

    /// The byte offset of the first sector; `None` on overflow.
    pub fn byte_offset(&self, sector: SectorSize) -> Option<u64> {
        self.first.to_bytes(sector)
    }

    /// The length in bytes; `None` on overflow.
    pub fn byte_len(&self, sector: SectorSize) -> Option<u64> {
        self.sectors().checked_mul(sector.bytes_u64())
    }

    /// One past the last byte (exclusive); `None` on overflow.
    pub fn byte_end(&self, sector: SectorSize) -> Option<u64> {
        self.byte_offset(sector)?
            .checked_add(self.byte_len(sector)?)
    }
}

impl fmt::Display for LbaRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}..={}", self.first, self.last)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    #[test]
    fn human_sizes_never_round_to_zero() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1024), "1 KiB");
        assert_eq!(human_bytes(2047 * 512), "1023.5 KiB");
        assert_eq!(human_bytes(MIB), "1 MiB");
        assert_eq!(human_bytes(MIB + MIB / 2), "1.5 MiB");
        assert_eq!(human_bytes(100 * MIB), "100 MiB");
        assert_eq!(human_bytes(127 << 30), "127 GiB");
        assert_eq!(human_bytes(u64::MAX), "16384 PiB");
        for n in [1u64, 511, 1025, MIB - 1, MIB + 1, (1 << 30) - 512] {
            assert!(!human_bytes(n).starts_with("0 "), "{n}: {}", human_bytes(n));
        }
    }

    #[test]
    fn sector_size_has_one_validating_constructor() {
        assert_eq!(SectorSize::new(512).unwrap(), SectorSize::B512);
        assert_eq!(SectorSize::try_from(4096).unwrap().bytes(), 4096);
        for bad in [0, 256, 1024, 2048, 8192, u32::MAX] {
            let e = SectorSize::new(bad).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Unsupported);
            assert!(e.message().contains(&bad.to_string()), "{e}");
        }
        assert_eq!(SectorSize::B4096.sectors_in(10_000), 2);
        assert_eq!(serde_json::to_string(&SectorSize::B512).unwrap(), "512");
    }

    #[test]
    fn lba_range_is_inclusive() {
        let r = LbaRange::new(Lba(2048), Lba(4095)).unwrap();
        assert_eq!(r.sectors(), 2048);
        assert_eq!(r.end_exclusive(), Some(Lba(4096)));
        assert!(r.contains(Lba(2048)) && r.contains(Lba(4095)) && !r.contains(Lba(4096)));
        assert_eq!(LbaRange::from_start_len(Lba(2048), 2048), Some(r));
        assert_eq!(r.byte_offset(SectorSize::B512), Some(0x10_0000));
        assert_eq!(r.byte_len(SectorSize::B512), Some(0x10_0000));
        assert_eq!(r.byte_end(SectorSize::B4096), Some(4096 * 4096));
        assert_eq!(r.to_string(), "2048..=4095");
        let single = LbaRange::new(Lba(7), Lba(7)).unwrap();
        assert_eq!(single.sectors(), 1);
        assert!(single.overlaps(&LbaRange::new(Lba(0), Lba(7)).unwrap()));
        assert!(!single.overlaps(&LbaRange::new(Lba(8), Lba(9)).unwrap()));
    }

    #[test]
    fn lba_range_refuses_empty_reversed_and_overflowing() {
        assert_eq!(LbaRange::new(Lba(5), Lba(4)), None);
        assert_eq!(LbaRange::from_start_len(Lba(5), 0), None);
        assert_eq!(LbaRange::from_start_len(Lba(u64::MAX), 2), None);
        assert_eq!(
            LbaRange::new(Lba(0), Lba(u64::MAX)),
            None,
            "count does not fit"
        );
        let top = LbaRange::new(Lba(1), Lba(u64::MAX)).unwrap();
        assert_eq!(top.end_exclusive(), None);
        assert_eq!(top.sectors(), u64::MAX);
        assert_eq!(top.byte_offset(SectorSize::B512), Some(512));
        assert_eq!(top.byte_len(SectorSize::B512), None);
        assert_eq!(top.byte_end(SectorSize::B512), None);
    }
}
