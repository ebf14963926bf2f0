//! permessage-deflate (RFC 7692): the handshake, the per-message codec and
//! compressed frames, pure library code shared by the server and `wsc`.
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
//! - [`frames`] builds compressed frames (RSV1 set) for a connection
//!   ([`Compressor`]) and, without context takeover, once for many
//!   ([`shared_frame`]), on compressors each thread keeps.
//!
//! Inflating received frames is the [`Decoder`](super::Decoder)'s, given
//! [`InflateParams`](super::InflateParams); which messages to compress is
//! the session's and the client's.

pub mod codec;
pub mod frames;
pub mod negotiate;

pub use codec::{ConfigError, DeflateError, Deflater, InflateError, Inflater, TAIL};
pub use frames::{Compressor, SendSettings, Shared, shared_frame};
pub use negotiate::{
    Agreement, ClientOffer, DeflateParamSet, DeflateParams, Extension, ParamError, ResponseError,
    ServerSettings, SyntaxError, parse_extensions,
};
