//! The embedded engine: channels in this process's memory, for a single
//! `wsd` instance. Its epochs are new on every start, so a client's offsets
//! from before a restart are never trusted.
//!
//! Channels are spread over [`SHARDS`] mutex-guarded maps, so publishers on
//! different channels rarely meet. A publish holds its channel's shard for
//! the O(1) work of taking an offset, appending to history and handing the
//! publication to the sink (which only queues it per worker), and that is
//! what makes offsets, history and delivery order agree.

use std::collections::hash_map::{Entry, RandomState};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::hash::BuildHasher;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use base64::Engine as _;
use prometheus_client::metrics::gauge::Gauge;

use super::{
    ChannelState, Delivery, Engine, EngineFuture, Health, History, HistoryQuery, Member, Position,
    PresenceEvent, Publication, PublishRequest, Published, Sink,
};
use crate::channels::ChannelName;

/// Independent channel maps; a power of two.
const SHARDS: usize = 64;

/// How long an idempotency key is remembered.
pub const IDEMPOTENCY_WINDOW: Duration = Duration::from_secs(300);

/// Idempotency keys remembered per channel; the oldest go first beyond this.
const MAX_KEYS: usize = 10_000;

/// How often expired history is dropped even on channels nobody touches.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

struct Kept {
    publication: Arc<Publication>,
    expires: Instant,
}

/// One channel.
struct State {
    epoch: Arc<str>,
    top: u64,
    history: VecDeque<Kept>,
    /// How many times this node subscribed to it.
    listeners: usize,
    /// Presence, by connection id.
    members: BTreeMap<String, Member>,
    keys: HashMap<String, Published>,
    key_order: VecDeque<(String, Instant)>,
}

impl State {
    fn new() -> State {
        State {
            epoch: new_epoch(),
            top: 0,
            history: VecDeque::new(),
            listeners: 0,
            members: BTreeMap::new(),
            keys: HashMap::new(),
            key_order: VecDeque::new(),
        }
    }

    fn prune(&mut self, now: Instant) {
        while self.history.front().is_some_and(|k| k.expires <= now) {
            self.history.pop_front();
        }
        while let Some((key, at)) = self.key_order.front() {
            if now.duration_since(*at) < IDEMPOTENCY_WINDOW && self.key_order.len() <= MAX_KEYS {
                break;
            }
            self.keys.remove(key);
            self.key_order.pop_front();
        }
    }

    /// Nothing left that makes the channel exist.
    fn idle(&self) -> bool {
        self.listeners == 0
            && self.history.is_empty()
            && self.members.is_empty()
            && self.keys.is_empty()
    }

    fn position(&self) -> Position {
        Position {
            offset: self.top,
            epoch: self.epoch.to_string(),
        }
    }
}

