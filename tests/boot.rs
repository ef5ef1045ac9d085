//! Boot proof of the Gen1 -> Gen2 conversion: real firmware, real boot loaders,
//! a real (Debian-signed) kernel, under QEMU with TCG (no KVM needed).
//!
//! The fixture (`testdata/boot/make-gen1-image.sh`) is a small MBR disk that
//! boots under a BIOS with grub-pc; its initramfs prints
//! `VHDTOOL-BOOT-OK firmware=<bios|uefi> secureboot=<0|1>` on the serial
//! console after checking every file of the root fs (and of a separate /boot)
//! against checksums, and `testdata/boot/boot-test.sh` turns that into an exit
//! code. The tests here:
//!
//! * boot the fixture, wrapped as a fixed VHD, under SeaBIOS (`firmware=bios`);
//! * convert a copy with `vhdtool convert IN.vhd -o OUT.vhd --boot-files DIR`
//!   (DIR made by `testdata/boot/esp-files.sh` from the image) and boot the
//!   result under OVMF (`firmware=uefi secureboot=0`) and under OVMF with
//!   Secure Boot enforced and Microsoft's keys enrolled (`secureboot=1`), with
//!   the kernel seeing a GPT (`EXPECT_PTABLE=gpt`); the input copy must come
//!   out of the conversion unchanged;
//! * the same for the layout with a separate ext4 /boot partition;
//! * `vhdtool convert IN.vhd -o OUT.vhd` WITHOUT `--boot-files` (shim and grub
//!   taken from the image itself, src/bootfiles) for both layouts, booted
//!   under OVMF and Secure Boot;
//! * a negative control: the unconverted fixture must NOT boot under UEFI, so
//!   the harness provably can fail.
//!
//! Environment:
//! * `VHDTOOL_BOOT_CONVERTER`: a command (split on whitespace) called as
//!   `CMD IN.vhd OUT.vhd`, with `VHDTOOL_BOOT_FILES=DIR` in its environment,
//!   run from the package root, instead of the built `vhdtool convert`; e.g.
//!   `testdata/boot/reference-convert.sh` (the standard-tools oracle).
//! * `VHDTOOL_BOOT_CACHE_DIR`: where the downloaded kernel .deb is cached
//!   (default `target/boot-fixture/debs`).
//! * `CI`: when set, missing host packages FAIL the tests instead of skipping them.
//!
//! Built images are cached under `target/boot-fixture/<layout>-<hash of the
//! scripts>/`, so only the first run pays for the image build. Boots are
//! serialized (one QEMU at a time) and each has a hard timeout; progress and
//! timings go straight to stderr (not captured by the test harness).
#![allow(clippy::restriction)] // tests: a panic is a failed test (the crate's panic lints are for src/)
#![cfg(target_os = "linux")]

use std::ffi::{OsStr, OsString};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

/// Debian packages the boot tests need (`testdata/boot/install-deps.sh` installs them).
const APT_PACKAGES: &str = "qemu-system-x86 qemu-utils ovmf grub-pc-bin grub-efi-amd64-bin \
     grub-efi-amd64-signed shim-signed grub-common mtools dosfstools gdisk fdisk e2fsprogs \
     busybox-static cpio gzip";

/// Programs the scripts run, looked up in `PATH` + /usr/sbin + /sbin.
const TOOLS: &[&str] = &[
    "bash",
    "timeout",
    "qemu-system-x86_64",
    "qemu-img",
    "sfdisk",
    "sgdisk",
    "mkfs.ext4",
    "debugfs",
    "dumpe2fs",
    "mkfs.fat",
    "mmd",
    "mcopy",
    "mdir",
    "grub-mkimage",
    "cpio",
    "gzip",
    "dpkg",
    "apt-get",
    "apt-cache",
];

/// Files from packages (firmware, boot loaders) the scripts read.
const FILES: &[&str] = &[
    "/usr/share/OVMF/OVMF_CODE_4M.fd",
    "/usr/share/OVMF/OVMF_VARS_4M.fd",
    "/usr/share/OVMF/OVMF_CODE_4M.secboot.fd",
    "/usr/share/OVMF/OVMF_VARS_4M.ms.fd",
    "/bin/busybox",
    "/usr/lib/grub/i386-pc/boot.img",
    "/usr/lib/shim/shimx64.efi.signed",
    "/usr/lib/shim/mmx64.efi.signed",
    "/usr/lib/grub/x86_64-efi-signed/grubx64.efi.signed",
];

