//! Renderers: human text and JSON. Commands build report values and hand them here; nothing
//! else prints to stdout.

use std::fmt::Write as _;
use std::io::{self, Write};

use serde::Serialize;

use crate::error::{Error, Result};
use crate::finding::{Finding, Severity};
use crate::info::{InfoReport, Scheme, TableKind};
use crate::vhd::Format;

/// Write text to stdout. A closed pipe (`vhdtool info x | head`) ends the process with 0.
pub fn text(s: &str) -> Result<()> {
    let mut out = io::stdout().lock();
    match out.write_all(s.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => std::process::exit(0),
        Err(e) => Err(Error::io("writing to stdout", e)),
    }
}

/// Write a value as pretty JSON to stdout, with a final newline.
pub fn json<T: Serialize>(value: &T) -> Result<()> {
    let mut s = serde_json::to_string_pretty(value)
        .map_err(|e| Error::invalid(format!("cannot render the report as JSON: {e}")))?;
    s.push('\n');
    text(&s)
}

/// Print an error on stderr as `vhdtool: <kind>: <message>`.
pub fn error(e: &Error) {
    let _ = writeln!(io::stderr().lock(), "vhdtool: {}: {}", e.kind(), e);
}

/// A byte count as "1.5 GiB (1610612736 bytes)".
pub fn bytes(n: u64) -> String {
    format!("{} ({n} bytes)", human(n))
}

