//! The registry/BCD fuzz harnesses (fuzz/src/*.rs, shared with the fuzz targets) on the real
//! hives of testdata/ and on a few thousand mutations of them. Mutated base blocks get their
//! checksum recomputed half of the time, so the mutations reach the cells.
#![allow(clippy::restriction)] // tests: a panic is a failed test (the crate's panic lints are for src/)

mod common;
mod winutil;

#[path = "../fuzz/src/bcd.rs"]
mod bcd;
#[path = "../fuzz/src/mounted.rs"]
mod mounted;
#[path = "../fuzz/src/regf_read.rs"]
mod regf_read;
#[path = "../fuzz/src/regf_roundtrip.rs"]
mod regf_roundtrip;

use common::Rng;
use winutil::*;

const INTERESTING: [u32; 8] = [
    0,
    1,
    0x7FFF_FFFF,
    0x8000_0000,
    0xFFFF_FFFF,
    0xFFFF_FFF8,
    0x20,
    0x1000,
];

fn fix_checksum(h: &mut [u8]) {
    if h.len() >= 512 {
        let x = h[..508]
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes(c.try_into().unwrap()))
            .fold(0, |a, b| a ^ b);
        let x = match x {
            0 => 1,
            0xFFFF_FFFF => 0xFFFF_FFFE,
            x => x,
        };
        h[508..512].copy_from_slice(&x.to_le_bytes());
    }
}

/// One mutation of `base`: byte flips, interesting u32s (cell sizes, offsets, counts), a
/// truncation, or a copied block; then maybe a valid checksum.
fn mutate(base: &[u8], rng: &mut Rng) -> Vec<u8> {
    let mut m = base.to_vec();
    for _ in 0..1 + rng.index(4) {
        match rng.below(4) {
            0 => {
                let i = rng.index(m.len());
                m[i] ^= 1 << rng.below(8);
            }
            1 => {
                let i = rng.index(m.len().saturating_sub(4)) & !3;
                let v = INTERESTING[rng.index(INTERESTING.len())];
                m[i..i + 4].copy_from_slice(&v.to_le_bytes());
            }
            2 => {
                let n = rng.index(m.len());
                m.truncate(n.max(1));
            }
            _ => {
                // copy 8 bytes from one place to another (offsets pointing at other cells)
                let a = rng.index(m.len().saturating_sub(8));
                let b = rng.index(m.len().saturating_sub(8));
                let chunk = m[a..a + 8].to_vec();
                m[b..b + 8].copy_from_slice(&chunk);
            }
        }
        if m.len() < 16 {
            break;
        }
    }
    if rng.below(2) == 0 {
        fix_checksum(&mut m);
    }
    m
}

#[test]
fn harnesses_on_real_hives() {
    for rel in BCD_FILES.iter().chain(SYSTEM_FILES) {
        let h = load(rel);
        regf_read::run(&h);
        bcd::run(&h);
        mounted::run(&h);
        if rel.contains("BCD") {
            regf_roundtrip::run(&h);
        }
    }
}

#[test]
fn harnesses_on_mutated_bcd_stores() {
    let mut rng = Rng::new(0x05ee_dbcd);
    let stores: Vec<Vec<u8>> = BCD_FILES.iter().map(|r| load(r)).collect();
    let mut n = 0;
    for round in 0..400 {
        for s in &stores {
            let m = mutate(s, &mut rng);
            regf_read::run(&m);
            regf_roundtrip::run(&m);
            bcd::run(&m);
            if round % 8 == 0 {
                mounted::run(&m);
            }
            n += 1;
        }
    }
    eprintln!("{n} mutated BCD stores");
}

#[test]
fn harnesses_on_mutated_system_hive() {
    // a 12 MiB hive: fewer mutations, aimed at the base block and at MountedDevices' cells
    let base = load("windows-registry/SYSTEM-win7-mbr.xz");
    let h = vhdtool::regf::Hive::parse(&base).unwrap();
    let md = h.open("MountedDevices").unwrap().unwrap();
    let around = 4096 + md.value_list as usize;
    let mut rng = Rng::new(0x5eed_5157);
    for i in 0..24 {
        let mut m = base.clone();
        let at = if i % 2 == 0 {
            rng.index(512) & !3
        } else {
            (around + rng.index(2048)).min(m.len() - 4) & !3
        };
        let v = INTERESTING[rng.index(INTERESTING.len())];
        m[at..at + 4].copy_from_slice(&v.to_le_bytes());
        fix_checksum(&mut m);
        mounted::run(&m);
        regf_read::run(&m[..m.len().min(1 << 20)]);
    }
}
