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
#![deny(
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    clippy::unwrap_used,
    clippy::as_conversions
)]

use std::collections::BTreeMap;

use zerocopy::little_endian::U32;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use crate::error::{Error, Result};
use crate::gpt::guid::Guid;
use crate::regf::{self, Hive, Key, WriteOptions};

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

// ---- device elements ----
/// BL_DEVICE_TYPE values.
pub const DEVICE_DISK: u32 = 0;
pub const DEVICE_BOOT: u32 = 5;
pub const DEVICE_PARTITION: u32 = 6;
pub const DEVICE_LOCATE: u32 = 8;
/// BL_LOCAL_DEVICE_TYPE of a ramdisk.
pub const LOCAL_RAMDISK: u32 = 3;
/// Size of a partition descriptor (BL_DEVICE_DESCRIPTOR of a partition device).
pub const DESCRIPTOR_BYTES: u32 = 0x48;
/// Partition styles.
pub const STYLE_GPT: u32 = 0;
pub const STYLE_MBR: u32 = 1;

/// A partition (or boot/locate) device descriptor, 72 bytes (bl.h BL_DEVICE_DESCRIPTOR).
#[repr(C)]
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout, Unaligned,
)]
pub struct RawDeviceDescriptor {
    pub device_type: U32, // 0x00 6 partition, 5 boot, 8 locate
    pub flags: U32,       // 0x04
    pub size: U32,        // 0x08 0x48
    pub reserved: U32,    // 0x0C
    /// GPT: partition unique GUID; MBR: u64 byte offset of the partition, then 8 zero bytes.
    pub partition_id: [u8; 16], // 0x10
    pub disk_local_type: U32, // 0x20 0 (local disk)
    pub partition_style: U32, // 0x24 0 GPT, 1 MBR
    /// GPT: disk GUID; MBR: u32 disk signature, then 12 zero bytes.
    pub disk_id: [u8; 16], // 0x28
    pub padding: [u8; 16], // 0x38
}
const _: () = assert!(core::mem::size_of::<RawDeviceDescriptor>() == 72);

/// A device element: 16-byte options GUID + descriptor (88 bytes for a partition device).
#[repr(C)]
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout, Unaligned,
)]
pub struct RawDeviceElement {
    pub options: [u8; 16],               // 0x00 additional options object, or zero
    pub descriptor: RawDeviceDescriptor, // 0x10
}
const _: () = assert!(core::mem::size_of::<RawDeviceElement>() == 88);

/// The fixed head of a ramdisk device element (the WinRE entry): 0x8C bytes, then the UTF-16
/// path of the image with a NUL.
#[repr(C)]
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout, Unaligned,
)]
pub struct RawRamdiskElement {
    pub options: [u8; 16], // 0x00 GUID of the ramdisk options object (0x30000000)
    pub device_type: U32,  // 0x10 0 (disk)
    pub flags: U32,        // 0x14 1
    pub size: U32,         // 0x18 total - 16
    pub reserved: U32,     // 0x1C
    pub local_type: U32,   // 0x20 3 (ramdisk)
    pub image_base: [u8; 20], // 0x24 image base, length, offset: 0
    pub one: U32,          // 0x38 1
    pub file_size: U32,    // 0x3C total - 0x38
    pub path_type: U32,    // 0x40 5
    pub source: RawDeviceDescriptor, // 0x44 the partition that holds the image
}
const _: () = assert!(core::mem::size_of::<RawRamdiskElement>() == 0x8C);

/// Which partition a device element names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PartitionId {
    /// An MBR disk: its signature (MBR 0x1B8) and the partition's byte offset.
    Mbr { signature: u32, offset: u64 },
    /// A GPT disk: the partition's unique GUID and the disk GUID.
    Gpt { partition: Guid, disk: Guid },
}

/// A GPT partition as a BCD device names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GptPartition {
    pub partition: Guid,
    pub disk: Guid,
}

impl From<GptPartition> for PartitionId {
    fn from(p: GptPartition) -> PartitionId {
        PartitionId::Gpt {
            partition: p.partition,
            disk: p.disk,
        }
    }
}

/// A decoded device element.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Device {
    /// `boot`: the device the boot manager was started from.
    Boot,
    /// `partition=`: with its additional options object (nil when none).
    Partition {
        options: Guid,
        partition: PartitionId,
    },
    /// `ramdisk=[partition]path,{options}` (WinRE).
    Ramdisk {
        options: Guid,
        partition: PartitionId,
        path: String,
    },
    /// `locate=...` (sysprepped stores): kept as bytes.
    Locate(Vec<u8>),
    /// Anything else (vhd=, file=, ...): kept as bytes.
    Other(Vec<u8>),
}

fn corrupt(what: impl std::fmt::Display) -> Error {
    Error::corrupt(format!("BCD: {what}"))
}

