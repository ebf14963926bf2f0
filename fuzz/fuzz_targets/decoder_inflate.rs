//! The frame decoder with permessage-deflate agreed, in the server role:
//! see `wsd_fuzz::decoder_inflate`. The counting allocator is what lets it
//! check that inflating stays within bounds.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[global_allocator]
static ALLOCATOR: wsd_fuzz::Counting = wsd_fuzz::Counting;

fuzz_target!(|data: &[u8]| wsd_fuzz::decoder_inflate(data));
