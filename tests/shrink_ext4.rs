//! Shrinking the last partition: ext4 through e2fsprogs (`vhdtool::shrink::ext4`) and Linux
//! swap (`vhdtool::shrink::swap`), judged by independent tools: `e2fsck -fn`, `dumpe2fs`,
//! `debugfs rdump` (every file compared), `mkswap` (the header it writes for the new size),
//! `blkid -p` and `swaplabel`. Undo must give back the whole image byte for byte.
#![allow(clippy::restriction)] // tests: a panic is a failed test (the crate's panic lints are for src/)

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Instant;

use common::{require_tools, run_with_timeout, tool, TempDir};
use vhdtool::disk::{Access, Disk, MmapDisk};
use vhdtool::shrink::{ext4, swap};
use vhdtool::ErrorKind;

const MIB: u64 = 1 << 20;
/// Where the partition starts in the test images.
const PART_OFFSET: u64 = MIB;
/// A fake VHD footer after the partition: resize2fs must not touch it or the file length.
const FOOTER: &[u8; 512] = &[0xA5; 512];
const TOOL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(300);

fn ext_tools() -> bool {
    require_tools(&[
        ("mke2fs", "e2fsprogs"),
        ("debugfs", "e2fsprogs"),
        ("dumpe2fs", "e2fsprogs"),
        ("e2fsck", "e2fsprogs"),
        ("resize2fs", "e2fsprogs"),
        ("e2undo", "e2fsprogs"),
    ])
}

/// Run a tool, panic with its output unless it exits 0; stdout.
fn ok(name: &str, args: &[&std::ffi::OsStr]) -> String {
    let run = run_with_timeout(tool(name).args(args), TOOL_TIMEOUT);
    assert!(
        run.code == Some(0),
        "{}: exit {:?}\nstdout:\n{}\nstderr:\n{}",
        run.command,
        run.code,
        run.stdout,
        run.stderr
    );
    run.stdout
}

fn dev(image: &Path) -> std::ffi::OsString {
    let mut d = image.as_os_str().to_os_string();
    d.push(format!("?offset={PART_OFFSET}"));
    d
}

/// xorshift64*: deterministic file contents.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        // compressible but not constant: runs of a random byte
        let mut v = Vec::with_capacity(n);
        while v.len() < n {
            let r = self.next();
            let run = (r >> 8) as usize % 64 + 1;
            v.extend(std::iter::repeat_n(r as u8, run.min(n - v.len())));
        }
        v
    }
}

/// The test tree: `a_filler/` (big files deleted after mke2fs, so that the data behind them
/// sits high in the filesystem and must move) and `z_data/` (a few hundred files in nested
/// directories, a symlink, empty files; about 4 MiB). mke2fs -d adds them in name order.
fn make_tree(root: &Path, filler_mib: usize) {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let filler = root.join("a_filler");
    fs::create_dir_all(&filler).unwrap();
    for i in 0..filler_mib {
        fs::write(filler.join(format!("f{i:02}")), rng.bytes(MIB as usize)).unwrap();
    }
    let data = root.join("z_data");
    for d in 0..15 {
        let dir = if d % 4 == 3 {
            data.join(format!("d{:02}", d - 1))
                .join(format!("sub{d:02}"))
        } else {
            data.join(format!("d{d:02}"))
        };
        fs::create_dir_all(&dir).unwrap();
        for f in 0..20 {
            let n = d * 20 + f;
            let len = match n % 17 {
                0 => 0,
                5 => 300 * 1024 + n,
                _ => (rng.next() % (24 * 1024)) as usize,
            };
            fs::write(dir.join(format!("file{n:03}.bin")), rng.bytes(len)).unwrap();
        }
    }
    std::os::unix::fs::symlink("d00/file000.bin", data.join("link")).unwrap();
}

/// An image: 1 MiB of pseudo-random "partition table" bytes, an ext4 of `fs_mib` MiB made by
/// `mke2fs -d` from `tree` with `block` byte blocks, the filler deleted with debugfs, the
/// filesystem marked as mounted after its last check (as a guest leaves it); then a footer.
fn make_image(dir: &Path, tree: &Path, fs_mib: u64, block: u32) -> PathBuf {
    let img = dir.join("disk.img");
    let mut head = Rng(7).bytes(PART_OFFSET as usize);
    head[510] = 0x55;
    head[511] = 0xAA;
    fs::write(&img, &head).unwrap();
    let f = fs::OpenOptions::new().write(true).open(&img).unwrap();
    f.set_len(PART_OFFSET + fs_mib * MIB).unwrap();
    drop(f);
    ok(
        "mke2fs",
        &[
            "-q".as_ref(),
            "-F".as_ref(),
            "-t".as_ref(),
            "ext4".as_ref(),
            "-b".as_ref(),
            block.to_string().as_ref(),
            "-U".as_ref(),
            "6a7f0e5c-7d3e-4f59-9a38-1e1b2c3d4e5f".as_ref(),
            "-E".as_ref(),
            format!("offset={PART_OFFSET}").as_ref(),
            "-d".as_ref(),
            tree.as_os_str(),
            img.as_os_str(),
            format!("{}k", fs_mib * 1024).as_ref(),
        ],
    );
    let mut cmds = String::new();
    for e in fs::read_dir(tree.join("a_filler")).unwrap() {
        let name = e.unwrap().file_name();
        cmds.push_str(&format!("rm a_filler/{}\n", name.to_string_lossy()));
    }
    cmds.push_str("rmdir a_filler\nssv mtime 20300101\n");
    let cmdfile = dir.join("debugfs.cmds");
    fs::write(&cmdfile, cmds).unwrap();
    ok(
        "debugfs",
        &[
            "-w".as_ref(),
            "-f".as_ref(),
            cmdfile.as_os_str(),
            dev(&img).as_os_str(),
        ],
    );
    let mut f = fs::OpenOptions::new().append(true).open(&img).unwrap();
    std::io::Write::write_all(&mut f, FOOTER).unwrap();
    img
}

fn e2fsck_clean(img: &Path) {
    ok("e2fsck", &["-fn".as_ref(), dev(img).as_os_str()]);
}

/// `dumpe2fs -h`: (block count, block size).
fn dumpe2fs(img: &Path) -> (u64, u64) {
    let out = ok("dumpe2fs", &["-h".as_ref(), dev(img).as_os_str()]);
    let field = |name: &str| -> u64 {
        out.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("dumpe2fs: no {name}\n{out}"))
    };
    (field("Block count:"), field("Block size:"))
}

/// Every file, directory and symlink under `a` equals the one under `b` (and no extra ones).
fn same_tree(a: &Path, b: &Path) -> usize {
    let mut count = 0;
    let names = |p: &Path| -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(p)
            .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    let (na, nb) = (names(a), names(b));
    assert_eq!(na, nb, "entries of {} and {}", a.display(), b.display());
    for n in na {
        let (pa, pb) = (a.join(&n), b.join(&n));
        let (ma, mb) = (
            fs::symlink_metadata(&pa).unwrap(),
            fs::symlink_metadata(&pb).unwrap(),
        );
        assert_eq!(ma.file_type(), mb.file_type(), "{}", pa.display());
        if ma.is_dir() {
            count += same_tree(&pa, &pb);
        } else if ma.file_type().is_symlink() {
            assert_eq!(fs::read_link(&pa).unwrap(), fs::read_link(&pb).unwrap());
            count += 1;
        } else {
            assert!(
                fs::read(&pa).unwrap() == fs::read(&pb).unwrap(),
                "{} differs from {}",
                pb.display(),
                pa.display()
            );
            count += 1;
        }
    }
    count
}

fn first_difference(a: &[u8], b: &[u8]) -> Option<usize> {
    a.iter()
        .zip(b)
        .position(|(x, y)| x != y)
        .or_else(|| (a.len() != b.len()).then_some(a.len().min(b.len())))
}

