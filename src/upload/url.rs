//! The destination: a blob SAS URL, as `az disk grant-access` prints it
//! (`https://md-xxxx.z1.blob.storage.azure.net/xxxx/abcd?sv=...&sr=b&si=...&sig=...`) or as a
//! storage account gives it for a page blob (`https://ACCOUNT.blob.core.windows.net/C/B?sv=...`).
//!
//! HTTPS only, except plain HTTP to a loopback address (the tests' emulator). The query string
//! (the SAS) is kept as given and appended after our own parameters; the signature never appears
//! in a message (`Display` shows `sig=REDACTED`).

use std::fmt;
use std::net::IpAddr;

use crate::error::{Error, Result};

/// Host suffix of managed disks' upload endpoints (`az disk grant-access` URLs).
pub const MANAGED_DISK_HOST_SUFFIX: &str = ".blob.storage.azure.net";

/// Longest URL accepted (a SAS is a few hundred bytes).
const MAX_URL_BYTES: usize = 8192;

/// A parsed blob SAS URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobUrl {
    /// "https" or "http" (loopback only).
    pub scheme: String,
    /// Host, with the port when one was given (`127.0.0.1:10000`).
    pub authority: String,
    /// The host alone (no port, no brackets).
    pub host: String,
    /// The path, starting with '/', percent-encoding kept as given.
    pub path: String,
    /// The SAS query, without '?', as given.
    pub query: String,
}

/// The SAS parameters that matter before the first request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sas {
    /// `sp`: signed permissions (absent when a stored access policy `si` carries them).
    pub permissions: Option<String>,
    /// `se`: signed expiry, as given (ISO 8601).
    pub expiry: Option<String>,
    /// `si`: the stored access policy id (managed disks).
    pub policy: Option<String>,
    pub has_signature: bool,
}

impl BlobUrl {
    pub fn parse(s: &str) -> Result<BlobUrl> {
        let s = s.trim();
        if s.len() > MAX_URL_BYTES {
            return Err(Error::invalid(format!(
                "the URL is {} bytes long, more than {MAX_URL_BYTES}",
                s.len()
            )));
        }
        if s.chars().any(|c| c.is_control() || c == ' ') {
            return Err(Error::invalid(
                "the URL holds spaces or control characters: quote it as printed by az disk grant-access",
            ));
        }
        let (scheme, rest) = s.split_once("://").ok_or_else(|| {
            Error::invalid("expected a blob SAS URL (https://ACCOUNT.blob.core.windows.net/CONTAINER/BLOB?sv=...&sig=...)")
        })?;
        let scheme = scheme.to_ascii_lowercase();
        if scheme != "https" && scheme != "http" {
            return Err(Error::invalid(format!(
                "URL scheme {scheme:?}: expected https"
            )));
        }
        let rest = rest.split_once('#').map_or(rest, |(a, _)| a);
        let (before_query, query) = rest.split_once('?').unwrap_or((rest, ""));
        let (authority, path) = match before_query.find('/') {
            Some(i) => before_query.split_at(i),
            None => (before_query, ""),
        };
        if authority.is_empty() || authority.contains('@') {
            return Err(Error::invalid(
                "the URL has no host (or carries user information, which a SAS URL never does)",
            ));
        }
        let host = host_of(authority)?;
        // a blob: /container/blob at least (the emulator adds /account in front)
        let segments: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
        if segments.len() < 2 {
            return Err(Error::invalid(format!(
                "URL path {path:?}: expected /CONTAINER/BLOB (a blob URL, not an account or container URL)"
            )));
        }
        let url = BlobUrl {
            scheme,
            authority: authority.to_string(),
            host,
            path: path.to_string(),
            query: query.to_string(),
        };
        if url.scheme == "http" && !url.is_loopback() {
            return Err(Error::invalid(format!(
                "plain http to {}: the SAS would travel unencrypted; use https (http is allowed for a loopback address only)",
                url.host
            )));
        }
        Ok(url)
    }

    /// Is the host a loopback address (127.0.0.0/8, ::1, localhost)?
    pub fn is_loopback(&self) -> bool {
        if self.host.eq_ignore_ascii_case("localhost") {
            return true;
        }
        self.host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
    }

    /// A managed disk's upload endpoint (`az disk grant-access`): MD5 is refused there, and
    /// the blob cannot be created with Put Blob.
    pub fn is_managed_disk(&self) -> bool {
        self.host
            .to_ascii_lowercase()
            .ends_with(MANAGED_DISK_HOST_SUFFIX)
    }

    /// The SAS parameters of the query (values percent-decoded).
    pub fn sas(&self) -> Sas {
        let mut sas = Sas::default();
        for pair in self.query.split('&') {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let v = percent_decode(v);
            match k {
                "sp" => sas.permissions = Some(v),
                "se" => sas.expiry = Some(v),
                "si" => sas.policy = Some(v),
                "sig" => sas.has_signature = !v.is_empty(),
                _ => {}
            }
        }
        sas
    }

    /// The URL of an operation: our parameters (`comp=page`), then the SAS.
    pub fn with(&self, params: &str) -> String {
        let mut q = String::with_capacity(
            params
                .len()
                .saturating_add(self.query.len())
                .saturating_add(1),
        );
        q.push_str(params);
        if !params.is_empty() && !self.query.is_empty() {
            q.push('&');
        }
        q.push_str(&self.query);
        if q.is_empty() {
            format!("{}://{}{}", self.scheme, self.authority, self.path)
        } else {
            format!("{}://{}{}?{q}", self.scheme, self.authority, self.path)
        }
    }

