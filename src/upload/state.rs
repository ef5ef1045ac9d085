//! The resume state: a small JSON file next to the image (`IMAGE.vhdtool-upload`) recording
//! the ranges the service confirmed written, with who they belong to: the image (size, footer
//! unique id, the CRC32 of the whole file and of the upload plan) and the destination (the
//! blob URL without its SAS). `--resume` sends only the ranges not recorded; a state written for
//! another image, another version of it, or another blob is refused.
//!
//! The file is replaced atomically (write a temporary file, rename) after every confirmed
//! request, so a kill leaves the last complete state; it is removed after a successful upload.
//! It is untrusted input when read back: size-bounded, every range checked against the plan.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::checksum::{merge, Range};
use crate::error::{Error, Result};

/// The value of the `state` field.
pub const MAGIC: &str = "vhdtool-upload";
/// The version this code writes and reads.
pub const VERSION: u32 = 1;
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

/// The state as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    pub state: String,
    pub version: u32,
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

impl State {
    pub fn new(identity: Identity) -> State {
        State {
            state: MAGIC.into(),
            version: VERSION,
            identity,
            done: Vec::new(),
        }
    }

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
        let s: State = serde_json::from_str(&text).map_err(|e| {
            Error::corrupt(format!(
                "{}: not an upload state file ({e}); remove it to start over",
                path.display()
            ))
        })?;
        if s.state != MAGIC || s.version != VERSION {
            return Err(Error::corrupt(format!(
                "{}: state {:?} version {}, expected {MAGIC:?} version {VERSION}; remove it to start over",
                path.display(),
                s.state,
                s.version
            )));
        }
        Ok(Some(s))
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
        let done = merge(self.done.clone());
        for r in &done {
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
        Ok(done)
    }

    /// Record `r` as confirmed.
    pub fn add(&mut self, r: Range) {
        self.done.push(r);
        self.done = merge(std::mem::take(&mut self.done));
    }

    /// Replace the state file atomically (temporary file + rename).
    pub fn write(&self, path: &Path) -> Result<()> {
        let text = serde_json::to_string_pretty(self)
            .map_err(|e| Error::invalid(format!("cannot encode the upload state: {e}")))?;
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
        })
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
        let mut s = State::new(id());
        s.add(Range::new(0, 512));
        s.add(Range::new(512, 512));
        s.write(&p).unwrap();
        let back = State::read(&p).unwrap().unwrap();
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
        std::fs::write(&p, b"{\"state\":\"x\"}").unwrap();
        assert!(State::read(&p).is_err());
        std::fs::write(&p, b"not json").unwrap();
        assert!(State::read(&p).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
