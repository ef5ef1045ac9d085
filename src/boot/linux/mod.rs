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

pub mod ext4;
pub mod grubcore;
pub mod hybrid;
pub mod modules;
mod notes;

pub use notes::GuestNote;

use serde::Serialize;

use crate::disk::{Disk, Window};
use crate::error::{ErrorKind, Result};
use crate::esp::EspTree;
use crate::fs::FsKind;
use crate::info::{self, TableKind};

/// Signed EFI binaries are a few MiB; refuse to read anything claiming more.
const MAX_EFI_BYTES: u64 = 32 << 20;
/// os-release, BOOTX64.CSV, grub.cfg: small text files.
const MAX_TEXT_BYTES: u64 = 1 << 20;
/// Entries read from one directory listing (`/boot/efi/EFI`).
const MAX_DIR_ENTRIES: usize = 256;

/// The id of the check `validate` and `convert` add for the boot files.
pub const CHECK_ID: &str = "boot.files";

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
    fn install_advice(self) -> String {
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

/// One data partition of the image, in bytes of the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionRef {
    /// MBR numbering (1-4 primaries, 5.. logicals).
    pub index: u32,
    pub offset: u64,
    pub length: u64,
    pub type_id: u8,
}

/// The data partitions of an MBR disk (extended containers and empty slots left out).
pub fn mbr_partitions(tables: &info::Tables, sector_bytes: u32) -> Vec<PartitionRef> {
    let sbu = u64::from(sector_bytes);
    let Some(m) = tables.mbr.as_ref() else {
        return Vec::new();
    };
    m.primaries
        .iter()
        .chain(m.logicals.iter())
        .filter(|p| !p.extended && p.sectors > 0 && p.type_id != 0)
        .filter_map(|p| {
            Some(PartitionRef {
                index: p.index,
                offset: p.start_lba.checked_mul(sbu)?,
                length: p.sectors.checked_mul(sbu)?,
                type_id: p.type_id,
            })
        })
        .collect()
}

/// A file put into the ESP, and where it came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UsedFile {
    /// "partition 1:/usr/lib/shim/shimx64.efi.signed", or "generated" for the grub.cfg stub.
    pub source: String,
    /// "EFI/debian/shimx64.efi".
    pub esp_path: String,
    pub bytes: u64,
}

/// The boot files found in a Linux image, laid out as an ESP tree.
#[derive(Debug, Clone, Serialize)]
pub struct LinuxBoot {
    /// `None` when no readable file system holds an os-release (the files were still found).
    pub distro: Option<Distro>,
    pub family: Family,
    /// The ESP directory of the distribution ("debian", "ubuntu", "redhat", "sles", ...).
    pub vendor: String,
    #[serde(skip)]
    pub tree: EspTree,
    pub used: Vec<UsedFile>,
    /// Files of the boot chain found but deliberately not copied, with the reason.
    pub omitted: Vec<String>,
    /// The file system holding os-release (the root), as blkid prints its UUID.
    pub root_uuid: Option<String>,
    /// The file system holding grub's directory when it is not the root (a separate /boot).
    pub boot_uuid: Option<String>,
    /// The grub.cfg the stub hands over to ("partition 1:/boot/grub/grub.cfg").
    pub grub_cfg: String,
    /// The stub written to `EFI/<vendor>/grub.cfg` and `EFI/BOOT/grub.cfg`.
    pub stub: String,
    /// What the guest still needs after its first Gen2 boot.
    pub guest_notes: Vec<GuestNote>,
}

/// Why no boot files came out of an image that has Linux partitions.
#[derive(Debug, Clone, Serialize)]
pub struct Missing {
    pub distro: Option<Distro>,
    pub family: Family,
    /// What is missing and what was looked at.
    pub detail: String,
    /// How to get past it.
    pub fix: String,
}

/// The outcome of [`find_boot_files`].
#[derive(Debug, Clone)]
pub enum Discovery {
    /// No Linux partition at all (a Windows image, say): nothing to take.
    NotLinux,
    Found(Box<LinuxBoot>),
    /// Linux partitions, but no usable boot chain in them.
    Missing(Missing),
}