    /// Who the blob is, without the SAS (stored in the resume state, shown in reports).
    pub fn identity(&self) -> String {
        format!("{}://{}{}", self.scheme, self.authority, self.path)
    }
}

impl fmt::Display for BlobUrl {
    /// The URL with the signature replaced by `REDACTED`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.identity())?;
        if !self.query.is_empty() {
            let q: Vec<String> = self
                .query
                .split('&')
                .map(|p| {
                    if p.starts_with("sig=") {
                        "sig=REDACTED".to_string()
                    } else {
                        p.to_string()
                    }
                })
                .collect();
            write!(f, "?{}", q.join("&"))?;
        }
        Ok(())
    }
}

/// The host of an authority: `[::1]:10000` -> `::1`, `h:443` -> `h`.
fn host_of(authority: &str) -> Result<String> {
    if let Some(rest) = authority.strip_prefix('[') {
        let (h, after) = rest
            .split_once(']')
            .ok_or_else(|| Error::invalid(format!("URL host {authority:?}: unclosed '['")))?;
        check_port(after.strip_prefix(':'), authority)?;
        return Ok(h.to_string());
    }
    let (h, port) = match authority.rsplit_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (authority, None),
    };
    check_port(port, authority)?;
    if h.is_empty() {
        return Err(Error::invalid(format!("URL host {authority:?} is empty")));
    }
    Ok(h.to_string())
}

fn check_port(port: Option<&str>, authority: &str) -> Result<()> {
    match port {
        None => Ok(()),
        Some(p) if p.parse::<u16>().is_ok_and(|n| n > 0) => Ok(()),
        Some(p) => Err(Error::invalid(format!(
            "URL {authority:?}: port {p:?} is not a number from 1 to 65535"
        ))),
    }
}

/// Decode `%XX` escapes (invalid ones are kept as written) and `+` as a space.
pub fn percent_decode(s: &str) -> String {
    let mut out = Vec::with_capacity(s.len());
    let mut rest = s.as_bytes();
    while let Some((&c, tail)) = rest.split_first() {
        rest = tail;
        match c {
            b'%' => {
                let hex = tail
                    .get(..2)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match (hex, tail.get(2..)) {
                    (Some(v), Some(after)) => {
                        out.push(v);
                        rest = after;
                    }
                    _ => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            c => out.push(c),
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects, clippy::as_conversions)]
mod tests {
    use super::*;

    const MD: &str = "https://md-impexp-abc.z23.blob.storage.azure.net/x1y2z3/abcd?sv=2018-03-28&sr=b&si=5b1c-policy&sig=AbC%2Bd%3D";

    #[test]
    fn managed_disk_url() {
        let u = BlobUrl::parse(MD).unwrap();
        assert_eq!(u.scheme, "https");
        assert_eq!(u.host, "md-impexp-abc.z23.blob.storage.azure.net");
        assert_eq!(u.path, "/x1y2z3/abcd");
        assert!(u.is_managed_disk());
        assert!(!u.is_loopback());
        let sas = u.sas();
        assert_eq!(sas.permissions, None);
        assert_eq!(sas.policy.as_deref(), Some("5b1c-policy"));
        assert!(sas.has_signature);
        assert_eq!(
            u.with("comp=page"),
            "https://md-impexp-abc.z23.blob.storage.azure.net/x1y2z3/abcd?comp=page&sv=2018-03-28&sr=b&si=5b1c-policy&sig=AbC%2Bd%3D"
        );
        let shown = u.to_string();
        assert!(
            shown.contains("sig=REDACTED") && !shown.contains("AbC"),
            "{shown}"
        );
    }

    #[test]
    fn storage_account_and_emulator() {
        let u = BlobUrl::parse(
            "https://acct.blob.core.windows.net/vhds/disk.vhd?sv=2023-11-03&sp=rw&se=2030-01-01T00%3A00%3A00Z&sr=b&sig=x",
        )
        .unwrap();
        assert!(!u.is_managed_disk());
        let sas = u.sas();
        assert_eq!(sas.permissions.as_deref(), Some("rw"));
        assert_eq!(sas.expiry.as_deref(), Some("2030-01-01T00:00:00Z"));
        let e = BlobUrl::parse("http://127.0.0.1:10000/devstoreaccount1/c/b.vhd?sig=1").unwrap();
        assert!(e.is_loopback());
        assert_eq!(e.authority, "127.0.0.1:10000");
        assert_eq!(
            e.with(""),
            "http://127.0.0.1:10000/devstoreaccount1/c/b.vhd?sig=1"
        );
        assert!(BlobUrl::parse("http://[::1]:8/a/b").unwrap().is_loopback());
        assert!(BlobUrl::parse("http://localhost/a/b")
            .unwrap()
            .is_loopback());
    }

    #[test]
    fn refusals() {
        for bad in [
            "http://acct.blob.core.windows.net/c/b?sig=x", // plain http off loopback
            "ftp://h/c/b",
            "https://acct.blob.core.windows.net/c", // a container, not a blob
            "https://acct.blob.core.windows.net/",
            "acct.blob.core.windows.net/c/b",
            "https://user@h/c/b",
            "https://h:0/c/b",
            "https://h:99999/c/b",
            "https://[::1/c/b",
            "https://h/c/b b",
        ] {
            assert!(BlobUrl::parse(bad).is_err(), "{bad}");
        }
        assert!(BlobUrl::parse(&format!("https://h/c/{}", "a".repeat(9000))).is_err());
    }

    #[test]
    fn percent() {
        assert_eq!(percent_decode("a%3Ab%2f"), "a:b/");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
        assert_eq!(percent_decode("a+b"), "a b");
    }
}
