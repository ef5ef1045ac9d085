//! `vhdtool upload`: send the data pages of a fixed VHD to an Azure page blob (a managed disk
//! opened with `az disk grant-access`, or a storage account's page blob), in parallel, with
//! retries, resumable, verified.
//!
//! What is sent comes from the checksum map (`checksum --upload-ranges`): the granules of
//! [`GRANULE_BYTES`] holding a non-zero byte, plus the footer's; holes are never read. In order:
//!
//! 1. the image must be a fixed VHD with a sound footer, a whole number of MiB, file = size +
//!    512 (what Azure takes); a SAS whose `sp` lacks `w` is refused before any request;
//! 2. Get Blob Properties: the blob must exist (or `--create` makes a page blob on a storage
//!    account) and be exactly as long as the file;
//! 3. Get Page Ranges: pages written there but zero in the image are cleared (Clear Pages), so
//!    the blob ends equal to the file, as azcopy does;
//! 4. Put Page requests of at most 4 MiB, N in flight, each with a transactional checksum
//!    (Content-MD5 on storage accounts; CRC64 on managed disks, which refuse MD5; a checksum the
//!    service refuses falls back to the next, and the report says so), retried per
//!    [`retry::Policy`]; each confirmed range goes into the resume state;
//! 5. Get Page Ranges again: they must cover every range sent and nothing else; `--verify` also
//!    reads every range back and compares its CRC32 with the image's (from the map: the file is
//!    not read again).

pub mod rest;
pub mod retry;
mod send;
pub mod state;
pub mod url;

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use serde::Serialize;

use crate::checksum::{self, merge, ChecksumMap, Range};
use crate::disk::{Access, Disk, MmapDisk};
use crate::error::{Error, Result};
use crate::image::Detected;
use crate::units::len_u64;
use crate::vhd::footer::DISK_TYPE_FIXED;
use crate::vhd::Format;
use rest::{Client, Integrity, Request, Response, MAX_PUT_PAGE_BYTES};
use retry::{Policy, RetryClock, Rng};
use state::{Journal, State};
pub use url::BlobUrl;

/// What the upload map is made of: 64 KiB granules (finer than Azure's 4 MiB Put Page, so
/// sparse filesystems send little zero padding; coarse enough for few requests). Raised for
/// disks whose map would exceed [`checksum::MAX_CHUNKS`].
pub const GRANULE_BYTES: u64 = 64 << 10;
/// Default parallel requests.
pub const DEFAULT_THREADS: usize = 8;
/// Most parallel requests.
pub const MAX_THREADS: usize = 64;
const MIB: u64 = 1 << 20;

/// How to upload.
#[derive(Debug, Clone)]
pub struct Options {
    /// Requests in flight.
    pub threads: usize,
    /// Create the page blob when there is none (storage accounts only).
    pub create: bool,
    /// Skip the ranges the state file records as written.
    pub resume: bool,
    /// Read every range back and compare CRC32s.
    pub verify: bool,
    /// The transactional checksum; `None`: MD5, or CRC64 on a managed disk.
    pub integrity: Option<Integrity>,
    pub policy: Policy,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            threads: DEFAULT_THREADS,
            create: false,
            resume: false,
            verify: false,
            integrity: None,
            policy: Policy::default(),
        }
    }
}

/// The result of `--verify`.
#[derive(Debug, Clone, Serialize)]
pub struct Verified {
    pub ranges: u64,
    pub bytes: u64,
    /// Ranges whose CRC32 read back differs from the image's.
    pub mismatches: Vec<Range>,
}

/// What an upload did.
#[derive(Debug, Clone, Serialize)]
pub struct UploadReport {
    pub image: String,
    /// The blob URL with the signature redacted.
    pub destination: String,
    pub managed_disk: bool,
    pub file_bytes: u64,
    /// `--create` made the page blob.
    pub created: bool,
    /// Bytes of the upload plan: the non-zero granules and the footer's.
    pub data_bytes: u64,
    pub data_ranges: u64,
    /// Bytes the resume state recorded as already written (not sent again).
    pub resumed_bytes: u64,
    /// Put Page body bytes sent, retries included.
    pub bytes_sent: u64,
    /// Put Page requests confirmed.
    pub put_pages: u64,
    /// Pages written at the destination but zero in the image, cleared.
    pub cleared_bytes: u64,
    pub clear_requests: u64,
    /// HTTP requests sent (every attempt of every call).
    pub requests: u64,
    /// Attempts that were retried (transport failures and retryable statuses).
    pub retries: u64,
    /// The transactional checksum used in the end.
    pub integrity: Integrity,
    /// Why it is not the first choice (the service refused it), if so.
    pub integrity_note: Option<String>,
    pub seconds: f64,
    /// `bytes_sent / seconds`.
    pub bytes_per_second: f64,
    /// Get Page Ranges after the upload covers every range of the plan and nothing else.
    pub page_ranges_ok: bool,
    /// Ranges of the plan the destination does not list, and ranges it lists outside the plan.
    pub page_ranges_missing: Vec<Range>,
    pub page_ranges_extra: Vec<Range>,
    pub verified: Option<Verified>,
    /// The command that ends the write access (managed disks).
    pub revoke_access: Option<String>,
}

