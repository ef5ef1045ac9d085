//! The page-blob REST calls vhdtool makes, built by our own code (Azure Storage REST reference:
//! "Get Blob Properties", "Put Blob", "Put Page", "Get Page Ranges", "Get Blob"), and the small
//! blocking transport under them (ureq 3 with rustls).
//!
//! Requests are plain values ([`Request`]): what they carry is unit-tested without a network
//! (the emulator checks neither Content-MD5 nor the 4 MiB limit of Put Page, nor CRC64).

use std::time::Duration;

use base64::Engine as _;

use super::url::BlobUrl;
use crate::checksum::Range;
use crate::error::{Error, Result};

/// The REST API version every request names (`x-ms-version`). Pinned: the service answers in
/// the shape of this version (page lists with `NextMarker` since 2020-10-02; transactional
/// CRC64 since 2019-02-02), and the emulator (Azurite 3.35) accepts it.
pub const X_MS_VERSION: &str = "2021-12-02";

/// Page blobs are written in 512-byte pages.
pub const PAGE_BYTES: u64 = 512;
/// Largest Put Page body (REST reference, "Put Page": "up to 4 MiB").
pub const MAX_PUT_PAGE_BYTES: u64 = 4 << 20;
/// Page ranges asked for per Get Page Ranges call (then `NextMarker`).
pub const PAGE_LIST_MAX_RESULTS: u32 = 10_000;
/// Largest response body read (a page list of 10 000 ranges is under 1 MiB; a Get Blob of a
/// range at most [`MAX_PUT_PAGE_BYTES`]).
pub const MAX_RESPONSE_BYTES: u64 = 16 << 20;
/// Most page ranges accepted from a destination (bounds memory on a hostile answer).
pub const MAX_PAGE_RANGES: usize = 1 << 24;

/// How each Put Page body is protected in transit (transactional checksums, checked by the
/// service before the page is written).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Integrity {
    /// `Content-MD5`: storage accounts check it; managed disks refuse it.
    Md5,
    /// `x-ms-content-crc64`: Azure's CRC-64 (see [`crc64`]).
    Crc64,
    /// No transactional checksum.
    None,
}

impl Integrity {
    pub fn name(self) -> &'static str {
        match self {
            Integrity::Md5 => "md5",
            Integrity::Crc64 => "crc64",
            Integrity::None => "none",
        }
    }

    /// The next weaker choice after the service refused this one.
    pub fn fallback(self) -> Option<Integrity> {
        match self {
            Integrity::Md5 => Some(Integrity::Crc64),
            Integrity::Crc64 => Some(Integrity::None),
            Integrity::None => None,
        }
    }
}

/// One REST request, before it is sent.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    pub method: &'static str,
    pub url: String,
    /// Header names in lower case; `x-ms-client-request-id` is added per attempt.
    pub headers: Vec<(&'static str, String)>,
    pub body: &'a [u8],
    /// What it is, for messages: "Put Page 0x400000+4194304".
    pub what: String,
}

fn base(method: &'static str, url: String, what: String) -> Request<'static> {
    Request {
        method,
        url,
        headers: vec![("x-ms-version", X_MS_VERSION.to_string())],
        body: &[],
        what,
    }
}

/// `Range: bytes=a-b` (inclusive end) of a non-empty range.
fn range_header(r: Range) -> String {
    format!("bytes={}-{}", r.offset, r.end().saturating_sub(1))
}

fn check_pages(r: Range, what: &str) -> Result<()> {
    if r.length == 0 || !r.offset.is_multiple_of(PAGE_BYTES) || !r.length.is_multiple_of(PAGE_BYTES)
    {
        return Err(Error::invalid(format!(
            "{what} 0x{:x}+{}: page blob ranges must be non-empty and 512-byte aligned",
            r.offset, r.length
        )));
    }
    Ok(())
}

/// Get Blob Properties (HEAD): the blob's type and length.
pub fn get_properties(url: &BlobUrl) -> Request<'static> {
    base("HEAD", url.with(""), "Get Blob Properties".into())
}

