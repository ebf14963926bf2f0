//! A strict, incremental RFC 6455 frame decoder.
//!
//! Why our own and not `actix-http`'s codec: that codec buffers a whole frame
//! before judging it (so an oversized frame is held in memory until it ends, and
//! invalid UTF-8 is only noticed at the end of a frame), hands continuation
//! frames out raw, and reports several distinct faults with the same error
//! variant, so a session could not choose the right close code. This decoder
//! sees every byte once: it validates each header as soon as its first two bytes
//! arrive, unmasks payload straight into the message being assembled, checks
//! UTF-8 as the bytes come in, and says exactly which close code a fault deserves.

use bytes::{Buf, Bytes, BytesMut};

use super::frame::{Header, bits, header_size};
use super::{MAX_HEADER_LEN, apply_mask, code, is_valid_close_code};

/// Which end of the connection we are: servers require masked frames, clients
/// forbid them (RFC 6455 section 5.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Server,
    Client,
}

/// A complete unit handed to the session: whole messages, never fragments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A text message; the bytes are guaranteed to be valid UTF-8.
    Text(Bytes),
    Binary(Bytes),
    Ping(Bytes),
    Pong(Bytes),
    /// A close frame; `None` when it carried no status code.
    Close(Option<CloseFrame>),
}

/// The status code and reason of a close frame (both already validated).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseFrame {
    pub code: u16,
    pub reason: String,
}

/// Why the connection must be failed, and with which close code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{reason} (close code {code})")]
pub struct Violation {
    pub code: u16,
    pub reason: &'static str,
}

const fn protocol(reason: &'static str) -> Violation {
    Violation {
        code: code::PROTOCOL_ERROR,
        reason,
    }
}

const INVALID_UTF8: Violation = Violation {
    code: code::INVALID_PAYLOAD,
    reason: "text is not valid UTF-8",
};

const TOO_BIG: Violation = Violation {
    code: code::TOO_BIG,
    reason: "message exceeds the size limit",
};

use super::opcode::{
    BINARY as OP_BINARY, CLOSE as OP_CLOSE, CONTINUATION as OP_CONTINUATION, PING as OP_PING,
    PONG as OP_PONG, TEXT as OP_TEXT,
};

/// The longest payload a control frame may carry (RFC 6455 section 5.5).
const MAX_CONTROL_PAYLOAD: usize = 125;

/// How much buffer a frame header's declared length may reserve up front. A
/// peer can declare a large frame and then send nothing; we grow the buffer as
/// bytes actually arrive instead of trusting the declaration.
const MAX_PREALLOCATION: usize = 64 * 1024;

/// The frame whose payload is being read.
#[derive(Debug)]
struct Frame {
    fin: bool,
    opcode: u8,
    remaining: u64,
    mask: Option<[u8; 4]>,
    /// Payload bytes of this frame already read, for the mask position.
    read: usize,
}

/// A data message being assembled, possibly across many frames.
#[derive(Debug)]
struct Message {
    text: bool,
    /// How many leading bytes of the buffer are known to be complete UTF-8.
    checked: usize,
}

/// The incremental decoder. Feed it bytes with [`Decoder::decode`] until it
/// returns `Ok(None)` (it needs more input) or an error (fail the connection).
#[derive(Debug)]
pub struct Decoder {
    role: Role,
    max_message: usize,
    head: [u8; MAX_HEADER_LEN],
    head_len: usize,
    frame: Option<Frame>,
    message: Option<Message>,
    /// The data message under assembly. Reused: `split` hands the bytes out and
    /// the allocation comes back once the reply that held it is dropped.
    data: BytesMut,
    /// The payload of the control frame being read.
    control: BytesMut,
}

impl Decoder {
    /// A decoder for `role` that refuses messages over `max_message` bytes
    /// (after reassembly).
    pub fn new(role: Role, max_message: usize) -> Self {
        Decoder {
            role,
            max_message,
            head: [0; MAX_HEADER_LEN],
            head_len: 0,
            frame: None,
            message: None,
            data: BytesMut::new(),
            control: BytesMut::new(),
        }
    }

