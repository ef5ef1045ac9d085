//! GRUB's i386-pc core.img, taken apart and put back together as `grub-mkimage` builds it.
//!
//! Layout (GRUB 2, `util/mkimage.c`, `include/grub/offsets.h`):
//!
//! ```text
//! core.img = diskboot.img (512 bytes, handled by hybrid.rs)
//!          + lzma_decompress.img (D bytes; header: compressed size at 0x08, uncompressed
//!            size at 0x0c, Reed-Solomon redundancy at 0x10)
//!          + LZMA1 stream (lc=3, lp=0, pb=2, no header, no end marker) of:
//!              kernel.img (up to its _edata)
//!              + module info {magic "mimg", offset 12, size}
//!              + objects {type, size incl. this 8-byte header, body}: ELF modules (0),
//!                embedded config (2), prefix (3), ...
//!          + Reed-Solomon parity (when grub-bios-setup added it)
//! ```
//!
//! D is not recorded; it follows from the sizes: with parity, exactly; without, up to the
//! padding of the last sector, and the candidate that decodes to a well-formed module list is
//! the one. The rebuilt image carries no parity (redundancy 0, as `grub-mkimage` writes it).

use std::io::Read;
use std::panic::{catch_unwind, AssertUnwindSafe};

use crate::error::{Error, Result};

const COMPRESSED_SIZE: usize = 0x08;
const UNCOMPRESSED_SIZE: usize = 0x0c;
const RS_REDUNDANCY: usize = 0x10;
/// GRUB_DECOMPRESSOR_I386_PC_MAX_DECOMPRESSOR_SIZE: the decompressor fits 0x8200..0x9000.
const MAX_DECOMPRESSOR: usize = 0x9000 - 0x8200;
/// core.img loads below 640 KiB: nothing decompresses to more than this.
const MAX_UNCOMPRESSED: usize = 4 << 20;
/// Candidate stream offsets decoded at most (the first is right on every image seen).
const MAX_TRIES: usize = 64;
const MODINFO_MAGIC: u32 = 0x676d_696d; // "mimg"
/// Size of the module info header {magic, offset, size}; the same value as its `offset` field.
const MODINFO_BYTES: usize = 12;
const MODINFO_BYTES_U32: u32 = 12;
/// Size of an object header {type, size}.
const OBJ_HEADER_BYTES: usize = 8;
pub const OBJ_ELF: u32 = 0;
pub const OBJ_CONFIG: u32 = 2;
pub const OBJ_PREFIX: u32 = 3;
const LC: u32 = 3;
const LP: u32 = 0;
const PB: u32 = 2;
const DICT: u32 = 1 << 16;

/// A decoded core.img (without diskboot.img).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Core {
    pub decompressor: Vec<u8>,
    pub kernel: Vec<u8>,
    /// (type, body) in image order.
    pub objects: Objects,
}

/// Why [`Core::encode`] gave no image. Typed, so that a caller (the fuzz target) can tell the
/// one refusal a valid core.img may meet from a failure of the encoder itself.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// The kernel and its modules exceed what GRUB's i386-pc loader decompresses.
    #[error("core.img: {bytes} bytes uncompressed, more than GRUB's loader takes")]
    TooLarge { bytes: usize },
    /// The LZMA encoder failed, or the re-encoded image does not decode to what was encoded:
    /// a defect of the encoder, never a property of the input.
    #[error("{0}")]
    Encoder(String),
}

impl From<EncodeError> for Error {
    /// `TooLarge` is a valid image that is not handled (Unsupported, the kind `--hybrid`'s
    /// refusals carry); `Encoder` is the LZMA encoder failing on bytes we built: a bug.
    fn from(e: EncodeError) -> Self {
        match e {
            EncodeError::TooLarge { .. } => Error::unsupported(e.to_string()),
            EncodeError::Encoder(_) => Error::internal(e.to_string()),
        }
    }
}

/// Little-endian integers at `at` in `b` (`None` past its end); also used by hybrid.rs.
pub(super) fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(
        b.get(at..at.checked_add(8)?)?.try_into().ok()?,
    ))
}

pub(super) fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(
        b.get(at..at.checked_add(4)?)?.try_into().ok()?,
    ))
}

pub(super) fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(
        b.get(at..at.checked_add(2)?)?.try_into().ok()?,
    ))
}

