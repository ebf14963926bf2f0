//! The Redis engine: several `wsd` instances share channels through one
//! Redis. Offsets, epochs, history (a stream per channel) and presence live
//! in Redis; each publish is one Lua script that assigns the offset, appends
//! to history and PUBLISHes, so every instance sees the same offsets and
//! history never disagrees with live delivery.
//!
//! - `scripts`: the Lua scripts and the key layout.
//! - `wire`: the message format (pub/sub and stream entries alike).
//! - `listener`: the one task that reads pub/sub messages in order, checks
//!   each channel's offsets for gaps, and catches up after a reconnect.
//! - `metrics`: the `wsd_redis_*` metrics.
//!
//! The connection lives on a thread of its own (`wsd-redis`, a
//! current-thread tokio runtime): actix runs one single-threaded runtime per
//! worker, and a connection created on one of them would stall when that
//! worker is busy. Engine calls from the workers are spawned onto it.
//!
//! An instance SUBSCRIBEs to a channel only while it has local subscribers
//! to it. Redis pub/sub is at-most-once, so the listener tracks the last
//! offset it handed on per channel: a jump, or a reconnect, makes it replay
//! what is missing from the stream, or, when the stream no longer has it,
//! tell the channel's subscribers there is a gap ([`Delivery::Gap`]).

mod listener;
mod metrics;
mod scripts;
mod wire;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use futures_util::future::{BoxFuture, Shared};
use prometheus_client::metrics::gauge::Gauge;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{IntoConnectionInfo, ProtocolVersion};
use tokio::runtime::Handle;

pub use metrics::RedisMetrics;

use super::{
    ChannelState, Engine, EngineError, EngineFuture, Health, History, HistoryQuery, Member,
    Position, Publication, PublishRequest, Published, Receipt, Sink,
};
use crate::channels::ChannelName;
use crate::config::RedisConfig;

/// How long an idempotency key is remembered (as in the memory engine).
const IDEMPOTENCY_TTL: Duration = super::memory::IDEMPOTENCY_WINDOW;

/// A channel's epoch and top offset outlive its history by this much at
/// least, so that offsets keep counting on channels without history.
const META_TTL_MIN: Duration = Duration::from_secs(24 * 3600);

/// A Redis command that takes longer than this fails (the instance reports
/// the engine down rather than hanging its clients).
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(3);

/// Channels listed by `GET /channels` at most (a SCAN over the prefix).
const MAX_LISTED: usize = 10_000;

/// What subscribing to a channel in Redis resolves to; shared by every
/// local subscriber that comes while it is under way.
type Ready = Shared<BoxFuture<'static, Result<(), String>>>;

/// A channel this node listens to.
struct Listen {
    /// Local subscribe calls not yet matched by unsubscribes.
    count: usize,
    /// Resolves once Redis delivers the channel's messages to us.
    ready: Ready,
    /// The last publication handed on (epoch, offset); `None` until the
    /// baseline is read.
    last: Option<(Arc<str>, u64)>,
}

/// The shared part, held by the engine, the listener and the refresher.
struct Inner {
    rt: Handle,
    conn: ConnectionManager,
    prefix: String,
    /// This instance's id, in presence `conn` ids and publish origins.
    node: String,
    presence_ttl: Duration,
    sink: Arc<dyn Sink>,
    up: AtomicBool,
    listening: Mutex<HashMap<ChannelName, Listen>>,
    /// Receipts of this node's publishes, by sequence number, until their
    /// publication comes back from Redis (it carries the number).
    receipts: Mutex<HashMap<u64, (Arc<Receipt>, Instant)>>,
    seq: AtomicU64,
    /// Presence members added here, refreshed while this node lives:
    /// (channel, member json) -> channel's set key.
    members: Mutex<HashMap<(ChannelName, String), String>>,
    metrics: RedisMetrics,
    channels_active: Gauge,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Plain maps: a panic elsewhere leaves them usable.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn unavailable(e: impl std::fmt::Display) -> EngineError {
    EngineError::Unavailable(e.to_string())
}

impl Inner {
    fn key(&self, kind: &str, channel: &ChannelName) -> String {
        format!("{}:{kind}:{}", self.prefix, channel.as_str())
    }

    fn pubsub(&self, channel: &ChannelName) -> String {
        self.key("c", channel)
    }

