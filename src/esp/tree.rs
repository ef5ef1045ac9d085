//! The file tree that goes into an ESP: built from a staging directory or in code, checked
//! against what FAT can hold, and kept sorted so that the image built from it is deterministic.
//!
//! Names follow the VFAT long-name rules (fatgen103 section 7; Windows' file-naming rules):
//! 1-255 UTF-16 units, none of `" * / : < > ? \ |` nor control characters, no leading space and
//! no trailing space or dot (Windows strips those, so such a file could not be opened again).
//! FAT is case-insensitive: two names that differ only in case are refused.

use std::collections::BTreeMap;
use std::path::Path;

use crate::error::{Error, Result};

/// Longest long file name, in UTF-16 units (fatgen103 section 7).
pub const MAX_NAME_UTF16: usize = 255;
/// Deepest directory nesting accepted (boot paths are 3-4 levels deep; this bounds recursion).
pub const MAX_DEPTH: usize = 32;
/// Most entries (files and directories) in one tree; bounds memory and loops.
pub const MAX_TREE_ENTRIES: usize = 65_536;
/// Largest total of file bytes in one tree: the largest ESP we build (see [`super::MAX_ESP_BYTES`]).
pub const MAX_TREE_BYTES: u64 = super::MAX_ESP_BYTES;
/// Largest FAT file (fatgen103: DIR_FileSize is 32 bits).
pub const MAX_FILE_BYTES: u64 = 0xffff_ffff;

/// Characters that no FAT long name may contain (besides controls 0x00-0x1F).
const FORBIDDEN_CHARS: &[char] = &['"', '*', '/', ':', '<', '>', '?', '\\', '|'];

/// One node of the tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EspNode {
    File(Vec<u8>),
    Dir(EspDir),
}

/// A directory: children keyed by their case-folded name, so iteration order is deterministic
/// and case-insensitive duplicates are caught.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EspDir {
    children: BTreeMap<String, (String, EspNode)>,
}

impl EspDir {
    /// Children in deterministic (case-folded name) order: `(name as given, node)`.
    pub fn entries(&self) -> impl Iterator<Item = (&str, &EspNode)> {
        self.children
            .values()
            .map(|(name, node)| (name.as_str(), node))
    }

    pub fn len(&self) -> usize {
        self.children.len()
    }

    pub fn is_empty(&self) -> bool {
        self.children.is_empty()
    }

    fn get(&self, name: &str) -> Option<&(String, EspNode)> {
        self.children.get(&fold(name))
    }
}

/// The files and directories to copy into an ESP.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EspTree {
    root: EspDir,
    entries: usize,
    file_bytes: u64,
}

impl EspTree {
    /// An empty tree (an ESP with only a volume label).
    pub fn new() -> Self {
        Self::default()
    }

    /// The root directory.
    pub fn root(&self) -> &EspDir {
        &self.root
    }

    /// Number of files and directories (the root not counted).
    pub fn entry_count(&self) -> usize {
        self.entries
    }

    /// Sum of the file sizes.
    pub fn file_bytes(&self) -> u64 {
        self.file_bytes
    }

    /// Add a file at `path_in_esp` ("EFI/BOOT/BOOTX64.EFI"; `/` or `\` separate components, a
    /// leading separator is allowed). Missing parent directories are created. Fails if a file or
    /// directory of that name (compared case-insensitively) already exists, or if the name is
    /// one FAT cannot hold.
    pub fn add_file(&mut self, path_in_esp: &str, bytes: Vec<u8>) -> Result<()> {
        let len = crate::units::len_u64(bytes.len());
        if len > MAX_FILE_BYTES {
            return Err(Error::invalid(format!(
                "ESP file {path_in_esp:?}: {len} bytes, FAT32 files hold at most {MAX_FILE_BYTES}"
            )));
        }
        let total = self.file_bytes.saturating_add(len);
        if total > MAX_TREE_BYTES {
            return Err(Error::invalid(format!(
                "ESP tree: adding {path_in_esp:?} makes {total} bytes of files, more than the \
                 largest ESP this tool builds ({MAX_TREE_BYTES} bytes)"
            )));
        }
        let (parents, name) = split_path(path_in_esp)?;
        let dir = make_dirs(&mut self.root, &mut self.entries, path_in_esp, &parents)?;
        let key = fold(name);
        if let Some((existing, _)) = dir.children.get(&key) {
            return Err(Error::conflict(format!(
                "ESP path {path_in_esp:?}: {existing:?} already exists (FAT names are \
                 case-insensitive)"
            )));
        }
        check_entry_budget(self.entries, path_in_esp)?;
        dir.children
            .insert(key, (name.to_string(), EspNode::File(bytes)));
        // Bounded by check_entry_budget just above.
        self.entries = self.entries.saturating_add(1);
        self.file_bytes = total;
        Ok(())
    }