fn descriptor_of(p: &PartitionId) -> RawDeviceDescriptor {
    let (partition_id, style, disk_id) = match *p {
        PartitionId::Mbr { signature, offset } => {
            let mut part = [0u8; 16];
            let mut disk = [0u8; 16];
            if let Some(s) = part.get_mut(..8) {
                s.copy_from_slice(&offset.to_le_bytes());
            }
            if let Some(s) = disk.get_mut(..4) {
                s.copy_from_slice(&signature.to_le_bytes());
            }
            (part, STYLE_MBR, disk)
        }
        PartitionId::Gpt { partition, disk } => (partition.to_bytes(), STYLE_GPT, disk.to_bytes()),
    };
    RawDeviceDescriptor {
        device_type: DEVICE_PARTITION.into(),
        flags: 0.into(),
        size: DESCRIPTOR_BYTES.into(),
        reserved: 0.into(),
        partition_id,
        disk_local_type: 0.into(),
        partition_style: style.into(),
        disk_id,
        padding: [0; 16],
    }
}

fn partition_of(d: &RawDeviceDescriptor) -> Option<PartitionId> {
    if d.device_type.get() != DEVICE_PARTITION || d.size.get() != DESCRIPTOR_BYTES {
        return None;
    }
    match d.partition_style.get() {
        STYLE_GPT => Some(PartitionId::Gpt {
            partition: Guid::from_bytes(d.partition_id),
            disk: Guid::from_bytes(d.disk_id),
        }),
        STYLE_MBR => {
            let off: [u8; 8] = d.partition_id.get(..8)?.try_into().ok()?;
            let sig: [u8; 4] = d.disk_id.get(..4)?.try_into().ok()?;
            Some(PartitionId::Mbr {
                signature: u32::from_le_bytes(sig),
                offset: u64::from_le_bytes(off),
            })
        }
        _ => None,
    }
}

impl Device {
    /// Decode a device element's bytes. Layouts we do not model come back as
    /// [`Device::Locate`] / [`Device::Other`] with their bytes.
    pub fn decode(data: &[u8]) -> Device {
        if let Ok((head, rest)) = RawRamdiskElement::ref_from_prefix(data) {
            let is_ramdisk = head.device_type.get() == DEVICE_DISK
                && head.local_type.get() == LOCAL_RAMDISK
                && usize::try_from(head.size.get()).ok() == data.len().checked_sub(16);
            if is_ramdisk {
                if let (Some(partition), Ok(path)) =
                    (partition_of(&head.source), regf::parse_sz(rest))
                {
                    return Device::Ramdisk {
                        options: Guid::from_bytes(head.options),
                        partition,
                        path,
                    };
                }
            }
        }
        if let Ok((el, _)) = RawDeviceElement::ref_from_prefix(data) {
            match el.descriptor.device_type.get() {
                DEVICE_BOOT => return Device::Boot,
                DEVICE_LOCATE => return Device::Locate(data.to_vec()),
                DEVICE_PARTITION if data.len() == 88 => {
                    if let Some(partition) = partition_of(&el.descriptor) {
                        return Device::Partition {
                            options: Guid::from_bytes(el.options),
                            partition,
                        };
                    }
                }
                _ => {}
            }
        }
        Device::Other(data.to_vec())
    }

    /// Encode as bcdedit/bcdboot do (88 bytes for boot and partition devices).
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Device::Boot => {
                let el = RawDeviceElement {
                    options: [0; 16],
                    descriptor: RawDeviceDescriptor {
                        device_type: DEVICE_BOOT.into(),
                        flags: 0.into(),
                        size: DESCRIPTOR_BYTES.into(),
                        reserved: 0.into(),
                        partition_id: [0; 16],
                        disk_local_type: 0.into(),
                        partition_style: 0.into(),
                        disk_id: [0; 16],
                        padding: [0; 16],
                    },
                };
                el.as_bytes().to_vec()
            }
            Device::Partition { options, partition } => RawDeviceElement {
                options: options.to_bytes(),
                descriptor: descriptor_of(partition),
            }
            .as_bytes()
            .to_vec(),
            Device::Ramdisk {
                options,
                partition,
                path,
            } => {
                let path = regf::sz(path);
                let total = core::mem::size_of::<RawRamdiskElement>().saturating_add(path.len());
                let total32 = u32::try_from(total).unwrap_or(u32::MAX);
                let head = RawRamdiskElement {
                    options: options.to_bytes(),
                    device_type: DEVICE_DISK.into(),
                    flags: 1.into(),
                    size: total32.saturating_sub(16).into(),
                    reserved: 0.into(),
                    local_type: LOCAL_RAMDISK.into(),
                    image_base: [0; 20],
                    one: 1.into(),
                    file_size: total32.saturating_sub(0x38).into(),
                    path_type: 5.into(),
                    source: descriptor_of(partition),
                };
                let mut out = head.as_bytes().to_vec();
                out.extend(path);
                out
            }
            Device::Locate(b) | Device::Other(b) => b.clone(),
        }
    }

    /// The partition this device names (the image's partition for a ramdisk).
    pub fn partition(&self) -> Option<&PartitionId> {
        match self {
            Device::Partition { partition, .. } | Device::Ramdisk { partition, .. } => {
                Some(partition)
            }
            _ => None,
        }
    }
}

