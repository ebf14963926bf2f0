//! A session in Pusher mode (`/app/KEY`): the Pusher Channels protocol on
//! the channel engine. Subscriptions are ordinary channel subscriptions in
//! the app's namespace ([`crate::pusher::apps`]) with the Pusher format, so
//! deliveries go from the worker's hub straight into the send queue, the
//! frame encoded once per publication; only the member events of presence
//! channels are made per subscriber ([`PusherSink`]), since whether a join
//! is news depends on who this subscriber has already seen.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use bytes::Bytes;

use super::pubsub::SessionSink;
use super::{CloseCause, Session, text_message};
use crate::channels::{ChannelError, ChannelName, Channels, Publish, Source, Start, Subscriber};
use crate::engine::{Format, Frame, History, Kind, Member, PresenceEvent, Publication, text_frame};
use crate::pusher::protocol::{self, ChannelKind, ClientMessage, MemberData, Privacy, code};
use crate::pusher::webhook::WebhookEvent;
use crate::pusher::{Admitted, App, sign};

/// What the upgrade handler decided for a Pusher connection.
pub(crate) struct PusherSetup {
    pub channels: Arc<Channels>,
    /// The app and its connection slot, or why the connection is refused
    /// (told in `pusher:error` and on the close frame).
    pub app: Result<(Arc<App>, Admitted), (u16, String)>,
    /// The first half of this process's socket ids, so that ids are unique
    /// across the instances sharing an engine.
    pub node: u32,
    pub activity_timeout: Duration,
}

/// The session's side of the protocol.
pub(super) struct PusherState {
    channels: Arc<Channels>,
    app: Option<Arc<App>>,
    _admitted: Option<Admitted>,
    refusal: Option<(u16, String)>,
    socket_id: String,
    activity_timeout: Duration,
    sink: Rc<PusherSink>,
    joined: Vec<Joined>,
    /// The current second of client events, and how many were sent in it.
    window: (Instant, u32),
    /// After `pusher:signin`: the user, and the control channel through
    /// which `terminate_connections` reaches this connection.
    user: Option<(String, ChannelName)>,
}

/// `terminate_connections` named this connection's user.
#[derive(Message)]
#[rtype(result = "()")]
pub(super) struct Terminate;

/// What a signed-in connection's control channel delivers to: anything
/// published there means "close".
struct ControlSink {
    addr: Addr<Session>,
}

impl Subscriber for ControlSink {
    fn push(&self, _frame: &Frame) -> bool {
        true
    }

    fn push_publication(&self, _p: &Publication, _format: Format) -> bool {
        self.addr.do_send(Terminate);
        true
    }

    fn overflowed(&self) {}

    fn lost(&self) {}
}

struct Joined {
    /// The Pusher name, and the engine channel it maps to.
    name: String,
    channel: ChannelName,
    kind: ChannelKind,
    /// Presence: this connection's member.
    member: Option<(Member, MemberData)>,
    /// `subscription_succeeded` has been sent.
    active: bool,
}

/// Who this subscriber knows to be on a presence channel: each user's
/// connections, so that a user's first connection makes `member_added`
/// and its last `member_removed`, whatever the order events arrive in.
struct Roster {
    name: String,
    users: HashMap<String, HashSet<String>>,
}

/// How the hub reaches a Pusher session: its send queue (through the
/// channel session's sink), its socket id (the one publication it may be
/// excluded from), and its presence rosters.
pub(super) struct PusherSink {
    inner: SessionSink,
    socket_id: Bytes,
    rosters: RefCell<HashMap<ChannelName, Roster>>,
}

impl PusherSink {
    fn push_message(&self, message: &[u8]) -> bool {
        // Member events are rare and small: uncompressed, which leaves a
        // compressor's context as it was (RFC 7692 section 6).
        self.inner.push_frame(text_frame(message))
    }
}

impl Subscriber for PusherSink {
    fn push(&self, frame: &Frame) -> bool {
        self.inner.push(frame)
    }

