//! Fuzz harness: the MountedDevices patch on arbitrary hives. Properties: no panic; when it
//! succeeds its writes applied to the input give its patched hive, which is clean and reads.
use vhdtool::boot::windows::mounted::{self, ConvertedPartition};
use vhdtool::gpt::guid::Guid;
use vhdtool::regf::Hive;

pub fn run(data: &[u8]) {
    // the signature and offset most likely to match: those of the first MBR-form value
    let mut sig = 0u32;
    let mut offset = 1u64 << 20;
    if let Ok(h) = Hive::parse(data) {
        if let Ok(Some(k)) = h.open(mounted::MOUNTED_DEVICES) {
            for v in h.values(&k).unwrap_or_default() {
                if let Some((s, o)) = h.value_data(&v).ok().as_deref().and_then(mounted::mbr_form) {
                    (sig, offset) = (s, o);
                    break;
                }
            }
        }
    }
    let parts = [ConvertedPartition {
        offset,
        guid: Guid::name_based(Guid::NIL, b"c"),
    }];
    let Ok(p) = mounted::patch_mounted_devices(data, sig, &parts) else {
        return;
    };
    let mut applied = data.to_vec();
    for w in &p.patched.writes {
        let at = usize::try_from(w.offset).expect("offset fits");
        applied
            .get_mut(at..at + w.bytes.len())
            .expect("writes stay inside the hive file")
            .copy_from_slice(&w.bytes);
    }
    assert_eq!(
        applied, p.patched.bytes,
        "writes do not give the patched hive"
    );
    if !p.patched.writes.is_empty() {
        let h = Hive::parse(&applied).expect("patched hive parses");
        assert!(!h.is_dirty(), "patched hive is dirty");
    }
}
