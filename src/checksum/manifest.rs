//! The checksum manifest: a JSON file (schema in README.md) with the image identity, the chunk
//! size, every chunk CRC in hex, the whole-file CRC, the zero ranges and the holes.
//!
//! A manifest read back is untrusted input: every field is checked (magic, version, chunk size,
//! the chunk count against the file size, hex digits, ranges inside the file and sorted, the
//! whole CRC against the chunks) before it is used, and the file is size-checked before it is
//! read, so a hostile manifest is refused with an error saying what is wrong, never a panic or
//! an allocation the manifest size does not justify.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{chunk_count, hex, whole_crc_runs, ChecksumMap, Range, Sum, Sums, MAX_CHUNKS};
use crate::disk::Disk;
use crate::error::{Error, Result};

/// The value of the `manifest` field.
pub const MAGIC: &str = "vhdtool-checksum";
/// The manifest version this code writes. Version 2 writes a run of identical chunk CRCs as one
/// entry "xxxxxxxx*N" (a sparse 127 GiB image at 4 KiB chunks: a few entries, not 33 million);
/// version 1 (one entry per chunk) is still read.
pub const VERSION: u32 = 2;
/// The versions this code reads.
pub const READ_VERSIONS: [u32; 2] = [1, 2];
/// The CRC the manifest holds (zlib's crc32, `cksum -a crc32b`).
pub const ALGORITHM: &str = "crc32";
/// Largest manifest file read: the chunk list at [`MAX_CHUNKS`] (about 11 bytes a CRC as
/// pretty JSON) plus room for ranges.
pub const MAX_MANIFEST_BYTES: u64 = MAX_CHUNKS * 16 + (64 << 20);

/// Who the manifest is about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    /// The path given on the command line (informative only).
    pub path: String,
    pub file_bytes: u64,
    /// "vhd-fixed" | "vhd-dynamic" | "vhd-differencing" | "raw".
    pub format: String,
    /// The VHD footer's unique id, when there is a footer.
    pub unique_id: Option<String>,
}

/// The manifest as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub manifest: String,
    pub version: u32,
    pub image: Identity,
    pub algorithm: String,
    pub chunk_bytes: u64,
    /// CRC32 of the whole file, 8 hex digits.
    pub whole_crc32: String,
    /// The chunk CRC32s in file order, 8 hex digits each; "xxxxxxxx*N" (version 2) stands for N
    /// consecutive chunks with that CRC. The last chunk may be shorter.
    pub chunks: Vec<String>,
    /// All-zero chunks, merged (holes included).
    pub zero_ranges: Vec<Range>,
    /// Holes of the file (`SEEK_HOLE`), never read.
    pub hole_ranges: Vec<Range>,
}

/// The identity of an image: its size, format and footer unique id.
pub fn identity(file: &dyn Disk, path: &str) -> Identity {
    let image = crate::vhd::probe(file);
    let format = serde_json::to_value(image.format)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_else(|| "raw".into());
    Identity {
        path: path.to_string(),
        file_bytes: file.len(),
        format,
        unique_id: image.footer.map(|f| f.unique_id),
    }
}

impl Manifest {
    /// The manifest of a map.
    pub fn new(identity: Identity, map: &ChecksumMap) -> Manifest {
        Manifest {
            manifest: MAGIC.into(),
            version: VERSION,
            image: identity,
            algorithm: ALGORITHM.into(),
            chunk_bytes: map.chunk_bytes,
            whole_crc32: hex(map.whole_crc32),
            chunks: runs(map.chunks.iter().map(|s| s.crc))
                .map(|(crc, n)| {
                    if n == 1 {
                        hex(crc)
                    } else {
                        format!("{}*{n}", hex(crc))
                    }
                })
                .collect(),
            zero_ranges: map.zero_ranges(),
            hole_ranges: map.holes.clone(),
        }
    }

    /// Parse and check a manifest.
    pub fn from_json(text: &str) -> Result<Manifest> {
        let m: Manifest = serde_json::from_str(text)
            .map_err(|e| Error::invalid(format!("not a vhdtool checksum manifest: {e}")))?;
        m.check()?;
        Ok(m)
    }

