//! Making room for the ESP by shrinking the last partition, as MBR2GPT does.
//!
//! - NTFS: our own code (`ntfs.rs`): the new boot sectors, `$Bitmap` and `$BadClus` computed
//!   from reads only, written (and journaled) like any other region.
//! - ext2/3/4: e2fsprogs (`ext4.rs`): `resize2fs` on the partition inside the image file, with
//!   its own undo file, which `vhdtool rollback` replays with `e2undo`.
//! - Linux swap (`swap.rs`): a new, smaller header with the same UUID and label.
//! - Everything else is refused with the reason and the alternative (`--room grow`).

pub mod ext4;
pub mod ntfs;
pub mod swap;

/// The bytes a shrink writes inside the partition, computed from reads only (offsets relative to the partition start).
pub struct ShrinkWrites {
    pub writes: Vec<(u64, Vec<u8>)>,
    pub notes: Vec<String>,
}
