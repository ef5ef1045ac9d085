//! Shrinking a Linux swap area: swap has no metadata but its first page, so a smaller swap is
//! the same header with a smaller `last_page`. The UUID and the label are kept (fstab and the
//! kernel's `resume=` name swap by them), and so is everything else in the page (boot bits,
//! padding), which makes the result equal to what `mkswap -U UUID -L LABEL` writes for the new
//! size on a blank partition.
//!
//! Layout (util-linux `include/swapheader.h`, Linux `include/linux/swap.h` `union
//! swap_header`): 1024 boot bytes, then version, last_page, nr_badpages, uuid, volume_name,
//! 117 padding words, the bad page list; the signature in the last 10 bytes of the page.
use zerocopy::little_endian::U32;
use zerocopy::{FromBytes, IntoBytes};

use super::ShrinkWrites;
use crate::disk::{Disk, MemDisk};
use crate::error::{Error, Result};
use crate::fs::common::uuid_string;
use crate::fs::swap::{
    RawSwapHeader, SWAP_BADPAGES_OFFSET, SWAP_HEADER_OFFSET, SWAP_MAGIC_LEN, SWAP_MAGIC_V0,
    SWAP_MAGIC_V1, SWAP_PAGE_SIZES,
};
use crate::fs::{self, FsKind};

/// Where the header starts and ends, and where the bad page list starts (right after it).
const HEADER_OFFSET: usize = 0x400;
const HEADER_END: usize = HEADER_OFFSET + size_of::<RawSwapHeader>();
const BADPAGES_OFFSET: usize = 0x600;
// Compile-time only: both constants are below 2^16, so the widening `as` is exact.
#[allow(clippy::as_conversions)]
const _: () = assert!(HEADER_OFFSET as u64 == SWAP_HEADER_OFFSET);
// Compile-time only, as above.
#[allow(clippy::as_conversions)]
const _: () = assert!(BADPAGES_OFFSET as u64 == SWAP_BADPAGES_OFFSET);
const _: () = assert!(HEADER_END == BADPAGES_OFFSET);
/// The signature is the last 10 bytes of the first page.
const MAGIC_LEN: usize = SWAP_MAGIC_LEN;
/// mkswap refuses areas under 10 pages ("swap space needs to be at least 40 KiB" on 4 KiB pages).
const MIN_PAGES: u64 = 10;
/// Signatures of a hibernation image written over a swap area (blkid `swap.c`): the swap is in
/// use by a suspended system and its contents must not be lost.
const HIBERNATION_MAGICS: [&[u8]; 4] = [b"S1SUSPEND", b"S2SUSPEND", b"ULSUSPEND", b"LINHIB0001"];

/// The header of the swap area at the start of `part` rewritten for `new_bytes` (the new
/// partition length): `last_page = new_bytes / page - 1`, bad pages beyond it dropped, all else
/// kept. Reads only; the one write is the whole first page, checked by the swap probe before it
/// is returned. Refuses (with the reason and `--room grow` as the alternative) version 0 swap,
/// big-endian headers, hibernation images, and sizes under mkswap's minimum. When the area
/// already fits in `new_bytes` nothing is written.
pub fn plan_swap_shrink(part: &dyn Disk, new_bytes: u64) -> Result<ShrinkWrites> {
    if new_bytes > part.len() {
        return Err(Error::invalid(format!(
            "swap: the new size {new_bytes} bytes is larger than the partition ({} bytes)",
            part.len()
        )));
    }
    let (page_bytes, magic) = find_signature(part)?;
    refuse_other_signatures(&magic)?;
    let page_len = usize::try_from(page_bytes)
        .map_err(|_| Error::unsupported("swap: page size does not fit in memory"))?;
    let mut page = part.read_vec(0, page_bytes)?;
    let mut header = read_header(&page)?;
    let old_last_page = u64::from(header.last_page.get());
    let nr_badpages = bad_page_count(&header, page_len, page_bytes)?;
    let new_pages = new_bytes.checked_div(page_bytes).unwrap_or(0);
    if new_pages < MIN_PAGES {
        return Err(Error::invalid(format!(
            "swap: {new_bytes} bytes hold {new_pages} pages of {page_bytes} bytes; a swap \
             area needs at least {MIN_PAGES}: use --room grow"
        )));
    }
    let new_last_page = new_pages.saturating_sub(1);
    let uuid = uuid_string(&header.uuid);
    let label = label(&header.volume_name);
    let who = format!(
        "swap (UUID {}, LABEL {})",
        uuid.as_deref().unwrap_or("none"),
        label.as_deref().unwrap_or("none")
    );
    if new_last_page >= old_last_page {
        return Ok(ShrinkWrites {
            writes: Vec::new(),
            notes: vec![format!(
                "{who}: {} pages of {page_bytes} bytes already fit in {new_bytes} bytes; \
                 nothing to write",
                old_last_page.saturating_add(1)
            )],
        });
    }
    let kept = keep_bad_pages(&mut page, nr_badpages, new_last_page)?;
    let dropped = nr_badpages.saturating_sub(kept);
    header.last_page = U32::new(
        u32::try_from(new_last_page)
            .map_err(|_| Error::invalid("swap: more pages than a 32-bit last_page holds"))?,
    );
    header.nr_badpages = U32::new(u32::try_from(kept).unwrap_or(u32::MAX));
    page.get_mut(HEADER_OFFSET..HEADER_END)
        .ok_or_else(|| Error::corrupt("swap: first page shorter than its header"))?
        .copy_from_slice(header.as_bytes());
    check_reads_back(&page, &uuid, &label)?;

    let mut notes = vec![format!(
        "{who}: {} -> {} pages of {page_bytes} bytes ({} -> {} bytes)",
        old_last_page.saturating_add(1),
        new_pages,
        old_last_page.saturating_add(1).saturating_mul(page_bytes),
        new_pages.saturating_mul(page_bytes)
    )];
    if dropped > 0 {
        notes.push(format!(
            "{who}: {dropped} bad page(s) beyond the new end dropped from the list"
        ));
    }
    Ok(ShrinkWrites {
        writes: vec![(0, page)],
        notes,
    })
}

