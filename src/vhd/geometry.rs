//! CHS geometry of a VHD (spec: "Hard Disk Footer Format", field "Disk Geometry", and the
//! appendix "CHS Calculation").
//!
//! The footer stores cylinders (u16), heads (u8) and sectors per track (u8). BIOS-era guests and
//! some hypervisors (Virtual PC, QEMU for creators "vpc " and "qemu") size the disk by C*H*S
//! sectors instead of the footer's current size, so a geometry that does not cover the current
//! size hides the end of the disk from them.

use super::Chs;

/// Bytes per sector in every size the footer describes.
pub const SECTOR_BYTES: u64 = 512;

/// Largest geometry the footer can express (spec appendix: 65535 cylinders, 16 heads, 255
/// sectors per track; about 127 GiB). `qemu-img ... -o force_size=on` writes it to say "use the
/// current size, not CHS".
pub const MAX_CHS: Chs = Chs {
    cylinders: 65535,
    heads: 16,
    sectors_per_track: 255,
};

/// Sectors the spec's algorithm caps the size at: 65535 * 16 * 255.
const MAX_CHS_SECTORS: u64 = 65535 * 16 * 255;
/// Below 65535 * 16 * 63 sectors the algorithm tries 17, 31, then 63 sectors per track.
const SECTORS_63_LIMIT: u64 = 65535 * 16 * 63;
/// Cylinders per head the algorithm aims to stay under (1024, the BIOS limit).
const CYLINDERS_BIOS: u64 = 1024;

impl Chs {
    /// Sectors the geometry addresses: C * H * S.
    pub fn total_sectors(&self) -> u64 {
        // at most 65535 * 255 * 255: no overflow in u64
        u64::from(self.cylinders)
            .saturating_mul(u64::from(self.heads))
            .saturating_mul(u64::from(self.sectors_per_track))
    }

    /// Bytes the geometry addresses: C * H * S * 512.
    pub fn size_bytes(&self) -> u64 {
        // at most 65535 * 255 * 255 * 512 < 2^43: no overflow in u64
        self.total_sectors().saturating_mul(SECTOR_BYTES)
    }

    /// True for 65535/16/255, the cap (and QEMU's `force_size` marker).
    pub fn is_max(&self) -> bool {
        *self == MAX_CHS
    }

    /// Pack as the footer stores it: cylinders (big-endian u16), heads, sectors per track.
    pub fn to_bytes(&self) -> [u8; 4] {
        let c = self.cylinders.to_be_bytes();
        [c[0], c[1], self.heads, self.sectors_per_track]
    }

    /// Unpack the footer's 4 geometry bytes.
    pub fn from_bytes(b: [u8; 4]) -> Chs {
        Chs {
            cylinders: u16::from_be_bytes([b[0], b[1]]),
            heads: b[2],
            sectors_per_track: b[3],
        }
    }
}

impl std::fmt::Display for Chs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}/{}/{}",
            self.cylinders, self.heads, self.sectors_per_track
        )
    }
}

/// The geometry the spec appendix computes for a disk of `bytes` bytes (partial sectors are
/// dropped; sizes beyond 65535*16*255 sectors are capped there). Microsoft's tools, QEMU's
/// `calculate_geometry` and azure-vhd-utils compute the same.
pub fn chs_for_size(bytes: u64) -> Chs {
    let total = (bytes / SECTOR_BYTES).min(MAX_CHS_SECTORS);
    let (spt, heads, cth) = if total >= SECTORS_63_LIMIT {
        (255u64, 16u64, total / 255)
    } else {
        // cth < 2^26 and heads <= cth / 1024 + 4 here: heads * 1024 does not overflow
        let mut spt = 17u64;
        let mut cth = total / 17;
        let mut heads = cth.div_ceil(CYLINDERS_BIOS).max(4);
        if cth >= heads.saturating_mul(CYLINDERS_BIOS) || heads > 16 {
            spt = 31;
            heads = 16;
            cth = total / 31;
        }
        if cth >= heads.saturating_mul(CYLINDERS_BIOS) {
            spt = 63;
            heads = 16;
            cth = total / 63;
        }
        (spt, heads, cth)
    };
    // heads is 16, or at least 4: never zero, the fallback is never taken
    let cylinders = cth.checked_div(heads).unwrap_or(0);
    Chs {
        // Fits: total <= 65535*16*255 gives cth/16 <= 65535 with 255 sectors; in the other
        // branch total < 65535*16*63, so cth/heads < 65535 once heads is 16, and heads < 16
        // only while cth < heads*1024.
        cylinders: u16::try_from(cylinders).unwrap_or(u16::MAX),
        // heads <= 16 and spt <= 255 in every branch above
        heads: u8::try_from(heads).unwrap_or(u8::MAX),
        sectors_per_track: u8::try_from(spt).unwrap_or(u8::MAX),
    }
}

