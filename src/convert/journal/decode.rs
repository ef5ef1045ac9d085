//! Decoding of an undo journal read back from disk (format in the parent module). The bytes are
//! untrusted: every length is checked against the bytes present, so a damaged journal is an
//! error, never a panic or a huge allocation.

use super::{block_count, Journal, SavedRegion, MAGIC, MAX_REGIONS, TRAILER, VERSION};
use crate::error::{Error, Result};

/// Shortest input looked at past the magic: magic, version, two lengths, unique id, region
/// count, CRC32, trailer (a shorter one is "not a journal").
const MIN_LEN: usize = 8 + 4 + 8 + 8 + 16 + 4 + 4 + 8;

impl Journal {
    /// Decode and check a journal. Every length is checked against the bytes present, so a
    /// damaged journal is an error, never a panic or a huge allocation.
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        let bad = |what: &str| Error::corrupt(format!("undo journal: {what}"));
        let not_journal = || bad("not a vhdtool journal (magic \"VHDTJRN1\" missing)");
        if bytes.len() < MIN_LEN || !bytes.starts_with(MAGIC) {
            return Err(not_journal());
        }
        // neither split fails: the length was checked above
        let (rest, trailer) = bytes.split_last_chunk::<8>().ok_or_else(not_journal)?;
        if trailer != TRAILER {
            return Err(bad("trailer missing: the journal is incomplete"));
        }
        let (body, stored) = rest.split_last_chunk::<4>().ok_or_else(not_journal)?;
        let stored = u32::from_le_bytes(*stored);
        let computed = crc32fast::hash(body);
        if stored != computed {
            return Err(bad(&format!(
                "CRC32 is 0x{stored:08x}, computed 0x{computed:08x}"
            )));
        }
        let mut r = Reader {
            b: body,
            pos: MAGIC.len(),
        };
        let version = r.u32()?;
        if version != VERSION {
            return Err(Error::unsupported(format!(
                "undo journal format version {version}, this vhdtool reads {VERSION}"
            )));
        }
        let original_len = r.u64()?;
        let converted_len = r.u64()?;
        let unique_id = r.array::<16>()?;
        let count = r.u32()?;
        if count > MAX_REGIONS {
            return Err(bad(&format!("{count} regions (at most {MAX_REGIONS})")));
        }
        let mut regions = Vec::new();
        for _ in 0..count {
            let offset = r.u64()?;
            let length = r.u64()?;
            if offset.checked_add(length).is_none() {
                return Err(bad("a region ends past 2^64"));
            }
            let name_len = r.u32()?;
            let what = std::str::from_utf8(r.take_u32(name_len)?)
                .map_err(|_| bad("a region name is not UTF-8"))?
                .to_string();
            let n = r.u32()?;
            let mut chunks = Vec::new();
            let mut end = 0u64;
            for _ in 0..n {
                let o = r.u64()?;
                let len = r.u32()?;
                let data = r.take_u32(len)?.to_vec();
                let chunk_end = o.checked_add(u64::from(len));
                if chunk_end.is_none_or(|e| e > length) {
                    return Err(bad("a chunk lies outside its region"));
                }
                if o < end {
                    return Err(bad("chunks overlap or are out of order"));
                }
                end = chunk_end.unwrap_or(u64::MAX);
                chunks.push((o, data));
            }
            let blocks = r.u32()?;
            if u64::from(blocks) != block_count(length) {
                return Err(bad(&format!(
                    "{blocks} block checksums for a region of {length} bytes"
                )));
            }
            // the bytes are there before anything is allocated for them
            let crcs = r.take(
                usize::try_from(blocks)
                    .map_err(|_| truncated())?
                    .checked_mul(4)
                    .ok_or_else(truncated)?,
            )?;
            let converted = crcs
                .chunks_exact(4)
                .filter_map(|c| <[u8; 4]>::try_from(c).ok())
                .map(u32::from_le_bytes)
                .collect();
            regions.push(SavedRegion {
                offset,
                length,
                what,
                chunks,
                converted,
            });
        }
        if r.pos != body.len() {
            return Err(bad("trailing bytes after the last region"));
        }
        Ok(Journal {
            original_len,
            converted_len,
            unique_id,
            regions,
        })
    }
}

fn truncated() -> Error {
    Error::corrupt("undo journal: truncated")
}

/// Reads the journal body front to back; running past its end is "truncated".
struct Reader<'a> {
    b: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self.pos.checked_add(n).ok_or_else(truncated)?;
        let s = self.b.get(self.pos..end).ok_or_else(truncated)?;
        self.pos = end;
        Ok(s)
    }
    /// `n` bytes for a length field: a length beyond `usize` cannot be present either.
    fn take_u32(&mut self, n: u32) -> Result<&'a [u8]> {
        let n = usize::try_from(n).map_err(|_| truncated())?;
        self.take(n)
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        // take returned exactly N bytes: the conversion does not fail
        self.take(N)?.try_into().map_err(|_| truncated())
    }
    fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array()?))
    }
    fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(self.array()?))
    }
}
