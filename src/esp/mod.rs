//! The EFI System Partition: size policy, and a deterministic FAT32 builder that formats the
//! volume in memory and copies a file tree into it.
//!
//! Policy (Microsoft "UEFI/GPT-based hard drive partitions"; fatgen103): the ESP is FAT32, 100 MiB
//! on 512-byte-sector disks and 260 MiB on 4K-native ones. FAT32 needs at least 65,525 clusters,
//! so the cluster size follows the volume size: a 100 MiB ESP gets 1 KiB clusters, a 260 MiB one
//! on 512-byte sectors 4 KiB clusters; on 4096-byte sectors a cluster is at least 4 KiB, which is
//! why those ESPs are bigger.
//!
//! The formatter is hadris-fat 2.5.0 (fsck.fat-clean, long names, settable volume id and clock).
//! Around it this module: feeds it a fixed clock (the spec's timestamp, UTC), patches the one
//! timestamp it takes from the wall clock (the root volume-label entry), inserts the names that
//! are exact 8.3 names before the long ones in each directory (hadris refuses an exact 8.3 name
//! whose short form a long name already took), checks the space needed before writing, and
//! re-reads the finished boot sector, FSInfo and FATs with its own validator.
//!
//! The result is a byte image of the whole partition; [`EspImage::nonzero_regions`] lists what
//! must be written when the target range is already zero.

mod build;
pub mod timestamp;
mod tree;

pub use build::build_esp;
pub use tree::{name_valid, EspDir, EspNode, EspTree, MAX_DEPTH, MAX_NAME_UTF16, MAX_TREE_ENTRIES};

use crate::disk::Disk;
use crate::error::{Error, Result};
use crate::units::SectorSize;

const MIB: u64 = 1 << 20;

/// The default ESP on 512-byte-sector disks (Microsoft's minimum; MBR2GPT creates this size).
pub const DEFAULT_ESP_BYTES_512: u64 = 100 * MIB;
/// The default ESP on 4K-native disks (Microsoft's minimum there).
pub const DEFAULT_ESP_BYTES_4K: u64 = 260 * MIB;
/// ESP sizes must be a whole number of MiB (keeps partitions 1 MiB-aligned).
pub const ESP_SIZE_GRANULE_BYTES: u64 = MIB;
/// The largest ESP built. The image is built in memory, so this bounds memory use; MBR2GPT reuses
/// ESPs up to 1 GB and distributions create up to 1-2 GiB.
pub const MAX_ESP_BYTES: u64 = 2048 * MIB;
/// Fewer clusters than this make a volume FAT16 by definition (fatgen103 section 3.5).
pub const FAT32_MIN_CLUSTERS: u32 = 65_525;
/// fatgen103 advises staying clear of the FAT16/FAT32 boundary by a few clusters, since some
/// drivers compute the count slightly differently.
pub const FAT32_CLUSTER_MARGIN: u32 = 16;
/// Largest cluster the builder picks: 4 KiB (Windows' default up to 8 GB); smaller clusters
/// are used when needed to stay FAT32.
pub const MAX_CLUSTER_BYTES: u32 = 4096;
/// Reserved sectors before the first FAT (boot sector, FSInfo at 1, backup boot sector at 6).
pub const RESERVED_SECTORS: u32 = 32;
/// Number of FAT copies.
pub const FAT_COUNT: u32 = 2;
/// The root directory's first cluster.
pub const ROOT_CLUSTER: u32 = 2;
/// Volume label used when the caller has none ("SYSTEM" is what Windows Setup writes).
pub const DEFAULT_LABEL: &str = "SYSTEM";
/// Timestamp used when neither the caller nor SOURCE_DATE_EPOCH gives one: the FAT epoch,
/// 1980-01-01T00:00:00Z.
pub const DEFAULT_TIMESTAMP_UNIX: i64 = timestamp::FAT_EPOCH_UNIX;
/// Granule of [`EspImage::nonzero_regions`]: whole 4 KiB blocks, aligned for both sector sizes.
pub const REGION_GRANULE_BYTES: usize = 4096;

