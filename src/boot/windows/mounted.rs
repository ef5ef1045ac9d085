//! `SYSTEM\MountedDevices`: after the conversion, the volumes of the converted disk must be named
//! by their GPT identity, or Windows gives them new drive letters (C: included).
//!
//! Forms (libguestfs `daemon/inspect_fs_windows.ml`, map_registry_disk_blob_mbr/_gpt; the
//! MBR2GPT documentation's "Fixing drive letter mapping"):
//! - MBR basic volume: 12 bytes, u32 disk signature + u64 partition byte offset;
//! - GPT basic volume: 24 bytes, ASCII `DMIO:ID:` + the partition's unique GUID (on-disk order).
//!
//! Every 12-byte REG_BINARY value (`\DosDevices\X:` and `\??\Volume{...}`) whose signature is
//! this disk's and whose offset starts one of its partitions is rewritten; everything else is left
//! alone. The hive is patched in place ([`crate::regf::HivePatcher`]).
use crate::error::{Error, Result};
use crate::gpt::guid::Guid;
use crate::regf::{self, Hive, HivePatcher, PatchedHive};

/// The key, at the root of the SYSTEM hive (not in a ControlSet).
pub const MOUNTED_DEVICES: &str = "MountedDevices";
/// Prefix of the GPT form.
pub const DMIO_ID: &[u8; 8] = b"DMIO:ID:";
/// Length of the MBR form.
pub const MBR_FORM_BYTES: usize = 12;

/// A partition of the converted disk: its byte offset (the same before and after) and its new
/// GPT unique GUID.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvertedPartition {
    pub offset: u64,
    pub guid: Guid,
}

/// What the patch does.
#[derive(Debug, Clone)]
pub struct MountedDevicesPatch {
    /// Value names rewritten, with the partition offset each named.
    pub changed: Vec<(String, u64)>,
    /// 12-byte values with this disk's signature whose offset starts no listed partition (left
    /// alone; worth a warning).
    pub unmatched: Vec<(String, u64)>,
    /// The writes (empty when nothing changed) and the patched hive.
    pub patched: PatchedHive,
}

/// Decode the MBR form: (signature, offset).
pub fn mbr_form(data: &[u8]) -> Option<(u32, u64)> {
    if data.len() != MBR_FORM_BYTES {
        return None;
    }
    let sig: [u8; 4] = data.get(..4)?.try_into().ok()?;
    let off: [u8; 8] = data.get(4..12)?.try_into().ok()?;
    Some((u32::from_le_bytes(sig), u64::from_le_bytes(off)))
}

/// The GPT form of a partition.
pub fn gpt_form(guid: &Guid) -> Vec<u8> {
    let mut v = DMIO_ID.to_vec();
    v.extend_from_slice(&guid.to_bytes());
    v
}

/// Rewrite the MBR-form values of disk `signature` in the SYSTEM hive `hive` (clean: replay the
/// logs first). Returns the in-place writes; none when no value names this disk.
pub fn patch_mounted_devices(
    hive: &[u8],
    signature: u32,
    partitions: &[ConvertedPartition],
) -> Result<MountedDevicesPatch> {
    let h = Hive::parse(hive)?;
    let key = h.open(MOUNTED_DEVICES)?.ok_or_else(|| {
        Error::invalid("SYSTEM hive: no MountedDevices key at the root (is this a SYSTEM hive?)")
    })?;
    let mut changes: Vec<(String, u64, Guid)> = Vec::new();
    let mut unmatched = Vec::new();
    for v in h.values(&key)? {
        if v.data_type != regf::REG_BINARY || v.data_size != 12 {
            continue;
        }
        let data = h.value_data(&v)?;
        let Some((sig, offset)) = mbr_form(&data) else {
            continue;
        };
        if sig != signature {
            continue;
        }
        match partitions.iter().find(|p| p.offset == offset) {
            Some(p) => changes.push((v.name, offset, p.guid)),
            None => unmatched.push((v.name, offset)),
        }
    }
    let mut patcher = HivePatcher::new(hive)?;
    for (name, _, guid) in &changes {
        patcher.set_value_data(MOUNTED_DEVICES, name, &gpt_form(guid))?;
    }
    let patched = patcher.finish()?;
    Ok(MountedDevicesPatch {
        changed: changes.into_iter().map(|(n, o, _)| (n, o)).collect(),
        unmatched,
        patched,
    })
}
