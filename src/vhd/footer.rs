//! The VHD footer (spec: "Hard Disk Footer Format"): layout, checksum, decode and encode.
//!
//! Decoding is two steps: 512 bytes -> [`RawFooter`] (cannot fail: any 512 bytes have that
//! layout) -> [`FooterFields`] (typed, keeps every byte including the reserved ones, so
//! [`encode`] gives the input back) -> [`Footer`] (the model shown to users, with what we computed
//! to compare). Only the cookie decides whether bytes are a footer at all; everything else that
//! is wrong becomes a finding in [`super::probe`].

use zerocopy::byteorder::big_endian::{U16, U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use super::geometry::{chs_for_size, MAX_CHS};
use super::{Chs, Footer};
use crate::error::{Error, Result};

/// Size of a footer (spec), and of the copy dynamic disks keep at offset 0.
pub const FOOTER_SIZE: usize = 512;
/// Footer size of images made before Virtual PC 2004 (the last reserved byte is missing).
pub const LEGACY_FOOTER_SIZE: usize = 511;
/// "conectix": the footer cookie (spec: "Cookie").
pub const COOKIE: [u8; 8] = *b"conectix";
/// Features bit 0: a temporary disk, a candidate for deletion on shutdown (spec: "Features").
pub const FEATURE_TEMPORARY: u32 = 0x1;
/// Features bit 1: "reserved", the spec says it must always be set.
pub const FEATURE_RESERVED: u32 = 0x2;
/// The only file format version the spec defines: major 1, minor 0.
pub const FORMAT_VERSION: u32 = 0x0001_0000;
/// Data offset of a fixed disk. The spec says 0xFFFFFFFF; QEMU and Microsoft's tools write all
/// 64 bits set, and the spec's own field is 8 bytes wide: both are accepted.
pub const FIXED_DATA_OFFSET: u64 = u64::MAX;
/// The 32-bit data offset the spec text gives for fixed disks.
pub const FIXED_DATA_OFFSET_32: u64 = 0xFFFF_FFFF;
/// Disk types (spec: "Disk Type"; 0 none, 1 and 5 deprecated, 6 reserved).
pub const DISK_TYPE_FIXED: u32 = 2;
pub const DISK_TYPE_DYNAMIC: u32 = 3;
pub const DISK_TYPE_DIFFERENCING: u32 = 4;
/// Seconds from the Unix epoch to the VHD epoch, 2000-01-01T00:00:00Z.
pub const VHD_EPOCH_UNIX: i64 = 946_684_800;

/// A footer timestamp (seconds since 2000-01-01T00:00:00Z) of Unix time `unix`, clamped to the
/// field: 0 before 2000, `u32::MAX` past 2136.
pub fn timestamp_of_unix(unix: i64) -> u32 {
    let since = unix.saturating_sub(VHD_EPOCH_UNIX).max(0);
    u32::try_from(since).unwrap_or(u32::MAX)
}
/// Byte offset of the checksum field, taken as zero while summing.
const CHECKSUM_OFFSET: usize = 0x40;
/// Bytes of the reserved tail (0x55 .. 0x200).
pub const RESERVED_SIZE: usize = 427;
/// Host OS "Wi2k" (Windows) and "Mac " (spec: "Creator Host OS").
pub const HOST_OS_WINDOWS: [u8; 4] = *b"Wi2k";
pub const HOST_OS_MAC: [u8; 4] = *b"Mac ";

/// Spec "Hard Disk Footer Format". All integers big-endian.
#[derive(Clone, Copy, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct RawFooter {
    pub cookie: [u8; 8],               // 0x000 "conectix"
    pub features: U32,                 // 0x008 bit 1 always set, bit 0 temporary
    pub file_format_version: U32,      // 0x00c 0x00010000
    pub data_offset: U64,              // 0x010 fixed: all ones; dynamic: offset of the header
    pub timestamp: U32,                // 0x018 seconds since 2000-01-01T00:00:00Z
    pub creator_application: [u8; 4],  // 0x01c "win ", "qemu", "vpc ", ...
    pub creator_version: U32,          // 0x020 major.minor as u16.u16
    pub creator_host_os: [u8; 4],      // 0x024 "Wi2k", "Mac "
    pub original_size: U64,            // 0x028 size at creation, bytes
    pub current_size: U64,             // 0x030 size now, bytes
    pub cylinders: U16,                // 0x038 geometry: cylinders
    pub heads: u8,                     // 0x03a geometry: heads
    pub sectors_per_track: u8,         // 0x03b geometry: sectors per track
    pub disk_type: U32,                // 0x03c 2 fixed, 3 dynamic, 4 differencing
    pub checksum: U32,                 // 0x040 one's complement of the byte sum
    pub unique_id: [u8; 16],           // 0x044 UUID identifying the disk
    pub saved_state: u8,               // 0x054 1 if the disk is in a saved state
    pub reserved: [u8; RESERVED_SIZE], // 0x055 zero
}
const _: () = assert!(size_of::<RawFooter>() == FOOTER_SIZE);

