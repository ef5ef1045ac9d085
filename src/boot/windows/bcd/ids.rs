//! The GUIDs of generated objects: name-based (RFC 9562 version 5) from a seed.

use crate::gpt::guid::Guid;

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
pub(super) fn sha1(data: &[u8]) -> [u8; 20] {
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
