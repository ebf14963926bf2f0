//! A session in channel mode: its subscriptions, what it publishes, and (in
//! JSON mode) its commands and their replies.
//!
//! Deliveries do not pass through the actor: the worker's hub queues them
//! straight into the session's [`Outbox`] through [`SessionSink`]. The actor
//! only hears when that queue overflowed ([`Overflowed`]).

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use actix::prelude::*;
use bytes::Bytes;
use serde_json::{Value, json};

use super::{CloseCause, Session, text_message};
use crate::auth::Claims;
use crate::channels::{
    Action, ChannelError, ChannelName, Channels, Command, ErrorCode, Op, Publish, Source, Start,
    Subscriber, error_reply, ok_reply, parse_command,
};
use crate::engine::{Format, Frame, History, HistoryQuery, Kind, Member, Publication, Published};
use crate::protocol::deflate::{Compressor, Shared};
use crate::protocol::{code, opcode};
use crate::server::outbox::Outbox;

/// The close code for a connection whose token expired.
pub const TOKEN_EXPIRED: u16 = 4001;

/// What the upgrade handler decided for a channel connection.
pub(crate) struct PubSubSetup {
    pub channels: Arc<Channels>,
    pub format: Format,
    /// Subscribed at once (from the URL), access already checked, each
    /// with where it starts.
    pub subscribe: Vec<(ChannelName, Start)>,
    pub claims: Option<Claims>,
}

/// The session's side of its subscriptions.
pub(super) struct PubSub {
    channels: Arc<Channels>,
    format: Format,
    sink: Rc<SessionSink>,
    joined: Vec<Joined>,
    claims: Option<Claims>,
    /// Plain mode: the client's messages go to the first channel of the URL.
    publish_to: Option<ChannelName>,
    /// Subscriptions of the URL, made when the actor starts.
    initial: Option<Vec<(ChannelName, Start)>>,
}

struct Joined {
    channel: ChannelName,
    /// Its namespace tracks presence, so leaving must be told.
    presence: bool,
}

/// The queue was full when the hub delivered: end as a slow consumer.
#[derive(Message)]
#[rtype(result = "()")]
pub(super) struct Overflowed;

/// Publications this plain-mode session should have had were lost: close
/// with 1012 so that the client reconnects and recovers with `since`.
#[derive(Message)]
#[rtype(result = "()")]
pub(super) struct Lost;

/// How the hub reaches a session: its send queue, and its address for the
/// one message it may need.
pub(super) struct SessionSink {
    outbox: Outbox,
    addr: Addr<Session>,
    deflate: Option<SinkDeflate>,
}

/// How a compressing session takes its publications.
enum SinkDeflate {
    /// The publication's frame compressed once for every subscriber with
    /// these settings.
    Shared(Shared),
    /// Compressed by the session's own compressor (context takeover, or a
    /// smaller window than the shared frames use).
    Own(Rc<RefCell<Compressor>>),
}

impl SessionSink {
    /// The sink of a session with `outbox`; `compressor` when the session
    /// agreed to permessage-deflate.
    pub(super) fn new(
        outbox: Outbox,
        addr: Addr<Session>,
        compressor: Option<Rc<RefCell<Compressor>>>,
        shared: Shared,
    ) -> SessionSink {
        let deflate = compressor.map(|c| {
            if c.borrow().takes_shared(&shared) {
                SinkDeflate::Shared(shared)
            } else {
                SinkDeflate::Own(c)
            }
        });
        SessionSink {
            outbox,
            addr,
            deflate,
        }
    }

    pub(super) fn push_frame(&self, (frame, rest): Frame) -> bool {
        self.outbox.push(frame, rest).is_ok()
    }
}

impl Subscriber for SessionSink {
    fn push(&self, frame: &Frame) -> bool {
        self.outbox.push(frame.0.clone(), frame.1.clone()).is_ok()
    }

    fn push_publication(&self, p: &Publication, format: Format) -> bool {
        match &self.deflate {
            None => self.push(p.frame(format)),
            Some(SinkDeflate::Shared(shared)) => self.push(p.deflated_frame(format, shared)),
            Some(SinkDeflate::Own(compressor)) => {
                let op = match (format, p.kind) {
                    (Format::Plain, Kind::Binary) => opcode::BINARY,
                    _ => opcode::TEXT,
                };
                let compressed = compressor
                    .borrow_mut()
                    .frame(op, &[&p.payload(format)], None);
                match compressed {
                    Some(frame) => self.push_frame((frame, None)),
                    None => self.push(p.frame(format)),
                }
            }
        }
    }

    fn overflowed(&self) {
        self.addr.do_send(Overflowed);
    }

