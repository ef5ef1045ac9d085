//! Mixed-endian GUIDs as stored on disk, and the well-known partition type GUIDs.
//!
//! CONTRACT (stub, to be implemented): `Guid::from_bytes` takes the 16 on-disk bytes; Display
//! gives the canonical lowercase form; `FromStr` parses it; Serialize as that string;
//! `type_name(&Guid) -> Option<&'static str>`; constants ESP, BASIC_DATA, MSR, WINRE, LINUX_FS,
//! LINUX_SWAP, LINUX_LVM, LINUX_RAID, BIOS_BOOT.

/// A GUID in on-disk (mixed-endian) byte order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Guid(pub [u8; 16]);

impl serde::Serialize for Guid {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&format_args!("{:?}", self.0))
    }
}

/// EFI System Partition (contract placeholder; the implementation parses the canonical form).
pub const ESP: Guid = Guid([
    0x28, 0x73, 0x2a, 0xc1, 0x1f, 0xf8, 0xd2, 0x11, 0xba, 0x4b, 0x00, 0xa0, 0xc9, 0x3e, 0xc9, 0x3b,
]);

impl std::fmt::Display for Guid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.0)
    }
}
