//! `vhdtool convert` of the Windows-like Gen1 images of testdata/make-windows.sh, judged by
//! independent tools: `sgdisk -v` and `sgdisk -i` (the GPT and its GUIDs), `fsck.fat -n` and
//! mtools (the ESP), ntfs-3g's `ntfscat` (the source files), `hivexregedit --export` and regipy
//! (the new BCD store and the patched SYSTEM hive). No Windows boot is run: the boot binaries
//! of the images are stand-ins (see the script).
//!
//! Checked: after convert (in place and -o) one ESP, every ESP file byte-identical to its
//! source on C:, {bootmgr}'s device the ESP's GPT partition, the default loader's device and
//! osdevice C:'s GPT partition (partition GUID + disk GUID), its path winload.efi and the old
//! description; `\DosDevices\C:` in the DMIO:ID: form with C:'s GUID, every other value as it
//! was; every other file on C: unchanged; rollback restores the original byte for byte, also
//! when the conversion is killed before any of its writes; the refusals (BitLocker,
//! hibernated, dirty NTFS, compressed boot files, dirty hive without logs) leave the image as it
//! was.
#![allow(clippy::restriction)] // tests: a panic is a failed test (the crate's panic lints are for src/)

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::windows::{images, part_file, parts};
use common::{require_tools, run_with_timeout, tool, vhdtool, TempDir};
use serde_json::Value;
use vhdtool::disk::{Access, MmapDisk, Window};
use vhdtool::fs::ntfsfile::{Limits, NtfsVolume};
use vhdtool::gpt::Guid;

const TOOLS: &[(&str, &str)] = &[
    ("sgdisk", "gdisk"),
    ("fsck.fat", "dosfstools"),
    ("mcopy", "mtools"),
    ("ntfscat", "ntfs-3g"),
    ("hivexregedit", "libwin-hivex-perl"),
    ("python3", "python3"),
    ("sfdisk", "fdisk"),
];
const MAX_FILE: u64 = 64 << 20;
/// MBR signature of the generated disks (the one their SYSTEM hive names).
const DISK_SIG: u32 = 0x5cbe_a03e;

fn ready() -> Option<&'static Path> {
    if !require_tools(TOOLS) || !regipy_ok() {
        return None;
    }
    images()
}

