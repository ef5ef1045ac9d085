//! ext2/3/4: the superblock layout (declared once: this probe, shrink/ext4 and the boot-file
//! reader use it) and the probe. e2fsprogs `lib/ext2fs/ext2_fs.h` struct ext2_super_block,
//! little-endian; the superblock is 1024 bytes at byte 1024 of the filesystem.

use zerocopy::little_endian::{U16, U32};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use super::common::{byte_label, info, uuid_string};
use super::info::{FsInfo, FsKind};
use crate::disk::Disk;

/// The ext2/3/4 superblock (e2fsprogs `struct ext2_super_block`; the fields our readers use are
/// named, the rest kept as bytes).
#[derive(Debug, Clone, Copy, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct RawExtSuperblock {
    pub s_inodes_count: U32,           // 0x00
    pub s_blocks_count_lo: U32,        // 0x04
    pub s_r_blocks_count_lo: U32,      // 0x08
    pub s_free_blocks_count_lo: U32,   // 0x0C
    pub s_free_inodes_count: U32,      // 0x10
    pub s_first_data_block: U32,       // 0x14
    pub s_log_block_size: U32,         // 0x18 block = 1024 << this
    pub s_log_cluster_size: U32,       // 0x1C
    pub s_blocks_per_group: U32,       // 0x20
    pub s_clusters_per_group: U32,     // 0x24
    pub s_inodes_per_group: U32,       // 0x28
    pub s_mtime: U32,                  // 0x2C
    pub s_wtime: U32,                  // 0x30
    pub s_mnt_count: U16,              // 0x34
    pub s_max_mnt_count: U16,          // 0x36
    pub s_magic: U16,                  // 0x38 0xEF53
    pub s_state: U16,                  // 0x3A
    pub s_errors: U16,                 // 0x3C
    pub s_minor_rev_level: U16,        // 0x3E
    pub s_lastcheck: U32,              // 0x40
    pub s_checkinterval: U32,          // 0x44
    pub s_creator_os: U32,             // 0x48
    pub s_rev_level: U32,              // 0x4C
    pub s_def_resuid: U16,             // 0x50
    pub s_def_resgid: U16,             // 0x52
    pub s_first_ino: U32,              // 0x54
    pub s_inode_size: U16,             // 0x58
    pub s_block_group_nr: U16,         // 0x5A
    pub s_feature_compat: U32,         // 0x5C
    pub s_feature_incompat: U32,       // 0x60
    pub s_feature_ro_compat: U32,      // 0x64
    pub s_uuid: [u8; 16],              // 0x68
    pub s_volume_name: [u8; 16],       // 0x78
    pub s_last_mounted: [u8; 64],      // 0x88
    pub s_algorithm_usage_bitmap: U32, // 0xC8
    pub s_prealloc: [u8; 4],           // 0xCC prealloc blocks, dir blocks, reserved GDT blocks
    pub s_journal_uuid: [u8; 16],      // 0xD0
    pub s_journal: [u8; 0x70],         // 0xE0 journal inode .. s_jnl_blocks
    pub s_blocks_count_hi: U32,        // 0x150 (INCOMPAT_64BIT)
    pub s_rest: [u8; 0x2A8],           // 0x154
    pub s_checksum: U32,               // 0x3FC crc32c of 0x000..0x3FC (metadata_csum)
}
const _: () = assert!(size_of::<RawExtSuperblock>() == 1024);

/// The superblock is 1024 bytes at byte 1024 of the filesystem, whatever the block size.
pub const EXT_SUPERBLOCK_OFFSET: u64 = 1024;
pub const EXT_MAGIC: u16 = 0xEF53;
pub const EXT3_FEATURE_COMPAT_HAS_JOURNAL: u32 = 0x0004;
/// The journal needs replaying (the filesystem was not unmounted cleanly).
pub const EXT3_FEATURE_INCOMPAT_RECOVER: u32 = 0x0004;
/// An external journal device, not a filesystem.
pub const EXT3_FEATURE_INCOMPAT_JOURNAL_DEV: u32 = 0x0008;
pub const EXT4_FEATURE_INCOMPAT_64BIT: u32 = 0x0080;
/// blkid `ext.c`: what ext2 and ext3 understand (FILETYPE | META_BG, + RECOVER for ext3;
/// SPARSE_SUPER | LARGE_FILE | BTREE_DIR). Anything else makes it ext4.
pub const EXT2_FEATURE_INCOMPAT_SUPP: u32 = 0x0002 | 0x0010;
pub const EXT3_FEATURE_INCOMPAT_SUPP: u32 = 0x0002 | 0x0004 | 0x0010;
pub const EXT_FEATURE_RO_COMPAT_SUPP: u32 = 0x0001 | 0x0002 | 0x0004;
/// Blocks are allocated in clusters of several blocks.
pub const EXT4_FEATURE_RO_COMPAT_BIGALLOC: u32 = 0x0200;
/// `s_state`: unmounted cleanly / errors detected.
pub const EXT2_VALID_FS: u16 = 0x0001;
pub const EXT2_ERROR_FS: u16 = 0x0002;
/// e2fsprogs: block sizes 1 KiB..64 KiB.
pub const EXT_MAX_LOG_BLOCK_SIZE: u32 = 6;

impl RawExtSuperblock {
    /// The block size, `1024 << s_log_block_size`; `None` above 64 KiB
    /// ([`EXT_MAX_LOG_BLOCK_SIZE`]), which e2fsprogs never makes.
    pub fn block_bytes(&self) -> Option<u64> {
        let log = self.s_log_block_size.get();
        (log <= EXT_MAX_LOG_BLOCK_SIZE)
            .then(|| 1024u64.checked_shl(log))
            .flatten()
    }

