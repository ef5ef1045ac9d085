//! Integration-style tests: filesystems made by the real tools (mkfs.*, mkswap, cryptsetup,
//! mtools), probed by us and by `blkid -p`, which must agree on TYPE, UUID and LABEL. Volumes
//! no tool here can make (LVM2 without a loop device, exFAT, BitLocker, ReFS, ISO 9660) are
//! crafted byte by byte in `probe.rs` tests and judged by blkid the same way.

#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    clippy::as_conversions
)]

use super::testutil::{
    have_tool, probe_at_matches_blkid, probe_matches_blkid, run, run_env, TempImage,
};
use super::{probe, probe_at, Fat, FatType, FsKind};
use crate::disk::MemDisk;

const MIB: u64 = 1024 * 1024;

#[test]
fn ext2_ext3_ext4_match_blkid() {
    if !have_tool("mke2fs", "e2fsprogs") || !have_tool("blkid", "util-linux") {
        return;
    }
    let cases: &[(&[&str], FsKind)] = &[
        (&["-t", "ext2"], FsKind::Ext2),
        (&["-t", "ext3"], FsKind::Ext3),
        (&["-t", "ext4"], FsKind::Ext4),
        (
            &["-t", "ext4", "-O", "64bit,metadata_csum", "-b", "1024"],
            FsKind::Ext4,
        ),
        (&["-t", "ext3", "-O", "extent"], FsKind::Ext4),
    ];
    for (args, kind) in cases {
        let img = TempImage::new("ext", 32 * MIB);
        let mut a = vec![
            "-q",
            "-F",
            "-L",
            "my label",
            "-U",
            "0b2e1c3d-4f5a-4b6c-8d7e-9f0a1b2c3d4e",
        ];
        a.extend_from_slice(args);
        a.push(img.s());
        run("mke2fs", &a);
        let info = probe_matches_blkid(&img);
        assert_eq!(info.kind, *kind, "{args:?}");
        assert_eq!(info.fs_bytes, Some(32 * MIB));
        assert_eq!(
            info.uuid.as_deref(),
            Some("0b2e1c3d-4f5a-4b6c-8d7e-9f0a1b2c3d4e")
        );
    }
}

/// blkid 2.38 does not verify the superblock checksum either: a damaged ext4 is still ext4.
#[test]
fn ext4_with_bad_checksum_is_still_ext4() {
    if !have_tool("mke2fs", "e2fsprogs") || !have_tool("blkid", "util-linux") {
        return;
    }
    let img = TempImage::new("ext4csum", 16 * MIB);
    run(
        "mke2fs",
        &["-q", "-F", "-t", "ext4", "-O", "metadata_csum", img.s()],
    );
    let mut bytes = img.bytes();
    bytes[1024 + 0x78] ^= 0x20; // flip a label bit, keep the stored checksum
    let bad = TempImage::with_bytes("ext4csum-bad", &bytes);
    let info = probe_matches_blkid(&bad);
    assert_eq!(info.kind, FsKind::Ext4);
}

#[test]
fn fat12_fat16_fat32_match_blkid() {
    if !have_tool("mkfs.fat", "dosfstools") || !have_tool("blkid", "util-linux") {
        return;
    }
    let cases: &[(&str, u64, &[&str], FsKind)] = &[
        ("12", 4 * MIB, &[], FsKind::Fat12),
        ("16", 100 * MIB, &[], FsKind::Fat16),
        ("32", 33 * MIB, &["-S", "512", "-s", "1"], FsKind::Fat32),
        ("32", 100 * MIB, &["-S", "512", "-s", "1"], FsKind::Fat32),
        ("32", 300 * MIB, &["-S", "4096"], FsKind::Fat32),
    ];
    for (bits, size, extra, kind) in cases {
        let img = TempImage::new("fat", *size);
        let mut a = vec!["-F", bits, "-n", "ESP LABEL", "-i", "1a2b3c4d"];
        a.extend_from_slice(extra);
        a.push(img.s());
        run("mkfs.fat", &a);
        let info = probe_matches_blkid(&img);
        assert_eq!(info.kind, *kind, "-F {bits} {size}");
        assert_eq!(info.uuid.as_deref(), Some("1A2B-3C4D"));
        assert_eq!(info.label.as_deref(), Some("ESP LABEL"));
        assert_eq!(info.fs_bytes, Some(*size));
    }
}