    fn push_publication(&self, p: &Publication, format: Format) -> bool {
        self.inner.push_publication(p, format)
    }

    fn wants(&self, p: &Publication) -> bool {
        !p.excludes(&self.socket_id)
    }

    fn push_presence(&self, event: &PresenceEvent) -> bool {
        let Some(member) = MemberData::from_stored(&event.member.user) else {
            return true;
        };
        let mut rosters = self.rosters.borrow_mut();
        let Some(roster) = rosters.get_mut(&event.channel) else {
            return true;
        };
        let conn = &event.member.conn;
        if event.join {
            let conns = roster.users.entry(member.user_id.clone()).or_default();
            if conns.insert(conn.clone()) && conns.len() == 1 {
                return self.push_message(&protocol::member_added(&roster.name, &member));
            }
        } else if let Some(conns) = roster.users.get_mut(&member.user_id)
            && conns.remove(conn)
            && conns.is_empty()
        {
            roster.users.remove(&member.user_id);
            return self.push_message(&protocol::member_removed(&roster.name, &member.user_id));
        }
        true
    }

    fn overflowed(&self) {
        self.inner.overflowed();
    }

    fn lost(&self) {
        self.inner.lost();
    }
}

impl PusherState {
    pub(super) fn new(setup: PusherSetup, inner: SessionSink, id: u64) -> PusherState {
        let socket_id = format!("{}.{id}", setup.node);
        let (app, admitted, refusal) = match setup.app {
            Ok((app, admitted)) => (Some(app), Some(admitted), None),
            Err(refusal) => (None, None, Some(refusal)),
        };
        PusherState {
            channels: setup.channels,
            app,
            _admitted: admitted,
            refusal,
            sink: Rc::new(PusherSink {
                inner,
                socket_id: Bytes::from(socket_id.clone()),
                rosters: RefCell::new(HashMap::new()),
            }),
            socket_id,
            activity_timeout: setup.activity_timeout,
            joined: Vec::new(),
            window: (Instant::now(), 0),
            user: None,
        }
    }
}

impl PusherState {
    /// Leaves a channel this connection had joined: its subscription, its
    /// presence member, and the webhooks that makes.
    fn left(&mut self, joined: Joined, key: u64) {
        self.channels.leave(&joined.channel, key);
        let roster = self.sink.rosters.borrow_mut().remove(&joined.channel);
        if let Some((member, data)) = joined.member {
            spawn_logged(
                self.channels
                    .presence_remove(&joined.channel, member.clone()),
            );
            // The user's last connection here, as far as this one knows.
            let last = roster.is_none_or(|r| {
                r.users
                    .get(&data.user_id)
                    .is_none_or(|conns| conns.iter().all(|c| *c == member.conn))
            });
            if joined.active && last {
                self.webhook(|| WebhookEvent::MemberRemoved {
                    channel: joined.name.clone(),
                    user_id: data.user_id.clone(),
                });
            }
        }
        if joined.active && self.channels.local_subscribers(&joined.channel) == 0 {
            self.webhook(|| WebhookEvent::ChannelVacated {
                channel: joined.name,
            });
        }
    }

    /// Queues a webhook event, made only when the app has webhooks.
    fn webhook(&self, event: impl FnOnce() -> WebhookEvent) {
        if let Some(app) = &self.app
            && app.has_webhooks()
        {
            app.webhook(event());
        }
    }
}

/// A refused subscription's answer.
struct SubscribeRefusal {
    kind: &'static str,
    status: u16,
    message: String,
}

fn refusal(kind: &'static str, status: u16, message: impl Into<String>) -> SubscribeRefusal {
    SubscribeRefusal {
        kind,
        status,
        message: message.into(),
    }
}

impl From<ChannelError> for SubscribeRefusal {
    fn from(e: ChannelError) -> Self {
        refusal("ServerError", e.code.http_status(), e.message)
    }
}

