//! wsd: a WebSocket server (`wsd`) and client (`wsc`) built on actix.
//!
//! # Layout
//!
//! - [`config`]: the server's TOML config: serde types, loading, validation.
//! - [`units`]: the one parser for sizes (`"64KiB"`) and durations
//!   (`"250ms"`), shared by the config and both command lines.
//! - [`protocol`]: RFC 6455 rules with no I/O: close codes, the handshake's
//!   rules, the strict incremental frame decoder, the frame encoders. Shared
//!   by server and client.
//! - [`server`]: everything of `wsd` between a socket and a session: the
//!   actix-web app, the session actor (echo and channel sessions) and its
//!   output queue, the channels' HTTP API, the registry, admission, metrics,
//!   and `run` (listening, signals, graceful shutdown).
//! - [`channels`]: publish/subscribe on this node: channel names, namespace
//!   rules, JSON-mode commands, the routing table and the per-worker hubs
//!   that queue each publication into its subscribers' send queues.
//! - [`engine`]: where offsets, epochs, history and presence live, behind a
//!   small trait; the in-memory engine is the default.
//! - [`console`]: the browser console and live dashboard at `/console`:
//!   its embedded page (HTML, CSS, JavaScript), its routes, the stats
//!   WebSocket stream and the API-key check. Mounted by `server`'s app, it
//!   reads the server's state and counters; the page is an ordinary client
//!   of the channel protocol and the HTTP API.
//! - [`pusher`]: Pusher Channels compatibility without I/O: the protocol's
//!   messages, its signatures, the app table and where each app's channels
//!   live in the engine. Its session mode and HTTP API are in `server`.
//! - [`auth`]: connection tokens (JWTs): verifying, channel patterns, signing
//!   for `wsd token`.
//! - [`tls`]: rustls configs for wss:// (server and client) from PEM files,
//!   and the local CA behind `wsd gen-cert`.
//! - [`client`]: `wsc`'s library side: options and handshake (awc, with
//!   the permessage-deflate offer), the frames on the upgraded socket
//!   (`protocol`'s decoder and encoder, compressed when agreed), the
//!   connection loop (kept apart from terminal I/O), and the console.
//! - [`bench`]: `wsc bench`, the load generator (its own raw WebSocket client
//!   on tokio, sharing `protocol`'s decoder and encoder, and `pusher`'s
//!   request signing for its Pusher mode).
//! - [`exit`]: the process exit codes both binaries use.
//!
//! Dependencies run one way: binaries -> `server` (with `console` beside it:
//! each uses the other's few entry points), `client`, `bench` ->
//! `channels`, `pusher` -> `engine`, `auth` -> `config`, `tls` -> `protocol`, `units`
//! (`engine` and `auth` use one thing of `channels`: the name type). Nothing depends on a binary, and
//! `protocol` depends on nothing of ours.

pub mod auth;
pub mod bench;
pub mod channels;
pub mod client;
pub mod config;
pub mod console;
pub mod engine;
pub mod exit;
pub mod protocol;
pub mod pusher;
pub mod server;
pub mod tls;
pub mod units;
