//! `vhdtool upload IMAGE URL`.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};

use super::exit;
use super::output::{self, human, Progress};
use crate::error::Result;
use crate::upload::rest::Integrity;
use crate::upload::retry::Policy;
use crate::upload::{self, BlobUrl, Options, UploadReport};

/// The transactional checksum of each Put Page.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ChecksumChoice {
    /// Content-MD5 on a storage account, CRC64 on a managed disk (which refuses MD5).
    Auto,
    Md5,
    Crc64,
    None,
}

#[derive(Debug, Args)]
pub struct UploadArgs {
    /// The image: a fixed VHD whose size is a whole number of MiB (what `vhdtool convert`
    /// writes).
    pub image: PathBuf,
    /// The blob SAS URL: what `az disk grant-access --access-level Write` prints, or a storage
    /// account page blob's SAS URL. Quote it.
    pub url: String,
    /// Put Page requests in flight.
    #[arg(long, value_name = "N", default_value_t = upload::DEFAULT_THREADS, value_parser = parse_threads)]
    pub threads: usize,
    /// Create the page blob when it does not exist (storage accounts; a managed disk is made
    /// by `az disk create --for-upload`).
    #[arg(long)]
    pub create: bool,
    /// Send only the ranges the state file (IMAGE.vhdtool-upload) does not record as written.
    #[arg(long)]
    pub resume: bool,
    /// Read every written range back and compare its CRC32 with the image's.
    #[arg(long)]
    pub verify: bool,
    /// Transactional checksum of each Put Page.
    #[arg(long, value_enum, default_value_t = ChecksumChoice::Auto)]
    pub checksum: ChecksumChoice,
    /// Seconds one HTTP exchange may take before it is abandoned and retried.
    #[arg(long, value_name = "SECS", default_value_t = 120)]
    pub timeout: u64,
    /// Seconds one request may spend in attempts and waits before the upload gives up.
    #[arg(long, value_name = "SECS", default_value_t = 900)]
    pub retry_budget: u64,
    /// Seconds the whole upload may spend retrying (while any request is between a failed
    /// attempt and its end) before it gives up.
    #[arg(long, value_name = "SECS", default_value_t = 3600)]
    pub total_retry_budget: u64,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

fn parse_threads(s: &str) -> std::result::Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if (1..=upload::MAX_THREADS).contains(&n) => Ok(n),
        _ => Err(format!(
            "expected a number from 1 to {}",
            upload::MAX_THREADS
        )),
    }
}

pub fn run(args: &UploadArgs) -> Result<u8> {
    let url = BlobUrl::parse(&args.url)?;
    let opts = Options {
        threads: args.threads,
        create: args.create,
        resume: args.resume,
        verify: args.verify,
        integrity: match args.checksum {
            ChecksumChoice::Auto => None,
            ChecksumChoice::Md5 => Some(Integrity::Md5),
            ChecksumChoice::Crc64 => Some(Integrity::Crc64),
            ChecksumChoice::None => Some(Integrity::None),
        },
        policy: Policy {
            attempt_timeout: Duration::from_secs(args.timeout.max(1)),
            request_budget: Duration::from_secs(args.retry_budget.max(1)),
            total_budget: Duration::from_secs(args.total_retry_budget.max(1)),
            ..Policy::default()
        },
    };
    let mut bar = Progress::always("upload");
    let report = upload::upload(&args.image, &url, &opts, &mut |d, t| bar.update(d, t));
    bar.finish();
    let report = report?;
    if args.json {
        output::json(&report)?;
    } else {
        output::text(&render(&report))?;
    }
    Ok(if report.ok() {
        exit::OK
    } else {
        exit::FINDINGS
    })
}

