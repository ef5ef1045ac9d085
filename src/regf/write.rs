//! Writer of whole new hives (format 1.3, as bcdboot's BCD stores): the root key as the first
//! cell, `lf` subkey lists sorted by upper-cased name, one or two security descriptors, the
//! base-block checksum. The output is read back by [`super::Hive`] before it is returned.
//!
//! Cells are laid out depth first (key, its values, its subkey list, its subkeys) in 4 KiB hive
//! bins; a cell larger than what is left of a bin starts a new bin sized for it, the rest of the
//! old bin becomes one free cell, so cells tile every bin as the format requires.

use super::raw::*;
use super::{Hive, Key};
use crate::error::{Error, Result};

/// Longest key name Windows accepts (characters).
pub const MAX_KEY_NAME_CHARS: usize = 255;
/// Longest value name Windows accepts (characters).
pub const MAX_VALUE_NAME_CHARS: usize = 16383;
/// Largest value data this writer stores (in one cell; format 1.3 has no big data records).
pub const MAX_VALUE_DATA_BYTES: usize = 1 << 20;
/// Most subkeys of one key (one `lf` list; larger lists would need an `ri` index).
pub const MAX_SUBKEYS: usize = 0xFFFF;

/// Security descriptor bcdboot gives the store's `Description` key (self-relative): owner
/// BUILTIN\Administrators, group SYSTEM, DACL: Administrators and SYSTEM KEY_ALL_ACCESS.
pub const BCD_DESCRIPTION_SD: &[u8] = &[
    0x01, 0x00, 0x04, 0x80, 0x48, 0x00, 0x00, 0x00, 0x58, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x14, 0x00, 0x00, 0x00, 0x02, 0x00, 0x34, 0x00, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x18, 0x00,
    0x3f, 0x00, 0x0f, 0x00, 0x01, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x05, 0x20, 0x00, 0x00, 0x00,
    0x20, 0x02, 0x00, 0x00, 0x00, 0x00, 0x14, 0x00, 0x3f, 0x00, 0x0f, 0x00, 0x01, 0x01, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x05, 0x12, 0x00, 0x00, 0x00, 0x01, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x05,
    0x20, 0x00, 0x00, 0x00, 0x20, 0x02, 0x00, 0x00, 0x01, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x05,
    0x12, 0x00, 0x00, 0x00,
];
/// Security descriptor bcdboot gives every other key of a store, the root included: the same,
/// but Administrators get 0x00060019 (KEY_READ | WRITE_DAC). Verified on
/// regipy-win10-uefi.BCD: 131 keys use this one, `\Description` the other.
pub const BCD_KEY_SD: &[u8] = &[
    0x01, 0x00, 0x04, 0x80, 0x48, 0x00, 0x00, 0x00, 0x58, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x14, 0x00, 0x00, 0x00, 0x02, 0x00, 0x34, 0x00, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x18, 0x00,
    0x19, 0x00, 0x06, 0x00, 0x01, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x05, 0x20, 0x00, 0x00, 0x00,
    0x20, 0x02, 0x00, 0x00, 0x00, 0x00, 0x14, 0x00, 0x3f, 0x00, 0x0f, 0x00, 0x01, 0x01, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x05, 0x12, 0x00, 0x00, 0x00, 0x01, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x05,
    0x20, 0x00, 0x00, 0x00, 0x20, 0x02, 0x00, 0x00, 0x01, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x05,
    0x12, 0x00, 0x00, 0x00,
];

/// How to write a hive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteOptions {
    /// Minor version: 3 (as BCD stores). Only 3 is written (`lf` lists, no big data).
    pub minor_version: u32,
    /// Security descriptor of every key not in `security_overrides`.
    pub key_security: Vec<u8>,
    /// Keys (paths below the root, e.g. "Description") with their own security descriptor.
    pub security_overrides: Vec<(String, Vec<u8>)>,
    /// Base block file name (UTF-16, at most 31 characters kept), e.g. "\\EFI\\Microsoft\\Boot\\BCD".
    pub file_name: String,
    /// FILETIME written in the base block, the first bin and every key (0 keeps output
    /// independent of the clock).
    pub timestamp: u64,
    /// Primary = secondary sequence number.
    pub sequence: u32,
}

impl WriteOptions {
    /// As bcdboot writes a BCD store: version 1.3, its two security descriptors.
    pub fn bcd() -> WriteOptions {
        WriteOptions {
            minor_version: 3,
            key_security: BCD_KEY_SD.to_vec(),
            security_overrides: vec![("Description".to_owned(), BCD_DESCRIPTION_SD.to_vec())],
            file_name: String::new(),
            timestamp: 0,
            sequence: 1,
        }
    }
}

