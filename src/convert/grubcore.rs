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
const MODINFO_BYTES: usize = 12;
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

fn lzma_decode(stream: &[u8], size: usize) -> Option<Vec<u8>> {
    catch_unwind(AssertUnwindSafe(|| {
        let mut r =
            lzma_rust2::LzmaReader::new(stream, size as u64, LC, LP, PB, DICT, None).ok()?;
        let mut out = vec![0u8; size];
        r.read_exact(&mut out).ok()?;
        Some(out)
    }))
    .ok()
    .flatten()
}

fn lzma_encode(data: &[u8]) -> Result<Vec<u8>, String> {
    use std::io::Write;
    let mut opts = lzma_rust2::LzmaOptions::with_preset(9);
    opts.lc = LC;
    opts.lp = LP;
    opts.pb = PB;
    opts.dict_size = DICT;
    let mut w = lzma_rust2::LzmaWriter::new_no_header(Vec::new(), &opts, false)
        .map_err(|e| format!("LZMA encoder: {e}"))?;
    w.write_all(data)
        .map_err(|e| format!("LZMA encoder: {e}"))?;
    w.finish().map_err(|e| format!("LZMA encoder: {e}"))
}

/// The objects after the module info: (type, body).
type Objects = Vec<(u32, Vec<u8>)>;

/// Split the decompressed payload into kernel and objects; `None` unless it is well formed.
fn split(payload: &[u8]) -> Option<(Vec<u8>, Objects)> {
    let total = payload.len();
    // the module info sits where the kernel's data ends, 4-byte aligned, and spans the rest
    let info_at = (0..total.checked_sub(MODINFO_BYTES)?)
        .step_by(4)
        .rev()
        .find(|&at| {
            u32_at(payload, at) == Some(MODINFO_MAGIC)
                && u32_at(payload, at + 4) == Some(MODINFO_BYTES as u32)
                && u32_at(payload, at + 8).and_then(|s| usize::try_from(s).ok()) == Some(total - at)
        })?;
    let mut objects = Vec::new();
    let mut p = info_at + MODINFO_BYTES;
    while p < total {
        let ty = u32_at(payload, p)?;
        let size = usize::try_from(u32_at(payload, p + 4)?).ok()?;
        let end = p.checked_add(size)?;
        if size < 8 || end > total {
            return None;
        }
        objects.push((ty, payload.get(p + 8..end)?.to_vec()));
        p = end;
    }
    Some((payload.get(..info_at)?.to_vec(), objects))
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
    let section = |i: usize| -> Option<(usize, usize, usize)> {
        let h = shoff.checked_add(i.checked_mul(shentsize)?)?;
        Some((
            usize::try_from(u32_at(elf, h)?).ok()?,
            usize::try_from(u32_at(elf, h + 16)?).ok()?,
            usize::try_from(u32_at(elf, h + 20)?).ok()?,
        ))
    };
    let (_, str_off, str_size) = section(shstrndx)?;
    let strtab = elf.get(str_off..str_off.checked_add(str_size)?)?;
    for i in 0..shnum {
        let (name, off, size) = section(i)?;
        let n = strtab.get(name..)?;
        let n = &n[..n.iter().position(|&b| b == 0)?];
        if n == b".modname" {
            let body = elf.get(off..off.checked_add(size)?)?;
            let body = &body[..body.iter().position(|&b| b == 0).unwrap_or(body.len())];
            return String::from_utf8(body.to_vec()).ok();
        }
    }
    None
}

/// A NUL-terminated string object body, padded to 4 bytes as grub-mkimage pads it.
fn string_body(s: &str) -> Vec<u8> {
    let mut b = s.as_bytes().to_vec();
    b.push(0);
    b.resize(b.len().div_ceil(4) * 4, 0);
    b
}

fn body_string(b: &[u8]) -> String {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    String::from_utf8_lossy(&b[..end]).into_owned()
}

/// Replace every `msdosN` partition name in `s` with `gptM` (`map(N) = Some(M)`).
pub fn remap_partitions(s: &str, map: &dyn Fn(u32) -> Option<u32>) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find("msdos") {
        out.push_str(&rest[..i]);
        let after = &rest[i + 5..];
        let digits = after.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            out.push_str("msdos");
            rest = after;
            continue;
        }
        let n: u32 = after[..digits]
            .parse()
            .map_err(|_| format!("partition number in {s:?}"))?;
        let m = map(n).ok_or_else(|| {
            format!("GRUB names partition msdos{n} ({s:?}), which the GPT does not carry")
        })?;
        out.push_str(&format!("gpt{m}"));
        rest = &after[digits..];
    }
    out.push_str(rest);
    Ok(out)
}

