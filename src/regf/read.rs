//! A bounded reader of registry hives: keys by path, values by name, as Windows compares names
//! (case-insensitively, see [`super::raw::names_equal`]).
//!
//! Every offset is checked against the hive bins it must lie in, every list against the cell
//! that holds it, and walks are bounded ([`MAX_DEPTH`], visited sets), so hostile bytes give an
//! [`Error`] of kind Corrupt, never a panic or a loop.

use std::collections::HashSet;

use zerocopy::FromBytes;

use super::raw::*;
use super::{Key, Value};
use crate::error::{Error, Result};

/// Deepest key nesting followed (Windows limits key paths to 512 levels).
pub const MAX_DEPTH: usize = 512;
/// Most segments a big data record may list (16344 * 65535 bytes is already 1 GiB).
pub const MAX_BIG_DATA_SEGMENTS: usize = 65535;

/// A hive opened for reading: the file bytes, checked base block and hive bin map.
#[derive(Debug, Clone)]
pub struct Hive<'a> {
    file: &'a [u8],
    bins: &'a [u8],
    base: RawBaseBlock,
    /// Start offset of every hive bin (relative to the bins data), ascending.
    bin_starts: Vec<usize>,
}

/// A key node read from the hive (names decoded, offsets not yet followed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyNode {
    /// Cell offset of the nk record.
    pub offset: u32,
    pub name: String,
    pub flags: u16,
    pub subkey_count: u32,
    pub subkey_list: u32,
    pub value_count: u32,
    pub value_list: u32,
    pub security: u32,
    pub last_written: u64,
}

/// A value record read from the hive (its data not yet read).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValueNode {
    /// Cell offset of the vk record.
    pub offset: u32,
    /// The value name ("" for the default value).
    pub name: String,
    /// REG_* type.
    pub data_type: u32,
    /// Data length in bytes (without the inline bit).
    pub data_size: u32,
    /// The data sits in the vk record itself (at most 4 bytes).
    pub inline: bool,
    /// Cell offset of the data (or the inline bytes).
    pub data_offset: u32,
}

/// Where a value's data lives, for the in-place patcher.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataCell {
    /// In the vk record.
    Inline,
    /// In one cell: its offset and its usable length (cell size minus the size field).
    Cell { offset: u32, capacity: u32 },
    /// In a big data record (db).
    BigData { offset: u32 },
}

fn corrupt(what: impl std::fmt::Display) -> Error {
    Error::corrupt(format!("registry hive: {what}"))
}

fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    let end = at.checked_add(4)?;
    let b: [u8; 4] = bytes.get(at..end)?.try_into().ok()?;
    Some(u32::from_le_bytes(b))
}

fn usize_of(v: u32) -> usize {
    // u32 always fits usize on the 32/64-bit targets this crate builds for
    usize::try_from(v).unwrap_or(usize::MAX)
}

/// Decode a name as stored: Latin-1 bytes when `compressed`, else UTF-16LE (lossy).
pub fn decode_name(raw: &[u8], compressed: bool) -> String {
    if compressed {
        raw.iter().map(|&b| char::from(b)).collect()
    } else {
        let units: Vec<u16> = raw
            .chunks_exact(2)
            .map(|c| {
                u16::from_le_bytes([
                    c.first().copied().unwrap_or(0),
                    c.get(1).copied().unwrap_or(0),
                ])
            })
            .collect();
        String::from_utf16_lossy(&units)
    }
}

