//! MFT records, their attributes (with `$ATTRIBUTE_LIST` extensions) and the streams they
//! hold: reading a stream's bytes, refusing compressed, encrypted and reparse-point files.

use super::*;

impl NtfsVolume<'_> {
    /// Read and parse MFT record `n`.
    pub(super) fn record(&self, n: u64) -> Result<Record> {
        let off = n
            .checked_mul(self.record_bytes)
            .filter(|&o| {
                o.checked_add(self.record_bytes)
                    .is_some_and(|e| e <= self.mft_bytes)
            })
            .ok_or_else(|| {
                Error::corrupt(format!(
                    "NTFS: MFT record {n} is beyond $MFT (0x{:x} bytes)",
                    self.mft_bytes
                ))
            })?;
        let mut buf = vec![0u8; to_usize(self.record_bytes)?];
        self.read_runs(&self.mft_runs, self.mft_bytes, off, &mut buf)?;
        parse_record(buf, n, self.clusters)
    }

    /// Record flags and every attribute of file `n` (its extension records included).
    pub(super) fn record_attrs(&self, n: u64) -> Result<(u16, Vec<Attr>)> {
        let rec = self.record(n)?;
        if rec.base != 0 {
            return Err(Error::corrupt(format!(
                "NTFS: MFT record {n} is an extension record, not a file"
            )));
        }
        let flags = rec.flags;
        let attrs = if rec.attrs.iter().any(|a| a.kind == ATTR_ATTRIBUTE_LIST) {
            self.with_extensions(n, rec)?
        } else {
            rec.attrs
        };
        Ok((flags, attrs))
    }

    pub(super) fn attrs_of(&self, n: u64) -> Result<Vec<Attr>> {
        Ok(self.record_attrs(n)?.1)
    }

    /// The base record's attributes plus those of the extension records its `$ATTRIBUTE_LIST`
    /// names (each record read once).
    pub(super) fn with_extensions(&self, n: u64, base: Record) -> Result<Vec<Attr>> {
        let list = stream(&base.attrs, ATTR_ATTRIBUTE_LIST, &[], "$ATTRIBUTE_LIST")?
            .ok_or_else(|| Error::corrupt("NTFS: no $ATTRIBUTE_LIST"))?;
        let list = self
            .read_stream(&list, "$ATTRIBUTE_LIST", MAX_ATTRIBUTE_LIST_BYTES)
            .map_err(|e| e.context(format!("NTFS MFT record {n}")))?;
        let records: BTreeSet<u64> = parse_attr_list(&list)
            .map_err(|e| e.context(format!("NTFS MFT record {n}")))?
            .into_iter()
            .map(|e| e.record)
            .filter(|&r| r != n)
            .collect();
        if records.len() > MAX_EXTENSION_RECORDS {
            return Err(Error::unsupported(format!(
                "NTFS MFT record {n}: {} extension records (at most {MAX_EXTENSION_RECORDS})",
                records.len()
            )));
        }
        let mut attrs = base.attrs;
        for r in records {
            let ext = self.record(r)?;
            if ext.base != n {
                return Err(Error::corrupt(format!(
                    "NTFS MFT record {n}: extension record {r} belongs to record {}",
                    ext.base
                )));
            }
            attrs.extend(
                ext.attrs
                    .into_iter()
                    .filter(|a| a.kind != ATTR_ATTRIBUTE_LIST),
            );
        }
        Ok(attrs)
    }

    // --- data --------------------------------------------------------------------------------

    /// A whole stream, refused over `max_bytes` or over the volume's size.
    pub(super) fn read_stream(&self, s: &Stream, what: &str, max_bytes: u64) -> Result<Vec<u8>> {
        match s {
            Stream::Resident(v) => {
                if u64::try_from(v.len()).unwrap_or(u64::MAX) > max_bytes {
                    return Err(too_big(
                        what,
                        u64::try_from(v.len()).unwrap_or(u64::MAX),
                        max_bytes,
                    ));
                }
                Ok(v.clone())
            }
            Stream::NonResident {
                runs,
                data_size,
                initialized_size,
                ..
            } => {
                if *data_size > max_bytes {
                    return Err(too_big(what, *data_size, max_bytes));
                }
                if *data_size > self.volume_bytes() {
                    return Err(Error::unsupported(format!(
                        "NTFS: {what} is {data_size} bytes, more than the volume holds (a sparse file)"
                    )));
                }
                let mut buf = vec![0u8; to_usize(*data_size)?];
                self.read_runs(runs, *initialized_size, 0, &mut buf)
                    .map_err(|e| e.context(format!("NTFS: {what}")))?;
                Ok(buf)
            }
        }
    }

    /// Fill `buf` with the stream bytes from `offset`: sparse runs and bytes at or past
    /// `initialized` read as zeros; a range the runs do not cover is Corrupt.
    pub(super) fn read_runs(
        &self,
        runs: &[Run],
        initialized: u64,
        offset: u64,
        buf: &mut [u8],
    ) -> Result<()> {
        let len = u64::try_from(buf.len()).unwrap_or(u64::MAX);
        let end = offset
            .checked_add(len)
            .ok_or_else(|| Error::corrupt("stream range overflow"))?;
        buf.fill(0);
        let want_end = end.min(initialized);
        let mut covered = offset;
        for r in runs {
            if covered >= want_end {
                break;
            }
            let (Some(start), Some(run_bytes)) = (
                r.vcn.checked_mul(self.cluster_bytes),
                r.clusters.checked_mul(self.cluster_bytes),
            ) else {
                return Err(Error::corrupt("run offset overflow"));
            };
            let run_end = start
                .checked_add(run_bytes)
                .ok_or_else(|| Error::corrupt("run offset overflow"))?;
            if run_end <= covered {
                continue;
            }
            if start > covered {
                break; // a hole in the runlist
            }
            let piece_end = run_end.min(want_end);
            // covered >= offset, start <= covered < piece_end: all differences are in range.
            let (Some(dst_from), Some(dst_to), Some(in_run)) = (
                covered
                    .checked_sub(offset)
                    .and_then(|v| usize::try_from(v).ok()),
                piece_end
                    .checked_sub(offset)
                    .and_then(|v| usize::try_from(v).ok()),
                covered.checked_sub(start),
            ) else {
                return Err(Error::corrupt("run offset overflow"));
            };
            let dst = buf
                .get_mut(dst_from..dst_to)
                .ok_or_else(|| Error::corrupt("run offset overflow"))?;
            if let Some(lcn) = r.lcn {
                let at = lcn
                    .checked_mul(self.cluster_bytes)
                    .and_then(|b| b.checked_add(in_run))
                    .ok_or_else(|| Error::corrupt("LCN overflow"))?;
                self.part.read_at(at, dst)?;
            }
            covered = piece_end;
        }
        if covered < want_end {
            return Err(Error::corrupt(format!(
                "runlist ends at byte 0x{covered:x}, the data goes to 0x{want_end:x}"
            )));
        }
        Ok(())
    }
}

