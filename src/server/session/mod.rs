//! One actor per WebSocket connection, and [`CloseCause`], why one ended.
//! Its [`Mode`] says what it does with messages: echo them, channel mode
//! (`pubsub`), the Pusher protocol (`pusher`), or a feed that only sends
//! (`feed`: the console's stats).
//!
//! The actor runs in a plain actix `Context` of its own. Incoming bytes reach
//! it through [`Frames`], which runs our strict [`Decoder`]; outgoing frames
//! are encoded here and queued in its [`Outbox`], which the HTTP response body
//! drains (see `outbox` for why the actor does not live inside the body). So
//! its timers and mailbox are served whether or not the peer reads.
//!
//! Per message the session does the least it can: encode the reply once into
//! one buffer, queue it, count in its own fields. The registry hears from it
//! on start and stop; the shared metrics on each heartbeat tick.
//!
//! Write progress is sampled on the heartbeat tick, not per frame: output
//! that has not moved since the previous tick while some waits (in our queue,
//! or unacknowledged in the kernel's) is *stalled*. Stalled for `write_timeout` makes a slow consumer; a session
//! that must close while stalled resets the connection, since its close frame
//! could never be written.

mod feed;
mod pubsub;
mod pusher;

pub(crate) use feed::Feed;
pub(crate) use pubsub::PubSubSetup;
pub(crate) use pusher::PusherSetup;

use std::borrow::Cow;
use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context as TaskContext, Poll};
use std::time::{Duration, Instant};

use actix::prelude::*;
use actix_web::error::PayloadError;
use bytes::Bytes;
use futures_util::Stream;

use super::metrics::{Metrics, Traffic};
use super::outbox::{Body, ConnSocket, Outbox, Progress, TransportClosed};
use super::registry::{Connect, Disconnect, GoingAway, Registry};
use crate::config::SessionConfig;
use crate::engine::{Frame, Kind, text_frame};
use crate::protocol::deflate::{Compressor, DeflateParams, SendSettings, Shared};
use crate::protocol::{
    self, CloseFrame, Decoder, Event, InflateParams, Role, Violation, code, opcode,
};
use crate::server::admission::Slot;
use pubsub::{PubSub, SessionSink};
use pusher::PusherState;

/// Session ids are unique for the life of the process, so log lines about one
/// connection can be told apart from another's.
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// Why a session ended, as a metrics label and a log word.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
pub enum CloseCause {
    /// The peer closed with 1000, 1001 or no code.
    Normal,
    /// The peer closed with any other code.
    PeerError,
    /// We failed the connection: framing fault (1002).
    ProtocolError,
    /// We failed the connection: invalid UTF-8 (1007).
    InvalidPayload,
    /// We failed the connection: message over the limit (1009).
    TooBig,
    /// The peer went silent past `client_timeout`.
    HeartbeatTimeout,
    /// The peer did not read: its send queue overflowed, or the socket took
    /// nothing for `write_timeout` (1008).
    SlowConsumer,
    /// The server is shutting down.
    Shutdown,
    /// The client's token expired (4001).
    TokenExpired,
    /// The client did what its channel rules do not allow (1008).
    Refused,
    /// The channel engine could not be used (1013).
    Unavailable,
    /// The engine lost publications a plain-mode subscriber cannot be told
    /// about (1012).
    Gap,
    /// The TCP connection ended without a closing handshake.
    Abnormal,
}

impl CloseCause {
    pub fn as_str(self) -> &'static str {
        match self {
            CloseCause::Normal => "normal",
            CloseCause::PeerError => "peer_error",
            CloseCause::ProtocolError => "protocol_error",
            CloseCause::InvalidPayload => "invalid_payload",
            CloseCause::TooBig => "message_too_big",
            CloseCause::HeartbeatTimeout => "heartbeat_timeout",
            CloseCause::SlowConsumer => "slow_consumer",
            CloseCause::Shutdown => "shutdown",
            CloseCause::TokenExpired => "token_expired",
            CloseCause::Refused => "refused",
            CloseCause::Unavailable => "unavailable",
            CloseCause::Gap => "gap",
            CloseCause::Abnormal => "abnormal",
        }
    }
}