impl Session {
    /// Greets the client, or refuses it (unknown key, unsupported
    /// protocol, over quota) with `pusher:error` and the same close code.
    pub(super) fn pusher_started(&mut self, ctx: &mut Context<Self>) {
        let Some(p) = self.pusher.as_mut() else {
            return;
        };
        if let Some((close, message)) = p.refusal.take() {
            log::info!("session {} from {}: {message}", self.id, self.peer());
            let error = protocol::error(Some(close), &message);
            self.send_text(&error, ctx);
            return self.begin_close(ctx, close, message, CloseCause::Refused);
        }
        let hello = protocol::connection_established(&p.socket_id, p.activity_timeout.as_secs());
        self.send_text(&hello, ctx);
    }

    /// Leaves every channel.
    pub(super) fn pusher_stopped(&mut self) {
        let key = self.id;
        let Some(p) = self.pusher.as_mut() else {
            return;
        };
        for joined in std::mem::take(&mut p.joined) {
            p.left(joined, key);
        }
        p.sink.rosters.borrow_mut().clear();
        if let Some((_, control)) = p.user.take() {
            p.channels.leave(&control, key);
        }
    }

    fn pusher_error(&mut self, code: Option<u16>, message: &str, ctx: &mut Context<Self>) {
        log::debug!("session {}: pusher:error {message}", self.id);
        self.send_text(&protocol::error(code, message), ctx);
    }

    /// A text message from a Pusher client.
    pub(super) fn pusher_message(&mut self, text: &[u8], ctx: &mut Context<Self>) {
        match protocol::parse(text) {
            Err(e) => self.pusher_error(e.code, &e.message, ctx),
            Ok(ClientMessage::Ping) => self.send_text(&protocol::pong(), ctx),
            Ok(ClientMessage::Pong) => {}
            Ok(ClientMessage::Subscribe {
                channel,
                auth,
                channel_data,
            }) => self.pusher_subscribe(channel, auth, channel_data, ctx),
            Ok(ClientMessage::Unsubscribe { channel }) => self.pusher_unsubscribe(&channel),
            Ok(ClientMessage::Signin { auth, user_data }) => {
                self.pusher_signin(&auth, &user_data, ctx)
            }
            Ok(ClientMessage::ClientEvent {
                event,
                channel,
                data,
            }) => self.client_event(event, channel, data.get(), ctx),
        }
    }

    fn refuse_subscription(&mut self, name: &str, r: SubscribeRefusal, ctx: &mut Context<Self>) {
        log::info!(
            "session {} from {}: subscription to {name:?} refused: {}",
            self.id,
            self.peer(),
            r.message
        );
        let error = protocol::subscription_error(name, r.kind, &r.message, r.status);
        self.send_text(&error, ctx);
    }

