//! Finding the distribution's signed boot chain (shim, grub, MokManager) in the image's ext2/3/4
//! file systems, and laying it out as an ESP tree (see the parent module's docs for the layout
//! and where the grub.cfg stub goes).

use serde::Serialize;

use super::distro::{Distro, Family};
use super::ext4;
use super::notes::GuestNote;
use crate::disk::{Disk, Window};
use crate::error::{ErrorKind, Result};
use crate::esp::EspTree;
use crate::fs::FsKind;
use crate::table;

/// Signed EFI binaries are a few MiB; refuse to read anything claiming more.
const MAX_EFI_BYTES: u64 = 32 << 20;
/// os-release, BOOTX64.CSV, grub.cfg: small text files.
const MAX_TEXT_BYTES: u64 = 1 << 20;
/// Entries read from one directory listing (`/boot/efi/EFI`).
const MAX_DIR_ENTRIES: usize = 256;

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
pub fn mbr_partitions(tables: &table::Tables, sector_bytes: u32) -> Vec<PartitionRef> {
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

// Debian/Ubuntu: shim-signed, grub-efi-amd64-signed
const DEBIAN_SHIM: &str = "/usr/lib/shim/shimx64.efi.signed";
const DEBIAN_SHIM_LATEST: &str = "/usr/lib/shim/shimx64.efi.signed.latest";
const DEBIAN_MOK: &str = "/usr/lib/shim/mmx64.efi.signed";
const DEBIAN_FALLBACK: &str = "/usr/lib/shim/fbx64.efi.signed";
const DEBIAN_CSV: &str = "/usr/lib/shim/BOOTX64.CSV";
const DEBIAN_GRUB: &str = "/usr/lib/grub/x86_64-efi-signed/grubx64.efi.signed";
const DEBIAN_FILES: [&str; 6] = [
    DEBIAN_SHIM,
    DEBIAN_SHIM_LATEST,
    DEBIAN_MOK,
    DEBIAN_FALLBACK,
    DEBIAN_CSV,
    DEBIAN_GRUB,
];
// SUSE: shim, grub2-x86_64-efi
const SUSE_SHIM: &str = "/usr/share/efi/x86_64/shim.efi";
const SUSE_GRUB: &str = "/usr/share/efi/x86_64/grub.efi";
const SUSE_MOK: &str = "/usr/share/efi/x86_64/MokManager.efi";
const SUSE_FILES: [&str; 3] = [SUSE_SHIM, SUSE_GRUB, SUSE_MOK];
// RHEL family: shim-x64, grub2-efi-x64, in /boot/efi/EFI/<vendor>/
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
        for p in DEBIAN_FILES.into_iter().chain(SUSE_FILES) {
            let max = if p.ends_with(".CSV") {
                MAX_TEXT_BYTES
            } else {
                MAX_EFI_BYTES
            };
            if let Some(b) = ext4::read_file(fs, p, max)? {
                s.files.push((p.to_string(), b));
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
    let s = scans
        .iter()
        .find(|s| (has(s, DEBIAN_SHIM) || has(s, DEBIAN_SHIM_LATEST)) && has(s, DEBIAN_GRUB))?;
    let shim = if has(s, DEBIAN_SHIM) {
        DEBIAN_SHIM
    } else {
        DEBIAN_SHIM_LATEST
    };
    let ubuntu =
        distro.is_some_and(|d| d.id == "ubuntu" || d.id_like.iter().any(|x| x == "ubuntu"));
    let opt = |p: &str| has(s, p).then(|| (s, p.to_string()));
    Some(Chain {
        family: Family::Debian,
        vendor: if ubuntu { "ubuntu" } else { "debian" }.to_string(),
        shim: (s, shim.to_string()),
        loader: (s, DEBIAN_GRUB.to_string()),
        mok: opt(DEBIAN_MOK),
        csv: opt(DEBIAN_CSV),
        fallback: opt(DEBIAN_FALLBACK),
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
        .find(|s| s.file(SUSE_SHIM).is_some() && s.file(SUSE_GRUB).is_some())?;
    let opensuse = distro.is_some_and(|d| d.id.starts_with("opensuse"));
    Some(Chain {
        family: Family::Suse,
        vendor: if opensuse { "opensuse" } else { "sles" }.to_string(),
        shim: (s, SUSE_SHIM.to_string()),
        loader: (s, SUSE_GRUB.to_string()),
        mok: s.file(SUSE_MOK).map(|_| (s, SUSE_MOK.to_string())),
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

/// What the Linux partitions of a disk offered.
struct Survey {
    scans: Vec<Scanned>,
    /// Every Linux partition: "partition 1 (ext4)".
    linux: Vec<String>,
    /// Linux partitions not read, and why.
    unreadable: Vec<String>,
}

impl Survey {
    /// What was looked at, for the reasons of a [`Missing`].
    fn looked(&self) -> String {
        let mut s = format!("Linux partitions: {}", self.linux.join(", "));
        if !self.unreadable.is_empty() {
            s.push_str(&format!("; not read: {}", self.unreadable.join("; ")));
        }
        s
    }
}

/// Scans every Linux partition of `parts` that holds an ext2/3/4 file system. `Err` only for
/// I/O errors of the image itself.
fn survey(data: &dyn Disk, parts: &[PartitionRef]) -> Result<Survey> {
    let mut out = Survey {
        scans: Vec::new(),
        linux: Vec::new(),
        unreadable: Vec::new(),
    };
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
        out.linux.push(format!(
            "{what} ({})",
            kind.map_or("no file system recognised".to_string(), |k| format!(
                "{k:?}"
            )
            .to_lowercase())
        ));
        match kind {
            Some(FsKind::Ext2 | FsKind::Ext3 | FsKind::Ext4) => match scan_ext(&w, &what) {
                Ok(scan) => out.scans.push(Scanned {
                    part: *p,
                    uuid: fs.and_then(|f| f.uuid).unwrap_or_default(),
                    scan,
                }),
                Err(e) if e.kind() == ErrorKind::Io => return Err(e),
                Err(e) => out.unreadable.push(format!("{what}: {e}")),
            },
            Some(k) => out.unreadable.push(format!(
                "{what} holds {}, which vhdtool cannot read",
                format!("{k:?}").to_lowercase()
            )),
            None => {}
        }
    }
    Ok(out)
}

/// The way past a missing boot chain that needs nothing in the guest.
const OVERRIDE_FIX: &str = "or give the ESP's files with --boot-files DIR, or create an empty ESP with --no-boot-files (the disk then does not boot under UEFI until boot files are added)";

/// Why no boot chain was found in `survey`.
fn no_chain(survey: &Survey, distro: Option<Distro>, family: Family) -> Missing {
    let looked = survey.looked();
    let who = distro.as_ref().map_or("the image".to_string(), |d| {
        format!("{} ({})", d.name(), d.source)
    });
    let detail = if survey.scans.is_empty() {
        format!("no readable ext2/3/4 file system, so no boot files could be taken from the image ({looked})")
    } else {
        format!(
            "{who} has no signed shim and grub EFI binaries (looked for {}, /boot/efi/EFI/<vendor>/{{shimx64,grubx64}}.efi, {}; {looked})",
            [DEBIAN_SHIM, DEBIAN_GRUB].join(", "),
            [SUSE_SHIM, SUSE_GRUB].join(", ")
        )
    };
    let fix = if survey.scans.is_empty() {
        OVERRIDE_FIX.trim_start_matches("or ").to_string()
    } else {
        format!(
            "{} and convert again, {OVERRIDE_FIX}",
            family.install_advice()
        )
    };
    Missing {
        distro,
        family,
        detail,
        fix,
    }
}

/// The boot chain of the distribution's family first, then the others.
fn pick_chain<'a>(
    scans: &'a [Scanned],
    distro: Option<&Distro>,
    family: Family,
) -> Option<Chain<'a>> {
    let order: [Family; 3] = match family {
        Family::Rhel => [Family::Rhel, Family::Debian, Family::Suse],
        Family::Suse => [Family::Suse, Family::Debian, Family::Rhel],
        Family::Debian | Family::Unknown => [Family::Debian, Family::Rhel, Family::Suse],
    };
    order.iter().find_map(|f| match f {
        Family::Debian => debian_chain(scans, distro),
        Family::Rhel => rhel_chain(scans),
        Family::Suse => suse_chain(scans, distro),
        Family::Unknown => None,
    })
}

/// The grub directory the stub hands over to: the root's /boot/grub* first, then a separate
/// /boot's /grub* (grub2 first for the RHEL family and SUSE).
fn find_grub<'a>(
    scans: &'a [Scanned],
    root: Option<&'a Scanned>,
    family: Family,
) -> Option<(&'a Scanned, &'static str)> {
    let dirs: [&'static str; 4] = if matches!(family, Family::Rhel | Family::Suse) {
        ["/boot/grub2", "/boot/grub", "/grub2", "/grub"]
    } else {
        ["/boot/grub", "/boot/grub2", "/grub", "/grub2"]
    };
    let mut ranked: Vec<&Scanned> = root.into_iter().collect();
    ranked.extend(
        scans
            .iter()
            .filter(|s| Some(s.part.index) != root.map(|r| r.part.index)),
    );
    dirs.into_iter().find_map(|d| {
        ranked
            .iter()
            .find(|s| s.scan.grub_dirs.iter().any(|g| g == d))
            .map(|s| (*s, d))
    })
}

/// The ESP laid out for `chain`: the files with their sources, and the chain's files left
/// out (with the reason).
struct Layout {
    tree: EspTree,
    used: Vec<UsedFile>,
    omitted: Vec<String>,
}

/// Lays out `chain` and the grub.cfg `stub` as the distribution's installer does, plus the
/// removable media path (see the module docs).
fn lay_out(chain: &Chain, stub: &str) -> Result<Layout> {
    let vendor = &chain.vendor;
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
            bytes: u64::try_from(bytes.len()).unwrap_or(u64::MAX),
        });
        Ok(())
    };
    let bytes_of =
        |f: &(&Scanned, String)| -> Vec<u8> { f.0.file(&f.1).unwrap_or_default().to_vec() };
    let shim = bytes_of(&chain.shim);
    let loader = bytes_of(&chain.loader);
    // the distribution's directory, then the removable media path (shim as BOOTX64.EFI, no
    // BOOTX64.CSV: that file is for shim's fallback, which is not copied)
    let dirs = [
        (vendor.as_str(), shim_name, chain.csv.as_ref()),
        ("BOOT", "BOOTX64.EFI", None),
    ];
    for (dir, shim_as, csv) in dirs {
        put(Some(&chain.shim), &shim, &format!("EFI/{dir}/{shim_as}"))?;
        put(
            Some(&chain.loader),
            &loader,
            &format!("EFI/{dir}/{loader_name}"),
        )?;
        if let Some(m) = &chain.mok {
            put(Some(m), &bytes_of(m), &format!("EFI/{dir}/{mok_name}"))?;
        }
        if let Some(c) = csv {
            put(Some(c), &bytes_of(c), &format!("EFI/{dir}/BOOTX64.CSV"))?;
        }
        put(None, stub.as_bytes(), &format!("EFI/{dir}/grub.cfg"))?;
    }
    let omitted = chain
        .fallback
        .iter()
        .map(|(s, p)| format!(
            "{}:{p} (shim's fallback fbx64.efi): not put in EFI/BOOT, where shim would run it on the first boot to create an NVRAM boot entry and reset the machine",
            s.name()
        ))
        .collect();
    Ok(Layout {
        tree,
        used,
        omitted,
    })
}

