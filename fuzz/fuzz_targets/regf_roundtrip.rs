//! Fuzz target `regf_roundtrip`: see `fuzz/src/regf_roundtrip.rs` for what it feeds and which properties it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| vhdtool_fuzz::regf_roundtrip::run(data));