    /// Read, parse and check a manifest file.
    pub fn read(path: &Path) -> Result<Manifest> {
        let shown = path.display();
        let bytes = crate::disk::read_bounded(path, MAX_MANIFEST_BYTES)?;
        let text = String::from_utf8(bytes)
            .map_err(|_| Error::corrupt(format!("{shown}: a manifest is UTF-8 JSON")))?;
        Manifest::from_json(&text).map_err(|e| e.context(shown))
    }

    /// Write the manifest as pretty JSON (through a temporary file renamed into place), streamed
    /// to the file: the text is never held in memory whole.
    pub fn write(&self, path: &Path) -> Result<()> {
        use std::io::Write;
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(".tmp");
        let tmp = std::path::PathBuf::from(tmp);
        let io = |e| Error::io(format!("writing {}", tmp.display()), e);
        let mut out = std::io::BufWriter::new(std::fs::File::create(&tmp).map_err(io)?);
        serde_json::to_writer_pretty(&mut out, self).map_err(|e| {
            Error::io(
                format!("writing {}", tmp.display()),
                std::io::Error::other(e),
            )
        })?;
        out.write_all(b"\n").map_err(io)?;
        out.into_inner()
            .map_err(|e| io(e.into_error()))?
            .sync_all()
            .map_err(io)?;
        std::fs::rename(&tmp, path)
            .map_err(|e| Error::io(format!("renaming {} into place", tmp.display()), e))
    }

    /// Every consistency rule of the format.
    pub fn check(&self) -> Result<()> {
        if self.manifest != MAGIC {
            return Err(Error::invalid(format!(
                "field \"manifest\" is {:?}, expected {MAGIC:?}",
                self.manifest
            )));
        }
        if !READ_VERSIONS.contains(&self.version) {
            return Err(Error::unsupported(format!(
                "manifest version {} (this vhdtool reads versions 1 and {VERSION})",
                self.version
            )));
        }
        if self.algorithm != ALGORITHM {
            return Err(Error::unsupported(format!(
                "algorithm {:?} (this vhdtool reads {ALGORITHM:?})",
                self.algorithm
            )));
        }
        let len = self.image.file_bytes;
        let n = chunk_count(len, self.chunk_bytes).map_err(|e| e.context("manifest"))?;
        let listed = self.chunk_count()?;
        if listed != n {
            return Err(Error::invalid(format!(
                "manifest lists {listed} chunk CRCs; a file of {len} bytes in chunks of {} bytes has {n}",
                self.chunk_bytes
            )));
        }
        let whole = parse_hex(&self.whole_crc32).map_err(|e| e.context("whole_crc32"))?;
        let computed = whole_crc_runs(self.entries()?, self.chunk_bytes, len);
        if whole != computed {
            return Err(Error::invalid(format!(
                "whole_crc32 is {whole:08x} but the chunk CRCs combine to {computed:08x}: the manifest was altered"
            )));
        }
        check_ranges("zero_ranges", &self.zero_ranges, len)?;
        check_ranges("hole_ranges", &self.hole_ranges, len)?;
        Ok(())
    }

    /// The number of chunks the entries stand for (runs counted), refused above [`MAX_CHUNKS`]
    /// before anything is expanded.
    pub fn chunk_count(&self) -> Result<u64> {
        let mut total = 0u64;
        for (i, s) in self.chunks.iter().enumerate() {
            let (_, n) = self
                .entry(s)
                .map_err(|e| e.context(format!("chunks[{i}]")))?;
            total = total.saturating_add(n);
            if total > MAX_CHUNKS {
                return Err(Error::invalid(format!(
                    "manifest lists more than {MAX_CHUNKS} chunk CRCs"
                )));
            }
        }
        Ok(total)
    }

