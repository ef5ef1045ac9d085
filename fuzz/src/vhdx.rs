//! Fuzz harness: the input as an image file held in memory, opened by `vhdtool::image` as a
//! VHDX (inputs without the "vhdxfile" signature are skipped: the other harnesses cover them), then its
//! extent map walked and its data read within a budget.
//!
//! A differencing VHDX needs its parent: an input may hold a chain, the child first and its
//! parent (and the parent's parent, ...) after it, each starting with "vhdxfile" at a whole MiB
//! (VHDX files are whole MiB long). The images after the first are its memory parents
//! (`OpenOptions::memory_parents`), checked like a parent found on disk (DataWriteGuid, format,
//! sector size), so the parent locator, the sector bitmaps and the reads through the chain are
//! all reached.
//!
//! Properties: those of `image_map::check`.

use vhdtool::image::{Image, MemoryImage, OpenOptions};

pub use super::image_map::check;

/// Most images taken from one input (the reader's own chain bound is deeper).
const MAX_IMAGES: usize = 4;
const MIB: usize = 1 << 20;

/// The input cut where another "vhdxfile" starts at a whole MiB.
pub fn split(data: &[u8]) -> Vec<&[u8]> {
    let mut starts = vec![0usize];
    let mut at = MIB;
    while at < data.len() && starts.len() < MAX_IMAGES {
        if data[at..].starts_with(b"vhdxfile") {
            starts.push(at);
        }
        at += MIB;
    }
    starts
        .iter()
        .enumerate()
        .map(|(i, &s)| &data[s..starts.get(i + 1).copied().unwrap_or(data.len())])
        .collect()
}

pub fn run(data: &[u8]) {
    if !data.starts_with(b"vhdxfile") {
        return;
    }
    let images = split(data);
    let opts = OpenOptions {
        memory_parents: images[1..]
            .iter()
            .map(|p| MemoryImage(p.to_vec().into()))
            .collect(),
        ..OpenOptions::default()
    };
    if let Ok(img) = Image::from_bytes(images[0].to_vec(), &opts) {
        check(&img);
    }
}