    /// The block count: `s_blocks_count_lo`, plus `s_blocks_count_hi` above bit 32 when the
    /// filesystem is 64-bit (INCOMPAT_64BIT); without that feature the high word is ignored,
    /// as e2fsprogs and the kernel do.
    pub fn blocks_count(&self) -> u64 {
        let hi = if self.s_feature_incompat.get() & EXT4_FEATURE_INCOMPAT_64BIT != 0 {
            u64::from(self.s_blocks_count_hi.get())
        } else {
            0
        };
        (hi << 32) | u64::from(self.s_blocks_count_lo.get())
    }
}

/// ext2/3/4: magic 0xEF53 at 0x438; the kind as blkid decides it (journal -> ext3 unless a
/// feature ext3 does not know is set -> ext4; external journal devices are not filesystems).
/// The metadata_csum superblock checksum is not required to hold (blkid 2.38 does not check it
/// either): a damaged ext4 is still reported as ext4.
pub(crate) fn probe(part: &dyn Disk) -> Option<FsInfo> {
    let mut raw = [0u8; 1024];
    part.read_at(EXT_SUPERBLOCK_OFFSET, &mut raw).ok()?;
    let sb = RawExtSuperblock::read_from_bytes(&raw).ok()?;
    if sb.s_magic.get() != EXT_MAGIC {
        return None;
    }
    // checked here, before the kind: a block size over 64 KiB is not ext
    sb.block_bytes()?;
    let compat = sb.s_feature_compat.get();
    let incompat = sb.s_feature_incompat.get();
    let ro_compat = sb.s_feature_ro_compat.get();
    if incompat & EXT3_FEATURE_INCOMPAT_JOURNAL_DEV != 0 {
        return None;
    }
    let ro_extra = ro_compat & !EXT_FEATURE_RO_COMPAT_SUPP != 0;
    let kind = if compat & EXT3_FEATURE_COMPAT_HAS_JOURNAL != 0 {
        if ro_extra || incompat & !EXT3_FEATURE_INCOMPAT_SUPP != 0 {
            FsKind::Ext4
        } else {
            FsKind::Ext3
        }
    } else if ro_extra || incompat & !EXT2_FEATURE_INCOMPAT_SUPP != 0 {
        FsKind::Ext4
    } else {
        FsKind::Ext2
    };
    let block = sb.block_bytes()?;
    let blocks = sb.blocks_count();
    Some(FsInfo {
        label: byte_label(&sb.s_volume_name),
        uuid: uuid_string(&sb.s_uuid),
        block_bytes: u32::try_from(block).ok(),
        fs_bytes: blocks.checked_mul(block),
        version: Some(format!(
            "{}.{}",
            sb.s_rev_level.get(),
            sb.s_minor_rev_level.get()
        )),
        ..info(kind)
    })
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::fs::testutil::{have_tool, run_env, TempImage};

    #[test]
    fn layout_offsets_match_the_spec() {
        let mut raw = [0u8; 1024];
        raw[0x04..0x08].copy_from_slice(&1000u32.to_le_bytes()); // s_blocks_count_lo
        raw[0x18] = 2; // s_log_block_size: 4 KiB
        raw[0x38..0x3A].copy_from_slice(&EXT_MAGIC.to_le_bytes()); // s_magic
        raw[0x3A] = 1; // s_state: clean
        raw[0x60] = 0x80; // s_feature_incompat: 64bit
        raw[0x150] = 1; // s_blocks_count_hi
        raw[0x3FC] = 0xCC; // s_checksum
        let sb = RawExtSuperblock::read_from_bytes(&raw).unwrap();
        assert_eq!(sb.s_magic.get(), EXT_MAGIC);
        assert_eq!(sb.s_state.get(), EXT2_VALID_FS);
        assert_eq!(sb.block_bytes(), Some(4096));
        assert_eq!(sb.blocks_count(), (1 << 32) + 1000);
        assert_eq!(sb.s_checksum.get(), 0xCC);
        assert_eq!(sb.as_bytes(), &raw[..]);
        raw[0x60] = 0; // not 64-bit: the high word does not count
        raw[0x18] = 7; // 128 KiB blocks
        let sb = RawExtSuperblock::read_from_bytes(&raw).unwrap();
        assert_eq!((sb.blocks_count(), sb.block_bytes()), (1000, None));
    }

    /// A superblock made by mke2fs decodes to what dumpe2fs would say, and encodes back to
    /// the same bytes.
    #[test]
    fn mke2fs_superblock_round_trip() {
        if !have_tool("mke2fs", "e2fsprogs") {
            return;
        }
        let img = TempImage::new("ext-sb", 4 << 20);
        run_env(
            "mke2fs",
            &["-q", "-F", "-t", "ext4", "-b", "1024", "-L", "lbl", img.s()],
            &[("E2FSPROGS_FAKE_TIME", "1600000000")],
        );
        let bytes = img.bytes();
        let raw = &bytes[1024..2048];
        let sb = RawExtSuperblock::read_from_bytes(raw).unwrap();
        assert_eq!(sb.s_magic.get(), EXT_MAGIC);
        assert_eq!(sb.block_bytes(), Some(1024));
        assert_eq!(sb.blocks_count(), 4096);
        assert_eq!(&sb.s_volume_name[..4], b"lbl\0");
        assert_eq!(sb.as_bytes(), raw);
    }
}
