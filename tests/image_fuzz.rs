//! The image fuzz harnesses (fuzz/src/{vhd_dynamic,vhdx,qcow2}.rs) on stable, in every
//! `cargo test`: images made by qemu-img (dynamic VHD, VHDX, qcow2 plain, compressed and with
//! a backing file), a differencing VHDX built by tests/common/vhdx.rs followed by its qemu-img
//! parent (the vhdx harness reads such a chain), and thousands of deterministic mutations of each, aimed at the metadata
//! (footers, headers, region and metadata tables, BATs, L1/L2 tables, bitmaps) and resealed
//! with the right checksum half of the time, so that they get past the checksum checks.
//!
//! Properties (in the harnesses): no panic, extents in order and inside the disk, reads inside
//! the disk succeed or fail cleanly, reads past it fail. Here: each run is quick (a crafted
//! size must not make a reader walk terabytes).
#![allow(clippy::restriction)] // tests: a panic is a failed test (the crate's panic lints are for src/)

mod common;

#[path = "../fuzz/src/image_map.rs"]
mod image_map;
#[path = "../fuzz/src/qcow2.rs"]
mod qcow2;
#[path = "../fuzz/src/vhd_dynamic.rs"]
mod vhd_dynamic;
#[path = "../fuzz/src/vhdx.rs"]
mod vhdx;

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use common::{require_tools, tool, Rng, TempDir};

/// Slowest a single harness run may be (debug build, shared CPU).
const MAX_RUN: Duration = Duration::from_secs(5);