/// Writes `v` little-endian at `at` in `b`; `None` (nothing written) past its end. Also used by
/// hybrid.rs.
pub(super) fn put_le(b: &mut [u8], at: usize, v: &[u8]) -> Option<()> {
    b.get_mut(at..at.checked_add(v.len())?)?.copy_from_slice(v);
    Some(())
}

/// `len` rounded up to GRUB's 4-byte object alignment.
fn pad4(len: usize) -> Option<usize> {
    len.checked_next_multiple_of(4)
}

/// `n` as a 32-bit size field of core.img. Below [`MAX_UNCOMPRESSED`] every size fits, so a
/// failure here is the encoder's.
fn size_u32(n: usize, what: &str) -> std::result::Result<u32, EncodeError> {
    u32::try_from(n).map_err(|_| {
        EncodeError::Encoder(format!(
            "core.img: {what} of {n} bytes does not fit a 32-bit size"
        ))
    })
}

fn lzma_decode(stream: &[u8], size: usize) -> Option<Vec<u8>> {
    let size_u64 = u64::try_from(size).ok()?;
    catch_unwind(AssertUnwindSafe(|| {
        let mut r = lzma_rust2::LzmaReader::new(stream, size_u64, LC, LP, PB, DICT, None).ok()?;
        let mut out = vec![0u8; size];
        r.read_exact(&mut out).ok()?;
        Some(out)
    }))
    .ok()
    .flatten()
}

fn lzma_encode(data: &[u8]) -> std::result::Result<Vec<u8>, EncodeError> {
    use std::io::Write;
    let failed = |e: std::io::Error| EncodeError::Encoder(format!("LZMA encoder: {e}"));
    let mut opts = lzma_rust2::LzmaOptions::with_preset(9);
    opts.lc = LC;
    opts.lp = LP;
    opts.pb = PB;
    opts.dict_size = DICT;
    let mut w = lzma_rust2::LzmaWriter::new_no_header(Vec::new(), &opts, false).map_err(failed)?;
    w.write_all(data).map_err(failed)?;
    w.finish().map_err(failed)
}

/// The objects after the module info: (type, body).
type Objects = Vec<(u32, Vec<u8>)>;

/// Is there a module info header at `at` spanning the rest of `payload`?
fn modinfo_at(payload: &[u8], at: usize) -> Option<()> {
    let rest = payload.len().checked_sub(at)?;
    (u32_at(payload, at)? == MODINFO_MAGIC
        && u32_at(payload, at.checked_add(4)?)? == MODINFO_BYTES_U32
        && usize::try_from(u32_at(payload, at.checked_add(8)?)?).ok()? == rest)
        .then_some(())
}

/// Split the decompressed payload into kernel and objects; `None` unless it is well formed.
fn split(payload: &[u8]) -> Option<(Vec<u8>, Objects)> {
    let total = payload.len();
    // the module info sits where the kernel's data ends, 4-byte aligned, and spans the rest
    let info_at = (0..total.checked_sub(MODINFO_BYTES)?)
        .step_by(4)
        .rev()
        .find(|&at| modinfo_at(payload, at).is_some())?;
    let mut objects = Vec::new();
    let mut p = info_at.checked_add(MODINFO_BYTES)?;
    // each object takes at least its 8-byte header, so this loop ends
    while p < total {
        let ty = u32_at(payload, p)?;
        let size = usize::try_from(u32_at(payload, p.checked_add(4)?)?).ok()?;
        let end = p.checked_add(size)?;
        if size < OBJ_HEADER_BYTES || end > total {
            return None;
        }
        objects.push((
            ty,
            payload.get(p.checked_add(OBJ_HEADER_BYTES)?..end)?.to_vec(),
        ));
        p = end;
    }
    Some((payload.get(..info_at)?.to_vec(), objects))
}

/// The bytes of `b` before its first NUL (all of `b` without one).
fn until_nul(b: &[u8]) -> &[u8] {
    b.split(|&c| c == 0).next().unwrap_or_default()
}