/// A decoded element value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Element {
    Device(Device),
    String(String),
    Object(Guid),
    ObjectList(Vec<Guid>),
    Integer(u64),
    Boolean(bool),
    IntegerList(Vec<u64>),
    /// A value that does not decode as its format says (kept as it is).
    Raw {
        data_type: u32,
        data: Vec<u8>,
    },
}

/// Format nibble of an element type (bits 24..27).
pub fn element_format(element_type: u32) -> u32 {
    (element_type >> 24) & 0xF
}

fn parse_guid(s: &str) -> Option<Guid> {
    s.trim().parse().ok()
}

fn guid_str(g: &Guid) -> String {
    format!("{{{g}}}")
}

impl Element {
    /// Decode the `Element` value of element `element_type`.
    pub fn decode(element_type: u32, data_type: u32, data: &[u8]) -> Element {
        let raw = || Element::Raw {
            data_type,
            data: data.to_vec(),
        };
        match (element_format(element_type), data_type) {
            (1, regf::REG_BINARY) => Element::Device(Device::decode(data)),
            (2, regf::REG_SZ) => regf::parse_sz(data).map_or_else(|_| raw(), Element::String),
            (3, regf::REG_SZ) => regf::parse_sz(data)
                .ok()
                .and_then(|s| parse_guid(&s))
                .map_or_else(raw, Element::Object),
            (4, regf::REG_MULTI_SZ) => regf::parse_multi_sz(data)
                .ok()
                .and_then(|v| v.iter().map(|s| parse_guid(s)).collect::<Option<Vec<_>>>())
                .map_or_else(raw, Element::ObjectList),
            (5, regf::REG_BINARY) if (1..=8).contains(&data.len()) => {
                let mut b = [0u8; 8];
                b.get_mut(..data.len())
                    .unwrap_or_default()
                    .copy_from_slice(data);
                Element::Integer(u64::from_le_bytes(b))
            }
            (6, regf::REG_BINARY) if !data.is_empty() && data.len() <= 8 => {
                Element::Boolean(data.iter().any(|&b| b != 0))
            }
            (7, regf::REG_BINARY) if data.len().is_multiple_of(8) => Element::IntegerList(
                data.chunks_exact(8)
                    .map(|c| u64::from_le_bytes(c.try_into().unwrap_or([0; 8])))
                    .collect(),
            ),
            _ => raw(),
        }
    }

    /// Encode as (registry type, data), as bcdboot writes it.
    pub fn encode(&self) -> (u32, Vec<u8>) {
        match self {
            Element::Device(d) => (regf::REG_BINARY, d.encode()),
            Element::String(s) => (regf::REG_SZ, regf::sz(s)),
            Element::Object(g) => (regf::REG_SZ, regf::sz(&guid_str(g))),
            Element::ObjectList(v) => (
                regf::REG_MULTI_SZ,
                regf::multi_sz(&v.iter().map(guid_str).collect::<Vec<_>>()),
            ),
            Element::Integer(i) => (regf::REG_BINARY, i.to_le_bytes().to_vec()),
            Element::Boolean(b) => (regf::REG_BINARY, vec![u8::from(*b)]),
            Element::IntegerList(v) => (
                regf::REG_BINARY,
                v.iter().flat_map(|i| i.to_le_bytes()).collect(),
            ),
            Element::Raw { data_type, data } => (*data_type, data.clone()),
        }
    }
}

/// One BCD object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BcdObject {
    pub object_type: u32,
    pub elements: BTreeMap<u32, Element>,
}

impl BcdObject {
    pub fn new(object_type: u32) -> BcdObject {
        BcdObject {
            object_type,
            elements: BTreeMap::new(),
        }
    }
    fn with(mut self, element: u32, value: Element) -> BcdObject {
        self.elements.insert(element, value);
        self
    }
    pub fn string(&self, element: u32) -> Option<&str> {
        match self.elements.get(&element) {
            Some(Element::String(s)) => Some(s),
            _ => None,
        }
    }
    pub fn object(&self, element: u32) -> Option<Guid> {
        match self.elements.get(&element) {
            Some(Element::Object(g)) => Some(*g),
            _ => None,
        }
    }
    pub fn objects(&self, element: u32) -> Option<&[Guid]> {
        match self.elements.get(&element) {
            Some(Element::ObjectList(v)) => Some(v),
            _ => None,
        }
    }
    pub fn integer(&self, element: u32) -> Option<u64> {
        match self.elements.get(&element) {
            Some(Element::Integer(i)) => Some(*i),
            _ => None,
        }
    }
    pub fn device(&self, element: u32) -> Option<&Device> {
        match self.elements.get(&element) {
            Some(Element::Device(d)) => Some(d),
            _ => None,
        }
    }
}

