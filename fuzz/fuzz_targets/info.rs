//! Fuzz target `info`: see `vhdtool_fuzz::info` for what it feeds and which properties it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| vhdtool_fuzz::info(data));
