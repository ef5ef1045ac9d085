//! The parts of the NTFS format the shrink edits: MFT records (update sequence fixups),
//! attribute headers and runlists (mapping pairs). Layouts from ntfs-3g `layout.h` and the
//! Linux-NTFS "NTFS Documentation" (Russon & Fledel), "Attribute - Non-resident" and "Data runs".
//!
//! Every record is untrusted: offsets and lengths are checked against the record before use,
//! and walks are bounded by the record size.
use zerocopy::{FromBytes, FromZeros, IntoBytes};

use crate::bytes::le_u16;
use crate::error::{Error, Result};
use crate::fs::ntfs::apply_fixup;
use crate::fs::ntfs::raw::{
    RawAttrHeader, RawMftRecord, RawNonResidentAttr, RawResidentAttr, ATTR_END, FILE_MAGIC,
    MFT_RECORD_IN_USE, USA_STRIDE,
};

/// One attribute of a record: where it is and what it is.
#[derive(Debug, Clone)]
pub(crate) struct Attr {
    /// Offset of the attribute record inside the MFT record.
    pub offset: usize,
    pub length: usize,
    pub kind: u32,
    pub non_resident: bool,
    pub flags: u16,
    /// UTF-16 name ("$Bad"); empty for the unnamed stream.
    pub name: Vec<u16>,
}

/// One run of a runlist: `len` clusters from `vcn`, at `lcn`, or a hole (`lcn` None).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Run {
    pub vcn: u64,
    pub lcn: Option<u64>,
    pub len: u64,
}

/// An MFT record read from the volume, with the update sequence removed.
#[derive(Debug, Clone)]
pub(crate) struct Record {
    /// MFT record number.
    pub number: u64,
    /// Byte offset of the record in the partition.
    pub offset: u64,
    /// The record with its fixups applied (sector tails restored).
    pub bytes: Vec<u8>,
}

fn corrupt(rec: u64, what: impl std::fmt::Display) -> Error {
    Error::corrupt(format!("NTFS MFT record {rec}: {what}"))
}

impl Record {
    /// Check the header and apply the update sequence. `raw` is one record as stored.
    pub fn parse(number: u64, offset: u64, mut raw: Vec<u8>) -> Result<Record> {
        let (hdr, _) = RawMftRecord::read_from_prefix(&raw)
            .map_err(|_| corrupt(number, "shorter than its header"))?;
        if &hdr.magic != FILE_MAGIC {
            return Err(corrupt(
                number,
                format!("magic is {:02x?}, expected \"FILE\"", hdr.magic),
            ));
        }
        if apply_fixup(&mut raw).is_none() {
            return Err(corrupt(
                number,
                "update sequence does not match (torn or damaged record)",
            ));
        }
        let rec = Record {
            number,
            offset,
            bytes: raw,
        };
        let in_use = rec.bytes_in_use();
        let attrs = usize::from(hdr.attrs_offset.get());
        if in_use > rec.bytes.len() || attrs >= in_use {
            return Err(corrupt(
                number,
                format!(
                    "bytes in use {in_use:#x} / first attribute {attrs:#x} do not fit the {:#x}-byte record",
                    rec.bytes.len()
                ),
            ));
        }
        if hdr.flags.get() & MFT_RECORD_IN_USE == 0 {
            return Err(corrupt(number, "record is not in use"));
        }
        Ok(rec)
    }

    fn header(&self) -> RawMftRecord {
        // OK: parse() checked the record is at least a header long; fall back to zeroes anyway
        RawMftRecord::read_from_prefix(&self.bytes)
            .map(|(h, _)| h)
            .unwrap_or_else(|_| RawMftRecord::new_zeroed())
    }

    fn bytes_in_use(&self) -> usize {
        usize::try_from(self.header().bytes_in_use.get()).unwrap_or(usize::MAX)
    }

    /// The base record this is an extension of (0 for a base record).
    pub fn base_record(&self) -> u64 {
        self.header().base_mft_record.get() & 0x0000_FFFF_FFFF_FFFF
    }