    /// One entry of `chunks`: a CRC and how many chunks it stands for.
    fn entry(&self, s: &str) -> Result<(u32, u64)> {
        match s.split_once('*') {
            None => Ok((parse_hex(s)?, 1)),
            Some(_) if self.version < 2 => Err(Error::invalid(format!(
                "{s:?}: a run of chunks needs manifest version 2"
            ))),
            Some((crc, n)) => {
                let n: u64 = n
                    .parse()
                    .ok()
                    .filter(|n| (2..=MAX_CHUNKS).contains(n) && !n.to_string().starts_with('0'))
                    .ok_or_else(|| {
                        Error::invalid(format!(
                            "{s:?}: a run is CRC*N with N from 2 to {MAX_CHUNKS}"
                        ))
                    })?;
                Ok((parse_hex(crc)?, n))
            }
        }
    }

    /// The entries as `(crc, chunks)` (call after [`Manifest::check`], which bounds them).
    fn entries(&self) -> Result<Vec<(u32, u64)>> {
        self.chunks
            .iter()
            .enumerate()
            .map(|(i, s)| self.entry(s).map_err(|e| e.context(format!("chunks[{i}]"))))
            .collect()
    }

    /// The manifest as a map (zero flags from `zero_ranges`), its runs kept as runs.
    pub fn to_map(&self) -> Result<ChecksumMap> {
        let (chunk, len) = (self.chunk_bytes, self.image.file_bytes);
        let mut chunks = Sums::new();
        let mut zeros = ZeroCursor::new(&self.zero_ranges, chunk, len);
        let mut first = 0u64;
        for (crc, n) in self.entries()? {
            let end = first.saturating_add(n);
            let mut j = first;
            while j < end {
                let (zero, k) = zeros.stretch(j, end);
                chunks.push_n(Sum { crc, zero }, k);
                j = j.saturating_add(k.max(1));
            }
            first = end;
        }
        Ok(ChecksumMap {
            file_bytes: len,
            chunk_bytes: chunk,
            chunks,
            whole_crc32: parse_hex(&self.whole_crc32)?,
            holes: self.hole_ranges.clone(),
        })
    }
}

/// Walks sorted zero ranges alongside chunk indices that only grow: which chunks lie wholly
/// inside one (those are the all-zero chunks).
struct ZeroCursor<'a> {
    zeros: &'a [Range],
    at: usize,
    chunk: u64,
    len: u64,
}

impl<'a> ZeroCursor<'a> {
    fn new(zeros: &'a [Range], chunk: u64, len: u64) -> Self {
        ZeroCursor {
            zeros,
            at: 0,
            chunk,
            len,
        }
    }

    /// Whether chunk `j` is all zero, and how many chunks from `j` on (before `end`, at least
    /// one) share that.
    fn stretch(&mut self, j: u64, end: u64) -> (bool, u64) {
        let r = super::chunk_range(j, self.chunk, self.len);
        // skip the ranges that end before this chunk's end: they cannot hold it whole
        while self.zeros.get(self.at).is_some_and(|z| z.end() < r.end()) {
            self.at = self.at.saturating_add(1);
        }
        let left = end.saturating_sub(j).max(1);
        match self.zeros.get(self.at) {
            Some(z) if z.offset <= r.offset => {
                // chunks j.. whose end is inside z: all of them up to the file end when z
                // reaches it (the last chunk may be short)
                let k = if z.end() >= self.len {
                    left
                } else {
                    z.end()
                        .saturating_sub(r.offset)
                        .checked_div(self.chunk)
                        .unwrap_or(1)
                        .max(1)
                };
                (true, k.min(left))
            }
            Some(z) => {
                // not zero up to the first chunk starting at or after z's start
                let next = z.offset.div_ceil(self.chunk.max(1));
                (false, next.saturating_sub(j).max(1).min(left))
            }
            None => (false, left),
        }
    }
}

/// Runs of equal values: (value, count), in order.
fn runs(values: impl Iterator<Item = u32>) -> impl Iterator<Item = (u32, u64)> {
    let mut values = values.peekable();
    std::iter::from_fn(move || {
        let v = values.next()?;
        let mut n = 1u64;
        while values.next_if_eq(&v).is_some() {
            n = n.saturating_add(1);
        }
        Some((v, n))
    })
}