    /// Add a directory (and its missing parents). Adding an existing directory is a no-op;
    /// a file in the way is an error.
    pub fn add_dir(&mut self, path_in_esp: &str) -> Result<()> {
        let (mut parents, name) = split_path(path_in_esp)?;
        parents.push(name);
        make_dirs(&mut self.root, &mut self.entries, path_in_esp, &parents)?;
        Ok(())
    }

    /// Is there a file or directory at `path_in_esp` (case-insensitive)?
    pub fn contains(&self, path_in_esp: &str) -> bool {
        self.get(path_in_esp).is_some()
    }

    /// The node at `path_in_esp` (case-insensitive), if any.
    pub fn get(&self, path_in_esp: &str) -> Option<&EspNode> {
        let (parents, name) = split_path(path_in_esp).ok()?;
        let mut dir = &self.root;
        for p in parents {
            match dir.get(p) {
                Some((_, EspNode::Dir(d))) => dir = d,
                _ => return None,
            }
        }
        dir.get(name).map(|(_, node)| node)
    }

    /// Read a staging directory: every regular file and subdirectory below `path`, recursively,
    /// in sorted order. Symbolic links are refused rather than followed (a link can point
    /// outside the staging directory or form a cycle; copy the targets with `cp -rL` first),
    /// and so are sockets, FIFOs and device nodes. Names must be valid UTF-8 and FAT names.
    pub fn from_dir(path: &Path) -> Result<EspTree> {
        let meta = std::fs::metadata(path).map_err(|e| {
            Error::io(
                format!("reading ESP source directory {}", path.display()),
                e,
            )
        })?;
        if !meta.is_dir() {
            return Err(Error::invalid(format!(
                "ESP source {}: expected a directory, found a file",
                path.display()
            )));
        }
        let mut tree = EspTree::new();
        tree.read_dir_into(path, "", 0)?;
        Ok(tree)
    }

    fn read_dir_into(&mut self, dir: &Path, prefix: &str, depth: usize) -> Result<()> {
        if depth >= MAX_DEPTH {
            return Err(Error::invalid(format!(
                "ESP source {}: more than {MAX_DEPTH} directory levels",
                dir.display()
            )));
        }
        let ctx = |what: &str| format!("{what} {}", dir.display());
        let mut names = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(|e| Error::io(ctx("listing"), e))? {
            let entry = entry.map_err(|e| Error::io(ctx("listing"), e))?;
            // Checked before reading further: a huge directory must not exhaust memory.
            check_entry_budget(self.entries.saturating_add(names.len()), prefix)?;
            names.push(entry.file_name());
        }
        names.sort();
        for os_name in names {
            let full = dir.join(&os_name);
            let Some(name) = os_name.to_str() else {
                return Err(Error::invalid(format!(
                    "ESP source {}: the name is not valid UTF-8",
                    full.display()
                )));
            };
            let esp_path = if prefix.is_empty() {
                name.to_string()
            } else {
                format!("{prefix}/{name}")
            };
            let meta = std::fs::symlink_metadata(&full)
                .map_err(|e| Error::io(format!("reading {}", full.display()), e))?;
            let ft = meta.file_type();
            if ft.is_symlink() {
                return Err(Error::invalid(format!(
                    "ESP source {}: symbolic links are not followed; copy the target instead \
                     (cp -rL)",
                    full.display()
                )));
            } else if ft.is_dir() {
                self.add_dir(&esp_path)?;
                self.read_dir_into(&full, &esp_path, depth.saturating_add(1))?;
            } else if ft.is_file() {
                let len = meta.len();
                let total = self.file_bytes.saturating_add(len);
                if len > MAX_FILE_BYTES || total > MAX_TREE_BYTES {
                    return Err(Error::invalid(format!(
                        "ESP source {}: {len} bytes; the tree would hold {total} bytes, more than \
                         the largest ESP this tool builds ({MAX_TREE_BYTES} bytes)",
                        full.display()
                    )));
                }
                let bytes = std::fs::read(&full)
                    .map_err(|e| Error::io(format!("reading {}", full.display()), e))?;
                self.add_file(&esp_path, bytes)?;
            } else {
                return Err(Error::invalid(format!(
                    "ESP source {}: not a regular file or directory",
                    full.display()
                )));
            }
        }
        Ok(())
    }
}