/// What one readable ext file system offered.
#[derive(Default)]
struct FsScan {
    os_release: Option<String>,
    /// `(path, bytes)` of every candidate boot file present.
    files: Vec<(String, Vec<u8>)>,
    /// grub directories present (those holding a grub.cfg): "/boot/grub", "/grub2", ...
    grub_dirs: Vec<String>,
    /// vendor directories under /boot/efi/EFI (or /efi/EFI on a separate /boot)
    efi_vendors: Vec<(String, String)>,
}

const DEBIAN_FILES: &[&str] = &[
    "/usr/lib/shim/shimx64.efi.signed",
    "/usr/lib/shim/shimx64.efi.signed.latest",
    "/usr/lib/shim/mmx64.efi.signed",
    "/usr/lib/shim/fbx64.efi.signed",
    "/usr/lib/shim/BOOTX64.CSV",
    "/usr/lib/grub/x86_64-efi-signed/grubx64.efi.signed",
];
const SUSE_FILES: &[&str] = &[
    "/usr/share/efi/x86_64/shim.efi",
    "/usr/share/efi/x86_64/grub.efi",
    "/usr/share/efi/x86_64/MokManager.efi",
];
const RHEL_NAMES: &[&str] = &[
    "shimx64.efi",
    "grubx64.efi",
    "mmx64.efi",
    "BOOTX64.CSV",
    "fbx64.efi",
];
const GRUB_DIRS: &[&str] = &["/boot/grub", "/boot/grub2", "/grub", "/grub2"];

fn scan_ext(part: &dyn Disk, what: &str) -> Result<FsScan> {
    ext4::with_ext4(part, what, |fs| {
        let mut s = FsScan::default();
        for p in ["/etc/os-release", "/usr/lib/os-release"] {
            if let Some(b) = ext4::read_file(fs, p, MAX_TEXT_BYTES)? {
                s.os_release = Some(String::from_utf8_lossy(&b).into_owned());
                break;
            }
        }
        for p in DEBIAN_FILES.iter().chain(SUSE_FILES) {
            let max = if p.ends_with(".CSV") {
                MAX_TEXT_BYTES
            } else {
                MAX_EFI_BYTES
            };
            if let Some(b) = ext4::read_file(fs, p, max)? {
                s.files.push(((*p).to_string(), b));
            }
        }
        for base in ["/boot/efi/EFI", "/efi/EFI"] {
            for vendor in ext4::list_dir(fs, base, MAX_DIR_ENTRIES)? {
                let dir = format!("{base}/{vendor}");
                let mut any = false;
                for name in RHEL_NAMES {
                    let p = format!("{dir}/{name}");
                    let max = if name.ends_with(".CSV") {
                        MAX_TEXT_BYTES
                    } else {
                        MAX_EFI_BYTES
                    };
                    if let Some(b) = ext4::read_file(fs, &p, max)? {
                        s.files.push((p, b));
                        any = true;
                    }
                }
                if any {
                    s.efi_vendors.push((vendor, dir));
                }
            }
        }
        for d in GRUB_DIRS {
            if ext4::read_file(fs, &format!("{d}/grub.cfg"), MAX_TEXT_BYTES)?.is_some() {
                s.grub_dirs.push((*d).to_string());
            }
        }
        Ok(s)
    })
}

/// A scanned partition.
struct Scanned {
    part: PartitionRef,
    uuid: String,
    scan: FsScan,
}

impl Scanned {
    fn name(&self) -> String {
        format!("partition {}", self.part.index)
    }
    fn file(&self, path: &str) -> Option<&[u8]> {
        self.scan
            .files
            .iter()
            .find(|(p, _)| p == path)
            .map(|(_, b)| b.as_slice())
    }
}

