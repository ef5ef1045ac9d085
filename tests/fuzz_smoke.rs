//! Every fuzz target (`vhdtool::fuzz`) on a few thousand generated inputs, on stable, in every
//! `cargo test`: the committed regression inputs, the hostile cases of tests/common/corpus.rs,
//! disks the structure-aware generator makes (before and after conversion), a FAT32 ESP, undo
//! journals, and deterministic mutations of all of them (bit flips, interesting values,
//! truncations, splices). A few inputs also go through a real file (`MmapDisk`) to check that
//! mapped and in-memory reads give the same report.
//!
//! The fuzzers themselves (`fuzz/`, nightly) explore far more; this keeps the targets compiling
//! and their properties true on every change.
#![allow(clippy::restriction)] // tests: a panic is a failed test (the crate's panic lints are for src/)

mod common;

use std::fs;
use std::path::Path;
use std::time::Instant;

use common::Rng;
use vhdtool::disk::{Access, Disk, MemDisk, MmapDisk};
#[path = "../fuzz/src/lib.rs"]
#[allow(dead_code)]
mod fuzz;
use fuzz::SparseDisk;

/// A mutation of `input`. Sparse inputs keep their 12-byte header most of the time so that the
/// mutations land in the patches (the metadata), not in the disk length.
fn mutate(rng: &mut Rng, input: &[u8], other: &[u8]) -> Vec<u8> {
    let mut v = input.to_vec();
    let keep = if v.starts_with(fuzz::SPARSE_MAGIC) && rng.index(8) != 0 {
        12.min(v.len())
    } else {
        0
    };
    let body = v.len().saturating_sub(keep);
    match rng.index(6) {
        // flip 1..8 bits
        0 | 1 => {
            for _ in 0..=rng.index(8) {
                if body > 0 {
                    let i = keep + rng.index(body);
                    v[i] ^= 1 << rng.index(8);
                }
            }
        }
        // an interesting value over 1, 2, 4 or 8 bytes
        2 => {
            if body > 0 {
                let i = keep + rng.index(body);
                let n = [1, 2, 4, 8][rng.index(4)].min(v.len() - i);
                let val = [0u8, 0xff, 0x80, 0x7f, 0x01][rng.index(5)];
                v[i..i + n].fill(val);
            }
        }
        // truncate
        3 => {
            let n = keep + rng.index(body + 1);
            v.truncate(n);
        }
        // splice a piece of another input in
        4 => {
            if !other.is_empty() && body > 0 {
                let from = rng.index(other.len());
                let n = rng.index(512).min(other.len() - from);
                let at = keep + rng.index(body);
                let end = (at + n).min(v.len());
                v.splice(at..end, other[from..from + (end - at)].iter().copied());
            }
        }
        // random bytes
        _ => {
            if body > 0 {
                let i = keep + rng.index(body);
                let n = rng.index(64).min(v.len() - i);
                let r = rng.bytes(n);
                v[i..i + n].copy_from_slice(&r);
            }
        }
    }
    v
}

fn regress_inputs() -> Vec<Vec<u8>> {
    let dir = common::repo_root().join("testdata/regress");
    let mut out: Vec<Vec<u8>> = fs::read_dir(&dir)
        .expect("testdata/regress")
        .filter_map(|e| e.ok())
        .filter(|e| e.path().extension().is_some_and(|x| x == "bin"))
        .map(|e| fs::read(e.path()).expect("read regress input"))
        .collect();
    out.extend(common::corpus::small_cases().into_iter().map(|c| c.bytes));
    out
}

fn sparse(disk: &dyn Disk) -> Vec<u8> {
    // the whole of a sparse disk: only its non-zero pages are written
    fuzz::sparse_input(disk, &[(0, disk.len())]).expect("sparse input")
}

/// Disks from the structure-aware generator (before and after conversion), as sparse inputs.
fn generated_disks(rng: &mut Rng, n: usize) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for _ in 0..n {
        let seed = rng.bytes(64);
        let (before, after) = fuzz::convert_sample(&seed);
        out.push(sparse(&before));
        if let Some(a) = after {
            out.push(sparse(&a));
        }
    }
    out
}

/// A 33 MiB FAT32 ESP with a few files, as a sparse input.
fn esp_input() -> Vec<u8> {
    use vhdtool::esp::{build_esp, EspSpec, EspTree};
    let mut tree = EspTree::new();
    tree.add_file("EFI/BOOT/BOOTX64.EFI", vec![0x4d; 5000])
        .expect("add file");
    tree.add_file("EFI/Microsoft/Boot/bootmgfw.efi", vec![7; 70_000])
        .expect("add file");
    tree.add_file("startup.nsh", b"fs0:\\EFI\\BOOT\\BOOTX64.EFI\r\n".to_vec())
        .expect("add file");
    let spec = EspSpec::new(33 << 20, 512, 0x1234_5678);
    let img = build_esp(&spec, &tree).expect("build ESP");
    sparse(&MemDisk::new(img.into_bytes()))
}