/// Walk `parents` from `root`, creating missing directories (counted in `entries`).
fn make_dirs<'d>(
    root: &'d mut EspDir,
    entries: &mut usize,
    full: &str,
    parents: &[&str],
) -> Result<&'d mut EspDir> {
    let mut dir = root;
    for p in parents {
        let key = fold(p);
        if !dir.children.contains_key(&key) {
            check_entry_budget(*entries, full)?;
            dir.children.insert(
                key.clone(),
                (p.to_string(), EspNode::Dir(EspDir::default())),
            );
            *entries = entries.saturating_add(1);
        }
        match dir.children.get_mut(&key) {
            Some((_, EspNode::Dir(d))) => dir = d,
            Some((existing, EspNode::File(_))) => {
                return Err(Error::conflict(format!(
                    "ESP path {full:?}: {existing:?} is a file, expected a directory"
                )))
            }
            None => {
                return Err(Error::invalid(format!(
                    "ESP path {full:?}: directory {p:?} vanished while being created"
                )))
            }
        }
    }
    Ok(dir)
}

fn check_entry_budget(entries: usize, path: &str) -> Result<()> {
    if entries >= MAX_TREE_ENTRIES {
        return Err(Error::invalid(format!(
            "ESP tree at {path:?}: more than {MAX_TREE_ENTRIES} files and directories"
        )));
    }
    Ok(())
}

/// The key two FAT names collide on: FAT compares names case-insensitively.
fn fold(name: &str) -> String {
    name.to_uppercase()
}

/// Split "EFI/BOOT/x.efi" into (["EFI", "BOOT"], "x.efi"), validating every component.
fn split_path(path: &str) -> Result<(Vec<&str>, &str)> {
    let trimmed = path.trim_start_matches(['/', '\\']);
    let mut parts: Vec<&str> = Vec::new();
    for comp in trimmed.split(['/', '\\']) {
        if parts.len() >= MAX_DEPTH {
            return Err(Error::invalid(format!(
                "ESP path {path:?}: more than {MAX_DEPTH} components"
            )));
        }
        check_name(comp).map_err(|e| e.context(format!("ESP path {path:?}")))?;
        parts.push(comp);
    }
    match parts.pop() {
        Some(name) => Ok((parts, name)),
        None => Err(Error::invalid(format!("ESP path {path:?}: empty"))),
    }
}

/// Can FAT (with long names) hold this file name? See the module docs for the rules.
pub fn name_valid(name: &str) -> bool {
    check_name(name).is_ok()
}

fn check_name(name: &str) -> Result<()> {
    if name.is_empty() {
        return Err(Error::invalid("empty name component"));
    }
    if name == "." || name == ".." {
        return Err(Error::invalid(format!("name {name:?} is reserved")));
    }
    let units = name.encode_utf16().count();
    if units > MAX_NAME_UTF16 {
        return Err(Error::invalid(format!(
            "name of {units} UTF-16 units, FAT long names hold at most {MAX_NAME_UTF16}"
        )));
    }
    if let Some(c) = name
        .chars()
        .find(|c| c.is_control() || FORBIDDEN_CHARS.contains(c))
    {
        return Err(Error::invalid(format!(
            "name {name:?} contains {c:?}, which FAT names cannot hold"
        )));
    }
    if name.starts_with(' ') || name.ends_with(' ') || name.ends_with('.') {
        return Err(Error::invalid(format!(
            "name {name:?} starts with a space or ends with a space or dot"
        )));
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects, clippy::as_conversions)]
mod tests {
    use super::*;

