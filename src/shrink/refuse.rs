//! Which contents of the last partition can be shrunk offline, and why the others cannot.

use crate::fs::FsKind;

/// Why a partition holding `kind` (`None`: contents not recognised) cannot be shrunk offline,
/// with the alternative (`--room grow`); `None` when a shrinker exists (NTFS, ext2/3/4 through e2fsprogs'
/// resize2fs, Linux swap).
pub fn refusal(kind: Option<FsKind>) -> Option<String> {
    let Some(kind) = kind else {
        return Some(
            "the partition's contents are not recognised, so they cannot be shrunk safely; \
             use --room grow to add the space at the end of the disk instead"
                .to_string(),
        );
    };
    let why = match kind {
        FsKind::Ntfs | FsKind::Ext2 | FsKind::Ext3 | FsKind::Ext4 | FsKind::Swap => return None,
        FsKind::Xfs => "XFS cannot shrink (xfs_growfs only grows)",
        FsKind::Btrfs => {
            "btrfs shrinks only while mounted (`btrfs filesystem resize` needs a mounted \
             filesystem); shrink it in the guest first"
        }
        FsKind::Lvm2 => {
            "an LVM physical volume shrinks with pvresize after its logical volumes are moved \
             or reduced, which needs LVM on the host (or in the guest)"
        }
        FsKind::Luks1 | FsKind::Luks2 => {
            "the partition is LUKS-encrypted: its filesystem cannot be read or shrunk without \
             the key"
        }
        FsKind::Bitlocker => {
            "the volume is BitLocker-encrypted: shrinking needs the unlocked volume (MBR2GPT \
             refuses encrypted volumes too); suspend or decrypt it in the guest first"
        }
        FsKind::Refs => "ReFS volumes cannot be shrunk",
        FsKind::Fat12 | FsKind::Fat16 | FsKind::Fat32 | FsKind::Exfat => {
            "shrinking FAT and exFAT is not supported"
        }
        FsKind::Iso9660 => "an ISO 9660 filesystem is read-only and cannot be shrunk",
    };
    Some(format!(
        "{why}; use --room grow to add the space at the end of the disk instead"
    ))
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects, clippy::as_conversions)]
mod tests {
    use super::*;

    #[test]
    fn shrinkable_kinds_pass() {
        for k in [
            FsKind::Ntfs,
            FsKind::Ext2,
            FsKind::Ext3,
            FsKind::Ext4,
            FsKind::Swap,
        ] {
            assert_eq!(refusal(Some(k)), None, "{k:?}");
        }
    }

    #[test]
    fn others_are_refused_with_the_alternative() {
        for (k, word) in [
            (FsKind::Xfs, "XFS"),
            (FsKind::Btrfs, "mounted"),
            (FsKind::Lvm2, "pvresize"),
            (FsKind::Luks1, "LUKS"),
            (FsKind::Luks2, "LUKS"),
            (FsKind::Bitlocker, "BitLocker"),
            (FsKind::Refs, "ReFS"),
            (FsKind::Fat32, "FAT"),
            (FsKind::Exfat, "exFAT"),
            (FsKind::Iso9660, "read-only"),
        ] {
            let msg = refusal(Some(k)).unwrap_or_default();
            assert!(msg.contains(word), "{k:?}: {msg}");
            assert!(msg.contains("--room grow"), "{k:?}: {msg}");
        }
        let unknown = refusal(None).unwrap_or_default();
        assert!(unknown.contains("not recognised") && unknown.contains("--room grow"));
    }
}
