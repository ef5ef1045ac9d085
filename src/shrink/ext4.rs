//! Shrinking ext2/3/4 through e2fsprogs, the reference implementation: `e2fsck -fn` judges the
//! filesystem, `resize2fs -P` says how small it can get, `resize2fs -z UNDO` shrinks it and
//! records the original of every block it writes, `e2undo` puts them back.
//!
//! The partition is addressed inside the image file with e2fsprogs' `IMAGE?offset=BYTES`
//! device syntax: no loop device, no root. What was measured with e2fsprogs 1.47.0 and shaped
//! this module:
//!
//! - **resize2fs truncates a regular file** to the new filesystem size after a shrink
//!   (`resize/main.c`: `ftruncate(fd, new_size * blocksize)`, the offset ignored), which would
//!   cut the image, the partition itself and the VHD footer, and kill a process that has the
//!   image mapped with SIGBUS. The truncation only happens through the descriptor resize2fs
//!   opens first, and only `if (fd > 0)`. resize2fs is therefore started with standard input
//!   closed (`sh -c 'exec resize2fs ... <&-'`), so that this descriptor is 0, and the image
//!   length is checked afterwards.
//! - **e2undo does not restore the primary superblock when an offset is used**: resize2fs
//!   writes it through the undo manager's `write_byte`, which records the block at
//!   `(offset + 1024) / blocksize` instead of the superblock's block; after `e2undo` the rest
//!   of the partition is back byte for byte, the superblock is not (12 to 18 bytes differ).
//!   [`shrink`] therefore saves the original 1024 superblock bytes beside the undo file
//!   ([`superblock_save_path`]) before resize2fs runs, and [`undo`] writes them back after
//!   e2undo. The undo file records the offset (`fs_offset`, e2undo applies it by itself);
//!   [`undo`] also passes `-o` so that a wrong pairing cannot go unnoticed.
//! - e2fsprogs takes no file lock, and opens with `O_EXCL` only as a way to refuse busy block
//!   devices (Linux ignores `O_EXCL` without `O_CREAT` on regular files): running it while
//!   vhdtool holds its exclusive `flock` and a read-only shared mapping works, and the mapping
//!   sees resize2fs's writes (one page cache).
//! - resize2fs refuses a filesystem mounted since its last check (`s_lastcheck < s_mtime`, the
//!   normal state of a guest disk) unless forced. [`shrink`] runs `resize2fs -f` after doing
//!   what the force skips itself: `e2fsck -fn` clean, state valid and without errors, no
//!   journal to recover, the new size not under `resize2fs -P`'s minimum, no bigalloc
//!   (resize2fs's own "not fully tested" refusal).
//!
//! With an undo file, crash safety is e2fsprogs': the undo file is written as resize2fs goes,
//! its header last, and after a resize2fs that failed [`shrink`] replays it at once. `convert`
//! does not rely on it: in place, it runs [`shrink`] on an overlay and journals the result itself
//! (`convert::journal::overlay`), because a kill at some of resize2fs's writes left undo files
//! e2undo refused. resize2fs runs with [`FAKE_TIME_ENV`] (SOURCE_DATE_EPOCH, else the
//! superblock's `s_wtime`): the same filesystem shrinks to the same bytes.

use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use zerocopy::FromBytes;

use crate::error::{Error, ErrorKind, Result};
use crate::fs::ext::{
    RawExtSuperblock, EXT2_ERROR_FS, EXT2_VALID_FS, EXT3_FEATURE_INCOMPAT_JOURNAL_DEV,
    EXT3_FEATURE_INCOMPAT_RECOVER, EXT4_FEATURE_RO_COMPAT_BIGALLOC, EXT_MAGIC,
    EXT_MAX_LOG_BLOCK_SIZE, EXT_SUPERBLOCK_OFFSET,
};

/// The e2fsprogs tools this module runs.
const TOOLS: [&str; 3] = ["e2fsck", "resize2fs", "e2undo"];
/// How to get them (Debian, Ubuntu).
const INSTALL: &str = "apt-get install e2fsprogs";
/// resize2fs learnt `-z UNDO_FILE` in e2fsprogs 1.43.
const MIN_VERSION: (u32, u32) = (1, 43);
/// Where to look when PATH is unset.
const DEFAULT_DIRS: [&str; 4] = ["/usr/sbin", "/sbin", "/usr/bin", "/bin"];

