//! The input-format readers (`vhdtool::image`) against QEMU: images made and filled with
//! `qemu-img create/convert` and `qemu-io` (patterns, `write -z`, compressed qcow2, backing
//! files, VHDX block sizes 1 MiB and 32 MiB, fixed and dynamic, sizes that are not a whole
//! MiB). For every byte of the virtual disk, our read equals `qemu-img convert -O raw`'s
//! (compared as CRC-32s of 1 MiB chunks, never whole files in memory), and the extent map
//! never calls data "zero". A differencing VHD chain built by hand reads as the merged disk,
//! and a missing or foreign parent is refused by name. The sparse fixed VHD writer's output is
//! judged by `qemu-img info -f vpc` and `qemu-img compare`, and the inputs are unchanged.
#![allow(clippy::restriction)] // tests: a panic is a failed test (the crate's panic lints are for src/)

mod common;

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use common::{qemu_img, require_tools, run_ok, tool, TempDir};
use vhdtool::disk::Disk;
use vhdtool::image::write::{write_fixed_vhd, WriteOptions};
use vhdtool::image::{ExtentKind, Format, Image, OpenOptions};

const MIB: u64 = 1 << 20;
/// 50 MiB and three sectors: not a whole MiB.
const ODD_SIZE: u64 = 50 * MIB + 1536;

fn have_qemu() -> bool {
    require_tools(&[("qemu-img", "qemu-utils"), ("qemu-io", "qemu-utils")])
}

/// `qemu-io -f FMT -c CMD ... FILE`.
fn qemu_io(fmt: &str, file: &Path, cmds: &[String]) {
    let mut c = tool("qemu-io");
    c.args(["-f", fmt]);
    for cmd in cmds {
        c.args(["-c", cmd]);
    }
    c.arg(file);
    run_ok(&mut c);
}

/// The writes every generated image gets: patterns across block and cluster boundaries, a
/// zeroed range inside data, data in the last (partial) MiB.
fn standard_writes(size: u64) -> Vec<String> {
    let last = size - 4096;
    vec![
        "write -P 0x11 0 65536".into(),
        "write -P 0x22 1044480 8192".into(), // across the 1 MiB boundary
        format!("write -P 0x33 {} 3145728", 3 * MIB + 512),
        format!("write -z {} 65536", 4 * MIB),
        format!("write -P 0x44 {} 2097152", 33 * MIB - 4096), // across a 32 MiB block
        format!("write -P 0x55 {last} 4096"),
    ]
}

/// CRC-32 of each 1 MiB chunk of a reader.
fn chunk_crcs(mut read: impl FnMut(u64, &mut [u8]), len: u64) -> Vec<u32> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; MIB as usize];
    let mut at = 0;
    while at < len {
        let n = (len - at).min(MIB) as usize;
        read(at, &mut buf[..n]);
        out.push(crc32fast::hash(&buf[..n]));
        at += n as u64;
    }
    out
}

fn file_crcs(path: &Path) -> Vec<u32> {
    let f = fs::File::open(path).unwrap();
    let len = f.metadata().unwrap().len();
    chunk_crcs(
        |at, b| std::os::unix::fs::FileExt::read_exact_at(&f, b, at).unwrap(),
        len,
    )
}

fn image_crcs(img: &Image) -> Vec<u32> {
    chunk_crcs(|at, b| img.read_at(at, b).unwrap(), img.len())
}

