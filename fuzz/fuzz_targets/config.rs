//! The config loader's text-to-Config path: see `wsd_fuzz::config`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| wsd_fuzz::config(data));