/// The superblock as this module reads and saves it (layout: [`RawExtSuperblock`]).
const SUPERBLOCK_OFFSET: u64 = EXT_SUPERBLOCK_OFFSET;
const SUPERBLOCK_BYTES: usize = size_of::<RawExtSuperblock>();

/// The saved superblock beside the undo file: magic, u64 partition offset, u32 length, the
/// bytes, CRC32 of all that (little-endian).
const SAVE_MAGIC: &[u8; 8] = b"VHDTSB01";
const SAVE_BYTES: usize = 8 + 8 + 4 + SUPERBLOCK_BYTES + 4;
/// e2fsprogs undo file magic (`misc/e2undo.c`).
const UNDO_MAGIC: &[u8; 8] = b"E2UNDO02";

/// e2fsprogs' clock override (`lib/ext2fs`, `e2fsck`): the time they write into the superblock.
pub const FAKE_TIME_ENV: &str = "E2FSPROGS_FAKE_TIME";

/// The clock e2fsprogs is run with: SOURCE_DATE_EPOCH when set, else the superblock's own last
/// write time, so that shrinking the same filesystem twice writes the same bytes.
fn fake_time(sb: &Superblock) -> Result<i64> {
    Ok(crate::esp::source_date_epoch()?.unwrap_or(i64::from(sb.wtime)))
}

/// Size facts of an ext2/3/4 filesystem, from its superblock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    pub block_bytes: u64,
    pub blocks: u64,
}

impl Geometry {
    /// The filesystem size in bytes.
    pub fn fs_bytes(&self) -> u64 {
        self.blocks.saturating_mul(self.block_bytes)
    }
}

/// What [`shrink`] did.
#[derive(Debug, Clone)]
pub struct ShrinkReport {
    pub block_bytes: u64,
    pub old_fs_bytes: u64,
    /// The filesystem size after the shrink: the largest whole number of blocks that fits in
    /// the requested size.
    pub new_fs_bytes: u64,
    /// `resize2fs -P`'s estimate of the smallest possible size.
    pub min_fs_bytes: u64,
    /// e2fsprogs' undo file (`resize2fs -z`), when one was asked for.
    pub undo_file: Option<PathBuf>,
    pub undo_file_bytes: u64,
    /// The original superblock that e2undo cannot restore (see the module docs).
    pub superblock_file: Option<PathBuf>,
    /// How long resize2fs ran.
    pub resize_time: Duration,
    pub notes: Vec<String>,
}

/// Are e2fsck, resize2fs and e2undo there, and new enough (1.43, for `resize2fs -z`)? The
/// error names the missing tools and the install command.
pub fn check_tools() -> Result<()> {
    tools_in(&search_dirs()).map(|_| ())
}

/// `resize2fs -P`: the smallest size the filesystem at `part_offset` can shrink to, in bytes.
/// resize2fs opens the image for writing even for this (it writes nothing), so a read-only
/// image fails here.
pub fn min_size(image: &Path, part_offset: u64) -> Result<u64> {
    let tools = tools_in(&search_dirs())?;
    let geometry = geometry(image, part_offset)?;
    let out = run(Command::new(&tools.resize2fs)
        .arg("-P")
        .arg(device(image, part_offset)?))?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(Error::corrupt(format!(
            "resize2fs -P on the ext filesystem at 0x{part_offset:x} failed: {}",
            output_text(&out)
        )));
    }
    let blocks = text
        .lines()
        .find_map(|l| l.strip_prefix("Estimated minimum size of the filesystem:"))
        .and_then(|n| n.trim().parse::<u64>().ok())
        .ok_or_else(|| {
            Error::corrupt(format!(
                "resize2fs -P printed no minimum size: {}",
                output_text(&out)
            ))
        })?;
    blocks
        .checked_mul(geometry.block_bytes)
        .ok_or_else(|| Error::corrupt(format!("resize2fs -P: {blocks} blocks overflow")))
}

