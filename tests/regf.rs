//! The registry hive library judged by independent readers: every real hive of testdata/ reads,
//! re-writes and patches; hivex (hivexregedit --export) and regipy read what we write and
//! agree value by value with our reader.
#![allow(clippy::restriction)] // tests: a panic is a failed test (the crate's panic lints are for src/)

mod common;
mod winutil;

use vhdtool::regf::{self, Hive, WriteOptions};
use winutil::*;

#[test]
fn real_hives_read_and_agree_with_oracles() {
    let check = oracles_present();
    let tmp = common::TempDir::new("regf-read");
    for rel in BCD_FILES.iter().chain(SYSTEM_FILES) {
        let bytes = load(rel);
        let hive = Hive::parse(&bytes).unwrap_or_else(|e| panic!("{rel}: {e}"));
        let tree = hive.read_tree().unwrap_or_else(|e| panic!("{rel}: {e}"));
        assert!(!tree.subkeys.is_empty(), "{rel}: no keys");
        if check {
            let path = tmp.write("hive", &bytes);
            let r = judge(&path, &bytes, &tmp, regipy_subtree(rel));
            eprintln!("{rel}: {r}");
        }
    }
}

#[test]
fn rewritten_hives_read_back_and_agree_with_oracles() {
    let check = oracles_present();
    let tmp = common::TempDir::new("regf-write");
    for rel in BCD_FILES.iter().chain(SYSTEM_FILES) {
        let bytes = load(rel);
        let tree = Hive::parse(&bytes).unwrap().read_tree().unwrap();
        let t0 = std::time::Instant::now();
        let out =
            regf::write_hive(&tree, &WriteOptions::bcd()).unwrap_or_else(|e| panic!("{rel}: {e}"));
        eprintln!("{rel}: wrote {} bytes in {:?}", out.len(), t0.elapsed());
        let back = Hive::parse(&out).unwrap();
        assert!(!back.is_dirty());
        assert_eq!(
            back.root().unwrap().offset,
            0x20,
            "{rel}: root is not the first cell"
        );
        assert_eq!(
            back.read_tree().unwrap().canonical(),
            tree.canonical(),
            "{rel}"
        );
        if check {
            let path = tmp.write("hive", &out);
            let r = judge(&path, &out, &tmp, regipy_subtree(rel));
            eprintln!("{rel} rewritten: {r}");
        }
    }
}
