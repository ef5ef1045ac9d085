//! `checksum`, `verify`, `diff` and `convert --verify`, judged by independent tools: Python's
//! `zlib.crc32` (per chunk and whole), `crc32` from libarchive-zip-perl, the `SEEK_DATA` /
//! `SEEK_HOLE` layout read by Python, and a plain sector-by-sector comparison in this file.
#![allow(clippy::restriction)] // tests: a panic is a failed test (the crate's panic lints are for src/)

mod common;

use std::fs::{self, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{require_tool, vhdtool, vhdtool_timeout, Run, TempDir};
use serde_json::Value;

/// What Python sees in a file: per-chunk CRCs and zero flags, the whole CRC, the holes
/// (SEEK_DATA/SEEK_HOLE), and the `page`-aligned pages holding a non-zero byte.
const ORACLE: &str = r#"
import json, os, sys, zlib
path, chunk, page = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
crcs, zeros, pages, whole = [], [], set(), 0
with open(path, 'rb') as f:
    off = 0
    while True:
        b = f.read(chunk)
        if not b:
            break
        crcs.append('%08x' % zlib.crc32(b))
        whole = zlib.crc32(b, whole)
        zeros.append(b.count(0) == len(b))
        if not zeros[-1]:
            for k in range(0, len(b), 512):
                if b[k:k + 512].count(0) != len(b[k:k + 512]):
                    pages.add((off + k) // page)
        off += len(b)
fd = os.open(path, os.O_RDONLY)
size = os.fstat(fd).st_size
holes, pos = [], 0
while pos < size:
    try:
        d = os.lseek(fd, pos, os.SEEK_DATA)
    except OSError:
        d = size
    if d > pos:
        holes.append({'offset': pos, 'length': d - pos})
    if d >= size:
        break
    pos = os.lseek(fd, d, os.SEEK_HOLE)
print(json.dumps({'size': size, 'whole': '%08x' % whole, 'crcs': crcs, 'zeros': zeros,
                  'holes': holes, 'pages': sorted(pages)}))
"#;

/// CRC32 of `size` bytes: zeros, then DATA (hex) at AT, then zeros; zero runs by zlib's
/// `crc32_combine` (GF(2) matrices), so nothing of the size of the file is hashed.
const ZERO_COMBINE: &str = r#"
import sys, zlib
def times(mat, vec):
    s, i = 0, 0
    while vec:
        if vec & 1:
            s ^= mat[i]
        vec >>= 1
        i += 1
    return s
def square(mat):
    return [times(mat, mat[n]) for n in range(32)]
def combine(crc1, crc2, len2):
    if len2 == 0:
        return crc1
    odd = [0xedb88320] + [1 << n for n in range(31)]
    even = square(odd)
    odd = square(even)
    while True:
        even = square(odd)
        if len2 & 1:
            crc1 = times(even, crc1)
        len2 >>= 1
        if not len2:
            break
        odd = square(even)
        if len2 & 1:
            crc1 = times(odd, crc1)
        len2 >>= 1
        if not len2:
            break
    return crc1 ^ crc2
def zeros(n):
    c, k = 0, 0
    for bit in reversed(range(n.bit_length())):
        c, k = combine(c, c, k), 2 * k
        if n >> bit & 1:
            c, k = combine(c, zlib.crc32(b'\0'), 1), k + 1
    return c
for n in (0, 1, 511, 4096, 1000003):
    assert zeros(n) == zlib.crc32(bytes(n)), n
size, at, data = int(sys.argv[1]), int(sys.argv[2]), bytes.fromhex(sys.argv[3])
c = zeros(at)
c = combine(c, zlib.crc32(data), len(data))
n = size - at - len(data)
c = combine(c, zeros(n), n)
print('%08x' % c)
"#;

fn oracle(path: &Path, chunk: u64, page: u64) -> Value {
    let out = common::tool("python3")
        .arg("-c")
        .arg(ORACLE)
        .arg(path)
        .arg(chunk.to_string())
        .arg(page.to_string())
        .output()
        .expect("run python3");
    assert!(
        out.status.success(),
        "python3 oracle: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("oracle JSON")
}

fn json_of(run: &Run) -> Value {
    serde_json::from_str(&run.stdout).unwrap_or_else(|e| {
        panic!(
            "{}: stdout is not JSON ({e})\nstdout:\n{}\nstderr:\n{}",
            run.command, run.stdout, run.stderr
        )
    })
}

/// `vhdtool ARGS`, asserted sane with exit `code` and nothing on stderr (no progress bar when
/// stderr is not a terminal), and its JSON.
fn run_json(args: &[&std::ffi::OsStr], code: i32) -> Value {
    let run = vhdtool(args);
    run.assert_sane();
    assert_eq!(run.exit_code(), code, "{}: {}", run.command, run.stderr);
    assert!(
        run.stderr.is_empty(),
        "{}: stderr: {}",
        run.command,
        run.stderr
    );
    json_of(&run)
}

fn os(s: &str) -> &std::ffi::OsStr {
    s.as_ref()
}

fn checksum_json(path: &Path, extra: &[&str]) -> Value {
    let mut args = vec![os("checksum"), os("--json"), path.as_os_str()];
    args.extend(extra.iter().map(|s| os(s)));
    run_json(&args, 0)
}

fn ranges(v: &Value) -> Vec<(u64, u64)> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|r| (r["offset"].as_u64().unwrap(), r["length"].as_u64().unwrap()))
        .collect()
}

/// Merge adjacent (offset, length) pieces.
fn merged(mut v: Vec<(u64, u64)>) -> Vec<(u64, u64)> {
    v.sort_unstable();
    let mut out: Vec<(u64, u64)> = Vec::new();
    for (o, l) in v {
        match out.last_mut() {
            Some(last) if last.0 + last.1 >= o => last.1 = (o + l).max(last.0 + last.1) - last.0,
            _ => out.push((o, l)),
        }
    }
    out
}

fn noise(seed: u64, n: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// A sparse file of `size` bytes with `data` islands of noise, `zeros` written as explicit
/// (allocated) zeros, and holes elsewhere.
fn sparse_file(path: &Path, size: u64, data: &[(u64, usize)], zeros: &[(u64, usize)]) {
    let f = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(path)
        .unwrap();
    f.set_len(size).unwrap();
    for (i, &(at, n)) in data.iter().enumerate() {
        f.write_all_at(&noise(i as u64 + 11, n), at).unwrap();
    }
    for &(at, n) in zeros {
        f.write_all_at(&vec![0; n], at).unwrap();
    }
    f.sync_all().unwrap();
}

/// Several files: random data of odd size, sparse with islands and explicit zeros, all zeros,
/// empty, and (when generated) VHD images.
fn sample_files(tmp: &TempDir) -> Vec<PathBuf> {
    let mut v = Vec::new();
    let odd = tmp.write("odd.bin", &noise(5, 3 * 1024 * 1024 + 777));
    v.push(odd);
    let sparse = tmp.path().join("sparse.img");
    sparse_file(
        &sparse,
        48 * 1024 * 1024 + 512,
        &[
            (0, 70_000),
            (5 << 20, 100_001),
            (20 << 20, 4096),
            (48 << 20, 512),
        ],
        &[(10 << 20, 1 << 20)],
    );
    v.push(sparse);
    let hole = tmp.path().join("all-hole.img");
    sparse_file(&hole, (16 << 20) + 1000, &[], &[]);
    v.push(hole);
    v.push(tmp.write("empty.bin", &[]));
    if let Some(images) = common::images() {
        for f in [
            "linux-mbr.force.vhd",
            "linux-odd.chs.vhd",
            "four-primary.dyn.vhd",
        ] {
            v.push(images.path(f));
        }
    }
    v
}

/// A manifest's `chunks` with the runs ("crc*N", version 2) written out, one CRC per chunk.
fn expand_runs(chunks: &serde_json::Value) -> serde_json::Value {
    let mut out = Vec::new();
    for e in chunks.as_array().unwrap() {
        let e = e.as_str().unwrap();
        let (crc, n) = e
            .split_once('*')
            .map_or((e, 1), |(c, n)| (c, n.parse().unwrap()));
        out.extend(std::iter::repeat_n(serde_json::Value::from(crc), n));
    }
    serde_json::Value::from(out)
}

#[test]
fn whole_and_chunk_crcs_equal_zlib_and_crc32() {
    if !require_tool("python3", "python3") {
        return;
    }
    let have_crc32 = require_tool("crc32", "libarchive-zip-perl");
    let tmp = TempDir::new("checksum-crc");
    for path in sample_files(&tmp) {
        let size = fs::metadata(&path).unwrap().len();
        for chunk in [512u64, 4096, 3 * 512, 1 << 20] {
            // 512-byte chunks of the larger images: keep the test quick
            if chunk == 512 && size > (64 << 20) {
                continue;
            }
            let want = oracle(&path, chunk, 4 << 20);
            let got = checksum_json(&path, &["--chunk", &chunk.to_string()]);
            let name = format!("{} chunk {chunk}", path.display());
            assert_eq!(got["whole_crc32"], want["whole"], "{name}");
            assert_eq!(expand_runs(&got["chunks"]), want["crcs"], "{name}");
            assert_eq!(got["chunk_bytes"].as_u64(), Some(chunk), "{name}");
            assert_eq!(got["image"]["file_bytes"].as_u64(), Some(size), "{name}");
            // all-zero ranges: Python's zero chunks, merged
            let zeros: Vec<(u64, u64)> = want["zeros"]
                .as_array()
                .unwrap()
                .iter()
                .enumerate()
                .filter(|(_, z)| z.as_bool() == Some(true))
                .map(|(i, _)| {
                    let o = i as u64 * chunk;
                    (o, chunk.min(size - o))
                })
                .collect();
            assert_eq!(ranges(&got["zero_ranges"]), merged(zeros), "{name}");
            // holes: exactly the SEEK_DATA/SEEK_HOLE layout
            assert_eq!(
                ranges(&got["hole_ranges"]),
                ranges(&want["holes"]),
                "{name}"
            );
        }
        if have_crc32 && size > 0 {
            let out = common::tool("crc32").arg(&path).output().unwrap();
            let text = String::from_utf8_lossy(&out.stdout);
            let theirs = text.split_whitespace().next().unwrap_or_default();
            let ours = checksum_json(&path, &[]);
            assert_eq!(
                ours["whole_crc32"].as_str(),
                Some(theirs),
                "{}: crc32 says {text}",
                path.display()
            );
        }
    }
}

#[test]
fn sparse_layout_is_reported_and_holes_are_not_read() {
    if !require_tool("python3", "python3") {
        return;
    }
    let tmp = TempDir::new("checksum-sparse");
    let path = tmp.path().join("layout.img");
    let size = 40u64 << 20;
    sparse_file(
        &path,
        size,
        &[(1 << 20, 3 << 20), (30 << 20, 1)],
        &[(8 << 20, 2 << 20)],
    );
    let got = checksum_json(&path, &[]);
    let want = oracle(&path, 1 << 20, 1 << 20);
    let holes = ranges(&got["hole_ranges"]);
    assert_eq!(holes, ranges(&want["holes"]));
    // the explicit zeros are data to the filesystem, zeros to the map
    assert!(
        !holes
            .iter()
            .any(|&(o, l)| o < (10 << 20) && o + l > (8 << 20)),
        "explicit zeros reported as a hole: {holes:?}"
    );
    assert_eq!(
        ranges(&got["zero_ranges"]),
        vec![(0, 1 << 20), (4 << 20, 26 << 20), (31 << 20, 9 << 20)]
    );

    // a 1 TiB hole: reading it would take minutes; arithmetic takes a blink
    let huge = tmp.path().join("huge.img");
    sparse_file(&huge, 1 << 40, &[(123 << 30, 4096)], &[]);
    let run = vhdtool_timeout(
        [
            os("checksum"),
            os("--json"),
            os("--chunk"),
            os("64M"),
            huge.as_os_str(),
        ],
        Duration::from_secs(30),
    );
    run.assert_sane();
    assert_eq!(run.exit_code(), 0, "{}", run.stderr);
    let got = json_of(&run);
    // independent: zlib.crc32 of the data, zeros combined in by zlib's GF(2) matrix method
    // (crc32_combine, in Python), checked against zlib.crc32 on small zero runs first
    let data = noise(11, 4096);
    let hex: String = data.iter().map(|b| format!("{b:02x}")).collect();
    let out = common::tool("python3")
        .args([
            "-c",
            ZERO_COMBINE,
            &(1u64 << 40).to_string(),
            &(123u64 << 30).to_string(),
            &hex,
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        got["whole_crc32"].as_str(),
        Some(String::from_utf8_lossy(&out.stdout).trim()),
        "1 TiB sparse file"
    );
    let holes = ranges(&got["hole_ranges"]);
    // holes are never read: the run finished within the 30 s deadline above, where reading
    // 1 TiB would take hours (the speed itself is measured in benches/checksum.rs)
    assert_eq!(holes.len(), 2, "{holes:?}");
}

#[test]
fn verify_finds_and_names_a_one_byte_change() {
    let Some(images) = common::images() else {
        return;
    };
    let tmp = TempDir::new("checksum-verify");
    let img = tmp.path().join("linux.vhd");
    fs::copy(images.path("linux-mbr.force.vhd"), &img).unwrap();
    let manifest = tmp.path().join("m.json");
    checksum_json(
        &img,
        &["--manifest", manifest.to_str().unwrap(), "--chunk", "64K"],
    );
    let verify = |code: i32| {
        run_json(
            &[
                os("verify"),
                img.as_os_str(),
                os("--manifest"),
                manifest.as_os_str(),
                os("--json"),
            ],
            code,
        )
    };
    let same = verify(0);
    assert_eq!(same["identical"], true);
    assert_eq!(same["changed"], Value::Array(vec![]));

    let len = fs::metadata(&img).unwrap().len();
    // inside the ext4 partition (it starts at 1 MiB), and in the VHD footer
    for (at, what) in [
        (5_000_123u64, "partition 1 (ext4)"),
        (len - 100, "VHD footer"),
    ] {
        fs::copy(images.path("linux-mbr.force.vhd"), &img).unwrap();
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&img)
            .unwrap();
        let mut b = [0u8];
        f.read_exact_at(&mut b, at).unwrap();
        f.write_all_at(&[b[0] ^ 0x40], at).unwrap();
        drop(f);
        let r = verify(1);
        assert_eq!(r["identical"], false);
        let changed = r["changed"].as_array().unwrap();
        assert_eq!(changed.len(), 1, "{r}");
        let (o, l) = (
            changed[0]["offset"].as_u64().unwrap(),
            changed[0]["length"].as_u64().unwrap(),
        );
        let chunk_start = at / 65536 * 65536;
        assert_eq!(o, chunk_start, "{r}");
        assert_eq!(l, 65536.min(len - chunk_start), "{r}");
        assert!(
            changed[0]["what"].as_str().unwrap().starts_with(what),
            "{at}: {r}"
        );
        assert_ne!(r["expected_crc32"], r["actual_crc32"]);
        // text form, exit 1
        let run = vhdtool([
            os("verify"),
            img.as_os_str(),
            os("--manifest"),
            manifest.as_os_str(),
        ]);
        assert_eq!(run.exit_code(), 1);
        assert!(run.stdout.contains(what), "{}", run.stdout);
    }

    // a hostile manifest is refused, not trusted
    let bad = tmp.write(
        "bad.json",
        br#"{"manifest":"vhdtool-checksum","version":1}"#,
    );
    let run = vhdtool([
        os("verify"),
        img.as_os_str(),
        os("--manifest"),
        bad.as_os_str(),
    ]);
    run.assert_sane();
    assert!(run.exit_code() >= 2, "{}", run.stdout);
}

/// Sectors where two files differ, the shorter one read as zero-extended, merged.
fn sector_diff(a: &Path, b: &Path) -> Vec<(u64, u64)> {
    let (x, y) = (fs::read(a).unwrap(), fs::read(b).unwrap());
    let n = x.len().max(y.len());
    let mut out = Vec::new();
    for at in (0..n).step_by(512) {
        let end = (at + 512).min(n);
        let piece = |v: &Vec<u8>| {
            let mut s = [0u8; 512];
            if at < v.len() {
                let e = end.min(v.len());
                s[..e - at].copy_from_slice(&v[at..e]);
            }
            s
        };
        if piece(&x) != piece(&y) {
            out.push((at as u64, (end - at) as u64));
        }
    }
    merged(out)
}

#[test]
fn diff_of_a_conversion_lists_exactly_the_planned_regions() {
    let Some(images) = common::images() else {
        return;
    };
    let tmp = TempDir::new("checksum-diff");
    let mut done = 0;
    for img in images.list.iter().filter(|i| {
        i.scheme == "mbr"
            && i.sector_bytes == 512
            && [
                "linux-mbr.raw",
                "four-primary.force.vhd",
                "ext-logicals.chs.vhd",
                "win-mbr.force.vhd",
                "linux-odd.chs.vhd",
            ]
            .contains(&i.file.as_str())
    }) {
        let input = images.path(&img.file);
        let out = tmp.path().join(format!("{}.gen2", img.file));
        let report = run_json(
            &[
                os("convert"),
                input.as_os_str(),
                os("-o"),
                out.as_os_str(),
                os("--no-boot-files"),
                os("--verify"),
                os("--json"),
            ],
            0,
        );
        assert_eq!(report["verified"]["ok"], true, "{}: {report}", img.file);
        assert_eq!(report["verified"]["unplanned"], Value::Array(vec![]));
        let planned: Vec<(u64, u64)> = ranges(&report["validation"]["plan"]["regions"]);
        let d = run_json(
            &[os("diff"), input.as_os_str(), out.as_os_str(), os("--json")],
            1,
        );
        let listed = merged(ranges(&d["changed"]));
        // exact: the sectors that differ, by a plain comparison
        assert_eq!(listed, sector_diff(&input, &out), "{}", img.file);
        // nothing outside the plan
        let inside = |o: u64, l: u64| planned.iter().any(|&(p, pl)| o >= p && o + l <= p + pl);
        for &(o, l) in &listed {
            let ok = (o..o + l)
                .step_by(512)
                .all(|s| inside(s, 512.min(o + l - s)));
            assert!(
                ok,
                "{}: {o:#x}+{l} is outside the plan {planned:?}",
                img.file
            );
        }
        // every planned region whose bytes changed is listed (and one that is listed changed)
        for (&(p, pl), r) in planned
            .iter()
            .zip(report["verified"]["regions"].as_array().unwrap())
        {
            let hit = listed.iter().any(|&(o, l)| o < p + pl && o + l > p);
            assert_eq!(
                hit,
                r["changed"].as_bool().unwrap(),
                "{}: region {p:#x}+{pl} {}",
                img.file,
                r["what"]
            );
        }
        // named by the new layout
        let names: Vec<&str> = d["changed"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["what"].as_str().unwrap())
            .collect();
        assert!(
            names
                .iter()
                .any(|n| n.starts_with("LBA 1-33: GPT header and entries")),
            "{}: {names:?}",
            img.file
        );
        assert!(
            names.iter().any(|n| n.contains("EFI system partition")),
            "{}: {names:?}",
            img.file
        );
        if img.form.is_vhd() {
            assert!(
                names.iter().any(|n| n.starts_with("VHD footer")),
                "{names:?}"
            );
        }
        // identical files
        run_json(
            &[os("diff"), out.as_os_str(), out.as_os_str(), os("--json")],
            0,
        );
        let _ = fs::remove_file(&out);
        done += 1;
    }
    assert_eq!(done, 5, "converted {done} images");
}

#[test]
fn convert_verify_in_place_reports_success() {
    let Some(images) = common::images() else {
        return;
    };
    let tmp = TempDir::new("checksum-inplace");
    for name in ["ext-logicals.force.vhd", "linux-mbr.raw"] {
        let img = tmp.path().join(name);
        fs::copy(images.path(name), &img).unwrap();
        let before = tmp.path().join(format!("{name}.before"));
        fs::copy(&img, &before).unwrap();
        let journal = tmp.path().join(format!("{name}.journal"));
        let run = vhdtool([
            os("convert"),
            img.as_os_str(),
            os("--no-boot-files"),
            os("--verify"),
            os("--journal"),
            journal.as_os_str(),
        ]);
        run.assert_sane();
        assert_eq!(run.exit_code(), 0, "{name}: {}{}", run.stdout, run.stderr);
        assert!(
            run.stdout
                .contains("verify: only the planned regions changed"),
            "{name}: {}",
            run.stdout
        );
        // the proof agrees with a plain comparison against the saved copy
        let d = run_json(
            &[
                os("diff"),
                before.as_os_str(),
                img.as_os_str(),
                os("--json"),
            ],
            1,
        );
        assert_eq!(
            merged(ranges(&d["changed"])),
            sector_diff(&before, &img),
            "{name}"
        );
    }
}

#[test]
fn upload_ranges_are_page_aligned_and_complete() {
    if !require_tool("python3", "python3") {
        return;
    }
    let tmp = TempDir::new("checksum-upload");
    let mut files = sample_files(&tmp);
    files.retain(|p| fs::metadata(p).unwrap().len() > 0);
    for path in files {
        let size = fs::metadata(&path).unwrap().len();
        for page in [65536u64, 4 << 20, 1536] {
            let got = checksum_json(&path, &["--upload-ranges", "--page", &page.to_string()]);
            let u = &got["upload"];
            let name = format!("{} page {page}", path.display());
            assert_eq!(u["page_bytes"].as_u64(), Some(page), "{name}");
            let rs = ranges(&u["ranges"]);
            let total: u64 = rs.iter().map(|r| r.1).sum();
            assert_eq!(u["total_bytes"].as_u64(), Some(total), "{name}");
            for &(o, l) in &rs {
                assert_eq!(o % page, 0, "{name}: {o}");
                assert!(l % page == 0 || o + l == size, "{name}: {o}+{l}");
            }
            // independent: the pages holding a non-zero byte (and the footer's for a VHD)
            let want = oracle(&path, 1 << 20, page);
            let mut pages: Vec<u64> = want["pages"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p.as_u64().unwrap())
                .collect();
            if got["image"]["unique_id"].is_string() {
                pages.push((size - 512) / page);
            }
            let expect = merged(
                pages
                    .into_iter()
                    .map(|p| (p * page, page.min(size - p * page)))
                    .collect(),
            );
            assert_eq!(rs, expect, "{name}");
        }
    }
}

/// Peak resident memory (KiB) of `vhdtool ARGS`, measured by GNU time; the run must succeed
/// with one of `codes`.
fn peak_rss_kib(args: &[&std::ffi::OsStr], codes: &[i32]) -> u64 {
    let mut cmd = std::process::Command::new("/usr/bin/time");
    cmd.args(["-f", "peak-rss-kib=%M"])
        .arg(common::bin())
        .args(args);
    let run = common::run_with_timeout(&mut cmd, Duration::from_secs(300));
    assert!(
        run.code.is_some_and(|c| codes.contains(&c)),
        "{args:?}: {:?}\n{}",
        run.code,
        run.stderr
    );
    run.stderr
        .lines()
        .find_map(|l| l.strip_prefix("peak-rss-kib="))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no peak RSS from time: {}", run.stderr))
}

/// Issue 15, item 14: memory stays bounded on a 127 GiB sparse image (holes are never read,
/// reads go through small per-thread buffers, never a mapping that counts in the RSS, and
/// runs of equal chunk CRCs are one manifest entry and one entry of the map in memory).
/// Before: `diff` 185 MB, `checksum --chunk 4096` 2.6 GB and a 532 MB manifest; then 282 MB
/// while the map held one sum per chunk.
#[test]
fn a_127_gib_sparse_image_is_checksummed_and_compared_in_bounded_memory() {
    if !require_tool("time", "time") || !std::path::Path::new("/usr/bin/time").exists() {
        return;
    }
    let tmp = TempDir::new("checksum-rss");
    let (a, b) = (tmp.path().join("a.raw"), tmp.path().join("b.raw"));
    for (p, at) in [(&a, 1_000_000u64), (&b, 5_000_000_000)] {
        let f = fs::File::create(p).unwrap();
        f.set_len(127 << 30).unwrap();
        f.write_all_at(b"data", at).unwrap();
    }
    let m = tmp.path().join("m.json");
    let m4k = tmp.path().join("m4k.json");
    let bound_kib = 64 << 10;
    for (args, codes) in [
        (
            vec!["diff".as_ref(), a.as_os_str(), b.as_os_str()],
            &[1][..],
        ),
        (
            vec![
                "checksum".as_ref(),
                "--manifest".as_ref(),
                m.as_os_str(),
                a.as_os_str(),
            ],
            &[0],
        ),
        (
            vec![
                "verify".as_ref(),
                "--manifest".as_ref(),
                m.as_os_str(),
                b.as_os_str(),
            ],
            &[1],
        ),
    ] {
        let kib = peak_rss_kib(&args, codes);
        eprintln!("{args:?}: peak RSS {kib} KiB");
        assert!(kib < bound_kib, "{args:?}: peak RSS {kib} KiB");
    }
    let args: Vec<&std::ffi::OsStr> = vec![
        "checksum".as_ref(),
        "--chunk".as_ref(),
        "4096".as_ref(),
        "--manifest".as_ref(),
        m4k.as_os_str(),
        a.as_os_str(),
    ];
    let kib = peak_rss_kib(&args, &[0]);
    eprintln!("checksum --chunk 4096: peak RSS {kib} KiB");
    assert!(kib < bound_kib, "checksum --chunk 4096: peak RSS {kib} KiB");
    // the 4 KiB manifest read back and compared, and the upload ranges on a 4 KiB grid
    for (args, codes) in [
        (
            vec![
                "verify".as_ref(),
                "--manifest".as_ref(),
                m4k.as_os_str(),
                b.as_os_str(),
            ],
            &[1][..],
        ),
        (
            vec![
                "checksum".as_ref(),
                "--chunk".as_ref(),
                "4096".as_ref(),
                "--upload-ranges".as_ref(),
                "--page".as_ref(),
                "4096".as_ref(),
                b.as_os_str(),
            ],
            &[0],
        ),
    ] {
        let kib = peak_rss_kib(&args, codes);
        eprintln!("{args:?}: peak RSS {kib} KiB");
        assert!(kib < bound_kib, "{args:?}: peak RSS {kib} KiB");
    }
    let manifest_bytes = fs::metadata(&m4k).unwrap().len();
    assert!(
        manifest_bytes < 4096,
        "a sparse image's manifest is a few runs, not one entry per chunk: {manifest_bytes} bytes"
    );
}
