//! The Windows-like images of testdata/make-windows.sh, made once per version of the script
//! under the test target's tmp dir, with one file per partition for the ntfs-3g tools (they
//! read a device, not a disk image). Shared by tests/ntfsfile.rs and tests/convert_windows.rs.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use super::{require_tools, run_with_timeout, under_ci};

pub const TOOLS: &[(&str, &str)] = &[
    ("mkntfs", "ntfs-3g"),
    ("ntfs-3g", "ntfs-3g"),
    ("ntfscat", "ntfs-3g"),
    ("ntfsls", "ntfs-3g"),
    ("ntfsinfo", "ntfs-3g"),
    ("sfdisk", "fdisk"),
    ("python3", "python3"),
    ("qemu-img", "qemu-utils"),
    ("setfattr", "attr"),
    ("hivexregedit", "libwin-hivex-perl"),
];
pub const WINDOWS: &[&str] = &[
    "sysres",
    "conly",
    "bootdevice",
    "locate",
    "winre",
    "compressed",
    "hibernated",
    "dirty",
    "dirtyhive",
    "hivelogs",
    "bitlocker",
    "reuse",
];
pub const READER: &[&str] = &["special", "bigclus", "smallclus"];

/// The generated images, made once per version of the script.
pub fn images() -> Option<&'static Path> {
    static DIR: OnceLock<Option<PathBuf>> = OnceLock::new();
    DIR.get_or_init(|| {
        if !require_tools(TOOLS) {
            return None;
        }
        let script = super::repo_root().join("testdata/make-windows.sh");
        let text = fs::read(&script).expect("read make-windows.sh");
        let tmp = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
        fs::create_dir_all(&tmp).unwrap();
        let dir = tmp.join("windows-images");
        let lock = File::create(tmp.join("windows-images.lock")).unwrap();
        lock.lock().unwrap();
        let stamp = dir.join("make-windows.sh.used");
        if !fs::read(&stamp).is_ok_and(|s| s == text) {
            let _ = fs::remove_dir_all(&dir);
            let mut cmd = Command::new("bash");
            cmd.arg(&script).arg(&dir);
            let run = run_with_timeout(&mut cmd, Duration::from_secs(600));
            if run.code == Some(5) {
                // a missing tool or no usable /dev/fuse: the script's message says which
                let msg = format!("make-windows.sh cannot run here: {}", run.stderr.trim());
                assert!(!under_ci(), "{msg} (CI is set, so this is a failure)");
                eprintln!("SKIPPED: {msg}");
                return None;
            }
            assert!(
                !run.timed_out && run.code == Some(0),
                "{} failed: {}\n{}",
                run.command,
                run.stdout,
                run.stderr
            );
            // partition files for the ntfs-3g tools (they read a device, not a disk image)
            for v in WINDOWS.iter().chain(READER) {
                for p in parts(&dir, v) {
                    let mut dd = Command::new("dd");
                    dd.arg(format!("if={}", dir.join(format!("{v}.img")).display()))
                        .arg(format!("of={}", part_file(&dir, v, p.number).display()))
                        .args(["bs=1M", "conv=sparse", "status=none"])
                        .arg(format!("skip={}", p.start >> 20))
                        .arg(format!("count={}", p.bytes >> 20));
                    let r = run_with_timeout(&mut dd, Duration::from_secs(60));
                    assert_eq!(r.code, Some(0), "{}: {}", r.command, r.stderr);
                }
            }
            fs::write(&stamp, &text).unwrap();
        }
        Some(dir)
    })
    .as_deref()
}

#[derive(Debug, Clone)]
pub struct Part {
    pub number: u32,
    pub start: u64,
    pub bytes: u64,
    pub mbr_type: String,
    pub role: String,
}

pub fn parts(dir: &Path, variant: &str) -> Vec<Part> {
    let text = fs::read_to_string(dir.join(format!("{variant}.parts"))).unwrap();
    text.lines()
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            Part {
                number: f[0].parse().unwrap(),
                start: f[1].parse().unwrap(),
                bytes: f[2].parse().unwrap(),
                mbr_type: f[3].to_string(),
                role: f[4].to_string(),
            }
        })
        .collect()
}

pub fn part_file(dir: &Path, variant: &str, n: u32) -> PathBuf {
    dir.join(format!("{variant}-p{n}.part"))
}
