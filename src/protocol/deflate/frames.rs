//! Compressed message frames (RFC 7692 section 6): what a connection sends
//! once permessage-deflate is agreed, and the compressors behind it.
//!
//! Without context takeover a compressor holds nothing between messages, so
//! such connections own none: each worker thread keeps one per level and
//! window size ([`shared_frame`]) and lends it for one message at a time.
//! That is also what lets a channel publication be compressed once, on
//! whichever thread first needs it, for every subscriber that agreed to the
//! same window. Only a connection with context takeover pays for a
//! compressor of its own, built when it first sends a compressed message.

use std::cell::RefCell;

use bytes::Bytes;

use super::codec::{ConfigError, Deflater};
use super::negotiate::{DeflateParams, MIN_ZLIB_WINDOW_BITS};
use crate::protocol::{Header, MAX_HEADER_LEN, apply_mask};

/// RSV1 in [`Header::rsv`]: "this message is compressed".
const RSV1: u8 = 0b100;

/// What a connection's sender needs besides the agreed parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SendSettings {
    /// zlib level, 1..=9.
    pub level: u32,
    /// Messages shorter than this go uncompressed: below ~100 bytes DEFLATE
    /// saves little or nothing, and costs the same setup per message.
    pub min_size: usize,
}

/// How messages meant for many connections are compressed once: without
/// context takeover, at one level and window, on this thread's compressor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shared {
    pub settings: SendSettings,
    pub window_bits: u8,
}

impl Shared {
    /// The compressed frame of a message, or `None` for one to send plain.
    pub fn frame(&self, opcode: u8, payload: &[u8]) -> Option<Bytes> {
        if payload.len() < self.settings.min_size {
            return None;
        }
        shared_frame(
            self.settings.level,
            self.window_bits,
            opcode,
            &[payload],
            None,
        )
    }
}

/// One direction's compressor of one connection.
pub struct Compressor {
    settings: SendSettings,
    /// The agreed window for what we send.
    window_bits: u8,
    context_takeover: bool,
    /// With context takeover: ours, built on first use.
    own: Option<Deflater>,
}

impl Compressor {
    /// The compressor for what we send under `params`, as the server
    /// (`server = true`) or the client. `None` when we cannot compress at
    /// all: the peer can only inflate a 256-byte window, which zlib cannot
    /// produce, so everything goes uncompressed (which the extension allows,
    /// message by message: section 6).
    pub fn new(
        settings: SendSettings,
        params: &DeflateParams,
        server: bool,
    ) -> Result<Option<Compressor>, ConfigError> {
        let (window_bits, no_context_takeover) = if server {
            (
                params.server_max_window_bits,
                params.server_no_context_takeover,
            )
        } else {
            (
                params.client_max_window_bits,
                params.client_no_context_takeover,
            )
        };
        if window_bits < MIN_ZLIB_WINDOW_BITS {
            return Ok(None);
        }
        // Checks the level and window now rather than on the first message.
        Deflater::check(settings.level, window_bits)?;
        Ok(Some(Compressor {
            settings,
            window_bits,
            context_takeover: !no_context_takeover,
            own: None,
        }))
    }

    /// The whole frame for a message of `opcode` whose payload is `parts`
    /// joined: compressed with RSV1 set, or `None` when it should go as an
    /// ordinary frame (shorter than `min_size`, or compression failed).
    pub fn frame(&mut self, opcode: u8, parts: &[&[u8]], mask: Option<[u8; 4]>) -> Option<Bytes> {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        if len < self.settings.min_size {
            return None;
        }
        if !self.context_takeover {
            return shared_frame(self.settings.level, self.window_bits, opcode, parts, mask);
        }
        let deflater = match &mut self.own {
            Some(d) => d,
            slot @ None => {
                slot.insert(Deflater::new(self.settings.level, self.window_bits, false).ok()?)
            }
        };
        let frame = compressed_frame(deflater, opcode, parts, mask);
        if frame.is_none() {
            // The failed message is not sent, so the peer's window does not
            // hold it; a fresh compressor refers to nothing before it, which
            // the peer's inflater decodes whatever its window holds.
            self.own = None;
        }
        frame
    }