/// A whole store: its objects by GUID.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BcdStore {
    pub objects: BTreeMap<Guid, BcdObject>,
}

impl BcdStore {
    /// Read a store from hive bytes. Objects whose key name is not a GUID, or without a
    /// `Description\Type`, are Corrupt; elements that do not decode are kept raw.
    pub fn read(hive: &[u8]) -> Result<BcdStore> {
        let h = Hive::parse(hive)?;
        let objects_key = h
            .open("Objects")?
            .ok_or_else(|| corrupt("the hive has no Objects key (not a BCD store)"))?;
        let mut objects = BTreeMap::new();
        let subkeys = h.subkeys(&objects_key)?;
        if subkeys.len() > MAX_OBJECTS {
            return Err(corrupt(format!(
                "{} objects (at most {MAX_OBJECTS})",
                subkeys.len()
            )));
        }
        for ok in subkeys {
            let id = parse_guid(&ok.name)
                .ok_or_else(|| corrupt(format!("object key {:?} is not a GUID", ok.name)))?;
            let desc = h
                .subkey(&ok, "Description")?
                .ok_or_else(|| corrupt(format!("object {{{id}}} has no Description")))?;
            let tv = h
                .value(&desc, "Type")?
                .ok_or_else(|| corrupt(format!("object {{{id}}} has no Description\\Type")))?;
            let td = h.value_data(&tv)?;
            let object_type = td
                .get(..4)
                .and_then(|b| <[u8; 4]>::try_from(b).ok())
                .map(u32::from_le_bytes)
                .ok_or_else(|| corrupt(format!("object {{{id}}}: Type of {} bytes", td.len())))?;
            let mut obj = BcdObject::new(object_type);
            if let Some(els) = h.subkey(&ok, "Elements")? {
                let list = h.subkeys(&els)?;
                if list.len() > MAX_ELEMENTS {
                    return Err(corrupt(format!("object {{{id}}}: {} elements", list.len())));
                }
                for ek in list {
                    let Ok(et) = u32::from_str_radix(&ek.name, 16) else {
                        return Err(corrupt(format!(
                            "object {{{id}}}: element key {:?} is not 8 hex digits",
                            ek.name
                        )));
                    };
                    if let Some(v) = h.value(&ek, "Element")? {
                        let data = h.value_data(&v)?;
                        obj.elements
                            .insert(et, Element::decode(et, v.data_type, &data));
                    }
                }
            }
            objects.insert(id, obj);
        }
        Ok(BcdStore { objects })
    }

    pub fn object(&self, id: &Guid) -> Option<&BcdObject> {
        self.objects.get(id)
    }

    /// The store as a hive tree, as bcdboot lays it out (key names in lowercase).
    pub fn to_key(&self) -> Key {
        let mut root = Key::new("NewStoreRoot");
        let d = root.subkey_mut("Description");
        d.set_value("KeyName", regf::REG_SZ, regf::sz("BCD00000000"));
        d.set_value("System", regf::REG_DWORD, 1u32.to_le_bytes().to_vec());
        d.set_value(
            "TreatAsSystem",
            regf::REG_DWORD,
            1u32.to_le_bytes().to_vec(),
        );
        let objs = root.subkey_mut("Objects");
        for (id, obj) in &self.objects {
            let ok = objs.subkey_mut(&guid_str(id));
            ok.subkey_mut("Description").set_value(
                "Type",
                regf::REG_DWORD,
                obj.object_type.to_le_bytes().to_vec(),
            );
            let els = ok.subkey_mut("Elements");
            for (et, el) in &obj.elements {
                let (t, data) = el.encode();
                els.subkey_mut(&format!("{et:08x}"))
                    .set_value("Element", t, data);
            }
        }
        root
    }

    /// The store as hive bytes (regf 1.3 with bcdboot's security descriptors).
    pub fn to_hive(&self) -> Result<Vec<u8>> {
        regf::write_hive(&self.to_key(), &WriteOptions::bcd())
    }
}

/// What the lead needs from the old BIOS store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BiosStore {
    /// {bootmgr}'s default entry (an OS loader object).
    pub default_loader: Guid,
    /// The loader's osdevice (21000001), else its device (11000001).
    pub os_device: Device,
    /// The loader's description (12000004).
    pub description: Option<String>,
    /// The loader's locale, else {bootmgr}'s.
    pub locale: Option<String>,
    /// {bootmgr}'s timeout in seconds.
    pub timeout: Option<u64>,
    /// The WinRE entry of the loader's recoverysequence, when it is a ramdisk entry.
    pub winre: Option<WinRe>,
    /// The whole store, for anything else.
    pub store: BcdStore,
}

/// A WinRE entry: its loader (a ramdisk), its ramdisk options object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WinRe {
    pub loader: Guid,
    pub options: Guid,
    /// The partition holding the .wim, and its path (`\Recovery\WindowsRE\Winre.wim`).
    pub wim_partition: PartitionId,
    pub wim_path: String,
    /// The options object's SDI device and path (`\Recovery\WindowsRE\boot.sdi`).
    pub sdi_device: Option<Device>,
    pub sdi_path: Option<String>,
    pub description: Option<String>,
    pub locale: Option<String>,
}

