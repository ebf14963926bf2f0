//! The frame decoder in the server role: see `wsd_fuzz::decoder`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wsd::protocol::Role;

fuzz_target!(|data: &[u8]| wsd_fuzz::decoder(Role::Server, data));
