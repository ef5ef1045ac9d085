//! Issue 13's goal: a 2 GiB qcow2 holding 1 GiB of data (an MBR disk, one Linux partition from
//! 1 MiB, 1 MiB written every 2 MiB inside it) -> a Gen2-ready fixed VHD (GPT, a FAT32 ESP with a
//! stand-in loader, the disk grown for it, footer), the whole `vhdtool convert IN -o OUT.vhd`, against
//! `qemu-img convert -O vpc -o subformat=fixed,force_size=on` (the format step alone, with no
//! GPT and no ESP): `-t writeback` (it flushes, as vhdtool does) and `-t unsafe` (its default: no
//! flush). Also the format step alone in vhdtool (`--keep-mbr`), and the peak resident memory
//! of each vhdtool run (GNU time's %M when /usr/bin/time exists).
//!
//! Run: `cargo bench --bench formats`. The comparison prints on stderr. Each command runs 3
//! times, interleaved, after one warm-up run (the input in the page cache for all of them); the
//! median is kept. Then the same with the outputs on tmpfs (/dev/shm), where flushing costs
//! nothing: the tools' own work without the disk's write speed.
#![allow(clippy::restriction)] // benches: a panic is a failed bench (the crate's panic lints are for src/)

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const GIB: u64 = 1 << 30;
const MIB: u64 = 1 << 20;

fn tempdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("vhdtool-bench-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// The input: an MBR disk (sfdisk: one type-0x83 partition from LBA 2048 to the end) turned into
/// a qcow2, then 1 MiB of data written every 2 MiB from 2 MiB on (qemu-io, distinct patterns).
fn make_qcow2(dir: &Path) -> PathBuf {
    let raw = dir.join("mbr.raw");
    let f = std::fs::File::create(&raw).unwrap();
    f.set_len(2 * GIB).unwrap();
    drop(f);
    let mut sfdisk = Command::new("sfdisk");
    sfdisk
        .args(["--quiet", "--label", "dos"])
        .arg(&raw)
        .stdin(std::process::Stdio::piped());
    let mut child = sfdisk.spawn().unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"start=2048, type=83\n")
        .unwrap();
    assert!(child.wait().unwrap().success(), "sfdisk");
    let p = dir.join("in.qcow2");
    common::run(
        Command::new("qemu-img")
            .args(["convert", "-f", "raw", "-O", "qcow2"])
            .arg(&raw)
            .arg(&p),
    );
    let _ = std::fs::remove_file(&raw);
    let mut cmd = Command::new("qemu-io");
    cmd.args(["-f", "qcow2"]);
    for i in 1..=(GIB / MIB) {
        cmd.arg("-c").arg(format!(
            "write -q -P 0x{:02x} {} 1M",
            (i % 255) + 1,
            i * 2 * MIB - MIB
        ));
    }
    cmd.arg(&p);
    common::run(&mut cmd);
    p
}

/// Run vhdtool with `args` (under GNU time when it exists): wall time and peak RSS in KiB (0
/// when unknown).
fn vhdtool(args: &[&std::ffi::OsStr], out: &Path) -> (Duration, u64) {
    let _ = std::fs::remove_file(out);
    let timed = Path::new("/usr/bin/time").exists();
    let mut cmd = if timed {
        let mut c = Command::new("/usr/bin/time");
        c.args(["-f", "peak-rss-kib=%M"]).arg(common::bin());
        c
    } else {
        Command::new(common::bin())
    };
    cmd.args(args);
    let t = std::time::Instant::now();
    let o = cmd.output().unwrap();
    let took = t.elapsed();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{args:?}: {stderr}");
    let rss = stderr
        .lines()
        .find_map(|l| l.strip_prefix("peak-rss-kib="))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    (took, rss)
}

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

