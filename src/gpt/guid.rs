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