    fn pusher_subscribe(
        &mut self,
        name: String,
        auth: Option<String>,
        channel_data: Option<String>,
        ctx: &mut Context<Self>,
    ) {
        let key = self.id;
        let Some(p) = self.pusher.as_mut() else {
            return;
        };
        let Some(app) = p.app.clone() else { return };
        if p.joined.iter().any(|j| j.name == name) {
            return;
        }
        let planned = (|| {
            let kind = ChannelKind::of(&name).ok_or_else(|| {
                refusal(
                    "InvalidChannel",
                    400,
                    "a channel name is 1-200 characters of A-Z a-z 0-9 _ - = @ , . ;",
                )
            })?;
            if kind.privacy == Privacy::User {
                let wanted = &name[protocol::USER_CHANNEL.len()..];
                if p.user.as_ref().map(|(id, _)| id.as_str()) != Some(wanted) {
                    return Err(refusal(
                        "AuthError",
                        401,
                        "a user's channel is for a connection signed in as that user \
                         (pusher:signin)",
                    ));
                }
            }
            let presence = kind.privacy == Privacy::Presence;
            let channel_data = channel_data.filter(|_| presence);
            if presence && channel_data.is_none() {
                return Err(refusal(
                    "AuthError",
                    401,
                    "a presence subscription needs channel_data",
                ));
            }
            if kind.needs_auth() {
                let message = sign::channel_message(&p.socket_id, &name, channel_data.as_deref());
                let signed = auth.as_deref().is_some_and(|auth| {
                    sign::check_auth(&app.config.key, &app.config.secret, &message, auth)
                });
                if !signed {
                    return Err(refusal(
                        "AuthError",
                        401,
                        format!(
                            "invalid signature for {name:?}: auth must be KEY:HMAC-SHA256 of {message:?}"
                        ),
                    ));
                }
            }
            let member = match &channel_data {
                Some(data) => {
                    let m = MemberData::parse(data).map_err(|e| refusal("AuthError", 400, e))?;
                    let conn = p.socket_id.clone();
                    Some((
                        Member {
                            user: m.to_stored(),
                            conn,
                        },
                        m,
                    ))
                }
                None => None,
            };
            let channel = app
                .engine_name(&name)
                .ok_or_else(|| refusal("InvalidChannel", 400, "the channel name is too long"))?;
            let ns = p.channels.rules().namespace(&channel)?.clone();
            Ok((kind, channel, member, ns))
        })();
        let (kind, channel, member, ns) = match planned {
            Ok(planned) => planned,
            Err(r) => return self.refuse_subscription(&name, r, ctx),
        };
        let sink: Rc<dyn Subscriber> = p.sink.clone();
        let new_hub = match p.channels.join(&channel, &ns, key, sink, Format::Pusher) {
            Ok(new_hub) => new_hub,
            Err(e) => return self.refuse_subscription(&name, e.into(), ctx),
        };
        p.joined.push(Joined {
            name: name.clone(),
            channel: channel.clone(),
            kind,
            member: member.clone(),
            active: false,
        });
        let start = if kind.cache {
            Start::Last(1)
        } else {
            Start::Live
        };
        let channels = p.channels.clone();
        let max_members = app.config.max_presence_members;
        let work = async move {
            let history = channels
                .clone()
                .prepare(channel.clone(), new_hub, start)
                .await?;
            let Some((member, data)) = member else {
                return Ok((history, Vec::new()));
            };
            let mut members: Vec<(String, MemberData)> = channels
                .presence(&channel)
                .await?
                .into_iter()
                .filter_map(|m| Some((m.conn, MemberData::from_stored(&m.user)?)))
                .collect();
            let users: HashSet<&str> = members.iter().map(|(_, m)| m.user_id.as_str()).collect();
            if !users.contains(data.user_id.as_str()) && users.len() >= max_members {
                return Err(refusal(
                    "LimitReached",
                    403,
                    format!("the presence channel is full (max_presence_members = {max_members})"),
                ));
            }
            // Joined in `pusher_subscribed`, which knows whether this
            // connection is still subscribed by then.
            members.push((member.conn, data));
            Ok((history, members))
        };
        ctx.spawn(work.into_actor(self).map(move |result, act, ctx| {
            act.pusher_subscribed(name, result, ctx);
        }));
    }

