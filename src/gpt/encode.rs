//! Encoding a new GPT in the standard layout (as gdisk writes it), read back by [`read`]
//! before it is returned.

use zerocopy::little_endian::{U16, U32, U64};
use zerocopy::IntoBytes;

use super::overlay::Overlay;
use super::raw::{
    self, RawGptEntry, RawGptHeader, ENTRY_BYTES, HEADER_BYTES, NAME_UNITS, REVISION_1_0, SIGNATURE,
};
use super::{
    check_sector_bytes, read, Geometry, GptPartition, Guid, MAX_ENTRY_ARRAY_BYTES,
    MIN_ENTRY_ARRAY_BYTES,
};
use crate::error::{Error, Result};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GptImage {
    /// Always 1: `primary` is written at byte `primary_header_lba * sector_bytes`.
    pub primary_header_lba: u64,
    /// Primary header sector followed by the entry array sectors (LBA 1 ..).
    pub primary: Vec<u8>,
    /// Where `backup` starts: the backup entry array, then the backup header at the last LBA.
    pub backup_entries_lba: u64,
    /// Backup entry array sectors followed by the backup header sector.
    pub backup: Vec<u8>,
    pub first_usable_lba: u64,
    pub last_usable_lba: u64,
}

/// The usable LBAs (first, last) of a standard GPT layout (as gdisk makes it) with
/// `num_entries` 128-byte entries on a disk of `disk_sectors` sectors.
pub fn usable_lbas(num_entries: u32, sector_bytes: u32, disk_sectors: u64) -> Result<(u64, u64)> {
    check_sector_bytes(sector_bytes)?;
    let geo = Geometry {
        sector_bytes,
        disk_sectors,
    };
    let array_bytes = u64::from(num_entries)
        .checked_mul(u64::from(ENTRY_BYTES))
        .filter(|b| (MIN_ENTRY_ARRAY_BYTES..=MAX_ENTRY_ARRAY_BYTES).contains(b))
        .ok_or_else(|| {
            Error::invalid(format!(
                "GPT entry count: expected {}..={} entries of 128 bytes, found {num_entries}",
                MIN_ENTRY_ARRAY_BYTES / 128,
                MAX_ENTRY_ARRAY_BYTES / 128
            ))
        })?;
    let array_sectors = geo
        .sectors_for(array_bytes)
        .ok_or_else(|| Error::invalid("GPT entry array size overflows"))?;
    let first = array_sectors.checked_add(2);
    let last = disk_sectors
        .checked_sub(2)
        .and_then(|n| n.checked_sub(array_sectors));
    match (first, last) {
        (Some(f), Some(l)) if f <= l => Ok((f, l)),
        _ => Err(Error::invalid(format!(
            "a GPT with {num_entries} entries does not fit a disk of {disk_sectors} sectors"
        ))),
    }
}

/// Encode a GPT in the standard layout (as gdisk writes it): primary header at LBA 1, primary
/// entries at LBA 2, first usable = 2 + array sectors, last usable = disk_sectors - 2 - array
/// sectors, backup entries right after the last usable LBA, backup header at the last LBA.
///
/// Each partition goes to slot `index - 1` (`type_name` is ignored). Fails (InvalidInput) when
/// a partition is outside the usable LBAs, reversed, overlapping another, of nil type, in a
/// slot that does not exist or is taken, or has a name longer than 36 UTF-16 units or with a
/// NUL. The result is read back by [`read`] before it is returned.
pub fn encode(
    disk_guid: Guid,
    partitions: &[GptPartition],
    num_entries: u32,
    sector_bytes: u32,
    disk_sectors: u64,
) -> Result<GptImage> {
    let (first_usable, last_usable) = usable_lbas(num_entries, sector_bytes, disk_sectors)?;
    let sb = usize::try_from(sector_bytes).map_err(|_| Error::invalid("sector size"))?;
    let entry_bytes = usize::try_from(ENTRY_BYTES).unwrap_or(128);
    let num = usize::try_from(num_entries).map_err(|_| Error::invalid("entry count"))?;
    let array_bytes = num
        .checked_mul(entry_bytes)
        .ok_or_else(|| Error::invalid("entry array size overflows"))?;
    let array_sectors = first_usable.saturating_sub(2);
    let padded = usize::try_from(array_sectors)
        .ok()
        .and_then(|n| n.checked_mul(sb))
        .ok_or_else(|| Error::invalid("entry array size overflows"))?;

    let array = encode_entries(partitions, num_entries, (first_usable, last_usable), padded)?;
    let array_crc = crc32fast::hash(array.get(..array_bytes).unwrap_or(&array));

    let last_lba = disk_sectors.saturating_sub(1);
    let backup_entries_lba = last_usable.saturating_add(1);
    let header = |my_lba: u64, alternate_lba: u64, entries_lba: u64| {
        header_sector(
            RawGptHeader {
                signature: SIGNATURE,
                revision: U32::new(REVISION_1_0),
                header_size: U32::new(HEADER_BYTES),
                header_crc32: U32::new(0),
                reserved: U32::new(0),
                my_lba: U64::new(my_lba),
                alternate_lba: U64::new(alternate_lba),
                first_usable_lba: U64::new(first_usable),
                last_usable_lba: U64::new(last_usable),
                disk_guid: disk_guid.0,
                partition_entry_lba: U64::new(entries_lba),
                num_partition_entries: U32::new(num_entries),
                size_of_partition_entry: U32::new(ENTRY_BYTES),
                partition_entry_array_crc32: U32::new(array_crc),
            },
            sb,
        )
    };
    let mut primary = header(1, last_lba, 2);
    primary.extend_from_slice(&array);
    let mut backup = array;
    backup.extend_from_slice(&header(last_lba, 1, backup_entries_lba));

    let image = GptImage {
        primary_header_lba: 1,
        primary,
        backup_entries_lba,
        backup,
        first_usable_lba: first_usable,
        last_usable_lba: last_usable,
    };
    verify(&image, partitions, sector_bytes, disk_sectors)?;
    Ok(image)
}

