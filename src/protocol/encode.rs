//! Frame encoding, one whole frame per call, for both sides.
//!
//! The server's frames are unmasked, so one message meant for many sessions
//! is encoded once ([`server_frame`]) and the same bytes are shared by all of
//! them. Our own clients (the load generator) mask every frame
//! ([`encode_frame`], RFC 6455 section 5.3).

use bytes::Bytes;

use super::Header;

/// The longest frame header: 2 bytes, an 8-byte length and a 4-byte mask.
pub const MAX_HEADER_LEN: usize = 14;

/// Appends one final (FIN) frame with `opcode` and `payload` to `out`, masked
/// with `mask` when given (a client must mask; a server must not).
///
/// Appends into a caller's buffer so that a connection can batch several
/// frames into one write and reuse the allocation.
pub fn encode_frame(out: &mut Vec<u8>, opcode: u8, payload: &[u8], mask: Option<[u8; 4]>) {
    Header {
        mask,
        ..Header::new(opcode, payload.len())
    }
    .write_frame(payload, out);
}

/// One unmasked (server) frame whose payload is `parts` joined, in a single
/// allocation of the exact size: the reply `prefix + message` is built here
/// without an intermediate string.
pub fn server_frame(opcode: u8, parts: &[&[u8]]) -> Bytes {
    let len = parts.iter().map(|p| p.len()).sum();
    let header = Header::new(opcode, len);
    let mut out = Vec::with_capacity(header.size() + len);
    header.write(&mut out);
    for part in parts {
        out.extend_from_slice(part);
    }
    // Takes the allocation as it is: no copy.
    Bytes::from(out)
}

/// Payloads at least this long are not copied into their frame: the frame
/// goes out as its head and the payload's own bytes. Below it, one small
/// allocation and copy are cheaper than a second piece to queue and write.
pub const SHARE_PAYLOAD_FROM: usize = 1024;

/// One unmasked (server) message frame whose payload is `prefix` then
/// `payload`, as the pieces to write in order: the whole frame, or (for a
/// payload of [`SHARE_PAYLOAD_FROM`] bytes or more) its head, header and
/// prefix, then `payload` itself, shared rather than copied.
pub fn server_message(opcode: u8, prefix: &[u8], payload: &Bytes) -> (Bytes, Option<Bytes>) {
    if payload.len() < SHARE_PAYLOAD_FROM {
        return (server_frame(opcode, &[prefix, payload]), None);
    }
    let header = Header::new(opcode, prefix.len() + payload.len());
    let mut head = Vec::with_capacity(header.size() + prefix.len());
    header.write(&mut head);
    head.extend_from_slice(prefix);
    (Bytes::from(head), Some(payload.clone()))
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

    /// Decodes `wire` as a client and checks it is exactly one binary frame
    /// carrying `prefix` then `body`.
    fn assert_one_binary_frame(wire: Bytes, prefix: &[u8], body: &[u8], len: usize) {
        let mut want = prefix.to_vec();
        want.extend_from_slice(body);
        let mut input = wire;
        let mut client = Decoder::new(Role::Client, 1 << 20);
        assert_eq!(
            client.decode(&mut input),
            Ok(Some(Event::Binary(Bytes::from(want)))),
            "len {len}"
        );
        assert!(input.is_empty(), "len {len}");
    }

    #[test]
    fn server_frames_join_their_parts_and_decode_on_the_client_side() {
        for len in [0, 125, 126, 0xFFFF, 0x10000] {
            let body: Vec<u8> = (0..len).map(|i| (i % 7) as u8).collect();
            let wire = server_frame(opcode::BINARY, &[b"ab", &body]);
            assert_one_binary_frame(wire, b"ab", &body, len);
        }
    }

    #[test]
    fn a_message_split_into_head_and_shared_payload_decodes_as_one_frame() {
        for len in [0, 10, SHARE_PAYLOAD_FROM - 1, SHARE_PAYLOAD_FROM, 70_000] {
            let payload = Bytes::from((0..len).map(|i| (i % 13) as u8).collect::<Vec<u8>>());
            let (head, tail) = server_message(opcode::BINARY, b"p:", &payload);
            assert_eq!(tail.is_some(), len >= SHARE_PAYLOAD_FROM, "len {len}");
            if let Some(tail) = &tail {
                // Shared, not copied.
                assert_eq!(tail.as_ptr(), payload.as_ptr());
            }
            let mut wire = head.to_vec();
            wire.extend_from_slice(tail.as_deref().unwrap_or_default());
            assert_one_binary_frame(Bytes::from(wire), b"p:", &payload, len);
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
