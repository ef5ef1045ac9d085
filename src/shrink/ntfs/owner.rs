//! Naming the file that holds a used cluster past the new end, for the refusal: the MFT is
//! walked for the record whose runs hold it, and its path comes from the ntfs crate.

use std::io::{Read, Seek, SeekFrom};

use super::record::Record;
use super::volume::{record_offset, Volume};
use super::{FILE_ROOT, MIN_FIRST_RUN_RECORDS};
use crate::disk::Disk;
use crate::error::Error;

/// Path components followed when naming the owner of a cluster.
const MAX_PATH_DEPTH: usize = 64;
/// Bytes of the MFT read per request while looking for the owner of a cluster.
const MFT_CHUNK_BYTES: u64 = 1 << 20;

/// The refusal for a used cluster `last` past the new end at `new_clusters`, naming its owner
/// when it can be found.
pub(super) fn refuse_used_tail(
    part: &dyn Disk,
    vol: &Volume,
    new_clusters: u64,
    last: u64,
) -> Error {
    let owner = owner_of(part, vol, last);
    tail_in_use(vol, new_clusters, last, owner)
}

/// The owner of a used cluster: MFT record number and path, when it can be found.
struct Owner {
    record: u64,
    path: Option<String>,
}

fn tail_in_use(vol: &Volume, new_clusters: u64, last: u64, owner: Option<Owner>) -> Error {
    let owner_record = owner.as_ref().map(|o| o.record);
    let who = match owner {
        Some(Owner {
            record,
            path: Some(p),
        }) => format!(" by {p} (MFT record {record})"),
        Some(Owner { record, path: None }) => format!(" by MFT record {record}"),
        None => String::new(),
    };
    let system = match owner_record {
        Some(r) if r < MIN_FIRST_RUN_RECORDS => " (an NTFS system file, which Windows' defrag may not move: then only --room grow helps)",
        _ => "",
    };
    Error::invalid(format!(
        "NTFS volume: cluster {last} (byte {:#x} of the partition) is in use{who}{system}, past the new end of the volume at cluster {new_clusters}; \
         free the end of the volume first: defragment in the guest (`defrag C: /U /V`, then shut Windows down), or use `--room grow`",
        last.saturating_mul(vol.cluster_bytes)
    ))
}

/// Walk the MFT (bounded by $MFT's size and runs) for the record whose non-resident runs hold
/// `lcn`; its base record's path comes from the ntfs crate.
fn owner_of(part: &dyn Disk, vol: &Volume, lcn: u64) -> Option<Owner> {
    let per_chunk = MFT_CHUNK_BYTES
        .checked_div(vol.record_bytes)
        .unwrap_or(1)
        .max(1);
    let mut n = 0u64;
    while n < vol.mft_records {
        let count = per_chunk.min(vol.mft_records.saturating_sub(n));
        // records in one chunk must be contiguous on disk: stop at run boundaries
        let start = record_offset(vol, n)?;
        let mut k = 1u64;
        while k < count
            && record_offset(vol, n.saturating_add(k))
                == start.checked_add(k.saturating_mul(vol.record_bytes))
        {
            k = k.saturating_add(1);
        }
        let buf = part
            .read_vec(start, k.saturating_mul(vol.record_bytes))
            .ok()?;
        for (i, raw) in buf
            .chunks_exact(usize::try_from(vol.record_bytes).ok()?)
            .enumerate()
        {
            let number = n.saturating_add(crate::units::len_u64(i));
            let Ok(rec) = Record::parse(number, 0, raw.to_vec()) else {
                continue;
            };
            let Ok(attrs) = rec.attributes() else {
                continue;
            };
            let holds = attrs.iter().filter(|a| a.non_resident).any(|a| {
                rec.runs(a, vol.clusters).is_ok_and(|runs| {
                    runs.iter().any(|r| {
                        r.lcn
                            .is_some_and(|l| lcn >= l && lcn < l.saturating_add(r.len))
                    })
                })
            });
            if holds {
                let base = match rec.base_record() {
                    0 => number,
                    b => b,
                };
                return Some(Owner {
                    record: base,
                    path: path_of(part, base),
                });
            }
        }
        n = n.saturating_add(k);
    }
    None
}

/// `\dir\file` for MFT record `record`, following parent references (bounded).
fn path_of(part: &dyn Disk, record: u64) -> Option<String> {
    use ntfs::structured_values::NtfsFileNamespace;
    use ntfs::Ntfs;
    let mut rd = DiskReader { disk: part, pos: 0 };
    let fs = Ntfs::new(&mut rd).ok()?;
    let mut parts = Vec::new();
    let mut n = record;
    for _ in 0..MAX_PATH_DEPTH {
        if n == FILE_ROOT {
            parts.reverse();
            return Some(format!("\\{}", parts.join("\\")));
        }
        let file = fs.file(&mut rd, n).ok()?;
        let name = [
            NtfsFileNamespace::Win32,
            NtfsFileNamespace::Win32AndDos,
            NtfsFileNamespace::Posix,
        ]
        .into_iter()
        .find_map(|ns| file.name(&mut rd, Some(ns), None)?.ok())
        .or_else(|| file.name(&mut rd, None, None)?.ok())?;
        parts.push(name.name().to_string_lossy());
        n = name.parent_directory_reference().file_record_number();
    }
    None
}

/// Positional reader over a [`Disk`] for the ntfs crate (`Read + Seek`).
struct DiskReader<'a> {
    disk: &'a dyn Disk,
    pos: u64,
}

impl Read for DiskReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let left = self.disk.len().saturating_sub(self.pos);
        let n = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
        let dst = buf.get_mut(..n).unwrap_or_default();
        self.disk
            .read_at(self.pos, dst)
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        self.pos = self.pos.saturating_add(crate::units::len_u64(n));
        Ok(n)
    }
}

impl Seek for DiskReader<'_> {
    fn seek(&mut self, to: SeekFrom) -> std::io::Result<u64> {
        let new = match to {
            SeekFrom::Start(p) => Some(p),
            SeekFrom::End(d) => self.disk.len().checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        self.pos = new.ok_or_else(|| std::io::Error::other("seek out of range"))?;
        Ok(self.pos)
    }
}