    /// The attributes of this record, in order (bounded by the record size).
    pub fn attributes(&self) -> Result<Vec<Attr>> {
        let limit = self.bytes_in_use();
        let mut off = usize::from(self.header().attrs_offset.get());
        let mut out = Vec::new();
        for _ in 0..self
            .bytes
            .len()
            .checked_div(size_of::<RawAttrHeader>())
            .unwrap_or(0)
        {
            let Some(kind_bytes) = self.bytes.get(off..off.saturating_add(4)) else {
                return Err(corrupt(
                    self.number,
                    format!("attribute at {off:#x} runs past the record"),
                ));
            };
            if kind_bytes == ATTR_END.to_le_bytes() {
                return Ok(out);
            }
            let (h, _) = self
                .bytes
                .get(off..limit)
                .and_then(|b| RawAttrHeader::read_from_prefix(b).ok())
                .ok_or_else(|| {
                    corrupt(
                        self.number,
                        format!("attribute at {off:#x} runs past the bytes in use"),
                    )
                })?;
            let length = usize::try_from(h.length.get()).unwrap_or(usize::MAX);
            let end = off.checked_add(length).filter(|&e| e <= limit);
            if length < 0x18 || length % 8 != 0 || end.is_none() {
                return Err(corrupt(
                    self.number,
                    format!(
                        "attribute {:#x} at {off:#x} has length {length:#x}",
                        h.kind.get()
                    ),
                ));
            }
            let name_len = usize::from(h.name_length);
            let name_off = usize::from(h.name_offset.get());
            let name_bytes = name_off
                .checked_add(name_len.saturating_mul(2))
                .filter(|&e| name_len == 0 || e <= length)
                .and_then(|e| {
                    self.bytes
                        .get(off.checked_add(name_off)?..off.checked_add(e)?)
                })
                .ok_or_else(|| {
                    corrupt(
                        self.number,
                        format!("attribute at {off:#x}: name outside the attribute"),
                    )
                })?;
            let name = name_bytes
                .chunks_exact(2)
                .filter_map(|c| Some(u16::from_le_bytes([*c.first()?, *c.get(1)?])))
                .collect();
            out.push(Attr {
                offset: off,
                length,
                kind: h.kind.get(),
                non_resident: h.non_resident != 0,
                flags: h.flags.get(),
                name,
            });
            // OK: `end` is Some here (checked above)
            off = end.unwrap_or(limit);
        }
        Err(corrupt(self.number, "attribute list has no end marker"))
    }

    /// The one attribute of `kind` named `name` (UTF-8, compared exactly).
    pub fn find(&self, kind: u32, name: &str) -> Result<Option<Attr>> {
        let want: Vec<u16> = name.encode_utf16().collect();
        Ok(self
            .attributes()?
            .into_iter()
            .find(|a| a.kind == kind && a.name == want))
    }

    /// The value of a resident attribute.
    pub fn resident_value(&self, a: &Attr) -> Result<std::ops::Range<usize>> {
        let part = self
            .bytes
            .get(a.offset..)
            .and_then(|b| RawResidentAttr::read_from_prefix(b).ok())
            .map(|(p, _)| p)
            .filter(|_| !a.non_resident)
            .ok_or_else(|| {
                corrupt(
                    self.number,
                    format!("attribute {:#x} is not resident", a.kind),
                )
            })?;
        let v_off = usize::from(part.value_offset.get());
        let v_len = usize::try_from(part.value_length.get()).unwrap_or(usize::MAX);
        let end = v_off.checked_add(v_len).filter(|&e| e <= a.length);
        match end {
            Some(e) => Ok(a.offset.saturating_add(v_off)..a.offset.saturating_add(e)),
            None => Err(corrupt(
                self.number,
                format!(
                    "attribute {:#x}: value {v_off:#x}+{v_len:#x} outside the attribute",
                    a.kind
                ),
            )),
        }
    }

    /// The header of a non-resident attribute.
    pub fn non_resident(&self, a: &Attr) -> Result<RawNonResidentAttr> {
        if !a.non_resident || a.length < size_of::<RawNonResidentAttr>() {
            return Err(corrupt(
                self.number,
                format!("attribute {:#x} is not non-resident", a.kind),
            ));
        }
        self.bytes
            .get(a.offset..)
            .and_then(|b| RawNonResidentAttr::read_from_prefix(b).ok())
            .map(|(h, _)| h)
            .ok_or_else(|| corrupt(self.number, "non-resident header outside the record"))
    }

    /// Replace the non-resident header (the first 0x40 bytes) of `a`.
    pub fn set_non_resident(&mut self, a: &Attr, h: &RawNonResidentAttr) -> Result<()> {
        let dst = self
            .bytes
            .get_mut(a.offset..a.offset.saturating_add(size_of::<RawNonResidentAttr>()))
            .ok_or_else(|| corrupt(self.number, "non-resident header outside the record"))?;
        dst.copy_from_slice(h.as_bytes());
        Ok(())
    }