impl UploadReport {
    /// Every check passed.
    pub fn ok(&self) -> bool {
        self.page_ranges_ok
            && self
                .verified
                .as_ref()
                .is_none_or(|v| v.mismatches.is_empty())
    }
}

/// The granule for a file of `len` bytes: [`GRANULE_BYTES`], doubled until the map fits.
pub fn granule_for(len: u64) -> u64 {
    let mut g = GRANULE_BYTES;
    while len.div_ceil(g) > checksum::MAX_CHUNKS && g < MAX_PUT_PAGE_BYTES {
        g = g.saturating_mul(2);
    }
    g
}

/// Split `ranges` into Put Page pieces of at most 4 MiB that do not cross a 4 MiB boundary.
pub fn pieces(ranges: &[Range]) -> Vec<Range> {
    let mut out = Vec::new();
    for r in ranges {
        let mut pos = r.offset;
        while pos < r.end() {
            let boundary = (pos / MAX_PUT_PAGE_BYTES)
                .saturating_add(1)
                .saturating_mul(MAX_PUT_PAGE_BYTES);
            let end = boundary.min(r.end());
            // pos < end: pos < r.end(), and pos < boundary.
            out.push(Range::new(pos, end.saturating_sub(pos)));
            pos = end;
        }
    }
    out
}

/// What to send: the map's non-zero granules and the footer's, merged.
pub fn plan(map: &ChecksumMap) -> Vec<Range> {
    let len = map.file_bytes;
    let footer = len.checked_sub(512).map(|at| Range::new(at, 512));
    checksum::upload_ranges(map, map.chunk_bytes, footer).ranges
}

/// The image as Azure takes it: a fixed VHD (disk type 2) with a sound footer, a whole number
/// of MiB, file = size + 512. Gives the footer's unique id. Anything else is refused with the
/// way to get there: `vhdtool convert -o` reads dynamic and differencing VHDs, VHDX, qcow2 and
/// raw disks and writes such a VHD (`--keep-mbr` leaves the partitions as they are).
fn check_image(disk: &dyn Disk, shown: &str) -> Result<String> {
    let convert = "run `vhdtool convert IMAGE -o OUT.vhd` first (it writes a fixed VHD of a whole number of MiB; --keep-mbr leaves the partitions as they are)";
    let named = match crate::image::detect(disk) {
        Detected::Vhd => None,
        Detected::Vhdx => Some("a VHDX image"),
        Detected::Qcow2 => Some("a qcow2 image"),
        Detected::Other(name) => Some(name),
        Detected::Raw | Detected::Unknown => Some("a raw disk (no VHD footer)"),
    };
    if let Some(name) = named {
        return Err(Error::unsupported(format!(
            "{shown} is {name}: Azure takes fixed VHDs only; {convert}"
        )));
    }
    let img = crate::vhd::probe(disk);
    let f = match (&img.format, &img.footer) {
        (Format::VhdFixed, Some(f)) if f.disk_type == DISK_TYPE_FIXED => f,
        (format, footer) => {
            let what = match (format, footer) {
                (Format::VhdDynamic, _) => "a dynamic VHD".to_string(),
                (Format::VhdDifferencing, _) => "a differencing VHD".to_string(),
                (_, Some(f)) => format!("a VHD of disk type {} (fixed is 2)", f.disk_type),
                (_, None) => "a raw disk (no VHD footer)".to_string(),
            };
            return Err(Error::unsupported(format!(
                "{shown} is {what}: Azure takes fixed VHDs only; {convert}"
            )));
        }
    };
    if f.checksum != f.computed_checksum {
        return Err(Error::corrupt(format!(
            "{shown}: the VHD footer checksum is 0x{:08x}, computed 0x{:08x}: Azure would refuse it; {convert}",
            f.checksum, f.computed_checksum
        )));
    }
    if f.current_size == 0 || !f.current_size.is_multiple_of(MIB) {
        return Err(Error::unsupported(format!(
            "{shown}: virtual size {} bytes is not a whole number of MiB (Azure: \"unsupported virtual size\"); {convert}",
            f.current_size
        )));
    }
    if f.offset != disk.len().saturating_sub(512)
        || disk.len() != f.current_size.saturating_add(512)
    {
        return Err(Error::unsupported(format!(
            "{shown}: the file is {} bytes, the footer says {} + 512: Azure needs file = size + 512; {convert}",
            disk.len(),
            f.current_size
        )));
    }
    Ok(f.unique_id.clone())
}

