//! Fuzz harness: read -> write -> read is stable. A hive that reads is written again (format
//! 1.3); the new hive must read back as the same tree, and writing that again gives the same
//! bytes.
use vhdtool::regf::{self, Hive, WriteOptions};

pub fn run(data: &[u8]) {
    let Ok(h) = Hive::parse(data) else { return };
    let Ok(tree) = h.read_tree() else { return };
    let opts = WriteOptions::bcd();
    // names the writer refuses (empty, '\\', duplicates, too long) are fine to refuse
    let Ok(bytes) = regf::write_hive(&tree, &opts) else {
        return;
    };
    let back = Hive::parse(&bytes)
        .and_then(|h| h.read_tree())
        .expect("the writer's output reads back");
    assert_eq!(
        back.canonical(),
        tree.canonical(),
        "read -> write -> read changed the tree"
    );
    let again = regf::write_hive(&back, &opts).expect("a written hive writes again");
    assert_eq!(again, bytes, "write is not stable");
}