fn invalid(what: impl std::fmt::Display) -> Error {
    Error::invalid(format!("registry hive writer: {what}"))
}

fn u32_of(v: usize) -> Result<u32> {
    u32::try_from(v).map_err(|_| invalid(format!("{v} does not fit 32 bits")))
}

fn round8(v: usize) -> Option<usize> {
    v.checked_add(7).map(|x| x & !7)
}

/// Name bytes as stored and whether they are compressed (Latin-1).
fn encode_name(name: &str) -> (Vec<u8>, bool) {
    let latin1: Option<Vec<u8>> = name
        .chars()
        .map(|c| u8::try_from(u32::from(c)).ok())
        .collect();
    match latin1 {
        Some(b) => (b, true),
        None => (
            name.encode_utf16().flat_map(u16::to_le_bytes).collect(),
            false,
        ),
    }
}

fn utf16_bytes(name: &str) -> usize {
    name.encode_utf16().count().saturating_mul(2)
}

/// The hive bins under construction.
struct Bins {
    buf: Vec<u8>,
    /// End of the current bin.
    bin_end: usize,
    /// Next free byte in the current bin.
    next: usize,
    timestamp: u64,
}

impl Bins {
    fn put(&mut self, at: usize, bytes: &[u8]) -> Result<()> {
        let end = at
            .checked_add(bytes.len())
            .ok_or_else(|| invalid("offset overflow"))?;
        self.buf
            .get_mut(at..end)
            .ok_or_else(|| invalid(format!("write at {at:#x} outside the bins")))?
            .copy_from_slice(bytes);
        Ok(())
    }
    fn put_u32(&mut self, at: usize, v: u32) -> Result<()> {
        self.put(at, &v.to_le_bytes())
    }

    fn close_bin(&mut self) -> Result<()> {
        let rest = self.bin_end.saturating_sub(self.next);
        if rest > 0 {
            // the rest of the bin is one free cell (positive size)
            self.put_u32(self.next, u32_of(rest)?)?;
        }
        self.next = self.bin_end;
        Ok(())
    }

    /// A new cell with `body` bytes; returns its offset. The size field is written.
    fn alloc(&mut self, body: usize) -> Result<usize> {
        let total = body
            .checked_add(4)
            .and_then(round8)
            .ok_or_else(|| invalid("cell size overflow"))?;
        if self
            .next
            .checked_add(total)
            .is_none_or(|e| e > self.bin_end)
        {
            self.close_bin()?;
            let start = self.buf.len();
            let size = total
                .checked_add(HBIN_HEADER_BYTES)
                .and_then(|s| s.checked_next_multiple_of(HBIN_ALIGN))
                .ok_or_else(|| invalid("bin size overflow"))?;
            let end = start
                .checked_add(size)
                .ok_or_else(|| invalid("hive too large"))?;
            self.buf.resize(end, 0);
            let hdr = RawHbin {
                signature: HBIN_SIGNATURE,
                offset: u32_of(start)?.into(),
                size: u32_of(size)?.into(),
                reserved: [0; 8],
                timestamp: self.timestamp.into(),
                spare: 0.into(),
            };
            self.put(start, zerocopy::IntoBytes::as_bytes(&hdr))?;
            self.bin_end = end;
            self.next = start
                .checked_add(HBIN_HEADER_BYTES)
                .ok_or_else(|| invalid("bin overflow"))?;
        }
        let at = self.next;
        let neg = i32::try_from(total)
            .map_err(|_| invalid("cell too large"))?
            .wrapping_neg();
        self.put(at, &neg.to_le_bytes())?;
        self.next = at
            .checked_add(total)
            .ok_or_else(|| invalid("bin overflow"))?;
        Ok(at)
    }

    /// Write a cell body (after its size field).
    fn body(&mut self, cell: usize, bytes: &[u8]) -> Result<()> {
        self.put(
            cell.checked_add(4)
                .ok_or_else(|| invalid("offset overflow"))?,
            bytes,
        )
    }
}

struct Writer<'o> {
    bins: Bins,
    opts: &'o WriteOptions,
    /// sk cell of each distinct descriptor, in order of first use; [0] is `key_security`'s.
    sks: Vec<(&'o [u8], usize)>,
}