/// Seconds since 1970 of an ISO 8601 UTC time as a SAS carries it (`2030-01-01T00:00:00Z`).
pub fn parse_utc(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 19 {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> { s.get(r)?.parse().ok() };
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, se) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || se > 60 {
        return None;
    }
    // days from civil (Howard Hinnant's algorithm); y <= 9999 from four digits, so no step
    // can fail, and each is checked all the same.
    let y = if mo <= 2 { y.checked_sub(1)? } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = mo.checked_add(9)? % 12;
    let doy = (mp.checked_mul(153)?.checked_add(2)? / 5)
        .checked_add(d)?
        .checked_sub(1)?;
    let doe = yoe
        .checked_mul(365)?
        .checked_add(yoe / 4)?
        .checked_sub(yoe / 100)?
        .checked_add(doy)?;
    let days = era
        .checked_mul(146_097)?
        .checked_add(doe)?
        .checked_sub(719_468)?;
    days.checked_mul(86_400)?
        .checked_add(h.checked_mul(3600)?)?
        .checked_add(mi.checked_mul(60)?)?
        .checked_add(se)
}

/// Bytes per second, for the report (0 when no time passed).
fn rate(bytes: u64, seconds: f64) -> f64 {
    // Report only: above 2^53 bytes the float drops low bits no rate shows.
    #[allow(clippy::as_conversions)]
    let bytes = bytes as f64;
    if seconds > 0.0 {
        bytes / seconds
    } else {
        0.0
    }
}

fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// A request that ended without success.
enum Failure {
    /// A final HTTP answer (not retried).
    Final(Response),
    /// Retries exhausted (the message says why).
    Exhausted(String),
}

/// Sends requests with the retry policy and counts what it does.
struct Exec<'u> {
    client: Client,
    url: &'u BlobUrl,
    policy: Policy,
    requests: AtomicU64,
    retries: AtomicU64,
    bytes_sent: AtomicU64,
    salt: AtomicU64,
    /// Set when the upload must stop (an error elsewhere): no new attempt starts.
    stop: AtomicBool,
    /// Set once a page was written or cleared: a later refusal is no longer "nothing written".
    wrote_pages: AtomicBool,
    /// Time spent retrying, for [`Policy::total_budget`].
    retrying: RetryClock,
}

