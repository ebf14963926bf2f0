//! One actor per WebSocket connection.
//!
//! The actor runs in an `actix-web-actors` [`WebsocketContext`], which writes
//! our frames and drives the actor's lifecycle. Incoming bytes, however, do not
//! go through that context's own decoder: they reach the actor through
//! [`Frames`], which runs our strict [`Decoder`] (see `protocol` for why). The
//! context is handed a stream that never yields, so its decoder stays idle.
//!
//! Per message the session does the least it can: reply, count in its own
//! fields. The registry hears from it on start and stop; the shared metrics on
//! each heartbeat tick.

use std::cell::Cell;
use std::net::SocketAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use actix::prelude::*;
use actix_web::error::PayloadError;
use actix_web_actors::ws::{self, CloseReason, WebsocketContext};
use bytes::Bytes;
use bytestring::ByteString;
use futures_util::Stream;

use crate::config::SessionConfig;
use crate::metrics::{CloseCause, Metrics, Traffic};
use crate::protocol::{self, CloseFrame, Decoder, Event, Role, Violation, code};
use crate::registry::{Connect, Disconnect, GoingAway, Registry, Slot};

/// Session ids are unique for the life of the process, so log lines about one
/// connection can be told apart from another's.
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// Why a session ended, kept for its last log line and the metrics.
#[derive(Debug, Clone)]
struct Ending {
    cause: CloseCause,
    code: u16,
    reason: String,
}

/// The per-connection actor.
pub struct Session {
    id: u64,
    peer: Option<SocketAddr>,
    started: Instant,
    config: Arc<SessionConfig>,
    registry: Addr<Registry>,
    metrics: Arc<Metrics>,
    _slot: Slot,
    /// Set by [`Frames`] whenever bytes arrive, cleared by the heartbeat
    /// tick: a sign of life even in the middle of a long message, and cheaper
    /// than reading the clock per chunk.
    heard: Rc<Cell<bool>>,
    last_heard: Instant,
    /// We have sent a close frame and wait for the peer's.
    closing: bool,
    ending: Option<Ending>,
    traffic: Traffic,
}

impl Session {
    /// Starts a session on `payload` (the upgraded connection's bytes) and
    /// returns the response body stream that carries its frames.
    pub fn start<S>(
        payload: S,
        peer: Option<SocketAddr>,
        config: Arc<SessionConfig>,
        registry: Addr<Registry>,
        metrics: Arc<Metrics>,
        slot: Slot,
    ) -> impl Stream<Item = Result<Bytes, actix_web::Error>>
    where
        S: Stream<Item = Result<Bytes, PayloadError>> + Unpin + 'static,
    {
        let decoder = Decoder::new(Role::Server, config.max_message_size);
        WebsocketContext::with_factory(futures_util::stream::pending(), move |ctx| {
            let heard = Rc::new(Cell::new(false));
            ctx.add_stream(Frames::new(payload, decoder, heard.clone()));
            let now = Instant::now();
            Session {
                id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
                peer,
                started: now,
                config,
                registry,
                metrics,
                _slot: slot,
                heard,
                last_heard: now,
                closing: false,
                ending: None,
                traffic: Traffic::default(),
            }
        })
    }

    fn peer(&self) -> String {
        describe_peer(self.peer)
    }

    /// Sends a close frame and stops: for faults, where nothing the peer says
    /// afterwards could matter (RFC 6455 section 7.1.7, "fail the connection").
    fn fail(
        &mut self,
        ctx: &mut WebsocketContext<Self>,
        code: u16,
        reason: &str,
        cause: CloseCause,
    ) {
        if !self.closing {
            ctx.close(Some(close_reason(code, reason)));
        }
        self.end(cause, code, reason);
        ctx.stop();
    }

    /// Sends a close frame and waits (up to `close_timeout`) for the peer's.
    fn begin_close(
        &mut self,
        ctx: &mut WebsocketContext<Self>,
        code: u16,
        reason: &str,
        cause: CloseCause,
    ) {
        if self.closing {
            return;
        }
        ctx.close(Some(close_reason(code, reason)));
        self.closing = true;
        self.end(cause, code, reason);
        ctx.run_later(self.config.close_timeout, |act, ctx| {
            log::debug!(
                "session {}: no close reply from {}, dropping",
                act.id,
                act.peer()
            );
            ctx.stop();
        });
    }

    fn end(&mut self, cause: CloseCause, code: u16, reason: &str) {
        if self.ending.is_none() {
            self.ending = Some(Ending {
                cause,
                code,
                reason: reason.to_owned(),
            });
        }
    }

