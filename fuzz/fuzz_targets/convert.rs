//! Fuzz target `convert`: see `vhdtool_fuzz::convert` for what it feeds and which properties it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| vhdtool_fuzz::convert(data));