    /// Consumes bytes from `input` and returns the next complete event, if
    /// one is complete. Bytes after that event stay in `input`.
    pub fn decode(&mut self, input: &mut Bytes) -> Result<Option<Event>, Violation> {
        loop {
            if self.frame.is_none() && !self.read_header(input)? {
                return Ok(None);
            }
            let Some(frame) = self.frame.as_mut() else {
                return Ok(None);
            };
            let available = usize::try_from(frame.remaining)
                .unwrap_or(usize::MAX)
                .min(input.len());
            let control = frame.opcode >= OP_CLOSE;
            let target = if control {
                &mut self.control
            } else {
                &mut self.data
            };
            let start = target.len();
            target.extend_from_slice(&input[..available]);
            input.advance(available);
            if let Some(mask) = frame.mask {
                apply_mask(&mut target[start..], mask, frame.read);
            }
            frame.read += available;
            frame.remaining -= available as u64;
            if !control
                && let Some(message) = self.message.as_mut()
                && message.text
            {
                check_utf8(&self.data, &mut message.checked)?;
            }
            if frame.remaining > 0 {
                return Ok(None);
            }
            let (fin, opcode) = (frame.fin, frame.opcode);
            self.frame = None;
            if control {
                return self.finish_control(opcode).map(Some);
            }
            if fin {
                return self.finish_message().map(Some);
            }
        }
    }

    /// Reads header bytes; returns true once a whole, valid header is in.
    fn read_header(&mut self, input: &mut Bytes) -> Result<bool, Violation> {
        loop {
            let needed = self.header_len();
            if self.head_len == needed {
                break;
            }
            if input.is_empty() {
                return Ok(false);
            }
            let take = (needed - self.head_len).min(input.len());
            self.head[self.head_len..self.head_len + take].copy_from_slice(&input[..take]);
            input.advance(take);
            let had_two = self.head_len >= 2;
            self.head_len += take;
            if !had_two && self.head_len >= 2 {
                // Judge the frame on its first two bytes: nothing after them can
                // make a bad frame good, and failing early is what RFC 6455
                // section 7.1.7 asks ("fail fast").
                self.check_first_bytes()?;
            }
        }
        self.start_frame()?;
        Ok(true)
    }

    /// The length of the current header, as far as the bytes read so far tell.
    fn header_len(&self) -> usize {
        if self.head_len < 2 {
            return 2;
        }
        header_size(self.head[1])
    }

    fn check_first_bytes(&self) -> Result<(), Violation> {
        let (b0, b1) = (self.head[0], self.head[1]);
        let fin = b0 & bits::FIN != 0;
        let opcode = b0 & bits::OPCODE;
        let masked = b1 & bits::MASKED != 0;
        if b0 & bits::RSV != 0 {
            return Err(protocol("reserved bits set without a negotiated extension"));
        }
        match opcode {
            OP_CONTINUATION | OP_TEXT | OP_BINARY | OP_CLOSE | OP_PING | OP_PONG => {}
            _ => return Err(protocol("reserved opcode")),
        }
        match (self.role, masked) {
            (Role::Server, false) => return Err(protocol("client frame is not masked")),
            (Role::Client, true) => return Err(protocol("server frame is masked")),
            _ => {}
        }
        if opcode >= OP_CLOSE {
            if !fin {
                return Err(protocol("fragmented control frame"));
            }
            // A length over 125 in the 7-bit field is judged later, on the
            // real length: a small payload in the 16-bit form is only a
            // non-minimal encoding, which receivers accept.
        } else if opcode == OP_CONTINUATION {
            if self.message.is_none() {
                return Err(protocol("continuation frame with no message open"));
            }
        } else if self.message.is_some() {
            return Err(protocol(
                "new data frame while a fragmented message is open",
            ));
        }
        Ok(())
    }

