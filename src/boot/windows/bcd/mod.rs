//! The Boot Configuration Data store: objects, elements and device elements on top of
//! [`crate::regf`]; reading a BIOS store; building a UEFI store as bcdboot writes it.
//!
//! Layout of a store (verified on real stores, see testdata/windows-boot): `Description`
//! (KeyName "BCD00000000", System 1, TreatAsSystem 1), `Objects\{guid}\Description\Type`
//! (REG_DWORD object type) and `Objects\{guid}\Elements\xxxxxxxx\Element` (one value per
//! element; the element type's format nibble, bits 24..27, decides the encoding). Element and
//! object type names: Microsoft BcdLibraryElementTypes / BcdOSLoaderElementTypes /
//! BcdBootMgrElementTypes. Device elements: ReactOS `boot/environ/include/bl.h`
//! (BL_DEVICE_DESCRIPTOR, BL_PARTITION_TYPE Gpt = 0, Mbr = 1).
mod device;
mod element;
mod ids;
mod read;
mod store;
mod uefi;

pub use device::*;
pub use element::*;
pub use ids::*;
pub use read::*;
pub use store::*;
pub use uefi::*;

use crate::error::Error;
use crate::gpt::guid::Guid;

// ---- well-known objects (bcdedit names) ----
/// {bootmgr}
pub const BOOTMGR: Guid = Guid::from_u128(0x9dea862c_5cdd_4e70_acc1_f32b344d4795);
/// {fwbootmgr}
pub const FWBOOTMGR: Guid = Guid::from_u128(0xa5a30fa2_3d06_4e9f_b5f4_a01df9d1fcba);
/// {memdiag}
pub const MEMDIAG: Guid = Guid::from_u128(0xb2721d73_1db4_4c62_bf78_c548a880142d);
/// {globalsettings}
pub const GLOBALSETTINGS: Guid = Guid::from_u128(0x7ea2e1ac_2e61_4728_aaa3_896d9d0a9f0e);
/// {dbgsettings} (= {eventsettings})
pub const DBGSETTINGS: Guid = Guid::from_u128(0x4636856e_540f_4170_a130_a84776f4c654);
/// {emssettings}
pub const EMSSETTINGS: Guid = Guid::from_u128(0x0ce4991b_e6b3_4b16_b23c_5e0d9250e5d9);
/// {badmemory}
pub const BADMEMORY: Guid = Guid::from_u128(0x5189b25c_5558_4bf2_bca4_289b11bd29e2);
/// {bootloadersettings}
pub const BOOTLOADERSETTINGS: Guid = Guid::from_u128(0x6efb52bf_1766_41db_a6b3_0ee5eff72bd7);
/// {hypervisorsettings}
pub const HYPERVISORSETTINGS: Guid = Guid::from_u128(0x7ff607e0_4395_11db_b0de_0800200c9a66);
/// {resumeloadersettings}
pub const RESUMELOADERSETTINGS: Guid = Guid::from_u128(0x1afa9c49_16ab_4a5c_901b_212802da9460);

// ---- object types ----
/// Windows Boot Manager.
pub const TYPE_BOOTMGR: u32 = 0x1010_0002;
/// Firmware boot manager ({fwbootmgr}).
pub const TYPE_FWBOOTMGR: u32 = 0x1010_0001;
/// Firmware application (a copy of an NVRAM Boot#### entry).
pub const TYPE_FW_APPLICATION: u32 = 0x101f_ffff;
/// OS loader (winload).
pub const TYPE_OSLOADER: u32 = 0x1020_0003;
/// Resume from hibernation (winresume).
pub const TYPE_RESUME: u32 = 0x1020_0004;
/// Memory diagnostic.
pub const TYPE_MEMDIAG: u32 = 0x1020_0005;
/// Library settings inherited by all applications.
pub const TYPE_INHERIT_ALL: u32 = 0x2010_0000;
/// Settings inherited by OS loaders.
pub const TYPE_INHERIT_OSLOADER: u32 = 0x2020_0003;
/// Settings inherited by resume applications.
pub const TYPE_INHERIT_RESUME: u32 = 0x2020_0004;
/// Device options (ramdisk options).
pub const TYPE_DEVICE_OPTIONS: u32 = 0x3000_0000;