/// Is the filesystem at `part_offset` fit to shrink: its superblock (state valid, no errors,
/// no journal to recover, no bigalloc), then `e2fsck -fn` (read-only, full check); any problem
/// is a refusal that says to run `e2fsck -f` in the guest, with e2fsck's report.
pub fn fsck(image: &Path, part_offset: u64) -> Result<()> {
    let tools = tools_in(&search_dirs())?;
    read_superblock(image, part_offset)?.check_shrinkable(part_offset)?;
    let out = run(Command::new(&tools.e2fsck)
        .arg("-fn")
        .arg(device(image, part_offset)?))?;
    match out.status.code() {
        Some(0) => Ok(()),
        Some(8) | None => Err(Error::new(
            ErrorKind::Io,
            format!(
                "e2fsck -fn could not check the ext filesystem at 0x{part_offset:x}: {}",
                output_text(&out)
            ),
        )),
        Some(code) => Err(Error::corrupt(format!(
            "e2fsck -fn finds problems in the ext filesystem at 0x{part_offset:x} (exit \
             {code}); run `e2fsck -f` on it in the guest, then convert again:\n{}",
            output_text(&out)
        ))),
    }
}

/// Block size and block count of the ext2/3/4 filesystem at `part_offset` of `image`.
pub fn geometry(image: &Path, part_offset: u64) -> Result<Geometry> {
    let sb = read_superblock(image, part_offset)?;
    Ok(sb.geometry)
}

/// Where [`shrink`] keeps the original superblock for [`undo`]: `UNDO_FILE.sb`.
pub fn superblock_save_path(undo_file: &Path) -> PathBuf {
    let mut name = undo_file.as_os_str().to_os_string();
    name.push(".sb");
    PathBuf::from(name)
}

/// Shrink the ext2/3/4 filesystem at `part_offset` of `image` to fit in `new_bytes` (the new
/// partition length): the largest whole number of filesystem blocks not above it.
///
/// Before anything is written: the tools are checked, the superblock is read (state valid, no
/// errors, no journal to recover, no bigalloc), `e2fsck -fn` must be clean and `resize2fs -P`
/// must allow the size; `undo_file` and its `.sb` companion must not exist. Then the original
/// superblock is saved (fsynced), resize2fs runs with `-z undo_file`, the image length is
/// checked, the undo file fsynced, and `e2fsck -fn` judges the result. When resize2fs or the
/// check fails, the undo file is replayed before the error is returned.
///
/// Without `undo_file` (a copy that is deleted when the conversion fails) resize2fs runs
/// without `-z` and a failure leaves the filesystem as resize2fs left it.
pub fn shrink(
    image: &Path,
    part_offset: u64,
    new_bytes: u64,
    undo_file: Option<&Path>,
) -> Result<ShrinkReport> {
    let tools = tools_in(&search_dirs())?;
    let dev = device(image, part_offset)?;
    let sb = read_superblock(image, part_offset)?;
    let Geometry {
        block_bytes,
        blocks,
    } = sb.geometry;
    let new_blocks = new_bytes
        .checked_div(block_bytes)
        .ok_or_else(|| Error::internal("ext superblock with a zero block size passed parsing"))?;
    let new_fs_bytes = new_blocks.saturating_mul(block_bytes);
    if new_blocks >= blocks {
        return Err(Error::invalid(format!(
            "the ext filesystem at 0x{part_offset:x} ({} bytes) already fits in {new_bytes} \
             bytes: nothing to shrink",
            sb.geometry.fs_bytes()
        )));
    }
    fsck(image, part_offset)?;
    let min_fs_bytes = min_size(image, part_offset)?;
    if new_fs_bytes < min_fs_bytes {
        return Err(Error::invalid(format!(
            "the ext filesystem at 0x{part_offset:x} needs at least {min_fs_bytes} bytes \
             (resize2fs -P); shrinking it to {new_fs_bytes} bytes is impossible: free space in \
             the guest or use --room grow"
        )));
    }
    let sb_file = undo_file.map(superblock_save_path);
    if let (Some(undo_file), Some(sb_file)) = (undo_file, sb_file.as_deref()) {
        for p in [undo_file, sb_file] {
            if p.exists() {
                return Err(Error::conflict(format!(
                    "{} exists (the undo file of an earlier shrink?); keep it or remove it first",
                    p.display()
                )));
            }
        }
        save_superblock(sb_file, part_offset, &sb.raw)?;
    }
    let image_len = file_len(image)?;

    let start = Instant::now();
    // Standard input closed: see the module docs (resize2fs truncates through a descriptor
    // above 0 only).
    let mut cmd = Command::new("/bin/sh");
    cmd.arg("-c")
        .arg("exec \"$0\" \"$@\" <&-")
        .arg(&tools.resize2fs)
        .arg("-f");
    if let Some(u) = undo_file {
        cmd.arg("-z").arg(u);
    }
    // the times resize2fs writes into the superblocks: the same input gives the same bytes
    cmd.env(FAKE_TIME_ENV, fake_time(&sb)?.to_string());
    let out = run(cmd.arg(&dev).arg(new_blocks.to_string()))?;
    let resize_time = start.elapsed();
    let after_len = file_len(image)?;
    if after_len != image_len {
        return Err(Error::corrupt(format!(
            "resize2fs changed the length of {} from {image_len} to {after_len} bytes; the \
             image is damaged beyond what its undo file can restore",
            image.display()
        )));
    }
    let fail = |msg: String| match undo_file {
        Some(u) => undo_after_failure(image, part_offset, u, msg),
        None => Error::corrupt(msg),
    };
    if !out.status.success() {
        let text = output_text(&out);
        // the file's filesystem is full: an I/O error (exit code 3), not a damaged filesystem
        if let Some(line) = text
            .lines()
            .find(|l| out_of_space(l))
            .filter(|_| undo_file.is_none())
        {
            return Err(Error::io(
                format!(
                    "resize2fs on the ext filesystem at 0x{part_offset:x} of {} ran out of space ({})",
                    image.display(),
                    line.trim()
                ),
                std::io::Error::from_raw_os_error(rustix::io::Errno::NOSPC.raw_os_error()),
            ));
        }
        return Err(fail(format!(
            "resize2fs on the ext filesystem at 0x{part_offset:x} failed: {text}"
        )));
    }
    if let Some(u) = undo_file {
        sync_file(u)?;
    }
    let verified = read_superblock(image, part_offset).and_then(|after| {
        if after.geometry.blocks != new_blocks {
            return Err(Error::corrupt(format!(
                "after resize2fs the filesystem has {} blocks, expected {new_blocks}",
                after.geometry.blocks
            )));
        }
        fsck(image, part_offset)
    });
    if let Err(e) = verified {
        return Err(fail(format!(
            "the shrunk filesystem does not check out: {e}"
        )));
    }
    let undo_file_bytes = match undo_file {
        Some(u) => std::fs::metadata(u)
            .map_err(|e| Error::io(format!("stat {}", u.display()), e))?
            .len(),
        None => 0,
    };
    let undo_note = match undo_file {
        Some(u) => format!("; undo file {} ({undo_file_bytes} bytes)", u.display()),
        None => String::new(),
    };
    Ok(ShrinkReport {
        block_bytes,
        old_fs_bytes: sb.geometry.fs_bytes(),
        new_fs_bytes,
        min_fs_bytes,
        undo_file: undo_file.map(Path::to_path_buf),
        undo_file_bytes,
        superblock_file: sb_file,
        resize_time,
        notes: vec![format!(
            "ext filesystem at 0x{part_offset:x}: {blocks} -> {new_blocks} blocks of \
             {block_bytes} bytes (minimum {min_fs_bytes} bytes){undo_note}"
        )],
    })
}