    /// Turns a complete, already checked header into the current frame.
    fn start_frame(&mut self) -> Result<(), Violation> {
        let Header {
            fin,
            opcode,
            mask,
            len,
            ..
        } = Header::read(&self.head[..self.head_len]);
        self.head_len = 0;
        if len >> 63 != 0 {
            return Err(protocol("64-bit payload length with the top bit set"));
        }
        if opcode >= OP_CLOSE {
            if len > MAX_CONTROL_PAYLOAD as u64 {
                return Err(protocol("control frame payload over 125 bytes"));
            }
            self.control.clear();
        } else {
            let limit = (self.max_message - self.data.len().min(self.max_message)) as u64;
            if len > limit {
                return Err(TOO_BIG);
            }
            if opcode != OP_CONTINUATION {
                self.message = Some(Message {
                    text: opcode == OP_TEXT,
                    checked: 0,
                });
            }
            // `len <= limit <= max_message`, so it fits in usize.
            self.data.reserve((len as usize).min(MAX_PREALLOCATION));
        }
        self.frame = Some(Frame {
            fin,
            opcode,
            remaining: len,
            mask,
            read: 0,
        });
        Ok(())
    }

    fn finish_message(&mut self) -> Result<Event, Violation> {
        let message = self.message.take();
        let bytes = self.data.split().freeze();
        match message {
            Some(Message {
                text: true,
                checked,
            }) => {
                if checked != bytes.len() {
                    return Err(INVALID_UTF8);
                }
                Ok(Event::Text(bytes))
            }
            _ => Ok(Event::Binary(bytes)),
        }
    }

    fn finish_control(&mut self, opcode: u8) -> Result<Event, Violation> {
        let payload = self.control.split().freeze();
        match opcode {
            OP_PING => Ok(Event::Ping(payload)),
            OP_PONG => Ok(Event::Pong(payload)),
            _ => parse_close(&payload).map(Event::Close),
        }
    }
}

/// Validates the close payload rules of RFC 6455 sections 5.5.1 and 7.4.
pub(crate) fn parse_close(payload: &[u8]) -> Result<Option<CloseFrame>, Violation> {
    match payload {
        [] => Ok(None),
        [_] => Err(protocol("close frame payload of one byte")),
        [hi, lo, reason @ ..] => {
            let code = u16::from_be_bytes([*hi, *lo]);
            if !is_valid_close_code(code) {
                return Err(protocol("invalid close code"));
            }
            let reason = std::str::from_utf8(reason).map_err(|_| Violation {
                code: code::INVALID_PAYLOAD,
                reason: "close reason is not valid UTF-8",
            })?;
            Ok(Some(CloseFrame {
                code,
                reason: reason.to_owned(),
            }))
        }
    }
}

/// Extends the validated prefix of `buf` as far as the bytes allow.
///
/// A sequence cut off at the end of `buf` is left for the next call (it may be
/// completed by the next fragment); anything that can never become valid fails
/// at once. `std`'s validator reports exactly this distinction through
/// `error_len()`: `None` means "ran out of input", not "invalid".
fn check_utf8(buf: &[u8], checked: &mut usize) -> Result<(), Violation> {
    match std::str::from_utf8(&buf[*checked..]) {
        Ok(_) => {
            *checked = buf.len();
            Ok(())
        }
        Err(e) if e.error_len().is_none() => {
            *checked += e.valid_up_to();
            Ok(())
        }
        Err(_) => Err(INVALID_UTF8),
    }
}

