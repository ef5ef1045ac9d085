//! `vhdtool info --json` on every image of `testdata/make-images.sh`, judged by independent
//! tools: sfdisk (MBR), sgdisk (GPT), fdisk -b 4096 (GPT on 4K sectors), blkid (filesystems),
//! qemu-img (VHD virtual size), mtools (ESP boot loaders), and a byte-level footer / dynamic
//! header decode written here from the VHD specification.
//!
//! The oracles run on the raw form of each disk (`base` in the manifest); the VHD forms must give
//! the same partitions and filesystems. Each test checks every image and reports all mismatches
//! at once.
#![allow(clippy::restriction)] // tests: a panic is a failed test (the crate's panic lints are for src/)

mod common;

use std::collections::{BTreeMap, HashMap};
use std::fmt::Debug;
use std::path::Path;
use std::sync::OnceLock;
use std::time::Duration;

use common::{Form, Image, Images};
use serde_json::Value;

/// Deadline for one `info` run on a generated image (they take milliseconds).
const INFO_TIMEOUT: Duration = Duration::from_secs(30);

const MIB: u64 = 1 << 20;

/// The tools the oracles run, with their Debian packages.
const ORACLE_TOOLS: &[(&str, &str)] = &[
    ("sfdisk", "fdisk"),
    ("fdisk", "fdisk"),
    ("sgdisk", "gdisk"),
    ("blkid", "util-linux"),
    ("qemu-img", "qemu-utils"),
    ("mdir", "mtools"),
];

const ESP_TYPE: &str = "c12a7328-f81f-11d2-ba4b-00a0c93ec93b";

// ---------------------------------------------------------------------------------------------
// Collecting mismatches
// ---------------------------------------------------------------------------------------------

#[derive(Default)]
struct Check {
    failures: Vec<String>,
    checked: usize,
}

impl Check {
    fn eq<T: Debug + PartialEq>(&mut self, ctx: &str, what: &str, got: T, want: T) {
        self.checked += 1;
        if got != want {
            self.failures.push(format!(
                "{ctx}: {what}: vhdtool says {got:?}, oracle says {want:?}"
            ));
        }
    }

    fn ok(&mut self, ctx: &str, cond: bool, msg: impl FnOnce() -> String) {
        self.checked += 1;
        if !cond {
            self.failures.push(format!("{ctx}: {}", msg()));
        }
    }

