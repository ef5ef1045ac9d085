//! Fuzz harness: the input as an image file held in memory, opened by `vhdtool::image` as a
//! qcow2 (inputs without the "QFI\xfb" magic are skipped: the other harnesses cover them), then its
//! extent map walked and its data read within a budget.
//!
//! Properties: those of `image_map::check`.

use vhdtool::image::{Image, OpenOptions};

pub use super::image_map::check;

pub fn run(data: &[u8]) {
    if !data.starts_with(b"QFI\xfb") {
        return;
    }
    if let Ok(img) = Image::from_bytes(data.to_vec(), &OpenOptions::default()) {
        check(&img);
    }
}
