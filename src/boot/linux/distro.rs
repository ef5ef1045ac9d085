//! The distribution of a Linux image, from its `/etc/os-release`, and the family whose boot
//! chain it ships.

use serde::Serialize;

/// The distribution families whose boot chains are known here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    /// Debian, Ubuntu and derivatives.
    Debian,
    /// RHEL, CentOS, AlmaLinux, Rocky, Oracle Linux, Fedora.
    Rhel,
    /// SLES, openSUSE.
    Suse,
    Unknown,
}

impl Family {
    /// The packages that ship the signed shim and grub.
    pub fn packages(self) -> &'static str {
        match self {
            Family::Debian => "shim-signed grub-efi-amd64-signed",
            Family::Rhel => "shim-x64 grub2-efi-x64",
            Family::Suse => "shim grub2-x86_64-efi",
            Family::Unknown => {
                "the distribution's signed shim and grub (Debian/Ubuntu: shim-signed \
                 grub-efi-amd64-signed; RHEL family: shim-x64 grub2-efi-x64; SUSE: shim \
                 grub2-x86_64-efi)"
            }
        }
    }

    /// "install shim-signed grub-efi-amd64-signed in the guest (apt-get install ...)".
    pub(super) fn install_advice(self) -> String {
        let p = self.packages();
        match self {
            Family::Debian => format!("install {p} in the guest (apt-get install {p})"),
            Family::Rhel => format!("install {p} in the guest (dnf install {p})"),
            Family::Suse => format!("install {p} in the guest (zypper install {p})"),
            Family::Unknown => format!("install {p} in the guest"),
        }
    }
}

/// The distribution, from `/etc/os-release`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Distro {
    /// `ID` ("debian", "ubuntu", "rhel", "almalinux", "sles", ...).
    pub id: String,
    /// `ID_LIKE`, split on whitespace.
    pub id_like: Vec<String>,
    /// `PRETTY_NAME`, when given.
    pub pretty_name: Option<String>,
    pub family: Family,
    /// Where `os-release` was read ("partition 1:/etc/os-release").
    pub source: String,
}

impl Distro {
    /// Parses os-release (freedesktop.org os-release(5): `KEY=value`, values optionally quoted).
    pub fn parse(text: &str, source: &str) -> Distro {
        let mut id = String::new();
        let mut id_like = Vec::new();
        let mut pretty_name = None;
        for line in text.lines().take(1000) {
            let Some((k, v)) = line.trim().split_once('=') else {
                continue;
            };
            let v = v.trim();
            let v = v
                .strip_prefix('"')
                .and_then(|s| s.strip_suffix('"'))
                .or_else(|| v.strip_prefix('\'').and_then(|s| s.strip_suffix('\'')))
                .unwrap_or(v);
            match k.trim() {
                "ID" => id = v.to_ascii_lowercase(),
                "ID_LIKE" => {
                    id_like = v
                        .split_whitespace()
                        .map(|s| s.to_ascii_lowercase())
                        .collect()
                }
                "PRETTY_NAME" => pretty_name = Some(v.chars().take(200).collect()),
                _ => {}
            }
        }
        let family = family_of(&id, &id_like);
        Distro {
            id,
            id_like,
            pretty_name,
            family,
            source: source.to_string(),
        }
    }

    /// "Debian GNU/Linux 12 (bookworm)" or the id.
    pub fn name(&self) -> &str {
        self.pretty_name.as_deref().unwrap_or(&self.id)
    }
}

fn family_of(id: &str, like: &[String]) -> Family {
    let is = |names: &[&str]| {
        std::iter::once(id)
            .chain(like.iter().map(String::as_str))
            .any(|x| {
                names.contains(&x) || (names.contains(&"opensuse") && x.starts_with("opensuse"))
            })
    };
    if is(&["debian", "ubuntu"]) {
        Family::Debian
    } else if is(&[
        "rhel",
        "centos",
        "fedora",
        "almalinux",
        "rocky",
        "ol",
        "redhat",
    ]) {
        Family::Rhel
    } else if is(&["suse", "sles", "sled", "opensuse"]) {
        Family::Suse
    } else {
        Family::Unknown
    }
}

#[cfg(test)]
#[allow(
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::arithmetic_side_effects,
    clippy::as_conversions
)] // tests: a panic is a failed test
mod tests {
    use super::*;

    #[test]
    fn os_release_families() {
        let d = Distro::parse(
            "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nID=debian\n",
            "p1",
        );
        assert_eq!(d.family, Family::Debian);
        assert_eq!(d.name(), "Debian GNU/Linux 12 (bookworm)");
        let u = Distro::parse("ID=ubuntu\nID_LIKE=debian\n", "p1");
        assert_eq!(u.family, Family::Debian);
        let a = Distro::parse("ID=\"almalinux\"\nID_LIKE=\"rhel centos fedora\"\n", "p1");
        assert_eq!(a.family, Family::Rhel);
        let o = Distro::parse("ID='ol'\n", "p1");
        assert_eq!(o.family, Family::Rhel);
        let s = Distro::parse("ID=\"opensuse-leap\"\nID_LIKE=\"suse opensuse\"\n", "p1");
        assert_eq!(s.family, Family::Suse);
        let sl = Distro::parse("ID=\"sles\"\n", "p1");
        assert_eq!(sl.family, Family::Suse);
        assert_eq!(Distro::parse("ID=arch\n", "p1").family, Family::Unknown);
        assert_eq!(Distro::parse("\0\0garbage", "p1").family, Family::Unknown);
    }

    #[test]
    fn packages_named_per_family() {
        assert_eq!(
            Family::Debian.packages(),
            "shim-signed grub-efi-amd64-signed"
        );
        assert_eq!(Family::Rhel.packages(), "shim-x64 grub2-efi-x64");
        assert_eq!(Family::Suse.packages(), "shim grub2-x86_64-efi");
    }
}
