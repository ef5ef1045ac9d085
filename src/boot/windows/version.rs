//! The Windows version, for `info`: the SOFTWARE hive's `Microsoft\Windows NT\CurrentVersion`
//! (ProductName, DisplayVersion or ReleaseId, CurrentBuild(Number), UBR, EditionID,
//! InstallationType), as `winver` shows it. Read only; a dirty hive is read as it is on disk
//! (as of its last clean write: the version is not what its logs change).

use serde::Serialize;

use crate::error::Result;
use crate::fs::ntfsfile::NtfsVolume;
use crate::regf::{self, Hive, ValueNode};

/// Where the SOFTWARE hive is.
pub const SOFTWARE_HIVE: &str = "\\Windows\\System32\\config\\SOFTWARE";
/// Largest SOFTWARE hive read (real ones are 30-200 MiB).
const MAX_SOFTWARE_BYTES: u64 = 512 << 20;
/// The key holding the version.
const CURRENT_VERSION: &str = "Microsoft\\Windows NT\\CurrentVersion";

/// What `winver` would say.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct WindowsVersion {
    /// "Windows 10 Pro", "Windows Server 2022 Datacenter".
    pub product_name: Option<String>,
    /// "22H2" (DisplayVersion; ReleaseId "1809" on older builds).
    pub display_version: Option<String>,
    /// "19045".
    pub build: Option<String>,
    /// The update build revision (UBR): the number after the dot.
    pub ubr: Option<u32>,
    /// "Professional", "ServerDatacenter".
    pub edition_id: Option<String>,
    /// "Client", "Server", "Server Core".
    pub installation_type: Option<String>,
}

impl WindowsVersion {
    /// "Windows 10 Pro 22H2 (build 19045.3803)".
    pub fn display(&self) -> String {
        let mut s = self
            .product_name
            .clone()
            .unwrap_or_else(|| "Windows".to_string());
        if let Some(d) = &self.display_version {
            s.push(' ');
            s.push_str(d);
        }
        match (&self.build, self.ubr) {
            (Some(b), Some(u)) => s.push_str(&format!(" (build {b}.{u})")),
            (Some(b), None) => s.push_str(&format!(" (build {b})")),
            _ => {}
        }
        s
    }
}

/// The version of the installation on `vol`; `Ok(None)` when the hive has no CurrentVersion key.
pub fn read_version(vol: &NtfsVolume) -> Result<Option<WindowsVersion>> {
    let bytes = vol.read_file(SOFTWARE_HIVE, MAX_SOFTWARE_BYTES)?;
    version_of_hive(&bytes)
}

/// The version held by the SOFTWARE hive `bytes`.
pub fn version_of_hive(bytes: &[u8]) -> Result<Option<WindowsVersion>> {
    let hive = Hive::parse(bytes)?;
    let Some(key) = hive.open(CURRENT_VERSION)? else {
        return Ok(None);
    };
    let values = hive.values(&key)?;
    let find = |name: &str| values.iter().find(|v| v.name.eq_ignore_ascii_case(name));
    let text = |name: &str| -> Result<Option<String>> {
        match find(name) {
            Some(v) => string_of(&hive, v),
            None => Ok(None),
        }
    };
    let ubr = match find("UBR") {
        Some(v) if v.data_type == regf::REG_DWORD => {
            let d = hive.value_data(v)?;
            d.get(..4)
                .and_then(|b| <[u8; 4]>::try_from(b).ok())
                .map(u32::from_le_bytes)
        }
        _ => None,
    };
    let version = WindowsVersion {
        product_name: text("ProductName")?,
        display_version: match text("DisplayVersion")? {
            Some(d) => Some(d),
            None => text("ReleaseId")?,
        },
        build: match text("CurrentBuild")? {
            Some(b) => Some(b),
            None => text("CurrentBuildNumber")?,
        },
        ubr,
        edition_id: text("EditionID")?,
        installation_type: text("InstallationType")?,
    };
    Ok((version != WindowsVersion::default()).then_some(version))
}

/// A REG_SZ or REG_EXPAND_SZ value as text; `None` for another type or an empty string.
fn string_of(hive: &Hive, v: &ValueNode) -> Result<Option<String>> {
    if v.data_type != regf::REG_SZ && v.data_type != regf::REG_EXPAND_SZ {
        return Ok(None);
    }
    let s = regf::parse_sz(&hive.value_data(v)?)?;
    let s = s.trim().to_string();
    Ok((!s.is_empty()).then_some(s))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)] // tests: a panic is a failed test
mod tests {
    use super::*;

    #[test]
    fn display_forms() {
        let mut v = WindowsVersion {
            product_name: Some("Windows 10 Pro".into()),
            display_version: Some("22H2".into()),
            build: Some("19045".into()),
            ubr: Some(3803),
            ..WindowsVersion::default()
        };
        assert_eq!(v.display(), "Windows 10 Pro 22H2 (build 19045.3803)");
        v.ubr = None;
        v.display_version = None;
        assert_eq!(v.display(), "Windows 10 Pro (build 19045)");
        assert_eq!(WindowsVersion::default().display(), "Windows");
    }

    #[test]
    fn a_hive_without_the_key_has_no_version_and_garbage_is_an_error() {
        // a BCD store is a hive without Microsoft\Windows NT\CurrentVersion
        let bcd = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/testdata/windows-boot/uefi/pybcd-minimal-uefi.BCD"
        ))
        .unwrap();
        assert_eq!(version_of_hive(&bcd).unwrap(), None);
        assert!(version_of_hive(&[0u8; 8192]).is_err());
        let mut cut = bcd.clone();
        cut.truncate(5000);
        assert!(version_of_hive(&cut).is_err());
    }
}
