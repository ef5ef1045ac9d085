//! Registry hives (regf): the raw layouts ([`raw`]), a bounded reader ([`read`]), a writer of
//! whole new hives ([`write`]), an in-place value patcher ([`patch`]) and the replay of
//! new-format transaction logs ([`log`]).
//!
//! Source: M. Suhanov, "Windows registry file format specification" (msuhanov/regf); hivex
//! `lib/hivex-internal.h` and `lib/write.c` agree. Used for the BCD store (read the old BIOS one,
//! write a new UEFI one) and for `SYSTEM\MountedDevices`.
pub mod log;
pub mod patch;
pub mod raw;
pub mod read;
pub mod write;

pub use log::{replay_logs, Replay};
pub use patch::{HivePatcher, PatchedHive};
pub use read::{Hive, KeyNode, ValueNode};
pub use write::{write_hive, WriteOptions};

use crate::error::{Error, Result};

/// REG_NONE.
pub const REG_NONE: u32 = 0;
/// REG_SZ: UTF-16LE with a terminating NUL.
pub const REG_SZ: u32 = 1;
/// REG_EXPAND_SZ.
pub const REG_EXPAND_SZ: u32 = 2;
/// REG_BINARY.
pub const REG_BINARY: u32 = 3;
/// REG_DWORD (u32 little-endian).
pub const REG_DWORD: u32 = 4;
/// REG_MULTI_SZ: UTF-16LE strings, each NUL-terminated, then one more NUL.
pub const REG_MULTI_SZ: u32 = 7;
/// REG_QWORD.
pub const REG_QWORD: u32 = 11;

/// One write to a file: `bytes` at byte `offset` of the hive file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Write {
    pub offset: u64,
    pub bytes: Vec<u8>,
}

/// A key of an owned hive tree (what the reader gives and the writer takes).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Key {
    pub name: String,
    pub values: Vec<Value>,
    pub subkeys: Vec<Key>,
}

/// A value of an owned hive tree.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Value {
    /// "" is the key's default value.
    pub name: String,
    /// REG_* type.
    pub data_type: u32,
    pub data: Vec<u8>,
}

impl Key {
    pub fn new(name: &str) -> Key {
        Key {
            name: name.to_owned(),
            values: Vec::new(),
            subkeys: Vec::new(),
        }
    }

    /// The subkey named `name` (case-insensitive).
    pub fn subkey(&self, name: &str) -> Option<&Key> {
        self.subkeys
            .iter()
            .find(|k| raw::names_equal(&k.name, name))
    }

    /// The key at a backslash-separated path below this one.
    pub fn path(&self, path: &str) -> Option<&Key> {
        path.split('\\')
            .filter(|c| !c.is_empty())
            .try_fold(self, |k, c| k.subkey(c))
    }

    /// The subkey named `name`, added (empty) when missing.
    pub fn subkey_mut(&mut self, name: &str) -> &mut Key {
        let i = match self
            .subkeys
            .iter()
            .position(|k| raw::names_equal(&k.name, name))
        {
            Some(i) => i,
            None => {
                self.subkeys.push(Key::new(name));
                self.subkeys.len().saturating_sub(1)
            }
        };
        // OK to index: i is a position found in, or just pushed to, this vector
        #[allow(clippy::indexing_slicing)]
        &mut self.subkeys[i]
    }

    /// The value named `name` (case-insensitive).
    pub fn value(&self, name: &str) -> Option<&Value> {
        self.values.iter().find(|v| raw::names_equal(&v.name, name))
    }

    /// Set (replace or add) a value.
    pub fn set_value(&mut self, name: &str, data_type: u32, data: Vec<u8>) {
        let v = Value {
            name: name.to_owned(),
            data_type,
            data,
        };
        match self
            .values
            .iter_mut()
            .find(|x| raw::names_equal(&x.name, name))
        {
            Some(slot) => *slot = v,
            None => self.values.push(v),
        }
    }

    /// The same tree with subkeys sorted as Windows keeps them and values sorted by name, for
    /// comparisons that must not depend on list order.
    pub fn canonical(&self) -> Key {
        let mut k = self.clone();
        k.sort_recursive();
        k
    }

