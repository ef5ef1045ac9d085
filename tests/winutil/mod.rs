//! Helpers for the registry/BCD tests: load the real hives of testdata/ (xz-compressed ones via
//! `xz -dc`), dump a hive as our reader sees it, and have hivex and regipy judge it
//! (tests/regf_oracle.py).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use vhdtool::regf::{Hive, Key};

use crate::common;

pub fn testdata(rel: &str) -> PathBuf {
    common::repo_root().join("testdata").join(rel)
}

/// The bytes of a test hive; `.xz` files are decompressed with `xz -dc` (xz-utils).
pub fn load(rel: &str) -> Vec<u8> {
    let path = testdata(rel);
    if rel.ends_with(".xz") {
        let out = Command::new("xz")
            .arg("-dc")
            .arg(&path)
            .output()
            .unwrap_or_else(|e| panic!("running `xz -dc` (apt-get install xz-utils): {e}"));
        assert!(
            out.status.success(),
            "xz -dc {}: {:?}",
            path.display(),
            out.status
        );
        out.stdout
    } else {
        std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
    }
}

pub const BCD_FILES: &[&str] = &[
    "windows-boot/uefi/regipy-win10-uefi.BCD",
    "windows-boot/uefi/pybcd-win81-uefi.BCD",
    "windows-boot/uefi/pybcd-minimal-uefi.BCD",
    "windows-boot/uefi/windeploy-uefi-locate.BCD",
    "windows-boot/bios/pybcd-win81-bios-mbr.BCD",
    "windows-boot/bios/pybcd-win7-bios-vm.BCD",
    "windows-boot/bios/windeploy-bios-bootdevice.BCD",
    "windows-boot/devices/pybcd-bcdedit-device-zoo.BCD",
];

/// The subtree regipy judges in a hive (all of a BCD; MountedDevices of a SYSTEM hive).
pub fn regipy_subtree(rel: &str) -> &'static str {
    if rel.contains("SYSTEM") {
        "\\MountedDevices"
    } else {
        "\\"
    }
}

pub const SYSTEM_FILES: &[&str] = &[
    "windows-registry/SYSTEM-win7-mbr.xz",
    "windows-registry/SYSTEM-win10-1709-mbr-dirty.xz",
    "windows-registry/SYSTEM-gpt-dirty.xz",
];

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn dump_key(k: &Key, path: &str, out: &mut Vec<serde_json::Value>) {
    let values: Vec<serde_json::Value> = k
        .values
        .iter()
        .map(|v| serde_json::json!({"name": v.name, "type": v.data_type, "hex": hex(&v.data)}))
        .collect();
    out.push(serde_json::json!({"path": path, "values": values}));
    for s in &k.subkeys {
        let p = if path == "\\" {
            format!("\\{}", s.name)
        } else {
            format!("{path}\\{}", s.name)
        };
        dump_key(s, &p, out);
    }
}

/// Our reader's view of a whole hive, as JSON for tests/regf_oracle.py.
pub fn dump(hive: &[u8]) -> String {
    let tree = Hive::parse(hive)
        .expect("parse")
        .read_tree()
        .expect("read_tree");
    let mut out = Vec::new();
    dump_key(&tree, "\\", &mut out);
    serde_json::to_string(&out).expect("json")
}

/// Are hivexregedit and regipy there? (skip outside CI, fail under CI with the install line)
pub fn oracles_present() -> bool {
    let hivex = common::require_tools(&[
        ("hivexregedit", "libwin-hivex-perl"),
        ("hivexsh", "libhivex-bin"),
    ]);
    let regipy = Command::new("python3")
        .args(["-c", "import regipy"])
        .status()
        .is_ok_and(|s| s.success());
    if !regipy {
        let msg = "missing Python module `regipy`: install it with `pip install regipy==6.5.0`";
        assert!(
            !common::under_ci(),
            "{msg} (CI is set, so this is a failure)"
        );
        eprintln!("SKIPPED: {msg}");
    }
    hivex && regipy
}

/// hivex and regipy must read the hive file `path` and see what our reader sees in `bytes`
/// (hivex: the whole hive; regipy: the keys under `regipy_subtree`, "\\" for all).
pub fn judge(path: &Path, bytes: &[u8], tmp: &common::TempDir, regipy_subtree: &str) -> String {
    judge_with(path, bytes, tmp, regipy_subtree, "both")
}

/// [`judge`] with a choice of judges: "both", or "regipy" alone.
pub fn judge_with(
    path: &Path,
    bytes: &[u8],
    tmp: &common::TempDir,
    regipy_subtree: &str,
    which: &str,
) -> String {
    let ours = tmp.write("ours.json", dump(bytes).as_bytes());
    let out = Command::new("python3")
        .arg(common::repo_root().join("tests/regf_oracle.py"))
        .arg(path)
        .arg(&ours)
        .arg(regipy_subtree)
        .arg(which)
        .output()
        .expect("run tests/regf_oracle.py");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "oracles disagree on {}:\n{text}",
        path.display()
    );
    text
}
