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
    /// consecutive chunks with that CRC. The last chunk may be shorter. Held as runs (8 bytes
    /// an entry), never as strings.
    pub chunks: ChunkList,
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
        Manifest::from_map(identity, map.clone())
    }

    /// The manifest of a map, its chunk list taken over (no copy of the runs).
    pub fn from_map(identity: Identity, map: ChecksumMap) -> Manifest {
        Manifest {
            manifest: MAGIC.into(),
            version: VERSION,
            image: identity,
            algorithm: ALGORITHM.into(),
            chunk_bytes: map.chunk_bytes,
            whole_crc32: hex(map.whole_crc32),
            zero_ranges: map.zero_ranges(),
            chunks: ChunkList {
                sums: map.chunks,
                starred: false,
            },
            hole_ranges: map.holes,
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
    /// The file is parsed as it is read (its text is never held whole), at most
    /// [`MAX_MANIFEST_BYTES`] of it.
    pub fn read(path: &Path) -> Result<Manifest> {
        use std::io::Read;
        let shown = path.display();
        let file = crate::disk::open_regular(path, false).map_err(|e| e.into_error(path))?;
        let size = file
            .metadata()
            .map_err(|e| Error::io(format!("reading metadata of {shown}"), e))?
            .len();
        if size > MAX_MANIFEST_BYTES {
            return Err(Error::invalid(format!(
                "{shown}: larger than {MAX_MANIFEST_BYTES} bytes, more than a manifest can hold"
            )));
        }
        let reader = std::io::BufReader::with_capacity(64 << 10, file.take(MAX_MANIFEST_BYTES));
        let m: Manifest = serde_json::from_reader(reader).map_err(|e| {
            if e.is_io() {
                Error::io(format!("reading {shown}"), std::io::Error::other(e))
            } else {
                Error::invalid(format!("{shown}: not a vhdtool checksum manifest: {e}"))
            }
        })?;
        m.check().map_err(|e| e.context(shown))?;
        Ok(m)
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
        if self.version < 2 && self.chunks.starred {
            return Err(Error::invalid(
                "chunks: a run of chunks (CRC*N) needs manifest version 2",
            ));
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
        let computed = whole_crc_runs(self.chunks.runs(), self.chunk_bytes, len);
        if whole != computed {
            return Err(Error::invalid(format!(
                "whole_crc32 is {whole:08x} but the chunk CRCs combine to {computed:08x}: the manifest was altered"
            )));
        }
        check_ranges("zero_ranges", &self.zero_ranges, len)?;
        check_ranges("hole_ranges", &self.hole_ranges, len)?;
        Ok(())
    }

    /// The number of chunks the entries stand for (runs counted; bounded by [`MAX_CHUNKS`] when
    /// read).
    pub fn chunk_count(&self) -> Result<u64> {
        Ok(self.chunks.sums.len())
    }

    /// The manifest as a map (zero flags from `zero_ranges`), its runs kept as runs.
    pub fn to_map(&self) -> Result<ChecksumMap> {
        let (chunk, len) = (self.chunk_bytes, self.image.file_bytes);
        let mut chunks = Sums::new();
        let mut zeros = ZeroCursor::new(&self.zero_ranges, chunk, len);
        let mut first = 0u64;
        for (crc, n) in self.chunks.runs() {
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

/// The chunk list of a manifest: runs of equal CRCs, 8 bytes an entry in memory, written as
/// JSON strings ("xxxxxxxx", or "xxxxxxxx*N" for a run) and read back without holding them.
#[derive(Debug, Clone, Default)]
pub struct ChunkList {
    /// The CRCs (zero flags, when taken over from a map, are ignored: the manifest keeps zero
    /// ranges apart, and runs of one CRC are one entry whatever their flags).
    sums: Sums,
    /// An entry was read in the run form ("*N"), which version 1 does not have.
    starred: bool,
}

impl PartialEq for ChunkList {
    fn eq(&self, other: &Self) -> bool {
        self.runs().eq(other.runs())
    }
}

impl Eq for ChunkList {}

impl ChunkList {
    /// The CRCs of a map's chunks.
    pub fn from_sums(sums: &Sums) -> ChunkList {
        let mut out = ChunkList::default();
        for (s, _, n) in sums.runs() {
            out.push(s.crc, n);
        }
        out
    }

    /// One entry per chunk (as version 1 writes them).
    pub fn one_per_chunk(&self) -> Vec<String> {
        self.runs()
            .flat_map(|(crc, n)| std::iter::repeat_n(hex(crc), usize::try_from(n).unwrap_or(0)))
            .collect()
    }

    fn push(&mut self, crc: u32, n: u64) {
        self.sums.push_n(Sum { crc, zero: false }, n);
    }

    /// `(crc, chunks)` per entry, runs of one CRC merged.
    pub fn runs(&self) -> impl Iterator<Item = (u32, u64)> + '_ {
        let mut it = self.sums.runs().map(|(s, _, n)| (s.crc, n)).peekable();
        std::iter::from_fn(move || {
            let (crc, mut n) = it.next()?;
            while let Some((_, more)) = it.next_if(|(c, _)| *c == crc) {
                n = n.saturating_add(more);
            }
            Some((crc, n))
        })
    }

    /// The number of entries written.
    pub fn len(&self) -> usize {
        self.runs().count()
    }

    pub fn is_empty(&self) -> bool {
        self.sums.is_empty()
    }

    /// Entry `i` as written.
    pub fn entry_text(&self, i: usize) -> Option<String> {
        self.runs().nth(i).map(|(crc, n)| entry_text(crc, n))
    }
}

fn entry_text(crc: u32, n: u64) -> String {
    if n == 1 {
        hex(crc)
    } else {
        format!("{}*{n}", hex(crc))
    }
}

impl Serialize for ChunkList {
    fn serialize<S: serde::Serializer>(&self, ser: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        let mut seq = ser.serialize_seq(None)?;
        for (crc, n) in self.runs() {
            seq.serialize_element(&entry_text(crc, n))?;
        }
        seq.end()
    }
}

impl<'de> Deserialize<'de> for ChunkList {
    fn deserialize<D: serde::Deserializer<'de>>(de: D) -> std::result::Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = ChunkList;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a list of CRC32 entries (\"xxxxxxxx\" or \"xxxxxxxx*N\")")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> std::result::Result<ChunkList, A::Error> {
                use serde::de::Error as _;
                let mut out = ChunkList::default();
                let mut i = 0usize;
                // each entry parsed as it is read: never a list of strings
                while let Some(text) = seq.next_element::<std::borrow::Cow<'de, str>>()? {
                    let (crc, n, starred) = parse_entry(&text)
                        .map_err(|e| A::Error::custom(format!("chunks[{i}]: {e}")))?;
                    if out.sums.len().saturating_add(n) > MAX_CHUNKS {
                        return Err(A::Error::custom(format!(
                            "manifest lists more than {MAX_CHUNKS} chunk CRCs"
                        )));
                    }
                    out.starred |= starred;
                    out.push(crc, n);
                    i = i.saturating_add(1);
                }
                Ok(out)
            }
        }
        de.deserialize_seq(Visit)
    }
}

