//! The ESP's files as bcdboot lays them out, taken from the Windows partition itself:
//!
//! | source on the Windows volume | ESP |
//! |---|---|
//! | `\Windows\Boot\EFI\**` (locale folders too) | `EFI/Microsoft/Boot/` |
//! | `\Windows\Boot\Fonts\*` | `EFI/Microsoft/Boot/Fonts/` |
//! | `\Windows\Boot\Resources\**` (Windows 8 and later) | `EFI/Microsoft/Boot/Resources/` |
//! | `\Windows\Boot\EFI\bootmgfw.efi` | also `EFI/Boot/bootx64.efi` |
//!
//! The new store goes to `EFI/Microsoft/Boot/BCD` (added by the caller, once the GPT identity
//! is known). The image's own Microsoft-signed boot manager is copied as it is, so Secure Boot
//! (Trusted Launch) accepts it and it matches the image's winload.efi. Compressed, encrypted
//! and WOF files are refused by the reader with the file named: never copied as raw bytes.

use serde::Serialize;

use crate::error::{Error, Result};
use crate::esp::EspTree;
use crate::fs::ntfsfile::{Limits, NtfsVolume};

/// Where the EFI boot files are on the Windows volume.
pub const BOOT_EFI: &str = "\\Windows\\Boot\\EFI";
/// Their place in the ESP.
pub const ESP_MS_BOOT: &str = "EFI/Microsoft/Boot";
/// The removable-media path a Gen2 VM without a boot entry starts.
pub const ESP_FALLBACK: &str = "EFI/Boot/bootx64.efi";
/// The new store's place in the ESP.
pub const ESP_BCD: &str = "EFI/Microsoft/Boot/BCD";
/// Largest boot file copied (bootmgfw.efi is about 2 MiB, fonts up to 4 MiB).
const MAX_BOOT_FILE_BYTES: u64 = 64 << 20;

/// One copied file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Source {
    /// `\Windows\Boot\EFI\bootmgfw.efi`
    pub ntfs_path: String,
    /// `EFI/Microsoft/Boot/bootmgfw.efi`
    pub esp_path: String,
    pub bytes: u64,
}

/// The ESP tree and where each file came from.
#[derive(Debug, Clone)]
pub struct BootFiles {
    pub tree: EspTree,
    pub sources: Vec<Source>,
}

fn add(
    vol: &NtfsVolume,
    out: &mut BootFiles,
    ntfs_path: &str,
    record: u64,
    esp_path: String,
) -> Result<()> {
    let bytes = vol.read_record_file(record, ntfs_path, MAX_BOOT_FILE_BYTES)?;
    let n = u64::try_from(bytes.len()).unwrap_or(u64::MAX);
    out.tree.add_file(&esp_path, bytes)?;
    out.sources.push(Source {
        ntfs_path: ntfs_path.to_string(),
        esp_path,
        bytes: n,
    });
    Ok(())
}

/// Copy the directory `from` (recursively) to `to` in the ESP.
fn copy_dir(vol: &NtfsVolume, out: &mut BootFiles, from: &str, to: &str) -> Result<()> {
    for e in vol.walk(from, &Limits::default())? {
        let esp = format!("{to}/{}", e.path.replace('\\', "/"));
        if e.is_dir {
            out.tree.add_dir(&esp)?;
        } else {
            add(vol, out, &format!("{from}\\{}", e.path), e.record, esp)?;
        }
    }
    Ok(())
}

/// The bcdboot file set of the Windows volume `vol` (without the store).
pub fn boot_tree(vol: &NtfsVolume) -> Result<BootFiles> {
    let mut out = BootFiles {
        tree: EspTree::new(),
        sources: Vec::new(),
    };
    if !vol.exists(BOOT_EFI)? {
        return Err(Error::invalid(format!(
            "{BOOT_EFI} is missing: the image has no UEFI boot files to copy (a Windows older than 7, or a trimmed image)"
        )));
    }
    copy_dir(vol, &mut out, BOOT_EFI, ESP_MS_BOOT)?;
    for (dir, sub) in [("Fonts", "Fonts"), ("Resources", "Resources")] {
        let from = format!("\\Windows\\Boot\\{dir}");
        if vol.exists(&from)? {
            let to = format!("{ESP_MS_BOOT}/{sub}");
            out.tree.add_dir(&to)?;
            copy_dir(vol, &mut out, &from, &to)?;
        }
    }
    let mgr = format!("{BOOT_EFI}\\bootmgfw.efi");
    let record = vol.lookup(&mgr)?.ok_or_else(|| {
        Error::invalid(format!(
            "{mgr} is missing: there is no UEFI boot manager to copy"
        ))
    })?;
    add(vol, &mut out, &mgr, record, ESP_FALLBACK.to_string())?;
    Ok(out)
}