/// The name of a GRUB module (its `.modname` section), from the ELF32 section headers.
pub fn module_name(elf: &[u8]) -> Option<String> {
    if elf.get(..5)? != b"\x7fELF\x01" {
        return None;
    }
    let shoff = usize::try_from(u32_at(elf, 0x20)?).ok()?;
    let shentsize = usize::from(u16_at(elf, 0x2e)?);
    let shnum = usize::from(u16_at(elf, 0x30)?);
    let shstrndx = usize::from(u16_at(elf, 0x32)?);
    if shentsize < 40 || shnum > 256 {
        return None;
    }
    // (sh_name, sh_offset, sh_size) of section `i`
    let section = |i: usize| -> Option<(usize, usize, usize)> {
        let h = shoff.checked_add(i.checked_mul(shentsize)?)?;
        Some((
            usize::try_from(u32_at(elf, h)?).ok()?,
            usize::try_from(u32_at(elf, h.checked_add(16)?)?).ok()?,
            usize::try_from(u32_at(elf, h.checked_add(20)?)?).ok()?,
        ))
    };
    let (_, str_off, str_size) = section(shstrndx)?;
    let strtab = elf.get(str_off..str_off.checked_add(str_size)?)?;
    for i in 0..shnum {
        let (name, off, size) = section(i)?;
        let n = strtab.get(name..)?;
        // a name must be NUL-terminated inside the string table
        if !n.contains(&0) {
            return None;
        }
        if until_nul(n) == b".modname" {
            let body = elf.get(off..off.checked_add(size)?)?;
            return String::from_utf8(until_nul(body).to_vec()).ok();
        }
    }
    None
}

/// A NUL-terminated string object body, padded to 4 bytes as grub-mkimage pads it.
fn string_body(s: &str) -> Vec<u8> {
    let mut b = s.as_bytes().to_vec();
    b.push(0);
    // a string of usize::MAX bytes cannot exist, so the padding always fits
    let padded = pad4(b.len()).unwrap_or(b.len());
    b.resize(padded, 0);
    b
}

fn body_string(b: &[u8]) -> String {
    String::from_utf8_lossy(until_nul(b)).into_owned()
}

/// Replace every `msdosN` partition name in `s` with `gptM` (`map(N) = Some(M)`).
pub fn remap_partitions(s: &str, map: &dyn Fn(u32) -> Option<u32>) -> Result<String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some((before, after)) = rest.split_once("msdos") {
        out.push_str(before);
        let digits = after.bytes().take_while(u8::is_ascii_digit).count();
        // ASCII digits: `digits` is a character boundary
        let Some((number, tail)) = after.split_at_checked(digits) else {
            return Err(Error::corrupt(format!("partition number in {s:?}")));
        };
        if number.is_empty() {
            out.push_str("msdos");
            rest = after;
            continue;
        }
        let n: u32 = number
            .parse()
            .map_err(|_| Error::corrupt(format!("partition number in {s:?}")))?;
        let m = map(n).ok_or_else(|| {
            Error::unsupported(format!(
                "GRUB names partition msdos{n} ({s:?}), which the GPT does not carry"
            ))
        })?;
        out.push_str(&format!("gpt{m}"));
        rest = tail;
    }
    out.push_str(rest);
    Ok(out)
}

/// A size field of core.img's decompressor header, or a Corrupt error naming it.
fn header_size(body: &[u8], at: usize) -> Result<usize> {
    let v = u32_at(body, at).ok_or_else(|| Error::corrupt("core.img: too short"))?;
    usize::try_from(v).map_err(|_| Error::corrupt("core.img: size"))
}

/// Offsets where the LZMA stream may start (after the decompressor), most likely first: with
/// Reed-Solomon parity exactly one; without, the end of the image minus the stream, minus the
/// padding of the last sector.
fn stream_candidates(body: &[u8], comp: usize, rs: usize) -> Vec<usize> {
    if rs > 0 {
        return body
            .len()
            .checked_sub(rs)
            .and_then(|x| x.checked_sub(comp))
            .into_iter()
            .collect();
    }
    let trailing = body.iter().rev().take_while(|&&b| b == 0).count().min(511);
    let fixed = body.len().saturating_sub(comp);
    (0..=trailing)
        .rev()
        .chain(trailing.saturating_add(1)..512)
        .filter_map(|pad| fixed.checked_sub(pad))
        .collect()
}

