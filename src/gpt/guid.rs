//! Mixed-endian GUIDs as stored on disk (UEFI spec appendix A: the first three fields
//! little-endian, the last eight bytes in order), and the well-known partition type GUIDs.

use std::fmt;
use std::str::FromStr;

use crate::error::{Error, Result};

/// A GUID in on-disk (mixed-endian) byte order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Guid(pub [u8; 16]);

/// EFI System Partition.
pub const ESP: Guid = Guid::from_u128(0xc12a7328_f81f_11d2_ba4b_00a0c93ec93b);
/// Microsoft basic data (NTFS, FAT, exFAT data partitions).
pub const BASIC_DATA: Guid = Guid::from_u128(0xebd0a0a2_b9e5_4433_87c0_68b6b72699c7);
/// Microsoft reserved partition (MSR).
pub const MSR: Guid = Guid::from_u128(0xe3c9e316_0b5c_4db8_817d_f92df00215ae);
/// Windows Recovery Environment.
pub const WINRE: Guid = Guid::from_u128(0xde94bba4_06d1_4d40_a16a_bfd50179d6ac);
/// Windows LDM (dynamic disk) metadata.
pub const LDM_METADATA: Guid = Guid::from_u128(0x5808c8aa_7e8f_42e0_85d2_e1e90434cfb3);
/// Windows LDM (dynamic disk) data.
pub const LDM_DATA: Guid = Guid::from_u128(0xaf9b60a0_1431_4f62_bc68_3311714a69ad);
/// Microsoft Storage Spaces.
pub const STORAGE_SPACES: Guid = Guid::from_u128(0xe75caf8f_f680_4cee_afa3_b001e56efc2d);
/// Linux filesystem data.
pub const LINUX_FS: Guid = Guid::from_u128(0x0fc63daf_8483_4772_8e79_3d69d8477de4);
/// Linux swap.
pub const LINUX_SWAP: Guid = Guid::from_u128(0x0657fd6d_a4ab_43c4_84e5_0933c84b4f4f);
/// Linux LVM physical volume.
pub const LINUX_LVM: Guid = Guid::from_u128(0xe6d6d379_f507_44c2_a23c_238f2a3df928);
/// Linux RAID member.
pub const LINUX_RAID: Guid = Guid::from_u128(0xa19d880f_05fc_4d3b_a006_743f0f84911e);
/// Linux root (x86-64), Discoverable Partitions Specification.
pub const LINUX_ROOT_X86_64: Guid = Guid::from_u128(0x4f68bce3_e8cd_4db1_96e7_fbcaf984b709);
/// Linux /home, Discoverable Partitions Specification.
pub const LINUX_HOME: Guid = Guid::from_u128(0x933ac7e1_2eb4_4f13_b844_0e14e2aef915);
/// BIOS boot partition (GRUB's core.img on GPT disks booted by BIOS). The bytes spell
/// "Hah!IdontNeedEFI".
pub const BIOS_BOOT: Guid = Guid::from_u128(0x21686148_6449_6e6f_744e_656564454649);

/// Well-known types and their names as gdisk prints them.
const TYPE_NAMES: &[(Guid, &str)] = &[
    (ESP, "EFI system partition"),
    (BASIC_DATA, "Microsoft basic data"),
    (MSR, "Microsoft reserved"),
    (WINRE, "Windows RE"),
    (LDM_METADATA, "Windows LDM metadata"),
    (LDM_DATA, "Windows LDM data"),
    (STORAGE_SPACES, "Windows Storage Spaces"),
    (LINUX_FS, "Linux filesystem"),
    (LINUX_SWAP, "Linux swap"),
    (LINUX_LVM, "Linux LVM"),
    (LINUX_RAID, "Linux RAID"),
    (LINUX_ROOT_X86_64, "Linux x86-64 root (/)"),
    (LINUX_HOME, "Linux /home"),
    (BIOS_BOOT, "BIOS boot partition"),
];

/// The gdisk name of a well-known partition type.
pub fn type_name(g: &Guid) -> Option<&'static str> {
    TYPE_NAMES
        .iter()
        .find(|(t, _)| t == g)
        .map(|&(_, name)| name)
}

