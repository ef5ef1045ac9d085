//! Fuzz target `bcd`: see `fuzz/src/bcd.rs` for what it feeds and which properties it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| vhdtool_fuzz::bcd::run(data));