#[test]
fn fat_label_comes_from_the_root_directory() {
    if !have_tool("mkfs.fat", "dosfstools")
        || !have_tool("mlabel", "mtools")
        || !have_tool("blkid", "util-linux")
    {
        return;
    }
    for (bits, size) in [("16", 20 * MIB), ("32", 40 * MIB)] {
        let img = TempImage::new("fatlabel", size);
        run("mkfs.fat", &["-F", bits, "-n", "BOOTSECT", img.s()]);
        // rewrite only the root-directory label entry: the boot sector keeps BOOTSECT
        let mut bytes = img.bytes();
        let fs_bytes = bytes.clone();
        let d = MemDisk::new(fs_bytes);
        let fs = Fat::open(&d).unwrap();
        assert_eq!(fs.volume_label().unwrap().as_deref(), Some("BOOTSECT"));
        let pos = bytes
            .windows(12)
            .enumerate()
            .filter(|(i, w)| i % 32 == 0 && *i > 512 && w[..11] == *b"BOOTSECT   " && w[11] == 0x08)
            .map(|(i, _)| i)
            .next()
            .unwrap();
        bytes[pos..pos + 11].copy_from_slice(b"ROOTDIR    ");
        let img2 = TempImage::with_bytes("fatlabel2", &bytes);
        let info = probe_matches_blkid(&img2);
        assert_eq!(info.label.as_deref(), Some("ROOTDIR"));
        // no root label at all: blkid reports none (the boot-sector label is LABEL_FATBOOT)
        run_env(
            "mlabel",
            &["-i", img2.s(), "-c"],
            &[("MTOOLS_SKIP_CHECK", "1")],
        );
        let info = probe_matches_blkid(&img2);
        assert_eq!(info.label, None);
    }
}

#[test]
fn ntfs_matches_blkid() {
    if !have_tool("mkntfs", "ntfs-3g") || !have_tool("blkid", "util-linux") {
        return;
    }
    // 128 KiB clusters use the negative-exponent encoding (0xF8 sectors per cluster)
    let cases = [
        (64 * MIB, "4096"),
        (64 * MIB, "512"),
        (300 * MIB, "65536"),
        (1024 * MIB, "131072"),
    ];
    for (size, cluster) in cases {
        let img = TempImage::new("ntfs", size);
        run(
            "mkntfs",
            &[
                "-q",
                "-F",
                "-Q",
                "-L",
                "Windows Ünïcode",
                "-c",
                cluster,
                "-s",
                "512",
                img.s(),
            ],
        );
        let info = probe_matches_blkid(&img);
        assert_eq!(info.kind, FsKind::Ntfs);
        assert_eq!(info.block_bytes, Some(cluster.parse().unwrap()));
        assert_eq!(info.label.as_deref(), Some("Windows Ünïcode"));
        assert_eq!(info.version.as_deref(), Some("3.1"));
        // mkntfs leaves the last sector for the backup boot sector
        assert_eq!(info.fs_bytes, Some(size - 512));
    }
}

#[test]
fn swap_matches_blkid() {
    if !have_tool("mkswap", "util-linux") || !have_tool("blkid", "util-linux") {
        return;
    }
    let img = TempImage::new("swap", 16 * MIB);
    run(
        "mkswap",
        &[
            "-L",
            "swappy",
            "-U",
            "11111111-2222-4333-8444-555555555555",
            img.s(),
        ],
    );
    let info = probe_matches_blkid(&img);
    assert_eq!(info.kind, FsKind::Swap);
    assert_eq!(info.fs_bytes, Some(16 * MIB));
}

