//! NTFS probe: the boot sector ($Boot, sector 0) and the volume name from MFT record 3
//! ($Volume). Layouts from the Linux-NTFS project's "NTFS Documentation" (Russon & Fledel) and
//! ntfs-3g `layout.h`.
//!
//! Reads 512 bytes of boot sector plus one MFT record (at most [`MAX_RECORD_BYTES`]).
pub mod geometry;
pub mod raw;

use zerocopy::FromBytes;

use self::raw::{
    RawMftRecord, RawNtfsBootSector, RawResidentAttr, ATTR_END, ATTR_VOLUME_INFORMATION,
    ATTR_VOLUME_NAME, FILE_MAGIC, NTFS_OEM, USA_STRIDE,
};
use super::common::{read_struct, utf16le_label};
use super::info::{FsInfo, FsKind};
use crate::disk::Disk;

/// MFT record number of $Volume.
const MFT_RECORD_VOLUME: u64 = 3;
/// Largest cluster NTFS allows (Windows 10 1709+: 2 MiB).
pub(crate) const MAX_CLUSTER_BYTES: u64 = 2 * 1024 * 1024;
/// Largest MFT record we read (real ones are 1 KiB or 4 KiB).
const MAX_RECORD_BYTES: u64 = 64 * 1024;
const MIN_RECORD_BYTES: u64 = 512;

/// Sectors per cluster, decoding the negative-exponent form used for clusters over 64 KiB.
pub(crate) fn sectors_per_cluster(v: u8) -> Option<u64> {
    match v {
        1..=0x80 if v.is_power_of_two() => Some(u64::from(v)),
        // 0xF4..=0xFF: 2^(256 - v) sectors, up to 4096
        0xF4..=0xFF => 1u64.checked_shl(u32::from(0u8.wrapping_sub(v))),
        _ => None,
    }
}

/// Bytes of an MFT (or index) record from the boot sector's clusters-per-record byte.
pub(crate) fn record_bytes(v: u8, cluster_bytes: u64) -> Option<u64> {
    let signed = i8::from_ne_bytes([v]);
    let bytes = if signed > 0 {
        u64::from(v).checked_mul(cluster_bytes)?
    } else {
        1u64.checked_shl(u32::from(signed.unsigned_abs()))?
    };
    (bytes.is_power_of_two() && (MIN_RECORD_BYTES..=MAX_RECORD_BYTES).contains(&bytes))
        .then_some(bytes)
}

/// Apply the update sequence fixup in place; `None` on a torn or malformed record.
pub(crate) fn apply_fixup(rec: &mut [u8]) -> Option<()> {
    let hdr = RawMftRecord::read_from_prefix(rec).ok()?.0;
    let usa_ofs = usize::from(hdr.usa_ofs.get());
    let usa_count = usize::from(hdr.usa_count.get());
    let strides = rec.len() / USA_STRIDE;
    if usa_count == 0 || usa_count.checked_sub(1)? != strides {
        return None;
    }
    let usa_end = usa_ofs.checked_add(usa_count.checked_mul(2)?)?;
    let usa: Vec<u8> = rec.get(usa_ofs..usa_end)?.to_vec();
    let usn = usa.get(0..2)?;
    for (i, fix) in usa.get(2..)?.chunks_exact(2).enumerate() {
        let end = i.checked_add(1)?.checked_mul(USA_STRIDE)?;
        let tail = rec.get_mut(end.checked_sub(2)?..end)?;
        if tail != usn {
            return None;
        }
        tail.copy_from_slice(fix);
    }
    Some(())
}

/// What we take from the $Volume record.
#[derive(Debug, Default, PartialEq, Eq)]
struct VolumeRecord {
    label: Option<String>,
    version: Option<String>,
}

