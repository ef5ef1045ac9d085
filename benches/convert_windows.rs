//! In-place conversion of a 127 GiB sparse Windows-like fixed VHD: the disk of testdata/
//! make-windows.sh's `conly` variant (C: 0x07 active from 1 MiB, 48 MiB: bootmgr, \Boot\BCD,
//! the \Windows\Boot tree, a real SYSTEM hive) with the rest of the 127 GiB unallocated, so the
//! ESP goes into free space at the end (an NTFS volume of 127 GiB cannot be generated quickly;
//! the conversion's work does not depend on the volume's size). The conversion reads the BIOS store, the
//! boot files and the hive, writes the ESP's files, the new store, the hive's pages in place,
//! the GPTs and the footer, then is rolled back (outside the figure).
//!
//! Run: `cargo bench --bench convert_windows`. Needs what make-windows.sh needs (ntfs-3g with
//! FUSE, sfdisk, python3, qemu-img); without it the bench says so and does nothing.
#![allow(clippy::restriction)] // benches: a panic is a failed bench (the crate's panic lints are for src/)

mod common;
use common::{bin, run, run_output};

use std::fs::{self, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    divan::main();
}

const GIB: u64 = 1 << 30;
const MIB: u64 = 1 << 20;
/// The disk signature the generated images (and their SYSTEM hive) use.
const DISK_SIG: u32 = 0x5cbe_a03e;

/// The 127 GiB image, or `None` when make-windows.sh cannot run here.
fn windows_vhd(dir: &Path) -> Option<PathBuf> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/make-windows.sh");
    let made = Command::new("bash")
        .arg(&script)
        .arg(dir.join("gen"))
        .arg("conly")
        .output()
        .unwrap();
    if !made.status.success() {
        eprintln!(
            "SKIPPED: make-windows.sh: {}",
            String::from_utf8_lossy(&made.stderr)
        );
        return None;
    }
    let src = fs::read(dir.join("gen/conly.img")).unwrap();
    let disk = 127 * GIB;
    let path = dir.join("windows.vhd");
    let f = OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(&path)
        .unwrap();
    f.set_len(disk + 512).unwrap();
    // the generated MBR as it is: C: from 1 MiB, 48 MiB, then 127 GiB of unallocated space
    let mbr = &src[..512];
    assert_eq!(mbr[440..444], DISK_SIG.to_le_bytes());
    f.write_all_at(mbr, 0).unwrap();
    // the NTFS volume, sparse: only its non-zero 64 KiB blocks
    for (i, chunk) in src[MIB as usize..src.len() - MIB as usize]
        .chunks(64 << 10)
        .enumerate()
    {
        if chunk.iter().any(|&b| b != 0) {
            f.write_all_at(chunk, MIB + (i as u64) * (64 << 10))
                .unwrap();
        }
    }
    let footer =
        vhdtool::vhd::footer::fixed_footer(disk, [7; 16], 0, *b"win ", 0x000a_0000, *b"Wi2k", disk);
    f.write_all_at(&footer, disk).unwrap();
    Some(path)
}

/// In place, then rollback (not in the figure printed; divan's time includes both).
#[divan::bench(sample_count = 5, sample_size = 1)]
fn windows_in_place_127_gib(b: divan::Bencher) {
    let dir = tempdir("windows");
    let Some(img) = windows_vhd(&dir) else {
        return;
    };
    let mut times = Vec::new();
    let mut written = String::new();
    b.bench_local(|| {
        let (out, t) = run_output(Command::new(bin()).arg("convert").arg(&img).arg("--json"));
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        written = format!(
            "{} bytes written ({} ESP files of {} bytes, SYSTEM hive pages {} bytes)",
            v["bytes_written"],
            v["windows"]["esp_files"].as_array().map_or(0, Vec::len),
            v["windows"]["esp_files"].as_array().map_or(0, |a| a
                .iter()
                .map(|f| f["bytes"].as_u64().unwrap_or(0))
                .sum::<u64>()),
            v["windows"]["target"]["hive_bytes_written"]
        );
        times.push(t);
        run(Command::new(bin()).arg("rollback").arg(&img));
    });
    times.sort();
    if let Some(m) = times.get(times.len() / 2) {
        eprintln!(
            "\n127 GiB sparse Windows-like fixed VHD, in place: median {:.1} ms; {written}",
            m.as_secs_f64() * 1e3
        );
    }
    let _ = fs::remove_dir_all(dir);
}

fn tempdir(tag: &str) -> PathBuf {
    let d = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("bench-{tag}-{}", std::process::id()));
    fs::create_dir_all(&d).unwrap();
    d
}