// ---- elements ----
pub const EL_DEVICE: u32 = 0x1100_0001;
pub const EL_PATH: u32 = 0x1200_0002;
pub const EL_DESCRIPTION: u32 = 0x1200_0004;
pub const EL_LOCALE: u32 = 0x1200_0005;
pub const EL_INHERIT: u32 = 0x1400_0006;
pub const EL_RECOVERY_SEQUENCE: u32 = 0x1400_0008;
pub const EL_DEBUG_TYPE: u32 = 0x1500_0011;
pub const EL_DISPLAY_MESSAGE: u32 = 0x1500_0065;
pub const EL_DISPLAY_MESSAGE_OVERRIDE: u32 = 0x1500_0066;
pub const EL_RECOVERY_ENABLED: u32 = 0x1600_0009;
pub const EL_BAD_MEMORY_ACCESS: u32 = 0x1600_000b;
pub const EL_BOOT_EMS: u32 = 0x1600_0020;
pub const EL_ISOLATED_CONTEXT: u32 = 0x1600_0060;
pub const EL_ALLOWED_IN_MEMORY_SETTINGS: u32 = 0x1700_0077;
pub const EL_OS_DEVICE: u32 = 0x2100_0001;
pub const EL_SYSTEM_ROOT: u32 = 0x2200_0002;
/// {bootmgr} default entry; also an OS loader's resume object.
pub const EL_DEFAULT_OBJECT: u32 = 0x2300_0003;
pub const EL_RESUME_OBJECT: u32 = 0x2300_0006;
pub const EL_DISPLAY_ORDER: u32 = 0x2400_0001;
pub const EL_TOOLS_DISPLAY_ORDER: u32 = 0x2400_0010;
pub const EL_TIMEOUT: u32 = 0x2500_0004;
pub const EL_RESUME_BOOTMENU_POLICY: u32 = 0x2500_0008;
pub const EL_NX: u32 = 0x2500_0020;
pub const EL_BOOTMENU_POLICY: u32 = 0x2500_00c2;
pub const EL_HYPERVISOR_LAUNCH_TYPE: u32 = 0x2500_00f3;
pub const EL_HYPERVISOR_DEBUGGER_TYPE: u32 = 0x2500_00f4;
pub const EL_HYPERVISOR_BAUDRATE: u32 = 0x2500_00f5;
pub const EL_DEBUG_OPTION_ENABLED: u32 = 0x2600_0006;
pub const EL_WINPE: u32 = 0x2600_0022;
pub const EL_RAMDISK_SDI_DEVICE: u32 = 0x3100_0003;
pub const EL_RAMDISK_SDI_PATH: u32 = 0x3200_0004;
/// bcdsetuprecoveryos (not documented; bcdboot sets it on the WinRE loader).
pub const EL_SETUP_RECOVERY_OS: u32 = 0x4600_0010;

/// Most objects read from one store, and most elements per object (real stores have tens).
pub const MAX_OBJECTS: usize = 4096;
pub const MAX_ELEMENTS: usize = 1024;

fn corrupt(what: impl std::fmt::Display) -> Error {
    Error::corrupt(format!("BCD: {what}"))
}

fn parse_guid(s: &str) -> Option<Guid> {
    s.trim().parse().ok()
}

fn guid_str(g: &Guid) -> String {
    format!("{{{g}}}")
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)] // tests: a panic is a failed test
mod tests {
    use super::*;

    #[test]
    fn partition_device_layouts() {
        let mbr = Device::Partition {
            options: Guid::NIL,
            partition: PartitionId::Mbr {
                signature: 0x0003_ee7c,
                offset: 0x12_4f90_0000,
            },
        }
        .encode();
        assert_eq!(mbr.len(), 88);
        assert_eq!(&mbr[0x10..0x14], &6u32.to_le_bytes()); // partition device
        assert_eq!(&mbr[0x18..0x1C], &0x48u32.to_le_bytes()); // descriptor size
        assert_eq!(&mbr[0x20..0x28], &0x12_4f90_0000u64.to_le_bytes()); // byte offset
        assert_eq!(&mbr[0x34..0x38], &1u32.to_le_bytes()); // MBR style
        assert_eq!(&mbr[0x38..0x3C], &0x0003_ee7cu32.to_le_bytes()); // signature
        let disk = Guid::from_u128(0x0b2394a9_095e_487d_8d48_719ecd4d78ca);
        let part = Guid::from_u128(0x8e0f2c38_e4ea_47ba_b7fc_9d8c74dccf0b);
        let gpt = Device::Partition {
            options: Guid::NIL,
            partition: PartitionId::Gpt {
                partition: part,
                disk,
            },
        };
        let b = gpt.encode();
        assert_eq!(&b[0x20..0x30], &part.to_bytes()); // partition GUID, on-disk order
        assert_eq!(&b[0x34..0x38], &0u32.to_le_bytes()); // GPT style
        assert_eq!(&b[0x38..0x48], &disk.to_bytes()); // disk GUID
        assert_eq!(Device::decode(&b), gpt);
        let boot = Device::Boot.encode();
        assert_eq!(Device::decode(&boot), Device::Boot);
    }

    #[test]
    fn ramdisk_layout_is_140_plus_path() {
        let d = Device::Ramdisk {
            options: Guid::name_based(Guid::NIL, b"opts"),
            partition: PartitionId::Mbr {
                signature: 1,
                offset: 2,
            },
            path: "\\Recovery\\WindowsRE\\Winre.wim".into(),
        };
        let b = d.encode();
        assert_eq!(b.len(), 200);
        assert_eq!(&b[0x18..0x1C], &184u32.to_le_bytes());
        assert_eq!(&b[0x3C..0x40], &(200u32 - 0x38).to_le_bytes());
        assert_eq!(Device::decode(&b), d);
        // truncated or odd bytes never panic and come back as Other
        for n in 0..b.len() {
            let _ = Device::decode(&b[..n]);
        }
    }
}
