//! TEMPORARY stub (replaced by the e2fsprogs engine on merge).
use crate::error::{Error, Result};
use std::path::Path;
pub fn check_tools() -> Result<()> {
    Err(Error::unsupported(
        "ext4 shrink is not available in this build",
    ))
}
pub fn fsck(_image: &Path, _part_offset: u64) -> Result<()> {
    check_tools()
}
pub fn min_size(_image: &Path, _part_offset: u64) -> Result<u64> {
    Err(Error::unsupported(
        "ext4 shrink is not available in this build",
    ))
}
pub fn shrink(
    _image: &Path,
    _part_offset: u64,
    _new_bytes: u64,
    _undo_file: Option<&Path>,
) -> Result<()> {
    check_tools()
}
pub fn undo(_image: &Path, _part_offset: u64, _undo_file: &Path) -> Result<()> {
    check_tools()
}
