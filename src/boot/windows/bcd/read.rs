//! Reading a BIOS store: what the conversion carries over from `\Boot\BCD`.

use super::{
    BcdStore, Device, PartitionId, BOOTMGR, EL_DEFAULT_OBJECT, EL_DESCRIPTION, EL_DEVICE,
    EL_DISPLAY_ORDER, EL_LOCALE, EL_OS_DEVICE, EL_RAMDISK_SDI_DEVICE, EL_RAMDISK_SDI_PATH,
    EL_RECOVERY_SEQUENCE, EL_TIMEOUT, TYPE_OSLOADER,
};
use crate::error::{Error, Result};
use crate::gpt::guid::Guid;

/// What the lead needs from the old BIOS store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BiosStore {
    /// The OS loader entry carried over: {bootmgr}'s default, or the entry that boots the
    /// Windows partition when the default does not ([`BiosStore::entry_for`]).
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
    entry(store, default_loader)
}

/// The store seen through OS loader entry `id` (its osdevice, description, locale, WinRE).
fn entry(store: BcdStore, default_loader: Guid) -> Result<BiosStore> {
    let bootmgr = store
        .object(&BOOTMGR)
        .ok_or_else(|| Error::invalid("BCD: no {bootmgr} object"))?;
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

impl BiosStore {
    /// The OS loader entry that boots Windows from the MBR partition at byte `offset` of the
    /// disk with `signature`, when the default entry does not (a store whose default is a WinPE
    /// ramdisk, or another disk's entry): the first such entry in {bootmgr}'s display order,
    /// else in the store. Its description, locale and WinRE are what the new store carries.
    pub fn entry_for(&self, signature: u32, offset: u64) -> Option<BiosStore> {
        let wanted = PartitionId::Mbr { signature, offset };
        let boots_it = |id: &Guid| {
            let Some(o) = self.store.object(id) else {
                return false;
            };
            o.object_type == TYPE_OSLOADER
                && matches!(
                    o.device(EL_OS_DEVICE).or_else(|| o.device(EL_DEVICE)),
                    Some(Device::Partition { partition, .. }) if *partition == wanted
                )
        };
        let listed = self
            .store
            .object(&BOOTMGR)
            .and_then(|b| b.objects(EL_DISPLAY_ORDER))
            .unwrap_or_default();
        let id = listed
            .iter()
            .find(|id| boots_it(id))
            .or_else(|| self.store.objects.keys().find(|id| boots_it(id)))?;
        entry(self.store.clone(), *id).ok()
    }
}
