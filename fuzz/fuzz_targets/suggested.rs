#![no_main]
//! See qmoi::fuzz::targets::suggested for the properties checked.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| qmoi::fuzz::targets::suggested(data));
