//! Reading files out of an ext2/3/4 partition with the `ext4-view` crate, behind our own bounds.
//!
//! Three guards stand between the crate and untrusted bytes:
//! 1. [`check_superblock`] reads the superblock first and refuses a file system that claims more
//!    blocks than its partition holds, or more block groups than [`MAX_BLOCK_GROUPS`]:
//!    `Ext4::load` allocates by those numbers before reading anything else.
//! 2. Files are read only after their size (from the inode) is checked against a caller's limit:
//!    `Ext4::read` allocates the inode's size up front.
//! 3. Every call runs behind `std::panic::catch_unwind`, as the last guard.
//!
//! `ext4-view` wants a `Box<dyn Ext4Read>` that owns its source (`'static`), while our partitions
//! are borrowed windows of a disk. Without unsafe code, the borrow cannot be handed over, so the
//! file system is opened on a scoped worker thread whose reader asks this thread for bytes over
//! a channel ([`with_ext4`]). Only owned results cross back.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc;

use ext4_view::{Ext4, Ext4Read};

use crate::disk::Disk;
use crate::error::{Error, Result};

/// Superblock offset inside the file system (ext4 disk layout, "Layout").
pub const SUPERBLOCK_OFFSET: u64 = 0x400;
/// `s_magic` (ext4 disk layout, "The Super Block").
pub const EXT4_MAGIC: u16 = 0xEF53;
/// At most this many block groups: `Ext4::load` reserves a descriptor per group before reading
/// them. 2^20 groups of 128 MiB (4 KiB blocks) is a 128 TiB file system.
pub const MAX_BLOCK_GROUPS: u64 = 1 << 20;
/// Name of the thread the crate runs on (the fuzz target tells its caught panics apart by it).
pub const WORKER_THREAD: &str = "ext4-view";
/// The largest single read the worker may request (the crate reads a few blocks at a time).
const MAX_READ_BYTES: usize = 64 << 20;

/// What the superblock says about the file system's size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SuperblockSize {
    pub block_bytes: u64,
    pub blocks: u64,
    pub block_groups: u64,
}

/// Reads the superblock and checks that the file system fits in `part` (see the module docs).
pub fn check_superblock(part: &dyn Disk) -> Result<SuperblockSize> {
    let mut sb = [0u8; 1024];
    part.read_at(SUPERBLOCK_OFFSET, &mut sb)?;
    let u32_at = |o: usize| {
        sb.get(o..o.saturating_add(4))
            .and_then(|b| <[u8; 4]>::try_from(b).ok())
            .map_or(0, u32::from_le_bytes)
    };
    let magic = u16::from_le_bytes([sb[0x38], sb[0x39]]);
    if magic != EXT4_MAGIC {
        return Err(Error::corrupt(format!(
            "ext4 superblock at 0x400: magic is 0x{magic:04x}, expected 0x{EXT4_MAGIC:04x}"
        )));
    }
    let log_block = u32_at(0x18);
    if log_block > 6 {
        return Err(Error::corrupt(format!(
            "ext4 superblock at 0x400: s_log_block_size {log_block} (block size above 64 KiB)"
        )));
    }
    let block_bytes = 1024u64 << log_block;
    // `s_blocks_count_hi` counts even without INCOMPAT_64BIT: ext4-view 1.0 reads it
    // unconditionally and reserves a descriptor per block group by that count before reading
    // any (found by fuzzing: testdata/regress/ext4-blocks-hi-without-64bit.bin asked for
    // 16 GiB). A file system that is not 64-bit and has it set is refused as too large.
    let hi = u64::from(u32_at(0x150));
    let blocks = (hi << 32) | u64::from(u32_at(0x04));
    let fs_bytes = blocks.checked_mul(block_bytes).ok_or_else(|| {
        Error::corrupt(format!(
            "ext4 superblock at 0x400: {blocks} blocks overflow"
        ))
    })?;
    if fs_bytes > part.len() {
        return Err(Error::corrupt(format!(
            "ext4 superblock at 0x400: {blocks} blocks of {block_bytes} bytes = {fs_bytes} bytes, \
             the partition holds {} bytes",
            part.len()
        )));
    }
    let per_group = u64::from(u32_at(0x20));
    if per_group == 0 {
        return Err(Error::corrupt(
            "ext4 superblock at 0x400: s_blocks_per_group is 0",
        ));
    }
    let block_groups = blocks.div_ceil(per_group);
    if block_groups > MAX_BLOCK_GROUPS {
        return Err(Error::unsupported(format!(
            "ext4 superblock at 0x400: {block_groups} block groups, more than the {MAX_BLOCK_GROUPS} read here"
        )));
    }
    Ok(SuperblockSize {
        block_bytes,
        blocks,
        block_groups,
    })
}

