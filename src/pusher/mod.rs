//! Pusher Channels compatibility, the parts without I/O: the protocol's
//! messages and rules (`protocol`), its signatures (`sign`), the app
//! table from `[[pusher.app]]` with where each app's channels live in the
//! engine (`apps`), and the webhooks' events and bodies (`webhook`).
//!
//! The actix side lives with the rest of the server: the session mode in
//! `server/session/pusher.rs` (`/app/KEY`) and the HTTP API in
//! `server/pusher_api.rs` (`/apps/ID/...`), and the webhooks' sender in
//! `server/pusher_webhooks.rs`. Pusher channels are ordinary
//! engine channels, so deliveries take the same path as every other
//! channel's: one encoded frame per publication, shared by every
//! subscriber ([`crate::engine::Format::Pusher`]).

pub mod apps;
pub mod protocol;
pub mod sign;
pub mod webhook;

pub use apps::{Admitted, App, Apps};
