//! Frames as bytes, well-formed or not: the one place that lays out a frame
//! header (RFC 6455 section 5.2).
//!
//! [`Header`] is read by the [`Decoder`](super::Decoder) and written by the
//! encoder; [`RawFrame`] builds any frame a test needs, including ones no
//! endpoint may send, and reads back what a peer sent without judging it.
//! Nothing here validates: the rules live in the decoder.

use std::fmt;

use super::{apply_mask, close_payload, opcode};

/// The bits of a frame's first two bytes.
pub(crate) mod bits {
    pub const FIN: u8 = 0x80;
    pub const RSV: u8 = 0x70;
    pub const OPCODE: u8 = 0x0F;
    pub const MASKED: u8 = 0x80;
    pub const LEN: u8 = 0x7F;
}

/// The values of the 7-bit length field that announce a longer field.
const LEN_U16: u8 = 126;
const LEN_U64: u8 = 127;

/// The mask key of [`RawFrame`]'s constructors: fixed, so that test bytes are
/// reproducible, and not zero, so that a peer that forgets to unmask is seen.
pub const DEFAULT_MASK: [u8; 4] = [0x37, 0xFA, 0x21, 0x3D];

/// How a payload length is written. Senders must use the shortest form, but
/// receivers accept any (RFC 6455 section 5.2), so tests need all of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LengthForm {
    /// The shortest form that holds the length.
    Minimal,
    /// The 7-bit field alone.
    Short,
    /// 126 in the 7-bit field, then 16 bits.
    U16,
    /// 127 in the 7-bit field, then 64 bits.
    U64,
}

impl LengthForm {
    /// The form actually written for `len`: `Minimal` resolved, any other
    /// form as it is.
    pub fn resolve(self, len: u64) -> LengthForm {
        match self {
            LengthForm::Minimal if len < u64::from(LEN_U16) => LengthForm::Short,
            LengthForm::Minimal if len <= 0xFFFF => LengthForm::U16,
            LengthForm::Minimal => LengthForm::U64,
            form => form,
        }
    }
}

/// The length of the header (2 to 14 bytes) that a frame's second byte
/// announces.
pub fn header_size(second: u8) -> usize {
    let extended = match second & bits::LEN {
        LEN_U16 => 2,
        LEN_U64 => 8,
        _ => 0,
    };
    let mask = if second & bits::MASKED != 0 { 4 } else { 0 };
    2 + extended + mask
}

/// A frame header exactly as on the wire. Nothing in it is checked, so any
/// header can be written and every header can be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub fin: bool,
    /// RSV1-3 in the low three bits (RSV1 is `0b100`).
    pub rsv: u8,
    /// Any of the sixteen opcodes, reserved ones included.
    pub opcode: u8,
    pub mask: Option<[u8; 4]>,
    pub form: LengthForm,
    /// The payload length the header declares.
    pub len: u64,
}

impl Header {
    /// A correct header for a final frame of `len` payload bytes: no RSV
    /// bits, unmasked (as a server sends), the shortest length form.
    pub fn new(opcode: u8, len: usize) -> Header {
        Header {
            fin: true,
            rsv: 0,
            opcode,
            mask: None,
            form: LengthForm::Minimal,
            len: len as u64,
        }
    }

    /// How many bytes [`Header::write`] appends.
    pub fn size(&self) -> usize {
        let extended = match self.form.resolve(self.len) {
            LengthForm::Short => 0,
            LengthForm::U16 => 2,
            LengthForm::U64 | LengthForm::Minimal => 8,
        };
        2 + extended + if self.mask.is_some() { 4 } else { 0 }
    }

    /// Appends the header to `out`.
    ///
    /// Fields are cut to their width: RSV to 3 bits, the opcode to 4, a
    /// length to its form's field. So any bit pattern can be written, e.g. a
    /// 7-bit length of 126 whose 16-bit extension is missing.
    pub fn write(&self, out: &mut Vec<u8>) {
        let fin = if self.fin { bits::FIN } else { 0 };
        out.push(fin | ((self.rsv << 4) & bits::RSV) | (self.opcode & bits::OPCODE));
        let masked = if self.mask.is_some() { bits::MASKED } else { 0 };
        match self.form.resolve(self.len) {
            LengthForm::Short => out.push(masked | (self.len as u8 & bits::LEN)),
            LengthForm::U16 => {
                out.push(masked | LEN_U16);
                out.extend_from_slice(&(self.len as u16).to_be_bytes());
            }
            LengthForm::U64 | LengthForm::Minimal => {
                out.push(masked | LEN_U64);
                out.extend_from_slice(&self.len.to_be_bytes());
            }
        }
        if let Some(key) = self.mask {
            out.extend_from_slice(&key);
        }
    }