impl RawFooter {
    /// View 512 bytes as a footer (any 512 bytes are one, layout-wise).
    pub fn from_array(bytes: &[u8; FOOTER_SIZE]) -> RawFooter {
        zerocopy::transmute!(*bytes)
    }

    /// Parse a footer from the start of `bytes`; fails only when fewer than 512 bytes are given.
    pub fn parse(bytes: &[u8]) -> Result<RawFooter> {
        RawFooter::read_from_prefix(bytes)
            .map(|(raw, _)| raw)
            .map_err(|_| {
                Error::corrupt(format!(
                    "VHD footer: expected {FOOTER_SIZE} bytes, found {}",
                    bytes.len()
                ))
            })
    }
}

/// Every field of a footer, typed; encoding them gives the footer's bytes back (with the
/// checksum recomputed).
#[derive(Clone, PartialEq, Eq)]
pub struct FooterFields {
    pub cookie: [u8; 8],
    pub features: u32,
    pub format_version: u32,
    pub data_offset: u64,
    pub timestamp: u32,
    pub creator_application: [u8; 4],
    pub creator_version: u32,
    pub creator_host_os: [u8; 4],
    pub original_size: u64,
    pub current_size: u64,
    pub geometry: Chs,
    pub disk_type: u32,
    /// The stored checksum; [`encode`] ignores it and writes the computed one.
    pub checksum: u32,
    pub unique_id: [u8; 16],
    pub saved_state: u8,
    pub reserved: [u8; RESERVED_SIZE],
}

impl std::fmt::Debug for FooterFields {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let nonzero_reserved = self.reserved.iter().filter(|&&b| b != 0).count();
        f.debug_struct("FooterFields")
            .field("cookie", &printable(&self.cookie))
            .field("features", &format_args!("{:#x}", self.features))
            .field(
                "format_version",
                &format_args!("{:#x}", self.format_version),
            )
            .field("data_offset", &format_args!("{:#x}", self.data_offset))
            .field("timestamp", &self.timestamp)
            .field("creator_application", &printable(&self.creator_application))
            .field(
                "creator_version",
                &format_args!("{:#x}", self.creator_version),
            )
            .field("creator_host_os", &printable(&self.creator_host_os))
            .field("original_size", &self.original_size)
            .field("current_size", &self.current_size)
            .field("geometry", &self.geometry)
            .field("disk_type", &self.disk_type)
            .field("checksum", &format_args!("{:#010x}", self.checksum))
            .field("unique_id", &hex(&self.unique_id))
            .field("saved_state", &self.saved_state)
            .field("nonzero_reserved_bytes", &nonzero_reserved)
            .finish()
    }
}

impl FooterFields {
    /// Typed fields of any 512 bytes (no validation).
    pub fn from_raw(raw: &RawFooter) -> FooterFields {
        FooterFields {
            cookie: raw.cookie,
            features: raw.features.get(),
            format_version: raw.file_format_version.get(),
            data_offset: raw.data_offset.get(),
            timestamp: raw.timestamp.get(),
            creator_application: raw.creator_application,
            creator_version: raw.creator_version.get(),
            creator_host_os: raw.creator_host_os,
            original_size: raw.original_size.get(),
            current_size: raw.current_size.get(),
            geometry: Chs {
                cylinders: raw.cylinders.get(),
                heads: raw.heads,
                sectors_per_track: raw.sectors_per_track,
            },
            disk_type: raw.disk_type.get(),
            checksum: raw.checksum.get(),
            unique_id: raw.unique_id,
            saved_state: raw.saved_state,
            reserved: raw.reserved,
        }
    }

