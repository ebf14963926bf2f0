//! What the fuzz targets check, kept here so that the decoder targets share it.
//!
//! A decoder input is two steering bytes and then the wire: the first picks
//! the message size limit (1 B to 1 MiB, so "too big" is reachable), the
//! second how the wire is cut into reads (0: a byte at a time). The inflate
//! target's input has one more steering byte in front: permessage-deflate's
//! parameters (see [`decoder_inflate`]).

use std::alloc::{GlobalAlloc, Layout, System};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use wsd::config::Config;
use wsd::protocol::{
    Decoder, Event, InflateParams, RawFrame, Role, Violation, code, is_valid_close_code,
};

/// Decodes the wire in one read and in the reads the second byte picks, and
/// checks what must hold for any bytes at all:
/// - no panic, and no input left unread when the decoder asks for more;
/// - every event within its limits: text is UTF-8, data at most the limit,
///   control payloads at most 125 bytes, close codes valid on the wire;
/// - a violation carries one of the codes the decoder may choose;
/// - how the bytes are cut into reads changes nothing;
/// - each frame `RawFrame` reads re-encodes to the bytes it was read from.
pub fn decoder(role: Role, data: &[u8]) {
    let [limit, cuts, wire @ ..] = data else {
        return;
    };
    let max = 1usize << (limit % 21);
    let new = || Decoder::new(role, max);
    let whole = decode(new(), max, std::iter::once(wire));
    let split = decode(new(), max, Cuts::new(wire, *cuts));
    assert_eq!(whole, split, "the same bytes cut differently");
    if let (_, Some(violation)) = &whole {
        let codes = [code::PROTOCOL_ERROR, code::INVALID_PAYLOAD, code::TOO_BIG];
        assert!(codes.contains(&violation.code), "{violation:?}");
    }
    let mut at = 0;
    while let Some((frame, used)) = RawFrame::parse(&wire[at..]) {
        assert_eq!(frame.encode(), &wire[at..at + used], "{frame:?}");
        at += used;
    }
}

/// The permessage-deflate path of the decoder, in the server role (what a
/// client's compressed frames meet). The first byte picks the agreed
/// parameters: the client's window, `8 + (b & 7)` bits (8 included, which
/// zlib cannot do and the decoder must still take), and, with `b & 8`,
/// no context takeover. Then the limit and cut bytes and the wire, as for
/// [`decoder`]. Checks, beyond what [`decoder`] checks of events and
/// violations:
/// - inflated messages are within the limit, whatever they inflate to;
/// - how the bytes are cut into reads changes nothing, also for messages
///   that span frames and messages that refer to earlier ones' window;
/// - memory stays bounded: no single `decode` call grows the heap by more
///   than a few times the limit plus the inflater's fixed state, so a bomb
///   is stopped at the limit, not inflated first and judged after. This
///   needs [`Counting`] as the target's global allocator.
pub fn decoder_inflate(data: &[u8]) {
    let [params, limit, cuts, wire @ ..] = data else {
        return;
    };
    let max = 1usize << (limit % 21);
    let params = InflateParams {
        window_bits: 8 + (params & 7),
        no_context_takeover: params & 8 != 0,
    };
    let new = || Decoder::new(Role::Server, max).with_inflate(params);
    let whole = decode(new(), max, std::iter::once(wire));
    let split = decode(new(), max, Cuts::new(wire, *cuts));
    assert_eq!(whole, split, "the same bytes cut differently ({params:?})");
    assert_eq!(
        COUNTING.load(Ordering::Relaxed),
        1,
        "the target must install wsd_fuzz::Counting as its global allocator"
    );
    if let (_, Some(violation)) = &whole {
        let codes = [code::PROTOCOL_ERROR, code::INVALID_PAYLOAD, code::TOO_BIG];
        assert!(codes.contains(&violation.code), "{violation:?}");
    }
}

/// The most one `decode` call may grow the heap by, for a limit of `max`:
/// the message (twice, while its buffer grows), the event that hands it
/// out, and a fixed allowance for the inflater (its window, zlib's state,
/// its output step) and the decoder's own buffers.
fn heap_bound(max: usize) -> usize {
    4 * max + (1 << 20)
}