    fn sort_recursive(&mut self) {
        self.values
            .sort_by(|a, b| raw::name_order(&a.name, &b.name));
        self.subkeys
            .sort_by(|a, b| raw::name_order(&a.name, &b.name));
        for s in &mut self.subkeys {
            s.sort_recursive();
        }
    }
}

/// UTF-16LE with a terminating NUL (REG_SZ data).
pub fn sz(s: &str) -> Vec<u8> {
    s.encode_utf16()
        .chain(std::iter::once(0))
        .flat_map(u16::to_le_bytes)
        .collect()
}

/// REG_MULTI_SZ data: each string NUL-terminated, then one more NUL.
pub fn multi_sz<S: AsRef<str>>(items: &[S]) -> Vec<u8> {
    let mut out = Vec::new();
    for s in items {
        out.extend(sz(s.as_ref()));
    }
    out.extend([0, 0]);
    out
}

/// Decode REG_SZ data: UTF-16LE up to the first NUL (trailing NULs, as Windows sometimes writes
/// two, are ignored). Odd lengths are Corrupt.
pub fn parse_sz(data: &[u8]) -> Result<String> {
    let units = utf16_units(data)?;
    let end = units.iter().position(|&u| u == 0).unwrap_or(units.len());
    Ok(String::from_utf16_lossy(
        units.get(..end).unwrap_or_default(),
    ))
}

/// Decode REG_MULTI_SZ data: the strings before the empty one.
pub fn parse_multi_sz(data: &[u8]) -> Result<Vec<String>> {
    let units = utf16_units(data)?;
    Ok(units
        .split(|&u| u == 0)
        .take_while(|s| !s.is_empty())
        .map(String::from_utf16_lossy)
        .collect())
}

fn utf16_units(data: &[u8]) -> Result<Vec<u16>> {
    if !data.len().is_multiple_of(2) {
        return Err(Error::corrupt(format!(
            "registry string: {} bytes, expected an even number (UTF-16LE)",
            data.len()
        )));
    }
    Ok(data
        .chunks_exact(2)
        .map(|c| {
            u16::from_le_bytes([
                c.first().copied().unwrap_or(0),
                c.get(1).copied().unwrap_or(0),
            ])
        })
        .collect())
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    clippy::as_conversions
)] // tests: a panic is a failed test
mod tests {
    use super::raw::*;
    use super::*;
    use crate::error::ErrorKind;

    /// root { A { B { C } }, MountedDevices (12-byte value) }
    fn sample() -> (Key, Vec<u8>) {
        let mut root = Key::new("ROOT");
        root.subkey_mut("A").subkey_mut("B").subkey_mut("C");
        let md = root.subkey_mut("MountedDevices");
        md.set_value("\\DosDevices\\C:", REG_BINARY, vec![1; 12]);
        md.set_value("small", REG_DWORD, vec![1, 2, 3, 4]);
        let bytes = write_hive(&root, &WriteOptions::bcd()).unwrap();
        (root, bytes)
    }

    fn fix(h: &mut [u8]) {
        let sum = base_block_checksum(h).unwrap();
        h[508..512].copy_from_slice(&sum.to_le_bytes());
    }

    fn kind(r: Result<impl std::fmt::Debug>) -> ErrorKind {
        r.unwrap_err().kind()
    }

    #[test]
    fn writer_layout() {
        let (root, bytes) = sample();
        let h = Hive::parse(&bytes).unwrap();
        assert_eq!(h.root().unwrap().offset, 0x20, "root is the first cell");
        assert_eq!(h.root().unwrap().flags, 0x2C);
        assert_eq!(h.minor_version(), 3);
        assert_eq!(h.read_tree().unwrap().canonical(), root.canonical());
        // names compare as Windows does
        let md = h.open("\\mounteddevices").unwrap().unwrap();
        assert!(h.value(&md, "\\DOSDEVICES\\c:").unwrap().is_some());
        assert!(h.open("A\\b\\C").unwrap().is_some());
        assert!(h.open("A\\X").unwrap().is_none());
        // the subkey list of the root is lf, sorted by upper-cased name, with first-4 hints
        let r = h.root().unwrap();
        let list = h.cell(r.subkey_list).unwrap();
        assert_eq!(&list[..2], b"lf");
        let names: Vec<String> = h.subkeys(&r).unwrap().into_iter().map(|k| k.name).collect();
        assert_eq!(names, ["A", "MountedDevices"]);
        assert_eq!(&list[8..12], &lf_hint("A").to_le_bytes());
        assert_eq!(&list[16..20], b"Moun");
    }

