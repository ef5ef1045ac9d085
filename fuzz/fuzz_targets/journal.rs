//! Fuzz target `journal`: see `vhdtool::fuzz::journal` for what it feeds and which properties it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| vhdtool::fuzz::journal(data));