/// Why a session ended, kept for its last log line and the metrics.
#[derive(Debug, Clone)]
struct Ending {
    cause: CloseCause,
    code: u16,
    /// Ours, or the peer's when the peer closed.
    reason: Cow<'static, str>,
}

/// What a new session is given by the upgrade handler.
pub(crate) struct Setup {
    pub peer: Option<SocketAddr>,
    pub socket: Option<ConnSocket>,
    pub config: Arc<SessionConfig>,
    pub registry: Addr<Registry>,
    pub metrics: Arc<Metrics>,
    pub slot: Slot,
    pub mode: Mode,
    /// permessage-deflate, when the handshake agreed to it.
    pub deflate: Option<DeflateParams>,
}

/// What a session does with messages.
pub(crate) enum Mode {
    /// Answers each one (the echo server).
    Echo,
    /// Channel mode: publishes them, and delivers its subscriptions.
    PubSub(PubSubSetup),
    /// Ignores them, and sends what its feed makes.
    Feed(Feed),
    /// The Pusher Channels protocol (`/app/KEY`).
    Pusher(PusherSetup),
}

/// The per-connection actor.
pub(crate) struct Session {
    id: u64,
    peer: Option<SocketAddr>,
    started: Instant,
    config: Arc<SessionConfig>,
    registry: Addr<Registry>,
    metrics: Arc<Metrics>,
    _slot: Slot,
    outbox: Outbox,
    /// Set by [`Frames`] whenever bytes arrive, cleared by the heartbeat
    /// tick: a sign of life even in the middle of a long message, and cheaper
    /// than reading the clock per chunk.
    heard: Rc<Cell<bool>>,
    last_heard: Instant,
    /// The output's progress counters at the last tick, and since when they
    /// have not moved while output waited.
    seen: u64,
    stalled_since: Option<Instant>,
    /// We have sent a close frame and wait for the peer's.
    closing: bool,
    ending: Option<Ending>,
    traffic: Traffic,
    pubsub: Option<PubSub>,
    pusher: Option<PusherState>,
    /// Compresses what this session sends, when permessage-deflate was
    /// agreed; shared with the channel hub's [`pubsub::SessionSink`], so that
    /// with context takeover every frame goes through it in queue order.
    compressor: Option<Rc<RefCell<Compressor>>>,
    feed: Option<Feed>,
}

impl Session {
    /// Starts a session on `payload` (the upgraded connection's bytes) and
    /// returns the response body that carries its frames.
    pub(crate) fn start<S>(payload: S, setup: Setup) -> Body
    where
        S: Stream<Item = Result<Bytes, PayloadError>> + Unpin + 'static,
    {
        let mut body = None;
        Session::create(|ctx| {
            let (outbox, b) = Outbox::new(
                setup.config.max_send_queue,
                setup.socket,
                ctx.address().recipient(),
            );
            body = Some(b);
            let heard = Rc::new(Cell::new(false));
            let mut decoder = Decoder::new(Role::Server, setup.config.max_message_size);
            let mut compressor = None;
            if let Some(params) = &setup.deflate {
                decoder = decoder.with_inflate(InflateParams {
                    window_bits: params.client_max_window_bits,
                    no_context_takeover: params.client_no_context_takeover,
                });
                compressor = compressor_for(&setup.config, params);
            }
            ctx.add_stream(Frames::new(payload, decoder, heard.clone()));
            let now = Instant::now();
            let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
            let mut pusher = None;
            let (pubsub, feed) = match setup.mode {
                Mode::Echo => (None, None),
                Mode::Pusher(setup_pusher) => {
                    let sink = SessionSink::new(
                        outbox.clone(),
                        ctx.address(),
                        compressor.clone(),
                        shared_deflate(&setup.config),
                    );
                    pusher = Some(PusherState::new(setup_pusher, sink, id));
                    (None, None)
                }
                Mode::PubSub(ps) => {
                    let pubsub = PubSub::new(
                        ps,
                        outbox.clone(),
                        ctx.address(),
                        compressor.clone(),
                        shared_deflate(&setup.config),
                    );
                    (Some(pubsub), None)
                }
                Mode::Feed(feed) => (None, Some(feed)),
            };
            Session {
                pubsub,
                pusher,
                feed,
                id,
                peer: setup.peer,
                started: now,
                config: setup.config,
                registry: setup.registry,
                metrics: setup.metrics,
                _slot: setup.slot,
                outbox,
                heard,
                last_heard: now,
                seen: 0,
                stalled_since: None,
                closing: false,
                ending: None,
                traffic: Traffic::default(),
                compressor,
            }
        });
        // `create` runs its closure before returning.
        body.unwrap_or_else(|| unreachable!("Session::create ran its closure"))
    }