fn parse_hex(s: &str) -> Result<u32> {
    if s.len() != 8 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(Error::invalid(format!(
            "{s:?} is not a CRC32 (8 hex digits)"
        )));
    }
    u32::from_str_radix(s, 16).map_err(|_| Error::invalid(format!("{s:?} is not a CRC32")))
}

fn check_ranges(field: &str, ranges: &[Range], len: u64) -> Result<()> {
    let mut prev_end = 0u64;
    for (i, r) in ranges.iter().enumerate() {
        let end = r.offset.checked_add(r.length).filter(|&e| e <= len);
        let Some(end) = end else {
            return Err(Error::invalid(format!(
                "{field}[{i}]: 0x{:x}+0x{:x} is outside the file (0x{len:x} bytes)",
                r.offset, r.length
            )));
        };
        if r.length == 0 || (i > 0 && r.offset < prev_end) {
            return Err(Error::invalid(format!(
                "{field}[{i}]: 0x{:x}+0x{:x} is empty, unsorted or overlaps the one before",
                r.offset, r.length
            )));
        }
        prev_end = end;
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects, clippy::as_conversions)]
mod tests {
    use super::super::{map, tests::noise, Source};
    use super::*;

    /// The zero flags of `to_map` (a cursor over the zero ranges, run by run) are those of a
    /// chunk-by-chunk containment test, for ranges that start and end anywhere.
    #[test]
    fn zero_flags_match_a_plain_containment_test() {
        let r = noise(17, 4000);
        for round in 0..40 {
            let (chunk, len) = (512u64, 20_000 + round * 37);
            let mut zeros = Vec::new();
            let mut at = 0u64;
            for k in 0..12 {
                let gap = u64::from(r[round as usize * 24 + k * 2]) * 9;
                let n = u64::from(r[round as usize * 24 + k * 2 + 1]) * 11 + 1;
                let start = at + gap;
                if start + n > len {
                    break;
                }
                zeros.push(Range::new(start, n));
                at = start + n;
            }
            let mut cursor = ZeroCursor::new(&zeros, chunk, len);
            let n = len.div_ceil(chunk);
            let mut j = 0;
            // runs of 7 chunks, as manifest entries would split them
            while j < n {
                let end = (j + 7).min(n);
                let mut i = j;
                while i < end {
                    let (zero, k) = cursor.stretch(i, end);
                    assert!(k >= 1 && i + k <= end);
                    for c in i..i + k {
                        let cr = super::super::chunk_range(c, chunk, len);
                        let want = zeros
                            .iter()
                            .any(|z| z.offset <= cr.offset && z.end() >= cr.end());
                        assert_eq!(zero, want, "round {round}, chunk {c}");
                    }
                    i += k;
                }
                j = end;
            }
        }
    }

    fn sample() -> Manifest {
        let mut data = noise(5, 10_000);
        data[2048..6144].fill(0);
        let mut src = Source::from_slice(&data);
        let m = map(&mut src, 1024, &mut |_, _| {}).unwrap();
        Manifest::new(
            Identity {
                path: "x.raw".into(),
                file_bytes: 10_000,
                format: "raw".into(),
                unique_id: None,
            },
            &m,
        )
    }

    #[test]
    fn round_trip() {
        let m = sample();
        let text = serde_json::to_string_pretty(&m).unwrap();
        let back = Manifest::from_json(&text).unwrap();
        assert_eq!(back, m);
        assert_eq!(back.zero_ranges, vec![Range::new(2048, 4096)]);
        let map = back.to_map().unwrap();
        assert_eq!(map.zero_ranges(), back.zero_ranges);
        assert_eq!(hex(map.whole_crc32), m.whole_crc32);
    }

