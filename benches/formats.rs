//! Format step: a 2 GiB qcow2 holding 1 GiB of data (1 MiB written every 2 MiB) -> sparse fixed
//! VHD, with `vhdtool::image::write::write_fixed_vhd` and with
//! `qemu-img convert -O vpc -o subformat=fixed,force_size=on` (the same output shape), and the
//! peak resident memory of ours (VmHWM, reset through /proc/self/clear_refs before the run).
//!
//! Run: `cargo bench --bench formats`. The comparison prints on stderr.
#![allow(clippy::restriction)] // benches: a panic is a failed bench (the crate's panic lints are for src/)

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use vhdtool::image::write::{write_fixed_vhd, WriteOptions};
use vhdtool::image::{Image, OpenOptions};

const GIB: u64 = 1 << 30;
const MIB: u64 = 1 << 20;

fn tempdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("vhdtool-bench-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// The input: 2 GiB virtual, 1 MiB of a per-MiB pattern at every even MiB (1 GiB of data).
fn make_qcow2(dir: &Path) -> PathBuf {
    let p = dir.join("in.qcow2");
    common::run(Command::new("qemu-img").args([
        "create",
        "-f",
        "qcow2",
        p.to_str().unwrap(),
        "2G",
    ]));
    let mut cmd = Command::new("qemu-io");
    cmd.args(["-f", "qcow2"]);
    for i in 0..(GIB / MIB) {
        cmd.arg("-c").arg(format!(
            "write -P 0x{:02x} {} 1M",
            (i % 255) + 1,
            i * 2 * MIB
        ));
    }
    cmd.arg(&p);
    common::run(&mut cmd);
    p
}

fn vm_hwm_kib() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    s.lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn ours(input: &Path, out: &Path) -> Duration {
    let _ = std::fs::remove_file(out);
    let start = Instant::now();
    let img = Image::open(input, &OpenOptions::default()).unwrap();
    write_fixed_vhd(&img, out, &WriteOptions::default()).unwrap();
    start.elapsed()
}

/// qemu-img convert; `cache` "writeback" makes it flush the output at the end as we do (its
/// default for convert made no fdatasync at the end under strace here, qemu-img 10.0.2).
fn qemu(input: &Path, out: &Path, cache: &str) -> Duration {
    let _ = std::fs::remove_file(out);
    common::run(Command::new("qemu-img").args([
        "convert",
        "-t",
        cache,
        "-O",
        "vpc",
        "-o",
        "subformat=fixed,force_size=on",
        input.to_str().unwrap(),
        out.to_str().unwrap(),
    ]))
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let dir = tempdir("formats");
    let input = make_qcow2(&dir);
    let out = dir.join("out.vhd");
    // warm the page cache for both
    ours(&input, &out);
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let hwm_before = vm_hwm_kib();
    let mut o = Vec::new();
    let mut q = Vec::new();
    let mut u = Vec::new();
    for _ in 0..3 {
        o.push(ours(&input, &out));
        q.push(qemu(&input, &dir.join("qemu.vhd"), "writeback"));
        u.push(qemu(&input, &dir.join("qemu.vhd"), "unsafe"));
    }
    let hwm = vm_hwm_kib();
    let (o, q, u) = (median(o), median(q), median(u));
    eprintln!(
        "\n2 GiB qcow2, 1 GiB data -> sparse fixed VHD, median of 3: vhdtool (fdatasync) {:.0} ms; qemu-img convert -O vpc -o subformat=fixed,force_size=on -t writeback (flushes) {:.0} ms (ratio {:.2}, above 1 = vhdtool faster), -t unsafe (its default, no flush) {:.0} ms (ratio {:.2}); vhdtool peak RSS {} KiB (VmHWM of the bench process; {} KiB before the runs)",
        o.as_secs_f64() * 1e3,
        q.as_secs_f64() * 1e3,
        q.as_secs_f64() / o.as_secs_f64(),
        u.as_secs_f64() * 1e3,
        u.as_secs_f64() / o.as_secs_f64(),
        hwm,
        hwm_before
    );
    assert!(hwm < 64 * 1024, "peak RSS {hwm} KiB is over 64 MiB");
    let _ = std::fs::remove_dir_all(dir);
}