/// Check names, counts and sizes of the whole tree before anything is laid out.
fn check_tree(key: &Key, depth: usize) -> Result<()> {
    if depth >= super::read::MAX_DEPTH {
        return Err(invalid(format!(
            "keys nested deeper than {}",
            super::read::MAX_DEPTH
        )));
    }
    let chars = key.name.chars().count();
    if (depth > 0 && chars == 0) || chars > MAX_KEY_NAME_CHARS || key.name.contains('\\') {
        return Err(invalid(format!(
            "key name {:?}: expected 1 to {MAX_KEY_NAME_CHARS} characters without '\\'",
            key.name
        )));
    }
    if key.subkeys.len() > MAX_SUBKEYS {
        return Err(Error::unsupported(format!(
            "registry hive writer: key {:?} has {} subkeys, at most {MAX_SUBKEYS} are written",
            key.name,
            key.subkeys.len()
        )));
    }
    for (i, v) in key.values.iter().enumerate() {
        if v.name.chars().count() > MAX_VALUE_NAME_CHARS {
            return Err(invalid(format!(
                "value name of {} characters",
                v.name.chars().count()
            )));
        }
        if v.data.len() > MAX_VALUE_DATA_BYTES {
            return Err(Error::unsupported(format!(
                "registry hive writer: value {:?} of key {:?} holds {} bytes, at most {MAX_VALUE_DATA_BYTES} are written",
                v.name,
                key.name,
                v.data.len()
            )));
        }
        if key
            .values
            .iter()
            .take(i)
            .any(|w| names_equal(&w.name, &v.name))
        {
            return Err(invalid(format!(
                "key {:?}: value {:?} twice",
                key.name, v.name
            )));
        }
    }
    for (i, s) in key.subkeys.iter().enumerate() {
        if key
            .subkeys
            .iter()
            .take(i)
            .any(|w| names_equal(&w.name, &s.name))
        {
            return Err(invalid(format!(
                "key {:?}: subkey {:?} twice",
                key.name, s.name
            )));
        }
        check_tree(s, depth.saturating_add(1))?;
    }
    Ok(())
}