impl<'u> Exec<'u> {
    fn new(url: &'u BlobUrl, policy: Policy, threads: usize) -> Exec<'u> {
        Exec {
            client: Client::new(url, policy.attempt_timeout, threads),
            url,
            policy,
            requests: AtomicU64::new(0),
            retries: AtomicU64::new(0),
            bytes_sent: AtomicU64::new(0),
            salt: AtomicU64::new(0),
            stop: AtomicBool::new(false),
            wrote_pages: AtomicBool::new(false),
            retrying: RetryClock::default(),
        }
    }

    fn rng(&self) -> Rng {
        Rng::seeded(self.salt.fetch_add(1, Ordering::Relaxed))
    }

    /// Send `req` until it succeeds, fails finally, or a budget is spent (its own, or the
    /// upload's total).
    fn call(&self, req: &Request<'_>) -> std::result::Result<Response, Failure> {
        let mut retrying = false;
        let r = self.attempts(req, &mut retrying);
        if retrying {
            self.retrying.leave(Instant::now());
        }
        r
    }

    fn attempts(
        &self,
        req: &Request<'_>,
        retrying: &mut bool,
    ) -> std::result::Result<Response, Failure> {
        let start = Instant::now();
        let mut rng = self.rng();
        let mut attempt = 0u32;
        loop {
            if self.stop.load(Ordering::Relaxed) {
                return Err(Failure::Exhausted("stopped: another request failed".into()));
            }
            attempt = attempt.saturating_add(1);
            let id = rng.uuid();
            self.requests.fetch_add(1, Ordering::Relaxed);
            self.bytes_sent
                .fetch_add(len_u64(req.body.len()), Ordering::Relaxed);
            let sent_at = Instant::now();
            let (why, retry_after) = match self.client.send(req, &id) {
                Ok(resp) if resp.ok() => {
                    if req.headers.iter().any(|(k, _)| *k == "x-ms-page-write") {
                        self.wrote_pages.store(true, Ordering::Relaxed);
                    }
                    return Ok(resp);
                }
                Ok(resp) => {
                    let code = resp.error_code().unwrap_or_default();
                    let checksum_damage = resp.status == 400
                        && matches!(code.as_str(), "Md5Mismatch" | "Crc64Mismatch");
                    if !retry::retryable_status(resp.status) && !checksum_damage {
                        return Err(Failure::Final(resp));
                    }
                    let ra = resp
                        .header("retry-after")
                        .and_then(retry::parse_retry_after);
                    (
                        format!("{} (x-ms-client-request-id {id})", resp.describe()),
                        ra,
                    )
                }
                Err(e) => (format!("{} (x-ms-client-request-id {id})", e.message), None),
            };
            if !*retrying {
                // the failed attempt counts from when it was sent
                self.retrying.enter(sent_at);
                *retrying = true;
            }
            let delay = self.policy.delay(attempt, retry_after, &mut rng);
            if start.elapsed().saturating_add(delay) > self.policy.request_budget {
                return Err(Failure::Exhausted(format!(
                    "{}: gave up after {attempt} attempt(s) in {:.1} s (budget {} s); last: {why}",
                    req.what,
                    start.elapsed().as_secs_f64(),
                    self.policy.request_budget.as_secs()
                )));
            }
            let spent = self.retrying.spent(Instant::now());
            if spent.saturating_add(delay) > self.policy.total_budget {
                return Err(Failure::Exhausted(format!(
                    "{}: gave up after {attempt} attempt(s): the upload has spent {:.1} s retrying in all (total retry budget {} s); last: {why}",
                    req.what,
                    spent.as_secs_f64(),
                    self.policy.total_budget.as_secs()
                )));
            }
            self.retries.fetch_add(1, Ordering::Relaxed);
            std::thread::sleep(delay);
        }
    }

    /// The error for a request that failed: refused (clear message per status) or exhausted.
    fn error(&self, what: &str, f: Failure) -> Error {
        match f {
            Failure::Exhausted(m) => Error::network(format!(
                "{m}; nothing is lost: rerun with --resume to send only what is missing"
            )),
            Failure::Final(resp) => {
                let e = refusal(self.url, what, &resp);
                if self.wrote_pages.load(Ordering::Relaxed) {
                    // pages went in before the refusal (a SAS that expired or was revoked
                    // during the upload): they are in the resume state
                    Error::refused(format!(
                        "{}; the pages written so far are recorded: once this is fixed (a new SAS URL if it expired), rerun with --resume to send only what is missing",
                        e.message()
                    ))
                } else {
                    e
                }
            }
        }
    }
}

/// A clear message for a final answer of the service.
pub fn refusal(url: &BlobUrl, what: &str, resp: &Response) -> Error {
    let d = resp.describe();
    let code = resp.error_code().unwrap_or_default();
    let sas = url.sas();
    match resp.status {
        401 if resp.header("www-authenticate").is_some() || code.contains("Authentic") => {
            Error::refused(format!(
                "{what}: the destination asks for Microsoft Entra ID authentication (WWW-Authenticate: {}): the disk was created with --data-access-auth-mode AzureActiveDirectory, and vhdtool uploads with a SAS only; create the disk without it, or upload with azcopy logged in with Entra ID ({d})",
                resp.header("www-authenticate").unwrap_or("-")
            ))
        }
        401 => Error::refused(format!("{what}: unauthorized ({d})")),
        403 => {
            let expired_at = sas
                .expiry
                .as_deref()
                .filter(|e| parse_utc(e).is_some_and(|t| t <= now_unix()));
            // a managed disk's SAS names no expiry (a stored access policy holds it): the
            // service's detail says it ("Signature not valid in the specified time frame")
            let detail = resp.auth_detail().unwrap_or_default();
            let lower = detail.to_ascii_lowercase();
            let service_says_expired = code == "AuthenticationFailed"
                && (lower.contains("time frame") || lower.contains("expir"));
            if let Some(at) = expired_at {
                Error::refused(format!(
                    "{what}: the SAS expired at {at}: run `az disk grant-access --access-level Write` again for a new one ({d})"
                ))
            } else if service_says_expired {
                Error::refused(format!(
                    "{what}: the SAS expired (the service: {detail}): run `az disk grant-access --access-level Write` again for a new one ({d})"
                ))
            } else if code == "AuthorizationPermissionMismatch"
                || sas.permissions.as_deref().is_some_and(|p| !p.contains('w'))
            {
                Error::refused(format!(
                    "{what}: the SAS does not allow writing (a read-only SAS): use the URL of `az disk grant-access --access-level Write` ({d})"
                ))
            } else {
                Error::refused(format!(
                    "{what}: access denied: the SAS is not valid for this blob (expired, revoked, or signed for another resource) ({d})"
                ))
            }
        }
        404 => Error::refused(format!(
            "{what}: no such blob at {url}: create the disk first with `az disk create --for-upload --upload-size-bytes SIZE` and `az disk grant-access --access-level Write` (or, for a storage account, pass --create) ({d})"
        )),
        _ => Error::refused(format!("{what}: the service refused the request ({d})")),
    }
}

/// Every page range of the blob.
fn page_ranges(exec: &Exec<'_>, blob_bytes: u64) -> Result<Vec<Range>> {
    let mut all = Vec::new();
    let mut marker: Option<String> = None;
    // bounded: each answer has at least one range or ends the list
    for _ in 0..=rest::MAX_PAGE_RANGES {
        let req = rest::get_page_ranges(exec.url, marker.as_deref());
        let resp = exec.call(&req).map_err(|f| exec.error(&req.what, f))?;
        let list = rest::parse_page_list(&resp.body, blob_bytes).map_err(|e| {
            Error::corrupt(format!(
                "{} (x-ms-request-id {})",
                e.message(),
                resp.request_id().unwrap_or("-")
            ))
        })?;
        let empty = list.ranges.is_empty();
        all.extend(list.ranges);
        if all.len() > rest::MAX_PAGE_RANGES {
            return Err(Error::corrupt(format!(
                "Get Page Ranges: more than {} ranges",
                rest::MAX_PAGE_RANGES
            )));
        }
        match list.next_marker {
            Some(m) if !empty || marker.as_deref() != Some(m.as_str()) => marker = Some(m),
            _ => return Ok(merge(all)),
        }
    }
    Err(Error::corrupt("Get Page Ranges: the list does not end"))
}

/// Upload `image` to `url`. `progress(sent, to_send)` is called on this thread about every
/// 100 ms while pages are sent.
pub fn upload(
    image: &Path,
    url: &BlobUrl,
    opts: &Options,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<UploadReport> {
    let started = Instant::now();
    let shown = image.display().to_string();
    check_request(url, opts)?;
    let disk = MmapDisk::open(image, Access::ReadOnly)?;
    let unique_id = check_image(&disk, &shown)?;
    let len = disk.len();
    let data = disk
        .as_slice()
        .ok_or_else(|| Error::unsupported("the image is not memory-mapped"))?;

    // what to send, from the checksum map (holes never read)
    let granule = granule_for(len);
    let mut src = checksum::Source::open(&disk)?;
    let map = checksum::map(&mut src, granule, &mut |_, _| {})?;
    let plan = plan(&map);
    let data_bytes: u64 = plan.iter().map(|r| r.length).sum();

    let threads = opts.threads.clamp(1, MAX_THREADS);
    let exec = Exec::new(url, opts.policy, threads);
    let created = prepare_blob(&exec, len, opts.create)?;

    // resume state
    let state_path = state::path_for(image);
    let identity = state::Identity {
        file_bytes: len,
        unique_id,
        whole_crc32: checksum::hex(map.whole_crc32),
        ranges_crc32: state::ranges_crc32(&plan),
        destination: url.identity(),
    };
    let start = start_state(&exec, &state_path, identity, &plan, opts.resume)?;
    let resumed_bytes: u64 = start.done.iter().map(|r| r.length).sum();

    // the pages
    let todo = pieces(&state::subtract(&plan, &start.done));
    let first = opts.integrity.unwrap_or(if url.is_managed_disk() {
        Integrity::Crc64
    } else {
        Integrity::Md5
    });
    let job = send::Job {
        exec: &exec,
        data,
        todo: &todo,
        threads,
    };
    let sent = send::send_all(&job, first, start.journal, progress)?;
    let send_seconds = started.elapsed().as_secs_f64();

    // the destination lists exactly the plan
    let after = page_ranges(&exec, len)?;
    let missing = state::subtract(&plan, &after);
    let extra = state::subtract(&after, &plan);
    let verified = if opts.verify {
        Some(verify(&exec, &map, &plan, threads)?)
    } else {
        None
    };
    let ok = missing.is_empty() && extra.is_empty();
    if ok && verified.as_ref().is_none_or(|v| v.mismatches.is_empty()) {
        let _ = std::fs::remove_file(&state_path);
    }
    let bytes_sent = exec.bytes_sent.load(Ordering::Relaxed);
    Ok(UploadReport {
        image: shown,
        destination: url.to_string(),
        managed_disk: url.is_managed_disk(),
        file_bytes: len,
        created,
        data_bytes,
        data_ranges: len_u64(plan.len()),
        resumed_bytes,
        bytes_sent,
        put_pages: sent.put_pages,
        cleared_bytes: start.cleared_bytes,
        clear_requests: len_u64(start.to_clear.len()),
        requests: exec.requests.load(Ordering::Relaxed),
        retries: exec.retries.load(Ordering::Relaxed),
        integrity: sent.integrity,
        integrity_note: sent.note,
        seconds: started.elapsed().as_secs_f64(),
        bytes_per_second: rate(bytes_sent, send_seconds),
        page_ranges_ok: ok,
        page_ranges_missing: missing,
        page_ranges_extra: extra,
        verified,
        revoke_access: url
            .is_managed_disk()
            .then(|| "az disk revoke-access --resource-group RG --name NAME".to_string()),
    })
}

/// Refusals that need no request: a read-only SAS, `--create` on a managed disk.
fn check_request(url: &BlobUrl, opts: &Options) -> Result<()> {
    let sas = url.sas();
    if let Some(p) = sas.permissions.as_deref().filter(|p| !p.contains('w')) {
        return Err(Error::refused(format!(
            "the SAS grants {p:?} only (sp={p}): a read-only SAS cannot write pages; use the URL of `az disk grant-access --access-level Write`"
        )));
    }
    if opts.create && url.is_managed_disk() {
        return Err(Error::invalid(
            "--create makes a page blob in a storage account; a managed disk is created with `az disk create --for-upload --upload-size-bytes SIZE`",
        ));
    }
    Ok(())
}

/// The destination exists (or is created when `create`) and is a page blob of `len` bytes.
/// True when it was created.
fn prepare_blob(exec: &Exec<'_>, len: u64, create: bool) -> Result<bool> {
    let url = exec.url;
    let props = rest::get_properties(url);
    match exec.call(&props) {
        Ok(resp) => {
            // the answer's ids, as every error message shows them
            let ids = resp
                .request_id()
                .map(|id| format!(" (Get Blob Properties: x-ms-request-id {id})"))
                .unwrap_or_default();
            if let Some(t) = resp.header("x-ms-blob-type").filter(|t| *t != "PageBlob") {
                return Err(Error::refused(format!(
                    "{url} is a {t}, not a page blob: disks are page blobs (create it with --create, or az disk create --for-upload){ids}"
                )));
            }
            let blob_len = resp
                .header("content-length")
                .and_then(|v| v.trim().parse::<u64>().ok())
                .ok_or_else(|| {
                    Error::corrupt(format!(
                        "Get Blob Properties: no Content-Length in the answer{ids}"
                    ))
                })?;
            if blob_len != len {
                return Err(Error::refused(format!(
                    "the disk is {blob_len} bytes, the image {len}: create it with --upload-size-bytes {len}{ids}"
                )));
            }
            Ok(false)
        }
        Err(Failure::Final(resp)) if resp.status == 404 && create => {
            let req = rest::create_page_blob(url, len)?;
            exec.call(&req).map_err(|f| exec.error(&req.what, f))?;
            Ok(true)
        }
        Err(f) => Err(exec.error(&props.what, f)),
    }
}

/// Where an upload starts: what is already there, what was cleared, and the state file
/// (written) that records what is confirmed.
struct Start {
    /// Confirmed earlier and still listed by the destination.
    done: Vec<Range>,
    /// Pages written there but zero here (cleared).
    to_clear: Vec<Range>,
    cleared_bytes: u64,
    journal: Journal,
}

fn start_state(
    exec: &Exec<'_>,
    state_path: &Path,
    identity: state::Identity,
    plan: &[Range],
    resume: bool,
) -> Result<Start> {
    // pages written there but zero here: cleared
    let before = page_ranges(exec, identity.file_bytes)?;
    let to_clear = state::subtract(&before, plan);
    // confirmed earlier, and still listed by the destination (a state file names what was
    // sent; the blob says what is there)
    let done = if resume {
        match State::read(state_path)? {
            Some(s) => state::intersect(&s.done_for(&identity, plan, state_path)?, &before),
            None => Vec::new(),
        }
    } else {
        Vec::new()
    };
    let journal = Journal::start(state_path, identity, &done)?;
    let mut cleared_bytes = 0;
    for r in &to_clear {
        let req = rest::clear_pages(exec.url, *r)?;
        exec.call(&req).map_err(|f| exec.error(&req.what, f))?;
        cleared_bytes = r.length.saturating_add(cleared_bytes);
    }
    Ok(Start {
        done,
        to_clear,
        cleared_bytes,
        journal,
    })
}

/// CRC32 of `r` from the map's chunk CRCs (`r` is chunk-aligned, or ends at the file end).
fn map_crc(map: &ChecksumMap, r: Range) -> u32 {
    // A map always has a non-zero chunk size; a zero one covers nothing.
    let Some(first) = r.offset.checked_div(map.chunk_bytes) else {
        return 0;
    };
    let last = r.end().div_ceil(map.chunk_bytes);
    let mut crc = 0u32;
    for i in first..last {
        if let Some(s) = map.chunks.get(i) {
            crc = checksum::combine(crc, s.crc, map.range(i).length);
        }
    }
    crc
}

/// Read every range of the plan back (Get Blob, at most 4 MiB each, in parallel) and compare
/// its CRC32 with the image's.
fn verify(exec: &Exec<'_>, map: &ChecksumMap, plan: &[Range], threads: usize) -> Result<Verified> {
    let todo = pieces(plan);
    let next = AtomicUsize::new(0);
    let mismatches = Mutex::new(Vec::new());
    let failed: Mutex<Option<Error>> = Mutex::new(None);
    std::thread::scope(|s| {
        for _ in 0..threads.min(todo.len().max(1)) {
            s.spawn(|| {
                while !exec.stop.load(Ordering::Relaxed) {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(p) = todo.get(i).copied() else { break };
                    let r = rest::get_range(exec.url, p)
                        .and_then(|req| exec.call(&req).map_err(|f| exec.error(&req.what, f)));
                    match r {
                        Ok(resp) => {
                            let got = crc32fast::hash(&resp.body);
                            if len_u64(resp.body.len()) != p.length || got != map_crc(map, p) {
                                if let Ok(mut m) = mismatches.lock() {
                                    m.push(p);
                                }
                            }
                        }
                        Err(e) => {
                            if let Ok(mut f) = failed.lock() {
                                f.get_or_insert(e);
                            }
                            exec.stop.store(true, Ordering::Relaxed);
                        }
                    }
                }
            });
        }
    });
    if let Some(e) = failed.into_inner().ok().flatten() {
        return Err(e);
    }
    Ok(Verified {
        ranges: len_u64(todo.len()),
        bytes: todo.iter().map(|r| r.length).fold(0, u64::saturating_add),
        mismatches: merge(mismatches.into_inner().unwrap_or_default()),
    })
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects, clippy::as_conversions)]
mod tests {
    use super::*;

