//! Mutation corpus: 10,000 damaged images made from the generated test images
//! (`testdata/make-images.sh`) by bit flips, interesting values, truncations, extensions and
//! splices of one image's metadata into another, run through `info::inspect` in process, and a
//! sample of 300 through the `vhdtool info` binary.
//!
//! Only the metadata of each image is kept (the first and last 64 KiB of the file, the first
//! 64 KiB of each partition, 1 MiB of each FAT partition), in a sparse in-memory disk of the
//! image's full length (`fuzz::SparseDisk`), so the mutants stay small however large
//! the image is.
//!
//! Checks: no panic; each inspection under 1 s; the binary never exits 101, is never killed,
//! prints JSON when it exits 0 or 1, and each run takes under 1 s. Memory (counted by this
//! binary's global allocator, per thread): no single allocation larger than the file plus
//! 64 KiB, and at most 64 MiB live at any point of one inspection. The 64 MiB is the sum of the
//! readers' own limits (1 MiB GPT entry arrays, a 2 MiB FAT directory, the 1 MiB of sector
//! scanning before the first partition, report strings) with room to spare; it does not grow
//! with the image.
//!
//! Why in process and not `prlimit --as` on the binary: the binary maps the image (`MmapDisk`),
//! so its address space grows with the file by design (a 2 TB sparse image maps 2 TB), and an
//! address-space limit cannot tell a mapping from an allocation. The counting allocator sees
//! every heap allocation, one by one, and fails the test on the first oversized one.
#![allow(clippy::restriction)]
// tests: a panic is a failed test (the crate's panic lints are for src/)

// The counting allocator below is the only unsafe code, forwarding to the system allocator.
#![allow(unsafe_code)]

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::time::{Duration, Instant};

use common::Rng;
use vhdtool::disk::{Access, Disk, MmapDisk};
use vhdtool::fs::FsKind;
#[path = "../fuzz/src/lib.rs"]
#[allow(dead_code)]
mod fuzz;
use fuzz::SparseDisk;

// ---------------------------------------------------------------------------------------------
// A counting allocator: live bytes, peak and largest allocation of the current thread
// ---------------------------------------------------------------------------------------------

struct Counting;