/// Our read of `path` equals qemu-img's raw conversion, byte for byte (by chunk CRCs), and
/// every range the extent map calls zero is zero in QEMU's view.
fn assert_same_as_qemu(path: &Path, qemu_fmt: &str, want_format: Format, dir: &Path) -> Image {
    let img = Image::open(path, &OpenOptions::default())
        .unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    assert_eq!(img.format(), want_format, "{}", path.display());
    let raw = dir.join(format!(
        "{}.raw",
        path.file_name().unwrap().to_string_lossy()
    ));
    qemu_img(&[
        "convert",
        "-f",
        qemu_fmt,
        "-O",
        "raw",
        path.to_str().unwrap(),
        raw.to_str().unwrap(),
    ]);
    let qlen = fs::metadata(&raw).unwrap().len();
    assert_eq!(img.len(), qlen, "{}: virtual size", path.display());
    let ours = image_crcs(&img);
    let theirs = file_crcs(&raw);
    if let Some(i) = (0..ours.len()).find(|&i| ours[i] != theirs[i]) {
        panic!(
            "{}: chunk {i} (offset 0x{:x}) differs from qemu-img convert -O raw",
            path.display(),
            i as u64 * MIB
        );
    }
    // the extent map: in order, covering the disk, zero extents zero in QEMU's view
    let f = fs::File::open(&raw).unwrap();
    let mut next = 0;
    let mut zero_bytes = 0;
    for e in img.extents() {
        let e = e.unwrap();
        assert_eq!(e.offset, next, "{}: extents out of order", path.display());
        assert!(e.len > 0);
        next = e.offset + e.len;
        if e.kind == ExtentKind::Zero {
            zero_bytes += e.len;
            let mut b = vec![0u8; e.len.min(4 * MIB) as usize];
            let mut at = e.offset;
            while at < next {
                let n = (next - at).min(b.len() as u64) as usize;
                std::os::unix::fs::FileExt::read_exact_at(&f, &mut b[..n], at).unwrap();
                assert!(
                    b[..n].iter().all(|&x| x == 0),
                    "{}: extent at 0x{:x} is called zero but QEMU reads data in it",
                    path.display(),
                    e.offset
                );
                at += n as u64;
            }
        }
    }
    assert_eq!(next, img.len());
    if want_format != Format::VhdFixed && !path.to_string_lossy().contains("b32m") {
        assert!(
            zero_bytes > img.len() / 2,
            "{}: a mostly empty image has only {zero_bytes} zero bytes in its map",
            path.display()
        );
    }
    fs::remove_file(&raw).unwrap();
    img
}

fn sha(path: &Path) -> Vec<u32> {
    file_crcs(path)
}

/// Write `img` as a fixed VHD and judge it with qemu-img: size = file - 512, whole MiB,
/// sparse, same content as the input; the input unchanged.
fn assert_writes_fixed_vhd(img: &Image, input: &Path, qemu_fmt: &str, dir: &Path, data_max: u64) {
    let before = sha(input);
    let out = dir.join(format!(
        "{}.out.vhd",
        input.file_name().unwrap().to_string_lossy()
    ));
    let r = write_fixed_vhd(img, &out, &WriteOptions::default()).unwrap();
    let meta = fs::metadata(&out).unwrap();
    assert_eq!(meta.len(), r.virtual_bytes + 512);
    assert_eq!(r.virtual_bytes % MIB, 0);
    assert!(r.virtual_bytes >= img.len() && r.virtual_bytes < img.len() + MIB);
    let info = qemu_img(&["info", "-f", "vpc", "--output=json", out.to_str().unwrap()]);
    let v: serde_json::Value = serde_json::from_str(&info).unwrap();
    assert_eq!(
        v["virtual-size"].as_u64(),
        Some(meta.len() - 512),
        "qemu-img info -f vpc: {info}"
    );
    // sparse: allocated bytes about the data (plus the footer's block)
    let allocated = meta.blocks() * 512;
    assert!(
        allocated <= data_max + 64 * 1024,
        "{}: {allocated} bytes allocated for at most {data_max} of data",
        out.display()
    );
    // same content; qemu-img compare requires the longer image to be zero past the shorter
    run_ok(tool("qemu-img").args([
        "compare",
        "-f",
        "vpc",
        "-F",
        qemu_fmt,
        out.to_str().unwrap(),
        input.to_str().unwrap(),
    ]));
    assert_eq!(before, sha(input), "{}: the input changed", input.display());
    fs::remove_file(&out).unwrap();
}