impl<'a> Hive<'a> {
    /// Check the base block (signature, checksum, version, type, sizes) and the hive bin chain.
    /// A dirty hive (sequence numbers differ) opens; see [`Hive::is_dirty`].
    pub fn parse(file: &'a [u8]) -> Result<Hive<'a>> {
        let (base, _) = RawBaseBlock::read_from_prefix(file).map_err(|_| {
            corrupt(format!(
                "file is {} bytes, shorter than the 512-byte base block",
                file.len()
            ))
        })?;
        if base.signature != REGF_SIGNATURE {
            return Err(corrupt(format!(
                "base block at 0x0: signature is {:02x?}, expected \"regf\"",
                base.signature
            )));
        }
        let computed = base_block_checksum(file).unwrap_or(0);
        if computed != base.checksum.get() {
            return Err(corrupt(format!(
                "base block at 0x1fc: checksum is {:#010x}, computed {computed:#010x}",
                base.checksum.get()
            )));
        }
        if base.major_version.get() != 1 || base.minor_version.get() > 6 {
            return Err(Error::unsupported(format!(
                "registry hive: version {}.{}, expected 1.0 to 1.6",
                base.major_version.get(),
                base.minor_version.get()
            )));
        }
        if base.file_type.get() != FILE_TYPE_PRIMARY {
            return Err(Error::unsupported(format!(
                "registry hive: file type {} at 0x1c, expected 0 (a primary hive file)",
                base.file_type.get()
            )));
        }
        let size = usize_of(base.hive_bins_data_size.get());
        if size == 0 || !size.is_multiple_of(HBIN_ALIGN) {
            return Err(corrupt(format!(
                "base block at 0x28: hive bins data size {size:#x} is not a positive multiple of 0x1000"
            )));
        }
        let bins = BASE_BLOCK_BYTES
            .checked_add(size)
            .and_then(|end| file.get(BASE_BLOCK_BYTES..end))
            .ok_or_else(|| {
                corrupt(format!(
                    "base block at 0x28: hive bins data size {size:#x} runs past the end of the {}-byte file",
                    file.len()
                ))
            })?;
        let mut bin_starts = Vec::new();
        let mut at = 0usize;
        while at < bins.len() {
            let (hb, _) = bins
                .get(at..)
                .and_then(|b| RawHbin::read_from_prefix(b).ok())
                .ok_or_else(|| corrupt(format!("hive bin at {at:#x}: truncated")))?;
            if hb.signature != HBIN_SIGNATURE {
                return Err(corrupt(format!(
                    "hive bin at {at:#x}: signature {:02x?}, expected \"hbin\"",
                    hb.signature
                )));
            }
            if usize_of(hb.offset.get()) != at {
                return Err(corrupt(format!(
                    "hive bin at {at:#x}: says it is at {:#x}",
                    hb.offset.get()
                )));
            }
            let bin_size = usize_of(hb.size.get());
            let end = at.checked_add(bin_size).filter(|&e| e <= bins.len());
            match end {
                Some(end) if bin_size != 0 && bin_size.is_multiple_of(HBIN_ALIGN) => {
                    bin_starts.push(at);
                    at = end;
                }
                _ => {
                    return Err(corrupt(format!(
                        "hive bin at {at:#x}: size {bin_size:#x} is not a positive multiple of 0x1000 inside the {:#x} bytes of hive bins",
                        bins.len()
                    )))
                }
            }
        }
        Ok(Hive {
            file,
            bins,
            base,
            bin_starts,
        })
    }

    /// The whole file this hive was parsed from.
    pub fn file(&self) -> &'a [u8] {
        self.file
    }
    /// The hive bins data (file offset 0x1000 onwards, as long as the base block says).
    pub fn bins(&self) -> &'a [u8] {
        self.bins
    }
    /// Primary and secondary sequence numbers.
    pub fn sequence(&self) -> (u32, u32) {
        (
            self.base.primary_sequence.get(),
            self.base.secondary_sequence.get(),
        )
    }
    /// A hive is dirty when its sequence numbers differ: a write was not completed, and the
    /// transaction logs hold data the primary file lacks.
    pub fn is_dirty(&self) -> bool {
        let (p, s) = self.sequence();
        p != s
    }
    pub fn minor_version(&self) -> u32 {
        self.base.minor_version.get()
    }
    /// The base block as read.
    pub fn base_block(&self) -> &RawBaseBlock {
        &self.base
    }
    /// Start offsets of the hive bins (relative to the bins data).
    pub fn bin_starts(&self) -> &[usize] {
        &self.bin_starts
    }

    /// The bin holding `offset`: (start, end).
    fn bin_of(&self, offset: usize) -> Option<(usize, usize)> {
        let i = self
            .bin_starts
            .partition_point(|&s| s <= offset)
            .checked_sub(1)?;
        let start = *self.bin_starts.get(i)?;
        let end = self
            .bin_starts
            .get(i.checked_add(1)?)
            .copied()
            .unwrap_or(self.bins.len());
        Some((start, end))
    }

    /// Raw cell at `offset`: its signed size and its body (after the size field). The cell must
    /// lie inside one hive bin, after the bin header, 8-byte aligned.
    pub fn raw_cell(&self, offset: u32) -> Result<(i32, &'a [u8])> {
        let off = usize_of(offset);
        let (start, end) = self
            .bin_of(off)
            .ok_or_else(|| corrupt(format!("cell offset {offset:#x} is outside the hive bins")))?;
        if !off.is_multiple_of(8) || off < start.saturating_add(HBIN_HEADER_BYTES) {
            return Err(corrupt(format!(
                "cell offset {offset:#x} is not an 8-byte aligned cell of the bin at {start:#x}"
            )));
        }
        let size = u32_at(self.bins, off)
            .map(|v| i32::from_le_bytes(v.to_le_bytes()))
            .ok_or_else(|| corrupt(format!("cell at {offset:#x}: truncated size")))?;
        let len = usize_of(size.unsigned_abs());
        let cell_end = off.checked_add(len).filter(|&e| e <= end && len >= 8);
        let Some(cell_end) = cell_end else {
            return Err(corrupt(format!(
                "cell at {offset:#x}: size {size} overflows its hive bin ({start:#x}..{end:#x})"
            )));
        };
        let body = self
            .bins
            .get(off.saturating_add(4)..cell_end)
            .ok_or_else(|| corrupt(format!("cell at {offset:#x}: truncated")))?;
        Ok((size, body))
    }

    /// Body of the allocated cell at `offset`.
    pub fn cell(&self, offset: u32) -> Result<&'a [u8]> {
        let (size, body) = self.raw_cell(offset)?;
        if size >= 0 {
            return Err(corrupt(format!(
                "cell at {offset:#x} is referenced but free (size {size})"
            )));
        }
        Ok(body)
    }

    /// The root key (base block 0x24).
    pub fn root(&self) -> Result<KeyNode> {
        self.key(self.base.root_cell_offset.get())
    }

    /// The key node at `offset`.
    pub fn key(&self, offset: u32) -> Result<KeyNode> {
        let body = self.cell(offset)?;
        let (nk, rest) = RawNk::ref_from_prefix(body)
            .map_err(|_| corrupt(format!("key node at {offset:#x}: cell too small")))?;
        if nk.signature != NK_SIGNATURE {
            return Err(corrupt(format!(
                "key node at {offset:#x}: signature {:02x?}, expected \"nk\"",
                nk.signature
            )));
        }
        let name = rest
            .get(..usize::from(nk.name_length.get()))
            .ok_or_else(|| {
                corrupt(format!(
                    "key node at {offset:#x}: name of {} bytes overflows the cell",
                    nk.name_length.get()
                ))
            })?;
        let flags = nk.flags.get();
        Ok(KeyNode {
            offset,
            name: decode_name(name, flags & KEY_COMP_NAME != 0),
            flags,
            subkey_count: nk.subkey_count.get(),
            subkey_list: nk.subkey_list.get(),
            value_count: nk.value_count.get(),
            value_list: nk.value_list.get(),
            security: nk.security.get(),
            last_written: nk.last_written.get(),
        })
    }

    /// Offsets of the key nodes a subkey list names (lf, lh, li, or ri of those).
    fn list_offsets(&self, list: u32, out: &mut Vec<u32>, allow_ri: bool) -> Result<()> {
        let body = self.cell(list)?;
        let (hdr, rest) = RawListHeader::ref_from_prefix(body)
            .map_err(|_| corrupt(format!("subkey list at {list:#x}: cell too small")))?;
        let count = usize::from(hdr.count.get());
        match hdr.signature {
            LF_SIGNATURE | LH_SIGNATURE => {
                let (entries, _) = <[RawHashEntry]>::ref_from_prefix_with_elems(rest, count)
                    .map_err(|_| {
                        corrupt(format!(
                            "subkey list at {list:#x}: {count} entries overflow the cell"
                        ))
                    })?;
                out.extend(entries.iter().map(|e| e.key_node.get()));
            }
            LI_SIGNATURE => {
                let (entries, _) =
                    <[zerocopy::little_endian::U32]>::ref_from_prefix_with_elems(rest, count)
                        .map_err(|_| {
                            corrupt(format!(
                                "subkey list at {list:#x}: {count} entries overflow the cell"
                            ))
                        })?;
                out.extend(entries.iter().map(|e| e.get()));
            }
            RI_SIGNATURE if allow_ri => {
                let (entries, _) =
                    <[zerocopy::little_endian::U32]>::ref_from_prefix_with_elems(rest, count)
                        .map_err(|_| {
                            corrupt(format!(
                                "index root at {list:#x}: {count} entries overflow the cell"
                            ))
                        })?;
                for e in entries {
                    self.list_offsets(e.get(), out, false)?;
                }
            }
            sig => {
                return Err(corrupt(format!(
                    "subkey list at {list:#x}: signature {sig:02x?}, expected lf, lh, li or ri (ri not nested)"
                )))
            }
        }
        Ok(())
    }

    /// The subkeys of `key`, in list order. Each may appear once; the count must match the nk.
    pub fn subkeys(&self, key: &KeyNode) -> Result<Vec<KeyNode>> {
        if key.subkey_count == 0 {
            return Ok(Vec::new());
        }
        let mut offsets = Vec::new();
        self.list_offsets(key.subkey_list, &mut offsets, true)?;
        if offsets.len() != usize_of(key.subkey_count) {
            return Err(corrupt(format!(
                "key node at {:#x}: {} subkeys, its list at {:#x} names {}",
                key.offset,
                key.subkey_count,
                key.subkey_list,
                offsets.len()
            )));
        }
        let mut seen = HashSet::with_capacity(offsets.len());
        offsets
            .into_iter()
            .map(|o| {
                if o == key.offset || !seen.insert(o) {
                    return Err(corrupt(format!(
                        "subkey list at {:#x}: key node {o:#x} listed twice (a loop)",
                        key.subkey_list
                    )));
                }
                self.key(o)
            })
            .collect()
    }

    /// The subkey of `key` named `name` (case-insensitive).
    pub fn subkey(&self, key: &KeyNode, name: &str) -> Result<Option<KeyNode>> {
        Ok(self
            .subkeys(key)?
            .into_iter()
            .find(|k| names_equal(&k.name, name)))
    }

    /// The key at `path` below the root ("Objects\\{...}\\Elements"; empty components are
    /// ignored, so "" and "\\" give the root).
    pub fn open(&self, path: &str) -> Result<Option<KeyNode>> {
        let mut key = self.root()?;
        for (depth, comp) in path.split('\\').filter(|c| !c.is_empty()).enumerate() {
            if depth >= MAX_DEPTH {
                return Err(Error::invalid(format!(
                    "registry path {path:?} is deeper than {MAX_DEPTH} keys"
                )));
            }
            match self.subkey(&key, comp)? {
                Some(k) => key = k,
                None => return Ok(None),
            }
        }
        Ok(Some(key))
    }

    /// The values of `key`, in list order.
    pub fn values(&self, key: &KeyNode) -> Result<Vec<ValueNode>> {
        if key.value_count == 0 {
            return Ok(Vec::new());
        }
        let body = self.cell(key.value_list)?;
        let count = usize_of(key.value_count);
        let (entries, _) = <[zerocopy::little_endian::U32]>::ref_from_prefix_with_elems(
            body, count,
        )
        .map_err(|_| {
            corrupt(format!(
                "value list at {:#x}: {count} entries overflow the cell",
                key.value_list
            ))
        })?;
        entries.iter().map(|e| self.value_node(e.get())).collect()
    }

    /// The value record at `offset`.
    pub fn value_node(&self, offset: u32) -> Result<ValueNode> {
        let body = self.cell(offset)?;
        let (vk, rest) = RawVk::ref_from_prefix(body)
            .map_err(|_| corrupt(format!("value at {offset:#x}: cell too small")))?;
        if vk.signature != VK_SIGNATURE {
            return Err(corrupt(format!(
                "value at {offset:#x}: signature {:02x?}, expected \"vk\"",
                vk.signature
            )));
        }
        let name = rest
            .get(..usize::from(vk.name_length.get()))
            .ok_or_else(|| corrupt(format!("value at {offset:#x}: name overflows the cell")))?;
        let raw_size = vk.data_size.get();
        Ok(ValueNode {
            offset,
            name: decode_name(name, vk.flags.get() & VALUE_COMP_NAME != 0),
            data_type: vk.data_type.get(),
            data_size: raw_size & !DATA_INLINE,
            inline: raw_size & DATA_INLINE != 0,
            data_offset: vk.data_offset.get(),
        })
    }

    /// The value of `key` named `name` (case-insensitive; "" is the default value).
    pub fn value(&self, key: &KeyNode, name: &str) -> Result<Option<ValueNode>> {
        Ok(self
            .values(key)?
            .into_iter()
            .find(|v| names_equal(&v.name, name)))
    }

    /// Where the data of `v` is stored.
    pub fn data_cell(&self, v: &ValueNode) -> Result<DataCell> {
        if v.inline {
            if v.data_size > 4 {
                return Err(corrupt(format!(
                    "value at {:#x}: inline data of {} bytes (at most 4 fit)",
                    v.offset, v.data_size
                )));
            }
            return Ok(DataCell::Inline);
        }
        if v.data_size == 0 {
            return Ok(DataCell::Inline);
        }
        let body = self.cell(v.data_offset)?;
        let big = self.minor_version() >= 4
            && usize_of(v.data_size) > BIG_DATA_SEGMENT_BYTES
            && body.get(..2) == Some(&DB_SIGNATURE[..]);
        if big {
            return Ok(DataCell::BigData {
                offset: v.data_offset,
            });
        }
        if usize_of(v.data_size) > body.len() {
            return Err(corrupt(format!(
                "value at {:#x}: {} bytes of data in a cell of {} at {:#x}",
                v.offset,
                v.data_size,
                body.len(),
                v.data_offset
            )));
        }
        Ok(DataCell::Cell {
            offset: v.data_offset,
            capacity: u32::try_from(body.len()).unwrap_or(u32::MAX),
        })
    }

    /// The data of `v` (inline, one cell, or big data segments).
    pub fn value_data(&self, v: &ValueNode) -> Result<Vec<u8>> {
        let size = usize_of(v.data_size);
        match self.data_cell(v)? {
            DataCell::Inline => Ok(v
                .data_offset
                .to_le_bytes()
                .get(..size)
                .map(<[u8]>::to_vec)
                .unwrap_or_default()),
            DataCell::Cell { offset, .. } => {
                let body = self.cell(offset)?;
                Ok(body.get(..size).map(<[u8]>::to_vec).unwrap_or_default())
            }
            DataCell::BigData { offset } => self.big_data(offset, size),
        }
    }

    fn big_data(&self, offset: u32, size: usize) -> Result<Vec<u8>> {
        let body = self.cell(offset)?;
        let (db, _) = RawDb::ref_from_prefix(body)
            .map_err(|_| corrupt(format!("big data at {offset:#x}: cell too small")))?;
        let count = usize::from(db.segment_count.get());
        if count > MAX_BIG_DATA_SEGMENTS {
            return Err(corrupt(format!(
                "big data at {offset:#x}: {count} segments"
            )));
        }
        let list = self.cell(db.segment_list.get())?;
        let (segments, _) = <[zerocopy::little_endian::U32]>::ref_from_prefix_with_elems(
            list, count,
        )
        .map_err(|_| {
            corrupt(format!(
                "big data at {offset:#x}: {count} segments overflow the list cell"
            ))
        })?;
        // bounded by the bytes the hive holds: the segments are cells of this hive
        let mut out = Vec::with_capacity(size.min(self.bins.len()));
        for s in segments {
            if out.len() >= size {
                break;
            }
            let seg = self.cell(s.get())?;
            let take = (size.saturating_sub(out.len()))
                .min(BIG_DATA_SEGMENT_BYTES)
                .min(seg.len());
            out.extend_from_slice(seg.get(..take).unwrap_or_default());
        }
        if out.len() != size {
            return Err(corrupt(format!(
                "big data at {offset:#x}: segments hold {} bytes, the value says {size}",
                out.len()
            )));
        }
        Ok(out)
    }

    /// The whole hive as an owned tree (for the writer, comparisons and tests). Bounded: every
    /// key node is visited once (a second visit is a loop), depth at most [`MAX_DEPTH`].
    pub fn read_tree(&self) -> Result<Key> {
        let root = self.root()?;
        let mut seen = HashSet::new();
        seen.insert(root.offset);
        self.tree_of(&root, 0, &mut seen)
    }

    fn tree_of(&self, node: &KeyNode, depth: usize, seen: &mut HashSet<u32>) -> Result<Key> {
        if depth >= MAX_DEPTH {
            return Err(corrupt(format!(
                "key node at {:#x} is deeper than {MAX_DEPTH} keys",
                node.offset
            )));
        }
        let mut key = Key::new(&node.name);
        for v in self.values(node)? {
            key.values.push(Value {
                data: self.value_data(&v)?,
                name: v.name,
                data_type: v.data_type,
            });
        }
        for sub in self.subkeys(node)? {
            if !seen.insert(sub.offset) {
                return Err(corrupt(format!(
                    "key node at {:#x} is reached twice (a loop in the subkey lists)",
                    sub.offset
                )));
            }
            key.subkeys
                .push(self.tree_of(&sub, depth.saturating_add(1), seen)?);
        }
        Ok(key)
    }
}
