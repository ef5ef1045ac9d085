//! Files by path: lookup, reading a file, listing and walking directories.

use super::attrs::{refuse_special, stream};
use super::*;

impl NtfsVolume<'_> {
    /// True when `path` names a file or directory.
    pub fn exists(&self, path: &str) -> Result<bool> {
        Ok(self.lookup(path)?.is_some())
    }

    /// The MFT record of `path` (`\`- or `/`-separated, case-insensitive), `None` when a
    /// component does not exist.
    pub fn lookup(&self, path: &str) -> Result<Option<u64>> {
        let comps = components(path)?;
        self.lookup_record(&comps, path)
    }

    pub(super) fn lookup_record(&self, comps: &[&str], path: &str) -> Result<Option<u64>> {
        let mut cur = FILE_ROOT;
        for c in comps {
            let want: Vec<u16> = c.encode_utf16().collect();
            match self.find_in_dir(cur, &want, path)? {
                Some(k) => {
                    // A stale entry names a record since reused for another file (ntfs-3g
                    // `ntfs_file_record_read` refuses it too).
                    let rec = self.record(k.record)?;
                    if k.sequence != 0 && k.sequence != rec.sequence {
                        return Err(Error::corrupt(format!(
                            "NTFS: {path}: the index names MFT record {} sequence {}, the record has sequence {}",
                            k.record, k.sequence, rec.sequence
                        )));
                    }
                    cur = k.record;
                }
                None => return Ok(None),
            }
        }
        Ok(Some(cur))
    }

    /// Read the unnamed `$DATA` of the file at `path`, refusing files over `max_bytes`, and
    /// compressed, encrypted or reparse-point files (Unsupported, naming the file). A missing
    /// file or a directory is InvalidInput.
    pub fn read_file(&self, path: &str, max_bytes: u64) -> Result<Vec<u8>> {
        let n = self
            .lookup(path)?
            .ok_or_else(|| Error::invalid(format!("NTFS: no file {path}")))?;
        self.read_record_file(n, path, max_bytes)
    }

    /// [`read_file`](Self::read_file) by MFT record number (from a listing or walk); `path` is
    /// only used in messages.
    pub fn read_record_file(&self, n: u64, path: &str, max_bytes: u64) -> Result<Vec<u8>> {
        let s = self.plain_data(n, path)?;
        if let Stream::NonResident { flags, .. } = &s {
            if flags & ATTR_COMPRESSION_MASK != 0 {
                return Err(Error::unsupported(format!(
                    "NTFS: {path} is compressed (LZNT1): decompress it in Windows (compact /u) first"
                )));
            }
            if flags & ATTR_IS_ENCRYPTED != 0 {
                return Err(Error::unsupported(format!("NTFS: {path} is EFS-encrypted")));
            }
        }
        self.read_stream(&s, path, max_bytes)
    }

    /// The unnamed `$DATA` stream of record `n`, refusing a directory, a reparse point and an
    /// encrypted file.
    pub(super) fn plain_data(&self, n: u64, path: &str) -> Result<Stream> {
        let (flags, attrs) = self.record_attrs(n)?;
        if flags & MFT_RECORD_IS_DIRECTORY != 0 {
            return Err(Error::invalid(format!("NTFS: {path} is a directory")));
        }
        refuse_special(&attrs, path)?;
        stream(&attrs, ATTR_DATA, &[], path)?
            .ok_or_else(|| Error::corrupt(format!("NTFS: {path} has no $DATA attribute")))
    }

    /// The names in the directory at `path`, in index (upper-case) order.
    pub fn list_dir(&self, path: &str, limits: &Limits) -> Result<Vec<DirEntry>> {
        let n = self
            .lookup(path)?
            .ok_or_else(|| Error::invalid(format!("NTFS: no directory {path}")))?;
        self.list_record(n, path, limits)
    }

    pub(super) fn list_record(&self, n: u64, path: &str, limits: &Limits) -> Result<Vec<DirEntry>> {
        let mut keys = Vec::new();
        self.index_keys(n, path, limits.max_dir_entries, &mut keys)?;
        Ok(keys
            .into_iter()
            .filter(|k| {
                k.namespace != NAMESPACE_DOS && !(k.record == n && k.name == [u16::from(b'.')])
            })
            .map(|k| DirEntry {
                name: String::from_utf16_lossy(&k.name),
                record: k.record,
                is_dir: k.file_attributes & FILE_ATTR_DIRECTORY != 0,
                is_reparse: k.file_attributes & FILE_ATTR_REPARSE_POINT != 0,
            })
            .collect())
    }

    /// Every file and directory below the directory `path`, depth first, parents before
    /// children. Exceeding a limit, or meeting a directory with a reparse point (junction,
    /// symbolic link), is an error naming the path: a partial copy of boot files is worse
    /// than none.
    pub fn walk(&self, path: &str, limits: &Limits) -> Result<Vec<WalkEntry>> {
        let n = self
            .lookup(path)?
            .ok_or_else(|| Error::invalid(format!("NTFS: no directory {path}")))?;
        let mut out = Vec::new();
        let mut on_path = vec![n];
        self.walk_dir(n, path, "", 0, limits, &mut on_path, &mut out)?;
        Ok(out)
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn walk_dir(
        &self,
        n: u64,
        abs: &str,
        rel: &str,
        depth: usize,
        limits: &Limits,
        on_path: &mut Vec<u64>,
        out: &mut Vec<WalkEntry>,
    ) -> Result<()> {
        for e in self.list_record(n, abs, limits)? {
            if out.len() >= limits.max_walk_entries {
                return Err(Error::unsupported(format!(
                    "NTFS: more than {} entries below {abs}",
                    limits.max_walk_entries
                )));
            }
            let rel_path = if rel.is_empty() {
                e.name.clone()
            } else {
                format!("{rel}\\{}", e.name)
            };
            let abs_path = format!("{}\\{}", abs.trim_end_matches(['\\', '/']), e.name);
            out.push(WalkEntry {
                path: rel_path.clone(),
                record: e.record,
                is_dir: e.is_dir,
            });
            if !e.is_dir {
                continue;
            }
            if e.is_reparse {
                return Err(Error::unsupported(format!(
                    "NTFS: {abs_path} is a directory with a reparse point (junction or link)"
                )));
            }
            if on_path.contains(&e.record) {
                return Err(Error::corrupt(format!(
                    "NTFS: {abs_path} is its own ancestor"
                )));
            }
            if depth >= limits.max_depth.min(MAX_WALK_DEPTH) {
                return Err(Error::unsupported(format!(
                    "NTFS: {abs_path} is more than {} levels deep",
                    limits.max_depth
                )));
            }
            on_path.push(e.record);
            self.walk_dir(
                e.record,
                &abs_path,
                &rel_path,
                depth.saturating_add(1),
                limits,
                on_path,
                out,
            )?;
            on_path.pop();
        }
        Ok(())
    }
}