    fn finish(self, test: &str) {
        assert!(self.checked > 0, "{test}: nothing was checked");
        assert!(
            self.failures.is_empty(),
            "{test}: {} mismatch(es):\n  {}",
            self.failures.len(),
            self.failures.join("\n  ")
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Running vhdtool once per image
// ---------------------------------------------------------------------------------------------

struct Setup {
    images: &'static Images,
    /// `info --json` of every image, by file name: (exit code, report).
    reports: HashMap<String, (i32, Value)>,
    /// Oracle facts of every raw disk, by file name.
    oracles: HashMap<String, Oracle>,
}

fn setup() -> Option<&'static Setup> {
    static SETUP: OnceLock<Option<Setup>> = OnceLock::new();
    SETUP
        .get_or_init(|| {
            let images = common::images()?;
            if !common::require_tools(ORACLE_TOOLS) {
                return None;
            }
            let reports = images
                .list
                .iter()
                .map(|img| {
                    let (run, json) = common::info_json(&images.path(&img.file), INFO_TIMEOUT);
                    (img.file.clone(), (run.exit_code(), json))
                })
                .collect();
            let oracles = images
                .list
                .iter()
                .filter(|img| img.form == Form::Raw)
                .map(|img| (img.file.clone(), Oracle::of(images, img)))
                .collect();
            Some(Setup {
                images,
                reports,
                oracles,
            })
        })
        .as_ref()
}

impl Setup {
    fn report(&self, img: &Image) -> &Value {
        &self.reports[&img.file].1
    }

    fn oracle(&self, img: &Image) -> &Oracle {
        &self.oracles[&img.base]
    }
}

// ---------------------------------------------------------------------------------------------
// Oracles
// ---------------------------------------------------------------------------------------------

/// A partition as the partitioning tools see it.
#[derive(Debug, Clone)]
struct OPart {
    index: u64,
    start: u64,
    sectors: u64,
    /// MBR: "0x83"; GPT: lowercase GUID.
    type_id: String,
    bootable: Option<bool>,
    extended: bool,
    logical: bool,
    name: Option<String>,
    guid: Option<String>,
    /// `None`: the oracle does not say (fdisk on 4K disks).
    attributes: Option<u64>,
}

/// What blkid says is at a partition's start.
#[derive(Debug, Clone, PartialEq)]
struct OFs {
    kind: String,
    label: Option<String>,
    uuid: Option<String>,
}

#[derive(Debug, Clone)]
struct Table {
    /// MBR: "0x1a2b3c4d"; GPT: lowercase GUID.
    disk_id: String,
    /// GPT: first and last usable LBA.
    usable: Option<(u64, u64)>,
    parts: Vec<OPart>,
}

#[derive(Debug, Clone)]
struct Oracle {
    table: Option<Table>,
    /// blkid's answer for each partition, by index.
    fs: BTreeMap<u64, Option<OFs>>,
    /// GPT (not hybrid), an ESP that blkid calls FAT, and mtools finds a UEFI loader on it.
    gen2: bool,
}

fn output(cmd: &mut std::process::Command, what: &str) -> (i32, String) {
    let run = common::run_with_timeout(cmd, Duration::from_secs(60));
    assert!(!run.timed_out, "{what}: timed out");
    (run.code.unwrap_or(-1), run.stdout)
}

fn must(cmd: &mut std::process::Command, what: &str) -> String {
    let run = common::run_with_timeout(cmd, Duration::from_secs(60));
    assert!(
        !run.timed_out && run.code == Some(0),
        "{what} failed ({:?}):\n{}",
        run.code,
        run.stderr
    );
    run.stdout
}

/// Partition number from an sfdisk/fdisk node name ("/x/disk.raw5" -> 5).
fn node_index(node: &str, device: &str) -> u64 {
    node.strip_prefix(device)
        .and_then(|n| n.trim_start_matches('p').parse().ok())
        .unwrap_or_else(|| panic!("partition node {node:?} of {device:?}"))
}

/// MBR partitions from `sfdisk -J`.
fn sfdisk_mbr(path: &Path) -> Table {
    let text = must(common::tool("sfdisk").arg("-J").arg(path), "sfdisk -J");
    let json: Value = serde_json::from_str(&text).expect("sfdisk -J gives JSON");
    let pt = &json["partitiontable"];
    assert_eq!(pt["label"], "dos", "{}: sfdisk label", path.display());
    let device = pt["device"].as_str().expect("device");
    let parts = pt["partitions"]
        .as_array()
        .expect("partitions")
        .iter()
        .map(|p| {
            let index = node_index(p["node"].as_str().expect("node"), device);
            let ty = u8::from_str_radix(p["type"].as_str().expect("type"), 16).expect("hex type");
            OPart {
                index,
                start: p["start"].as_u64().expect("start"),
                sectors: p["size"].as_u64().expect("size"),
                type_id: format!("0x{ty:02x}"),
                bootable: Some(p["bootable"].as_bool().unwrap_or(false)),
                extended: matches!(ty, 0x05 | 0x0f | 0x85),
                logical: index >= 5,
                name: None,
                guid: None,
                attributes: None,
            }
        })
        .collect();
    Table {
        disk_id: pt["id"].as_str().expect("id").to_lowercase(),
        usable: None,
        parts,
    }
}

fn after<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    text.lines()
        .find_map(|l| l.trim().strip_prefix(key))
        .map(str::trim)
}

/// GPT partitions from `sgdisk -p` and `sgdisk -i N`.
fn sgdisk_gpt(path: &Path) -> Table {
    let p = must(common::tool("sgdisk").arg("-p").arg(path), "sgdisk -p");
    let disk_id = after(&p, "Disk identifier (GUID):")
        .expect("sgdisk disk GUID")
        .to_lowercase();
    let usable = after(&p, "First usable sector is ").map(|s| {
        // "34, last usable sector is 614366"
        let (first, rest) = s.split_once(',').expect("usable line");
        let last = rest.trim().trim_start_matches("last usable sector is ");
        (
            first.trim().parse().expect("first usable"),
            last.trim().parse().expect("last usable"),
        )
    });
    let numbers: Vec<u64> = p
        .lines()
        .skip_while(|l| !l.starts_with("Number"))
        .skip(1)
        .filter_map(|l| l.split_whitespace().next()?.parse().ok())
        .collect();
    let parts = numbers
        .into_iter()
        .map(|n| {
            let i = must(
                common::tool("sgdisk").arg(format!("-i{n}")).arg(path),
                "sgdisk -i",
            );
            let first: u64 = after(&i, "First sector:")
                .and_then(|s| s.split_whitespace().next()?.parse().ok())
                .expect("first sector");
            let last: u64 = after(&i, "Last sector:")
                .and_then(|s| s.split_whitespace().next()?.parse().ok())
                .expect("last sector");
            let name = after(&i, "Partition name:")
                .expect("name")
                .trim_matches('\'')
                .to_string();
            OPart {
                index: n,
                start: first,
                sectors: last - first + 1,
                type_id: after(&i, "Partition GUID code:")
                    .and_then(|s| s.split_whitespace().next())
                    .expect("type GUID")
                    .to_lowercase(),
                bootable: None,
                extended: false,
                logical: false,
                name: Some(name),
                guid: Some(
                    after(&i, "Partition unique GUID:")
                        .expect("unique GUID")
                        .to_lowercase(),
                ),
                attributes: Some(
                    u64::from_str_radix(after(&i, "Attribute flags:").expect("attributes"), 16)
                        .expect("hex attributes"),
                ),
            }
        })
        .collect();
    Table {
        disk_id,
        usable,
        parts,
    }
}

/// GPT partitions of a disk with 4096-byte sectors, from `fdisk -b 4096 -l` (sgdisk and sfdisk
/// read image files with 512-byte sectors).
fn fdisk_gpt_4k(path: &Path) -> Table {
    let device = path.to_str().expect("utf-8 path");
    let text = must(
        common::tool("fdisk")
            .args([
                "-b",
                "4096",
                "-l",
                "-o",
                "Device,Start,End,Sectors,Type-UUID,UUID,Name",
            ])
            .arg(path),
        "fdisk -b 4096 -l",
    );
    let disk_id = after(&text, "Disk identifier:")
        .expect("fdisk disk identifier")
        .to_lowercase();
    let parts = text
        .lines()
        .filter(|l| l.starts_with(device))
        .map(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            OPart {
                index: node_index(cols[0], device),
                start: cols[1].parse().expect("start"),
                sectors: cols[3].parse().expect("sectors"),
                type_id: cols[4].to_lowercase(),
                bootable: None,
                extended: false,
                logical: false,
                name: Some(cols[6..].join(" ")),
                guid: Some(cols[5].to_lowercase()),
                attributes: None,
            }
        })
        .collect();
    let details = must(
        common::tool("fdisk")
            .args(["-b", "4096", "-l", "-x"])
            .arg(path),
        "fdisk -b 4096 -l -x",
    );
    let lba = |key: &str| -> u64 {
        after(&details, key)
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("fdisk -l -x: no {key:?}"))
    };
    Table {
        disk_id,
        usable: Some((lba("First usable LBA:"), lba("Last usable LBA:"))),
        parts,
    }
}