    fn lost(&self) {
        self.addr.do_send(Lost);
    }
}

impl PubSub {
    /// Checks that this client may publish on `channel`, and starts the
    /// publication (plain messages and the `publish` command alike).
    fn publish(
        &self,
        channel: ChannelName,
        kind: Kind,
        data: Bytes,
    ) -> Result<
        impl Future<Output = Result<(Published, Option<usize>), ChannelError>> + 'static,
        ChannelError,
    > {
        self.channels
            .rules()
            .check(&channel, Action::Publish, self.claims.as_ref())?;
        Ok(self.channels.publish(
            Publish {
                channel,
                kind,
                data,
                source: Source::Ws,
                idempotency_key: None,
            },
            false,
        ))
    }

    pub(super) fn new(
        setup: PubSubSetup,
        outbox: Outbox,
        addr: Addr<Session>,
        compressor: Option<Rc<RefCell<Compressor>>>,
        shared: Shared,
    ) -> PubSub {
        PubSub {
            publish_to: match setup.format {
                Format::Plain => setup.subscribe.first().map(|(c, _)| c.clone()),
                Format::Json | Format::Pusher => None,
            },
            channels: setup.channels,
            format: setup.format,
            sink: Rc::new(SessionSink::new(outbox, addr, compressor, shared)),
            joined: Vec::new(),
            claims: setup.claims,
            initial: Some(setup.subscribe),
        }
    }

    fn member(&self, id: u64) -> Member {
        Member {
            user: self
                .claims
                .as_ref()
                .map(|c| c.sub.clone())
                .unwrap_or_default(),
            // Unique across the instances sharing the engine.
            conn: match self.channels.node_id() {
                Some(node) => format!("{node}-{id}"),
                None => id.to_string(),
            },
        }
    }
}

/// Runs a presence update to its end on this thread; a failure is logged
/// (the member then lingers until the engine's presence expires).
fn spawn_logged(update: impl Future<Output = Result<(), ChannelError>> + 'static) {
    actix::spawn(async move {
        if let Err(e) = update.await {
            log::warn!("presence update failed: {e}");
        }
    });
}

impl Session {
    /// Subscribes to the URL's channels, and arms the token's expiry.
    pub(super) fn pubsub_started(&mut self, ctx: &mut Context<Self>) {
        let Some(ps) = self.pubsub.as_mut() else {
            return;
        };
        let initial = ps.initial.take();
        if let Some(claims) = &ps.claims {
            let left = claims
                .expires_at()
                .duration_since(SystemTime::now())
                .unwrap_or(Duration::ZERO);
            ctx.run_later(left, |act, ctx| {
                log::info!("session {} from {}: token expired", act.id, act.peer());
                act.begin_close(
                    ctx,
                    TOKEN_EXPIRED,
                    "token expired",
                    CloseCause::TokenExpired,
                );
            });
        }
        for (channel, start) in initial.into_iter().flatten() {
            self.subscribe(channel, start, None, ctx);
        }
    }

    /// Leaves every channel.
    pub(super) fn pubsub_stopped(&mut self) {
        let id = self.id;
        let Some(ps) = self.pubsub.as_mut() else {
            return;
        };
        let member = ps.member(id);
        for joined in ps.joined.drain(..) {
            ps.channels.leave(&joined.channel, id);
            if joined.presence {
                spawn_logged(ps.channels.presence_remove(&joined.channel, member.clone()));
            }
        }
    }

    /// Refuses a request: a JSON-mode client gets an error reply (with the
    /// command's `id`, or null for a subscription of the URL); a plain-mode
    /// connection is closed, since it has no other way to be told.
    fn refuse(&mut self, id: Option<&Value>, error: ChannelError, ctx: &mut Context<Self>) {
        log::info!("session {} from {}: {error}", self.id, self.peer());
        if self
            .pubsub
            .as_ref()
            .is_some_and(|p| p.format == Format::Json)
        {
            let reply = error_reply(id.unwrap_or(&Value::Null), &error);
            self.send_text(&reply, ctx);
        } else {
            self.close_for(error, ctx);
        }
    }

    /// Closes for a channel error: 1008 for rules, 1013 when the engine is
    /// unavailable.
    fn close_for(&mut self, error: ChannelError, ctx: &mut Context<Self>) {
        let (close, cause) = match error.code {
            ErrorCode::Unavailable => (code::TRY_AGAIN_LATER, CloseCause::Unavailable),
            _ => (code::POLICY, CloseCause::Refused),
        };
        let reason = error.close_reason().to_owned();
        self.pubsub_stopped();
        self.begin_close(ctx, close, reason, cause);
    }