    fn tick(&mut self, ctx: &mut WebsocketContext<Self>) {
        self.traffic.flush(&self.metrics);
        let now = Instant::now();
        if self.heard.replace(false) {
            self.last_heard = now;
        }
        if self.closing {
            return;
        }
        let silent = now.duration_since(self.last_heard);
        if silent >= self.config.client_timeout {
            log::info!(
                "session {} from {}: heartbeat timeout, nothing heard for {}",
                self.id,
                self.peer(),
                humantime::format_duration(round_ms(silent))
            );
            self.fail(
                ctx,
                code::INTERNAL_ERROR,
                "heartbeat timeout",
                CloseCause::HeartbeatTimeout,
            );
            return;
        }
        ctx.ping(b"");
    }

    fn on_event(&mut self, event: Event, ctx: &mut WebsocketContext<Self>) {
        match event {
            Event::Text(bytes) => {
                self.traffic.messages_received += 1;
                self.traffic.bytes_received += bytes.len() as u64;
                if self.closing {
                    return;
                }
                let Ok(text) = ByteString::try_from(bytes) else {
                    // The decoder validated it already; this cannot happen, but a
                    // peer must never be able to make us panic.
                    self.fail(
                        ctx,
                        code::INVALID_PAYLOAD,
                        "text is not valid UTF-8",
                        CloseCause::InvalidPayload,
                    );
                    return;
                };
                let reply = if self.config.reply_prefix.is_empty() {
                    text
                } else {
                    ByteString::from(protocol::reply_text(&self.config.reply_prefix, &text))
                };
                self.traffic.messages_sent += 1;
                self.traffic.bytes_sent += reply.len() as u64;
                ctx.write_raw(ws::Message::Text(reply));
            }
            Event::Binary(bytes) => {
                self.traffic.messages_received += 1;
                self.traffic.bytes_received += bytes.len() as u64;
                if self.closing {
                    return;
                }
                self.traffic.messages_sent += 1;
                self.traffic.bytes_sent += bytes.len() as u64;
                ctx.write_raw(ws::Message::Binary(bytes));
            }
            Event::Ping(payload) => {
                if !self.closing {
                    ctx.write_raw(ws::Message::Pong(payload));
                }
            }
            Event::Pong(_) => {}
            Event::Close(frame) => self.on_close(frame, ctx),
        }
    }

    fn on_close(&mut self, frame: Option<CloseFrame>, ctx: &mut WebsocketContext<Self>) {
        if self.closing {
            // The peer answered our close: the handshake is complete, and the
            // server closes the TCP connection first (RFC 6455 section 7.1.1).
            ctx.stop();
            return;
        }
        let (code, reason) = frame.map_or((code::NO_STATUS, String::new()), |f| (f.code, f.reason));
        let cause = match code {
            code::NORMAL | code::GOING_AWAY | code::NO_STATUS => CloseCause::Normal,
            _ => CloseCause::PeerError,
        };
        // Echo the peer's code (section 5.5.1); a close without one is answered
        // with a close without one.
        ctx.close((code != code::NO_STATUS).then(|| close_reason(code, "")));
        self.ending = Some(Ending {
            cause,
            code,
            reason,
        });
        ctx.stop();
    }
}

/// A peer address for log lines (actix may not know it, e.g. behind a test
/// transport).
pub(crate) fn describe_peer(peer: Option<SocketAddr>) -> String {
    peer.map_or_else(|| "unknown peer".to_owned(), |p| p.to_string())
}

fn close_reason(code: u16, reason: &str) -> CloseReason {
    CloseReason {
        code: ws::CloseCode::from(code),
        description: (!reason.is_empty()).then(|| reason.to_owned()),
    }
}

fn round_ms(d: Duration) -> Duration {
    Duration::from_millis(d.as_millis() as u64)
}

impl Actor for Session {
    type Context = WebsocketContext<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        log::info!("session {} connected from {}", self.id, self.peer());
        self.registry.do_send(Connect {
            id: self.id,
            peer: self.peer,
            addr: ctx.address().recipient(),
        });
        ctx.run_interval(self.config.heartbeat_interval, Self::tick);
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        self.traffic.flush(&self.metrics);
        let ending = self.ending.take().unwrap_or(Ending {
            cause: CloseCause::Abnormal,
            code: code::ABNORMAL,
            reason: "connection dropped without a close frame".into(),
        });
        log::info!(
            "session {} from {} disconnected: {} (code {} {}{}) after {}",
            self.id,
            self.peer(),
            ending.cause.as_str(),
            ending.code,
            protocol::close_code_name(ending.code),
            if ending.reason.is_empty() {
                String::new()
            } else {
                format!(", reason {:?}", ending.reason)
            },
            humantime::format_duration(round_ms(self.started.elapsed()))
        );
        self.registry.do_send(Disconnect {
            id: self.id,
            cause: ending.cause,
        });
    }
}