#[test]
fn qcow2_matches_qemu() {
    if !have_qemu() {
        return;
    }
    let t = TempDir::new("img-qcow2");
    let d = t.path();
    let size = ODD_SIZE.to_string();
    for (name, opts) in [
        ("v3.qcow2", "compat=1.1"),
        ("v2.qcow2", "compat=0.10"),
        ("c512.qcow2", "cluster_size=512"),
        ("c2m.qcow2", "cluster_size=2M"),
    ] {
        let p = d.join(name);
        qemu_img(&[
            "create",
            "-f",
            "qcow2",
            "-o",
            opts,
            p.to_str().unwrap(),
            &size,
        ]);
        qemu_io("qcow2", &p, &standard_writes(ODD_SIZE));
        let img = assert_same_as_qemu(&p, "qcow2", Format::Qcow2, d);
        assert_writes_fixed_vhd(&img, &p, "qcow2", d, 8 * MIB);
    }
    // compressed clusters: a raw disk with data, converted with -c
    let raw = d.join("src.raw");
    qemu_img(&["create", "-f", "raw", raw.to_str().unwrap(), &size]);
    qemu_io("raw", &raw, &standard_writes(ODD_SIZE));
    let c = d.join("compressed.qcow2");
    qemu_img(&[
        "convert",
        "-c",
        "-f",
        "raw",
        "-O",
        "qcow2",
        raw.to_str().unwrap(),
        c.to_str().unwrap(),
    ]);
    // then overwrite part of a compressed cluster (QEMU decompresses and rewrites it)
    qemu_io("qcow2", &c, &["write -P 0x66 8192 512".into()]);
    let img = assert_same_as_qemu(&c, "qcow2", Format::Qcow2, d);
    assert_writes_fixed_vhd(&img, &c, "qcow2", d, 8 * MIB);

    // a backing chain: raw base <- qcow2 mid <- qcow2 top, with a smaller base
    let base = d.join("base.raw");
    qemu_img(&["create", "-f", "raw", base.to_str().unwrap(), "40M"]);
    qemu_io(
        "raw",
        &base,
        &["write -P 0x77 0 40M".into(), "write -z 1M 1M".into()],
    );
    let mid = d.join("mid.qcow2");
    qemu_img(&[
        "create",
        "-f",
        "qcow2",
        "-b",
        "base.raw",
        "-F",
        "raw",
        mid.to_str().unwrap(),
        "45M",
    ]);
    qemu_io(
        "qcow2",
        &mid,
        &["write -P 0x88 2M 1M".into(), "write -z 5M 64k".into()],
    );
    let top = d.join("top.qcow2");
    qemu_img(&[
        "create",
        "-f",
        "qcow2",
        "-b",
        "mid.qcow2",
        "-F",
        "qcow2",
        top.to_str().unwrap(),
        &size,
    ]);
    qemu_io("qcow2", &top, &standard_writes(ODD_SIZE));
    let img = Image::open(&top, &OpenOptions::default()).unwrap();
    assert_eq!(img.chain().len(), 3);
    drop(img);
    let img = assert_same_as_qemu_allow_data(&top, d);
    assert_writes_fixed_vhd(&img, &top, "qcow2", d, 48 * MIB);
    // a missing backing file is refused by name
    fs::rename(&base, d.join("elsewhere.raw")).unwrap();
    let e = Image::open(&top, &OpenOptions::default()).unwrap_err();
    assert!(e.message().contains("base.raw"), "{e}");
}

/// As [`assert_same_as_qemu`] for a chain whose base is mostly data.
fn assert_same_as_qemu_allow_data(path: &Path, dir: &Path) -> Image {
    let img = Image::open(path, &OpenOptions::default()).unwrap();
    let raw = dir.join("chain.raw");
    qemu_img(&[
        "convert",
        "-O",
        "raw",
        path.to_str().unwrap(),
        raw.to_str().unwrap(),
    ]);
    assert_eq!(img.len(), fs::metadata(&raw).unwrap().len());
    assert_eq!(image_crcs(&img), file_crcs(&raw));
    fs::remove_file(&raw).unwrap();
    img
}

