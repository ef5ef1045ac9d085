//! The volume geometry an NTFS boot sector declares, checked once for every reader and writer
//! (the file reader fs/ntfsfile, the shrink). Accepted values follow ntfs-3g
//! `ntfs_boot_sector_is_ntfs` and the Linux-NTFS "NTFS Documentation" ("Boot Sector"):
//!
//! - bytes per sector (0x0B): a power of two from 256 to 4096;
//! - sectors per cluster (0x0D): 1..=128, a power of two, or 0xF4..=0xFF meaning 2^(256 - v)
//!   sectors; the cluster at most [`MAX_CLUSTER_BYTES`] (2 MiB, Windows 10 1709+);
//! - clusters per MFT record (0x40) and per index record (0x44): as a signed byte, v > 0 is v
//!   clusters and v < 0 is 2^(-v) bytes; the record a power of two from 512 bytes to 64 KiB;
//! - `$MFT` (0x30) and `$MFTMirr` (0x38) inside the volume, `$MFT` not at cluster 0 (the boot
//!   sector), and `$MFT` record 0 inside the volume.

use super::raw::{RawNtfsBootSector, NTFS_OEM};
use super::{record_bytes, sectors_per_cluster, MAX_CLUSTER_BYTES};
use crate::error::{Error, Result};

/// Smallest and largest bytes per sector an NTFS boot sector may declare.
pub const MIN_BYTES_PER_SECTOR: u64 = 256;
pub const MAX_BYTES_PER_SECTOR: u64 = 4096;

/// The checked geometry of an NTFS volume.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NtfsGeometry {
    pub bytes_per_sector: u64,
    pub sectors_per_cluster: u64,
    pub cluster_bytes: u64,
    /// Bytes of one MFT record.
    pub record_bytes: u64,
    /// Bytes of one index record (`$INDEX_ALLOCATION` block).
    pub index_record_bytes: u64,
    /// Sectors in the volume (0x28; the backup boot sector after them is not counted).
    pub total_sectors: u64,
    /// Whole clusters in the volume.
    pub clusters: u64,
    pub mft_lcn: u64,
    pub mftmirr_lcn: u64,
    /// The volume serial number (0x48).
    pub serial: u64,
}

impl NtfsGeometry {
    /// Check the boot sector and the volume against a partition of `part_len` bytes. Not NTFS
    /// (no "NTFS    " OEM id) is InvalidInput; a value outside the ranges above is Corrupt.
    pub fn parse(bs: &RawNtfsBootSector, part_len: u64) -> Result<NtfsGeometry> {
        if &bs.oem_id != NTFS_OEM {
            return Err(Error::invalid(
                "not an NTFS volume (no \"NTFS    \" at 0x3)",
            ));
        }
        let bps = u64::from(bs.bytes_per_sector.get());
        if !bps.is_power_of_two() || !(MIN_BYTES_PER_SECTOR..=MAX_BYTES_PER_SECTOR).contains(&bps) {
            return Err(Error::corrupt(format!(
                "NTFS boot sector at 0xb: {bps} bytes per sector, expected a power of two from \
                 {MIN_BYTES_PER_SECTOR} to {MAX_BYTES_PER_SECTOR}"
            )));
        }
        let spc = sectors_per_cluster(bs.sectors_per_cluster).ok_or_else(|| {
            Error::corrupt(format!(
                "NTFS boot sector at 0xd: sectors per cluster byte {:#04x}, expected a power of \
                 two up to 0x80 or 0xf4..=0xff (2^(256 - v))",
                bs.sectors_per_cluster
            ))
        })?;
        let cluster_bytes = bps
            .checked_mul(spc)
            .filter(|&c| c <= MAX_CLUSTER_BYTES)
            .ok_or_else(|| {
                Error::corrupt(format!(
                    "NTFS boot sector: clusters of {spc} sectors of {bps} bytes, larger than \
                     {MAX_CLUSTER_BYTES} bytes"
                ))
            })?;
        let record = |at: u8, what: &str, v: u8| {
            record_bytes(v, cluster_bytes).ok_or_else(|| {
                Error::corrupt(format!(
                    "NTFS boot sector at {at:#x}: clusters per {what} record byte {v:#04x} gives \
                     no power of two from 512 bytes to 64 KiB ({cluster_bytes}-byte clusters)"
                ))
            })
        };
        let rec = record(0x40, "MFT", bs.clusters_per_mft_record)?;
        let index = record(0x44, "index", bs.clusters_per_index_record)?;
        let total_sectors = bs.number_of_sectors.get();
        if total_sectors
            .checked_mul(bps)
            .is_none_or(|bytes| bytes > part_len)
        {
            return Err(Error::corrupt(format!(
                "NTFS boot sector at 0x28: {total_sectors} sectors of {bps} bytes do not fit the \
                 {part_len}-byte partition"
            )));
        }
        // spc is not zero (a power of two).
        let clusters = total_sectors.checked_div(spc).unwrap_or(0);
        let (mft_lcn, mftmirr_lcn) = (bs.mft_lcn.get(), bs.mftmirr_lcn.get());
        // Record 0 of $MFT must lie inside the volume, so its byte end is checked too.
        let mft_end = mft_lcn
            .checked_mul(cluster_bytes)
            .and_then(|o| o.checked_add(rec));
        let volume_bytes = clusters.saturating_mul(cluster_bytes);
        if mft_lcn == 0
            || mft_lcn >= clusters
            || mftmirr_lcn >= clusters
            || mft_end.is_none_or(|e| e > volume_bytes)
        {
            return Err(Error::corrupt(format!(
                "NTFS boot sector at 0x30: $MFT at cluster {mft_lcn} / $MFTMirr at \
                 {mftmirr_lcn}, expected both inside the volume's {clusters} clusters and $MFT \
                 after cluster 0"
            )));
        }
        Ok(NtfsGeometry {
            bytes_per_sector: bps,
            sectors_per_cluster: spc,
            cluster_bytes,
            record_bytes: rec,
            index_record_bytes: index,
            total_sectors,
            clusters,
            mft_lcn,
            mftmirr_lcn,
            serial: bs.volume_serial_number.get(),
        })
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::unwrap_used)]
mod tests {
    use zerocopy::FromBytes;