    /// The channel a pub/sub channel name is for.
    fn channel_of(&self, pubsub: &[u8]) -> Option<ChannelName> {
        let name = std::str::from_utf8(pubsub).ok()?;
        let rest = name
            .strip_prefix(self.prefix.as_str())?
            .strip_prefix(":c:")?;
        ChannelName::parse(rest).ok()
    }

    fn check_up(&self) -> Result<(), EngineError> {
        if self.up.load(Ordering::Acquire) {
            Ok(())
        } else {
            Err(EngineError::Unavailable("redis is not connected".into()))
        }
    }

    async fn publish(&self, request: PublishRequest) -> Result<Published, EngineError> {
        self.check_up()?;
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        if let Some(receipt) = request.receipt {
            let listened = lock(&self.listening).contains_key(&request.channel);
            if listened {
                lock(&self.receipts).insert(seq, (receipt, Instant::now()));
            } else {
                receipt.expect(0);
            }
        }
        let retention = request.retention;
        let ttl_ms = retention.ttl.as_millis().max(1) as u64;
        let meta_ttl = retention.ttl.max(META_TTL_MIN).as_millis() as u64;
        let idem = request.idempotency_key.as_deref();
        let idem_key = match idem {
            Some(k) => format!("{}:{k}", self.key("i", &request.channel)),
            None => self.key("i", &request.channel),
        };
        let started = Instant::now();
        let mut conn = self.conn.clone();
        let result: Result<(u64, String, u8), _> = scripts::PUBLISH
            .key(self.key("m", &request.channel))
            .key(self.key("s", &request.channel))
            .key(idem_key)
            .arg(self.pubsub(&request.channel))
            .arg(wire::kind_char(request.kind))
            .arg(&request.data[..])
            .arg(retention.size)
            .arg(ttl_ms)
            // The epoch if this publish starts the channel's history:
            // unique without drawing randomness on every publish, since the
            // node id is random per start and `seq` never repeats in it.
            .arg(format!("{}-{seq}", self.node))
            .arg(format!("{}/{seq}", self.node))
            .arg(if idem.is_some() { "1" } else { "0" })
            .arg(IDEMPOTENCY_TTL.as_millis() as u64)
            .arg(meta_ttl)
            .invoke_async(&mut conn)
            .await;
        self.metrics.round_trip(started.elapsed());
        match result {
            Ok((offset, epoch, duplicate)) => {
                if duplicate == 1
                    && let Some((receipt, _)) = lock(&self.receipts).remove(&seq)
                {
                    receipt.expect(0);
                }
                Ok(Published {
                    offset,
                    epoch: Arc::from(epoch),
                    duplicate: duplicate == 1,
                })
            }
            Err(e) => {
                lock(&self.receipts).remove(&seq);
                Err(unavailable(e))
            }
        }
    }

    /// Runs the READ script and turns its answer into publications.
    async fn read(
        &self,
        channel: &ChannelName,
        mode: &str,
        n: u64,
        limit: usize,
    ) -> Result<(Position, bool, Vec<Arc<Publication>>), EngineError> {
        let mut conn = self.conn.clone();
        let started = Instant::now();
        let answer: Vec<redis::Value> = scripts::READ
            .key(self.key("m", channel))
            .key(self.key("s", channel))
            .arg(mode)
            .arg(n)
            .arg(limit)
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)?;
        self.metrics.round_trip(started.elapsed());
        let mut items = answer.into_iter();
        let text = |v: Option<redis::Value>| -> Result<Vec<u8>, EngineError> {
            match v {
                Some(redis::Value::BulkString(b)) => Ok(b),
                Some(redis::Value::SimpleString(s)) => Ok(s.into_bytes()),
                Some(redis::Value::Int(i)) => Ok(i.to_string().into_bytes()),
                other => Err(unavailable(format!("unexpected reply {other:?}"))),
            }
        };
        let epoch = String::from_utf8_lossy(&text(items.next())?).into_owned();
        let top: u64 = String::from_utf8_lossy(&text(items.next())?)
            .parse()
            .unwrap_or(0);
        let complete = text(items.next())? == b"1";
        let mut publications = Vec::new();
        for item in items {
            let raw = text(Some(item))?;
            match wire::decode(channel, raw.into()) {
                Some(wire::Message::Publication { publication, .. }) => {
                    publications.push(publication)
                }
                _ => log::warn!("redis: skipped a malformed history entry of {channel}"),
            }
        }
        Ok((Position { offset: top, epoch }, complete, publications))
    }

