//! A store's objects and their hive layout: reading a store from hive bytes, writing one.

use std::collections::BTreeMap;

use super::{corrupt, guid_str, parse_guid, Device, Element, MAX_ELEMENTS, MAX_OBJECTS};
use crate::error::Result;
use crate::gpt::guid::Guid;
use crate::regf::{self, Hive, Key, WriteOptions};

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
    pub(super) fn with(mut self, element: u32, value: Element) -> BcdObject {
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
