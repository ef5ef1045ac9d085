//! `vhdtool convert`, `validate` and `rollback` on generated MBR images, judged by independent
//! tools: `sgdisk -v` on every GPT we write, `fsck.fat -n` and `mdir` on every ESP,
//! `qemu-img info -f vpc` on every VHD, and CRC32s of every original partition before and after.
#![allow(clippy::restriction)] // tests: a panic is a failed test (the crate's panic lints are for src/)

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{require_tools, run_with_timeout, vhdtool, Form, Image, TempDir};
use serde_json::Value;

const JUDGES: &[(&str, &str)] = &[
    ("sgdisk", "gdisk"),
    ("fsck.fat", "dosfstools"),
    ("mdir", "mtools"),
    ("mcopy", "mtools"),
    ("qemu-img", "qemu-utils"),
];

/// A small boot-file tree: enough to prove the copy (several directories, a file spanning many
/// clusters, a long name).
fn boot_files(dir: &Path) -> PathBuf {
    let root = dir.join("boot-files");
    fs::create_dir_all(root.join("EFI/BOOT")).unwrap();
    fs::create_dir_all(root.join("EFI/vendor")).unwrap();
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let big: Vec<u8> = (0..300_000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    fs::write(root.join("EFI/BOOT/BOOTX64.EFI"), &big).unwrap();
    fs::write(
        root.join("EFI/BOOT/grub.cfg"),
        b"search.fs_uuid 0000 root\nconfigfile /boot/grub/grub.cfg\n",
    )
    .unwrap();
    fs::write(
        root.join("EFI/vendor/shimx64.efi.signed-copy"),
        &big[..1000],
    )
    .unwrap();
    root
}

fn crc_range(path: &Path, offset: u64, len: u64) -> u32 {
    use std::os::unix::fs::FileExt;
    let f = fs::File::open(path).unwrap();
    let mut h = crc32fast::Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut pos = 0;
    while pos < len {
        let n = (len - pos).min(buf.len() as u64) as usize;
        f.read_exact_at(&mut buf[..n], offset + pos).unwrap();
        h.update(&buf[..n]);
        pos += n as u64;
    }
    h.finalize()
}

fn file_crc(path: &Path) -> u32 {
    crc_range(path, 0, fs::metadata(path).unwrap().len())
}

fn tool_out(cmd: &mut Command) -> (i32, String) {
    let run = run_with_timeout(cmd, Duration::from_secs(120));
    (
        run.code.unwrap_or(-1),
        format!("{}{}", run.stdout, run.stderr),
    )
}

/// The disk of `image` as a raw file (a VHD without its footer), for tools that read raw disks.
fn raw_view(image: &Path, is_vhd: bool, tmp: &Path) -> PathBuf {
    if !is_vhd {
        return image.to_path_buf();
    }
    let out = tmp.join(format!(
        "{}.rawview",
        image.file_name().unwrap().to_string_lossy()
    ));
    let _ = fs::remove_file(&out);
    common::sparse_copy(image, &out);
    let len = fs::metadata(&out).unwrap().len();
    fs::OpenOptions::new()
        .write(true)
        .open(&out)
        .unwrap()
        .set_len(len - 512)
        .unwrap();
    out
}

/// Extract `len` bytes at `offset` to a new file.
fn extract(image: &Path, offset: u64, len: u64, out: &Path) {
    use std::os::unix::fs::FileExt;
    let f = fs::File::open(image).unwrap();
    let o = fs::File::create(out).unwrap();
    o.set_len(len).unwrap();
    let mut buf = vec![0u8; 1 << 20];
    let mut pos = 0;
    while pos < len {
        let n = (len - pos).min(buf.len() as u64) as usize;
        f.read_exact_at(&mut buf[..n], offset + pos).unwrap();
        if buf[..n].iter().any(|&b| b != 0) {
            o.write_all_at(&buf[..n], pos).unwrap();
        }
        pos += n as u64;
    }
}

/// The original data partitions of an MBR image (from `vhdtool info`, itself checked against
/// sfdisk by tests/info_oracle.rs): (start byte, length).
fn data_partitions(path: &Path) -> Vec<(u64, u64)> {
    let (_, report) = common::info_json(path, Duration::from_secs(30));
    let sb = report["sector_bytes"].as_u64().unwrap();
    report["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| !p["extended"].as_bool().unwrap())
        .map(|p| {
            (
                p["start_lba"].as_u64().unwrap() * sb,
                p["size_bytes"].as_u64().unwrap(),
            )
        })
        .collect()
}

fn convertible(img: &Image) -> bool {
    img.scheme == "mbr"
        && matches!(
            img.form,
            Form::Raw | Form::VhdFixedForce | Form::VhdFixedChs
        )
        && img.sector_bytes == 512
}

/// Convert `input` to `out` and judge the result with the independent tools.
fn convert_and_judge(img: &Image, input: &Path, out: &Path, boot: &Path, tmp: &Path) -> Value {
    let run = vhdtool([
        "convert".as_ref(),
        input.as_os_str(),
        "-o".as_ref(),
        out.as_os_str(),
        "--boot-files".as_ref(),
        boot.as_os_str(),
        "--json".as_ref(),
    ]);
    run.assert_sane();
    assert_eq!(
        run.exit_code(),
        0,
        "{}: convert failed:\n{}\n{}",
        img.file,
        run.stdout,
        run.stderr
    );
    let report: Value = serde_json::from_str(&run.stdout).unwrap();
    let plan = &report["validation"]["plan"];
    let is_vhd = img.form.is_vhd();
    let new_disk = plan["new_disk_bytes"].as_u64().unwrap();
    assert_eq!(
        fs::metadata(out).unwrap().len(),
        plan["new_file_bytes"].as_u64().unwrap(),
        "{}",
        img.file
    );
    assert_eq!(
        new_disk % (1 << 20),
        0,
        "{}: the new size is a whole number of MiB",
        img.file
    );

    // sgdisk -v: the GPT we wrote
    let raw = raw_view(out, is_vhd, tmp);
    let (code, text) = tool_out(Command::new("sgdisk").arg("-v").arg(&raw));
    assert!(
        code == 0 && text.contains("No problems found"),
        "{}: sgdisk -v:\n{text}",
        img.file
    );
    // the kernel's view of the table, through sfdisk (another independent reader)
    let (code, text) = tool_out(Command::new("sfdisk").arg("--json").arg(&raw));
    assert_eq!(code, 0, "{}: sfdisk --json: {text}", img.file);
    let sf: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(sf["partitiontable"]["label"], "gpt", "{}", img.file);
    let entries = sf["partitiontable"]["partitions"].as_array().unwrap();
    assert_eq!(
        entries.len(),
        plan["partitions"].as_array().unwrap().len(),
        "{}",
        img.file
    );

    // the ESP: fsck.fat -n, mdir, mcopy
    let esp = &plan["esp"];
    let esp_off = esp["first_lba"].as_u64().unwrap() * 512;
    let esp_len = esp["size_bytes"].as_u64().unwrap();
    let esp_file = tmp.join(format!("{}.esp", img.file));
    extract(out, esp_off, esp_len, &esp_file);
    let (code, text) = tool_out(Command::new("fsck.fat").arg("-n").arg(&esp_file));
    assert_eq!(code, 0, "{}: fsck.fat -n:\n{text}", img.file);
    let (code, text) = tool_out(
        Command::new("mdir")
            .env("MTOOLS_SKIP_CHECK", "1")
            .args(["-b", "-/", "-i"])
            .arg(&esp_file)
            .arg("::/"),
    );
    assert_eq!(code, 0, "{}: mdir: {text}", img.file);
    for f in [
        "EFI/BOOT/BOOTX64.EFI",
        "EFI/BOOT/grub.cfg",
        "EFI/vendor/shimx64.efi.signed-copy",
    ] {
        assert!(
            text.contains(f),
            "{}: mdir does not list {f}:\n{text}",
            img.file
        );
    }
    let got = tmp.join(format!("{}.bootx64", img.file));
    let (code, text) = tool_out(
        Command::new("mcopy")
            .env("MTOOLS_SKIP_CHECK", "1")
            .arg("-n")
            .arg("-i")
            .arg(&esp_file)
            .arg("::/EFI/BOOT/BOOTX64.EFI")
            .arg(&got),
    );
    assert_eq!(code, 0, "{}: mcopy: {text}", img.file);
    assert_eq!(
        fs::read(&got).unwrap(),
        fs::read(boot.join("EFI/BOOT/BOOTX64.EFI")).unwrap(),
        "{}: BOOTX64.EFI differs",
        img.file
    );

    // qemu-img reads the VHD at its new size
    if is_vhd {
        let (code, text) = tool_out(
            Command::new("qemu-img")
                .args(["info", "-f", "vpc", "--output=json"])
                .arg(out),
        );
        assert_eq!(code, 0, "{}: qemu-img info: {text}", img.file);
        let qi: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            qi["virtual-size"].as_u64().unwrap(),
            new_disk,
            "{}: qemu-img virtual size",
            img.file
        );
    }

    // our own reader agrees, and the verdicts
    let (run, info) = common::info_json(out, Duration::from_secs(30));
    assert_eq!(
        run.exit_code(),
        0,
        "{}: info on the result: {}",
        img.file,
        run.stdout
    );
    assert_eq!(info["partition_table"], "gpt", "{}", img.file);
    assert_eq!(
        info["gen2_ready"],
        true,
        "{}: not gen2_ready: {:?}",
        img.file,
        common::findings(&info)
    );
    if is_vhd {
        assert_eq!(
            info["azure_ready"],
            true,
            "{}: not azure_ready: {:?}",
            img.file,
            common::findings(&info)
        );
    }
    assert!(
        !common::findings(&info)
            .iter()
            .any(|(sev, _)| sev == "error"),
        "{}: error findings on the result: {:?}",
        img.file,
        common::findings(&info)
    );

    // every byte of every original partition is unchanged
    for (start, len) in data_partitions(input) {
        assert_eq!(
            crc_range(input, start, len),
            crc_range(out, start, len),
            "{}: partition at byte {start} changed",
            img.file
        );
    }
    report
}

#[test]
fn converts_every_mbr_layout_and_independent_tools_agree() {
    if !require_tools(JUDGES) {
        return;
    }
    let Some(images) = common::images() else {
        return;
    };
    let tmp = TempDir::new("convert-all");
    let boot = boot_files(tmp.path());
    let mut done = 0;
    for img in images.list.iter().filter(|i| convertible(i)) {
        let input = images.path(&img.file);
        let before = file_crc(&input);
        let out = tmp.path().join(format!("{}.gen2", img.file));
        let report = convert_and_judge(img, &input, &out, &boot, tmp.path());
        assert_eq!(
            file_crc(&input),
            before,
            "{}: -o must leave the input untouched",
            img.file
        );
        // the same input gives byte-identical output
        let again = tmp.path().join(format!("{}.gen2-again", img.file));
        let run = vhdtool([
            "convert".as_ref(),
            input.as_os_str(),
            "-o".as_ref(),
            again.as_os_str(),
            "--boot-files".as_ref(),
            boot.as_os_str(),
        ]);
        assert_eq!(run.exit_code(), 0, "{}: {}", img.file, run.stderr);
        assert_eq!(
            file_crc(&out),
            file_crc(&again),
            "{}: two conversions differ",
            img.file
        );
        let _ = report;
        for f in [out, again] {
            let _ = fs::remove_file(f);
        }
        done += 1;
    }
    assert!(
        done >= 5,
        "expected at least 5 convertible MBR images, converted {done}"
    );
}

#[test]
fn in_place_conversion_rolls_back_byte_for_byte() {
    if !require_tools(JUDGES) {
        return;
    }
    let Some(images) = common::images() else {
        return;
    };
    let tmp = TempDir::new("convert-inplace");
    let boot = boot_files(tmp.path());
    for img in images
        .list
        .iter()
        .filter(|i| convertible(i) && i.form != Form::Raw)
    {
        let work = tmp.path().join(&img.file);
        common::sparse_copy(&images.path(&img.file), &work);
        let before = file_crc(&work);
        let before_len = fs::metadata(&work).unwrap().len();
        let run = vhdtool([
            "convert".as_ref(),
            work.as_os_str(),
            "--boot-files".as_ref(),
            boot.as_os_str(),
        ]);
        assert_eq!(
            run.exit_code(),
            0,
            "{}: {}\n{}",
            img.file,
            run.stdout,
            run.stderr
        );
        let journal = tmp.path().join(format!("{}.vhdtool-journal", img.file));
        assert!(journal.exists(), "{}: no journal", img.file);
        // a second conversion is refused: already GPT
        let again = vhdtool(["convert".as_ref(), work.as_os_str()]);
        assert_eq!(
            again.exit_code(),
            8,
            "{}: converting a GPT disk: {}",
            img.file,
            again.stdout
        );
        let run = vhdtool(["rollback".as_ref(), work.as_os_str()]);
        assert_eq!(run.exit_code(), 0, "{}: rollback: {}", img.file, run.stderr);
        assert_eq!(
            fs::metadata(&work).unwrap().len(),
            before_len,
            "{}",
            img.file
        );
        assert_eq!(
            file_crc(&work),
            before,
            "{}: rollback is not byte-identical",
            img.file
        );
        assert!(
            !journal.exists(),
            "{}: journal left after rollback",
            img.file
        );
        let _ = fs::remove_file(&work);
    }
}

/// Kill the conversion before each of its mutating operations in turn (journal, resize, every
/// write); `rollback` must give back the original bytes every time.
#[test]
fn killed_at_every_write_rollback_restores_the_original() {
    let Some(images) = common::images() else {
        return;
    };
    let tmp = TempDir::new("convert-faults");
    let boot = boot_files(tmp.path());
    for name in ["linux-mbr.force.vhd", "ext-logicals.force.vhd"] {
        let Some(img) = images.list.iter().find(|i| i.file == name) else {
            panic!("{name} missing from the manifest")
        };
        let src = images.path(&img.file);
        let original = file_crc(&src);
        let original_len = fs::metadata(&src).unwrap().len();
        let mut n = 0;
        loop {
            let work = tmp.path().join(format!("{name}.{n}"));
            common::sparse_copy(&src, &work);
            let mut cmd = Command::new(common::bin());
            cmd.arg("convert")
                .arg(&work)
                .arg("--boot-files")
                .arg(&boot)
                .env("VHDTOOL_FAULT_AFTER_WRITES", n.to_string());
            let run = run_with_timeout(&mut cmd, Duration::from_secs(60));
            let finished = run.code == Some(0);
            assert!(
                finished || run.code.is_none(),
                "{name} fault {n}: expected an abort or success, got {:?}: {}",
                run.code,
                run.stderr
            );
            let rb = vhdtool(["rollback".as_ref(), work.as_os_str()]);
            assert_eq!(
                rb.exit_code(),
                0,
                "{name} fault {n}: rollback failed: {}",
                rb.stderr
            );
            assert_eq!(
                fs::metadata(&work).unwrap().len(),
                original_len,
                "{name} fault {n}: length"
            );
            assert_eq!(file_crc(&work), original, "{name} fault {n}: not restored");
            let _ = fs::remove_file(&work);
            if finished {
                break;
            }
            n += 1;
            assert!(n < 500, "{name}: the conversion never finished");
        }
        assert!(n >= 6, "{name}: only {n} mutating operations seen");
    }
}

#[test]
fn refusals_leave_the_image_untouched() {
    let Some(images) = common::images() else {
        return;
    };
    let tmp = TempDir::new("convert-refuse");
    for img in &images.list {
        let (expected, why) = match (img.form, img.scheme.as_str()) {
            (Form::VhdDynamic | Form::VhdDifferencing, _) => (5, "dynamic/differencing"),
            (Form::Raw | Form::VhdFixedForce, "gpt" | "hybrid") if img.sector_bytes == 512 => {
                (8, "already GPT")
            }
            _ => continue,
        };
        let work = tmp.path().join(&img.file);
        common::sparse_copy(&images.path(&img.file), &work);
        let before = file_crc(&work);
        let run = vhdtool(["convert".as_ref(), work.as_os_str()]);
        run.assert_sane();
        assert_eq!(
            run.exit_code(),
            expected,
            "{} ({why}): {}\n{}",
            img.file,
            run.stdout,
            run.stderr
        );
        assert_eq!(
            file_crc(&work),
            before,
            "{}: modified by a refused conversion",
            img.file
        );
        assert!(!tmp
            .path()
            .join(format!("{}.vhdtool-journal", img.file))
            .exists());
        let _ = fs::remove_file(&work);
    }
}

#[test]
fn a_locked_image_is_refused() {
    let Some(images) = common::images() else {
        return;
    };
    let tmp = TempDir::new("convert-lock");
    let work = tmp.path().join("locked.vhd");
    common::sparse_copy(&images.path("linux-mbr.force.vhd"), &work);
    let before = file_crc(&work);
    let holder = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&work)
        .unwrap();
    holder.lock().unwrap();
    let run = vhdtool(["convert".as_ref(), work.as_os_str()]);
    assert_eq!(run.exit_code(), 6, "{}\n{}", run.stdout, run.stderr);
    assert!(run.stderr.contains("locked"), "{}", run.stderr);
    drop(holder);
    assert_eq!(file_crc(&work), before);
}