/// Put Blob of an empty page blob of `size_bytes` (storage accounts; managed disks are created
/// by `az disk create --for-upload`).
pub fn create_page_blob(url: &BlobUrl, size_bytes: u64) -> Result<Request<'static>> {
    check_pages(Range::new(0, size_bytes), "Put Blob")?;
    let mut r = base(
        "PUT",
        url.with(""),
        format!("Put Blob (page blob, {size_bytes} bytes)"),
    );
    r.headers.push(("x-ms-blob-type", "PageBlob".into()));
    r.headers
        .push(("x-ms-blob-content-length", size_bytes.to_string()));
    r.headers.push(("content-length", "0".into()));
    Ok(r)
}

/// Get Page Ranges: the written ranges, [`PAGE_LIST_MAX_RESULTS`] at a time from `marker`.
pub fn get_page_ranges(url: &BlobUrl, marker: Option<&str>) -> Request<'static> {
    let mut params = format!("comp=pagelist&maxresults={PAGE_LIST_MAX_RESULTS}");
    if let Some(m) = marker.filter(|m| !m.is_empty()) {
        params.push_str("&marker=");
        params.push_str(&percent_encode(m));
    }
    base("GET", url.with(&params), "Get Page Ranges".into())
}

/// Put Page (update) of `data` at `offset`, with the transactional checksum `integrity`.
pub fn put_page<'a>(
    url: &BlobUrl,
    offset: u64,
    data: &'a [u8],
    integrity: Integrity,
) -> Result<Request<'a>> {
    let r = Range::new(offset, crate::units::len_u64(data.len()));
    check_pages(r, "Put Page")?;
    if r.length > MAX_PUT_PAGE_BYTES {
        return Err(Error::invalid(format!(
            "Put Page 0x{offset:x}+{}: more than the service's {MAX_PUT_PAGE_BYTES} bytes per call",
            r.length
        )));
    }
    let mut req = base(
        "PUT",
        url.with("comp=page"),
        format!("Put Page 0x{offset:x}+{}", r.length),
    );
    req.headers.push(("x-ms-page-write", "update".into()));
    req.headers.push(("x-ms-range", range_header(r)));
    req.headers.push(("content-length", r.length.to_string()));
    match integrity {
        Integrity::Md5 => req
            .headers
            .push(("content-md5", b64(&md5::compute(data).0))),
        Integrity::Crc64 => req
            .headers
            .push(("x-ms-content-crc64", b64(&crc64(data).to_le_bytes()))),
        Integrity::None => {}
    }
    req.body = data;
    Ok(req)
}

/// Put Page (clear) of `r`: the pages become unwritten (read as zeros, listed by no range).
pub fn clear_pages(url: &BlobUrl, r: Range) -> Result<Request<'static>> {
    check_pages(r, "Clear Pages")?;
    let mut req = base(
        "PUT",
        url.with("comp=page"),
        format!("Clear Pages 0x{:x}+{}", r.offset, r.length),
    );
    req.headers.push(("x-ms-page-write", "clear".into()));
    req.headers.push(("x-ms-range", range_header(r)));
    req.headers.push(("content-length", "0".into()));
    Ok(req)
}

/// Get Blob of the bytes of `r` (at most [`MAX_PUT_PAGE_BYTES`]).
pub fn get_range(url: &BlobUrl, r: Range) -> Result<Request<'static>> {
    if r.length == 0 || r.length > MAX_PUT_PAGE_BYTES {
        return Err(Error::invalid(format!(
            "Get Blob 0x{:x}+{}: expected 1 to {MAX_PUT_PAGE_BYTES} bytes",
            r.offset, r.length
        )));
    }
    let mut req = base(
        "GET",
        url.with(""),
        format!("Get Blob 0x{:x}+{}", r.offset, r.length),
    );
    req.headers.push(("x-ms-range", range_header(r)));
    Ok(req)
}