fn journal_inputs() -> Vec<Vec<u8>> {
    use vhdtool::convert::journal::{Journal, SavedRegion};
    let mut disk = vec![0u8; 64 << 10];
    for (i, b) in disk.iter_mut().enumerate().skip(8192).take(5000) {
        *b = i as u8;
    }
    let d = MemDisk::new(disk);
    let regions = vec![
        SavedRegion::capture(&d, 0, 512).expect("capture"),
        SavedRegion::capture(&d, 4096, 16384).expect("capture"),
        SavedRegion::capture(&d, 60 << 10, 8192).expect("capture past the end"),
    ];
    vec![
        Journal {
            original_len: d.len(),
            converted_len: d.len() + (1 << 20),
            unique_id: [7; 16],
            regions,
        }
        .encode(),
        Journal {
            original_len: 0,
            converted_len: 0,
            unique_id: [0; 16],
            regions: Vec::new(),
        }
        .encode(),
    ]
}

/// Run `target` on the seeds and on `mutations` mutations of them; give the number of runs.
fn exercise(target: &str, seeds: &[Vec<u8>], mutations: usize, rng: &mut Rng) -> usize {
    for s in seeds {
        fuzz::run(target, s);
    }
    for _ in 0..mutations {
        let a = &seeds[rng.index(seeds.len())];
        let b = &seeds[rng.index(seeds.len())];
        let m = mutate(rng, a, b);
        fuzz::run(target, &m);
    }
    seeds.len() + mutations
}

#[test]
fn every_target_on_generated_inputs() {
    let start = Instant::now();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut disks = regress_inputs();
    disks.extend(generated_disks(&mut rng, 40));
    let esp = esp_input();
    let mut parts = disks.clone();
    parts.push(esp.clone());
    let journals = journal_inputs();
    let mut total = 0;
    for (target, seeds, n) in [
        ("vhd", &disks, 800),
        ("mbr", &disks, 800),
        ("gpt", &disks, 1000),
        ("fs_probe", &parts, 600),
        ("fat", &vec![esp.clone()], 400),
        ("journal", &journals, 800),
        ("info", &parts, 1000),
    ] {
        let t = Instant::now();
        let runs = exercise(target, seeds, n, &mut rng);
        eprintln!("{target}: {runs} inputs in {:?}", t.elapsed());
        total += runs;
    }
    // the ext2/3/4 access path: the committed ext4 seeds (a Debian-like root made by mke2fs -d
    // in fuzz/seed.sh, an ext4 partition of the test images) and their mutations
    let mut ext = committed_seeds("bootfiles");
    assert!(!ext.is_empty(), "no committed bootfiles seeds");
    ext.extend(regress_inputs());
    let t = Instant::now();
    let runs = exercise("bootfiles", &ext, 1500, &mut rng);
    eprintln!("bootfiles: {runs} inputs in {:?}", t.elapsed());
    total += runs;
    // the shrink planners and GRUB's core.img codec (convert --room shrink, --hybrid)
    for (target, n) in [("shrink", 300), ("grub", 300)] {
        let seeds = committed_seeds(target);
        let t = Instant::now();
        let runs = exercise(target, &seeds, n, &mut rng);
        eprintln!("{target}: {runs} inputs in {:?}", t.elapsed());
        total += runs;
    }
    let t = Instant::now();
    for _ in 0..300 {
        let n = rng.index(96);
        fuzz::convert(&rng.bytes(n));
    }
    eprintln!("convert: 300 inputs in {:?}", t.elapsed());
    total += 300;
    eprintln!("{total} inputs in {:?}", start.elapsed());
}

/// The committed seeds of a fuzz target (`fuzz/seeds/TARGET/`, written by `fuzz/seed.sh`).
fn committed_seeds(target: &str) -> Vec<Vec<u8>> {
    let dir = common::repo_root().join("fuzz/seeds").join(target);
    let mut names: Vec<_> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    names.sort();
    names
        .iter()
        .map(|p| fs::read(p).expect("read seed"))
        .collect()
}

/// Upper bound of the committed seeds, all targets together (they live in the repository).
/// 512 KiB since journal format 2: a real journal records a CRC32 per converted 4 KiB block,
/// about 100 KiB for a 100 MiB ESP (fuzz/seeds/journal/four-primary.force.vhd.journal).
const SEED_BYTES_LIMIT: usize = 512 << 10;

