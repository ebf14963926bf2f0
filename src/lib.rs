//! wsd: a WebSocket server (`wsd`) and client (`wsc`) built on actix.
//!
//! # Layout
//!
//! - [`config`]: the server's TOML config: serde types, loading, validation.
//! - [`protocol`]: RFC 6455 rules with no I/O: close codes, the strict
//!   incremental frame decoder, the reply format. Shared by server and client.
//! - [`session`]: the actor that owns one WebSocket connection.
//! - [`registry`]: the supervising actor that knows every session, and the
//!   connection limit.
//! - [`metrics`]: the counters behind `/metrics`.
//! - [`server`]: the actix-web `app` factory (used by `wsd` and the tests) and
//!   `run`, which adds listening, signals and graceful shutdown.
//! - [`client`]: `wsc`'s library side: options and handshake (awc), the
//!   connection loop (kept apart from terminal I/O), and the console.
//! - [`tls`]: rustls configs for wss:// (server and client) from PEM files,
//!   and the local CA behind `wsd gen-cert`.
//! - [`exit`]: the process exit codes both binaries use.
//! - [`bench`]: `wsc bench`, the load generator (its own raw WebSocket client
//!   on tokio, sharing `protocol`'s decoder and encoder).
//!
//! Dependencies run one way: binaries -> `server` -> `session`/`registry` ->
//! `protocol`.

pub mod bench;
pub mod client;
pub mod config;
pub mod exit;
pub mod metrics;
pub mod protocol;
pub mod registry;
pub mod server;
pub mod session;
pub mod tls;
pub mod units;