/// The headers of one attempt: the request's, then its own client request id.
pub fn attempt_headers(req: &Request<'_>, client_request_id: &str) -> Vec<(&'static str, String)> {
    let mut h = req.headers.clone();
    h.push(("x-ms-client-request-id", client_request_id.to_string()));
    h
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Percent-encode everything but RFC 3986's unreserved characters.
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// CRC-64 as Azure Storage computes `x-ms-content-crc64`: polynomial 0x9A6C9329AC4BC9B5
/// (reflected; 0xAD93D23594C93659 in normal form), initial value and final XOR all ones, i.e.
/// the catalogue's CRC-64/NVME; sent as the base64 of its 8 little-endian bytes, as the Azure
/// SDKs do.
pub fn crc64(data: &[u8]) -> u64 {
    const POLY: u64 = 0x9a6c_9329_ac4b_c9b5;
    // Evaluated at compile time: an index out of range or a lossy cast would fail the build
    // (and `i < 256` makes the cast exact), so nothing here can panic at run time.
    #[allow(clippy::indexing_slicing, clippy::as_conversions)]
    const TABLE: [u64; 256] = {
        let mut t = [0u64; 256];
        let mut i = 0;
        while i < 256 {
            let mut c = i as u64;
            let mut k = 0;
            while k < 8 {
                c = if c & 1 == 1 { (c >> 1) ^ POLY } else { c >> 1 };
                k += 1;
            }
            t[i] = c;
            i += 1;
        }
        t
    };
    let mut crc = !0u64;
    for &b in data {
        let [low, ..] = crc.to_le_bytes();
        // A u8 index into a 256-entry table is always present.
        let t = TABLE.get(usize::from(low ^ b)).copied().unwrap_or_default();
        crc = t ^ (crc >> 8);
    }
    !crc
}

/// A response, headers lower-cased, the body read whole (bounded).
#[derive(Debug, Clone, Default)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// `x-ms-error-code`, else the `<Code>` of the error body.
    pub fn error_code(&self) -> Option<String> {
        if let Some(c) = self.header("x-ms-error-code") {
            return Some(c.to_string());
        }
        let text = std::str::from_utf8(&self.body).ok()?;
        xml_text(text, "Code").map(str::to_string)
    }

    /// The `<Message>` of the error body (first line).
    pub fn error_message(&self) -> Option<String> {
        let text = std::str::from_utf8(&self.body).ok()?;
        xml_text(text, "Message").map(|m| m.lines().next().unwrap_or("").trim().to_string())
    }

    /// The `<AuthenticationErrorDetail>` of a 403 (why a SAS was not accepted: "Signature not
    /// valid in the specified time frame: ...", "Signed expiry time ... must be after ...").
    pub fn auth_detail(&self) -> Option<String> {
        let text = std::str::from_utf8(&self.body).ok()?;
        xml_text(text, "AuthenticationErrorDetail").map(str::to_string)
    }

    pub fn request_id(&self) -> Option<&str> {
        self.header("x-ms-request-id")
    }

    /// `x-ms-error-code`, `x-ms-request-id` and the message, as every error message shows them.
    pub fn describe(&self) -> String {
        let mut s = format!("HTTP {}", self.status);
        if let Some(c) = self.error_code() {
            s.push_str(&format!(", x-ms-error-code {c}"));
        }
        if let Some(id) = self.request_id() {
            s.push_str(&format!(", x-ms-request-id {id}"));
        }
        if let Some(m) = self.error_message().filter(|m| !m.is_empty()) {
            s.push_str(&format!(": {m}"));
        }
        s
    }
}

/// The text of the first `<tag>...</tag>` in `xml`.
fn xml_text<'x>(xml: &'x str, tag: &str) -> Option<&'x str> {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let (_, after) = xml.split_once(&open)?;
    let (inner, _) = after.split_once(&close)?;
    Some(inner.trim())
}