    #[test]
    fn runs_are_coalesced_and_version_1_is_still_read() {
        // 100 zero chunks, one of data, 50 zero chunks: three entries
        let mut data = vec![0u8; 151 * 512];
        data[100 * 512] = 1;
        let mut src = Source::from_slice(&data);
        let map = map(&mut src, 512, &mut |_, _| {}).unwrap();
        let id = Identity {
            path: "z.raw".into(),
            file_bytes: data.len() as u64,
            format: "raw".into(),
            unique_id: None,
        };
        let m = Manifest::new(id, &map);
        let z = hex(crate::checksum::zero_crc(512));
        assert_eq!(m.chunks.len(), 3, "{:?}", m.chunks);
        assert_eq!(m.chunks[0], format!("{z}*100"));
        assert_eq!(m.chunks[2], format!("{z}*50"));
        let back = Manifest::from_json(&serde_json::to_string(&m).unwrap()).unwrap();
        assert_eq!(back.to_map().unwrap().chunks, map.chunks);
        assert_eq!(back.chunk_count().unwrap(), 151);
        // the same manifest written by version 1: one entry per chunk
        let mut v1 = m.clone();
        v1.version = 1;
        v1.chunks = map.chunks.iter().map(|s| hex(s.crc)).collect();
        let back = Manifest::from_json(&serde_json::to_string(&v1).unwrap()).unwrap();
        assert_eq!(back.to_map().unwrap().chunks, map.chunks);
        // runs in a version-1 manifest, bad counts, counts past the file: refused
        let mut bad = m.clone();
        bad.version = 1;
        assert!(Manifest::from_json(&serde_json::to_string(&bad).unwrap()).is_err());
        for run in [
            "*1",
            "*0",
            "*",
            "*-3",
            "*007",
            "*x",
            "*99999999999999999999",
        ] {
            let mut bad = m.clone();
            bad.chunks[2] = format!("{z}{run}");
            let e = Manifest::from_json(&serde_json::to_string(&bad).unwrap()).unwrap_err();
            assert!(
                e.to_string().contains("chunks[2]") || e.to_string().contains("lists"),
                "{run}: {e}"
            );
        }
        let mut bad = m;
        bad.chunks[2] = format!("{z}*{}", 1u64 << 40);
        assert!(Manifest::from_json(&serde_json::to_string(&bad).unwrap()).is_err());
    }

    #[test]
    fn hostile_manifests_are_refused() {
        let good = serde_json::to_value(sample()).unwrap();
        let cases: Vec<(&str, serde_json::Value, &str)> = vec![
            ("manifest", "other".into(), "expected"),
            ("version", 3.into(), "version 3"),
            ("algorithm", "md5".into(), "algorithm"),
            ("chunk_bytes", 0.into(), "chunk size"),
            ("chunk_bytes", 1000.into(), "chunk size"),
            ("chunk_bytes", u64::MAX.into(), "chunk size"),
            ("whole_crc32", "xyz".into(), "8 hex digits"),
            ("whole_crc32", "00000000".into(), "altered"),
            ("chunks", serde_json::json!(["00000000"]), "chunk CRCs"),
            (
                "zero_ranges",
                serde_json::json!([{"offset": u64::MAX, "length": 2}]),
                "outside",
            ),
            (
                "hole_ranges",
                serde_json::json!([{"offset": 0, "length": 100}, {"offset": 50, "length": 1}]),
                "overlaps",
            ),
            ("image", serde_json::json!({"path": "x"}), "missing field"),
        ];
        for (field, value, expect) in cases {
            let mut v = good.clone();
            v[field] = value;
            let e = Manifest::from_json(&v.to_string()).unwrap_err();
            assert!(
                e.to_string().contains(expect),
                "{field}: {e} (expected {expect:?})"
            );
        }
        // a huge claimed size with few chunks: refused by the count, nothing allocated
        let mut v = good.clone();
        v["image"]["file_bytes"] = u64::MAX.into();
        assert!(Manifest::from_json(&v.to_string()).is_err());
        let mut v = good.clone();
        v["chunks"][3] = "12345678zz".into();
        assert!(Manifest::from_json(&v.to_string()).is_err());
        for junk in ["", "[]", "{", "null", "{\"manifest\": [[[[[[]]]]]]}"] {
            assert!(Manifest::from_json(junk).is_err(), "{junk:?}");
        }
        let deep = "[".repeat(100_000);
        assert!(Manifest::from_json(&deep).is_err());
    }
}
