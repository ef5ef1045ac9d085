//! Fuzz harness: the input as an image file held in memory, opened by `vhdtool::image` (a
//! dynamic or differencing VHD when its footer says so; anything else is refused), then its
//! extent map walked and its data read within a budget.
//!
//! Properties: those of `image_map::check`.

use vhdtool::image::{Image, OpenOptions};

pub use super::image_map::check;

pub fn run(data: &[u8]) {
    if let Ok(img) = Image::from_bytes(data.to_vec(), &OpenOptions::default()) {
        check(&img);
    }
}