    /// Typed fields of 512 bytes (no validation).
    pub fn from_bytes(bytes: &[u8; FOOTER_SIZE]) -> FooterFields {
        Self::from_raw(&RawFooter::from_array(bytes))
    }

    /// The fields of a new fixed-disk footer: features 0x2, version 1.0, data offset all ones,
    /// the spec's geometry for `current_size`, not in a saved state, reserved bytes zero.
    #[allow(clippy::too_many_arguments)] // one argument per footer field the caller chooses
    pub fn fixed(
        current_size: u64,
        unique_id: [u8; 16],
        timestamp: u32,
        creator_app: [u8; 4],
        creator_version: u32,
        creator_host_os: [u8; 4],
        original_size: u64,
    ) -> FooterFields {
        FooterFields {
            cookie: COOKIE,
            features: FEATURE_RESERVED,
            format_version: FORMAT_VERSION,
            data_offset: FIXED_DATA_OFFSET,
            timestamp,
            creator_application: creator_app,
            creator_version,
            creator_host_os,
            original_size,
            current_size,
            geometry: chs_for_size(current_size),
            disk_type: DISK_TYPE_FIXED,
            checksum: 0,
            unique_id,
            saved_state: 0,
            reserved: [0; RESERVED_SIZE],
        }
    }
}

/// One's complement of the sum of all bytes, the checksum field (0x40..0x44) taken as zero
/// (spec: "Checksum").
pub fn checksum(bytes: &[u8; FOOTER_SIZE]) -> u32 {
    ones_complement_sum(bytes, CHECKSUM_OFFSET)
}

/// The VHD checksum of `bytes` with the 4 bytes at `checksum_offset` taken as zero (the footer
/// and the dynamic disk header use the same scheme).
pub(crate) fn ones_complement_sum(bytes: &[u8], checksum_offset: usize) -> u32 {
    let sum = bytes
        .iter()
        .enumerate()
        .filter(|(i, _)| !(checksum_offset..checksum_offset.saturating_add(4)).contains(i))
        .fold(0u32, |acc, (_, &b)| acc.wrapping_add(u32::from(b)));
    !sum
}

/// The bytes of a footer with these fields and a freshly computed checksum.
pub fn encode(f: &FooterFields) -> [u8; FOOTER_SIZE] {
    let raw = RawFooter {
        cookie: f.cookie,
        features: U32::new(f.features),
        file_format_version: U32::new(f.format_version),
        data_offset: U64::new(f.data_offset),
        timestamp: U32::new(f.timestamp),
        creator_application: f.creator_application,
        creator_version: U32::new(f.creator_version),
        creator_host_os: f.creator_host_os,
        original_size: U64::new(f.original_size),
        current_size: U64::new(f.current_size),
        cylinders: U16::new(f.geometry.cylinders),
        heads: f.geometry.heads,
        sectors_per_track: f.geometry.sectors_per_track,
        disk_type: U32::new(f.disk_type),
        checksum: U32::new(0),
        unique_id: f.unique_id,
        saved_state: f.saved_state,
        reserved: f.reserved,
    };
    let mut bytes: [u8; FOOTER_SIZE] = zerocopy::transmute!(raw);
    let sum = checksum(&bytes);
    bytes[CHECKSUM_OFFSET..CHECKSUM_OFFSET + 4].copy_from_slice(&sum.to_be_bytes());
    bytes
}

/// A footer for a fixed disk of `current_size` bytes (see [`FooterFields::fixed`]): geometry by
/// the spec's algorithm, checksum computed. Callers choose `current_size` (a multiple of 512;
/// for Azure a multiple of 1 MiB); QEMU sizes disks whose creator is "vpc " or "qemu" by CHS, so
/// pick another creator (or check [`super::qemu_virtual_size`]) when the size is not
/// CHS-representable.
pub fn fixed_footer(
    current_size: u64,
    unique_id: [u8; 16],
    timestamp: u32,
    creator_app: [u8; 4],
    creator_version: u32,
    creator_host_os: [u8; 4],
    original_size: u64,
) -> [u8; FOOTER_SIZE] {
    encode(&FooterFields::fixed(
        current_size,
        unique_id,
        timestamp,
        creator_app,
        creator_version,
        creator_host_os,
        original_size,
    ))
}

