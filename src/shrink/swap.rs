//! TEMPORARY stub (replaced by the swap engine on merge).
use super::ShrinkWrites;
use crate::disk::Disk;
use crate::error::{Error, Result};
pub fn plan_swap_shrink(_part: &dyn Disk, _new_bytes: u64) -> Result<ShrinkWrites> {
    Err(Error::unsupported(
        "swap shrink is not available in this build",
    ))
}