    async fn history(
        &self,
        channel: &ChannelName,
        query: HistoryQuery,
    ) -> Result<History, EngineError> {
        self.check_up()?;
        match query {
            HistoryQuery::Last(n) => {
                let (top, _, publications) = self.read(channel, "last", n as u64, 0).await?;
                Ok(History {
                    publications,
                    top,
                    recovered: true,
                })
            }
            HistoryQuery::Since { since, limit } => {
                let (top, complete, publications) =
                    self.read(channel, "since", since.offset, limit).await?;
                let recovered = complete
                    && !top.epoch.is_empty()
                    && (top.epoch == since.epoch || since.is_beginning());
                Ok(History {
                    publications: if recovered { publications } else { Vec::new() },
                    top,
                    recovered,
                })
            }
        }
    }

    /// SUBSCRIBEs to the channel and reads where it stands (the baseline the
    /// listener checks later offsets against).
    async fn listen(self: Arc<Self>, channel: ChannelName) -> Result<(), String> {
        // The caller wraps the message in an `EngineError` again.
        let message = |e: EngineError| match e {
            EngineError::Unavailable(m) => m,
        };
        self.check_up().map_err(message)?;
        let mut conn = self.conn.clone();
        conn.subscribe(self.pubsub(&channel))
            .await
            .map_err(|e| e.to_string())?;
        let (top, _, _) = self.read(&channel, "last", 0, 0).await.map_err(message)?;
        if let Some(listen) = lock(&self.listening).get_mut(&channel) {
            listen
                .last
                .get_or_insert((Arc::from(top.epoch.as_str()), top.offset));
        }
        Ok(())
    }

    fn subscribe(self: &Arc<Self>, channel: &ChannelName) -> Ready {
        let mut listening = lock(&self.listening);
        if let Some(listen) = listening.get_mut(channel) {
            listen.count += 1;
            return listen.ready.clone();
        }
        let inner = self.clone();
        let name = channel.clone();
        let task = self.rt.spawn(inner.listen(name));
        let ready: Ready = async move { task.await.map_err(|e| e.to_string())? }
            .boxed()
            .shared();
        listening.insert(
            channel.clone(),
            Listen {
                count: 1,
                ready: ready.clone(),
                last: None,
            },
        );
        self.channels_active.set(listening.len() as i64);
        ready
    }

    fn unsubscribe(self: &Arc<Self>, channel: &ChannelName) {
        let mut listening = lock(&self.listening);
        let Some(listen) = listening.get_mut(channel) else {
            return;
        };
        listen.count -= 1;
        if listen.count > 0 {
            return;
        }
        listening.remove(channel);
        self.channels_active.set(listening.len() as i64);
        let name = self.pubsub(channel);
        let mut conn = self.conn.clone();
        self.rt.spawn(async move {
            if let Err(e) = conn.unsubscribe(name).await {
                // The connection dropped: the new one is not subscribed.
                log::debug!("redis: unsubscribe failed: {e}");
            }
        });
    }

    fn member_json(&self, member: &Member) -> String {
        // Two strings cannot fail to serialize.
        serde_json::to_string(member).unwrap_or_default()
    }

