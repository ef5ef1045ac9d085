//! Device elements (BL_DEVICE_DESCRIPTOR, ReactOS `boot/environ/include/bl.h`): the raw
//! layouts, and [`Device`] with its decoder and encoder.

use zerocopy::little_endian::U32;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use crate::gpt::guid::Guid;
use crate::regf;

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