    /// Appends the header, then `payload`, masked when the header has a key.
    ///
    /// `payload` is written as given, even when the header declares another
    /// length; appending into the caller's buffer lets a connection batch
    /// frames into one write.
    pub fn write_frame(&self, payload: &[u8], out: &mut Vec<u8>) {
        out.reserve(self.size() + payload.len());
        self.write(out);
        let start = out.len();
        out.extend_from_slice(payload);
        if let Some(key) = self.mask {
            apply_mask(&mut out[start..], key, 0);
        }
    }

    /// Reads the header at the front of `buf`: the header and its size, or
    /// `None` while `buf` holds less than a whole header.
    pub fn parse(buf: &[u8]) -> Option<(Header, usize)> {
        let size = header_size(*buf.get(1)?);
        Some((Header::read(buf.get(..size)?), size))
    }

    /// Reads a header from `head`, which holds exactly the [`header_size`]
    /// bytes its second byte announces.
    pub(crate) fn read(head: &[u8]) -> Header {
        debug_assert_eq!(head.len(), header_size(head[1]));
        let (form, len, rest) = match head[1] & bits::LEN {
            LEN_U16 => (
                LengthForm::U16,
                u64::from(u16::from_be_bytes([head[2], head[3]])),
                &head[4..],
            ),
            LEN_U64 => {
                let mut wide = [0u8; 8];
                wide.copy_from_slice(&head[2..10]);
                (LengthForm::U64, u64::from_be_bytes(wide), &head[10..])
            }
            short => (LengthForm::Short, u64::from(short), &head[2..]),
        };
        let mask = (head[1] & bits::MASKED != 0).then(|| [rest[0], rest[1], rest[2], rest[3]]);
        Header {
            fin: head[0] & bits::FIN != 0,
            rsv: (head[0] & bits::RSV) >> 4,
            opcode: head[0] & bits::OPCODE,
            mask,
            form,
            len,
        }
    }
}

/// Any frame, well-formed or not: built to be sent, or read as received.
///
/// The constructors make a correct client frame: final, no RSV bits, masked
/// with [`DEFAULT_MASK`], the shortest length form. Every part can then be
/// changed, to anything at all, which is what tests of a peer's rules need.
#[derive(Clone, PartialEq, Eq)]
pub struct RawFrame {
    pub fin: bool,
    /// RSV1-3 in the low three bits (RSV1 is `0b100`).
    pub rsv: u8,
    pub opcode: u8,
    pub mask: Option<[u8; 4]>,
    pub form: LengthForm,
    /// The length the header declares; `None` declares the payload's own.
    pub declared: Option<u64>,
    /// The payload in the clear: masked only when encoded.
    pub payload: Vec<u8>,
}

impl RawFrame {
    pub fn new(opcode: u8, payload: impl Into<Vec<u8>>) -> RawFrame {
        RawFrame {
            fin: true,
            rsv: 0,
            opcode,
            mask: Some(DEFAULT_MASK),
            form: LengthForm::Minimal,
            declared: None,
            payload: payload.into(),
        }
    }

    pub fn text(payload: impl Into<Vec<u8>>) -> RawFrame {
        RawFrame::new(opcode::TEXT, payload)
    }

    pub fn binary(payload: impl Into<Vec<u8>>) -> RawFrame {
        RawFrame::new(opcode::BINARY, payload)
    }

    pub fn continuation(payload: impl Into<Vec<u8>>) -> RawFrame {
        RawFrame::new(opcode::CONTINUATION, payload)
    }

    pub fn ping(payload: impl Into<Vec<u8>>) -> RawFrame {
        RawFrame::new(opcode::PING, payload)
    }

    pub fn pong(payload: impl Into<Vec<u8>>) -> RawFrame {
        RawFrame::new(opcode::PONG, payload)
    }