    async fn presence_add(&self, channel: ChannelName, member: Member) -> Result<(), EngineError> {
        self.check_up()?;
        let json = self.member_json(&member);
        let key = self.key("p", &channel);
        let expires = super::now_ms() + self.presence_ttl.as_millis() as u64;
        let mut conn = self.conn.clone();
        let _: i64 = scripts::JOIN
            .key(&key)
            .arg(expires)
            .arg(&json)
            .arg(self.pubsub(&channel))
            .arg(self.presence_ttl.as_millis() as u64 * 2)
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)?;
        lock(&self.members).insert((channel, json), key);
        Ok(())
    }

    async fn presence_remove(
        &self,
        channel: ChannelName,
        member: Member,
    ) -> Result<(), EngineError> {
        let json = self.member_json(&member);
        lock(&self.members).remove(&(channel.clone(), json.clone()));
        self.check_up()?;
        let mut conn = self.conn.clone();
        let _: i64 = scripts::LEAVE
            .key(self.key("p", &channel))
            .arg(&json)
            .arg(self.pubsub(&channel))
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn presence(&self, channel: ChannelName) -> Result<Vec<Member>, EngineError> {
        self.check_up()?;
        let mut conn = self.conn.clone();
        let members: Vec<String> = scripts::PRESENCE
            .key(self.key("p", &channel))
            .arg(super::now_ms())
            .arg(self.pubsub(&channel))
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(members
            .iter()
            .filter_map(|m| serde_json::from_str(m).ok())
            .collect())
    }

    async fn channel_state(
        &self,
        channel: &ChannelName,
    ) -> Result<Option<ChannelState>, EngineError> {
        let (top, _, _) = self.read(channel, "last", 0, 0).await?;
        if top.epoch.is_empty() {
            return Ok(None);
        }
        let mut conn = self.conn.clone();
        let kept: usize = redis::cmd("XLEN")
            .arg(self.key("s", channel))
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(Some(ChannelState {
            channel: channel.clone(),
            top,
            kept,
        }))
    }

    async fn channels(&self, only: Option<ChannelName>) -> Result<Vec<ChannelState>, EngineError> {
        self.check_up()?;
        if let Some(channel) = only {
            return Ok(self.channel_state(&channel).await?.into_iter().collect());
        }
        let pattern = format!("{}:m:*", self.prefix);
        let mut conn = self.conn.clone();
        let mut names = Vec::new();
        let mut cursor: u64 = 0;
        loop {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut conn)
                .await
                .map_err(unavailable)?;
            let meta_prefix = format!("{}:m:", self.prefix);
            names.extend(
                keys.iter()
                    .filter_map(|k| k.strip_prefix(meta_prefix.as_str()))
                    .filter_map(|n| ChannelName::parse(n).ok()),
            );
            cursor = next;
            if cursor == 0 || names.len() >= MAX_LISTED {
                break;
            }
        }
        names.sort();
        names.dedup();
        let mut all = Vec::with_capacity(names.len());
        for name in names.into_iter().take(MAX_LISTED) {
            if let Some(state) = self.channel_state(&name).await? {
                all.push(state);
            }
        }
        Ok(all)
    }

    /// Keeps this node's presence members alive, and ends receipts whose
    /// publication will not come back (the channel was left meanwhile).
    async fn refresh(&self) {
        let stale = Instant::now() - Duration::from_secs(5);
        lock(&self.receipts).retain(|_, (receipt, at)| {
            let keep = *at > stale;
            if !keep {
                receipt.expect(0);
            }
            keep
        });
        if !self.up.load(Ordering::Acquire) {
            return;
        }
        let members: Vec<((ChannelName, String), String)> = lock(&self.members)
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        if members.is_empty() {
            return;
        }
        let expires = super::now_ms() + self.presence_ttl.as_millis() as u64;
        let mut pipe = redis::pipe();
        for ((_, json), key) in &members {
            // Not `XX`: a Redis that restarted empty gets them back.
            pipe.cmd("ZADD").arg(key).arg(expires).arg(json).ignore();
            pipe.cmd("PEXPIRE")
                .arg(key)
                .arg(self.presence_ttl.as_millis() as u64 * 2)
                .ignore();
        }
        let mut conn = self.conn.clone();
        if let Err(e) = pipe.query_async::<()>(&mut conn).await {
            log::warn!("redis: presence refresh failed: {e}");
        }
    }
}

/// The engine handle given to the channel service.
pub struct RedisEngine {
    inner: Arc<Inner>,
}

