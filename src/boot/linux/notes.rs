//! What the guest still needs after its first Generation-2 boot, as typed notes: a caller drops
//! or adds a note by its variant (`--hybrid` drops the ones that need a BIOS boot partition),
//! and renders them with `Display` (JSON: the same text).

use std::fmt;

use serde::{Serialize, Serializer};

/// One thing to do in the guest after the first Generation-2 boot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GuestNote {
    /// Mount the ESP on /boot/efi: its fstab line, with the FAT volume id the plan chose.
    MountEsp { volume_id: u32 },
    /// Debian/Ubuntu: grub-pc stays installed, and its next update fails on a GPT disk without
    /// a BIOS boot partition; switch to the UEFI packages.
    DebianGrubPcNeedsBiosBootPartition,
    /// Debian/Ubuntu: with the ESP mounted, reinstall grub for x86_64-efi.
    DebianReinstallGrubEfi { vendor: String },
    /// RHEL family: grub2-pc cannot be reinstalled on a GPT disk without a BIOS boot
    /// partition; install the UEFI packages.
    RhelGrub2PcNeedsBiosBootPartition,
    /// RHEL family: regenerate grub.cfg for UEFI and register shim in NVRAM.
    RhelRegisterShim { vendor: String, grub_dir: String },
    /// SUSE: switch the boot loader to UEFI (grub2-i386-pc cannot be reinstalled on a GPT disk
    /// without a BIOS boot partition).
    SuseGrub2I386PcNeedsBiosBootPartition,
    /// A distribution not identified: install its UEFI boot loader.
    InstallUefiBootLoader,
    /// `--hybrid`: the BIOS boot partition keeps grub-pc working; keep it and add the UEFI
    /// chain beside it.
    HybridKeepsGrubPc,
}

impl GuestNote {
    /// The notes that hold only while the disk has no BIOS boot partition: a `--hybrid`
    /// conversion, which adds one, drops them.
    pub fn needs_bios_boot_partition(&self) -> bool {
        matches!(
            self,
            GuestNote::DebianGrubPcNeedsBiosBootPartition
                | GuestNote::RhelGrub2PcNeedsBiosBootPartition
                | GuestNote::SuseGrub2I386PcNeedsBiosBootPartition
        )
    }
}

impl fmt::Display for GuestNote {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GuestNote::MountEsp { volume_id } => write!(
                f,
                "mount the ESP: mkdir -p /boot/efi and add to /etc/fstab: UUID={:04X}-{:04X} /boot/efi vfat umask=0077 0 1",
                volume_id >> 16,
                volume_id & 0xffff
            ),
            GuestNote::DebianGrubPcNeedsBiosBootPartition => f.write_str("the BIOS boot loader package grub-pc stays installed: its next update runs grub-install for i386-pc, which fails on a GPT disk without a BIOS boot partition; switch to the UEFI one: apt-get install grub-efi-amd64 grub-efi-amd64-signed shim-signed (removes grub-pc)"),
            GuestNote::DebianReinstallGrubEfi { vendor } => write!(f, "then, with the ESP mounted on /boot/efi: grub-install --target=x86_64-efi --efi-directory=/boot/efi --uefi-secure-boot (refreshes EFI/{vendor}/ and registers EFI/{vendor}/shimx64.efi in NVRAM) and update-grub"),
            GuestNote::RhelGrub2PcNeedsBiosBootPartition => f.write_str("the BIOS boot loader (grub2-pc) cannot be reinstalled on a GPT disk without a BIOS boot partition; make sure shim-x64 and grub2-efi-x64 are installed: dnf install shim-x64 grub2-efi-x64"),
            GuestNote::RhelRegisterShim { vendor, grub_dir } => write!(f, "then, with the ESP mounted on /boot/efi: grub2-mkconfig -o {grub_dir}/grub.cfg (a config generated for BIOS may use linux16/initrd16, which UEFI grub lacks) and efibootmgr -c -d <disk> -p <ESP partition number> -L {vendor} -l '\\EFI\\{vendor}\\shimx64.efi'"),
            GuestNote::SuseGrub2I386PcNeedsBiosBootPartition => f.write_str("switch the boot loader to UEFI: zypper install shim grub2-x86_64-efi, set LOADER_TYPE=\"grub2-efi\" in /etc/sysconfig/bootloader and run update-bootloader --reinit (grub2-i386-pc cannot be reinstalled on a GPT disk without a BIOS boot partition)"),
            GuestNote::InstallUefiBootLoader => f.write_str("install the distribution's UEFI boot loader packages (signed shim and grub) and reinstall the boot loader for x86_64-efi"),
            GuestNote::HybridKeepsGrubPc => f.write_str("--hybrid: the disk has a BIOS boot partition holding GRUB's core.img, so the BIOS loader keeps working and its next update (grub-install for i386-pc on this GPT disk) succeeds; keep it (Debian/Ubuntu: grub-pc) and install the signed UEFI chain beside it (grub-efi-amd64-signed shim-signed; RHEL family: shim-x64 grub2-efi-x64) so that both generations stay bootable"),
        }
    }
}

/// As its text: reports carry the same JSON strings as before the notes were typed.
impl Serialize for GuestNote {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::unwrap_used)] // tests: a panic is a failed test
mod tests {
    use super::*;

    #[test]
    fn esp_note_formats_the_volume_id_as_blkid() {
        let n = GuestNote::MountEsp {
            volume_id: 0x1a2b_3c4d,
        };
        assert!(
            n.to_string().contains("UUID=1A2B-3C4D /boot/efi vfat"),
            "{n}"
        );
        assert_eq!(
            serde_json::to_value(&n).unwrap(),
            serde_json::Value::String(n.to_string())
        );
    }

    #[test]
    fn the_bios_boot_partition_notes_are_the_ones_that_name_it() {
        let all = [
            GuestNote::MountEsp { volume_id: 1 },
            GuestNote::DebianGrubPcNeedsBiosBootPartition,
            GuestNote::DebianReinstallGrubEfi {
                vendor: "debian".into(),
            },
            GuestNote::RhelGrub2PcNeedsBiosBootPartition,
            GuestNote::RhelRegisterShim {
                vendor: "redhat".into(),
                grub_dir: "/boot/grub2".into(),
            },
            GuestNote::SuseGrub2I386PcNeedsBiosBootPartition,
            GuestNote::InstallUefiBootLoader,
            GuestNote::HybridKeepsGrubPc,
        ];
        for n in &all {
            assert_eq!(
                n.needs_bios_boot_partition(),
                n.to_string().contains("without a BIOS boot partition"),
                "{n}"
            );
        }
    }
}
