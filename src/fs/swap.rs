//! Linux swap: the header layout (declared once, for this probe and for shrink/swap) and the
//! probe. Linux `include/linux/swap.h` `union swap_header`, util-linux `include/swapheader.h`:
//! 1024 boot bytes, then version, last_page, nr_badpages, uuid, volume_name, 117 padding words,
//! the bad page list from 0x600; the signature in the last 10 bytes of the first page.

use zerocopy::little_endian::U32;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use super::common::{byte_label, info, read_struct, uuid_string};
use super::info::{FsInfo, FsKind};
use crate::disk::Disk;

/// `swap_header.info` (`struct swap_header_v1_2`), from byte 0x400 of the first page up to the
/// bad page list. Written in the CPU's byte order: the fields read little-endian here, and a
/// header made on a big-endian machine shows `version` 1 byte-swapped.
#[derive(Debug, Clone, Copy, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct RawSwapHeader {
    pub version: U32,          // 0x400 1
    pub last_page: U32,        // 0x404 index of the last usable page
    pub nr_badpages: U32,      // 0x408 entries used in the bad page list
    pub uuid: [u8; 16],        // 0x40C
    pub volume_name: [u8; 16], // 0x41C NUL padded
    pub padding: [U32; 117],   // 0x42C words 32 and 33 zero: blkid's "no garbage" check
}
const _: () = assert!(size_of::<RawSwapHeader>() == 0x200);

/// Where [`RawSwapHeader`] starts in the first page (after the boot bytes).
pub const SWAP_HEADER_OFFSET: u64 = 0x400;
/// Where the bad page list (u32 page numbers) starts, right after the header.
pub const SWAP_BADPAGES_OFFSET: u64 = 0x600;
/// The signature is the last 10 bytes of the first page.
pub const SWAP_MAGIC_LEN: usize = 10;
/// Version 1 signature (Linux 2.2+).
pub const SWAP_MAGIC_V1: &[u8; SWAP_MAGIC_LEN] = b"SWAPSPACE2";
/// Version 0 signature (Linux before 2.2), without a header.
pub const SWAP_MAGIC_V0: &[u8; SWAP_MAGIC_LEN] = b"SWAP-SPACE";
/// Page sizes Linux uses (x86 4 KiB; arm64, ppc64 up to 64 KiB), as blkid probes them.
pub const SWAP_PAGE_SIZES: [u64; 5] = [4096, 8192, 16384, 32768, 65536];

/// The padding words blkid requires to be zero before it trusts UUID and LABEL.
const PADDING_CLEAN: std::ops::Range<usize> = 32..34;

impl RawSwapHeader {
    /// `Some(false)` for a little-endian version 1 header, `Some(true)` for a big-endian one,
    /// `None` when `version` is 1 in neither byte order.
    pub fn is_big_endian(&self) -> Option<bool> {
        match (self.version.get(), self.version.get().swap_bytes()) {
            (1, _) => Some(false),
            (_, 1) => Some(true),
            _ => None,
        }
    }

    /// `last_page` in the header's own byte order.
    pub fn last_page_native(&self, big_endian: bool) -> u32 {
        let v = self.last_page.get();
        if big_endian {
            v.swap_bytes()
        } else {
            v
        }
    }

    /// Padding words 32 and 33 are zero (blkid reports UUID and LABEL only then).
    pub fn padding_clean(&self) -> bool {
        self.padding
            .get(PADDING_CLEAN)
            .is_some_and(|w| w.iter().all(|&x| x.get() == 0))
    }
}

/// Swap: "SWAPSPACE2" (or the old "SWAP-SPACE") in the last 10 bytes of the first page, for
/// page sizes 4 KiB..64 KiB; version 1 in either byte order, last page not 0. UUID and LABEL
/// only when padding words 32 and 33 are zero, as blkid does.
pub(crate) fn probe(part: &dyn Disk) -> Option<FsInfo> {
    SWAP_PAGE_SIZES.iter().find_map(|&page| {
        let mut magic = [0u8; SWAP_MAGIC_LEN];
        part.read_at(
            page.checked_sub(u64::try_from(SWAP_MAGIC_LEN).ok()?)?,
            &mut magic,
        )
        .ok()?;
        if &magic == SWAP_MAGIC_V0 {
            return Some(FsInfo {
                version: Some("0".to_string()),
                block_bytes: u32::try_from(page).ok(),
                ..info(FsKind::Swap)
            });
        }
        if &magic != SWAP_MAGIC_V1 {
            return None;
        }
        let h: RawSwapHeader = read_struct(part, SWAP_HEADER_OFFSET)?;
        let last_page = h.last_page_native(h.is_big_endian()?);
        if last_page == 0 {
            return None;
        }
        let clean = h.padding_clean();
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
    })
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::unwrap_used)]
mod tests {
    use super::*;

    /// A first page as mkswap writes it, field by field.
    fn page(version: [u8; 4], last_page: [u8; 4]) -> Vec<u8> {
        let mut p = vec![0u8; 4096];
        p[0x400..0x404].copy_from_slice(&version); // version
        p[0x404..0x408].copy_from_slice(&last_page); // last_page
        p[0x40C..0x41C].copy_from_slice(&[0x11; 16]); // uuid
        p[0x41C..0x421].copy_from_slice(b"swap0"); // volume_name
        p[4096 - 10..].copy_from_slice(SWAP_MAGIC_V1); // signature
        p
    }

    #[test]
    fn header_round_trip_and_byte_orders() {
        let p = page(1u32.to_le_bytes(), 99u32.to_le_bytes());
        let h = RawSwapHeader::read_from_bytes(&p[0x400..0x600]).unwrap();
        assert_eq!(h.is_big_endian(), Some(false));
        assert_eq!(h.last_page_native(false), 99);
        assert!(h.padding_clean());
        assert_eq!(h.as_bytes(), &p[0x400..0x600]);
        let p = page(1u32.to_be_bytes(), 99u32.to_be_bytes());
        let h = RawSwapHeader::read_from_bytes(&p[0x400..0x600]).unwrap();
        assert_eq!(h.is_big_endian(), Some(true));
        assert_eq!(h.last_page_native(true), 99);
        let p = page(2u32.to_le_bytes(), 99u32.to_le_bytes());
        let h = RawSwapHeader::read_from_bytes(&p[0x400..0x600]).unwrap();
        assert_eq!(h.is_big_endian(), None);
    }

    #[test]
    fn garbage_in_padding_hides_uuid_and_label() {
        let mut p = page(1u32.to_le_bytes(), 9u32.to_le_bytes());
        let info = probe(&crate::disk::MemDisk::new(p.clone())).unwrap();
        assert_eq!(info.label.as_deref(), Some("swap0"));
        assert_eq!(info.fs_bytes, Some(10 * 4096));
        p[0x42C + 33 * 4] = 1; // padding[33]
        let info = probe(&crate::disk::MemDisk::new(p)).unwrap();
        assert_eq!((info.label, info.uuid), (None, None));
    }
}
