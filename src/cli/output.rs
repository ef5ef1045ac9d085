//! Renderers: human text and JSON. Commands build report values and hand them here; nothing
//! else prints to stdout.

use std::fmt::Write as _;
use std::io::{self, Write};

use serde::Serialize;

use crate::error::{Error, Result};
use crate::finding::{Finding, Severity};
use crate::image::Format as ImageFormat;
use crate::info::{Container, InfoReport, PartitionReport, Scheme, TableKind};
use crate::vhd::{DynamicInfo, Footer};

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
/// Streamed: a large report (a manifest's chunk list) is never held as text.
pub fn json<T: Serialize>(value: &T) -> Result<()> {
    let mut out = io::BufWriter::with_capacity(64 << 10, io::stdout().lock());
    let written = serde_json::to_writer_pretty(&mut out, value)
        .map_err(|e| match e.io_error_kind() {
            Some(kind) => io::Error::from(kind),
            None => io::Error::other(format!("cannot render the report as JSON: {e}")),
        })
        .and_then(|()| out.write_all(b"\n"))
        .and_then(|()| out.flush());
    match written {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => std::process::exit(0),
        Err(e) if e.kind() == io::ErrorKind::Other => Err(Error::invalid(e.to_string())),
        Err(e) => Err(Error::io("writing to stdout", e)),
    }
}

/// Print an error on stderr as `vhdtool: <kind>: <message>`.
pub fn error(e: &Error) {
    let _ = writeln!(io::stderr().lock(), "vhdtool: {}: {}", e.kind(), e);
}

/// A byte count as "1.5 GiB (1610612736 bytes)".
pub fn bytes(n: u64) -> String {
    format!("{} ({n} bytes)", human(n))
}

