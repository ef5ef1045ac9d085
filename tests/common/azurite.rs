//! The Azure Storage emulator Azurite for tests/upload.rs and benches/upload.rs: install
//! (testdata/azurite/install.sh, pinned), start on 127.0.0.1 and a free port, stop by pid (a
//! guard, also on panic); SAS tokens signed with the emulator's well-known account key; the
//! container and blobs made, and read back, with vhdtool's own request code.
#![allow(dead_code)] // each user takes a part

use std::fs;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

use base64::Engine as _;
use vhdtool::checksum::Range;
use vhdtool::upload::rest::{self, Client, Request, Response};
use vhdtool::upload::BlobUrl;

pub const MIB: u64 = 1 << 20;

pub const ACCOUNT: &str = "devstoreaccount1";
/// The emulator's well-known account key (Azurite's EMULATOR_ACCOUNT_KEY_STR).
pub const ACCOUNT_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";
pub const SV: &str = rest::X_MS_VERSION;
pub const FAR: &str = "2099-01-01T00:00:00Z";

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Is `CI` set (to anything but "" or "false")?
fn under_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0")
}

/// A directory under the target dir, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let p = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("{tag}-{}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&p);
        fs::create_dir_all(&p).unwrap_or_else(|e| panic!("mkdir {}: {e}", p.display()));
        TempDir(p)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

// ---------------------------------------------------------------------------------------------
// the emulator

/// The pinned emulator, installed by testdata/azurite/install.sh under target/azurite.
pub fn azurite_bin() -> Option<PathBuf> {
    static BIN: OnceLock<Option<PathBuf>> = OnceLock::new();
    BIN.get_or_init(|| {
        let bin = repo_root().join("target/azurite/node_modules/.bin/azurite-blob");
        let script = repo_root().join("testdata/azurite/install.sh");
        let have = |c: &str| {
            Command::new("sh")
                .args(["-c", &format!("command -v {c}")])
                .stdout(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        };
        if !bin.exists() && have("npm") {
            let st = Command::new("sh").arg(&script).status();
            eprintln!("ran {}: {st:?}", script.display());
        }
        if bin.exists() && have("node") {
            return Some(bin);
        }
        let msg = format!(
            "the Azure Storage emulator is missing: install node and npm (apt-get install nodejs npm), then run `sh {}`",
            "testdata/azurite/install.sh"
        );
        if under_ci() {
            panic!("{msg} (CI is set, so this is a failure)");
        }
        eprintln!("SKIPPED: {msg}");
        None
    })
    .clone()
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A running emulator; stopped (by its pid) when dropped, also when a test panics.
pub struct Azurite {
    child: Child,
    pub port: u16,
    _dir: TempDir,
}

impl Azurite {
    pub fn start() -> Option<Azurite> {
        let bin = azurite_bin()?;
        let dir = TempDir::new("azurite");
        // a free port can be taken between our probe and the emulator's bind: a few tries
        for _ in 0..5 {
            let port = free_port();
            let mut child = Command::new(&bin)
                .args(["--blobHost", "127.0.0.1", "--blobPort"])
                .arg(port.to_string())
                .arg("--location")
                .arg(dir.path())
                .args([
                    "--loose",
                    "--silent",
                    "--disableTelemetry",
                    "--disableProductStyleUrl",
                ])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| panic!("start {}: {e}", bin.display()));
            let t = Instant::now();
            loop {
                if let Ok(Some(_)) = child.try_wait() {
                    break; // exited: try another port
                }
                if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return Some(Azurite {
                        child,
                        port,
                        _dir: dir,
                    });
                }
                if t.elapsed() > Duration::from_secs(60) {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!("Azurite did not listen on {port} within 60 s");
                }
                thread::sleep(Duration::from_millis(100));
            }
        }
        panic!("Azurite did not start (5 ports tried)");
    }

    /// `http://127.0.0.1:PORT/devstoreaccount1`
    pub fn account_url(&self) -> String {
        format!("http://127.0.0.1:{}/{ACCOUNT}", self.port)
    }
}