    #[test]
    fn checksum_and_hashes() {
        let mut b = [0u8; 512];
        assert_eq!(base_block_checksum(&b), Some(1), "0 becomes 1");
        b[0..4].copy_from_slice(&[0xFF; 4]);
        assert_eq!(base_block_checksum(&b), Some(0xFFFF_FFFE), "-1 becomes -2");
        assert_eq!(base_block_checksum(&b[..100]), None);
        // lh: H = 37 * H + upcase(c)
        assert_eq!(lh_hash("ab"), 37 * u32::from(b'A') + u32::from(b'B'));
        assert!(names_equal("MountedDevices", "MOUNTEDDEVICES"));
        assert!(names_equal("Ärger", "äRGER"));
        assert!(!names_equal("A", "AB"));
        // Marvin32: published vector (lo ^ hi of "hello, world!" is 0x00c18515)
        let m = log::marvin32(b"hello, world!", log::LOG_HASH_SEED);
        assert_eq!((m >> 32) as u32 ^ (m as u32), 0x00c1_8515);
    }

    #[test]
    fn bad_checksum_is_corrupt() {
        let (_, mut bytes) = sample();
        bytes[508] ^= 1;
        assert_eq!(kind(Hive::parse(&bytes)), ErrorKind::Corrupt);
    }

    #[test]
    fn truncated_is_corrupt() {
        let (_, bytes) = sample();
        for n in [0, 100, 511, 4096, bytes.len() - 1] {
            assert_eq!(kind(Hive::parse(&bytes[..n])), ErrorKind::Corrupt, "{n}");
        }
    }

    #[test]
    fn bad_hbin_is_corrupt() {
        let (_, mut bytes) = sample();
        bytes[4096] = b'X';
        assert_eq!(kind(Hive::parse(&bytes)), ErrorKind::Corrupt);
        let (_, mut bytes) = sample();
        bytes[4096 + 8..4096 + 12].copy_from_slice(&0x1234u32.to_le_bytes());
        assert_eq!(kind(Hive::parse(&bytes)), ErrorKind::Corrupt);
    }

    #[test]
    fn cell_size_overflow_is_corrupt() {
        let (_, mut bytes) = sample();
        for size in [i32::MIN, -0x10000, -4, 0x7FFF_FFF8] {
            bytes[4096 + 0x20..4096 + 0x24].copy_from_slice(&size.to_le_bytes());
            let h = Hive::parse(&bytes).unwrap();
            assert_eq!(kind(h.root()), ErrorKind::Corrupt, "size {size}");
        }
    }

    #[test]
    fn subkey_list_loop_is_corrupt() {
        let (_, mut bytes) = sample();
        let h = Hive::parse(&bytes).unwrap();
        let a = h.open("A").unwrap().unwrap();
        let b = h.open("A\\B").unwrap().unwrap();
        // B's list names A (its parent): a cycle
        let at = 4096 + b.subkey_list as usize + 4 + 4;
        bytes[at..at + 4].copy_from_slice(&a.offset.to_le_bytes());
        let h = Hive::parse(&bytes).unwrap();
        assert_eq!(kind(h.read_tree()), ErrorKind::Corrupt);
        // and a list naming its own key
        let (_, mut bytes) = sample();
        let at = 4096 + a.subkey_list as usize + 4 + 4;
        bytes[at..at + 4].copy_from_slice(&a.offset.to_le_bytes());
        let h = Hive::parse(&bytes).unwrap();
        let a = h.open("A");
        assert_eq!(
            kind(a.and_then(|k| h.subkeys(&k.unwrap()))),
            ErrorKind::Corrupt
        );
    }

