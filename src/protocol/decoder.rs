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

use super::deflate::{InflateError, Inflater};
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

const CORRUPT: Violation = Violation {
    code: code::INVALID_PAYLOAD,
    reason: "compressed message is not valid DEFLATE data",
};

/// RSV1 in a frame's first byte: permessage-deflate's "compressed" bit.
const RSV1: u8 = 0x40;

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
    /// RSV1 was set on its first frame: the payload is DEFLATE data, inflated
    /// into the buffer as it arrives.
    compressed: bool,
    /// Compressed payload bytes taken so far (for [`Inflate::max_compressed`]).
    compressed_in: u64,
}

/// The peer's permessage-deflate parameters (RFC 7692), once agreed: how
/// the decoder inflates messages whose first frame has RSV1 set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InflateParams {
    /// The peer's agreed `*_max_window_bits` (8..=15).
    pub window_bits: u8,
    /// The peer resets its compressor after each message, so ours need not
    /// be kept between messages.
    pub no_context_takeover: bool,
}

/// The inflating side of a decoder.
struct Inflate {
    params: InflateParams,
    /// Built for the first compressed message. Without context takeover it
    /// goes back to this thread's spares after each message, so an idle
    /// connection holds none.
    inflater: Option<Inflater>,
    /// Raw payload bytes of the current frame, unmasked, before inflating.
    scratch: Vec<u8>,
}

impl std::fmt::Debug for Inflate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inflate")
            .field("params", &self.params)
            .field("built", &self.inflater.is_some())
            .finish()
    }
}

impl Inflate {
    /// The most compressed bytes a message may take: DEFLATE adds at most
    /// 5 bytes per 64 KiB stored block to data it cannot shrink, so 1/64
    /// plus a little over the inflated limit is more than any encoder needs,
    /// while a peer cannot stream endless empty blocks into one message.
    fn max_compressed(max_message: usize) -> u64 {
        (max_message as u64)
            .saturating_add(max_message as u64 / 64)
            .saturating_add(1024)
    }

    fn inflater(&mut self, max_message: usize) -> &mut Inflater {
        let params = self.params;
        self.inflater.get_or_insert_with(|| {
            if params.no_context_takeover
                && let Some(spare) = SPARE_INFLATERS.with(|s| s.borrow_mut().pop())
            {
                let mut spare: Inflater = spare;
                spare.set_max_size(max_message);
                return spare;
            }
            // Without context takeover any window inflates any message, so
            // spares are all built with the largest; so is a connection
            // whose agreed bits are out of range (a larger window inflates
            // anything a smaller one produced).
            let bits = match params.window_bits {
                bits @ 8..=15 if !params.no_context_takeover => bits,
                _ => 15,
            };
            match Inflater::new(bits, params.no_context_takeover, max_message) {
                Ok(inflater) => inflater,
                Err(_) => unreachable!("window bits are within 8..=15"),
            }
        })
    }

    /// After a message: without context takeover, the inflater is lent back.
    fn release(&mut self) {
        if self.params.no_context_takeover
            && let Some(inflater) = self.inflater.take()
        {
            SPARE_INFLATERS.with(|s| {
                let mut spares = s.borrow_mut();
                if spares.len() < MAX_SPARE_INFLATERS {
                    spares.push(inflater);
                }
            });
        }
    }
}

/// Inflaters kept per thread for connections without context takeover: as
/// many as may be inflating at once on a thread in the common case. More are
/// built when needed and dropped after use.
const MAX_SPARE_INFLATERS: usize = 4;

