//! Fuzz target `regf_read`: see `fuzz/src/regf_read.rs` for what it feeds and which properties it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| vhdtool_fuzz::regf_read::run(data));