/// `$STANDARD_INFORMATION`'s file attributes (0 when absent).
pub(super) fn si_attributes(attrs: &[Attr]) -> u32 {
    attrs
        .iter()
        .find_map(|a| match (&a.value, a.kind) {
            (Value::Resident(v), ATTR_STANDARD_INFORMATION) => le32(v, SI_FILE_ATTRIBUTES),
            _ => None,
        })
        .unwrap_or(0)
}

/// Refuse encrypted files and files with a reparse point, naming the file.
pub(super) fn refuse_special(attrs: &[Attr], path: &str) -> Result<()> {
    if let Some(a) = attrs.iter().find(|a| a.kind == ATTR_REPARSE_POINT) {
        let tag = match &a.value {
            Value::Resident(v) => le32(v, 0),
            Value::NonResident { .. } => None,
        };
        return Err(match tag {
            Some(REPARSE_TAG_WOF) => Error::unsupported(format!(
                "NTFS: {path} is WOF-compressed (CompactOS, reparse tag 0x80000017): run `compact /u` on it in Windows first"
            )),
            Some(t) => Error::unsupported(format!("NTFS: {path} is a reparse point (tag 0x{t:08x}), not a plain file")),
            None => Error::unsupported(format!("NTFS: {path} is a reparse point, not a plain file")),
        });
    }
    let si = si_attributes(attrs);
    if si & FILE_ATTR_ENCRYPTED != 0 {
        return Err(Error::unsupported(format!("NTFS: {path} is EFS-encrypted")));
    }
    if si & FILE_ATTR_REPARSE_POINT != 0 {
        return Err(Error::unsupported(format!(
            "NTFS: {path} is marked as a reparse point"
        )));
    }
    Ok(())
}

