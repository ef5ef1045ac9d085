//! Fuzz harness: the BCD model on arbitrary hives. Properties: no panic; a store that reads is
//! written and reads back as the same objects and elements; a BIOS store that reads gives a
//! UEFI store without MBR devices.
use vhdtool::boot::windows::bcd::{self, BcdStore, Device, GptPartition, UefiStoreInput};
use vhdtool::gpt::guid::Guid;

pub fn run(data: &[u8]) {
    let _ = Device::decode(data);
    let Ok(store) = BcdStore::read(data) else {
        return;
    };
    if let Ok(bytes) = store.to_hive() {
        let back = BcdStore::read(&bytes).expect("a written store reads back");
        assert_eq!(back, store, "BCD read -> write -> read changed the store");
    }
    if let Ok(old) = bcd::read_bios_store(data) {
        let disk = Guid::name_based(Guid::NIL, b"disk");
        let esp = GptPartition {
            partition: Guid::name_based(Guid::NIL, b"esp"),
            disk,
        };
        let os = GptPartition {
            partition: Guid::name_based(Guid::NIL, b"os"),
            disk,
        };
        let input = UefiStoreInput::from_bios(&old, esp, os, Some(os));
        if let Ok(new) = bcd::uefi_store_bytes(&input, b"fuzz") {
            let again = BcdStore::read(&new.bytes).expect("the new store reads");
            assert_eq!(again, new.store);
        }
    }
}
