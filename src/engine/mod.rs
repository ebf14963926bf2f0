//! The engine seam: where channels keep their offsets, history and presence,
//! and how a publication reaches every node that has subscribers for it.
//!
//! - `publication`: the data that crosses the seam ([`Publication`],
//!   [`Delivery`], [`Position`], [`Member`]).
//! - `memory`: the embedded in-memory engine, for one instance (the default).
//! - `redis/`: several instances sharing channels through Redis.
//!
//! A node (one `wsd` process) tells the engine which channels it listens to
//! ([`Engine::subscribe`]); the engine hands each publication on such a
//! channel to the node's [`Sink`] in offset order. An engine shared by
//! several nodes (Redis) does the same for each of them.

mod memory;
mod publication;
mod redis;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

pub use memory::MemoryEngine;
pub use publication::{
    Delivery, Format, Frame, Gap, Kind, Member, Position, PresenceEvent, Publication, Receipt,
    now_ms, text_frame,
};
pub use redis::{RedisEngine, RedisMetrics};

use crate::channels::ChannelName;

/// What an engine operation returns: boxed so that the trait is object-safe
/// and the engine can be chosen by the config.
pub type EngineFuture<T> = Pin<Box<dyn Future<Output = Result<T, EngineError>> + Send>>;

/// An engine operation that failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum EngineError {
    /// The engine cannot be reached (a networked engine is down).
    #[error("engine unavailable: {0}")]
    Unavailable(String),
}

/// Where this node's share of the deliveries goes (the channel router).
pub trait Sink: Send + Sync + 'static {
    /// Hands a delivery on. Called in offset order per channel.
    fn deliver(&self, delivery: Delivery);
}

/// How a channel's history is kept: its namespace's rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Publications kept; 0 keeps none.
    pub size: usize,
    pub ttl: Duration,
}

/// One publication to make.
#[derive(Debug)]
pub struct PublishRequest {
    pub channel: ChannelName,
    pub kind: Kind,
    pub data: Bytes,
    pub retention: Retention,
    /// A retried publish with the same key (within a few minutes) lands
    /// once: the second answers with the first's offset.
    pub idempotency_key: Option<String>,
    /// Counts local deliveries, for the HTTP answer.
    pub receipt: Option<Arc<Receipt>>,
}

/// What a publish answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    pub offset: u64,
    pub epoch: Arc<str>,
    /// The idempotency key was seen before: nothing new was published.
    pub duplicate: bool,
}

/// Which part of a channel's history to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HistoryQuery {
    /// Everything after this position, if all of it is still kept;
    /// otherwise nothing (never a partial replay). Offset 0 with no epoch
    /// is the channel's beginning, in whatever epoch it has. At most `limit` (0 = no
    /// limit) publications: more than that is not a full recovery either.
    Since { since: Position, limit: usize },
    /// The last `n`.
    Last(usize),
}

/// A history read.
#[derive(Debug, Clone)]
pub struct History {
    /// In offset order.
    pub publications: Vec<Arc<Publication>>,
    /// The channel's current position (its newest offset, 0 for none).
    pub top: Position,
    /// For `Since`: whether the publications are everything after `since`.
    pub recovered: bool,
}

/// A channel as the engine knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelState {
    pub channel: ChannelName,
    pub top: Position,
    /// Publications kept in its history.
    pub kept: usize,
}

/// Whether the engine can be used (a networked engine may be down).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    Up,
    Down,
}

impl Health {
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Up => "up",
            Health::Down => "down",
        }
    }
}

/// The interface every engine implements. Calls are cheap to start; their
/// futures may be awaited on any thread.
pub trait Engine: Send + Sync + 'static {
    /// Assigns the channel's next offset, keeps the publication in history
    /// per `retention`, and hands it to every listening node's sink: one
    /// atomic step per channel, so offsets, history and delivery agree.
    fn publish(&self, request: PublishRequest) -> EngineFuture<Published>;

    /// This node listens to `channel` (counted: N subscribes need N
    /// unsubscribes). Resolves once deliveries for it will reach the sink.
    fn subscribe(&self, channel: &ChannelName) -> EngineFuture<()>;

    /// One [`subscribe`](Engine::subscribe) fewer.
    fn unsubscribe(&self, channel: &ChannelName);

    /// Reads history (and the channel's current position).
    fn history(&self, channel: &ChannelName, query: HistoryQuery) -> EngineFuture<History>;

    /// Adds a member to a channel's presence, and tells its subscribers.
    fn presence_add(&self, channel: &ChannelName, member: Member) -> EngineFuture<()>;

    /// Removes a member (by `conn`), and tells its subscribers.
    fn presence_remove(&self, channel: &ChannelName, member: Member) -> EngineFuture<()>;

    /// Who is subscribed to a presence channel.
    fn presence(&self, channel: &ChannelName) -> EngineFuture<Vec<Member>>;

    /// The channels that exist (with subscribers or history), or one of
    /// them.
    fn channels(&self, only: Option<&ChannelName>) -> EngineFuture<Vec<ChannelState>>;

    fn health(&self) -> Health;

    /// This node's id among the nodes sharing the engine, so that ids made
    /// here (presence `conn`s) are unique across them; `None` when the
    /// engine serves one node.
    fn node_id(&self) -> Option<&str> {
        None
    }
}
