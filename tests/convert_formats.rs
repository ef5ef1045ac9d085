//! `vhdtool convert IN -o OUT.vhd` from every input format (dynamic VHD, VHDX, qcow2, raw with
//! `--input-format raw`), and `--keep-mbr`. Each input is made from the same raw MBR disk with
//! `qemu-img convert`; the output is judged by independent tools: `qemu-img info -f vpc` (size
//! = file - 512, a whole MiB), the file's allocated blocks (sparse), `qemu-img convert -O raw`
//! of the input (the partitions' data is the same bytes), `sgdisk -v`, `fsck.fat -n` on the
//! ESP, and vhdtool's own `info` (gen2_ready, azure_ready). The input is unchanged (checksum
//! before and after), and an in-place conversion of such a format is refused with the -o hint.
#![allow(clippy::restriction)] // tests: a panic is a failed test (the crate's panic lints are for src/)

mod common;

use std::fs;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{images, info_json, qemu_img, require_tools, run_ok, tool, vhdtool, TempDir};

const MIB: u64 = 1 << 20;

fn have_tools() -> bool {
    require_tools(&[
        ("qemu-img", "qemu-utils"),
        ("sgdisk", "gdisk"),
        ("fsck.fat", "dosfstools"),
        ("sfdisk", "fdisk"),
    ])
}

/// The tools, the generated images, the raw MBR disk every input is made from, a scratch
/// folder; `None` to skip (a tool is missing outside CI).
fn setup(tag: &str) -> Option<(&'static common::Images, PathBuf, TempDir)> {
    if !have_tools() {
        return None;
    }
    let set = images()?;
    Some((set, set.path("four-primary.raw"), TempDir::new(tag)))
}

/// `qemu-img convert -f FROM -O TO [-o OPTS] IN OUT`.
fn qemu_convert(from: &str, to: &str, opts: Option<&str>, input: &Path, out: &Path) {
    let mut a = vec!["convert", "-f", from, "-O", to];
    if let Some(o) = opts {
        a.extend(["-o", o]);
    }
    a.extend([input.to_str().unwrap(), out.to_str().unwrap()]);
    qemu_img(&a);
}

/// The fixed VHD `vhd` holds the raw disk `raw` byte for byte (`qemu-img compare`: the extra
/// tail must read as zero).
fn assert_same_disk(raw: &Path, vhd: &Path) {
    qemu_img(&[
        "compare",
        "-f",
        "raw",
        "-F",
        "vpc",
        raw.to_str().unwrap(),
        vhd.to_str().unwrap(),
    ]);
}

/// CRC-32 of the whole file, read 1 MiB at a time.
fn file_crc(path: &Path) -> u32 {
    let f = fs::File::open(path).unwrap();
    let len = f.metadata().unwrap().len();
    let mut h = crc32fast::Hasher::new();
    let mut buf = vec![0u8; MIB as usize];
    let mut at = 0;
    while at < len {
        let n = (len - at).min(MIB) as usize;
        f.read_exact_at(&mut buf[..n], at).unwrap();
        h.update(&buf[..n]);
        at += n as u64;
    }
    h.finalize()
}

fn read_range(path: &Path, at: u64, len: u64) -> Vec<u8> {
    let f = fs::File::open(path).unwrap();
    let mut buf = vec![0u8; len as usize];
    f.read_exact_at(&mut buf, at).unwrap();
    buf
}

/// The MBR partitions of a raw disk as (start, size) in bytes, from `sfdisk --json`.
fn mbr_partitions(raw: &Path) -> Vec<(u64, u64)> {
    let out = run_ok(tool("sfdisk").arg("--json").arg(raw));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    v["partitiontable"]["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["start"].as_u64().unwrap() * 512,
                p["size"].as_u64().unwrap() * 512,
            )
        })
        .collect()
}