    /// A close frame with `code` and `reason` (neither checked).
    pub fn close(code: u16, reason: &str) -> RawFrame {
        RawFrame::new(opcode::CLOSE, close_payload(code, reason))
    }

    pub fn fin(mut self, fin: bool) -> RawFrame {
        self.fin = fin;
        self
    }

    /// Sets RSV1-3 from the low three bits of `rsv` (RSV1 is `0b100`).
    pub fn rsv(mut self, rsv: u8) -> RawFrame {
        self.rsv = rsv;
        self
    }

    pub fn mask(mut self, key: [u8; 4]) -> RawFrame {
        self.mask = Some(key);
        self
    }

    /// No mask: what a server sends, and a fault in a client.
    pub fn unmasked(mut self) -> RawFrame {
        self.mask = None;
        self
    }

    /// Writes the length in `form`, even where a shorter one would do.
    pub fn length(mut self, form: LengthForm) -> RawFrame {
        self.form = form;
        self
    }

    /// Declares `len` payload bytes whatever the payload holds: a header that
    /// promises more than is sent, or a length no receiver may accept.
    pub fn declare(mut self, len: u64) -> RawFrame {
        self.declared = Some(len);
        self
    }

    pub fn header(&self) -> Header {
        Header {
            fin: self.fin,
            rsv: self.rsv,
            opcode: self.opcode,
            mask: self.mask,
            form: self.form,
            len: self.declared.unwrap_or(self.payload.len() as u64),
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode_into(&mut out);
        out
    }

    /// Appends the frame's bytes to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        self.header().write_frame(&self.payload, out);
    }

    /// Reads the frame at the front of `buf` exactly as sent, unmasking its
    /// payload: the frame and the bytes it took, or `None` while `buf` holds
    /// less than a whole frame. Re-encoding the frame gives the same bytes.
    pub fn parse(buf: &[u8]) -> Option<(RawFrame, usize)> {
        let (header, size) = Header::parse(buf)?;
        // A declared length beyond memory never completes: stay incomplete.
        let end = size.checked_add(usize::try_from(header.len).ok()?)?;
        let mut payload = buf.get(size..end)?.to_vec();
        if let Some(key) = header.mask {
            apply_mask(&mut payload, key, 0);
        }
        let frame = RawFrame {
            fin: header.fin,
            rsv: header.rsv,
            opcode: header.opcode,
            mask: header.mask,
            form: header.form,
            declared: None,
            payload,
        };
        Some((frame, end))
    }

    /// The status code of a close frame, if it carries one (not validated).
    pub fn close_code(&self) -> Option<u16> {
        match self.payload.as_slice() {
            [hi, lo, ..] if self.opcode == opcode::CLOSE => Some(u16::from_be_bytes([*hi, *lo])),
            _ => None,
        }
    }
}