/// What `qemu-img create -f vpc` does with a requested size: the smallest geometry (by the
/// spec's algorithm) whose C*H*S covers `bytes`, found by trying one more sector at a time. `None`
/// when no geometry covers it (beyond 65535*16*255 sectors; QEMU then refuses unless
/// `force_size=on`).
pub fn qemu_round_up(bytes: u64) -> Option<Chs> {
    let want = bytes.div_ceil(SECTOR_BYTES);
    if want > MAX_CHS_SECTORS {
        return None;
    }
    // One geometry step (H*S sectors of one cylinder) is at most 16*255 sectors, so a covering
    // geometry is found within that many tries; the bound keeps the loop finite regardless.
    const MAX_TRIES: u64 = 16 * 255 * 4;
    // want <= MAX_CHS_SECTORS < 2^28 and i <= MAX_TRIES: none of this saturates
    let mut chs = chs_for_size(want.saturating_mul(SECTOR_BYTES));
    let mut i = 0u64;
    while chs.total_sectors() < want {
        i = i.saturating_add(1);
        if i > MAX_TRIES {
            return None;
        }
        chs = chs_for_size(
            want.saturating_add(i)
                .min(MAX_CHS_SECTORS)
                .saturating_mul(SECTOR_BYTES),
        );
    }
    Some(chs)
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

    fn chs(c: u16, h: u8, s: u8) -> Chs {
        Chs {
            cylinders: c,
            heads: h,
            sectors_per_track: s,
        }
    }

    /// Geometries read from the footers of `qemu-img create -f vpc -o subformat=fixed F SIZE`
    /// (QEMU 10.0.2): requested size -> (stored current size, stored CHS).
    const QEMU_FIXED: &[(u64, u64, (u16, u8, u8))] = &[
        (1 << 20, 0x0010_7800, (31, 4, 17)),           // 1M
        (10 << 20, 0x00a0_7000, (302, 4, 17)),         // 10M
        (100 << 20, 0x0640_2000, (1004, 12, 17)),      // 100M
        (127 << 30, 0x1f_c000_2000, (65279, 16, 255)), // 127G
    ];

    #[test]
    fn matches_qemu_img_create() {
        for &(requested, stored, (c, h, s)) in QEMU_FIXED {
            let want = chs(c, h, s);
            assert_eq!(chs_for_size(stored), want, "size {stored:#x}");
            assert_eq!(want.size_bytes(), stored, "qemu stores C*H*S*512");
            assert_eq!(qemu_round_up(requested), Some(want), "round up {requested}");
        }
    }

    #[test]
    fn branches_of_the_algorithm() {
        assert_eq!(chs_for_size(0), chs(0, 4, 17));
        assert_eq!(chs_for_size(511), chs(0, 4, 17));
        // 17 sectors, heads grown above 4: 2 GiB -> 4194304 sectors
        assert_eq!(chs_for_size(2 << 30), chs(4161, 16, 63));
        // 31 sectors per track: 200 MiB = 409600 sectors; 17 spt would need 24 heads
        assert_eq!(chs_for_size(200 << 20), chs(825, 16, 31));
        // 63 sectors per track: 300 MiB = 614400 sectors; 31 spt would need 1238 cylinders/head
        assert_eq!(chs_for_size(300 << 20), chs(609, 16, 63));
        // the 255-sector branch starts at exactly 65535*16*63 sectors
        assert_eq!(chs_for_size(SECTORS_63_LIMIT * 512), chs(16191, 16, 255));
        assert_eq!(
            chs_for_size((SECTORS_63_LIMIT - 1) * 512),
            chs(65534, 16, 63)
        );
    }

    #[test]
    fn caps_at_65535_16_255() {
        assert_eq!(chs_for_size(MAX_CHS_SECTORS * 512), MAX_CHS);
        assert_eq!(chs_for_size(1 << 40), MAX_CHS);
        assert_eq!(chs_for_size(u64::MAX), MAX_CHS);
        assert!(MAX_CHS.is_max());
        assert_eq!(MAX_CHS.size_bytes(), 136_899_993_600);
        assert_eq!(qemu_round_up(MAX_CHS_SECTORS * 512), Some(MAX_CHS));
        assert_eq!(qemu_round_up(MAX_CHS_SECTORS * 512 + 1), None);
        assert_eq!(qemu_round_up(u64::MAX), None);
    }

    #[test]
    fn computed_geometry_never_exceeds_the_size() {
        // The spec's geometry always rounds down; sampled across all branches.
        let mut s = 1u64;
        while s < (1 << 42) {
            for d in [0u64, 1, 511, 512, 4095] {
                let b = s + d;
                let g = chs_for_size(b);
                assert!(g.size_bytes() <= b, "{b}: {g}");
                assert!(g.heads <= 16 && g.sectors_per_track >= 17);
            }
            s = s * 3 / 2 + 7;
        }
    }

    #[test]
    fn byte_packing() {
        let g = chs(0x012e, 4, 17);
        assert_eq!(g.to_bytes(), [0x01, 0x2e, 0x04, 0x11]);
        assert_eq!(Chs::from_bytes(g.to_bytes()), g);
        assert_eq!(g.to_string(), "302/4/17");
    }
}