/// Read a BIOS store (`\Boot\BCD`): {bootmgr} -> default loader -> osdevice, description,
/// locale, timeout, WinRE. A store without {bootmgr} or a default entry is InvalidInput (the
/// caller falls back to finding winload.exe).
pub fn read_bios_store(hive: &[u8]) -> Result<BiosStore> {
    let store = BcdStore::read(hive)?;
    let bootmgr = store
        .object(&BOOTMGR)
        .ok_or_else(|| Error::invalid("BCD: no {bootmgr} object"))?;
    let default_loader = bootmgr
        .object(EL_DEFAULT_OBJECT)
        .ok_or_else(|| Error::invalid("BCD: {bootmgr} has no default entry (23000003)"))?;
    let loader = store.object(&default_loader).ok_or_else(|| {
        Error::invalid(format!(
            "BCD: the default entry {{{default_loader}}} is not in the store"
        ))
    })?;
    if loader.object_type != TYPE_OSLOADER {
        return Err(Error::invalid(format!(
            "BCD: the default entry {{{default_loader}}} has type {:#010x}, expected an OS loader (0x10200003)",
            loader.object_type
        )));
    }
    let os_device = loader
        .device(EL_OS_DEVICE)
        .or_else(|| loader.device(EL_DEVICE))
        .cloned()
        .ok_or_else(|| {
            Error::invalid(format!(
                "BCD: the default entry {{{default_loader}}} has no osdevice"
            ))
        })?;
    let winre = loader
        .objects(EL_RECOVERY_SEQUENCE)
        .and_then(|l| l.first())
        .and_then(|id| {
            let re = store.object(id)?;
            let Some(Device::Ramdisk {
                options,
                partition,
                path,
            }) = re.device(EL_OS_DEVICE).or_else(|| re.device(EL_DEVICE))
            else {
                return None;
            };
            let opts = store.object(options);
            Some(WinRe {
                loader: *id,
                options: *options,
                wim_partition: *partition,
                wim_path: path.clone(),
                sdi_device: opts.and_then(|o| o.device(EL_RAMDISK_SDI_DEVICE)).cloned(),
                sdi_path: opts
                    .and_then(|o| o.string(EL_RAMDISK_SDI_PATH))
                    .map(str::to_owned),
                description: re.string(EL_DESCRIPTION).map(str::to_owned),
                locale: re.string(EL_LOCALE).map(str::to_owned),
            })
        });
    Ok(BiosStore {
        default_loader,
        os_device,
        description: loader.string(EL_DESCRIPTION).map(str::to_owned),
        locale: loader
            .string(EL_LOCALE)
            .or_else(|| bootmgr.string(EL_LOCALE))
            .map(str::to_owned),
        timeout: bootmgr.integer(EL_TIMEOUT),
        winre,
        store,
    })
}

// ---- building a UEFI store ----

/// Namespace of the name-based GUIDs of generated objects (RFC 9562 version 5: SHA-1 of this
/// namespace's 16 bytes, big-endian, followed by the name). A fixed random GUID, vhdtool's own.
pub const GUID_NAMESPACE: Guid = Guid::from_u128(0x5b0e3c1e_8f0a_4c57_9d2e_7a61c0b5d3f4);

/// The GUIDs of the objects a new store creates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ObjectIds {
    pub loader: Guid,
    pub resume: Guid,
    pub winre_loader: Guid,
    pub winre_options: Guid,
}

impl ObjectIds {
    /// Name-based (RFC 9562 version 5) GUIDs: name = `seed` + ":" + role, role one of
    /// "loader", "resume", "winre-loader", "winre-options", in [`GUID_NAMESPACE`]. The same seed
    /// gives the same GUIDs (Python: `uuid.uuid5(ns, seed + ":loader")`).
    pub fn derive(seed: &[u8]) -> ObjectIds {
        let g = |role: &str| {
            let mut name = seed.to_vec();
            name.push(b':');
            name.extend_from_slice(role.as_bytes());
            uuid_v5(GUID_NAMESPACE, &name)
        };
        ObjectIds {
            loader: g("loader"),
            resume: g("resume"),
            winre_loader: g("winre-loader"),
            winre_options: g("winre-options"),
        }
    }
}

/// RFC 9562 version 5 (SHA-1, name-based) GUID.
pub fn uuid_v5(namespace: Guid, name: &[u8]) -> Guid {
    let mut input = namespace.to_u128().to_be_bytes().to_vec();
    input.extend_from_slice(name);
    let h = sha1(&input);
    let mut b = [0u8; 16];
    b.copy_from_slice(h.get(..16).unwrap_or(&[0; 16]));
    let mut v = u128::from_be_bytes(b);
    v = (v & !(0xF_u128 << 76)) | (0x5_u128 << 76);
    v = (v & !(0x3_u128 << 62)) | (0x2_u128 << 62);
    Guid::from_u128(v)
}

