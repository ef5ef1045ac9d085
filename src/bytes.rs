//! Bounded reads of fixed-width integers at an offset of a byte slice: the one helper every
//! parser uses where a zerocopy layout does not fit (variable-offset records, index entries).
//!
//! Each function returns `None` when `offset + width` overflows or runs past the slice; none
//! panics. [`at`] turns the `None` into a `Corrupt` error naming the structure and the offset.

use crate::error::{Error, Result};

/// The `N` bytes at `offset`, `None` when they are not all inside `b`.
pub fn array_at<const N: usize>(b: &[u8], offset: usize) -> Option<[u8; N]> {
    b.get(offset..offset.checked_add(N)?)?.try_into().ok()
}

/// Little-endian u16 at `offset`.
pub fn le_u16(b: &[u8], offset: usize) -> Option<u16> {
    array_at(b, offset).map(u16::from_le_bytes)
}

/// Little-endian u32 at `offset`.
pub fn le_u32(b: &[u8], offset: usize) -> Option<u32> {
    array_at(b, offset).map(u32::from_le_bytes)
}

/// Little-endian u64 at `offset`.
pub fn le_u64(b: &[u8], offset: usize) -> Option<u64> {
    array_at(b, offset).map(u64::from_le_bytes)
}

/// Big-endian u16 at `offset`.
pub fn be_u16(b: &[u8], offset: usize) -> Option<u16> {
    array_at(b, offset).map(u16::from_be_bytes)
}

/// Big-endian u32 at `offset`.
pub fn be_u32(b: &[u8], offset: usize) -> Option<u32> {
    array_at(b, offset).map(u32::from_be_bytes)
}

/// Big-endian u64 at `offset`.
pub fn be_u64(b: &[u8], offset: usize) -> Option<u64> {
    array_at(b, offset).map(u64::from_be_bytes)
}

/// `read(b, offset)` or a `Corrupt` error: "`what` at 0x`offset`: truncated (N bytes)".
///
/// ```
/// use vhdtool::bytes::{at, le_u32};
/// let b = [1, 0, 0, 0];
/// assert_eq!(at(&b, 0, "header", le_u32).unwrap(), 1);
/// assert!(at(&b, 1, "header", le_u32).is_err());
/// ```
pub fn at<T>(
    b: &[u8],
    offset: usize,
    what: &str,
    read: fn(&[u8], usize) -> Option<T>,
) -> Result<T> {
    read(b, offset).ok_or_else(|| {
        Error::corrupt(format!(
            "{what} at 0x{offset:x}: truncated ({} bytes available)",
            b.len()
        ))
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn reads_both_byte_orders() {
        let b = [0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09];
        assert_eq!(le_u16(&b, 0), Some(0x0201));
        assert_eq!(be_u16(&b, 0), Some(0x0102));
        assert_eq!(le_u32(&b, 1), Some(0x0504_0302));
        assert_eq!(be_u32(&b, 1), Some(0x0203_0405));
        assert_eq!(le_u64(&b, 1), Some(0x0908_0706_0504_0302));
        assert_eq!(be_u64(&b, 0), Some(0x0102_0304_0506_0708));
        assert_eq!(array_at::<3>(&b, 6), Some([7, 8, 9]));
    }

    #[test]
    fn out_of_range_is_none_never_a_panic() {
        let b = [0u8; 8];
        assert_eq!(le_u16(&b, 7), None);
        assert_eq!(le_u32(&b, 5), None);
        assert_eq!(le_u64(&b, 1), None);
        assert_eq!(be_u64(&b, usize::MAX), None, "offset + width overflows");
        assert_eq!(le_u32(&[], 0), None);
        assert_eq!(le_u64(&b, 0), Some(0));
    }

    #[test]
    fn at_names_the_structure_and_offset() {
        let e = at(&[0u8; 3], 2, "index entry", le_u16).unwrap_err();
        assert_eq!(e.kind(), crate::error::ErrorKind::Corrupt);
        assert!(e.message().contains("index entry at 0x2"), "{e}");
        assert_eq!(at(&[0u8, 1], 0, "x", be_u16).unwrap(), 1);
    }
}
