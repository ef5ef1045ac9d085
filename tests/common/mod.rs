//! Helpers shared by the end-to-end tests: run the built binary with a deadline, find the
//! independent tools (skip outside CI, fail under CI), temp dirs, and the generated image set
//! (`testdata/make-images.sh`, run once and reused).
//!
//! Each test binary compiles this module and uses a part of it.
#![allow(dead_code)]

pub mod corpus;
pub mod vhdx;
pub mod windows;

use std::ffi::OsStr;
use std::fs::{self, File};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

/// Exit code of a Rust program that panicked: always a test failure.
pub const PANIC_EXIT: i32 = 101;

/// Default deadline for one run of vhdtool on a generated image.
pub const RUN_TIMEOUT: Duration = Duration::from_secs(60);

/// The binary under test.
pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_vhdtool"))
}

/// The repository root (where Cargo.toml is).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// What a finished (or killed) process left behind.
#[derive(Debug, Clone)]
pub struct Run {
    pub stdout: String,
    pub stderr: String,
    /// `None` when killed by a signal (including our own kill on timeout).
    pub code: Option<i32>,
    pub timed_out: bool,
    pub elapsed: Duration,
    /// The command line, for messages.
    pub command: String,
}

impl Run {
    /// Panic unless the process exited by itself, in time, without a Rust panic.
    pub fn assert_sane(&self) -> &Self {
        assert!(
            !self.timed_out,
            "{}: still running after {:?}, killed\nstderr:\n{}",
            self.command, self.elapsed, self.stderr
        );
        match self.code {
            Some(PANIC_EXIT) => panic!(
                "{}: panicked (exit 101)\nstderr:\n{}",
                self.command, self.stderr
            ),
            Some(_) => {}
            None => panic!(
                "{}: killed by a signal\nstderr:\n{}",
                self.command, self.stderr
            ),
        }
        self
    }

    /// The exit code of a sane run.
    pub fn exit_code(&self) -> i32 {
        self.assert_sane();
        // OK to unwrap: assert_sane panics when there is no code.
        self.code.unwrap()
    }
}

/// Run `cmd` to completion or until `timeout`, then kill it. Output is captured in full.
pub fn run_with_timeout(cmd: &mut Command, timeout: Duration) -> Run {
    let command = format!("{cmd:?}");
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let start = Instant::now();
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {command}: {e}"));
    let mut out = child.stdout.take().expect("piped stdout");
    let mut err = child.stderr.take().expect("piped stderr");
    let out_thread = thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = out.read_to_end(&mut buf);
        buf
    });
    let err_thread = thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = err.read_to_end(&mut buf);
        buf
    });
    let mut timed_out = false;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if start.elapsed() >= timeout => {
                timed_out = true;
                let _ = child.kill();
                break child.wait().expect("wait after kill");
            }
            Ok(None) => thread::sleep(Duration::from_millis(5)),
            Err(e) => panic!("{command}: wait failed: {e}"),
        }
    };
    let elapsed = start.elapsed();
    let stdout = String::from_utf8_lossy(&out_thread.join().unwrap_or_default()).into_owned();
    let stderr = String::from_utf8_lossy(&err_thread.join().unwrap_or_default()).into_owned();
    Run {
        stdout,
        stderr,
        code: status.code(),
        timed_out,
        elapsed,
        command,
    }
}

/// Run vhdtool with `args` and the default deadline.
pub fn vhdtool<I, S>(args: I) -> Run
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    vhdtool_timeout(args, RUN_TIMEOUT)
}

/// Run vhdtool with `args`, killing it after `timeout`.
pub fn vhdtool_timeout<I, S>(args: I, timeout: Duration) -> Run
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut cmd = Command::new(bin());
    cmd.args(args).env("RUST_BACKTRACE", "1");
    run_with_timeout(&mut cmd, timeout)
}