/// The scripts a fixture depends on; their content keys the fixture cache.
const FIXTURE_SCRIPTS: &[&str] = &["make-gen1-image.sh", "to-vhd.sh", "esp-files.sh"];

/// Hard limits. TCG on a loaded 2-core machine: a BIOS boot takes ~15-25 s, a
/// UEFI boot ~15-40 s; `boot-test.sh` also gives up after 60 s of serial silence.
const BIOS_TIMEOUT_S: u64 = 240;
const UEFI_TIMEOUT_S: u64 = 420;
/// The negative control fails fast (OVMF drops to its shell); bounded anyway.
const NEGATIVE_TIMEOUT_S: u64 = 120;
/// Grace on top of a script's own timeout before the test kills its process group.
const KILL_GRACE_S: u64 = 60;
const BUILD_TIMEOUT_S: u64 = 900;
const CONVERT_TIMEOUT_S: u64 = 600;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Layout {
    /// One MBR partition: ext4 root with /boot inside.
    Single,
    /// Two MBR primaries: ext4 /boot (grub-pc prefix) + ext4 root.
    SeparateBoot,
}

impl Layout {
    fn name(self) -> &'static str {
        match self {
            Layout::Single => "single",
            Layout::SeparateBoot => "separate-boot",
        }
    }
}

/// A built, cached fixture: the Gen1 image as a fixed VHD and the boot files for it.
struct Fixture {
    vhd: PathBuf,
    boot_files: PathBuf,
}

fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn scripts_dir() -> PathBuf {
    manifest_dir().join("testdata").join("boot")
}

/// `target/` (Cargo's integration-test scratch dir is `target/tmp`).
fn target_dir() -> PathBuf {
    let tmp = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    tmp.parent().map_or_else(|| tmp.clone(), Path::to_path_buf)
}

fn fixture_root() -> PathBuf {
    target_dir().join("boot-fixture")
}

/// Progress to the real stderr: `eprintln!` is captured by libtest, a direct
/// write to the stderr handle is not, so a slow boot shows what it is doing.
fn progress(msg: &str) {
    // one write per line, so it does not interleave with libtest's output
    let line = format!("[boot] {msg}\n");
    let _ = io::stderr().lock().write_all(line.as_bytes());
}

/// `PATH` with /usr/sbin and /sbin appended (sfdisk, mkfs.* live there and are
/// not on a non-root user's PATH on Debian).
fn child_path() -> OsString {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    for extra in ["/usr/sbin", "/sbin", "/usr/bin", "/bin"] {
        let extra = PathBuf::from(extra);
        if !dirs.contains(&extra) {
            dirs.push(extra);
        }
    }
    std::env::join_paths(dirs).unwrap_or_default()
}

fn find_tool(name: &str) -> bool {
    std::env::split_paths(&child_path()).any(|d| d.join(name).is_file())
}

/// Missing host prerequisites, empty when all are there.
fn missing_deps() -> Vec<String> {
    let mut missing: Vec<String> = TOOLS
        .iter()
        .filter(|t| !find_tool(t))
        .map(|t| format!("program {t}"))
        .collect();
    missing.extend(
        FILES
            .iter()
            .filter(|f| !Path::new(f).is_file())
            .map(|f| format!("file {f}")),
    );
    missing
}

/// `true` if the tests can run. Without the host packages: skip (message on
/// stderr), or panic when `CI` is set, so CI can never pass vacuously.
fn deps_present() -> bool {
    static CHECK: OnceLock<Vec<String>> = OnceLock::new();
    let missing = CHECK.get_or_init(missing_deps);
    if missing.is_empty() {
        return true;
    }
    let msg = format!(
        "boot tests need QEMU, OVMF and boot loader packages; missing: {}. \
         Install them with `sudo testdata/boot/install-deps.sh` (Debian 12 packages: {APT_PACKAGES})",
        missing.join(", ")
    );
    if std::env::var_os("CI").is_some() {
        panic!("CI is set, refusing to skip: {msg}");
    }
    progress(&format!("SKIPPED: {msg}"));
    false
}

