//! Free space on the filesystem that will receive a conversion's writes, checked before the
//! first write (issue 15, item 7): a conversion that cannot finish for want of space is refused
//! while the image is untouched, rather than stopped half-way by ENOSPC.

use std::path::Path;

use crate::error::{Error, Result};

/// Bytes an unprivileged writer may still allocate on the filesystem holding `path` (a file or
/// a directory): `statvfs`'s available blocks times the fragment size.
pub fn free_bytes(path: &Path) -> Result<u64> {
    let st = rustix::fs::statvfs(path).map_err(|e| {
        Error::io(
            format!(
                "reading the free space of the filesystem of {}",
                path.display()
            ),
            std::io::Error::from(e),
        )
    })?;
    // f_frsize is the unit of f_bavail; some filesystems report 0 there and mean f_bsize
    let unit = if st.f_frsize == 0 {
        st.f_bsize
    } else {
        st.f_frsize
    };
    Ok(st.f_bavail.saturating_mul(unit))
}

/// Refuse (an `Io` error with ENOSPC, exit code 3) when the filesystem holding `path` has less
/// than `needed_bytes` available. `what` says what the space is for ("the journal and the ESP").
pub fn ensure_free_space(path: &Path, needed_bytes: u64, what: &str) -> Result<()> {
    let free = free_bytes(path)?;
    if free < needed_bytes {
        return Err(Error::io(
            format!(
                "{} has {free} bytes free, {what} needs {needed_bytes}: nothing was written; free some space or write elsewhere (-o)",
                path.display()
            ),
            std::io::Error::from_raw_os_error(rustix::io::Errno::NOSPC.raw_os_error()),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_space_is_read_and_checked() {
        let dir = std::env::temp_dir();
        let free = free_bytes(&dir).unwrap();
        assert!(free > 0);
        ensure_free_space(&dir, 0, "nothing").unwrap();
        let e = ensure_free_space(&dir, u64::MAX, "the test").unwrap_err();
        assert_eq!(e.kind(), crate::error::ErrorKind::Io);
        assert_eq!(e.raw_os_error(), Some(28), "ENOSPC: {e}");
        assert!(e.message().contains("nothing was written"), "{e}");
        assert!(free_bytes(Path::new("/no/such/dir")).is_err());
    }
}
