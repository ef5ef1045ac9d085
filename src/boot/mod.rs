//! Boot files, boot loaders and boot configuration of the guest, per operating system, taken
//! from the image and written for it; below `convert`, which maps the typed checks and guest
//! notes returned here into its validation.

pub mod linux;
pub mod windows;
