//! Fuzz target `vhdx`: see `fuzz/src/vhdx.rs` for what it feeds and which properties it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| vhdtool_fuzz::vhdx::run(data));
