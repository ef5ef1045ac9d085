//! Where a file holds data: `SEEK_DATA`/`SEEK_HOLE` extents, so that holes are never read.

use std::fs::File;
use std::io;

use rustix::fs::{seek, SeekFrom};

use crate::error::{Error, Result};

/// Extents of data in `file` (offset, length), holes left out. A filesystem without
/// `SEEK_DATA` reports the whole file as data.
pub fn data_extents(file: &File, len: u64) -> Result<Vec<(u64, u64)>> {
    data_extents_in(file, 0, len)
}

/// The data extents of `file` that overlap `from .. len` (clipped to it).
pub fn data_extents_in(file: &File, from: u64, len: u64) -> Result<Vec<(u64, u64)>> {
    let mut out = Vec::new();
    let mut pos = from;
    while pos < len {
        let start = match seek(file, SeekFrom::Data(pos)) {
            Ok(s) => s,
            Err(rustix::io::Errno::NXIO) => break, // no data after pos
            // no SEEK_DATA on this filesystem: everything is data
            Err(rustix::io::Errno::INVAL) if pos == from => {
                return Ok(vec![(from, len.saturating_sub(from))])
            }
            Err(e) => {
                return Err(Error::io(
                    "looking for data (SEEK_DATA)",
                    io::Error::from(e),
                ))
            }
        };
        if start >= len {
            break;
        }
        let end = match seek(file, SeekFrom::Hole(start)) {
            Ok(e) => e.min(len),
            Err(e) => {
                return Err(Error::io(
                    "looking for a hole (SEEK_HOLE)",
                    io::Error::from(e),
                ))
            }
        };
        // start < end: SEEK_HOLE from a data offset lands past it
        out.push((start, end.saturating_sub(start)));
        if end <= pos {
            break; // a filesystem that does not move forward: stop rather than loop
        }
        pos = end;
    }
    Ok(out)
}

/// Sort and merge overlapping or touching `(offset, length)` ranges; empty ones are dropped.
pub fn merge_ranges(mut ranges: Vec<(u64, u64)>) -> Vec<(u64, u64)> {
    ranges.retain(|r| r.1 > 0);
    ranges.sort_unstable();
    let mut out: Vec<(u64, u64)> = Vec::with_capacity(ranges.len());
    for (s, l) in ranges {
        let e = s.saturating_add(l);
        match out.last_mut() {
            Some((ls, ll)) if ls.saturating_add(*ll) >= s => {
                *ll = e.max(ls.saturating_add(*ll)).saturating_sub(*ls);
            }
            _ => out.push((s, l)),
        }
    }
    out
}