/// The footer `raw` with a new current size and geometry, every other field (original size,
/// unique id, timestamp, creator, reserved bytes) kept, and the checksum recomputed. The
/// geometry becomes the spec's one for `new_size`, except that a footer carrying 65535/16/255
/// (QEMU `force_size`: "trust the current size") keeps it.
///
/// Refuses bytes that are not a footer, a footer whose checksum does not match (re-encoding
/// would bless damage), and a size that is not a whole number of sectors.
pub fn resize_footer(raw: &[u8; FOOTER_SIZE], new_size: u64) -> Result<[u8; FOOTER_SIZE]> {
    let mut f = FooterFields::from_bytes(raw);
    if f.cookie != COOKIE {
        return Err(Error::corrupt(format!(
            "VHD footer: cookie at 0x0 is {:?}, expected \"conectix\"",
            printable(&f.cookie)
        )));
    }
    let computed = checksum(raw);
    if f.checksum != computed {
        return Err(Error::corrupt(format!(
            "VHD footer: checksum at 0x40 is 0x{:08x}, computed 0x{computed:08x}",
            f.checksum
        )));
    }
    if !new_size.is_multiple_of(512) {
        return Err(Error::invalid(format!(
            "VHD current size must be a multiple of 512 bytes, got {new_size}"
        )));
    }
    f.current_size = new_size;
    if !f.geometry.is_max() {
        f.geometry = chs_for_size(new_size);
    }
    let out = encode(&f);
    // Run the result through the reader before anyone writes it.
    let check = decode(&out, 0, false)?;
    debug_assert_eq!(check.checksum, check.computed_checksum);
    Ok(out)
}

/// Creator applications whose footers every QEMU sizes by the current size (QEMU 7.2's table;
/// QEMU 10 trusts every creator but "vpc " and "qemu").
pub const QEMU_TRUSTED_CREATORS: [[u8; 4]; 5] = [*b"win ", *b"qem2", *b"d2v ", *b"CTXS", *b"tap\0"];

/// The footer of a converted disk: the old one with the new current size, the spec's geometry
/// and a new checksum; unique id, timestamp and original size kept.
///
/// Hyper-V and Azure size a VHD by its current size; QEMU 7.2 does so only for the creators in
/// [`QEMU_TRUSTED_CREATORS`] or for the maximum geometry 65535/16/255, and sizes every other
/// footer by C*H*S, which would cut the disk short of the backup GPT. So a footer from another
/// creator ("vpc ", "qemu", ...) gets the pair qemu-img's `force_size` writes, creator "qem2"
/// with geometry 65535/16/255: every reader then takes the current size.
pub fn converted_footer(raw: &[u8; FOOTER_SIZE], new_size: u64) -> Result<[u8; FOOTER_SIZE]> {
    let resized = resize_footer(raw, new_size)?;
    let mut f = FooterFields::from_bytes(raw);
    if QEMU_TRUSTED_CREATORS.contains(&f.creator_application) {
        return Ok(resized);
    }
    f.creator_application = *b"qem2";
    f.creator_version = 0x0005_0003;
    f.creator_host_os = *b"Wi2k";
    f.current_size = new_size;
    f.geometry = MAX_CHS;
    Ok(encode(&f))
}

/// Decode a footer found at byte `offset` of the file. `legacy_511` marks a 511-byte footer (the
/// caller pads it with one zero byte; the checksum sums the same bytes either way). Fails only
/// when the cookie is not "conectix"; checksum, version and the rest are reported in the model
/// (stored vs computed) for the caller to judge.
pub fn decode(bytes: &[u8; FOOTER_SIZE], offset: u64, legacy_511: bool) -> Result<Footer> {
    let f = FooterFields::from_bytes(bytes);
    if f.cookie != COOKIE {
        return Err(Error::corrupt(format!(
            "VHD footer at 0x{offset:x}: cookie is {:?}, expected \"conectix\"",
            printable(&f.cookie)
        )));
    }
    Ok(Footer {
        cookie: printable(&f.cookie),
        features: f.features,
        format_version: f.format_version,
        data_offset: f.data_offset,
        timestamp: f.timestamp,
        timestamp_utc: timestamp_utc(f.timestamp),
        creator_application: printable(&f.creator_application),
        creator_version: f.creator_version,
        creator_host_os: printable(&f.creator_host_os),
        original_size: f.original_size,
        current_size: f.current_size,
        geometry: f.geometry,
        computed_geometry: chs_for_size(f.current_size),
        disk_type: f.disk_type,
        checksum: f.checksum,
        computed_checksum: checksum(bytes),
        unique_id: hex(&f.unique_id),
        saved_state: f.saved_state,
        offset,
        legacy_511,
        creator_description: describe_creator(f.creator_application),
        qemu_virtual_bytes: qemu_virtual_size(f.creator_application, f.geometry, f.current_size),
        fields: f,
    })
}