/// One QEMU (and one image build) at a time: the machine may have 2 cores.
fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// 64-bit FNV-1a (stable across Rust versions, unlike `DefaultHasher`).
fn fnv1a(hash: u64, bytes: &[u8]) -> u64 {
    bytes.iter().fold(hash, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

fn fixture_key(layout: Layout) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    h = fnv1a(h, layout.name().as_bytes());
    for s in FIXTURE_SCRIPTS {
        let body = fs::read(scripts_dir().join(s))
            .unwrap_or_else(|e| panic!("cannot read testdata/boot/{s}: {e}"));
        h = fnv1a(h, s.as_bytes());
        h = fnv1a(h, &(body.len() as u64).to_le_bytes());
        h = fnv1a(h, &body);
    }
    format!("{}-{h:016x}", layout.name())
}

/// What a finished child run looked like.
struct Run {
    status: Option<ExitStatus>,
    timed_out: bool,
    elapsed: Duration,
    log: PathBuf,
}

impl Run {
    fn ok(&self) -> bool {
        !self.timed_out && self.status.is_some_and(|s| s.success())
    }

    fn code(&self) -> Option<i32> {
        self.status.and_then(|s| s.code())
    }

    fn log_text(&self) -> String {
        fs::read(&self.log)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// The last `n` lines of the log, for failure messages.
    fn tail(&self, n: usize) -> String {
        let text = self.log_text();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    fn describe(&self) -> String {
        if self.timed_out {
            format!(
                "killed after {:.1} s (hard timeout)",
                self.elapsed.as_secs_f64()
            )
        } else {
            format!(
                "exit {:?} after {:.1} s",
                self.code(),
                self.elapsed.as_secs_f64()
            )
        }
    }
}

/// Runs `cmd` in its own process group with stdout+stderr to `log`; kills the
/// whole group (scripts, qemu) if it is still running after `limit`.
fn run(mut cmd: Command, log: &Path, limit: Duration) -> Run {
    let out = File::create(log).unwrap_or_else(|e| panic!("create {}: {e}", log.display()));
    let err = out
        .try_clone()
        .unwrap_or_else(|e| panic!("dup {}: {e}", log.display()));
    cmd.stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .env("PATH", child_path())
        .process_group(0);
    let start = Instant::now();
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
    let mut timed_out = false;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) => {}
            Err(e) => panic!("waiting for {cmd:?}: {e}"),
        }
        if start.elapsed() >= limit {
            timed_out = true;
            // the child leads its own process group: kill the group
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", child.id())])
                .status();
            let _ = child.kill();
            break child.wait().ok();
        }
        std::thread::sleep(Duration::from_millis(250));
    };
    Run {
        status,
        timed_out,
        elapsed: start.elapsed(),
        log: log.to_path_buf(),
    }
}

fn script(name: &str) -> Command {
    Command::new(scripts_dir().join(name))
}

