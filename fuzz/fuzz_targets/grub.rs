//! Fuzz target `grub`: see `vhdtool::fuzz::grub` for what it feeds and which properties it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| vhdtool::fuzz::grub(data));