/// Shows at most the first 64 payload bytes: test failures print frames, and
/// a 16 MiB payload in a panic message helps no one.
impl fmt::Debug for RawFrame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const SHOWN: usize = 64;
        let mut s = f.debug_struct("RawFrame");
        s.field("fin", &self.fin)
            .field("rsv", &self.rsv)
            .field("opcode", &self.opcode)
            .field("mask", &self.mask)
            .field("form", &self.form)
            .field("declared", &self.declared);
        let shown = &self.payload[..self.payload.len().min(SHOWN)];
        if shown.len() == self.payload.len() {
            s.field("payload", &format_args!("b\"{}\"", shown.escape_ascii()));
        } else {
            let len = self.payload.len();
            s.field(
                "payload",
                &format_args!("b\"{}\"... ({len} bytes)", shown.escape_ascii()),
            );
        }
        s.finish()
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::protocol::decoder::decode_all;
    use crate::protocol::{CloseFrame, Decoder, Event, MAX_HEADER_LEN, Role, Violation, code};

    fn decode(role: Role, max: usize, wire: &[u8]) -> Result<Vec<Event>, Violation> {
        decode_all(&mut Decoder::new(role, max), wire)
    }

    fn server(wire: &[u8]) -> Result<Vec<Event>, Violation> {
        decode(Role::Server, 1 << 20, wire)
    }

    #[test]
    fn encodes_the_rfc_6455_section_5_7_examples() {
        let hello = b"Hello".to_vec();
        let cases: [(RawFrame, &[u8]); 6] = [
            (
                RawFrame::text(hello.clone()).unmasked(),
                &[0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f],
            ),
            (
                RawFrame::text(hello.clone()),
                &[
                    0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
                ],
            ),
            (
                RawFrame::text("Hel").fin(false).unmasked(),
                &[0x01, 0x03, 0x48, 0x65, 0x6c],
            ),
            (
                RawFrame::continuation("lo").unmasked(),
                &[0x80, 0x02, 0x6c, 0x6f],
            ),
            (
                RawFrame::ping(hello.clone()).unmasked(),
                &[0x89, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f],
            ),
            (
                RawFrame::pong(hello).mask(DEFAULT_MASK),
                &[
                    0x8a, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
                ],
            ),
        ];
        for (frame, wire) in cases {
            assert_eq!(frame.encode(), wire, "{frame:?}");
        }
        let wire = RawFrame::binary(vec![0; 256]).unmasked().encode();
        assert_eq!(wire[..4], [0x82, 0x7E, 0x01, 0x00]);
        let wire = RawFrame::binary(vec![0; 65536]).unmasked().encode();
        assert_eq!(wire[..10], [0x82, 0x7F, 0, 0, 0, 0, 0, 1, 0, 0]);
    }

    #[test]
    fn correct_frames_decode_as_built_in_every_length_form() {
        for len in [0, 1, 125, 126, 127, 0xFFFF, 0x10000] {
            let payload: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let forms = [
                LengthForm::Minimal,
                LengthForm::U16,
                LengthForm::U64,
                LengthForm::Short,
            ];
            for form in forms {
                // The 7-bit and 16-bit fields cannot hold every length.
                if (form == LengthForm::Short && len > 125)
                    || (form == LengthForm::U16 && len > 0xFFFF)
                {
                    continue;
                }
                let frame = RawFrame::binary(payload.clone()).length(form);
                let expected = vec![Event::Binary(Bytes::from(payload.clone()))];
                assert_eq!(
                    server(&frame.encode()),
                    Ok(expected.clone()),
                    "{form:?} {len}"
                );
                let unmasked = frame.unmasked().encode();
                assert_eq!(
                    decode(Role::Client, 1 << 20, &unmasked),
                    Ok(expected),
                    "{form:?} {len}"
                );
            }
        }
        let wire: Vec<u8> = [
            RawFrame::text("a").fin(false),
            RawFrame::ping("p").mask([0, 0, 0, 0]),
            RawFrame::continuation("b").mask([9, 8, 7, 6]),
            RawFrame::pong(""),
            RawFrame::close(4000, "bye"),
        ]
        .iter()
        .flat_map(RawFrame::encode)
        .collect();
        assert_eq!(
            server(&wire),
            Ok(vec![
                Event::Ping(Bytes::from_static(b"p")),
                Event::Text(Bytes::from_static(b"ab")),
                Event::Pong(Bytes::new()),
                Event::Close(Some(CloseFrame {
                    code: 4000,
                    reason: "bye".into()
                })),
            ])
        );
    }

    #[test]
    fn broken_frames_are_refused_with_the_right_close_code() {
        let too_long_close = {
            let mut payload = close_payload(1000, "");
            payload.resize(126, b'x');
            RawFrame::new(opcode::CLOSE, payload)
        };
        let cases: Vec<(&str, RawFrame, u16)> = vec![
            ("rsv1", RawFrame::text("x").rsv(0b100), code::PROTOCOL_ERROR),
            (
                "rsv3",
                RawFrame::binary("x").rsv(0b001),
                code::PROTOCOL_ERROR,
            ),
            ("opcode 3", RawFrame::new(3, ""), code::PROTOCOL_ERROR),
            ("opcode 15", RawFrame::new(15, "x"), code::PROTOCOL_ERROR),
            (
                "unmasked",
                RawFrame::text("x").unmasked(),
                code::PROTOCOL_ERROR,
            ),
            (
                "long ping",
                RawFrame::ping(vec![0; 126]),
                code::PROTOCOL_ERROR,
            ),
            ("long close", too_long_close, code::PROTOCOL_ERROR),
            (
                "ping declaring 126 in 16 bits",
                RawFrame::ping("").length(LengthForm::U16).declare(126),
                code::PROTOCOL_ERROR,
            ),
            (
                "fragmented ping",
                RawFrame::ping("").fin(false),
                code::PROTOCOL_ERROR,
            ),
            (
                "stray continuation",
                RawFrame::continuation("x"),
                code::PROTOCOL_ERROR,
            ),
            (
                "64-bit length with the top bit set",
                RawFrame::binary("")
                    .length(LengthForm::U64)
                    .declare(1 << 63 | 5),
                code::PROTOCOL_ERROR,
            ),
            (
                "declared over the limit",
                RawFrame::binary("").declare((1 << 20) + 1),
                code::TOO_BIG,
            ),
            (
                "close code 1005",
                RawFrame::close(1005, ""),
                code::PROTOCOL_ERROR,
            ),
            (
                "close of one byte",
                RawFrame::new(opcode::CLOSE, [3]),
                code::PROTOCOL_ERROR,
            ),
            (
                "close reason not UTF-8",
                RawFrame::new(opcode::CLOSE, [0x03, 0xE8, 0xFF]),
                code::INVALID_PAYLOAD,
            ),
            (
                "text not UTF-8",
                RawFrame::text(&b"ok\xFF"[..]),
                code::INVALID_PAYLOAD,
            ),
        ];
        for (name, frame, expected) in cases {
            let got = server(&frame.encode()).map_err(|v| v.code);
            assert_eq!(got, Err(expected), "{name}: {frame:?}");
        }
        let masked = RawFrame::text("x").encode();
        assert_eq!(
            decode(Role::Client, 1024, &masked).map_err(|v| v.code),
            Err(code::PROTOCOL_ERROR)
        );
    }

    #[test]
    fn parse_reads_back_exactly_what_was_encoded() {
        let frames = [
            RawFrame::text("héllo"),
            RawFrame::binary(vec![7; 300]).unmasked(),
            RawFrame::new(11, "reserved").rsv(0b101).fin(false),
            RawFrame::ping("")
                .length(LengthForm::U64)
                .mask([1, 2, 3, 4]),
            RawFrame::close(1000, "bye").length(LengthForm::U16),
            RawFrame::binary(vec![1; 70_000]),
        ];
        for frame in frames {
            let mut wire = frame.encode();
            let len = frame.payload.len() as u64;
            let expected = RawFrame {
                form: frame.form.resolve(len),
                ..frame.clone()
            };
            assert_eq!(
                RawFrame::parse(&wire),
                Some((expected.clone(), wire.len())),
                "{frame:?}"
            );
            assert_eq!(expected.encode(), wire, "re-encoding gives the same bytes");
            for cut in 0..wire.len() {
                assert_eq!(RawFrame::parse(&wire[..cut]), None, "cut at {cut}");
            }
            wire.extend_from_slice(b"next");
            assert_eq!(
                RawFrame::parse(&wire).map(|(_, used)| used),
                Some(wire.len() - 4)
            );
        }
    }

    #[test]
    fn header_fields_are_cut_to_their_width() {
        let header = Header {
            fin: false,
            rsv: 0xFF,
            opcode: 0xFF,
            mask: None,
            form: LengthForm::Short,
            len: 126,
        };
        let mut wire = Vec::new();
        header.write(&mut wire);
        // A 7-bit 126 announces a 16-bit length that is not there.
        assert_eq!(wire, [0x7F, 0x7E]);
        assert_eq!(header_size(wire[1]), 4);
        assert_eq!(Header::parse(&wire), None);
        assert_eq!(
            RawFrame::parse(&[0x82, 0x7F, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF]),
            None
        );
    }

    #[test]
    fn header_size_matches_what_write_appends() {
        for form in [
            LengthForm::Minimal,
            LengthForm::Short,
            LengthForm::U16,
            LengthForm::U64,
        ] {
            for len in [0u64, 125, 126, 0xFFFF, 0x10000] {
                for mask in [None, Some(DEFAULT_MASK)] {
                    let header = Header {
                        mask,
                        form,
                        ..Header::new(opcode::BINARY, len as usize)
                    };
                    let mut wire = Vec::new();
                    header.write(&mut wire);
                    assert_eq!(wire.len(), header.size());
                    // Except where the 7-bit field is made to lie.
                    if !(form == LengthForm::Short && len > 125) {
                        assert_eq!(header_size(wire[1]), header.size());
                    }
                    assert!(header.size() <= MAX_HEADER_LEN);
                }
            }
        }
    }
}