impl Guid {
    /// The all-zero GUID (an unused GPT entry has this type).
    pub const NIL: Guid = Guid([0; 16]);

    /// From the 16 on-disk bytes.
    pub const fn from_bytes(bytes: [u8; 16]) -> Guid {
        Guid(bytes)
    }

    /// The 16 on-disk bytes.
    pub const fn to_bytes(self) -> [u8; 16] {
        self.0
    }

    /// From the canonical form read as one big-endian number, so constants can be written
    /// as `Guid::from_u128(0xc12a7328_f81f_11d2_ba4b_00a0c93ec93b)`.
    pub const fn from_u128(v: u128) -> Guid {
        let [a0, a1, a2, a3, b0, b1, c0, c1, d0, d1, d2, d3, d4, d5, d6, d7] = v.to_be_bytes();
        Guid([
            a3, a2, a1, a0, b1, b0, c1, c0, d0, d1, d2, d3, d4, d5, d6, d7,
        ])
    }

    /// The canonical form as one big-endian number (inverse of [`Guid::from_u128`]).
    pub const fn to_u128(self) -> u128 {
        let [a3, a2, a1, a0, b1, b0, c1, c0, d0, d1, d2, d3, d4, d5, d6, d7] = self.0;
        u128::from_be_bytes([
            a0, a1, a2, a3, b0, b1, c0, c1, d0, d1, d2, d3, d4, d5, d6, d7,
        ])
    }

    /// True for the all-zero GUID.
    pub fn is_nil(&self) -> bool {
        self.0 == [0; 16]
    }

    /// A deterministic GUID derived from `seed` (the same seed always gives the same GUID), with
    /// the RFC 4122 version 4 and variant bits set so tools accept it as a random GUID.
    ///
    /// The hash is FNV-1a 64 run twice (with two different offset bases) and each result mixed
    /// by the splitmix64 finalizer. It is NOT cryptographic: it only spreads distinct seeds over
    /// distinct GUIDs, so conversions are reproducible. Do not use it where GUIDs must be
    /// unpredictable.
    pub fn from_hash(seed: &[u8]) -> Guid {
        const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;
        const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
        // a second basis: the first one hashed over the byte 0x01 (any fixed value would do)
        const FNV_OFFSET_2: u64 = (FNV_OFFSET ^ 0x01).wrapping_mul(FNV_PRIME);
        fn fnv1a(basis: u64, bytes: &[u8]) -> u64 {
            bytes
                .iter()
                .fold(basis, |h, &b| (h ^ u64::from(b)).wrapping_mul(FNV_PRIME))
        }
        fn splitmix64_mix(mut z: u64) -> u64 {
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        }
        let hi = splitmix64_mix(fnv1a(FNV_OFFSET, seed));
        let lo = splitmix64_mix(fnv1a(FNV_OFFSET_2, seed) ^ hi.rotate_left(17));
        let mut v = (u128::from(hi) << 64) | u128::from(lo);
        // version 4 in bits 76..80 of the canonical number (the "4" in xxxxxxxx-xxxx-4xxx)
        v = (v & !(0xF_u128 << 76)) | (0x4_u128 << 76);
        // RFC 4122 variant 10 in bits 62..64 (the 8/9/a/b in xxxx-8xxx-...)
        v = (v & !(0x3_u128 << 62)) | (0x2_u128 << 62);
        Guid::from_u128(v)
    }
}

impl fmt::Display for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let v = self.to_u128();
        let [a0, a1, a2, a3, b0, b1, c0, c1, d0, d1, e0, e1, e2, e3, e4, e5] = v.to_be_bytes();
        write!(
            f,
            "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
            u32::from_be_bytes([a0, a1, a2, a3]),
            u16::from_be_bytes([b0, b1]),
            u16::from_be_bytes([c0, c1]),
            u16::from_be_bytes([d0, d1]),
            u64::from_be_bytes([0, 0, e0, e1, e2, e3, e4, e5]),
        )
    }
}

impl FromStr for Guid {
    type Err = Error;

