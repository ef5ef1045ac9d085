//! `vhdtool checksum` speed, as ratios against tools measured in the same run:
//!
//! - (a) a 4 GiB file of random data in the page cache: throughput in GB/s, against `cksum`
//!   (GNU coreutils, its default CRC) on the same file;
//! - (b) a 127 GiB sparse image holding 1 GiB of data: time (holes are never read);
//! - (c) the whole-disk CRC32 of the 4 GiB file: vhdtool's (assembled from parallel chunk CRCs)
//!   against `crc32` (libarchive-zip-perl) and Python's `zlib.crc32`, values compared.
//!
//! Run: `cargo bench --bench checksum`. Each figure is the best of a few runs of the release
//! binary (other load on the machine only slows runs down). Files live under the target dir and
//! are removed at the end.
#![allow(clippy::restriction)] // benches: a panic is a failed bench (the crate's panic lints are for src/)

mod common;
use common::{bin, run_output};

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const GIB: u64 = 1 << 30;

/// The best wall time of `n` runs, and the stdout of the last.
fn best(n: usize, mut make: impl FnMut() -> Command) -> (String, Duration) {
    let mut best = Duration::MAX;
    let mut out = String::new();
    for _ in 0..n {
        let (o, t) = run_output(&mut make());
        best = best.min(t);
        out = o;
    }
    (out, best)
}

fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Random bytes (xorshift64*), written in 8 MiB blocks.
fn random_file(path: &Path, bytes: u64) {
    let mut f = fs::File::create(path).unwrap();
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut buf = vec![0u8; 8 << 20];
    let mut left = bytes;
    while left > 0 {
        for w in buf.chunks_exact_mut(8) {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            w.copy_from_slice(&x.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
        }
        let n = left.min(buf.len() as u64) as usize;
        f.write_all(&buf[..n]).unwrap();
        left -= n as u64;
    }
    f.sync_all().unwrap();
}

fn whole_crc(json: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(json).unwrap();
    v["whole_crc32"].as_str().unwrap().to_string()
}

fn gbps(bytes: u64, t: Duration) -> f64 {
    bytes as f64 / t.as_secs_f64() / 1e9
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` runs this too: do the work only then
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("bench-checksum");
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    let load = fs::read_to_string("/proc/loadavg").unwrap_or_default();
    eprintln!("load average at start: {}", load.trim());

    // (a) 4 GiB of random data, in the page cache
    let size = 4 * GIB;
    let file = dir.join("random-4g.bin");
    random_file(&file, size);
    run_output(
        Command::new("cat")
            .arg(&file)
            .arg("/dev/null")
            .stdout(std::process::Stdio::null()),
    );
    let (json, ours) = best(5, || {
        let mut c = Command::new(bin());
        c.arg("checksum").arg("--json").arg(&file);
        c
    });
    let (_, cksum) = best(3, || {
        let mut c = Command::new("cksum");
        c.arg(&file);
        c
    });
    eprintln!(
        "(a) 4 GiB random, cached: vhdtool checksum {:.3} s = {:.2} GB/s; cksum {:.3} s = {:.2} GB/s; ratio {:.2}x",
        ours.as_secs_f64(),
        gbps(size, ours),
        cksum.as_secs_f64(),
        gbps(size, cksum),
        cksum.as_secs_f64() / ours.as_secs_f64()
    );

    // (c) whole-disk CRC32 of the same file, values compared
    let crc = whole_crc(&json);
    if have("crc32") {
        let (out, t) = best(2, || {
            let mut c = Command::new("crc32");
            c.arg(&file);
            c
        });
        let theirs = out
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_string();
        assert_eq!(theirs, crc, "crc32 disagrees");
        eprintln!(
            "(c) whole-disk CRC32 {crc}: vhdtool {:.3} s; crc32 (libarchive-zip-perl) {:.3} s, same value; ratio {:.1}x",
            ours.as_secs_f64(),
            t.as_secs_f64(),
            t.as_secs_f64() / ours.as_secs_f64()
        );
    }
    if have("python3") {
        let script = "import sys, zlib\nc = 0\nwith open(sys.argv[1], 'rb', buffering=0) as f:\n  while True:\n    b = f.read(1 << 24)\n    if not b: break\n    c = zlib.crc32(b, c)\nprint('%08x' % c)";
        let (out, t) = best(2, || {
            let mut c = Command::new("python3");
            c.args(["-c", script]).arg(&file);
            c
        });
        assert_eq!(out.trim(), crc, "zlib.crc32 disagrees");
        eprintln!(
            "(c) whole-disk CRC32 {crc}: python3 zlib.crc32 {:.3} s, same value; ratio {:.1}x",
            t.as_secs_f64(),
            t.as_secs_f64() / ours.as_secs_f64()
        );
    }
    fs::remove_file(&file).unwrap();

    // (b) 127 GiB sparse, 1 GiB of data in 16 islands of 64 MiB
    let sparse = dir.join("sparse-127g.img");
    {
        let f = OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .open(&sparse)
            .unwrap();
        f.set_len(127 * GIB).unwrap();
        let island: Vec<u8> = (0..64u32 << 20)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8)
            .collect();
        for k in 0..16u64 {
            f.write_all_at(&island, k * 7 * GIB + (k << 20)).unwrap();
        }
        f.sync_all().unwrap();
    }
    run_output(
        Command::new("cat")
            .arg(&sparse)
            .arg("/dev/null")
            .stdout(std::process::Stdio::null()),
    );
    let (_, t) = best(5, || {
        let mut c = Command::new(bin());
        c.arg("checksum").arg("--json").arg(&sparse);
        c
    });
    let (_, tu) = best(3, || {
        let mut c = Command::new(bin());
        c.args(["checksum", "--json", "--upload-ranges"])
            .arg(&sparse);
        c
    });
    eprintln!(
        "(b) 127 GiB sparse, 1 GiB data: vhdtool checksum {:.3} s; with --upload-ranges {:.3} s",
        t.as_secs_f64(),
        tu.as_secs_f64()
    );
    let load = fs::read_to_string("/proc/loadavg").unwrap_or_default();
    eprintln!("load average at end: {}", load.trim());
    let _ = fs::remove_dir_all(&dir);
}
