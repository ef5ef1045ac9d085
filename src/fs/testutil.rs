//! Test helpers: temporary image files, external tools (skipped outside CI, required in CI),
//! and the blkid oracle.

#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};

use super::info::{FsInfo, FsKind};

/// Is `tool` runnable? Missing: skip with a message naming the apt package outside CI (returns
/// false), fail with that message when `CI` is set.
pub fn have_tool(tool: &str, package: &str) -> bool {
    let found = std::env::var_os("PATH")
        .map(|p| {
            std::env::split_paths(&p).any(|d| d.join(tool).is_file())
                || ["/sbin", "/usr/sbin"]
                    .iter()
                    .any(|d| Path::new(d).join(tool).is_file())
        })
        .unwrap_or(false);
    if !found {
        let msg = format!("{tool} not found: install it with `apt-get install {package}`");
        if std::env::var_os("CI").is_some() {
            panic!("{msg}");
        }
        eprintln!("SKIPPED: {msg}");
    }
    found
}

/// A file in the temp directory with a unique name, removed on drop.
pub struct TempImage {
    pub path: PathBuf,
}

impl TempImage {
    /// A sparse zero-filled file of `len` bytes.
    pub fn new(tag: &str, len: u64) -> TempImage {
        static N: AtomicU64 = AtomicU64::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let path = std::env::temp_dir().join(format!(
            "vhdtool-fs-{tag}-{}-{n}-{nanos}.img",
            std::process::id()
        ));
        let f = std::fs::File::create(&path).unwrap();
        f.set_len(len).unwrap();
        TempImage { path }
    }
    pub fn with_bytes(tag: &str, bytes: &[u8]) -> TempImage {
        let t = TempImage::new(tag, 0);
        std::fs::write(&t.path, bytes).unwrap();
        t
    }
    /// The file mapped read-only (large sparse images are not read into memory).
    pub fn disk(&self) -> crate::disk::MmapDisk {
        crate::disk::MmapDisk::open(&self.path, crate::disk::Access::ReadOnly).unwrap()
    }
    pub fn bytes(&self) -> Vec<u8> {
        std::fs::read(&self.path).unwrap()
    }
    pub fn s(&self) -> &str {
        self.path.to_str().unwrap()
    }
}

impl Drop for TempImage {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Run a command, panic with its output when it fails.
pub fn run(cmd: &str, args: &[&str]) {
    run_env(cmd, args, &[]);
}

pub fn run_env(cmd: &str, args: &[&str], env: &[(&str, &str)]) {
    let out = Command::new(cmd)
        .args(args)
        .envs(env.iter().copied())
        .output()
        .unwrap_or_else(|e| panic!("{cmd}: {e}"));
    assert!(
        out.status.success(),
        "{cmd} {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `blkid -p -o export FILE` as a map (empty when blkid finds nothing), on `len` bytes from
/// `offset` when a range is given (`-O OFFSET -S LEN`). LABEL is read again with `-o value`,
/// which prints it unescaped (export mangles non-ASCII bytes as `M-C...`).
pub fn blkid_at(path: &Path, range: Option<(u64, u64)>) -> HashMap<String, String> {
    let mut extra: Vec<String> = Vec::new();
    if let Some((offset, len)) = range {
        extra = vec![
            "-O".into(),
            offset.to_string(),
            "-S".into(),
            len.to_string(),
        ];
    }
    let out = Command::new("blkid")
        .args(["-p", "-o", "export"])
        .args(&extra)
        .arg(path)
        .output()
        .unwrap();
    let mut map: HashMap<String, String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), unescape(v)))
        .collect();
    if map.contains_key("LABEL") {
        let out = Command::new("blkid")
            .args(["-p", "-o", "value", "-s", "LABEL"])
            .args(&extra)
            .arg(path)
            .output()
            .unwrap();
        let raw = String::from_utf8_lossy(&out.stdout);
        map.insert(
            "LABEL".into(),
            raw.strip_suffix('\n').unwrap_or(&raw).to_string(),
        );
    }
    map
}

/// blkid's export format escapes spaces and specials with a backslash.
fn unescape(v: &str) -> String {
    let mut out = String::new();
    let mut esc = false;
    for c in v.chars() {
        if esc || c != '\\' {
            out.push(c);
            esc = false;
        } else {
            esc = true;
        }
    }
    out
}

/// The TYPE blkid gives each kind.
pub fn blkid_type(kind: FsKind) -> &'static str {
    match kind {
        FsKind::Ntfs => "ntfs",
        FsKind::Fat12 | FsKind::Fat16 | FsKind::Fat32 => "vfat",
        FsKind::Exfat => "exfat",
        FsKind::Ext2 => "ext2",
        FsKind::Ext3 => "ext3",
        FsKind::Ext4 => "ext4",
        FsKind::Xfs => "xfs",
        FsKind::Btrfs => "btrfs",
        FsKind::Swap => "swap",
        FsKind::Lvm2 => "LVM2_member",
        FsKind::Luks1 | FsKind::Luks2 => "crypto_LUKS",
        FsKind::Bitlocker => "BitLocker",
        FsKind::Refs => "ReFS",
        FsKind::Iso9660 => "iso9660",
    }
}

/// Probe the image file and check TYPE, UUID and LABEL against blkid; returns our result.
pub fn probe_matches_blkid(img: &TempImage) -> FsInfo {
    probe_at_matches_blkid(img, None)
}

/// [`probe_matches_blkid`] on a byte range of the file (`probe_at` vs `blkid -O -S`).
pub fn probe_at_matches_blkid(img: &TempImage, range: Option<(u64, u64)>) -> FsInfo {
    let disk = img.disk();
    let found = match range {
        Some((offset, len)) => super::probe_at(&disk, offset, len),
        None => super::probe(&disk),
    };
    let info = found.unwrap_or_else(|| panic!("probe found nothing in {} {range:?}", img.s()));
    let b = blkid_at(&img.path, range);
    assert_eq!(
        b.get("TYPE").map(String::as_str),
        Some(blkid_type(info.kind)),
        "{info:?} vs {b:?}"
    );
    assert_eq!(b.get("UUID"), info.uuid.as_ref(), "UUID: {info:?} vs {b:?}");
    assert_eq!(
        b.get("LABEL"),
        info.label.as_ref(),
        "LABEL: {info:?} vs {b:?}"
    );
    info
}
