//! [`Channels`]: this node's channel service, what sessions and the HTTP API
//! call. It joins the rules, the engine, the router and this thread's hub.
//!
//! Subscribing is three steps, so that replay and live deliveries meet
//! without gap or duplicate: [`join`](Channels::join) (synchronous: counted,
//! limited, added to the hub as pending), [`prepare`](Channels::prepare)
//! (the engine listens, then the history is read), and
//! [`activate`](Channels::activate) (after the caller queued its reply: the
//! replay, then what arrived meanwhile).

use std::rc::Rc;
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::oneshot;

use super::ChannelName;
use super::error::{ChannelError, ErrorCode};
use super::hub::{Hub, Subscriber};
use super::metrics::{ChannelMetrics, Source};
use super::router::Router;
use super::rules::{self, Rules};
use crate::config::{ChannelsConfig, EngineConfig, EngineKind, NamespaceConfig};
use crate::engine::{
    ChannelState, Engine, Format, Health, History, HistoryQuery, Kind, Member, MemoryEngine,
    Position, PublishRequest, Published, Receipt, RedisEngine, RedisMetrics,
};

/// Where a new subscription starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Start {
    /// With the next publication.
    Live,
    /// After `since`, if all that followed it is kept; else live.
    Since(Position),
    /// With the last `n` publications kept.
    Last(usize),
    /// After a position read when the client connected, so that the
    /// connection is live from its upgrade on: what followed is replayed if
    /// it is kept, and otherwise delivery starts live, as for `Live` (this
    /// is not a recovery the client asked for).
    After(Position),
}

/// A publication to make.
#[derive(Debug)]
pub struct Publish {
    pub channel: ChannelName,
    pub kind: Kind,
    pub data: Bytes,
    pub source: Source,
    pub idempotency_key: Option<String>,
}

/// A channel as `GET /channels` describes it.
#[derive(Debug, Clone)]
pub struct ChannelInfo {
    pub channel: ChannelName,
    /// Subscribers on this node.
    pub subscribers: usize,
    pub top: Option<Position>,
    pub kept: usize,
}

pub struct Channels {
    rules: Rules,
    engine: Arc<dyn Engine>,
    router: Arc<Router>,
    metrics: ChannelMetrics,
}

impl Channels {
    /// Starts the service on the configured engine (call inside a tokio
    /// runtime: the memory engine's sweeper runs on it). The Redis engine
    /// starts even when Redis is unreachable (it is down until it answers);
    /// only a URL it cannot use at all is an error.
    pub fn start(
        config: &ChannelsConfig,
        engine: &EngineConfig,
        metrics: ChannelMetrics,
        redis_metrics: RedisMetrics,
    ) -> Result<Arc<Channels>, String> {
        let router = Arc::new(Router::new(metrics.subscriptions_active.clone()));
        let active = metrics.channels_active.clone();
        let engine: Arc<dyn Engine> = match engine.kind {
            EngineKind::Memory => MemoryEngine::start(router.clone(), active),
            EngineKind::Redis => {
                RedisEngine::start(&engine.redis, router.clone(), redis_metrics, active)?
            }
        };
        Ok(Arc::new(Channels {
            rules: Rules::new(&config.namespace),
            engine,
            router,
            metrics,
        }))
    }

    /// This node's id when several share the engine (see
    /// [`Engine::node_id`]).
    pub fn node_id(&self) -> Option<&str> {
        self.engine.node_id()
    }

    pub fn rules(&self) -> &Rules {
        &self.rules
    }

    pub fn health(&self) -> Health {
        self.engine.health()
    }

    pub fn channel_count(&self) -> i64 {
        self.metrics.channels_active.get()
    }

    /// Subscribers of `channel` on this node.
    pub fn local_subscribers(&self, channel: &ChannelName) -> usize {
        self.router.subscribers(channel)
    }

    fn hub(&self) -> Rc<Hub> {
        Hub::current(&self.router, &self.metrics)
    }

    /// Adds a pending subscriber `key` to `channel` on this thread's hub.
    /// The result says whether this node must start listening (pass it to
    /// [`prepare`](Channels::prepare)).
    pub fn join(
        &self,
        channel: &ChannelName,
        ns: &NamespaceConfig,
        key: u64,
        subscriber: Rc<dyn Subscriber>,
        format: Format,
    ) -> Result<bool, ChannelError> {
        let hub = self.hub();
        if hub.has(channel, key) {
            return Err(ChannelError::new(
                ErrorCode::BadRequest,
                format!("already subscribed to {channel:?}"),
            ));
        }
        let new_hub = self
            .router
            .join(channel, hub.handle(), ns.max_subscribers)
            .map_err(|limit| {
                ChannelError::new(
                    ErrorCode::Limit,
                    format!(
                        "channel {channel:?} is full (max_subscribers = {})",
                        limit.0
                    ),
                )
            })?;
        hub.join(channel, key, subscriber, format);
        log::debug!("subscriber {key} joined {channel}");
        Ok(new_hub)
    }