    #[test]
    fn pieces_are_at_most_4mib_and_aligned() {
        let p = pieces(&[Range::new(3 << 20, 6 << 20), Range::new(20 << 20, 512)]);
        assert_eq!(
            p,
            vec![
                Range::new(3 << 20, 1 << 20),
                Range::new(4 << 20, 4 << 20),
                Range::new(8 << 20, 1 << 20),
                Range::new(20 << 20, 512)
            ]
        );
        assert!(p.iter().all(|r| r.length <= MAX_PUT_PAGE_BYTES));
    }

    #[test]
    fn granules() {
        assert_eq!(granule_for(127 << 30), GRANULE_BYTES);
        let g = granule_for(32 << 40);
        assert!((32u64 << 40).div_ceil(g) <= checksum::MAX_CHUNKS && g <= MAX_PUT_PAGE_BYTES);
    }

    #[test]
    fn plan_of_a_sparse_image() {
        // 4 MiB + 512: data at 100 KiB, footer at the end
        let len = (4 << 20) + 512;
        let mut img = vec![0u8; len];
        img[100 << 10] = 1;
        img[len - 1] = 7;
        let mut src = checksum::Source::from_slice(&img);
        let map = checksum::map(&mut src, GRANULE_BYTES, &mut |_, _| {}).unwrap();
        assert_eq!(
            plan(&map),
            vec![Range::new(64 << 10, 64 << 10), Range::new(4 << 20, 512)]
        );
        assert_eq!(
            map_crc(&map, Range::new(64 << 10, 64 << 10)),
            crc32fast::hash(&img[64 << 10..128 << 10])
        );
        assert_eq!(
            map_crc(&map, Range::new(0, len as u64)),
            crc32fast::hash(&img)
        );
    }