/// A byte count with a binary unit, at most one decimal.
pub fn human(n: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else if v.fract() == 0.0 {
        format!("{v:.0} {}", UNITS[u])
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

fn yes(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

/// Findings, worst first, one per line.
pub fn render_findings(out: &mut String, findings: &[Finding]) {
    let mut sorted: Vec<&Finding> = findings.iter().collect();
    sorted.sort_by_key(|f| std::cmp::Reverse(f.severity));
    for f in sorted {
        let sev = match f.severity {
            Severity::Error => "error  ",
            Severity::Warning => "warning",
            Severity::Info => "info   ",
        };
        let _ = writeln!(out, "  {sev} {:<28} {}", f.id, f.message);
    }
}

/// The human form of `info`.
pub fn render_info(r: &InfoReport) -> String {
    let mut o = String::new();
    let format = match r.format {
        Format::Raw => "raw disk image",
        Format::VhdFixed => "fixed VHD",
        Format::VhdDynamic => "dynamic VHD",
        Format::VhdDifferencing => "differencing VHD",
    };
    let table = match r.partition_table {
        TableKind::Mbr => "MBR",
        TableKind::Gpt => "GPT",
        TableKind::Hybrid => "hybrid MBR + GPT",
        TableKind::None => "no partition table",
    };
    let _ = writeln!(o, "{}: {format}, {table}", r.path);
    let _ = writeln!(o, "  file size      {}", bytes(r.file_bytes));
    let _ = writeln!(o, "  virtual size   {}", bytes(r.virtual_bytes));
    let _ = writeln!(o, "  sector size    {} bytes", r.sector_bytes);
    if let Some(f) = &r.footer {
        let _ = writeln!(
            o,
            "\nfooter (at 0x{:x}{})",
            f.offset,
            if f.legacy_511 {
                ", legacy 511-byte"
            } else {
                ""
            }
        );
        let _ = writeln!(o, "  cookie               {:?}", f.cookie);
        let _ = writeln!(o, "  features             0x{:08x}", f.features);
        let _ = writeln!(o, "  format version       0x{:08x}", f.format_version);
        let _ = writeln!(o, "  data offset          0x{:016x}", f.data_offset);
        let _ = writeln!(
            o,
            "  timestamp            {} ({})",
            f.timestamp, f.timestamp_utc
        );
        let _ = writeln!(
            o,
            "  creator application  {:?} version 0x{:08x}",
            f.creator_application, f.creator_version
        );
        let _ = writeln!(o, "  creator host OS      {:?}", f.creator_host_os);
        let _ = writeln!(o, "  original size        {}", bytes(f.original_size));
        let _ = writeln!(o, "  current size         {}", bytes(f.current_size));
        let g = f.geometry;
        let c = f.computed_geometry;
        let _ = writeln!(
            o,
            "  geometry (C/H/S)     {}/{}/{} (computed from current size: {}/{}/{})",
            g.cylinders, g.heads, g.sectors_per_track, c.cylinders, c.heads, c.sectors_per_track
        );
        let _ = writeln!(o, "  disk type            {}", f.disk_type);
        let mark = if f.checksum == f.computed_checksum {
            "ok"
        } else {
            "MISMATCH"
        };
        let _ = writeln!(
            o,
            "  checksum             0x{:08x} (computed 0x{:08x}, {mark})",
            f.checksum, f.computed_checksum
        );
        let _ = writeln!(o, "  unique id            {}", f.unique_id);
        let _ = writeln!(o, "  saved state          {}", f.saved_state);
    }
    if let Some(d) = &r.dynamic {
        let _ = writeln!(o, "\ndynamic disk header");
        let _ = writeln!(
            o,
            "  block size           {}",
            bytes(u64::from(d.block_size))
        );
        let _ = writeln!(
            o,
            "  BAT                  {} entries at 0x{:x}, {} allocated",
            d.max_table_entries, d.table_offset, d.allocated_blocks
        );
        let mark = if d.checksum == d.computed_checksum {
            "ok"
        } else {
            "MISMATCH"
        };
        let _ = writeln!(
            o,
            "  checksum             0x{:08x} (computed 0x{:08x}, {mark})",
            d.checksum, d.computed_checksum
        );
        if let Some(p) = &d.parent_name {
            let _ = writeln!(
                o,
                "  parent               {p} (unique id {})",
                d.parent_unique_id
            );
        }
    }
    if let Some(m) = &r.mbr {
        let _ = writeln!(
            o,
            "\nMBR: disk signature 0x{:08x}, boot code {}{}",
            m.disk_signature,
            if m.boot_code_present {
                "present"
            } else {
                "absent"
            },
            m.boot_code_kind
                .as_deref()
                .map(|k| format!(" ({k})"))
                .unwrap_or_default()
        );
    }
    if let Some(g) = &r.gpt {
        let h = &g.header;
        let _ = writeln!(
            o,
            "\nGPT: disk GUID {}, using the {:?} copy (primary {}, backup {})",
            g.disk_guid,
            g.used,
            if g.primary_ok { "valid" } else { "INVALID" },
            if g.backup_ok { "valid" } else { "INVALID" }
        );
        let _ = writeln!(
            o,
            "  header at LBA {}, backup at LBA {}, usable LBAs {}..={}, {} entries of {} bytes at LBA {}",
            h.my_lba, h.alternate_lba, h.first_usable_lba, h.last_usable_lba, h.num_partition_entries, h.size_of_partition_entry, h.partition_entry_lba
        );
    }
    if !r.partitions.is_empty() {
        let _ = writeln!(o, "\npartitions");
        let _ = writeln!(
            o,
            "  {:>3}  {:>12}  {:>12}  {:>10}  {:<28} {:<6} filesystem",
            "#", "start LBA", "end LBA", "size", "type", "flags"
        );
        for p in &r.partitions {
            let ty = match p.scheme {
                Scheme::Mbr => format!(
                    "{} {}",
                    p.type_id,
                    p.type_name.as_deref().unwrap_or("unknown")
                ),
                Scheme::Gpt => p.type_name.clone().unwrap_or_else(|| p.type_id.clone()),
            };
            let mut flags = Vec::new();
            if p.bootable {
                flags.push(if p.scheme == Scheme::Mbr {
                    "active"
                } else {
                    "legacy-boot"
                });
            }
            if p.logical {
                flags.push("logical");
            }
            let fs = match &p.filesystem {
                Some(f) => {
                    let mut s = format!("{:?}", f.kind).to_lowercase();
                    if let Some(l) = &f.label {
                        let _ = write!(s, " label={l:?}");
                    }
                    if let Some(u) = &f.uuid {
                        let _ = write!(s, " uuid={u}");
                    }
                    if f.encrypted {
                        s.push_str(" ENCRYPTED");
                    }
                    s
                }
                None if p.extended => "(extended container)".to_string(),
                None => "-".to_string(),
            };
            let _ = writeln!(
                o,
                "  {:>3}  {:>12}  {:>12}  {:>10}  {:<28} {:<6} {fs}",
                p.index,
                p.start_lba,
                p.end_lba,
                human(p.size_bytes),
                ty,
                flags.join(",")
            );
            if let Some(name) = p.name.as_deref().filter(|n| !n.is_empty()) {
                let _ = writeln!(
                    o,
                    "  {:>3}  name {name:?}, GUID {}",
                    "",
                    p.guid.as_deref().unwrap_or("-")
                );
            }
        }
    }
    if !r.unallocated.is_empty() {
        let _ = writeln!(o, "\nunallocated");
        for u in &r.unallocated {
            let _ = writeln!(
                o,
                "  LBA {}..={} ({})",
                u.start_lba,
                u.end_lba,
                human(u.size_bytes)
            );
        }
    }
    if !r.findings.is_empty() {
        let _ = writeln!(o, "\nfindings");
        render_findings(&mut o, &r.findings);
    }
    let _ = writeln!(
        o,
        "\nazure_ready: {}   gen2_ready: {}",
        yes(r.azure_ready),
        yes(r.gen2_ready)
    );
    o
}