/// The input formats, made from `raw` in `dir`: (file, `qemu-img -f` name, extra vhdtool args).
fn inputs(raw: &Path, dir: &Path) -> Vec<(PathBuf, &'static str, Vec<&'static str>)> {
    let mut out = Vec::new();
    for (name, fmt, opts) in [
        ("in.qcow2", "qcow2", "compression_type=zlib"),
        ("in.vhdx", "vhdx", "subformat=dynamic,block_size=1048576"),
        ("in-fixed.vhdx", "vhdx", "subformat=fixed"),
        ("in.dyn.vhd", "vpc", "subformat=dynamic"),
    ] {
        let p = dir.join(name);
        qemu_convert("raw", fmt, Some(opts), raw, &p);
        out.push((p, fmt, Vec::new()));
    }
    let p = dir.join("in.img");
    common::sparse_copy(raw, &p);
    out.push((p, "raw", vec!["--input-format", "raw"]));
    out
}

/// The output is a fixed VHD QEMU sizes as file - 512, a whole MiB, sparse.
fn assert_fixed_whole_mib_sparse(out: &Path, data_bytes: u64) {
    let info = qemu_img(&[
        "info",
        "-f",
        "vpc",
        "--output",
        "json",
        out.to_str().unwrap(),
    ]);
    let v: serde_json::Value = serde_json::from_str(&info).unwrap();
    let meta = fs::metadata(out).unwrap();
    let size = v["virtual-size"].as_u64().unwrap();
    assert_eq!(size, meta.len() - 512, "{}: qemu-img size", out.display());
    assert_eq!(size % MIB, 0, "{}: not a whole MiB", out.display());
    let allocated = meta.blocks() * 512;
    assert!(
        allocated <= data_bytes + 8 * MIB,
        "{}: {allocated} bytes allocated for about {data_bytes} bytes of data",
        out.display()
    );
}

fn allocated(path: &Path) -> u64 {
    fs::metadata(path).unwrap().blocks() * 512
}

/// `sgdisk -v` finds no problem, and the ESP passes `fsck.fat -n`.
fn assert_gpt_and_esp_clean(out: &Path, dir: &Path) {
    let raw = dir.join("out-check.raw");
    let _ = fs::remove_file(&raw);
    qemu_convert("vpc", "raw", None, out, &raw);
    let v = run_ok(tool("sgdisk").arg("-v").arg(&raw));
    assert!(v.contains("No problems found"), "sgdisk -v: {v}");
    let (_, report) = info_json(out, Duration::from_secs(120));
    let esp = report["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| {
            p["type"]
                .as_str()
                .is_some_and(|t| t.eq_ignore_ascii_case("c12a7328-f81f-11d2-ba4b-00a0c93ec93b"))
        })
        .unwrap_or_else(|| panic!("no ESP in {report}"));
    let (start, size) = (
        esp["start_lba"].as_u64().unwrap() * 512,
        esp["size_bytes"].as_u64().unwrap(),
    );
    let fat = dir.join("esp.img");
    fs::write(&fat, read_range(&raw, start, size)).unwrap();
    run_ok(tool("fsck.fat").arg("-n").arg(&fat));
    fs::remove_file(&fat).unwrap();
    fs::remove_file(&raw).unwrap();
}