/// A random epoch: 9 bytes, as 12 URL-safe characters.
pub(super) fn new_epoch() -> Arc<str> {
    let mut bytes = [0u8; 9];
    if getrandom::fill(&mut bytes).is_err() {
        // No OS randomness: fall back on the clock, which still differs
        // between two starts.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        bytes.copy_from_slice(&nanos.to_le_bytes()[..9]);
    }
    Arc::from(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

type Shard = HashMap<ChannelName, State>;

/// The in-memory engine.
pub struct MemoryEngine {
    shards: Box<[Mutex<Shard>]>,
    hasher: RandomState,
    sink: Arc<dyn Sink>,
    /// Channels that exist, for `wsd_channels_active`.
    active: Gauge,
}

impl MemoryEngine {
    /// An engine delivering into `sink`; `active` tracks its channel count.
    /// Starts the task that drops expired history (so call it inside a tokio
    /// runtime).
    pub fn start(sink: Arc<dyn Sink>, active: Gauge) -> Arc<MemoryEngine> {
        let engine = Arc::new(MemoryEngine {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            hasher: RandomState::new(),
            sink,
            active,
        });
        let weak = Arc::downgrade(&engine);
        tokio::spawn(sweep(weak));
        engine
    }

    fn shard(&self, channel: &ChannelName) -> MutexGuard<'_, Shard> {
        let i = self.hasher.hash_one(channel.as_str()) as usize & (SHARDS - 1);
        // A panic while holding a shard leaves plain data in a usable state
        // (no invariant spans two fields mid-update that a reader could
        // trust), so a poisoned lock is taken over rather than spread.
        self.shards[i].lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `f` on the channel's state, creating it if needed, and drops the
    /// state afterwards if nothing keeps the channel alive.
    fn with<T>(&self, channel: &ChannelName, f: impl FnOnce(&mut State, Instant) -> T) -> T {
        let now = Instant::now();
        let mut shard = self.shard(channel);
        let (result, idle) = match shard.entry(channel.clone()) {
            Entry::Occupied(mut e) => {
                let state = e.get_mut();
                state.prune(now);
                let result = f(state, now);
                let idle = state.idle();
                if idle {
                    e.remove();
                }
                (result, idle)
            }
            Entry::Vacant(e) => {
                let mut state = State::new();
                let result = f(&mut state, now);
                let idle = state.idle();
                if !idle {
                    e.insert(state);
                    self.active.inc();
                }
                // A state created and dropped at once was never counted.
                return result;
            }
        };
        if idle {
            self.active.dec();
        }
        result
    }

    /// Reads the channel's state if it exists, without creating it.
    fn peek<T>(&self, channel: &ChannelName, f: impl FnOnce(Option<&State>) -> T) -> T {
        let now = Instant::now();
        let mut shard = self.shard(channel);
        if let Some(state) = shard.get_mut(channel) {
            state.prune(now);
        }
        f(shard.get(channel))
    }

    fn sweep_once(&self) {
        let now = Instant::now();
        for shard in self.shards.iter() {
            let mut shard = shard.lock().unwrap_or_else(|e| e.into_inner());
            let before = shard.len();
            shard.retain(|_, state| {
                state.prune(now);
                !state.idle()
            });
            let dropped = before - shard.len();
            if dropped > 0 {
                self.active.dec_by(dropped as i64);
            }
        }
    }
}

async fn sweep(engine: Weak<MemoryEngine>) {
    let mut every = tokio::time::interval(SWEEP_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        match engine.upgrade() {
            Some(engine) => engine.sweep_once(),
            None => return,
        }
    }
}

fn ready<T: Send + 'static>(value: T) -> EngineFuture<T> {
    Box::pin(std::future::ready(Ok(value)))
}

impl Engine for MemoryEngine {
    fn publish(&self, request: PublishRequest) -> EngineFuture<Published> {
        let accepted = Instant::now();
        let published = self.with(&request.channel, |state, now| {
            if let Some(first) = request
                .idempotency_key
                .as_ref()
                .and_then(|key| state.keys.get(key))
            {
                return Published {
                    duplicate: true,
                    ..first.clone()
                };
            }
            state.top += 1;
            let publication = Arc::new(Publication::new(
                request.channel.clone(),
                state.top,
                state.epoch.clone(),
                request.kind,
                request.data,
                accepted,
            ));
            let retention = request.retention;
            if retention.size > 0 {
                state.history.push_back(Kept {
                    publication: publication.clone(),
                    expires: now + retention.ttl,
                });
                while state.history.len() > retention.size {
                    state.history.pop_front();
                }
            }
            let published = Published {
                offset: state.top,
                epoch: state.epoch.clone(),
                duplicate: false,
            };
            if let Some(key) = request.idempotency_key {
                state.keys.insert(key.clone(), published.clone());
                state.key_order.push_back((key, now));
                state.prune(now);
            }
            // Under the shard's lock: the sink sees this channel's
            // publications in offset order.
            self.sink
                .deliver(Delivery::Publication(publication, request.receipt));
            published
        });
        ready(published)
    }

    fn subscribe(&self, channel: &ChannelName) -> EngineFuture<()> {
        self.with(channel, |state, _| state.listeners += 1);
        ready(())
    }

    fn unsubscribe(&self, channel: &ChannelName) {
        self.with(channel, |state, _| {
            state.listeners = state.listeners.saturating_sub(1);
        });
    }

    fn history(&self, channel: &ChannelName, query: HistoryQuery) -> EngineFuture<History> {
        let history = self.peek(channel, |state| {
            let Some(state) = state else {
                // A channel that does not exist has no history; its epoch is
                // not known yet, so no position can be recovered.
                return History {
                    publications: Vec::new(),
                    top: Position {
                        offset: 0,
                        epoch: String::new(),
                    },
                    recovered: false,
                };
            };
            let kept = |skip: usize, take: usize| -> Vec<Arc<Publication>> {
                state
                    .history
                    .iter()
                    .skip(skip)
                    .take(take)
                    .map(|k| k.publication.clone())
                    .collect()
            };
            match query {
                HistoryQuery::Last(n) => History {
                    publications: kept(state.history.len().saturating_sub(n), n),
                    top: state.position(),
                    recovered: true,
                },
                HistoryQuery::Since { since, limit } => {
                    let first = state
                        .history
                        .front()
                        .map_or(state.top + 1, |k| k.publication.offset);
                    let missed = state.top.saturating_sub(since.offset) as usize;
                    let complete = (*since.epoch == *state.epoch || since.is_beginning())
                        && since.offset <= state.top
                        && since.offset + 1 >= first
                        && (limit == 0 || missed <= limit);
                    let publications = if complete {
                        kept(state.history.len() - missed, missed)
                    } else {
                        Vec::new()
                    };
                    History {
                        publications,
                        top: state.position(),
                        recovered: complete,
                    }
                }
            }
        });
        ready(history)
    }

    fn presence_add(&self, channel: &ChannelName, member: Member) -> EngineFuture<()> {
        self.with(channel, |state, _| {
            state.members.insert(member.conn.clone(), member.clone());
            let event = PresenceEvent::new(channel.clone(), true, member);
            self.sink.deliver(Delivery::Presence(Arc::new(event)));
        });
        ready(())
    }

    fn presence_remove(&self, channel: &ChannelName, member: Member) -> EngineFuture<()> {
        self.with(channel, |state, _| {
            if state.members.remove(&member.conn).is_some() {
                let event = PresenceEvent::new(channel.clone(), false, member);
                self.sink.deliver(Delivery::Presence(Arc::new(event)));
            }
        });
        ready(())
    }

    fn presence(&self, channel: &ChannelName) -> EngineFuture<Vec<Member>> {
        let members = self.peek(channel, |state| {
            state.map_or_else(Vec::new, |s| s.members.values().cloned().collect())
        });
        ready(members)
    }

    fn channels(&self, only: Option<&ChannelName>) -> EngineFuture<Vec<ChannelState>> {
        let describe = |channel: &ChannelName, state: &State| ChannelState {
            channel: channel.clone(),
            top: state.position(),
            kept: state.history.len(),
        };
        let list = match only {
            Some(channel) => self.peek(channel, |state| {
                state.map(|s| describe(channel, s)).into_iter().collect()
            }),
            None => {
                let mut all = Vec::new();
                for shard in self.shards.iter() {
                    let shard = shard.lock().unwrap_or_else(|e| e.into_inner());
                    all.extend(shard.iter().map(|(c, s)| describe(c, s)));
                }
                all.sort_by(|a, b| a.channel.cmp(&b.channel));
                all
            }
        };
        ready(list)
    }

    fn health(&self) -> Health {
        Health::Up
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{Kind, Retention};
    use bytes::Bytes;

    #[derive(Default)]
    struct Collect(Mutex<Vec<Delivery>>);

    impl Sink for Collect {
        fn deliver(&self, delivery: Delivery) {
            self.0.lock().unwrap().push(delivery);
        }
    }

    fn name(s: &str) -> ChannelName {
        ChannelName::parse(s).unwrap()
    }

    fn request(channel: &str, data: &'static str, size: usize) -> PublishRequest {
        PublishRequest {
            channel: name(channel),
            kind: Kind::Text,
            data: Bytes::from_static(data.as_bytes()),
            retention: Retention {
                size,
                ttl: Duration::from_secs(60),
            },
            idempotency_key: None,
            receipt: None,
        }
    }

    async fn engine() -> (Arc<MemoryEngine>, Arc<Collect>) {
        let sink = Arc::new(Collect::default());
        (MemoryEngine::start(sink.clone(), Gauge::default()), sink)
    }

    #[tokio::test]
    async fn offsets_grow_and_history_keeps_the_last_ones() {
        let (engine, sink) = engine().await;
        for i in 1..=5u64 {
            let p = engine.publish(request("c", "x", 3)).await.unwrap();
            assert_eq!(p.offset, i);
        }
        assert_eq!(sink.0.lock().unwrap().len(), 5);
        let h = engine
            .history(&name("c"), HistoryQuery::Last(10))
            .await
            .unwrap();
        let offsets: Vec<u64> = h.publications.iter().map(|p| p.offset).collect();
        assert_eq!(offsets, [3, 4, 5]);
        assert_eq!(h.top.offset, 5);
    }

    #[tokio::test]
    async fn recovery_is_all_or_nothing() {
        let (engine, _) = engine().await;
        let first = engine.publish(request("c", "x", 3)).await.unwrap();
        for _ in 0..4 {
            engine.publish(request("c", "x", 3)).await.unwrap();
        }
        let epoch = first.epoch.to_string();
        let since = |offset: u64, epoch: &str| HistoryQuery::Since {
            since: Position {
                offset,
                epoch: epoch.into(),
            },
            limit: 0,
        };
        // Kept: 3, 4, 5.
        let h = engine.history(&name("c"), since(2, &epoch)).await.unwrap();
        assert!(h.recovered);
        assert_eq!(h.publications.len(), 3);
        let h = engine.history(&name("c"), since(5, &epoch)).await.unwrap();
        assert!(h.recovered && h.publications.is_empty());
        for (offset, epoch) in [(1, epoch.as_str()), (3, "other"), (9, epoch.as_str())] {
            let h = engine
                .history(&name("c"), since(offset, epoch))
                .await
                .unwrap();
            assert!(!h.recovered, "{offset} {epoch}");
            assert!(h.publications.is_empty());
        }
    }

    #[tokio::test]
    async fn an_idempotency_key_lands_once() {
        let (engine, sink) = engine().await;
        let keyed = || PublishRequest {
            idempotency_key: Some("k1".into()),
            ..request("c", "x", 0)
        };
        let a = engine.publish(keyed()).await.unwrap();
        let b = engine.publish(keyed()).await.unwrap();
        assert_eq!(a.offset, b.offset);
        assert!(!a.duplicate && b.duplicate);
        assert_eq!(sink.0.lock().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn a_channel_without_listeners_or_history_is_forgotten_with_its_epoch() {
        let sink = Arc::new(Collect::default());
        let active = Gauge::default();
        let engine = MemoryEngine::start(sink, active.clone());
        let c = name("c");
        engine.subscribe(&c).await.unwrap();
        let a = engine.publish(request("c", "x", 0)).await.unwrap();
        assert_eq!(active.get(), 1);
        engine.unsubscribe(&c);
        assert_eq!(active.get(), 0);
        engine.subscribe(&c).await.unwrap();
        let b = engine.publish(request("c", "x", 0)).await.unwrap();
        assert_ne!(a.epoch, b.epoch);
        assert_eq!(b.offset, 1);
    }

    #[tokio::test]
    async fn presence_tells_joins_and_leaves() {
        let (engine, sink) = engine().await;
        let c = name("p");
        let m = Member {
            user: "u".into(),
            conn: "1".into(),
        };
        engine.presence_add(&c, m.clone()).await.unwrap();
        assert_eq!(engine.presence(&c).await.unwrap(), std::slice::from_ref(&m));
        engine.presence_remove(&c, m.clone()).await.unwrap();
        assert!(engine.presence(&c).await.unwrap().is_empty());
        let events: Vec<bool> = sink
            .0
            .lock()
            .unwrap()
            .iter()
            .map(|d| match d {
                Delivery::Presence(e) => e.join,
                other => panic!("not a presence event: {other:?}"),
            })
            .collect();
        assert_eq!(events, [true, false]);
    }
}
