//! Helpers the filesystem probes and readers share: read a fixed layout at an offset of a
//! partition, and decode labels and UUIDs the way blkid prints them. The lowest module of fs/:
//! it imports nothing from its siblings.

use zerocopy::FromBytes;

use super::info::{FsInfo, FsKind};
use crate::disk::Disk;

/// Read a `T` at `offset`; `None` when the partition is too small or the read fails.
pub(crate) fn read_struct<T: FromBytes>(part: &dyn Disk, offset: u64) -> Option<T> {
    let mut buf = vec![0u8; size_of::<T>()];
    part.read_at(offset, &mut buf).ok()?;
    T::read_from_bytes(&buf).ok()
}

/// A label from a fixed-size byte field, as blkid's `blkid_probe_set_label`: cut at the first
/// NUL, trailing white space removed, empty means none. Non-UTF-8 bytes are replaced.
pub(crate) fn byte_label(raw: &[u8]) -> Option<String> {
    let end = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
    let s = String::from_utf8_lossy(raw.get(..end)?);
    let t = s.trim_end();
    (!t.is_empty()).then(|| t.to_string())
}

/// A label stored as UTF-16LE (NTFS, exFAT): cut at NUL, trailing white space removed.
pub(crate) fn utf16le_label(raw: &[u8]) -> Option<String> {
    utf16_label(raw, u16::from_le_bytes)
}

/// A label stored as UTF-16BE (ISO 9660 Joliet): cut at NUL, trailing white space removed.
pub(crate) fn utf16be_label(raw: &[u8]) -> Option<String> {
    utf16_label(raw, u16::from_be_bytes)
}

fn utf16_label(raw: &[u8], unit: fn([u8; 2]) -> u16) -> Option<String> {
    let units: Vec<u16> = raw
        .chunks_exact(2)
        .map(|c| {
            unit([
                c.first().copied().unwrap_or(0),
                c.get(1).copied().unwrap_or(0),
            ])
        })
        .take_while(|&u| u != 0)
        .collect();
    let s = String::from_utf16_lossy(&units);
    let t = s.trim_end();
    (!t.is_empty()).then(|| t.to_string())
}

/// The canonical lower-case 8-4-4-4-12 form of a 16-byte UUID stored in byte order (ext, XFS,
/// btrfs, swap); `None` for the all-zero UUID, which blkid does not report.
pub(crate) fn uuid_string(u: &[u8; 16]) -> Option<String> {
    if u.iter().all(|&b| b == 0) {
        return None;
    }
    let mut s = String::with_capacity(36);
    for (i, b) in u.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            s.push('-');
        }
        s.push_str(&format!("{b:02x}"));
    }
    Some(s)
}

/// An [`FsInfo`] of `kind` with nothing else known yet.
pub(crate) fn info(kind: FsKind) -> FsInfo {
    FsInfo {
        kind,
        label: None,
        uuid: None,
        encrypted: false,
        block_bytes: None,
        fs_bytes: None,
        uuid_sub: None,
        version: None,
    }
}
