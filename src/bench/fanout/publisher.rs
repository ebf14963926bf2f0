//! The one publisher of a fan-out run, over either transport: a WebSocket
//! connection to the subscribers' URL that sends text, or HTTP POSTs (plain,
//! or Pusher HTTP API triggers signed for each publication).

use std::time::Duration;

use crate::protocol::{Event, opcode};

use super::super::conn::{Conn, ConnError};
use super::http::HttpPublisher;
use super::pusher::App;

/// Bytes the WebSocket publisher may have queued and unwritten before it
/// skips publications: a server that stops reading it must not grow our
/// memory, and the skipped slots show as a publication rate below --rate.
const MAX_BACKLOG: usize = 1 << 20;

pub(crate) enum Publisher {
    /// Servers subscribe this connection too (it opened the channel URL), so
    /// it reads and discards its own publications as they come back.
    Ws(Conn),
    Http(HttpPublisher),
    Pusher(PusherPublisher),
}

/// Triggers our event on the app's channel through the Pusher HTTP API.
pub(crate) struct PusherPublisher {
    http: HttpPublisher,
    app: App,
    /// `[PREFIX]/apps/ID/events`.
    path: String,
    /// The request body and its resource, kept between publications.
    body: Vec<u8>,
    resource: String,
}

impl PusherPublisher {
    /// `prefix` is the path the HTTP API lives under ("" at the root).
    pub(crate) fn new(http: HttpPublisher, app: App, prefix: &str) -> PusherPublisher {
        PusherPublisher {
            path: app.events_path(prefix),
            http,
            app,
            body: Vec::new(),
            resource: String::new(),
        }
    }

    async fn trigger(&mut self, data: &[u8]) -> Result<(), ConnError> {
        self.app.event_body(&mut self.body, data);
        let query = self
            .app
            .signed_query(&self.path, &self.body, super::pusher::now());
        self.resource.clear();
        self.resource.push_str(&self.path);
        self.resource.push('?');
        self.resource.push_str(&query);
        self.http
            .post_to(Some(&self.resource), "application/json", &self.body)
            .await
    }
}

/// What became of one publication handed to [`Publisher::publish`].
pub(crate) enum Outcome {
    Published,
    /// The server answered the POST with this non-2xx status line; the
    /// publication did not happen, and the run goes on.
    Refused(String),
}

impl Outcome {
    fn of(posted: Result<(), ConnError>) -> Result<Outcome, ConnError> {
        match posted {
            Ok(()) => Ok(Outcome::Published),
            Err(ConnError::Refused(status)) => Ok(Outcome::Refused(status)),
            Err(e) => Err(e),
        }
    }
}

impl Publisher {
    /// Publishes `message`: queued for the next [`Publisher::flush`] over a
    /// WebSocket, one request and its answer over HTTP.
    pub(crate) async fn publish(&mut self, message: &[u8]) -> Result<Outcome, ConnError> {
        match self {
            Publisher::Ws(conn) => {
                conn.queue(opcode::TEXT, message);
                Ok(Outcome::Published)
            }
            Publisher::Http(http) => Outcome::of(http.post(message).await),
            Publisher::Pusher(pusher) => Outcome::of(pusher.trigger(message).await),
        }
    }

    /// Writes what [`Publisher::publish`] queued, as far as the socket takes
    /// it now; [`Publisher::serve`] writes the rest.
    pub(crate) fn flush(&mut self) -> Result<(), ConnError> {
        match self {
            Publisher::Ws(conn) => conn.flush(),
            Publisher::Http(_) | Publisher::Pusher(_) => Ok(()),
        }
    }

    /// True while publishing more would only queue it in our memory.
    pub(crate) fn backlogged(&self) -> bool {
        matches!(self, Publisher::Ws(conn) if conn.backlog() >= MAX_BACKLOG)
    }

    /// Keeps the connection going between publications: writes queued
    /// output, reads (and drops) what comes back, answers pings. Returns only
    /// when the connection failed. Cancel-safe.
    pub(crate) async fn serve(&mut self) -> ConnError {
        match self {
            Publisher::Ws(conn) => loop {
                loop {
                    match conn.next_event() {
                        Ok(Some(Event::Close(frame))) => return ConnError::server_close(&frame),
                        Ok(Some(_)) => {}
                        Ok(None) => break,
                        Err(e) => return e,
                    }
                }
                if let Err(e) = conn.io().await {
                    return e;
                }
            },
            // Nothing arrives unasked over HTTP.
            Publisher::Http(_) | Publisher::Pusher(_) => std::future::pending().await,
        }
    }

    /// The closing handshake of a WebSocket publisher; nothing over HTTP.
    pub(crate) async fn close(&mut self, timeout: Duration) -> Result<(), ConnError> {
        match self {
            Publisher::Ws(conn) => conn.close(timeout).await,
            Publisher::Http(_) | Publisher::Pusher(_) => Ok(()),
        }
    }
}
