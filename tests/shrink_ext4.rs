//! Shrinking the last partition: ext4 through e2fsprogs (`vhdtool::shrink::ext4`) and Linux
//! swap (`vhdtool::shrink::swap`), judged by independent tools: `e2fsck -fn`, `dumpe2fs`,
//! `debugfs rdump` (every file compared), `mkswap` (the header it writes for the new size),
//! `blkid -p` and `swaplabel`. Undo must give back the whole image byte for byte.

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
            data.join(format!("d{:02}", d - 1)).join(format!("sub{d:02}"))
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
    let mut names = |p: &Path| -> Vec<String> {
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
    a.iter().zip(b).position(|(x, y)| x != y).or_else(|| {
        (a.len() != b.len()).then_some(a.len().min(b.len()))
    })
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
    let report = ext4::shrink(&img, PART_OFFSET, new_bytes, &undo_file).unwrap();
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
    assert!(report.undo_file_bytes > 0 && report.superblock_file.exists());
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
    assert!(shrunk[end..] == original[end..], "bytes after the partition changed");
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
    assert_eq!(crc32fast::hash(&fs::read(img).unwrap()), crc, "the image changed");
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
    let e = ext4::shrink(&img, PART_OFFSET, MIB, &undo_file).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    assert!(e.message().contains("needs at least"), "{e}");
    assert!(e.message().contains("--room grow"), "{e}");
    assert_untouched(&img, crc, &undo_file);
    // not a shrink at all
    let e = ext4::shrink(&img, PART_OFFSET, 24 * MIB, &undo_file).unwrap_err();
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
    let e = ext4::shrink(&img, PART_OFFSET, 16 * MIB, &undo_file).unwrap_err();
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
    let e = ext4::shrink(&img, PART_OFFSET, 16 * MIB, &undo_file).unwrap_err();
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
    let e = ext4::shrink(&img, PART_OFFSET, 16 * MIB, &undo_file).unwrap_err();
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
    let out = ok("blkid", &["-p".as_ref(), "-o".as_ref(), "export".as_ref(), big.as_os_str()]);
    for want in ["TYPE=swap", &format!("UUID={SWAP_UUID}"), &format!("LABEL={SWAP_LABEL}")] {
        assert!(out.lines().any(|l| l == want), "blkid -p: no {want}\n{out}");
    }
    let out = ok("swaplabel", &[big.as_os_str()]);
    assert!(out.contains(SWAP_UUID) && out.contains(SWAP_LABEL), "swaplabel:\n{out}");
    if common::tool_path("file").is_some() {
        let out = ok("file", &["-s".as_ref(), big.as_os_str()]);
        let pages = new_bytes / page - 1;
        assert!(out.contains(&format!("size {pages} pages")), "file -s:\n{out}");
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
/// near its minimum; time and undo file size of each, and of the undo.
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
    for (name, new_bytes) in [("by 101 MiB", fs_bytes - 101 * MIB), ("to 160 MiB", 160 * MIB)] {
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
        let r = ext4::shrink(&img, PART_OFFSET, new_bytes, &undo_file).unwrap();
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