#[test]
fn vhdx_matches_qemu() {
    if !have_qemu() {
        return;
    }
    let t = TempDir::new("img-vhdx");
    let d = t.path();
    let size = ODD_SIZE.to_string();
    for (name, opts) in [
        ("b1m.vhdx", "block_size=1M,subformat=dynamic"),
        ("b32m.vhdx", "block_size=32M,subformat=dynamic"),
        ("fixed.vhdx", "block_size=1M,subformat=fixed"),
    ] {
        let p = d.join(name);
        qemu_img(&[
            "create",
            "-f",
            "vhdx",
            "-o",
            opts,
            p.to_str().unwrap(),
            &size,
        ]);
        qemu_io("vhdx", &p, &standard_writes(ODD_SIZE));
        let img = if name == "fixed.vhdx" {
            let img = Image::open(&p, &OpenOptions::default()).unwrap();
            drop(img);
            assert_same_as_qemu_allow_data(&p, d)
        } else {
            assert_same_as_qemu(&p, "vhdx", Format::Vhdx, d)
        };
        assert_eq!(img.info().logical_sector_bytes, Some(512));
        let data_max = if name == "b32m.vhdx" {
            70 * MIB
        } else {
            12 * MIB
        };
        assert_writes_fixed_vhd(&img, &p, "vhdx", d, data_max);
    }
}

#[test]
fn vhd_matches_qemu() {
    if !have_qemu() {
        return;
    }
    let t = TempDir::new("img-vhd");
    let d = t.path();
    let size = ODD_SIZE.to_string();
    for (name, opts, fmt) in [
        (
            "dyn.vhd",
            "subformat=dynamic,force_size=on",
            Format::VhdDynamic,
        ),
        ("dynchs.vhd", "subformat=dynamic", Format::VhdDynamic),
        (
            "fixed.vhd",
            "subformat=fixed,force_size=on",
            Format::VhdFixed,
        ),
    ] {
        let p = d.join(name);
        qemu_img(&[
            "create",
            "-f",
            "vpc",
            "-o",
            opts,
            p.to_str().unwrap(),
            &size,
        ]);
        let len = qemu_size(&p);
        qemu_io("vpc", &p, &standard_writes(len));
        let img = assert_same_as_qemu(&p, "vpc", fmt, d);
        assert_writes_fixed_vhd(&img, &p, "vpc", d, 12 * MIB);
    }
}

fn qemu_size(p: &Path) -> u64 {
    let info = qemu_img(&["info", "-f", "vpc", "--output=json", p.to_str().unwrap()]);
    let v: serde_json::Value = serde_json::from_str(&info).unwrap();
    v["virtual-size"].as_u64().unwrap()
}

/// Big-endian u32 at `at`.
fn put32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_be_bytes());
}

fn put64(b: &mut [u8], at: usize, v: u64) {
    b[at..at + 8].copy_from_slice(&v.to_be_bytes());
}

fn utf16le(s: &str) -> Vec<u8> {
    s.encode_utf16().flat_map(|u| u.to_le_bytes()).collect()
}

