//! The resume state: a small file next to the image (`IMAGE.vhdtool-upload`) recording the
//! ranges the service confirmed written, with who they belong to: the image (size, footer
//! unique id, the CRC32 of the whole file and of the upload plan) and the destination (the
//! blob URL without its SAS). `--resume` sends only the ranges not recorded; a state written for
//! another image, another version of it, or another blob is refused.
//!
//! The file is a journal: a JSON header line (`{"state":"vhdtool-upload","version":2,
//! "identity":{...}}`), then one line per confirmed range, `OFFSET+LENGTH CRC32\n` (the CRC32,
//! 8 hex digits, of `OFFSET+LENGTH`), appended with one write as each request is confirmed. It
//! is never rewritten during the upload: a rewrite of every range after every request was
//! quadratic (20 000 ranges: 12 GB written, 56 s under the lock that orders the threads). It is
//! written whole (temporary file, rename) when an upload starts, and removed after a successful
//! upload. A kill can cut the last line only; a line that is cut, or does not match its CRC32,
//! ends the list there (what follows is sent again: the blob's own list decides what is
//! skipped anyway). It is untrusted input when read back: size-bounded, every range checked
//! against the plan.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::checksum::{merge, Range};
use crate::error::{Error, Result};

/// The value of the `state` field.
pub const MAGIC: &str = "vhdtool-upload";
/// The version this code writes and reads (1: one JSON document rewritten after each range).
pub const VERSION: u32 = 2;
/// Largest state file read.
pub const MAX_STATE_BYTES: u64 = 64 << 20;

/// Who a state file is about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    pub file_bytes: u64,
    /// The VHD footer's unique id.
    pub unique_id: String,
    /// CRC32 of the whole image (from the checksum map), 8 hex digits.
    pub whole_crc32: String,
    /// CRC32 of the plan: the upload ranges, as `offset+length` lines, 8 hex digits.
    pub ranges_crc32: String,
    /// The blob, without its SAS.
    pub destination: String,
}

/// The header line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Header {
    state: String,
    version: u32,
    identity: Identity,
}

/// A state file as read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct State {
    pub identity: Identity,
    /// Ranges confirmed written (2xx from Put Page), merged.
    pub done: Vec<Range>,
}

/// The state file of `image`.
pub fn path_for(image: &Path) -> PathBuf {
    let mut p = image.as_os_str().to_owned();
    p.push(".vhdtool-upload");
    PathBuf::from(p)
}

/// CRC32 of a list of ranges (the plan's fingerprint).
pub fn ranges_crc32(ranges: &[Range]) -> String {
    let mut h = crc32fast::Hasher::new();
    for r in ranges {
        h.update(format!("{}+{}\n", r.offset, r.length).as_bytes());
    }
    crate::checksum::hex(h.finalize())
}

/// The journal line of `r`.
fn line(r: Range) -> String {
    let text = format!("{}+{}", r.offset, r.length);
    let crc = crate::checksum::hex(crc32fast::hash(text.as_bytes()));
    format!("{text} {crc}\n")
}

/// The range of one complete line (without its newline), or `None` when it is damaged.
fn parse_line(l: &str) -> Option<Range> {
    let (text, crc) = l.split_once(' ')?;
    if crate::checksum::hex(crc32fast::hash(text.as_bytes())) != crc {
        return None;
    }
    let (offset, length) = text.split_once('+')?;
    Some(Range::new(offset.parse().ok()?, length.parse().ok()?))
}

