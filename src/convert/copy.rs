//! The sparse copy behind `convert -o`: only the data extents are copied (found with
//! `SEEK_DATA`/`SEEK_HOLE`), with `copy_file_range`, which shares blocks (reflink) on
//! filesystems that offer it and copies in the kernel elsewhere; across filesystems (EXDEV) and
//! where the kernel refuses it, with `pread`/`pwrite`. Holes stay holes.
//!
//! The copy is written under a temporary name in the output's directory
//! (`.OUTPUT.vhdtool-partial`), converted there, fsynced, and only then renamed to OUTPUT: a
//! killed `convert -o` never leaves a partial file under the final name.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

use rustix::fs::copy_file_range;

use crate::disk::{data_extents, still_holds};
pub use crate::disk::{partial_path, PartialOutput};
use crate::error::{Error, Result};

/// Largest piece handed to one `copy_file_range` call, and the buffer of the fallback copy.
const COPY_STEP: usize = 1 << 30;
const FALLBACK_BUFFER: usize = 1 << 20;

/// Copy the first `len` bytes of `input` into `output` (already `len` bytes long or shorter;
/// it is sized to `len`), sparse. `progress` gets the bytes copied so far and the data bytes in
/// all. Returns the data bytes copied.
pub fn sparse_copy(
    input: &File,
    input_name: &Path,
    output: &File,
    len: u64,
    mut progress: impl FnMut(u64, u64),
) -> Result<u64> {
    output
        .set_len(len)
        .map_err(|e| Error::io("sizing the copy", e))?;
    still_holds(input, input_name, len, "copying")?;
    let extents = data_extents(input, len)?;
    let total: u64 = extents.iter().map(|e| e.1).sum();
    let mut done = 0u64;
    let mut kernel_copy = true;
    for (start, length) in extents {
        let end = start.saturating_add(length);
        let mut pos = start;
        while pos < end {
            let want = usize::try_from(end.saturating_sub(pos))
                .unwrap_or(COPY_STEP)
                .min(COPY_STEP);
            let n = if kernel_copy {
                match kernel_copy_at(input, output, pos, want) {
                    Ok(n) => n,
                    // another filesystem, or one whose kernel refuses: copy through user space
                    Err(e) if falls_back(e) => {
                        kernel_copy = false;
                        continue;
                    }
                    Err(e) => {
                        return Err(Error::io(
                            format!("copying {}", input_name.display()),
                            io::Error::from(e),
                        ))
                    }
                }
            } else {
                user_copy_at(input, output, pos, want)
                    .map_err(|e| Error::io(format!("copying {}", input_name.display()), e))?
            };
            if n == 0 {
                return Err(Error::io(
                    format!("copying {}", input_name.display()),
                    io::Error::new(io::ErrorKind::UnexpectedEof, "source ended early"),
                ));
            }
            pos = pos.saturating_add(crate::units::len_u64(n));
            done = done.saturating_add(crate::units::len_u64(n));
            progress(done, total);
        }
    }
    // a source cut short meanwhile reads as holes past its new end, never as an error: the
    // copy would hold zeros where the data was
    still_holds(input, input_name, len, "copying")?;
    Ok(total)
}

/// Errors after which `copy_file_range` is not tried again: EXDEV (another filesystem on older
/// kernels and some filesystems), EINVAL/ENOSYS/EOPNOTSUPP (not offered here).
fn falls_back(e: rustix::io::Errno) -> bool {
    use rustix::io::Errno;
    matches!(
        e,
        Errno::XDEV | Errno::INVAL | Errno::NOSYS | Errno::OPNOTSUPP
    )
}

fn kernel_copy_at(
    input: &File,
    output: &File,
    at: u64,
    len: usize,
) -> std::result::Result<usize, rustix::io::Errno> {
    let mut off_in = at;
    let mut off_out = at;
    copy_file_range(input, Some(&mut off_in), output, Some(&mut off_out), len)
}

/// One buffer's worth through `pread`/`pwrite`; all-zero buffers are skipped (the output is
/// already sized, so they stay holes).
fn user_copy_at(input: &File, output: &File, at: u64, len: usize) -> io::Result<usize> {
    let mut buf = vec![0u8; len.min(FALLBACK_BUFFER)];
    let n = input.read_at(&mut buf, at)?;
    let got = buf.get(..n).unwrap_or_default();
    if got.iter().any(|&b| b != 0) {
        output.write_all_at(got, at)?;
    }
    Ok(n)
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects, clippy::as_conversions)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("vhdtool-copy-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn source(dir: &Path) -> PathBuf {
        let src = dir.join("src");
        let f = File::create(&src).unwrap();
        f.set_len(64 << 20).unwrap();
        f.write_all_at(b"hello", 0).unwrap();
        f.write_all_at(b"world", 40 << 20).unwrap();
        src
    }

    #[test]
    fn copies_data_keeps_holes_and_renames_at_the_end() {
        let dir = scratch("kernel");
        let src = source(&dir);
        let dst = dir.join("dst");
        let out = PartialOutput::create(&dst).unwrap();
        assert!(!dst.exists(), "nothing under the final name before finish");
        let input = File::open(&src).unwrap();
        let copied = sparse_copy(&input, &src, &out.file, 64 << 20, |_, _| {}).unwrap();
        assert!(copied < 64 << 20, "holes were not copied ({copied} bytes)");
        out.finish().unwrap();
        assert_eq!(std::fs::read(&src).unwrap(), std::fs::read(&dst).unwrap());
        assert!(!partial_path(&dst).exists());
        assert!(PartialOutput::create(&dst).is_err(), "never overwrites");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn user_space_copy_gives_the_same_bytes() {
        let dir = scratch("user");
        let src = source(&dir);
        let dst = dir.join("dst");
        let input = File::open(&src).unwrap();
        let out = File::create(&dst).unwrap();
        out.set_len(64 << 20).unwrap();
        let mut at = 0u64;
        while at < 64 << 20 {
            at += user_copy_at(&input, &out, at, 1 << 20).unwrap() as u64;
        }
        assert_eq!(std::fs::read(&src).unwrap(), std::fs::read(&dst).unwrap());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