/// The stream `(kind, name)` of a file's attributes: one resident value, or the extents of a
/// non-resident one joined in VCN order (they must follow each other without a gap).
pub(super) fn stream(
    attrs: &[Attr],
    kind: u32,
    name: &[u16],
    what: &str,
) -> Result<Option<Stream>> {
    let mut parts: Vec<&Attr> = attrs
        .iter()
        .filter(|a| a.kind == kind && a.name == name)
        .collect();
    let Some(first) = parts.first() else {
        return Ok(None);
    };
    if let Value::Resident(v) = &first.value {
        if parts.len() != 1 {
            return Err(Error::corrupt(format!(
                "NTFS: {what}: a resident attribute with several extents"
            )));
        }
        return Ok(Some(Stream::Resident(v.clone())));
    }
    let vcn_of = |a: &Attr| match &a.value {
        Value::NonResident { lowest_vcn, .. } => Some(*lowest_vcn),
        Value::Resident(_) => None,
    };
    if parts.iter().any(|a| vcn_of(a).is_none()) {
        return Err(Error::corrupt(format!(
            "NTFS: {what}: resident and non-resident extents mixed"
        )));
    }
    parts.sort_by_key(|a| vcn_of(a));
    let mut runs = Vec::new();
    let mut next_vcn = 0u64;
    let mut head = None;
    for a in &parts {
        let Value::NonResident {
            lowest_vcn,
            highest_vcn,
            runs: r,
            data_size,
            initialized_size,
        } = &a.value
        else {
            continue;
        };
        if *lowest_vcn != next_vcn {
            return Err(Error::corrupt(format!(
                "NTFS: {what}: attribute extent starts at VCN {lowest_vcn}, expected {next_vcn}"
            )));
        }
        if head.is_none() {
            head = Some((*data_size, *initialized_size, a.flags));
        }
        runs.extend_from_slice(r);
        next_vcn = runs
            .last()
            .map_or(Some(next_vcn), |l| l.vcn.checked_add(l.clusters))
            .ok_or_else(|| Error::corrupt("VCN overflow"))?;
        // An extent maps exactly lowest..=highest (an empty one: highest = lowest - 1).
        if next_vcn != highest_vcn.saturating_add(1)
            && !(r.is_empty() && *highest_vcn < *lowest_vcn)
        {
            return Err(Error::corrupt(format!(
                "NTFS: {what}: extent maps VCNs to {next_vcn}, its header says {highest_vcn}"
            )));
        }
    }
    let Some((data_size, initialized_size, flags)) = head else {
        return Ok(None);
    };
    if initialized_size > data_size {
        return Err(Error::corrupt(format!(
            "NTFS: {what}: initialized size {initialized_size} exceeds data size {data_size}"
        )));
    }
    Ok(Some(Stream::NonResident {
        runs,
        data_size,
        initialized_size,
        flags,
    }))
}
