//! Which format a file is, by its magic numbers only. A raw disk has none, so it is never
//! detected: a file without a known signature is [`Detected::Unknown`] and the caller must say
//! "raw" (a damaged VHD whose footer was lost looks exactly like a raw disk).

use crate::disk::Disk;

/// What [`detect`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Detected {
    /// Only when the caller asks for it (never returned by [`detect`]).
    Raw,
    /// A VHD footer ("conectix") at the end (512 or 511 bytes) or the dynamic copy at offset 0.
    Vhd,
    /// "vhdxfile" at offset 0 (VHDX spec 2.2.1 "File Type Identifier").
    Vhdx,
    /// "QFI\xfb" with version 2 or 3 at offset 0.
    Qcow2,
    /// A known format vhdtool does not read, named.
    Other(&'static str),
    /// No signature.
    Unknown,
}

/// Signatures at offset 0 of formats we recognise but do not read.
const OTHERS: &[(&[u8], &str)] = &[
    (b"KDMV", "VMDK (sparse extent)"),
    (b"COWD", "VMDK (ESX COW sparse extent)"),
    (b"# Disk DescriptorFile", "VMDK (descriptor)"),
    (b"QED\0", "QED"),
    (b"WithoutFreeSpace", "Parallels"),
    (b"WithouFreSpacExt", "Parallels"),
    (b"Bochs Virtual HD Image", "Bochs"),
    (b"LUKS\xba\xbe", "LUKS-encrypted"),
];

/// VDI: "<<< " text header and the signature 0xbeda107f (little-endian) at 0x40.
const VDI_SIGNATURE: [u8; 4] = [0x7f, 0x10, 0xda, 0xbe];

/// Look at the first bytes and the end of `file` and name its format.
pub fn detect(file: &dyn Disk) -> Detected {
    let mut head = [0u8; 0x48];
    let n = usize::try_from(file.len())
        .unwrap_or(usize::MAX)
        .min(head.len());
    if let Some(part) = head.get_mut(..n) {
        if file.read_at(0, part).is_err() {
            return Detected::Unknown;
        }
    }
    if head.starts_with(b"vhdxfile") {
        return Detected::Vhdx;
    }
    if head.starts_with(b"QFI\xfb") {
        let version = head
            .get(4..8)
            .and_then(|b| <[u8; 4]>::try_from(b).ok())
            .map_or(0, u32::from_be_bytes);
        return match version {
            2 | 3 => Detected::Qcow2,
            1 => Detected::Other("qcow (version 1)"),
            _ => Detected::Other("qcow2 of an unknown version"),
        };
    }
    if has_vhd_footer(file) {
        return Detected::Vhd;
    }
    if head.starts_with(b"<<< ") && head.get(0x40..0x44) == Some(&VDI_SIGNATURE[..]) {
        return Detected::Other("VDI (VirtualBox)");
    }
    for (magic, name) in OTHERS {
        if head.starts_with(magic) {
            return Detected::Other(name);
        }
    }
    if has_dmg_trailer(file) {
        return Detected::Other("DMG (Apple disk image)");
    }
    Detected::Unknown
}

fn cookie_at(file: &dyn Disk, at: u64, cookie: &[u8; 8]) -> bool {
    let mut b = [0u8; 8];
    file.read_at(at, &mut b).is_ok() && &b == cookie
}

fn has_vhd_footer(file: &dyn Disk) -> bool {
    let len = file.len();
    let c = b"conectix";
    len.checked_sub(512)
        .is_some_and(|at| cookie_at(file, at, c))
        || len
            .checked_sub(511)
            .is_some_and(|at| cookie_at(file, at, c))
        || (len >= 1024 && cookie_at(file, 0, c))
}