fn qemu_img(args: &[&str]) {
    let out = tool("qemu-img").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "qemu-img {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn qemu_io(fmt: &str, file: &Path, cmds: &[&str]) {
    let mut c = tool("qemu-io");
    c.args(["-f", fmt]);
    for cmd in cmds {
        c.args(["-c", cmd]);
    }
    let out = c.arg(file).output().unwrap();
    assert!(
        out.status.success(),
        "qemu-io {cmds:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn be32(b: &[u8], at: usize) -> u64 {
    u64::from(u32::from_be_bytes(b[at..at + 4].try_into().unwrap()))
}
fn be64(b: &[u8], at: usize) -> u64 {
    u64::from_be_bytes(b[at..at + 8].try_into().unwrap())
}
fn le32(b: &[u8], at: usize) -> u64 {
    u64::from(u32::from_le_bytes(b[at..at + 4].try_into().unwrap()))
}
fn le64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

/// CRC-32C, bit by bit (an independent implementation of what VHDX uses).
fn crc32c(data: &[u8]) -> u32 {
    let mut c = !0u32;
    for &b in data {
        c ^= u32::from(b);
        for _ in 0..8 {
            c = if c & 1 != 0 {
                (c >> 1) ^ 0x82F6_3B78
            } else {
                c >> 1
            };
        }
    }
    !c
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Vhd,
    Vhdx,
    Qcow2,
}

/// Metadata ranges of a seed, where most mutations land.
fn hot_ranges(kind: Kind, v: &[u8]) -> Vec<(usize, usize)> {
    let len = v.len();
    let mut out = Vec::new();
    match kind {
        Kind::Vhd => {
            out.push((len - 512, 512)); // footer
            out.push((0, 512)); // its copy
            let hdr = be64(v, len - 512 + 0x10) as usize;
            out.push((hdr, 1024)); // dynamic header
            let bat = be64(v, hdr + 0x10) as usize;
            out.push((bat, 512));
            // the first allocated block's bitmap
            let e = be32(v, bat);
            if e != 0xffff_ffff {
                out.push(((e * 512) as usize, 512));
            }
        }
        Kind::Vhdx => {
            out.push((64 << 10, 0x50));
            out.push((128 << 10, 0x50));
            out.push((192 << 10, 16 + 32 * 2));
            for i in 0..2 {
                let e = (192 << 10) + 16 + 32 * i;
                let off = le64(v, e + 16) as usize;
                out.push((off, 4096)); // BAT start or metadata table and items
                                       // metadata items (qemu and tests/common/vhdx.rs put them at +64 KiB; the parent
                                       // locator of a differencing child is among them)
                out.push((off + 0x10000, 256));
            }
            // a differencing seed's first sector bitmap block: the BAT entry after the first
            // chunk's 4096 payload entries (1 MiB blocks, 512-byte sectors)
            let bat = le64(v, (192 << 10) + 16 + 16) as usize;
            if bat + 8 * 4097 <= len {
                let e = le64(v, bat + 8 * 4096);
                if e & 7 == 6 {
                    out.push(((e >> 20 << 20) as usize, 512));
                }
            }
            let _ = le32(v, 0);
        }
        Kind::Qcow2 => {
            out.push((0, 0x70.min(len)));
            let l1 = be64(v, 40) as usize;
            out.push((l1, 64));
            let l2 = (be64(v, l1) & 0x00ff_ffff_ffff_fe00) as usize;
            if l2 != 0 && l2 < len {
                out.push((l2, 256.min(len - l2)));
            }
            let bf = be64(v, 8) as usize;
            if bf != 0 {
                out.push((bf, 16));
            }
        }
    }
    out.retain(|&(s, n)| n > 0 && s + n <= len);
    out
}

/// Recompute the checksums a mutation broke (half of the time: the other half tests the
/// checks themselves).
fn reseal(kind: Kind, v: &mut [u8]) {
    match kind {
        Kind::Vhd => {
            let len = v.len();
            if len < 1024 {
                return;
            }
            for at in [0, len - 512] {
                let mut f: [u8; 512] = v[at..at + 512].try_into().unwrap();
                let s = vhdtool::vhd::footer::checksum(&f);
                f[0x40..0x44].copy_from_slice(&s.to_be_bytes());
                v[at..at + 512].copy_from_slice(&f);
            }
            let hdr = be64(v, len - 512 + 0x10) as usize;
            if hdr.checked_add(1024).is_some_and(|e| e <= len) {
                let mut h: [u8; 1024] = v[hdr..hdr + 1024].try_into().unwrap();
                let s = vhdtool::vhd::dynamic::checksum(&h);
                h[0x24..0x28].copy_from_slice(&s.to_be_bytes());
                v[hdr..hdr + 1024].copy_from_slice(&h);
            }
        }
        Kind::Vhdx => {
            for (at, n) in [
                (64 << 10, 4096),
                (128 << 10, 4096),
                (192 << 10, 65536),
                (256 << 10, 65536),
            ] {
                if at + n <= v.len() {
                    v[at + 4..at + 8].fill(0);
                    let c = crc32c(&v[at..at + n]);
                    v[at + 4..at + 8].copy_from_slice(&c.to_le_bytes());
                }
            }
        }
        Kind::Qcow2 => {}
    }
}

const INTERESTING: [u64; 10] = [
    0,
    1,
    0x7f,
    0x200,
    0xffff,
    0x1_0000_0000,
    0x7fff_ffff_ffff_ffff,
    u64::MAX,
    0xffff_ffff,
    0x8000_0000_0000_0000,
];

fn mutate(rng: &mut Rng, kind: Kind, seed: &[u8], hot: &[(usize, usize)]) -> Vec<u8> {
    let mut v = seed.to_vec();
    let rounds = 1 + rng.index(4);
    for _ in 0..rounds {
        let at = if !hot.is_empty() && rng.index(10) != 0 {
            let (s, n) = hot[rng.index(hot.len())];
            s + rng.index(n)
        } else {
            rng.index(v.len())
        };
        if at >= v.len() {
            continue; // an earlier round truncated the input
        }
        match rng.index(5) {
            0 => v[at] ^= 1 << rng.index(8),
            1 => v[at] = rng.next() as u8,
            2 | 3 => {
                let val = INTERESTING[rng.index(INTERESTING.len())];
                let width = [2usize, 4, 8][rng.index(3)];
                let bytes = if rng.index(2) == 0 {
                    val.to_be_bytes()
                } else {
                    val.to_le_bytes()
                };
                let end = (at + width).min(v.len());
                let take = end - at;
                v[at..end].copy_from_slice(&bytes[8 - width..8 - width + take]);
            }
            _ => {
                if rng.index(4) == 0 {
                    let keep = rng.index(v.len()).max(1);
                    v.truncate(keep);
                }
            }
        }
    }
    if rng.index(2) == 0 {
        reseal(kind, &mut v);
    }
    v
}

fn seeds(dir: &Path) -> Vec<(Kind, &'static str, Vec<u8>)> {
    let p = |n: &str| dir.join(n);
    let s = |p: &Path| p.to_str().unwrap().to_string();
    let mut out = Vec::new();
    // dynamic VHD: two allocated blocks
    let vhd = p("d.vhd");
    qemu_img(&[
        "create",
        "-f",
        "vpc",
        "-o",
        "subformat=dynamic,force_size=on",
        &s(&vhd),
        "6M",
    ]);
    qemu_io(
        "vpc",
        &vhd,
        &["write -P 0x11 0 4096", "write -P 0x22 4194304 512"],
    );
    out.push((Kind::Vhd, "dynamic vhd", fs::read(&vhd).unwrap()));
    // VHDX, 1 MiB blocks
    let vhdx = p("d.vhdx");
    qemu_img(&[
        "create",
        "-f",
        "vhdx",
        "-o",
        "block_size=1M",
        &s(&vhdx),
        "5M",
    ]);
    qemu_io(
        "vhdx",
        &vhdx,
        &[
            "write -P 0x33 0 4096",
            "write -z 1M 1M",
            "write -P 0x34 3M 512",
        ],
    );
    out.push((Kind::Vhdx, "vhdx", fs::read(&vhdx).unwrap()));
    // a differencing VHDX over it, then the parent: a block partly present (sector bitmap),
    // one fully present, one ZERO, the rest from the parent
    {
        use common::vhdx::{self as w, Block, Spec};
        let parent = fs::read(&vhdx).unwrap();
        let mib = 1 << 20;
        let spec = Spec {
            virtual_bytes: 5 * mib as u64,
            block_bytes: mib as u32,
            logical_sector_bytes: 512,
            data_write_guid: w::guid("f0220000-0000-4000-8000-000000000001"),
            virtual_disk_id: w::guid("f0220000-0000-4000-8000-000000000002"),
            parent_locator: Some(w::locator_item(
                w::LOCATOR_TYPE_VHDX,
                &[
                    (
                        "parent_linkage",
                        &w::guid_string(&w::data_write_guid(&parent)),
                    ),
                    ("relative_path", "d.vhdx"),
                ],
            )),
            blocks: vec![
                (
                    0,
                    Block::Partial {
                        data: vec![0x66; mib],
                        present: (0..mib / 512).map(|s| s % 5 == 0).collect(),
                    },
                ),
                (1, Block::Full(vec![0x67; mib])),
                (3, Block::Zero),
            ],
        };
        let mut chain = w::build(&spec);
        chain.extend_from_slice(&parent);
        out.push((Kind::Vhdx, "differencing vhdx + parent", chain));
    }
    // qcow2: 512-byte clusters; compressed; with a backing file (refused from memory)
    let q = p("d.qcow2");
    qemu_img(&[
        "create",
        "-f",
        "qcow2",
        "-o",
        "cluster_size=512",
        &s(&q),
        "1M",
    ]);
    qemu_io(
        "qcow2",
        &q,
        &[
            "write -P 0x44 0 4096",
            "write -z 8192 1024",
            "write -P 0x45 600000 700",
        ],
    );
    out.push((Kind::Qcow2, "qcow2", fs::read(&q).unwrap()));
    let c = p("c.qcow2");
    qemu_img(&[
        "convert",
        "-c",
        "-f",
        "qcow2",
        "-O",
        "qcow2",
        "-o",
        "cluster_size=4096",
        &s(&q),
        &s(&c),
    ]);
    out.push((Kind::Qcow2, "compressed qcow2", fs::read(&c).unwrap()));
    let b = p("b.qcow2");
    qemu_img(&[
        "create",
        "-f",
        "qcow2",
        "-b",
        "d.qcow2",
        "-F",
        "qcow2",
        &s(&b),
    ]);
    out.push((Kind::Qcow2, "qcow2 with backing", fs::read(&b).unwrap()));
    out
}

fn run(kind: Kind, data: &[u8]) {
    match kind {
        Kind::Vhd => vhd_dynamic::run(data),
        Kind::Vhdx => vhdx::run(data),
        Kind::Qcow2 => qcow2::run(data),
    }
}

#[test]
fn harnesses_on_mutated_images() {
    if !require_tools(&[("qemu-img", "qemu-utils"), ("qemu-io", "qemu-utils")]) {
        return;
    }
    let t = TempDir::new("img-fuzz");
    let seeds = seeds(t.path());
    let mut rng = Rng::new(0x1313);
    for (kind, name, seed) in &seeds {
        // the seeds themselves open and read (a chain with its parent in memory)
        let mut opts = vhdtool::image::OpenOptions::default();
        let mut child = seed.clone();
        if *kind == Kind::Vhdx {
            // as the harness cuts it
            let images = vhdx::split(seed);
            child = images[0].to_vec();
            opts.memory_parents = images[1..]
                .iter()
                .map(|p| vhdtool::image::MemoryImage(p.to_vec().into()))
                .collect();
            assert_eq!(
                images.len(),
                1 + usize::from(name.starts_with("diff")),
                "{name}"
            );
        }
        match vhdtool::image::Image::from_bytes(child, &opts) {
            Ok(img) => {
                assert_eq!(img.chain().len(), 1 + opts.memory_parents.len(), "{name}");
                vhd_dynamic::check(&img)
            }
            Err(e) => assert!(
                *name == "qcow2 with backing" && e.message().contains("d.qcow2"),
                "{name}: {e}"
            ),
        }
        let hot = hot_ranges(*kind, seed);
        // big seeds cost a copy per run: fewer mutations of them
        let n = match seed.len() {
            n if n > (8 << 20) => 400,
            n if n > (1 << 20) => 1500,
            _ => 4000,
        };
        for i in 0..n {
            let m = mutate(&mut rng, *kind, seed, &hot);
            let start = Instant::now();
            run(*kind, &m);
            let took = start.elapsed();
            if took > MAX_RUN {
                let path = t.path().join(format!("slow-{i}.bin"));
                fs::write(&path, &m).unwrap();
                panic!(
                    "{name}: mutation {i} took {took:?} (saved as {})",
                    path.display()
                );
            }
        }
    }
}
