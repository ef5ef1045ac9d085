//! Fuzz target `gpt`: see `vhdtool_fuzz::gpt` for what it feeds and which properties it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| vhdtool_fuzz::gpt(data));
