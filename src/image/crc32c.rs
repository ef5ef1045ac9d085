//! CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), the checksum of VHDX headers, region
//! tables, metadata and log entries (VHDX spec 2.2.2 "Checksums"). A 1 KiB table built at
//! compile time; VHDX checksums cover at most 64 KiB at a time, so speed does not matter.

const POLY: u32 = 0x82F6_3B78;

// evaluated at compile time: an index out of range or an overflow is a build error
#[allow(clippy::indexing_slicing, clippy::arithmetic_side_effects)]
const TABLE: [u32; 256] = {
    let mut t = [0u32; 256];
    let mut i = 0usize;
    while i < 256 {
        #[allow(clippy::as_conversions)] // i < 256: exact
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 { (c >> 1) ^ POLY } else { c >> 1 };
            k += 1;
        }
        t[i] = c;
        i += 1;
    }
    t
};

/// CRC-32C of `data`.
#[cfg(test)]
pub fn crc32c(data: &[u8]) -> u32 {
    let mut c = !0u32;
    for &b in data {
        let i = usize::from(u8::try_from((c ^ u32::from(b)) & 0xff).unwrap_or(0));
        c = TABLE.get(i).copied().unwrap_or(0) ^ (c >> 8);
    }
    !c
}

/// CRC-32C of `data` with the 4 bytes at `at` taken as zero (where the checksum is stored).
pub fn crc32c_without(data: &[u8], at: usize) -> u32 {
    let mut c = !0u32;
    for (i, &b) in data.iter().enumerate() {
        let b = if (at..at.saturating_add(4)).contains(&i) {
            0
        } else {
            b
        };
        let j = usize::from(u8::try_from((c ^ u32::from(b)) & 0xff).unwrap_or(0));
        c = TABLE.get(j).copied().unwrap_or(0) ^ (c >> 8);
    }
    !c
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)] // tests: a panic is a failed test
mod tests {
    use super::*;

    #[test]
    fn check_value() {
        // the standard check value of CRC-32C ("123456789")
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
        assert_eq!(crc32c(b""), 0);
        let mut v = b"123456789\0\0\0\0\0".to_vec();
        assert_eq!(crc32c_without(&v, 9), crc32c(&v));
        v[10] = 0xff;
        assert_eq!(crc32c_without(&v, 9), crc32c(b"123456789\0\0\0\0\0"));
        assert_ne!(crc32c(&v), crc32c_without(&v, 9));
    }
}