#[test]
fn validate_prints_checks_and_plan_and_writes_nothing() {
    let Some(images) = common::images() else {
        return;
    };
    let path = images.path("linux-mbr.force.vhd");
    let before = file_crc(&path);
    // the image is Linux without signed boot loaders: an empty ESP has to be asked for
    let run = vhdtool([
        "validate".as_ref(),
        path.as_os_str(),
        "--json".as_ref(),
        "--no-boot-files".as_ref(),
    ]);
    assert_eq!(run.exit_code(), 0, "{}", run.stdout);
    let v: Value = serde_json::from_str(&run.stdout).unwrap();
    let ids: Vec<&str> = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    for id in [
        "image.footer",
        "table.mbr",
        "layout.inside-disk",
        "layout.no-overlap",
        "layout.primary-gpt-room",
        "layout.gpt-entry-free",
        "layout.encrypted",
        "layout.sector-size",
        "room.esp",
        "azure.size-mib",
    ] {
        assert!(ids.contains(&id), "check {id} missing: {ids:?}");
    }
    let regions = v["plan"]["regions"].as_array().unwrap();
    assert!(regions
        .iter()
        .any(|r| r["what"].as_str().unwrap().contains("primary GPT")));
    assert!(regions
        .iter()
        .any(|r| r["what"].as_str().unwrap().contains("backup GPT")));
    assert_eq!(file_crc(&path), before);
    // --room free on a disk whose last partition ends at the last sector: refused with a reason
    let run = vhdtool([
        "validate".as_ref(),
        path.as_os_str(),
        "--room".as_ref(),
        "free".as_ref(),
    ]);
    assert_eq!(run.exit_code(), 1, "{}", run.stdout);
    assert!(
        run.stdout.contains("room.esp") && run.stdout.contains("fix:"),
        "{}",
        run.stdout
    );
}