/// `vhdtool info --json PATH`: asserts a sane run, exit 0 or 1, and JSON on stdout.
pub fn info_json(path: &Path, timeout: Duration) -> (Run, serde_json::Value) {
    let run = vhdtool_timeout(
        [OsStr::new("info"), OsStr::new("--json"), path.as_os_str()],
        timeout,
    );
    let code = run.exit_code();
    assert!(
        code == 0 || code == 1,
        "{}: info must exit 0 or 1 on a readable file, got {code}\nstderr:\n{}",
        run.command,
        run.stderr
    );
    let json: serde_json::Value = serde_json::from_str(&run.stdout).unwrap_or_else(|e| {
        panic!(
            "{}: stdout is not JSON ({e})\nstdout:\n{}\nstderr:\n{}",
            run.command, run.stdout, run.stderr
        )
    });
    (run, json)
}

/// The findings of a report as (id, severity) pairs.
pub fn findings(report: &serde_json::Value) -> Vec<(String, String)> {
    report["findings"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|f| {
                    (
                        f["id"].as_str().unwrap_or_default().to_string(),
                        f["severity"].as_str().unwrap_or_default().to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The failed checks of a `validate`/`convert` JSON `checks` array.
pub fn failed_checks(checks: &serde_json::Value) -> Vec<&serde_json::Value> {
    checks
        .as_array()
        .map(|a| a.iter().filter(|c| c["status"] == "fail").collect())
        .unwrap_or_default()
}

/// Where an external tool lives: PATH, then the sbin directories (not on a user's PATH on
/// Debian).
pub fn tool_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// A `Command` for an external tool (resolved with `tool_path`), with a C locale.
pub fn tool(name: &str) -> Command {
    let path = tool_path(name).unwrap_or_else(|| PathBuf::from(name));
    let mut cmd = Command::new(path);
    cmd.env("LC_ALL", "C");
    cmd
}

/// Is `CI` set (to anything but "" or "false")?
pub fn under_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0")
}

/// Is the tool there? Missing: outside CI, print a skip message naming the apt package and give
/// `false`; under CI (env `CI` set), panic with that message.
pub fn require_tool(name: &str, apt_pkg: &str) -> bool {
    if tool_path(name).is_some() {
        return true;
    }
    let msg = format!("missing tool `{name}`: install it with `sudo apt-get install {apt_pkg}`");
    if under_ci() {
        panic!("{msg} (CI is set, so this is a failure)");
    }
    eprintln!("SKIPPED: {msg}");
    false
}

/// `require_tool` over a list; all must be present.
pub fn require_tools(tools: &[(&str, &str)]) -> bool {
    // check every tool (no short circuit) so that the messages list everything missing
    let present: Vec<bool> = tools
        .iter()
        .map(|(name, pkg)| require_tool(name, pkg))
        .collect();
    present.into_iter().all(|ok| ok)
}

/// A directory under the target dir, removed on drop.
#[derive(Debug)]
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("{tag}-{}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).unwrap_or_else(|e| panic!("mkdir {}: {e}", path.display()));
        TempDir { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Write `bytes` to `name` in this directory and give the path.
    pub fn write(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let p = self.path.join(name);
        fs::write(&p, bytes).unwrap_or_else(|e| panic!("write {}: {e}", p.display()));
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.path);
    }
}

/// The tools `testdata/make-images.sh` runs, with their Debian packages.
pub const GENERATOR_TOOLS: &[(&str, &str)] = &[
    ("sfdisk", "fdisk"),
    ("fdisk", "fdisk"),
    ("sgdisk", "gdisk"),
    ("mke2fs", "e2fsprogs"),
    ("mkfs.fat", "dosfstools"),
    ("mkntfs", "ntfs-3g"),
    ("ntfslabel", "ntfs-3g"),
    ("mkswap", "util-linux"),
    ("mkfs.xfs", "xfsprogs"),
    ("mkfs.btrfs", "btrfs-progs"),
    ("cryptsetup", "cryptsetup-bin"),
    ("qemu-img", "qemu-utils"),
    ("python3", "python3"),
    ("mmd", "mtools"),
    ("mcopy", "mtools"),
];

/// How an image stores its disk (manifest column `form`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    Raw,
    /// Fixed VHD made with `force_size=on` (size kept, creator "qem2").
    VhdFixedForce,
    /// Fixed VHD whose size qemu-img rounded up to a CHS size (creator "qemu").
    VhdFixedChs,
    VhdDynamic,
    VhdDifferencing,
}

impl Form {
    fn parse(s: &str) -> Option<Form> {
        Some(match s {
            "raw" => Form::Raw,
            "vhd-fixed-force" => Form::VhdFixedForce,
            "vhd-fixed-chs" => Form::VhdFixedChs,
            "vhd-dynamic" => Form::VhdDynamic,
            "vhd-differencing" => Form::VhdDifferencing,
            _ => return None,
        })
    }

    /// The `format` vhdtool must report.
    pub fn format(self) -> &'static str {
        match self {
            Form::Raw => "raw",
            Form::VhdFixedForce | Form::VhdFixedChs => "vhd-fixed",
            Form::VhdDynamic => "vhd-dynamic",
            Form::VhdDifferencing => "vhd-differencing",
        }
    }

    pub fn is_vhd(self) -> bool {
        self != Form::Raw
    }

    /// Is the disk laid out flat in the file (raw or fixed VHD)?
    pub fn is_flat(self) -> bool {
        matches!(self, Form::Raw | Form::VhdFixedForce | Form::VhdFixedChs)
    }
}

/// One line of `manifest.tsv`.
#[derive(Debug, Clone)]
pub struct Image {
    pub file: String,
    pub form: Form,
    /// The raw image with the same disk contents (oracles run on it).
    pub base: String,
    pub sector_bytes: u64,
    /// "mbr", "gpt", "hybrid" or "none".
    pub scheme: String,
    pub description: String,
}

/// The generated image set.
#[derive(Debug)]
pub struct Images {
    pub dir: PathBuf,
    pub list: Vec<Image>,
}

impl Images {
    pub fn path(&self, file: &str) -> PathBuf {
        self.dir.join(file)
    }

    pub fn get(&self, file: &str) -> &Image {
        self.list
            .iter()
            .find(|i| i.file == file)
            .unwrap_or_else(|| panic!("{file} is not in the manifest"))
    }
}

/// Parse `manifest.tsv` (see testdata/make-images.sh for the columns).
pub fn parse_manifest(text: &str) -> Result<Vec<Image>, String> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .enumerate()
        .map(|(n, line)| {
            let cols: Vec<&str> = line.split('\t').collect();
            let [file, form, base, sector, scheme, description] = cols[..] else {
                return Err(format!(
                    "manifest line {}: expected 6 columns: {line:?}",
                    n + 1
                ));
            };
            Ok(Image {
                file: file.to_string(),
                form: Form::parse(form)
                    .ok_or_else(|| format!("manifest line {}: unknown form {form:?}", n + 1))?,
                base: base.to_string(),
                sector_bytes: sector
                    .parse()
                    .map_err(|e| format!("manifest line {}: sector {sector:?}: {e}", n + 1))?,
                scheme: scheme.to_string(),
                description: description.to_string(),
            })
        })
        .collect()
}