#[test]
fn every_input_format_converts_into_a_gen2_fixed_vhd() {
    let Some((_, base, dir)) = setup("convert-formats") else {
        return;
    };
    let parts = mbr_partitions(&base);
    assert_eq!(parts.len(), 4);
    // a stand-in boot loader: info's gen2 verdict looks for the file, not at its code
    let boot = dir.path().join("boot");
    fs::create_dir_all(boot.join("EFI/BOOT")).unwrap();
    fs::write(boot.join("EFI/BOOT/BOOTX64.EFI"), b"MZ stand-in").unwrap();
    for (input, fmt, extra) in inputs(&base, dir.path()) {
        let before = file_crc(&input);
        let out = dir.path().join("out.vhd");
        let _ = fs::remove_file(&out);
        let mut args = vec![
            "convert".to_string(),
            input.display().to_string(),
            "-o".into(),
            out.display().to_string(),
            "--boot-files".into(),
            boot.display().to_string(),
            "--verify".into(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        let r = vhdtool(&args);
        assert_eq!(
            r.code,
            Some(0),
            "{}: {}\n{}",
            input.display(),
            r.stdout,
            r.stderr
        );
        assert_eq!(
            file_crc(&input),
            before,
            "{}: input changed",
            input.display()
        );
        assert_fixed_whole_mib_sparse(&out, allocated(&base));
        // the partitions kept (FAT16, FAT32, ext4) hold the input's bytes, as qemu-img reads
        // the input; the last one (swap) was shrunk for the ESP
        let oracle = dir.path().join("oracle.raw");
        let _ = fs::remove_file(&oracle);
        qemu_convert(fmt, "raw", None, &input, &oracle);
        for &(start, size) in &parts[..3] {
            assert!(
                read_range(&out, start, size) == read_range(&oracle, start, size),
                "{}: partition at 0x{start:x} differs from the input",
                input.display()
            );
        }
        fs::remove_file(&oracle).unwrap();
        let (_, report) = info_json(&out, Duration::from_secs(120));
        assert_eq!(report["format"], "vhd-fixed", "{report}");
        assert_eq!(report["gen2_ready"], true, "{}: {report}", input.display());
        assert_eq!(report["azure_ready"], true, "{}: {report}", input.display());
        assert_gpt_and_esp_clean(&out, dir.path());
        fs::remove_file(&out).unwrap();
    }
}

#[test]
fn keep_mbr_writes_an_azure_ready_gen1_disk_with_the_same_bytes() {
    let Some((_, base, dir)) = setup("convert-keep-mbr") else {
        return;
    };
    let input = dir.path().join("in.vhdx");
    qemu_convert("raw", "vhdx", None, &base, &input);
    let before = file_crc(&input);
    let out = dir.path().join("out.vhd");
    let r = vhdtool([
        "convert",
        input.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--keep-mbr",
        "--json",
    ]);
    assert_eq!(r.code, Some(0), "{}\n{}", r.stdout, r.stderr);
    assert_eq!(file_crc(&input), before, "input changed");
    let j: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(j["upload"]["hyper_v_generation"], "V1", "{j}");
    assert_fixed_whole_mib_sparse(&out, allocated(&base));
    // every byte the same as the raw disk (qemu-img compare: the extra tail must be zero)
    assert_same_disk(&base, &out);
    let (_, report) = info_json(&out, Duration::from_secs(120));
    assert_eq!(report["partition_table"], "mbr", "{report}");
    assert_eq!(report["azure_ready"], true, "{report}");
    assert_eq!(report["gen2_ready"], false, "{report}");
    // the output exists: never overwritten
    let again = vhdtool([
        "convert",
        input.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--keep-mbr",
    ]);
    assert_ne!(again.code, Some(0), "{}", again.stderr);
    assert!(
        again.stderr.contains("does not overwrite"),
        "{}",
        again.stderr
    );
}

#[test]
fn keep_mbr_repairs_a_bad_footer() {
    let Some((set, _base, dir)) = setup("convert-repair") else {
        return;
    };
    let input = dir.path().join("bad.vhd");
    common::sparse_copy(&set.path("four-primary.force.vhd"), &input);
    // break the footer checksum (last 512 bytes, checksum at 0x40)
    let len = fs::metadata(&input).unwrap().len();
    let f = fs::OpenOptions::new().write(true).open(&input).unwrap();
    f.write_all_at(&[0xde, 0xad, 0xbe, 0xef], len - 512 + 0x40)
        .unwrap();
    drop(f);
    let out = dir.path().join("fixed.vhd");
    let r = vhdtool([
        "convert",
        input.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--keep-mbr",
    ]);
    assert_eq!(r.code, Some(0), "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stdout.contains("repaired: footer checksum"),
        "{}",
        r.stdout
    );
    let (_, report) = info_json(&out, Duration::from_secs(120));
    assert_eq!(report["azure_ready"], true, "{report}");
    assert_same_disk(&set.path("four-primary.raw"), &out);
}

#[test]
fn such_formats_are_never_converted_in_place() {
    let Some((set, _base, dir)) = setup("convert-in-place") else {
        return;
    };
    let input = dir.path().join("in.qcow2");
    qemu_img(&[
        "convert",
        "-f",
        "raw",
        "-O",
        "qcow2",
        set.path("four-primary.raw").to_str().unwrap(),
        input.to_str().unwrap(),
    ]);
    let before = file_crc(&input);
    let r = vhdtool(["convert", input.to_str().unwrap(), "--no-boot-files"]);
    assert_ne!(r.code, Some(0), "{}", r.stdout);
    assert!(
        r.stderr.contains("qcow2") && r.stderr.contains("-o OUT.vhd"),
        "{}",
        r.stderr
    );
    assert_eq!(file_crc(&input), before);
    assert!(!dir.path().join("in.qcow2.vhdtool-journal").exists());
}

/// `validate` reads another format as `convert -o` does: it validates the fixed VHD that comes
/// of it (the same plan as `convert -o --dry-run`), names the input's format, and reads the
/// filesystems inside it for the boot files, as `convert` does.
#[test]
fn validate_reads_every_format_as_convert_does() {
    let Some((_, base, dir)) = setup("validate-formats") else {
        return;
    };
    for (name, fmt, opts) in [
        ("in.qcow2", "qcow2", None),
        ("in.vhdx", "vhdx", Some("block_size=1048576")),
        ("in.dyn.vhd", "vpc", None),
    ] {
        let input = dir.path().join(name);
        qemu_convert("raw", fmt, opts, &base, &input);
        let before = file_crc(&input);
        let i = input.to_str().unwrap();
        let r = vhdtool(["validate", i, "--no-boot-files", "--json"]);
        assert_eq!(r.code, Some(0), "{name}: {}\n{}", r.stdout, r.stderr);
        let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
        let want = match fmt {
            "vpc" => "vhd-dynamic",
            f => f,
        };
        assert_eq!(v["input_format"], want, "{v}");
        let out = dir.path().join(format!("{name}.out.vhd"));
        let o = out.to_str().unwrap();
        let c = vhdtool([
            "convert",
            i,
            "-o",
            o,
            "--no-boot-files",
            "--dry-run",
            "--json",
        ]);
        assert_eq!(c.code, Some(0), "{name}: {}\n{}", c.stdout, c.stderr);
        let c: serde_json::Value = serde_json::from_str(&c.stdout).unwrap();
        assert_eq!(
            v["plan"], c["validation"]["plan"],
            "{name}: not the plan of convert -o"
        );
        assert_eq!(
            v["plan"]["new_file_bytes"].as_u64().unwrap() % (1 << 20),
            512
        );
        // boot files from the image: its ext4 is read inside the container, and holds no
        // signed shim and grub, so validate refuses it as convert does
        let r = vhdtool(["validate", i, "--json"]);
        assert_eq!(r.code, Some(1), "{name}: {}", r.stdout);
        let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
        let failed = common::failed_checks(&v["checks"]);
        assert_eq!(failed.len(), 1, "{v}");
        assert_eq!(failed[0]["id"], "boot.files", "{v}");
        assert!(
            failed[0]["detail"]
                .as_str()
                .unwrap()
                .contains("partition 3 (ext4)"),
            "{v}"
        );
        assert_eq!(file_crc(&input), before, "{name}: validate wrote its input");
    }
    // same input, same bytes: a qcow2 has no unique id of its own; the footer's is derived from
    // what it holds, its time from SOURCE_DATE_EPOCH
    let input = dir.path().join("in.qcow2");
    let outs: Vec<Vec<u8>> = (0..2)
        .map(|n| {
            let out = dir.path().join(format!("same{n}.vhd"));
            let r = std::process::Command::new(common::bin())
                .args(["convert", input.to_str().unwrap(), "-o"])
                .arg(&out)
                .arg("--no-boot-files")
                .env("SOURCE_DATE_EPOCH", "1700000000")
                .output()
                .unwrap();
            assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
            fs::read(&out).unwrap()
        })
        .collect();
    assert!(outs[0] == outs[1], "two conversions of one qcow2 differ");
    let footer = &outs[0][outs[0].len() - 512..];
    let t = u32::from_be_bytes(footer[24..28].try_into().unwrap());
    assert_eq!(i64::from(t), 1_700_000_000 - 946_684_800, "footer time");
}

#[test]
fn info_reads_every_format_and_names_its_container() {
    let Some((_, base, dir)) = setup("info-formats") else {
        return;
    };
    let want = [
        ("in.qcow2", "qcow2"),
        ("in.vhdx", "vhdx"),
        ("in-fixed.vhdx", "vhdx"),
        ("in.dyn.vhd", "vhd-dynamic"),
    ];
    for ((input, _, _), (name, format)) in inputs(&base, dir.path()).into_iter().zip(want) {
        assert!(input.ends_with(name));
        let (_, r) = info_json(&input, Duration::from_secs(120));
        assert_eq!(r["format"], format, "{}: {r}", input.display());
        assert_eq!(r["partition_table"], "mbr", "{}: {r}", input.display());
        let parts = r["partitions"].as_array().unwrap();
        assert_eq!(parts.len(), 4, "{}: {r}", input.display());
        assert_eq!(parts[1]["filesystem"]["label"], "FAT32VOL", "{r}");
        assert_eq!(r["azure_ready"], false, "{r}");
        let c = &r["container"];
        let allocated = c["allocated_bytes"].as_u64().unwrap();
        assert!(
            allocated > 0 && allocated <= fs::metadata(&base).unwrap().len(),
            "{}: {c}",
            input.display()
        );
        assert_eq!(c["chain"][0]["format"], format, "{c}");
        if format == "vhdx" {
            assert_eq!(c["vhdx"]["logical_sector_bytes"], 512, "{c}");
            assert!(c["vhdx"]["block_bytes"].as_u64().unwrap() >= MIB, "{c}");
        }
    }
    // a qcow2 with a backing file: the chain names it; without it, a finding names it
    let parent = dir.path().join("in.qcow2");
    let child = dir.path().join("child.qcow2");
    qemu_img(&[
        "create",
        "-f",
        "qcow2",
        "-b",
        "in.qcow2",
        "-F",
        "qcow2",
        child.to_str().unwrap(),
    ]);
    let (_, r) = info_json(&child, Duration::from_secs(120));
    assert_eq!(r["container"]["chain"].as_array().unwrap().len(), 2, "{r}");
    assert_eq!(r["container"]["chain"][0]["parent_name"], "in.qcow2", "{r}");
    assert_eq!(r["partitions"].as_array().unwrap().len(), 4, "{r}");
    fs::rename(&parent, dir.path().join("moved.qcow2")).unwrap();
    let (_, r) = info_json(&child, Duration::from_secs(120));
    let f = r["findings"].as_array().unwrap();
    assert!(
        f.iter().any(|f| f["id"] == "image.unreadable"
            && f["message"].as_str().unwrap().contains("in.qcow2")),
        "{r}"
    );
    // --parent-dir finds it elsewhere: convert reads through the chain
    let elsewhere = dir.path().join("parents");
    fs::create_dir_all(&elsewhere).unwrap();
    fs::rename(dir.path().join("moved.qcow2"), elsewhere.join("in.qcow2")).unwrap();
    let out = dir.path().join("merged.vhd");
    let r = vhdtool([
        "convert",
        child.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--keep-mbr",
        "--parent-dir",
        elsewhere.to_str().unwrap(),
    ]);
    assert_eq!(r.code, Some(0), "{}\n{}", r.stdout, r.stderr);
    assert_same_disk(&base, &out);
}

/// Issue 15 item 12: a VHD whose footer is cut short (100 or 511 bytes missing) or zeroed is a
/// finding naming the damaged footer, and is not converted as a raw disk unless told so.
#[test]
fn a_damaged_footer_is_named_and_not_converted_as_raw() {
    let Some((set, _base, dir)) = setup("damaged-footer") else {
        return;
    };
    let src = set.path("four-primary.force.vhd");
    let len = fs::metadata(&src).unwrap().len();
    for (name, cut, zero) in [
        ("cut100", 100, false),
        ("cut511", 511, false),
        ("zeroed", 0, true),
    ] {
        let p = dir.path().join(format!("{name}.vhd"));
        common::sparse_copy(&src, &p);
        let f = fs::OpenOptions::new().write(true).open(&p).unwrap();
        f.set_len(len - cut).unwrap();
        if zero {
            f.write_all_at(&[0u8; 512], len - 512).unwrap();
        }
        drop(f);
        let (_, r) = info_json(&p, Duration::from_secs(120));
        let f = r["findings"].as_array().unwrap();
        assert!(
            f.iter().any(|f| f["id"] == "vhd.footer-damaged"),
            "{name}: {r}"
        );
        let before = file_crc(&p);
        let c = vhdtool(["convert", p.to_str().unwrap(), "--no-boot-files"]);
        assert_ne!(c.code, Some(0), "{name}: {}", c.stdout);
        assert!(
            c.stderr.contains("footer is damaged") && c.stderr.contains("--input-format raw"),
            "{name}: {}",
            c.stderr
        );
        assert_eq!(file_crc(&p), before, "{name}: changed");
    }
}

/// Issue 13 item 4: a filesystem at LBA 0 is the disk's filesystem, never an MBR with garbage
/// entries; validate and convert refuse it with the reason.
#[test]
fn bare_volumes_are_the_disks_filesystem() {
    if !require_tools(&[
        ("mkfs.fat", "dosfstools"),
        ("mkntfs", "ntfs-3g"),
        ("mkfs.ext4", "e2fsprogs"),
    ]) {
        return;
    }
    let dir = TempDir::new("bare-volumes");
    for (name, kind, label) in [
        ("fat32", "fat32", "XPVOL"),
        ("fat16", "fat16", "SMALL"),
        ("ntfs", "ntfs", "WINVOL"),
        ("ext4", "ext4", "linvol"),
    ] {
        let p = dir.path().join(format!("{name}.img"));
        let f = fs::File::create(&p).unwrap();
        f.set_len(64 * MIB).unwrap();
        drop(f);
        let mut cmd = match name {
            "fat32" => {
                let mut c = tool("mkfs.fat");
                c.args(["-F", "32", "-n", label]);
                c
            }
            "fat16" => {
                let mut c = tool("mkfs.fat");
                c.args(["-F", "16", "-n", label]);
                c
            }
            "ntfs" => {
                let mut c = tool("mkntfs");
                c.args(["-F", "-f", "-q", "-L", label]);
                c
            }
            _ => {
                let mut c = tool("mkfs.ext4");
                c.args(["-q", "-F", "-L", label]);
                c
            }
        };
        run_ok(cmd.arg(&p));
        let (_, r) = info_json(&p, Duration::from_secs(120));
        assert_eq!(r["partition_table"], "none", "{name}: {r}");
        assert_eq!(r["partitions"].as_array().unwrap().len(), 0, "{name}: {r}");
        assert_eq!(r["filesystem"]["kind"], kind, "{name}: {r}");
        assert_eq!(r["filesystem"]["label"], label, "{name}: {r}");
        let v = vhdtool(["validate", p.to_str().unwrap()]);
        assert_ne!(v.code, Some(0), "{name}: {}", v.stdout);
        assert!(
            v.stdout.contains("no MBR partition table"),
            "{name}: {}",
            v.stdout
        );
        let before = file_crc(&p);
        let c = vhdtool(["convert", p.to_str().unwrap(), "--no-boot-files"]);
        assert_ne!(c.code, Some(0), "{name}: {}", c.stdout);
        assert_eq!(file_crc(&p), before, "{name}: changed");
    }
}

/// Issue 13 item 5: a GPT on 4096-byte sectors inside a fixed VHD (and a VHDX that says 4096)
/// is found.
#[test]
fn a_4k_gpt_inside_a_fixed_vhd_or_vhdx_is_found() {
    let Some((set, _, dir)) = setup("gpt-4k") else {
        return;
    };
    let raw = set.path("gpt-4k.raw");
    let vhd = dir.path().join("gpt-4k.vhd");
    qemu_convert(
        "raw",
        "vpc",
        Some("subformat=fixed,force_size=on"),
        &raw,
        &vhd,
    );
    let vhdx = dir.path().join("gpt-4k.vhdx");
    qemu_convert("raw", "vhdx", Some("log_size=1048576"), &raw, &vhdx);
    let (_, r) = info_json(&vhd, Duration::from_secs(120));
    assert_eq!(r["partition_table"], "gpt", "{r}");
    assert_eq!(r["sector_bytes"], 4096, "{r}");
    assert_eq!(r["partitions"].as_array().unwrap().len(), 2, "{r}");
    // qemu-img writes VHDX with 512-byte logical sectors: the VHDX says so, and only that is
    // tried (the 4096-byte GPT is not the disk's table under it)
    let (_, r) = info_json(&vhdx, Duration::from_secs(120));
    assert_eq!(r["container"]["vhdx"]["logical_sector_bytes"], 512, "{r}");
    assert_eq!(r["sector_bytes"], 512, "{r}");
    assert_ne!(r["partition_table"], "gpt", "{r}");
}

/// A differencing VHDX (the child built by tests/common/vhdx.rs over a qemu-img parent of the
/// four-primary disk) converts into the same Gen2 fixed VHD as its merged disk: the MBR block
/// is the child's (a new disk signature, which info and --keep-mbr show), a FAT32 block fully
/// and one partly present (garbage in the sectors whose bitmap bit is clear), an all-zero
/// block ZERO, the rest read from the parent.
#[test]
fn a_differencing_vhdx_converts_as_its_merged_disk() {
    use common::vhdx::{self as w, Block, Spec};
    let Some((_, base, dir)) = setup("convert-vhdx-diff") else {
        return;
    };
    let d = dir.path();
    let parent = d.join("parent.vhdx");
    qemu_convert(
        "raw",
        "vhdx",
        Some("subformat=dynamic,block_size=1048576"),
        &base,
        &parent,
    );
    let praw_path = d.join("parent.raw");
    qemu_convert("vhdx", "raw", None, &parent, &praw_path);
    let praw = fs::read(&praw_path).unwrap();
    let m = MIB as usize;
    let block = |b: usize| praw[b * m..(b + 1) * m].to_vec();
    let mut want = praw.clone();
    let mut blocks = Vec::new();
    // block 0: the MBR with another disk signature (0x1b8)
    let mut b0 = block(0);
    b0[0x1b8..0x1bc].copy_from_slice(&0x1234_abcdu32.to_le_bytes());
    want[..m].copy_from_slice(&b0);
    blocks.push((0u64, Block::Full(b0)));
    // block 20 (FAT32): the same bytes, in the child
    blocks.push((20, Block::Full(block(20))));
    // block 30 (FAT32): odd sectors in the child; the even ones hold garbage there
    let mut data = block(30);
    let present: Vec<bool> = (0..m / 512).map(|s| s % 2 == 1).collect();
    for s in (0..m / 512).step_by(2) {
        data[s * 512..(s + 1) * 512].fill(0xee);
    }
    blocks.push((30, Block::Partial { data, present }));
    // the first all-zero block past the first MiB: ZERO
    let zero = (1..praw.len() / m)
        .find(|&b| ![20, 30].contains(&b) && praw[b * m..(b + 1) * m].iter().all(|&x| x == 0))
        .expect("no all-zero MiB in the disk");
    blocks.push((zero as u64, Block::Zero));
    let pbytes = fs::read(&parent).unwrap();
    let spec = Spec {
        virtual_bytes: praw.len() as u64,
        block_bytes: MIB as u32,
        logical_sector_bytes: 512,
        data_write_guid: w::guid("d1ff0000-0000-4000-8000-000000000001"),
        virtual_disk_id: w::guid("d1ff0000-0000-4000-8000-000000000002"),
        parent_locator: Some(w::locator_item(
            w::LOCATOR_TYPE_VHDX,
            &[
                (
                    "parent_linkage",
                    &w::guid_string(&w::data_write_guid(&pbytes)),
                ),
                ("relative_path", ".\\parent.vhdx"),
                ("absolute_win32_path", "\\\\?\\E:\\VMs\\parent.vhdx"),
            ],
        )),
        blocks,
    };
    let child = d.join("child.vhdx");
    fs::write(&child, w::build(&spec)).unwrap();
    let merged = d.join("merged.raw");
    fs::write(&merged, &want).unwrap();
    let before = (file_crc(&parent), file_crc(&child));

    // info: the child's MBR, the chain, the locator
    let (_, r) = info_json(&child, Duration::from_secs(120));
    assert_eq!(r["format"], "vhdx", "{r}");
    assert_eq!(r["mbr"]["disk_signature"], 0x1234_abcd, "{r}");
    assert_eq!(r["partitions"].as_array().unwrap().len(), 4, "{r}");
    assert_eq!(r["container"]["chain"].as_array().unwrap().len(), 2, "{r}");
    assert!(r["container"]["vhdx"]["parent_locator"]
        .to_string()
        .contains("E:\\\\VMs"));

    // --keep-mbr: every byte of the merged disk
    let out = d.join("gen1.vhd");
    let r = vhdtool([
        "convert",
        child.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--keep-mbr",
    ]);
    assert_eq!(r.code, Some(0), "{}\n{}", r.stdout, r.stderr);
    assert_same_disk(&merged, &out);
    assert_fixed_whole_mib_sparse(&out, allocated(&base));

    // Gen2: GPT and ESP judged by sgdisk and fsck.fat, the kept partitions the merged bytes
    let boot = d.join("boot");
    fs::create_dir_all(boot.join("EFI/BOOT")).unwrap();
    fs::write(boot.join("EFI/BOOT/BOOTX64.EFI"), b"MZ stand-in").unwrap();
    let out = d.join("gen2.vhd");
    let r = vhdtool([
        "convert",
        child.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--boot-files",
        boot.to_str().unwrap(),
        "--verify",
    ]);
    assert_eq!(r.code, Some(0), "{}\n{}", r.stdout, r.stderr);
    assert_fixed_whole_mib_sparse(&out, allocated(&base));
    for &(start, size) in &mbr_partitions(&merged)[..3] {
        assert!(
            read_range(&out, start, size) == read_range(&merged, start, size),
            "partition at 0x{start:x} differs from the merged disk"
        );
    }
    let (_, report) = info_json(&out, Duration::from_secs(120));
    assert_eq!(report["gen2_ready"], true, "{report}");
    assert_eq!(report["azure_ready"], true, "{report}");
    assert_gpt_and_esp_clean(&out, d);
    assert_eq!(
        (file_crc(&parent), file_crc(&child)),
        before,
        "an input changed"
    );
}