/// The highest block any file of `z_data/d13` uses (debugfs `blocks`).
fn highest_data_block(img: &Path) -> u64 {
    let mut cmds = String::new();
    for n in 260..280 {
        cmds.push_str(&format!("blocks z_data/d13/file{n:03}.bin\n"));
    }
    let dir = img.parent().unwrap();
    let cmdfile = dir.join("blocks.cmds");
    fs::write(&cmdfile, cmds).unwrap();
    let out = ok(
        "debugfs",
        &["-f".as_ref(), cmdfile.as_os_str(), dev(img).as_os_str()],
    );
    out.split_whitespace()
        .filter_map(|w| w.parse::<u64>().ok())
        .max()
        .unwrap_or(0)
}

fn shrink_and_undo(block: u32) {
    if !ext_tools() {
        return;
    }
    let tmp = TempDir::new(&format!("shrink-ext4-{block}"));
    let tree = tmp.path().join("tree");
    make_tree(&tree, 16);
    let fs_mib = 40;
    let img = make_image(tmp.path(), &tree, fs_mib, block);
    e2fsck_clean(&img);
    let original = fs::read(&img).unwrap();
    let crc_before = crc32fast::hash(&original);

    let geometry = ext4::geometry(&img, PART_OFFSET).unwrap();
    assert_eq!(geometry.block_bytes, u64::from(block));
    assert_eq!(geometry.fs_bytes(), fs_mib * MIB);
    let min = ext4::min_size(&img, PART_OFFSET).unwrap();
    let new_bytes = min.div_ceil(MIB) * MIB + MIB;
    assert!(new_bytes < fs_mib * MIB, "min {min}: nothing to shrink");
    // the test means something only when data lies beyond the new end
    let high = highest_data_block(&img);
    assert!(
        high * u64::from(block) >= new_bytes,
        "data ends at block {high}, before the new end {new_bytes}: the shrink moves nothing"
    );

    // vhdtool holds the image exclusively locked and mapped while e2fsprogs works on it
    let disk = MmapDisk::open(&img, Access::ReadWrite).unwrap();
    let undo_file = tmp.path().join("disk.e2undo");
    let start = Instant::now();
    let report = ext4::shrink(&img, PART_OFFSET, new_bytes, Some(&undo_file)).unwrap();
    eprintln!(
        "block {block}: shrink {} -> {} bytes (min {}) in {:?} (resize2fs {:?}); undo file {} \
         bytes",
        report.old_fs_bytes,
        report.new_fs_bytes,
        report.min_fs_bytes,
        start.elapsed(),
        report.resize_time,
        report.undo_file_bytes
    );
    assert_eq!(report.old_fs_bytes, fs_mib * MIB);
    assert!(report.new_fs_bytes <= new_bytes && report.new_fs_bytes + u64::from(block) > new_bytes);
    assert_eq!(report.min_fs_bytes, min);
    assert!(
        report.undo_file_bytes > 0 && report.superblock_file.as_ref().is_some_and(|p| p.exists())
    );
    // the mapping sees what resize2fs wrote
    let mut sb = [0u8; 4];
    disk.read_at(PART_OFFSET + 1024 + 4, &mut sb).unwrap();
    assert_eq!(
        u64::from(u32::from_le_bytes(sb)) * u64::from(block),
        report.new_fs_bytes
    );

    // judged by e2fsprogs itself, and every file read back
    let shrunk = fs::read(&img).unwrap();
    assert_eq!(shrunk.len(), original.len(), "the image length changed");
    let end = (PART_OFFSET + fs_mib * MIB) as usize;
    assert!(shrunk[..PART_OFFSET as usize] == original[..PART_OFFSET as usize]);
    assert!(
        shrunk[end..] == original[end..],
        "bytes after the partition changed"
    );
    e2fsck_clean(&img);
    let (blocks, bsize) = dumpe2fs(&img);
    assert_eq!(blocks * bsize, report.new_fs_bytes);
    let out = tmp.path().join("rdump");
    fs::create_dir_all(&out).unwrap();
    ok(
        "debugfs",
        &[
            "-R".as_ref(),
            format!("rdump z_data {}", out.display()).as_ref(),
            dev(&img).as_os_str(),
        ],
    );
    let files = same_tree(&tree.join("z_data"), &out.join("z_data"));
    assert!(files > 290, "{files} files compared");

    // undo: the whole image byte for byte
    ext4::undo(&img, PART_OFFSET, &undo_file).unwrap();
    drop(disk);
    let restored = fs::read(&img).unwrap();
    assert_eq!(
        first_difference(&original, &restored),
        None,
        "undo left a difference (partition offset 0x{PART_OFFSET:x})"
    );
    assert_eq!(crc32fast::hash(&restored), crc_before);
}

#[test]
fn ext4_4k_shrink_keeps_every_file_and_undo_restores_the_image() {
    shrink_and_undo(4096);
}

#[test]
fn ext4_1k_shrink_keeps_every_file_and_undo_restores_the_image() {
    shrink_and_undo(1024);
}

/// A small ext4 image for the refusal tests, and its CRC.
fn small_image(tmp: &TempDir) -> (PathBuf, u32) {
    let tree = tmp.path().join("tree");
    make_tree(&tree, 2);
    let img = make_image(tmp.path(), &tree, 24, 4096);
    let crc = crc32fast::hash(&fs::read(&img).unwrap());
    (img, crc)
}

fn assert_untouched(img: &Path, crc: u32, undo_file: &Path) {
    assert_eq!(
        crc32fast::hash(&fs::read(img).unwrap()),
        crc,
        "the image changed"
    );
    assert!(!undo_file.exists(), "an undo file was created");
    assert!(!ext4::superblock_save_path(undo_file).exists());
}

