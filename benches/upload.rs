//! `vhdtool upload` of a 2 GiB fixed VHD holding 64 MiB of data to the Azure Storage emulator
//! (Azurite, pinned: testdata/azurite/install.sh), through a counting TCP relay written here:
//! bytes on the wire (TCP payload, client to service: request lines, headers and bodies) against
//! the image's data bytes, and the time. When azcopy is installed (npm
//! `@azure-tools/azcopy-linux`, which ships the binary: testdata/azurite/install-azcopy.sh; it
//! needs Debian's libsecret-1-0), the same file goes through `azcopy copy --blob-type PageBlob`
//! (`--from-to LocalBlob`: it cannot tell an emulator URL apart) for comparison, with any address but the emulator's sent to a dead local proxy.
//!
//! Run: `cargo bench --bench upload`. Everything runs on 127.0.0.1 and is removed at the end.
#![allow(clippy::restriction)] // benches: a panic is a failed bench (the crate's panic lints are for src/)

#[path = "../tests/common/azurite.rs"]
mod azurite;
mod common;

use std::fs::File;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use azurite::{Store, TempDir, FAR, MIB};

const GIB: u64 = 1 << 30;

/// A TCP relay on 127.0.0.1 in front of `upstream` that counts the bytes each way.
struct Relay {
    port: u16,
    up: Arc<AtomicU64>,
    down: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

fn pump(mut from: TcpStream, mut to: TcpStream, count: &AtomicU64) {
    let mut buf = vec![0u8; 256 << 10];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                count.fetch_add(n as u64, Ordering::Relaxed);
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}

impl Relay {
    fn start(upstream: u16) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let (up, down) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let stop = Arc::new(AtomicBool::new(false));
        let (u, d, s) = (up.clone(), down.clone(), stop.clone());
        thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                let Ok((client, _)) = listener.accept() else {
                    thread::sleep(Duration::from_millis(2));
                    continue;
                };
                let _ = client.set_nonblocking(false);
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
                    continue;
                };
                let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                let (u, d) = (u.clone(), d.clone());
                thread::spawn(move || pump(client, server, &u));
                thread::spawn(move || pump(s2, c2, &d));
            }
        });
        Relay {
            port,
            up,
            down,
            stop,
        }
    }

    fn reset(&self) {
        self.up.store(0, Ordering::Relaxed);
        self.down.store(0, Ordering::Relaxed);
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// 2 GiB + footer, sparse, 64 MiB of random data in 16 islands of 4 MiB, each starting off a
/// 4 MiB boundary (so each touches two Put Page pages, as real filesystems' data does).
fn make_image(path: &Path) -> u64 {
    let size = 2 * GIB;
    let f = File::create(path).unwrap();
    f.set_len(size + 512).unwrap();
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut island = vec![0u8; 4 << 20];
    for k in 0..16u64 {
        for w in island.chunks_exact_mut(8) {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            w.copy_from_slice(&x.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
        }
        f.write_all_at(&island, k * 128 * MIB + 3 * MIB + k * (64 << 10))
            .unwrap();
    }
    let footer = vhdtool::vhd::fixed_footer(
        size,
        [7; 16],
        0x2c00_0000,
        *b"qem2",
        0x0005_0003,
        *b"Wi2k",
        size,
    );
    f.write_all_at(&footer, size).unwrap();
    f.sync_all().unwrap();
    size + 512
}

fn azcopy() -> Option<PathBuf> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("target/azcopy/node_modules/@azure-tools/azcopy-linux/dist/bin/azcopy_linux_amd64");
    p.exists().then_some(p)
}

fn listed_bytes(store: &Store, blob: &str, len: u64) -> u64 {
    store.page_ranges(blob, len).iter().map(|r| r.length).sum()
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` runs this too: do the work only then
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let Some(store) = Store::new() else {
        eprintln!("SKIPPED: no emulator (sh testdata/azurite/install.sh)");
        return;
    };
    let dir = TempDir::new("bench-upload");
    let img = dir.path().join("disk.vhd");
    let len = make_image(&img);
    let data = 64 * MIB;
    store.create_page_blob("disk.vhd", len);
    let relay = Relay::start(store.az.port);
    let url = store.url("disk.vhd", "rw", FAR).replace(
        &format!("127.0.0.1:{}/", store.az.port),
        &format!("127.0.0.1:{}/", relay.port),
    );
    let t = Instant::now();
    let (out, _) = common::run_output(Command::new(common::bin()).args([
        "upload",
        img.to_str().unwrap(),
        &url,
        "--json",
    ]));
    let took = t.elapsed();
    let r: serde_json::Value = serde_json::from_str(&out).unwrap();
    let up = relay.up.load(Ordering::Relaxed);
    let down = relay.down.load(Ordering::Relaxed);
    let sent = r["bytes_sent"].as_u64().unwrap();
    let listed = listed_bytes(&store, "disk.vhd", len);
    eprintln!(
        "vhdtool upload: 2 GiB image, {} MiB of data: plan {} bytes, Put Page bodies {} bytes in {} request(s) ({} HTTP requests in all); on the wire {} bytes up, {} down; wire/data {:.4}; {:.2} s, {:.1} MB/s of data; the blob lists {} bytes",
        data >> 20,
        r["data_bytes"],
        sent,
        r["put_pages"],
        r["requests"],
        up,
        down,
        up as f64 / data as f64,
        took.as_secs_f64(),
        data as f64 / took.as_secs_f64() / 1e6,
        listed
    );
    assert!(
        sent < data + 8 * MIB,
        "sent {sent} bytes for {data} of data"
    );

    match azcopy() {
        None => eprintln!(
            "azcopy: not installed (sh testdata/azurite/install-azcopy.sh; apt-get install libsecret-1-0): no comparison"
        ),
        Some(bin) => {
            relay.reset();
            let logs = dir.path().join("azcopy");
            let url = store.url("azcopy.vhd", "rcw", FAR).replace(
                &format!("127.0.0.1:{}/", store.az.port),
                &format!("127.0.0.1:{}/", relay.port),
            );
            let mut cmd = Command::new(bin);
            cmd.args([
                "copy",
                img.to_str().unwrap(),
                &url,
                "--blob-type",
                "PageBlob",
                "--from-to",
                "LocalBlob",
            ])
                .env("AZCOPY_LOG_LOCATION", &logs)
                .env("AZCOPY_JOB_PLAN_LOCATION", &logs)
                // anything but the emulator goes to a dead local proxy (no version check abroad)
                .env("HTTPS_PROXY", "http://127.0.0.1:9")
                .env("HTTP_PROXY", "http://127.0.0.1:9")
                .env("NO_PROXY", "127.0.0.1,localhost");
            let t = Instant::now();
            let out = cmd.output().unwrap();
            let took = t.elapsed();
            let up = relay.up.load(Ordering::Relaxed);
            if out.status.success() {
                let listed = listed_bytes(&store, "azcopy.vhd", len);
                eprintln!(
                    "azcopy copy --blob-type PageBlob: on the wire {up} bytes up; wire/data {:.4}; {:.2} s; the blob lists {listed} bytes",
                    up as f64 / data as f64,
                    took.as_secs_f64()
                );
            } else {
                eprintln!(
                    "azcopy failed ({:?}) in {:.2} s: {}{}",
                    out.status.code(),
                    took.as_secs_f64(),
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        }
    }
    drop(relay);
}