/// What the byte stream can yield besides events.
#[derive(Debug)]
enum Fault {
    Protocol(Violation),
    Io(PayloadError),
}

impl StreamHandler<Result<Event, Fault>> for Session {
    fn handle(&mut self, item: Result<Event, Fault>, ctx: &mut Self::Context) {
        match item {
            Ok(event) => self.on_event(event, ctx),
            Err(Fault::Protocol(v)) => {
                log::debug!("session {}: {v}", self.id);
                let cause = match v.code {
                    code::INVALID_PAYLOAD => CloseCause::InvalidPayload,
                    code::TOO_BIG => CloseCause::TooBig,
                    _ => CloseCause::ProtocolError,
                };
                self.fail(ctx, v.code, v.reason, cause);
            }
            Err(Fault::Io(e)) => {
                log::debug!("session {}: read error: {e}", self.id);
                self.end(CloseCause::Abnormal, code::ABNORMAL, "read error");
                ctx.stop();
            }
        }
    }

    fn finished(&mut self, ctx: &mut Self::Context) {
        // The peer's TCP side ended. Whatever state we were in, there is no one
        // left to talk to.
        ctx.stop();
    }
}

/// Required by `WebsocketContext`'s constructors. Its input stream never
/// yields (our [`Frames`] carries the bytes), but should that change, frames
/// from actix's decoder are still handled with the same rules.
impl StreamHandler<Result<ws::Message, ws::ProtocolError>> for Session {
    fn handle(&mut self, item: Result<ws::Message, ws::ProtocolError>, ctx: &mut Self::Context) {
        let event = match item {
            Ok(ws::Message::Text(text)) => Event::Text(text.into_bytes()),
            Ok(ws::Message::Binary(bytes)) => Event::Binary(bytes),
            Ok(ws::Message::Ping(bytes)) => Event::Ping(bytes),
            Ok(ws::Message::Pong(bytes)) => Event::Pong(bytes),
            Ok(ws::Message::Close(reason)) => Event::Close(reason.map(|r| CloseFrame {
                code: r.code.into(),
                reason: r.description.unwrap_or_default(),
            })),
            Ok(ws::Message::Nop) => return,
            Ok(ws::Message::Continuation(_)) | Err(_) => {
                self.fail(
                    ctx,
                    code::PROTOCOL_ERROR,
                    "protocol error",
                    CloseCause::ProtocolError,
                );
                return;
            }
        };
        self.on_event(event, ctx);
    }
}

impl Handler<GoingAway> for Session {
    type Result = ();

    fn handle(&mut self, _: GoingAway, ctx: &mut Self::Context) {
        self.begin_close(
            ctx,
            code::GOING_AWAY,
            "server shutting down",
            CloseCause::Shutdown,
        );
    }
}

/// The upgraded connection's bytes, decoded into [`Event`]s.
///
/// No backpressure of our own is needed here: the actor only runs when
/// actix-http polls the response body, which it stops doing while the socket
/// will not take more, so a peer that does not read stops being read.
struct Frames<S> {
    input: S,
    chunk: Bytes,
    decoder: Decoder,
    heard: Rc<Cell<bool>>,
    done: bool,
}

impl<S> Frames<S> {
    fn new(input: S, decoder: Decoder, heard: Rc<Cell<bool>>) -> Self {
        Frames {
            input,
            chunk: Bytes::new(),
            decoder,
            heard,
            done: false,
        }
    }
}

impl<S> Stream for Frames<S>
where
    S: Stream<Item = Result<Bytes, PayloadError>> + Unpin,
{
    type Item = Result<Event, Fault>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(None);
        }
        loop {
            match this.decoder.decode(&mut this.chunk) {
                Ok(Some(event)) => return Poll::Ready(Some(Ok(event))),
                Ok(None) => {}
                Err(v) => {
                    this.done = true;
                    return Poll::Ready(Some(Err(Fault::Protocol(v))));
                }
            }
            match Pin::new(&mut this.input).poll_next(cx) {
                Poll::Ready(Some(Ok(chunk))) => {
                    this.heard.set(true);
                    this.chunk = chunk;
                }
                Poll::Ready(Some(Err(e))) => {
                    this.done = true;
                    return Poll::Ready(Some(Err(Fault::Io(e))));
                }
                Poll::Ready(None) => {
                    this.done = true;
                    return Poll::Ready(None);
                }
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}