/// The boot chain picked: (source partition, source path, ESP name) per file.
struct Chain<'a> {
    family: Family,
    vendor: String,
    /// shim, loader, MokManager?, csv?, fallback?
    shim: (&'a Scanned, String),
    loader: (&'a Scanned, String),
    mok: Option<(&'a Scanned, String)>,
    csv: Option<(&'a Scanned, String)>,
    fallback: Option<(&'a Scanned, String)>,
}

fn debian_chain<'a>(scans: &'a [Scanned], distro: Option<&Distro>) -> Option<Chain<'a>> {
    let has = |s: &Scanned, p: &str| s.file(p).is_some();
    let s = scans.iter().find(|s| {
        (has(s, DEBIAN_FILES[0]) || has(s, DEBIAN_FILES[1])) && has(s, DEBIAN_FILES[5])
    })?;
    let shim = if has(s, DEBIAN_FILES[0]) {
        DEBIAN_FILES[0]
    } else {
        DEBIAN_FILES[1]
    };
    let ubuntu =
        distro.is_some_and(|d| d.id == "ubuntu" || d.id_like.iter().any(|x| x == "ubuntu"));
    let opt = |p: &str| has(s, p).then(|| (s, p.to_string()));
    Some(Chain {
        family: Family::Debian,
        vendor: if ubuntu { "ubuntu" } else { "debian" }.to_string(),
        shim: (s, shim.to_string()),
        loader: (s, DEBIAN_FILES[5].to_string()),
        mok: opt(DEBIAN_FILES[2]),
        csv: opt(DEBIAN_FILES[4]),
        fallback: opt(DEBIAN_FILES[3]),
    })
}

fn rhel_chain(scans: &[Scanned]) -> Option<Chain<'_>> {
    for s in scans {
        for (vendor, dir) in &s.scan.efi_vendors {
            if vendor.eq_ignore_ascii_case("BOOT") {
                continue;
            }
            let p = |n: &str| format!("{dir}/{n}");
            if s.file(&p("shimx64.efi")).is_none() || s.file(&p("grubx64.efi")).is_none() {
                continue;
            }
            let opt = |n: &str| s.file(&p(n)).map(|_| (s, p(n)));
            let base = dir.trim_end_matches(vendor.as_str());
            let fb = format!("{base}BOOT/fbx64.efi");
            return Some(Chain {
                family: Family::Rhel,
                vendor: vendor.clone(),
                shim: (s, p("shimx64.efi")),
                loader: (s, p("grubx64.efi")),
                mok: opt("mmx64.efi"),
                csv: opt("BOOTX64.CSV"),
                fallback: s.file(&fb).map(|_| (s, fb.clone())),
            });
        }
    }
    None
}

fn suse_chain<'a>(scans: &'a [Scanned], distro: Option<&Distro>) -> Option<Chain<'a>> {
    let s = scans
        .iter()
        .find(|s| s.file(SUSE_FILES[0]).is_some() && s.file(SUSE_FILES[1]).is_some())?;
    let opensuse = distro.is_some_and(|d| d.id.starts_with("opensuse"));
    Some(Chain {
        family: Family::Suse,
        vendor: if opensuse { "opensuse" } else { "sles" }.to_string(),
        shim: (s, SUSE_FILES[0].to_string()),
        loader: (s, SUSE_FILES[1].to_string()),
        mok: s
            .file(SUSE_FILES[2])
            .map(|_| (s, SUSE_FILES[2].to_string())),
        csv: None,
        fallback: None,
    })
}

/// Is this partition Linux's (by type, or by a Linux-only file system)?
fn linux_kind(type_id: u8, kind: Option<FsKind>) -> bool {
    matches!(type_id, 0x83 | 0x8e | 0xfd)
        || matches!(
            kind,
            Some(
                FsKind::Ext2
                    | FsKind::Ext3
                    | FsKind::Ext4
                    | FsKind::Xfs
                    | FsKind::Btrfs
                    | FsKind::Lvm2
                    | FsKind::Luks1
                    | FsKind::Luks2
            )
        )
}