/// Finds the distribution's UEFI boot chain in the Linux partitions of `data` (the virtual
/// disk; `parts` from [`mbr_partitions`]) and lays it out as an ESP tree.
///
/// Three outcomes, so callers can keep today's behaviour for non-Linux images: no Linux
/// partition ([`Discovery::NotLinux`]), a boot chain ([`Discovery::Found`]), or Linux partitions
/// without a usable one ([`Discovery::Missing`], with the packages to install in the guest).
/// `Err` only for I/O errors of the image itself.
pub fn find_boot_files(data: &dyn Disk, parts: &[PartitionRef]) -> Result<Discovery> {
    let survey = survey(data, parts)?;
    if survey.linux.is_empty() {
        return Ok(Discovery::NotLinux);
    }
    let scans = &survey.scans;
    let root = scans.iter().find(|s| s.scan.os_release.is_some());
    let distro = root.and_then(|s| {
        s.scan
            .os_release
            .as_deref()
            .map(|t| Distro::parse(t, &format!("{}:/etc/os-release", s.name())))
    });
    let family = distro.as_ref().map_or(Family::Unknown, |d| d.family);
    let Some(chain) = pick_chain(scans, distro.as_ref(), family) else {
        return Ok(Discovery::Missing(no_chain(&survey, distro, family)));
    };
    let Some((grub_fs, grub_dir)) = find_grub(scans, root, chain.family) else {
        return Ok(Discovery::Missing(Missing {
            distro,
            family: chain.family,
            detail: format!(
                "found the signed shim and grub, but no grub.cfg in {} of any readable file system ({})",
                GRUB_DIRS.join(", "),
                survey.looked()
            ),
            fix: format!("generate it in the guest (update-grub, or grub2-mkconfig -o /boot/grub2/grub.cfg), {OVERRIDE_FIX}"),
        }));
    };
    // on the file system grub reads, its directory is /boot/grub* (root) or /grub* (own /boot)
    let stub = format!(
        "search.fs_uuid {} root\nset prefix=($root)'{grub_dir}'\nconfigfile $prefix/grub.cfg\n",
        grub_fs.uuid
    );
    let layout = lay_out(&chain, &stub)?;
    let root_uuid = root.map(|s| s.uuid.clone());
    let boot_uuid =
        (root.map(|r| r.part.index) != Some(grub_fs.part.index)).then(|| grub_fs.uuid.clone());
    let guest_notes = guest_notes(chain.family, &chain.vendor, grub_dir);
    Ok(Discovery::Found(Box::new(LinuxBoot {
        distro,
        family: chain.family,
        vendor: chain.vendor.clone(),
        tree: layout.tree,
        used: layout.used,
        omitted: layout.omitted,
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