    fn peer(&self) -> String {
        describe_peer(self.peer)
    }

    /// Queues a text message of ours (a command reply), compressed when
    /// agreed and long enough.
    fn send_text(&mut self, text: &[u8], ctx: &mut Context<Self>) {
        let frame = text_message(self.compressor.as_deref(), text);
        self.send(frame, ctx);
    }

    /// Queues a frame (as its pieces); a full queue makes this session a
    /// slow consumer.
    fn send(&mut self, (frame, rest): (Bytes, Option<Bytes>), ctx: &mut Context<Self>) {
        if self.outbox.push(frame, rest).is_err() {
            self.slow_consumer("its send queue is full", ctx);
        }
    }

    /// Queues the close frame, or resets the connection when the socket has
    /// taken nothing for at least `close_timeout`, so the frame would only
    /// wait out that timeout unread. Says whether the close was queued
    /// (whether the peer can still hear it). One tick without progress is no
    /// stall: on a busy machine a reading peer's last ping may simply not
    /// have left yet, and resetting it would cost it its close frame.
    fn send_close(&mut self, close: Option<(u16, &str)>) -> bool {
        if self
            .stalled_since
            .is_some_and(|since| since.elapsed() >= self.config.close_timeout)
        {
            self.outbox.abort();
            return false;
        }
        let frame = match close {
            Some((code, reason)) => {
                protocol::server_frame(opcode::CLOSE, &[&code.to_be_bytes(), reason.as_bytes()])
            }
            None => protocol::server_frame(opcode::CLOSE, &[]),
        };
        self.outbox.push_last(frame);
        true
    }

    /// Sends a close frame and stops: for faults, where nothing the peer says
    /// afterwards could matter (RFC 6455 section 7.1.7, "fail the connection").
    fn fail(
        &mut self,
        ctx: &mut Context<Self>,
        code: u16,
        reason: &'static str,
        cause: CloseCause,
    ) {
        if !self.closing {
            self.send_close(Some((code, reason)));
        }
        self.end(cause, code, reason);
        ctx.stop();
    }

    /// Ends a peer that does not read: what is queued for it is dropped, and
    /// it is told 1008 if the socket still moves, else reset.
    fn slow_consumer(&mut self, why: &str, ctx: &mut Context<Self>) {
        log::info!(
            "session {} from {}: slow consumer, {why}; {} bytes queued",
            self.id,
            self.peer(),
            self.outbox.queued()
        );
        self.end(CloseCause::SlowConsumer, code::POLICY, "slow consumer");
        self.outbox.discard();
        if self.closing {
            // Our close frame was among what was dropped, and the socket has
            // not moved since (only the write timeout ends a closing session).
            self.outbox.abort();
        } else {
            self.send_close(Some((code::POLICY, "slow consumer")));
        }
        ctx.stop();
    }

    /// Sends a close frame and waits (up to `close_timeout`) for the peer's.
    fn begin_close(
        &mut self,
        ctx: &mut Context<Self>,
        code: u16,
        reason: impl Into<Cow<'static, str>>,
        cause: CloseCause,
    ) {
        if self.closing {
            return;
        }
        let reason = reason.into();
        let queued = self.send_close(Some((code, &reason)));
        self.end(cause, code, reason);
        if !queued {
            // It cannot be told; there is nothing to wait for.
            ctx.stop();
            return;
        }
        self.closing = true;
        ctx.run_later(self.config.close_timeout, |act, ctx| {
            log::debug!(
                "session {}: no close reply from {}, dropping",
                act.id,
                act.peer()
            );
            ctx.stop();
        });
    }