    fn mapping_pairs_range(&self, a: &Attr) -> Result<std::ops::Range<usize>> {
        let h = self.non_resident(a)?;
        let mp = usize::from(h.mapping_pairs_offset.get());
        if mp < size_of::<RawNonResidentAttr>() || mp > a.length {
            return Err(corrupt(
                self.number,
                format!("attribute {:#x}: mapping pairs offset {mp:#x}", a.kind),
            ));
        }
        Ok(a.offset.saturating_add(mp)..a.offset.saturating_add(a.length))
    }

    /// Decode the runlist of a non-resident attribute; every run lies inside `clusters`.
    pub fn runs(&self, a: &Attr, clusters: u64) -> Result<Vec<Run>> {
        let h = self.non_resident(a)?;
        let lowest = u64::try_from(h.lowest_vcn.get())
            .map_err(|_| corrupt(self.number, "negative lowest VCN"))?;
        let range = self.mapping_pairs_range(a)?;
        let mp = self.bytes.get(range).unwrap_or_default();
        decode_runs(mp, lowest, clusters)
            .map_err(|e| corrupt(self.number, format!("attribute {:#x}: {e}", a.kind)))
    }

    /// Store new mapping pairs for `a`, growing the attribute inside the record if they do not
    /// fit (the following attributes move down), as ntfsresize's `replace_attribute_runlist`.
    /// Returns the attribute as it is afterwards.
    pub fn set_mapping_pairs(&mut self, a: &Attr, mp: &[u8]) -> Result<Attr> {
        let range = self.mapping_pairs_range(a)?;
        let room = range.len();
        let mut a = a.clone();
        if mp.len() > room {
            let grow = mp
                .len()
                .checked_sub(room)
                .and_then(|g| g.checked_add(7))
                .map(|g| g & !7)
                .ok_or_else(|| corrupt(self.number, "mapping pairs size"))?;
            let in_use = self.bytes_in_use();
            let hdr = self.header();
            let allocated = usize::try_from(hdr.bytes_allocated.get())
                .unwrap_or(0)
                .min(self.bytes.len());
            let new_in_use = in_use.checked_add(grow).filter(|&n| n <= allocated).ok_or_else(|| {
                Error::unsupported(format!(
                    "NTFS MFT record {}: the new runlist of attribute {:#x} needs {grow} more bytes than the record has free",
                    self.number, a.kind
                ))
            })?;
            let attr_end = range.end;
            self.bytes
                .copy_within(attr_end..in_use, attr_end.saturating_add(grow));
            let new_len = a.length.saturating_add(grow);
            let len32 =
                u32::try_from(new_len).map_err(|_| corrupt(self.number, "attribute length"))?;
            let in_use32 =
                u32::try_from(new_in_use).map_err(|_| corrupt(self.number, "bytes in use"))?;
            if let Some(d) = self
                .bytes
                .get_mut(a.offset.saturating_add(4)..a.offset.saturating_add(8))
            {
                d.copy_from_slice(&len32.to_le_bytes());
            }
            if let Some(d) = self.bytes.get_mut(0x18..0x1C) {
                d.copy_from_slice(&in_use32.to_le_bytes());
            }
            a.length = new_len;
        }
        let range = self.mapping_pairs_range(&a)?;
        let dst = self
            .bytes
            .get_mut(range)
            .ok_or_else(|| corrupt(self.number, "mapping pairs outside the record"))?;
        dst.fill(0);
        dst.get_mut(..mp.len())
            .ok_or_else(|| corrupt(self.number, "mapping pairs do not fit"))?
            .copy_from_slice(mp);
        Ok(a)
    }