#[test]
fn every_committed_seed_runs_through_its_target() {
    let mut total = 0;
    for target in fuzz::TARGETS {
        let seeds = committed_seeds(target);
        assert!(!seeds.is_empty(), "fuzz/seeds/{target} is empty");
        for s in &seeds {
            fuzz::run(target, s);
            total += s.len();
        }
    }
    assert!(
        total <= SEED_BYTES_LIMIT,
        "committed seeds hold {total} bytes (limit {SEED_BYTES_LIMIT}): trim fuzz/seed.sh"
    );
}

#[test]
fn regress_ext4_blocks_hi_without_64bit() {
    // found by the bootfiles fuzzer: a superblock with s_blocks_count_hi set and no 64bit
    // feature made ext4-view reserve 16 GiB of block group descriptors
    let input =
        fs::read(common::repo_root().join("testdata/regress/ext4-blocks-hi-without-64bit.bin"))
            .expect("regress file");
    let disk = fuzz::disk_from_input(&input);
    assert!(vhdtool::boot::linux::ext4::check_superblock(&disk).is_err());
    fuzz::bootfiles(&input);
}

#[test]
fn regress_vhd_bat_four_billion_entries() {
    // found by the vhd fuzzer: a BAT of 2^32 entries in a sparse file was read whole (16 GiB)
    let input =
        fs::read(common::repo_root().join("testdata/regress/vhd-bat-four-billion-entries.bin"))
            .expect("regress file");
    let t = Instant::now();
    fuzz::vhd(&input);
    fuzz::info(&input);
    // a hang guard (reading the 16 GiB table whole took minutes), not a speed goal
    assert!(
        t.elapsed() < std::time::Duration::from_secs(30),
        "took {:?}",
        t.elapsed()
    );
}

#[test]
fn regress_fat_empty_name() {
    // found by the fat fuzzer: a directory entry whose name decodes to "" was listed, and
    // "dir/" then named the directory itself
    let input = fs::read(common::repo_root().join("testdata/regress/fat-empty-name.bin"))
        .expect("regress file");
    fuzz::fat(&input);
}

#[test]
fn regress_ntfs_mft_record_past_new_end() {
    // found by the shrink fuzzer: $Bitmap said the tail was free while the $Bitmap/$BadClus/
    // $Volume MFT records lay in it, and the plan wrote past the shrunk partition
    let input =
        fs::read(common::repo_root().join("testdata/regress/ntfs-mft-record-past-new-end.bin"))
            .expect("regress file");
    fuzz::shrink(&input);
}

#[test]
fn the_debian_seed_yields_boot_files() {
    // the bootfiles target must reach a found boot chain, or its properties check little
    let seed = fs::read(common::repo_root().join("fuzz/seeds/bootfiles/debian.ext4.sprs"))
        .expect("committed seed");
    let disk = fuzz::disk_from_input(&seed);
    let part = vhdtool::boot::linux::PartitionRef {
        index: 1,
        offset: 0,
        length: disk.len(),
        type_id: 0x83,
    };
    match vhdtool::boot::linux::find_boot_files(&disk, &[part]).expect("in-memory disk") {
        vhdtool::boot::linux::Discovery::Found(b) => {
            assert_eq!(b.family, vhdtool::boot::linux::Family::Debian);
            assert!(b.used.iter().any(|u| u.esp_path.ends_with("shimx64.efi")));
        }
        other => panic!("no boot chain in the Debian seed: {other:?}"),
    }
}

#[test]
fn the_structure_aware_generator_reaches_conversions() {
    // the generator must make layouts that pass validation often, or the target checks nothing
    let mut rng = Rng(7);
    let converted = (0..100)
        .filter(|_| fuzz::convert_sample(&rng.bytes(64)).1.is_some())
        .count();
    assert!(converted >= 20, "only {converted} of 100 layouts converted");
}

/// Write a fuzz disk to a (sparse) file.
fn write_file(path: &Path, input: &[u8]) {
    let d = fuzz::disk_from_input(input);
    let f = fs::File::create(path).expect("create");
    f.set_len(d.len()).expect("set_len");
    drop(f);
    let mut m = MmapDisk::open(path, Access::ReadWrite).expect("open rw");
    match &d {
        fuzz::FuzzDisk::Flat(mem) => m.write_at(0, mem.data()).expect("write"),
        fuzz::FuzzDisk::Sparse(s) => {
            for (at, page) in s.pages() {
                let n = page.len().min((d.len() - at) as usize);
                m.write_at(at, &page[..n]).expect("write page");
            }
        }
    }
}

