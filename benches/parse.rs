//! Metadata parsing speed: footer, MBR (with an EBR chain), GPT (both copies), the whole `info`
//! report, and `vhdtool info` against `qemu-img info -f vpc` on a 2000 GiB sparse fixed VHD.
//!
//! Run: `cargo bench --bench parse`. The process benches print their ratio on stderr:
//! `vhdtool info` / `qemu-img info` wall time, medians over the same runs.
#![allow(clippy::restriction)] // benches: a panic is a failed bench (the crate's panic lints are for src/)

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use vhdtool::disk::{Disk, MemDisk, MmapDisk};
use vhdtool::gpt::{self, GptPartition, Guid};

fn main() {
    divan::main();
}

const GIB: u64 = 1 << 30;

/// A sparse fixed VHD of `disk_bytes` with a GPT of four partitions (only metadata is written).
fn sparse_gpt_vhd(disk_bytes: u64) -> PathBuf {
    let path = std::env::temp_dir().join(format!(
        "vhdtool-bench-{}-{disk_bytes}.vhd",
        std::process::id()
    ));
    let f = OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(&path)
        .unwrap();
    f.set_len(disk_bytes + 512).unwrap();
    let sectors = disk_bytes / 512;
    let quarter = (sectors - 4096) / 4 / 2048 * 2048;
    let parts: Vec<GptPartition> = (0..4u32)
        .map(|i| GptPartition {
            index: i + 1,
            type_guid: gpt::guid::BASIC_DATA,
            type_name: None,
            unique_guid: Guid::name_based(Guid::NIL, &[i as u8]),
            first_lba: 2048 + u64::from(i) * quarter,
            last_lba: 2048 + u64::from(i + 1) * quarter - 1,
            attributes: 0,
            name: format!("data {i}"),
        })
        .collect();
    let image = gpt::encode(
        Guid::name_based(Guid::NIL, b"bench"),
        &parts,
        128,
        512,
        sectors,
    )
    .unwrap();
    f.write_all_at(&vhdtool::mbr::protective_mbr(&[0; 440], sectors), 0)
        .unwrap();
    f.write_all_at(&image.primary, 512).unwrap();
    f.write_all_at(&image.backup, image.backup_entries_lba * 512)
        .unwrap();
    let footer = vhdtool::vhd::footer::fixed_footer(
        disk_bytes,
        [7; 16],
        0,
        *b"win ",
        0x000a_0000,
        *b"Wi2k",
        disk_bytes,
    );
    f.write_all_at(&footer, disk_bytes).unwrap();
    path
}

