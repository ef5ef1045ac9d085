//! CONTRACT placeholder: bounded read-only FAT reader.
use crate::disk::Disk;
use crate::error::Result;

pub struct Fat<'a> {
    _part: &'a dyn Disk,
}

impl<'a> Fat<'a> {
    pub fn open(_part: &'a dyn Disk) -> Result<Fat<'a>> {
        unimplemented!("fat::open")
    }
    pub fn exists(&self, _path: &str) -> Result<bool> {
        unimplemented!("fat::exists")
    }
}