/// One page of a Get Page Ranges answer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PageList {
    pub ranges: Vec<Range>,
    pub next_marker: Option<String>,
}

/// Parse a `<PageList>`: its `<PageRange><Start/><End/></PageRange>` (inclusive ends) and
/// `<NextMarker>`. Ranges must be 512-aligned, ordered and inside `blob_bytes`.
pub fn parse_page_list(body: &[u8], blob_bytes: u64) -> Result<PageList> {
    let text = std::str::from_utf8(body)
        .map_err(|_| Error::corrupt("Get Page Ranges: the answer is not UTF-8"))?;
    if !text.contains("<PageList") {
        return Err(Error::corrupt(format!(
            "Get Page Ranges: expected a <PageList>, got {:?}",
            text.chars().take(120).collect::<String>()
        )));
    }
    let mut list = PageList::default();
    let mut rest = text;
    while let Some((_, after)) = rest.split_once("<PageRange>") {
        let (item, tail) = after
            .split_once("</PageRange>")
            .ok_or_else(|| Error::corrupt("Get Page Ranges: unterminated <PageRange>"))?;
        let num = |tag: &str| -> Result<u64> {
            xml_text(item, tag)
                .and_then(|t| t.parse::<u64>().ok())
                .ok_or_else(|| {
                    Error::corrupt(format!(
                        "Get Page Ranges: <PageRange> {item:?} has no numeric <{tag}>"
                    ))
                })
        };
        let (start, last) = (num("Start")?, num("End")?);
        let r = Range::new(start, last.saturating_sub(start).saturating_add(1));
        if last < start
            || r.end() > blob_bytes
            || !start.is_multiple_of(PAGE_BYTES)
            || !r.length.is_multiple_of(PAGE_BYTES)
        {
            return Err(Error::corrupt(format!(
                "Get Page Ranges: range {start}-{last} is not 512-aligned inside the {blob_bytes}-byte blob"
            )));
        }
        if list.ranges.len() >= MAX_PAGE_RANGES {
            return Err(Error::corrupt(format!(
                "Get Page Ranges: more than {MAX_PAGE_RANGES} ranges"
            )));
        }
        list.ranges.push(r);
        rest = tail;
    }
    list.next_marker = xml_text(text, "NextMarker")
        .filter(|m| !m.is_empty())
        .map(str::to_string);
    Ok(list)
}

/// A transport failure (no HTTP answer): retried.
#[derive(Debug, Clone)]
pub struct TransportError {
    pub timeout: bool,
    pub message: String,
}

/// The HTTP client: one ureq agent (connection pool) shared by the upload threads.
pub struct Client {
    agent: ureq::Agent,
    attempt_timeout: Duration,
}

impl Client {
    /// A client for `url`: rustls (ring) for https; no proxy for a loopback address.
    pub fn new(url: &BlobUrl, attempt_timeout: Duration, threads: usize) -> Client {
        let mut cfg = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .user_agent(concat!("vhdtool/", env!("CARGO_PKG_VERSION")))
            .timeout_global(Some(attempt_timeout))
            .timeout_connect(Some(attempt_timeout.min(Duration::from_secs(30))))
            .max_idle_connections_per_host(threads.max(1))
            .https_only(!url.is_loopback());
        if url.is_loopback() {
            cfg = cfg.proxy(None);
        }
        Client {
            agent: cfg.build().into(),
            attempt_timeout,
        }
    }