struct Removed(PathBuf);
impl Drop for Removed {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[divan::bench]
fn footer_decode(b: divan::Bencher) {
    let footer = vhdtool::vhd::footer::fixed_footer(
        127 * GIB,
        [1; 16],
        0,
        *b"win ",
        0x000a_0000,
        *b"Wi2k",
        127 * GIB,
    );
    b.bench(|| vhdtool::vhd::footer::decode(divan::black_box(&footer), 0, false).unwrap());
}

#[divan::bench]
fn mbr_with_logicals(b: divan::Bencher) {
    // a primary + an extended partition with 16 logicals, built with our own encoder
    let mut disk = vec![0u8; 64 << 20];
    let ext_start = 4096u64;
    let mut mbr = [0u8; 512];
    mbr[446 + 4] = 0x83;
    mbr[446 + 8..446 + 12].copy_from_slice(&2048u32.to_le_bytes());
    mbr[446 + 12..446 + 16].copy_from_slice(&2048u32.to_le_bytes());
    mbr[462 + 4] = 0x05;
    mbr[462 + 8..462 + 12].copy_from_slice(&(ext_start as u32).to_le_bytes());
    mbr[462 + 12..462 + 16].copy_from_slice(&(16u32 * 4096).to_le_bytes());
    mbr[510] = 0x55;
    mbr[511] = 0xaa;
    disk[..512].copy_from_slice(&mbr);
    for i in 0..16u64 {
        let ebr = ext_start + i * 4096;
        let o = (ebr * 512) as usize;
        disk[o + 446 + 4] = 0x83;
        disk[o + 446 + 8..o + 446 + 12].copy_from_slice(&2048u32.to_le_bytes());
        disk[o + 446 + 12..o + 446 + 16].copy_from_slice(&2048u32.to_le_bytes());
        if i < 15 {
            disk[o + 462 + 4] = 0x05;
            disk[o + 462 + 8..o + 462 + 12]
                .copy_from_slice(&(((i + 1) * 4096) as u32).to_le_bytes());
            disk[o + 462 + 12..o + 462 + 16].copy_from_slice(&4096u32.to_le_bytes());
        }
        disk[o + 510] = 0x55;
        disk[o + 511] = 0xaa;
    }
    let d = MemDisk::new(disk);
    b.bench(|| {
        let m = vhdtool::mbr::read(divan::black_box(&d), 512)
            .unwrap()
            .unwrap();
        assert_eq!(m.logicals.len(), 16);
        m
    });
}

#[divan::bench]
fn gpt_both_copies(b: divan::Bencher) {
    let path = sparse_gpt_vhd(2000 * GIB);
    let _rm = Removed(path.clone());
    let d = MmapDisk::open(&path, vhdtool::disk::Access::ReadOnly).unwrap();
    let data = vhdtool::disk::Window::new(&d, 0, d.len() - 512).unwrap();
    b.bench(|| {
        vhdtool::gpt::read(divan::black_box(&data), 512)
            .unwrap()
            .unwrap()
    });
}

#[divan::bench]
fn info_report_2000_gib(b: divan::Bencher) {
    let path = sparse_gpt_vhd(2000 * GIB);
    let _rm = Removed(path.clone());
    let d = MmapDisk::open(&path, vhdtool::disk::Access::ReadOnly).unwrap();
    b.bench(|| vhdtool::info::inspect(divan::black_box(&d), "bench.vhd"));
}

fn median_wall(mut cmd: impl FnMut() -> Command, runs: usize) -> Duration {
    let mut times: Vec<Duration> = (0..runs)
        .map(|_| {
            let t = Instant::now();
            let out = cmd().output().unwrap();
            assert!(out.status.code().is_some_and(|c| c <= 1), "{:?}", out);
            t.elapsed()
        })
        .collect();
    times.sort();
    times[runs / 2]
}

/// `vhdtool info` vs `qemu-img info -f vpc` on the same 2000 GiB sparse fixed VHD, as whole
/// processes (what a pipeline pays). Prints the ratio; skipped when qemu-img is missing.
#[divan::bench(sample_count = 1, sample_size = 1)]
fn info_process_vs_qemu_img() {
    if Command::new("qemu-img").arg("--version").output().is_err() {
        eprintln!("qemu-img missing (apt-get install qemu-utils): comparison skipped");
        return;
    }
    let path = sparse_gpt_vhd(2000 * GIB);
    let _rm = Removed(path.clone());
    let bin = env!("CARGO_BIN_EXE_vhdtool");
    let ours = median_wall(
        || {
            let mut c = Command::new(bin);
            c.arg("info").arg("--json").arg(&path);
            c
        },
        21,
    );
    let qemu = median_wall(
        || {
            let mut c = Command::new("qemu-img");
            c.args(["info", "-f", "vpc"]).arg(&path);
            c
        },
        21,
    );
    eprintln!(
        "\n2000 GiB sparse fixed VHD, median of 21 runs: vhdtool info {:.2} ms, qemu-img info -f vpc {:.2} ms, ratio {:.2}x faster",
        ours.as_secs_f64() * 1e3,
        qemu.as_secs_f64() * 1e3,
        qemu.as_secs_f64() / ours.as_secs_f64()
    );
    let _ = File::open(&path);
}