type BoxedError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// The worker's side of the channel: each read is a request to the thread that holds the disk.
struct ChannelReader {
    requests: mpsc::Sender<(u64, usize)>,
    replies: mpsc::Receiver<Result<Vec<u8>>>,
}

impl Ext4Read for ChannelReader {
    fn read(&mut self, start_byte: u64, dst: &mut [u8]) -> std::result::Result<(), BoxedError> {
        if dst.len() > MAX_READ_BYTES {
            return Err(format!("read of {} bytes refused", dst.len()).into());
        }
        self.requests
            .send((start_byte, dst.len()))
            .map_err(|_| "disk reader gone")?;
        let bytes = self.replies.recv().map_err(|_| "disk reader gone")??;
        if bytes.len() != dst.len() {
            return Err("short read".into());
        }
        dst.copy_from_slice(&bytes);
        Ok(())
    }
}

/// Opens the ext2/3/4 file system of `part` and runs `f` on it; `f`'s owned result comes back.
/// The superblock is checked first ([`check_superblock`]); errors of the crate and panics inside
/// it become [`Error`]s naming `what` (for example "partition 1").
pub fn with_ext4<T, F>(part: &dyn Disk, what: &str, f: F) -> Result<T>
where
    T: Send,
    F: FnOnce(&Ext4) -> Result<T> + Send,
{
    check_superblock(part).map_err(|e| e.context(format!("{what}: ext4")))?;
    let (req_tx, req_rx) = mpsc::channel::<(u64, usize)>();
    let (rep_tx, rep_rx) = mpsc::channel();
    std::thread::scope(|s| {
        let worker = std::thread::Builder::new()
            .name(WORKER_THREAD.to_string())
            .spawn_scoped(s, move || {
                catch_unwind(AssertUnwindSafe(move || {
                    let reader = ChannelReader {
                        requests: req_tx,
                        replies: rep_rx,
                    };
                    let fs = Ext4::load(Box::new(reader))
                        .map_err(|e| Error::corrupt(format!("ext4: {e}")))?;
                    f(&fs)
                }))
            })
            .map_err(|e| Error::io(format!("{what}: starting the ext4 reader thread"), e))?;
        // serve reads until the worker drops its sender (it finished or panicked)
        for (offset, len) in req_rx {
            // a usize always fits in a u64 on the targets we build for; read_vec refuses the
            // saturated value if it did not
            let len = u64::try_from(len).unwrap_or(u64::MAX);
            let reply = part.read_vec(offset, len);
            if rep_tx.send(reply).is_err() {
                break;
            }
        }
        match worker.join() {
            Ok(Ok(r)) => r.map_err(|e| e.context(what.to_string())),
            Ok(Err(_)) | Err(_) => Err(Error::corrupt(format!(
                "{what}: the ext4 reader panicked on this file system (damaged or crafted metadata)"
            ))),
        }
    })
}

/// Reads `path` from `fs` if it is a regular file of at most `max_bytes` bytes (symbolic links
/// followed). `Ok(None)` when it does not exist (or a component is not a directory).
pub fn read_file(fs: &Ext4, path: &str, max_bytes: u64) -> Result<Option<Vec<u8>>> {
    let meta = match fs.metadata(path) {
        Ok(m) => m,
        Err(ext4_view::Ext4Error::NotFound | ext4_view::Ext4Error::NotADirectory) => {
            return Ok(None)
        }
        Err(e) => return Err(Error::corrupt(format!("{path}: {e}"))),
    };
    if meta.is_dir() || !meta.file_type().is_regular_file() {
        return Ok(None);
    }
    if meta.len() > max_bytes {
        return Err(Error::unsupported(format!(
            "{path}: {} bytes, more than the {max_bytes} read for it",
            meta.len()
        )));
    }
    fs.read(path)
        .map(Some)
        .map_err(|e| Error::corrupt(format!("{path}: {e}")))
}

