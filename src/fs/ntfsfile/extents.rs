//! Where a file's bytes are on the volume: for in-place patches of a file whose size does not
//! change (a registry hive, ReAgent.xml), written through the volume rather than a driver.

use super::*;

/// A piece of a file's data: `length` bytes at `file_offset` in the file are at
/// `volume_offset` on the volume.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Extent {
    pub file_offset: u64,
    pub volume_offset: u64,
    pub length: u64,
}

/// A file's allocated data as extents covering `0..data_size` (a resident, sparse,
/// compressed, encrypted or partly uninitialized file is refused: an in-place write there
/// would not be read back as written).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileExtents {
    pub data_size: u64,
    pub extents: Vec<Extent>,
}

impl FileExtents {
    /// The volume offsets of the file range `offset..offset + len`, as (volume offset, length)
    /// pieces in file order; `None` when the range is not inside the file.
    pub fn map(&self, offset: u64, len: u64) -> Option<Vec<(u64, u64)>> {
        let end = offset.checked_add(len)?;
        if end > self.data_size {
            return None;
        }
        let mut out = Vec::new();
        let mut at = offset;
        for e in &self.extents {
            if at >= end {
                break;
            }
            let e_end = e.file_offset.checked_add(e.length)?;
            if e_end <= at || e.file_offset > at {
                continue;
            }
            let piece_end = e_end.min(end);
            let vol = e
                .volume_offset
                .checked_add(at.checked_sub(e.file_offset)?)?;
            out.push((vol, piece_end.checked_sub(at)?));
            at = piece_end;
        }
        (at >= end).then_some(out)
    }
}

impl NtfsVolume<'_> {
    /// The extents of the unnamed `$DATA` of the file at `path`.
    pub fn file_extents(&self, path: &str) -> Result<FileExtents> {
        let n = self
            .lookup(path)?
            .ok_or_else(|| Error::invalid(format!("NTFS: no file {path}")))?;
        let Stream::NonResident {
            runs,
            data_size,
            initialized_size,
            flags,
        } = self.plain_data(n, path)?
        else {
            return Err(Error::unsupported(format!(
                "NTFS: {path} is resident (its data is inside its MFT record)"
            )));
        };
        if flags & (ATTR_COMPRESSION_MASK | ATTR_IS_ENCRYPTED) != 0 {
            return Err(Error::unsupported(format!(
                "NTFS: {path} is compressed or encrypted"
            )));
        }
        if initialized_size < data_size {
            return Err(Error::unsupported(format!(
                "NTFS: {path}: only {initialized_size} of its {data_size} bytes are initialized"
            )));
        }
        let mut extents = Vec::new();
        let mut covered = 0u64;
        for r in &runs {
            if covered >= data_size {
                break;
            }
            let (Some(start), Some(bytes)) = (
                r.vcn.checked_mul(self.cluster_bytes),
                r.clusters.checked_mul(self.cluster_bytes),
            ) else {
                return Err(Error::corrupt(format!("NTFS: {path}: run offset overflow")));
            };
            if start != covered {
                return Err(Error::corrupt(format!(
                    "NTFS: {path}: the runs leave a hole at byte {covered}"
                )));
            }
            let Some(lcn) = r.lcn else {
                return Err(Error::unsupported(format!("NTFS: {path} is sparse")));
            };
            let volume_offset = lcn
                .checked_mul(self.cluster_bytes)
                .filter(|o| {
                    o.checked_add(bytes)
                        .is_some_and(|e| e <= self.volume_bytes())
                })
                .ok_or_else(|| {
                    Error::corrupt(format!("NTFS: {path}: a run lies outside the volume"))
                })?;
            let length = bytes.min(data_size.saturating_sub(start));
            extents.push(Extent {
                file_offset: start,
                volume_offset,
                length,
            });
            covered = start.saturating_add(bytes);
        }
        if covered < data_size {
            return Err(Error::corrupt(format!(
                "NTFS: {path}: the runs cover {covered} of its {data_size} bytes"
            )));
        }
        Ok(FileExtents { data_size, extents })
    }
}