impl State {
    /// Read a state file; `None` when there is none.
    pub fn read(path: &Path) -> Result<Option<State>> {
        let meta = match std::fs::metadata(path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io(format!("reading {}", path.display()), e)),
        };
        if meta.len() > MAX_STATE_BYTES {
            return Err(Error::corrupt(format!(
                "{}: {} bytes, more than a state file can hold ({MAX_STATE_BYTES}); remove it to start over",
                path.display(),
                meta.len()
            )));
        }
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
        let (head, body) = text.split_once('\n').unwrap_or((text.as_str(), ""));
        let h: Header = serde_json::from_str(head).map_err(|e| {
            Error::corrupt(format!(
                "{}: not an upload state file of version {VERSION} ({e}); remove it to start over",
                path.display()
            ))
        })?;
        if h.state != MAGIC || h.version != VERSION {
            return Err(Error::corrupt(format!(
                "{}: state {:?} version {}, expected {MAGIC:?} version {VERSION}; remove it to start over",
                path.display(),
                h.state,
                h.version
            )));
        }
        // complete lines only; the first damaged one ends the list
        let mut done = Vec::new();
        let mut rest = body;
        while let Some((l, after)) = rest.split_once('\n') {
            let Some(r) = parse_line(l) else { break };
            done.push(r);
            rest = after;
        }
        Ok(Some(State {
            identity: h.identity,
            done: merge(done),
        }))
    }

    /// The confirmed ranges, checked against this upload: refused when the state is about
    /// another image (or this one changed), or records a range outside the plan. The
    /// destination is not compared (a new `az disk grant-access` may give another URL for the
    /// same disk): the caller keeps only what the destination lists as written.
    pub fn done_for(&self, id: &Identity, plan: &[Range], path: &Path) -> Result<Vec<Range>> {
        let mine = &self.identity;
        let what = if mine.file_bytes != id.file_bytes || mine.unique_id != id.unique_id {
            Some(format!(
                "another image ({} bytes, unique id {})",
                mine.file_bytes, mine.unique_id
            ))
        } else if mine.whole_crc32 != id.whole_crc32 || mine.ranges_crc32 != id.ranges_crc32 {
            Some("this image before it changed (its CRC32 differs)".to_string())
        } else {
            None
        };
        if let Some(what) = what {
            return Err(Error::conflict(format!(
                "{}: the upload state is for {what}; remove it (or run without --resume) to upload from the start",
                path.display()
            )));
        }
        for r in &self.done {
            let inside = plan
                .iter()
                .any(|p| p.offset <= r.offset && r.end() <= p.end());
            if !inside {
                return Err(Error::corrupt(format!(
                    "{}: confirmed range 0x{:x}+{} is not part of the upload plan; remove the file to start over",
                    path.display(),
                    r.offset,
                    r.length
                )));
            }
        }
        Ok(self.done.clone())
    }
}

/// The state file of an upload in progress, open for appending.
#[derive(Debug)]
pub struct Journal {
    file: std::fs::File,
    path: PathBuf,
}

impl Journal {
    /// Write the state file afresh (temporary file + rename): the header of `identity`, then
    /// `done`; then keep it open for [`Journal::confirm`].
    pub fn start(path: &Path, identity: Identity, done: &[Range]) -> Result<Journal> {
        let header = Header {
            state: MAGIC.into(),
            version: VERSION,
            identity,
        };
        let mut text = serde_json::to_string(&header)
            .map_err(|e| Error::invalid(format!("cannot encode the upload state: {e}")))?;
        text.push('\n');
        for r in done {
            text.push_str(&line(*r));
        }
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(".tmp");
        let tmp = PathBuf::from(tmp);
        std::fs::write(&tmp, text.as_bytes())
            .map_err(|e| Error::io(format!("writing {}", tmp.display()), e))?;
        std::fs::rename(&tmp, path).map_err(|e| {
            Error::io(
                format!("renaming {} to {}", tmp.display(), path.display()),
                e,
            )
        })?;
        let file = std::fs::OpenOptions::new()
            .append(true)
            .open(path)
            .map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
        Ok(Journal {
            file,
            path: path.to_path_buf(),
        })
    }

    /// Record `r` as confirmed: one line, appended with one write.
    pub fn confirm(&mut self, r: Range) -> Result<()> {
        self.file
            .write_all(line(r).as_bytes())
            .map_err(|e| Error::io(format!("writing {}", self.path.display()), e))
    }
}

/// The bytes both lists cover.
pub fn intersect(a: &[Range], b: &[Range]) -> Vec<Range> {
    subtract(a, &subtract(a, b))
}