/// Names in directory `path` (UTF-8 names only, `.` and `..` left out), sorted; empty when the
/// directory does not exist. At most `max_entries` are returned.
pub fn list_dir(fs: &Ext4, path: &str, max_entries: usize) -> Result<Vec<String>> {
    let rd = match fs.read_dir(path) {
        Ok(rd) => rd,
        Err(ext4_view::Ext4Error::NotFound | ext4_view::Ext4Error::NotADirectory) => {
            return Ok(Vec::new())
        }
        Err(e) => return Err(Error::corrupt(format!("{path}: {e}"))),
    };
    let mut out = Vec::new();
    for entry in rd {
        let entry = entry.map_err(|e| Error::corrupt(format!("{path}: {e}")))?;
        if let Ok(name) = entry.file_name().as_str() {
            if name != "." && name != ".." {
                out.push(name.to_string());
            }
        }
        if out.len() >= max_entries {
            break;
        }
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
#[allow(
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::arithmetic_side_effects,
    clippy::as_conversions
)] // tests: a panic is a failed test
mod tests {
    use super::*;
    use crate::disk::MemDisk;

    /// A superblock-only image: magic, block size, block counts.
    fn sb_image(len: usize, log_block: u32, blocks: u32, per_group: u32) -> MemDisk {
        let mut b = vec![0u8; len];
        let sb = 0x400;
        b[sb + 0x04..sb + 0x08].copy_from_slice(&blocks.to_le_bytes()); // s_blocks_count_lo
        b[sb + 0x18..sb + 0x1c].copy_from_slice(&log_block.to_le_bytes()); // s_log_block_size
        b[sb + 0x20..sb + 0x24].copy_from_slice(&per_group.to_le_bytes()); // s_blocks_per_group
        b[sb + 0x38..sb + 0x3a].copy_from_slice(&EXT4_MAGIC.to_le_bytes()); // s_magic
        MemDisk::new(b)
    }

    #[test]
    fn superblock_bounds() {
        let ok = sb_image(64 * 1024, 0, 64, 8192);
        assert_eq!(
            check_superblock(&ok).unwrap(),
            SuperblockSize {
                block_bytes: 1024,
                blocks: 64,
                block_groups: 1
            }
        );
        // claims more blocks than the partition holds
        assert!(check_superblock(&sb_image(64 * 1024, 2, 1 << 30, 32768)).is_err());
        // absurd block size, zero blocks per group, too many groups
        assert!(check_superblock(&sb_image(64 * 1024, 30, 1, 8192)).is_err());
        assert!(check_superblock(&sb_image(64 * 1024, 0, 64, 0)).is_err());
        let many = sb_image(4 << 20, 0, 4096, 1);
        assert!(check_superblock(&many).is_ok());
        // s_blocks_count_hi set without the 64bit feature still counts (the crate reads it)
        let mut hi = sb_image(64 * 1024, 0, 64, 8192);
        let mut bytes = hi.as_slice().unwrap().to_vec();
        bytes[0x400 + 0x150] = 1; // s_blocks_count_hi = 1; s_feature_incompat (0x60) is 0
        hi = MemDisk::new(bytes);
        assert!(check_superblock(&hi).is_err());
        // no magic, too short
        assert!(check_superblock(&MemDisk::new(vec![0; 4096])).is_err());
        assert!(check_superblock(&MemDisk::new(vec![0; 100])).is_err());
    }

    #[test]
    fn garbage_after_a_valid_superblock_is_an_error_not_a_panic() {
        // a plausible superblock followed by noise: the crate must fail cleanly (or its panic be
        // caught), never take the process down
        let mut d = sb_image(1 << 20, 0, 1024, 8192);
        let mut x: u32 = 0x1234_5678;
        let mut bytes = d.as_slice().unwrap().to_vec();
        for b in bytes.iter_mut().skip(0x800) {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            *b = x as u8;
        }
        d = MemDisk::new(bytes);
        assert!(with_ext4(&d, "test", |_| Ok(())).is_err());
    }
}