    /// Makes the engine listen (when `new_hub`), then reads where the
    /// subscription starts.
    pub async fn prepare(
        self: Arc<Self>,
        channel: ChannelName,
        new_hub: bool,
        start: Start,
    ) -> Result<History, ChannelError> {
        if new_hub {
            self.engine.subscribe(&channel).await?;
        }
        let query = match start {
            Start::Live => HistoryQuery::Last(0),
            Start::Last(n) => HistoryQuery::Last(n),
            Start::Since(since) | Start::After(since) => HistoryQuery::Since { since, limit: 0 },
        };
        Ok(self.engine.history(&channel, query).await?)
    }

    /// Where `channel` stands now (offset 0 and no epoch if it does not
    /// exist yet).
    pub async fn position(&self, channel: &ChannelName) -> Result<Position, ChannelError> {
        Ok(self
            .engine
            .history(channel, HistoryQuery::Last(0))
            .await?
            .top)
    }

    /// Queues the replay and what arrived meanwhile; `None` if the
    /// subscriber overflowed doing so.
    pub fn activate(&self, channel: &ChannelName, key: u64, history: &History) -> Option<usize> {
        self.hub()
            .activate(channel, key, &history.publications, &history.top)
    }

    /// Removes subscriber `key` from `channel`; false if it was not there.
    pub fn leave(&self, channel: &ChannelName, key: u64) -> bool {
        let hub = self.hub();
        let Some(hub_done) = hub.leave(channel, key) else {
            return false;
        };
        self.router.leave(channel, hub.handle().id, hub_done);
        if hub_done {
            self.engine.unsubscribe(channel);
        }
        log::debug!("subscriber {key} left {channel}");
        true
    }

    /// Publishes. The engine takes the publication when this is called (not
    /// when the future is first polled), so calls made in order publish in
    /// order. With `count`, the answer waits for the local hubs to report
    /// how many sessions it was queued to.
    pub fn publish(
        &self,
        publish: Publish,
        count: bool,
    ) -> impl Future<Output = Result<(Published, Option<usize>), ChannelError>> + use<> {
        let retention = self.rules.namespace(&publish.channel).map(rules::retention);
        let (receipt, counted) = if count {
            let (r, rx) = Receipt::new();
            (Some(r), Some(rx))
        } else {
            (None, None)
        };
        let source = publish.source;
        let metrics = self.metrics.clone();
        let started = retention.map(|retention| {
            self.engine.publish(PublishRequest {
                channel: publish.channel,
                kind: publish.kind,
                data: publish.data,
                retention,
                idempotency_key: publish.idempotency_key,
                receipt,
            })
        });
        async move {
            let published = started?.await?;
            if !published.duplicate {
                metrics.published(source);
            }
            let delivered = match counted {
                Some(rx) if !published.duplicate => Some(wait_count(rx).await),
                Some(_) => Some(0),
                None => None,
            };
            Ok((published, delivered))
        }
    }

    pub async fn history(
        &self,
        channel: &ChannelName,
        query: HistoryQuery,
    ) -> Result<History, ChannelError> {
        Ok(self.engine.history(channel, query).await?)
    }

    pub async fn presence(&self, channel: &ChannelName) -> Result<Vec<Member>, ChannelError> {
        Ok(self.engine.presence(channel).await?)
    }

    pub fn presence_add(
        &self,
        channel: &ChannelName,
        member: Member,
    ) -> impl Future<Output = Result<(), ChannelError>> + use<> {
        let f = self.engine.presence_add(channel, member);
        async move { Ok(f.await?) }
    }

    pub fn presence_remove(
        &self,
        channel: &ChannelName,
        member: Member,
    ) -> impl Future<Output = Result<(), ChannelError>> + use<> {
        let f = self.engine.presence_remove(channel, member);
        async move { Ok(f.await?) }
    }

    /// Every channel that exists, or one, with its local subscriber count.
    pub async fn list(&self, only: Option<&ChannelName>) -> Result<Vec<ChannelInfo>, ChannelError> {
        let states: Vec<ChannelState> = self.engine.channels(only).await?;
        let mut infos: Vec<ChannelInfo> = states
            .into_iter()
            .map(|s| ChannelInfo {
                subscribers: self.router.subscribers(&s.channel),
                channel: s.channel,
                top: Some(s.top),
                kept: s.kept,
            })
            .collect();
        // Channels with local subscribers that the engine does not list (a
        // networked engine lists its own view).
        let local = match only {
            Some(c) => vec![(c.clone(), self.router.subscribers(c))],
            None => self.router.all(),
        };
        for (channel, subscribers) in local {
            if subscribers > 0 && !infos.iter().any(|i| i.channel == channel) {
                infos.push(ChannelInfo {
                    channel,
                    subscribers,
                    top: None,
                    kept: 0,
                });
            }
        }
        infos.sort_by(|a, b| a.channel.cmp(&b.channel));
        Ok(infos)
    }
}

/// How long a publish answer waits for the hubs' counts. Hubs only queue, so
/// this is reached only by a worker that is stuck.
const COUNT_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

async fn wait_count(rx: oneshot::Receiver<usize>) -> usize {
    match tokio::time::timeout(COUNT_WAIT, rx).await {
        Ok(Ok(n)) => n,
        _ => 0,
    }
}