/// A differencing VHD child of `parent` (a dynamic VHD), built by hand: footer (type 4, its own
/// unique id), dynamic header (parent id, timestamp, name, W2ku and W2ru locators), BAT with
/// two blocks whose bitmaps mark some sectors, those sectors filled with `fill`. Returns the
/// child and the sector ranges (block, first sector, count) it overrides.
fn make_child(
    parent: &Path,
    child: &Path,
    fill: u8,
    parent_id: Option<[u8; 16]>,
) -> Vec<(u64, u64)> {
    let p = fs::read(parent).unwrap();
    let pf = &p[p.len() - 512..];
    let size = u64::from_be_bytes(pf[0x30..0x38].try_into().unwrap());
    let mut id = [0u8; 16];
    id.copy_from_slice(&pf[0x44..0x54]);
    let ts = u32::from_be_bytes(pf[0x18..0x1c].try_into().unwrap());
    let block = 2 * MIB;
    let entries = size.div_ceil(block) as u32;
    // layout: footer copy 0, header 0x200, locators 0x600 and 0x800, BAT 0xa00, blocks
    let bat_at = 0xa00usize;
    let bat_bytes = ((entries as usize * 4).div_ceil(512)) * 512;
    let mut v = vec![0u8; bat_at + bat_bytes];
    let mut h = vhdtool::vhd::dynamic::encode_header(
        bat_at as u64,
        entries,
        block as u32,
        Some((parent_id.unwrap_or(id), ts, "parent.vhd")),
    );
    let abs = utf16le("C:\\VMs\\parent.vhd");
    let rel = utf16le(".\\parent.vhd");
    for (i, (code, data, at)) in [(b"W2ku", &abs, 0x600u64), (b"W2ru", &rel, 0x800u64)]
        .into_iter()
        .enumerate()
    {
        let e = 0x240 + i * 24;
        h[e..e + 4].copy_from_slice(code);
        put32(&mut h, e + 4, 512);
        put32(&mut h, e + 8, data.len() as u32);
        put64(&mut h, e + 16, at);
        v[at as usize..at as usize + data.len()].copy_from_slice(data);
    }
    let sum = vhdtool::vhd::dynamic::checksum(&h);
    put32(&mut h, 0x24, sum);
    v[0x200..0x600].copy_from_slice(&h);
    v[bat_at..bat_at + entries as usize * 4].fill(0xff);
    // block 0: sectors 8..24 and 100; block 3: sectors 0..4096 (whole block)
    let mut overrides = Vec::new();
    for (blk, runs) in [(0u64, vec![(8u64, 16u64), (100, 1)]), (3, vec![(0, 4096)])] {
        let sector = (v.len() / 512) as u32;
        put32(&mut v, bat_at + blk as usize * 4, sector);
        let mut bitmap = vec![0u8; 512];
        let mut data = vec![0u8; block as usize];
        for (first, n) in runs {
            for s in first..first + n {
                bitmap[(s / 8) as usize] |= 0x80 >> (s % 8);
                data[(s * 512) as usize..(s * 512 + 512) as usize].fill(fill);
            }
            overrides.push((blk * block + first * 512, n * 512));
        }
        // a sector whose bit is clear but whose bytes are not zero: must come from the parent
        if blk == 0 {
            data[200 * 512] = 0xEE;
        }
        v.extend_from_slice(&bitmap);
        v.extend_from_slice(&data);
    }
    let mut f = pf.to_vec();
    put32(&mut f, 0x3c, 4); // differencing
    put64(&mut f, 0x10, 0x200);
    f[0x44..0x54].copy_from_slice(&[0x5a; 16]);
    put32(&mut f, 0x40, 0);
    let sum = vhdtool::vhd::footer::checksum(&f.clone().try_into().unwrap());
    put32(&mut f, 0x40, sum);
    v[..512].copy_from_slice(&f);
    v.extend_from_slice(&f);
    fs::write(child, v).unwrap();
    overrides
}