/// Builds (or finds in the cache) the fixture for `layout`.
fn fixture(layout: Layout) -> Fixture {
    let root = fixture_root();
    let key = fixture_key(layout);
    let dir = root.join(&key);
    let done = |dir: &Path| Fixture {
        vhd: dir.join("gen1.vhd"),
        boot_files: dir.join("boot-files"),
    };
    if dir.join("complete").is_file() {
        progress(&format!("fixture {key}: cached in {}", dir.display()));
        return done(&dir);
    }
    fs::create_dir_all(&root).unwrap_or_else(|e| panic!("mkdir {}: {e}", root.display()));
    // Build in a private directory, then rename it into place (atomic; a
    // concurrent `cargo test` building the same key just loses the race).
    let tmp = root.join(format!("{key}.tmp-{}", std::process::id()));
    let _ = fs::remove_dir_all(&tmp);
    fs::create_dir_all(&tmp).unwrap_or_else(|e| panic!("mkdir {}: {e}", tmp.display()));
    let cache =
        std::env::var_os("VHDTOOL_BOOT_CACHE_DIR").map_or_else(|| root.join("debs"), PathBuf::from);

    let raw = tmp.join("gen1.raw");
    let mut build = script("make-gen1-image.sh");
    if layout == Layout::SeparateBoot {
        build.arg("--separate-boot");
    }
    build.arg(&raw).env("CACHE_DIR", &cache);
    progress(&format!(
        "fixture {key}: building (make-gen1-image.sh, kernel .deb cache {})",
        cache.display()
    ));
    let r = run(
        build,
        &tmp.join("build.log"),
        Duration::from_secs(BUILD_TIMEOUT_S),
    );
    assert!(
        r.ok(),
        "make-gen1-image.sh ({}) failed: {}; log {}:\n{}",
        layout.name(),
        r.describe(),
        r.log.display(),
        r.tail(30)
    );
    progress(&format!(
        "fixture {key}: image built in {:.1} s",
        r.elapsed.as_secs_f64()
    ));

    let mut wrap = script("to-vhd.sh");
    wrap.arg(&raw).arg(tmp.join("gen1.vhd"));
    let r = run(wrap, &tmp.join("to-vhd.log"), Duration::from_secs(300));
    assert!(
        r.ok(),
        "to-vhd.sh failed: {}:\n{}",
        r.describe(),
        r.tail(20)
    );
    fs::remove_file(&raw).unwrap_or_else(|e| panic!("rm {}: {e}", raw.display()));

    let mut esp = script("esp-files.sh");
    esp.arg(tmp.join("gen1.vhd")).arg(tmp.join("boot-files"));
    let r = run(esp, &tmp.join("esp-files.log"), Duration::from_secs(300));
    assert!(
        r.ok(),
        "esp-files.sh failed: {}:\n{}",
        r.describe(),
        r.tail(20)
    );
    File::create(tmp.join("complete"))
        .unwrap_or_else(|e| panic!("create {}: {e}", tmp.join("complete").display()));

    if fs::rename(&tmp, &dir).is_err() {
        // someone else finished first; theirs is as good as ours
        let _ = fs::remove_dir_all(&tmp);
        assert!(
            dir.join("complete").is_file(),
            "cannot move the fixture into {}",
            dir.display()
        );
    }
    // drop fixtures of this layout built from older scripts
    if let Ok(entries) = fs::read_dir(&root) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let stale = name
                .strip_prefix(layout.name())
                .and_then(|rest| rest.strip_prefix('-'))
                .is_some_and(|rest| {
                    rest.len() == 16 && rest.bytes().all(|b| b.is_ascii_hexdigit())
                });
            if stale && name != key {
                let _ = fs::remove_dir_all(e.path());
            }
        }
    }
    done(&dir)
}

/// A fresh per-test scratch directory under `target/boot-fixture/runs/`.
fn work_dir(test: &str) -> PathBuf {
    let dir = fixture_root().join("runs").join(test);
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
    dir
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Bios,
    Uefi,
    UefiSecureBoot,
}

impl Mode {
    fn arg(self) -> &'static str {
        match self {
            Mode::Bios => "bios",
            Mode::Uefi => "uefi",
            Mode::UefiSecureBoot => "uefi-secureboot",
        }
    }

    fn marker(self) -> &'static str {
        match self {
            Mode::Bios => "VHDTOOL-BOOT-OK firmware=bios secureboot=0",
            Mode::Uefi => "VHDTOOL-BOOT-OK firmware=uefi secureboot=0",
            Mode::UefiSecureBoot => "VHDTOOL-BOOT-OK firmware=uefi secureboot=1",
        }
    }

    fn timeout_s(self) -> u64 {
        match self {
            Mode::Bios => BIOS_TIMEOUT_S,
            Mode::Uefi | Mode::UefiSecureBoot => UEFI_TIMEOUT_S,
        }
    }
}

/// Boot expectations beyond the firmware marker.
#[derive(Default, Clone, Copy)]
struct Expect {
    /// The kernel must see a GPT.
    gpt: bool,
    /// A separate /boot fs must have been found and checksummed.
    separate_boot: bool,
}

/// Boots the fixed VHD `image` with `boot-test.sh` (serial log next to `log`).
fn boot(image: &Path, mode: Mode, expect: Expect, timeout_s: u64, log: &Path) -> Run {
    let mut cmd = script("boot-test.sh");
    cmd.arg(image)
        .arg("vpc")
        .arg(mode.arg())
        .env("TIMEOUT", timeout_s.to_string())
        .env("LOG", log.with_extension("serial.log"))
        .env("CHECK_ROOT", "1");
    if expect.gpt {
        cmd.env("EXPECT_PTABLE", "gpt");
    }
    if expect.separate_boot {
        cmd.env("EXPECT_SEPARATE_BOOT", "1");
    }
    run(cmd, log, Duration::from_secs(timeout_s + KILL_GRACE_S))
}

