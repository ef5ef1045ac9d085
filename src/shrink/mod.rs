pub mod ext4;
pub mod refuse;
pub mod swap;

/// The bytes a shrink writes inside the partition, computed from reads only (offsets relative to the partition start).
pub struct ShrinkWrites {
    pub writes: Vec<(u64, Vec<u8>)>,
    pub notes: Vec<String>,
}