#[test]
fn differencing_vhd_reads_as_the_merged_disk() {
    if !have_qemu() {
        return;
    }
    let t = TempDir::new("img-diff");
    let d = t.path();
    let parent = d.join("parent.vhd");
    qemu_img(&[
        "create",
        "-f",
        "vpc",
        "-o",
        "subformat=dynamic,force_size=on",
        parent.to_str().unwrap(),
        "20M",
    ]);
    qemu_io(
        "vpc",
        &parent,
        &["write -P 0x31 0 3M".into(), "write -P 0x32 7M 2M".into()],
    );
    let child = d.join("child.vhd");
    let overrides = make_child(&parent, &child, 0xc7, None);
    // expected: the parent's raw view with the child's sectors on top
    let praw = d.join("parent.raw");
    qemu_img(&[
        "convert",
        "-f",
        "vpc",
        "-O",
        "raw",
        parent.to_str().unwrap(),
        praw.to_str().unwrap(),
    ]);
    let mut want = fs::read(&praw).unwrap();
    for (off, len) in &overrides {
        want[*off as usize..(*off + *len) as usize].fill(0xc7);
    }
    let before = (sha(&parent), sha(&child));
    let img = Image::open(&child, &OpenOptions::default()).unwrap();
    assert_eq!(img.format(), Format::VhdDifferencing);
    assert_eq!(img.chain().len(), 2);
    let mut got = vec![0u8; img.len() as usize];
    img.read_at(0, &mut got).unwrap();
    if let Some(i) = (0..got.len()).find(|&i| got[i] != want[i]) {
        panic!(
            "the child does not read as parent + its sectors: first difference at 0x{i:x}: {:#x} vs {:#x}",
            got[i], want[i]
        );
    }
    // extents: the child's block 3 and the parent's data are data; the rest zero
    for e in img.extents() {
        let e = e.unwrap();
        if e.kind == ExtentKind::Zero {
            assert!(want[e.offset as usize..(e.offset + e.len) as usize]
                .iter()
                .all(|&b| b == 0));
        }
    }
    // the writer takes the merged disk
    let out = d.join("merged.vhd");
    write_fixed_vhd(&img, &out, &WriteOptions::default()).unwrap();
    drop(img);
    let o = fs::read(&out).unwrap();
    assert_eq!(&o[..want.len()], &want[..]);
    assert_eq!(qemu_size(&out), o.len() as u64 - 512);
    assert_eq!(before, (sha(&parent), sha(&child)), "an input changed");

    // the parent elsewhere: found with parent_dir, refused by name without it
    let other = d.join("other");
    fs::create_dir(&other).unwrap();
    fs::rename(&parent, other.join("parent.vhd")).unwrap();
    let e = Image::open(&child, &OpenOptions::default()).unwrap_err();
    let m = e.message();
    assert!(
        m.contains("parent.vhd") && m.contains("--parent-dir"),
        "{m}"
    );
    assert!(
        !m.contains("qemu-img"),
        "no hint that loses the parent's data: {m}"
    );
    let opts = OpenOptions {
        parent_dir: Some(other.clone()),
        ..OpenOptions::default()
    };
    let img = Image::open(&child, &opts).unwrap();
    let mut got2 = vec![0u8; img.len() as usize];
    img.read_at(0, &mut got2).unwrap();
    assert!(got2 == want);
    drop(img);

    // a parent with another unique id is refused, naming it
    fs::rename(other.join("parent.vhd"), &parent).unwrap();
    let child2 = d.join("child2.vhd");
    make_child(&parent, &child2, 0xc7, Some([9; 16]));
    let e = Image::open(&child2, &OpenOptions::default()).unwrap_err();
    assert!(
        e.message().contains("unique id") && e.message().contains("parent.vhd"),
        "{e}"
    );
}

#[test]
fn other_formats_are_named_and_refused() {
    if !have_qemu() {
        return;
    }
    let t = TempDir::new("img-other");
    let d = t.path();
    for (fmt, name) in [
        ("vmdk", "VMDK"),
        ("vdi", "VDI"),
        ("qed", "QED"),
        ("parallels", "Parallels"),
    ] {
        let p = d.join(format!("x.{fmt}"));
        qemu_img(&["create", "-f", fmt, p.to_str().unwrap(), "10M"]);
        let e = Image::open(&p, &OpenOptions::default()).unwrap_err();
        assert!(e.message().contains(name), "{fmt}: {e}");
    }
    // a raw file is refused unless the caller says raw
    let p = d.join("x.raw");
    qemu_img(&["create", "-f", "raw", p.to_str().unwrap(), "10M"]);
    let e = Image::open(&p, &OpenOptions::default()).unwrap_err();
    assert!(e.message().contains("--input-format raw"), "{e}");
    let opts = OpenOptions {
        raw: true,
        ..OpenOptions::default()
    };
    assert_eq!(Image::open(&p, &opts).unwrap().format(), Format::Raw);
    // an encrypted qcow2 is refused
    let p = d.join("enc.qcow2");
    qemu_img(&[
        "create",
        "--object",
        "secret,id=s0,data=pw",
        "-f",
        "qcow2",
        "-o",
        "encrypt.format=luks,encrypt.key-secret=s0",
        p.to_str().unwrap(),
        "10M",
    ]);
    let e = Image::open(&p, &OpenOptions::default()).unwrap_err();
    assert!(e.message().contains("encrypted"), "{e}");
}