/// Undo a [`shrink`]: `e2undo -o OFFSET undo_file image`, then the saved original superblock
/// is written back and fsynced, then `e2fsck -fn` must be clean. The undo files are left in
/// place (a second run fails at e2undo's superblock check).
pub fn undo(image: &Path, part_offset: u64, undo_file: &Path) -> Result<()> {
    let tools = tools_in(&search_dirs())?;
    let saved = load_superblock(&superblock_save_path(undo_file), part_offset)?;
    check_undo_header(undo_file)?;
    let out = run(Command::new(&tools.e2undo)
        .arg("-o")
        .arg(part_offset.to_string())
        .arg(undo_file)
        .arg(plain_path(image)))?;
    if !out.status.success() {
        return Err(Error::corrupt(format!(
            "e2undo {} on {} failed: {}",
            undo_file.display(),
            image.display(),
            output_text(&out)
        )));
    }
    let at = part_offset
        .checked_add(SUPERBLOCK_OFFSET)
        .ok_or_else(|| Error::invalid("partition offset overflows"))?;
    let file = OpenOptions::new()
        .write(true)
        .open(image)
        .map_err(|e| Error::io(format!("opening {} for writing", image.display()), e))?;
    file.write_all_at(&saved, at).map_err(|e| {
        Error::io(
            format!(
                "writing the saved superblock at 0x{at:x} of {}",
                image.display()
            ),
            e,
        )
    })?;
    file.sync_all()
        .map_err(|e| Error::io(format!("fsync {}", image.display()), e))?;
    fsck(image, part_offset).map_err(|e| e.context("after e2undo"))
}