/// What wrote a footer, by its creator application (spec: "Creator Application", plus the values
/// seen in the wild).
pub fn describe_creator(app: [u8; 4]) -> &'static str {
    match &app {
        b"win " => "Hyper-V / Windows (Disk Management, diskpart, New-VHD)",
        b"qem2" => "qemu-img with force_size (size taken from the footer, CHS 65535/16/255)",
        b"qemu" => "qemu-img (size rounded up to a CHS-representable one)",
        b"vpc " => "Microsoft Virtual PC",
        b"vs  " => "Microsoft Virtual Server",
        b"d2v\0" | b"d2v " => "Disk2vhd (Sysinternals)",
        b"tap\0" | b"tap " => "Xen blktap (vhd-util)",
        b"CTXS" => "Citrix XenServer",
        b"vbox" => "VirtualBox",
        _ => "unknown creator",
    }
}

/// True when QEMU (>= 10) takes the disk size from the footer's current size; false when it
/// computes C*H*S*512 from the stored geometry instead (creators "vpc " and "qemu", whose images
/// are CHS-sized), unless the geometry is 65535/16/255, which always means "use the current
/// size". Older QEMU trusted the current size only for "win ", "qem2", "d2v ", "CTXS" and
/// "tap\0" (facts.md; measured with qemu-img 10.0.2 here).
pub fn qemu_sizes_by_current_size(app: [u8; 4]) -> bool {
    !matches!(&app, b"vpc " | b"qemu")
}

/// The virtual size QEMU (>= 10) gives a VHD with this footer (see
/// [`qemu_sizes_by_current_size`]).
pub fn qemu_virtual_size(app: [u8; 4], geometry: Chs, current_size: u64) -> u64 {
    if qemu_sizes_by_current_size(app) || geometry == MAX_CHS {
        current_size
    } else {
        geometry.size_bytes()
    }
}

/// ISO 8601 UTC ("2026-11-23T11:56:06Z") of a footer timestamp (seconds since
/// 2000-01-01T00:00:00Z).
pub fn timestamp_utc(ts: u32) -> String {
    // at most 946_684_800 + 2^32: no overflow
    let secs = VHD_EPOCH_UNIX.saturating_add(i64::from(ts));
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Proleptic Gregorian (year, month, day) of a day count since 1970-01-01 (Howard Hinnant's
/// `civil_from_days`).
// Every intermediate below is bounded by the era decomposition (ranges in the comments); the
// only unbounded values, `days` and `era`, go through saturating operations.
#[allow(clippy::arithmetic_side_effects)]
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days.saturating_add(719_468);
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let y = era.saturating_mul(400).saturating_add(yoe);
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
    let mp = (5 * doy + 2) / 153; // [0, 11]
    let d = doy - (153 * mp + 2) / 5 + 1; // [1, 31]
    let m = if mp < 10 { mp + 3 } else { mp - 9 }; // [1, 12]
    let y = if m <= 2 { y.saturating_add(1) } else { y };
    // m in 1..=12 and d in 1..=31 by construction: the fallbacks are never taken
    (
        y,
        u32::try_from(m).unwrap_or(1),
        u32::try_from(d).unwrap_or(1),
    )
}

/// Bytes as text: printable ASCII as is, trailing NULs and spaces dropped, anything else as
/// `\xNN`.
pub fn printable(bytes: &[u8]) -> String {
    let end = bytes
        .iter()
        .rposition(|&b| b != 0 && b != b' ')
        .map_or(0, |i| i.saturating_add(1)); // i < bytes.len()
    let mut s = String::with_capacity(end);
    for &b in bytes.iter().take(end) {
        if b.is_ascii_graphic() || b == b' ' {
            s.push(char::from(b));
        } else {
            s.push_str(&format!("\\x{b:02x}"));
        }
    }
    s
}

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
#[allow(
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::arithmetic_side_effects,
    clippy::as_conversions
)] // tests: a panic is a failed test
pub(crate) mod tests {
    use super::*;