#[test]
fn ext4_below_minimum_is_refused_before_any_write() {
    if !ext_tools() {
        return;
    }
    let tmp = TempDir::new("shrink-ext4-min");
    let (img, crc) = small_image(&tmp);
    let undo_file = tmp.path().join("u.e2undo");
    let e = ext4::shrink(&img, PART_OFFSET, MIB, Some(&undo_file)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    assert!(e.message().contains("needs at least"), "{e}");
    assert!(e.message().contains("--room grow"), "{e}");
    assert_untouched(&img, crc, &undo_file);
    // not a shrink at all
    let e = ext4::shrink(&img, PART_OFFSET, 24 * MIB, Some(&undo_file)).unwrap_err();
    assert!(e.message().contains("nothing to shrink"), "{e}");
    assert_untouched(&img, crc, &undo_file);
}

#[test]
fn ext4_with_problems_is_refused_before_any_write() {
    if !ext_tools() {
        return;
    }
    let tmp = TempDir::new("shrink-ext4-fsck");
    let (img, _) = small_image(&tmp);
    // a wrong link count on the root directory: e2fsck -fn reports it
    ok(
        "debugfs",
        &[
            "-w".as_ref(),
            "-R".as_ref(),
            "sif <2> links_count 9".as_ref(),
            dev(&img).as_os_str(),
        ],
    );
    let crc = crc32fast::hash(&fs::read(&img).unwrap());
    let undo_file = tmp.path().join("u.e2undo");
    let e = ext4::shrink(&img, PART_OFFSET, 16 * MIB, Some(&undo_file)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Corrupt, "{e}");
    assert!(e.message().contains("run `e2fsck -f`"), "{e}");
    assert_untouched(&img, crc, &undo_file);

    // a journal to recover
    let (img, _) = {
        let tmp2 = tmp.path().join("b");
        fs::create_dir_all(&tmp2).unwrap();
        let tree = tmp.path().join("tree");
        (make_image(&tmp2, &tree, 24, 4096), ())
    };
    ok(
        "debugfs",
        &[
            "-w".as_ref(),
            "-R".as_ref(),
            "feature needs_recovery".as_ref(),
            dev(&img).as_os_str(),
        ],
    );
    let crc = crc32fast::hash(&fs::read(&img).unwrap());
    let e = ext4::shrink(&img, PART_OFFSET, 16 * MIB, Some(&undo_file)).unwrap_err();
    assert!(e.message().contains("journal to recover"), "{e}");
    assert_untouched(&img, crc, &undo_file);
}

#[test]
fn ext4_existing_undo_file_is_a_conflict() {
    if !ext_tools() {
        return;
    }
    let tmp = TempDir::new("shrink-ext4-conflict");
    let (img, crc) = small_image(&tmp);
    let undo_file = tmp.path().join("u.e2undo");
    fs::write(&undo_file, b"precious").unwrap();
    let e = ext4::shrink(&img, PART_OFFSET, 16 * MIB, Some(&undo_file)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Conflict, "{e}");
    assert_eq!(fs::read(&undo_file).unwrap(), b"precious");
    assert_eq!(crc32fast::hash(&fs::read(&img).unwrap()), crc);
}

#[test]
fn tools_are_found_here() {
    if !ext_tools() {
        return;
    }
    ext4::check_tools().unwrap();
}

// ---------------------------------------------------------------------------------------------
// swap
// ---------------------------------------------------------------------------------------------

const SWAP_UUID: &str = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0";
const SWAP_LABEL: &str = "guestswap";

fn mkswap(path: &Path, bytes: u64, page: u64) {
    let f = fs::File::create(path).unwrap();
    f.set_len(bytes).unwrap();
    drop(f);
    ok(
        "mkswap",
        &[
            "-p".as_ref(),
            page.to_string().as_ref(),
            "-U".as_ref(),
            SWAP_UUID.as_ref(),
            "-L".as_ref(),
            SWAP_LABEL.as_ref(),
            path.as_os_str(),
        ],
    );
}

fn swap_case(page: u64) {
    if !require_tools(&[
        ("mkswap", "util-linux"),
        ("swaplabel", "util-linux"),
        ("blkid", "util-linux"),
    ]) {
        return;
    }
    let tmp = TempDir::new(&format!("shrink-swap-{page}"));
    let big = tmp.path().join("big.swap");
    let old_bytes = 16 * MIB;
    mkswap(&big, old_bytes, page);
    let new_bytes = 6 * MIB + 5 * 512; // not a whole number of pages
    let plan = {
        let disk = MmapDisk::open(&big, Access::ReadOnly).unwrap();
        swap::plan_swap_shrink(&disk, new_bytes).unwrap()
    };
    assert_eq!(plan.writes.len(), 1);
    let (off, bytes) = &plan.writes[0];
    assert_eq!((*off, bytes.len() as u64), (0, page));
    eprintln!("{:?}", plan.notes);

    // mkswap's own header for the new size: identical page
    let small = tmp.path().join("small.swap");
    mkswap(&small, new_bytes, page);
    let reference = fs::read(&small).unwrap();
    assert_eq!(
        first_difference(bytes, &reference[..page as usize]),
        None,
        "our header differs from mkswap's"
    );

    // apply to the big one and let util-linux read it
    {
        let mut disk = MmapDisk::open(&big, Access::ReadWrite).unwrap();
        disk.write_at(*off, bytes).unwrap();
        disk.sync().unwrap();
    }
    let out = ok(
        "blkid",
        &[
            "-p".as_ref(),
            "-o".as_ref(),
            "export".as_ref(),
            big.as_os_str(),
        ],
    );
    for want in [
        "TYPE=swap",
        &format!("UUID={SWAP_UUID}"),
        &format!("LABEL={SWAP_LABEL}"),
    ] {
        assert!(out.lines().any(|l| l == want), "blkid -p: no {want}\n{out}");
    }
    let out = ok("swaplabel", &[big.as_os_str()]);
    assert!(
        out.contains(SWAP_UUID) && out.contains(SWAP_LABEL),
        "swaplabel:\n{out}"
    );
    if common::tool_path("file").is_some() {
        let out = ok("file", &["-s".as_ref(), big.as_os_str()]);
        let pages = new_bytes / page - 1;
        assert!(
            out.contains(&format!("size {pages} pages")),
            "file -s:\n{out}"
        );
    }
}

#[test]
fn swap_header_equals_mkswap_4k() {
    swap_case(4096);
}

#[test]
fn swap_header_equals_mkswap_64k() {
    swap_case(65536);
}

// ---------------------------------------------------------------------------------------------
// measurement (run by hand: cargo test --test shrink_ext4 measure -- --ignored --nocapture)
// ---------------------------------------------------------------------------------------------

/// A 2 GiB ext4 holding 100 MiB of files: shrink by 101 MiB (room for a 100 MiB ESP) and to
/// to 256 MiB (minimum about 206 MiB); time and undo file size of each, and of the undo.
#[test]
#[ignore]
fn measure_2gib_ext4_with_100mib() {
    if !ext_tools() {
        return;
    }
    let tmp = TempDir::new("shrink-measure");
    let tree = tmp.path().join("tree");
    let data = tree.join("data");
    fs::create_dir_all(&data).unwrap();
    let mut rng = Rng(42);
    for i in 0..100 {
        fs::write(data.join(format!("f{i:03}")), rng.bytes(MIB as usize)).unwrap();
    }
    let fs_bytes = 2048 * MIB;
    for (name, new_bytes) in [
        ("by 101 MiB", fs_bytes - 101 * MIB),
        ("to 256 MiB", 256 * MIB),
    ] {
        let img = tmp.path().join("big.img");
        let _ = fs::remove_file(&img);
        let f = fs::File::create(&img).unwrap();
        f.set_len(PART_OFFSET + fs_bytes).unwrap();
        drop(f);
        ok(
            "mke2fs",
            &[
                "-q".as_ref(),
                "-F".as_ref(),
                "-t".as_ref(),
                "ext4".as_ref(),
                "-E".as_ref(),
                format!("offset={PART_OFFSET}").as_ref(),
                "-d".as_ref(),
                tree.as_os_str(),
                img.as_os_str(),
                "2G".as_ref(),
            ],
        );
        let undo_file = tmp.path().join(format!("u-{}.e2undo", new_bytes));
        let start = Instant::now();
        let r = ext4::shrink(&img, PART_OFFSET, new_bytes, Some(&undo_file)).unwrap();
        let shrink_time = start.elapsed();
        let start = Instant::now();
        ext4::undo(&img, PART_OFFSET, &undo_file).unwrap();
        eprintln!(
            "MEASURE 2 GiB ext4, 100 MiB data, shrink {name}: shrink() {shrink_time:?} \
             (resize2fs {:?}), undo file {} bytes, undo() {:?}",
            r.resize_time,
            r.undo_file_bytes,
            start.elapsed()
        );
    }
}

// ---------------------------------------------------------------------------------------------
// end to end: `vhdtool convert --room shrink|auto` and `vhdtool rollback` on whole disks
// ---------------------------------------------------------------------------------------------

/// The end-to-end disks: 160 MiB, MBR, one partition from 1 MiB to the last sector (the
/// smallest ESP is 100 MiB).
const DISK_BYTES: u64 = 160 * MIB;
const SECTOR: u64 = 512;
const ESP_TYPE: &str = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B";
/// Deadline of one vhdtool run (e2fsck and resize2fs run inside).
const VHDTOOL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);

/// A raw disk of `disk_bytes` with an MBR whose only partition (`mbr_type`) runs from LBA 2048
/// to the last sector; the partition's bytes are left to the caller.
fn mbr_disk(path: &Path, mbr_type: u8, disk_bytes: u64) {
    let mut mbr = [0u8; 512];
    mbr[440..444].copy_from_slice(&0x5EED_0001u32.to_le_bytes());
    let e = &mut mbr[446..462];
    e[0] = 0x80;
    e[1..4].copy_from_slice(&[0xFE, 0xFF, 0xFF]);
    e[4] = mbr_type;
    e[5..8].copy_from_slice(&[0xFE, 0xFF, 0xFF]);
    e[8..12].copy_from_slice(&2048u32.to_le_bytes());
    let sectors = u32::try_from(disk_bytes / SECTOR - 2048).unwrap();
    e[12..16].copy_from_slice(&sectors.to_le_bytes());
    mbr[510] = 0x55;
    mbr[511] = 0xAA;
    fs::write(path, mbr).unwrap();
    fs::OpenOptions::new()
        .write(true)
        .open(path)
        .unwrap()
        .set_len(disk_bytes)
        .unwrap();
}