/// The images of `testdata/make-images.sh`, generated once per test binary into
/// `target/tmp/images` and reused across binaries and runs while the script is unchanged (a copy
/// of the script that made them is kept next to them). An exclusive file lock serialises test
/// binaries that run in parallel. `None` when a tool is missing outside CI (skip).
pub fn images() -> Option<&'static Images> {
    static IMAGES: OnceLock<Option<Images>> = OnceLock::new();
    IMAGES
        .get_or_init(|| {
            if !require_tools(GENERATOR_TOOLS) {
                return None;
            }
            Some(generate_images())
        })
        .as_ref()
}

fn generate_images() -> Images {
    let script = repo_root().join("testdata/make-images.sh");
    let script_text =
        fs::read(&script).unwrap_or_else(|e| panic!("read {}: {e}", script.display()));
    let tmp = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    fs::create_dir_all(&tmp).expect("create target tmp dir");
    let dir = tmp.join("images");
    let lock_path = tmp.join("images.lock");
    let lock =
        File::create(&lock_path).unwrap_or_else(|e| panic!("create {}: {e}", lock_path.display()));
    lock.lock()
        .unwrap_or_else(|e| panic!("lock {}: {e}", lock_path.display()));
    let stamp = dir.join("make-images.sh.used");
    let manifest = dir.join("manifest.tsv");
    let fresh = fs::read(&stamp).is_ok_and(|s| s == script_text) && manifest.is_file();
    if !fresh {
        let _ = fs::remove_file(&stamp);
        let mut cmd = Command::new("bash");
        cmd.arg(&script).arg(&dir);
        let run = run_with_timeout(&mut cmd, Duration::from_secs(300));
        assert!(
            !run.timed_out && run.code == Some(0),
            "{} failed ({:?}):\nstdout:\n{}\nstderr:\n{}",
            run.command,
            run.code,
            run.stdout,
            run.stderr
        );
        fs::write(&stamp, &script_text).expect("write generator stamp");
    }
    let text = fs::read_to_string(&manifest)
        .unwrap_or_else(|e| panic!("read {}: {e}", manifest.display()));
    drop(lock);
    let list = parse_manifest(&text).unwrap_or_else(|e| panic!("{}: {e}", manifest.display()));
    assert!(!list.is_empty(), "{} lists no image", manifest.display());
    Images { dir, list }
}