#[test]
fn mapped_and_in_memory_reads_agree() {
    let dir = common::TempDir::new("fuzz-mmap");
    let mut rng = Rng(42);
    let mut inputs = regress_inputs();
    inputs.extend(generated_disks(&mut rng, 6));
    let seeds = inputs.clone();
    for _ in 0..60 {
        let a = &seeds[rng.index(seeds.len())];
        inputs.push(mutate(&mut rng, a, a));
    }
    for (i, input) in inputs.iter().enumerate() {
        let d = fuzz::disk_from_input(input);
        if d.len() > 1 << 40 {
            continue; // beyond what a test should put on the file system, even sparse
        }
        let path = dir.path().join(format!("{i}.img"));
        write_file(&path, input);
        let mem = vhdtool::info::inspect(&d, "x");
        let mapped = MmapDisk::open(&path, Access::ReadOnly).expect("open");
        let file = vhdtool::info::inspect(&mapped, "x");
        assert_eq!(
            serde_json::to_value(&mem).expect("json"),
            serde_json::to_value(&file).expect("json"),
            "input {i}: mmap and memory reports differ"
        );
        let _ = fs::remove_file(&path);
    }
}

#[test]
fn sparse_disks_read_what_was_written() {
    let mut d = SparseDisk::new(10_000);
    d.write_at(4000, &[1; 200]).expect("write");
    let mut b = [9u8; 300];
    d.read_at(3950, &mut b).expect("read");
    assert!(b[..50].iter().all(|&x| x == 0));
    assert!(b[50..250].iter().all(|&x| x == 1));
    assert!(b[250..].iter().all(|&x| x == 0));
    assert!(d.read_at(9_900, &mut b).is_err());
    d.resize(4100);
    let mut t = [9u8; 4];
    d.read_at(4096, &mut t).expect("read");
    assert_eq!(t, [1; 4]);
    d.resize(10_000);
    d.read_at(4096, &mut t).expect("read");
    assert_eq!(t, [1, 1, 1, 1]);
    d.read_at(4100, &mut t).expect("read");
    assert_eq!(t, [0; 4], "bytes past a shrink read as zero after growing");
    // the sparse form of a disk describes the same disk
    let again = fuzz::disk_from_input(&sparse(&d));
    let mut a = vec![0u8; 10_000];
    let mut b2 = vec![0u8; 10_000];
    d.read_at(0, &mut a).expect("read");
    again.read_at(0, &mut b2).expect("read");
    assert_eq!(a, b2);
}

#[test]
fn sparse_patch_offsets_count_from_the_end() {
    let mut input = fuzz::SPARSE_MAGIC.to_vec();
    input.extend_from_slice(&(1u64 << 40).to_le_bytes());
    input.extend_from_slice(&((1u64 << 63) | 511).to_le_bytes());
    input.extend_from_slice(&2u16.to_le_bytes());
    input.extend_from_slice(&[0xab, 0xcd]);
    let d = fuzz::disk_from_input(&input);
    assert_eq!(d.len(), 1 << 40);
    let mut b = [0u8; 2];
    d.read_at((1 << 40) - 512, &mut b).expect("read");
    assert_eq!(b, [0xab, 0xcd]);
}

#[test]
fn converted_disks_reach_the_gpt_reencode_property() {
    let mut rng = Rng(11);
    let mut compared = 0;
    for _ in 0..40 {
        if let (_, Some(after)) = fuzz::convert_sample(&rng.bytes(64)) {
            let sb = if vhdtool::gpt::read(&after, 512).ok().flatten().is_some() {
                512
            } else {
                4096
            };
            let g = vhdtool::gpt::read(&after, sb)
                .expect("readable")
                .expect("present");
            if fuzz::gpt_reencode(&after, &g) {
                compared += 1;
            }
        }
    }
    assert!(
        compared >= 5,
        "the GPT re-encode property compared {compared} tables"
    );
}

/// The committed shrink and grub seeds reach the properties (a plan is made, a core.img
/// decodes), so the fuzz targets test more than the refusals.
#[test]
fn shrink_and_grub_seeds_reach_their_properties() {
    let seeds = committed_seeds("shrink");
    let three_quarters = |s: &Vec<u8>| {
        let disk = fuzz::disk_from_input(s);
        let n = vhdtool::disk::Disk::len(&disk) / 4 * 3 / 512 * 512;
        (disk, n)
    };
    assert!(
        seeds.iter().any(|s| {
            let (disk, n) = three_quarters(s);
            vhdtool::shrink::ntfs::plan_shrink(&disk, n).is_ok()
        }),
        "no committed shrink seed plans an NTFS shrink"
    );
    assert!(
        seeds.iter().any(|s| {
            let (disk, n) = three_quarters(s);
            vhdtool::shrink::swap::plan_swap_shrink(&disk, n).is_ok()
        }),
        "no committed shrink seed plans a swap shrink"
    );
    let core = committed_seeds("grub");
    assert!(core
        .iter()
        .any(|c| vhdtool::boot::linux::grubcore::Core::decode(c).is_ok()));
}