/// Does resize2fs's output say a write failed for want of space? e2fsprogs reports ENOSPC as
/// strerror's text, or, when `pwrite` wrote only part of a block run before the filesystem
/// filled up, as `EXT2_ET_SHORT_WRITE` ("Attempt to write block to filesystem resulted in short
/// write"); the tools run with `LC_ALL=C`.
fn out_of_space(output: &str) -> bool {
    output.contains("No space left on device") || output.contains("resulted in short write")
}

/// Replay the undo file after a failed shrink; the error says what failed and whether the
/// replay worked.
fn undo_after_failure(image: &Path, part_offset: u64, undo_file: &Path, msg: String) -> Error {
    if !undo_file.exists() {
        return Error::corrupt(format!("{msg}; resize2fs wrote no undo file"));
    }
    match undo(image, part_offset, undo_file) {
        // replayed: gone, so that a rollback does not replay it a second time (e2undo would
        // refuse the restored superblock)
        Ok(()) => {
            let sb = superblock_save_path(undo_file);
            let removed = [undo_file, sb.as_path()]
                .iter()
                .all(|p| std::fs::remove_file(p).is_ok());
            Error::corrupt(format!(
                "{msg}; the filesystem was restored from {}{}",
                undo_file.display(),
                if removed {
                    " (removed)"
                } else {
                    "; removing it failed: remove it and its .sb before a rollback"
                }
            ))
        }
        Err(e) => Error::corrupt(format!(
            "{msg}; restoring from {} failed too: {e}",
            undo_file.display()
        )),
    }
}

/// The superblock as read, with the fields this module uses.
struct Superblock {
    raw: [u8; SUPERBLOCK_BYTES],
    geometry: Geometry,
    state: u16,
    incompat: u32,
    ro_compat: u32,
    /// `s_wtime`: when the superblock was last written (seconds since 1970, low 32 bits).
    wtime: u32,
}

impl Superblock {
    fn parse(raw: [u8; SUPERBLOCK_BYTES], part_offset: u64) -> Result<Superblock> {
        let sb = RawExtSuperblock::read_from_bytes(&raw)
            .map_err(|_| Error::corrupt("ext superblock: length"))?;
        if sb.s_magic.get() != EXT_MAGIC {
            return Err(Error::invalid(format!(
                "no ext2/3/4 superblock at 0x{:x} (magic 0x{:04x}, expected 0x{EXT_MAGIC:04x})",
                part_offset.saturating_add(SUPERBLOCK_OFFSET),
                sb.s_magic.get()
            )));
        }
        let block_bytes = sb.block_bytes().ok_or_else(|| {
            Error::corrupt(format!(
                "ext superblock at 0x{:x}: s_log_block_size is {}, at most \
                 {EXT_MAX_LOG_BLOCK_SIZE}",
                part_offset.saturating_add(SUPERBLOCK_OFFSET),
                sb.s_log_block_size.get()
            ))
        })?;
        Ok(Superblock {
            raw,
            geometry: Geometry {
                block_bytes,
                blocks: sb.blocks_count(),
            },
            state: sb.s_state.get(),
            incompat: sb.s_feature_incompat.get(),
            ro_compat: sb.s_feature_ro_compat.get(),
            wtime: sb.s_wtime.get(),
        })
    }

    /// What `resize2fs -f` would no longer check, and what it cannot do.
    fn check_shrinkable(&self, part_offset: u64) -> Result<()> {
        let at = format!("the ext filesystem at 0x{part_offset:x}");
        if self.incompat & EXT3_FEATURE_INCOMPAT_JOURNAL_DEV != 0 {
            return Err(Error::unsupported(format!(
                "{at} is an external journal, not a filesystem; use --room grow"
            )));
        }
        if self.incompat & EXT3_FEATURE_INCOMPAT_RECOVER != 0 {
            return Err(Error::conflict(format!(
                "{at} has a journal to recover (the guest was not shut down cleanly): boot it \
                 and shut it down normally, or run `e2fsck -f` on it; or use --room grow"
            )));
        }
        if self.state & EXT2_ERROR_FS != 0 || self.state & EXT2_VALID_FS == 0 {
            return Err(Error::corrupt(format!(
                "{at} is marked {} (s_state 0x{:04x}): run `e2fsck -f` on it in the guest, then \
                 convert again; or use --room grow",
                if self.state & EXT2_ERROR_FS != 0 {
                    "as having errors"
                } else {
                    "as not cleanly unmounted"
                },
                self.state
            )));
        }
        if self.ro_compat & EXT4_FEATURE_RO_COMPAT_BIGALLOC != 0 {
            return Err(Error::unsupported(format!(
                "{at} uses bigalloc, which resize2fs does not shrink reliably (it refuses \
                 without force); use --room grow"
            )));
        }
        Ok(())
    }
}

