//! `vhdtool upload` against the Azure Storage emulator Azurite (npm `azurite`, pinned in
//! testdata/azurite/install.sh), one emulator per test on 127.0.0.1 and a free port, stopped by
//! its pid at the end (a guard, also on panic).
//!
//! SAS tokens are signed here (HMAC-SHA256 over the string-to-sign with the emulator's
//! well-known account key); the container and blobs are made, and the blob read back, with
//! vhdtool's own request code. The judge of "equal" is the downloaded blob compared byte for
//! byte with the file, and of "only the data pages" the blob's page ranges against the non-zero
//! 64 KiB granules of the file, computed here. A fault-injecting proxy written here sits between
//! vhdtool and the emulator: 503 ServerBusy with Retry-After, dropped connections, slow and
//! timed-out answers, a 400 for Content-MD5 (as a managed disk would), an Entra-style 401.
//!
//! Needs node and npm (the install script runs once when the emulator is missing); under CI
//! (env `CI` set) a missing emulator is a failure.
#![allow(clippy::restriction)] // tests: a panic is a failed test (the crate's panic lints are for src/)

#[path = "common/azurite.rs"]
mod azurite;
mod common;
use azurite::{Store, FAR, MIB};
use common::{vhdtool_timeout, Rng, Run, TempDir};

use std::collections::VecDeque;
use std::fs::{self, File};
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use vhdtool::checksum::Range;

const GRANULE: u64 = 64 << 10;
const TIMEOUT: Duration = Duration::from_secs(180);

// ---------------------------------------------------------------------------------------------
// test images

/// A fixed VHD of `mib` MiB + footer, sparse: `islands` random blocks of random lengths at
/// random (512-aligned) places, holes elsewhere. Gives the path and the file's bytes.
fn make_image(
    dir: &TempDir,
    name: &str,
    mib: u64,
    islands: usize,
    seed: u64,
) -> (PathBuf, Vec<u8>) {
    let size = mib * MIB;
    let path = dir.path().join(name);
    let f = File::create(&path).unwrap();
    f.set_len(size + 512).unwrap();
    let mut rng = Rng::new(seed);
    for _ in 0..islands {
        let len = (1 + rng.below(256)) * 512 + rng.below(512); // not a whole granule
        let at = rng.below((size - len) / 512) * 512;
        let mut block = rng.bytes(len as usize);
        block[0] |= 1; // never all zero
        f.write_all_at(&block, at).unwrap();
    }
    let footer = vhdtool::vhd::fixed_footer(
        size,
        rng.bytes(16).try_into().unwrap(),
        0x2c00_0000,
        *b"qem2",
        0x0005_0003,
        *b"Wi2k",
        size,
    );
    f.write_all_at(&footer, size).unwrap();
    drop(f);
    let bytes = fs::read(&path).unwrap();
    (path, bytes)
}

/// The non-zero 64 KiB granules of `bytes` (and the last one, the footer's), merged: the most
/// an upload may write.
fn nonzero_granules(bytes: &[u8]) -> Vec<Range> {
    let len = bytes.len() as u64;
    let mut out: Vec<Range> = Vec::new();
    let mut at = 0;
    while at < len {
        let end = (at + GRANULE).min(len);
        if bytes[at as usize..end as usize].iter().any(|&b| b != 0) || end == len {
            match out.last_mut() {
                Some(l) if l.end() == at => l.length += end - at,
                _ => out.push(Range::new(at, end - at)),
            }
        }
        at = end;
    }
    out
}

fn covered(r: &Range, by: &[Range]) -> bool {
    by.iter()
        .any(|b| b.offset <= r.offset && r.end() <= b.end())
}

/// The blob equals the file, byte for byte, and lists no page outside the file's data.
fn assert_blob_equals(store: &Store, blob: &str, bytes: &[u8]) {
    let got = store.download(blob, bytes.len() as u64);
    if let Some(i) = got.iter().zip(bytes).position(|(a, b)| a != b) {
        panic!("blob {blob} differs from the file at byte {i:#x}");
    }
    assert_eq!(got.len(), bytes.len());
    let allowed = nonzero_granules(bytes);
    let ranges = store.page_ranges(blob, bytes.len() as u64);
    for r in &ranges {
        assert!(
            covered(r, &allowed),
            "blob range {:#x}+{} is not within the file's non-zero 64 KiB granules {allowed:x?}",
            r.offset,
            r.length
        );
    }
    let listed: u64 = ranges.iter().map(|r| r.length).sum();
    let data: u64 = allowed.iter().map(|r| r.length).sum();
    assert_eq!(
        listed, data,
        "the blob lists {listed} bytes, the file has {data} in non-zero granules"
    );
}

fn upload(args: &[&str]) -> Run {
    let mut a = vec!["upload"];
    a.extend_from_slice(args);
    vhdtool_timeout(a, TIMEOUT)
}

fn json_of(run: &Run) -> serde_json::Value {
    serde_json::from_str(&run.stdout).unwrap_or_else(|e| {
        panic!(
            "{}: stdout is not JSON ({e})\nstdout:\n{}\nstderr:\n{}",
            run.command, run.stdout, run.stderr
        )
    })
}

fn expect_ok(run: &Run) -> serde_json::Value {
    assert_eq!(
        run.exit_code(),
        0,
        "{}\nstdout:\n{}\nstderr:\n{}",
        run.command,
        run.stdout,
        run.stderr
    );
    json_of(run)
}

