//! `vhdtool info` on hostile inputs built here byte by byte (tests/common/corpus.rs): it must
//! never panic (exit 101), never hang (5 s deadline, then killed = failure), always print JSON,
//! exit 0 or 1 on a readable file, and name what is wrong with a finding.
//!
//! The small cases are committed under testdata/regress/ for the fuzzers' corpora; regenerate
//! them with `VHDTOOL_BLESS=1 cargo test --test hostile regress_corpus_is_current`.
#![allow(clippy::restriction)] // tests: a panic is a failed test (the crate's panic lints are for src/)

mod common;

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::corpus::{self, Case};
use common::TempDir;

/// Deadline for one run on a hostile input.
const HOSTILE_TIMEOUT: Duration = Duration::from_secs(5);

/// Random inputs per run (deterministic seeds).
const RANDOM_SEEDS: u64 = 300;

fn regress_dir() -> PathBuf {
    common::repo_root().join("testdata/regress")
}

/// Run `info --json` on `path` and check the invariants every input must meet. Gives the report.
fn check_input(path: &Path, what: &str) -> serde_json::Value {
    let (run, json) = common::info_json(path, HOSTILE_TIMEOUT);
    let len = std::fs::metadata(path).expect("stat").len();
    assert_eq!(json["file_bytes"].as_u64(), Some(len), "{what}: file_bytes");
    assert!(
        matches!(
            json["format"].as_str(),
            Some("raw" | "vhd-fixed" | "vhd-dynamic" | "vhd-differencing")
        ),
        "{what}: format {}",
        json["format"]
    );
    let errors = common::findings(&json)
        .iter()
        .any(|(_, sev)| sev == "error");
    assert_eq!(
        run.code,
        Some(if errors { 1 } else { 0 }),
        "{what}: exit code must be 1 exactly when there are error findings\n{}",
        run.stdout
    );
    for p in json["partitions"].as_array().into_iter().flatten() {
        let (s, e, n) = (
            p["start_lba"].as_u64().expect("start_lba"),
            p["end_lba"].as_u64().expect("end_lba"),
            p["sectors"].as_u64().expect("sectors"),
        );
        assert!(
            n == 0 || s.checked_add(n - 1) == Some(e),
            "{what}: partition {} start {s} end {e} sectors {n} disagree",
            p["index"]
        );
    }
    json
}

fn check_case(dir: &TempDir, case: &Case) {
    let path = dir.write(&format!("{}.bin", case.name), &case.bytes);
    let json = check_input(&path, case.name);
    if let Some(format) = case.expect_format {
        assert_eq!(
            json["format"].as_str(),
            Some(format),
            "{}: format",
            case.name
        );
    }
    if let Some(prefix) = case.expect_finding {
        let ids: Vec<String> = common::findings(&json)
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        assert!(
            ids.iter().any(|id| id.starts_with(prefix)),
            "{}: expected a finding starting with {prefix:?}, got {ids:?}",
            case.name
        );
    }
}

#[test]
fn small_hostile_cases() {
    let dir = TempDir::new("hostile-small");
    for case in corpus::small_cases() {
        check_case(&dir, &case);
    }
}

#[test]
fn large_hostile_cases() {
    let dir = TempDir::new("hostile-large");
    for case in corpus::large_cases() {
        check_case(&dir, &case);
    }
}

#[test]
fn gpt_primary_corrupt_falls_back_to_backup() {
    let dir = TempDir::new("hostile-gpt");
    let mut disk = corpus::gpt_disk(&corpus::small_gpt_spec());
    disk[512 + 16] ^= 0xff;
    let path = dir.write("gpt-primary-bad.bin", &disk);
    let json = check_input(&path, "gpt-primary-bad");
    assert_eq!(json["partition_table"], "gpt");
    assert_eq!(json["gpt"]["used"], "backup");
    assert_eq!(json["gpt"]["primary_ok"], false);
    assert_eq!(json["gpt"]["backup_ok"], true);
    let parts = json["partitions"].as_array().expect("partitions");
    assert_eq!(parts.len(), 1, "the backup's partition: {parts:?}");
    assert_eq!(parts[0]["start_lba"], 3);
    assert_eq!(parts[0]["end_lba"], 4);
    assert_eq!(parts[0]["name"], "hostile");
    assert_eq!(parts[0]["type"], "0fc63daf-8483-4772-8e79-3d69d8477de4");
}

