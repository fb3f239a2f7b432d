//! Fuzz target `json`: see `checks::json` for the readers it drives and what it asserts.
#![no_main]

#[allow(dead_code, reason = "each target uses one check")]
#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::json(data));