/// Boots and requires the expected marker (and root checks).
fn boot_ok(image: &Path, mode: Mode, expect: Expect, dir: &Path, label: &str) {
    let log = dir.join(format!("boot-{label}-{}.log", mode.arg()));
    progress(&format!(
        "{label}: booting {} under {} (timeout {} s)",
        image.display(),
        mode.arg(),
        mode.timeout_s()
    ));
    let r = boot(image, mode, expect, mode.timeout_s(), &log);
    let text = r.log_text();
    assert!(
        r.ok() && text.contains(mode.marker()),
        "{label}: {} boot of {} failed ({}); expected '{}'; log {}:\n{}",
        mode.arg(),
        image.display(),
        r.describe(),
        mode.marker(),
        r.log.display(),
        r.tail(40)
    );
    let root_line = text
        .lines()
        .find_map(|l| l.split_once("VHDTOOL-ROOT-OK").map(|(_, rest)| rest.trim()))
        .unwrap_or("");
    progress(&format!(
        "{label}: {} PASS in {:.1} s ({}; ROOT-OK {root_line})",
        mode.arg(),
        r.elapsed.as_secs_f64(),
        mode.marker()
    ));
}

/// Runs the built vhdtool with `args` (log in `log`, the conversion deadline).
fn run_vhdtool<'a>(args: impl IntoIterator<Item = &'a OsStr>, log: &Path) -> Run {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_vhdtool"));
    cmd.args(args);
    run(cmd, log, Duration::from_secs(CONVERT_TIMEOUT_S))
}

/// Copies `from` to `to` keeping holes (`cp --sparse=always`).
fn sparse_copy(from: &Path, to: &Path) {
    let st = Command::new("cp")
        .arg("--sparse=always")
        .arg(from)
        .arg(to)
        .status()
        .unwrap_or_else(|e| panic!("cp: {e}"));
    assert!(
        st.success(),
        "cp {} {} failed",
        from.display(),
        to.display()
    );
}

/// Byte-for-byte equality of two files, streamed.
fn same_content(a: &Path, b: &Path) -> io::Result<bool> {
    let (mut fa, mut fb) = (File::open(a)?, File::open(b)?);
    if fa.metadata()?.len() != fb.metadata()?.len() {
        return Ok(false);
    }
    let (mut ba, mut bb) = (vec![0u8; 1 << 20], vec![0u8; 1 << 20]);
    loop {
        let n = fa.read(&mut ba)?;
        if n == 0 {
            return Ok(true);
        }
        fb.read_exact(&mut bb[..n])?;
        if ba[..n] != bb[..n] {
            return Ok(false);
        }
    }
}

/// Where the converted disk's boot files come from.
#[derive(Clone, Copy, PartialEq, Eq)]
enum BootFiles {
    /// `--boot-files DIR` (made by esp-files.sh), or `VHDTOOL_BOOT_CONVERTER`.
    Dir,
    /// No `--boot-files`: vhdtool takes shim and grub from the image itself
    /// (always the built vhdtool: this is what is under test).
    FromImage,
    /// As `FromImage`, with `--hybrid`: BIOS boot kept (GRUB's core.img rebuilt
    /// into a BIOS boot partition).
    Hybrid,
}

/// Converts a COPY of the fixture with the converter under test; returns the
/// output path. Asserts the converter succeeded and left its input unchanged.
fn convert_copy(fx: &Fixture, dir: &Path) -> PathBuf {
    convert_copy_with(fx, dir, BootFiles::Dir)
}

