//! Boot configuration taken from, and written for, the operating system inside an image.

pub mod windows;