fn read_superblock(image: &Path, part_offset: u64) -> Result<Superblock> {
    let file =
        File::open(image).map_err(|e| Error::io(format!("opening {}", image.display()), e))?;
    let at = part_offset
        .checked_add(SUPERBLOCK_OFFSET)
        .ok_or_else(|| Error::invalid("partition offset overflows"))?;
    let mut raw = [0u8; SUPERBLOCK_BYTES];
    file.read_exact_at(&mut raw, at).map_err(|e| {
        Error::io(
            format!(
                "reading the ext superblock at 0x{at:x} of {}",
                image.display()
            ),
            e,
        )
    })?;
    Superblock::parse(raw, part_offset)
}

fn save_superblock(path: &Path, part_offset: u64, raw: &[u8; SUPERBLOCK_BYTES]) -> Result<()> {
    let mut buf = Vec::with_capacity(SAVE_BYTES);
    buf.extend_from_slice(SAVE_MAGIC);
    buf.extend_from_slice(&part_offset.to_le_bytes());
    let sb_len = u32::try_from(SUPERBLOCK_BYTES)
        .map_err(|_| Error::internal("the ext superblock size does not fit in u32"))?;
    buf.extend_from_slice(&sb_len.to_le_bytes());
    buf.extend_from_slice(raw);
    let crc = crc32fast::hash(&buf);
    buf.extend_from_slice(&crc.to_le_bytes());
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(|e| Error::io(format!("creating {}", path.display()), e))?;
    f.write_all(&buf)
        .and_then(|()| f.sync_all())
        .map_err(|e| Error::io(format!("writing {}", path.display()), e))?;
    sync_parent(path)
}

fn load_superblock(path: &Path, part_offset: u64) -> Result<Vec<u8>> {
    let buf =
        std::fs::read(path).map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
    let bad = |what: &str| Error::corrupt(format!("{}: {what}", path.display()));
    if buf.len() != SAVE_BYTES || buf.get(..8) != Some(SAVE_MAGIC.as_slice()) {
        return Err(bad("not a saved superblock (magic or length)"));
    }
    let (body, crc) = buf.split_at(SAVE_BYTES - 4);
    let crc = <[u8; 4]>::try_from(crc)
        .map(u32::from_le_bytes)
        .unwrap_or_default();
    if crc32fast::hash(body) != crc {
        return Err(bad("CRC32 mismatch"));
    }
    let off = body
        .get(8..16)
        .and_then(|b| <[u8; 8]>::try_from(b).ok())
        .map(u64::from_le_bytes)
        .unwrap_or_default();
    if off != part_offset {
        return Err(Error::conflict(format!(
            "{} belongs to the partition at 0x{off:x}, not 0x{part_offset:x}",
            path.display()
        )));
    }
    Ok(body.get(20..).unwrap_or_default().to_vec())
}

/// The undo file must be e2fsprogs' (magic) before e2undo is let loose on the image.
fn check_undo_header(undo_file: &Path) -> Result<()> {
    let f = File::open(undo_file)
        .map_err(|e| Error::io(format!("opening {}", undo_file.display()), e))?;
    let mut magic = [0u8; 8];
    f.read_exact_at(&mut magic, 0)
        .map_err(|e| Error::io(format!("reading {}", undo_file.display()), e))?;
    if &magic != UNDO_MAGIC {
        return Err(Error::corrupt(format!(
            "{} is not an e2fsprogs undo file (magic {:?})",
            undo_file.display(),
            String::from_utf8_lossy(&magic)
        )));
    }
    Ok(())
}

fn file_len(path: &Path) -> Result<u64> {
    Ok(std::fs::metadata(path)
        .map_err(|e| Error::io(format!("stat {}", path.display()), e))?
        .len())
}