/// Walk the attributes of a fixed-up $Volume record (bounded by the record size).
fn parse_volume_record(rec: &[u8]) -> Option<VolumeRecord> {
    let hdr = RawMftRecord::read_from_prefix(rec).ok()?.0;
    if &hdr.magic != FILE_MAGIC {
        return None;
    }
    let limit = rec.len().min(usize::try_from(hdr.bytes_in_use.get()).ok()?);
    let mut out = VolumeRecord::default();
    let mut off = usize::from(hdr.attrs_offset.get());
    // every attribute record is at least 0x18 bytes, so this bounds the walk
    for _ in 0..rec.len().checked_div(size_of::<RawResidentAttr>())? {
        let Some(bytes) = off
            .checked_add(size_of::<RawResidentAttr>())
            .and_then(|e| (e <= limit).then(|| rec.get(off..))?)
        else {
            break;
        };
        let Ok((attr, _)) = RawResidentAttr::read_from_prefix(bytes) else {
            break;
        };
        let kind = attr.header.kind.get();
        let len = usize::try_from(attr.header.length.get()).ok()?;
        if kind == ATTR_END || len < size_of::<RawResidentAttr>() {
            break;
        }
        if attr.header.non_resident == 0 {
            let v_off = usize::from(attr.value_offset.get());
            let v_len = usize::try_from(attr.value_length.get()).ok()?;
            let value = v_off
                .checked_add(v_len)
                .filter(|&e| e <= len)
                .and_then(|e| bytes.get(v_off..e));
            match (kind, value) {
                (ATTR_VOLUME_NAME, Some(v)) => out.label = utf16le_label(v),
                // $VOLUME_INFORMATION: 8 reserved bytes, major u8, minor u8, flags u16
                (ATTR_VOLUME_INFORMATION, Some(v)) => {
                    if let (Some(major), Some(minor)) = (v.get(8), v.get(9)) {
                        out.version = Some(format!("{major}.{minor}"));
                    }
                }
                _ => {}
            }
        }
        off = match off.checked_add(len) {
            Some(o) => o,
            None => break,
        };
    }
    Some(out)
}

/// NTFS: OEM id "NTFS    " at 3, a BPB with the fields NTFS leaves zero at zero (as blkid
/// checks), then the label and version from $Volume when that record is readable. Unlike
/// blkid, an unreadable MFT (truncated partition) still reports NTFS, without a label.
pub(crate) fn probe(part: &dyn Disk) -> Option<FsInfo> {
    let bs: RawNtfsBootSector = read_struct(part, 0)?;
    if &bs.oem_id != NTFS_OEM {
        return None;
    }
    let bps = u64::from(bs.bytes_per_sector.get());
    if !bps.is_power_of_two() || !(256..=4096).contains(&bps) {
        return None;
    }
    let spc = sectors_per_cluster(bs.sectors_per_cluster)?;
    let cluster_bytes = bps.checked_mul(spc).filter(|&c| c <= MAX_CLUSTER_BYTES)?;
    if bs.reserved_sectors.get() != 0
        || bs.fats != 0
        || bs.root_entries.get() != 0
        || bs.sectors.get() != 0
        || bs.sectors_per_fat.get() != 0
        || bs.large_sectors.get() != 0
    {
        return None;
    }
    let total_sectors = bs.number_of_sectors.get();
    let clusters = total_sectors.checked_div(spc)?;
    if bs.mft_lcn.get() > clusters || bs.mftmirr_lcn.get() > clusters {
        return None;
    }
    let rec_bytes = record_bytes(bs.clusters_per_mft_record, cluster_bytes)?;
    let serial = bs.volume_serial_number.get();
    let vol = volume_record(part, bs.mft_lcn.get(), cluster_bytes, rec_bytes).unwrap_or_default();
    Some(FsInfo {
        kind: FsKind::Ntfs,
        label: vol.label,
        uuid: (serial != 0).then(|| format!("{serial:016X}")),
        encrypted: false,
        block_bytes: u32::try_from(cluster_bytes).ok(),
        fs_bytes: total_sectors.checked_mul(bps),
        uuid_sub: None,
        version: vol.version,
    })
}