/// A raw disk of `size` bytes with a GPT of 4096-byte sectors (one partition).
fn raw_with_4k_gpt(path: &Path, size: u64) {
    use vhdtool::gpt::guid::{Guid, BASIC_DATA};
    let sectors = size / 4096;
    let part = vhdtool::gpt::GptPartition {
        index: 1,
        type_guid: BASIC_DATA,
        type_name: None,
        unique_guid: Guid::from_u128(0x1234),
        first_lba: 256,
        last_lba: sectors - 64,
        attributes: 0,
        name: "data".into(),
    };
    let g = vhdtool::gpt::encode(Guid::from_u128(0x99), &[part], 128, 4096, sectors).unwrap();
    let f = fs::File::create(path).unwrap();
    f.set_len(size).unwrap();
    use std::os::unix::fs::FileExt;
    let mut pmbr = [0u8; 512];
    pmbr[446 + 4] = 0xee;
    pmbr[446 + 8..446 + 12].copy_from_slice(&1u32.to_le_bytes());
    pmbr[446 + 12..446 + 16].copy_from_slice(&(sectors as u32 - 1).to_le_bytes());
    pmbr[510] = 0x55;
    pmbr[511] = 0xaa;
    f.write_all_at(&pmbr, 0).unwrap();
    f.write_all_at(&g.primary, g.primary_header_lba * 4096)
        .unwrap();
    f.write_all_at(&g.backup, g.backup_entries_lba * 4096)
        .unwrap();
}

/// Set the logical sector size item of a VHDX made by qemu-img (metadata items are not
/// checksummed).
fn set_vhdx_logical_sector(path: &Path, bytes: u32) {
    let mut v = fs::read(path).unwrap();
    let lss = vhdtool::image::vhdx::META_LOGICAL_SECTOR_SIZE.0;
    let rt = 192 << 10;
    let count = u32::from_le_bytes(v[rt + 8..rt + 12].try_into().unwrap()) as usize;
    let meta = (0..count)
        .map(|i| rt + 16 + 32 * i)
        .find(|&e| v[e..e + 16] == vhdtool::image::vhdx::REGION_METADATA.0)
        .map(|e| u64::from_le_bytes(v[e + 16..e + 24].try_into().unwrap()) as usize)
        .unwrap();
    let n = u16::from_le_bytes(v[meta + 10..meta + 12].try_into().unwrap()) as usize;
    let e = (0..n)
        .map(|i| meta + 32 + 32 * i)
        .find(|&e| v[e..e + 16] == lss)
        .unwrap();
    let off = meta + u32::from_le_bytes(v[e + 16..e + 20].try_into().unwrap()) as usize;
    v[off..off + 4].copy_from_slice(&bytes.to_le_bytes());
    fs::write(path, v).unwrap();
}