/// Why a file in which [`detect`] found nothing looks like a VHD whose footer was damaged
/// (`None` when it looks like any raw disk): the "conectix" cookie inside the last 512 bytes
/// but not where a footer starts (the footer was cut short), the file ending in the first
/// bytes of the cookie, a length that is not a whole number of sectors, or a zero last sector
/// where a fixed VHD of a whole-MiB size keeps its footer.
pub fn damaged_vhd_footer(file: &dyn Disk) -> Option<String> {
    const SECTOR: u64 = 512;
    const COOKIE: &[u8; 8] = b"conectix";
    let len = file.len();
    let tail_len = len.min(SECTOR);
    let tail_at = len.checked_sub(tail_len)?;
    let mut tail = [0u8; 512];
    let tail = tail.get_mut(..usize::try_from(tail_len).ok()?)?;
    file.read_at(tail_at, tail).ok()?;
    if let Some(p) = tail.windows(COOKIE.len()).position(|w| w == COOKIE) {
        let at = tail_at.saturating_add(u64::try_from(p).ok()?);
        let kept = len.saturating_sub(at);
        return Some(format!(
            "a VHD footer at 0x{at:x} is cut short: {kept} of its 512 bytes are in the file"
        ));
    }
    let rem = len.checked_rem(SECTOR)?;
    if rem != 0 {
        let r = usize::try_from(rem).ok()?;
        let start = tail.len().checked_sub(r)?;
        if tail.get(start..).is_some_and(|t| COOKIE.starts_with(t)) {
            return Some(format!(
                "the file ends with {r} byte(s) of a VHD footer's cookie: the footer is cut short"
            ));
        }
        return Some(format!(
            "the file is not a whole number of 512-byte sectors ({rem} bytes over): a VHD whose footer lost bytes looks like this"
        ));
    }
    if len > SECTOR && len.checked_rem(1 << 20) == Some(SECTOR) && tail.iter().all(|&b| b == 0) {
        return Some(format!(
            "the last 512 bytes are zero where a fixed VHD of {} bytes keeps its footer: the footer may have been zeroed",
            len.saturating_sub(SECTOR)
        ));
    }
    None
}

fn has_dmg_trailer(file: &dyn Disk) -> bool {
    let mut b = [0u8; 4];
    file.len()
        .checked_sub(512)
        .is_some_and(|at| file.read_at(at, &mut b).is_ok() && &b == b"koly")
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::unwrap_used)] // tests: a panic is a failed test
mod tests {
    use super::*;
    use crate::disk::MemDisk;

    #[test]
    fn damaged_footers_are_named() {
        let mib = 1usize << 20;
        let mut vhd = vec![0u8; mib + 512];
        vhd[mib..mib + 8].copy_from_slice(b"conectix");
        let cut = |n: usize| damaged_vhd_footer(&MemDisk::new(vhd[..vhd.len() - n].to_vec()));
        assert!(
            cut(100).unwrap().contains("412 of its 512"),
            "{:?}",
            cut(100)
        );
        assert!(cut(511).unwrap().contains("1 byte(s)"), "{:?}", cut(511));
        assert!(cut(509).unwrap().contains("cut short"), "{:?}", cut(509));
        assert!(cut(300).unwrap().contains("cut short"));
        // zeroed: a whole MiB + 512 with a zero last sector
        let zeroed = damaged_vhd_footer(&MemDisk::new(vec![0u8; mib + 512])).unwrap();
        assert!(zeroed.contains("zeroed"), "{zeroed}");
        // plain raw disks are not suspected
        assert_eq!(damaged_vhd_footer(&MemDisk::new(vec![0u8; mib])), None);
        assert_eq!(
            damaged_vhd_footer(&MemDisk::new(vec![1u8; mib + 512])),
            None
        );
        assert_eq!(damaged_vhd_footer(&MemDisk::new(vec![])), None);
    }

    #[test]
    fn magics() {
        let with = |at: usize, m: &[u8], len: usize| {
            let mut v = vec![0u8; len];
            v[at..at + m.len()].copy_from_slice(m);
            detect(&MemDisk::new(v))
        };
        assert_eq!(with(0, b"vhdxfile", 4096), Detected::Vhdx);
        assert_eq!(with(0, b"QFI\xfb\0\0\0\x03", 4096), Detected::Qcow2);
        assert_eq!(
            with(0, b"QFI\xfb\0\0\0\x01", 4096),
            Detected::Other("qcow (version 1)")
        );
        assert_eq!(
            with(0, b"KDMV", 4096),
            Detected::Other("VMDK (sparse extent)")
        );
        assert_eq!(with(3584, b"conectix", 4096), Detected::Vhd);
        assert_eq!(with(3585, b"conectix", 4096), Detected::Vhd);
        assert_eq!(with(0, b"conectix", 4096), Detected::Vhd);
        assert_eq!(
            with(3584, b"koly", 4096),
            Detected::Other("DMG (Apple disk image)")
        );
        let mut vdi = vec![0u8; 4096];
        vdi[..4].copy_from_slice(b"<<< ");
        vdi[0x40..0x44].copy_from_slice(&VDI_SIGNATURE);
        assert_eq!(
            detect(&MemDisk::new(vdi)),
            Detected::Other("VDI (VirtualBox)")
        );
        assert_eq!(with(0, b"", 4096), Detected::Unknown);
        assert_eq!(detect(&MemDisk::new(vec![])), Detected::Unknown);
        assert_eq!(detect(&MemDisk::new(b"QFI".to_vec())), Detected::Unknown);
    }
}