fn volume_record(
    part: &dyn Disk,
    mft_lcn: u64,
    cluster_bytes: u64,
    rec_bytes: u64,
) -> Option<VolumeRecord> {
    let off = mft_lcn
        .checked_mul(cluster_bytes)?
        .checked_add(MFT_RECORD_VOLUME.checked_mul(rec_bytes)?)?;
    let mut rec = part.read_vec(off, rec_bytes).ok()?;
    apply_fixup(&mut rec)?;
    parse_volume_record(&rec)
}

#[cfg(test)]
#[allow(
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    clippy::unwrap_used,
    clippy::as_conversions
)]
pub(crate) mod tests {
    use super::*;
    use crate::disk::MemDisk;

    /// A 512-byte NTFS boot sector, field by field.
    pub(crate) fn boot_sector() -> [u8; 512] {
        let mut b = [0u8; 512];
        b[0..3].copy_from_slice(&[0xEB, 0x52, 0x90]); // 0x00 jump
        b[3..11].copy_from_slice(b"NTFS    "); // 0x03 OEM id
        b[0x0B..0x0D].copy_from_slice(&512u16.to_le_bytes()); // bytes per sector
        b[0x0D] = 8; // sectors per cluster -> 4 KiB clusters
        b[0x15] = 0xF8; // media
        b[0x28..0x30].copy_from_slice(&2047u64.to_le_bytes()); // 1 MiB - backup sector
        b[0x30..0x38].copy_from_slice(&4u64.to_le_bytes()); // $MFT at cluster 4
        b[0x38..0x40].copy_from_slice(&2u64.to_le_bytes()); // $MFTMirr at cluster 2
        b[0x40] = 0xF6; // MFT record = 2^10 = 1 KiB
        b[0x44] = 1; // index record = 1 cluster
        b[0x48..0x50].copy_from_slice(&0x0123_4567_89AB_CDEFu64.to_le_bytes()); // serial
        b[0x1FE] = 0x55;
        b[0x1FF] = 0xAA;
        b
    }

    /// A 1 KiB $Volume record with the given label, with the update sequence applied.
    fn volume_record_bytes(label: &str) -> Vec<u8> {
        let mut r = vec![0u8; 1024];
        r[0..4].copy_from_slice(b"FILE"); // magic
        r[4..6].copy_from_slice(&0x30u16.to_le_bytes()); // usa offset
        r[6..8].copy_from_slice(&3u16.to_le_bytes()); // usa count: usn + 2 strides
        r[0x14..0x16].copy_from_slice(&0x38u16.to_le_bytes()); // first attribute
        r[0x16..0x18].copy_from_slice(&1u16.to_le_bytes()); // in use
        r[0x1C..0x20].copy_from_slice(&1024u32.to_le_bytes()); // allocated
                                                               // attribute 0x70 $VOLUME_INFORMATION, 12-byte value: version 3.1
        let mut off = 0x38;
        let mut put_attr = |r: &mut Vec<u8>, kind: u32, value: &[u8]| {
            let len = (0x18 + value.len() + 7) & !7;
            r[off..off + 4].copy_from_slice(&kind.to_le_bytes()); // type
            r[off + 4..off + 8].copy_from_slice(&(len as u32).to_le_bytes()); // length
            r[off + 0x10..off + 0x14].copy_from_slice(&(value.len() as u32).to_le_bytes());
            r[off + 0x14..off + 0x16].copy_from_slice(&0x18u16.to_le_bytes()); // value offset
            r[off + 0x18..off + 0x18 + value.len()].copy_from_slice(value);
            off += len;
        };
        let mut info = [0u8; 12];
        info[8] = 3; // major
        info[9] = 1; // minor
        put_attr(&mut r, 0x70, &info);
        let name: Vec<u8> = label.encode_utf16().flat_map(u16::to_le_bytes).collect();
        put_attr(&mut r, 0x60, &name);
        r[off..off + 4].copy_from_slice(&0xFFFF_FFFFu32.to_le_bytes()); // end marker
        let in_use = (off + 8) as u32;
        r[0x18..0x1C].copy_from_slice(&in_use.to_le_bytes());
        // update sequence: usn 0x0007, saved tails
        r[0x30..0x32].copy_from_slice(&7u16.to_le_bytes());
        for i in 0..2 {
            let end = (i + 1) * 512;
            let saved = [r[end - 2], r[end - 1]];
            r[0x32 + 2 * i..0x34 + 2 * i].copy_from_slice(&saved);
            r[end - 2..end].copy_from_slice(&7u16.to_le_bytes());
        }
        r
    }

