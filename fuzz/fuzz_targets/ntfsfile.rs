//! Fuzz target `ntfsfile`: see `fuzz/src/ntfsfile.rs` for what it feeds and which properties it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| vhdtool_fuzz::ntfsfile::run(data));