thread_local! {
    static SPARE_INFLATERS: std::cell::RefCell<Vec<Inflater>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// Why inflating a message failed, unless the text it inflated to before
/// the failure already broke UTF-8: the fault that comes first in the
/// message wins, so the close code does not depend on how its bytes were
/// cut into reads (found by fuzzing: a 1009 or 1007-corrupt for one read
/// could be 1007-UTF-8 for many).
fn inflate_fault(e: InflateError, data: &[u8], message: Option<&mut Message>) -> Violation {
    if let Some(m) = message
        && m.text
        && check_utf8(data, &mut m.checked).is_err()
    {
        return INVALID_UTF8;
    }
    inflate_violation(e)
}

fn inflate_violation(e: InflateError) -> Violation {
    match e {
        InflateError::TooBig { .. } => TOO_BIG,
        InflateError::Corrupt(_) => CORRUPT,
    }
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
    /// permessage-deflate, when agreed (boxed: most connections have none).
    inflate: Option<Box<Inflate>>,
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
            inflate: None,
        }
    }

    /// Accepts compressed messages (RSV1 on a message's first frame) with
    /// the peer's agreed permessage-deflate parameters. `max_message` then
    /// limits the inflated size.
    pub fn with_inflate(mut self, params: InflateParams) -> Self {
        self.inflate = Some(Box::new(Inflate {
            params,
            inflater: None,
            scratch: Vec::new(),
        }));
        self
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
            let compressed = !control && self.message.as_ref().is_some_and(|m| m.compressed);
            if compressed {
                let inflate = self
                    .inflate
                    .as_mut()
                    .unwrap_or_else(|| unreachable!("RSV1 is refused without the extension"));
                let scratch = &mut inflate.scratch;
                scratch.clear();
                scratch.extend_from_slice(&input[..available]);
                if let Some(mask) = frame.mask {
                    apply_mask(scratch, mask, frame.read);
                }
                let piece = std::mem::take(scratch);
                let result = inflate
                    .inflater(self.max_message)
                    .feed(&piece, &mut self.data);
                inflate.scratch = piece;
                if let Err(e) = result {
                    return Err(inflate_fault(e, &self.data, self.message.as_mut()));
                }
            } else {
                let target = if control {
                    &mut self.control
                } else {
                    &mut self.data
                };
                let start = target.len();
                target.extend_from_slice(&input[..available]);
                if let Some(mask) = frame.mask {
                    apply_mask(&mut target[start..], mask, frame.read);
                }
            }
            input.advance(available);
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
        let rsv1 = b0 & RSV1 != 0;
        if b0 & bits::RSV & !RSV1 != 0 || (rsv1 && self.inflate.is_none()) {
            return Err(protocol("reserved bits set without a negotiated extension"));
        }
        if rsv1 && opcode >= OP_CLOSE {
            return Err(protocol("compressed control frame"));
        }
        if rsv1 && opcode == OP_CONTINUATION {
            // RFC 7692 section 6.1: only a message's first frame says it is
            // compressed.
            return Err(protocol("RSV1 set on a continuation frame"));
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
            rsv,
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
            if opcode != OP_CONTINUATION {
                self.message = Some(Message {
                    text: opcode == OP_TEXT,
                    checked: 0,
                    compressed: rsv & 0b100 != 0,
                    compressed_in: 0,
                });
            }
            match self.message.as_mut() {
                Some(message) if message.compressed => {
                    // The inflated size is judged as it is inflated; here
                    // only the compressed bytes' own bound.
                    message.compressed_in = message.compressed_in.saturating_add(len);
                    if message.compressed_in > Inflate::max_compressed(self.max_message) {
                        return Err(TOO_BIG);
                    }
                }
                _ => {
                    let limit = (self.max_message - self.data.len().min(self.max_message)) as u64;
                    if len > limit {
                        return Err(TOO_BIG);
                    }
                    // `len <= limit <= max_message`, so it fits in usize.
                    self.data.reserve((len as usize).min(MAX_PREALLOCATION));
                }
            }
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
        let mut message = self.message.take();
        if let Some(m) = message.as_mut()
            && m.compressed
            && let Some(inflate) = self.inflate.as_mut()
        {
            if let Err(e) = inflate.inflater(self.max_message).finish(&mut self.data) {
                return Err(inflate_fault(e, &self.data, Some(m)));
            }
            inflate.release();
            if m.text {
                check_utf8(&self.data, &mut m.checked)?;
            }
        }
        let bytes = self.data.split().freeze();
        match message {
            Some(Message {
                text: true,
                checked,
                ..
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

    mod inflate {
        use super::*;
        use crate::protocol::deflate::Deflater;

        const RSV1: u8 = 0b100;

        fn deflating(no_context_takeover: bool, max: usize) -> Decoder {
            Decoder::new(Role::Server, max).with_inflate(InflateParams {
                window_bits: 15,
                no_context_takeover,
            })
        }

        fn compress(msg: &[u8]) -> Vec<u8> {
            let mut out = Vec::new();
            Deflater::new(6, 15, true)
                .unwrap()
                .compress(msg, &mut out)
                .unwrap();
            out
        }

        fn compressed(opcode: u8, payload: &[u8]) -> Vec<u8> {
            RawFrame::new(opcode, payload).rsv(RSV1).mask(MASK).encode()
        }

        fn violation(decoder: &mut Decoder, wire: &[u8]) -> Violation {
            decode_all(decoder, wire).expect_err("a violation")
        }

        #[test]
        fn compressed_text_and_binary_inflate() {
            let text = "héllo, compressed world ".repeat(20);
            let mut d = deflating(true, 1 << 20);
            let mut wire = compressed(OP_TEXT, &compress(text.as_bytes()));
            wire.extend(compressed(OP_BINARY, &compress(&[0, 1, 2, 255])));
            wire.extend(frame(true, OP_TEXT, b"plain"));
            assert_eq!(
                decode_all(&mut d, &wire).unwrap(),
                vec![
                    Event::Text(Bytes::from(text)),
                    Event::Binary(Bytes::from_static(&[0, 1, 2, 255])),
                    Event::Text(Bytes::from_static(b"plain")),
                ]
            );
        }

        #[test]
        fn fragmented_compressed_message_with_pings_between_inflates_byte_by_byte() {
            let text = "fragments of one deflate stream ".repeat(30);
            let payload = compress(text.as_bytes());
            let (a, rest) = payload.split_at(payload.len() / 3);
            let (b, c) = rest.split_at(rest.len() / 2);
            let mut wire = RawFrame::new(OP_TEXT, a)
                .rsv(RSV1)
                .fin(false)
                .mask(MASK)
                .encode();
            wire.extend(frame(true, OP_PING, b"1"));
            wire.extend(frame(false, OP_CONTINUATION, b));
            wire.extend(frame(true, OP_PING, b"2"));
            wire.extend(frame(true, OP_CONTINUATION, c));
            let mut d = deflating(false, 1 << 20);
            let mut events = Vec::new();
            for byte in wire {
                events.extend(decode_all(&mut d, &[byte]).unwrap());
            }
            assert_eq!(
                events,
                vec![
                    Event::Ping(Bytes::from_static(b"1")),
                    Event::Ping(Bytes::from_static(b"2")),
                    Event::Text(Bytes::from(text)),
                ]
            );
        }

        #[test]
        fn rsv1_misuse_is_a_protocol_error() {
            let payload = compress(b"x");
            // Not negotiated.
            assert_eq!(
                violation(&mut server(), &compressed(OP_TEXT, &payload)).code,
                code::PROTOCOL_ERROR
            );
            // On a control frame.
            for op in [OP_PING, OP_PONG, OP_CLOSE] {
                let v = violation(&mut deflating(true, 1024), &compressed(op, b""));
                assert_eq!(v.reason, "compressed control frame", "opcode {op}");
            }
            // On a continuation frame.
            let mut wire = RawFrame::new(OP_TEXT, &payload[..1])
                .rsv(RSV1)
                .fin(false)
                .mask(MASK)
                .encode();
            wire.extend(compressed(OP_CONTINUATION, &payload[1..]));
            let v = violation(&mut deflating(true, 1024), &wire);
            assert_eq!(v.reason, "RSV1 set on a continuation frame");
            // RSV2 and RSV3 stay reserved.
            for rsv in [0b010, 0b001, 0b110] {
                let wire = RawFrame::text(payload.clone()).rsv(rsv).mask(MASK).encode();
                let v = violation(&mut deflating(true, 1024), &wire);
                assert_eq!(v.code, code::PROTOCOL_ERROR, "rsv {rsv:03b}");
            }
        }

        #[test]
        fn context_takeover_keeps_the_window_between_messages() {
            // RFC 7692 section 7.2.3.2: the second "Hello" is a back
            // reference into the first message.
            let mut wire = compressed(OP_TEXT, &[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00]);
            wire.extend(compressed(OP_TEXT, &[0xf2, 0x00, 0x11, 0x00, 0x00]));
            let hello = Event::Text(Bytes::from_static(b"Hello"));
            assert_eq!(
                decode_all(&mut deflating(false, 1024), &wire).unwrap(),
                vec![hello.clone(), hello]
            );
            // Without context takeover the reference points at nothing.
            assert!(decode_all(&mut deflating(true, 1024), &wire).is_err());
        }

        #[test]
        fn no_context_takeover_holds_no_inflater_between_messages() {
            let mut d = deflating(true, 1 << 20);
            decode_all(&mut d, &compressed(OP_TEXT, &compress(b"one"))).unwrap();
            assert!(d.inflate.as_ref().unwrap().inflater.is_none());
            let mut d = deflating(false, 1 << 20);
            decode_all(&mut d, &compressed(OP_TEXT, &compress(b"one"))).unwrap();
            assert!(d.inflate.as_ref().unwrap().inflater.is_some());
        }

        #[test]
        fn inflating_past_the_limit_fails_before_the_frame_ends() {
            // 1 MiB of zeros compresses to about 1 KiB.
            let payload = compress(&vec![0; 1 << 20]);
            assert!(payload.len() < 2048);
            let wire = compressed(OP_BINARY, &payload);
            let mut d = deflating(true, 64 * 1024);
            let mut input = Bytes::copy_from_slice(&wire);
            let mut fed = input.split_to(wire.len() / 2);
            assert_eq!(d.decode(&mut fed).unwrap_err().code, code::TOO_BIG);
            assert!(d.data.capacity() <= 64 * 1024 + 1, "{}", d.data.capacity());
            // Exactly at the limit is fine.
            let small = compress(&[7; 1000]);
            let mut d = deflating(true, 1000);
            assert_eq!(
                decode_all(&mut d, &compressed(OP_BINARY, &small)).unwrap(),
                vec![Event::Binary(Bytes::from(vec![7; 1000]))]
            );
        }

        #[test]
        fn compressed_bytes_are_bounded_too() {
            // A header declaring far more compressed bytes than any encoder
            // needs for the limit fails at once.
            let wire = RawFrame::new(OP_BINARY, vec![0; 10])
                .rsv(RSV1)
                .declare(1 << 30)
                .mask(MASK)
                .encode();
            let v = violation(&mut deflating(true, 1 << 20), &wire[..14]);
            assert_eq!(v.code, code::TOO_BIG);
        }

        #[test]
        fn inflated_text_must_be_utf8_and_data_must_be_deflate() {
            let v = violation(
                &mut deflating(true, 1024),
                &compressed(OP_TEXT, &compress(&[0xff, 0xfe])),
            );
            assert_eq!(v.code, code::INVALID_PAYLOAD);
            // BTYPE 11 is reserved.
            let v = violation(&mut deflating(true, 1024), &compressed(OP_BINARY, &[0xff]));
            assert_eq!(v, CORRUPT);
        }

        /// The violation a wire gets, read whole and read a byte at a time.
        fn whole_and_bytewise(max: usize, wire: &[u8]) -> (Violation, Violation) {
            let whole = violation(&mut deflating(true, max), wire);
            let mut d = deflating(true, max);
            let bytewise = wire
                .iter()
                .find_map(|b| {
                    let mut input = Bytes::copy_from_slice(std::slice::from_ref(b));
                    loop {
                        match d.decode(&mut input) {
                            Ok(Some(_)) => {}
                            Ok(None) => return None,
                            Err(v) => return Some(v),
                        }
                    }
                })
                .expect("a violation");
            (whole, bytewise)
        }

        #[test]
        fn the_first_fault_wins_however_the_bytes_are_cut() {
            // Found by fuzzing (decoder_inflate): text that breaks UTF-8
            // early and then crosses the limit (or the DEFLATE data goes bad)
            // was 1009 (or "not DEFLATE") in one read and 1007 in many.
            let mut bad = vec![b'a'; 10];
            bad.push(0xff);
            bad.extend(vec![b'b'; 5000]);
            let (whole, bytewise) = whole_and_bytewise(1000, &compressed(OP_TEXT, &compress(&bad)));
            assert_eq!((whole, bytewise), (INVALID_UTF8, INVALID_UTF8));
            let mut payload = compress(&bad[..20]);
            payload.extend([0xff; 8]);
            let (whole, bytewise) = whole_and_bytewise(1 << 20, &compressed(OP_TEXT, &payload));
            assert_eq!((whole, bytewise), (INVALID_UTF8, INVALID_UTF8));
            // Valid text: the limit and the corruption are what is reported.
            let good = vec![b'c'; 5000];
            let (whole, bytewise) =
                whole_and_bytewise(1000, &compressed(OP_TEXT, &compress(&good)));
            assert_eq!((whole, bytewise), (TOO_BIG, TOO_BIG));
            let mut payload = compress(&good[..20]);
            payload.extend([0xff; 8]);
            let (whole, bytewise) = whole_and_bytewise(1 << 20, &compressed(OP_TEXT, &payload));
            assert_eq!((whole, bytewise), (CORRUPT, CORRUPT));
        }

        #[test]
        fn output_past_the_limit_before_corrupt_data_is_too_big() {
            // From fuzzing (decoder_inflate): with a 2-byte limit, these 7
            // payload bytes inflate past the limit and then turn out corrupt;
            // read at once zlib reported both in one call, and "corrupt" won.
            let wire = [
                0x42, 0x87, 0x37, 0x80, 0xfa, 0x21, 0x3d, 0x55, 0x9d, 0x3e, 0x38, 0x30, 0xfa,
            ];
            let (whole, bytewise) = whole_and_bytewise(2, &wire);
            assert_eq!((whole, bytewise), (TOO_BIG, TOO_BIG));
        }
    }
}
