//! The README's exit-code table is true: one case of each error the issue found inconsistent
//! (issue 15, item 15) is run, and its exit code must be the one whose README row names the
//! case. The mapping itself (error kind -> code) is one function, `ErrorKind::exit_code`.
//!
//! The immutable-file, read-only-mount and `nobody` cases need root (and a runner allowed to
//! mount); without it they say so and skip (with VHDTOOL_REQUIRE_PRIVILEGED=1 they fail).
#![allow(clippy::restriction)] // tests: a panic is a failed test (the crate's panic lints are for src/)

mod common;

use std::ffi::OsStr;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::TempDir;

/// The rows of the README's exit-code table: (code, meaning).
fn readme_rows() -> Vec<(i32, String)> {
    let readme = fs::read_to_string(common::repo_root().join("README.md")).unwrap();
    let table = readme
        .split("## Exit codes")
        .nth(1)
        .and_then(|t| t.split("\n## ").next())
        .expect("README.md has an \"Exit codes\" section");
    table
        .lines()
        .filter_map(|l| {
            let mut cols = l.trim_start_matches('|').split('|');
            let code = cols.next()?.trim().parse().ok()?;
            Some((code, cols.next()?.trim().to_string()))
        })
        .collect()
}

/// The run exited with the code whose README row contains `words`.
fn assert_documented(run: &common::Run, words: &str, what: &str) {
    let code = run.exit_code();
    let rows = readme_rows();
    let row = rows.iter().find(|(c, _)| *c == code);
    assert!(
        row.is_some_and(|(_, m)| m.contains(words)),
        "{what}: exit {code}, whose README row is {row:?}, which does not say {words:?}\nstderr: {}",
        run.stderr
    );
    let others: Vec<_> = rows
        .iter()
        .filter(|(c, m)| *c != code && m.contains(words))
        .collect();
    assert!(
        others.is_empty(),
        "{what}: {words:?} also appears in {others:?}"
    );
}

fn run<I, S>(args: I) -> common::Run
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    common::vhdtool(args)
}

/// A small file that is a regular image file (an MBR with one partition).
fn small_image(dir: &TempDir, name: &str) -> PathBuf {
    let mut b = vec![0u8; 4 << 20];
    // partition 1: type 0x83 from LBA 2048, 4096 sectors... kept inside the file: 2048 sectors
    b[446 + 4] = 0x83;
    b[446 + 8..446 + 12].copy_from_slice(&2048u32.to_le_bytes());
    b[446 + 12..446 + 16].copy_from_slice(&4096u32.to_le_bytes());
    b[510] = 0x55;
    b[511] = 0xaa;
    dir.write(name, &b)
}

fn skip(why: &str) {
    let msg = format!("SKIPPED: {why}");
    if std::env::var_os("VHDTOOL_REQUIRE_PRIVILEGED").is_some_and(|v| v == "1") {
        panic!("{msg} (VHDTOOL_REQUIRE_PRIVILEGED=1, so this is a failure)");
    }
    eprintln!("######## {msg} ########");
}