fn sync_file(path: &Path) -> Result<()> {
    File::open(path)
        .and_then(|f| f.sync_all())
        .map_err(|e| Error::io(format!("fsync {}", path.display()), e))?;
    sync_parent(path)
}

fn sync_parent(path: &Path) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(format!("fsync {}", dir.display()), e))
}

/// `IMAGE?offset=BYTES`. resize2fs and e2fsck split the name at its first `?`, so a path with
/// one cannot be named this way.
fn device(image: &Path, part_offset: u64) -> Result<OsString> {
    if image.as_os_str().as_bytes().contains(&b'?') {
        return Err(Error::invalid(format!(
            "{}: e2fsprogs cannot open a path containing '?' (it starts its I/O options); \
             rename the image or use a symbolic link to it",
            image.display()
        )));
    }
    let mut dev = plain_path(image);
    dev.push(format!("?offset={part_offset}"));
    Ok(dev)
}

/// The path, with `./` in front of a relative one starting with `-` (getopt would take it for
/// an option).
fn plain_path(image: &Path) -> OsString {
    if image.as_os_str().as_bytes().first() == Some(&b'-') {
        Path::new(".").join(image).into_os_string()
    } else {
        image.as_os_str().to_os_string()
    }
}

/// Run a tool to completion with a C locale (its messages are parsed), stdin empty.
fn run(cmd: &mut Command) -> Result<Output> {
    cmd.env("LC_ALL", "C").stdin(Stdio::null());
    let shown = format!("{cmd:?}");
    cmd.output()
        .map_err(|e| Error::io(format!("running {shown}"), e))
}

/// stderr then stdout of a finished tool, trimmed, the last 60 lines at most.
fn output_text(out: &Output) -> String {
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stderr).trim(),
        String::from_utf8_lossy(&out.stdout).trim()
    );
    let lines: Vec<&str> = text.trim().lines().collect();
    let skip = lines.len().saturating_sub(60);
    lines.get(skip..).unwrap_or_default().join("\n")
}

struct Tools {
    e2fsck: PathBuf,
    resize2fs: PathBuf,
    e2undo: PathBuf,
}

/// PATH, or the usual directories when PATH is unset or empty.
fn search_dirs() -> Vec<PathBuf> {
    match std::env::var_os("PATH").filter(|p| !p.is_empty()) {
        Some(path) => std::env::split_paths(&path).collect(),
        None => DEFAULT_DIRS.map(PathBuf::from).to_vec(),
    }
}

/// Resolve the tools in `dirs` and check the version (`e2fsck -V`).
fn tools_in(dirs: &[PathBuf]) -> Result<Tools> {
    let find = |name: &str| dirs.iter().map(|d| d.join(name)).find(|p| p.is_file());
    let found: Vec<Option<PathBuf>> = TOOLS.iter().map(|t| find(t)).collect();
    let missing: Vec<&str> = TOOLS
        .iter()
        .zip(&found)
        .filter(|(_, p)| p.is_none())
        .map(|(t, _)| *t)
        .collect();
    let [Some(e2fsck), Some(resize2fs), Some(e2undo)] =
        <[Option<PathBuf>; 3]>::try_from(found).unwrap_or([None, None, None])
    else {
        return Err(Error::unsupported(format!(
            "shrinking ext2/3/4 needs e2fsprogs, and {} {} not on PATH: install it with \
             `{INSTALL}` (where it is installed, put its sbin directory on PATH), or use --room \
             grow",
            missing.join(", "),
            if missing.len() == 1 { "is" } else { "are" }
        )));
    };
    let out = run(Command::new(&e2fsck).arg("-V"))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    match parse_version(&text) {
        Some(v) if v >= MIN_VERSION => Ok(Tools {
            e2fsck,
            resize2fs,
            e2undo,
        }),
        found => Err(Error::unsupported(format!(
            "shrinking ext2/3/4 needs e2fsprogs {}.{} or later (resize2fs -z), found {}: \
             update it with `{INSTALL}`",
            MIN_VERSION.0,
            MIN_VERSION.1,
            found.map_or("an unknown version".to_string(), |(a, b)| format!(
                "{a}.{b}"
            ))
        ))),
    }
}

/// "e2fsck 1.47.0 (5-Feb-2023)" -> (1, 47).
fn parse_version(text: &str) -> Option<(u32, u32)> {
    let word = text.split_whitespace().nth(1)?;
    let mut parts = word.split('.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts
        .next()?
        .chars()
        .take_while(char::is_ascii_digit)
        .collect::<String>()
        .parse()
        .ok()?;
    Some((major, minor))
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects, clippy::as_conversions)]
mod tests {
    use super::*;

