//! Frame encoding, one whole frame per call, for both sides.
//!
//! The server's frames are unmasked, so one message meant for many sessions
//! is encoded once ([`server_frame`]) and the same bytes are shared by all of
//! them. Our own clients (the load generator) mask every frame
//! ([`encode_frame`], RFC 6455 section 5.3).

use bytes::{BufMut, Bytes, BytesMut};

use super::apply_mask;

/// The longest frame header: 2 bytes, an 8-byte length and a 4-byte mask.
pub const MAX_HEADER_LEN: usize = 14;

/// A frame header, built on the stack.
#[derive(Debug, Clone, Copy)]
pub struct Header {
    bytes: [u8; MAX_HEADER_LEN],
    len: u8,
}

impl Header {
    /// A final (FIN) frame's header with `opcode`, for a payload of
    /// `payload_len` bytes, masked with `mask` when given. The length uses
    /// the shortest form, as section 5.2 requires.
    pub fn new(opcode: u8, payload_len: usize, mask: Option<[u8; 4]>) -> Header {
        let mut bytes = [0u8; MAX_HEADER_LEN];
        let mask_bit = if mask.is_some() { 0x80 } else { 0 };
        bytes[0] = 0x80 | (opcode & 0x0F);
        let mut len = match payload_len {
            n @ 0..=125 => {
                bytes[1] = mask_bit | n as u8;
                2
            }
            n @ 126..=0xFFFF => {
                bytes[1] = mask_bit | 126;
                bytes[2..4].copy_from_slice(&(n as u16).to_be_bytes());
                4
            }
            n => {
                bytes[1] = mask_bit | 127;
                bytes[2..10].copy_from_slice(&(n as u64).to_be_bytes());
                10
            }
        };
        if let Some(key) = mask {
            bytes[len..len + 4].copy_from_slice(&key);
            len += 4;
        }
        Header {
            bytes,
            len: len as u8,
        }
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
}

/// Appends one final (FIN) frame with `opcode` and `payload` to `out`, masked
/// with `mask` when given (a client must mask; a server must not).
///
/// Appends into a caller's buffer so that a connection can batch several
/// frames into one write and reuse the allocation.
pub fn encode_frame(out: &mut Vec<u8>, opcode: u8, payload: &[u8], mask: Option<[u8; 4]>) {
    let header = Header::new(opcode, payload.len(), mask);
    out.reserve(header.as_bytes().len() + payload.len());
    out.extend_from_slice(header.as_bytes());
    let start = out.len();
    out.extend_from_slice(payload);
    if let Some(key) = mask {
        apply_mask(&mut out[start..], key, 0);
    }
}

/// One unmasked (server) frame whose payload is `parts` joined, in a single
/// allocation of the exact size: the reply `prefix + message` is built here
/// without an intermediate string.
pub fn server_frame(opcode: u8, parts: &[&[u8]]) -> Bytes {
    let len = parts.iter().map(|p| p.len()).sum();
    let header = Header::new(opcode, len, None);
    let mut out = BytesMut::with_capacity(header.as_bytes().len() + len);
    out.put_slice(header.as_bytes());
    for part in parts {
        out.put_slice(part);
    }
    out.freeze()
}

/// The payload of a close frame: the code, big-endian, then the reason.
pub fn close_payload(code: u16, reason: &str) -> Vec<u8> {
    let mut payload = Vec::with_capacity(2 + reason.len());
    payload.extend_from_slice(&code.to_be_bytes());
    payload.extend_from_slice(reason.as_bytes());
    payload
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::protocol::{CloseFrame, Decoder, Event, Role, opcode};

    fn round_trip(opcode: u8, payload: &[u8]) -> Event {
        let mut wire = Vec::new();
        encode_frame(&mut wire, opcode, payload, Some([1, 2, 3, 4]));
        let mut input = Bytes::from(wire);
        let mut server = Decoder::new(Role::Server, 1 << 20);
        let event = server.decode(&mut input).expect("valid frame");
        assert!(input.is_empty(), "the whole frame is consumed");
        event.expect("one whole frame")
    }

    #[test]
    fn masked_frames_of_every_length_encoding_decode_as_sent() {
        for len in [0, 1, 125, 126, 127, 0xFFFF, 0x10000, 70_000] {
            let payload: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            assert_eq!(
                round_trip(opcode::BINARY, &payload),
                Event::Binary(Bytes::from(payload)),
                "len {len}"
            );
        }
        assert_eq!(
            round_trip(opcode::TEXT, b"hello"),
            Event::Text(Bytes::from_static(b"hello"))
        );
        assert_eq!(
            round_trip(opcode::PING, b"p"),
            Event::Ping(Bytes::from_static(b"p"))
        );
    }

    #[test]
    fn close_payload_decodes_to_its_code_and_reason() {
        let payload = close_payload(1000, "bye");
        assert_eq!(
            round_trip(opcode::CLOSE, &payload),
            Event::Close(Some(CloseFrame {
                code: 1000,
                reason: "bye".into()
            }))
        );
    }

    #[test]
    fn server_frames_join_their_parts_and_decode_on_the_client_side() {
        for len in [0, 125, 126, 0xFFFF, 0x10000] {
            let body: Vec<u8> = (0..len).map(|i| (i % 7) as u8).collect();
            let mut input = server_frame(opcode::BINARY, &[b"ab", &body]);
            let mut want = b"ab".to_vec();
            want.extend_from_slice(&body);
            let mut client = Decoder::new(Role::Client, 1 << 20);
            assert_eq!(
                client.decode(&mut input),
                Ok(Some(Event::Binary(Bytes::from(want)))),
                "len {len}"
            );
            assert!(input.is_empty());
        }
    }

    #[test]
    fn unmasked_frames_decode_on_the_client_side() {
        let mut wire = Vec::new();
        encode_frame(&mut wire, opcode::TEXT, b"hi", None);
        assert_eq!(wire, [0x81, 2, b'h', b'i']);
        let mut input = Bytes::from(wire);
        let mut client = Decoder::new(Role::Client, 1024);
        assert_eq!(
            client.decode(&mut input),
            Ok(Some(Event::Text(Bytes::from_static(b"hi"))))
        );
    }
}