impl Core {
    /// Decode `body` (core.img from its second sector, as many sectors as diskboot.img loads).
    /// Every failure is Corrupt: the bytes are not the GRUB 2 i386-pc core.img they claim to be.
    pub fn decode(body: &[u8]) -> Result<Core> {
        let comp = header_size(body, COMPRESSED_SIZE)?;
        let uncomp = header_size(body, UNCOMPRESSED_SIZE)?;
        let rs = header_size(body, RS_REDUNDANCY)?;
        if uncomp == 0 || uncomp > MAX_UNCOMPRESSED || comp == 0 || comp > body.len() {
            return Err(Error::corrupt(format!(
                "core.img: compressed size {comp} / uncompressed size {uncomp} are not a GRUB i386-pc core.img of {} bytes",
                body.len()
            )));
        }
        // a crafted image could make every candidate decode for long: a bounded number of tries
        stream_candidates(body, comp, rs)
            .into_iter()
            .filter(|&d| (0x200..=MAX_DECOMPRESSOR).contains(&d) && body.get(d) == Some(&0))
            .take(MAX_TRIES)
            .find_map(|d| Core::decode_at(body, d, comp, uncomp))
            .ok_or_else(|| Error::corrupt("core.img: no LZMA stream in it decodes to GRUB's kernel and module list (not GRUB 2's i386-pc format)"))
    }

    /// Decode with the LZMA stream at `d` (after the decompressor).
    fn decode_at(body: &[u8], d: usize, comp: usize, uncomp: usize) -> Option<Core> {
        let stream = body.get(d..d.checked_add(comp)?)?;
        let payload = lzma_decode(stream, uncomp)?;
        let (kernel, objects) = split(&payload)?;
        Some(Core {
            decompressor: body.get(..d)?.to_vec(),
            kernel,
            objects,
        })
    }

    /// Names of the embedded ELF modules.
    pub fn module_names(&self) -> Vec<String> {
        self.objects
            .iter()
            .filter(|(t, _)| *t == OBJ_ELF)
            .filter_map(|(_, b)| module_name(b))
            .collect()
    }

    /// The embedded module `name`, as embedded (padded to 4 bytes).
    pub fn module(&self, name: &str) -> Option<&[u8]> {
        self.objects
            .iter()
            .find(|(t, b)| *t == OBJ_ELF && module_name(b).as_deref() == Some(name))
            .map(|(_, b)| b.as_slice())
    }

    /// The string of the first object of type `ty` (prefix, config).
    pub fn string(&self, ty: u32) -> Option<String> {
        self.objects
            .iter()
            .find(|(t, _)| *t == ty)
            .map(|(_, b)| body_string(b))
    }

    /// Add an ELF module after the last one.
    pub fn add_module(&mut self, elf: &[u8]) {
        let mut body = elf.to_vec();
        body.resize(pad4(body.len()).unwrap_or(body.len()), 0);
        let at = self
            .objects
            .iter()
            .rposition(|(t, _)| *t == OBJ_ELF)
            .map_or(0, |i| i.saturating_add(1));
        self.objects.insert(at, (OBJ_ELF, body));
    }

    /// Rewrite `msdosN` to `gptM` in the prefix and the embedded config; returns what changed
    /// ("prefix (hd0,msdos1)/boot/grub -> (hd0,gpt1)/boot/grub").
    pub fn remap(&mut self, map: &dyn Fn(u32) -> Option<u32>) -> Result<Vec<String>> {
        let mut changes = Vec::new();
        for (ty, body) in &mut self.objects {
            let what = match *ty {
                OBJ_PREFIX => "prefix",
                OBJ_CONFIG => "embedded config",
                _ => continue,
            };
            let old = body_string(body);
            let new = remap_partitions(&old, map)?;
            if new != old {
                changes.push(format!("{what} {old:?} -> {new:?}"));
                *body = string_body(&new);
            }
        }
        Ok(changes)
    }