/// Refuse every signature but version 1 swap: version 0, hibernation images.
fn refuse_other_signatures(magic: &[u8; MAGIC_LEN]) -> Result<()> {
    match magic {
        m if m == SWAP_MAGIC_V1 => Ok(()),
        m if m == SWAP_MAGIC_V0 => Err(Error::unsupported(
            "swap: version 0 swap area (\"SWAP-SPACE\", Linux before 2.2) cannot be \
             shrunk; run mkswap in the guest or use --room grow",
        )),
        m if HIBERNATION_MAGICS.iter().any(|h| m.starts_with(h)) => {
            Err(Error::unsupported(format!(
                "swap: the area holds a hibernation image (signature {:?}); boot the guest so \
                 that it resumes, shut it down normally, then convert; or use --room grow",
                String::from_utf8_lossy(m).trim_end_matches('\0')
            )))
        }
        // find_signature returns only the signatures above.
        m => Err(Error::corrupt(format!(
            "swap: unexpected signature {:?}",
            String::from_utf8_lossy(m)
        ))),
    }
}

/// The header in the first page: version 1 in this machine's byte order, a non-empty area.
fn read_header(page: &[u8]) -> Result<RawSwapHeader> {
    let header_bytes = page
        .get(HEADER_OFFSET..HEADER_END)
        .ok_or_else(|| Error::corrupt("swap: first page shorter than its header"))?;
    let header = RawSwapHeader::read_from_bytes(header_bytes)
        .map_err(|_| Error::corrupt("swap: header length"))?;
    match (header.version.get(), header.version.get().swap_bytes()) {
        (1, _) => {}
        (_, 1) => {
            return Err(Error::unsupported(
                "swap: big-endian swap header (made on a big-endian machine); run mkswap in \
                 the guest or use --room grow",
            ))
        }
        (v, _) => {
            return Err(Error::corrupt(format!(
                "swap: header at 0x400: version is {v}, expected 1"
            )))
        }
    }
    if header.last_page.get() == 0 {
        return Err(Error::corrupt(
            "swap: header at 0x404: last_page is 0 (an empty swap area)",
        ));
    }
    Ok(header)
}

/// `nr_badpages`, checked against the room for the list: from 0x600 to just before the
/// signature.
fn bad_page_count(header: &RawSwapHeader, page_len: usize, page_bytes: u64) -> Result<usize> {
    let max_badpages = page_len
        .checked_sub(BADPAGES_OFFSET)
        .and_then(|n| n.checked_sub(MAGIC_LEN))
        .map(|n| n / 4)
        .unwrap_or(0);
    let nr_badpages = usize::try_from(header.nr_badpages.get()).unwrap_or(usize::MAX);
    if nr_badpages > max_badpages {
        return Err(Error::corrupt(format!(
            "swap: header at 0x408: nr_badpages is {nr_badpages}, at most {max_badpages} fit \
             in a {page_bytes}-byte page"
        )));
    }
    Ok(nr_badpages)
}