    /// Whether a frame compressed once for many by `shared` may be sent on
    /// this connection as it is: no context takeover here, and a window at
    /// least as large as the one it was made with.
    pub fn takes_shared(&self, shared: &Shared) -> bool {
        !self.context_takeover
            && self.settings == shared.settings
            && self.window_bits >= shared.window_bits
    }

    /// The smallest message compressed.
    pub fn min_size(&self) -> usize {
        self.settings.min_size
    }

    /// Whether this connection keeps a compressor of its own (context
    /// takeover), for the memory report.
    pub fn context_takeover(&self) -> bool {
        self.context_takeover
    }
}

impl std::fmt::Debug for Compressor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Compressor")
            .field("settings", &self.settings)
            .field("window_bits", &self.window_bits)
            .field("context_takeover", &self.context_takeover)
            .field("built", &self.own.is_some())
            .finish()
    }
}

thread_local! {
    /// This thread's compressors without context takeover, by level and
    /// window: a handful at most (one per distinct window agreed).
    static SHARED: RefCell<Vec<((u32, u8), Deflater)>> = const { RefCell::new(Vec::new()) };
}

/// A compressed frame made with this thread's compressor for `level` and
/// `window_bits` (no context takeover): the frame any connection that agreed
/// to at least that window can take. `None` if compression failed.
pub fn shared_frame(
    level: u32,
    window_bits: u8,
    opcode: u8,
    parts: &[&[u8]],
    mask: Option<[u8; 4]>,
) -> Option<Bytes> {
    SHARED.with(|shared| {
        let mut shared = shared.borrow_mut();
        let key = (level, window_bits);
        let i = match shared.iter().position(|(k, _)| *k == key) {
            Some(i) => i,
            None => {
                shared.push((key, Deflater::new(level, window_bits, true).ok()?));
                shared.len() - 1
            }
        };
        compressed_frame(&mut shared[i].1, opcode, parts, mask)
    })
}

