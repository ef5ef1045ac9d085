//! The identity a conversion derives its GUIDs and the ESP's volume id from.
//!
//! Derived GUIDs make the same input give the same bytes. Each is name-based (RFC 9562 version 8,
//! SHA-256, [`Guid::name_based`]) in vhdtool's namespace [`NAMESPACE`], the name being the seed
//! followed by what the GUID is for ("disk", "partition 2" (the MBR index), "esp", "bios boot",
//! "esp volume" (the FAT volume id: its first 4 bytes)). The seed is the VHD footer's unique id
//! (16 bytes, a VHD only), the MBR sector (512 bytes) and the disk size (u64, little-endian).
//! `--random-guids` appends two random GUIDs (getrandom(2)) to the seed.

use crate::disk::Disk;
use crate::error::Result;
use crate::gpt::Guid;
use crate::vhd;

/// vhdtool's namespace for name-based GUIDs (a fixed random GUID).
pub const NAMESPACE: Guid = Guid::from_u128(0x5a1c_0d3e_6b7f_4c2a_9e41_d8f0_2b6c_7a93);

/// The seed of a conversion's GUIDs.
pub struct Identity {
    seed: Vec<u8>,
}

impl Identity {
    /// The identity of the image in `file`, described by `image`.
    pub fn of(file: &dyn Disk, image: &vhd::Image, random: bool) -> Result<Identity> {
        let mut seed = Vec::with_capacity(600);
        if let Some(f) = &image.footer {
            seed.extend_from_slice(f.unique_id.as_bytes());
        }
        let mut sector0 = [0u8; 512];
        file.read_at(0, &mut sector0)?;
        seed.extend_from_slice(&sector0);
        seed.extend_from_slice(&image.data_bytes.to_le_bytes());
        if random {
            // two random GUIDs: 244 random bits from getrandom(2)
            seed.extend_from_slice(&Guid::random()?.0);
            seed.extend_from_slice(&Guid::random()?.0);
        }
        Ok(Identity { seed })
    }

    /// The GUID named `what` (name-based: the same image and name give the same GUID).
    pub fn guid(&self, what: &str) -> Guid {
        let mut s = self.seed.clone();
        s.extend_from_slice(what.as_bytes());
        Guid::name_based(NAMESPACE, &s)
    }
}
