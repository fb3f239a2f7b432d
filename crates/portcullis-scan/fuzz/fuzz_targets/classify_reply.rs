//! Fuzz target `classify_reply`: see `checks::classify_reply` for the input layout and
//! what it asserts.
#![no_main]

#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::classify_reply(data));