    #[test]
    fn builds_sorted_case_insensitive_tree() {
        let mut t = EspTree::new();
        t.add_file("EFI/BOOT/BOOTX64.EFI", vec![1, 2, 3]).unwrap();
        t.add_file("/efi/boot/grubx64.efi", vec![4]).unwrap();
        t.add_file("\\EFI\\Microsoft\\Boot\\bootmgfw.efi", vec![])
            .unwrap();
        t.add_dir("EFI/Linux").unwrap();
        t.add_dir("efi/linux").unwrap();
        assert_eq!(t.file_bytes(), 4);
        // EFI, BOOT, 2 files, Microsoft, Boot, bootmgfw.efi, Linux
        assert_eq!(t.entry_count(), 8);
        assert!(t.contains("efi/BOOT/bootx64.efi"));
        assert!(!t.contains("EFI/BOOT/nothing"));
        let Some(EspNode::Dir(efi)) = t.get("EFI") else {
            panic!("EFI is a directory")
        };
        let names: Vec<&str> = efi.entries().map(|(n, _)| n).collect();
        assert_eq!(names, ["BOOT", "Linux", "Microsoft"]);
    }

    #[test]
    fn refuses_duplicates_and_type_clashes() {
        let mut t = EspTree::new();
        t.add_file("EFI/BOOT/BOOTX64.EFI", vec![1]).unwrap();
        let e = t.add_file("efi/boot/bootx64.efi", vec![2]).unwrap_err();
        assert!(e.message().contains("already exists"), "{e}");
        let e = t.add_file("EFI/BOOT/BOOTX64.EFI/x", vec![2]).unwrap_err();
        assert!(e.message().contains("is a file"), "{e}");
        assert!(t.add_dir("EFI/BOOT/BOOTX64.EFI").is_err());
        assert_eq!(t.entry_count(), 3);
    }

    #[test]
    fn refuses_names_fat_cannot_hold() {
        for bad in [
            "",
            "/",
            "a//b",
            "a/./b",
            "a/../b",
            "a:b",
            "a*b",
            "a?b",
            "a<b",
            "a>b",
            "a|b",
            "a\"b",
            "a\u{1}b",
            "trailing.",
            "trailing ",
            " leading",
        ] {
            let mut t = EspTree::new();
            assert!(t.add_file(bad, vec![]).is_err(), "{bad:?} must be refused");
        }
        let long = "a".repeat(256);
        assert!(!name_valid(&long));
        assert!(name_valid(&"a".repeat(255)));
        assert!(name_valid("shimx64.efi.signed"));
        assert!(name_valid("café.efi"));
        assert!(name_valid("a b+c,d;e=f[g].h"));
    }

    #[test]
    fn refuses_too_deep_paths() {
        let deep = vec!["d"; MAX_DEPTH + 1].join("/");
        assert!(EspTree::new().add_dir(&deep).is_err());
        let ok = vec!["d"; MAX_DEPTH].join("/");
        assert!(EspTree::new().add_dir(&ok).is_ok());
    }

    #[test]
    fn from_dir_reads_sorted_and_refuses_symlinks() {
        let base = std::env::temp_dir().join(format!("vhdtool-esp-tree-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        std::fs::create_dir_all(base.join("EFI/BOOT")).unwrap();
        std::fs::create_dir_all(base.join("EFI/empty")).unwrap();
        std::fs::write(base.join("EFI/BOOT/BOOTX64.EFI"), b"boot").unwrap();
        std::fs::write(base.join("EFI/BOOT/b.txt"), b"bb").unwrap();
        let t = EspTree::from_dir(&base).unwrap();
        assert_eq!(t.entry_count(), 5);
        assert_eq!(t.file_bytes(), 6);
        assert_eq!(
            t.get("EFI/BOOT/BOOTX64.EFI"),
            Some(&EspNode::File(b"boot".to_vec()))
        );
        assert!(matches!(t.get("EFI/empty"), Some(EspNode::Dir(d)) if d.is_empty()));

        #[cfg(unix)]
        {
            std::os::unix::fs::symlink("BOOTX64.EFI", base.join("EFI/BOOT/link.efi")).unwrap();
            let e = EspTree::from_dir(&base).unwrap_err();
            assert!(e.message().contains("symbolic link"), "{e}");
        }
        assert!(EspTree::from_dir(&base.join("EFI/BOOT/b.txt")).is_err());
        assert!(EspTree::from_dir(&base.join("missing")).is_err());
        std::fs::remove_dir_all(&base).unwrap();
    }
}