    use super::*;
    use crate::error::ErrorKind;
    use crate::fs::ntfs::tests::boot_sector;

    /// The test boot sector (1 MiB volume of 4 KiB clusters) with `edit` applied.
    fn parse(edit: impl FnOnce(&mut [u8; 512])) -> Result<NtfsGeometry> {
        let mut b = boot_sector();
        edit(&mut b);
        let bs = RawNtfsBootSector::read_from_bytes(&b).unwrap();
        NtfsGeometry::parse(&bs, 1 << 20)
    }

    fn set_bps(b: &mut [u8; 512], bps: u16) {
        b[0x0B..0x0D].copy_from_slice(&bps.to_le_bytes());
    }

    fn corrupt(r: Result<NtfsGeometry>, needle: &str) {
        let e = r.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Corrupt, "{e}");
        assert!(e.message().contains(needle), "{e}");
    }

    #[test]
    fn the_test_volume() {
        let g = parse(|_| {}).unwrap();
        assert_eq!(
            g,
            NtfsGeometry {
                bytes_per_sector: 512,
                sectors_per_cluster: 8,
                cluster_bytes: 4096,
                record_bytes: 1024,
                index_record_bytes: 4096,
                total_sectors: 2047,
                clusters: 255,
                mft_lcn: 4,
                mftmirr_lcn: 2,
                serial: 0x0123_4567_89AB_CDEF,
            }
        );
    }

    #[test]
    fn not_ntfs_is_invalid_input() {
        let e = parse(|b| b[3..11].copy_from_slice(b"MSDOS5.0")).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
    }

    #[test]
    fn bytes_per_sector_boundaries() {
        // 256 is the smallest NTFS allows (ntfs-3g); 256-byte sectors with 16 per cluster keep
        // the 4 KiB cluster and the volume size.
        let g = parse(|b| {
            set_bps(b, 256);
            b[0x0D] = 16;
            b[0x28..0x30].copy_from_slice(&4094u64.to_le_bytes());
        })
        .unwrap();
        assert_eq!((g.bytes_per_sector, g.cluster_bytes), (256, 4096));
        corrupt(parse(|b| set_bps(b, 128)), "128 bytes per sector");
        let g = parse(|b| {
            set_bps(b, 4096);
            b[0x0D] = 1;
            b[0x28..0x30].copy_from_slice(&255u64.to_le_bytes());
        })
        .unwrap();
        assert_eq!((g.bytes_per_sector, g.clusters), (4096, 255));
        corrupt(parse(|b| set_bps(b, 8192)), "8192 bytes per sector");
        corrupt(parse(|b| set_bps(b, 768)), "768 bytes per sector");
        corrupt(parse(|b| set_bps(b, 0)), "0 bytes per sector");
    }

    #[test]
    fn sectors_per_cluster_boundaries() {
        // 0x80 = 128 sectors = 64 KiB clusters: the largest positive form.
        let g = parse(|b| {
            b[0x0D] = 0x80;
            b[0x30..0x38].copy_from_slice(&1u64.to_le_bytes());
            b[0x38..0x40].copy_from_slice(&2u64.to_le_bytes());
            b[0x44] = 0xF4; // index record 4 KiB
        })
        .unwrap();
        assert_eq!(g.cluster_bytes, 64 * 1024);
        corrupt(parse(|b| b[0x0D] = 0), "sectors per cluster byte 0x00");
        corrupt(parse(|b| b[0x0D] = 3), "sectors per cluster byte 0x03");
        corrupt(parse(|b| b[0x0D] = 0x81), "sectors per cluster byte 0x81");
        corrupt(parse(|b| b[0x0D] = 0xF3), "sectors per cluster byte 0xf3");
        // 0xF4 = 2^12 sectors of 512 bytes = 2 MiB: the largest cluster, which a 1 MiB
        // partition cannot hold (no whole cluster besides cluster 0).
        corrupt(
            parse(|b| {
                b[0x0D] = 0xF4;
                b[0x44] = 0xF4;
            }),
            "$MFT at cluster 4",
        );
        // With an index record of one (2 MiB) cluster the record byte is refused first.
        corrupt(parse(|b| b[0x0D] = 0xF4), "index record byte 0x01");
        // 0xF4 with 4 KiB sectors: 16 MiB, over the 2 MiB limit.
        corrupt(
            parse(|b| {
                set_bps(b, 4096);
                b[0x0D] = 0xF4;
            }),
            "larger than 2097152 bytes",
        );
    }

    #[test]
    fn record_size_boundaries() {
        // Negative form: 0xF7 = 2^9 = 512 bytes (the smallest), 0xF0 = 2^16 = 64 KiB (largest).
        assert_eq!(parse(|b| b[0x40] = 0xF7).unwrap().record_bytes, 512);
        corrupt(parse(|b| b[0x40] = 0xF8), "MFT record byte 0xf8");
        assert_eq!(parse(|b| b[0x40] = 0xF0).unwrap().record_bytes, 64 * 1024);
        corrupt(parse(|b| b[0x40] = 0xEF), "MFT record byte 0xef");
        // Positive form: clusters per record; 16 clusters of 4 KiB = 64 KiB is the largest.
        assert_eq!(parse(|b| b[0x40] = 16).unwrap().record_bytes, 64 * 1024);
        corrupt(parse(|b| b[0x40] = 32), "MFT record byte 0x20");
        corrupt(parse(|b| b[0x40] = 3), "MFT record byte 0x03");
        corrupt(parse(|b| b[0x40] = 0), "MFT record byte 0x00");
        // The index record byte (0x44) has the same encoding and limits.
        assert_eq!(parse(|b| b[0x44] = 0xF4).unwrap().index_record_bytes, 4096);
        corrupt(parse(|b| b[0x44] = 0xF8), "index record byte 0xf8");
        corrupt(parse(|b| b[0x44] = 0), "index record byte 0x00");
    }

    #[test]
    fn volume_and_mft_boundaries() {
        // 2048 sectors is exactly the 1 MiB partition; 2049 is one too many.
        assert!(parse(|b| b[0x28..0x30].copy_from_slice(&2048u64.to_le_bytes())).is_ok());
        corrupt(
            parse(|b| b[0x28..0x30].copy_from_slice(&2049u64.to_le_bytes())),
            "2049 sectors of 512 bytes do not fit",
        );
        corrupt(
            parse(|b| b[0x28..0x30].copy_from_slice(&u64::MAX.to_le_bytes())),
            "do not fit",
        );
        let mft = |lcn: u64| parse(move |b| b[0x30..0x38].copy_from_slice(&lcn.to_le_bytes()));
        assert!(mft(1).is_ok());
        assert!(mft(254).is_ok(), "the last cluster holds a 1 KiB record");
        corrupt(mft(0), "$MFT at cluster 0");
        corrupt(mft(255), "$MFT at cluster 255");
        corrupt(mft(u64::MAX), "inside the volume");
        let mirr = |lcn: u64| parse(move |b| b[0x38..0x40].copy_from_slice(&lcn.to_le_bytes()));
        assert!(mirr(254).is_ok());
        corrupt(mirr(255), "$MFTMirr at 255");
    }
}
