//! Sparse-aware file copy for `convert -o`: only the data extents are copied (found with
//! `SEEK_DATA`/`SEEK_HOLE`), with `copy_file_range`, which shares blocks (reflink) on
//! filesystems that offer it and copies in the kernel elsewhere. Holes stay holes.

use std::fs::{File, OpenOptions};
use std::io;
use std::path::Path;

use rustix::fs::{copy_file_range, seek, SeekFrom};

use crate::error::{Error, Result};

/// Extents of data in `file` (offset, length), holes left out. A filesystem without
/// `SEEK_DATA` reports the whole file as data.
pub fn data_extents(file: &File, len: u64) -> Result<Vec<(u64, u64)>> {
    data_extents_in(file, 0, len)
}

/// The data extents of `file` that overlap `from .. len` (clipped to it).
pub fn data_extents_in(file: &File, from: u64, len: u64) -> Result<Vec<(u64, u64)>> {
    let mut out = Vec::new();
    let mut pos = from;
    while pos < len {
        let start = match seek(file, SeekFrom::Data(pos)) {
            Ok(s) => s,
            Err(rustix::io::Errno::NXIO) => break, // no data after pos
            // no SEEK_DATA on this filesystem: everything is data
            Err(rustix::io::Errno::INVAL) if pos == from => return Ok(vec![(from, len - from)]),
            Err(e) => {
                return Err(Error::io(
                    "looking for data (SEEK_DATA)",
                    io::Error::from(e),
                ))
            }
        };
        if start >= len {
            break;
        }
        let end = match seek(file, SeekFrom::Hole(start)) {
            Ok(e) => e.min(len),
            Err(e) => {
                return Err(Error::io(
                    "looking for a hole (SEEK_HOLE)",
                    io::Error::from(e),
                ))
            }
        };
        out.push((start, end - start));
        pos = end;
    }
    Ok(out)
}

/// Copy `src` to a new file `dst` (which must not exist), sparse. `progress` is called with the
/// bytes copied so far and the total data bytes.
pub fn sparse_copy(src: &Path, dst: &Path, mut progress: impl FnMut(u64, u64)) -> Result<u64> {
    let input = File::open(src).map_err(|e| Error::io(format!("opening {}", src.display()), e))?;
    let len = input
        .metadata()
        .map_err(|e| Error::io(format!("reading metadata of {}", src.display()), e))?
        .len();
    let output = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(dst)
        .map_err(|e| {
            if e.kind() == io::ErrorKind::AlreadyExists {
                Error::conflict(format!(
                    "{} exists; vhdtool does not overwrite files (remove it or choose another -o)",
                    dst.display()
                ))
            } else {
                Error::io(format!("creating {}", dst.display()), e)
            }
        })?;
    let result = (|| {
        output
            .set_len(len)
            .map_err(|e| Error::io(format!("sizing {}", dst.display()), e))?;
        let extents = data_extents(&input, len)?;
        let total: u64 = extents.iter().map(|e| e.1).sum();
        let mut done = 0u64;
        for (start, length) in extents {
            let mut off_in = start;
            let mut off_out = start;
            let end = start + length;
            while off_in < end {
                let chunk = (end - off_in).min(1 << 30) as usize;
                let n = copy_file_range(
                    &input,
                    Some(&mut off_in),
                    &output,
                    Some(&mut off_out),
                    chunk,
                )
                .map_err(|e| {
                    Error::io(
                        format!("copying {} to {}", src.display(), dst.display()),
                        io::Error::from(e),
                    )
                })?;
                if n == 0 {
                    return Err(Error::io(
                        format!("copying {}", src.display()),
                        io::Error::new(io::ErrorKind::UnexpectedEof, "source ended early"),
                    ));
                }
                done += n as u64;
                progress(done, total);
            }
        }
        // no fsync here: the caller writes the conversion into the copy and syncs once at the end
        Ok(total)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(dst);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::FileExt;

    #[test]
    fn copies_data_and_keeps_holes() {
        let dir = std::env::temp_dir().join(format!("vhdtool-copy-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let src = dir.join("src");
        let dst = dir.join("dst");
        let _ = std::fs::remove_file(&dst);
        let f = File::create(&src).unwrap();
        f.set_len(64 << 20).unwrap();
        f.write_all_at(b"hello", 0).unwrap();
        f.write_all_at(b"world", 40 << 20).unwrap();
        drop(f);
        let copied = sparse_copy(&src, &dst, |_, _| {}).unwrap();
        assert!(copied < 64 << 20, "holes were not copied ({copied} bytes)");
        assert_eq!(std::fs::read(&src).unwrap(), std::fs::read(&dst).unwrap());
        assert!(
            sparse_copy(&src, &dst, |_, _| {}).is_err(),
            "never overwrites"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