    /// One attempt of `req` with `client_request_id`.
    pub fn send(
        &self,
        req: &Request<'_>,
        client_request_id: &str,
    ) -> std::result::Result<Response, TransportError> {
        let mut b = ureq::http::Request::builder()
            .method(req.method)
            .uri(req.url.as_str());
        for (k, v) in attempt_headers(req, client_request_id) {
            // ureq sets Content-Length from the body itself
            if k != "content-length" {
                b = b.header(k, v);
            }
        }
        let http_req = b.body(req.body).map_err(|e| TransportError {
            timeout: false,
            message: format!("cannot build the request: {e}"),
        })?;
        let mut resp = self.agent.run(http_req).map_err(|e| TransportError {
            timeout: matches!(e, ureq::Error::Timeout(_)),
            message: match e {
                ureq::Error::Timeout(_) => {
                    format!("no answer within {} s", self.attempt_timeout.as_secs_f64())
                }
                other => other.to_string(),
            },
        })?;
        let status = resp.status().as_u16();
        let headers = resp
            .headers()
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_ascii_lowercase(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        let body = if req.method == "HEAD" {
            Vec::new()
        } else {
            resp.body_mut()
                .with_config()
                .limit(MAX_RESPONSE_BYTES)
                .read_to_vec()
                .map_err(|e| TransportError {
                    timeout: matches!(e, ureq::Error::Timeout(_)),
                    message: format!("reading the answer: {e}"),
                })?
        };
        Ok(Response {
            status,
            headers,
            body,
        })
    }
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects, clippy::as_conversions)]
mod tests {
    use super::*;

    fn url() -> BlobUrl {
        BlobUrl::parse("https://acct.blob.core.windows.net/c/disk.vhd?sv=2021-12-02&sp=rw&sig=s")
            .unwrap()
    }