/// Finds the distribution's UEFI boot chain in the Linux partitions of `data` (the virtual
/// disk; `parts` from [`mbr_partitions`]) and lays it out as an ESP tree.
///
/// Three outcomes, so callers can keep today's behaviour for non-Linux images: no Linux
/// partition ([`Discovery::NotLinux`]), a boot chain ([`Discovery::Found`]), or Linux partitions
/// without a usable one ([`Discovery::Missing`], with the packages to install in the guest).
/// `Err` only for I/O errors of the image itself.
pub fn find_boot_files(data: &dyn Disk, parts: &[PartitionRef]) -> Result<Discovery> {
    let mut scans = Vec::new();
    let mut linux = Vec::new();
    let mut unreadable = Vec::new();
    for p in parts {
        let w = match Window::new(data, p.offset, p.length) {
            Ok(w) => w,
            Err(_) => continue,
        };
        let fs = crate::fs::probe(&w);
        let kind = fs.as_ref().map(|f| f.kind);
        if !linux_kind(p.type_id, kind) {
            continue;
        }
        let what = format!("partition {}", p.index);
        linux.push(format!(
            "{what} ({})",
            kind.map_or("no file system recognised".to_string(), |k| format!(
                "{k:?}"
            )
            .to_lowercase())
        ));
        match kind {
            Some(FsKind::Ext2 | FsKind::Ext3 | FsKind::Ext4) => match scan_ext(&w, &what) {
                Ok(scan) => scans.push(Scanned {
                    part: *p,
                    uuid: fs.and_then(|f| f.uuid).unwrap_or_default(),
                    scan,
                }),
                Err(e) if e.kind() == ErrorKind::Io => return Err(e),
                Err(e) => unreadable.push(format!("{what}: {e}")),
            },
            Some(k) => unreadable.push(format!(
                "{what} holds {}, which vhdtool cannot read",
                format!("{k:?}").to_lowercase()
            )),
            None => {}
        }
    }
    if linux.is_empty() {
        return Ok(Discovery::NotLinux);
    }

    let root = scans.iter().find(|s| s.scan.os_release.is_some());
    let distro = root.and_then(|s| {
        s.scan
            .os_release
            .as_deref()
            .map(|t| Distro::parse(t, &format!("{}:/etc/os-release", s.name())))
    });
    let family = distro.as_ref().map_or(Family::Unknown, |d| d.family);
    let order: [Family; 3] = match family {
        Family::Rhel => [Family::Rhel, Family::Debian, Family::Suse],
        Family::Suse => [Family::Suse, Family::Debian, Family::Rhel],
        Family::Debian | Family::Unknown => [Family::Debian, Family::Rhel, Family::Suse],
    };
    let chain = order.iter().find_map(|f| match f {
        Family::Debian => debian_chain(&scans, distro.as_ref()),
        Family::Rhel => rhel_chain(&scans),
        Family::Suse => suse_chain(&scans, distro.as_ref()),
        Family::Unknown => None,
    });
    let looked = {
        let mut s = format!("Linux partitions: {}", linux.join(", "));
        if !unreadable.is_empty() {
            s.push_str(&format!("; not read: {}", unreadable.join("; ")));
        }
        s
    };
    let override_fix = "or give the ESP's files with --boot-files DIR, or create an empty ESP with --no-boot-files (the disk then does not boot under UEFI until boot files are added)";
    let Some(chain) = chain else {
        let who = distro.as_ref().map_or("the image".to_string(), |d| {
            format!("{} ({})", d.name(), d.source)
        });
        let detail = if scans.is_empty() {
            format!("no readable ext2/3/4 file system, so no boot files could be taken from the image ({looked})")
        } else {
            format!(
                "{who} has no signed shim and grub EFI binaries (looked for {}, /boot/efi/EFI/<vendor>/{{shimx64,grubx64}}.efi, {}; {looked})",
                [DEBIAN_FILES[0], DEBIAN_FILES[5]].join(", "),
                [SUSE_FILES[0], SUSE_FILES[1]].join(", ")
            )
        };
        let fix = if scans.is_empty() {
            override_fix.trim_start_matches("or ").to_string()
        } else {
            format!(
                "{} and convert again, {override_fix}",
                family.install_advice()
            )
        };
        return Ok(Discovery::Missing(Missing {
            distro,
            family,
            detail,
            fix,
        }));
    };

    // grub.cfg: the root's /boot/grub* first, then a separate /boot's /grub*
    let grub2_first = matches!(chain.family, Family::Rhel | Family::Suse);
    let dirs: Vec<&str> = if grub2_first {
        vec!["/boot/grub2", "/boot/grub", "/grub2", "/grub"]
    } else {
        vec!["/boot/grub", "/boot/grub2", "/grub", "/grub2"]
    };
    let mut ranked: Vec<&Scanned> = root.into_iter().collect();
    ranked.extend(
        scans
            .iter()
            .filter(|s| Some(s.part.index) != root.map(|r| r.part.index)),
    );
    let grub = dirs.iter().find_map(|d| {
        ranked
            .iter()
            .find(|s| s.scan.grub_dirs.iter().any(|g| g == d))
            .map(|s| (*s, *d))
    });
    let Some((grub_fs, grub_dir)) = grub else {
        return Ok(Discovery::Missing(Missing {
            distro,
            family: chain.family,
            detail: format!(
                "found the signed shim and grub, but no grub.cfg in {} of any readable file system ({looked})",
                GRUB_DIRS.join(", ")
            ),
            fix: format!("generate it in the guest (update-grub, or grub2-mkconfig -o /boot/grub2/grub.cfg), {override_fix}"),
        }));
    };
    // on the file system grub reads, its directory is /boot/grub* (root) or /grub* (own /boot)
    let stub = format!(
        "search.fs_uuid {} root\nset prefix=($root)'{grub_dir}'\nconfigfile $prefix/grub.cfg\n",
        grub_fs.uuid
    );

    let vendor = chain.vendor.clone();
    let (shim_name, loader_name, mok_name) = match chain.family {
        Family::Suse => ("shim.efi", "grub.efi", "MokManager.efi"),
        _ => ("shimx64.efi", "grubx64.efi", "mmx64.efi"),
    };
    let mut tree = EspTree::new();
    let mut used = Vec::new();
    let mut put = |from: Option<&(&Scanned, String)>, bytes: &[u8], esp: &str| -> Result<()> {
        tree.add_file(esp, bytes.to_vec())?;
        used.push(UsedFile {
            source: from.map_or("generated".to_string(), |(s, p)| {
                format!("{}:{p}", s.name())
            }),
            esp_path: esp.to_string(),
            bytes: bytes.len() as u64,
        });
        Ok(())
    };
    let bytes_of =
        |f: &(&Scanned, String)| -> Vec<u8> { f.0.file(&f.1).unwrap_or_default().to_vec() };
    let shim = bytes_of(&chain.shim);
    let loader = bytes_of(&chain.loader);
    put(
        Some(&chain.shim),
        &shim,
        &format!("EFI/{vendor}/{shim_name}"),
    )?;
    put(
        Some(&chain.loader),
        &loader,
        &format!("EFI/{vendor}/{loader_name}"),
    )?;
    if let Some(m) = &chain.mok {
        put(Some(m), &bytes_of(m), &format!("EFI/{vendor}/{mok_name}"))?;
    }
    if let Some(c) = &chain.csv {
        put(Some(c), &bytes_of(c), &format!("EFI/{vendor}/BOOTX64.CSV"))?;
    }
    put(None, stub.as_bytes(), &format!("EFI/{vendor}/grub.cfg"))?;
    put(Some(&chain.shim), &shim, "EFI/BOOT/BOOTX64.EFI")?;
    put(
        Some(&chain.loader),
        &loader,
        &format!("EFI/BOOT/{loader_name}"),
    )?;
    if let Some(m) = &chain.mok {
        put(Some(m), &bytes_of(m), &format!("EFI/BOOT/{mok_name}"))?;
    }
    put(None, stub.as_bytes(), "EFI/BOOT/grub.cfg")?;
    let mut omitted = Vec::new();
    if let Some((s, p)) = &chain.fallback {
        omitted.push(format!(
            "{}:{p} (shim's fallback fbx64.efi): not put in EFI/BOOT, where shim would run it on the first boot to create an NVRAM boot entry and reset the machine",
            s.name()
        ));
    }

    let root_uuid = root.map(|s| s.uuid.clone());
    let boot_uuid =
        (root.map(|r| r.part.index) != Some(grub_fs.part.index)).then(|| grub_fs.uuid.clone());
    let guest_notes = guest_notes(chain.family, &vendor, grub_dir);
    Ok(Discovery::Found(Box::new(LinuxBoot {
        distro,
        family: chain.family,
        vendor,
        tree,
        used,
        omitted,
        root_uuid,
        boot_uuid,
        grub_cfg: format!("{}:{grub_dir}/grub.cfg", grub_fs.name()),
        stub,
        guest_notes,
    })))
}

