//! Fuzz target `gpt`: see `vhdtool::fuzz::gpt` for what it feeds and which properties it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| vhdtool::fuzz::gpt(data));