    /// The uncompressed payload: kernel, module info, objects.
    fn payload(&self) -> std::result::Result<Vec<u8>, EncodeError> {
        let too_large = || EncodeError::TooLarge { bytes: usize::MAX };
        let objects = self.objects.iter().try_fold(0usize, |sum, (_, b)| {
            sum.checked_add(OBJ_HEADER_BYTES)?.checked_add(b.len())
        });
        let info = objects
            .and_then(|o| o.checked_add(MODINFO_BYTES))
            .ok_or_else(too_large)?;
        let total = self.kernel.len().checked_add(info).ok_or_else(too_large)?;
        // the loader's limit first: every size below then fits in 32 bits
        if total > MAX_UNCOMPRESSED {
            return Err(EncodeError::TooLarge { bytes: total });
        }
        let mut p = Vec::with_capacity(total);
        p.extend_from_slice(&self.kernel);
        p.extend_from_slice(&MODINFO_MAGIC.to_le_bytes());
        p.extend_from_slice(&MODINFO_BYTES_U32.to_le_bytes());
        p.extend_from_slice(&size_u32(info, "module info")?.to_le_bytes());
        for (t, b) in &self.objects {
            p.extend_from_slice(&t.to_le_bytes());
            let size = b.len().saturating_add(OBJ_HEADER_BYTES);
            p.extend_from_slice(&size_u32(size, "module")?.to_le_bytes());
            p.extend_from_slice(b);
        }
        Ok(p)
    }

    /// core.img from its second sector: the decompressor (sizes updated, no Reed-Solomon
    /// parity) and the LZMA stream. Decoded again and compared before it is returned.
    pub fn encode(&self) -> std::result::Result<Vec<u8>, EncodeError> {
        let payload = self.payload()?;
        let stream = lzma_encode(&payload)?;
        let mut out = self.decompressor.clone();
        let comp = size_u32(stream.len(), "LZMA stream")?;
        let uncomp = size_u32(payload.len(), "payload")?;
        put_le(&mut out, COMPRESSED_SIZE, &comp.to_le_bytes())
            .and_then(|()| put_le(&mut out, UNCOMPRESSED_SIZE, &uncomp.to_le_bytes()))
            .and_then(|()| put_le(&mut out, RS_REDUNDANCY, &0u32.to_le_bytes()))
            .ok_or_else(|| {
                EncodeError::Encoder(format!(
                    "core.img: a decompressor of {} bytes has no size header",
                    self.decompressor.len()
                ))
            })?;
        out.extend_from_slice(&stream);
        let again = Core::decode_at(&out, self.decompressor.len(), stream.len(), payload.len())
            .ok_or_else(|| {
                EncodeError::Encoder("core.img: the re-encoded image does not decode".into())
            })?;
        if again.kernel != self.kernel
            || again.objects != self.objects
            || again.decompressor.len() != self.decompressor.len()
        {
            return Err(EncodeError::Encoder(
                "core.img: the re-encoded image does not decode to what was encoded".into(),
            ));
        }
        Ok(out)
    }
}

/// Test fixtures shared with hybrid.rs.
#[cfg(test)]
#[allow(
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::arithmetic_side_effects,
    clippy::as_conversions
)] // tests: a panic is a failed test
pub mod fixture {
    use super::*;

    /// A minimal ELF32 with a `.modname` section.
    pub fn elf(name: &str) -> Vec<u8> {
        let mut e = vec![0u8; 0x34];
        e[..5].copy_from_slice(b"\x7fELF\x01");
        let strtab = b"\0.modname\0.shstrtab\0";
        let modname = format!("{name}\0");
        let str_off = e.len();
        e.extend_from_slice(strtab);
        let mod_off = e.len();
        e.extend_from_slice(modname.as_bytes());
        while !e.len().is_multiple_of(4) {
            e.push(0);
        }
        let shoff = e.len();
        let mut sh = |name: u32, off: usize, size: usize| {
            let mut h = vec![0u8; 40];
            h[0..4].copy_from_slice(&name.to_le_bytes());
            h[16..20].copy_from_slice(&u32::try_from(off).unwrap().to_le_bytes());
            h[20..24].copy_from_slice(&u32::try_from(size).unwrap().to_le_bytes());
            e.extend_from_slice(&h);
        };
        sh(0, 0, 0);
        sh(1, mod_off, modname.len());
        sh(10, str_off, strtab.len());
        e[0x20..0x24].copy_from_slice(&u32::try_from(shoff).unwrap().to_le_bytes());
        e[0x2e..0x30].copy_from_slice(&40u16.to_le_bytes());
        e[0x30..0x32].copy_from_slice(&3u16.to_le_bytes());
        e[0x32..0x34].copy_from_slice(&2u16.to_le_bytes());
        e
    }

