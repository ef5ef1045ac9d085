//! Fuzz target `fs_probe`: see `vhdtool_fuzz::fs_probe` for what it feeds and which properties it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| vhdtool_fuzz::fs_probe(data));
