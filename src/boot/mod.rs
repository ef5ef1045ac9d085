//! Boot files and boot loaders of the guest, per operating system; below `convert`, which maps
//! the typed checks and guest notes returned here into its validation.
pub mod linux;