fn regipy_ok() -> bool {
    let ok = Command::new("python3")
        .args(["-c", "import regipy"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        let msg = "regipy is missing: install it with 'pip install regipy==6.5.0'";
        assert!(
            !common::under_ci(),
            "{msg} (CI is set, so this is a failure)"
        );
        eprintln!("SKIPPED: {msg}");
    }
    ok
}

fn run_ok(cmd: &mut Command) -> Vec<u8> {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// `sgdisk -i N`: (first LBA, last LBA, unique GUID, type GUID).
fn gpt_entry(img: &Path, n: u32) -> (u64, u64, Guid, String) {
    let out =
        String::from_utf8(run_ok(tool("sgdisk").arg("-i").arg(n.to_string()).arg(img))).unwrap();
    let field = |name: &str| {
        out.lines()
            .find_map(|l| l.strip_prefix(name))
            .unwrap_or_else(|| panic!("sgdisk -i {n}: no {name} in {out}"))
            .trim()
            .to_string()
    };
    let lba = |s: String| s.split_whitespace().next().unwrap().parse::<u64>().unwrap();
    (
        lba(field("First sector:")),
        lba(field("Last sector:")),
        field("Partition unique GUID:").parse().unwrap(),
        field("Partition GUID code:")
            .split_whitespace()
            .next()
            .unwrap()
            .to_string(),
    )
}

fn disk_guid(img: &Path) -> Guid {
    let out = String::from_utf8(run_ok(tool("sgdisk").arg("-p").arg(img))).unwrap();
    out.lines()
        .find_map(|l| l.strip_prefix("Disk identifier (GUID):"))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// The GPT entries of a converted image, numbered from 1.
fn gpt_entries(img: &Path) -> Vec<(u32, (u64, u64, Guid, String))> {
    let out = String::from_utf8(run_ok(tool("sgdisk").arg("-p").arg(img))).unwrap();
    out.lines()
        .skip_while(|l| !l.starts_with("Number"))
        .skip(1)
        .filter_map(|l| l.split_whitespace().next()?.parse::<u32>().ok())
        .map(|n| (n, gpt_entry(img, n)))
        .collect()
}

/// Copy sectors first..=last of `img` into their own file.
fn extract(img: &Path, first: u64, last: u64, to: &Path) {
    let data = fs::read(img).unwrap();
    fs::write(
        to,
        &data[(first * 512) as usize..((last + 1) * 512) as usize],
    )
    .unwrap();
}

/// regipy's view of a hive below `key` ("\\" for all): "key path|value name" -> value (binary
/// values as hex).
fn regipy(hive: &Path, key: &str) -> BTreeMap<String, Value> {
    let script = r#"
import json, sys
from regipy.registry import RegistryHive
h = RegistryHive(sys.argv[1])
out = {}
if sys.argv[2] == "\\":
    keys = h.recurse_subkeys(as_json=False)
else:
    k = h.get_key(sys.argv[2])
    keys = [type("K", (), {"path": sys.argv[2], "values": list(k.iter_values())})]
for k in keys:
    for v in (k.values or []):
        val = v.value
        if isinstance(val, (bytes, bytearray)):
            val = val.hex()
        out[k.path + "|" + v.name] = val
print(json.dumps(out, default=str))
"#;
    let out = run_ok(
        Command::new("python3")
            .args(["-c", script])
            .arg(hive)
            .arg(key),
    );
    serde_json::from_slice(&out).unwrap()
}

fn hivex_export(hive: &Path) -> String {
    let out = run_ok(tool("hivexregedit").arg("--export").arg(hive).arg("\\"));
    String::from_utf8_lossy(&out).into_owned()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap())
        .collect()
}

/// A BCD partition device element: (partition GUID, disk GUID) of its GPT form.
fn gpt_device(hex: &str) -> (Guid, Guid) {
    let b = unhex(hex);
    assert!(b.len() >= 0x48, "device element of {} bytes", b.len());
    assert_eq!(
        &b[0x10..0x14],
        &6u32.to_le_bytes(),
        "not a partition device"
    );
    assert_eq!(
        &b[0x34..0x38],
        &0u32.to_le_bytes(),
        "partition style is not GPT"
    );
    let g = |r: std::ops::Range<usize>| Guid::from_bytes(b[r].try_into().unwrap());
    (g(0x20..0x30), g(0x38..0x48))
}

fn element<'a>(bcd: &'a BTreeMap<String, Value>, object: &str, el: &str) -> &'a Value {
    let key = format!("\\Objects\\{object}\\Elements\\{el}|Element");
    bcd.get(&key).unwrap_or_else(|| panic!("BCD: no {key}"))
}

/// ntfscat of `path` on the partition file `part`.
fn ntfscat(part: &Path, path: &str) -> Vec<u8> {
    run_ok(tool("ntfscat").arg(part).arg(path))
}

/// Every file below `\` of an NTFS volume, read by our reader (refused files left out).
fn all_files(img: &Path, offset: u64, len: u64) -> BTreeMap<String, Vec<u8>> {
    let disk = MmapDisk::open(img, Access::ReadOnly).unwrap();
    let w = Window::new(&disk, offset, len).unwrap();
    let vol = NtfsVolume::open(&w).unwrap();
    let mut out = BTreeMap::new();
    for e in vol.walk("\\", &Limits::default()).unwrap() {
        if e.is_dir || e.record < 16 || e.path.starts_with('$') {
            continue;
        }
        if let Ok(b) = vol.read_record_file(e.record, &e.path, MAX_FILE) {
            out.insert(e.path.to_lowercase(), b);
        }
    }
    out
}

fn convert_json(args: &[&str]) -> (Option<i32>, Value) {
    let run = vhdtool(args);
    let v = serde_json::from_str(&run.stdout).unwrap_or(Value::Null);
    (run.code, v)
}