#[test]
fn xfs_matches_blkid() {
    if !have_tool("mkfs.xfs", "xfsprogs") || !have_tool("blkid", "util-linux") {
        return;
    }
    let img = TempImage::new("xfs", 320 * MIB);
    run("mkfs.xfs", &["-q", "-f", "-L", "xfslabel", img.s()]);
    let info = probe_matches_blkid(&img);
    assert_eq!(info.kind, FsKind::Xfs);
    assert_eq!(info.fs_bytes, Some(320 * MIB));
}

#[test]
fn btrfs_matches_blkid() {
    if !have_tool("mkfs.btrfs", "btrfs-progs") || !have_tool("blkid", "util-linux") {
        return;
    }
    let img = TempImage::new("btrfs", 256 * MIB);
    run("mkfs.btrfs", &["-q", "-f", "-L", "btr label", img.s()]);
    let info = probe_matches_blkid(&img);
    assert_eq!(info.kind, FsKind::Btrfs);
    assert_eq!(info.fs_bytes, Some(256 * MIB));
}

#[test]
fn luks1_and_luks2_match_blkid() {
    if !have_tool("cryptsetup", "cryptsetup-bin") || !have_tool("blkid", "util-linux") {
        return;
    }
    let key = TempImage::with_bytes("luks-key", b"correct horse battery staple");
    for (ty, kind) in [("luks1", FsKind::Luks1), ("luks2", FsKind::Luks2)] {
        let img = TempImage::new("luks", 32 * MIB);
        let mut a = vec![
            "luksFormat",
            "--batch-mode",
            "--type",
            ty,
            "--key-file",
            key.s(),
            "--pbkdf",
            "pbkdf2",
            "--pbkdf-force-iterations",
            "1000",
            "--uuid",
            "12345678-9abc-4def-8123-456789abcdef",
        ];
        if ty == "luks2" {
            a.extend_from_slice(&["--label", "secret stuff"]);
        }
        a.push(img.s());
        run("cryptsetup", &a);
        let info = probe_matches_blkid(&img);
        assert_eq!(info.kind, kind);
        assert!(info.encrypted);
        assert_eq!(
            info.uuid.as_deref(),
            Some("12345678-9abc-4def-8123-456789abcdef")
        );
    }
}

#[test]
fn probe_at_matches_blkid_with_offsets() {
    if !have_tool("mkfs.fat", "dosfstools")
        || !have_tool("mke2fs", "e2fsprogs")
        || !have_tool("blkid", "util-linux")
    {
        return;
    }
    // a disk: 1 MiB gap, a FAT12 partition, an ext4 partition, 1 MiB tail
    let fat = TempImage::new("part-fat", 4 * MIB);
    run("mkfs.fat", &["-F", "12", "-n", "INNER", fat.s()]);
    let ext = TempImage::new("part-ext", 8 * MIB);
    run(
        "mke2fs",
        &["-q", "-F", "-t", "ext4", "-L", "second", ext.s()],
    );
    let mut disk = vec![0u8; MIB as usize];
    disk.extend(fat.bytes());
    disk.extend(ext.bytes());
    disk.extend(vec![0u8; MIB as usize]);
    let img = TempImage::with_bytes("disk", &disk);
    let info = probe_at_matches_blkid(&img, Some((MIB, 4 * MIB)));
    assert_eq!(info.kind, FsKind::Fat12);
    assert_eq!(info.label.as_deref(), Some("INNER"));
    let info = probe_at_matches_blkid(&img, Some((5 * MIB, 8 * MIB)));
    assert_eq!(info.kind, FsKind::Ext4);
    let d = MemDisk::new(disk);
    assert_eq!(probe_at(&d, MIB, 20 * MIB), None); // beyond the disk
    assert_eq!(probe_at(&d, u64::MAX, 2), None);
    assert_eq!(probe(&d), None);
}