/// `plan` minus `done`: what is left to send.
pub fn subtract(plan: &[Range], done: &[Range]) -> Vec<Range> {
    let mut out = Vec::new();
    for p in plan {
        let mut pos = p.offset;
        for d in done {
            if d.end() <= pos || d.offset >= p.end() {
                continue;
            }
            if d.offset > pos {
                out.push(Range::new(pos, d.offset.saturating_sub(pos)));
            }
            pos = pos.max(d.end());
        }
        if pos < p.end() {
            out.push(Range::new(pos, p.end().saturating_sub(pos)));
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects, clippy::as_conversions)]
mod tests {
    use super::*;

    fn id() -> Identity {
        Identity {
            file_bytes: 1 << 30,
            unique_id: "00112233445566778899aabbccddeeff".into(),
            whole_crc32: "12345678".into(),
            ranges_crc32: ranges_crc32(&[Range::new(0, 4096)]),
            destination: "https://a/c/b".into(),
        }
    }

    #[test]
    fn subtraction() {
        let plan = vec![Range::new(0, 100), Range::new(200, 100)];
        assert_eq!(subtract(&plan, &[]), plan);
        assert_eq!(
            subtract(&plan, &[Range::new(10, 20), Range::new(250, 100)]),
            vec![Range::new(0, 10), Range::new(30, 70), Range::new(200, 50)]
        );
        assert!(subtract(&plan, &[Range::new(0, 300)]).is_empty());
        assert_eq!(
            intersect(&plan, &[Range::new(50, 200)]),
            vec![Range::new(50, 50), Range::new(200, 50)]
        );
    }

    #[test]
    fn round_trip_and_refusals() {
        let dir = std::env::temp_dir().join(format!("vhdtool-state-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("s.json");
        assert!(State::read(&p).unwrap().is_none());
        let mut j = Journal::start(&p, id(), &[Range::new(0, 512)]).unwrap();
        j.confirm(Range::new(512, 512)).unwrap();
        drop(j);
        let back = State::read(&p).unwrap().unwrap();
        assert_eq!(back.identity, id());
        assert_eq!(back.done, vec![Range::new(0, 1024)]);
        let plan = [Range::new(0, 4096)];
        assert_eq!(
            back.done_for(&id(), &plan, &p).unwrap(),
            vec![Range::new(0, 1024)]
        );
        let mut other = id();
        other.unique_id = "ffeeddccbbaa99887766554433221100".into();
        assert!(back.done_for(&other, &plan, &p).is_err());
        let mut changed = id();
        changed.whole_crc32 = "87654321".into();
        assert!(back.done_for(&changed, &plan, &p).is_err());
        assert!(back.done_for(&id(), &[Range::new(0, 512)], &p).is_err());
        // a new start replaces the file
        drop(Journal::start(&p, id(), &[]).unwrap());
        assert!(State::read(&p).unwrap().unwrap().done.is_empty());
        std::fs::write(&p, b"{\"state\":\"x\"}").unwrap();
        assert!(State::read(&p).is_err());
        std::fs::write(&p, b"not json").unwrap();
        assert!(State::read(&p).is_err());
        // version 1 (one JSON document) is refused, to start over
        std::fs::write(
            &p,
            b"{\n  \"state\": \"vhdtool-upload\",\n  \"version\": 1\n}",
        )
        .unwrap();
        assert!(State::read(&p).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Each confirmation appends one short line and leaves every byte before it as it was
    /// (was: the whole state rewritten after each range, quadratic in the number of ranges).
    #[test]
    fn confirmations_append() {
        let dir = std::env::temp_dir().join(format!("vhdtool-state-app-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("s");
        let mut j = Journal::start(&p, id(), &[]).unwrap();
        let mut before = std::fs::read(&p).unwrap();
        for i in 0..1000u64 {
            j.confirm(Range::new(i * 8192, 4096)).unwrap();
            let now = std::fs::read(&p).unwrap();
            assert!(
                now.starts_with(&before),
                "range {i}: earlier bytes rewritten"
            );
            assert!(
                now.len() - before.len() < 48,
                "range {i}: {} bytes",
                now.len() - before.len()
            );
            before = now;
        }
        let back = State::read(&p).unwrap().unwrap();
        assert_eq!(back.done.len(), 1000);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A kill can cut the last line; a damaged line ends the list (the rest is sent again).
    #[test]
    fn torn_and_damaged_lines_end_the_list() {
        let dir = std::env::temp_dir().join(format!("vhdtool-state-torn-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("s");
        let mut j = Journal::start(&p, id(), &[Range::new(0, 512)]).unwrap();
        j.confirm(Range::new(1024, 512)).unwrap();
        drop(j);
        let whole = std::fs::read(&p).unwrap();
        // cut inside the last line: "1024+5" would be a wrong range if it were believed
        std::fs::write(&p, &whole[..whole.len() - 12]).unwrap();
        assert_eq!(
            State::read(&p).unwrap().unwrap().done,
            vec![Range::new(0, 512)]
        );
        // a complete line whose CRC32 does not match
        let mut bad = whole.clone();
        let at = bad.len() - 15;
        bad[at] = b'9';
        std::fs::write(&p, &bad).unwrap();
        assert_eq!(
            State::read(&p).unwrap().unwrap().done,
            vec![Range::new(0, 512)]
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