/// The default ESP size for a disk with `sector_bytes` logical sectors: 100 MiB at 512 bytes,
/// 260 MiB at 4096 (and at any sector size other than 512).
pub fn default_esp_bytes(sector_bytes: u32) -> u64 {
    if sector_bytes == 512 {
        DEFAULT_ESP_BYTES_512
    } else {
        DEFAULT_ESP_BYTES_4K
    }
}

/// Check that an ESP of `bytes` can be FAT32 on `sector_bytes` sectors: 512 or 4096 bytes per
/// sector, a whole number of MiB, at most [`MAX_ESP_BYTES`], and at least
/// [`min_esp_bytes`]`(sector_bytes)` (enough for 65,525 + 16 clusters).
pub fn check_esp_size(bytes: u64, sector_bytes: u32) -> Result<()> {
    esp_layout(bytes, sector_bytes).map(|_| ())
}

/// The smallest ESP that can be FAT32: 33 MiB at 512-byte sectors, 257 MiB at 4096 (Microsoft
/// recommends the larger [`default_esp_bytes`]).
pub fn min_esp_bytes(sector_bytes: u32) -> Result<u64> {
    check_sector_bytes(sector_bytes)?;
    let mut bytes = ESP_SIZE_GRANULE_BYTES;
    while bytes <= MAX_ESP_BYTES {
        if choose_layout(bytes, sector_bytes).is_some() {
            return Ok(bytes);
        }
        let Some(next) = bytes.checked_add(ESP_SIZE_GRANULE_BYTES) else {
            break;
        };
        bytes = next;
    }
    Err(Error::unsupported(format!(
        "no FAT32 ESP up to {MAX_ESP_BYTES} bytes fits {sector_bytes}-byte sectors"
    )))
}

/// Is `s` a valid FAT volume label: 1 to 11 characters, upper-case ASCII letters, digits, space
/// (not first) and `! # $ % & ' ( ) - @ ^ _ \` { } ~` (fatgen103: the short-name character set
/// without lower case; Windows refuses the rest).
pub fn label_valid(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 11
        && !s.starts_with(' ')
        && s.bytes().all(|b| {
            matches!(b,
                b'A'..=b'Z' | b'0'..=b'9' | b' ' | b'!' | b'#' | b'$' | b'%' | b'&' | b'\''
                | b'(' | b')' | b'-' | b'@' | b'^' | b'_' | b'`' | b'{' | b'}' | b'~')
        })
}

/// `SOURCE_DATE_EPOCH` (reproducible-builds.org) when set to an integer, else
/// [`DEFAULT_TIMESTAMP_UNIX`]. The builder itself never reads the environment or the clock.
pub fn timestamp_from_env() -> Result<i64> {
    parse_source_date_epoch(std::env::var("SOURCE_DATE_EPOCH").ok().as_deref())
}

/// `SOURCE_DATE_EPOCH` as [`timestamp_from_env`] reads it, when the variable is set at all;
/// `None` when it is not (the caller then has a time of its own: a superblock's, now).
pub fn source_date_epoch() -> Result<Option<i64>> {
    if std::env::var_os("SOURCE_DATE_EPOCH").is_none() {
        return Ok(None);
    }
    timestamp_from_env().map(Some)
}

fn parse_source_date_epoch(value: Option<&str>) -> Result<i64> {
    match value {
        Some(v) => v.trim().parse::<i64>().map_err(|_| {
            Error::invalid(format!(
                "SOURCE_DATE_EPOCH: expected seconds since 1970 as an integer, found {v:?}"
            ))
        }),
        None => Ok(DEFAULT_TIMESTAMP_UNIX),
    }
}