/// Undo blkid's `-o export` escaping (a backslash before special characters).
fn unescape(s: &str) -> String {
    let mut out = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(n) = chars.next() {
                out.push(n);
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// `blkid -p -O OFFSET -S SIZE -o export`: the filesystem at a partition.
fn blkid_at(path: &Path, offset: u64, size: u64) -> Option<OFs> {
    let (code, text) = output(
        common::tool("blkid")
            .args(["-p", "-o", "export", "-O"])
            .arg(offset.to_string())
            .arg("-S")
            .arg(size.to_string())
            .arg(path),
        "blkid -p",
    );
    // 2: nothing found
    if code == 2 {
        return None;
    }
    assert_eq!(
        code,
        0,
        "blkid -p -O {offset} {}: exit {code}",
        path.display()
    );
    let kv: HashMap<String, String> = text
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), unescape(v)))
        .collect();
    let ty = kv.get("TYPE")?;
    let version = kv.get("VERSION").map(String::as_str).unwrap_or("");
    let kind = match (ty.as_str(), version) {
        ("vfat", "FAT12") => "fat12",
        ("vfat", "FAT16") => "fat16",
        ("vfat", _) => "fat32",
        ("crypto_LUKS", "1") => "luks1",
        ("crypto_LUKS", _) => "luks2",
        ("BitLocker", _) => "bitlocker",
        ("LVM2_member", _) => "lvm2",
        ("ReFS", _) => "refs",
        (other, _) => return Some(fs(other, &kv)),
    };
    Some(fs(kind, &kv))
}

fn fs(kind: &str, kv: &HashMap<String, String>) -> OFs {
    OFs {
        kind: kind.to_lowercase(),
        label: kv.get("LABEL").cloned(),
        uuid: kv.get("UUID").cloned(),
    }
}

/// Does mtools find `path` on the FAT filesystem at byte `offset`?
fn fat_has(image: &Path, offset: u64, path: &str) -> bool {
    let (code, _) = output(
        common::tool("mdir")
            .env("MTOOLS_SKIP_CHECK", "1")
            .arg("-b")
            .arg("-i")
            .arg(format!("{}@@{offset}", image.display()))
            .arg(format!("::/{path}")),
        "mdir",
    );
    code == 0
}

impl Oracle {
    fn of(images: &Images, img: &Image) -> Oracle {
        let path = images.path(&img.file);
        let table = match (img.scheme.as_str(), img.sector_bytes) {
            ("mbr", _) => Some(sfdisk_mbr(&path)),
            ("gpt" | "hybrid", 4096) => Some(fdisk_gpt_4k(&path)),
            ("gpt" | "hybrid", _) => Some(sgdisk_gpt(&path)),
            _ => None,
        };
        let sb = img.sector_bytes;
        let fs = table
            .iter()
            .flat_map(|t| &t.parts)
            .map(|p| {
                let found = if p.extended {
                    None
                } else {
                    blkid_at(&path, p.start * sb, p.sectors * sb)
                };
                (p.index, found)
            })
            .collect::<BTreeMap<_, _>>();
        let gen2 = img.scheme == "gpt"
            && table.iter().flat_map(|t| &t.parts).any(|p| {
                p.type_id == ESP_TYPE
                    && fs[&p.index]
                        .as_ref()
                        .is_some_and(|f| f.kind.starts_with("fat"))
                    && ["EFI/BOOT/BOOTX64.EFI", "EFI/Microsoft/Boot/bootmgfw.efi"]
                        .iter()
                        .any(|l| fat_has(&path, p.start * sb, l))
            });
        Oracle { table, fs, gen2 }
    }
}

