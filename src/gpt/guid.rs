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

    /// A random GUID (RFC 9562 version 4) from the kernel's random source (`getrandom(2)`).
    pub fn random() -> crate::error::Result<Guid> {
        let mut buf = [0u8; 16];
        let mut filled = 0usize;
        while filled < buf.len() {
            let rest = buf.get_mut(filled..).unwrap_or_default();
            let n = rustix::rand::getrandom(rest, rustix::rand::GetRandomFlags::empty()).map_err(
                |e| crate::error::Error::io("reading the system's random source", e.into()),
            )?;
            filled = filled.saturating_add(n);
        }
        let mut v = u128::from_be_bytes(buf);
        v = (v & !(0xF_u128 << 76)) | (0x4_u128 << 76);
        v = (v & !(0x3_u128 << 62)) | (0x2_u128 << 62);
        Ok(Guid::from_u128(v))
    }

    /// A name-based GUID: RFC 9562 version 8 as its Appendix B.2 ("name-based with SHA-256")
    /// describes it: the first 128 bits of SHA-256 over the namespace (its canonical
    /// big-endian bytes) followed by the name, with the version field set to 8 and the variant
    /// to RFC 9562's (10). The same namespace and name always give the same GUID; distinct
    /// names give distinct GUIDs with SHA-256's collision resistance. Use it where output must
    /// be reproducible; [`Guid::NIL`] is never returned.
    pub fn name_based(namespace: Guid, name: &[u8]) -> Guid {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        h.update(namespace.to_u128().to_be_bytes());
        h.update(name);
        let digest = h.finalize();
        let mut first = [0u8; 16];
        first.copy_from_slice(digest.get(..16).unwrap_or(&[0u8; 16]));
        let mut v = u128::from_be_bytes(first);
        // version 8 in bits 76..80 of the canonical number (the "8" in xxxxxxxx-xxxx-8xxx)
        v = (v & !(0xF_u128 << 76)) | (0x8_u128 << 76);
        // RFC 9562 variant 10 in bits 62..64 (the 8/9/a/b in xxxx-8xxx-...)
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
    fn name_based_guids_are_stable_v8_sha256() {
        let ns = Guid::from_u128(0x6ba7b810_9dad_11d1_80b4_00c04fd430c8); // RFC 9562's DNS namespace
                                                                          // RFC 9562 Appendix B.2: UUIDv8 for the name "www.example.com" in the DNS namespace
        assert_eq!(
            Guid::name_based(ns, b"www.example.com").to_string(),
            "5c146b14-3c52-8afd-938a-375d0df1fbf6"
        );
        let a = Guid::name_based(ns, b"disk");
        assert_eq!(a, Guid::name_based(ns, b"disk"));
        assert_ne!(a, Guid::name_based(ns, b"disk2"));
        assert_ne!(a, Guid::name_based(Guid::NIL, b"disk"));
        assert_ne!(Guid::name_based(ns, b""), Guid::name_based(ns, b"\0"));
        for name in [&b""[..], b"x", b"partition 1"] {
            let s = Guid::name_based(ns, name).to_string();
            assert_eq!(&s[14..15], "8", "{s}");
            assert!("89ab".contains(&s[19..20]), "{s}");
        }
    }
}