thread_local! {
    static LIVE: Cell<usize> = const { Cell::new(0) };
    static PEAK: Cell<usize> = const { Cell::new(0) };
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

fn note_alloc(size: usize) {
    let _ = LIVE.try_with(|l| {
        let now = l.get().saturating_add(size);
        l.set(now);
        let _ = PEAK.try_with(|p| p.set(p.get().max(now)));
    });
    let _ = LARGEST.try_with(|m| m.set(m.get().max(size)));
}

fn note_free(size: usize) {
    let _ = LIVE.try_with(|l| l.set(l.get().saturating_sub(size)));
}

// SAFETY: every call is forwarded to the system allocator unchanged; the counters are plain
// thread-local cells that never allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note_alloc(layout.size());
        // SAFETY: forwarded with the caller's layout.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note_alloc(layout.size());
        // SAFETY: forwarded with the caller's layout.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        note_free(layout.size());
        // SAFETY: forwarded with the caller's pointer and layout.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note_free(layout.size());
        note_alloc(new_size);
        // SAFETY: forwarded with the caller's pointer, layout and size.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// (peak live bytes above the start, largest single allocation) of `f` on this thread.
fn measure<T>(f: impl FnOnce() -> T) -> (T, usize, usize) {
    let base = LIVE.with(Cell::get);
    PEAK.with(|p| p.set(base));
    LARGEST.with(|m| m.set(0));
    let out = f();
    let peak = PEAK.with(Cell::get).saturating_sub(base);
    (out, peak, LARGEST.with(Cell::get))
}

// ---------------------------------------------------------------------------------------------
// Mutants
// ---------------------------------------------------------------------------------------------

const MUTANTS: usize = 10_000;
const BINARY_SAMPLE: usize = 300;
const PEAK_LIMIT: usize = 64 << 20;
const SINGLE_SLACK: u64 = 64 << 10;
/// A hang guard, not a speed goal (speed lives in benches/parse.rs): an inspection reads a few
/// sectors, so even a loaded 2-core runner finishes it far below this.
const INSPECT_LIMIT: Duration = Duration::from_secs(10);
/// The same for one run of the binary (the deadline after which it is killed).
const BINARY_LIMIT: Duration = Duration::from_secs(20);

/// The metadata of an image file as a sparse disk of the file's length.
fn metadata_disk(path: &std::path::Path) -> SparseDisk {
    let file = MmapDisk::open(path, Access::ReadOnly).expect("open image");
    let len = file.len();
    let mut ranges = vec![(0, 64 << 10), (len.saturating_sub(64 << 10), 64 << 10)];
    let report = vhdtool::info::inspect(&file, "x");
    for p in &report.partitions {
        let start = p.start_lba * u64::from(report.sector_bytes);
        let fat = p
            .filesystem
            .as_ref()
            .is_some_and(|f| matches!(f.kind, FsKind::Fat12 | FsKind::Fat16 | FsKind::Fat32));
        ranges.push((start, if fat { 1 << 20 } else { 64 << 10 }));
        if p.logical {
            // the EBR before a logical partition
            ranges.push((start.saturating_sub(1 << 20), 4096));
            ranges.push((start.saturating_sub(63 * 512), 4096));
        }
    }
    let input = fuzz::sparse_input(&file, &ranges).expect("sparse form");
    match fuzz::disk_from_input(&input) {
        fuzz::FuzzDisk::Sparse(s) => s,
        fuzz::FuzzDisk::Flat(_) => unreachable!("sparse input"),
    }
}

/// One mutation of `base` (`other`: a second image to splice from).
fn mutate(rng: &mut Rng, base: &SparseDisk, other: &SparseDisk) -> SparseDisk {
    let mut d = base.clone();
    let pages: Vec<u64> = d.pages().map(|(at, _)| at).collect();
    let pick_page = |rng: &mut Rng, pages: &[u64]| -> Option<u64> {
        (!pages.is_empty()).then(|| pages[rng.below(pages.len() as u64) as usize])
    };
    let len = d.len();
    match rng.below(10) {
        // 1..16 bit flips inside the metadata
        0..=3 => {
            for _ in 0..=rng.below(16) {
                if let Some(at) = pick_page(rng, &pages) {
                    let off = (at + rng.below(4096)).min(len.saturating_sub(1));
                    let mut b = [0u8];
                    if d.read_at(off, &mut b).is_ok() {
                        b[0] ^= 1 << rng.below(8);
                        let _ = d.write_at(off, &b);
                    }
                }
            }
        }
        // an interesting value over 1..8 bytes
        4 | 5 => {
            if let Some(at) = pick_page(rng, &pages) {
                let off = at + rng.below(4096);
                let n = [1usize, 2, 4, 8][rng.below(4) as usize];
                let v = [0u8, 0xff, 0x80, 0x7f, 0x01][rng.below(5) as usize];
                let bytes = vec![v; n];
                if off + n as u64 <= len {
                    let _ = d.write_at(off, &bytes);
                }
            }
        }
        // truncate (sometimes to an odd length) or extend
        6 => d.resize(rng.below(len + 1)),
        7 => {
            let grow = [1, 511, 512, 4096, 1 << 20][rng.below(5) as usize];
            d.resize(len + grow);
        }
        // splice: a metadata page of another image over one of this one
        _ => {
            let theirs: Vec<(u64, Vec<u8>)> = other.pages().map(|(a, p)| (a, p.to_vec())).collect();
            if let (Some(at), false) = (pick_page(rng, &pages), theirs.is_empty()) {
                let (_, page) = &theirs[rng.below(theirs.len() as u64) as usize];
                let n = page.len().min((len - at) as usize);
                let _ = d.write_at(at, &page[..n]);
            }
        }
    }
    d
}

fn write_sparse_file(path: &std::path::Path, d: &SparseDisk) {
    let f = std::fs::File::create(path).expect("create");
    f.set_len(d.len()).expect("set_len");
    drop(f);
    let mut m = MmapDisk::open(path, Access::ReadWrite).expect("open rw");
    for (at, page) in d.pages() {
        let n = page.len().min((d.len() - at) as usize);
        m.write_at(at, &page[..n]).expect("write");
    }
}

#[test]
fn ten_thousand_mutants() {
    let Some(images) = common::images() else {
        return;
    };
    let bases: Vec<(String, SparseDisk)> = images
        .list
        .iter()
        .map(|i| (i.file.clone(), metadata_disk(&images.path(&i.file))))
        .collect();
    assert!(!bases.is_empty());
    let dir = common::TempDir::new("mutation");
    let mut rng = Rng(0x5eed_1234_abcd_ef01);
    let (mut worst_peak, mut worst_time) = (0usize, Duration::ZERO);
    let mut worst_bin = Duration::ZERO;
    let start = Instant::now();
    for n in 0..MUTANTS {
        let (name, base) = &bases[rng.below(bases.len() as u64) as usize];
        let (_, other) = &bases[rng.below(bases.len() as u64) as usize];
        // a few rounds of mutation on top of each other now and then
        let mut m = mutate(&mut rng, base, other);
        for _ in 0..rng.below(3) {
            m = mutate(&mut rng, &m, other);
        }
        let t = Instant::now();
        let (report, peak, largest) = measure(|| vhdtool::info::inspect(&m, "mutant"));
        let took = t.elapsed();
        fuzz::check_report(&report, m.len());
        assert!(took < INSPECT_LIMIT, "mutant {n} of {name}: {took:?}");
        assert!(
            peak <= PEAK_LIMIT,
            "mutant {n} of {name}: {peak} bytes live at once (limit {PEAK_LIMIT})"
        );
        assert!(
            largest as u64 <= m.len() + SINGLE_SLACK,
            "mutant {n} of {name}: one allocation of {largest} bytes for a {}-byte file",
            m.len()
        );
        worst_peak = worst_peak.max(peak);
        worst_time = worst_time.max(took);
        if n % (MUTANTS / BINARY_SAMPLE) == 0 && m.len() <= 1 << 40 {
            let path = dir.path().join("mutant.img");
            write_sparse_file(&path, &m);
            let run = common::vhdtool_timeout(
                [
                    std::ffi::OsStr::new("info"),
                    std::ffi::OsStr::new("--json"),
                    path.as_os_str(),
                ],
                BINARY_LIMIT,
            );
            let code = run.exit_code(); // panics on exit 101, a signal, or the deadline
            if code == 0 || code == 1 {
                serde_json::from_str::<serde_json::Value>(&run.stdout)
                    .unwrap_or_else(|e| panic!("mutant {n} of {name}: not JSON: {e}"));
            }
            worst_bin = worst_bin.max(run.elapsed);
        }
    }
    eprintln!(
        "{MUTANTS} mutants in {:?}: slowest inspection {worst_time:?}, largest peak {worst_peak} bytes, slowest binary run {worst_bin:?}",
        start.elapsed()
    );
}

#[test]
fn the_allocation_checks_can_fail() {
    // the counters see an oversized allocation and a peak, so the limits above can trip
    let (v, peak, largest) = measure(|| {
        let big = vec![1u8; 3 << 20];
        let small = vec![2u8; 1 << 20];
        big.len() + small.len()
    });
    assert_eq!(v, 4 << 20);
    assert!(largest >= 3 << 20, "largest allocation seen: {largest}");
    assert!(peak >= 4 << 20, "peak seen: {peak}");
    assert!(largest as u64 > (1u64 << 20) + SINGLE_SLACK);
}
