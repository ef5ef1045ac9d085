//! UEFI boot files taken from a Linux image itself.
//!
//! A Gen1 Linux image usually carries its distribution's Secure Boot chain as packages in the
//! root file system (Debian/Ubuntu: `shim-signed`, `grub-efi-amd64-signed`; RHEL family:
//! `shim-x64`, `grub2-efi-x64`, installed into `/boot/efi/EFI/<vendor>/` which, without an ESP,
//! is a plain directory; SUSE: `shim`, `grub2-x86_64-efi` in `/usr/share/efi/x86_64/`). This
//! module reads the image's ext2/3/4 partitions ([`ext4`]), identifies the distribution from
//! `/etc/os-release`, takes the signed shim and grub (and MokManager), finds the grub.cfg the
//! BIOS boot used, and lays out an ESP as the distribution's installer does, plus the removable
//! media path `EFI/BOOT/BOOTX64.EFI` that a fresh Gen2 VM (no NVRAM entry yet) boots:
//!
//! ```text
//! EFI/<vendor>/shimx64.efi grubx64.efi mmx64.efi BOOTX64.CSV grub.cfg   (SUSE: shim.efi grub.efi MokManager.efi)
//! EFI/BOOT/BOOTX64.EFI (= shim) grubx64.efi mmx64.efi grub.cfg
//! ```
//!
//! Where the grub.cfg stub must be (checked): shim loads the loader (`grubx64.efi`; SUSE's shim
//! `grub.efi`) from its own directory. Debian's signed grub has the built-in prefix
//! `/EFI/debian` (Ubuntu's `/EFI/ubuntu`) on the partition it was loaded from and reads
//! `$prefix/grub.cfg` when that directory exists, else `$cmdpath/grub.cfg`; booted as
//! `EFI/BOOT/BOOTX64.EFI` it therefore reads `EFI/debian/grub.cfg` (QEMU boot proof in
//! tests/boot.rs). The RHEL family's and SUSE's signed grub read `grub.cfg` from the directory
//! they were started from (`$cmdpath`, their prefix `/EFI/<vendor>`). The same stub goes into
//! both `EFI/<vendor>/` and `EFI/BOOT/`, so every one of these finds it. It is the stub
//! `grub-install` writes: `search.fs_uuid <UUID> root`, `set prefix=($root)'/boot/grub'` (or
//! `/grub` when /boot is its own file system; `grub2` for the RHEL family and SUSE) and
//! `configfile $prefix/grub.cfg`, so the image's own grub.cfg keeps deciding what boots.
//!
//! `fbx64.efi` (shim's fallback) is deliberately NOT copied into `EFI/BOOT`: when shim runs as
//! `EFI/BOOT/BOOTX64.EFI` and finds `fbx64.efi` next to it, it runs the fallback, which reads
//! `EFI/*/BOOTX64.CSV`, creates a boot entry in NVRAM and resets the machine. On a VM whose NVRAM
//! is not kept across that reset (a QEMU test with a fresh variable store, a re-created VM) that
//! is a reset loop, and even where it works it writes NVRAM on the first boot. Without it shim
//! loads grub from `EFI/BOOT` directly; the guest registers its own boot entry when it reinstalls
//! its boot loader (see the guest notes).
//!
//! The pieces:
//! - `discover.rs`, `distro.rs`, `ext4.rs`: the boot chain and the distribution, read from the
//!   image's ext2/3/4 file systems; [`resolve`] turns them into an ESP tree, a [`BootCheck`] and
//!   typed [`GuestNote`]s (`notes.rs`) for the caller to map (`convert` does, in its `boot.rs`).
//! - `grubcore.rs`, `hybrid.rs`, `modules.rs`: `--hybrid`, GRUB's i386-pc loader rebuilt for the
//!   GPT disk into a BIOS boot partition ([`modules::hybrid_relocation`]).
//!
//! Nothing here imports from `convert` or `cli`.
//!
//! Every module here reads image bytes (file systems, GRUB's core.img, the MBR gap), so all of
//! them are under the crate's parser lints: no indexing, no unchecked arithmetic, no unwrap, no
//! `as`.
mod discover;
mod distro;
pub mod ext4;
pub mod grubcore;
pub mod hybrid;
pub mod modules;
mod notes;