impl Writer<'_> {
    /// The sk cell for the key at `path` (below the root, '\\'-separated).
    fn sk_for(&self, path: &str) -> usize {
        let sd = sd_for(self.opts, path);
        self.sks
            .iter()
            .find(|(d, _)| *d == sd)
            .or(self.sks.first())
            .map_or(0, |&(_, at)| at)
    }

    fn fill_sk(
        &mut self,
        at: usize,
        sd: &[u8],
        flink: usize,
        blink: usize,
        refs: usize,
    ) -> Result<()> {
        let raw = RawSk {
            signature: SK_SIGNATURE,
            reserved: 0.into(),
            flink: u32_of(flink)?.into(),
            blink: u32_of(blink)?.into(),
            reference_count: u32_of(refs)?.into(),
            descriptor_size: u32_of(sd.len())?.into(),
        };
        let mut body = zerocopy::IntoBytes::as_bytes(&raw).to_vec();
        body.extend_from_slice(sd);
        self.bins.body(at, &body)
    }

    /// Lay out `key` (already allocated at `nk_at`) and everything below it.
    fn key(
        &mut self,
        key: &Key,
        path: &str,
        nk_at: usize,
        parent: u32,
        is_root: bool,
    ) -> Result<()> {
        // values
        let mut value_list = NO_CELL;
        if !key.values.is_empty() {
            let list_at = self.bins.alloc(key.values.len().saturating_mul(4))?;
            value_list = u32_of(list_at)?;
            let mut offsets = Vec::with_capacity(key.values.len().saturating_mul(4));
            for v in &key.values {
                let (name, compressed) = encode_name(&v.name);
                let vk_at = self
                    .bins
                    .alloc(core::mem::size_of::<RawVk>().saturating_add(name.len()))?;
                let len = v.data.len();
                let (size, offset) = if len <= 4 {
                    let mut inline = [0u8; 4];
                    inline
                        .get_mut(..len)
                        .ok_or_else(|| invalid("inline data"))?
                        .copy_from_slice(&v.data);
                    (u32_of(len)? | DATA_INLINE, u32::from_le_bytes(inline))
                } else {
                    let data_at = self.bins.alloc(len)?;
                    self.bins.body(data_at, &v.data)?;
                    (u32_of(len)?, u32_of(data_at)?)
                };
                let raw = RawVk {
                    signature: VK_SIGNATURE,
                    name_length: u16::try_from(name.len())
                        .map_err(|_| invalid("value name too long"))?
                        .into(),
                    data_size: size.into(),
                    data_offset: offset.into(),
                    data_type: v.data_type.into(),
                    flags: (if compressed { VALUE_COMP_NAME } else { 0 }).into(),
                    spare: 0.into(),
                };
                let mut body = zerocopy::IntoBytes::as_bytes(&raw).to_vec();
                body.extend_from_slice(&name);
                self.bins.body(vk_at, &body)?;
                offsets.extend(u32_of(vk_at)?.to_le_bytes());
            }
            self.bins.body(list_at, &offsets)?;
        }

        // subkeys, sorted as Windows keeps them
        let mut subs: Vec<&Key> = key.subkeys.iter().collect();
        subs.sort_by(|a, b| name_order(&a.name, &b.name));
        let mut subkey_list = NO_CELL;
        if !subs.is_empty() {
            let list_at = self.bins.alloc(
                subs.len()
                    .checked_mul(8)
                    .and_then(|n| n.checked_add(4))
                    .ok_or_else(|| invalid("list size"))?,
            )?;
            subkey_list = u32_of(list_at)?;
            let mut list = Vec::with_capacity(subs.len().saturating_mul(8).saturating_add(4));
            list.extend_from_slice(&LF_SIGNATURE);
            list.extend(
                u16::try_from(subs.len())
                    .map_err(|_| invalid("too many subkeys"))?
                    .to_le_bytes(),
            );
            let mut children = Vec::with_capacity(subs.len());
            for s in &subs {
                let (name, _) = encode_name(&s.name);
                let child = self
                    .bins
                    .alloc(core::mem::size_of::<RawNk>().saturating_add(name.len()))?;
                list.extend(u32_of(child)?.to_le_bytes());
                list.extend(lf_hint(&s.name).to_le_bytes());
                children.push(child);
            }
            self.bins.body(list_at, &list)?;
            let me = u32_of(nk_at)?;
            for (s, child) in subs.iter().zip(children) {
                let child_path = if path.is_empty() {
                    s.name.clone()
                } else {
                    format!("{path}\\{}", s.name)
                };
                self.key(s, &child_path, child, me, false)?;
            }
        }

        let (name, compressed) = encode_name(&key.name);
        let mut flags = if compressed { KEY_COMP_NAME } else { 0 };
        if is_root {
            flags |= KEY_HIVE_ENTRY | KEY_NO_DELETE;
        }
        let max = |it: &mut dyn Iterator<Item = usize>| u32_of(it.max().unwrap_or(0));
        let raw = RawNk {
            signature: NK_SIGNATURE,
            flags: flags.into(),
            last_written: self.opts.timestamp.into(),
            access_bits: 0.into(),
            parent: parent.into(),
            subkey_count: u32_of(subs.len())?.into(),
            volatile_subkey_count: 0.into(),
            subkey_list: subkey_list.into(),
            volatile_subkey_list: NO_CELL.into(),
            value_count: u32_of(key.values.len())?.into(),
            value_list: value_list.into(),
            security: u32_of(self.sk_for(path))?.into(),
            class_name: NO_CELL.into(),
            max_subkey_name_bytes: max(&mut subs.iter().map(|s| utf16_bytes(&s.name)))?.into(),
            max_class_name_bytes: 0.into(),
            max_value_name_bytes: max(&mut key.values.iter().map(|v| utf16_bytes(&v.name)))?.into(),
            max_value_data_bytes: max(&mut key.values.iter().map(|v| v.data.len()))?.into(),
            work_var: 0.into(),
            name_length: u16::try_from(name.len())
                .map_err(|_| invalid("key name too long"))?
                .into(),
            class_name_length: 0.into(),
        };
        let mut body = zerocopy::IntoBytes::as_bytes(&raw).to_vec();
        body.extend_from_slice(&name);
        self.bins.body(nk_at, &body)
    }
}

/// The descriptor of the key at `path` (below the root, '\\'-separated, case-insensitive).
fn sd_for<'o>(opts: &'o WriteOptions, path: &str) -> &'o [u8] {
    opts.security_overrides
        .iter()
        .find(|(p, _)| {
            let p: Vec<&str> = p.split('\\').filter(|c| !c.is_empty()).collect();
            let q: Vec<&str> = path.split('\\').filter(|c| !c.is_empty()).collect();
            p.len() == q.len() && p.iter().zip(&q).all(|(a, b)| names_equal(a, b))
        })
        .map_or(opts.key_security.as_slice(), |(_, sd)| sd.as_slice())
}

