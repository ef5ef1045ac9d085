//! The SYSTEM hive of the Windows partition, read for an in-place patch of
//! `MountedDevices`: its bytes (a dirty hive with its `.LOG1`/`.LOG2` replayed first, as
//! Windows would at its next load), and where those bytes lie on the volume. The patch writes
//! whole changed byte ranges through the file's data runs: the file's size and allocation do
//! not change, so NTFS metadata is not touched.

use std::collections::BTreeMap;

use super::mounted::{patch_mounted_devices, ConvertedPartition, MountedDevicesPatch};
use crate::error::{Error, Result};
use crate::fs::ntfsfile::{FileExtents, NtfsVolume};
use crate::regf::{replay_logs, Hive, Write};

/// Where the SYSTEM hive is.
pub const SYSTEM_HIVE: &str = "\\Windows\\System32\\config\\SYSTEM";
/// Largest hive read (Windows caps the SYSTEM hive far below; real ones are 10-100 MiB).
const MAX_HIVE_BYTES: u64 = 1 << 30;

/// Writes at volume offsets: (offset, bytes).
pub type VolumeWrites = Vec<(u64, Vec<u8>)>;

/// The hive as read, clean.
#[derive(Debug, Clone)]
pub struct SystemHive {
    /// The hive file's bytes after any log replay.
    pub bytes: Vec<u8>,
    /// The replay's writes (file offsets), empty for a clean hive.
    pub replay: Vec<Write>,
    /// Log entries replayed.
    pub entries_replayed: u32,
    pub extents: FileExtents,
}

impl SystemHive {
    /// One line for the check.
    pub fn summary(&self) -> String {
        if self.replay.is_empty() {
            format!(
                "SYSTEM hive ({} bytes) is clean; MountedDevices is patched in place",
                self.bytes.len()
            )
        } else {
            format!(
                "SYSTEM hive was dirty: {} log entries from SYSTEM.LOG1/.LOG2 are replayed into the patch",
                self.entries_replayed
            )
        }
    }

    /// The MountedDevices patch of disk `signature`, as writes at volume offsets (the replayed
    /// pages, the patched pages, the base block).
    pub fn patch(
        &self,
        signature: u32,
        partitions: &[ConvertedPartition],
    ) -> Result<(MountedDevicesPatch, VolumeWrites)> {
        let p = patch_mounted_devices(&self.bytes, signature, partitions)?;
        let mut ranges: BTreeMap<u64, u64> = BTreeMap::new();
        for w in self.replay.iter().chain(&p.patched.writes) {
            let len = u64::try_from(w.bytes.len()).unwrap_or(u64::MAX);
            let end = w.offset.saturating_add(len);
            let e = ranges.entry(w.offset).or_insert(end);
            *e = (*e).max(end);
        }
        let mut merged: Vec<(u64, u64)> = Vec::new();
        for (s, e) in ranges {
            match merged.last_mut() {
                Some(last) if s <= last.1 => last.1 = last.1.max(e),
                _ => merged.push((s, e)),
            }
        }
        let result = if p.patched.writes.is_empty() {
            &self.bytes
        } else {
            &p.patched.bytes
        };
        let mut out = Vec::new();
        for (s, e) in merged {
            let pieces = self.extents.map(s, e.saturating_sub(s)).ok_or_else(|| {
                Error::corrupt(format!(
                    "SYSTEM hive: the write at {s:#x}..{e:#x} is outside the file"
                ))
            })?;
            let mut at = s;
            for (vol, len) in pieces {
                let from = usize::try_from(at).map_err(|_| Error::corrupt("hive offset"))?;
                let n = usize::try_from(len).map_err(|_| Error::corrupt("hive offset"))?;
                let bytes = result
                    .get(from..from.saturating_add(n))
                    .ok_or_else(|| Error::corrupt("SYSTEM hive: write past its end"))?;
                out.push((vol, bytes.to_vec()));
                at = at.saturating_add(len);
            }
        }
        Ok((p, out))
    }
}

/// Read the SYSTEM hive; replay its logs when it is dirty. Refused: a dirty hive without
/// usable logs, logs that would grow the file (the file's allocation would change), a hive
/// that is not a plain non-resident file.
pub fn read_system_hive(vol: &NtfsVolume) -> Result<SystemHive> {
    let bytes = vol.read_file(SYSTEM_HIVE, MAX_HIVE_BYTES)?;
    let extents = vol.file_extents(SYSTEM_HIVE)?;
    let hive = Hive::parse(&bytes)?;
    if !hive.is_dirty() {
        return Ok(SystemHive {
            bytes,
            replay: Vec::new(),
            entries_replayed: 0,
            extents,
        });
    }
    let (p, s) = hive.sequence();
    let mut logs = Vec::new();
    for ext in ["LOG1", "LOG2"] {
        let path = format!("{SYSTEM_HIVE}.{ext}");
        if vol.exists(&path)? {
            logs.push(vol.read_file(&path, MAX_HIVE_BYTES)?);
        }
    }
    if logs.is_empty() {
        return Err(Error::conflict(format!(
            "the hive is dirty (sequence numbers {p} and {s} differ) and SYSTEM.LOG1/SYSTEM.LOG2 are not there to replay"
        )));
    }
    let refs: Vec<&[u8]> = logs.iter().map(Vec::as_slice).collect();
    let r = replay_logs(&bytes, &refs)?;
    if r.bytes.len() != bytes.len() {
        return Err(Error::unsupported(format!(
            "replaying SYSTEM.LOG1/.LOG2 grows the hive from {} to {} bytes: an in-place patch cannot",
            bytes.len(),
            r.bytes.len()
        )));
    }
    Ok(SystemHive {
        bytes: r.bytes,
        replay: r.writes,
        entries_replayed: r.entries_applied,
        extents,
    })
}