    /// The record as it goes to disk: the update sequence number advanced (skipping 0 and
    /// 0xFFFF, as ntfs-3g `ntfs_mst_pre_write_fixup`) and each 512-byte stride's last two bytes
    /// saved in the update sequence array.
    pub fn encode(&self) -> Result<Vec<u8>> {
        let hdr = self.header();
        let usa_ofs = usize::from(hdr.usa_ofs.get());
        let usa_count = usize::from(hdr.usa_count.get());
        let mut out = self.bytes.clone();
        let strides = out.len() / USA_STRIDE;
        if usa_count.checked_sub(1) != Some(strides) {
            return Err(corrupt(
                self.number,
                "update sequence count does not match the record size",
            ));
        }
        let usn = le_u16(&out, usa_ofs)
            .ok_or_else(|| corrupt(self.number, "update sequence array outside the record"))?;
        let mut next = usn.wrapping_add(1);
        if next == 0 || next == 0xFFFF {
            next = 1;
        }
        let next_b = next.to_le_bytes();
        for i in 0..strides {
            let end = i
                .checked_add(1)
                .and_then(|n| n.checked_mul(USA_STRIDE))
                .unwrap_or(usize::MAX);
            let slot = i
                .checked_add(1)
                .and_then(|n| n.checked_mul(2))
                .and_then(|n| n.checked_add(usa_ofs))
                .unwrap_or(usize::MAX);
            let tail: [u8; 2] = out
                .get(end.saturating_sub(2)..end)
                .and_then(|t| t.try_into().ok())
                .ok_or_else(|| corrupt(self.number, "stride outside the record"))?;
            out.get_mut(slot..slot.saturating_add(2))
                .ok_or_else(|| corrupt(self.number, "update sequence array outside the record"))?
                .copy_from_slice(&tail);
            if let Some(t) = out.get_mut(end.saturating_sub(2)..end) {
                t.copy_from_slice(&next_b);
            }
        }
        if let Some(d) = out.get_mut(usa_ofs..usa_ofs.saturating_add(2)) {
            d.copy_from_slice(&next_b);
        }
        Ok(out)
    }
}

/// Read a little-endian signed integer of `bytes.len()` (1..=8) bytes.
fn read_signed(bytes: &[u8]) -> i64 {
    let mut buf = [0u8; 8];
    let n = bytes.len().min(8);
    if let Some(d) = buf.get_mut(..n) {
        d.copy_from_slice(bytes.get(..n).unwrap_or_default());
    }
    let negative = bytes.last().is_some_and(|b| b & 0x80 != 0);
    if negative {
        for b in buf.iter_mut().skip(n) {
            *b = 0xFF;
        }
    }
    i64::from_le_bytes(buf)
}

/// Decode mapping pairs into runs starting at `lowest_vcn`; every run must lie inside
/// `0..clusters`. Bounded by the length of `mp`.
pub(crate) fn decode_runs(mp: &[u8], lowest_vcn: u64, clusters: u64) -> Result<Vec<Run>, String> {
    let mut runs = Vec::new();
    let mut pos = 0usize;
    let mut vcn = lowest_vcn;
    let mut lcn: i64 = 0;
    while let Some(&head) = mp.get(pos) {
        if head == 0 {
            return Ok(runs);
        }
        let len_bytes = usize::from(head & 0x0F);
        let off_bytes = usize::from(head >> 4);
        if !(1..=8).contains(&len_bytes) || off_bytes > 8 {
            return Err(format!("mapping pair header {head:#04x} at {pos:#x}"));
        }
        let len_start = pos.saturating_add(1);
        let off_start = len_start.saturating_add(len_bytes);
        let end = off_start.saturating_add(off_bytes);
        let (Some(len_b), Some(off_b)) = (mp.get(len_start..off_start), mp.get(off_start..end))
        else {
            return Err(format!("mapping pair at {pos:#x} runs past the attribute"));
        };
        let len = u64::try_from(read_signed(len_b))
            .ok()
            .filter(|&l| l > 0)
            .ok_or_else(|| format!("run at {pos:#x} has a non-positive length"))?;
        let run_lcn = if off_bytes == 0 {
            None
        } else {
            lcn = lcn
                .checked_add(read_signed(off_b))
                .filter(|&l| l >= 0)
                .ok_or_else(|| format!("run at {pos:#x} starts before cluster 0"))?;
            let l = u64::try_from(lcn).unwrap_or(u64::MAX);
            // NTFS cluster numbers are signed 64-bit: the end must fit too
            if l.checked_add(len)
                .is_none_or(|e| e > clusters || i64::try_from(e).is_err())
            {
                return Err(format!(
                    "run at {pos:#x}: clusters {l:#x}+{len:#x} are outside the volume ({clusters:#x} clusters)"
                ));
            }
            Some(l)
        };
        runs.push(Run {
            vcn,
            lcn: run_lcn,
            len,
        });
        vcn = vcn
            .checked_add(len)
            .filter(|&v| i64::try_from(v).is_ok())
            .ok_or_else(|| format!("run at {pos:#x}: VCN overflows"))?;
        pos = end;
    }
    Err("mapping pairs have no terminator".to_string())
}