/// What the guest needs after its first Gen2 boot (the ESP's fstab line is added by
/// [`LinuxBoot::add_esp_note`], once the ESP's volume id is known).
fn guest_notes(family: Family, vendor: &str, grub_dir: &str) -> Vec<GuestNote> {
    match family {
        Family::Debian => vec![
            GuestNote::DebianGrubPcNeedsBiosBootPartition,
            GuestNote::DebianReinstallGrubEfi {
                vendor: vendor.to_string(),
            },
        ],
        Family::Rhel => vec![
            GuestNote::RhelGrub2PcNeedsBiosBootPartition,
            GuestNote::RhelRegisterShim {
                vendor: vendor.to_string(),
                grub_dir: grub_dir.to_string(),
            },
        ],
        Family::Suse => vec![GuestNote::SuseGrub2I386PcNeedsBiosBootPartition],
        Family::Unknown => vec![GuestNote::InstallUefiBootLoader],
    }
}

impl LinuxBoot {
    /// Adds the note on mounting the ESP, whose FAT volume id the plan decides.
    pub fn add_esp_note(&mut self, esp_volume_id: u32) {
        self.guest_notes.insert(
            0,
            GuestNote::MountEsp {
                volume_id: esp_volume_id,
            },
        );
    }

    /// The human form: distribution, files and their sources, notes.
    pub fn render(&self) -> String {
        use std::fmt::Write;
        let mut o = String::new();
        let who = self.distro.as_ref().map_or(
            "distribution not identified (no readable os-release)".to_string(),
            |d| format!("{} (ID={}, from {})", d.name(), d.id, d.source),
        );
        let _ = writeln!(o, "\nboot files from the image: {who}");
        for u in &self.used {
            let _ = writeln!(
                o,
                "  {:<28} <- {} ({} bytes)",
                u.esp_path, u.source, u.bytes
            );
        }
        let _ = writeln!(o, "  grub.cfg stub hands over to {}", self.grub_cfg);
        for x in &self.omitted {
            let _ = writeln!(o, "  not copied: {x}");
        }
        if !self.guest_notes.is_empty() {
            let _ = writeln!(o, "\nin the guest, after the first Generation-2 boot");
            for n in &self.guest_notes {
                let _ = writeln!(o, "  - {n}");
            }
        }
        o
    }
}

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
    let tables = info::read_tables(&data, false);
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