fn sh(cmd: &mut Command) -> bool {
    cmd.stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

#[test]
fn rollback_without_a_journal_is_a_conflict_not_a_refused_convert() {
    let dir = TempDir::new("exit-rollback");
    let img = small_image(&dir, "disk.raw");
    let r = run(["rollback".as_ref(), img.as_os_str()]);
    assert_documented(&r, "no journal", "rollback without a journal");
    assert!(r.stderr.contains("no undo journal"), "{}", r.stderr);
}

#[test]
fn a_damaged_journal_is_corrupt() {
    let dir = TempDir::new("exit-journal");
    let img = small_image(&dir, "disk.raw");
    dir.write("disk.raw.vhdtool-journal", b"VHDTJRN1 not a journal at all");
    let r = run(["rollback".as_ref(), img.as_os_str()]);
    assert_documented(&r, "damaged journal", "rollback with a damaged journal");
}

#[test]
fn a_directory_is_the_same_invalid_request_for_every_command() {
    let dir = TempDir::new("exit-dir");
    let d = dir.path().join("a-directory");
    fs::create_dir_all(&d).unwrap();
    let out = dir.path().join("out.vhd");
    let m = dir.path().join("m.json");
    let cases: Vec<Vec<&OsStr>> = vec![
        vec!["info".as_ref(), d.as_os_str()],
        vec!["validate".as_ref(), d.as_os_str()],
        vec!["convert".as_ref(), d.as_os_str()],
        vec![
            "convert".as_ref(),
            "-o".as_ref(),
            out.as_os_str(),
            d.as_os_str(),
        ],
        vec!["checksum".as_ref(), d.as_os_str()],
        vec![
            "verify".as_ref(),
            "--manifest".as_ref(),
            d.as_os_str(),
            m.as_os_str(),
        ],
        vec!["diff".as_ref(), d.as_os_str(), d.as_os_str()],
        vec!["rollback".as_ref(), d.as_os_str()],
    ];
    for args in cases {
        let r = run(&args);
        assert_documented(&r, "a directory", &format!("{args:?}"));
    }
}

#[test]
fn a_bad_command_line_is_a_usage_error() {
    let r = run(["frobnicate"]);
    assert_documented(&r, "usage error", "unknown subcommand");
}

/// `chattr +i` (EPERM) and a read-only mount (EROFS) are the same thing to `convert`: the image
/// cannot be written. Both are a conflict, and nothing is written.
#[test]
fn immutable_and_read_only_mount_give_the_same_code() {
    let dir = TempDir::new("exit-ro");
    let img = small_image(&dir, "disk.raw");
    let before = fs::read(&img).unwrap();
    let mut tested = 0;
    if sh(Command::new("chattr").arg("+i").arg(&img)) {
        let r = run([
            "convert".as_ref(),
            "--no-boot-files".as_ref(),
            img.as_os_str(),
        ]);
        let _ = Command::new("chattr").arg("-i").arg(&img).status();
        assert_documented(&r, "immutable", "convert of an immutable image");
        tested += 1;
    }
    let ro = dir.path().join("ro");
    fs::create_dir_all(&ro).unwrap();
    if sh(Command::new("mount").arg("--bind").arg(dir.path()).arg(&ro)) {
        let remounted = sh(Command::new("mount")
            .args(["-o", "remount,bind,ro"])
            .arg(&ro));
        if remounted {
            let r = run([
                "convert".as_ref(),
                "--no-boot-files".as_ref(),
                ro.join("disk.raw").as_os_str(),
            ]);
            let _ = Command::new("umount").arg("-l").arg(&ro).status();
            assert_documented(&r, "read-only mount", "convert on a read-only mount");
            tested += 1;
        } else {
            let _ = Command::new("umount").arg("-l").arg(&ro).status();
        }
    }
    assert!(fs::read(&img).unwrap() == before, "the image changed");
    if tested < 2 {
        skip("chattr +i or a read-only bind mount is unavailable (needs root)");
    }
}

/// A file of mode 000 read by an unprivileged user: `info` cannot read it. That is an I/O error
/// (permissions), and the message says it cannot be read, not "cannot be opened for writing".
#[test]
fn an_unreadable_file_is_an_io_error_that_says_so() {
    let is_root = fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .find(|l| l.starts_with("Uid:"))
            .is_some_and(|l| l.split_whitespace().nth(1) == Some("0"))
    });
    if !is_root || common::tool_path("setpriv").is_none() {
        skip("running as another user needs root and setpriv (util-linux)");
        return;
    }
    // somewhere `nobody` can reach: the binary and the file in a fresh world-readable dir
    let base = std::env::temp_dir().join(format!("vhdtool-exit-nobody-{}", std::process::id()));
    struct Gone(PathBuf);
    impl Drop for Gone {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }
    let _gone = Gone(base.clone());
    fs::create_dir_all(&base).unwrap();
    set_mode(&base, 0o755);
    let bin = base.join("vhdtool");
    fs::copy(common::bin(), &bin).unwrap();
    set_mode(&bin, 0o755);
    let img = base.join("secret.raw");
    fs::write(&img, vec![0u8; 1 << 20]).unwrap();
    set_mode(&img, 0o000);
    for sub in ["info", "validate", "checksum"] {
        let mut cmd = Command::new("setpriv");
        cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(&bin)
            .arg(sub)
            .arg(&img);
        let r = common::run_with_timeout(&mut cmd, std::time::Duration::from_secs(30));
        assert_documented(
            &r,
            "cannot be read (permissions)",
            &format!("{sub} as nobody"),
        );
        assert!(
            r.stderr.contains("cannot be opened for reading") && !r.stderr.contains("writing"),
            "{sub}: {}",
            r.stderr
        );
    }
}

fn set_mode(p: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(p, fs::Permissions::from_mode(mode)).unwrap();
}