/// SHA-1 (FIPS 180-4), for name-based GUIDs only (not for security).
fn sha1(data: &[u8]) -> [u8; 20] {
    let mut h: [u32; 5] = [
        0x6745_2301,
        0xEFCD_AB89,
        0x98BA_DCFE,
        0x1032_5476,
        0xC3D2_E1F0,
    ];
    let bit_len = u64::try_from(data.len())
        .unwrap_or(u64::MAX)
        .wrapping_mul(8);
    let mut msg = data.to_vec();
    msg.push(0x80);
    while msg.len() % 64 != 56 {
        msg.push(0);
    }
    msg.extend_from_slice(&bit_len.to_be_bytes());
    for block in msg.chunks_exact(64) {
        let mut w = [0u32; 80];
        for (slot, c) in w.iter_mut().zip(block.chunks_exact(4)) {
            *slot = u32::from_be_bytes(c.try_into().unwrap_or([0; 4]));
        }
        for i in 16..80usize {
            let x = [
                i.wrapping_sub(3),
                i.wrapping_sub(8),
                i.wrapping_sub(14),
                i.wrapping_sub(16),
            ]
            .iter()
            .map(|&j| w.get(j).copied().unwrap_or(0))
            .fold(0u32, |a, b| a ^ b);
            if let Some(s) = w.get_mut(i) {
                *s = x.rotate_left(1);
            }
        }
        let [mut a, mut b, mut c, mut d, mut e] = h;
        for (i, wi) in w.iter().enumerate() {
            let (f, k) = match i {
                0..=19 => ((b & c) | (!b & d), 0x5A82_7999),
                20..=39 => (b ^ c ^ d, 0x6ED9_EBA1),
                40..=59 => ((b & c) | (b & d) | (c & d), 0x8F1B_BCDC),
                _ => (b ^ c ^ d, 0xCA62_C1D6u32),
            };
            let t = a
                .rotate_left(5)
                .wrapping_add(f)
                .wrapping_add(e)
                .wrapping_add(k)
                .wrapping_add(*wi);
            e = d;
            d = c;
            c = b.rotate_left(30);
            b = a;
            a = t;
        }
        for (x, y) in h.iter_mut().zip([a, b, c, d, e]) {
            *x = x.wrapping_add(y);
        }
    }
    let mut out = [0u8; 20];
    for (o, x) in out.chunks_exact_mut(4).zip(h) {
        o.copy_from_slice(&x.to_be_bytes());
    }
    out
}

/// WinRE as the new store names it: the partition holding the image (now a GPT partition) and
/// the paths kept from the old store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WinReTarget {
    pub partition: GptPartition,
    /// `\Recovery\WindowsRE\Winre.wim`
    pub wim_path: String,
    /// `\Recovery\WindowsRE\boot.sdi`
    pub sdi_path: String,
    /// The WinRE entry's locale (often "en-us").
    pub locale: String,
}

/// What a new UEFI store is built from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UefiStoreInput {
    /// The ESP (where bootmgfw.efi and memtest.efi are).
    pub esp: GptPartition,
    /// The Windows partition (C:).
    pub os: GptPartition,
    /// Carried over from the old default entry (bcdboot writes e.g. "Windows 10").
    pub description: String,
    /// Carried over: the loader's locale ("en-US").
    pub locale: String,
    /// Carried over: {bootmgr}'s timeout (bcdboot: 30).
    pub timeout: u64,
    pub winre: Option<WinReTarget>,
    /// Windows 10 and later: the loader gets displaymessageoverride 3 (15000066), the store's
    /// Description gets TreatAsSystem; Windows 8.1 stores have neither.
    pub windows10: bool,
}

/// The default values from BIOS stores, as the input of a new store.
impl UefiStoreInput {
    /// Input for a new store carrying `old`'s description, locale, timeout and WinRE paths; the
    /// WinRE image partition is `winre_partition` (its GPT identity after the conversion).
    pub fn from_bios(
        old: &BiosStore,
        esp: GptPartition,
        os: GptPartition,
        winre_partition: Option<GptPartition>,
    ) -> UefiStoreInput {
        let locale = old.locale.clone().unwrap_or_else(|| "en-US".to_owned());
        UefiStoreInput {
            esp,
            os,
            description: old
                .description
                .clone()
                .unwrap_or_else(|| "Windows".to_owned()),
            locale: locale.clone(),
            timeout: old.timeout.unwrap_or(30),
            winre: match (&old.winre, winre_partition) {
                (Some(re), Some(p)) => Some(WinReTarget {
                    partition: p,
                    wim_path: re.wim_path.clone(),
                    sdi_path: re
                        .sdi_path
                        .clone()
                        .unwrap_or_else(|| "\\Recovery\\WindowsRE\\boot.sdi".to_owned()),
                    locale: re.locale.clone().unwrap_or(locale),
                }),
                _ => None,
            },
            windows10: true,
        }
    }
}

