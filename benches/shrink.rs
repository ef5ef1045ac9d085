//! NTFS shrink speed on a 127 GiB sparse volume whose tail is free (`mkntfs -Q`): the cost must
//! follow the metadata touched (boot sectors, five MFT records, `$Bitmap`), not the volume size.
//!
//! - `convert_shrink_127_gib`: `vhdtool convert DISK --room shrink` in place on a raw MBR disk
//!   whose NTFS partition runs from 1 MiB to the last sector (then rolled back, untimed);
//! - `plan_and_apply_vs_ntfsresize`: `shrink::ntfs::plan_shrink` plus its writes on the
//!   partition file, against `ntfsresize --size` of a copy of the same file to the same size
//!   (median of 5, printed with the ratio on stderr).
//!
//! Run: `cargo bench --bench shrink` (needs mkntfs and ntfsresize from ntfs-3g).
#![allow(clippy::restriction)] // benches: a panic is a failed bench (the crate's panic lints are for src/)

mod common;
use common::{bin, run};

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use vhdtool::disk::{Access, MmapDisk};

fn main() {
    divan::main();
}

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;
const DISK_BYTES: u64 = 127 * GIB;
const PART_START: u64 = MIB;

fn tool(name: &str) -> PathBuf {
    ["/usr/sbin", "/sbin", "/usr/bin", "/bin"]
        .iter()
        .map(|d| Path::new(d).join(name))
        .find(|p| p.exists())
        .unwrap_or_else(|| panic!("{name} not found: apt-get install ntfs-3g"))
}

/// A sparse NTFS partition file filling a 127 GiB disk from 1 MiB (mkntfs -Q: quick, sparse).
fn ntfs_partition(dir: &Path) -> PathBuf {
    let part = dir.join("c.part");
    File::create(&part)
        .unwrap()
        .set_len(DISK_BYTES - PART_START)
        .unwrap();
    run(Command::new(tool("mkntfs"))
        .args([
            "-Q", "-F", "-q", "-s", "512", "-p", "2048", "-H", "255", "-S", "63",
        ])
        .arg(&part));
    part
}

/// The raw MBR disk holding `part` from 1 MiB to its last sector (data extents copied).
fn mbr_disk(dir: &Path, part: &Path) -> PathBuf {
    let disk = dir.join("disk.img");
    let out = OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(&disk)
        .unwrap();
    out.set_len(DISK_BYTES).unwrap();
    let src = File::open(part).unwrap();
    let len = src.metadata().unwrap().len();
    let mut buf = vec![0u8; 4 * MIB as usize];
    for (off, n) in vhdtool::disk::data_extents_in(&src, 0, len).unwrap() {
        let mut done = 0;
        while done < n {
            let k = (n - done).min(buf.len() as u64) as usize;
            src.read_exact_at(&mut buf[..k], off + done).unwrap();
            out.write_all_at(&buf[..k], PART_START + off + done)
                .unwrap();
            done += k as u64;
        }
    }
    let mut mbr = [0u8; 512];
    mbr[446] = 0x80;
    mbr[446 + 4] = 0x07;
    mbr[446 + 8..446 + 12].copy_from_slice(&2048u32.to_le_bytes());
    mbr[446 + 12..446 + 16]
        .copy_from_slice(&(((DISK_BYTES - PART_START) / 512) as u32).to_le_bytes());
    mbr[510] = 0x55;
    mbr[511] = 0xaa;
    out.write_all_at(&mbr, 0).unwrap();
    disk
}

fn tempdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("vhdtool-bench-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn cp_sparse(from: &Path, to: &Path) {
    let _ = std::fs::remove_file(to);
    run(Command::new("cp").arg("--sparse=always").arg(from).arg(to));
    // the copy's dirty pages are flushed now, not by the fsync being timed
    File::open(to).unwrap().sync_all().unwrap();
}

/// In place: plan (reads $Bitmap: 4 MiB for 127 GiB), journal, shrink writes, ESP, GPTs,
/// fsync; then rollback (untimed).
#[divan::bench(sample_count = 5, sample_size = 1)]
fn convert_shrink_127_gib(b: divan::Bencher) {
    let dir = tempdir("shrink-convert");
    let part = ntfs_partition(&dir);
    let disk = mbr_disk(&dir, &part);
    let _ = std::fs::remove_file(&part);
    let journal = dir.join("disk.img.vhdtool-journal");
    let rollback = || {
        if journal.exists() {
            run(Command::new(bin()).arg("rollback").arg(&disk));
        }
    };
    b.with_inputs(rollback).bench_local_values(|()| {
        run(Command::new(bin()).arg("convert").arg(&disk).args([
            "--room",
            "shrink",
            "--no-boot-files",
        ]))
    });
    rollback();
    let _ = std::fs::remove_dir_all(dir);
}

/// The engine alone against ntfsresize, same volume, same new size (the size convert gives
/// the partition with the default 100 MiB ESP).
#[divan::bench(sample_count = 1, sample_size = 1)]
fn plan_and_apply_vs_ntfsresize() {
    let dir = tempdir("shrink-engine");
    let pristine = ntfs_partition(&dir);
    let new_bytes = DISK_BYTES - PART_START - 101 * MIB;
    let work = dir.join("work.part");
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for _ in 0..5 {
        cp_sparse(&pristine, &work);
        let t = Instant::now();
        let plan = {
            let disk = MmapDisk::open(&work, Access::ReadOnly).unwrap();
            vhdtool::shrink::ntfs::plan_shrink(&disk, new_bytes).unwrap()
        };
        let f = OpenOptions::new().write(true).open(&work).unwrap();
        for (off, bytes) in &plan.writes {
            f.write_all_at(bytes, *off).unwrap();
        }
        f.sync_all().unwrap();
        ours.push(t.elapsed());
        cp_sparse(&pristine, &work);
        theirs.push(run(Command::new(tool("ntfsresize"))
            .args(["--force", "--force", "--no-progress-bar", "--size"])
            .arg(new_bytes.to_string())
            .arg(&work)));
    }
    ours.sort();
    theirs.sort();
    let (o, t) = (ours[2], theirs[2]);
    eprintln!(
        "\n127 GiB NTFS volume (4 KiB clusters, free tail) shrunk by 101 MiB, median of 5: vhdtool plan_shrink + writes + fsync {:.1} ms, ntfsresize --size {:.1} ms (ratio {:.2}, above 1 = vhdtool faster)",
        o.as_secs_f64() * 1e3,
        t.as_secs_f64() * 1e3,
        t.as_secs_f64() / o.as_secs_f64()
    );
    let _ = std::fs::remove_dir_all(dir);
}
