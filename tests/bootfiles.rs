//! Boot files taken from the image itself (`convert` without `--boot-files`), on small images
//! built here with sfdisk + `mke2fs -d` (no mounts): a Debian-like root, a RHEL-like root
//! (`/boot/efi/EFI/<vendor>/` as a plain directory), a separate /boot, a root without shim or
//! grub (refused before any write, naming the packages), a corrupt superblock (refused, no
//! panic) and a non-Linux image (today's behaviour: an empty ESP and a warning). The ESP
//! written is judged with mtools (`mcopy`) and blkid.
//!
//! The QEMU boot proof of the same feature (real shim, grub and kernel, Secure Boot) is in
//! tests/boot.rs.
#![allow(clippy::restriction)] // tests: a panic is a failed test (the crate's panic lints are for src/)

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{require_tools, run_with_timeout, tool, vhdtool, TempDir};
use serde_json::Value;

const TOOLS: &[(&str, &str)] = &[
    ("sfdisk", "fdisk"),
    ("mkfs.ext4", "e2fsprogs"),
    ("mkfs.fat", "dosfstools"),
    ("mcopy", "mtools"),
    ("blkid", "util-linux"),
];

const ROOT_UUID: &str = "5648445a-1111-4000-8000-00000000a001";
const BOOT_UUID: &str = "5648445a-1111-4000-8000-00000000b007";
const DISK_MIB: u64 = 64;

/// Deterministic bytes standing in for a signed EFI binary.
fn blob(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn write(root: &Path, rel: &str, bytes: &[u8]) {
    let p = root.join(rel.trim_start_matches('/'));
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(&p, bytes).unwrap();
}

fn ok(cmd: &mut Command, what: &str) {
    let r = run_with_timeout(cmd, Duration::from_secs(120));
    assert!(
        !r.timed_out && r.code == Some(0),
        "{what} failed: {}\n{}{}",
        r.command,
        r.stdout,
        r.stderr
    );
}

/// A raw MBR disk of `DISK_MIB` MiB with one ext4 partition per `(tree, uuid, MiB or 0 = rest)`,
/// from LBA 2048, the first one active. Returns the image path.
fn disk(dir: &Path, name: &str, parts: &[(&Path, &str, u64)]) -> PathBuf {
    let img = dir.join(name);
    let f = fs::File::create(&img).unwrap();
    f.set_len(DISK_MIB << 20).unwrap();
    drop(f);
    let mut table = String::from("label: dos\nlabel-id: 0x56484454\nunit: sectors\n\n");
    let mut start = 2048u64;
    let mut spans = Vec::new();
    for (i, (_, _, mib)) in parts.iter().enumerate() {
        let sectors = if *mib == 0 {
            (DISK_MIB << 11) - start
        } else {
            mib << 11
        };
        table.push_str(&format!(
            "start={start}, size={sectors}, type=83{}\n",
            if i == 0 { ", bootable" } else { "" }
        ));
        spans.push((start, sectors));
        start += sectors;
    }
    let mut sf = tool("sfdisk");
    sf.args(["--quiet", "--no-reread", "--no-tell-kernel"])
        .arg(&img)
        .stdin(std::process::Stdio::piped());
    let mut child = sf
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("sfdisk");
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(table.as_bytes())
        .unwrap();
    assert!(child.wait().unwrap().success(), "sfdisk failed");
    for ((tree, uuid, _), (s, n)) in parts.iter().zip(&spans) {
        ok(
            tool("mkfs.ext4")
                .args(["-q", "-F", "-U", uuid, "-E"])
                .arg(format!("offset={},root_owner=0:0", s * 512))
                .arg("-d")
                .arg(tree)
                .arg(&img)
                .arg(format!("{}k", n / 2)),
            "mkfs.ext4",
        );
    }
    img
}

/// A Debian-like root tree: os-release, grub.cfg, and (with `efi`) shim-signed's and
/// grub-efi-amd64-signed's files.
fn debian_root(dir: &Path, efi: bool, grub_in_root: bool) -> PathBuf {
    let r = dir.join("debian-root");
    write(
        &r,
        "etc/os-release",
        b"PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nNAME=\"Debian GNU/Linux\"\nID=debian\n",
    );
    write(&r, "etc/fstab", b"# test\n");
    if grub_in_root {
        write(&r, "boot/grub/grub.cfg", b"# bios grub.cfg\n");
    } else {
        fs::create_dir_all(r.join("boot")).unwrap();
    }
    if efi {
        write(&r, "usr/lib/shim/shimx64.efi.signed", &blob(1, 900_000));
        write(&r, "usr/lib/shim/mmx64.efi.signed", &blob(2, 700_000));
        write(&r, "usr/lib/shim/fbx64.efi.signed", &blob(3, 70_000));
        write(
            &r,
            "usr/lib/shim/BOOTX64.CSV",
            "shimx64.efi,debian,,This is the boot entry for debian\n".as_bytes(),
        );
        write(
            &r,
            "usr/lib/grub/x86_64-efi-signed/grubx64.efi.signed",
            &blob(4, 2_000_000),
        );
    }
    r
}

/// `convert IMG -o OUT --json [extra]`; returns the run and its JSON.
fn convert(img: &Path, out: &Path, extra: &[&str]) -> (common::Run, Value) {
    let mut args: Vec<std::ffi::OsString> = vec![
        "convert".into(),
        img.into(),
        "-o".into(),
        out.into(),
        "--json".into(),
    ];
    args.extend(extra.iter().map(Into::into));
    let run = vhdtool(args);
    run.assert_sane();
    let v: Value = serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("convert --json: {e}\n{}\n{}", run.stdout, run.stderr));
    (run, v)
}