fn n(v: &serde_json::Value, k: &str) -> u64 {
    v[k].as_u64()
        .unwrap_or_else(|| panic!("{k} missing in {v}"))
}

// ---------------------------------------------------------------------------------------------
// the fault-injecting proxy

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    Pass,
    /// 503 ServerBusy, Retry-After: 1.
    Busy,
    /// Read the request, close the connection without an answer.
    Drop,
    /// Forward, then answer after `ms`.
    Slow(u64),
    /// 401 with WWW-Authenticate (a disk that requires Entra ID).
    Entra,
    /// 400 UnsupportedHeader when the request carries Content-MD5 (a managed disk).
    NoMd5,
    /// 403 AuthenticationFailed, as for a SAS that expired (the service's words).
    Expired,
    /// 201 Created without forwarding (a service that loses a confirmed write).
    Lie,
    /// Forward with the body's first byte flipped (damage no checksum caught).
    Flip,
}

/// One request seen by the proxy.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    target: String,
    fault: Fault,
    /// `x-ms-version`, `x-ms-client-request-id`.
    version: Option<String>,
    client_id: Option<String>,
}

/// The value of header `name` in a request head.
fn head_value(head: &str, name: &str) -> Option<String> {
    head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().to_string())
    })
}

/// An HTTP proxy on 127.0.0.1 in front of the emulator: one request per connection (it
/// forwards with `Connection: close` and relays the answer until the emulator closes), faults
/// chosen by `schedule(request number, method, headers)`.
struct Proxy {
    port: u16,
    seen: Arc<Mutex<Vec<Seen>>>,
    stop: Arc<AtomicBool>,
    accepted: Option<thread::JoinHandle<()>>,
}

type Schedule = dyn Fn(u64, &str, &str) -> Fault + Send + Sync;

impl Proxy {
    fn start(upstream: u16, schedule: Box<Schedule>) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let schedule: Arc<Schedule> = Arc::from(schedule);
        let counter = Arc::new(AtomicU64::new(0));
        let (seen2, stop2) = (seen.clone(), stop.clone());
        let accepted = thread::spawn(move || {
            let mut workers: VecDeque<thread::JoinHandle<()>> = VecDeque::new();
            // bounded: the test drops the proxy, which sets stop
            while !stop2.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((conn, _)) => {
                        let (seen, schedule, counter) =
                            (seen2.clone(), schedule.clone(), counter.clone());
                        workers.push_back(thread::spawn(move || {
                            let _ = serve(conn, upstream, &*schedule, &counter, &seen);
                        }));
                        while workers.len() > 64 {
                            if let Some(w) = workers.pop_front() {
                                let _ = w.join();
                            }
                        }
                    }
                    Err(_) => thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Proxy {
            port,
            seen,
            stop,
            accepted: Some(accepted),
        }
    }

    /// `url` with the emulator's port replaced by the proxy's.
    fn route(&self, url: &str, upstream: u16) -> String {
        url.replace(
            &format!("127.0.0.1:{upstream}/"),
            &format!("127.0.0.1:{}/", self.port),
        )
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.accepted.take() {
            let _ = h.join();
        }
    }
}

/// Read a request head (up to the blank line, at most 64 KiB) and its body (Content-Length).
fn read_request(conn: &mut TcpStream) -> std::io::Result<Option<(String, Vec<u8>)>> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if conn.read(&mut byte)? == 0 {
            return Ok(None);
        }
        head.push(byte[0]);
        if head.len() > 64 << 10 {
            return Ok(None);
        }
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let len = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse::<usize>().ok())
                .flatten()
        })
        .unwrap_or(0);
    let mut body = vec![0u8; len.min(16 << 20)];
    conn.read_exact(&mut body)?;
    Ok(Some((head, body)))
}