/// The human form of `upload`.
pub fn render(r: &UploadReport) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "{} -> {}", r.image, r.destination);
    if r.created {
        let _ = writeln!(
            o,
            "  created a page blob of {}",
            output::bytes(r.file_bytes)
        );
    }
    let _ = writeln!(o, "  file size        {}", output::bytes(r.file_bytes));
    let _ = writeln!(
        o,
        "  data             {} in {} range(s)",
        output::bytes(r.data_bytes),
        r.data_ranges
    );
    if r.resumed_bytes > 0 {
        let _ = writeln!(
            o,
            "  already written  {} (resume state)",
            output::bytes(r.resumed_bytes)
        );
    }
    let _ = writeln!(
        o,
        "  sent             {} in {} Put Page request(s)",
        output::bytes(r.bytes_sent),
        r.put_pages
    );
    if r.clear_requests > 0 {
        let _ = writeln!(
            o,
            "  cleared          {} in {} range(s) (written there, zero in the image)",
            output::bytes(r.cleared_bytes),
            r.clear_requests
        );
    }
    let _ = writeln!(
        o,
        "  requests         {} ({} retried)",
        r.requests, r.retries
    );
    let _ = writeln!(o, "  checksum         {}", r.integrity.name());
    if let Some(n) = &r.integrity_note {
        let _ = writeln!(o, "                   ({n})");
    }
    // Display only: a float-to-int `as` saturates (NaN gives 0), it cannot panic, and a rate
    // is far below 2^53 where f64 stops being exact.
    #[allow(clippy::as_conversions)]
    let rate = r.bytes_per_second as u64;
    let _ = writeln!(
        o,
        "  time             {:.1} s, {}/s",
        r.seconds,
        human(rate)
    );
    if r.page_ranges_ok {
        let _ = writeln!(
            o,
            "  page ranges      the blob lists every data range of the image, and nothing else"
        );
    } else {
        let _ = writeln!(o, "  page ranges      MISMATCH");
        for m in &r.page_ranges_missing {
            let _ = writeln!(o, "    missing 0x{:012x} +{}", m.offset, m.length);
        }
        for m in &r.page_ranges_extra {
            let _ = writeln!(o, "    extra   0x{:012x} +{}", m.offset, m.length);
        }
    }
    if let Some(v) = &r.verified {
        if v.mismatches.is_empty() {
            let _ = writeln!(
                o,
                "  verify           {} read back in {} range(s): CRC32 equal",
                output::bytes(v.bytes),
                v.ranges
            );
        } else {
            let _ = writeln!(o, "  verify           FAILED: CRC32 differs in");
            for m in &v.mismatches {
                let _ = writeln!(o, "    0x{:012x} +{}", m.offset, m.length);
            }
        }
    }
    if r.ok() {
        let _ = writeln!(o, "\nuploaded");
    } else {
        let _ = writeln!(
            o,
            "\nthe blob does not equal the image: run the upload again (the state file is kept)"
        );
    }
    if let Some(line) = &r.revoke_access {
        let _ = writeln!(o, "  end the write access: {line}");
    }
    o
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects)]
mod tests {
    use super::*;

    /// The summary names data bytes, bytes sent, requests, retries, time and rate, and ends
    /// with the `az disk revoke-access` line for a managed disk.
    #[test]
    fn summary_then_revoke_access() {
        let r = UploadReport {
            image: "disk.vhd".into(),
            destination: "https://md-x.z1.blob.storage.azure.net/c/abcd?si=p&sig=REDACTED".into(),
            managed_disk: true,
            file_bytes: (2 << 30) + 512,
            created: false,
            data_bytes: (64 << 20) + 512,
            data_ranges: 17,
            resumed_bytes: 0,
            bytes_sent: (65 << 20) + 512,
            put_pages: 33,
            cleared_bytes: 0,
            clear_requests: 0,
            requests: 40,
            retries: 4,
            integrity: Integrity::Crc64,
            integrity_note: None,
            seconds: 2.0,
            bytes_per_second: 34_078_976.0,
            page_ranges_ok: true,
            page_ranges_missing: Vec::new(),
            page_ranges_extra: Vec::new(),
            verified: None,
            revoke_access: Some("az disk revoke-access --resource-group RG --name NAME".into()),
        };
        let text = render(&r);
        for says in [
            "data             64 MiB (67109376 bytes) in 17 range(s)",
            "sent             65 MiB (68157952 bytes) in 33 Put Page request(s)",
            "requests         40 (4 retried)",
            "checksum         crc64",
            "time             2.0 s, 32.5 MiB/s",
            "\nuploaded\n",
        ] {
            assert!(text.contains(says), "expected {says:?} in\n{text}");
        }
        let last = text.lines().last().unwrap_or_default();
        assert!(last.contains("az disk revoke-access"), "{text}");
    }
}