/// Byte offset of the ESP in the converted image, from the plan.
fn esp_offset(v: &Value) -> u64 {
    v["validation"]["plan"]["esp"]["first_lba"]
        .as_u64()
        .unwrap()
        * 512
}

/// A file of the ESP, read with mtools.
fn esp_file(img: &Path, offset: u64, path: &str) -> Option<Vec<u8>> {
    let out = tool("mcopy")
        .arg("-n")
        .arg("-i")
        .arg(format!("{}@@{offset}", img.display()))
        .arg(format!("::{path}"))
        .arg("-")
        .env("MTOOLS_SKIP_CHECK", "1")
        .output()
        .unwrap();
    out.status.success().then_some(out.stdout)
}

fn blkid_uuid(img: &Path, offset: u64) -> String {
    let out = tool("blkid")
        .args(["-p", "-o", "value", "-s", "UUID", "-O"])
        .arg(offset.to_string())
        .arg(img)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn check_found_layout(
    out: &Path,
    v: &Value,
    vendor: &str,
    shim: &[u8],
    grub: &[u8],
    stub: &str,
) -> u64 {
    let off = esp_offset(v);
    for (path, want) in [
        (format!("EFI/{vendor}/shimx64.efi"), shim),
        (format!("EFI/{vendor}/grubx64.efi"), grub),
        ("EFI/BOOT/BOOTX64.EFI".to_string(), shim),
        ("EFI/BOOT/grubx64.efi".to_string(), grub),
        (format!("EFI/{vendor}/grub.cfg"), stub.as_bytes()),
        ("EFI/BOOT/grub.cfg".to_string(), stub.as_bytes()),
    ] {
        let got = esp_file(out, off, &path).unwrap_or_else(|| panic!("{path} missing from ESP"));
        assert!(got == want, "{path}: content differs from its source");
    }
    assert!(
        esp_file(out, off, "EFI/BOOT/fbx64.efi").is_none(),
        "fbx64.efi must not be in EFI/BOOT (shim would run the fallback and reset)"
    );
    off
}

#[test]
fn debian_root_boot_files_are_taken_from_the_image() {
    if !require_tools(TOOLS) {
        return;
    }
    let tmp = TempDir::new("bootfiles-debian");
    let root = debian_root(tmp.path(), true, true);
    let img = disk(tmp.path(), "debian.raw", &[(&root, ROOT_UUID, 0)]);
    let out = tmp.path().join("debian-gen2.raw");
    let (run, v) = convert(&img, &out, &[]);
    assert_eq!(run.exit_code(), 0, "{}\n{}", run.stdout, run.stderr);
    let lb = &v["linux_boot"];
    assert_eq!(lb["family"], "debian");
    assert_eq!(lb["vendor"], "debian");
    assert_eq!(lb["root_uuid"], ROOT_UUID);
    assert!(lb["boot_uuid"].is_null());
    assert_eq!(lb["grub_cfg"], "partition 1:/boot/grub/grub.cfg");
    let sources: Vec<&str> = lb["used"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["source"].as_str().unwrap())
        .collect();
    assert!(sources.contains(&"partition 1:/usr/lib/shim/shimx64.efi.signed"));
    let stub = format!(
        "search.fs_uuid {ROOT_UUID} root\nset prefix=($root)'/boot/grub'\nconfigfile $prefix/grub.cfg\n"
    );
    let off = check_found_layout(
        &out,
        &v,
        "debian",
        &blob(1, 900_000),
        &blob(4, 2_000_000),
        &stub,
    );
    assert_eq!(
        esp_file(&out, off, "EFI/debian/mmx64.efi").as_deref(),
        Some(&blob(2, 700_000)[..])
    );
    assert!(esp_file(&out, off, "EFI/debian/BOOTX64.CSV").is_some());
    // the fstab note names the ESP's FAT volume id as blkid prints it
    let esp_uuid = blkid_uuid(&out, off);
    assert_eq!(esp_uuid.len(), 9, "blkid UUID of the ESP: {esp_uuid:?}");
    let notes: Vec<&str> = v["guest_notes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap())
        .collect();
    assert!(
        notes
            .iter()
            .any(|n| n.contains(&format!("UUID={esp_uuid} /boot/efi vfat"))),
        "{notes:?}"
    );
    assert!(notes.iter().any(|n| n.contains("grub-pc")), "{notes:?}");
    // validate says the same, in text
    let val = vhdtool(["validate".as_ref(), img.as_os_str()]);
    assert_eq!(val.exit_code(), 0, "{}", val.stdout);
    assert!(val.stdout.contains("pass  boot.files"), "{}", val.stdout);
    assert!(
        val.stdout.contains("EFI/debian/shimx64.efi"),
        "{}",
        val.stdout
    );
}

#[test]
fn root_without_shim_or_grub_is_refused_before_any_write() {
    if !require_tools(TOOLS) {
        return;
    }
    let tmp = TempDir::new("bootfiles-missing");
    let root = debian_root(tmp.path(), false, true);
    let img = disk(tmp.path(), "nofiles.raw", &[(&root, ROOT_UUID, 0)]);
    let before = fs::read(&img).unwrap();
    let out = tmp.path().join("never.raw");
    let (run, v) = convert(&img, &out, &[]);
    assert_eq!(run.exit_code(), 7, "{}\n{}", run.stdout, run.stderr);
    let check = v["validation"]["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == "boot.files")
        .expect("a boot.files check");
    assert_eq!(check["status"], "fail");
    let fix = check["fix"].as_str().unwrap();
    assert!(
        fix.contains("shim-signed grub-efi-amd64-signed"),
        "the fix must name the packages: {fix}"
    );
    assert!(fix.contains("--boot-files"), "{fix}");
    assert!(!out.exists(), "a refused conversion created its output");
    // in place: refused too, image untouched, no journal
    let run = vhdtool(["convert".as_ref(), img.as_os_str()]);
    assert_eq!(run.exit_code(), 7, "{}", run.stdout);
    assert!(run.stdout.contains("shim-signed grub-efi-amd64-signed"));
    assert!(fs::read(&img).unwrap() == before, "the image was modified");
    assert!(!tmp.path().join("nofiles.raw.vhdtool-journal").exists());
    // --no-boot-files: an empty ESP, deliberately
    let (run, v) = convert(&img, &out, &["--no-boot-files"]);
    assert_eq!(run.exit_code(), 0, "{}\n{}", run.stdout, run.stderr);
    assert!(v["esp_files"].as_array().unwrap().is_empty());
    // and the two options exclude each other
    let run = vhdtool([
        "convert".as_ref(),
        img.as_os_str(),
        "--no-boot-files".as_ref(),
        "--boot-files".as_ref(),
        tmp.path().as_os_str(),
    ]);
    assert_eq!(run.exit_code(), 2, "{}", run.stderr);
}

#[test]
fn separate_boot_partition_gets_a_stub_for_its_uuid() {
    if !require_tools(TOOLS) {
        return;
    }
    let tmp = TempDir::new("bootfiles-sepboot");
    let root = debian_root(tmp.path(), true, false);
    let boot = tmp.path().join("bootfs");
    write(&boot, "grub/grub.cfg", b"# bios grub.cfg on /boot\n");
    let img = disk(
        tmp.path(),
        "sep.raw",
        &[(&boot, BOOT_UUID, 16), (&root, ROOT_UUID, 0)],
    );
    let out = tmp.path().join("sep-gen2.raw");
    let (run, v) = convert(&img, &out, &[]);
    assert_eq!(run.exit_code(), 0, "{}\n{}", run.stdout, run.stderr);
    let lb = &v["linux_boot"];
    assert_eq!(lb["root_uuid"], ROOT_UUID);
    assert_eq!(lb["boot_uuid"], BOOT_UUID);
    assert_eq!(lb["grub_cfg"], "partition 1:/grub/grub.cfg");
    let stub = format!(
        "search.fs_uuid {BOOT_UUID} root\nset prefix=($root)'/grub'\nconfigfile $prefix/grub.cfg\n"
    );
    check_found_layout(
        &out,
        &v,
        "debian",
        &blob(1, 900_000),
        &blob(4, 2_000_000),
        &stub,
    );
}

#[test]
fn rhel_family_files_in_boot_efi_directory() {
    if !require_tools(TOOLS) {
        return;
    }
    let tmp = TempDir::new("bootfiles-rhel");
    let r = tmp.path().join("alma-root");
    write(
        &r,
        "etc/os-release",
        b"NAME=\"AlmaLinux\"\nID=\"almalinux\"\nID_LIKE=\"rhel centos fedora\"\nPRETTY_NAME=\"AlmaLinux 9.4\"\n",
    );
    write(&r, "boot/grub2/grub.cfg", b"# bios grub2.cfg\n");
    write(&r, "boot/efi/EFI/almalinux/shimx64.efi", &blob(5, 950_000));
    write(
        &r,
        "boot/efi/EFI/almalinux/grubx64.efi",
        &blob(6, 2_500_000),
    );
    write(&r, "boot/efi/EFI/almalinux/mmx64.efi", &blob(7, 800_000));
    write(&r, "boot/efi/EFI/BOOT/BOOTX64.EFI", &blob(5, 950_000));
    write(&r, "boot/efi/EFI/BOOT/fbx64.efi", &blob(8, 80_000));
    let img = disk(tmp.path(), "alma.raw", &[(&r, ROOT_UUID, 0)]);
    let out = tmp.path().join("alma-gen2.raw");
    let (run, v) = convert(&img, &out, &[]);
    assert_eq!(run.exit_code(), 0, "{}\n{}", run.stdout, run.stderr);
    assert_eq!(v["linux_boot"]["family"], "rhel");
    assert_eq!(v["linux_boot"]["vendor"], "almalinux");
    let stub = format!(
        "search.fs_uuid {ROOT_UUID} root\nset prefix=($root)'/boot/grub2'\nconfigfile $prefix/grub.cfg\n"
    );
    check_found_layout(
        &out,
        &v,
        "almalinux",
        &blob(5, 950_000),
        &blob(6, 2_500_000),
        &stub,
    );
    let notes = v["guest_notes"].to_string();
    assert!(notes.contains("grub2-efi-x64"), "{notes}");
}

#[test]
fn corrupt_superblock_is_refused_cleanly() {
    if !require_tools(TOOLS) {
        return;
    }
    let tmp = TempDir::new("bootfiles-corrupt");
    let root = debian_root(tmp.path(), true, true);
    let img = disk(tmp.path(), "corrupt.raw", &[(&root, ROOT_UUID, 0)]);
    // s_blocks_count_lo of the ext4 at LBA 2048 (superblock at +0x400, field at +0x04): huge
    use std::os::unix::fs::FileExt;
    let f = fs::OpenOptions::new().write(true).open(&img).unwrap();
    f.write_all_at(&0xffff_fff0u32.to_le_bytes(), 2048 * 512 + 0x404)
        .unwrap();
    drop(f);
    let out = tmp.path().join("corrupt-gen2.raw");
    let (run, v) = convert(&img, &out, &[]);
    assert_eq!(run.exit_code(), 7, "{}\n{}", run.stdout, run.stderr);
    let detail = v["validation"]["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == "boot.files")
        .map(|c| c["detail"].as_str().unwrap().to_string())
        .unwrap();
    assert!(detail.contains("partition 1"), "{detail}");
    assert!(!out.exists());
}

#[test]
fn non_linux_image_is_a_data_disk_unless_boot_files_are_named() {
    if !require_tools(TOOLS) {
        return;
    }
    let tmp = TempDir::new("bootfiles-fat");
    let img = tmp.path().join("fat.raw");
    let f = fs::File::create(&img).unwrap();
    f.set_len(DISK_MIB << 20).unwrap();
    drop(f);
    let mut child = tool("sfdisk")
        .args(["--quiet", "--no-reread", "--no-tell-kernel"])
        .arg(&img)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"label: dos\nunit: sectors\n\nstart=2048, type=0c, bootable\n")
        .unwrap();
    assert!(child.wait().unwrap().success());
    ok(
        tool("mkfs.fat")
            .args(["-F", "32", "--offset", "2048"])
            .arg(&img)
            .arg(((DISK_MIB << 10) - 1024).to_string()),
        "mkfs.fat",
    );
    let out = tmp.path().join("fat-gen2.raw");
    // no Linux, no Windows: a data disk, refused before any write, the ways on named
    let (run, v) = convert(&img, &out, &[]);
    assert_eq!(run.exit_code(), 7, "{}\n{}", run.stdout, run.stderr);
    let failed = common::failed_checks(&v["validation"]["checks"]);
    assert_eq!(failed.len(), 1, "{}", v["validation"]["checks"]);
    assert_eq!(failed[0]["id"], "os.found");
    let fix = failed[0]["fix"].as_str().unwrap();
    assert!(
        fix.contains("--data-disk") && fix.contains("--boot-files"),
        "{fix}"
    );
    assert!(v["upload"].is_null(), "{v}");
    assert!(!out.exists());
    // --no-boot-files: the user says an ESP is wanted; it is made empty, with the warning
    let (run, v) = convert(&img, &out, &["--no-boot-files"]);
    assert_eq!(run.exit_code(), 0, "{}\n{}", run.stdout, run.stderr);
    assert!(v["linux_boot"].is_null());
    assert!(
        v["warnings"].to_string().contains("ESP is created empty"),
        "{}",
        v["warnings"]
    );
    assert!(!v["validation"]["checks"].to_string().contains("boot.files"));
}