    fn subscribe(
        &mut self,
        channel: ChannelName,
        start: Start,
        id: Option<Value>,
        ctx: &mut Context<Self>,
    ) {
        let key = self.id;
        let Some(ps) = self.pubsub.as_mut() else {
            return;
        };
        let checked = ps
            .channels
            .rules()
            .check(&channel, Action::Subscribe, ps.claims.as_ref())
            .cloned();
        let ns = match checked {
            Ok(ns) => ns,
            Err(e) => return self.refuse(id.as_ref(), e, ctx),
        };
        let sink: Rc<dyn Subscriber> = ps.sink.clone();
        let new_hub = match ps.channels.join(&channel, &ns, key, sink, ps.format) {
            Ok(new_hub) => new_hub,
            Err(e) => return self.refuse(id.as_ref(), e, ctx),
        };
        ps.joined.push(Joined {
            channel: channel.clone(),
            presence: ns.presence,
        });
        let recovering = matches!(start, Start::Since(_));
        let prepare = ps.channels.clone().prepare(channel.clone(), new_hub, start);
        ctx.spawn(prepare.into_actor(self).map(move |history, act, ctx| {
            act.subscribed(channel, history, recovering, id, ns.presence, ctx);
        }));
    }

    fn subscribed(
        &mut self,
        channel: ChannelName,
        history: Result<History, ChannelError>,
        recovering: bool,
        id: Option<Value>,
        presence: bool,
        ctx: &mut Context<Self>,
    ) {
        let key = self.id;
        let Some(ps) = self.pubsub.as_mut() else {
            return;
        };
        if !ps.joined.iter().any(|j| j.channel == channel) {
            // Unsubscribed while the history was read.
            return;
        }
        let history = match history {
            Ok(history) => history,
            Err(e) => {
                ps.joined.retain(|j| j.channel != channel);
                ps.channels.leave(&channel, key);
                return self.refuse(id.as_ref(), e, ctx);
            }
        };
        if ps.format == Format::Json {
            let reply = ok_reply(
                &id.unwrap_or(Value::Null),
                json!({
                    "channel": channel.as_str(),
                    "epoch": history.top.epoch,
                    "offset": history.top.offset,
                    "recovered": recovering && history.recovered,
                }),
            );
            let frame = text_message(self.compressor.as_deref(), &reply);
            if !ps.sink.push_frame(frame) {
                return self.slow_consumer("its send queue is full", ctx);
            }
        }
        if ps.channels.activate(&channel, key, &history).is_none() {
            return self.slow_consumer("its send queue is full", ctx);
        }
        if presence {
            let member = ps.member(key);
            spawn_logged(ps.channels.presence_add(&channel, member));
        }
    }

    fn unsubscribe(&mut self, channel: ChannelName, id: Value, ctx: &mut Context<Self>) {
        let key = self.id;
        let Some(ps) = self.pubsub.as_mut() else {
            return;
        };
        let Some(i) = ps.joined.iter().position(|j| j.channel == channel) else {
            let e = ChannelError::new(
                ErrorCode::NotSubscribed,
                format!("not subscribed to {channel:?}"),
            );
            return self.send_text(&error_reply(&id, &e), ctx);
        };
        let joined = ps.joined.remove(i);
        ps.channels.leave(&channel, key);
        if joined.presence {
            let member = ps.member(key);
            spawn_logged(ps.channels.presence_remove(&channel, member));
        }
        let reply = ok_reply(&id, json!({"channel": channel.as_str()}));
        self.send_text(&reply, ctx);
    }

    /// A text or binary message from the client. In plain mode it is
    /// published; in JSON mode a text message is a command.
    pub(super) fn pubsub_message(&mut self, kind: Kind, data: Bytes, ctx: &mut Context<Self>) {
        let Some(ps) = self.pubsub.as_ref() else {
            return;
        };
        match ps.format {
            Format::Plain => self.publish_plain(kind, data, ctx),
            Format::Json if kind == Kind::Text => match parse_command(&data) {
                Ok(command) => self.command(command, ctx),
                Err(bad) => {
                    let reply = error_reply(&bad.id, &bad.error);
                    self.send_text(&reply, ctx);
                }
            },
            Format::Json | Format::Pusher => {
                let e = ChannelError::new(
                    ErrorCode::BadRequest,
                    "JSON mode takes commands as text messages; publish binary data with \
                     \"data_b64\"",
                );
                self.send_text(&error_reply(&Value::Null, &e), ctx);
            }
        }
    }