    /// Parse "c12a7328-f81f-11d2-ba4b-00a0c93ec93b", any case, optionally in braces.
    fn from_str(s: &str) -> Result<Guid> {
        let bad = || {
            Error::invalid(format!(
                "GUID: expected xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx, found {s:?}"
            ))
        };
        let inner = s
            .strip_prefix('{')
            .and_then(|r| r.strip_suffix('}'))
            .unwrap_or(s);
        if inner.len() != 36 {
            return Err(bad());
        }
        let mut v: u128 = 0;
        for (i, c) in inner.chars().enumerate() {
            if matches!(i, 8 | 13 | 18 | 23) {
                if c != '-' {
                    return Err(bad());
                }
                continue;
            }
            let digit = c.to_digit(16).ok_or_else(bad)?;
            v = (v << 4) | u128::from(digit);
        }
        Ok(Guid::from_u128(v))
    }
}

impl serde::Serialize for Guid {
    /// As the canonical lowercase string.
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)] // tests: a panic is a failed test
mod tests {
    use super::*;

    #[test]
    fn on_disk_order() {
        // ESP as stored on disk (UEFI spec: 28 73 2A C1 1F F8 D2 11 BA 4B 00 A0 C9 3E C9 3B)
        let disk = [
            0x28, 0x73, 0x2A, 0xC1, 0x1F, 0xF8, 0xD2, 0x11, 0xBA, 0x4B, 0x00, 0xA0, 0xC9, 0x3E,
            0xC9, 0x3B,
        ];
        assert_eq!(Guid::from_bytes(disk), ESP);
        assert_eq!(ESP.to_string(), "c12a7328-f81f-11d2-ba4b-00a0c93ec93b");
        assert_eq!(&BIOS_BOOT.0, b"Hah!IdontNeedEFI");
        assert_eq!(Guid::from_u128(ESP.to_u128()), ESP);
    }

    #[test]
    fn parse_forms() {
        for s in [
            "c12a7328-f81f-11d2-ba4b-00a0c93ec93b",
            "C12A7328-F81F-11D2-BA4B-00A0C93EC93B",
            "{c12a7328-f81f-11d2-ba4b-00a0c93ec93b}",
        ] {
            assert_eq!(s.parse::<Guid>().unwrap(), ESP, "{s}");
        }
        for s in [
            "",
            "c12a7328f81f11d2ba4b00a0c93ec93b",
            "c12a7328-f81f-11d2-ba4b-00a0c93ec93",
            "c12a7328-f81f-11d2-ba4b_00a0c93ec93b",
            "g12a7328-f81f-11d2-ba4b-00a0c93ec93b",
            "{c12a7328-f81f-11d2-ba4b-00a0c93ec93b",
            "c12a7328-f81f-11d2-ba4b-00a0c93ec9é",
        ] {
            assert!(s.parse::<Guid>().is_err(), "{s}");
        }
        for (g, _) in TYPE_NAMES {
            assert_eq!(g.to_string().parse::<Guid>().unwrap(), *g);
        }
    }

    #[test]
    fn names_and_serde() {
        assert_eq!(type_name(&ESP), Some("EFI system partition"));
        assert_eq!(type_name(&BASIC_DATA), Some("Microsoft basic data"));
        assert_eq!(type_name(&Guid::NIL), None);
        assert_eq!(
            serde_json::to_string(&LINUX_FS).unwrap(),
            "\"0fc63daf-8483-4772-8e79-3d69d8477de4\""
        );
    }

    #[test]
    fn hash_guids_are_stable_v4() {
        let a = Guid::from_hash(b"disk");
        assert_eq!(a, Guid::from_hash(b"disk"));
        assert_ne!(a, Guid::from_hash(b"disk2"));
        assert_ne!(Guid::from_hash(b""), Guid::from_hash(b"\0"));
        for seed in [&b""[..], b"x", b"partition 1"] {
            let s = Guid::from_hash(seed).to_string();
            assert_eq!(&s[14..15], "4", "{s}");
            assert!("89ab".contains(&s[19..20]), "{s}");
        }
    }
}