/// The entry array (`padded` bytes, whole sectors) with each partition in slot `index - 1`,
/// after checking it against the usable LBAs `(first_usable, last_usable)` and the others.
fn encode_entries(
    partitions: &[GptPartition],
    num_entries: u32,
    (first_usable, last_usable): (u64, u64),
    padded: usize,
) -> Result<Vec<u8>> {
    let entry_bytes = usize::try_from(ENTRY_BYTES).unwrap_or(128);
    let num = usize::try_from(num_entries).map_err(|_| Error::invalid("entry count"))?;
    let mut array = vec![0u8; padded];
    for p in partitions {
        let bad = |why: &str| {
            Error::invalid(format!(
                "GPT partition {} ({}..={}): {why}",
                p.index, p.first_lba, p.last_lba
            ))
        };
        if p.type_guid.is_nil() {
            return Err(bad("the type GUID is nil (that marks an unused entry)"));
        }
        if p.first_lba > p.last_lba || p.first_lba < first_usable || p.last_lba > last_usable {
            return Err(bad(&format!(
                "not an ordered range inside the usable LBAs {first_usable}..={last_usable}"
            )));
        }
        if let Some(o) = partitions
            .iter()
            .find(|o| o.index != p.index && o.first_lba <= p.last_lba && p.first_lba <= o.last_lba)
        {
            return Err(bad(&format!("overlaps partition {}", o.index)));
        }
        let units: Vec<u16> = p.name.encode_utf16().collect();
        if units.len() > NAME_UNITS || units.contains(&0) {
            return Err(bad("the name must be at most 36 UTF-16 units without NUL"));
        }
        let mut name = [U16::new(0); NAME_UNITS];
        for (slot, u) in name.iter_mut().zip(units) {
            *slot = U16::new(u);
        }
        let raw = RawGptEntry {
            partition_type_guid: p.type_guid.0,
            unique_partition_guid: p.unique_guid.0,
            starting_lba: U64::new(p.first_lba),
            ending_lba: U64::new(p.last_lba),
            attributes: U64::new(p.attributes),
            partition_name: name,
        };
        let slot = p
            .index
            .checked_sub(1)
            .and_then(|i| usize::try_from(i).ok())
            .filter(|&i| i < num)
            .and_then(|i| i.checked_mul(entry_bytes))
            .and_then(|at| array.get_mut(at..at.checked_add(entry_bytes)?))
            .ok_or_else(|| bad(&format!("index must be 1..={num_entries}")))?;
        if slot.iter().any(|&b| b != 0) {
            return Err(bad("index given twice"));
        }
        slot.copy_from_slice(raw.as_bytes());
    }
    Ok(array)
}

/// One header sector of `sb` bytes: `raw` with its CRC32 computed, then zeros.
fn header_sector(mut raw: RawGptHeader, sb: usize) -> Vec<u8> {
    raw.header_crc32 = U32::new(raw::header_crc32(raw.as_bytes()));
    let mut sector = vec![0u8; sb];
    if let Some(dst) = sector.get_mut(..raw.as_bytes().len()) {
        dst.copy_from_slice(raw.as_bytes());
    }
    sector
}

/// What must survive an encode/read round trip of one partition entry.
type EntryKey<'a> = (u32, Guid, Guid, u64, u64, u64, &'a str);

fn entry_key(p: &GptPartition) -> EntryKey<'_> {
    (
        p.index,
        p.type_guid,
        p.unique_guid,
        p.first_lba,
        p.last_lba,
        p.attributes,
        p.name.as_str(),
    )
}

/// Read an encoded image back through [`read`] (over a sparse view of the disk: nothing of
/// disk size is allocated) and check it gives the same partitions with no findings.
fn verify(image: &GptImage, partitions: &[GptPartition], sb: u32, disk_sectors: u64) -> Result<()> {
    let view = Overlay {
        len: disk_sectors.saturating_mul(u64::from(sb)),
        regions: [
            (u64::from(sb), image.primary.as_slice()),
            (
                image.backup_entries_lba.saturating_mul(u64::from(sb)),
                image.backup.as_slice(),
            ),
        ],
    };
    let internal = |why: String| Error::invalid(format!("encoded GPT does not read back: {why}"));
    let gpt = read(&view, sb)?.ok_or_else(|| internal("no signature".into()))?;
    if !gpt.primary_ok || !gpt.backup_ok || !gpt.findings.is_empty() {
        return Err(internal(format!("{:?}", gpt.findings)));
    }
    let mut want: Vec<EntryKey> = partitions.iter().map(entry_key).collect();
    want.sort();
    let got: Vec<_> = gpt.partitions.iter().map(entry_key).collect();
    if got != want {
        return Err(internal("partitions differ".into()));
    }
    Ok(())
}
