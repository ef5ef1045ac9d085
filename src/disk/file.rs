//! Opening the files vhdtool is given, safely: only regular files (a FIFO, a device such as
//! /dev/zero or a directory is refused by its type before it is opened, so nothing blocks in
//! open(2) or reads without end), and reads of small files bounded.

use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;

use crate::error::{Error, Result};

/// What a path is, in words, when it is not a regular file.
fn not_regular(meta: &std::fs::Metadata) -> Option<&'static str> {
    let t = meta.file_type();
    if t.is_file() {
        None
    } else if t.is_dir() {
        Some("a directory")
    } else if t.is_fifo() {
        Some("a FIFO")
    } else if t.is_char_device() || t.is_block_device() {
        Some("a device")
    } else if t.is_socket() {
        Some("a socket")
    } else {
        Some("not a regular file")
    }
}

/// Open `path` for reading (and writing with `write`), refusing anything but a regular file
/// (InvalidInput), checked both before opening (stat) and after (fstat). `O_NONBLOCK` keeps a
/// FIFO swapped in between from blocking the open; it does nothing to a regular file.
pub fn open_regular(path: &Path, write: bool) -> std::result::Result<File, OpenError> {
    let shown = path.display();
    let meta = std::fs::metadata(path).map_err(OpenError::Os)?;
    if let Some(what) = not_regular(&meta) {
        return Err(OpenError::Refused(Error::invalid(format!(
            "{shown} is {what}; vhdtool reads and writes regular files only"
        ))));
    }
    let file = OpenOptions::new()
        .read(true)
        .write(write)
        .custom_flags(i32::try_from(rustix::fs::OFlags::NONBLOCK.bits()).unwrap_or(0))
        .open(path)
        .map_err(OpenError::Os)?;
    let meta = file.metadata().map_err(OpenError::Os)?;
    if let Some(what) = not_regular(&meta) {
        return Err(OpenError::Refused(Error::invalid(format!(
            "{shown} is {what}; vhdtool reads and writes regular files only"
        ))));
    }
    Ok(file)
}

/// Why [`open_regular`] failed: the operating system's error (for the caller to word), or a
/// refusal of the file's type.
#[derive(Debug)]
pub enum OpenError {
    Os(std::io::Error),
    Refused(Error),
}

impl OpenError {
    /// As a library error, with "opening PATH" in front of an OS error.
    pub fn into_error(self, path: &Path) -> Error {
        match self {
            OpenError::Os(e) => Error::io(format!("opening {}", path.display()), e),
            OpenError::Refused(e) => e,
        }
    }
}

/// Read a whole regular file of at most `max_bytes` (a larger one is refused: InvalidInput).
pub fn read_bounded(path: &Path, max_bytes: u64) -> Result<Vec<u8>> {
    let file = open_regular(path, false).map_err(|e| e.into_error(path))?;
    let mut out = Vec::new();
    file.take(max_bytes.saturating_add(1))
        .read_to_end(&mut out)
        .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
    if crate::units::len_u64(out.len()) > max_bytes {
        return Err(Error::invalid(format!(
            "{}: larger than {max_bytes} bytes, more than it can hold",
            path.display()
        )));
    }
    Ok(out)
}

/// `file` (at `path`) still holds the `len` bytes it held when the command began. A file cut
/// short while it is read reads as a hole past its new end (SEEK_DATA finds no data there),
/// not as an error: a command that reads by data extents calls this after its last read.
/// `doing` names the work ("copying", "reading").
pub fn still_holds(file: &File, path: &Path, len: u64, doing: &str) -> Result<()> {
    let now = file
        .metadata()
        .map_err(|e| Error::io(format!("reading the size of {}", path.display()), e))?
        .len();
    if now < len {
        return Err(Error::io(
            format!("{doing} {}", path.display()),
            std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!(
                    "it ended early: it is {now} bytes, it held {len}: was it truncated while vhdtool ran?"
                ),
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_fifos_and_directories_are_refused_without_blocking() {
        for p in ["/dev/zero", "/dev/null", "/"] {
            let e = open_regular(Path::new(p), false)
                .unwrap_err()
                .into_error(Path::new(p));
            assert_eq!(e.kind(), crate::error::ErrorKind::InvalidInput, "{p}: {e}");
        }
        let dir = std::env::temp_dir().join(format!("vhdtool-fifo-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let fifo = dir.join("fifo");
        rustix::fs::mkfifoat(
            rustix::fs::CWD,
            &fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
        )
        .unwrap();
        let e = read_bounded(&fifo, 10).unwrap_err();
        assert!(e.message().contains("FIFO"), "{e}");
        let small = dir.join("small");
        std::fs::write(&small, b"0123456789").unwrap();
        assert_eq!(read_bounded(&small, 10).unwrap().len(), 10);
        assert!(read_bounded(&small, 9).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
