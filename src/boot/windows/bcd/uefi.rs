//! Building a UEFI store as bcdboot writes it.

use std::collections::BTreeMap;

use super::*;
use crate::error::{Error, Result};
use crate::gpt::guid::Guid;
use crate::regf::{self, WriteOptions};

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
    o.insert(BOOTMGR, boot_manager(input, ids));
    o.insert(MEMDIAG, memory_diagnostic(input));
    let mut loader = os_loader(input, ids);
    let mut resume = resume_application(input);
    if let Some(re) = &input.winre {
        for obj in [&mut loader, &mut resume] {
            obj.elements.insert(
                EL_RECOVERY_SEQUENCE,
                Element::ObjectList(vec![ids.winre_loader]),
            );
            obj.elements
                .insert(EL_RECOVERY_ENABLED, Element::Boolean(true));
        }
        o.insert(ids.winre_loader, winre_loader(re, ids));
        o.insert(ids.winre_options, winre_options(re));
    }
    o.insert(ids.loader, loader);
    o.insert(ids.resume, resume);
    insert_settings(&mut o);
    BcdStore { objects: o }
}

/// {bootmgr}: bootmgfw.efi on the ESP, the new loader as its default and only entry.
fn boot_manager(input: &UefiStoreInput, ids: &ObjectIds) -> BcdObject {
    BcdObject::new(TYPE_BOOTMGR)
        .with(EL_DEVICE, dev(input.esp))
        .with(EL_PATH, s("\\EFI\\Microsoft\\Boot\\bootmgfw.efi"))
        .with(EL_DESCRIPTION, s("Windows Boot Manager"))
        .with(EL_LOCALE, s(&input.locale))
        .with(EL_INHERIT, Element::ObjectList(vec![GLOBALSETTINGS]))
        .with(EL_DEFAULT_OBJECT, Element::Object(ids.loader))
        .with(EL_RESUME_OBJECT, Element::Object(ids.resume))
        .with(EL_DISPLAY_ORDER, Element::ObjectList(vec![ids.loader]))
        .with(EL_TOOLS_DISPLAY_ORDER, Element::ObjectList(vec![MEMDIAG]))
        .with(EL_TIMEOUT, Element::Integer(input.timeout))
}

/// {memdiag}: memtest.efi on the ESP.
fn memory_diagnostic(input: &UefiStoreInput) -> BcdObject {
    BcdObject::new(TYPE_MEMDIAG)
        .with(EL_DEVICE, dev(input.esp))
        .with(EL_PATH, s("\\EFI\\Microsoft\\Boot\\memtest.efi"))
        .with(EL_DESCRIPTION, s("Windows Memory Diagnostic"))
        .with(EL_LOCALE, s(&input.locale))
        .with(EL_INHERIT, Element::ObjectList(vec![GLOBALSETTINGS]))
        .with(EL_BAD_MEMORY_ACCESS, Element::Boolean(true))
}

/// The OS loader: winload.efi on the Windows partition (without its recovery elements).
fn os_loader(input: &UefiStoreInput, ids: &ObjectIds) -> BcdObject {
    let loader = BcdObject::new(TYPE_OSLOADER)
        .with(EL_DEVICE, dev(input.os))
        .with(EL_PATH, s("\\Windows\\system32\\winload.efi"))
        .with(EL_DESCRIPTION, s(&input.description))
        .with(EL_LOCALE, s(&input.locale))
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
        loader.with(EL_DISPLAY_MESSAGE_OVERRIDE, Element::Integer(3))
    } else {
        loader
    }
}

/// The resume application: winresume.efi on the Windows partition (without its recovery
/// elements).
fn resume_application(input: &UefiStoreInput) -> BcdObject {
    BcdObject::new(TYPE_RESUME)
        .with(EL_DEVICE, dev(input.os))
        .with(EL_PATH, s("\\Windows\\system32\\winresume.efi"))
        .with(EL_DESCRIPTION, s("Windows Resume Application"))
        .with(EL_LOCALE, s(&input.locale))
        .with(EL_INHERIT, Element::ObjectList(vec![RESUMELOADERSETTINGS]))
        .with(EL_ISOLATED_CONTEXT, Element::Boolean(true))
        .with(
            EL_ALLOWED_IN_MEMORY_SETTINGS,
            Element::IntegerList(vec![0x1500_0075]),
        )
        .with(EL_OS_DEVICE, dev(input.os))
        .with(EL_SYSTEM_ROOT, s("\\hiberfil.sys"))
        .with(EL_RESUME_BOOTMENU_POLICY, Element::Integer(1))
        .with(EL_DEBUG_OPTION_ENABLED, Element::Boolean(false))
}

/// The WinRE loader: winload.efi inside the ramdisk of the .wim.
fn winre_loader(re: &WinReTarget, ids: &ObjectIds) -> BcdObject {
    let ramdisk = Element::Device(Device::Ramdisk {
        options: ids.winre_options,
        partition: re.partition.into(),
        path: re.wim_path.clone(),
    });
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
        .with(EL_SETUP_RECOVERY_OS, Element::Boolean(true))
}

/// The WinRE ramdisk options: where boot.sdi is.
fn winre_options(re: &WinReTarget) -> BcdObject {
    BcdObject::new(TYPE_DEVICE_OPTIONS)
        .with(EL_DESCRIPTION, s("Windows Recovery"))
        .with(EL_RAMDISK_SDI_DEVICE, dev(re.partition))
        .with(EL_RAMDISK_SDI_PATH, s(&re.sdi_path))
}

/// The inherited settings objects bcdboot creates ({globalsettings}, {dbgsettings}, ...).
fn insert_settings(o: &mut BTreeMap<Guid, BcdObject>) {
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