#[test]
fn sound_small_gpt_is_read() {
    let dir = TempDir::new("hostile-gpt-ok");
    let path = dir.write("gpt.bin", &corpus::gpt_disk(&corpus::small_gpt_spec()));
    let json = check_input(&path, "gpt-small-sound");
    assert_eq!(json["partition_table"], "gpt");
    assert_eq!(json["gpt"]["used"], "primary");
    assert_eq!(json["gpt"]["primary_ok"], true);
    assert_eq!(json["gpt"]["backup_ok"], true);
    assert_eq!(
        json["gpt"]["disk_guid"],
        "22222222-2222-2222-2222-222222222222"
    );
    assert_eq!(
        json["partitions"][0]["guid"],
        "11111111-1111-1111-1111-111111111111"
    );
}

#[test]
fn gpt_with_4096_byte_entries() {
    let dir = TempDir::new("hostile-gpt4096");
    let case = corpus::large_cases()
        .into_iter()
        .find(|c| c.name == "gpt-entry-size-4096")
        .expect("case");
    let path = dir.write("gpt4096.bin", &case.bytes);
    let json = check_input(&path, case.name);
    // legal (128 x 2^n): either read, or refused with a finding that says why
    let read = json["partitions"][0]["start_lba"] == 12 && json["partitions"][0]["end_lba"] == 40;
    let refused = common::findings(&json)
        .iter()
        .any(|(id, _)| id.starts_with("gpt."));
    assert!(
        read || refused,
        "4096-byte entries neither read nor refused: {json}"
    );
}

#[test]
fn dynamic_and_differencing_are_reported() {
    let dir = TempDir::new("hostile-dyn");
    let cases = corpus::small_cases();
    let get = |name: &str| cases.iter().find(|c| c.name == name).expect("case");
    let dyn_json = check_input(&dir.write("d.vhd", &get("dynamic-empty").bytes), "dynamic");
    assert_eq!(dyn_json["format"], "vhd-dynamic");
    assert_eq!(dyn_json["footer"]["disk_type"], 3);
    assert_eq!(dyn_json["virtual_bytes"], 4 << 20);
    assert_eq!(dyn_json["dynamic"]["block_size"], 2 << 20);
    assert_eq!(dyn_json["dynamic"]["max_table_entries"], 2);
    assert_eq!(dyn_json["dynamic"]["allocated_blocks"], 0);

    let diff_json = check_input(
        &dir.write("c.vhd", &get("differencing-empty").bytes),
        "diff",
    );
    assert_eq!(diff_json["format"], "vhd-differencing");
    assert_eq!(diff_json["footer"]["disk_type"], 4);
    assert_eq!(diff_json["dynamic"]["parent_name"], "parent.vhd");
    assert_eq!(
        diff_json["dynamic"]["parent_unique_id"],
        "77777777777777777777777777777777"
    );

    let large = corpus::large_cases();
    let one = large
        .iter()
        .find(|c| c.name == "dynamic-one-block")
        .expect("case");
    let json = check_input(&dir.write("one.vhd", &one.bytes), one.name);
    assert_eq!(json["dynamic"]["allocated_blocks"], 1);
}

#[test]
fn random_inputs_never_crash() {
    let dir = TempDir::new("hostile-random");
    let small = corpus::small_cases();
    for seed in 0..RANDOM_SEEDS {
        let bytes = corpus::random_case(seed, &small);
        let path = dir.write(&format!("random-{seed}.bin"), &bytes);
        check_input(
            &path,
            &format!("random seed {seed} ({} bytes)", bytes.len()),
        );
    }
}

#[test]
fn regress_corpus_is_current() {
    let dir = regress_dir();
    let bless = std::env::var_os("VHDTOOL_BLESS").is_some();
    if bless {
        std::fs::create_dir_all(&dir).expect("mkdir testdata/regress");
    }
    for case in corpus::small_cases() {
        assert!(case.bytes.len() < 4096, "{}: too big to commit", case.name);
        let path = dir.join(format!("{}.bin", case.name));
        if bless {
            std::fs::write(&path, &case.bytes).expect("write regress file");
            continue;
        }
        let on_disk = std::fs::read(&path).unwrap_or_else(|e| {
            panic!(
                "{}: {e}; regenerate with VHDTOOL_BLESS=1 cargo test --test hostile regress_corpus_is_current",
                path.display()
            )
        });
        assert!(
            on_disk == case.bytes,
            "{} differs from its builder; regenerate with VHDTOOL_BLESS=1 cargo test --test hostile regress_corpus_is_current",
            path.display()
        );
    }
}

