//! What the conversion writes for Windows once the new GPT identity is known: the UEFI store
//! (bcdboot's layout, devices naming the GPT partitions), the `MountedDevices` patch and
//! ReAgent.xml's WinRE id, as byte writes at disk offsets. Nothing here writes; the caller
//! makes them steps of its plan.

use serde::Serialize;

use super::bcd::{uefi_store_bytes, GptPartition, UefiStore, UefiStoreInput};
use super::discover::WindowsInstall;
use super::mounted::ConvertedPartition;
use crate::error::{Error, Result};
use crate::gpt::Guid;

/// The GPT the conversion writes, as Windows will see it.
#[derive(Debug, Clone)]
pub struct GptIdentity {
    pub disk: Guid,
    /// The ESP's unique GUID.
    pub esp: Guid,
    /// The old partitions: (byte offset, new unique GUID).
    pub partitions: Vec<(u64, Guid)>,
}

impl GptIdentity {
    fn at(&self, offset: u64) -> Option<GptPartition> {
        self.partitions
            .iter()
            .find(|(o, _)| *o == offset)
            .map(|(_, g)| GptPartition {
                partition: *g,
                disk: self.disk,
            })
    }
}

/// One write at a disk offset.
#[derive(Debug, Clone)]
pub struct DiskWrite {
    pub offset: u64,
    pub bytes: Vec<u8>,
    pub what: String,
}

/// The Windows part of a conversion.
#[derive(Debug, Clone)]
pub struct WindowsTarget {
    pub store: UefiStore,
    pub writes: Vec<DiskWrite>,
    /// MountedDevices values rewritten (name, partition offset).
    pub drive_letters: Vec<(String, u64)>,
    pub warnings: Vec<String>,
}

/// A summary for reports.
#[derive(Debug, Clone, Serialize)]
pub struct TargetSummary {
    pub loader: String,
    pub winre_loader: Option<String>,
    pub mounted_devices_changed: Vec<String>,
    pub hive_bytes_written: u64,
}

impl WindowsTarget {
    pub fn summary(&self) -> TargetSummary {
        TargetSummary {
            loader: format!("{{{}}}", self.store.ids.loader),
            winre_loader: self
                .store
                .store
                .objects
                .contains_key(&self.store.ids.winre_loader)
                .then(|| format!("{{{}}}", self.store.ids.winre_loader)),
            mounted_devices_changed: self.drive_letters.iter().map(|(n, _)| n.clone()).collect(),
            hive_bytes_written: self
                .writes
                .iter()
                .map(|w| u64::try_from(w.bytes.len()).unwrap_or(u64::MAX))
                .sum(),
        }
    }
}

/// Build the store and the in-place writes for `w` converted to the GPT `id`.
pub fn convert_install(w: &WindowsInstall, id: &GptIdentity) -> Result<WindowsTarget> {
    let win = w
        .windows
        .ok_or_else(|| Error::internal("Windows target without a Windows partition"))?;
    let esp = GptPartition {
        partition: id.esp,
        disk: id.disk,
    };
    let os = id.at(win.offset).ok_or_else(|| {
        Error::internal(format!(
            "the Windows partition at byte {} is not in the new GPT",
            win.offset
        ))
    })?;
    let winre_part = w
        .winre
        .as_ref()
        .and_then(|(index, _)| w.offset_of(*index))
        .and_then(|off| id.at(off));
    let mut warnings = Vec::new();
    let input = match &w.store {
        Some(old) => {
            if old.winre.is_some() && winre_part.is_none() {
                warnings.push("WinRE's partition could not be told from the old store: the new store has no WinRE entry (after the first boot: reagentc /enable)".to_string());
            }
            UefiStoreInput::from_bios(old, esp, os, winre_part)
        }
        None => UefiStoreInput {
            esp,
            os,
            description: "Windows".into(),
            locale: "en-US".into(),
            timeout: 30,
            winre: None,
            windows10: true,
        },
    };
    let store = uefi_store_bytes(&input, &id.disk.to_bytes())?;
    let mut writes = Vec::new();
    let mut drive_letters = Vec::new();
    if let Some(h) = &w.hive {
        let parts: Vec<ConvertedPartition> = id
            .partitions
            .iter()
            .map(|(offset, guid)| ConvertedPartition {
                offset: *offset,
                guid: *guid,
            })
            .collect();
        let (p, hw) = h.patch(w.disk_signature, &parts)?;
        for (name, off) in &p.unmatched {
            warnings.push(format!("MountedDevices {name} names this disk at byte {off}, where no partition starts: left as it is"));
        }
        drive_letters = p.changed;
        for (vol, bytes) in hw {
            writes.push(DiskWrite {
                offset: win
                    .offset
                    .checked_add(vol)
                    .ok_or_else(|| Error::corrupt("hive offset"))?,
                bytes,
                what: format!(
                    "partition {}: SYSTEM hive (MountedDevices), in place",
                    win.index
                ),
            });
        }
    }
    if let (Some(r), true) = (&w.reagent, input.winre.is_some()) {
        match r.patch(&store.ids.winre_loader)? {
            Some((vol, bytes)) => writes.push(DiskWrite {
                offset: win.offset.checked_add(vol).ok_or_else(|| Error::corrupt("ReAgent.xml offset"))?,
                bytes,
                what: format!("partition {}: ReAgent.xml WinRE id, in place", win.index),
            }),
            None => warnings.push("ReAgent.xml is resident or split: its WinRE id is not updated (after the first boot: reagentc /disable && reagentc /enable)".into()),
        }
    }
    Ok(WindowsTarget {
        store,
        writes,
        drive_letters,
        warnings,
    })
}