    #[test]
    fn unix_time_becomes_a_clamped_footer_timestamp() {
        assert_eq!(timestamp_of_unix(VHD_EPOCH_UNIX), 0);
        assert_eq!(timestamp_of_unix(0), 0);
        assert_eq!(
            timestamp_of_unix(1_700_000_000),
            1_700_000_000 - 946_684_800
        );
        assert_eq!(timestamp_of_unix(i64::MAX), u32::MAX);
        assert_eq!(
            timestamp_utc(timestamp_of_unix(1_700_000_000)),
            "2023-11-14T22:13:20Z"
        );
    }

    /// The first 0x55 bytes of the footer `qemu-img create -f vpc -o subformat=fixed F 10M` wrote
    /// (QEMU 10.0.2); the 427 reserved bytes after them are zero.
    pub(crate) const QEMU_FIXED_10M_HEAD: [u8; 0x55] = [
        b'c', b'o', b'n', b'e', b'c', b't', b'i', b'x', // 0x00 cookie
        0x00, 0x00, 0x00, 0x02, // 0x08 features: reserved bit
        0x00, 0x01, 0x00, 0x00, // 0x0c format version 1.0
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, // 0x10 data offset: fixed
        0x32, 0x96, 0xe6, 0x6f, // 0x18 timestamp 2026-11-23T11:56:31Z
        b'q', b'e', b'm', b'u', // 0x1c creator application
        0x00, 0x05, 0x00, 0x03, // 0x20 creator version 5.3
        b'W', b'i', b'2', b'k', // 0x24 creator host OS
        0x00, 0x00, 0x00, 0x00, 0x00, 0xa0, 0x70, 0x00, // 0x28 original size 10514432
        0x00, 0x00, 0x00, 0x00, 0x00, 0xa0, 0x70, 0x00, // 0x30 current size 10514432
        0x01, 0x2e, 0x04, 0x11, // 0x38 CHS 302/4/17
        0x00, 0x00, 0x00, 0x02, // 0x3c disk type fixed
        0xff, 0xff, 0xe4, 0x19, // 0x40 checksum
        0xdc, 0x01, 0xfb, 0xaa, 0xf5, 0xcc, 0x47, 0x5b, // 0x44 unique id
        0xbe, 0x7f, 0x10, 0x96, 0x45, 0x7a, 0x9c, 0xcb, //      (cont.)
        0x00, // 0x54 saved state
    ];

    /// The first 0x55 bytes of the footer of `qemu-img convert -O vpc -o
    /// subformat=fixed,force_size=on` of a 10 MiB raw file (QEMU 10.0.2); the rest is zero.
    pub(crate) const QEMU_FORCE_SIZE_10M_HEAD: [u8; 0x55] = [
        b'c', b'o', b'n', b'e', b'c', b't', b'i', b'x', // 0x00 cookie
        0x00, 0x00, 0x00, 0x02, // 0x08 features: reserved bit
        0x00, 0x01, 0x00, 0x00, // 0x0c format version 1.0
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, // 0x10 data offset: fixed
        0x32, 0x96, 0xe6, 0x75, // 0x18 timestamp
        b'q', b'e', b'm', b'2', // 0x1c creator application: force_size
        0x00, 0x05, 0x00, 0x03, // 0x20 creator version 5.3
        b'W', b'i', b'2', b'k', // 0x24 creator host OS
        0x00, 0x00, 0x00, 0x00, 0x00, 0xa0, 0x00, 0x00, // 0x28 original size 10 MiB
        0x00, 0x00, 0x00, 0x00, 0x00, 0xa0, 0x00, 0x00, // 0x30 current size 10 MiB
        0xff, 0xff, 0x10, 0xff, // 0x38 CHS 65535/16/255
        0x00, 0x00, 0x00, 0x02, // 0x3c disk type fixed
        0xff, 0xff, 0xe2, 0xc8, // 0x40 checksum
        0x5f, 0xfe, 0xa2, 0xdb, 0x38, 0x22, 0x41, 0xc2, // 0x44 unique id
        0xb9, 0xbb, 0xef, 0xde, 0x01, 0x51, 0x54, 0x75, //      (cont.)
        0x00, // 0x54 saved state
    ];

    pub(crate) fn full(head: &[u8; 0x55]) -> [u8; FOOTER_SIZE] {
        let mut b = [0u8; FOOTER_SIZE];
        b[..0x55].copy_from_slice(head);
        b
    }