fn dev(p: GptPartition) -> Element {
    Element::Device(Device::Partition {
        options: Guid::NIL,
        partition: p.into(),
    })
}
fn s(v: &str) -> Element {
    Element::String(v.to_owned())
}

/// The store bcdboot writes for a UEFI system (notes: windows-offline.md §2.2), with `ids` for
/// the objects it creates. No {fwbootmgr} (it copies NVRAM, which we do not write).
pub fn build_uefi_store(input: &UefiStoreInput, ids: &ObjectIds) -> BcdStore {
    let mut o = BTreeMap::new();
    let locale = || s(&input.locale);
    o.insert(
        BOOTMGR,
        BcdObject::new(TYPE_BOOTMGR)
            .with(EL_DEVICE, dev(input.esp))
            .with(EL_PATH, s("\\EFI\\Microsoft\\Boot\\bootmgfw.efi"))
            .with(EL_DESCRIPTION, s("Windows Boot Manager"))
            .with(EL_LOCALE, locale())
            .with(EL_INHERIT, Element::ObjectList(vec![GLOBALSETTINGS]))
            .with(EL_DEFAULT_OBJECT, Element::Object(ids.loader))
            .with(EL_RESUME_OBJECT, Element::Object(ids.resume))
            .with(EL_DISPLAY_ORDER, Element::ObjectList(vec![ids.loader]))
            .with(EL_TOOLS_DISPLAY_ORDER, Element::ObjectList(vec![MEMDIAG]))
            .with(EL_TIMEOUT, Element::Integer(input.timeout)),
    );
    o.insert(
        MEMDIAG,
        BcdObject::new(TYPE_MEMDIAG)
            .with(EL_DEVICE, dev(input.esp))
            .with(EL_PATH, s("\\EFI\\Microsoft\\Boot\\memtest.efi"))
            .with(EL_DESCRIPTION, s("Windows Memory Diagnostic"))
            .with(EL_LOCALE, locale())
            .with(EL_INHERIT, Element::ObjectList(vec![GLOBALSETTINGS]))
            .with(EL_BAD_MEMORY_ACCESS, Element::Boolean(true)),
    );
    let mut loader = BcdObject::new(TYPE_OSLOADER)
        .with(EL_DEVICE, dev(input.os))
        .with(EL_PATH, s("\\Windows\\system32\\winload.efi"))
        .with(EL_DESCRIPTION, s(&input.description))
        .with(EL_LOCALE, locale())
        .with(EL_INHERIT, Element::ObjectList(vec![BOOTLOADERSETTINGS]))
        .with(EL_ISOLATED_CONTEXT, Element::Boolean(true))
        .with(
            EL_ALLOWED_IN_MEMORY_SETTINGS,
            Element::IntegerList(vec![0x1500_0075]),
        )
        .with(EL_OS_DEVICE, dev(input.os))
        .with(EL_SYSTEM_ROOT, s("\\Windows"))
        .with(EL_DEFAULT_OBJECT, Element::Object(ids.resume))
        .with(EL_NX, Element::Integer(0))
        .with(EL_BOOTMENU_POLICY, Element::Integer(1));
    if input.windows10 {
        loader = loader.with(EL_DISPLAY_MESSAGE_OVERRIDE, Element::Integer(3));
    }
    let mut resume = BcdObject::new(TYPE_RESUME)
        .with(EL_DEVICE, dev(input.os))
        .with(EL_PATH, s("\\Windows\\system32\\winresume.efi"))
        .with(EL_DESCRIPTION, s("Windows Resume Application"))
        .with(EL_LOCALE, locale())
        .with(EL_INHERIT, Element::ObjectList(vec![RESUMELOADERSETTINGS]))
        .with(EL_ISOLATED_CONTEXT, Element::Boolean(true))
        .with(
            EL_ALLOWED_IN_MEMORY_SETTINGS,
            Element::IntegerList(vec![0x1500_0075]),
        )
        .with(EL_OS_DEVICE, dev(input.os))
        .with(EL_SYSTEM_ROOT, s("\\hiberfil.sys"))
        .with(EL_RESUME_BOOTMENU_POLICY, Element::Integer(1))
        .with(EL_DEBUG_OPTION_ENABLED, Element::Boolean(false));
    if let Some(re) = &input.winre {
        for obj in [&mut loader, &mut resume] {
            obj.elements.insert(
                EL_RECOVERY_SEQUENCE,
                Element::ObjectList(vec![ids.winre_loader]),
            );
            obj.elements
                .insert(EL_RECOVERY_ENABLED, Element::Boolean(true));
        }
        let ramdisk = Element::Device(Device::Ramdisk {
            options: ids.winre_options,
            partition: re.partition.into(),
            path: re.wim_path.clone(),
        });
        o.insert(
            ids.winre_loader,
            BcdObject::new(TYPE_OSLOADER)
                .with(EL_DEVICE, ramdisk.clone())
                .with(EL_PATH, s("\\windows\\system32\\winload.efi"))
                .with(EL_DESCRIPTION, s("Windows Recovery Environment"))
                .with(EL_LOCALE, s(&re.locale))
                .with(EL_INHERIT, Element::ObjectList(vec![BOOTLOADERSETTINGS]))
                .with(EL_DISPLAY_MESSAGE, Element::Integer(3))
                .with(EL_OS_DEVICE, ramdisk)
                .with(EL_SYSTEM_ROOT, s("\\windows"))
                .with(EL_NX, Element::Integer(0))
                .with(EL_BOOTMENU_POLICY, Element::Integer(1))
                .with(EL_WINPE, Element::Boolean(true))
                .with(EL_SETUP_RECOVERY_OS, Element::Boolean(true)),
        );
        o.insert(
            ids.winre_options,
            BcdObject::new(TYPE_DEVICE_OPTIONS)
                .with(EL_DESCRIPTION, s("Windows Recovery"))
                .with(EL_RAMDISK_SDI_DEVICE, dev(re.partition))
                .with(EL_RAMDISK_SDI_PATH, s(&re.sdi_path)),
        );
    }
    o.insert(ids.loader, loader);
    o.insert(ids.resume, resume);
    o.insert(
        GLOBALSETTINGS,
        BcdObject::new(TYPE_INHERIT_ALL).with(
            EL_INHERIT,
            Element::ObjectList(vec![DBGSETTINGS, EMSSETTINGS, BADMEMORY]),
        ),
    );
    o.insert(
        DBGSETTINGS,
        BcdObject::new(TYPE_INHERIT_ALL).with(EL_DEBUG_TYPE, Element::Integer(4)),
    );
    o.insert(
        EMSSETTINGS,
        BcdObject::new(TYPE_INHERIT_ALL).with(EL_BOOT_EMS, Element::Boolean(false)),
    );
    o.insert(BADMEMORY, BcdObject::new(TYPE_INHERIT_ALL));
    o.insert(
        BOOTLOADERSETTINGS,
        BcdObject::new(TYPE_INHERIT_OSLOADER).with(
            EL_INHERIT,
            Element::ObjectList(vec![GLOBALSETTINGS, HYPERVISORSETTINGS]),
        ),
    );
    o.insert(
        HYPERVISORSETTINGS,
        BcdObject::new(TYPE_INHERIT_OSLOADER)
            .with(EL_HYPERVISOR_LAUNCH_TYPE, Element::Integer(0))
            .with(EL_HYPERVISOR_DEBUGGER_TYPE, Element::Integer(1))
            .with(EL_HYPERVISOR_BAUDRATE, Element::Integer(0x1c200)),
    );
    o.insert(
        RESUMELOADERSETTINGS,
        BcdObject::new(TYPE_INHERIT_RESUME)
            .with(EL_INHERIT, Element::ObjectList(vec![GLOBALSETTINGS])),
    );
    BcdStore { objects: o }
}