#[test]
fn gpt_with_4k_sectors_is_found_in_vhd_and_vhdx() {
    if !have_qemu() {
        return;
    }
    let t = TempDir::new("img-4k");
    let d = t.path();
    let raw = d.join("4k.raw");
    raw_with_4k_gpt(&raw, 64 * MIB);
    for (name, args) in [
        (
            "4k.vhd",
            vec!["-O", "vpc", "-o", "subformat=fixed,force_size=on"],
        ),
        (
            "4kd.vhd",
            vec!["-O", "vpc", "-o", "subformat=dynamic,force_size=on"],
        ),
        ("4k.vhdx", vec!["-O", "vhdx"]),
    ] {
        let out = d.join(name);
        let mut a = vec!["convert", "-f", "raw"];
        a.extend(args);
        a.extend([raw.to_str().unwrap(), out.to_str().unwrap()]);
        qemu_img(&a);
        if name.ends_with(".vhdx") {
            // qemu-img writes 512; a 4Kn VHDX says 4096 (the data is the same)
            set_vhdx_logical_sector(&out, 4096);
        }
        let img = Image::open(&out, &OpenOptions::default()).unwrap();
        let sizes = img.table_sector_bytes();
        let tables = vhdtool::info::read_tables(&img, sizes.contains(&4096));
        let g = tables
            .gpt
            .as_ref()
            .unwrap_or_else(|| panic!("{name}: no GPT found: {:?}", tables.findings));
        assert_eq!(tables.sector_bytes, 4096, "{name}");
        assert_eq!(g.partitions.len(), 1, "{name}");
        if name.ends_with(".vhdx") {
            assert_eq!(img.info().logical_sector_bytes, Some(4096));
            assert_eq!(sizes, [4096]);
            // QEMU refuses VHDX with 4096-byte logical sectors (ENOTSUP): compare with the
            // raw disk it was converted from
            assert_eq!(image_crcs(&img), file_crcs(&raw), "{name}");
        }
    }
}

/// CRC-32C, bit by bit (independent of the library's table).
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

/// Header `i` (0 or 1) of a VHDX: set its sequence number and log GUID, reseal its CRC.
fn set_vhdx_header(v: &mut [u8], i: usize, seq: u64, log_guid: [u8; 16]) {
    let at = (64 << 10) * (i + 1);
    v[at + 8..at + 16].copy_from_slice(&seq.to_le_bytes());
    v[at + 0x30..at + 0x40].copy_from_slice(&log_guid);
    v[at + 4..at + 8].fill(0);
    let c = crc32c(&v[at..at + 4096]);
    v[at + 4..at + 8].copy_from_slice(&c.to_le_bytes());
}

#[test]
fn vhdx_headers_log_and_damage() {
    if !have_qemu() {
        return;
    }
    let t = TempDir::new("img-vhdx-hdr");
    let d = t.path();
    let p = d.join("h.vhdx");
    qemu_img(&["create", "-f", "vhdx", p.to_str().unwrap(), "8M"]);
    qemu_io("vhdx", &p, &["write -P 0x5a 0 1M".into()]);
    let good = fs::read(&p).unwrap();
    let open = |v: &[u8]| Image::from_bytes(v.to_vec(), &OpenOptions::default());
    assert!(open(&good).is_ok());
    // the higher sequence number wins: header 1 newer with a log -> refused for the log
    let mut v = good.clone();
    set_vhdx_header(&mut v, 0, 100, [0; 16]);
    set_vhdx_header(&mut v, 1, 50, [0; 16]);
    assert!(open(&v).is_ok());
    set_vhdx_header(&mut v, 0, 100, [7; 16]);
    let e = open(&v).unwrap_err();
    assert!(
        e.message().contains("log is not empty") && e.message().contains("0x10000"),
        "{e}"
    );
    // ... and the same header older: header 2 (no log) is used
    set_vhdx_header(&mut v, 0, 10, [7; 16]);
    let img = open(&v).unwrap();
    let mut b = [0u8; 4];
    img.read_at(0, &mut b).unwrap();
    assert_eq!(b, [0x5a; 4]);
    // a damaged header (bad CRC) gives way to the other; both damaged: refused
    let mut v = good.clone();
    v[(64 << 10) + 0x100] ^= 1;
    assert!(open(&v).is_ok());
    v[(128 << 10) + 0x100] ^= 1;
    let e = open(&v).unwrap_err();
    assert!(
        e.message().contains("no valid header") && e.message().contains("CRC-32C"),
        "{e}"
    );
    // a damaged first region table gives way to the second
    let mut v = good.clone();
    v[(192 << 10) + 0x30] ^= 1;
    assert!(open(&v).is_ok());
    v[(256 << 10) + 0x30] ^= 1;
    assert!(open(&v).unwrap_err().message().contains("region table"));
}