    fn header<'r>(r: &'r Request<'_>, name: &str) -> Option<&'r str> {
        r.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn crc64_is_azures() {
        // the catalogue's check value of CRC-64/NVME ("123456789")
        assert_eq!(crc64(b"123456789"), 0xae8b_1486_0a79_9888);
        assert_eq!(crc64(b""), 0);
    }

    #[test]
    fn put_page_headers() {
        let data: Vec<u8> = (0..8192u32).map(|i| (i * 7) as u8).collect();
        let r = put_page(&url(), 4 << 20, &data, Integrity::Md5).unwrap();
        assert_eq!(r.method, "PUT");
        assert_eq!(
            r.url,
            "https://acct.blob.core.windows.net/c/disk.vhd?comp=page&sv=2021-12-02&sp=rw&sig=s"
        );
        assert_eq!(header(&r, "x-ms-version"), Some(X_MS_VERSION));
        assert_eq!(header(&r, "x-ms-page-write"), Some("update"));
        assert_eq!(header(&r, "x-ms-range"), Some("bytes=4194304-4202495"));
        assert_eq!(header(&r, "content-length"), Some("8192"));
        // Content-MD5: base64 of the 16-byte digest (RFC 1864), checked against a known value
        assert_eq!(
            put_page(&url(), 0, &[0u8; 512], Integrity::Md5)
                .map(|r| header(&r, "content-md5").map(str::to_string))
                .unwrap()
                .as_deref(),
            // Python: base64.b64encode(hashlib.md5(bytes(512)).digest())
            Some("v2GerAzfP2jUluqTRBN+iw==")
        );
        assert_eq!(header(&r, "x-ms-content-crc64"), None);
        let c = put_page(&url(), 0, &data, Integrity::Crc64).unwrap();
        assert_eq!(header(&c, "content-md5"), None);
        let want = base64::engine::general_purpose::STANDARD.encode(crc64(&data).to_le_bytes());
        assert_eq!(header(&c, "x-ms-content-crc64"), Some(want.as_str()));
        let n = put_page(&url(), 0, &data, Integrity::None).unwrap();
        assert!(header(&n, "content-md5").is_none() && header(&n, "x-ms-content-crc64").is_none());
        // one attempt adds its own request id
        let h = attempt_headers(&n, "id-1");
        assert_eq!(
            h.last().unwrap(),
            &("x-ms-client-request-id", "id-1".to_string())
        );
    }

    #[test]
    fn put_page_limits() {
        let big = vec![1u8; (MAX_PUT_PAGE_BYTES + 512) as usize];
        assert!(put_page(&url(), 0, &big, Integrity::None).is_err());
        assert!(put_page(
            &url(),
            0,
            &big[..MAX_PUT_PAGE_BYTES as usize],
            Integrity::None
        )
        .is_ok());
        assert!(put_page(&url(), 0, &big[..1000], Integrity::None).is_err());
        assert!(put_page(&url(), 100, &big[..512], Integrity::None).is_err());
        assert!(put_page(&url(), 0, &[], Integrity::None).is_err());
        assert!(clear_pages(&url(), Range::new(512, 100)).is_err());
        let c = clear_pages(&url(), Range::new(1 << 30, 1 << 30)).unwrap();
        assert_eq!(header(&c, "x-ms-page-write"), Some("clear"));
        assert_eq!(
            header(&c, "x-ms-range"),
            Some("bytes=1073741824-2147483647")
        );
        assert!(create_page_blob(&url(), 1000).is_err());
        let p = create_page_blob(&url(), 21 << 20).unwrap();
        assert_eq!(header(&p, "x-ms-blob-type"), Some("PageBlob"));
        assert_eq!(header(&p, "x-ms-blob-content-length"), Some("22020096"));
        assert!(get_range(&url(), Range::new(0, MAX_PUT_PAGE_BYTES + 1)).is_err());
        let g = get_page_ranges(&url(), Some("2!a/b"));
        assert!(
            g.url
                .contains("comp=pagelist&maxresults=10000&marker=2%21a%2Fb&sv="),
            "{}",
            g.url
        );
        assert_eq!(header(&g, "x-ms-version"), Some(X_MS_VERSION));
    }

    #[test]
    fn page_lists() {
        let xml = br#"<?xml version="1.0" encoding="utf-8"?><PageList><PageRange><Start>0</Start><End>511</End></PageRange><ClearRange><Start>512</Start><End>1023</End></ClearRange><PageRange><Start>4194304</Start><End>8388607</End></PageRange><NextMarker>abc</NextMarker></PageList>"#;
        let l = parse_page_list(xml, 8 << 20).unwrap();
        assert_eq!(
            l.ranges,
            vec![Range::new(0, 512), Range::new(4 << 20, 4 << 20)]
        );
        assert_eq!(l.next_marker.as_deref(), Some("abc"));
        let empty = parse_page_list(b"<PageList><NextMarker /></PageList>", 1024).unwrap();
        assert!(empty.ranges.is_empty() && empty.next_marker.is_none());
        for bad in [
            &b"<PageList><PageRange><Start>0</Start><End>511</End></PageRange>"[..], // ok, see below
            b"<PageList><PageRange><Start>0</Start><End>x</End></PageRange></PageList>",
            b"<PageList><PageRange><Start>1</Start><End>512</End></PageRange></PageList>",
            b"<PageList><PageRange><Start>0</Start><End>2047</End></PageRange></PageList>",
            b"<PageList><PageRange><Start>512</Start><End>0</End></PageRange></PageList>",
            b"<Error><Code>X</Code></Error>",
            b"\xff\xfe",
        ]
        .iter()
        .skip(1)
        {
            assert!(
                parse_page_list(bad, 1024).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn error_description() {
        let r = Response {
            status: 403,
            headers: vec![("x-ms-request-id".into(), "rid-1".into())],
            body: b"<?xml version=\"1.0\"?><Error><Code>AuthorizationPermissionMismatch</Code><Message>This request is not authorized.\nRequestId:rid-1</Message></Error>".to_vec(),
        };
        assert_eq!(
            r.error_code().as_deref(),
            Some("AuthorizationPermissionMismatch")
        );
        assert_eq!(
            r.describe(),
            "HTTP 403, x-ms-error-code AuthorizationPermissionMismatch, x-ms-request-id rid-1: This request is not authorized."
        );
    }
}