/// Judge one converted image against its source variant.
fn judge(dir: &Path, variant: &str, out: &Path, report: &Value, tmp: &Path) {
    let src_parts = parts(dir, variant);
    let c = src_parts.iter().find(|p| p.role == "c").unwrap();
    let sysres = src_parts.iter().find(|p| p.role == "sysres");
    // GPT: clean, one ESP, C: at its old place
    let v = String::from_utf8(run_ok(tool("sgdisk").arg("-v").arg(out))).unwrap();
    assert!(v.contains("No problems found"), "{variant}: sgdisk -v: {v}");
    let entries = gpt_entries(out);
    let esps: Vec<_> = entries
        .iter()
        .filter(|(_, e)| e.3 == "C12A7328-F81F-11D2-BA4B-00A0C93EC93B")
        .collect();
    assert_eq!(esps.len(), 1, "{variant}: {entries:?}");
    let esp = &esps[0].1;
    let cpart = &entries
        .iter()
        .find(|(_, e)| e.0 * 512 == c.start)
        .unwrap()
        .1;
    let disk = disk_guid(out);
    // ESP: fsck.fat clean, every file as its source (ntfscat)
    let esp_file = tmp.join(format!("{variant}.esp"));
    extract(out, esp.0, esp.1, &esp_file);
    let f = run_with_timeout(
        tool("fsck.fat").arg("-n").arg(&esp_file),
        Duration::from_secs(60),
    );
    assert_eq!(
        f.code,
        Some(0),
        "{variant}: fsck.fat -n: {}{}",
        f.stdout,
        f.stderr
    );
    let c_src = part_file(dir, variant, c.number);
    let files = report["windows"]["esp_files"].as_array().unwrap();
    assert!(files.len() >= 10, "{variant}: {files:?}");
    let mcopy = |esp_path: &str| {
        run_ok(
            tool("mcopy")
                .arg("-n")
                .arg("-i")
                .arg(&esp_file)
                .arg(format!("::{esp_path}"))
                .arg("-"),
        )
    };
    for f in files {
        let (ntfs, esp_path) = (
            f["ntfs_path"].as_str().unwrap(),
            f["esp_path"].as_str().unwrap(),
        );
        assert_eq!(
            mcopy(esp_path),
            ntfscat(&c_src, &ntfs.replace('\\', "/")),
            "{variant}: {esp_path} differs from {ntfs}"
        );
    }
    assert_eq!(
        mcopy("EFI/Boot/bootx64.efi"),
        ntfscat(&c_src, "/Windows/Boot/EFI/bootmgfw.efi")
    );
    // the new store: hivex and regipy read it; its devices are the new GPT partitions
    let bcd_file = tmp.join(format!("{variant}.BCD"));
    fs::write(&bcd_file, mcopy("EFI/Microsoft/Boot/BCD")).unwrap();
    assert!(hivex_export(&bcd_file).contains("Objects"));
    let bcd = regipy(&bcd_file, "\\");
    let bootmgr = "{9dea862c-5cdd-4e70-acc1-f32b344d4795}";
    let d = gpt_device(element(&bcd, bootmgr, "11000001").as_str().unwrap());
    assert_eq!(d, (esp.2, disk), "{variant}: {{bootmgr}} device");
    let default = element(&bcd, bootmgr, "23000003")
        .as_str()
        .unwrap()
        .to_string();
    for el in ["11000001", "21000001"] {
        let d = gpt_device(element(&bcd, &default, el).as_str().unwrap());
        assert_eq!(d, (cpart.2, disk), "{variant}: default loader {el}");
    }
    let path = element(&bcd, &default, "12000002").as_str().unwrap();
    assert!(path.to_lowercase().ends_with("winload.efi"), "{path}");
    let sys_src = part_file(dir, variant, sysres.unwrap_or(c).number);
    let old_bcd = tmp.join(format!("{variant}.old.BCD"));
    fs::write(&old_bcd, ntfscat(&sys_src, "/Boot/BCD")).unwrap();
    let old = regipy(&old_bcd, "\\");
    let old_default = element(&old, bootmgr, "23000003")
        .as_str()
        .unwrap()
        .to_string();
    // the old entry that boots C: (MBR partition device: offset at 0x20, style 1 at 0x34, the
    // disk signature at 0x38): the default, else the first such entry of the display order
    let c_part = parts(dir, variant)
        .into_iter()
        .find(|p| p.role == "c")
        .unwrap();
    let boots_c = |id: &str| {
        let key = format!("\\Objects\\{id}\\Elements\\21000001|Element");
        old.get(&key)
            .and_then(|v| v.as_str())
            .map(unhex)
            .is_some_and(|b| {
                b.len() >= 0x3c
                    && b[0x10..0x14] == 6u32.to_le_bytes()
                    && b[0x20..0x28] == c_part.start.to_le_bytes()
                    && b[0x34..0x38] == 1u32.to_le_bytes()
                    && b[0x38..0x3c] == 0x5cbe_a03eu32.to_le_bytes()
            })
    };
    let old_entry = if boots_c(&old_default) {
        old_default.clone()
    } else {
        let order = format!("\\Objects\\{bootmgr}\\Elements\\24000001|Element");
        old.get(&order)
            .and_then(|v| v.as_array())
            .and_then(|l| l.iter().filter_map(|v| v.as_str()).find(|id| boots_c(id)))
            .unwrap_or(&old_default)
            .to_string()
    };
    assert_eq!(
        element(&bcd, &default, "12000004"),
        element(&old, &old_entry, "12000004"),
        "{variant}: description (of the old entry {old_entry} that boots C:)"
    );
    // WinRE: the new default's recoverysequence is a ramdisk entry on the GPT partition holding
    // Winre.wim, and ReAgent.xml names it (it named the old WinRE entry)
    let recovery = format!("\\Objects\\{default}\\Elements\\14000008|Element");
    let winre_id = bcd.get(&recovery).map(|v| {
        let list = v.as_array().expect("recoverysequence is a list");
        list[0].as_str().unwrap().to_string()
    });
    let old_recovery = format!("\\Objects\\{old_entry}\\Elements\\14000008|Element");
    // (locate's WinRE entry is on another disk, a GPT one: nothing of this disk to carry)
    assert_eq!(
        winre_id.is_some(),
        old.contains_key(&old_recovery) && variant != "locate",
        "{variant}: the WinRE entry is carried over exactly when the old entry had one on this disk"
    );
    if let Some(id) = &winre_id {
        // its ramdisk device names no MBR partition (checked for the whole store below)
        let desc = element(&bcd, id, "12000004").as_str().unwrap();
        assert!(desc.contains("Recovery"), "{variant}: WinRE entry {desc:?}");
    }
    assert!(
        !bcd.values()
            .any(|v| v.as_str().is_some_and(|s| s.contains("3ea0be5c"))),
        "{variant}: an MBR device of this disk is left in the store"
    );
    judge_registry(dir, variant, out, cpart, tmp, winre_id.as_deref());
}

