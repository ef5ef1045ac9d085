//! Deterministic fuzz-style robustness test: `probe`, `Fat::open`, `exists`, `read_file` and
//! `list_dir` on thousands of random and mutated buffers (bit flips, overwritten fields,
//! truncations of real boot sectors and of the byte fixtures). Nothing may panic or hang.
//! The cargo-fuzz targets (if any) can call [`run`] with their input.

#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    clippy::as_conversions
)]

use std::panic::{catch_unwind, AssertUnwindSafe};

use super::testutil::{run as run_tool, TempImage};
use super::{probe, Fat};
use crate::disk::MemDisk;

/// One input through every entry point; errors are fine, panics are not.
pub fn run(data: &[u8]) {
    let d = MemDisk::new(data.to_vec());
    let _ = probe(&d);
    if let Ok(fs) = Fat::open(&d) {
        let _ = fs.volume_label();
        for path in [
            "/EFI/BOOT/BOOTX64.EFI",
            "Long File Name.txt",
            "/",
            "EFI",
            "x/y/z/w",
        ] {
            let _ = fs.exists(path);
            let _ = fs.read_file(path);
            let _ = fs.list_dir(path);
        }
    }
}

/// xorshift64*: deterministic, no dependency.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

const CROP: usize = 192 * 1024;

fn seeds() -> Vec<Vec<u8>> {
    let crop = |mut v: Vec<u8>| {
        v.truncate(CROP);
        v
    };
    let mut s = vec![
        crate::fs::fat::tests::fat12_image(),
        crop(crate::fs::ntfs::tests::image("Vol")),
        crop(crate::fs::probe::tests::exfat_image("ex")),
        crop(crate::fs::probe::tests::lvm2_image()),
        crop(crate::fs::probe::tests::bitlocker_image(
            [0xEB, 0x58, 0x90],
            1,
        )),
        crop(crate::fs::probe::tests::iso_image(Some("J"))),
        crate::fs::probe::tests::ext_image(0x4, 0x2C2, 0x7B, 1),
    ];
    // the first sectors of real volumes, when the tools are there (never required here)
    let real: &[(&str, u64, &[&str])] = &[
        ("mkfs.fat", 33 << 20, &["-F", "32", "-S", "512", "-s", "1"]),
        ("mkfs.fat", 20 << 20, &["-F", "16"]),
        ("mkntfs", 16 << 20, &["-q", "-F", "-Q"]),
        ("mke2fs", 8 << 20, &["-q", "-F", "-t", "ext4"]),
        ("mkswap", 1 << 20, &[]),
    ];
    for (tool, size, args) in real {
        let found = std::process::Command::new(tool).arg("-V").output().is_ok();
        if !found {
            continue;
        }
        let img = TempImage::new("fuzzseed", *size);
        let mut a = args.to_vec();
        a.push(img.s());
        run_tool(tool, &a);
        s.push(crop(img.bytes()));
    }
    s
}

/// Magic values planted into random buffers so that the probes get past their first check.
const PLANTS: &[(usize, &[u8])] = &[
    (0, b"LUKS\xba\xbe"),
    (3, b"NTFS    "),
    (3, b"EXFAT   "),
    (3, b"-FVE-FS-"),
    (3, b"MSWIN4.1"),
    (3, b"ReFS\0\0\0\0"),
    (0x36, b"FAT12   "),
    (0x52, b"FAT32   "),
    (0x1FE, b"\x55\xaa"),
    (0x438, b"\x53\xef"),
    (0, b"XFSB"),
    (0x10040, b"_BHRfS_M"),
    (0x8001, b"CD001"),
    (512, b"LABELONE"),
    (0xFF6, b"SWAPSPACE2"),
];

#[test]
fn no_panic_on_random_and_mutated_inputs() {
    let seeds = seeds();
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let interesting: [u64; 8] = [0, 1, 0x7F, 0x80, 0xFF, 0xFFFF, 0xFFFF_FFFF, u64::MAX];
    for iter in 0..4000 {
        let mut data = if iter % 4 == 0 {
            // random bytes with a planted magic
            let len = rng.below(0x11000);
            let mut v: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            let (off, magic) = PLANTS[rng.below(PLANTS.len())];
            if off + magic.len() <= v.len() {
                v[off..off + magic.len()].copy_from_slice(magic);
            }
            v
        } else {
            let mut v = seeds[rng.below(seeds.len())].clone();
            for _ in 0..1 + rng.below(8) {
                if v.is_empty() {
                    break;
                }
                // mostly the first 8 KiB, where the headers are
                let span = if rng.below(4) == 0 {
                    v.len()
                } else {
                    v.len().min(8192)
                };
                let off = rng.below(span);
                match rng.below(3) {
                    0 => v[off] ^= 1 << rng.below(8),
                    1 => {
                        let val = interesting[rng.below(interesting.len())].to_le_bytes();
                        let n = [1, 2, 4, 8][rng.below(4)].min(v.len() - off);
                        v[off..off + n].copy_from_slice(&val[..n]);
                    }
                    _ => v[off] = rng.next() as u8,
                }
            }
            if rng.below(5) == 0 {
                let len = rng.below(v.len() + 1);
                v.truncate(len);
            }
            v
        };
        // keep a copy for the report: the closure may consume nothing, but be explicit
        let input = std::mem::take(&mut data);
        if catch_unwind(AssertUnwindSafe(|| run(&input))).is_err() {
            let path = std::env::temp_dir().join(format!("vhdtool-fs-crash-{iter}.bin"));
            std::fs::write(&path, &input).unwrap();
            panic!(
                "iteration {iter} panicked; input saved to {}",
                path.display()
            );
        }
    }
}