impl RedisEngine {
    /// Starts the `wsd-redis` thread, its connection (which connects and
    /// reconnects in the background: an unreachable Redis is not an error
    /// here, the engine is just down until it answers) and its listener.
    pub fn start(
        config: &RedisConfig,
        sink: Arc<dyn Sink>,
        metrics: RedisMetrics,
        channels_active: Gauge,
    ) -> Result<Arc<RedisEngine>, String> {
        let info = config
            .url
            .as_str()
            .into_connection_info()
            .map_err(|e| e.to_string())?;
        let settings = info
            .redis_settings()
            .clone()
            .set_protocol(ProtocolVersion::RESP3);
        let client =
            redis::Client::open(info.set_redis_settings(settings)).map_err(|e| e.to_string())?;
        let (push_tx, push_rx) = tokio::sync::mpsc::unbounded_channel();
        let manager_config = ConnectionManagerConfig::new()
            .set_push_sender(push_tx)
            .set_response_timeout(Some(RESPONSE_TIMEOUT))
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_secs(1));
        let (tx, rx) = std::sync::mpsc::channel();
        let node = super::memory::new_epoch().to_string();
        let prefix = config.prefix.clone();
        let presence_ttl = config.presence_ttl;
        std::thread::Builder::new()
            .name("wsd-redis".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = tx.send(Err(e.to_string()));
                        return;
                    }
                };
                rt.block_on(async move {
                    let conn = match ConnectionManager::new_lazy_with_config(client, manager_config)
                    {
                        Ok(conn) => conn,
                        Err(e) => {
                            let _ = tx.send(Err(e.to_string()));
                            return;
                        }
                    };
                    let inner = Arc::new(Inner {
                        rt: Handle::current(),
                        conn,
                        prefix,
                        node,
                        presence_ttl,
                        sink,
                        up: AtomicBool::new(false),
                        listening: Mutex::new(HashMap::new()),
                        receipts: Mutex::new(HashMap::new()),
                        seq: AtomicU64::new(0),
                        members: Mutex::new(HashMap::new()),
                        metrics,
                        channels_active,
                    });
                    let weak = Arc::downgrade(&inner);
                    let _ = tx.send(Ok(inner));
                    listener::run(weak, push_rx).await;
                });
            })
            .map_err(|e| e.to_string())?;
        let inner = rx
            .recv()
            .map_err(|_| "the redis thread did not start".to_string())??;
        Ok(Arc::new(RedisEngine { inner }))
    }

    /// Runs `f` on the redis thread; the caller awaits its answer anywhere.
    fn spawn<T, F>(&self, f: impl FnOnce(Arc<Inner>) -> F) -> EngineFuture<T>
    where
        T: Send + 'static,
        F: std::future::Future<Output = Result<T, EngineError>> + Send + 'static,
    {
        let task = self.inner.rt.spawn(f(self.inner.clone()));
        Box::pin(async move { task.await.map_err(unavailable)? })
    }
}

impl Engine for RedisEngine {
    fn publish(&self, request: PublishRequest) -> EngineFuture<Published> {
        self.spawn(|inner| async move { inner.publish(request).await })
    }

    fn subscribe(&self, channel: &ChannelName) -> EngineFuture<()> {
        let ready = self.inner.subscribe(channel);
        let inner = self.inner.clone();
        let channel = channel.clone();
        Box::pin(async move {
            match ready.await {
                Ok(()) => Ok(()),
                Err(e) => {
                    inner.unsubscribe(&channel);
                    Err(EngineError::Unavailable(e))
                }
            }
        })
    }

    fn unsubscribe(&self, channel: &ChannelName) {
        self.inner.unsubscribe(channel);
    }

    fn history(&self, channel: &ChannelName, query: HistoryQuery) -> EngineFuture<History> {
        let channel = channel.clone();
        self.spawn(|inner| async move { inner.history(&channel, query).await })
    }

    fn presence_add(&self, channel: &ChannelName, member: Member) -> EngineFuture<()> {
        let channel = channel.clone();
        self.spawn(|inner| async move { inner.presence_add(channel, member).await })
    }

    fn presence_remove(&self, channel: &ChannelName, member: Member) -> EngineFuture<()> {
        let channel = channel.clone();
        self.spawn(|inner| async move { inner.presence_remove(channel, member).await })
    }

    fn presence(&self, channel: &ChannelName) -> EngineFuture<Vec<Member>> {
        let channel = channel.clone();
        self.spawn(|inner| async move { inner.presence(channel).await })
    }

    fn channels(&self, only: Option<&ChannelName>) -> EngineFuture<Vec<ChannelState>> {
        let only = only.cloned();
        self.spawn(|inner| async move { inner.channels(only).await })
    }

    fn health(&self) -> Health {
        if self.inner.up.load(Ordering::Acquire) {
            Health::Up
        } else {
            Health::Down
        }
    }

    fn node_id(&self) -> Option<&str> {
        Some(&self.inner.node)
    }
}
