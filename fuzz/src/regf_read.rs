//! Fuzz harness: the registry hive reader on arbitrary bytes (as a primary hive and as its own
//! transaction log). Property: no panic, no hang; what parses can be walked.
use vhdtool::regf::{self, Hive};

pub fn run(data: &[u8]) {
    if let Ok(h) = Hive::parse(data) {
        let _ = h.is_dirty();
        let _ = h.read_tree();
        if let Ok(Some(k)) = h.open("MountedDevices") {
            if let Ok(values) = h.values(&k) {
                for v in values {
                    let _ = h.value_data(&v);
                }
            }
        }
        let _ = h.open("Objects\\{9dea862c-5cdd-4e70-acc1-f32b344d4795}\\Elements");
    }
    // the SOFTWARE hive's version, as info reads it
    let _ = vhdtool::boot::windows::version::version_of_hive(data);
    let _ = regf::replay_logs(data, &[data]);
}