/// What to build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EspSpec {
    /// Partition size; see [`check_esp_size`].
    pub size_bytes: u64,
    /// Logical sector size of the disk: 512 or 4096.
    pub sector_bytes: u32,
    /// `BS_VolID` (blkid shows it as "ABCD-1234" for 0xABCD1234). Chosen by the caller (derive it
    /// from something stable to keep builds reproducible).
    pub volume_id: u32,
    /// Volume label, see [`label_valid`]; [`DEFAULT_LABEL`] by default.
    pub label: String,
    /// Every timestamp in the volume (seconds since 1970, UTC; clamped to 1980..=2107).
    pub timestamp_unix: i64,
    /// `BPB_HiddSec`: the partition's start LBA when it fits 32 bits (what mkfs.fat and Windows
    /// write for a partition), else 0. UEFI ignores it.
    pub hidden_sectors: u32,
}

impl EspSpec {
    /// A spec with the default label, [`DEFAULT_TIMESTAMP_UNIX`] and no hidden sectors.
    pub fn new(size_bytes: u64, sector_bytes: u32, volume_id: u32) -> Self {
        EspSpec {
            size_bytes,
            sector_bytes,
            volume_id,
            label: DEFAULT_LABEL.to_string(),
            timestamp_unix: DEFAULT_TIMESTAMP_UNIX,
            hidden_sectors: 0,
        }
    }
}

/// The geometry of a FAT32 ESP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct EspLayout {
    pub sector_bytes: u32,
    pub sectors_per_cluster: u32,
    pub cluster_bytes: u32,
    pub total_sectors: u32,
    pub reserved_sectors: u32,
    pub fat_count: u32,
    pub fat_sectors: u32,
    /// First sector of cluster 2.
    pub data_start_sector: u32,
    /// Data clusters (numbered 2..cluster_count+2).
    pub cluster_count: u32,
}

impl EspLayout {
    // The products below are of u32 factors, so each fits in u64 and the sums stay far below
    // 2^64: saturating arithmetic gives the exact value and cannot panic.

    /// Byte offset of `cluster` (>= 2) within the partition.
    pub fn cluster_offset(&self, cluster: u32) -> u64 {
        (u64::from(self.data_start_sector).saturating_mul(u64::from(self.sector_bytes)))
            .saturating_add(
                u64::from(cluster.saturating_sub(ROOT_CLUSTER))
                    .saturating_mul(u64::from(self.cluster_bytes)),
            )
    }

    /// Byte offset of FAT copy `index` (0-based) within the partition.
    pub fn fat_offset(&self, index: u32) -> u64 {
        u64::from(self.reserved_sectors)
            .saturating_add(u64::from(index).saturating_mul(u64::from(self.fat_sectors)))
            .saturating_mul(u64::from(self.sector_bytes))
    }

    /// Bytes of data space (all clusters, including the root directory's).
    pub fn data_bytes(&self) -> u64 {
        u64::from(self.cluster_count).saturating_mul(u64::from(self.cluster_bytes))
    }
}

/// The geometry the builder uses for an ESP of `bytes` on `sector_bytes` sectors, or an error
/// saying why it cannot be FAT32.
pub fn esp_layout(bytes: u64, sector_bytes: u32) -> Result<EspLayout> {
    check_sector_bytes(sector_bytes)?;
    if bytes == 0 || !bytes.is_multiple_of(ESP_SIZE_GRANULE_BYTES) {
        return Err(Error::invalid(format!(
            "ESP size: expected a positive multiple of 1 MiB, found {bytes} bytes"
        )));
    }
    if bytes > MAX_ESP_BYTES {
        return Err(Error::invalid(format!(
            "ESP size: at most {} MiB, found {} MiB",
            MAX_ESP_BYTES / MIB,
            bytes / MIB
        )));
    }
    choose_layout(bytes, sector_bytes).ok_or_else(|| {
        let min = min_esp_bytes(sector_bytes).unwrap_or(MAX_ESP_BYTES);
        Error::invalid(format!(
            "ESP size: {} MiB is too small for FAT32 on {sector_bytes}-byte sectors: FAT32 needs \
             at least {FAT32_MIN_CLUSTERS} clusters, which takes at least {} MiB (default {} MiB)",
            bytes / MIB,
            min / MIB,
            default_esp_bytes(sector_bytes) / MIB
        ))
    })
}