/// The global allocator of the inflate target: the system's, counting the
/// bytes live and the most live since the last [`Counting::reset_peak`].
pub struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);
/// Set by the first allocation through [`Counting`]: the check of memory is
/// only meaningful when the target installed it.
static COUNTING: AtomicUsize = AtomicUsize::new(0);

impl Counting {
    fn add(size: usize) {
        let live = LIVE.fetch_add(size, Ordering::Relaxed) + size;
        PEAK.fetch_max(live, Ordering::Relaxed);
        COUNTING.store(1, Ordering::Relaxed);
    }

    fn reset_peak() -> usize {
        let live = LIVE.load(Ordering::Relaxed);
        PEAK.store(live, Ordering::Relaxed);
        live
    }
}

// SAFETY: every call is passed to `System` unchanged; the counters are
// plain atomics and never allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        Counting::add(layout.size());
        // SAFETY: the caller's contract, handed on.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        Counting::add(layout.size());
        // SAFETY: as above.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        Counting::add(new_size);
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

type Outcome = (Vec<Event>, Option<Violation>);

fn decode<'a>(mut decoder: Decoder, max: usize, reads: impl Iterator<Item = &'a [u8]>) -> Outcome {
    let mut events = Vec::new();
    let counting = COUNTING.load(Ordering::Relaxed) == 1;
    for read in reads {
        let mut input = Bytes::copy_from_slice(read);
        loop {
            let before = Counting::reset_peak();
            let result = decoder.decode(&mut input);
            if counting {
                let grew = PEAK.load(Ordering::Relaxed).saturating_sub(before);
                assert!(
                    grew <= heap_bound(max),
                    "one decode call grew the heap by {grew} bytes (limit {max})"
                );
            }
            match result {
                Ok(Some(event)) => {
                    check(&event, max);
                    events.push(event);
                }
                Ok(None) => {
                    assert!(input.is_empty(), "asked for more with input unread");
                    break;
                }
                Err(violation) => return (events, Some(violation)),
            }
        }
    }
    (events, None)
}

fn check(event: &Event, max: usize) {
    match event {
        Event::Text(text) => {
            assert!(std::str::from_utf8(text).is_ok(), "text is not UTF-8");
            assert!(text.len() <= max);
        }
        Event::Binary(data) => assert!(data.len() <= max),
        Event::Ping(payload) | Event::Pong(payload) => assert!(payload.len() <= 125),
        Event::Close(Some(close)) => {
            assert!(is_valid_close_code(close.code), "{close:?}");
            assert!(close.reason.len() <= 123, "{close:?}");
        }
        Event::Close(None) => {}
    }
}

/// The wire cut into reads: a byte each for seed 0, else sizes from 1 to
/// seed² picked by a xorshift, so that one input byte steers them all.
struct Cuts<'a> {
    rest: &'a [u8],
    state: u64,
    most: u64,
}

impl<'a> Cuts<'a> {
    fn new(wire: &'a [u8], seed: u8) -> Cuts<'a> {
        Cuts {
            rest: wire,
            state: 0x9E37_79B9_7F4A_7C15 ^ u64::from(seed),
            most: u64::from(seed).pow(2).max(1),
        }
    }
}

impl<'a> Iterator for Cuts<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        if self.rest.is_empty() {
            return None;
        }
        self.state ^= self.state << 13;
        self.state ^= self.state >> 7;
        self.state ^= self.state << 17;
        let len = (1 + self.state % self.most) as usize;
        let (read, rest) = self.rest.split_at(len.min(self.rest.len()));
        self.rest = rest;
        Some(read)
    }
}

/// Parses config text, and checks that a config that parses survives
/// `--print-config`: its TOML parses back to the same config.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = Path::new("fuzz.toml");
    if let Ok(config) = Config::parse(text, path) {
        let printed = config.to_toml();
        match Config::parse(&printed, path) {
            Ok(again) => assert_eq!(again, config, "printed:\n{printed}"),
            Err(e) => panic!("the printed config does not parse: {e}\n{printed}"),
        }
    }
}