/// The patched SYSTEM hive: hivex and regipy read it; C: in the GPT form, the rest unchanged;
/// every other file on C: unchanged.
fn judge_registry(
    dir: &Path,
    variant: &str,
    out: &Path,
    cpart: &(u64, u64, Guid, String),
    tmp: &Path,
    winre_id: Option<&str>,
) {
    let c = parts(dir, variant)
        .into_iter()
        .find(|p| p.role == "c")
        .unwrap();
    let c_new = tmp.join(format!("{variant}.c.part"));
    extract(out, cpart.0, cpart.1, &c_new);
    let hive = "/Windows/System32/config/SYSTEM";
    let (old_h, new_h) = (
        tmp.join(format!("{variant}.SYSTEM.old")),
        tmp.join(format!("{variant}.SYSTEM")),
    );
    let c_old = part_file(dir, variant, c.number);
    fs::write(&old_h, ntfscat(&c_old, hive)).unwrap();
    fs::write(&new_h, ntfscat(&c_new, hive)).unwrap();
    if variant == "hivelogs" {
        // the reference is regipy's own recovery of the dirty hive with its logs
        let logs: Vec<PathBuf> = ["LOG1", "LOG2"]
            .iter()
            .map(|x| {
                let p = tmp.join(format!("{variant}.SYSTEM.{x}"));
                fs::write(&p, ntfscat(&c_old, &format!("{hive}.{x}"))).unwrap();
                p
            })
            .collect();
        let restored = tmp.join(format!("{variant}.SYSTEM.restored"));
        let script = format!(
            "from regipy.recovery import apply_transaction_logs as a; a({:?}, primary_log_path={:?}, secondary_log_path={:?}, restored_hive_path={:?})",
            old_h, logs[0], logs[1], restored
        );
        run_ok(Command::new("python3").args(["-c", &script]));
        fs::rename(&restored, &old_h).unwrap();
    }
    assert!(hivex_export(&new_h).contains("MountedDevices"));
    let key = "\\MountedDevices";
    let (old, new) = (regipy(&old_h, key), regipy(&new_h, key));
    let mbr_c = {
        let mut b = DISK_SIG.to_le_bytes().to_vec();
        b.extend_from_slice(&c.start.to_le_bytes());
        b
    };
    let mut dmio = b"DMIO:ID:".to_vec();
    dmio.extend_from_slice(&cpart.2.to_bytes());
    let mut changed = 0;
    for (k, v) in &old {
        if !k.starts_with("\\MountedDevices|") {
            continue;
        }
        let now = new
            .get(k)
            .unwrap_or_else(|| panic!("{variant}: {k} is gone"));
        if v.as_str().map(unhex) == Some(mbr_c.clone()) {
            assert_eq!(
                now.as_str().map(unhex),
                Some(dmio.clone()),
                "{variant}: {k}"
            );
            changed += 1;
        } else {
            assert_eq!(now, v, "{variant}: {k} changed");
        }
    }
    if changed > 0 {
        let dos_c = new.get("\\MountedDevices|\\DosDevices\\C:").unwrap();
        assert_eq!(
            dos_c.as_str().map(unhex),
            Some(dmio.clone()),
            "{variant}: C:"
        );
    } else {
        // only the hive whose C: is already in the GPT form (another disk's) has nothing to do
        assert_eq!(
            variant, "hivelogs",
            "{variant}: no MountedDevices value changed"
        );
    }
    // everything else on C: as it was
    let before = all_files(&part_file(dir, variant, c.number), 0, c.bytes);
    let after = all_files(&c_new, 0, c.bytes);
    assert_eq!(
        before.keys().collect::<Vec<_>>(),
        after.keys().collect::<Vec<_>>(),
        "{variant}: files on C:"
    );
    for (k, b) in &before {
        if k.ends_with("reagent.xml") {
            // only the WinreBCD id changes, to the new store's WinRE entry, when there is one
            let (old_x, new_x) = (
                String::from_utf8_lossy(b).into_owned(),
                String::from_utf8_lossy(&after[k]).into_owned(),
            );
            let id_of = |x: &str| {
                let at = x.find("<WinreBCD id=\"{").unwrap() + 15;
                x[at..at + 36].to_string()
            };
            match winre_id {
                Some(id) => {
                    assert_eq!(
                        id_of(&new_x),
                        id.trim_matches(|c| c == '{' || c == '}'),
                        "{variant}: ReAgent.xml names the new WinRE entry"
                    );
                    assert_eq!(
                        old_x.replace(&id_of(&old_x), "ID"),
                        new_x.replace(&id_of(&new_x), "ID"),
                        "{variant}: ReAgent.xml changed beyond its WinreBCD id"
                    );
                }
                None => assert_eq!(old_x, new_x, "{variant}: ReAgent.xml changed"),
            }
            continue;
        }
        if k.ends_with("config\\system") {
            continue;
        }
        assert!(after[k] == *b, "{variant}: {k} changed");
    }
}