/// `--hybrid` on a disk without GRUB's BIOS loader: refused before any write (exit 5), the
/// check names what was found and the way out.
#[test]
fn hybrid_without_grub_is_refused_and_writes_nothing() {
    let Some(images) = common::images() else {
        return;
    };
    let tmp = TempDir::new("convert-hybrid");
    let work = tmp.path().join("nogrub.vhd");
    common::sparse_copy(&images.path("linux-mbr.force.vhd"), &work);
    let before = file_crc(&work);
    let run = vhdtool([
        "convert".as_ref(),
        work.as_os_str(),
        "--hybrid".as_ref(),
        "--no-boot-files".as_ref(),
        "--json".as_ref(),
    ]);
    assert_eq!(run.exit_code(), 5, "{}\n{}", run.stdout, run.stderr);
    let v: Value = serde_json::from_str(&run.stdout).unwrap();
    let check = v["validation"]["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == "boot.hybrid")
        .cloned()
        .unwrap_or_else(|| panic!("no boot.hybrid check: {}", run.stdout));
    assert_eq!(check["status"], "fail");
    assert!(
        check["detail"]
            .as_str()
            .unwrap()
            .contains("not GRUB's boot.img"),
        "{check}"
    );
    assert!(check["fix"].as_str().unwrap().contains("without --hybrid"));
    assert_eq!(file_crc(&work), before);
    assert!(!tmp.path().join("nogrub.vhd.vhdtool-journal").exists());
}

/// `-o` onto another filesystem (/dev/shm, tmpfs): `copy_file_range` answers EXDEV there and the
/// copy falls back to pread/pwrite; the result equals a copy made on the same filesystem, and
/// nothing is left under the temporary name.
#[test]
fn output_on_another_filesystem_is_the_same_copy() {
    let Some(images) = common::images() else {
        return;
    };
    let shm = Path::new("/dev/shm");
    if !shm.is_dir() {
        assert!(
            !common::under_ci(),
            "/dev/shm is missing: the EXDEV fallback is not tested"
        );
        eprintln!("skipped: no /dev/shm (another filesystem to copy to)");
        return;
    }
    let tmp = TempDir::new("convert-exdev");
    let src = images.path("linux-mbr.force.vhd");
    let here = tmp.path().join("here.vhd");
    let there = shm.join(format!("vhdtool-exdev-{}.vhd", std::process::id()));
    let _ = fs::remove_file(&there);
    let before = file_crc(&src);
    for out in [&here, &there] {
        let run = vhdtool([
            "convert".as_ref(),
            src.as_os_str(),
            "-o".as_ref(),
            out.as_os_str(),
            "--no-boot-files".as_ref(),
            "--room".as_ref(),
            "grow".as_ref(),
        ]);
        assert_eq!(run.exit_code(), 0, "{}\n{}", run.stdout, run.stderr);
    }
    let same = fs::read(&here).unwrap() == fs::read(&there).unwrap();
    let partial = shm.join(format!(
        ".vhdtool-exdev-{}.vhd.vhdtool-partial",
        std::process::id()
    ));
    let left = partial.exists();
    let _ = fs::remove_file(&there);
    assert!(
        same,
        "the copy on tmpfs differs from the copy on the same filesystem"
    );
    assert!(!left, "a partial file was left behind");
    assert_eq!(file_crc(&src), before, "the input of -o was written");
}

/// A `convert -o` killed at any write leaves nothing under OUTPUT (the copy is built under a
/// temporary name and renamed last), and a rerun replaces the stale partial copy.
#[test]
fn killed_convert_o_never_leaves_a_partial_output() {
    let Some(images) = common::images() else {
        return;
    };
    let tmp = TempDir::new("convert-o-kill");
    let src = images.path("linux-mbr.force.vhd");
    let out = tmp.path().join("out.vhd");
    let partial = tmp.path().join(".out.vhd.vhdtool-partial");
    let args = [
        "convert".as_ref(),
        src.as_os_str(),
        "-o".as_ref(),
        out.as_os_str(),
        "--no-boot-files".as_ref(),
    ];
    for n in 0..3 {
        let mut cmd = Command::new(common::bin());
        cmd.args(args)
            .env("VHDTOOL_FAULT_AFTER_WRITES", n.to_string());
        let run = run_with_timeout(&mut cmd, Duration::from_secs(120));
        assert_ne!(run.code, Some(0), "fault {n} did not stop the conversion");
        assert!(
            !out.exists(),
            "killed at write {n}: {} exists",
            out.display()
        );
        assert!(
            partial.exists(),
            "killed at write {n}: no partial copy to replace"
        );
    }
    let run = vhdtool(args);
    assert_eq!(run.exit_code(), 0, "{}\n{}", run.stdout, run.stderr);
    assert!(out.exists() && !partial.exists());
    let again = vhdtool(args);
    assert_eq!(
        again.exit_code(),
        6,
        "an existing output must not be overwritten"
    );
}

/// `--esp-size`: below FAT32's minimum a failure that names that minimum; from it up to
/// Microsoft's minimum a warning; from there a pass (the check and its message agree).
#[test]
fn esp_size_check_and_message_agree() {
    let Some(images) = common::images() else {
        return;
    };
    let img = images.path("linux-mbr.force.vhd");
    let status = |size: &str| {
        let run = vhdtool([
            "validate".as_ref(),
            img.as_os_str(),
            "--no-boot-files".as_ref(),
            "--room".as_ref(),
            "grow".as_ref(),
            "--esp-size".as_ref(),
            size.as_ref(),
            "--json".as_ref(),
        ]);
        let v: Value = serde_json::from_str(&run.stdout).expect("validate --json");
        let c = v["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["id"] == "esp.size")
            .cloned()
            .expect("an esp.size check");
        (run.exit_code(), c)
    };
    let (code, c) = status("8M");
    assert_eq!((code, c["status"].as_str()), (1, Some("fail")), "{c}");
    assert!(
        c["fix"].as_str().unwrap().contains("at least 33 MiB"),
        "{c}"
    );
    let (code, c) = status("33M");
    assert_eq!((code, c["status"].as_str()), (0, Some("warn")), "{c}");
    assert!(c["detail"].as_str().unwrap().contains("100 MiB"), "{c}");
    let (code, c) = status("100M");
    assert_eq!((code, c["status"].as_str()), (0, Some("pass")), "{c}");
}
