//! The property shared by the image-format harnesses (`qcow2.rs`, `vhdx.rs`, `vhd_dynamic.rs`):
//! walk an opened image's extent map and read what it calls data, within a budget.
//!
//! Properties: no panic; memory bounded (the readers cache one block bitmap, one table, one
//! cluster); extents in order, non-empty, inside the virtual size; reads inside the virtual
//! size either succeed or fail with an error, reads past it always fail.

use vhdtool::disk::Disk;
use vhdtool::image::{ExtentKind, Image};

/// Extents walked and data bytes read per input: a crafted 4 TiB disk stays quick.
const MAX_EXTENTS: usize = 512;
const MAX_READ_BYTES: u64 = 4 << 20;

/// Walk the map and read what it calls data, within the budget.
pub fn check(img: &Image) {
    let size = img.len();
    let mut next = 0u64;
    let mut budget = MAX_READ_BYTES;
    let mut buf = vec![0u8; 64 << 10];
    for e in img.extents().take(MAX_EXTENTS) {
        let Ok(e) = e else { break };
        assert_eq!(e.offset, next, "extents out of order");
        assert!(e.len > 0, "empty extent at {:#x}", e.offset);
        next = e.offset.checked_add(e.len).expect("extent end overflows");
        assert!(next <= size, "extent past the end: {e:?} of {size}");
        let n = e.len.min(buf.len() as u64).min(budget) as usize;
        if n > 0 {
            budget -= n as u64;
            if img.read_at(e.offset, &mut buf[..n]).is_ok() && e.kind == ExtentKind::Zero {
                assert!(
                    buf[..n].iter().all(|&b| b == 0),
                    "zero extent reads data: {e:?}"
                );
            }
        }
    }
    let mut b = [0u8; 1];
    assert!(
        img.read_at(size, &mut b).is_err(),
        "read past the end succeeded"
    );
    if size > 0 {
        let _ = img.read_at(size - 1, &mut b);
    }
}
