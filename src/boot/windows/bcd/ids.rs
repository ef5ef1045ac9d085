//! The GUIDs of generated objects: name-based from a seed, with the same derivation as every
//! other derived GUID of vhdtool ([`Guid::name_based`]: RFC 9562 version 8, SHA-256).

use crate::gpt::guid::Guid;

/// Namespace of the name-based GUIDs of generated BCD objects ([`Guid::name_based`]: SHA-256 of
/// this namespace's 16 bytes, big-endian, followed by the name). A fixed random GUID, vhdtool's
/// own, distinct from the disk-identity namespace so the two never share a GUID.
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
    /// Name-based (RFC 9562 version 8, SHA-256, [`Guid::name_based`]) GUIDs: name = `seed` +
    /// ":" + role, role one of "loader", "resume", "winre-loader", "winre-options", in
    /// [`GUID_NAMESPACE`]. The same seed gives the same GUIDs (Python:
    /// `sha256(ns.bytes + seed + b":loader")[:16]` with version 8 and variant 10 set).
    pub fn derive(seed: &[u8]) -> ObjectIds {
        let g = |role: &str| {
            let mut name = seed.to_vec();
            name.push(b':');
            name.extend_from_slice(role.as_bytes());
            Guid::name_based(GUID_NAMESPACE, &name)
        };
        ObjectIds {
            loader: g("loader"),
            resume: g("resume"),
            winre_loader: g("winre-loader"),
            winre_options: g("winre-options"),
        }
    }
}
