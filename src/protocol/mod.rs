//! RFC 6455 rules, free of actors and I/O so that every rule is unit-testable.
//!
//! The server and the client share this module: close codes and their meaning,
//! the strict incremental frame [`Decoder`], the frame encoders (unmasked
//! [`server_frame`], whose bytes many sessions can share, and masked
//! [`encode_frame`]), and the opening [`handshake`]'s rules. [`frame`] is the
//! one place that lays out frame bytes: [`Header`] for the decoder and the
//! encoders, and [`RawFrame`], which builds any frame, broken ones included,
//! for tests and reads back what a peer sent.
//! [`deflate`]: permessage-deflate (RFC 7692): the handshake, the codec and
//! compressed frames; the decoder inflates with [`InflateParams`].

mod decoder;
pub mod deflate;
mod encode;
pub mod frame;
pub mod handshake;
mod mask;

pub use decoder::{CloseFrame, Decoder, Event, InflateParams, Role, Violation};
pub use encode::{
    MAX_HEADER_LEN, SHARE_PAYLOAD_FROM, close_payload, encode_frame, server_frame, server_message,
};
pub use frame::{DEFAULT_MASK, Header, LengthForm, RawFrame, header_size};
pub use mask::apply_mask;

/// Frame opcodes (RFC 6455 section 5.2), shared by the decoder and the
/// encoder; 3-7 and 11-15 are reserved.
pub mod opcode {
    pub const CONTINUATION: u8 = 0x0;
    pub const TEXT: u8 = 0x1;
    pub const BINARY: u8 = 0x2;
    pub const CLOSE: u8 = 0x8;
    pub const PING: u8 = 0x9;
    pub const PONG: u8 = 0xA;
}

/// Close codes from RFC 6455 section 7.4.1, chosen in one place so that every
/// path that ends a connection says the same thing for the same cause.
pub mod code {
    /// The purpose of the connection has been fulfilled.
    pub const NORMAL: u16 = 1000;
    /// The server is shutting down (or the client navigates away).
    pub const GOING_AWAY: u16 = 1001;
    /// The peer broke a framing rule.
    pub const PROTOCOL_ERROR: u16 = 1002;
    /// A data type the endpoint cannot accept.
    pub const UNSUPPORTED: u16 = 1003;
    /// Never sent on the wire: "the close frame carried no code".
    pub const NO_STATUS: u16 = 1005;
    /// Never sent on the wire: "the connection dropped without a close frame".
    pub const ABNORMAL: u16 = 1006;
    /// Text that is not UTF-8, or a close reason that is not.
    pub const INVALID_PAYLOAD: u16 = 1007;
    /// A message larger than the configured limit.
    pub const TOO_BIG: u16 = 1009;
    /// A policy was broken; we send it to a slow consumer.
    pub const POLICY: u16 = 1008;
    /// Something went wrong on our side (also used for a peer that stops answering).
    pub const INTERNAL_ERROR: u16 = 1011;
    /// The server restarts; reconnect (we also send it when a subscriber
    /// missed publications it cannot be told about otherwise).
    pub const SERVICE_RESTART: u16 = 1012;
    /// Overloaded or a dependency is down; try again later.
    pub const TRY_AGAIN_LATER: u16 = 1013;
}

/// Whether `code` may appear in a close frame on the wire (RFC 6455 section 7.4).
///
/// 1004-1006 and 1015 are reserved or local-only, 1016-2999 are held for future
/// RFCs, 3000-4999 belong to libraries and applications.
pub fn is_valid_close_code(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

/// A short human name for a close code, for logs and the client's output.
pub fn close_code_name(code: u16) -> &'static str {
    match code {
        1000 => "normal",
        1001 => "going away",
        1002 => "protocol error",
        1003 => "unsupported data",
        1005 => "no status",
        1006 => "abnormal closure",
        1007 => "invalid payload",
        1008 => "policy violation",
        1009 => "message too big",
        1010 => "mandatory extension",
        1011 => "internal error",
        1012 => "service restart",
        1013 => "try again later",
        1014 => "bad gateway",
        3000..=3999 => "registered",
        4000..=4999 => "private",
        _ => "unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_codes_follow_section_7_4() {
        for valid in [
            1000, 1001, 1002, 1003, 1007, 1010, 1011, 1014, 3000, 3999, 4000, 4999,
        ] {
            assert!(is_valid_close_code(valid), "{valid} should be valid");
        }
        for invalid in [
            0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535,
        ] {
            assert!(!is_valid_close_code(invalid), "{invalid} should be invalid");
        }
    }
}
