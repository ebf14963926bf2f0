//! The server side: everything between a listening socket and a session.
//!
//! - `http`: the actix-web [`app`] (upgrade handler, `/healthz`, `/metrics`)
//!   and [`AppState`], what its handlers share.
//! - `api`: the channel endpoints: WebSocket subscriptions and the HTTP API.
//! - `pusher_api`: the Pusher endpoints: `/app/KEY` connections and the
//!   Pusher HTTP API under `/apps/ID/` (the session mode is
//!   `session/pusher.rs`; the protocol itself is [`crate::pusher`]).
//! - `pusher_webhooks`: each Pusher app's webhook sender (batches, signs,
//!   retries).
//! - `session`: the actor that owns one WebSocket connection, and
//!   [`CloseCause`].
//! - `outbox`: a session's bounded send queue and the response body that
//!   drains it (the session's output path).
//! - `registry`: the supervising actor that knows every session and drives
//!   graceful shutdown.
//! - `admission`: the `max_connections` gate.
//! - `metrics`: the counters behind `/metrics` (and the console's
//!   dashboard).
//!
//! This file binds the listeners ([`Server`]) and runs them until a signal
//! ([`run`]): stop accepting, close every session with 1001, wait, exit.

mod admission;
mod api;
mod http;
mod metrics;
mod outbox;
mod pusher_api;
mod pusher_webhooks;
mod registry;
mod session;

use std::any::Any;
use std::net::SocketAddr;
use std::time::Duration;

use actix::MailboxError;
use actix_web::HttpServer;
use actix_web::dev::{Extensions, ServerHandle};
use actix_web::rt::net::TcpStream;

pub(crate) use api::{check_key, error_response};
pub(crate) use http::upgrade_session;
pub use http::{AppState, app};
pub use session::CloseCause;
pub(crate) use session::{Feed, Mode, describe_peer};

use crate::config::{Config, TlsConfig};
use crate::tls::{self, TlsError};
use outbox::ConnSocket;

