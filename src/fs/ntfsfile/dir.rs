//! Directory indexes (`$I30`): finding a name in a directory's B+ tree, listing its keys.

use super::attrs::stream;
use super::*;

impl NtfsVolume<'_> {
    /// Compare two names as NTFS's `COLLATION_FILE_NAME` does: code units through `$UpCase`,
    /// then length.
    pub(super) fn collate(&self, a: &[u16], b: &[u16]) -> Ordering {
        let up = |c: u16| self.upcase.get(usize::from(c)).copied().unwrap_or(c);
        a.iter().map(|&c| up(c)).cmp(b.iter().map(|&c| up(c)))
    }

    /// The `$I30` index of directory `n`: its root entries, and the allocation stream with the
    /// index block size (`None` when the index fits in the root).
    pub(super) fn dir_index(&self, n: u64, path: &str) -> Result<(Vec<Entry>, Option<Alloc>)> {
        let (flags, attrs) = self.record_attrs(n)?;
        let i30: Vec<u16> = "$I30".encode_utf16().collect();
        if flags & MFT_RECORD_IS_DIRECTORY == 0 {
            return Err(Error::invalid(format!("NTFS: {path} is not a directory")));
        }
        let root = match stream(&attrs, ATTR_INDEX_ROOT, &i30, path)? {
            Some(Stream::Resident(v)) => v,
            _ => {
                return Err(Error::corrupt(format!(
                    "NTFS: directory {path} has no resident $INDEX_ROOT"
                )))
            }
        };
        let block_bytes = u64::from(le32(&root, 0x08).unwrap_or(0));
        let entries = index::node_entries(&root, ROOT_HEADER_OFFSET)
            .map_err(|e| e.context(format!("NTFS: directory {path}")))?;
        let alloc = stream(&attrs, ATTR_INDEX_ALLOCATION, &i30, path)?;
        let alloc = match alloc {
            None => None,
            Some(s) => {
                if !block_bytes.is_power_of_two() || !(512..=65536).contains(&block_bytes) {
                    return Err(Error::corrupt(format!(
                        "NTFS: directory {path}: index block size {block_bytes}"
                    )));
                }
                Some((s, block_bytes))
            }
        };
        Ok((entries, alloc))
    }

    /// Read the index block at `vcn` of an allocation stream.
    pub(super) fn index_block(
        &self,
        alloc: &Stream,
        block_bytes: u64,
        vcn: u64,
        path: &str,
    ) -> Result<Vec<Entry>> {
        let Stream::NonResident {
            runs,
            data_size,
            initialized_size,
            flags,
        } = alloc
        else {
            return Err(Error::corrupt(format!(
                "NTFS: directory {path}: resident $INDEX_ALLOCATION"
            )));
        };
        if flags & (ATTR_COMPRESSION_MASK | ATTR_IS_ENCRYPTED) != 0 {
            return Err(Error::unsupported(format!(
                "NTFS: directory {path}: compressed or encrypted index"
            )));
        }
        // Index VCNs count clusters, or 512-byte units when a block is smaller than a cluster
        // (ntfs-3g `index_vcn_size`).
        let unit = if block_bytes >= self.cluster_bytes {
            self.cluster_bytes
        } else {
            512
        };
        let off = vcn
            .checked_mul(unit)
            .filter(|&o| o.checked_add(block_bytes).is_some_and(|e| e <= *data_size))
            .ok_or_else(|| {
                Error::corrupt(format!(
                    "NTFS: directory {path}: index VCN {vcn} beyond its allocation"
                ))
            })?;
        let mut buf = vec![0u8; to_usize(block_bytes)?];
        self.read_runs(runs, *initialized_size, off, &mut buf)?;
        index::fix_block(&mut buf, vcn)
            .map_err(|e| e.context(format!("NTFS: directory {path}")))?;
        index::node_entries(&buf, BLOCK_HEADER_OFFSET)
            .map_err(|e| e.context(format!("NTFS: directory {path}, index VCN {vcn}")))
    }

    /// B+ tree search of directory `dir` for `name` (case-insensitive).
    pub(super) fn find_in_dir(&self, dir: u64, name: &[u16], path: &str) -> Result<Option<Key>> {
        let (mut entries, alloc) = self.dir_index(dir, path)?;
        for _ in 0..MAX_INDEX_DEPTH {
            let mut next = None;
            for e in entries {
                match &e.key {
                    Some(k) => match self.collate(name, &k.name) {
                        Ordering::Equal => return Ok(Some(k.clone())),
                        Ordering::Less => {
                            next = e.child;
                            break;
                        }
                        Ordering::Greater => {}
                    },
                    None => {
                        next = e.child;
                        break;
                    }
                }
            }
            let Some(vcn) = next else {
                return Ok(None);
            };
            let Some((s, bb)) = &alloc else {
                return Err(Error::corrupt(format!("NTFS: directory {path}: index entry points to a block but there is no $INDEX_ALLOCATION")));
            };
            entries = self.index_block(s, *bb, vcn, path)?;
        }
        Err(Error::corrupt(format!(
            "NTFS: directory {path}: index more than {MAX_INDEX_DEPTH} levels deep"
        )))
    }

    /// Every key of directory `n`, in order (each child node before the entry that follows it).
    pub(super) fn index_keys(
        &self,
        n: u64,
        path: &str,
        max: usize,
        out: &mut Vec<Key>,
    ) -> Result<()> {
        let (root, alloc) = self.dir_index(n, path)?;
        let mut seen = BTreeSet::new();
        self.node_keys(root, alloc.as_ref(), 0, &mut seen, path, max, out)
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn node_keys(
        &self,
        entries: Vec<Entry>,
        alloc: Option<&Alloc>,
        depth: usize,
        seen: &mut BTreeSet<u64>,
        path: &str,
        max: usize,
        out: &mut Vec<Key>,
    ) -> Result<()> {
        for e in entries {
            if let Some(vcn) = e.child {
                let Some((s, bb)) = alloc else {
                    return Err(Error::corrupt(format!("NTFS: directory {path}: index entry points to a block but there is no $INDEX_ALLOCATION")));
                };
                if depth >= MAX_INDEX_DEPTH {
                    return Err(Error::corrupt(format!(
                        "NTFS: directory {path}: index more than {MAX_INDEX_DEPTH} levels deep"
                    )));
                }
                if !seen.insert(vcn) {
                    return Err(Error::corrupt(format!(
                        "NTFS: directory {path}: index block VCN {vcn} is reached twice"
                    )));
                }
                let child = self.index_block(s, *bb, vcn, path)?;
                self.node_keys(child, alloc, depth.saturating_add(1), seen, path, max, out)?;
            }
            if let Some(k) = e.key {
                if out.len() >= max {
                    return Err(Error::unsupported(format!(
                        "NTFS: directory {path} has more than {max} entries"
                    )));
                }
                out.push(k);
            }
        }
        Ok(())
    }
}