fn convert_copy_with(fx: &Fixture, dir: &Path, boot_files: BootFiles) -> PathBuf {
    let input = dir.join("gen1.vhd");
    let output = dir.join("gen2.vhd");
    sparse_copy(&fx.vhd, &input);
    let converter = std::env::var("VHDTOOL_BOOT_CONVERTER")
        .ok()
        .filter(|_| boot_files == BootFiles::Dir);
    let (cmd, what) = match converter {
        Some(c) if !c.trim().is_empty() => {
            let mut words = c.split_whitespace();
            let mut cmd = Command::new(words.next().unwrap_or_default());
            cmd.args(words)
                .arg(&input)
                .arg(&output)
                .env("VHDTOOL_BOOT_FILES", &fx.boot_files)
                .current_dir(manifest_dir());
            (cmd, format!("VHDTOOL_BOOT_CONVERTER={c}"))
        }
        _ => {
            let mut cmd = Command::new(env!("CARGO_BIN_EXE_vhdtool"));
            cmd.arg("convert").arg(&input).arg("-o").arg(&output);
            if boot_files == BootFiles::Dir {
                cmd.arg("--boot-files").arg(&fx.boot_files);
                (cmd, "vhdtool convert --boot-files".to_string())
            } else if boot_files == BootFiles::Hybrid {
                cmd.arg("--hybrid");
                (cmd, "vhdtool convert --hybrid".to_string())
            } else {
                (
                    cmd,
                    "vhdtool convert (boot files from the image)".to_string(),
                )
            }
        }
    };
    progress(&format!("converting {} with {what}", input.display()));
    let r = run(
        cmd,
        &dir.join("convert.log"),
        Duration::from_secs(CONVERT_TIMEOUT_S),
    );
    assert!(
        r.ok(),
        "{what} {} {} (boot files {}) failed: {}; log {}:\n{}",
        input.display(),
        output.display(),
        fx.boot_files.display(),
        r.describe(),
        r.log.display(),
        r.tail(30)
    );
    progress(&format!(
        "converted in {:.1} s -> {}",
        r.elapsed.as_secs_f64(),
        output.display()
    ));
    assert!(
        output.is_file(),
        "{what} did not create {}",
        output.display()
    );
    assert!(
        same_content(&input, &fx.vhd).unwrap_or(false),
        "{what} modified its input {}",
        input.display()
    );
    output
}

#[test]
fn gen1_fixture_boots_under_bios() {
    if !deps_present() {
        return;
    }
    let _one_at_a_time = serial();
    let fx = fixture(Layout::Single);
    let dir = work_dir("gen1-bios");
    boot_ok(&fx.vhd, Mode::Bios, Expect::default(), &dir, "gen1");
}

#[test]
fn converted_vhd_boots_under_uefi_and_secure_boot() {
    if !deps_present() {
        return;
    }
    let _one_at_a_time = serial();
    let fx = fixture(Layout::Single);
    let dir = work_dir("gen2-uefi");
    let out = convert_copy(&fx, &dir);
    let expect = Expect {
        gpt: true,
        separate_boot: false,
    };
    boot_ok(&out, Mode::Uefi, expect, &dir, "gen2");
    boot_ok(&out, Mode::UefiSecureBoot, expect, &dir, "gen2");
    // success: drop the big images, keep the logs
    let _ = fs::remove_file(dir.join("gen1.vhd"));
    let _ = fs::remove_file(out);
}

#[test]
fn separate_boot_partition_converts_and_boots() {
    if !deps_present() {
        return;
    }
    let _one_at_a_time = serial();
    let fx = fixture(Layout::SeparateBoot);
    let dir = work_dir("separate-boot");
    let gen1 = Expect {
        gpt: false,
        separate_boot: true,
    };
    boot_ok(&fx.vhd, Mode::Bios, gen1, &dir, "gen1-separate-boot");
    let out = convert_copy(&fx, &dir);
    let gen2 = Expect {
        gpt: true,
        separate_boot: true,
    };
    // Secure Boot implies UEFI; one boot covers both for this layout.
    boot_ok(&out, Mode::UefiSecureBoot, gen2, &dir, "gen2-separate-boot");
    let _ = fs::remove_file(dir.join("gen1.vhd"));
    let _ = fs::remove_file(out);
}

/// `convert` without `--boot-files`: shim, signed grub and MokManager come out
/// of the image's own root fs, laid out as EFI/debian/ + EFI/BOOT/ with the
/// grub.cfg stub; the result boots under OVMF and under Secure Boot.
#[test]
fn converted_with_boot_files_from_the_image_boots_under_uefi_and_secure_boot() {
    if !deps_present() {
        return;
    }
    let _one_at_a_time = serial();
    let fx = fixture(Layout::Single);
    let dir = work_dir("gen2-from-image");
    let out = convert_copy_with(&fx, &dir, BootFiles::FromImage);
    let log = fs::read_to_string(dir.join("convert.log")).unwrap_or_default();
    assert!(
        log.contains("pass  boot.files") && log.contains("EFI/debian/shimx64.efi"),
        "convert did not report the boot files it took from the image:\n{log}"
    );
    let expect = Expect {
        gpt: true,
        separate_boot: false,
    };
    boot_ok(&out, Mode::Uefi, expect, &dir, "gen2-from-image");
    boot_ok(&out, Mode::UefiSecureBoot, expect, &dir, "gen2-from-image");
    let _ = fs::remove_file(dir.join("gen1.vhd"));
    let _ = fs::remove_file(out);
}