/// The tree the end-to-end ext4 is made from: `a_filler/` (64 MiB, deleted after mke2fs so
/// that everything after it lies past the new end and resize2fs must move it), `z_data/`
/// (300 files in nested directories, a symlink, empty files) and `z_big.bin` (12 MiB).
const FILLER_FILES: usize = 8;

fn e2e_tree(root: &Path) {
    let mut rng = Rng(0xD1B5_4A32_D192_ED03);
    let filler = root.join("a_filler");
    fs::create_dir_all(&filler).unwrap();
    for i in 0..FILLER_FILES {
        // not zero (mke2fs -d leaves zero blocks out), cheap to make
        fs::write(
            filler.join(format!("f{i:02}")),
            vec![0xF0 | i as u8; 8 * MIB as usize],
        )
        .unwrap();
    }
    make_tree(&root.join("z"), 0);
    fs::remove_dir(root.join("z/a_filler")).unwrap();
    fs::rename(root.join("z/z_data"), root.join("z_data")).unwrap();
    fs::remove_dir(root.join("z")).unwrap();
    fs::write(root.join("z_big.bin"), rng.bytes(12 * MIB as usize)).unwrap();
}

/// The end-to-end ext4 disk (built once per test process, copied for each test): mke2fs -d
/// from `e2e_tree` into the partition, the filler deleted (and its blocks punched out of the
/// file, so copies stay small), the filesystem marked as mounted after its last check.
fn ext4_disk(dir: &Path) -> Option<(PathBuf, &'static Path)> {
    static BASE: std::sync::OnceLock<Option<(PathBuf, PathBuf)>> = std::sync::OnceLock::new();
    let base = BASE.get_or_init(|| {
        if !ext_tools()
            || !require_tools(&[
                ("sgdisk", "gdisk"),
                ("sfdisk", "fdisk"),
                ("blkid", "util-linux"),
            ])
        {
            return None;
        }
        let tmp = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
        // bases of earlier runs whose process is gone
        for e in fs::read_dir(&tmp).into_iter().flatten().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some(pid) = name.strip_prefix("shrink-e2e-base-") {
                if !Path::new("/proc").join(pid).exists() {
                    let _ = fs::remove_dir_all(e.path());
                }
            }
        }
        let root = tmp.join(format!("shrink-e2e-base-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        let tree = root.join("tree");
        e2e_tree(&tree);
        let img = root.join("base.raw");
        mbr_disk(&img, 0x83, DISK_BYTES);
        let fs_kib = (DISK_BYTES - PART_OFFSET) / 1024;
        ok(
            "mke2fs",
            &[
                "-q".as_ref(),
                "-F".as_ref(),
                "-t".as_ref(),
                "ext4".as_ref(),
                "-b".as_ref(),
                "4096".as_ref(),
                "-L".as_ref(),
                "e2eroot".as_ref(),
                "-E".as_ref(),
                format!("offset={PART_OFFSET}").as_ref(),
                "-d".as_ref(),
                tree.as_os_str(),
                img.as_os_str(),
                format!("{fs_kib}k").as_ref(),
            ],
        );
        // the filler's extents, then its deletion
        let mut cmds = String::new();
        let mut rm = String::new();
        for i in 0..FILLER_FILES {
            cmds.push_str(&format!("blocks a_filler/f{i:02}\n"));
            rm.push_str(&format!("rm a_filler/f{i:02}\n"));
        }
        let cmdfile = root.join("blocks.cmds");
        fs::write(&cmdfile, &cmds).unwrap();
        let out = ok(
            "debugfs",
            &["-f".as_ref(), cmdfile.as_os_str(), dev(&img).as_os_str()],
        );
        let blocks: Vec<u64> = out
            .split_whitespace()
            .filter_map(|w| w.parse::<u64>().ok())
            .collect();
        assert!(
            blocks.len() >= FILLER_FILES * 2048,
            "debugfs blocks: {} blocks",
            blocks.len()
        );
        rm.push_str("rmdir a_filler\nssv mtime 20300101\n");
        fs::write(&cmdfile, rm).unwrap();
        ok(
            "debugfs",
            &[
                "-w".as_ref(),
                "-f".as_ref(),
                cmdfile.as_os_str(),
                dev(&img).as_os_str(),
            ],
        );
        let f = fs::OpenOptions::new().write(true).open(&img).unwrap();
        for b in blocks {
            rustix::fs::fallocate(
                &f,
                rustix::fs::FallocateFlags::PUNCH_HOLE | rustix::fs::FallocateFlags::KEEP_SIZE,
                PART_OFFSET + b * 4096,
                4096,
            )
            .unwrap();
        }
        drop(f);
        e2fsck_clean(&img);
        // the data lies past where the shrunk partition will end (before the 100 MiB ESP)
        let high = highest_data_block(&img);
        assert!(
            PART_OFFSET + high * 4096 > DISK_BYTES - 101 * MIB,
            "data ends at block {high}: the shrink would move nothing"
        );
        Some((img, tree))
    });
    let (img, tree) = base.as_ref()?;
    let copy = dir.join("disk.raw");
    let run = run_with_timeout(
        tool("cp").arg("--sparse=always").arg(img).arg(&copy),
        TOOL_TIMEOUT,
    );
    assert_eq!(run.code, Some(0), "cp: {}", run.stderr);
    Some((copy, tree.as_path()))
}

fn vt(args: &[&std::ffi::OsStr]) -> common::Run {
    common::vhdtool_timeout(args, VHDTOOL_TIMEOUT)
}

fn os(s: &str) -> &std::ffi::OsStr {
    s.as_ref()
}

/// The run exited 0; its stdout and stderr otherwise.
fn assert_ok(run: &common::Run) {
    assert!(
        run.code == Some(0) && !run.timed_out,
        "{}: exit {:?}\nstdout:\n{}\nstderr:\n{}",
        run.command,
        run.code,
        run.stdout,
        run.stderr
    );
}

/// `sfdisk --json`: (type or GUID, start LBA, sectors) of each partition, and the last usable
/// LBA of a GPT.
fn partitions(img: &Path) -> (Vec<(String, u64, u64)>, Option<u64>) {
    let out = ok("sfdisk", &["--json".as_ref(), img.as_os_str()]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let t = &v["partitiontable"];
    let parts = t["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["type"].as_str().unwrap_or_default().to_uppercase(),
                p["start"].as_u64().unwrap(),
                p["size"].as_u64().unwrap(),
            )
        })
        .collect();
    (parts, t["lastlba"].as_u64())
}

