//! Fuzz target `qcow2`: see `fuzz/src/qcow2.rs` for what it feeds and which properties it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| vhdtool_fuzz::qcow2::run(data));