    #[test]
    fn missing_tools_name_the_package() {
        let e = tools_in(&[]).err().expect("no tools in no directories");
        assert_eq!(e.kind(), ErrorKind::Unsupported);
        let m = e.message();
        assert!(m.contains("e2fsck, resize2fs, e2undo"), "{m}");
        assert!(m.contains("apt-get install e2fsprogs"), "{m}");
    }

    #[test]
    fn versions() {
        assert_eq!(parse_version("e2fsck 1.47.0 (5-Feb-2023)\n"), Some((1, 47)));
        assert_eq!(parse_version("e2fsck 1.42.9 (4-Feb-2014)"), Some((1, 42)));
        assert_eq!(parse_version("e2fsck 1.46-WIP (1-Jan-2020)"), Some((1, 46)));
        assert_eq!(parse_version("garbage"), None);
        assert_eq!(parse_version(""), None);
        assert!((1, 42) < MIN_VERSION && (1, 43) >= MIN_VERSION && (2, 0) > MIN_VERSION);
    }

    #[test]
    fn device_names() {
        assert_eq!(
            device(Path::new("/a/disk.vhd"), 1048576).unwrap(),
            OsString::from("/a/disk.vhd?offset=1048576")
        );
        assert_eq!(
            device(Path::new("-x.img"), 512).unwrap(),
            OsString::from("./-x.img?offset=512")
        );
        let e = device(Path::new("/a/what?.img"), 0).unwrap_err();
        assert!(e.message().contains("'?'"), "{e}");
    }

    fn sb(f: impl FnOnce(&mut RawExtSuperblock)) -> Result<Superblock> {
        use zerocopy::{FromZeros, IntoBytes};
        let mut s = RawExtSuperblock::new_zeroed();
        s.s_magic.set(EXT_MAGIC);
        s.s_log_block_size.set(2); // 4 KiB blocks
        s.s_blocks_count_lo.set(1000);
        s.s_state.set(EXT2_VALID_FS);
        f(&mut s);
        let mut raw = [0u8; SUPERBLOCK_BYTES];
        raw.copy_from_slice(s.as_bytes());
        Superblock::parse(raw, 0x100000)
    }

    #[test]
    fn superblock_checks() {
        let ok = sb(|_| {}).unwrap();
        assert_eq!(
            ok.geometry,
            Geometry {
                block_bytes: 4096,
                blocks: 1000
            }
        );
        ok.check_shrinkable(0).unwrap();
        // 64-bit block count
        let big = sb(|r| {
            r.s_feature_incompat
                .set(crate::fs::ext::EXT4_FEATURE_INCOMPAT_64BIT);
            r.s_blocks_count_hi.set(1);
        })
        .unwrap();
        assert_eq!(big.geometry.blocks, (1 << 32) + 1000);
        // refusals
        let e = sb(|r| r.s_magic.set(0)).err().unwrap();
        assert!(
            e.message().contains("no ext2/3/4 superblock at 0x100400"),
            "{e}"
        );
        let e = sb(|r| r.s_log_block_size.set(40)).err().unwrap();
        assert!(e.message().contains("s_log_block_size"), "{e}");
        type Corrupt = fn(&mut RawExtSuperblock);
        let cases: [(Corrupt, &str); 5] = [
            (
                |r| r.s_feature_incompat.set(EXT3_FEATURE_INCOMPAT_RECOVER),
                "journal to recover",
            ),
            (
                |r| r.s_feature_incompat.set(EXT3_FEATURE_INCOMPAT_JOURNAL_DEV),
                "external journal",
            ),
            (|r| r.s_state.set(0), "not cleanly unmounted"),
            (
                |r| r.s_state.set(EXT2_VALID_FS | EXT2_ERROR_FS),
                "having errors",
            ),
            (
                |r| r.s_feature_ro_compat.set(EXT4_FEATURE_RO_COMPAT_BIGALLOC),
                "bigalloc",
            ),
        ];
        for (f, word) in cases {
            let e = sb(f).unwrap().check_shrinkable(0).unwrap_err();
            assert!(e.message().contains(word), "{word}: {e}");
            assert!(e.message().contains("--room grow"), "{word}: {e}");
        }
    }
}