/// What every shrunk ext4 disk must show: same size, `sgdisk -v` clean, partition 1 shrunk and
/// ending right before the ESP, which starts on a 1 MiB boundary; the backup GPT in the last
/// sector; e2fsck clean on the partition; the filesystem inside the partition; every file.
fn check_shrunk_ext4(img: &Path, tree: &Path, work: &Path) {
    assert_eq!(
        fs::metadata(img).unwrap().len(),
        DISK_BYTES,
        "the disk size changed"
    );
    let v = ok("sgdisk", &["-v".as_ref(), img.as_os_str()]);
    assert!(v.contains("No problems found"), "sgdisk -v:\n{v}");
    let (parts, last_lba) = partitions(img);
    assert_eq!(parts.len(), 2, "{parts:?}");
    let (_, start, sectors) = parts[0];
    assert_eq!(start, 2048);
    assert!(
        sectors < (DISK_BYTES - PART_OFFSET) / SECTOR,
        "partition 1 not shrunk: {parts:?}"
    );
    let (ty, esp_start, esp_sectors) = &parts[1];
    assert_eq!(ty, ESP_TYPE, "{parts:?}");
    assert_eq!(
        *esp_start,
        start + sectors,
        "the ESP is not right after partition 1"
    );
    assert_eq!(esp_start % 2048, 0, "the ESP is not on a 1 MiB boundary");
    assert!(esp_start + esp_sectors - 1 <= last_lba.unwrap());
    let tail = fs::read(img).unwrap();
    let last = &tail[(DISK_BYTES - SECTOR) as usize..];
    assert_eq!(
        &last[..8],
        b"EFI PART",
        "no backup GPT header in the last sector"
    );
    e2fsck_clean(img);
    let (blocks, bsize) = dumpe2fs(img);
    assert!(
        blocks * bsize <= sectors * SECTOR,
        "the filesystem overruns its partition"
    );
    let out = work.join("rdump");
    let _ = fs::remove_dir_all(&out);
    fs::create_dir_all(&out).unwrap();
    for what in ["z_data", "z_big.bin"] {
        ok(
            "debugfs",
            &[
                "-R".as_ref(),
                format!("rdump {what} {}", out.display()).as_ref(),
                dev(img).as_os_str(),
            ],
        );
    }
    let files = same_tree(&tree.join("z_data"), &out.join("z_data"));
    assert!(files > 290, "{files} files compared");
    assert!(fs::read(tree.join("z_big.bin")).unwrap() == fs::read(out.join("z_big.bin")).unwrap());
}

/// The journal, and the files an older vhdtool or a killed run left beside it (resize2fs's undo
/// file and saved superblock, the overlay resize2fs runs on): only the journal may exist.
fn journal_files(img: &Path) -> Vec<PathBuf> {
    let j = PathBuf::from(format!("{}.vhdtool-journal", img.display()));
    let u = PathBuf::from(format!("{}.e2undo", j.display()));
    let sb = PathBuf::from(format!("{}.sb", u.display()));
    let overlay = vhdtool::convert::journal::overlay::overlay_path(img);
    vec![j, u, sb, overlay]
}

#[test]
fn convert_shrink_in_place_then_rollback_gives_back_the_original() {
    let tmp = TempDir::new("e2e-inplace");
    let Some((img, tree)) = ext4_disk(tmp.path()) else {
        return;
    };
    let original = fs::read(&img).unwrap();
    let run = vt(&[
        os("convert"),
        img.as_os_str(),
        os("--room"),
        os("shrink"),
        os("--no-boot-files"),
    ]);
    assert_ok(&run);
    eprintln!("{}", run.stdout);
    check_shrunk_ext4(&img, tree, tmp.path());
    // the journal alone is there for rollback: resize2fs ran on an overlay, now removed
    let files = journal_files(&img);
    assert!(
        files[0].exists(),
        "{} missing after convert",
        files[0].display()
    );
    for f in &files[1..] {
        assert!(!f.exists(), "{} left after convert", f.display());
    }
    let run = vt(&[os("rollback"), img.as_os_str()]);
    assert_ok(&run);
    let restored = fs::read(&img).unwrap();
    assert_eq!(
        first_difference(&original, &restored),
        None,
        "rollback left a difference"
    );
    for f in journal_files(&img) {
        assert!(!f.exists(), "{} left after rollback", f.display());
    }
}

