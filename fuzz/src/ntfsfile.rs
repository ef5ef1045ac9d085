//! Fuzz harness for the NTFS file reader (`vhdtool::fs::ntfsfile`), public API only.
//!
//! The input is an NTFS volume (a partition's bytes). It is opened, its facts read, the root
//! listed, each top-level directory walked, and up to 200 files read with a size limit. Properties: no panic; every
//! listing and walk stays within its limits; a file read returns at most the limit; reading
//! the same file twice gives the same answer; an error on a file is a refusal or damage, never
//! a partial result.
//!
//! Used by the fuzz target `ntfsfile` (wired by the fuzz workspace) and by tests/ntfsfile.rs.

use vhdtool::disk::{Disk, MemDisk};
use vhdtool::fs::ntfsfile::{Limits, NtfsVolume, FIRST_USER_RECORD};

/// Limits small enough that one input runs in milliseconds.
const LIMITS: Limits = Limits {
    max_dir_entries: 5_000,
    max_depth: 8,
    max_walk_entries: 2_000,
};
/// Largest file read.
const MAX_FILE_BYTES: u64 = 4 << 20;
/// Files read per input.
const MAX_FILES: usize = 200;

/// Entry point for libFuzzer: `data` is the volume.
pub fn run(data: &[u8]) {
    run_disk(&MemDisk::new(data.to_vec()));
}

/// The same on any disk (the tests mutate a disk in place rather than copy it).
pub fn run_disk(disk: &dyn Disk) {
    let Ok(vol) = NtfsVolume::open(disk) else {
        return;
    };
    let _ = vol.facts();
    let Ok(root) = vol.list_dir("\\", &LIMITS) else {
        return;
    };
    assert!(root.len() <= LIMITS.max_dir_entries);
    // each top-level directory walked on its own, so that one large tree does not hide the rest
    let mut files = Vec::new();
    for e in root.iter().filter(|e| e.record >= FIRST_USER_RECORD) {
        if !e.is_dir {
            files.push((e.name.clone(), e.record));
        } else if let Ok(below) = vol.walk(&format!("\\{}", e.name), &LIMITS) {
            assert!(below.len() <= LIMITS.max_walk_entries);
            files.extend(
                below
                    .into_iter()
                    .filter(|b| !b.is_dir)
                    .map(|b| (format!("{}\\{}", e.name, b.path), b.record)),
            );
        }
    }
    for (rel, record) in files.into_iter().take(MAX_FILES) {
        let path = format!("\\{rel}");
        let first = vol.read_file(&path, MAX_FILE_BYTES);
        if let Ok(bytes) = &first {
            assert!(
                bytes.len() as u64 <= MAX_FILE_BYTES,
                "{path}: over the limit"
            );
        }
        // Only when the name leads back to the walk's record (a damaged index may not).
        if vol.lookup(&path).ok().flatten() == Some(record) {
            let again = vol.read_record_file(record, &path, MAX_FILE_BYTES);
            if let (Ok(a), Ok(b)) = (&first, &again) {
                assert_eq!(a, b, "{path}: two reads differ");
            }
        }
    }
}