    pub(crate) fn image(label: &str) -> Vec<u8> {
        let mut img = vec![0u8; 1 << 20];
        img[..512].copy_from_slice(&boot_sector());
        let rec_off = 4 * 4096 + 3 * 1024;
        img[rec_off..rec_off + 1024].copy_from_slice(&volume_record_bytes(label));
        img
    }

    #[test]
    fn boot_sector_and_volume_name() {
        let d = MemDisk::new(image("Données"));
        let info = probe(&d).unwrap();
        assert_eq!(info.kind, FsKind::Ntfs);
        assert_eq!(info.uuid.as_deref(), Some("0123456789ABCDEF"));
        assert_eq!(info.label.as_deref(), Some("Données"));
        assert_eq!(info.version.as_deref(), Some("3.1"));
        assert_eq!(info.block_bytes, Some(4096));
        assert_eq!(info.fs_bytes, Some(2047 * 512));
    }

    #[test]
    fn torn_record_keeps_ntfs_without_label() {
        let mut img = image("X");
        let rec_off = 4 * 4096 + 3 * 1024;
        img[rec_off + 510] ^= 1; // update sequence number mismatch
        let info = probe(&MemDisk::new(img)).unwrap();
        assert_eq!(info.kind, FsKind::Ntfs);
        assert_eq!(info.label, None);
    }

    #[test]
    fn truncated_volume_has_no_label() {
        let img = image("X");
        let info = probe(&MemDisk::new(img[..512].to_vec())).unwrap();
        assert_eq!(info.kind, FsKind::Ntfs);
        assert_eq!(info.label, None);
    }

    #[test]
    fn cluster_encodings() {
        assert_eq!(sectors_per_cluster(8), Some(8));
        assert_eq!(sectors_per_cluster(3), None);
        assert_eq!(sectors_per_cluster(0), None);
        assert_eq!(sectors_per_cluster(0xF4), Some(4096)); // 2 MiB with 512-byte sectors
        assert_eq!(sectors_per_cluster(0xFF), Some(2));
        assert_eq!(sectors_per_cluster(0x81), None);
        assert_eq!(record_bytes(0xF6, 4096), Some(1024));
        assert_eq!(record_bytes(1, 4096), Some(4096));
        assert_eq!(record_bytes(0x80, 4096), None); // 2^128
        assert_eq!(record_bytes(0xE1, 4096), None); // 2^31: too large to read
    }

    #[test]
    fn rejects_non_ntfs_bpb() {
        let mut b = boot_sector();
        b[0x10] = 2; // FATs must be 0
        assert!(probe(&MemDisk::new(b.to_vec())).is_none());
        let mut b = boot_sector();
        b[0x0B..0x0D].copy_from_slice(&0u16.to_le_bytes());
        assert!(probe(&MemDisk::new(b.to_vec())).is_none());
        let mut b = boot_sector();
        b[0x30..0x38].copy_from_slice(&u64::MAX.to_le_bytes()); // MFT beyond the volume
        assert!(probe(&MemDisk::new(b.to_vec())).is_none());
        assert!(probe(&MemDisk::new(vec![0; 100])).is_none());
    }
}
