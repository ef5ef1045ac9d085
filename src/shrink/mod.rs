//! Making room at the end of a disk by shrinking the filesystem of the last partition, as
//! MBR2GPT does when there is no room for the ESP and the backup GPT.
//!
//! A shrink is planned from reads only: the result is the list of byte ranges to write inside
//! the partition, which the caller journals and applies like any other region.

pub mod ntfs;

/// The bytes a shrink writes inside the partition, computed from reads only (offsets relative to the partition start).
pub struct ShrinkWrites {
    /// `(offset, bytes)` pairs, in the order they should be applied; they never overlap.
    pub writes: Vec<(u64, Vec<u8>)>,
    /// What the shrink does, one line each, for the plan printed to the user.
    pub notes: Vec<String>,
}