#[cfg(test)]
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

    #[test]
    fn esp_note_formats_the_volume_id_as_blkid() {
        let mut lb = LinuxBoot {
            distro: None,
            family: Family::Debian,
            vendor: "debian".into(),
            tree: EspTree::new(),
            used: Vec::new(),
            omitted: Vec::new(),
            root_uuid: None,
            boot_uuid: None,
            grub_cfg: String::new(),
            stub: String::new(),
            guest_notes: Vec::new(),
        };
        lb.add_esp_note(0x1a2b_3c4d);
        assert_eq!(
            lb.guest_notes[0],
            GuestNote::MountEsp {
                volume_id: 0x1a2b_3c4d
            }
        );
    }

    #[test]
    fn not_linux_without_linux_partitions() {
        let d = crate::disk::MemDisk::new(vec![0; 1 << 20]);
        let parts = [PartitionRef {
            index: 1,
            offset: 512 * 64,
            length: 512 * 1024,
            type_id: 0x07,
        }];
        assert!(matches!(
            find_boot_files(&d, &parts).unwrap(),
            Discovery::NotLinux
        ));
        // a Linux type without a file system: Linux, nothing readable -> Missing
        let parts = [PartitionRef {
            type_id: 0x83,
            ..parts[0]
        }];
        match find_boot_files(&d, &parts).unwrap() {
            Discovery::Missing(m) => assert!(m.fix.contains("--boot-files"), "{}", m.fix),
            other => panic!("{other:?}"),
        }
    }
}