impl Drop for Azurite {
    fn drop(&mut self) {
        // by its pid: the child we started, nothing else
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------------------------
// SAS tokens (Azure Storage REST reference, "Create a service SAS" / "Create an account SAS",
// version 2020-12-06 and later)

pub fn sign(string_to_sign: &str) -> String {
    let b64 = base64::engine::general_purpose::STANDARD;
    let key = b64.decode(ACCOUNT_KEY).expect("account key is base64");
    let k = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &key);
    b64.encode(ring::hmac::sign(&k, string_to_sign.as_bytes()).as_ref())
}

pub fn enc(s: &str) -> String {
    rest::percent_encode(s)
}

/// A service SAS for one blob (`sr=b`) with permissions `sp`, expiring at `se`.
pub fn blob_sas(container: &str, blob: &str, sp: &str, se: &str) -> String {
    let canonical = format!("/blob/{ACCOUNT}/{container}/{blob}");
    // sp, st, se, canonicalized resource, si, sip, spr, sv, sr, snapshot time, encryption
    // scope, rscc, rscd, rsce, rscl, rsct
    let fields = [
        sp, "", se, &canonical, "", "", "", SV, "b", "", "", "", "", "", "", "",
    ];
    let sig = sign(&fields.join("\n"));
    format!("sv={SV}&sr=b&sp={sp}&se={}&sig={}", enc(se), enc(&sig))
}

/// An account SAS for the blob service, every resource type, read/write/create/list.
pub fn account_sas() -> String {
    let (sp, ss, srt) = ("rwdlc", "b", "sco");
    // account, sp, ss, srt, st, se, sip, spr, sv, ses, and a final newline
    let fields = [ACCOUNT, sp, ss, srt, "", FAR, "", "", SV, "", ""];
    let sig = sign(&fields.join("\n"));
    format!(
        "sv={SV}&ss={ss}&srt={srt}&sp={sp}&se={}&sig={}",
        enc(FAR),
        enc(&sig)
    )
}

/// The emulator and a container in it, and our request code to talk to it.
pub struct Store {
    pub az: Azurite,
    pub container: String,
    pub client: Client,
}

impl Store {
    pub fn new() -> Option<Store> {
        let az = Azurite::start()?;
        let container = "vhds".to_string();
        let url = BlobUrl::parse(&format!("{}/{container}/x", az.account_url())).unwrap();
        let client = Client::new(&url, Duration::from_secs(60), 4);
        let s = Store {
            az,
            container,
            client,
        };
        let req = Request {
            method: "PUT",
            url: format!(
                "{}/{}?restype=container&{}",
                s.az.account_url(),
                s.container,
                account_sas()
            ),
            headers: vec![
                ("x-ms-version", SV.to_string()),
                ("content-length", "0".to_string()),
            ],
            body: &[],
            what: "Create Container".into(),
        };
        s.ok(&req);
        Some(s)
    }

    /// The blob SAS URL of `blob` with `sp`, expiring at `se`.
    pub fn url(&self, blob: &str, sp: &str, se: &str) -> String {
        format!(
            "{}/{}/{blob}?{}",
            self.az.account_url(),
            self.container,
            blob_sas(&self.container, blob, sp, se)
        )
    }

    pub fn blob(&self, blob: &str) -> BlobUrl {
        BlobUrl::parse(&self.url(blob, "racwd", FAR)).unwrap()
    }

    pub fn send(&self, req: &Request<'_>) -> Response {
        self.client
            .send(req, "test-request")
            .unwrap_or_else(|e| panic!("{}: {}", req.what, e.message))
    }

    pub fn ok(&self, req: &Request<'_>) -> Response {
        let r = self.send(req);
        assert!(r.ok(), "{}: {}", req.what, r.describe());
        r
    }

    pub fn create_page_blob(&self, blob: &str, size: u64) {
        self.ok(&rest::create_page_blob(&self.blob(blob), size).unwrap());
    }

    pub fn put_page(&self, blob: &str, offset: u64, data: &[u8]) {
        self.ok(&rest::put_page(&self.blob(blob), offset, data, rest::Integrity::None).unwrap());
    }

    /// The blob's page ranges (merged).
    pub fn page_ranges(&self, blob: &str, size: u64) -> Vec<Range> {
        let r = self.ok(&rest::get_page_ranges(&self.blob(blob), None));
        let list = rest::parse_page_list(&r.body, size).unwrap();
        assert!(list.next_marker.is_none());
        vhdtool::checksum::merge(list.ranges)
    }

    /// The whole blob, read in 4 MiB ranges.
    pub fn download(&self, blob: &str, size: u64) -> Vec<u8> {
        let url = self.blob(blob);
        let mut out = Vec::with_capacity(size as usize);
        let mut pos = 0;
        while pos < size {
            let n = (size - pos).min(4 * MIB);
            let r = self.ok(&rest::get_range(&url, Range::new(pos, n)).unwrap());
            assert_eq!(r.body.len() as u64, n, "Get Blob at {pos:#x}");
            out.extend_from_slice(&r.body);
            pos += n;
        }
        out
    }

    pub fn exists(&self, blob: &str) -> bool {
        let r = self.send(&rest::get_properties(&self.blob(blob)));
        r.ok()
    }
}
