//! permessage-deflate (RFC 7692): the handshake and the per-message codec,
//! pure library code that is **not yet wired into** the server or `wsc`.
//!
//! - [`negotiate`] parses `Sec-WebSocket-Extensions`, lets the server pick
//!   the first acceptable offer ([`ServerSettings::negotiate`]) and lets the
//!   client build an offer and check the answer ([`ClientOffer`]). Both end
//!   in the same [`DeflateParams`].
//! - [`codec`] turns those parameters into a [`Deflater`] and an
//!   [`Inflater`] for one connection: one whole message in, one compressed
//!   payload out, and back, with an inflate limit that fails before it
//!   allocates past it ([`InflateError::TooBig`] maps to close code 1009).
//!
//! Frames, the RSV1 bit and which messages to compress belong to the
//! session and the client, not here.

pub mod codec;
pub mod negotiate;

pub use codec::{ConfigError, DeflateError, Deflater, InflateError, Inflater, TAIL};
pub use negotiate::{
    Agreement, ClientOffer, DeflateParamSet, DeflateParams, Extension, ParamError, ResponseError,
    ServerSettings, SyntaxError, parse_extensions,
};