fn serve(
    mut conn: TcpStream,
    upstream: u16,
    schedule: &Schedule,
    counter: &AtomicU64,
    seen: &Mutex<Vec<Seen>>,
) -> std::io::Result<()> {
    conn.set_nonblocking(false)?;
    conn.set_read_timeout(Some(Duration::from_secs(30)))?;
    let Some((head, body)) = read_request(&mut conn)? else {
        return Ok(());
    };
    let first = head.lines().next().unwrap_or_default().to_string();
    let mut parts = first.split(' ');
    let method = parts.next().unwrap_or_default().to_string();
    let target = parts.next().unwrap_or_default().to_string();
    let i = counter.fetch_add(1, Ordering::Relaxed);
    let fault = schedule(i, &method, &head);
    seen.lock().unwrap().push(Seen {
        method: method.clone(),
        target,
        fault,
        version: head_value(&head, "x-ms-version"),
        client_id: head_value(&head, "x-ms-client-request-id"),
    });
    let answer = |conn: &mut TcpStream, status: &str, headers: &str, body: &str| {
        let msg = format!(
            "HTTP/1.1 {status}\r\n{headers}Content-Length: {}\r\nContent-Type: application/xml\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        conn.write_all(msg.as_bytes())
    };
    match fault {
        Fault::Busy => {
            return answer(
                &mut conn,
                "503 Service Unavailable",
                "x-ms-error-code: ServerBusy\r\nx-ms-request-id: proxy-busy\r\nRetry-After: 1\r\n",
                "<?xml version=\"1.0\" encoding=\"utf-8\"?><Error><Code>ServerBusy</Code><Message>Ingress is over the account limit.</Message></Error>",
            )
        }
        Fault::Drop => {
            let _ = conn.shutdown(Shutdown::Both);
            return Ok(());
        }
        Fault::Entra => {
            return answer(
                &mut conn,
                "401 Unauthorized",
                "x-ms-error-code: InvalidAuthenticationInfo\r\nx-ms-request-id: proxy-401\r\nWWW-Authenticate: Bearer authorization_uri=https://login.microsoftonline.com/tenant/oauth2/authorize resource_id=https://disk.azure.com/\r\n",
                if method == "HEAD" { "" } else { "<?xml version=\"1.0\" encoding=\"utf-8\"?><Error><Code>InvalidAuthenticationInfo</Code><Message>Authentication information is not given in the correct format.</Message></Error>" },
            )
        }
        Fault::Expired => {
            return answer(
                &mut conn,
                "403 Server failed to authenticate the request.",
                "x-ms-error-code: AuthenticationFailed\r\nx-ms-request-id: proxy-403\r\n",
                "<?xml version=\"1.0\" encoding=\"utf-8\"?><Error><Code>AuthenticationFailed</Code><Message>Server failed to authenticate the request. Make sure the value of Authorization header is formed correctly including the signature.</Message><AuthenticationErrorDetail>Signature not valid in the specified time frame: Start [Mon, 01 Jan 2024 00:00:00 GMT] - Expiry [Mon, 01 Jan 2024 01:00:00 GMT] - Current [Mon, 01 Jan 2024 01:00:01 GMT]</AuthenticationErrorDetail></Error>",
            )
        }
        Fault::Lie => {
            return answer(
                &mut conn,
                "201 Created",
                "x-ms-request-id: proxy-lie\r\n",
                "",
            )
        }
        Fault::NoMd5 if head.to_ascii_lowercase().contains("\r\ncontent-md5:") => {
            return answer(
                &mut conn,
                "400 The value for one of the HTTP headers is not in the correct format.",
                "x-ms-error-code: UnsupportedHeader\r\nx-ms-request-id: proxy-400\r\n",
                "<?xml version=\"1.0\" encoding=\"utf-8\"?><Error><Code>UnsupportedHeader</Code><Message>One of the HTTP headers specified in the request is not supported.</Message><HeaderName>Content-MD5</HeaderName></Error>",
            )
        }
        _ => {}
    }
    // forward, one request per upstream connection
    let mut up = TcpStream::connect(("127.0.0.1", upstream))?;
    let mut fwd = String::new();
    for line in head.trim_end().lines() {
        if !line.to_ascii_lowercase().starts_with("connection:") {
            fwd.push_str(line);
            fwd.push_str("\r\n");
        }
    }
    fwd.push_str("Connection: close\r\n\r\n");
    up.write_all(fwd.as_bytes())?;
    let mut body = body;
    if fault == Fault::Flip {
        if let Some(b) = body.first_mut() {
            *b ^= 0xff;
        }
    }
    up.write_all(&body)?;
    let mut resp = Vec::new();
    up.read_to_end(&mut resp)?;
    if let Fault::Slow(ms) = fault {
        thread::sleep(Duration::from_millis(ms));
    }
    conn.write_all(&resp)?;
    let _ = conn.shutdown(Shutdown::Both);
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// tests

#[test]
fn uploads_only_data_pages_and_the_blob_equals_the_file() {
    let Some(store) = Store::new() else { return };
    let dir = TempDir::new("upload-basic");
    let (img, bytes) = make_image(&dir, "disk.vhd", 48, 40, 1);
    store.create_page_blob("disk.vhd", bytes.len() as u64);
    let url = store.url("disk.vhd", "rw", FAR);
    let run = upload(&[img.to_str().unwrap(), &url, "--verify", "--json"]);
    let r = expect_ok(&run);
    assert_blob_equals(&store, "disk.vhd", &bytes);
    let granules: u64 = nonzero_granules(&bytes).iter().map(|r| r.length).sum();
    assert_eq!(n(&r, "data_bytes"), granules, "{r}");
    assert_eq!(
        n(&r, "bytes_sent"),
        granules,
        "no retries, so each byte once: {r}"
    );
    assert!(
        granules < bytes.len() as u64 / 4,
        "the test image is sparse"
    );
    assert_eq!(r["integrity"], "md5");
    assert_eq!(r["page_ranges_ok"], true);
    assert_eq!(r["verified"]["mismatches"].as_array().unwrap().len(), 0);
    assert_eq!(n(&r["verified"], "bytes"), granules);
    assert!(
        !vhdtool::upload::state::path_for(&img).exists(),
        "state removed after success"
    );
    // the text form, once more over the same blob: nothing to clear, same result
    let run = upload(&[img.to_str().unwrap(), &url]);
    assert_eq!(run.exit_code(), 0, "{}", run.stderr);
    assert!(run.stdout.contains("uploaded"), "{}", run.stdout);
    assert!(
        run.stdout.contains("checksum         md5"),
        "{}",
        run.stdout
    );
    assert!(
        run.stderr.is_empty(),
        "no progress bar on a pipe: {}",
        run.stderr
    );
}

#[test]
fn create_and_clear_stale_pages() {
    let Some(store) = Store::new() else { return };
    let dir = TempDir::new("upload-create");
    let (img, bytes) = make_image(&dir, "d.vhd", 24, 12, 2);
    let len = bytes.len() as u64;
    // --create: no blob yet
    assert!(!store.exists("new.vhd"));
    let r = expect_ok(&upload(&[
        img.to_str().unwrap(),
        &store.url("new.vhd", "rcw", FAR),
        "--create",
        "--json",
    ]));
    assert_eq!(r["created"], true);
    assert_blob_equals(&store, "new.vhd", &bytes);
    // a blob holding pages where the image is zero: they are cleared
    store.create_page_blob("old.vhd", len);
    let zero_granule = (0..len / GRANULE)
        .map(|g| g * GRANULE)
        .find(|&at| {
            bytes[at as usize..(at + GRANULE) as usize]
                .iter()
                .all(|&b| b == 0)
        })
        .unwrap();
    store.put_page("old.vhd", zero_granule, &[0xAB; 8192]);
    store.put_page("old.vhd", 0, &[0xCD; 4096]);
    let r = expect_ok(&upload(&[
        img.to_str().unwrap(),
        &store.url("old.vhd", "rw", FAR),
        "--json",
    ]));
    assert!(n(&r, "cleared_bytes") >= 8192, "{r}");
    assert_blob_equals(&store, "old.vhd", &bytes);
}

/// Exit code and stderr of a refused upload; nothing may have been written.
fn assert_refused(store: &Store, run: &Run, blob: &str, size: u64, says: &str) {
    assert_eq!(
        run.exit_code(),
        9,
        "{}\nstdout:\n{}\nstderr:\n{}",
        run.command,
        run.stdout,
        run.stderr
    );
    assert!(
        run.stderr.contains(says),
        "{}: expected {says:?} in\n{}",
        run.command,
        run.stderr
    );
    assert!(
        !run.stderr.replace("sig=REDACTED", "").contains("sig="),
        "the signature must not be shown: {}",
        run.stderr
    );
    if store.exists(blob) {
        assert!(
            store.page_ranges(blob, size).is_empty(),
            "{}: a page was written",
            run.command
        );
    }
}

#[test]
fn refusals_before_any_page() {
    let Some(store) = Store::new() else { return };
    let dir = TempDir::new("upload-refuse");
    let (img, bytes) = make_image(&dir, "d.vhd", 24, 8, 3);
    let len = bytes.len() as u64;
    let img = img.to_str().unwrap();

    // no such blob
    let run = upload(&[img, &store.url("none.vhd", "rw", FAR)]);
    assert_refused(&store, &run, "none.vhd", len, "az disk create --for-upload");
    assert!(run.stderr.contains("BlobNotFound"), "{}", run.stderr);

    // wrong size
    store.create_page_blob("small.vhd", len - MIB);
    let run = upload(&[img, &store.url("small.vhd", "rw", FAR)]);
    assert_refused(
        &store,
        &run,
        "small.vhd",
        len - MIB,
        &format!(
            "the disk is {} bytes, the image {len}: create it with --upload-size-bytes {len}",
            len - MIB
        ),
    );
    assert!(run.stderr.contains("x-ms-request-id"), "{}", run.stderr);

    // a read-only SAS
    store.create_page_blob("ro.vhd", len);
    let run = upload(&[img, &store.url("ro.vhd", "r", FAR)]);
    assert_refused(&store, &run, "ro.vhd", len, "read-only SAS");

    // an expired SAS: the service says 403, we say why
    let run = upload(&[img, &store.url("ro.vhd", "rw", "2001-01-01T00:00:00Z")]);
    assert_refused(
        &store,
        &run,
        "ro.vhd",
        len,
        "the SAS expired at 2001-01-01T00:00:00Z",
    );
    assert!(run.stderr.contains("x-ms-request-id"), "{}", run.stderr);

    // a disk that requires Entra ID: 401 with WWW-Authenticate (from the proxy)
    let proxy = Proxy::start(store.az.port, Box::new(|_, _, _| Fault::Entra));
    let url = proxy.route(&store.url("ro.vhd", "rw", FAR), store.az.port);
    let run = upload(&[img, &url]);
    assert_refused(&store, &run, "ro.vhd", len, "Microsoft Entra ID");
    assert!(
        proxy.seen().iter().all(|s| s.method != "PUT"),
        "{:?}",
        proxy.seen()
    );

    // not an image Azure takes: refused before any request
    let raw = dir.write("raw.img", &vec![1u8; 2 << 20]);
    let run = upload(&[raw.to_str().unwrap(), &store.url("ro.vhd", "rw", FAR)]);
    assert_eq!(run.exit_code(), 5, "{}", run.stderr);
    assert!(run.stderr.contains("vhdtool convert"), "{}", run.stderr);
    // plain http off loopback
    let run = upload(&[img, "http://example.invalid/c/b.vhd?sig=x"]);
    assert_eq!(run.exit_code(), 7, "{}", run.stderr);
}

#[test]
fn retries_through_faults() {
    let Some(store) = Store::new() else { return };
    let dir = TempDir::new("upload-faults");
    let (img, bytes) = make_image(&dir, "d.vhd", 32, 30, 4);
    store.create_page_blob("d.vhd", bytes.len() as u64);
    // a cycle over all requests: busy, dropped, slow (under the timeout), timed out, fine
    let proxy = Proxy::start(
        store.az.port,
        Box::new(|i, _, _| match i % 6 {
            1 => Fault::Busy,
            2 => Fault::Drop,
            3 => Fault::Slow(300),
            4 if i % 12 == 4 => Fault::Slow(2500),
            _ => Fault::Pass,
        }),
    );
    let url = proxy.route(&store.url("d.vhd", "rw", FAR), store.az.port);
    let run = upload(&[
        img.to_str().unwrap(),
        &url,
        "--threads",
        "4",
        "--timeout",
        "2",
        "--retry-budget",
        "120",
        "--verify",
        "--json",
    ]);
    let r = expect_ok(&run);
    assert!(n(&r, "retries") >= 3, "{r}");
    let seen = proxy.seen();
    for f in [
        Fault::Busy,
        Fault::Drop,
        Fault::Slow(300),
        Fault::Slow(2500),
    ] {
        assert!(seen.iter().any(|s| s.fault == f), "{f:?} never injected");
    }
    assert!(n(&r, "bytes_sent") >= n(&r, "data_bytes"));
    // on the wire: every attempt names the pinned version and its own client request id
    let mut ids = std::collections::BTreeSet::new();
    for s in &seen {
        assert_eq!(
            s.version.as_deref(),
            Some(vhdtool::upload::rest::X_MS_VERSION),
            "{s:?}"
        );
        let id = s
            .client_id
            .clone()
            .unwrap_or_else(|| panic!("no client id: {s:?}"));
        assert!(ids.insert(id), "client request id used twice: {s:?}");
    }
    drop(proxy);
    assert_blob_equals(&store, "d.vhd", &bytes);
}

#[test]
fn md5_refused_falls_back_to_crc64() {
    let Some(store) = Store::new() else { return };
    let dir = TempDir::new("upload-md5");
    let (img, bytes) = make_image(&dir, "d.vhd", 24, 10, 5);
    store.create_page_blob("d.vhd", bytes.len() as u64);
    let proxy = Proxy::start(store.az.port, Box::new(|_, _, _| Fault::NoMd5));
    let url = proxy.route(&store.url("d.vhd", "rw", FAR), store.az.port);
    let r = expect_ok(&upload(&[img.to_str().unwrap(), &url, "--json"]));
    assert_eq!(r["integrity"], "crc64", "{r}");
    let note = r["integrity_note"].as_str().unwrap_or_default();
    assert!(
        note.contains("refused md5") && note.contains("UnsupportedHeader"),
        "{note}"
    );
    // after the switch, every Put Page went without Content-MD5
    let puts = proxy
        .seen()
        .iter()
        .filter(|s| s.method == "PUT" && s.target.contains("comp=page"))
        .count();
    assert!(puts >= 2);
    drop(proxy);
    assert_blob_equals(&store, "d.vhd", &bytes);
}

#[test]
fn killed_midway_then_resumed_sends_only_the_rest() {
    let Some(store) = Store::new() else { return };
    let dir = TempDir::new("upload-resume");
    let (img, bytes) = make_image(&dir, "d.vhd", 64, 60, 6);
    let len = bytes.len() as u64;
    store.create_page_blob("d.vhd", len);
    // slow answers, so the upload is still running when it is killed
    let proxy = Proxy::start(
        store.az.port,
        Box::new(|_, method, _| {
            if method == "PUT" {
                Fault::Slow(250)
            } else {
                Fault::Pass
            }
        }),
    );
    let url = store.url("d.vhd", "rw", FAR);
    let slow_url = proxy.route(&url, store.az.port);
    let state = vhdtool::upload::state::path_for(&img);
    let mut child = Command::new(common::bin())
        .args(["upload", img.to_str().unwrap(), &slow_url, "--threads", "2"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // the state file as a reader with no knowledge of vhdtool sees it: after a header line,
    // one `OFFSET+LENGTH CRC32` line per confirmed range (complete lines only)
    let done_bytes = |p: &Path| -> u64 {
        let text = fs::read_to_string(p).unwrap_or_default();
        let Some((_, body)) = text.split_once('\n') else {
            return 0;
        };
        body.split_inclusive('\n')
            .filter(|l| l.ends_with('\n'))
            .map(|l| {
                let (range, _) = l.split_once(' ').unwrap();
                range.split_once('+').unwrap().1.parse::<u64>().unwrap()
            })
            .sum()
    };
    let t = Instant::now();
    while done_bytes(&state) < 4 * GRANULE {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the upload ended before it could be killed"
        );
        assert!(t.elapsed() < Duration::from_secs(60), "no progress in 60 s");
        thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    drop(proxy);
    let done = done_bytes(&state);
    let plan: u64 = nonzero_granules(&bytes).iter().map(|r| r.length).sum();
    assert!(done > 0 && done < plan, "killed midway: {done} of {plan}");

    let r = expect_ok(&upload(&[
        img.to_str().unwrap(),
        &url,
        "--resume",
        "--verify",
        "--json",
    ]));
    assert_eq!(n(&r, "resumed_bytes"), done, "{r}");
    assert_eq!(
        n(&r, "bytes_sent"),
        plan - done,
        "only the missing ranges: {r}"
    );
    assert_eq!(n(&r, "data_bytes"), plan);
    assert!(!state.exists());
    assert_blob_equals(&store, "d.vhd", &bytes);

    // a state file for another image is refused with --resume
    let other = serde_json::json!({
        "state": "vhdtool-upload", "version": 2,
        "identity": {"file_bytes": len, "unique_id": "00000000000000000000000000000000",
                     "whole_crc32": "00000000", "ranges_crc32": "00000000",
                     "destination": "http://127.0.0.1:1/elsewhere/b"}
    });
    let line = "0+65536";
    fs::write(
        &state,
        format!("{other}\n{line} {:08x}\n", crc32fast::hash(line.as_bytes())),
    )
    .unwrap();
    let run = upload(&[img.to_str().unwrap(), &url, "--resume"]);
    assert_eq!(run.exit_code(), 6, "{}", run.stderr);
    assert!(run.stderr.contains("another image"), "{}", run.stderr);
}

#[test]
fn gives_up_past_the_retry_budget() {
    // every answer is 503 ServerBusy: no emulator needed behind the proxy
    let dir = TempDir::new("upload-budget");
    let (img, _) = make_image(&dir, "d.vhd", 24, 4, 7);
    let proxy = Proxy::start(1, Box::new(|_, _, _| Fault::Busy));
    let url = format!(
        "http://127.0.0.1:{}/devstoreaccount1/vhds/d.vhd?sv={}&sr=b&sp=rw&sig=c2ln",
        proxy.port,
        vhdtool::upload::rest::X_MS_VERSION
    );
    let t = Instant::now();
    let run = upload(&[img.to_str().unwrap(), &url, "--retry-budget", "3"]);
    assert_eq!(run.exit_code(), 10, "{}\n{}", run.command, run.stderr);
    assert!(t.elapsed() < Duration::from_secs(30), "{:?}", t.elapsed());
    for says in [
        "gave up after",
        "x-ms-error-code ServerBusy",
        "x-ms-request-id proxy-busy",
        "x-ms-client-request-id",
        "--resume",
    ] {
        assert!(
            run.stderr.contains(says),
            "expected {says:?} in {}",
            run.stderr
        );
    }
    // Retry-After: 1 is honoured: no more than ~4 attempts in 3 s
    let seen = proxy.seen().len();
    assert!((2..=5).contains(&seen), "{seen} attempts in a 3 s budget");
}

/// Images Azure does not take are refused before any request, naming what they are and how to
/// get a fixed VHD (`vhdtool convert -o`); qemu-img makes them. The URL points at a closed
/// loopback port: an image that got past the checks would fail on the network instead (exit 10).
#[test]
fn refuses_images_azure_does_not_take() {
    if !common::require_tool("qemu-img", "qemu-utils") {
        return;
    }
    let dir = TempDir::new("upload-images");
    let url = format!(
        "http://127.0.0.1:{}/devstoreaccount1/vhds/d.vhd?sp=rw&sig=c2ln",
        azurite::free_port()
    );
    let path = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
    let mut cases: Vec<(String, &str)> = Vec::new();
    for (name, fmt, opts, says) in [
        ("dyn.vhd", "vpc", "subformat=dynamic", "a dynamic VHD"),
        ("x.vhdx", "vhdx", "", "a VHDX image"),
        ("q.qcow2", "qcow2", "", "a qcow2 image"),
        (
            "odd.vhd",
            "vpc",
            "subformat=fixed,force_size=on",
            "is not a whole number of MiB",
        ),
    ] {
        let mut args = vec!["create", "-q", "-f", fmt];
        if !opts.is_empty() {
            args.extend(["-o", opts]);
        }
        let p = path(name);
        let size = if name == "odd.vhd" { "10000K" } else { "16M" };
        args.extend([p.as_str(), size]);
        common::qemu_img(&args);
        cases.push((p, says));
    }
    // a sound footer of disk type 5 (neither fixed, dynamic nor differencing)
    let (img, mut bytes) = make_image(&dir, "type5.vhd", 8, 2, 8);
    let at = bytes.len() - 512;
    bytes[at + 0x3c..at + 0x40].copy_from_slice(&5u32.to_be_bytes());
    let sum = common::vhd_checksum(&bytes[at..], 0x40);
    bytes[at + 0x40..at + 0x44].copy_from_slice(&sum.to_be_bytes());
    fs::write(&img, &bytes).unwrap();
    cases.push((img.to_str().unwrap().to_string(), "a VHD of disk type 5"));
    for (img, says) in &cases {
        let run = upload(&[img, &url, "--retry-budget", "2"]);
        assert_eq!(
            run.exit_code(),
            5,
            "{}\nstdout:\n{}\nstderr:\n{}",
            run.command,
            run.stdout,
            run.stderr
        );
        for s in [*says, "Azure takes fixed VHDs only", "vhdtool convert"] {
            if *says == "is not a whole number of MiB" && s == "Azure takes fixed VHDs only" {
                continue;
            }
            assert!(
                run.stderr.contains(s),
                "{img}: expected {s:?} in {}",
                run.stderr
            );
        }
    }
}

/// The SAS expires in the middle of the upload (the service answers 403 AuthenticationFailed to
/// every Put Page after the fourth): refused (exit 9), saying that the SAS expired and that a
/// rerun with --resume sends only what is missing; the state file is kept, and the rerun (a new
/// SAS) completes sending only the rest.
#[test]
fn sas_expiring_midway_says_resume() {
    let Some(store) = Store::new() else { return };
    let dir = TempDir::new("upload-expire");
    let (img, bytes) = make_image(&dir, "d.vhd", 32, 40, 9);
    store.create_page_blob("d.vhd", bytes.len() as u64);
    let puts = Arc::new(AtomicU64::new(0));
    let p2 = puts.clone();
    let proxy = Proxy::start(
        store.az.port,
        Box::new(move |_, method, head| {
            let page = method == "PUT" && head.to_ascii_lowercase().contains("x-ms-page-write");
            if page && p2.fetch_add(1, Ordering::SeqCst) >= 4 {
                Fault::Expired
            } else {
                Fault::Pass
            }
        }),
    );
    // the URL's `se` is far (as a managed disk's SAS, which has none, says nothing): the
    // service's words say that the SAS expired
    let url = store.url("d.vhd", "rw", FAR);
    let run = upload(&[
        img.to_str().unwrap(),
        &proxy.route(&url, store.az.port),
        "--threads",
        "1",
    ]);
    drop(proxy);
    assert_eq!(run.exit_code(), 9, "{}\n{}", run.command, run.stderr);
    for says in [
        "the SAS expired",
        "rerun with --resume",
        "AuthenticationFailed",
        "x-ms-request-id proxy-403",
    ] {
        assert!(
            run.stderr.contains(says),
            "expected {says:?} in {}",
            run.stderr
        );
    }
    let state = vhdtool::upload::state::path_for(&img);
    assert!(state.exists(), "the state file is kept");
    let r = expect_ok(&upload(&[
        img.to_str().unwrap(),
        &url,
        "--resume",
        "--json",
    ]));
    assert!(n(&r, "resumed_bytes") > 0, "{r}");
    assert_eq!(
        n(&r, "bytes_sent") + n(&r, "resumed_bytes"),
        n(&r, "data_bytes"),
        "{r}"
    );
    assert_blob_equals(&store, "d.vhd", &bytes);
}

/// A total time budget over the whole upload, beside each request's: a service that answers
/// every other request with 503 (Retry-After: 1) lets each request through on its second
/// attempt, well within its own budget, and the upload would go on at a crawl; past
/// `--total-retry-budget` seconds spent retrying it stops (exit 10), saying which budget.
#[test]
fn gives_up_past_the_total_retry_budget() {
    let Some(store) = Store::new() else { return };
    let dir = TempDir::new("upload-total");
    let (img, bytes) = make_image(&dir, "d.vhd", 48, 40, 10);
    store.create_page_blob("d.vhd", bytes.len() as u64);
    let proxy = Proxy::start(
        store.az.port,
        Box::new(|i, _, _| if i % 2 == 1 { Fault::Busy } else { Fault::Pass }),
    );
    let url = proxy.route(&store.url("d.vhd", "rw", FAR), store.az.port);
    let run = upload(&[
        img.to_str().unwrap(),
        &url,
        "--threads",
        "1",
        "--retry-budget",
        "60",
        "--total-retry-budget",
        "3",
    ]);
    assert_eq!(run.exit_code(), 10, "{}\n{}", run.command, run.stderr);
    for says in [
        "total retry budget 3 s",
        "x-ms-error-code ServerBusy",
        "--resume",
    ] {
        assert!(
            run.stderr.contains(says),
            "expected {says:?} in {}",
            run.stderr
        );
    }
    let seen = proxy.seen();
    let puts = seen.iter().filter(|s| s.method == "PUT").count();
    let plan = nonzero_granules(&bytes).len();
    assert!(
        puts < plan,
        "{puts} Put Page attempts: the upload went on to the end ({plan} ranges)"
    );
}

/// The pipeline end to end: `convert -o` of a dynamic VHD (refused by upload as it is), the
/// `az disk create` line's `--upload-size-bytes` equal to the converted file's size, a page blob
/// of that size (what `az disk create --for-upload` makes), the upload: the blob equals the
/// converted file and lists only its data.
#[test]
fn uploads_a_converted_image_of_the_size_convert_prints() {
    let Some(images) = common::images() else {
        return;
    };
    let Some(store) = Store::new() else { return };
    let dir = TempDir::new("upload-converted");
    let src = images.path("linux-mbr.dyn.vhd");
    let out = dir.path().join("gen2.vhd");
    let url = store.url("gen2.vhd", "rw", FAR);
    let run = upload(&[src.to_str().unwrap(), &url]);
    assert_eq!(run.exit_code(), 5, "{}", run.stderr);
    assert!(run.stderr.contains("vhdtool convert"), "{}", run.stderr);
    let run = common::vhdtool([
        "convert",
        src.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--no-boot-files",
        "--json",
    ]);
    let report = expect_ok(&run);
    let az = report["upload"]["az_disk_create"].as_str().unwrap();
    let size: u64 = az
        .split_once("--upload-size-bytes ")
        .and_then(|(_, rest)| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no --upload-size-bytes in {az}"));
    let bytes = fs::read(&out).unwrap();
    assert_eq!(size, bytes.len() as u64, "{az}");
    store.create_page_blob("gen2.vhd", size);
    let r = expect_ok(&upload(&[
        out.to_str().unwrap(),
        &url,
        "--verify",
        "--json",
    ]));
    assert_eq!(r["page_ranges_ok"], true, "{r}");
    assert_blob_equals(&store, "gen2.vhd", &bytes);
}

/// The checks after the last page are not a formality: a service that confirms a Put Page it
/// never wrote leaves a range the blob does not list (Get Page Ranges), and a page damaged on
/// the way unseen by any checksum is caught by --verify; both exit 1, name the ranges and keep
/// the state file.
#[test]
fn lost_and_damaged_pages_are_found() {
    let Some(store) = Store::new() else { return };
    let dir = TempDir::new("upload-lost");
    let (img, bytes) = make_image(&dir, "d.vhd", 24, 20, 11);
    store.create_page_blob("d.vhd", bytes.len() as u64);
    let puts = Arc::new(AtomicU64::new(0));
    let p2 = puts.clone();
    let proxy = Proxy::start(
        store.az.port,
        Box::new(move |_, method, head| {
            let update = method == "PUT"
                && head
                    .to_ascii_lowercase()
                    .contains("x-ms-page-write: update");
            match update.then(|| p2.fetch_add(1, Ordering::SeqCst)) {
                Some(0) => Fault::Lie,
                Some(1) => Fault::Flip,
                _ => Fault::Pass,
            }
        }),
    );
    let url = proxy.route(&store.url("d.vhd", "rw", FAR), store.az.port);
    let run = upload(&[
        img.to_str().unwrap(),
        &url,
        "--threads",
        "1",
        "--checksum",
        "none",
        "--verify",
        "--json",
    ]);
    assert_eq!(
        run.exit_code(),
        1,
        "{}\n{}\n{}",
        run.command,
        run.stdout,
        run.stderr
    );
    let r = json_of(&run);
    assert_eq!(r["page_ranges_ok"], false, "{r}");
    let plan = nonzero_granules(&bytes);
    let first = plan[0];
    let missing = r["page_ranges_missing"].as_array().unwrap();
    assert_eq!(missing.len(), 1, "{r}");
    assert_eq!(n(&missing[0], "offset"), first.offset, "{r}");
    let bad: Vec<u64> = r["verified"]["mismatches"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| n(m, "offset"))
        .collect();
    assert!(
        bad.contains(&first.offset),
        "the lost range reads back as zeros: {r}"
    );
    assert!(bad.len() >= 2, "the damaged range: {r}");
    assert!(
        vhdtool::upload::state::path_for(&img).exists(),
        "state kept"
    );
    drop(proxy);
    // a rerun sends everything again and mends the blob
    let run = upload(&[img.to_str().unwrap(), &store.url("d.vhd", "rw", FAR)]);
    assert_eq!(run.exit_code(), 0, "{}", run.stderr);
    assert_blob_equals(&store, "d.vhd", &bytes);
}

/// `--threads` requests in flight, 8 by default: the proxy holds each Put Page until as many
/// are open as expected (or 60 s pass, which fails the test), and counts the most open at once.
#[test]
fn eight_requests_in_flight_by_default() {
    let Some(store) = Store::new() else { return };
    let dir = TempDir::new("upload-flight");
    let (img, bytes) = make_image(&dir, "d.vhd", 64, 60, 12);
    store.create_page_blob("d.vhd", bytes.len() as u64);
    for (args, want) in [(vec![], 8u64), (vec!["--threads", "3"], 3)] {
        let open = Arc::new(AtomicU64::new(0));
        let most = Arc::new(AtomicU64::new(0));
        let waited = Arc::new(AtomicBool::new(false));
        let (o2, m2, w2) = (open.clone(), most.clone(), waited.clone());
        let proxy = Proxy::start(
            store.az.port,
            Box::new(move |_, method, head| {
                if !(method == "PUT" && head.to_ascii_lowercase().contains("x-ms-page-write")) {
                    return Fault::Pass;
                }
                let now = o2.fetch_add(1, Ordering::SeqCst) + 1;
                m2.fetch_max(now, Ordering::SeqCst);
                // the first `want` wait for each other; later ones go through
                let t = Instant::now();
                while m2.load(Ordering::SeqCst) < want && t.elapsed() < Duration::from_secs(60) {
                    thread::sleep(Duration::from_millis(5));
                }
                if m2.load(Ordering::SeqCst) < want {
                    w2.store(true, Ordering::SeqCst);
                }
                o2.fetch_sub(1, Ordering::SeqCst);
                Fault::Pass
            }),
        );
        let url = proxy.route(&store.url("d.vhd", "rw", FAR), store.az.port);
        let mut a = vec![img.to_str().unwrap(), url.as_str(), "--json"];
        a.extend(args.iter().copied());
        expect_ok(&upload(&a));
        drop(proxy);
        assert!(
            !waited.load(Ordering::SeqCst),
            "fewer than {want} Put Pages were ever open at once"
        );
        assert_eq!(most.load(Ordering::SeqCst), want, "{a:?}");
        assert_blob_equals(&store, "d.vhd", &bytes);
    }
}

/// Progress on a terminal (bytes sent of bytes to send, rate, ETA), under `script`'s pty;
/// nothing on a pipe (see uploads_only_data_pages_and_the_blob_equals_the_file).
#[test]
fn progress_on_a_terminal() {
    if !common::require_tool("script", "bsdutils") {
        return;
    }
    let Some(store) = Store::new() else { return };
    let dir = TempDir::new("upload-tty");
    let (img, bytes) = make_image(&dir, "d.vhd", 24, 20, 13);
    store.create_page_blob("d.vhd", bytes.len() as u64);
    // slow answers, so the bar is drawn more than once
    let proxy = Proxy::start(
        store.az.port,
        Box::new(|_, method, _| {
            if method == "PUT" {
                Fault::Slow(200)
            } else {
                Fault::Pass
            }
        }),
    );
    let url = proxy.route(&store.url("d.vhd", "rw", FAR), store.az.port);
    let cmd = format!(
        "'{}' upload '{}' '{url}' --threads 2",
        common::bin().display(),
        img.display()
    );
    let out = Command::new("script")
        .args(["-qefc", &cmd, "/dev/null"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let tty = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{tty}");
    assert!(tty.contains("uploaded"), "{tty}");
    // indicatif's bar: "upload [====>   ] 1.19 MiB/2.44 MiB 1.02 MiB/s eta 1s"
    assert!(
        tty.contains("upload ["),
        "no progress bar on a terminal: {tty}"
    );
    assert!(tty.contains("/s eta "), "no rate and ETA: {tty}");
    drop(proxy);
    assert_blob_equals(&store, "d.vhd", &bytes);
}