fn check_sector_bytes(sector_bytes: u32) -> Result<SectorSize> {
    SectorSize::new(sector_bytes).map_err(|e| e.context("ESP"))
}

/// The largest cluster (<= [`MAX_CLUSTER_BYTES`]) that keeps the volume FAT32 with margin.
fn choose_layout(bytes: u64, sector_bytes: u32) -> Option<EspLayout> {
    const ENOUGH_CLUSTERS: u32 = FAT32_MIN_CLUSTERS + FAT32_CLUSTER_MARGIN;
    let max_spc = MAX_CLUSTER_BYTES.checked_div(sector_bytes)?.max(1);
    let mut spc = max_spc;
    while spc >= 1 {
        if let Some(l) = layout_for(bytes, sector_bytes, spc) {
            if l.cluster_count >= ENOUGH_CLUSTERS {
                return Some(l);
            }
        }
        spc /= 2;
    }
    None
}

/// The FAT32 geometry for a given cluster size: 32 reserved sectors, two FATs sized by fixed
/// point iteration (the same computation as hadris-fat's formatter, which the builder checks).
fn layout_for(bytes: u64, sector_bytes: u32, spc: u32) -> Option<EspLayout> {
    let total_sectors = u32::try_from(bytes.checked_div(u64::from(sector_bytes))?).ok()?;
    let avail = total_sectors.checked_sub(RESERVED_SECTORS)?;
    let mut fat_sectors = 1u32;
    // Converges in a few rounds (the FAT size only shrinks the data area); 64 bounds it.
    for _ in 0..64 {
        let data_sectors = avail.checked_sub(FAT_COUNT.checked_mul(fat_sectors)?)?;
        let clusters = data_sectors.checked_div(spc)?;
        let needed = u64::from(clusters).checked_add(2)?.checked_mul(4)?;
        let needed_sectors = u32::try_from(needed.div_ceil(u64::from(sector_bytes))).ok()?;
        if needed_sectors <= fat_sectors {
            return Some(EspLayout {
                sector_bytes,
                sectors_per_cluster: spc,
                cluster_bytes: spc.checked_mul(sector_bytes)?,
                total_sectors,
                reserved_sectors: RESERVED_SECTORS,
                fat_count: FAT_COUNT,
                fat_sectors,
                data_start_sector: RESERVED_SECTORS
                    .checked_add(FAT_COUNT.checked_mul(fat_sectors)?)?,
                cluster_count: clusters,
            });
        }
        fat_sectors = needed_sectors;
    }
    None
}

/// A built ESP: the whole partition's bytes and its geometry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EspImage {
    bytes: Vec<u8>,
    layout: EspLayout,
    used_clusters: u32,
}

impl EspImage {
    pub fn layout(&self) -> &EspLayout {
        &self.layout
    }

    /// Partition size in bytes.
    pub fn len(&self) -> u64 {
        crate::units::len_u64(self.bytes.len())
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }

    /// Clusters in use (root directory, subdirectories and file data).
    pub fn used_clusters(&self) -> u32 {
        self.used_clusters
    }

    /// Bytes left for files.
    pub fn free_bytes(&self) -> u64 {
        u64::from(self.layout.cluster_count.saturating_sub(self.used_clusters))
            .saturating_mul(u64::from(self.layout.cluster_bytes))
    }

