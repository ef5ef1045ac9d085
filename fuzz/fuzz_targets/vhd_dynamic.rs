//! Fuzz target `vhd_dynamic`: see `fuzz/src/vhd_dynamic.rs` for what it feeds and which properties it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| vhdtool_fuzz::vhd_dynamic::run(data));