/// A new UEFI store: its hive bytes and the GUIDs of the objects it created (the WinRE loader's
/// GUID goes into ReAgent.xml's WinreBCD id).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UefiStore {
    pub bytes: Vec<u8>,
    pub ids: ObjectIds,
    pub store: BcdStore,
}

/// Build the new store's bytes, with object GUIDs derived from `seed` ([`ObjectIds::derive`]).
/// Refuses (InvalidInput) if any MBR partition device would remain.
pub fn uefi_store_bytes(input: &UefiStoreInput, seed: &[u8]) -> Result<UefiStore> {
    let ids = ObjectIds::derive(seed);
    let store = build_uefi_store(input, &ids);
    for (id, obj) in &store.objects {
        for (et, el) in &obj.elements {
            if let Element::Device(d) = el {
                if matches!(d.partition(), Some(PartitionId::Mbr { .. })) {
                    return Err(Error::invalid(format!(
                        "BCD: object {{{id}}} element {et:08x} names an MBR partition"
                    )));
                }
            }
        }
    }
    let mut key = store.to_key();
    if !input.windows10 {
        if let Some(d) = key.subkeys.iter_mut().find(|k| k.name == "Description") {
            d.values.retain(|v| v.name != "TreatAsSystem");
        }
    }
    let bytes = regf::write_hive(&key, &WriteOptions::bcd())?;
    Ok(UefiStore { bytes, ids, store })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)] // tests: a panic is a failed test
mod tests {
    use super::*;

    #[test]
    fn sha1_known_answers() {
        // FIPS 180-2 appendix A.1 and the empty message
        let hex = |b: [u8; 20]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
        assert_eq!(
            hex(sha1(b"abc")),
            "a9993e364706816aba3e25717850c26c9cd0d89d"
        );
        assert_eq!(hex(sha1(b"")), "da39a3ee5e6b4b0d3255bfef95601890afd80709");
        let long = b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
        assert_eq!(hex(sha1(long)), "84983e441c3bd26ebaae4aa1f95129e5e54670f1");
    }

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
