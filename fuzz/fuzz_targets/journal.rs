//! Fuzz target `journal`: see `vhdtool_fuzz::journal` for what it feeds and which properties it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| vhdtool_fuzz::journal(data));