    #[test]
    fn requests_refused_before_any_request() {
        let md = BlobUrl::parse(
            "https://md-x.z1.blob.storage.azure.net/c/abcd?sv=2018-03-28&sr=b&si=p&sig=x",
        )
        .unwrap();
        let create = Options {
            create: true,
            ..Options::default()
        };
        let e = check_request(&md, &create).unwrap_err();
        assert_eq!(e.kind(), crate::error::ErrorKind::InvalidInput);
        assert!(e.message().contains("az disk create --for-upload"), "{e}");
        assert!(check_request(&md, &Options::default()).is_ok());
        let sa = BlobUrl::parse("https://a.blob.core.windows.net/c/b?sp=rcw&sig=x").unwrap();
        assert!(check_request(&sa, &create).is_ok());
        let ro = BlobUrl::parse("https://a.blob.core.windows.net/c/b?sp=rl&sig=x").unwrap();
        let e = check_request(&ro, &Options::default()).unwrap_err();
        assert_eq!(e.kind(), crate::error::ErrorKind::Refused);
        assert!(e.message().contains("read-only SAS"), "{e}");
    }

    #[test]
    fn utc() {
        assert_eq!(parse_utc("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_utc("2000-01-01T00:00:00Z"), Some(946_684_800));
        assert_eq!(parse_utc("2030-06-15T12:30:05Z"), Some(1_907_757_005));
        assert_eq!(parse_utc("2030-13-01T00:00:00Z"), None);
        assert_eq!(parse_utc("soon"), None);
    }

    #[test]
    fn refusals_say_why() {
        let url = BlobUrl::parse(
            "https://a.blob.core.windows.net/c/b?sp=rw&se=2001-01-01T00%3A00%3A00Z&sig=x",
        )
        .unwrap();
        let resp = |status: u16, code: &str, extra: Vec<(String, String)>| {
            let mut headers = vec![
                ("x-ms-error-code".to_string(), code.to_string()),
                ("x-ms-request-id".to_string(), "rid".to_string()),
            ];
            headers.extend(extra);
            Response {
                status,
                headers,
                body: Vec::new(),
            }
        };
        let e = refusal(&url, "Put Page", &resp(403, "AuthenticationFailed", vec![]));
        assert!(
            e.message().contains("expired at 2001-01-01T00:00:00Z"),
            "{e}"
        );
        assert!(e.message().contains("x-ms-request-id rid"), "{e}");
        let e = refusal(
            &url,
            "Get Blob Properties",
            &resp(
                401,
                "InvalidAuthenticationInfo",
                vec![(
                    "www-authenticate".into(),
                    "Bearer authorization_uri=x".into(),
                )],
            ),
        );
        assert!(e.message().contains("Entra ID"), "{e}");
        let e = refusal(
            &url,
            "Get Blob Properties",
            &resp(404, "BlobNotFound", vec![]),
        );
        assert!(e.message().contains("az disk create --for-upload"), "{e}");
        // a managed disk's SAS names no expiry: the service's detail says it
        let md = BlobUrl::parse(
            "https://md-x.z1.blob.storage.azure.net/c/abcd?sv=2018-03-28&sr=b&si=p&sig=x",
        )
        .unwrap();
        let mut expired = resp(403, "AuthenticationFailed", vec![]);
        expired.body = b"<?xml version=\"1.0\"?><Error><Code>AuthenticationFailed</Code><Message>Server failed to authenticate the request.</Message><AuthenticationErrorDetail>Signature not valid in the specified time frame: Start [a] - Expiry [b] - Current [c]</AuthenticationErrorDetail></Error>".to_vec();
        let e = refusal(&md, "Put Page", &expired);
        assert!(
            e.message().contains(
                "the SAS expired (the service: Signature not valid in the specified time frame"
            ),
            "{e}"
        );
        let e = refusal(&md, "Put Page", &resp(403, "AuthenticationFailed", vec![]));
        assert!(!e.message().contains("the SAS expired"), "{e}");
        // ... nor its permissions (`az disk grant-access --access-level Read`): the service's
        // code says it
        let e = refusal(
            &md,
            "Put Page",
            &resp(403, "AuthorizationPermissionMismatch", vec![]),
        );
        assert!(e.message().contains("read-only SAS"), "{e}");
        let live = BlobUrl::parse("https://a.blob.core.windows.net/c/b?sp=r&sig=x").unwrap();
        let e = refusal(
            &live,
            "Put Page",
            &resp(403, "AuthorizationPermissionMismatch", vec![]),
        );
        assert!(e.message().contains("read-only SAS"), "{e}");
        assert_eq!(e.kind(), crate::error::ErrorKind::Refused);
    }
}