// ---------------------------------------------------------------------------------------------
// Byte-level VHD decode (VHD specification, "Hard Disk Footer Format", "Dynamic Disk Header")
// ---------------------------------------------------------------------------------------------

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn text4(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Four-character codes compare without the padding ("win " and "win" are the same creator).
fn code4(s: Option<&str>) -> Option<String> {
    s.map(|s| s.trim_end_matches([' ', '\0']).to_string())
}

/// "YYYY-MM-DDTHH:MM:SS" of seconds since 2000-01-01T00:00:00Z (civil-from-days).
fn vhd_time(ts: u64) -> String {
    let secs = ts + 946_684_800;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// Compare the report's footer with the last 512 bytes of the file.
fn check_footer(c: &mut Check, ctx: &str, path: &Path, footer: &Value) {
    let len = std::fs::metadata(path).expect("stat").len();
    let b = common::read_at(path, len - 512, 512);
    let geometry = &footer["geometry"];
    c.eq(
        ctx,
        "footer.cookie",
        footer["cookie"].as_str(),
        Some(text4(&b[0..8]).as_str()),
    );
    c.eq(
        ctx,
        "footer.features",
        footer["features"].as_u64(),
        Some(common::be(&b, 8, 4)),
    );
    c.eq(
        ctx,
        "footer.format_version",
        footer["format_version"].as_u64(),
        Some(common::be(&b, 12, 4)),
    );
    c.eq(
        ctx,
        "footer.data_offset",
        footer["data_offset"].as_u64(),
        Some(common::be(&b, 16, 8)),
    );
    let ts = common::be(&b, 24, 4);
    c.eq(
        ctx,
        "footer.timestamp",
        footer["timestamp"].as_u64(),
        Some(ts),
    );
    c.ok(
        ctx,
        footer["timestamp_utc"]
            .as_str()
            .is_some_and(|s| s.starts_with(&vhd_time(ts))),
        || {
            format!(
                "footer.timestamp_utc {} does not start with {}",
                footer["timestamp_utc"],
                vhd_time(ts)
            )
        },
    );
    c.eq(
        ctx,
        "footer.creator_application",
        code4(footer["creator_application"].as_str()),
        code4(Some(&text4(&b[28..32]))),
    );
    c.eq(
        ctx,
        "footer.creator_version",
        footer["creator_version"].as_u64(),
        Some(common::be(&b, 32, 4)),
    );
    c.eq(
        ctx,
        "footer.creator_host_os",
        code4(footer["creator_host_os"].as_str()),
        code4(Some(&text4(&b[36..40]))),
    );
    c.eq(
        ctx,
        "footer.original_size",
        footer["original_size"].as_u64(),
        Some(common::be(&b, 40, 8)),
    );
    c.eq(
        ctx,
        "footer.current_size",
        footer["current_size"].as_u64(),
        Some(common::be(&b, 48, 8)),
    );
    c.eq(
        ctx,
        "footer.geometry.cylinders",
        geometry["cylinders"].as_u64(),
        Some(common::be(&b, 56, 2)),
    );
    c.eq(
        ctx,
        "footer.geometry.heads",
        geometry["heads"].as_u64(),
        Some(u64::from(b[58])),
    );
    c.eq(
        ctx,
        "footer.geometry.sectors_per_track",
        geometry["sectors_per_track"].as_u64(),
        Some(u64::from(b[59])),
    );
    c.eq(
        ctx,
        "footer.disk_type",
        footer["disk_type"].as_u64(),
        Some(common::be(&b, 60, 4)),
    );
    c.eq(
        ctx,
        "footer.checksum",
        footer["checksum"].as_u64(),
        Some(common::be(&b, 64, 4)),
    );
    c.eq(
        ctx,
        "footer.computed_checksum",
        footer["computed_checksum"].as_u64(),
        Some(u64::from(common::vhd_checksum(&b, 64))),
    );
    c.eq(
        ctx,
        "footer.unique_id",
        footer["unique_id"].as_str(),
        Some(hex(&b[68..84]).as_str()),
    );
    c.eq(
        ctx,
        "footer.saved_state",
        footer["saved_state"].as_u64(),
        Some(u64::from(b[84])),
    );
    c.eq(
        ctx,
        "footer.offset",
        footer["offset"].as_u64(),
        Some(len - 512),
    );
    c.eq(
        ctx,
        "footer.legacy_511",
        footer["legacy_511"].as_bool(),
        Some(false),
    );
}

/// `qemu-img info -f vpc --output=json`: virtual-size.
fn qemu_virtual_size(path: &Path) -> u64 {
    let text = must(
        common::tool("qemu-img")
            .args(["info", "-f", "vpc", "--output=json"])
            .arg(path),
        "qemu-img info",
    );
    let json: Value = serde_json::from_str(&text).expect("qemu-img JSON");
    json["virtual-size"].as_u64().expect("virtual-size")
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

#[test]
fn image_format_and_sizes() {
    let Some(s) = setup() else { return };
    let mut c = Check::default();
    for img in &s.images.list {
        let r = s.report(img);
        let path = s.images.path(&img.file);
        let ctx = &img.file;
        let len = std::fs::metadata(&path).expect("stat").len();
        c.eq(ctx, "path", r["path"].as_str(), path.to_str());
        c.eq(ctx, "file_bytes", r["file_bytes"].as_u64(), Some(len));
        c.eq(ctx, "format", r["format"].as_str(), Some(img.form.format()));
        let (virt, data) = match img.form {
            Form::Raw => (Some(len), Some(len)),
            Form::VhdFixedForce | Form::VhdFixedChs => (Some(len - 512), Some(len - 512)),
            Form::VhdDynamic | Form::VhdDifferencing => (None, Some(0)),
        };
        if let Some(v) = virt {
            c.eq(ctx, "virtual_bytes", r["virtual_bytes"].as_u64(), Some(v));
        }
        c.eq(ctx, "data_bytes", r["data_bytes"].as_u64(), data);
        if img.form.is_vhd() {
            c.eq(
                ctx,
                "virtual_bytes vs qemu-img virtual-size",
                r["virtual_bytes"].as_u64(),
                Some(qemu_virtual_size(&path)),
            );
        } else {
            c.ok(ctx, r["footer"].is_null(), || {
                "a raw disk has no footer".into()
            });
            c.ok(ctx, r["dynamic"].is_null(), || {
                "a raw disk has no dynamic header".into()
            });
        }
        if img.form == Form::VhdFixedForce {
            // force_size keeps the size of the raw disk
            let raw = std::fs::metadata(s.images.path(&img.base))
                .expect("stat")
                .len();
            c.eq(
                ctx,
                "virtual_bytes (= raw size)",
                r["virtual_bytes"].as_u64(),
                Some(raw),
            );
        }
        if img.form.is_flat() {
            c.eq(
                ctx,
                "sector_bytes",
                r["sector_bytes"].as_u64(),
                Some(img.sector_bytes),
            );
            c.eq(
                ctx,
                "partition_table",
                r["partition_table"].as_str(),
                Some(img.scheme.as_str()),
            );
        }
    }
    c.finish("image_format_and_sizes");
}

#[test]
fn vhd_footer_matches_bytes() {
    let Some(s) = setup() else { return };
    let mut c = Check::default();
    for img in s.images.list.iter().filter(|i| i.form.is_vhd()) {
        let r = s.report(img);
        let ctx = &img.file;
        let footer = &r["footer"];
        if footer.is_null() {
            c.ok(ctx, false, || "no footer reported".into());
            continue;
        }
        check_footer(&mut c, ctx, &s.images.path(&img.file), footer);
        c.eq(
            ctx,
            "footer checksum is valid",
            footer["checksum"].as_u64(),
            footer["computed_checksum"].as_u64(),
        );
        c.eq(
            ctx,
            "virtual_bytes = current_size",
            r["virtual_bytes"].as_u64(),
            footer["current_size"].as_u64(),
        );
        match img.form {
            Form::VhdFixedForce => {
                c.eq(
                    ctx,
                    "creator",
                    footer["creator_application"].as_str(),
                    Some("qem2"),
                );
            }
            Form::VhdFixedChs => {
                c.eq(
                    ctx,
                    "creator",
                    footer["creator_application"].as_str(),
                    Some("qemu"),
                );
                // qemu-img chose the size from the CHS geometry, as the spec's algorithm does
                c.eq(
                    ctx,
                    "computed_geometry",
                    &footer["computed_geometry"],
                    &footer["geometry"],
                );
            }
            _ => {}
        }
    }
    c.finish("vhd_footer_matches_bytes");
}

#[test]
fn dynamic_and_differencing_headers_match_bytes() {
    let Some(s) = setup() else { return };
    let mut c = Check::default();
    for img in s
        .images
        .list
        .iter()
        .filter(|i| matches!(i.form, Form::VhdDynamic | Form::VhdDifferencing))
    {
        let r = s.report(img);
        let ctx = &img.file;
        let path = s.images.path(&img.file);
        let d = &r["dynamic"];
        if d.is_null() {
            c.ok(ctx, false, || "no dynamic header reported".into());
            continue;
        }
        let len = std::fs::metadata(&path).expect("stat").len();
        let foot = common::read_at(&path, len - 512, 512);
        let at = common::be(&foot, 16, 8);
        let h = common::read_at(&path, at, 1024);
        assert_eq!(&h[0..8], b"cxsparse", "{ctx}: dynamic header cookie");
        let table_offset = common::be(&h, 16, 8);
        let entries = common::be(&h, 28, 4);
        c.eq(
            ctx,
            "dynamic.table_offset",
            d["table_offset"].as_u64(),
            Some(table_offset),
        );
        c.eq(
            ctx,
            "dynamic.header_version",
            d["header_version"].as_u64(),
            Some(common::be(&h, 24, 4)),
        );
        c.eq(
            ctx,
            "dynamic.max_table_entries",
            d["max_table_entries"].as_u64(),
            Some(entries),
        );
        c.eq(
            ctx,
            "dynamic.block_size",
            d["block_size"].as_u64(),
            Some(common::be(&h, 32, 4)),
        );
        c.eq(
            ctx,
            "dynamic.checksum",
            d["checksum"].as_u64(),
            Some(common::be(&h, 36, 4)),
        );
        c.eq(
            ctx,
            "dynamic.computed_checksum",
            d["computed_checksum"].as_u64(),
            Some(u64::from(common::vhd_checksum(&h, 36))),
        );
        c.eq(
            ctx,
            "dynamic.parent_unique_id",
            d["parent_unique_id"].as_str(),
            Some(hex(&h[40..56]).as_str()),
        );
        c.eq(
            ctx,
            "dynamic.parent_timestamp",
            d["parent_timestamp"].as_u64(),
            Some(common::be(&h, 56, 4)),
        );
        let bat = common::read_at(&path, table_offset, entries as usize * 4);
        let allocated = bat.chunks_exact(4).filter(|e| *e != [0xff; 4]).count() as u64;
        c.eq(
            ctx,
            "dynamic.allocated_blocks",
            d["allocated_blocks"].as_u64(),
            Some(allocated),
        );
        let virt = r["virtual_bytes"].as_u64().unwrap_or(0);
        let block = common::be(&h, 32, 4);
        c.ok(ctx, block > 0 && entries == virt.div_ceil(block), || {
            format!("max_table_entries {entries} does not cover {virt} bytes in blocks of {block}")
        });
        if img.form == Form::VhdDifferencing {
            c.eq(
                ctx,
                "dynamic.parent_name",
                d["parent_name"].as_str(),
                Some("linux-mbr.dyn.vhd"),
            );
            let parent = s.images.path("linux-mbr.dyn.vhd");
            let plen = std::fs::metadata(&parent).expect("stat").len();
            let pfoot = common::read_at(&parent, plen - 512, 512);
            c.eq(
                ctx,
                "parent_unique_id = parent's footer unique id",
                d["parent_unique_id"].as_str(),
                Some(hex(&pfoot[68..84]).as_str()),
            );
            c.eq(ctx, "allocated_blocks of an empty child", allocated, 0);
        } else {
            c.ok(
                ctx,
                d["parent_name"].is_null() || d["parent_name"] == "",
                || {
                    format!(
                        "a dynamic disk has no parent, got parent_name {}",
                        d["parent_name"]
                    )
                },
            );
            if img.base != "blank.raw" {
                c.ok(ctx, allocated > 0, || "qemu-img allocated no block".into());
            }
        }
    }
    c.finish("dynamic_and_differencing_headers_match_bytes");
}

#[test]
fn partitions_match_partitioning_tools() {
    let Some(s) = setup() else { return };
    let mut c = Check::default();
    for img in s.images.list.iter().filter(|i| i.form.is_flat()) {
        let r = s.report(img);
        let ctx = &img.file;
        let oracle = s.oracle(img);
        let got = r["partitions"].as_array().cloned().unwrap_or_default();
        let Some(table) = &oracle.table else {
            c.eq(ctx, "partition count (no table)", got.len(), 0);
            c.ok(ctx, r["mbr"].is_null() && r["gpt"].is_null(), || {
                "no table, but mbr/gpt reported".into()
            });
            continue;
        };
        match img.scheme.as_str() {
            "mbr" => {
                let sig = r["mbr"]["disk_signature"]
                    .as_u64()
                    .map(|v| format!("0x{v:08x}"));
                c.eq(ctx, "mbr.disk_signature", sig, Some(table.disk_id.clone()));
                c.eq(
                    ctx,
                    "mbr.protective",
                    r["mbr"]["protective"].as_bool(),
                    Some(false),
                );
                c.ok(ctx, r["gpt"].is_null(), || "an MBR disk has no GPT".into());
            }
            _ => {
                let g = &r["gpt"];
                c.eq(
                    ctx,
                    "gpt.disk_guid",
                    g["disk_guid"].as_str(),
                    Some(table.disk_id.as_str()),
                );
                c.eq(ctx, "gpt.used", g["used"].as_str(), Some("primary"));
                c.eq(ctx, "gpt.primary_ok", g["primary_ok"].as_bool(), Some(true));
                if img.form != Form::VhdFixedChs {
                    // the CHS-rounded VHD is larger: its backup GPT is no longer at the end
                    c.eq(ctx, "gpt.backup_ok", g["backup_ok"].as_bool(), Some(true));
                }
                if img.scheme == "gpt" {
                    c.eq(
                        ctx,
                        "mbr.protective",
                        r["mbr"]["protective"].as_bool(),
                        Some(true),
                    );
                }
            }
        }
        let indices: Vec<u64> = got.iter().filter_map(|p| p["index"].as_u64()).collect();
        let want: Vec<u64> = table.parts.iter().map(|p| p.index).collect();
        c.eq(ctx, "partition indices", indices, want);
        let sb = img.sector_bytes;
        for o in &table.parts {
            let Some(p) = got.iter().find(|p| p["index"].as_u64() == Some(o.index)) else {
                continue;
            };
            let pctx = format!("{ctx} partition {}", o.index);
            let pctx = pctx.as_str();
            c.eq(pctx, "start_lba", p["start_lba"].as_u64(), Some(o.start));
            c.eq(pctx, "sectors", p["sectors"].as_u64(), Some(o.sectors));
            c.eq(
                pctx,
                "end_lba",
                p["end_lba"].as_u64(),
                Some(o.start + o.sectors - 1),
            );
            c.eq(
                pctx,
                "size_bytes",
                p["size_bytes"].as_u64(),
                Some(o.sectors * sb),
            );
            c.eq(pctx, "type", p["type"].as_str(), Some(o.type_id.as_str()));
            c.eq(pctx, "extended", p["extended"].as_bool(), Some(o.extended));
            c.eq(pctx, "logical", p["logical"].as_bool(), Some(o.logical));
            if let Some(b) = o.bootable {
                c.eq(pctx, "bootable", p["bootable"].as_bool(), Some(b));
            }
            if img.scheme == "mbr" {
                c.eq(pctx, "scheme", p["scheme"].as_str(), Some("mbr"));
                c.ok(
                    pctx,
                    p["name"].is_null() && p["guid"].is_null() && p["attributes"].is_null(),
                    || "an MBR partition has no name, guid or attributes".into(),
                );
            } else {
                c.eq(pctx, "scheme", p["scheme"].as_str(), Some("gpt"));
                c.eq(pctx, "name", p["name"].as_str(), o.name.as_deref());
                c.eq(pctx, "guid", p["guid"].as_str(), o.guid.as_deref());
                if let Some(a) = o.attributes {
                    c.eq(pctx, "attributes", p["attributes"].as_u64(), Some(a));
                }
            }
        }
    }
    c.finish("partitions_match_partitioning_tools");
}

#[test]
fn filesystems_match_blkid() {
    let Some(s) = setup() else { return };
    let mut c = Check::default();
    for img in s.images.list.iter().filter(|i| i.form.is_flat()) {
        let r = s.report(img);
        let oracle = s.oracle(img);
        for p in r["partitions"].as_array().into_iter().flatten() {
            let Some(index) = p["index"].as_u64() else {
                continue;
            };
            let Some(want) = oracle.fs.get(&index) else {
                continue;
            };
            let ctx = format!("{} partition {index}", img.file);
            let ctx = ctx.as_str();
            let f = &p["filesystem"];
            let Some(want) = want else {
                c.ok(ctx, f.is_null(), || {
                    format!("blkid finds nothing, vhdtool says {f}")
                });
                continue;
            };
            if f.is_null() {
                c.ok(ctx, false, || {
                    format!("vhdtool finds no filesystem, blkid says {want:?}")
                });
                continue;
            }
            c.eq(
                ctx,
                "filesystem.kind",
                f["kind"].as_str(),
                Some(want.kind.as_str()),
            );
            let encrypted = matches!(want.kind.as_str(), "luks1" | "luks2" | "bitlocker");
            c.eq(
                ctx,
                "filesystem.encrypted",
                f["encrypted"].as_bool(),
                Some(encrypted),
            );
            // blkid 2.38 reads neither a label nor an id from BitLocker volumes
            if want.kind != "bitlocker" || want.uuid.is_some() {
                c.eq(
                    ctx,
                    "filesystem.uuid",
                    f["uuid"].as_str(),
                    want.uuid.as_deref(),
                );
                c.eq(
                    ctx,
                    "filesystem.label",
                    f["label"].as_str(),
                    want.label.as_deref(),
                );
            }
            if let (Some(fs_bytes), Some(size)) = (f["fs_bytes"].as_u64(), p["size_bytes"].as_u64())
            {
                c.ok(ctx, fs_bytes <= size, || {
                    format!("filesystem of {fs_bytes} bytes in a partition of {size}")
                });
            }
        }
    }
    c.finish("filesystems_match_blkid");
}

#[test]
fn unallocated_is_the_rest_of_the_usable_area() {
    let Some(s) = setup() else { return };
    let mut c = Check::default();
    for img in s.images.list.iter().filter(|i| i.form.is_flat()) {
        let r = s.report(img);
        let ctx = &img.file;
        let Some(table) = &s.oracle(img).table else {
            continue;
        };
        let sb = img.sector_bytes;
        let total = r["virtual_bytes"].as_u64().unwrap_or(0) / sb;
        let (first, last) = table.usable.unwrap_or((1, total - 1));
        // sectors of [first, last] no partition covers (logicals lie inside their extended one)
        let mut used: Vec<(u64, u64)> = table
            .parts
            .iter()
            .filter(|p| !p.logical)
            .map(|p| (p.start, p.start + p.sectors - 1))
            .collect();
        used.sort_unstable();
        let mut want = Vec::new();
        let mut cursor = first;
        for (a, b) in used {
            if a > cursor {
                want.push((cursor, (a - 1).min(last)));
            }
            cursor = cursor.max(b + 1);
        }
        if cursor <= last {
            want.push((cursor, last));
        }
        let got: Vec<(u64, u64)> = r["unallocated"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|u| {
                let (a, b) = (
                    u["start_lba"].as_u64().unwrap_or(0),
                    u["end_lba"].as_u64().unwrap_or(0),
                );
                c.eq(
                    ctx,
                    "unallocated.sectors",
                    u["sectors"].as_u64(),
                    Some(b + 1 - a),
                );
                c.eq(
                    ctx,
                    "unallocated.size_bytes",
                    u["size_bytes"].as_u64(),
                    Some((b + 1 - a) * sb),
                );
                (a, b)
            })
            .collect();
        c.eq(ctx, "unallocated ranges", got, want);
    }
    c.finish("unallocated_is_the_rest_of_the_usable_area");
}

#[test]
fn azure_and_gen2_verdicts() {
    let Some(s) = setup() else { return };
    let mut c = Check::default();
    for img in &s.images.list {
        let r = s.report(img);
        let ctx = &img.file;
        let size = r["virtual_bytes"].as_u64().unwrap_or(0);
        let fits = size.is_multiple_of(MIB) && size >= 20 * MIB;
        let azure = match img.form {
            Form::Raw | Form::VhdDynamic | Form::VhdDifferencing => Some(false),
            Form::VhdFixedForce => Some(fits),
            Form::VhdFixedChs if !fits => Some(false),
            Form::VhdFixedChs => None,
        };
        if let Some(want) = azure {
            c.eq(ctx, "azure_ready", r["azure_ready"].as_bool(), Some(want));
        }
        if img.form.is_flat() {
            c.eq(
                ctx,
                "gen2_ready",
                r["gen2_ready"].as_bool(),
                Some(s.oracle(img).gen2),
            );
        }
    }
    // the generator must keep making both verdicts true somewhere
    for (file, field) in [
        ("gpt-win.force.vhd", "azure_ready"),
        ("gpt-linux.raw", "gen2_ready"),
    ] {
        let img = s.images.get(file);
        c.eq(file, field, s.report(img)[field].as_bool(), Some(true));
    }
    c.finish("azure_and_gen2_verdicts");
}

#[test]
fn clean_images_have_no_error_findings() {
    let Some(s) = setup() else { return };
    let mut c = Check::default();
    for img in &s.images.list {
        let (code, r) = &s.reports[&img.file];
        let errors: Vec<String> = common::findings(r)
            .into_iter()
            .filter(|(_, sev)| sev == "error")
            .map(|(id, _)| id)
            .collect();
        c.ok(&img.file, errors.is_empty(), || {
            format!("error findings {errors:?} on a clean image")
        });
        c.eq(&img.file, "exit code", *code, 0);
        for f in r["findings"].as_array().into_iter().flatten() {
            c.ok(
                &img.file,
                matches!(f["severity"].as_str(), Some("info" | "warning" | "error")),
                || format!("finding with a bad severity: {f}"),
            );
            c.ok(
                &img.file,
                f["id"].as_str().is_some_and(|s| !s.is_empty())
                    && f["message"].as_str().is_some_and(|s| !s.is_empty()),
                || format!("finding without id or message: {f}"),
            );
        }
    }
    c.finish("clean_images_have_no_error_findings");
}

#[test]
fn text_output_runs_on_every_image() {
    let Some(s) = setup() else { return };
    for img in &s.images.list {
        let run = common::vhdtool_timeout(
            [
                std::ffi::OsStr::new("info"),
                s.images.path(&img.file).as_os_str(),
            ],
            INFO_TIMEOUT,
        );
        let code = run.exit_code();
        assert_eq!(
            code, s.reports[&img.file].0,
            "{}: text and JSON runs disagree on the exit code",
            img.file
        );
        assert!(
            !run.stdout.trim().is_empty(),
            "{}: empty text report",
            img.file
        );
    }
}

#[test]
fn vhd_time_conversion() {
    assert_eq!(vhd_time(0), "2000-01-01T00:00:00");
    // 2026-11-23T12:00:00Z = 1795435200 unix
    assert_eq!(vhd_time(1_795_435_200 - 946_684_800), "2026-11-23T12:00:00");
    assert_eq!(vhd_time(59 * 86_400 + 1), "2000-02-29T00:00:01");
}

#[test]
fn blkid_unescape() {
    assert_eq!(unescape(r"System\ Reserved"), "System Reserved");
    assert_eq!(unescape(r"a\\b"), r"a\b");
}

/// A 2000 GiB sparse fixed VHD (testdata/make-sparse-2000g.sh, ~30 MiB on disk): sizes past
/// 2^40 bytes, a backup GPT 2000 GiB into the file, filesystems judged by blkid.
#[test]
fn sparse_2000g_vhd() {
    if !common::require_tools(&[
        ("sfdisk", "fdisk"),
        ("sgdisk", "gdisk"),
        ("mke2fs", "e2fsprogs"),
        ("mkfs.fat", "dosfstools"),
        ("python3", "python3"),
        ("blkid", "util-linux"),
        ("qemu-img", "qemu-utils"),
    ]) {
        return;
    }
    let tmp = common::TempDir::new("sparse-2000g");
    let script = common::repo_root().join("testdata/make-sparse-2000g.sh");
    let mut c = Check::default();
    for scheme in ["gpt", "mbr"] {
        let run = common::run_with_timeout(
            std::process::Command::new("bash")
                .arg(&script)
                .arg(tmp.path())
                .arg(scheme),
            Duration::from_secs(120),
        );
        assert_eq!(run.code, Some(0), "{}: {}", run.command, run.stderr);
        let path = std::path::PathBuf::from(run.stdout.trim());
        let ctx = format!("sparse-2000g-{scheme}.vhd");
        let ctx = ctx.as_str();
        let (code, r) = {
            let (run, json) = common::info_json(&path, INFO_TIMEOUT);
            (run.exit_code(), json)
        };
        c.eq(ctx, "exit code", code, 0);
        c.eq(ctx, "format", r["format"].as_str(), Some("vhd-fixed"));
        c.eq(
            ctx,
            "virtual_bytes",
            r["virtual_bytes"].as_u64(),
            Some(2000 << 30),
        );
        c.eq(
            ctx,
            "virtual_bytes vs qemu-img",
            r["virtual_bytes"].as_u64(),
            Some(qemu_virtual_size(&path)),
        );
        c.eq(ctx, "azure_ready", r["azure_ready"].as_bool(), Some(true));
        c.eq(
            ctx,
            "partition_table",
            r["partition_table"].as_str(),
            Some(scheme),
        );
        check_footer(&mut c, ctx, &path, &r["footer"]);
        // the oracles read the .vhd as a disk one sector larger (the footer); the tables are
        // the same
        let table = if scheme == "gpt" {
            sgdisk_gpt(&path)
        } else {
            sfdisk_mbr(&path)
        };
        let got = r["partitions"].as_array().cloned().unwrap_or_default();
        c.eq(ctx, "partition count", got.len(), table.parts.len());
        for (p, o) in got.iter().zip(&table.parts) {
            c.eq(ctx, "index", p["index"].as_u64(), Some(o.index));
            c.eq(ctx, "start_lba", p["start_lba"].as_u64(), Some(o.start));
            c.eq(ctx, "sectors", p["sectors"].as_u64(), Some(o.sectors));
            c.eq(ctx, "type", p["type"].as_str(), Some(o.type_id.as_str()));
            let want = blkid_at(&path, o.start * 512, o.sectors * 512);
            c.eq(
                ctx,
                "filesystem kind",
                p["filesystem"]["kind"].as_str(),
                want.as_ref().map(|f| f.kind.as_str()),
            );
            c.eq(
                ctx,
                "filesystem uuid",
                p["filesystem"]["uuid"].as_str(),
                want.as_ref().and_then(|f| f.uuid.as_deref()),
            );
        }
        let _ = std::fs::remove_file(&path);
    }
    c.finish("sparse_2000g_vhd");
}