/// Every file in testdata/regress/ (the builders' cases and crashes found by fuzzing).
#[test]
fn regress_files_never_crash() {
    let Ok(entries) = std::fs::read_dir(regress_dir()) else {
        panic!("testdata/regress/ is missing");
    };
    let mut n = 0;
    for e in entries {
        let path = e.expect("dir entry").path();
        if path.is_file() && path.extension() != Some(OsStr::new("md")) {
            check_input(&path, &path.display().to_string());
            n += 1;
        }
    }
    assert!(n > 0, "testdata/regress/ holds no input");
}

#[test]
fn unreadable_paths_fail_cleanly() {
    let dir = TempDir::new("hostile-io");
    let missing = dir.path().join("does-not-exist.vhd");
    // a directory is not an image: 3 (cannot be read) or 7 (invalid input) both say so
    for (path, what, codes) in [
        (missing.as_path(), "missing file", &[3][..]),
        (dir.path(), "directory", &[3, 7][..]),
    ] {
        let run = common::vhdtool_timeout(
            [OsStr::new("info"), OsStr::new("--json"), path.as_os_str()],
            HOSTILE_TIMEOUT,
        );
        let code = run.exit_code();
        assert!(
            codes.contains(&code),
            "{what}: exit {code}, expected one of {codes:?}: {}",
            run.stderr
        );
        assert!(
            !run.stderr.trim().is_empty(),
            "{what}: no message on stderr"
        );
        assert!(
            run.stdout.trim().is_empty(),
            "{what}: no report expected on stdout"
        );
    }
}

#[test]
fn usage_errors_exit_2() {
    for args in [
        vec!["info"],
        vec!["no-such-command"],
        vec!["info", "--no-such-flag", "x"],
    ] {
        let run = common::vhdtool_timeout(&args, HOSTILE_TIMEOUT);
        assert_eq!(run.exit_code(), 2, "{args:?}: {}", run.stderr);
    }
}

#[test]
fn corpus_builders_are_sound() {
    // the sound GPT passes sgdisk's own verification (independent check of the builder)
    if !common::require_tool("sgdisk", "gdisk") {
        return;
    }
    let dir = TempDir::new("hostile-sgdisk");
    let path = dir.write("gpt.bin", &corpus::gpt_disk(&corpus::small_gpt_spec()));
    let run = common::run_with_timeout(
        common::tool("sgdisk").arg("-v").arg(&path),
        Duration::from_secs(30),
    );
    assert!(
        run.stdout.contains("No problems found"),
        "sgdisk -v on the builder's GPT:\n{}{}",
        run.stdout,
        run.stderr
    );
}

/// Files that are not regular files: a FIFO given as an image or a manifest, /dev/zero as a
/// manifest, a directory as an image. Each is refused at once by its type (exit 7), never read
/// without end and never blocked on in open(2).
#[test]
fn fifos_devices_and_directories_are_refused_at_once() {
    let dir = TempDir::new("hostile-not-regular");
    let fifo = dir.path().join("fifo");
    let st = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("mkfifo (coreutils)");
    assert!(st.success());
    let img = dir.write("img.raw", &vec![0u8; 1 << 20]);
    let zero = Path::new("/dev/zero");
    let cases: Vec<Vec<&OsStr>> = vec![
        vec!["info".as_ref(), fifo.as_os_str()],
        vec!["validate".as_ref(), fifo.as_os_str()],
        vec!["convert".as_ref(), fifo.as_os_str()],
        vec!["checksum".as_ref(), fifo.as_os_str()],
        vec!["info".as_ref(), dir.path().as_os_str()],
        vec!["convert".as_ref(), dir.path().as_os_str()],
        vec![
            "verify".as_ref(),
            img.as_os_str(),
            "--manifest".as_ref(),
            zero.as_os_str(),
        ],
        vec![
            "verify".as_ref(),
            img.as_os_str(),
            "--manifest".as_ref(),
            fifo.as_os_str(),
        ],
    ];
    for args in cases {
        let run = common::vhdtool_timeout(&args, HOSTILE_TIMEOUT);
        assert!(!run.timed_out, "{args:?}: hung");
        assert_eq!(
            run.code,
            Some(7),
            "{args:?}: {}\n{}",
            run.stdout,
            run.stderr
        );
        assert!(
            run.stderr.contains("regular files only"),
            "{args:?}: {}",
            run.stderr
        );
    }
}