    fn publish_plain(&mut self, kind: Kind, data: Bytes, ctx: &mut Context<Self>) {
        let Some(ps) = self.pubsub.as_ref() else {
            return;
        };
        let Some(channel) = ps.publish_to.clone() else {
            return;
        };
        let publish = match ps.publish(channel, kind, data) {
            Ok(publish) => publish,
            Err(e) => return self.refuse(None, e, ctx),
        };
        ctx.spawn(publish.into_actor(self).map(|result, act, ctx| {
            if let Err(e) = result {
                act.refuse(None, e, ctx);
            }
        }));
    }

    fn command(&mut self, Command { id, op }: Command, ctx: &mut Context<Self>) {
        let Some(ps) = self.pubsub.as_ref() else {
            return;
        };
        let channels = ps.channels.clone();
        let claims = ps.claims.clone();
        match op {
            Op::Subscribe { channel, since } => {
                let start = since.map_or(Start::Live, Start::Since);
                self.subscribe(channel, start, Some(id), ctx);
            }
            Op::Unsubscribe { channel } => self.unsubscribe(channel, id, ctx),
            Op::Publish {
                channel,
                kind,
                data,
            } => {
                let name = channel.as_str().to_owned();
                let publish = match ps.publish(channel, kind, data) {
                    Ok(publish) => publish,
                    Err(e) => return self.refuse(Some(&id), e, ctx),
                };
                ctx.spawn(publish.into_actor(self).map(move |result, act, ctx| {
                    let reply = match result {
                        Ok((p, _)) => ok_reply(
                            &id,
                            json!({"channel": name, "offset": p.offset, "epoch": &*p.epoch}),
                        ),
                        Err(e) => error_reply(&id, &e),
                    };
                    act.send_text(&reply, ctx);
                }));
            }
            Op::History {
                channel,
                since,
                limit,
            } => {
                let ns = match channels
                    .rules()
                    .check(&channel, Action::Subscribe, claims.as_ref())
                {
                    Ok(ns) => ns,
                    Err(e) => return self.refuse(Some(&id), e, ctx),
                };
                let recovering = since.is_some();
                let query = match since {
                    Some(since) => HistoryQuery::Since {
                        since,
                        limit: limit.unwrap_or(0),
                    },
                    None => HistoryQuery::Last(limit.unwrap_or(ns.history_size)),
                };
                let read = async move {
                    channels
                        .history(&channel, query)
                        .await
                        .map(|h| (channel, h))
                };
                ctx.spawn(read.into_actor(self).map(move |result, act, ctx| {
                    let reply = match result {
                        Ok((channel, h)) => ok_reply(
                            &id,
                            json!({
                                "channel": channel.as_str(),
                                "epoch": h.top.epoch,
                                "offset": h.top.offset,
                                "recovered": recovering && h.recovered,
                                "publications": h.publications.iter().map(|p| p.to_value()).collect::<Vec<_>>(),
                            }),
                        ),
                        Err(e) => error_reply(&id, &e),
                    };
                    act.send_text(&reply, ctx);
                }));
            }
            Op::Presence { channel } => {
                let ns = match channels
                    .rules()
                    .check(&channel, Action::Subscribe, claims.as_ref())
                {
                    Ok(ns) => ns,
                    Err(e) => return self.refuse(Some(&id), e, ctx),
                };
                if !ns.presence {
                    let e = ChannelError::new(
                        ErrorCode::BadRequest,
                        format!("namespace {:?} does not track presence", ns.name),
                    );
                    return self.send_text(&error_reply(&id, &e), ctx);
                }
                let read = async move { channels.presence(&channel).await.map(|m| (channel, m)) };
                ctx.spawn(read.into_actor(self).map(move |result, act, ctx| {
                    let reply = match result {
                        Ok((channel, members)) => ok_reply(
                            &id,
                            json!({"channel": channel.as_str(), "members": members}),
                        ),
                        Err(e) => error_reply(&id, &e),
                    };
                    act.send_text(&reply, ctx);
                }));
            }
        }
    }
}

impl Handler<Lost> for Session {
    type Result = ();

    fn handle(&mut self, _: Lost, ctx: &mut Self::Context) {
        if self.ending.is_none() {
            // A Pusher client reconnects at once on 4200 (it has no way to
            // recover what it missed).
            let (close, reason) = if self.pusher.is_some() {
                (crate::pusher::protocol::code::RECONNECT, "reconnect")
            } else {
                (code::SERVICE_RESTART, "service restart")
            };
            log::info!(
                "session {} from {}: publications lost in the engine; closing with {close}",
                self.id,
                self.peer()
            );
            self.begin_close(ctx, close, reason, CloseCause::Gap);
        }
    }
}

impl Handler<Overflowed> for Session {
    type Result = ();

    fn handle(&mut self, _: Overflowed, ctx: &mut Self::Context) {
        if self.ending.is_none() {
            self.slow_consumer("its send queue is full", ctx);
        }
    }
}
