//! How vhdtool creates an output file, one rule for every writer (`convert -o`, the fixed-VHD
//! writer of other formats): the file is written under a temporary name in the output's
//! directory (`.OUTPUT.vhdtool-partial`), locked exclusively while it is written, fsynced, and
//! only then renamed to OUTPUT, and the directory fsynced. A killed run never leaves a partial
//! file under the final name; an existing OUTPUT is never overwritten; a partial file left by a
//! killed run (nobody holds its lock) is replaced, one being written by another vhdtool is a
//! conflict.

use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// The temporary name of an output being written: `.NAME.vhdtool-partial` beside it.
pub fn partial_path(output: &Path) -> PathBuf {
    let mut name = std::ffi::OsString::from(".");
    name.push(output.file_name().unwrap_or_default());
    name.push(".vhdtool-partial");
    output.with_file_name(name)
}

/// fsync the directory holding `path`, so a rename or removal in it is durable.
pub fn sync_dir(path: &Path) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    File::open(&dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(format!("syncing directory {}", dir.display()), e))
}

/// A new output file under its temporary name, locked exclusively while it is written.
/// Dropped without [`PartialOutput::finish`], the partial file is removed.
pub struct PartialOutput {
    pub file: File,
    pub partial: PathBuf,
    pub output: PathBuf,
    done: bool,
}

impl PartialOutput {
    /// Create `.OUTPUT.vhdtool-partial` for `output`, which must not exist (see the module
    /// documentation for a partial file left by an earlier run).
    pub fn create(output: &Path) -> Result<Self> {
        if output.symlink_metadata().is_ok() {
            return Err(Error::conflict(format!(
                "{} exists; vhdtool does not overwrite files (remove it or choose another -o)",
                output.display()
            )));
        }
        let partial = partial_path(output);
        if let Ok(stale) = OpenOptions::new().write(true).open(&partial) {
            match stale.try_lock() {
                Ok(()) => {
                    drop(stale);
                    std::fs::remove_file(&partial).map_err(|e| {
                        Error::io(
                            format!("removing the stale partial copy {}", partial.display()),
                            e,
                        )
                    })?;
                }
                Err(TryLockError::WouldBlock) => {
                    return Err(Error::conflict(format!(
                        "{} is being written by another vhdtool (its partial copy {} is locked)",
                        output.display(),
                        partial.display()
                    )))
                }
                Err(TryLockError::Error(e)) => {
                    return Err(Error::io(format!("locking {}", partial.display()), e))
                }
            }
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&partial)
            .map_err(|e| Error::io(format!("creating {}", partial.display()), e))?;
        let out = PartialOutput {
            file,
            partial,
            output: output.to_path_buf(),
            done: false,
        };
        out.file
            .try_lock()
            .map_err(|e| Error::io(format!("locking {}", out.partial.display()), e.into()))?;
        Ok(out)
    }

    /// fsync the file, rename it to its final name (refusing to replace a file that appeared
    /// meanwhile), fsync the directory.
    pub fn finish(mut self) -> Result<()> {
        self.file
            .sync_all()
            .map_err(|e| Error::io(format!("syncing {}", self.partial.display()), e))?;
        if self.output.symlink_metadata().is_ok() {
            // keep the finished work: the message names where it is
            self.done = true;
            return Err(Error::conflict(format!(
                "{} appeared while the copy was written; the finished copy stays at {}",
                self.output.display(),
                self.partial.display()
            )));
        }
        std::fs::rename(&self.partial, &self.output).map_err(|e| {
            Error::io(
                format!(
                    "renaming {} to {}",
                    self.partial.display(),
                    self.output.display()
                ),
                e,
            )
        })?;
        self.done = true;
        sync_dir(&self.output)
    }

    /// Remove the partial file (after a failure).
    pub fn discard(self) {
        drop(self);
    }
}

impl Drop for PartialOutput {
    fn drop(&mut self) {
        if !self.done {
            let _ = std::fs::remove_file(&self.partial);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("vhdtool-output-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn renamed_only_at_the_end_and_never_overwrites() {
        let dir = scratch("rename");
        let dst = dir.join("dst");
        let out = PartialOutput::create(&dst).unwrap();
        std::io::Write::write_all(&mut &out.file, b"data").unwrap();
        assert!(!dst.exists(), "nothing under the final name before finish");
        out.finish().unwrap();
        assert_eq!(std::fs::read(&dst).unwrap(), b"data");
        assert!(!partial_path(&dst).exists());
        assert!(PartialOutput::create(&dst).is_err(), "never overwrites");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_stale_partial_is_replaced_a_locked_one_is_a_conflict_a_dropped_one_removed() {
        let dir = scratch("stale");
        let dst = dir.join("dst");
        std::fs::write(partial_path(&dst), b"left by a killed run").unwrap();
        let out = PartialOutput::create(&dst).unwrap();
        assert_eq!(out.file.metadata().unwrap().len(), 0);
        let again = PartialOutput::create(&dst);
        assert_eq!(
            again.err().map(|e| e.kind()),
            Some(crate::error::ErrorKind::Conflict)
        );
        drop(out);
        assert!(!partial_path(&dst).exists());
        assert!(!dst.exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