/// Why the server could not run.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    /// A TLS file named by the config cannot be used; `key` is the config key
    /// that names it.
    #[error("key `{key}`: {source}")]
    Tls { key: &'static str, source: TlsError },
    /// `[auth]`'s key or `[engine]`'s URL cannot be used.
    #[error(transparent)]
    Start(#[from] http::StartError),
    #[error("the session registry stopped during shutdown: {0}")]
    Registry(MailboxError),
    #[error("server error: {0}")]
    Io(#[from] std::io::Error),
}

impl ServeError {
    /// Bad TLS files are configuration errors (exit 2), like a bad config
    /// file; anything else is a failure to run (exit 1).
    pub fn exit_code(&self) -> i32 {
        if self.is_config() {
            crate::exit::USAGE
        } else {
            crate::exit::FAILURE
        }
    }

    /// Whether the message should be prefixed with the config file's name.
    pub fn is_config(&self) -> bool {
        matches!(self, ServeError::Tls { .. } | ServeError::Start(_))
    }
}

/// How a run ended without error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    /// A signal, then a graceful drain (complete or timed out).
    Drained,
    /// A second signal during the drain: the operator wants out now.
    Interrupted,
}

/// A server bound to its addresses, with its state; [`Server::run`] serves.
pub struct Server {
    state: AppState,
    addrs: Vec<SocketAddr>,
    server: actix_web::dev::Server,
}

impl Server {
    /// Reads the TLS files, binds `server.bind` and starts the workers and the
    /// registry. Call from inside an actix system.
    pub fn bind(config: Config) -> Result<Server, ServeError> {
        // Read certificates before anything listens: a bad file is reported as
        // such, not as a failure halfway through starting.
        let tls = config.tls.as_ref().map(load_tls).transpose()?;
        check_file_limit(config.server.max_connections);
        let state = AppState::new(config.clone())?;
        let factory_state = state.clone();
        // The kernel's backstop for output that stalls after the session has
        // gone (its close frame still queued): later than the session's own
        // check, so that one, which can still say why, comes first.
        let user_timeout = config.session.write_timeout + config.session.heartbeat_interval * 2;
        let mut server = HttpServer::new(move || app(factory_state.clone()))
            .on_connect(move |conn, ext| on_connect(conn, ext, user_timeout))
            .client_request_timeout(config.server.handshake_timeout)
            // Without this, actix-http lingers up to a second after a session
            // ends before closing the TCP connection, waiting for the client to
            // close first. RFC 6455 section 7.1.1 has the server close first.
            .client_disconnect_timeout(Duration::ZERO)
            .disable_signals()
            // Echo replies are small writes; Nagle would hold them back for the
            // peer's delayed ACK.
            .tcp_nodelay(true)
            // actix's own per-worker cap would silently stop accepting before
            // our limit could answer 503; keep it out of the way.
            .max_connections(
                config
                    .server
                    .max_connections
                    .saturating_add(1024)
                    .max(25_000),
            )
            .backlog(4096)
            .shutdown_timeout(1);
        if config.server.workers > 0 {
            server = server.workers(config.server.workers);
        }
        let bound = match tls {
            Some(tls) => server.bind_rustls_0_23(&config.server.bind, tls),
            None => server.bind(&config.server.bind),
        };
        let server = bound.map_err(|source| ServeError::Bind {
            addr: config.server.bind.clone(),
            source,
        })?;
        let addrs = server.addrs();
        let scheme = if config.tls.is_some() { "wss" } else { "ws" };
        for addr in &addrs {
            log::info!("wsd listening on {scheme}://{addr}{}", config.server.path);
        }
        if config.console.enabled {
            let web = if config.tls.is_some() {
                "https"
            } else {
                "http"
            };
            if let Some(addr) = addrs.first() {
                log::info!(
                    "browser console at {web}://{addr}{}{}",
                    crate::console::PATH,
                    state.console().describe()
                );
            }
        }
        Ok(Server {
            state,
            addrs,
            server: server.run(),
        })
    }

    /// The bound addresses (with the real port when `server.bind` said 0).
    pub fn addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    pub fn handle(&self) -> ServerHandle {
        self.server.handle()
    }

    /// Serves until stopped through a [`ServerHandle`].
    pub async fn run(self) -> std::io::Result<()> {
        self.server.await
    }
}

/// Reads the `[tls]` files, naming the key of any file that is unusable.
fn load_tls(config: &TlsConfig) -> Result<rustls::ServerConfig, ServeError> {
    tls::server_config(config).map_err(|source| ServeError::Tls {
        key: source.config_key(config),
        source,
    })
}

/// Runs on every accepted connection, before HTTP: bounds how long the kernel
/// keeps unsent data for a peer that does not read (`TCP_USER_TIMEOUT` also
/// applies to a zero window), and records the socket so a stalled session
/// can reset it.
fn on_connect(conn: &dyn Any, ext: &mut Extensions, user_timeout: Duration) {
    let tcp = conn.downcast_ref::<TcpStream>().or_else(|| {
        conn.downcast_ref::<actix_tls::accept::rustls_0_23::TlsStream<TcpStream>>()
            .map(|tls| tls.get_ref().0)
    });
    let Some(tcp) = tcp else {
        return;
    };
    if let Err(e) = socket2::SockRef::from(tcp).set_tcp_user_timeout(Some(user_timeout)) {
        log::debug!("cannot set TCP_USER_TIMEOUT: {e}");
    }
    ext.insert(ConnSocket::of(tcp));
}

/// Runs the server until SIGINT or SIGTERM, then shuts down gracefully:
/// stop accepting, close every session with 1001, wait up to
/// `shutdown_timeout`, exit. A second signal during the wait ends it at once.
pub async fn run(config: Config) -> Result<Stopped, ServeError> {
    // Installed before binding, so a signal that arrives while we start is
    // not lost to the default action.
    let mut signals = Signals::new()?;
    let server = Server::bind(config.clone())?;
    let state = server.state().clone();
    let handle = server.handle();
    let mut serving = actix_rt::spawn(server.run());
    let signal = tokio::select! {
        ended = &mut serving => {
            // The server stopped by itself: an I/O failure.
            ended.map_err(|e| ServeError::Io(std::io::Error::other(e)))??;
            return Ok(Stopped::Drained);
        }
        signal = signals.next() => signal,
    };
    log::info!("{signal} received: shutting down (send it again to exit now)");
    handle.pause().await;
    let drained = tokio::select! {
        left = state.shutdown(config.server.shutdown_timeout) => Some(left),
        signal = signals.next() => {
            log::warn!("{signal} received again: exiting without waiting for sessions");
            None
        }
    };
    let outcome = match drained {
        Some(Ok(0)) => Ok(Stopped::Drained),
        Some(Ok(left)) => {
            log::warn!("{left} session(s) did not close in time; dropping them");
            Ok(Stopped::Drained)
        }
        Some(Err(e)) => Err(ServeError::Registry(e)),
        None => Ok(Stopped::Interrupted),
    };
    handle.stop(matches!(outcome, Ok(Stopped::Drained))).await;
    let _ = serving.await;
    log::info!("wsd stopped");
    outcome
}

/// SIGINT and SIGTERM, installed once so that a second one is seen too.
struct Signals {
    int: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> std::io::Result<Signals> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Signals {
            int: signal(SignalKind::interrupt())?,
            term: signal(SignalKind::terminate())?,
        })
    }

    async fn next(&mut self) -> &'static str {
        tokio::select! {
            _ = self.int.recv() => "SIGINT",
            _ = self.term.recv() => "SIGTERM",
        }
    }
}

/// File descriptors kept free for listeners, logs and the like.
const RESERVED_FDS: u64 = 64;

/// Raises the soft open-file limit to the hard limit (every connection is a
/// file descriptor) and says how many connections that allows.
fn check_file_limit(max_connections: usize) {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => {
            let room = limit.saturating_sub(RESERVED_FDS);
            log::info!("open-file limit {limit}: room for about {room} connections");
            if max_connections as u64 > room {
                log::warn!(
                    "max_connections ({max_connections}) exceeds what the open-file limit \
                     allows (about {room}); accepts will fail beyond that"
                );
            }
        }
        Err(e) => log::warn!("cannot read or raise the open-file limit: {e}"),
    }
}
