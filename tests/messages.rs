//! What the text output says about sizes and about `convert` (issue 15, item 20): a partition of
//! 1023.5 KiB is printed as such, never "0 MiB"; "vhdtool convert makes it GPT" is printed only
//! for a disk `validate` passes, and a disk it refuses gets the failed check instead.
#![allow(clippy::restriction)] // tests: a panic is a failed test (the crate's panic lints are for src/)

mod common;

use std::path::PathBuf;

use common::{vhdtool, TempDir};

/// An 8 MiB raw disk whose one partition (type 0x83, no filesystem) is 2047 sectors: 1023.5 KiB.
fn small_partition_disk(dir: &TempDir) -> PathBuf {
    let mut b = vec![0u8; 8 << 20];
    b[446 + 4] = 0x83; // type: Linux
    b[446 + 8..446 + 12].copy_from_slice(&2048u32.to_le_bytes()); // first LBA
    b[446 + 12..446 + 16].copy_from_slice(&2047u32.to_le_bytes()); // sectors
    b[510] = 0x55;
    b[511] = 0xaa;
    dir.write("small-part.raw", &b)
}

#[test]
fn a_partition_under_one_mib_is_not_printed_as_zero() {
    let dir = TempDir::new("msg-sizes");
    let img = small_partition_disk(&dir);
    let info = vhdtool(["info".as_ref(), img.as_os_str()]);
    info.assert_sane();
    assert!(info.stdout.contains("1023.5 KiB"), "{}", info.stdout);
    let v = vhdtool([
        "validate".as_ref(),
        "--room".as_ref(),
        "shrink".as_ref(),
        img.as_os_str(),
    ]);
    assert_eq!(v.exit_code(), 1, "{}\n{}", v.stdout, v.stderr);
    assert!(
        v.stdout.contains("partition 1 (1023.5 KiB) is too small"),
        "{}",
        v.stdout
    );
    for out in [&info.stdout, &v.stdout] {
        assert!(!out.contains(" 0 MiB"), "a size printed as 0 MiB:\n{out}");
    }
}

#[test]
fn convert_is_promised_only_for_disks_validate_passes() {
    let dir = TempDir::new("msg-gen2");
    let refused = small_partition_disk(&dir);
    let v = vhdtool(["validate".as_ref(), refused.as_os_str()]);
    assert_eq!(v.exit_code(), 1, "validate must refuse it: {}", v.stdout);
    let info = vhdtool(["info".as_ref(), refused.as_os_str()]);
    info.assert_sane();
    assert!(info.stdout.contains("gen2.no-gpt"), "{}", info.stdout);
    assert!(
        !info.stdout.contains("makes it GPT"),
        "info promises a conversion validate refuses:\n{}",
        info.stdout
    );
    assert!(
        info.stdout
            .contains("vhdtool convert refuses it as it is (boot.files"),
        "{}",
        info.stdout
    );
    // NTFS partitions and no operating system: a data disk, refused (os.found), and info says so
    let Some(images) = common::images() else {
        return;
    };
    let data = images.path("win-mbr.force.vhd");
    let v = vhdtool(["validate".as_ref(), data.as_os_str()]);
    assert_eq!(v.exit_code(), 1, "validate must refuse it: {}", v.stdout);
    assert!(v.stdout.contains("os.found"), "{}", v.stdout);
    let info = vhdtool(["info".as_ref(), data.as_os_str()]);
    info.assert_sane();
    assert!(
        info.stdout
            .contains("vhdtool convert refuses it as it is (os.found"),
        "{}",
        info.stdout
    );
    // a Windows-like disk (System Reserved + C:): validate passes, info promises the conversion
    let Some(windows) = common::windows::images() else {
        return;
    };
    let ok = windows.join("sysres.vhd");
    let v = vhdtool(["validate".as_ref(), ok.as_os_str()]);
    assert_eq!(v.exit_code(), 0, "validate must pass it: {}", v.stdout);
    let info = vhdtool(["info".as_ref(), ok.as_os_str()]);
    info.assert_sane();
    assert!(
        info.stdout.contains("(vhdtool convert makes it GPT)"),
        "{}",
        info.stdout
    );
    let json = vhdtool(["info".as_ref(), "--json".as_ref(), ok.as_os_str()]);
    assert!(json.stdout.contains("makes it GPT"), "the JSON says it too");
}