/// A file whose content depends on its name and length.
fn content(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 9) as u8)
        .collect()
}

#[test]
fn fat_reader_agrees_with_mtools() {
    if !have_tool("mkfs.fat", "dosfstools")
        || !have_tool("mcopy", "mtools")
        || !have_tool("fsck.fat", "dosfstools")
    {
        return;
    }
    let files: Vec<(&str, Vec<u8>)> = vec![
        ("EFI/BOOT/BOOTX64.EFI", content(1, 70_000)),
        ("EFI/Microsoft/Boot/bootmgfw.efi", content(2, 1_500_000)),
        ("EFI/Microsoft/Boot/BCD", content(3, 4096)),
        ("EFI/debian/grub.cfg", b"search.fs_uuid x root\n".to_vec()),
        (
            "A very long file name with spaces and more than 13 chars.txt",
            content(4, 513),
        ),
        ("deep/d1/d2/d3/d4/d5/d6/d7/leaf.bin", content(5, 1)),
        ("empty.txt", Vec::new()),
        ("Ünïcödé ñame.dat", content(6, 2000)),
    ];
    let cases: &[(&str, u64, &[&str], FatType)] = &[
        ("32", 33 * MIB, &["-S", "512", "-s", "1"], FatType::Fat32),
        ("32", 100 * MIB, &["-S", "512", "-s", "1"], FatType::Fat32),
        ("16", 100 * MIB, &[], FatType::Fat16),
        ("12", 4 * MIB, &[], FatType::Fat12),
        ("32", 300 * MIB, &["-S", "4096"], FatType::Fat32),
    ];
    let env = [("MTOOLS_SKIP_CHECK", "1")];
    for (bits, size, extra, want) in cases {
        let img = TempImage::new("fatrw", *size);
        let mut a = vec!["-F", bits];
        a.extend_from_slice(extra);
        a.push(img.s());
        run("mkfs.fat", &a);
        let src = TempImage::new("fatsrc", 0);
        for (path, data) in &files {
            let parts: Vec<&str> = path.split('/').collect();
            for i in 1..parts.len() {
                let dir = format!("::/{}", parts[..i].join("/"));
                // mmd fails on an existing directory: ignore that
                let _ = std::process::Command::new("mmd")
                    .args(["-i", img.s(), &dir])
                    .envs(env)
                    .output();
            }
            std::fs::write(&src.path, data).unwrap();
            run_env(
                "mcopy",
                &["-i", img.s(), src.s(), &format!("::/{path}")],
                &env,
            );
        }
        run("fsck.fat", &["-n", img.s()]);
        let d = img.disk();
        let fs = Fat::open(&d).unwrap();
        assert_eq!(fs.fat_type(), *want);
        for (path, data) in &files {
            assert!(fs.exists(path).unwrap(), "{path}");
            assert!(fs.exists(&path.to_uppercase()).unwrap(), "{path}");
            assert!(
                fs.exists(&path.replace('/', "\\").to_lowercase()).unwrap(),
                "{path}"
            );
            assert_eq!(&fs.read_file(path).unwrap().unwrap(), data, "{path}");
        }
        assert!(!fs.exists("EFI/BOOT/BOOTIA32.EFI").unwrap());
        let boot = fs.list_dir("/EFI/Microsoft/Boot").unwrap();
        let mut names: Vec<&str> = boot.iter().map(|e| e.name.as_str()).collect();
        names.sort_unstable();
        assert_eq!(names, ["BCD", "bootmgfw.efi"]);
        let root = fs.list_dir("").unwrap();
        assert_eq!(root.len(), 5, "{root:?}");
        // mtools gives long names an 8.3 alias; both resolve
        let long = root.iter().find(|e| e.name.starts_with("A very")).unwrap();
        assert!(fs.exists(&long.short_name).unwrap());
    }
}