    /// The parts of the image that are not all zero, as `(offset in partition, bytes)`, in
    /// ascending order, in whole [`REGION_GRANULE_BYTES`] blocks, adjacent blocks merged. Writing
    /// these over a zeroed (or freshly punched) range reproduces the image exactly.
    pub fn nonzero_regions(&self) -> NonZeroRegions<'_> {
        NonZeroRegions::of(&self.bytes)
    }

    /// Bytes in [`Self::nonzero_regions`].
    pub fn nonzero_bytes(&self) -> u64 {
        self.nonzero_regions()
            .map(|(_, b)| crate::units::len_u64(b.len()))
            .fold(0, u64::saturating_add)
    }

    /// Write the non-zero regions to `disk` at `offset` (the partition start). The range must
    /// already read as zeros. Returns the number of bytes written.
    pub fn write_nonzero_to(&self, disk: &mut dyn Disk, offset: u64) -> Result<u64> {
        crate::disk::check_range(disk.len(), offset, self.len())?;
        let mut written = 0u64;
        for (off, bytes) in self.nonzero_regions() {
            let at = offset.checked_add(off).ok_or_else(|| {
                Error::invalid(format!("ESP at {offset:#x}: offset {off:#x} overflows"))
            })?;
            disk.write_at(at, bytes)?;
            written = written.saturating_add(crate::units::len_u64(bytes.len()));
        }
        Ok(written)
    }
}

/// Iterator returned by [`EspImage::nonzero_regions`].
#[derive(Debug, Clone)]
pub struct NonZeroRegions<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> NonZeroRegions<'a> {
    /// The non-zero regions of any image's `bytes` (see [`EspImage::nonzero_regions`]).
    pub fn of(bytes: &'a [u8]) -> Self {
        NonZeroRegions { bytes, pos: 0 }
    }
}

/// A whole granule of zeros: comparing with it is one `memcmp` per block, not a loop over
/// bytes (which the fuzz targets' sanitizers would check one by one).
static ZERO_GRANULE: [u8; REGION_GRANULE_BYTES] = [0; REGION_GRANULE_BYTES];

impl<'a> Iterator for NonZeroRegions<'a> {
    type Item = (u64, &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        let bytes = self.bytes;
        // The block at `pos`, or None past the end (`pos` only grows up to `len`).
        let block = |pos: usize| {
            let end = pos.saturating_add(REGION_GRANULE_BYTES).min(bytes.len());
            bytes
                .get(pos..end)
                .filter(|b| !b.is_empty())
                .map(|b| (b, end))
        };
        let is_zero = |b: &[u8]| ZERO_GRANULE.get(..b.len()) == Some(b);
        // Skip zero blocks.
        while let Some((b, end)) = block(self.pos) {
            if !is_zero(b) {
                break;
            }
            self.pos = end;
        }
        let start = self.pos;
        while let Some((b, end)) = block(self.pos) {
            if is_zero(b) {
                break;
            }
            self.pos = end;
        }
        let run = bytes.get(start..self.pos).filter(|r| !r.is_empty())?;
        Some((crate::units::len_u64(start), run))
    }
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects, clippy::as_conversions)]
mod tests {
    use super::*;

    #[test]
    fn defaults_follow_microsoft() {
        assert_eq!(default_esp_bytes(512), 100 * MIB);
        assert_eq!(default_esp_bytes(4096), 260 * MIB);
        check_esp_size(default_esp_bytes(512), 512).unwrap();
        check_esp_size(default_esp_bytes(4096), 4096).unwrap();
    }

    #[test]
    fn cluster_size_follows_volume_size() {
        let l = esp_layout(100 * MIB, 512).unwrap();
        assert_eq!(l.cluster_bytes, 1024, "100 MiB needs 1 KiB clusters");
        assert!(l.cluster_count >= FAT32_MIN_CLUSTERS + FAT32_CLUSTER_MARGIN);
        assert_eq!(esp_layout(260 * MIB, 512).unwrap().cluster_bytes, 4096);
        assert_eq!(esp_layout(200 * MIB, 512).unwrap().cluster_bytes, 2048);
        assert_eq!(esp_layout(40 * MIB, 512).unwrap().cluster_bytes, 512);
        let l = esp_layout(260 * MIB, 4096).unwrap();
        assert_eq!((l.cluster_bytes, l.sectors_per_cluster), (4096, 1));
        let l = esp_layout(2048 * MIB, 4096).unwrap();
        assert_eq!(l.cluster_bytes, 4096);
        // The layout adds up.
        for (size, sector) in [(100 * MIB, 512), (260 * MIB, 4096), (33 * MIB, 512)] {
            let l = esp_layout(size, sector).unwrap();
            let used = u64::from(l.data_start_sector) * u64::from(sector) + l.data_bytes();
            assert!(used <= size);
            assert!(
                u64::from(l.fat_sectors) * u64::from(sector)
                    >= (u64::from(l.cluster_count) + 2) * 4
            );
        }
    }

