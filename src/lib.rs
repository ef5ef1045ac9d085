//! vhdtool: offline inspection of disk images and conversion of Generation-1 (MBR, BIOS) virtual
//! disks into Generation-2 (GPT, UEFI) ones.
//!
//! Every byte of an image is untrusted: parsers use checked arithmetic and bounded loops and
//! never panic on input. `unsafe` lives in `disk/mmap.rs` only.

pub mod boot;
pub mod bytes;
pub mod checksum;
pub mod cli;
pub mod convert;
pub mod disk;
pub mod error;
pub mod esp;
pub mod finding;
pub mod fs;
pub mod gpt;
pub mod image;
pub mod info;
pub mod mbr;
pub mod regf;
pub mod shrink;
pub mod table;
pub mod units;
pub mod upload;
pub mod vhd;

pub use error::{Error, ErrorKind, Result};
pub use finding::{Finding, Severity};
