//! What the user asked of a conversion.

use serde::Serialize;

use crate::boot::windows::WindowsOptions;
use crate::gpt::Guid;

/// Where the ESP's room comes from, as asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RoomChoice {
    /// Free space if it fits, else shrink the last partition, else grow the disk.
    Auto,
    /// Unallocated space only (a gap of the ESP's size, and room for the backup GPT).
    Free,
    /// Extend the disk past the last partition.
    Grow,
    /// Shrink the last partition (NTFS, ext2/3/4, swap) and put the ESP after it; the disk
    /// size does not change.
    Shrink,
    /// Windows: the System Reserved partition becomes the ESP (reformatted FAT32), as MBR2GPT
    /// does.
    Reuse,
}

/// Windows: whether the System Reserved partition may become the ESP (MBR2GPT's rule).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reusable {
    /// Yes: its MBR number.
    Yes(u32),
    /// No, and why.
    No(String),
}

/// What the user asked for.
#[derive(Debug, Clone)]
pub struct Options {
    pub room: RoomChoice,
    /// ESP size in bytes; `None` = 100 MiB at 512-byte sectors, 260 MiB at 4096.
    pub esp_bytes: Option<u64>,
    /// Logical sector size of a raw image (a VHD is always 512).
    pub sector_bytes: Option<u32>,
    /// Extra MBR type -> GPT type mappings (`--map 0x12=<guid>`), winning over the built-in ones.
    pub maps: Vec<(u8, Guid)>,
    /// Random disk and partition GUIDs instead of ones derived from the image.
    pub random_guids: bool,
    /// Total bytes of the boot files going into the ESP (checked against its size).
    pub boot_files_bytes: u64,
    /// ESP volume label.
    pub esp_label: String,
    /// `auto` never grows the disk (marketplace images, sized SKUs).
    pub no_grow: bool,
    /// The image file, for the shrink steps that run e2fsprogs on it.
    pub image_path: Option<std::path::PathBuf>,
    /// Keep BIOS boot working: GRUB's core.img moves into a BIOS boot partition and the MBR
    /// keeps boot.img in a hybrid MBR (see `hybrid.rs`).
    pub hybrid: bool,
    /// Windows images: which installation, and whether the registry is patched.
    pub windows: WindowsOptions,
    /// Windows images: the System Reserved partition's verdict (`None`: not a Windows image).
    pub reusable: Option<Reusable>,
    /// `--data-disk`: GPT without an ESP (a disk with no OS; Gen2 VMs attach it as it is).
    pub data_disk: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            room: RoomChoice::Auto,
            esp_bytes: None,
            sector_bytes: None,
            maps: Vec::new(),
            random_guids: false,
            boot_files_bytes: 0,
            esp_label: "SYSTEM".to_string(),
            no_grow: false,
            image_path: None,
            hybrid: false,
            windows: WindowsOptions::default(),
            reusable: None,
            data_disk: false,
        }
    }
}