    #[test]
    fn decodes_a_qemu_fixed_footer() {
        let bytes = full(&QEMU_FIXED_10M_HEAD);
        let f = decode(&bytes, 0xa07000, false).unwrap();
        assert_eq!(f.cookie, "conectix");
        assert_eq!(f.features, FEATURE_RESERVED);
        assert_eq!(f.format_version, FORMAT_VERSION);
        assert_eq!(f.data_offset, FIXED_DATA_OFFSET);
        assert_eq!(f.timestamp_utc, "2026-11-23T11:56:31Z");
        assert_eq!(f.creator_application, "qemu");
        assert_eq!(f.creator_version, 0x0005_0003);
        assert_eq!(f.creator_host_os, "Wi2k");
        assert_eq!(f.current_size, 10_514_432);
        assert_eq!(f.original_size, 10_514_432);
        assert_eq!(f.geometry.to_string(), "302/4/17");
        assert_eq!(f.geometry, f.computed_geometry);
        assert_eq!(f.disk_type, DISK_TYPE_FIXED);
        assert_eq!(f.checksum, 0xffff_e419);
        assert_eq!(f.computed_checksum, 0xffff_e419);
        assert_eq!(f.unique_id, "dc01fbaaf5cc475bbe7f1096457a9ccb");
        assert_eq!(f.saved_state, 0);
        assert_eq!(f.offset, 0xa07000);
        assert_eq!(f.qemu_virtual_bytes, f.current_size);
        assert!(f.creator_description.starts_with("qemu-img"));
    }

    #[test]
    fn decodes_a_qemu_force_size_footer() {
        let bytes = full(&QEMU_FORCE_SIZE_10M_HEAD);
        let f = decode(&bytes, 0, false).unwrap();
        assert_eq!(f.checksum, f.computed_checksum);
        assert_eq!(f.creator_application, "qem2");
        assert!(f.geometry.is_max());
        assert_eq!(f.current_size, 10 << 20);
        assert_eq!(f.computed_geometry.to_string(), "301/4/17");
        assert_eq!(f.qemu_virtual_bytes, 10 << 20);
    }

    #[test]
    fn fixed_footer_reproduces_qemu_byte_for_byte() {
        let want = full(&QEMU_FIXED_10M_HEAD);
        let f = FooterFields::from_bytes(&want);
        let got = fixed_footer(
            f.current_size,
            f.unique_id,
            f.timestamp,
            *b"qemu",
            0x0005_0003,
            HOST_OS_WINDOWS,
            f.original_size,
        );
        assert_eq!(got, want);
    }

    #[test]
    fn round_trip_keeps_every_byte() {
        for head in [&QEMU_FIXED_10M_HEAD, &QEMU_FORCE_SIZE_10M_HEAD] {
            let bytes = full(head);
            assert_eq!(encode(&FooterFields::from_bytes(&bytes)), bytes);
        }
        // reserved bytes and odd values survive too (with the checksum made valid first)
        let mut f = FooterFields::from_bytes(&full(&QEMU_FIXED_10M_HEAD));
        f.reserved[0] = 0xaa;
        f.reserved[RESERVED_SIZE - 1] = 0x55;
        f.saved_state = 1;
        f.creator_application = *b"d2v\0";
        let bytes = encode(&f);
        assert_eq!(checksum(&bytes), FooterFields::from_bytes(&bytes).checksum);
        assert_eq!(encode(&FooterFields::from_bytes(&bytes)), bytes);
        assert_eq!(bytes[0x55], 0xaa);
        assert_eq!(bytes[0x1ff], 0x55);
        assert_eq!(decode(&bytes, 0, false).unwrap().creator_application, "d2v");
    }

    #[test]
    fn checksum_ignores_its_own_field() {
        let mut b = full(&QEMU_FIXED_10M_HEAD);
        let sum = checksum(&b);
        b[0x40..0x44].copy_from_slice(&[1, 2, 3, 4]);
        assert_eq!(checksum(&b), sum);
        b[0x100] = 1;
        assert_eq!(checksum(&b), sum - 1);
        assert_eq!(checksum(&[0; FOOTER_SIZE]), 0xffff_ffff);
        // 508 bytes of 0xff sum to 129540 = 0x1fa04
        assert_eq!(checksum(&[0xff; FOOTER_SIZE]), !0x1_fa04);
    }