pub use discover::{
    find_boot_files, mbr_partitions, Discovery, LinuxBoot, Missing, PartitionRef, UsedFile,
};
pub use distro::{Distro, Family};
pub use notes::GuestNote;

use serde::Serialize;

use crate::disk::{Disk, Window};
use crate::error::{ErrorKind, Result};
use crate::esp::EspTree;
use crate::table::{self, TableKind};

/// The id of the check `validate` and `convert` add for the boot files.
pub const CHECK_ID: &str = "boot.files";

/// Where the ESP's files come from, as asked on the command line.
#[derive(Debug, Clone)]
pub enum BootSource {
    /// `--boot-files DIR`: the tree as given.
    Given(EspTree),
    /// `--no-boot-files`: an empty ESP, deliberately.
    Empty,
    /// Neither: take them from the image's Linux partitions, if it has any.
    FromImage,
}

/// The verdict of a [`BootCheck`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Pass,
    Warn,
    Fail,
}

/// A check of the boot layer, for the caller to list among its own (`convert` maps it into
/// its validation; a failure means nothing may be written).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootCheck {
    /// Stable id ([`CHECK_ID`]).
    pub id: &'static str,
    pub verdict: Verdict,
    /// What was found (on a pass, too).
    pub detail: String,
    /// How to get past a failure.
    pub fix: Option<String>,
    /// What kind of refusal a failure is.
    pub kind: ErrorKind,
}

/// The boot files resolved for one image: the tree, and for images that have Linux partitions
/// the `boot.files` check.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub tree: EspTree,
    pub check: Option<BootCheck>,
    pub linux: Option<LinuxBoot>,
}

/// Resolves `source` against the image `file` (a fixed VHD or raw disk file; anything else is
/// left to `validate` to refuse). `sector_bytes`: the logical sector size of a raw image.
pub fn resolve(file: &dyn Disk, source: &BootSource, sector_bytes: u32) -> Result<Resolved> {
    let none = |tree: EspTree| Resolved {
        tree,
        check: None,
        linux: None,
    };
    match source {
        BootSource::Given(t) => return Ok(none(t.clone())),
        BootSource::Empty => return Ok(none(EspTree::new())),
        BootSource::FromImage => {}
    }
    let image = crate::vhd::probe(file);
    if !matches!(
        image.format,
        crate::vhd::Format::Raw | crate::vhd::Format::VhdFixed
    ) {
        return Ok(none(EspTree::new()));
    }
    let data = Window::new(file, 0, image.data_bytes)?;
    let tables = table::read_tables(&data, false);
    if tables.kind != TableKind::Mbr {
        return Ok(none(EspTree::new()));
    }
    let parts = mbr_partitions(&tables, sector_bytes);
    Ok(match find_boot_files(&data, &parts)? {
        Discovery::NotLinux => none(EspTree::new()),
        Discovery::Found(lb) => {
            let files: Vec<&str> = lb
                .used
                .iter()
                .filter(|u| u.source != "generated" && !u.esp_path.starts_with("EFI/BOOT/"))
                .map(|u| u.source.as_str())
                .collect();
            let who = lb
                .distro
                .as_ref()
                .map_or("Linux".to_string(), |d| d.name().to_string());
            let check = BootCheck {
                id: CHECK_ID,
                verdict: Verdict::Pass,
                detail: format!(
                    "{who}: signed boot chain taken from the image ({}), ESP laid out as EFI/{}/ + EFI/BOOT/, grub.cfg stub -> {}",
                    files.join(", "),
                    lb.vendor,
                    lb.grub_cfg
                ),
                fix: None,
                kind: ErrorKind::InvalidInput,
            };
            Resolved {
                tree: lb.tree.clone(),
                check: Some(check),
                linux: Some(*lb),
            }
        }
        Discovery::Missing(m) => Resolved {
            tree: EspTree::new(),
            check: Some(BootCheck {
                id: CHECK_ID,
                verdict: Verdict::Fail,
                detail: m.detail,
                fix: Some(m.fix),
                kind: ErrorKind::InvalidInput,
            }),
            linux: None,
        },
    })
}