    /// A core with kernel bytes, part_msdos and the prefix (hd0,msdos1)/boot/grub.
    pub fn sample() -> Core {
        let mut decompressor = vec![0x90u8; 0xb20];
        decompressor[0x10..0x14].fill(0);
        let kernel: Vec<u8> = (0..30_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let mut k = kernel;
        k.truncate(29_864);
        Core {
            decompressor,
            kernel: k,
            objects: vec![
                (OBJ_ELF, {
                    let mut b = elf("part_msdos");
                    b.resize(b.len().div_ceil(4) * 4, 0);
                    b
                }),
                (OBJ_PREFIX, string_body("(hd0,msdos1)/boot/grub")),
            ],
        }
    }
}

#[cfg(test)]
#[allow(
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::arithmetic_side_effects,
    clippy::as_conversions
)] // tests: a panic is a failed test
mod tests {
    use super::fixture::{elf, sample};
    use super::*;

    #[test]
    fn encode_decode_round_trip_with_sector_padding() {
        let core = sample();
        let mut body = core.encode().unwrap();
        // as installed: padded to whole sectors (the 512-byte diskboot sector is not part of it)
        body.resize(body.len().div_ceil(512) * 512, 0);
        let back = Core::decode(&body).unwrap();
        assert_eq!((&back.kernel, &back.objects), (&core.kernel, &core.objects));
        assert_eq!(core.module_names(), vec!["part_msdos".to_string()]);
        assert_eq!(core.string(OBJ_PREFIX).unwrap(), "(hd0,msdos1)/boot/grub");
    }

    #[test]
    fn add_module_and_remap_prefix() {
        let mut core = sample();
        core.add_module(&elf("part_gpt"));
        let changes = core.remap(&|n| (n == 1).then_some(2)).unwrap();
        assert_eq!(changes.len(), 1);
        assert_eq!(core.string(OBJ_PREFIX).unwrap(), "(hd0,gpt2)/boot/grub");
        assert_eq!(core.module_names(), vec!["part_msdos", "part_gpt"]);
        let body = core.encode().unwrap();
        let back = Core::decode(&body).unwrap();
        assert_eq!((&back.kernel, &back.objects), (&core.kernel, &core.objects));
        assert!(core.remap(&|_| None).is_ok()); // nothing msdos left
        let mut c2 = sample();
        let e = c2.remap(&|_| None).unwrap_err();
        assert!(e.message().contains("msdos1"), "{e}");
        assert_eq!(e.kind(), crate::error::ErrorKind::Unsupported);
    }

    #[test]
    fn too_large_is_its_own_refusal() {
        let mut core = sample();
        core.kernel = vec![0; MAX_UNCOMPRESSED];
        let e = core.encode().unwrap_err();
        assert!(
            matches!(e, EncodeError::TooLarge { bytes } if bytes > MAX_UNCOMPRESSED),
            "{e}"
        );
        assert!(
            e.to_string().contains("more than GRUB's loader takes"),
            "{e}"
        );
        let e = Error::from(e);
        assert_eq!(e.kind(), crate::error::ErrorKind::Unsupported);
        // a decompressor too short for its size header: an error, not a panic
        let mut short = sample();
        short.decompressor.truncate(4);
        assert!(matches!(short.encode(), Err(EncodeError::Encoder(_))));
    }

    #[test]
    fn remap_strings() {
        let m = |n: u32| (n < 5).then_some(n + 1);
        assert_eq!(
            remap_partitions(
                "search.fs_uuid U root hd0,msdos2 ; (,msdos1)/x msdosfoo",
                &m
            )
            .unwrap(),
            "search.fs_uuid U root hd0,gpt3 ; (,gpt2)/x msdosfoo"
        );
        assert!(remap_partitions("(hd0,msdos5)", &m).is_err());
    }

    #[test]
    fn garbage_is_refused_not_panicked() {
        for n in [0usize, 16, 600, 5000] {
            let mut b: Vec<u8> = (0..n).map(|i| (i * 31 % 256) as u8).collect();
            if n >= 0x14 {
                b[8..12].copy_from_slice(&100u32.to_le_bytes());
                b[12..16].copy_from_slice(&1000u32.to_le_bytes());
            }
            let e = Core::decode(&b).unwrap_err();
            assert_eq!(e.kind(), crate::error::ErrorKind::Corrupt, "{e}");
        }
        assert_eq!(module_name(b"\x7fELF\x01garbage"), None);
    }
}