/// The medians of 3 interleaved runs of each command, the outputs written in `out_dir`:
/// (whole conversion, format step, qemu-img -t writeback, qemu-img -t unsafe, peak RSS KiB).
fn round(
    input: &Path,
    boot: &Path,
    out_dir: &Path,
) -> (Duration, Duration, Duration, Duration, u64) {
    let out = out_dir.join("out.vhd");
    let gen2: Vec<&std::ffi::OsStr> = vec![
        "convert".as_ref(),
        input.as_os_str(),
        "-o".as_ref(),
        out.as_os_str(),
        "--room".as_ref(),
        "grow".as_ref(),
        "--boot-files".as_ref(),
        boot.as_os_str(),
    ];
    let keep: Vec<&std::ffi::OsStr> = vec![
        "convert".as_ref(),
        input.as_os_str(),
        "-o".as_ref(),
        out.as_os_str(),
        "--keep-mbr".as_ref(),
    ];
    vhdtool(&gen2, &out); // warm-up: the input in the page cache
    let info = Command::new(common::bin())
        .args(["info".as_ref(), out.as_os_str()])
        .output()
        .unwrap();
    let info = String::from_utf8_lossy(&info.stdout);
    assert!(
        info.contains("gen2_ready: yes"),
        "the converted image is not Gen2-ready:\n{info}"
    );
    let (mut g, mut k, mut q, mut u) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut rss = 0;
    let qemu_out = out_dir.join("qemu.vhd");
    for _ in 0..3 {
        let (t, r) = vhdtool(&gen2, &out);
        g.push(t);
        rss = rss.max(r);
        let (t, r) = vhdtool(&keep, &out);
        k.push(t);
        rss = rss.max(r);
        q.push(qemu(input, &qemu_out, "writeback"));
        u.push(qemu(input, &qemu_out, "unsafe"));
    }
    let _ = std::fs::remove_file(&out);
    let _ = std::fs::remove_file(&qemu_out);
    (median(g), median(k), median(q), median(u), rss)
}

fn main() {
    let dir = tempdir("formats");
    let input = make_qcow2(&dir);
    // the ESP's boot files: a stand-in loader (the disk holds no OS to take them from)
    let boot = dir.join("boot");
    std::fs::create_dir_all(boot.join("EFI/BOOT")).unwrap();
    std::fs::write(boot.join("EFI/BOOT/BOOTX64.EFI"), vec![0x5a; 100_000]).unwrap();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let (g, k, q, u, rss) = round(&input, &boot, &dir);
    eprintln!(
        "\n2 GiB qcow2 (MBR disk), 1 GiB data, median of 3:\n  vhdtool convert -o (GPT, FAT32 ESP, grown disk, fixed VHD, fsync) {:.0} ms\n  vhdtool convert -o --keep-mbr (the format step alone, fsync)     {:.0} ms\n  qemu-img convert -O vpc -o subformat=fixed,force_size=on -t writeback (flushes) {:.0} ms: ratio {:.2} for the whole conversion, {:.2} for the format step (above 1 = vhdtool faster)\n  qemu-img ... -t unsafe (its default, no flush) {:.0} ms: ratio {:.2}\n  vhdtool peak RSS {} KiB",
        ms(g),
        ms(k),
        ms(q),
        ms(q) / ms(g),
        ms(q) / ms(k),
        ms(u),
        ms(u) / ms(g),
        rss
    );
    assert!(rss < 64 * 1024, "peak RSS {rss} KiB is over 64 MiB");
    // the same with the outputs on tmpfs, where a flush costs nothing: the tools' own work,
    // without the disk's write speed (which bounds both above when they flush)
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        let sdir = shm.join(format!("vhdtool-bench-formats-{}", std::process::id()));
        std::fs::create_dir_all(&sdir).unwrap();
        let (g, k, q, u, _) = round(&input, &boot, &sdir);
        eprintln!(
            "outputs on tmpfs (/dev/shm: flushes cost nothing), median of 3:\n  vhdtool convert -o (whole Gen2 conversion) {:.0} ms, --keep-mbr {:.0} ms\n  qemu-img -t writeback {:.0} ms, -t unsafe {:.0} ms: ratio {:.2} (whole conversion vs qemu-img's default), {:.2} (format step vs qemu-img's default)",
            ms(g),
            ms(k),
            ms(q),
            ms(u),
            ms(u) / ms(g),
            ms(u) / ms(k),
        );
        let _ = std::fs::remove_dir_all(sdir);
    }
    let _ = std::fs::remove_dir_all(dir);
}