/// Keep the bad pages that are still inside the area, in their order, zeroing the rest of the
/// list in `page`; the number kept.
fn keep_bad_pages(page: &mut [u8], nr_badpages: usize, new_last_page: u64) -> Result<usize> {
    let list_range = nr_badpages
        .checked_mul(4)
        .and_then(|n| n.checked_add(BADPAGES_OFFSET))
        .map(|end| BADPAGES_OFFSET..end)
        .ok_or_else(|| Error::corrupt("swap: bad page list outside the first page"))?;
    let list = page
        .get(list_range.clone())
        .ok_or_else(|| Error::corrupt("swap: bad page list outside the first page"))?;
    let kept: Vec<u32> = list
        .chunks_exact(4)
        .filter_map(|c| <[u8; 4]>::try_from(c).ok().map(u32::from_le_bytes))
        .filter(|&p| u64::from(p) <= new_last_page)
        .collect();
    let list = page
        .get_mut(list_range)
        .ok_or_else(|| Error::corrupt("swap: bad page list outside the first page"))?;
    list.fill(0);
    for (slot, p) in list.chunks_exact_mut(4).zip(&kept) {
        slot.copy_from_slice(&p.to_le_bytes());
    }
    Ok(kept.len())
}

/// The new page must read back as the same swap area.
fn check_reads_back(page: &[u8], uuid: &Option<String>, label: &Option<String>) -> Result<()> {
    let check = fs::probe(&MemDisk::read_only(page.to_vec()));
    match check {
        Some(info) if info.kind == FsKind::Swap && &info.uuid == uuid && &info.label == label => {
            Ok(())
        }
        other => Err(Error::corrupt(format!(
            "swap: the rewritten header does not read back as the same swap area \
             (probe: {other:?})"
        ))),
    }
}

/// The page size (where the signature is) and the 10-byte signature; an error when the
/// partition holds no swap signature at any page size.
fn find_signature(part: &dyn Disk) -> Result<(u64, [u8; MAGIC_LEN])> {
    for &page in &SWAP_PAGE_SIZES {
        let mut magic = [0u8; MAGIC_LEN];
        let Some(at) = page.checked_sub(crate::units::len_u64(MAGIC_LEN)) else {
            continue;
        };
        if part.read_at(at, &mut magic).is_err() {
            continue;
        }
        let known = &magic == SWAP_MAGIC_V1
            || &magic == SWAP_MAGIC_V0
            || HIBERNATION_MAGICS.iter().any(|h| magic.starts_with(h));
        if known {
            return Ok((page, magic));
        }
    }
    Err(Error::invalid(
        "swap: no swap signature at the end of the first page (page sizes 4 KiB to 64 KiB)",
    ))
}

/// The label up to its first NUL; `None` when empty.
fn label(raw: &[u8; 16]) -> Option<String> {
    let end = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
    let s = String::from_utf8_lossy(raw.get(..end)?).into_owned();
    (!s.is_empty()).then_some(s)
}

#[cfg(test)]
#[allow(
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    clippy::unwrap_used,
    clippy::as_conversions
)]
mod tests {
    use super::*;

    const UUID: [u8; 16] = [
        0x11, 0x11, 0x11, 0x11, 0x22, 0x22, 0x33, 0x33, 0x44, 0x44, 0x55, 0x55, 0x55, 0x55, 0x55,
        0x55,
    ];

    /// A swap area of `pages` pages of `page` bytes as mkswap 2.38 lays it out.
    fn swap_image(page: usize, pages: usize, badpages: &[u32]) -> Vec<u8> {
        let mut img = vec![0u8; page * pages];
        img[0x400..0x404].copy_from_slice(&1u32.to_le_bytes()); // version 1
        img[0x404..0x408].copy_from_slice(&(pages as u32 - 1).to_le_bytes()); // last_page
        img[0x408..0x40C].copy_from_slice(&(badpages.len() as u32).to_le_bytes()); // nr_badpages
        img[0x40C..0x41C].copy_from_slice(&UUID); // uuid
        img[0x41C..0x423].copy_from_slice(b"swaplbl"); // volume_name
        for (i, p) in badpages.iter().enumerate() {
            img[0x600 + 4 * i..0x604 + 4 * i].copy_from_slice(&p.to_le_bytes());
            // bad pages
        }
        img[page - 10..page].copy_from_slice(b"SWAPSPACE2"); // signature
        img
    }

    fn refused(r: Result<ShrinkWrites>) -> Error {
        match r {
            Err(e) => e,
            Ok(w) => panic!("expected a refusal, got writes with notes {:?}", w.notes),
        }
    }

    fn last_page(page: &[u8]) -> u32 {
        u32::from_le_bytes(page[0x404..0x408].try_into().unwrap())
    }