/// The same with a separate ext4 /boot: the stub searches the /boot fs's UUID
/// with prefix /grub.
#[test]
fn separate_boot_with_boot_files_from_the_image_boots_under_secure_boot() {
    if !deps_present() {
        return;
    }
    let _one_at_a_time = serial();
    let fx = fixture(Layout::SeparateBoot);
    let dir = work_dir("separate-boot-from-image");
    let out = convert_copy_with(&fx, &dir, BootFiles::FromImage);
    let log = fs::read_to_string(dir.join("convert.log")).unwrap_or_default();
    assert!(
        log.contains("grub.cfg stub hands over to partition 1:/grub/grub.cfg"),
        "convert did not use the /boot partition's grub.cfg:\n{log}"
    );
    let gen2 = Expect {
        gpt: true,
        separate_boot: true,
    };
    boot_ok(
        &out,
        Mode::UefiSecureBoot,
        gen2,
        &dir,
        "gen2-separate-boot-from-image",
    );
    let _ = fs::remove_file(dir.join("gen1.vhd"));
    let _ = fs::remove_file(out);
}

/// `sgdisk -v` on the disk inside a fixed VHD (the footer stripped, in a sparse copy).
fn sgdisk_verify(vhd: &Path, dir: &Path) {
    let raw = dir.join("verify.raw");
    sparse_copy(vhd, &raw);
    let len = fs::metadata(&raw).map(|m| m.len()).unwrap_or(0);
    let f = OpenOptions::new()
        .write(true)
        .open(&raw)
        .expect("open raw copy");
    f.set_len(len - 512).expect("strip the footer");
    let out = Command::new("sgdisk")
        .arg("-v")
        .arg(&raw)
        .output()
        .expect("run sgdisk");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("No problems found"),
        "sgdisk -v {}:\n{text}",
        raw.display()
    );
    let _ = fs::remove_file(raw);
}

/// `--hybrid`: one converted VHD boots under SeaBIOS (GRUB's core.img, rebuilt
/// with part_gpt, in the new BIOS boot partition) and under UEFI with Secure
/// Boot; an in-place `--hybrid` conversion rolls back to the original bytes.
#[test]
fn hybrid_conversion_boots_under_bios_and_secure_boot() {
    if !deps_present() {
        return;
    }
    let _one_at_a_time = serial();
    let fx = fixture(Layout::Single);
    let dir = work_dir("hybrid");
    let out = convert_copy_with(&fx, &dir, BootFiles::Hybrid);
    let log = fs::read_to_string(dir.join("convert.log")).unwrap_or_default();
    assert!(
        log.contains("pass  boot.hybrid")
            && log.contains("part_gpt module added from partition 1:/boot/grub/i386-pc")
            && log.contains("(hd0,gpt1)/boot/grub"),
        "convert --hybrid did not report the rebuilt core.img:\n{log}"
    );
    sgdisk_verify(&out, &dir);
    let expect = Expect {
        gpt: true,
        separate_boot: false,
    };
    boot_ok(&out, Mode::Bios, expect, &dir, "hybrid");
    boot_ok(&out, Mode::UefiSecureBoot, expect, &dir, "hybrid");
    let _ = fs::remove_file(out);

    // in place, then rollback: byte-identical to the fixture
    let inplace = dir.join("gen1.vhd");
    let r = run_vhdtool(
        [
            OsStr::new("convert"),
            inplace.as_os_str(),
            OsStr::new("--hybrid"),
        ],
        &dir.join("convert-in-place.log"),
    );
    assert!(r.ok(), "in-place convert --hybrid failed: {}", r.tail(20));
    assert!(!same_content(&inplace, &fx.vhd).unwrap_or(true));
    let r = run_vhdtool(
        [OsStr::new("rollback"), inplace.as_os_str()],
        &dir.join("rollback.log"),
    );
    assert!(r.ok(), "rollback failed: {}", r.tail(20));
    assert!(
        same_content(&inplace, &fx.vhd).unwrap_or(false),
        "rollback of --hybrid did not restore the original bytes"
    );
    let _ = fs::remove_file(inplace);
}

