//! Element values: decoding and encoding by the element type's format nibble.

use super::{guid_str, parse_guid, Device};
use crate::gpt::guid::Guid;
use crate::regf;

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