    #[test]
    fn minimum_sizes() {
        assert_eq!(min_esp_bytes(512).unwrap(), 33 * MIB);
        assert_eq!(min_esp_bytes(4096).unwrap(), 257 * MIB);
        let e = check_esp_size(256 * MIB, 4096).unwrap_err();
        assert!(e.message().contains("at least 257 MiB"), "{e}");
        assert!(check_esp_size(32 * MIB, 512).is_err());
        assert!(check_esp_size(100 * MIB, 4096).is_err());
    }

    #[test]
    fn refuses_bad_sizes() {
        assert!(check_esp_size(100 * MIB + 512, 512).is_err());
        assert!(check_esp_size(0, 512).is_err());
        assert!(check_esp_size(MAX_ESP_BYTES + MIB, 512).is_err());
        assert!(check_esp_size(u64::MAX, 512).is_err());
        let e = check_esp_size(100 * MIB, 1024).unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::Unsupported);
        check_esp_size(MAX_ESP_BYTES, 512).unwrap();
    }

    #[test]
    fn labels() {
        for ok in ["SYSTEM", "ESP", "EFI SYSTEM", "A-B_C~1", "12345678901"] {
            assert!(label_valid(ok), "{ok}");
        }
        for bad in [
            "",
            "system",
            "123456789012",
            " X",
            "A.B",
            "A/B",
            "É",
            "A\"B",
            "A*B",
        ] {
            assert!(!label_valid(bad), "{bad}");
        }
    }

    #[test]
    fn nonzero_regions_cover_exactly_the_nonzero_blocks() {
        let layout = esp_layout(40 * MIB, 512).unwrap();
        let mut bytes = vec![0u8; 5 * REGION_GRANULE_BYTES + 100];
        bytes[1] = 1; // block 0
        bytes[REGION_GRANULE_BYTES + 5] = 2; // block 1, merged with 0
        bytes[3 * REGION_GRANULE_BYTES] = 3; // block 3
        bytes[5 * REGION_GRANULE_BYTES + 99] = 4; // short tail block
        let img = EspImage {
            bytes,
            layout,
            used_clusters: 1,
        };
        let r: Vec<(u64, usize)> = img.nonzero_regions().map(|(o, b)| (o, b.len())).collect();
        let g = REGION_GRANULE_BYTES;
        assert_eq!(r, [(0, 2 * g), (3 * g as u64, g), (5 * g as u64, 100)]);
        let mut disk = crate::disk::MemDisk::new(vec![0u8; img.as_bytes().len() + 512]);
        assert_eq!(
            img.write_nonzero_to(&mut disk, 512).unwrap(),
            img.nonzero_bytes()
        );
        assert_eq!(&disk.data()[512..], img.as_bytes());
        assert!(
            img.write_nonzero_to(&mut disk, 1024).is_err(),
            "past the end"
        );
        let empty = EspImage {
            bytes: vec![0; 3 * g],
            layout,
            used_clusters: 1,
        };
        assert_eq!(empty.nonzero_regions().count(), 0);
    }

    #[test]
    fn source_date_epoch() {
        assert_eq!(
            parse_source_date_epoch(None).unwrap(),
            DEFAULT_TIMESTAMP_UNIX
        );
        assert_eq!(
            parse_source_date_epoch(Some("1600000000\n")).unwrap(),
            1_600_000_000
        );
        assert!(parse_source_date_epoch(Some("yesterday")).is_err());
        assert!(parse_source_date_epoch(Some("")).is_err());
    }
}