/// `--hybrid` with a separate /boot: core.img's prefix (hd0,msdos1)/grub names
/// the /boot partition and part_gpt.mod comes from its /grub/i386-pc; the
/// result still boots under SeaBIOS.
#[test]
fn hybrid_separate_boot_boots_under_bios() {
    if !deps_present() {
        return;
    }
    let _one_at_a_time = serial();
    let fx = fixture(Layout::SeparateBoot);
    let dir = work_dir("hybrid-separate-boot");
    let out = convert_copy_with(&fx, &dir, BootFiles::Hybrid);
    let log = fs::read_to_string(dir.join("convert.log")).unwrap_or_default();
    assert!(
        log.contains("part_gpt module added from partition 1:/grub/i386-pc")
            && log.contains("(hd0,gpt1)/grub"),
        "convert --hybrid did not rebuild core.img from the /boot partition:\n{log}"
    );
    sgdisk_verify(&out, &dir);
    let expect = Expect {
        gpt: true,
        separate_boot: true,
    };
    boot_ok(&out, Mode::Bios, expect, &dir, "hybrid-separate-boot");
    let _ = fs::remove_file(dir.join("gen1.vhd"));
    let _ = fs::remove_file(out);
}

/// Negative control: an MBR disk without an ESP must not boot under UEFI, and
/// the harness must say so (exit 1 = boot failure, not 2 = harness error).
#[test]
fn negative_control_gen1_does_not_boot_under_uefi() {
    if !deps_present() {
        return;
    }
    let _one_at_a_time = serial();
    let fx = fixture(Layout::Single);
    let dir = work_dir("negative-gen1-uefi");
    let log = dir.join("boot-gen1-uefi.log");
    progress(&format!(
        "negative control: booting {} under uefi (must fail, timeout {NEGATIVE_TIMEOUT_S} s)",
        fx.vhd.display()
    ));
    let r = boot(
        &fx.vhd,
        Mode::Uefi,
        Expect::default(),
        NEGATIVE_TIMEOUT_S,
        &log,
    );
    let text = r.log_text();
    assert!(
        !r.timed_out && r.code() == Some(1) && !text.contains("VHDTOOL-BOOT-OK"),
        "negative control: the Gen1 image under UEFI should fail to boot with exit 1, got {}; log {}:\n{}",
        r.describe(),
        r.log.display(),
        r.tail(40)
    );
    let reason = text
        .lines()
        .find(|l| l.contains("FAIL uefi"))
        .unwrap_or("")
        .trim();
    progress(&format!(
        "negative control: failed as expected in {:.1} s ({reason})",
        r.elapsed.as_secs_f64()
    ));
}

/// `convert --room shrink`: the root ext4 (last partition, to the last sector) gives up its
/// tail to the ESP through resize2fs; the disk size does not change, and the result boots
/// under OVMF with every file of the root fs checked by the initramfs.
#[test]
fn converted_with_room_shrink_keeps_the_disk_size_and_boots_under_uefi() {
    if !deps_present() {
        return;
    }
    let _one_at_a_time = serial();
    let fx = fixture(Layout::Single);
    let dir = work_dir("gen2-room-shrink");
    let input = dir.join("gen1.vhd");
    let output = dir.join("gen2.vhd");
    sparse_copy(&fx.vhd, &input);
    let r = run_vhdtool(
        [
            OsStr::new("convert"),
            input.as_os_str(),
            OsStr::new("-o"),
            output.as_os_str(),
            OsStr::new("--room"),
            OsStr::new("shrink"),
        ],
        &dir.join("convert.log"),
    );
    assert!(
        r.ok(),
        "vhdtool convert --room shrink failed: {}:\n{}",
        r.describe(),
        r.tail(30)
    );
    let log = fs::read_to_string(dir.join("convert.log")).unwrap_or_default();
    assert!(log.contains("resize2fs"), "no shrink reported:\n{log}");
    let size = |p: &Path| fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    assert_eq!(size(&output), size(&fx.vhd), "the disk size changed");
    assert!(
        same_content(&input, &fx.vhd).unwrap_or(false),
        "convert -o modified its input"
    );
    let expect = Expect {
        gpt: true,
        separate_boot: false,
    };
    boot_ok(&output, Mode::Uefi, expect, &dir, "gen2-room-shrink");
    let _ = fs::remove_file(input);
    let _ = fs::remove_file(output);
}