#[test]
fn windows_images_convert_into_a_copy_and_in_place() {
    let Some(dir) = ready() else { return };
    let tmp = TempDir::new("convert-windows");
    for variant in [
        "conly",
        "bootdevice",
        "sysres",
        "winre",
        "hivelogs",
        "reuse",
    ] {
        let src = dir.join(format!("{variant}.img"));
        // -o
        let out = tmp.path().join(format!("{variant}.out.img"));
        let (code, report) = convert_json(&[
            "convert",
            src.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
            "--json",
        ]);
        assert_eq!(code, Some(0), "{variant}: {report}");
        let az = report["upload"]["az_disk_create"].as_str().unwrap();
        assert!(
            az.contains("--os-type Windows --hyper-v-generation V2"),
            "{az}"
        );
        judge(dir, variant, &out, &report, tmp.path());
        // the store's default names the `boot` or a `locate` device: found by winload.exe, said so
        let found = match variant {
            "bootdevice" => Some("osdevice is the boot device"),
            "locate" => Some("osdevice is a locate device (a sysprepped store)"),
            _ => None,
        };
        if let Some(why) = found {
            assert!(
                report.to_string().contains(why),
                "{variant}: how Windows was found: {report}"
            );
        }
        let room = report["validation"]["plan"]["room"].as_str().unwrap();
        if variant == "reuse" {
            // MBR2GPT's way: System Reserved (100 MiB, no WinRE) is the ESP; the disk keeps its size
            assert_eq!(room, "reuse", "{report}");
            let e = gpt_entries(&out);
            assert_eq!(e.len(), 2, "{e:?}");
            assert_eq!(e[0].1 .3, "C12A7328-F81F-11D2-BA4B-00A0C93EC93B");
            assert_eq!(e[0].1 .0, 2048);
            assert_eq!(
                fs::metadata(&out).unwrap().len(),
                fs::metadata(&src).unwrap().len()
            );
        } else {
            assert_ne!(
                room, "reuse",
                "{variant}: System Reserved is too small or absent"
            );
        }
        // in place, then rollback
        let img = tmp.path().join(format!("{variant}.img"));
        common::sparse_copy(&src, &img);
        let (code, report) = convert_json(&["convert", img.to_str().unwrap(), "--json"]);
        assert_eq!(code, Some(0), "{variant}: {report}");
        assert_eq!(
            fs::read(&img).unwrap(),
            fs::read(&out).unwrap(),
            "{variant}: in place != -o"
        );
        let r = vhdtool(["rollback", img.to_str().unwrap()]);
        assert_eq!(r.code, Some(0), "{}", r.stderr);
        assert!(
            fs::read(&img).unwrap() == fs::read(&src).unwrap(),
            "{variant}: rollback"
        );
        fs::remove_file(&out).unwrap();
        fs::remove_file(&img).unwrap();
    }
}