    #[test]
    fn count_overflowing_its_cell_is_corrupt() {
        let (_, mut bytes) = sample();
        let h = Hive::parse(&bytes).unwrap();
        let root = h.root().unwrap();
        // list count 0xFFFF and nk subkey count to match
        let at = 4096 + root.subkey_list as usize + 4 + 2;
        bytes[at..at + 2].copy_from_slice(&0xFFFFu16.to_le_bytes());
        let nk = 4096 + root.offset as usize + 4 + 0x14;
        bytes[nk..nk + 4].copy_from_slice(&0xFFFFu32.to_le_bytes());
        let h = Hive::parse(&bytes).unwrap();
        assert_eq!(kind(h.subkeys(&h.root().unwrap())), ErrorKind::Corrupt);
    }

    #[test]
    fn dirty_is_detected_and_patch_refused() {
        let (_, mut bytes) = sample();
        bytes[4..8].copy_from_slice(&7u32.to_le_bytes());
        fix(&mut bytes);
        assert!(Hive::parse(&bytes).unwrap().is_dirty());
        assert_eq!(kind(HivePatcher::new(&bytes)), ErrorKind::Conflict);
    }

    #[test]
    fn patch_grows_12_to_24_bytes_in_free_space() {
        let (_, bytes) = sample();
        let mut p = HivePatcher::new(&bytes).unwrap();
        let new: Vec<u8> = (0..24).collect();
        p.set_value_data("MountedDevices", "\\DosDevices\\C:", &new)
            .unwrap();
        p.set_value_data("MountedDevices", "small", &[9, 9])
            .unwrap();
        let done = p.finish().unwrap();
        let mut applied = bytes.clone();
        for w in &done.writes {
            let at = w.offset as usize;
            applied[at..at + w.bytes.len()].copy_from_slice(&w.bytes);
        }
        assert_eq!(applied, done.bytes);
        assert_eq!(applied.len(), bytes.len(), "no bin added");
        let h = Hive::parse(&applied).unwrap();
        assert!(!h.is_dirty());
        assert_eq!(h.sequence(), (2, 2));
        let md = h.open("MountedDevices").unwrap().unwrap();
        let v = h.value(&md, "\\DosDevices\\C:").unwrap().unwrap();
        assert_eq!(h.value_data(&v).unwrap(), new);
        let s = h.value(&md, "small").unwrap().unwrap();
        assert_eq!(h.value_data(&s).unwrap(), [9, 9]);
        assert!(done.written_bytes() < 200, "{} bytes", done.written_bytes());
    }

    #[test]
    fn patch_without_room_is_refused_with_the_reason() {
        let (_, bytes) = sample();
        let mut p = HivePatcher::new(&bytes).unwrap();
        let e = p
            .set_value_data("MountedDevices", "\\DosDevices\\C:", &[0; 8000])
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unsupported);
        assert!(e.message().contains("no free cell"), "{e}");
        assert_eq!(
            kind(p.set_value_data("Nope", "x", &[1])),
            ErrorKind::InvalidInput
        );
    }

    #[test]
    fn writer_refuses_bad_trees() {
        let mut root = Key::new("R");
        root.subkeys.push(Key::new("a"));
        root.subkeys.push(Key::new("A"));
        assert_eq!(
            kind(write_hive(&root, &WriteOptions::bcd())),
            ErrorKind::InvalidInput
        );
        let mut root = Key::new("R");
        root.subkeys.push(Key::new("a\\b"));
        assert_eq!(
            kind(write_hive(&root, &WriteOptions::bcd())),
            ErrorKind::InvalidInput
        );
        let root = Key::new("R");
        let mut o = WriteOptions::bcd();
        o.minor_version = 5;
        assert_eq!(kind(write_hive(&root, &o)), ErrorKind::Unsupported);
    }

    #[test]
    fn strings() {
        assert_eq!(parse_sz(&sz("abc")).unwrap(), "abc");
        let mut two = sz("abc");
        two.extend([0, 0]);
        assert_eq!(parse_sz(&two).unwrap(), "abc");
        assert_eq!(
            parse_multi_sz(&multi_sz(&["a", "bc"])).unwrap(),
            ["a", "bc"]
        );
        assert_eq!(kind(parse_sz(&[1])), ErrorKind::Corrupt);
    }
}