    fn end(&mut self, cause: CloseCause, code: u16, reason: impl Into<Cow<'static, str>>) {
        if self.ending.is_none() {
            self.ending = Some(Ending {
                cause,
                code,
                reason: reason.into(),
            });
        }
    }

    fn tick(&mut self, ctx: &mut Context<Self>) {
        self.traffic.flush(&self.metrics);
        let now = Instant::now();
        if self.heard.replace(false) {
            self.last_heard = now;
        }
        let Progress { waiting, moved } = self.outbox.progress();
        if moved != self.seen || !waiting {
            self.seen = moved;
            self.stalled_since = None;
        } else if let Some(since) = self.stalled_since {
            if now.duration_since(since) >= self.config.write_timeout {
                self.slow_consumer("the socket took nothing for write_timeout", ctx);
                return;
            }
        } else {
            self.stalled_since = Some(now);
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
        self.send((protocol::server_frame(opcode::PING, &[]), None), ctx);
    }

    fn on_event(&mut self, event: Event, ctx: &mut Context<Self>) {
        match event {
            Event::Text(text) => {
                self.traffic.messages_received += 1;
                self.traffic.bytes_received += text.len() as u64;
                if self.closing || self.feed.is_some() {
                    return;
                }
                if self.pubsub.is_some() {
                    return self.pubsub_message(Kind::Text, text, ctx);
                }
                if self.pusher.is_some() {
                    return self.pusher_message(&text, ctx);
                }
                // The decoder has validated the UTF-8, and the prefix is a
                // `String`, so the reply is valid text without re-checking.
                let prefix = self.config.reply_prefix.as_bytes();
                let reply = message(self.compressor.as_deref(), opcode::TEXT, prefix, &text);
                self.traffic.messages_sent += 1;
                self.traffic.bytes_sent += (prefix.len() + text.len()) as u64;
                self.send(reply, ctx);
            }
            Event::Binary(bytes) => {
                self.traffic.messages_received += 1;
                self.traffic.bytes_received += bytes.len() as u64;
                if self.closing || self.feed.is_some() {
                    return;
                }
                if self.pubsub.is_some() {
                    return self.pubsub_message(Kind::Binary, bytes, ctx);
                }
                if self.pusher.is_some() {
                    let error = crate::pusher::protocol::error(
                        None,
                        "the Pusher protocol takes text messages only",
                    );
                    return self.send_text(&error, ctx);
                }
                self.traffic.messages_sent += 1;
                self.traffic.bytes_sent += bytes.len() as u64;
                let reply = message(self.compressor.as_deref(), opcode::BINARY, &[], &bytes);
                self.send(reply, ctx);
            }
            Event::Ping(payload) => {
                if !self.closing {
                    let pong = protocol::server_frame(opcode::PONG, &[&payload]);
                    self.send((pong, None), ctx);
                }
            }
            Event::Pong(_) => {}
            Event::Close(frame) => self.on_close(frame, ctx),
        }
    }

    fn on_close(&mut self, frame: Option<CloseFrame>, ctx: &mut Context<Self>) {
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
        self.send_close((code != code::NO_STATUS).then_some((code, "")));
        self.ending = Some(Ending {
            cause,
            code,
            reason: Cow::Owned(reason),
        });
        ctx.stop();
    }
}

/// The frame of a data message `prefix` + `payload`: compressed when the
/// session agreed to permessage-deflate and it is long enough, else the
/// plain frame, sharing `payload`'s bytes.
fn message(
    compressor: Option<&RefCell<Compressor>>,
    op: u8,
    prefix: &[u8],
    payload: &Bytes,
) -> Frame {
    if let Some(c) = compressor
        && let Some(frame) = c.borrow_mut().frame(op, &[prefix, payload], None)
    {
        return (frame, None);
    }
    protocol::server_message(op, prefix, payload)
}

/// [`message`] for a text message of our own (a reply, an event).
pub(super) fn text_message(compressor: Option<&RefCell<Compressor>>, text: &[u8]) -> Frame {
    if let Some(c) = compressor
        && let Some(frame) = c.borrow_mut().frame(opcode::TEXT, &[text], None)
    {
        return (frame, None);
    }
    text_frame(text)
}

/// What the session compresses with settings from `[session.deflate]` and
/// the agreed `params`; `None` when it cannot compress (the client allowed
/// only a 256-byte window), and then it sends everything uncompressed.
fn compressor_for(
    config: &SessionConfig,
    params: &DeflateParams,
) -> Option<Rc<RefCell<Compressor>>> {
    let settings = SendSettings {
        level: config.deflate.level,
        min_size: config.deflate.min_size,
    };
    match Compressor::new(settings, params, true) {
        Ok(c) => c.map(|c| Rc::new(RefCell::new(c))),
        Err(e) => {
            // The config was validated; nothing should get here.
            log::warn!("permessage-deflate agreed but unusable ({e}): sending uncompressed");
            None
        }
    }
}

/// How channel publications are compressed once for the subscribers that
/// can share the frame: the configured level and window, no context.
fn shared_deflate(config: &SessionConfig) -> Shared {
    Shared {
        settings: SendSettings {
            level: config.deflate.level,
            min_size: config.deflate.min_size,
        },
        window_bits: config.deflate.server_max_window_bits,
    }
}

/// A peer address for log lines (actix may not know it, e.g. behind a test
/// transport).
pub(crate) fn describe_peer(peer: Option<SocketAddr>) -> String {
    peer.map_or_else(|| "unknown peer".to_owned(), |p| p.to_string())
}

fn round_ms(d: Duration) -> Duration {
    Duration::from_millis(d.as_millis() as u64)
}

impl Actor for Session {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        log::info!("session {} connected from {}", self.id, self.peer());
        self.registry.do_send(Connect {
            id: self.id,
            peer: self.peer,
            addr: ctx.address().recipient(),
        });
        ctx.run_interval(self.config.heartbeat_interval, Self::tick);
        self.pubsub_started(ctx);
        self.pusher_started(ctx);
        self.feed_started(ctx);
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        self.pubsub_stopped();
        self.pusher_stopped();
        self.traffic.flush(&self.metrics);
        self.outbox.finish();
        // The peer closed and heard from us just now: its reply leaves with
        // no timer of ours (the kernel's TCP_USER_TIMEOUT is the backstop),
        // which keeps the common ending cheap.
        let peer_closed = self
            .ending
            .as_ref()
            .is_some_and(|e| matches!(e.cause, CloseCause::Normal | CloseCause::PeerError));
        if !peer_closed && self.outbox.is_pending() {
            // What is queued (at least the close frame) gets `close_timeout`
            // to leave; a peer that does not read it by then is reset.
            let outbox = self.outbox.clone();
            let linger = self.config.close_timeout;
            actix::spawn(async move {
                tokio::time::sleep(linger).await;
                if outbox.is_pending() {
                    outbox.abort();
                }
            });
        }
        let ending = self.ending.take().unwrap_or(Ending {
            cause: CloseCause::Abnormal,
            code: code::ABNORMAL,
            reason: Cow::Borrowed("connection dropped without a close frame"),
        });
        let reason = &ending.reason;
        log::info!(
            "session {} from {} disconnected: {} (code {} {}{}) after {}",
            self.id,
            self.peer(),
            ending.cause.as_str(),
            ending.code,
            protocol::close_code_name(ending.code),
            if reason.is_empty() {
                String::new()
            } else {
                format!(", reason {reason:?}")
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

impl Handler<TransportClosed> for Session {
    type Result = ();

    fn handle(&mut self, _: TransportClosed, ctx: &mut Self::Context) {
        ctx.stop();
    }
}

/// The upgraded connection's bytes, decoded into [`Event`]s.
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

    fn poll_next(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Option<Self::Item>> {
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