#[test]
fn convert_shrink_to_output_leaves_the_input_alone() {
    let tmp = TempDir::new("e2e-output");
    let Some((img, tree)) = ext4_disk(tmp.path()) else {
        return;
    };
    let crc = crc32fast::hash(&fs::read(&img).unwrap());
    let out = tmp.path().join("gen2.raw");
    let run = vt(&[
        os("convert"),
        img.as_os_str(),
        os("-o"),
        out.as_os_str(),
        os("--room"),
        os("shrink"),
        os("--no-boot-files"),
    ]);
    assert_ok(&run);
    check_shrunk_ext4(&out, tree, tmp.path());
    assert_eq!(
        crc32fast::hash(&fs::read(&img).unwrap()),
        crc,
        "the input changed"
    );
    e2fsck_clean(&img);
    let leftovers: Vec<_> = fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("journal") || n.contains("e2undo"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn room_auto_picks_shrink_when_there_is_no_free_space_and_says_why() {
    let tmp = TempDir::new("e2e-auto");
    let Some((img, _)) = ext4_disk(tmp.path()) else {
        return;
    };
    let crc = crc32fast::hash(&fs::read(&img).unwrap());
    let run = vt(&[
        os("convert"),
        img.as_os_str(),
        os("--dry-run"),
        os("--no-boot-files"),
        os("--room"),
        os("auto"),
        os("--json"),
    ]);
    assert_ok(&run);
    let v: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    let text = v.to_string();
    assert!(text.contains("shrink partition 1 (ext4)"), "{text}");
    assert!(text.contains("free space does not do"), "{text}");
    assert!(text.contains("resize2fs -P"), "{text}");
    assert_eq!(
        crc32fast::hash(&fs::read(&img).unwrap()),
        crc,
        "a dry run wrote"
    );
}

#[test]
fn missing_e2fsprogs_is_refused_with_the_install_command() {
    let tmp = TempDir::new("e2e-notools");
    let Some((img, _)) = ext4_disk(tmp.path()) else {
        return;
    };
    let crc = crc32fast::hash(&fs::read(&img).unwrap());
    let empty = tmp.path().join("empty-bin");
    fs::create_dir_all(&empty).unwrap();
    for room in ["shrink", "auto"] {
        let mut cmd = std::process::Command::new(common::bin());
        cmd.args([
            os("convert"),
            img.as_os_str(),
            os("--room"),
            os(room),
            os("--no-grow"),
        ])
        .arg("--no-boot-files")
        .env("PATH", &empty);
        let run = run_with_timeout(&mut cmd, VHDTOOL_TIMEOUT);
        let all = format!("{}{}", run.stdout, run.stderr);
        assert!(
            run.code != Some(0),
            "{}: succeeded without e2fsprogs\n{all}",
            run.command
        );
        assert!(
            all.contains("apt-get install e2fsprogs"),
            "--room {room}:\n{all}"
        );
        assert!(
            all.contains("e2fsck, resize2fs, e2undo"),
            "--room {room}:\n{all}"
        );
    }
    assert_eq!(
        crc32fast::hash(&fs::read(&img).unwrap()),
        crc,
        "the image changed"
    );
    assert!(journal_files(&img).iter().all(|f| !f.exists()));
}

/// A fault after every possible number of writes, then rollback: byte for byte the original.
#[test]
fn fault_after_every_write_then_rollback_is_byte_identical() {
    let tmp = TempDir::new("e2e-faults");
    let Some((img, _)) = ext4_disk(tmp.path()) else {
        return;
    };
    let original_crc = crc32fast::hash(&fs::read(&img).unwrap());
    let mut n = 0;
    loop {
        let run = run_with_timeout(
            shrink_cmd(&img).env("VHDTOOL_FAULT_AFTER_WRITES", n.to_string()),
            VHDTOOL_TIMEOUT,
        );
        let finished = run.code == Some(0);
        if !finished {
            assert!(
                run.stderr.contains("fault") || run.stdout.contains("fault"),
                "N={n}: failed, but not by the injected fault:\n{}\n{}",
                run.stdout,
                run.stderr
            );
        }
        let rb = vt(&[os("rollback"), img.as_os_str()]);
        assert_ok(&rb);
        assert_eq!(
            crc32fast::hash(&fs::read(&img).unwrap()),
            original_crc,
            "N={n}: rollback did not give back the original"
        );
        for f in journal_files(&img) {
            assert!(!f.exists(), "N={n}: {} left after rollback", f.display());
        }
        if finished {
            eprintln!("the conversion completes with {n} writes allowed");
            assert!(n >= 3, "too few writes: the fault injection is not reached");
            break;
        }
        n += 1;
        assert!(n < 200, "the conversion never finishes");
    }
}

// ---------------------------------------------------------------------------------------------
// swap as the last partition, and the refusals
// ---------------------------------------------------------------------------------------------

/// A disk of `disk_bytes` whose partition is made by `make` (called with the disk and the
/// partition's first LBA and length in sectors; `IMAGE?offset=` does not reach every tool).
fn disk_with(dir: &Path, mbr_type: u8, disk_bytes: u64, make: impl FnOnce(&Path, u64)) -> PathBuf {
    let part = dir.join("part.img");
    let f = fs::File::create(&part).unwrap();
    f.set_len(disk_bytes - PART_OFFSET).unwrap();
    drop(f);
    make(&part, (disk_bytes - PART_OFFSET) / SECTOR);
    let img = dir.join("disk.raw");
    mbr_disk(&img, mbr_type, disk_bytes);
    let run = run_with_timeout(
        tool("dd")
            .arg(format!("if={}", part.display()))
            .arg(format!("of={}", img.display()))
            .args([
                "bs=1M",
                "oflag=seek_bytes",
                "conv=notrunc,sparse",
                "status=none",
            ])
            .arg(format!("seek={PART_OFFSET}")),
        TOOL_TIMEOUT,
    );
    assert_eq!(run.code, Some(0), "dd: {}", run.stderr);
    fs::remove_file(&part).unwrap();
    img
}

/// Run one of testdata/make-images.sh's crafting functions (`fs_lvm2`, `fs_bitlocker`) on a
/// partition file: `FUNC FILE 0 SECTORS ARGS...`.
fn generator_fn(func: &str, part: &Path, sectors: u64, args: &[&str]) {
    let script = common::repo_root().join("testdata/make-images.sh");
    let body = format!("source <(sed -n '/^{func}() {{/,/^}}/p' \"$0\") && {func} \"$@\"",);
    let run = run_with_timeout(
        std::process::Command::new("bash")
            .arg("-c")
            .arg(body)
            .arg(&script)
            .arg(part)
            .arg("0")
            .arg(sectors.to_string())
            .args(args),
        TOOL_TIMEOUT,
    );
    assert_eq!(run.code, Some(0), "{func}: {}\n{}", run.stdout, run.stderr);
}

/// The partition at PART_OFFSET of `img`, `sectors` long, extracted to `out`.
fn extract(img: &Path, sectors: u64, out: &Path) {
    let bytes = fs::read(img).unwrap();
    let start = PART_OFFSET as usize;
    fs::write(out, &bytes[start..start + (sectors * SECTOR) as usize]).unwrap();
}

#[test]
fn swap_last_partition_is_recreated_smaller_with_its_uuid_and_label() {
    if !require_tools(&[
        ("mkswap", "util-linux"),
        ("swaplabel", "util-linux"),
        ("blkid", "util-linux"),
        ("sgdisk", "gdisk"),
        ("sfdisk", "fdisk"),
    ]) {
        return;
    }
    let tmp = TempDir::new("e2e-swap");
    let img = disk_with(tmp.path(), 0x82, DISK_BYTES, |p, _| {
        ok(
            "mkswap",
            &[
                "-U".as_ref(),
                SWAP_UUID.as_ref(),
                "-L".as_ref(),
                SWAP_LABEL.as_ref(),
                p.as_os_str(),
            ],
        );
    });
    let run = vt(&[
        os("convert"),
        img.as_os_str(),
        os("--room"),
        os("shrink"),
        os("--no-boot-files"),
    ]);
    assert_ok(&run);
    assert_eq!(fs::metadata(&img).unwrap().len(), DISK_BYTES);
    let v = ok("sgdisk", &["-v".as_ref(), img.as_os_str()]);
    assert!(v.contains("No problems found"), "sgdisk -v:\n{v}");
    let (parts, _) = partitions(&img);
    let (_, start, sectors) = parts[0];
    assert_eq!((start, parts[1].1), (2048, 2048 + sectors), "{parts:?}");
    assert!(sectors < (DISK_BYTES - PART_OFFSET) / SECTOR);
    let part = tmp.path().join("swap.part");
    extract(&img, sectors, &part);
    let out = ok(
        "blkid",
        &[
            "-p".as_ref(),
            "-o".as_ref(),
            "export".as_ref(),
            part.as_os_str(),
        ],
    );
    for want in [
        "TYPE=swap",
        &format!("UUID={SWAP_UUID}"),
        &format!("LABEL={SWAP_LABEL}"),
    ] {
        assert!(out.lines().any(|l| l == want), "blkid -p: no {want}\n{out}");
    }
    let out = ok("swaplabel", &[part.as_os_str()]);
    assert!(
        out.contains(SWAP_UUID) && out.contains(SWAP_LABEL),
        "swaplabel:\n{out}"
    );
    // the header's size is the new partition's: mkswap's header for that size is the same
    let reference = tmp.path().join("ref.swap");
    mkswap(&reference, sectors * SECTOR, 4096);
    let ours = fs::read(&part).unwrap();
    let theirs = fs::read(&reference).unwrap();
    assert_eq!(
        first_difference(&ours[..4096], &theirs[..4096]),
        None,
        "header differs from mkswap's"
    );
}

/// `convert --room shrink` is refused with `reason` and the `--room grow` alternative, before
/// any write.
fn assert_refused(img: &Path, reason: &str) {
    let crc = crc32fast::hash(&fs::read(img).unwrap());
    let run = vt(&[
        os("convert"),
        img.as_os_str(),
        os("--room"),
        os("shrink"),
        os("--no-boot-files"),
    ]);
    let all = format!("{}{}", run.stdout, run.stderr);
    assert!(
        run.code != Some(0) && !run.timed_out,
        "{}: not refused\n{all}",
        run.command
    );
    assert!(
        all.contains(reason),
        "{}: no {reason:?}\n{all}",
        img.display()
    );
    assert!(
        all.contains("--room grow"),
        "{}: no alternative\n{all}",
        img.display()
    );
    assert_eq!(
        crc32fast::hash(&fs::read(img).unwrap()),
        crc,
        "{}: changed",
        img.display()
    );
    assert!(journal_files(img).iter().all(|f| !f.exists()));
}

#[test]
fn xfs_is_refused_and_auto_grows_unless_no_grow() {
    if !require_tools(&[("mkfs.xfs", "xfsprogs")]) {
        return;
    }
    let tmp = TempDir::new("e2e-xfs");
    let img = disk_with(tmp.path(), 0x83, 400 * MIB, |p, _| {
        ok("mkfs.xfs", &["-q".as_ref(), "-f".as_ref(), p.as_os_str()]);
    });
    assert_refused(&img, "XFS cannot shrink");
    let crc = crc32fast::hash(&fs::read(&img).unwrap());
    // auto: no free space, no shrink: grow, saying why
    let run = vt(&[
        os("convert"),
        img.as_os_str(),
        os("--dry-run"),
        os("--no-boot-files"),
        os("--json"),
    ]);
    assert_ok(&run);
    assert!(run.stdout.contains("grow the disk"), "{}", run.stdout);
    assert!(run.stdout.contains("XFS cannot shrink"), "{}", run.stdout);
    // --no-grow: refused
    let run = vt(&[
        os("convert"),
        img.as_os_str(),
        os("--no-grow"),
        os("--no-boot-files"),
    ]);
    let all = format!("{}{}", run.stdout, run.stderr);
    assert!(run.code != Some(0), "--no-grow: not refused\n{all}");
    assert!(
        all.contains("--no-grow") && all.contains("XFS cannot shrink"),
        "{all}"
    );
    assert_eq!(crc32fast::hash(&fs::read(&img).unwrap()), crc);
}

#[test]
fn btrfs_luks_and_unknown_contents_are_refused() {
    if !require_tools(&[
        ("mkfs.btrfs", "btrfs-progs"),
        ("cryptsetup", "cryptsetup-bin"),
    ]) {
        return;
    }
    let tmp = TempDir::new("e2e-refuse");
    let btrfs = tmp.path().join("btrfs");
    fs::create_dir_all(&btrfs).unwrap();
    let img = disk_with(&btrfs, 0x83, DISK_BYTES, |p, _| {
        ok("mkfs.btrfs", &["-q".as_ref(), "-f".as_ref(), p.as_os_str()]);
    });
    assert_refused(&img, "btrfs shrinks only while mounted");

    let luks = tmp.path().join("luks");
    fs::create_dir_all(&luks).unwrap();
    let key = luks.join("key");
    fs::write(&key, b"not a secret").unwrap();
    let img = disk_with(&luks, 0x83, DISK_BYTES, |p, _| {
        ok(
            "cryptsetup",
            &[
                "luksFormat",
                "-q",
                "--batch-mode",
                "--type",
                "luks2",
                "--pbkdf",
                "pbkdf2",
                "--pbkdf-force-iterations",
                "1000",
                "--key-file",
            ]
            .map(std::ffi::OsStr::new)
            .iter()
            .copied()
            .chain([key.as_os_str(), p.as_os_str()])
            .collect::<Vec<_>>(),
        );
    });
    assert_refused(&img, "LUKS-encrypted");

    let unknown = tmp.path().join("unknown");
    fs::create_dir_all(&unknown).unwrap();
    let img = disk_with(&unknown, 0x83, DISK_BYTES, |p, _| {
        let f = fs::OpenOptions::new().write(true).open(p).unwrap();
        std::os::unix::fs::FileExt::write_all_at(&f, &Rng(3).bytes(4 * MIB as usize), 0).unwrap();
    });
    assert_refused(&img, "not recognised");
}

/// An LVM2 PV and a BitLocker volume, crafted by testdata/make-images.sh's own functions (no
/// tool creates them on a file), as the last partition to the end of the disk.
#[test]
fn lvm_and_bitlocker_are_refused() {
    if !require_tools(&[("python3", "python3"), ("bash", "bash")]) {
        return;
    }
    let tmp = TempDir::new("e2e-refuse-gen");
    let lvm = tmp.path().join("lvm");
    fs::create_dir_all(&lvm).unwrap();
    let img = disk_with(&lvm, 0x8e, DISK_BYTES, |p, sectors| {
        generator_fn("fs_lvm2", p, sectors, &["Abc123DefGhiJklMnoPqrStuVwxYz456"]);
    });
    assert_refused(&img, "pvresize");
    let bde = tmp.path().join("bitlocker");
    fs::create_dir_all(&bde).unwrap();
    let img = disk_with(&bde, 0x07, DISK_BYTES, |p, sectors| {
        generator_fn(
            "fs_bitlocker",
            p,
            sectors,
            &[
                "66666666-0004-4000-8000-000000000004",
                "TESTPC C: 2026-11-23",
            ],
        );
    });
    assert_refused(&img, "BitLocker");
}

// ---------------------------------------------------------------------------------------------
// resize2fs killed: every write of it, an orphan outliving vhdtool, the same bytes twice
// ---------------------------------------------------------------------------------------------

/// A `resize2fs` in a directory put first on PATH: for the shrink itself (`-f`), it runs the
/// real one under `strace` with `body`'s injection; `-P` goes straight through. `$PPID` is
/// vhdtool (the `sh -c exec` in shrink/ext4.rs execs this script).
fn resize2fs_wrapper(dir: &Path, tag: &str, body: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let real = common::tool_path("resize2fs").expect("resize2fs");
    let bin = dir.join(format!("wrap-{tag}"));
    fs::create_dir_all(&bin).unwrap();
    let script = bin.join("resize2fs");
    fs::write(
        &script,
        format!(
            "#!/bin/sh\nREAL='{}'\nif [ \"$1\" != \"-f\" ]; then exec \"$REAL\" \"$@\"; fi\n{body}\n",
            real.display()
        ),
    )
    .unwrap();
    fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
    bin
}

fn path_with(bin: &Path) -> std::ffi::OsString {
    let mut p = bin.as_os_str().to_os_string();
    p.push(":");
    p.push(std::env::var_os("PATH").unwrap_or_default());
    p
}

/// The system calls by which resize2fs changes a file (or makes a change durable).
const WRITE_CALLS: &str = "write,pwrite64,pwritev,pwritev2,fallocate,ftruncate,fsync,fdatasync";

/// Which kill points a sweep of `total` writes visits: all of them when VHDTOOL_FULL_SWEEP=1
/// or when there are at most 60; else the first and last 20 and every (total / 20)th between.
fn sweep_points(total: u64) -> Vec<u64> {
    let full = std::env::var_os("VHDTOOL_FULL_SWEEP").is_some_and(|v| v == "1");
    if full || total <= 60 {
        return (1..=total).collect();
    }
    let stride = (total / 20).max(1);
    (1..=total)
        .filter(|&n| n <= 20 || n + 20 > total || n % stride == 0)
        .collect()
}

/// `vhdtool convert IMG --room shrink --no-boot-files`, to be run.
fn shrink_cmd(img: &Path) -> std::process::Command {
    let mut cmd = std::process::Command::new(common::bin());
    cmd.args([
        os("convert"),
        img.as_os_str(),
        os("--room"),
        os("shrink"),
        os("--no-boot-files"),
    ]);
    cmd
}

/// A shrinking conversion that completes, then `rollback`: the original again.
fn shrink_and_roll_back(img: &Path, original: &[u8]) {
    assert_ok(&run_with_timeout(&mut shrink_cmd(img), VHDTOOL_TIMEOUT));
    assert_ok(&vt(&[os("rollback"), img.as_os_str()]));
    assert!(
        fs::read(img).unwrap() == original,
        "rollback after a conversion"
    );
}

/// The image of a kill sweep and its original bytes, when the tools are there.
fn sweep_image(tag: &str) -> Option<(TempDir, PathBuf, Vec<u8>)> {
    let tmp = TempDir::new(tag);
    let (img, _) = ext4_disk(tmp.path())?;
    if !require_tools(&[("strace", "strace")]) {
        return None;
    }
    let original = fs::read(&img).unwrap();
    Some((tmp, img, original))
}

/// Calls in `strace -o FILE` output, per name among `calls` (comma-separated).
fn count_calls(file: &Path, calls: &str) -> std::collections::BTreeMap<String, u64> {
    let mut counts: std::collections::BTreeMap<String, u64> = Default::default();
    for line in fs::read_to_string(file).unwrap().lines() {
        // "[PID] name(args) = result" (strace -f writes the PID first)
        let name = line
            .split('(')
            .next()
            .and_then(|h| h.split_whitespace().last())
            .unwrap_or("");
        if calls.split(',').any(|c| c == name) {
            *counts.entry(name.to_string()).or_default() += 1;
        }
    }
    counts
}

/// One kill per point of [`sweep_points`] of each call in `counts` (`kill(call, n)` runs the
/// conversion killed at the nth such call); after each, `rollback` when a journal was left, and
/// the image must be the original. Returns the points tried and those that left a journal.
fn sweep(
    img: &Path,
    original: &[u8],
    counts: &std::collections::BTreeMap<String, u64>,
    mut kill: impl FnMut(&str, u64) -> common::Run,
) -> (u64, u64) {
    let (mut tried, mut with_journal) = (0, 0);
    for (call, &count) in counts {
        for n in sweep_points(count) {
            tried += 1;
            let run = kill(call, n);
            assert!(!run.timed_out, "{call} #{n}: hung");
            assert_eq!(run.code, None, "{call} #{n}: not killed: {}", run.stderr);
            if journal_files(img)[0].exists() {
                with_journal += 1;
                assert_ok(&vt(&[os("rollback"), img.as_os_str()]));
            }
            assert!(
                fs::read(img).unwrap() == original,
                "{call} #{n}: the image is not the original after the kill (and rollback)"
            );
        }
    }
    (tried, with_journal)
}

/// Item 1 of issue 15: vhdtool killed at every write resize2fs makes (`strace -e inject` sends
/// SIGKILL to resize2fs at its Nth write call, the wrapper then SIGKILLs vhdtool): `rollback`
/// (when a journal exists) gives back the original byte for byte, and the next conversion
/// works. resize2fs runs on an overlay, so the image itself must be untouched.
#[test]
fn killed_at_every_resize2fs_write_rollback_restores_the_original() {
    let Some((tmp, img, original)) = sweep_image("e2e-kill-resize2fs") else {
        return;
    };
    let count_file = tmp.path().join("writes.txt");
    let count_bin = resize2fs_wrapper(
        tmp.path(),
        "count",
        &format!(
            "exec strace -f -qq -o '{}' -e trace={WRITE_CALLS} \"$REAL\" \"$@\"",
            count_file.display()
        ),
    );
    let convert = |path: &std::ffi::OsStr, env: &[(&str, String)]| {
        let mut cmd = shrink_cmd(&img);
        cmd.env("PATH", path);
        for (k, v) in env {
            cmd.env(k, v);
        }
        run_with_timeout(&mut cmd, VHDTOOL_TIMEOUT)
    };
    // the write calls resize2fs makes, per system call, on a run that completes
    let run = convert(&path_with(&count_bin), &[]);
    assert_ok(&run);
    let counts = count_calls(&count_file, WRITE_CALLS);
    let total: u64 = counts.values().sum();
    assert!(
        counts.get("pwrite64").copied().unwrap_or(0) >= 10,
        "resize2fs made {counts:?}: the shrink did not run"
    );
    assert_ok(&vt(&[os("rollback"), img.as_os_str()]));
    assert!(
        fs::read(&img).unwrap() == original,
        "rollback after the count run"
    );
    // strace counts each injected call separately: one sweep per call
    let kill_bin = resize2fs_wrapper(
        tmp.path(),
        "kill",
        "strace -f -qq -o /dev/null -e trace=$KILL_CALL -e inject=$KILL_CALL:signal=KILL:when=$KILL_AT \"$REAL\" \"$@\"\nrc=$?\nif [ $rc -eq 137 ]; then kill -KILL $PPID; fi\nexit $rc",
    );
    let (tried, with_journal) = sweep(&img, &original, &counts, |call, n| {
        convert(
            &path_with(&kill_bin),
            &[("KILL_AT", n.to_string()), ("KILL_CALL", call.to_string())],
        )
    });
    // the stale overlay of the last kill does not stop the next conversion
    let run = convert(&path_with(&count_bin), &[]);
    assert_ok(&run);
    for f in &journal_files(&img)[1..] {
        assert!(!f.exists(), "{} left after convert", f.display());
    }
    assert_ok(&vt(&[os("rollback"), img.as_os_str()]));
    assert!(fs::read(&img).unwrap() == original);
    eprintln!(
        "resize2fs write calls: {total} {counts:?}; kill points tried: {tried}, each killed \
         ({with_journal} with a journal); all restored"
    );
    assert!(tried > 0, "no kill point was reached");
}

/// Item 6 of issue 15: vhdtool killed while resize2fs runs, resize2fs living on (the wrapper
/// kills its parent, then runs the real resize2fs): an immediate `rollback` never reports a
/// restore of an image something is still writing, the image stays the original while and
/// after the orphan runs, and the next conversion works.
#[test]
fn an_orphaned_resize2fs_never_touches_the_image() {
    let tmp = TempDir::new("e2e-orphan");
    let Some((img, _)) = ext4_disk(tmp.path()) else {
        return;
    };
    let original = fs::read(&img).unwrap();
    let done = tmp.path().join("orphan.done");
    let bin = resize2fs_wrapper(
        tmp.path(),
        "orphan",
        &format!(
            "kill -KILL $PPID\nsleep 1\n\"$REAL\" \"$@\" >/dev/null 2>&1\ntouch '{}'",
            done.display()
        ),
    );
    let run = run_with_timeout(
        shrink_cmd(&img).env("PATH", path_with(&bin)),
        VHDTOOL_TIMEOUT,
    );
    assert_eq!(run.code, None, "vhdtool was not killed: {}", run.stderr);
    let rb = vt(&[os("rollback"), img.as_os_str()]);
    assert_ne!(rb.code, Some(101), "{}", rb.stderr);
    assert!(
        !rb.stdout.contains("restored"),
        "rollback reported a restore while resize2fs runs: {}",
        rb.stdout
    );
    assert!(
        fs::read(&img).unwrap() == original,
        "changed while the orphan runs"
    );
    let start = Instant::now();
    while !done.exists() {
        assert!(
            start.elapsed().as_secs() < 120,
            "the orphaned resize2fs never finished"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    assert!(fs::read(&img).unwrap() == original, "changed by the orphan");
    shrink_and_roll_back(&img, &original);
}

/// Item 17 of issue 15: two conversions of the same ext4 image with `--room shrink`, a second
/// apart, give the same bytes (e2fsprogs runs with E2FSPROGS_FAKE_TIME).
#[test]
fn two_shrinking_conversions_give_the_same_bytes() {
    let tmp = TempDir::new("e2e-same-bytes");
    let Some((img, _)) = ext4_disk(tmp.path()) else {
        return;
    };
    let mut outs = Vec::new();
    for i in 0..2 {
        let out = tmp.path().join(format!("out{i}.raw"));
        assert_ok(&vt(&[
            os("convert"),
            img.as_os_str(),
            os("-o"),
            out.as_os_str(),
            os("--room"),
            os("shrink"),
            os("--no-boot-files"),
        ]));
        outs.push(fs::read(&out).unwrap());
        std::thread::sleep(std::time::Duration::from_millis(1100));
    }
    assert_eq!(
        first_difference(&outs[0], &outs[1]),
        None,
        "two conversions of the same image differ"
    );
}

/// The system calls by which vhdtool changes a file or a directory.
const VHDTOOL_WRITE_CALLS: &str = "write,pwrite64,pwritev,copy_file_range,fallocate,ftruncate,fsync,fdatasync,rename,renameat,renameat2,unlink,unlinkat,setxattr,removexattr";

/// vhdtool killed at every one of its own write calls during an in-place `--room shrink`
/// (`strace -e inject=CALL:signal=KILL:when=N`, one sweep per call; resize2fs runs untraced):
/// `rollback` (when a journal was left) gives back the original byte for byte.
#[test]
fn killed_at_every_vhdtool_write_call_rollback_restores_the_original() {
    let Some((tmp, img, original)) = sweep_image("e2e-kill-vhdtool") else {
        return;
    };
    let traced = |strace_args: &[String]| {
        let mut cmd = std::process::Command::new("strace");
        cmd.args(strace_args).arg(common::bin()).args([
            os("convert"),
            img.as_os_str(),
            os("--room"),
            os("shrink"),
            os("--no-boot-files"),
        ]);
        run_with_timeout(&mut cmd, VHDTOOL_TIMEOUT)
    };
    let count_file = tmp.path().join("vhdtool-writes.txt");
    let run = traced(&[
        "-qq".into(),
        "-o".into(),
        count_file.display().to_string(),
        format!("-e trace={VHDTOOL_WRITE_CALLS}").replace(' ', ""),
    ]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let counts = count_calls(&count_file, VHDTOOL_WRITE_CALLS);
    assert!(
        counts.get("pwrite64").copied().unwrap_or(0) >= 3,
        "{counts:?}"
    );
    assert_ok(&vt(&[os("rollback"), img.as_os_str()]));
    assert!(fs::read(&img).unwrap() == original);
    let (tried, with_journal) = sweep(&img, &original, &counts, |call, n| {
        traced(&[
            "-qq".into(),
            "-o".into(),
            "/dev/null".into(),
            format!("-etrace={call}"),
            format!("-einject={call}:signal=KILL:when={n}"),
        ])
    });
    let total: u64 = counts.values().sum();
    eprintln!(
        "vhdtool write calls: {total} {counts:?}; kill points tried: {tried} ({with_journal} with a journal); all restored"
    );
    assert!(with_journal > 0, "no kill point came after the journal");
}