    #[test]
    fn shrinks_last_page_and_keeps_identity() {
        let img = swap_image(4096, 256, &[]);
        let w = plan_swap_shrink(&MemDisk::read_only(img.clone()), 100 * 4096 + 123).unwrap();
        assert_eq!(w.writes.len(), 1);
        let (off, page) = &w.writes[0];
        assert_eq!(*off, 0);
        assert_eq!(page.len(), 4096);
        assert_eq!(last_page(page), 99);
        // everything but last_page is unchanged
        let mut expect = img[..4096].to_vec();
        expect[0x404..0x408].copy_from_slice(&99u32.to_le_bytes());
        assert_eq!(page, &expect);
        assert!(
            w.notes[0].contains("11111111-2222-3333-4444-555555555555"),
            "{:?}",
            w.notes
        );
        assert!(w.notes[0].contains("swaplbl"), "{:?}", w.notes);
    }

    #[test]
    fn bad_pages_beyond_the_end_are_dropped() {
        let img = swap_image(4096, 256, &[5, 200, 50, 250]);
        let w = plan_swap_shrink(&MemDisk::read_only(img), 128 * 4096).unwrap();
        let page = &w.writes[0].1;
        assert_eq!(
            u32::from_le_bytes(page[0x408..0x40C].try_into().unwrap()),
            2
        );
        assert_eq!(
            u32::from_le_bytes(page[0x600..0x604].try_into().unwrap()),
            5
        );
        assert_eq!(
            u32::from_le_bytes(page[0x604..0x608].try_into().unwrap()),
            50
        );
        assert_eq!(&page[0x608..0x610], &[0u8; 8]);
        assert!(
            w.notes.iter().any(|n| n.contains("2 bad page(s)")),
            "{:?}",
            w.notes
        );
    }

    #[test]
    fn larger_pages_are_kept() {
        let img = swap_image(65536, 32, &[]);
        let w = plan_swap_shrink(&MemDisk::read_only(img), 16 * 65536).unwrap();
        let page = &w.writes[0].1;
        assert_eq!(page.len(), 65536);
        assert_eq!(last_page(page), 15);
        assert_eq!(&page[65526..], b"SWAPSPACE2");
    }

    #[test]
    fn already_fitting_writes_nothing() {
        let img = swap_image(4096, 64, &[]);
        let w = plan_swap_shrink(&MemDisk::read_only(img), 64 * 4096).unwrap();
        assert!(w.writes.is_empty());
        assert!(w.notes[0].contains("nothing to write"), "{:?}", w.notes);
    }

    #[test]
    fn refusals() {
        let disk = |img: Vec<u8>| MemDisk::read_only(img);
        // too small for mkswap's minimum
        let e = refused(plan_swap_shrink(&disk(swap_image(4096, 64, &[])), 9 * 4096));
        assert!(e.message().contains("--room grow"), "{e}");
        // larger than the partition
        let e = refused(plan_swap_shrink(
            &disk(swap_image(4096, 64, &[])),
            65 * 4096,
        ));
        assert!(e.message().contains("larger than the partition"), "{e}");
        // hibernation image
        let mut img = swap_image(4096, 64, &[]);
        img[4086..4096].copy_from_slice(b"S1SUSPEND\0");
        let e = refused(plan_swap_shrink(&disk(img), 32 * 4096));
        assert!(e.message().contains("hibernation"), "{e}");
        // version 0
        let mut img = swap_image(4096, 64, &[]);
        img[4086..4096].copy_from_slice(b"SWAP-SPACE");
        let e = refused(plan_swap_shrink(&disk(img), 32 * 4096));
        assert!(e.message().contains("version 0"), "{e}");
        // big-endian
        let mut img = swap_image(4096, 64, &[]);
        img[0x400..0x404].copy_from_slice(&1u32.to_be_bytes());
        let e = refused(plan_swap_shrink(&disk(img), 32 * 4096));
        assert!(e.message().contains("big-endian"), "{e}");
        // not swap at all
        let e = refused(plan_swap_shrink(&disk(vec![0u8; 65536]), 8 * 4096));
        assert!(e.message().contains("no swap signature"), "{e}");
        // hostile nr_badpages
        let mut img = swap_image(4096, 64, &[]);
        img[0x408..0x40C].copy_from_slice(&u32::MAX.to_le_bytes());
        let e = refused(plan_swap_shrink(&disk(img), 32 * 4096));
        assert!(e.message().contains("nr_badpages"), "{e}");
        // last_page 0
        let mut img = swap_image(4096, 64, &[]);
        img[0x404..0x408].copy_from_slice(&0u32.to_le_bytes());
        let e = refused(plan_swap_shrink(&disk(img), 32 * 4096));
        assert!(e.message().contains("last_page is 0"), "{e}");
    }

    #[test]
    fn truncated_partitions_never_panic() {
        let img = swap_image(4096, 64, &[]);
        for len in [0usize, 1, 1023, 1024, 1500, 4095, 4096, 8191] {
            let _ = plan_swap_shrink(
                &MemDisk::read_only(img[..len.min(img.len())].to_vec()),
                40960,
            );
        }
    }
}
