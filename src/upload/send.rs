//! Sending the pages: Put Page requests in parallel, each confirmed range recorded in the
//! resume state, with a fallback to a weaker transactional checksum when the service refuses
//! one.

use std::sync::atomic::{AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use super::rest::{self, Integrity};
use super::state::Journal;
use super::{Exec, Failure};
use crate::checksum::Range;
use crate::error::{Error, Result};

/// What to send.
pub(super) struct Job<'a, 'u> {
    pub exec: &'a Exec<'u>,
    /// The whole image.
    pub data: &'a [u8],
    /// Pieces of at most one Put Page each.
    pub todo: &'a [Range],
    pub threads: usize,
}

/// What sending did.
pub(super) struct Sent {
    pub put_pages: u64,
    /// The transactional checksum in use at the end.
    pub integrity: Integrity,
    /// Why it is not the first one, if it changed.
    pub note: Option<String>,
}

/// Send every piece of `job.todo` on up to `job.threads` threads, starting with the
/// transactional checksum `first`; `journal` records each confirmed piece. `progress(sent,
/// to_send)` is called on this thread about every 100 ms.
pub(super) fn send_all(
    job: &Job<'_, '_>,
    first: Integrity,
    journal: Journal,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<Sent> {
    let Job {
        exec,
        data,
        todo,
        threads,
    } = *job;
    let to_send: u64 = todo.iter().map(|r| r.length).sum();
    let integrity = AtomicU8::new(integrity_code(first));
    let note: Mutex<Option<String>> = Mutex::new(None);
    let next = AtomicUsize::new(0);
    let sent = AtomicU64::new(0);
    let put_pages = AtomicU64::new(0);
    let failed: Mutex<Option<Error>> = Mutex::new(None);
    let journal = Mutex::new(journal);
    let waiting = std::thread::current();
    std::thread::scope(|s| {
        let worker = || {
            while !exec.stop.load(Ordering::Relaxed) {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(piece) = todo.get(i).copied() else {
                    break;
                };
                let r = send_piece(exec, data, piece, &integrity, &note).and_then(|()| {
                    journal
                        .lock()
                        .map_err(|_| Error::invalid("upload state lock poisoned"))?
                        .confirm(piece)
                });
                match r {
                    Ok(()) => {
                        put_pages.fetch_add(1, Ordering::Relaxed);
                        sent.fetch_add(piece.length, Ordering::Relaxed);
                    }
                    Err(e) => {
                        if let Ok(mut f) = failed.lock() {
                            f.get_or_insert(e);
                        }
                        exec.stop.store(true, Ordering::Relaxed);
                    }
                }
            }
            waiting.unpark();
        };
        let handles: Vec<_> = (0..threads.min(todo.len().max(1)))
            .map(|_| s.spawn(worker))
            .collect();
        while !handles.iter().all(|h| h.is_finished()) {
            progress(sent.load(Ordering::Relaxed), to_send);
            std::thread::park_timeout(Duration::from_millis(100));
        }
    });
    progress(sent.load(Ordering::Relaxed), to_send);
    if let Some(e) = failed.into_inner().ok().flatten() {
        return Err(e);
    }
    Ok(Sent {
        put_pages: put_pages.load(Ordering::Relaxed),
        integrity: integrity_of(integrity.load(Ordering::Relaxed)),
        note: note.into_inner().ok().flatten(),
    })
}

fn integrity_code(i: Integrity) -> u8 {
    match i {
        Integrity::Md5 => 0,
        Integrity::Crc64 => 1,
        Integrity::None => 2,
    }
}

fn integrity_of(c: u8) -> Integrity {
    match c {
        0 => Integrity::Md5,
        1 => Integrity::Crc64,
        _ => Integrity::None,
    }
}

/// Error codes with which the service refuses a header it does not take.
const REFUSED_HEADER_CODES: &[&str] = &[
    "UnsupportedHeader",
    "InvalidHeaderValue",
    "Md5NotSupported",
    "Crc64NotSupported",
];

/// One Put Page, falling back to a weaker transactional checksum when the service refuses
/// the header.
fn send_piece(
    exec: &Exec<'_>,
    data: &[u8],
    piece: Range,
    integrity: &AtomicU8,
    note: &Mutex<Option<String>>,
) -> Result<()> {
    // in range: pieces come from the plan, which lies inside the file
    let span = usize::try_from(piece.offset)
        .ok()
        .zip(usize::try_from(piece.end()).ok());
    let bytes = span
        .and_then(|(start, end)| data.get(start..end))
        .ok_or_else(|| {
            Error::invalid(format!(
                "piece 0x{:x}+{} outside the image",
                piece.offset, piece.length
            ))
        })?;
    // at most one fallback per checksum kind
    for _ in 0..3 {
        let mode = integrity_of(integrity.load(Ordering::Relaxed));
        let req = rest::put_page(exec.url, piece.offset, bytes, mode)?;
        match exec.call(&req) {
            Ok(_) => return Ok(()),
            Err(Failure::Final(resp))
                if resp.status == 400
                    && mode != Integrity::None
                    && resp
                        .error_code()
                        .is_some_and(|c| REFUSED_HEADER_CODES.contains(&c.as_str())) =>
            {
                let Some(next) = mode.fallback() else {
                    return Err(exec.error(&req.what, Failure::Final(resp)));
                };
                // the first thread to see it switches; the others just resend
                if integrity
                    .compare_exchange(
                        integrity_code(mode),
                        integrity_code(next),
                        Ordering::Relaxed,
                        Ordering::Relaxed,
                    )
                    .is_ok()
                {
                    if let Ok(mut n) = note.lock() {
                        let prev = n.take().map(|p| format!("{p}; ")).unwrap_or_default();
                        *n = Some(format!(
                            "{prev}the service refused {} ({}): {} used instead",
                            mode.name(),
                            resp.describe(),
                            next.name()
                        ));
                    }
                }
            }
            Err(f) => return Err(exec.error(&req.what, f)),
        }
    }
    Err(Error::invalid(
        "transactional checksum fallback did not settle",
    ))
}