    fn pusher_subscribed(
        &mut self,
        name: String,
        result: Result<(History, Vec<(String, MemberData)>), SubscribeRefusal>,
        ctx: &mut Context<Self>,
    ) {
        let key = self.id;
        let Some(p) = self.pusher.as_mut() else {
            return;
        };
        let Some(i) = p.joined.iter().position(|j| j.name == name) else {
            // Unsubscribed meanwhile: nothing was joined yet.
            return;
        };
        let (history, members) = match result {
            Ok(done) => done,
            Err(r) => {
                let joined = p.joined.remove(i);
                p.channels.leave(&joined.channel, key);
                return self.refuse_subscription(&name, r, ctx);
            }
        };
        let joined = &mut p.joined[i];
        joined.active = true;
        if let Some((member, _)) = &joined.member {
            spawn_logged(p.channels.presence_add(&joined.channel, member.clone()));
        }
        let mut events = Vec::new();
        if p.channels.local_subscribers(&joined.channel) == 1 {
            events.push(WebhookEvent::ChannelOccupied {
                channel: name.clone(),
            });
        }
        if let Some((member, data)) = &joined.member
            && !members
                .iter()
                .any(|(conn, m)| m.user_id == data.user_id && *conn != member.conn)
        {
            events.push(WebhookEvent::MemberAdded {
                channel: name.clone(),
                user_id: data.user_id.clone(),
            });
        }
        let reply = if joined.member.is_some() {
            // The roster starts with the connections the engine listed, so
            // that their join events (some may still be on the way, this
            // connection's own among them) are no news.
            let mut users: HashMap<String, HashSet<String>> = HashMap::new();
            for (conn, m) in &members {
                users
                    .entry(m.user_id.clone())
                    .or_default()
                    .insert(conn.clone());
            }
            p.sink.rosters.borrow_mut().insert(
                joined.channel.clone(),
                Roster {
                    name: name.clone(),
                    users,
                },
            );
            let members: Vec<MemberData> = members.into_iter().map(|(_, m)| m).collect();
            protocol::presence_succeeded(&name, &members)
        } else {
            protocol::subscription_succeeded(&name)
        };
        let mut frames = vec![text_message(self.compressor.as_deref(), &reply)];
        if joined.kind.cache && history.publications.is_empty() {
            frames.push(text_message(
                self.compressor.as_deref(),
                &protocol::cache_miss(&name),
            ));
        }
        let channel = joined.channel.clone();
        for event in events {
            p.webhook(|| event);
        }
        for frame in frames {
            if !p.sink.inner.push_frame(frame) {
                return self.slow_consumer("its send queue is full", ctx);
            }
        }
        if p.channels.activate(&channel, key, &history).is_none() {
            self.slow_consumer("its send queue is full", ctx);
        }
    }

    fn pusher_unsubscribe(&mut self, name: &str) {
        let key = self.id;
        let Some(p) = self.pusher.as_mut() else {
            return;
        };
        let Some(i) = p.joined.iter().position(|j| j.name == name) else {
            return;
        };
        let joined = p.joined.remove(i);
        p.left(joined, key);
    }

    /// `pusher:signin`: checks the signature of the user data, joins the
    /// user's control channel, then answers `pusher:signin_success`. A bad
    /// signature closes the connection with 4009, as the reference says.
    fn pusher_signin(&mut self, auth: &str, user_data: &str, ctx: &mut Context<Self>) {
        let key = self.id;
        let addr = ctx.address();
        let Some(p) = self.pusher.as_mut() else {
            return;
        };
        let Some(app) = p.app.clone() else { return };
        if p.user.is_some() {
            return self.pusher_error(None, "this connection is signed in already", ctx);
        }
        let message = sign::signin_message(&p.socket_id, user_data);
        let checked = if sign::check_auth(&app.config.key, &app.config.secret, &message, auth) {
            protocol::signin_user(user_data).and_then(|id| {
                let control = app
                    .control_name(&id)
                    .ok_or_else(|| "the user id is too long".to_owned())?;
                Ok((id, control))
            })
        } else {
            Err(format!(
                "invalid signin signature: auth must be KEY:HMAC-SHA256 of {message:?}"
            ))
        };
        let (id, control) = match checked {
            Ok(signed) => signed,
            Err(why) => {
                log::info!(
                    "session {} from {}: signin refused: {why}",
                    self.id,
                    self.peer()
                );
                self.pusher_error(Some(code::UNAUTHORIZED), &why, ctx);
                return self.begin_close(
                    ctx,
                    code::UNAUTHORIZED,
                    "unauthorized",
                    CloseCause::Refused,
                );
            }
        };
        let joined = p
            .channels
            .rules()
            .namespace(&control)
            .cloned()
            .and_then(|ns| {
                p.channels.join(
                    &control,
                    &ns,
                    key,
                    Rc::new(ControlSink { addr }),
                    Format::Pusher,
                )
            });
        let new_hub = match joined {
            Ok(new_hub) => new_hub,
            Err(e) => return self.pusher_error(None, &format!("signin failed: {e}"), ctx),
        };
        p.user = Some((id, control.clone()));
        let prepare = p
            .channels
            .clone()
            .prepare(control.clone(), new_hub, Start::Live);
        let user_data = user_data.to_owned();
        ctx.spawn(prepare.into_actor(self).map(move |history, act, ctx| {
            let Some(p) = act.pusher.as_mut() else { return };
            if p.user.as_ref().is_none_or(|(_, c)| *c != control) {
                return;
            }
            match history {
                Ok(history) => {
                    p.channels.activate(&control, key, &history);
                    act.send_text(&protocol::signin_success(&user_data), ctx);
                }
                Err(e) => {
                    p.channels.leave(&control, key);
                    p.user = None;
                    act.pusher_error(None, &format!("signin failed: {e}"), ctx);
                }
            }
        }));
    }