/// A byte count with a binary unit, at most one decimal, never rounded to zero
/// ([`crate::units::human_bytes`]).
pub fn human(n: u64) -> String {
    crate::units::human_bytes(n)
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
    let format = match r.image_format {
        ImageFormat::Raw => "raw disk image",
        ImageFormat::VhdFixed => "fixed VHD",
        ImageFormat::VhdDynamic => "dynamic VHD",
        ImageFormat::VhdDifferencing => "differencing VHD",
        ImageFormat::Vhdx => "VHDX",
        ImageFormat::Qcow2 => "qcow2",
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
        render_footer(&mut o, f);
    }
    if let Some(d) = &r.dynamic {
        render_dynamic(&mut o, d);
    }
    if let Some(c) = &r.container {
        render_container(&mut o, c);
    }
    render_tables(&mut o, r);
    if !r.partitions.is_empty() {
        let _ = writeln!(o, "\npartitions");
        let _ = writeln!(
            o,
            "  {:>3}  {:>12}  {:>12}  {:>10}  {:<28} {:<6} filesystem",
            "#", "start LBA", "end LBA", "size", "type", "flags"
        );
        for p in &r.partitions {
            render_partition(&mut o, p);
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

/// The VHD footer section of `info`.
fn render_footer(o: &mut String, f: &Footer) {
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

/// The dynamic disk header section of `info`.
fn render_dynamic(o: &mut String, d: &DynamicInfo) {
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

/// The container section of `info` (formats that are not flat): the chain of images, the
/// allocated bytes, and a VHDX's header, metadata and parent locator.
fn render_container(o: &mut String, c: &Container) {
    let _ = writeln!(o, "\ncontainer");
    for (i, img) in c.chain.iter().enumerate() {
        let what = if i == 0 { "image" } else { "parent" };
        let path = img
            .path
            .as_deref()
            .map_or_else(|| "(memory)".to_string(), |p| p.display().to_string());
        let _ = writeln!(
            o,
            "  {what:<20} {path} ({}, {})",
            img.format.name(),
            human(img.virtual_bytes)
        );
    }
    if let Some(a) = c.allocated_bytes {
        let _ = writeln!(o, "  allocated            {}", bytes(a));
    }
    let Some(x) = &c.vhdx else {
        return;
    };
    let _ = writeln!(
        o,
        "  VHDX header          at 0x{:x}, sequence {}, version {}, log {}",
        x.header_offset,
        x.sequence_number,
        x.version,
        // a nil log GUID: the log is empty (MS-VHDX 2.2.2)
        if x.log_guid == crate::gpt::guid::Guid::NIL.to_string() {
            "empty"
        } else {
            "NOT EMPTY"
        }
    );
    let _ = writeln!(
        o,
        "  block size           {}",
        bytes(u64::from(x.block_bytes))
    );
    let _ = writeln!(
        o,
        "  sector size          {} logical, {} physical",
        x.logical_sector_bytes,
        x.physical_sector_bytes
            .map_or_else(|| "-".to_string(), |p| p.to_string())
    );
    let _ = writeln!(o, "  data write GUID      {}", x.data_write_guid);
    if let Some(l) = &x.parent_locator {
        let _ = writeln!(o, "  parent locator       type {}", l.locator_type);
        for e in &l.entries {
            let _ = writeln!(o, "    {:<20} {}", e.key, e.value);
        }
    }
}

/// The MBR and GPT summary lines of `info`.
fn render_tables(o: &mut String, r: &InfoReport) {
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
}

/// One row of the partition list of `info` (and its name line).
fn render_partition(o: &mut String, p: &PartitionReport) {
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

/// A progress bar on stderr, shown only when stderr is a terminal and the work is large.
pub struct Progress {
    label: &'static str,
    bar: Option<indicatif::ProgressBar>,
    min_bytes: u64,
}

impl Progress {
    /// Below this many bytes the work takes well under a second: no bar.
    const MIN_BYTES: u64 = 256 << 20;

    pub fn new(label: &'static str) -> Self {
        Progress {
            label,
            bar: None,
            min_bytes: Self::MIN_BYTES,
        }
    }

    /// A bar for work of any size (an upload runs at network speed).
    pub fn always(label: &'static str) -> Self {
        Progress {
            label,
            bar: None,
            min_bytes: 1,
        }
    }

    pub fn update(&mut self, done: u64, total: u64) {
        use std::io::IsTerminal;
        if self.bar.is_none() && total >= self.min_bytes && io::stderr().is_terminal() {
            let bar = indicatif::ProgressBar::with_draw_target(
                Some(total),
                indicatif::ProgressDrawTarget::stderr(),
            );
            if let Ok(style) = indicatif::ProgressStyle::with_template(
                "{msg} [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
            ) {
                bar.set_style(style.progress_chars("=> "));
            }
            bar.set_message(self.label);
            self.bar = Some(bar);
        }
        if let Some(b) = &self.bar {
            b.set_position(done);
        }
    }

    pub fn finish(&mut self) {
        if let Some(b) = self.bar.take() {
            b.finish_and_clear();
        }
    }
}

fn status_word(s: crate::convert::CheckStatus) -> &'static str {
    match s {
        crate::convert::CheckStatus::Pass => "pass",
        crate::convert::CheckStatus::Warn => "WARN",
        crate::convert::CheckStatus::Fail => "FAIL",
    }
}

/// The checks, the notes and the plan, as `validate` and `convert` print them.
pub fn render_validation(image: &str, v: &crate::convert::Validation) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "{image}: layout checks");
    for c in &v.checks {
        let _ = writeln!(
            o,
            "  {:<4}  {:<24} {}",
            status_word(c.status),
            c.id,
            c.detail
        );
        if c.status != crate::convert::CheckStatus::Pass {
            if let Some(fix) = &c.fix {
                let _ = writeln!(o, "        {:<24} fix: {fix}", "");
            }
        }
    }
    if !v.notes.is_empty() {
        let _ = writeln!(o, "\nnotes");
        render_findings(&mut o, &v.notes);
    }
    if v.already_gpt {
        let _ = writeln!(o, "\nthe disk is already GPT: nothing to convert");
        return o;
    }
    match &v.plan {
        Some(p) => render_plan(&mut o, p),
        None => {
            let failed = v
                .checks
                .iter()
                .filter(|c| c.status == crate::convert::CheckStatus::Fail)
                .count();
            let _ = writeln!(
                o,
                "\nresult: {failed} check(s) failed; no plan, nothing would be written"
            );
        }
    }
    o
}

fn render_plan(o: &mut String, p: &crate::convert::Plan) {
    let _ = writeln!(o, "\nplan");
    let _ = writeln!(o, "  room for the ESP     {}", p.room_reason);
    let _ = writeln!(
        o,
        "  disk size            {} -> {}",
        bytes(p.old_disk_bytes),
        bytes(p.new_disk_bytes)
    );
    let _ = writeln!(
        o,
        "  file size            {} -> {}",
        bytes(p.old_file_bytes),
        bytes(p.new_file_bytes)
    );
    let _ = writeln!(o, "  disk GUID            {}", p.disk_guid);
    let _ = writeln!(o, "  protective MBR       boot code {}", p.boot_code);
    if let Some(sh) = &p.shrink {
        let _ = writeln!(
            o,
            "  shrink               partition {} ({}): {} -> {}, {}",
            sh.partition,
            sh.filesystem,
            human(sh.old_bytes),
            human(sh.new_bytes),
            sh.method
        );
    }
    let _ = writeln!(
        o,
        "\n  new partition table (GPT, 128 entries, {}-byte sectors)",
        p.sector_bytes
    );
    let _ = writeln!(
        o,
        "  {:>3}  {:>12}  {:>12}  {:>10}  {:<22} {:<36} from",
        "#", "start LBA", "end LBA", "size", "type", "partition GUID"
    );
    let sb = u64::from(p.sector_bytes);
    for e in &p.partitions {
        // The GPT reader guarantees first <= last; saturating keeps a display from panicking.
        let size = e
            .entry
            .last_lba
            .saturating_sub(e.entry.first_lba)
            .saturating_add(1)
            .saturating_mul(sb);
        let _ = writeln!(
            o,
            "  {:>3}  {:>12}  {:>12}  {:>10}  {:<22} {:<36} {}",
            e.entry.index,
            e.entry.first_lba,
            e.entry.last_lba,
            human(size),
            e.entry.type_name.unwrap_or("?"),
            e.entry.unique_guid.to_string(),
            e.from
        );
    }
    let _ = writeln!(o, "\n  regions written (file offsets)");
    for r in &p.steps {
        let _ = writeln!(o, "    0x{:012x} +{:<12} {}", r.offset, r.length, r.what);
    }
}

/// The human form of `convert`.
pub fn render_convert(r: &crate::convert::run::ConvertReport) -> String {
    let mut o = render_validation(&r.image, &r.validation);
    if !r.validation.passed() {
        let _ = writeln!(o, "\nnot converted: the image was not modified");
        return o;
    }
    if !r.esp_files.is_empty() {
        let _ = writeln!(o, "\n  ESP files: {}", r.esp_files.join(", "));
    }
    if let Some(lb) = &r.linux_boot {
        o.push_str(&lb.render());
    }
    if let Some(w) = &r.windows {
        o.push_str(&w.render());
    }
    for w in &r.warnings {
        let _ = writeln!(o, "\nwarning: {w}");
    }
    if r.dry_run {
        let _ = writeln!(o, "\ndry run: nothing was written");
        return o;
    }
    let _ = writeln!(
        o,
        "\nconverted: {} ({} bytes written)",
        r.output, r.bytes_written
    );
    if let Some(j) = &r.journal {
        let _ = writeln!(
            o,
            "  undo journal: {j} (vhdtool rollback {} restores the original)",
            r.image
        );
    }
    if let Some(u) = &r.upload {
        let _ = writeln!(o, "\nupload");
        let _ = writeln!(o, "  file size            {} bytes", u.file_bytes);
        let _ = writeln!(o, "  hyperVGeneration     {}", u.hyper_v_generation);
        let _ = writeln!(o, "  {}", u.az_disk_create);
    }
    o
}

/// The `--verify` part of `convert`'s human output.
pub fn render_verified(v: &crate::checksum::VerifyReport) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "\nverify: {}",
        if v.ok {
            "only the planned regions changed"
        } else {
            "FAILED: bytes outside the planned regions changed"
        }
    );
    let _ = writeln!(o, "  method: {}", v.method);
    let _ = writeln!(o, "  compared outside the plan: {}", bytes(v.checked_bytes));
    for r in &v.regions {
        let _ = writeln!(
            o,
            "  0x{:012x} +{:<12} {:<9} {}",
            r.offset,
            r.length,
            if r.changed { "changed" } else { "unchanged" },
            r.what
        );
    }
    for r in &v.unplanned {
        let _ = writeln!(o, "  UNPLANNED CHANGE 0x{:012x} +{}", r.offset, r.length);
    }
    o
}