/// Every event `decoder` makes of `bytes` in one read, or its violation;
/// for tests, which also check that no input is left unread.
#[cfg(test)]
pub(super) fn decode_all(decoder: &mut Decoder, bytes: &[u8]) -> Result<Vec<Event>, Violation> {
    let mut input = Bytes::copy_from_slice(bytes);
    let mut events = Vec::new();
    while let Some(event) = decoder.decode(&mut input)? {
        events.push(event);
    }
    assert!(input.is_empty(), "decoder left input unread");
    Ok(events)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{LengthForm, RawFrame};

    const MASK: [u8; 4] = [0xA1, 0xB2, 0xC3, 0xD4];

    /// A masked client frame, as a browser would send it.
    fn frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
        RawFrame::new(opcode, payload).fin(fin).mask(MASK).encode()
    }

    fn server() -> Decoder {
        Decoder::new(Role::Server, 1 << 20)
    }

    #[test]
    fn decodes_every_length_encoding() {
        for len in [0, 1, 125, 126, 127, 128, 65535, 65536, 200_000] {
            let payload: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let events = decode_all(&mut server(), &frame(true, OP_BINARY, &payload)).unwrap();
            assert_eq!(
                events,
                vec![Event::Binary(Bytes::from(payload))],
                "len {len}"
            );
        }
    }

    #[test]
    fn byte_by_byte_input_gives_the_same_events() {
        let mut wire = frame(false, OP_TEXT, "héllo ".as_bytes());
        wire.extend(frame(true, OP_PING, b"p"));
        wire.extend(frame(true, OP_CONTINUATION, "wörld".as_bytes()));
        let mut decoder = server();
        let mut events = Vec::new();
        for byte in wire {
            events.extend(decode_all(&mut decoder, &[byte]).unwrap());
        }
        assert_eq!(
            events,
            vec![
                Event::Ping(Bytes::from_static(b"p")),
                Event::Text(Bytes::from("héllo wörld")),
            ]
        );
    }

    #[test]
    fn reassembles_many_fragments_including_empty_ones() {
        let mut wire = frame(false, OP_BINARY, b"");
        for part in [&b"ab"[..], b"", b"cd"] {
            wire.extend(frame(false, OP_CONTINUATION, part));
        }
        wire.extend(frame(true, OP_CONTINUATION, b"e"));
        let events = decode_all(&mut server(), &wire).unwrap();
        assert_eq!(events, vec![Event::Binary(Bytes::from_static(b"abcde"))]);
    }

    fn violation(wire: &[u8]) -> Violation {
        decode_all(&mut server(), wire).expect_err("should fail")
    }

    #[test]
    fn framing_faults_are_protocol_errors() {
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("rsv", RawFrame::text("x").rsv(0b010).encode()),
            ("opcode 3", frame(true, 3, b"")),
            ("opcode 11", frame(true, 11, b"")),
            ("unmasked", RawFrame::text("").unmasked().encode()),
            ("long ping", frame(true, OP_PING, &[0; 126])),
            ("fragmented ping", frame(false, OP_PING, b"")),
            ("stray continuation", frame(true, OP_CONTINUATION, b"x")),
            ("close of one byte", frame(true, OP_CLOSE, &[3])),
            (
                "close code 1005",
                frame(true, OP_CLOSE, &1005u16.to_be_bytes()),
            ),
            (
                "close code 999",
                frame(true, OP_CLOSE, &999u16.to_be_bytes()),
            ),
            (
                "close code 5000",
                frame(true, OP_CLOSE, &5000u16.to_be_bytes()),
            ),
        ];
        for (name, wire) in cases {
            assert_eq!(violation(&wire).code, code::PROTOCOL_ERROR, "{name}");
        }
        let mut interleaved = frame(false, OP_TEXT, b"a");
        interleaved.extend(frame(true, OP_TEXT, b"b"));
        assert_eq!(violation(&interleaved).code, code::PROTOCOL_ERROR);
    }

    #[test]
    fn control_frames_are_judged_on_their_real_length() {
        // A one-byte ping in the 16-bit length form: non-minimal, accepted.
        let wire = RawFrame::ping("x").length(LengthForm::U16).encode();
        assert_eq!(
            decode_all(&mut server(), &wire).unwrap(),
            vec![Event::Ping(Bytes::from_static(b"x"))]
        );
        // 126 bytes declared: refused on the header, before any payload.
        let header = RawFrame::ping("").length(LengthForm::U16).declare(126);
        let err = server()
            .decode(&mut Bytes::from(header.encode()))
            .unwrap_err();
        assert_eq!(err.code, code::PROTOCOL_ERROR);
    }

    #[test]
    fn a_bad_header_fails_before_its_payload_arrives() {
        let rsv = RawFrame::binary(vec![0; 1000]).rsv(0b001).encode();
        let mut decoder = server();
        let mut input = Bytes::copy_from_slice(&rsv[..2]);
        assert_eq!(
            decoder.decode(&mut input).unwrap_err().code,
            code::PROTOCOL_ERROR
        );
    }

    #[test]
    fn oversized_messages_fail_on_the_header_whole_or_fragmented() {
        let mut decoder = Decoder::new(Role::Server, 100);
        let header = RawFrame::binary("").declare(101).encode();
        let err = decoder.decode(&mut Bytes::from(header)).unwrap_err();
        assert_eq!(err.code, code::TOO_BIG);

        let mut wire = Vec::new();
        for _ in 0..10 {
            wire.extend(frame(
                false,
                if wire.is_empty() {
                    OP_TEXT
                } else {
                    OP_CONTINUATION
                },
                &[b'a'; 10],
            ));
        }
        wire.extend(frame(true, OP_CONTINUATION, b"b"));
        let err = decode_all(&mut Decoder::new(Role::Server, 100), &wire).unwrap_err();
        assert_eq!(err.code, code::TOO_BIG);
        let exact = decode_all(&mut Decoder::new(Role::Server, 101), &wire).unwrap();
        assert_eq!(exact.len(), 1);
    }

    #[test]
    fn invalid_utf8_fails_fast_even_inside_one_frame() {
        // 0xF4 0x90 would encode a code point above U+10FFFF.
        let wire = frame(true, OP_TEXT, b"abc\xF4\x90\x80\x80def");
        let mut decoder = server();
        let mut first = Bytes::copy_from_slice(&wire[..6 + 5]);
        assert_eq!(
            decoder.decode(&mut first).unwrap_err().code,
            code::INVALID_PAYLOAD
        );
    }

    #[test]
    fn utf8_rules_overlong_surrogates_range_truncation() {
        let bad: [&[u8]; 5] = [
            b"\xC0\xAF",
            b"\xED\xA0\x80",
            b"\xF4\x90\x80\x80",
            b"ok\xE2\x82",
            b"\xFF",
        ];
        for text in bad {
            assert_eq!(
                violation(&frame(true, OP_TEXT, text)).code,
                code::INVALID_PAYLOAD,
                "{text:?}"
            );
        }
        // A sequence split across fragments, byte by byte, is fine.
        let euro = "€".as_bytes();
        let mut wire = frame(false, OP_TEXT, &euro[..1]);
        wire.extend(frame(false, OP_CONTINUATION, &euro[1..2]));
        wire.extend(frame(true, OP_CONTINUATION, &euro[2..]));
        assert_eq!(
            decode_all(&mut server(), &wire).unwrap(),
            vec![Event::Text(Bytes::from("€"))]
        );
    }

    #[test]
    fn fragmented_text_fails_at_the_first_hopeless_fragment() {
        let mut decoder = server();
        assert!(
            decode_all(&mut decoder, &frame(false, OP_TEXT, b"ok\xCE"))
                .unwrap()
                .is_empty()
        );
        let err = decode_all(&mut decoder, &frame(false, OP_CONTINUATION, b"\x20")).unwrap_err();
        assert_eq!(err.code, code::INVALID_PAYLOAD);
    }

    #[test]
    fn close_frames_are_validated() {
        assert_eq!(
            decode_all(&mut server(), &frame(true, OP_CLOSE, b"")).unwrap(),
            vec![Event::Close(None)]
        );
        let mut payload = 4000u16.to_be_bytes().to_vec();
        payload.extend_from_slice("bye".as_bytes());
        assert_eq!(
            decode_all(&mut server(), &frame(true, OP_CLOSE, &payload)).unwrap(),
            vec![Event::Close(Some(CloseFrame {
                code: 4000,
                reason: "bye".into()
            }))]
        );
        let mut bad = 1000u16.to_be_bytes().to_vec();
        bad.extend_from_slice(b"\xCE\xBA\xE1\xBD\xB9\xCF\x83\xCE\xBC\xCE\xB5\xED\xA0\x80");
        assert_eq!(
            violation(&frame(true, OP_CLOSE, &bad)).code,
            code::INVALID_PAYLOAD
        );
    }

    #[test]
    fn client_role_rejects_masked_frames_and_reads_plain_ones() {
        let mut decoder = Decoder::new(Role::Client, 1024);
        let plain = RawFrame::text("hi").unmasked().encode();
        assert_eq!(
            decode_all(&mut decoder, &plain).unwrap(),
            vec![Event::Text(Bytes::from("hi"))]
        );
        let err = decode_all(&mut decoder, &frame(true, OP_TEXT, b"hi")).unwrap_err();
        assert_eq!(err.code, code::PROTOCOL_ERROR);
    }

    /// A small deterministic generator (xorshift), so the randomised tests
    /// below are reproducible without a dependency.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    /// Feeds `wire` in pieces cut at random points; the outcome as a list.
    fn decode_in_pieces(wire: &[u8], rng: &mut Rng, max: usize) -> (Vec<Event>, Option<Violation>) {
        let mut decoder = Decoder::new(Role::Server, max);
        let mut events = Vec::new();
        let mut at = 0;
        while at < wire.len() {
            let len = 1 + rng.below((wire.len() - at).min(300));
            let mut input = Bytes::copy_from_slice(&wire[at..at + len]);
            at += len;
            loop {
                match decoder.decode(&mut input) {
                    Ok(Some(event)) => events.push(event),
                    Ok(None) => break,
                    Err(v) => return (events, Some(v)),
                }
            }
            assert!(input.is_empty(), "decoder left input unread");
        }
        (events, None)
    }

    #[test]
    fn random_bytes_never_panic_and_always_end_in_events_or_a_violation() {
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        for _ in 0..2000 {
            let len = rng.below(400);
            let mut wire: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            // Mostly plausible headers, so the test reaches past the first check.
            if let Some(first) = wire.first_mut() {
                *first = (*first & 0x8F) | if rng.below(4) == 0 { 0x70 } else { 0 };
            }
            if wire.len() > 1 && rng.below(2) == 0 {
                wire[1] |= 0x80;
            }
            let _ = decode_in_pieces(&wire, &mut rng, 256);
        }
    }

    #[test]
    fn any_split_of_a_valid_stream_gives_the_same_events() {
        let mut rng = Rng(42);
        for round in 0..200 {
            // A stream of messages, some fragmented, with pings in between.
            let mut wire = Vec::new();
            let mut expected = Vec::new();
            for _ in 0..1 + rng.below(6) {
                let text = rng.below(2) == 0;
                let body: Vec<u8> = if text {
                    "aé€😀".repeat(1 + rng.below(30)).into_bytes()
                } else {
                    (0..rng.below(3000)).map(|_| rng.next() as u8).collect()
                };
                let parts = 1 + rng.below(5);
                let chunk = body.len().div_ceil(parts).max(1);
                let pieces: Vec<&[u8]> = if body.is_empty() {
                    vec![&[]]
                } else {
                    body.chunks(chunk).collect()
                };
                let whole = Bytes::from(body.clone());
                let message = if text {
                    Event::Text(whole)
                } else {
                    Event::Binary(whole)
                };
                for (i, piece) in pieces.iter().enumerate() {
                    let opcode = match (i, text) {
                        (0, true) => OP_TEXT,
                        (0, false) => OP_BINARY,
                        _ => OP_CONTINUATION,
                    };
                    let last = i + 1 == pieces.len();
                    wire.extend(frame(last, opcode, piece));
                    if last {
                        expected.push(message.clone());
                    }
                    // A ping between fragments is answered before the message
                    // completes; one after the last fragment comes after it.
                    if rng.below(3) == 0 {
                        let ping = vec![round as u8; rng.below(126)];
                        wire.extend(frame(true, OP_PING, &ping));
                        expected.push(Event::Ping(Bytes::from(ping)));
                    }
                }
            }
            let (events, violation) = decode_in_pieces(&wire, &mut rng, 1 << 20);
            assert_eq!(violation, None, "round {round}");
            assert_eq!(events, expected, "round {round}");
        }
    }
}