/// One entry: a CRC, how many chunks it stands for, and whether it was written as a run.
fn parse_entry(s: &str) -> Result<(u32, u64, bool)> {
    match s.split_once('*') {
        None => Ok((parse_hex(s)?, 1, false)),
        Some((crc, n)) => {
            let n: u64 = Some(n)
                .filter(|t| !t.starts_with('0'))
                .and_then(|t| t.parse().ok())
                .filter(|n| (2..=MAX_CHUNKS).contains(n))
                .ok_or_else(|| {
                    Error::invalid(format!(
                        "{s:?}: a run is CRC*N with N from 2 to {MAX_CHUNKS}"
                    ))
                })?;
            Ok((parse_hex(crc)?, n, true))
        }
    }
}

/// A CRC as the manifest writes it (8 hex digits).
pub fn parse_crc(s: &str) -> Result<u32> {
    parse_hex(s)
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
        let json = serde_json::to_value(&m).unwrap();
        let entries = json["chunks"].as_array().unwrap();
        assert_eq!(entries.len(), 3, "{entries:?}");
        assert_eq!(m.chunks.len(), 3);
        assert_eq!(entries[0], format!("{z}*100").as_str());
        assert_eq!(entries[2], format!("{z}*50").as_str());
        assert_eq!(m.chunks.entry_text(2), Some(format!("{z}*50")));
        let back = Manifest::from_json(&serde_json::to_string(&m).unwrap()).unwrap();
        assert_eq!(back.to_map().unwrap().chunks, map.chunks);
        assert_eq!(back.chunk_count().unwrap(), 151);
        // the same manifest written by version 1: one entry per chunk
        let mut v1 = json.clone();
        v1["version"] = 1.into();
        v1["chunks"] = m.chunks.one_per_chunk().into();
        assert_eq!(v1["chunks"].as_array().unwrap().len(), 151);
        let back = Manifest::from_json(&v1.to_string()).unwrap();
        assert_eq!(back.to_map().unwrap().chunks, map.chunks);
        assert_eq!(back.chunks, m.chunks);
        // runs in a version-1 manifest, bad counts, counts past the file: refused
        let mut bad = json.clone();
        bad["version"] = 1.into();
        let e = Manifest::from_json(&bad.to_string()).unwrap_err();
        assert!(e.to_string().contains("version 2"), "{e}");
        for run in [
            "*1",
            "*0",
            "*",
            "*-3",
            "*007",
            "*x",
            "*99999999999999999999",
        ] {
            let mut bad = json.clone();
            bad["chunks"][2] = format!("{z}{run}").into();
            let e = Manifest::from_json(&bad.to_string()).unwrap_err();
            assert!(e.to_string().contains("chunks[2]"), "{run}: {e}");
        }
        let mut bad = json.clone();
        bad["chunks"][2] = format!("{z}*{}", 1u64 << 40).into();
        assert!(Manifest::from_json(&bad.to_string()).is_err());
        // entries that add up past MAX_CHUNKS are refused as they are read
        let mut bad = json;
        bad["chunks"] = vec![format!("{z}*{MAX_CHUNKS}"), format!("{z}*2")].into();
        let e = Manifest::from_json(&bad.to_string()).unwrap_err();
        assert!(e.to_string().contains("more than"), "{e}");
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