/// Count, per distinct security descriptor, the keys that use it.
fn count_uses<'o>(
    key: &Key,
    path: &str,
    opts: &'o WriteOptions,
    uses: &mut Vec<(&'o [u8], usize)>,
) {
    let sd = sd_for(opts, path);
    match uses.iter_mut().find(|(d, _)| *d == sd) {
        Some(u) => u.1 = u.1.saturating_add(1),
        None => uses.push((sd, 1)),
    }
    for s in &key.subkeys {
        let child = if path.is_empty() {
            s.name.clone()
        } else {
            format!("{path}\\{}", s.name)
        };
        count_uses(s, &child, opts, uses);
    }
}

/// Write `root` and everything below it as a new hive file. The result is parsed back with our
/// reader and compared with the input before it is returned.
pub fn write_hive(root: &Key, opts: &WriteOptions) -> Result<Vec<u8>> {
    if opts.minor_version != 3 {
        return Err(Error::unsupported(format!(
            "registry hive writer: version 1.{} (only 1.3 is written)",
            opts.minor_version
        )));
    }
    check_tree(root, 0)?;
    let mut w = Writer {
        bins: Bins {
            buf: Vec::new(),
            bin_end: 0,
            next: 0,
            timestamp: opts.timestamp,
        },
        opts,
        sks: Vec::new(),
    };
    // the root key is the first cell (0x20): regipy and every Windows sample rely on it
    let (root_name, _) = encode_name(&root.name);
    let root_at = w
        .bins
        .alloc(core::mem::size_of::<RawNk>().saturating_add(root_name.len()))?;
    // one sk cell per distinct descriptor in use, in a closed flink/blink ring
    let mut uses: Vec<(&[u8], usize)> = vec![(opts.key_security.as_slice(), 0)];
    count_uses(root, "", opts, &mut uses);
    uses.retain(|(_, n)| *n > 0);
    for (sd, _) in &uses {
        let at = w.bins.alloc(
            core::mem::size_of::<RawSk>()
                .checked_add(sd.len())
                .ok_or_else(|| invalid("sd size"))?,
        )?;
        w.sks.push((sd, at));
    }
    let n = w.sks.len();
    for (i, &(sd, at)) in w.sks.clone().iter().enumerate() {
        let next = w
            .sks
            .get(i.saturating_add(1).checked_rem(n).unwrap_or(0))
            .map_or(at, |x| x.1);
        let prev = w
            .sks
            .get(
                i.saturating_add(n)
                    .saturating_sub(1)
                    .checked_rem(n)
                    .unwrap_or(0),
            )
            .map_or(at, |x| x.1);
        let refs = uses.get(i).map_or(0, |u| u.1);
        w.fill_sk(at, sd, next, prev, refs)?;
    }
    w.key(root, "", root_at, NO_CELL, true)?;
    w.bins.close_bin()?;
    let bins = w.bins.buf;

    let mut file_name = [0u8; 64];
    for (slot, b) in file_name
        .chunks_exact_mut(2)
        .take(31)
        .zip(opts.file_name.encode_utf16().map(u16::to_le_bytes))
    {
        slot.copy_from_slice(&b);
    }
    let mut base = RawBaseBlock {
        signature: REGF_SIGNATURE,
        primary_sequence: opts.sequence.into(),
        secondary_sequence: opts.sequence.into(),
        last_written: opts.timestamp.into(),
        major_version: 1.into(),
        minor_version: opts.minor_version.into(),
        file_type: FILE_TYPE_PRIMARY.into(),
        file_format: FILE_FORMAT_DIRECT.into(),
        root_cell_offset: u32_of(root_at)?.into(),
        hive_bins_data_size: u32_of(bins.len())?.into(),
        clustering_factor: 1.into(),
        file_name,
        reserved: [0; 396],
        checksum: 0.into(),
    };
    let sum = base_block_checksum(zerocopy::IntoBytes::as_bytes(&base)).unwrap_or(1);
    base.checksum = sum.into();
    let mut out = Vec::with_capacity(BASE_BLOCK_BYTES.saturating_add(bins.len()));
    out.extend_from_slice(zerocopy::IntoBytes::as_bytes(&base));
    out.resize(BASE_BLOCK_BYTES, 0);
    out.extend_from_slice(&bins);

    // the writer's own output goes through the reader before it leaves
    let back = Hive::parse(&out)?.read_tree()?;
    if back.canonical() != root.canonical() {
        return Err(Error::corrupt(
            "registry hive writer: the written hive does not read back as its input",
        ));
    }
    Ok(out)
}
