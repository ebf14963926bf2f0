//! What the fuzz targets check, kept here so that both decoder roles share it.
//!
//! A decoder input is two steering bytes and then the wire: the first picks
//! the message size limit (1 B to 1 MiB, so "too big" is reachable), the
//! second how the wire is cut into reads (0: a byte at a time).

use std::path::Path;

use bytes::Bytes;
use wsd::config::Config;
use wsd::protocol::{Decoder, Event, RawFrame, Role, Violation, code, is_valid_close_code};

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
    let whole = decode(role, max, std::iter::once(wire));
    let split = decode(role, max, Cuts::new(wire, *cuts));
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

type Outcome = (Vec<Event>, Option<Violation>);

fn decode<'a>(role: Role, max: usize, reads: impl Iterator<Item = &'a [u8]>) -> Outcome {
    let mut decoder = Decoder::new(role, max);
    let mut events = Vec::new();
    for read in reads {
        let mut input = Bytes::copy_from_slice(read);
        loop {
            match decoder.decode(&mut input) {
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