    #[test]
    fn resize_keeps_other_fields() {
        let orig = full(&QEMU_FIXED_10M_HEAD);
        let out = resize_footer(&orig, 20 << 20).unwrap();
        let (a, b) = (
            FooterFields::from_bytes(&orig),
            FooterFields::from_bytes(&out),
        );
        assert_eq!(b.current_size, 20 << 20);
        assert_eq!(b.geometry, chs_for_size(20 << 20));
        assert_eq!(b.checksum, checksum(&out));
        assert_eq!(
            (b.original_size, b.unique_id, b.timestamp, b.reserved),
            (a.original_size, a.unique_id, a.timestamp, a.reserved)
        );
        // force_size footers keep their 65535/16/255 marker
        let out = resize_footer(&full(&QEMU_FORCE_SIZE_10M_HEAD), 30 << 20).unwrap();
        assert!(FooterFields::from_bytes(&out).geometry.is_max());
    }

    #[test]
    fn resize_refuses_damage_and_bad_sizes() {
        let mut bad = full(&QEMU_FIXED_10M_HEAD);
        bad[0x30] = 1; // current size changed, checksum not
        let e = resize_footer(&bad, 1 << 20).unwrap_err();
        assert!(
            e.message().contains("checksum at 0x40 is 0xffffe419"),
            "{e}"
        );
        assert!(resize_footer(&[0; FOOTER_SIZE], 1 << 20).is_err());
        assert!(resize_footer(&full(&QEMU_FIXED_10M_HEAD), 1000).is_err());
        let big = resize_footer(&full(&QEMU_FIXED_10M_HEAD), u64::MAX - 511).unwrap();
        assert!(FooterFields::from_bytes(&big).geometry.is_max());
    }

    #[test]
    fn only_conectix_is_a_footer() {
        let e = decode(&[0xff; FOOTER_SIZE], 0x200, false).unwrap_err();
        assert!(e.message().contains("at 0x200"), "{e}");
        assert!(e.message().contains("\\xff"), "{e}");
        assert!(decode(&[0; FOOTER_SIZE], 0, false).is_err());
        // a footer of all 0xff after the cookie decodes (and its problems are findings)
        let mut b = [0xff; FOOTER_SIZE];
        b[..8].copy_from_slice(&COOKIE);
        let f = decode(&b, 0, false).unwrap();
        assert_eq!(f.current_size, u64::MAX);
        assert!(f.computed_geometry.is_max());
        assert_ne!(f.checksum, f.computed_checksum);
    }

    #[test]
    fn raw_parse_needs_512_bytes() {
        assert!(RawFooter::parse(&[0; 511]).is_err());
        assert!(RawFooter::parse(&[]).is_err());
        assert!(RawFooter::parse(&[0; 600]).is_ok());
    }

    #[test]
    fn timestamps() {
        assert_eq!(timestamp_utc(0), "2000-01-01T00:00:00Z");
        assert_eq!(timestamp_utc(0x004f_19ff), "2000-02-29T23:59:59Z");
        assert_eq!(timestamp_utc(0x3296_e66f), "2026-11-23T11:56:31Z");
        assert_eq!(timestamp_utc(u32::MAX), "2136-02-07T06:28:15Z");
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
    }

    #[test]
    fn creators() {
        assert_eq!(printable(b"win "), "win");
        assert_eq!(printable(b"tap\0"), "tap");
        assert_eq!(printable(b"\x01ab\0"), "\\x01ab");
        assert_eq!(printable(b"\0\0\0\0"), "");
        for app in [*b"win ", *b"qem2", *b"d2v\0", *b"tap\0", *b"CTXS", *b"vs  "] {
            assert!(qemu_sizes_by_current_size(app), "{app:?}");
            assert_ne!(describe_creator(app), "unknown creator");
        }
        assert!(!qemu_sizes_by_current_size(*b"vpc "));
        assert!(!qemu_sizes_by_current_size(*b"qemu"));
        assert_eq!(describe_creator(*b"zzzz"), "unknown creator");
        let g = chs_for_size(10 << 20);
        assert_eq!(qemu_virtual_size(*b"qemu", g, 10 << 20), g.size_bytes());
        assert_eq!(qemu_virtual_size(*b"qemu", MAX_CHS, 10 << 20), 10 << 20);
        assert_eq!(qemu_virtual_size(*b"win ", g, 10 << 20), 10 << 20);
    }
}