impl Core {
    /// Decode `body` (core.img from its second sector, as many sectors as diskboot.img loads).
    pub fn decode(body: &[u8]) -> Result<Core, String> {
        let bad = |what: &str| format!("core.img: {what}");
        let comp = usize::try_from(u32_at(body, COMPRESSED_SIZE).ok_or_else(|| bad("too short"))?)
            .map_err(|_| bad("size"))?;
        let uncomp =
            usize::try_from(u32_at(body, UNCOMPRESSED_SIZE).ok_or_else(|| bad("too short"))?)
                .map_err(|_| bad("size"))?;
        let rs = usize::try_from(u32_at(body, RS_REDUNDANCY).ok_or_else(|| bad("too short"))?)
            .map_err(|_| bad("size"))?;
        if uncomp == 0 || uncomp > MAX_UNCOMPRESSED || comp == 0 || comp > body.len() {
            return Err(bad(&format!(
                "compressed size {comp} / uncompressed size {uncomp} are not a GRUB i386-pc core.img of {} bytes",
                body.len()
            )));
        }
        // where the LZMA stream starts
        let candidates: Vec<usize> = if rs > 0 {
            body.len()
                .checked_sub(rs)
                .and_then(|x| x.checked_sub(comp))
                .into_iter()
                .collect()
        } else {
            let trailing = body.iter().rev().take_while(|&&b| b == 0).count().min(511);
            let fixed = body.len().saturating_sub(comp);
            (0..=trailing)
                .rev()
                .chain(trailing + 1..512)
                .filter_map(|pad| fixed.checked_sub(pad))
                .collect()
        };
        // a crafted image could make every candidate decode for long: a bounded number of tries
        let mut tries = 0;
        for d in candidates {
            if !(0x200..=MAX_DECOMPRESSOR).contains(&d) || body.get(d) != Some(&0) {
                continue;
            }
            tries += 1;
            if tries > MAX_TRIES {
                break;
            }
            if let Some(core) = Core::decode_at(body, d, comp, uncomp) {
                return Ok(core);
            }
        }
        Err(bad("no LZMA stream in it decodes to GRUB's kernel and module list (not GRUB 2's i386-pc format)"))
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
        body.resize(body.len().div_ceil(4) * 4, 0);
        let at = self
            .objects
            .iter()
            .rposition(|(t, _)| *t == OBJ_ELF)
            .map_or(0, |i| i + 1);
        self.objects.insert(at, (OBJ_ELF, body));
    }

    /// Rewrite `msdosN` to `gptM` in the prefix and the embedded config; returns what changed
    /// ("prefix (hd0,msdos1)/boot/grub -> (hd0,gpt1)/boot/grub").
    pub fn remap(&mut self, map: &dyn Fn(u32) -> Option<u32>) -> Result<Vec<String>, String> {
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
    fn payload(&self) -> Result<Vec<u8>, String> {
        let objects: usize = self.objects.iter().map(|(_, b)| 8 + b.len()).sum();
        let info = MODINFO_BYTES + objects;
        let mut p = Vec::with_capacity(self.kernel.len() + info);
        p.extend_from_slice(&self.kernel);
        p.extend_from_slice(&MODINFO_MAGIC.to_le_bytes());
        p.extend_from_slice(&(MODINFO_BYTES as u32).to_le_bytes());
        p.extend_from_slice(
            &u32::try_from(info)
                .map_err(|_| "core.img too large")?
                .to_le_bytes(),
        );
        for (t, b) in &self.objects {
            p.extend_from_slice(&t.to_le_bytes());
            let size = u32::try_from(8 + b.len()).map_err(|_| "module too large")?;
            p.extend_from_slice(&size.to_le_bytes());
            p.extend_from_slice(b);
        }
        Ok(p)
    }

    /// core.img from its second sector: the decompressor (sizes updated, no Reed-Solomon
    /// parity) and the LZMA stream. Decoded again and compared before it is returned.
    pub fn encode(&self) -> Result<Vec<u8>, String> {
        let payload = self.payload()?;
        if payload.len() > MAX_UNCOMPRESSED {
            return Err(format!(
                "core.img: {} bytes uncompressed, more than GRUB's loader takes",
                payload.len()
            ));
        }
        let stream = lzma_encode(&payload)?;
        let mut out = self.decompressor.clone();
        let comp = u32::try_from(stream.len()).map_err(|_| "core.img too large")?;
        let uncomp = u32::try_from(payload.len()).map_err(|_| "core.img too large")?;
        out[COMPRESSED_SIZE..COMPRESSED_SIZE + 4].copy_from_slice(&comp.to_le_bytes());
        out[UNCOMPRESSED_SIZE..UNCOMPRESSED_SIZE + 4].copy_from_slice(&uncomp.to_le_bytes());
        out[RS_REDUNDANCY..RS_REDUNDANCY + 4].copy_from_slice(&0u32.to_le_bytes());
        out.extend_from_slice(&stream);
        let again = Core::decode_at(&out, self.decompressor.len(), stream.len(), payload.len())
            .ok_or("core.img: the re-encoded image does not decode")?;
        if again.kernel != self.kernel
            || again.objects != self.objects
            || again.decompressor.len() != self.decompressor.len()
        {
            return Err(
                "core.img: the re-encoded image does not decode to what was encoded".into(),
            );
        }
        Ok(out)
    }
}

/// Test fixtures shared with hybrid.rs.
#[cfg(test)]
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
        assert!(c2.remap(&|_| None).unwrap_err().contains("msdos1"));
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
            assert!(Core::decode(&b).is_err());
        }
        assert_eq!(module_name(b"\x7fELF\x01garbage"), None);
    }
}