    /// A `client-*` event: published to the channel's other subscribers,
    /// if the app allows client events, the channel is a private or
    /// presence one this connection is subscribed to, and it is within
    /// the size and rate limits.
    fn client_event(&mut self, event: String, name: String, data: &str, ctx: &mut Context<Self>) {
        let Some(p) = self.pusher.as_mut() else {
            return;
        };
        let Some(app) = p.app.clone() else { return };
        let checked = (|| {
            if !app.config.client_events {
                return Err((
                    None,
                    "client events are not enabled for this app (client_events = false)".to_owned(),
                ));
            }
            let joined = p
                .joined
                .iter()
                .find(|j| j.name == name && j.active)
                .ok_or_else(|| (None, format!("{event}: not subscribed to {name:?}")))?;
            if !joined.kind.takes_client_events() {
                return Err((
                    None,
                    format!("{event}: client events go only on private and presence channels"),
                ));
            }
            if data.len() > app.config.max_event_size {
                return Err((
                    None,
                    format!(
                        "{event}: data of {} bytes; at most {} (max_event_size)",
                        data.len(),
                        app.config.max_event_size
                    ),
                ));
            }
            let now = Instant::now();
            if now.duration_since(p.window.0) >= Duration::from_secs(1) {
                p.window = (now, 0);
            }
            if p.window.1 >= protocol::CLIENT_EVENTS_PER_SECOND {
                return Err((
                    Some(code::CLIENT_EVENT_RATE),
                    format!(
                        "{event}: client event rejected: at most {} per second",
                        protocol::CLIENT_EVENTS_PER_SECOND
                    ),
                ));
            }
            p.window.1 += 1;
            let user_id = joined.member.as_ref().map(|(_, m)| m.user_id.as_str());
            p.webhook(|| WebhookEvent::ClientEvent {
                channel: name.clone(),
                event: event.clone(),
                data: data.to_owned(),
                socket_id: p.socket_id.clone(),
                user_id: user_id.map(str::to_owned),
            });
            let message = protocol::event(&event, &name, data, user_id);
            Ok((
                joined.channel.clone(),
                protocol::publication(Some(&p.socket_id), &message),
            ))
        })();
        let (channel, data) = match checked {
            Ok(publish) => publish,
            Err((code, message)) => return self.pusher_error(code, &message, ctx),
        };
        let publish = p.channels.publish(
            Publish {
                channel,
                kind: Kind::Text,
                data,
                source: Source::Ws,
                idempotency_key: None,
            },
            false,
        );
        ctx.spawn(publish.into_actor(self).map(|result, act, ctx| {
            if let Err(e) = result {
                act.pusher_error(None, &format!("the event was not sent: {e}"), ctx);
            }
        }));
    }
}

impl Handler<Terminate> for Session {
    type Result = ();

    fn handle(&mut self, _: Terminate, ctx: &mut Self::Context) {
        if self.ending.is_none() {
            log::info!(
                "session {} from {}: its user's connections were terminated",
                self.id,
                self.peer()
            );
            self.begin_close(
                ctx,
                code::UNAUTHORIZED,
                "terminated by the server",
                CloseCause::Refused,
            );
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