/// Compresses `parts` as one message into one final frame with RSV1 set,
/// masked when `mask` is given. The payload is compressed straight into the
/// frame's buffer after room for the longest header, and the header is then
/// written just before it: one allocation, no copy.
fn compressed_frame(
    deflater: &mut Deflater,
    opcode: u8,
    parts: &[&[u8]],
    mask: Option<[u8; 4]>,
) -> Option<Bytes> {
    let mut buf = vec![0; MAX_HEADER_LEN];
    if let Err(e) = deflater.compress_parts(parts, &mut buf) {
        log::warn!("permessage-deflate: {e}; sending the message uncompressed");
        return None;
    }
    let len = buf.len() - MAX_HEADER_LEN;
    if let Some(key) = mask {
        apply_mask(&mut buf[MAX_HEADER_LEN..], key, 0);
    }
    let mut head = Vec::with_capacity(MAX_HEADER_LEN);
    Header {
        rsv: RSV1,
        mask,
        ..Header::new(opcode, len)
    }
    .write(&mut head);
    let at = MAX_HEADER_LEN - head.len();
    buf[at..MAX_HEADER_LEN].copy_from_slice(&head);
    Some(Bytes::from(buf).slice(at..))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::deflate::Inflater;
    use crate::protocol::{RawFrame, opcode};
    use bytes::BytesMut;

    fn params(server_no_ctx: bool, server_bits: u8) -> DeflateParams {
        DeflateParams {
            server_no_context_takeover: server_no_ctx,
            client_no_context_takeover: false,
            server_max_window_bits: server_bits,
            client_max_window_bits: 15,
        }
    }

    const SETTINGS: SendSettings = SendSettings {
        level: 1,
        min_size: 16,
    };

    /// Reads a frame back: its RSV bits, opcode and inflated payload.
    fn read(frame: &[u8], inflater: &mut Inflater) -> (u8, u8, Vec<u8>) {
        let (raw, used) = RawFrame::parse(frame).expect("a whole frame");
        assert_eq!(used, frame.len());
        let mut out = BytesMut::new();
        inflater
            .decompress(&raw.payload, &mut out)
            .expect("inflates");
        (raw.rsv, raw.opcode, out.to_vec())
    }

    #[test]
    fn frames_carry_rsv1_and_inflate_to_the_joined_parts() {
        let mut c = Compressor::new(SETTINGS, &params(true, 15), true)
            .unwrap()
            .unwrap();
        let text = "Server received: ".repeat(4);
        let frame = c
            .frame(opcode::TEXT, &[b"Server received: ", text.as_bytes()], None)
            .unwrap();
        let mut i = Inflater::new(15, true, 1 << 20).unwrap();
        let (rsv, op, data) = read(&frame, &mut i);
        assert_eq!((rsv, op), (RSV1, opcode::TEXT));
        assert_eq!(data, format!("Server received: {text}").as_bytes());
        assert!(frame.len() < data.len(), "repetitive text shrinks");
    }

    #[test]
    fn short_messages_and_tiny_windows_are_sent_plain() {
        let mut c = Compressor::new(SETTINGS, &params(true, 15), true)
            .unwrap()
            .unwrap();
        assert!(c.frame(opcode::TEXT, &[b"fifteen bytes.."], None).is_none());
        assert!(
            c.frame(opcode::TEXT, &[b"sixteen bytes..."], None)
                .is_some()
        );
        assert!(
            Compressor::new(SETTINGS, &params(true, 8), true)
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn context_takeover_refers_back_and_shared_frames_do_not() {
        let msg = b"a message that repeats itself, a message that repeats itself";
        let mut keep = Compressor::new(SETTINGS, &params(false, 15), true)
            .unwrap()
            .unwrap();
        let first = keep.frame(opcode::TEXT, &[msg], None).unwrap();
        let second = keep.frame(opcode::TEXT, &[msg], None).unwrap();
        assert!(second.len() < first.len(), "the second refers to the first");
        let mut i = Inflater::new(15, false, 1 << 20).unwrap();
        assert_eq!(read(&first, &mut i).2, msg);
        assert_eq!(read(&second, &mut i).2, msg);

        let a = shared_frame(1, 15, opcode::TEXT, &[msg], None).unwrap();
        let b = shared_frame(1, 15, opcode::TEXT, &[msg], None).unwrap();
        assert_eq!(a, b, "no context carries over");
        let shared = |level, window_bits| Shared {
            settings: SendSettings { level, ..SETTINGS },
            window_bits,
        };
        assert!(!keep.takes_shared(&shared(1, 15)));
        let fresh = Compressor::new(SETTINGS, &params(true, 12), true)
            .unwrap()
            .unwrap();
        assert!(fresh.takes_shared(&shared(1, 12)) && fresh.takes_shared(&shared(1, 9)));
        assert!(!fresh.takes_shared(&shared(1, 15)), "its window is smaller");
        assert!(!fresh.takes_shared(&shared(6, 12)), "another level");
        assert!(shared(1, 15).frame(opcode::TEXT, b"short").is_none());
        assert_eq!(shared(1, 15).frame(opcode::TEXT, msg), Some(a));
    }

    #[test]
    fn masked_frames_unmask_to_the_compressed_payload() {
        let msg = vec![b'x'; 1000];
        let plain = shared_frame(1, 15, opcode::BINARY, &[&msg], None).unwrap();
        let masked = shared_frame(1, 15, opcode::BINARY, &[&msg], Some([1, 2, 3, 4])).unwrap();
        let (p, _) = RawFrame::parse(&plain).unwrap();
        let (m, _) = RawFrame::parse(&masked).unwrap();
        assert_eq!(m.mask, Some([1, 2, 3, 4]));
        assert_eq!(p.payload, m.payload, "parse unmasks");
        assert_eq!(m.rsv, RSV1);
    }
}
