//! Fuzz target `mbr`: see `vhdtool::fuzz::mbr` for what it feeds and which properties it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| vhdtool::fuzz::mbr(data));