#[test]
fn windows_refusals_leave_the_image_as_it_was() {
    let Some(dir) = ready() else { return };
    let tmp = TempDir::new("convert-windows-refused");
    for (variant, check) in [
        ("bitlocker", "windows.bitlocker"),
        ("hibernated", "windows.hibernated"),
        ("dirty", "windows.dirty"),
        ("compressed", "windows.bootfiles"),
        ("dirtyhive", "windows.registry"),
    ] {
        let src = dir.join(format!("{variant}.img"));
        let img = tmp.path().join(format!("{variant}.img"));
        common::sparse_copy(&src, &img);
        let (code, report) = convert_json(&["convert", img.to_str().unwrap(), "--json"]);
        assert_ne!(code, Some(0), "{variant}: {report}");
        let failed: Vec<&str> = common::failed_checks(&report["validation"]["checks"])
            .iter()
            .map(|c| c["id"].as_str().unwrap())
            .collect();
        assert_eq!(failed, [check], "{variant}: {report}");
        let fix = report["validation"]["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["id"] == check)
            .unwrap()["fix"]
            .clone();
        assert!(
            fix.as_str().is_some_and(|f| !f.is_empty()),
            "{variant}: no fix"
        );
        assert!(
            fs::read(&img).unwrap() == fs::read(&src).unwrap(),
            "{variant}: written"
        );
        assert!(!PathBuf::from(format!("{}.vhdtool-journal", img.display())).exists());
        fs::remove_file(&img).unwrap();
    }
    // --no-registry: the dirty hive is left alone, with a warning
    let src = dir.join("dirtyhive.img");
    let out = tmp.path().join("dirtyhive.out.img");
    let (code, report) = convert_json(&[
        "convert",
        src.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--no-registry",
        "--json",
    ]);
    assert_eq!(code, Some(0), "{report}");
    let c = parts(dir, "dirtyhive")
        .into_iter()
        .find(|p| p.role == "c")
        .unwrap();
    let hive = "Windows\\System32\\config\\SYSTEM".to_lowercase();
    assert!(all_files(&out, c.start, c.bytes)[&hive] == all_files(&src, c.start, c.bytes)[&hive]);
}

#[test]
fn a_killed_windows_conversion_rolls_back_to_the_original() {
    let Some(dir) = ready() else { return };
    let tmp = TempDir::new("convert-windows-kill");
    let src = dir.join("conly.img");
    let original = fs::read(&src).unwrap();
    let img = tmp.path().join("conly.img");
    let journal = PathBuf::from(format!("{}.vhdtool-journal", img.display()));
    let mut n = 0;
    loop {
        common::sparse_copy(&src, &img);
        let _ = fs::remove_file(&journal);
        let mut cmd = Command::new(common::bin());
        cmd.env("VHDTOOL_FAULT_AFTER_WRITES", n.to_string())
            .arg("convert")
            .arg(&img);
        let r = run_with_timeout(&mut cmd, Duration::from_secs(60));
        if r.code == Some(0) {
            break;
        }
        if journal.exists() {
            let rb = vhdtool(["rollback", img.to_str().unwrap()]);
            assert_eq!(rb.code, Some(0), "killed at {n}: {}", rb.stderr);
        }
        assert!(
            fs::read(&img).unwrap() == original,
            "killed at {n}: not restored"
        );
        n += 1;
        assert!(n < 200, "the conversion never finished");
    }
    assert!(n > 6, "only {n} writes: the hive steps are missing");
}

/// Issue 15 item 21, issue 12 item 7: a disk with only data partitions is no Gen2 OS disk. It is
/// refused before any write (no `az` line), the fix naming `--data-disk`; `--data-disk` makes
/// it GPT without an ESP; on a Windows disk `--data-disk` is refused.
#[test]
fn a_data_disk_gets_no_esp_and_no_v2_line() {
    let Some(dir) = ready() else { return };
    let tmp = TempDir::new("convert-data-disk");
    let img = tmp.path().join("data.img");
    fs::File::create(&img).unwrap().set_len(64 << 20).unwrap();
    let mut sf = tool("sfdisk");
    sf.arg("-q").arg(&img).stdin(std::process::Stdio::piped());
    let mut child = sf.spawn().unwrap();
    use std::io::Write as _;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"label: dos\nstart=2048, size=100000, type=c\n")
        .unwrap();
    assert!(child.wait().unwrap().success());
    let original = fs::read(&img).unwrap();
    let out = tmp.path().join("data.out.img");
    let (code, report) = convert_json(&[
        "convert",
        img.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(code, Some(7), "{report}");
    assert!(report["upload"].is_null(), "no az line at all: {report}");
    let checks = report["validation"]["checks"].to_string();
    assert!(checks.contains("os.found"), "{report}");
    assert!(checks.contains("data disk"), "{report}");
    assert!(checks.contains("--data-disk"), "{report}");
    assert!(!out.exists());
    assert!(fs::read(&img).unwrap() == original);
    // validate says the same (MBR2GPT: "cannot find OS partition"), with its findings code
    let (code, report) = convert_json(&["validate", img.to_str().unwrap(), "--json"]);
    assert_eq!(code, Some(1), "{report}");
    assert!(
        report["checks"].to_string().contains("os.found"),
        "{report}"
    );
    // --data-disk: GPT without an ESP, in place, undone by rollback
    let (code, report) = convert_json(&["convert", img.to_str().unwrap(), "--data-disk", "--json"]);
    assert_eq!(code, Some(0), "{report}");
    assert!(report["validation"]["plan"]["esp"].is_null(), "{report}");
    let v = String::from_utf8(run_ok(tool("sgdisk").arg("-v").arg(&img))).unwrap();
    assert!(v.contains("No problems found"), "{v}");
    let e = gpt_entries(&img);
    assert_eq!(e.len(), 1, "{e:?}");
    assert_eq!(e[0].1 .3, "EBD0A0A2-B9E5-4433-87C0-68B6B72699C7");
    assert_eq!((e[0].1 .0, e[0].1 .1), (2048, 2048 + 100_000 - 1));
    let az = report["upload"]["az_disk_create"].as_str().unwrap();
    assert!(!az.contains("V2"), "{az}");
    let r = vhdtool(["rollback", img.to_str().unwrap()]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert!(fs::read(&img).unwrap() == original);
    // a Windows disk is not a data disk
    let win = dir.join("conly.img");
    let (code, report) = convert_json(&[
        "convert",
        win.to_str().unwrap(),
        "-o",
        out.with_extension("w").to_str().unwrap(),
        "--data-disk",
        "--json",
    ]);
    assert_ne!(code, Some(0), "{report}");
    assert!(
        report["validation"]["checks"]
            .to_string()
            .contains("--data-disk"),
        "{report}"
    );
    assert!(!out.with_extension("w").exists());
}

/// `info` names the Windows version from the SOFTWARE hive (as hivexregedit reads the same file,
/// taken off C: by ntfscat), in text and JSON.
#[test]
fn info_reports_the_windows_version() {
    let Some(dir) = ready() else { return };
    let img = dir.join("sysres.vhd");
    let r = vhdtool(["info", img.to_str().unwrap()]);
    assert_eq!(r.code, Some(0), "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stdout
            .contains("version              Windows 10 Pro 22H2 (build 19045.3803)"),
        "{}",
        r.stdout
    );
    let r = vhdtool(["info", img.to_str().unwrap(), "--json"]);
    let v: Value = serde_json::from_str(&r.stdout).unwrap();
    let ver = &v["windows"]["version"];
    assert_eq!(ver["product_name"], "Windows 10 Pro", "{v}");
    assert_eq!(ver["display_version"], "22H2");
    assert_eq!(ver["build"], "19045");
    assert_eq!(ver["edition_id"], "Professional");
    assert_eq!(ver["installation_type"], "Client");
    // the judge: hivexregedit on the hive as ntfscat reads it off C:
    let c = parts(dir, "sysres")
        .into_iter()
        .find(|p| p.role == "c")
        .unwrap();
    let tmp = TempDir::new("windows-version");
    let hive = tmp.path().join("SOFTWARE");
    fs::write(
        &hive,
        ntfscat(
            &part_file(dir, "sysres", c.number),
            "/Windows/System32/config/SOFTWARE",
        ),
    )
    .unwrap();
    let export = String::from_utf8(run_ok(
        tool("hivexregedit")
            .arg("--export")
            .arg(&hive)
            .arg("\\Microsoft\\Windows NT\\CurrentVersion"),
    ))
    .unwrap();
    let ubr = ver["ubr"].as_u64().unwrap();
    assert!(
        export.contains(&format!("\"UBR\"=dword:{ubr:08x}")),
        "{export}"
    );
    // ProductName as hivexregedit gives it: UTF-16LE bytes in hex(1)
    let name: Vec<String> = "Windows 10 Pro"
        .encode_utf16()
        .flat_map(|u| u.to_le_bytes())
        .map(|b| format!("{b:02x}"))
        .collect();
    assert!(export.contains(&name.join(",")), "{export}");
}

/// Two installations (C: of the `conly` disk twice): refused unless one is named; named, the
/// plan is made for that one.
#[test]
fn two_installations_are_refused_unless_one_is_named() {
    let Some(dir) = ready() else { return };
    let tmp = TempDir::new("convert-windows-two");
    let src = fs::read(dir.join("conly.img")).unwrap();
    let c = parts(dir, "conly")
        .into_iter()
        .find(|p| p.role == "c")
        .unwrap();
    let vol = &src[c.start as usize..(c.start + c.bytes) as usize];
    let img = tmp.path().join("two.img");
    let mut bytes = src[..(c.start + c.bytes) as usize].to_vec();
    bytes.extend_from_slice(vol);
    bytes.resize(bytes.len() + (1 << 20), 0);
    // p2: the same volume again, right after p1 (same MBR, same disk signature)
    let second = (c.start + c.bytes) / 512;
    let e = 446 + 16;
    bytes[e + 4] = 0x07;
    bytes[e + 8..e + 12].copy_from_slice(&(second as u32).to_le_bytes());
    bytes[e + 12..e + 16].copy_from_slice(&((c.bytes / 512) as u32).to_le_bytes());
    fs::write(&img, &bytes).unwrap();
    let i = img.to_str().unwrap();
    let (code, report) = convert_json(&["validate", i, "--json"]);
    assert_ne!(code, Some(0), "{report}");
    let checks = report["checks"].to_string();
    assert!(checks.contains("several Windows installations"), "{report}");
    assert!(checks.contains("--windows-partition"), "{report}");
    let (code, report) = convert_json(&["validate", i, "--windows-partition", "2", "--json"]);
    assert_eq!(code, Some(0), "{report}");
    assert_eq!(report["windows"]["windows"]["index"], 2, "{report}");
    let (code, report) = convert_json(&["validate", i, "--windows-partition", "3", "--json"]);
    assert_ne!(code, Some(0), "{report}");
}
