//! Conversion speed on a 127 GiB sparse fixed VHD (an MBR partition from 1 MiB to the last
//! sector, as Azure images are laid out): in place (then rolled back), and `-o` against
//! `cp --sparse=always` of the same file.
//!
//! Run: `cargo bench --bench convert`. The process comparison prints its ratio on stderr.
#![allow(clippy::restriction)] // benches: a panic is a failed bench (the crate's panic lints are for src/)

mod common;
use common::{bin, run};

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    divan::main();
}

const GIB: u64 = 1 << 30;

/// A sparse 127 GiB fixed VHD: MBR with one 0x83 partition to the last sector, a few MiB of
/// data at the start of the partition and in its middle (so the copy has something to copy).
fn gen1_vhd(dir: &Path) -> PathBuf {
    let disk = 127 * GIB;
    let path = dir.join("gen1.vhd");
    let f = OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(&path)
        .unwrap();
    f.set_len(disk + 512).unwrap();
    let mut mbr = [0u8; 512];
    mbr[446] = 0x80;
    mbr[446 + 4] = 0x83;
    mbr[446 + 8..446 + 12].copy_from_slice(&2048u32.to_le_bytes());
    mbr[446 + 12..446 + 16].copy_from_slice(&((disk / 512 - 2048) as u32).to_le_bytes());
    mbr[510] = 0x55;
    mbr[511] = 0xaa;
    f.write_all_at(&mbr, 0).unwrap();
    let blob: Vec<u8> = (0..8u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    f.write_all_at(&blob, 1 << 20).unwrap();
    f.write_all_at(&blob, 64 * GIB).unwrap();
    let footer =
        vhdtool::vhd::footer::fixed_footer(disk, [9; 16], 0, *b"win ", 0x000a_0000, *b"Wi2k", disk);
    f.write_all_at(&footer, disk).unwrap();
    path
}

/// In place: plan, journal, ESP, GPTs, footer, fsync; then rollback (outside the timing).
#[divan::bench(sample_count = 10, sample_size = 1)]
fn in_place_127_gib(b: divan::Bencher) {
    let dir = tempdir("inplace");
    let img = gen1_vhd(&dir);
    b.bench_local(|| {
        run(Command::new(bin())
            .arg("convert")
            .arg(&img)
            .arg("--no-boot-files"));
        // undo, so every sample converts the same Gen1 image (not timed separately by divan,
        // but included: rollback costs about what convert does)
        run(Command::new(bin()).arg("rollback").arg(&img));
    });
    let _ = std::fs::remove_dir_all(dir);
}

/// `vhdtool convert -o` against `cp --sparse=always` of the same 127 GiB sparse VHD.
#[divan::bench(sample_count = 1, sample_size = 1)]
fn copy_vs_cp_sparse() {
    let dir = tempdir("copy");
    let img = gen1_vhd(&dir);
    let out = dir.join("gen2.vhd");
    let cp_out = dir.join("cp.vhd");
    let mut ours = Vec::new();
    let mut cp = Vec::new();
    for _ in 0..5 {
        let _ = std::fs::remove_file(&out);
        let _ = std::fs::remove_file(&cp_out);
        ours.push(run(Command::new(bin())
            .arg("convert")
            .arg("--no-boot-files")
            .arg(&img)
            .arg("-o")
            .arg(&out)));
        // cp does not fsync; vhdtool syncs its output once: compare against cp + fdatasync
        let t = run(Command::new("cp")
            .arg("--sparse=always")
            .arg(&img)
            .arg(&cp_out));
        cp.push(t + run(Command::new("sync").arg("-d").arg(&cp_out)));
    }
    ours.sort();
    cp.sort();
    let (o, c) = (ours[2], cp[2]);
    let inplace = {
        let t = run(Command::new(bin())
            .arg("convert")
            .arg(&img)
            .arg("--no-boot-files"));
        run(Command::new(bin()).arg("rollback").arg(&img));
        t
    };
    eprintln!(
        "\n127 GiB sparse fixed VHD, median of 5: vhdtool convert -o {:.1} ms, cp --sparse=always + sync -d {:.1} ms (ratio {:.2}, above 1 = vhdtool faster); in place {:.1} ms",
        o.as_secs_f64() * 1e3,
        c.as_secs_f64() * 1e3,
        c.as_secs_f64() / o.as_secs_f64(),
        inplace.as_secs_f64() * 1e3
    );
    let _ = std::fs::remove_dir_all(dir);
}

fn tempdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("vhdtool-bench-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}