/// Bytes needed to store `v` as a little-endian signed integer (ntfs-3g
/// `ntfs_get_nr_significant_bytes`).
fn signed_len(v: i64) -> usize {
    (1..8u32)
        .find(|&n| {
            let bits = n.saturating_mul(8);
            let lo = (1i64 << (bits.saturating_sub(1))).wrapping_neg();
            let hi = (1i64 << (bits.saturating_sub(1))).saturating_sub(1);
            (lo..=hi).contains(&v)
        })
        .and_then(|n| usize::try_from(n).ok())
        .unwrap_or(8)
}

/// Encode runs as mapping pairs with the terminating zero (ntfs-3g `ntfs_mapping_pairs_build`:
/// signed minimal widths for lengths and LCN deltas).
pub(crate) fn encode_runs(runs: &[Run]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut prev: i64 = 0;
    for r in runs {
        let len = i64::try_from(r.len).map_err(|_| Error::invalid("run length too large"))?;
        let len_n = signed_len(len);
        let (delta, off_n) = match r.lcn {
            Some(l) => {
                let l = i64::try_from(l).map_err(|_| Error::invalid("LCN too large"))?;
                let d = l
                    .checked_sub(prev)
                    .ok_or_else(|| Error::invalid("LCN delta overflows"))?;
                prev = l;
                (d, signed_len(d))
            }
            None => (0, 0),
        };
        // both widths are at most 8, so the header fits one byte
        out.push(u8::try_from(off_n.saturating_mul(16).saturating_add(len_n)).unwrap_or(0));
        out.extend_from_slice(len.to_le_bytes().get(..len_n).unwrap_or_default());
        out.extend_from_slice(delta.to_le_bytes().get(..off_n).unwrap_or_default());
    }
    out.push(0);
    Ok(out)
}

#[cfg(test)]
#[allow(
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    clippy::unwrap_used
)]
mod tests {
    use super::*;

    #[test]
    fn runs_round_trip_like_ntfs_3g() {
        // ntfsresize's $Bitmap: 1 cluster at LCN 3 -> 11 01 03
        let r = [Run {
            vcn: 0,
            lcn: Some(3),
            len: 1,
        }];
        assert_eq!(encode_runs(&r).unwrap(), [0x11, 0x01, 0x03, 0x00]);
        // mkntfs's $Bitmap: 1 cluster at LCN 0x807 -> 21 01 07 08
        let r = [Run {
            vcn: 0,
            lcn: Some(0x807),
            len: 1,
        }];
        assert_eq!(encode_runs(&r).unwrap(), [0x21, 0x01, 0x07, 0x08, 0x00]);
        // $BadClus:$Bad after ntfsresize: a hole of 0x2dc6 clusters -> 02 c6 2d
        let r = [Run {
            vcn: 0,
            lcn: None,
            len: 0x2dc6,
        }];
        assert_eq!(encode_runs(&r).unwrap(), [0x02, 0xc6, 0x2d, 0x00]);
        // 0x80 needs two bytes when signed
        let r = [Run {
            vcn: 0,
            lcn: Some(0x80),
            len: 0x80,
        }];
        let mp = encode_runs(&r).unwrap();
        assert_eq!(mp, [0x22, 0x80, 0x00, 0x80, 0x00, 0x00]);
        assert_eq!(decode_runs(&mp, 0, 0x100).unwrap(), r);
        // negative delta
        let r = [
            Run {
                vcn: 0,
                lcn: Some(1000),
                len: 5,
            },
            Run {
                vcn: 5,
                lcn: None,
                len: 7,
            },
            Run {
                vcn: 12,
                lcn: Some(10),
                len: 3,
            },
        ];
        let mp = encode_runs(&r).unwrap();
        assert_eq!(decode_runs(&mp, 0, 2000).unwrap(), r);
    }

    #[test]
    fn hostile_mapping_pairs_are_refused() {
        assert!(decode_runs(&[0x11, 0x01], 0, 10).is_err()); // truncated
        assert!(decode_runs(&[0x11, 0x01, 0x03], 0, 10).is_err()); // no terminator
        assert!(decode_runs(&[0x19, 0, 0], 0, 10).is_err()); // 9-byte length
        assert!(decode_runs(&[0x11, 0x05, 0x08, 0], 0, 10).is_err()); // past the volume
        assert!(decode_runs(&[0x11, 0xFF, 0x01, 0], 0, 10).is_err()); // negative length
        assert!(decode_runs(&[0x11, 0x01, 0xFF, 0], 0, 10).is_err()); // LCN -1
        let huge = [
            0x88, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
            0xFF, 0xFF, 0x7F, 0,
        ];
        assert!(decode_runs(&huge, 0, u64::MAX).is_err());
        assert!(decode_runs(&[], 0, 10).is_err());
    }
}