/// Copy `from` to `to` keeping holes (`cp --sparse=always`); panics when cp fails.
#[allow(dead_code)] // not every test binary copies images
pub fn sparse_copy(from: &Path, to: &Path) {
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

/// Read `len` bytes at `offset` of a file.
pub fn read_at(path: &Path, offset: u64, len: usize) -> Vec<u8> {
    use std::io::{Seek, SeekFrom};
    let mut f = File::open(path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    f.seek(SeekFrom::Start(offset)).expect("seek");
    let mut buf = vec![0; len];
    f.read_exact(&mut buf)
        .unwrap_or_else(|e| panic!("read {} at {offset:#x}: {e}", path.display()));
    buf
}

/// Big-endian integer of `N` bytes at `at` (VHD structures are big-endian).
pub fn be(buf: &[u8], at: usize, n: usize) -> u64 {
    buf[at..at + n]
        .iter()
        .fold(0u64, |acc, &b| (acc << 8) | u64::from(b))
}

/// Little-endian integer of `n` bytes at `at` (MBR, GPT).
pub fn le(buf: &[u8], at: usize, n: usize) -> u64 {
    buf[at..at + n]
        .iter()
        .rev()
        .fold(0u64, |acc, &b| (acc << 8) | u64::from(b))
}

/// The VHD checksum: one's complement of the byte sum, with the 4 bytes at `skip` taken as zero.
pub fn vhd_checksum(buf: &[u8], skip: usize) -> u32 {
    let sum = buf
        .iter()
        .enumerate()
        .filter(|(i, _)| !(skip..skip + 4).contains(i))
        .fold(0u32, |acc, (_, &b)| acc.wrapping_add(u32::from(b)));
    !sum
}

/// Deterministic xorshift64* generator (no dependency, the same inputs on every run), for the
/// tests that make their own inputs (corpus, fuzz_smoke, mutation).
#[allow(dead_code)] // not every test binary generates inputs
pub struct Rng(pub u64);

#[allow(dead_code)]
impl Rng {
    /// A generator whose state is `seed` mixed (never zero).
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    /// In `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next() % n
        }
    }
    /// An index in `0..n` (0 when `n` is 0).
    pub fn index(&mut self, n: usize) -> usize {
        self.below(n as u64) as usize
    }
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
    pub fn fill(&mut self, buf: &mut [u8]) {
        for b in buf {
            *b = self.next() as u8;
        }
    }
}

/// Run `cmd`, panic with its output unless it succeeds; its stdout.
#[allow(dead_code)] // not every test binary runs tools this way
pub fn run_ok(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `qemu-img ARGS`, which must succeed; its stdout.
#[allow(dead_code)] // not every test binary runs qemu-img
pub fn qemu_img(args: &[&str]) -> String {
    run_ok(tool("qemu-img").args(args))
}
