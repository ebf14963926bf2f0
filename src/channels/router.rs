//! The node's routing table: for each channel with local subscribers, the
//! worker hubs that have some, and how many there are in all.
//!
//! The engine hands every publication to [`Router::deliver`], which sends
//! one `Arc` to each such hub: a publication crosses threads once per
//! worker, not once per subscriber. Sending happens under the channel's
//! shard lock, which the engine calls in offset order, so each hub's queue
//! holds a channel's publications in order.

use std::collections::HashMap;
use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};

use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::mpsc::UnboundedSender;

use super::ChannelName;
use crate::engine::{Delivery, Sink};

const SHARDS: usize = 64;

/// How a hub is reached from other threads.
#[derive(Debug, Clone)]
pub(crate) struct HubHandle {
    pub id: usize,
    pub tx: UnboundedSender<Delivery>,
}

#[derive(Default)]
struct Route {
    hubs: Vec<HubHandle>,
    subscribers: usize,
}

/// The channel is at its `max_subscribers`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct AtLimit(pub usize);

pub(crate) struct Router {
    shards: Box<[Mutex<HashMap<ChannelName, Route>>]>,
    hasher: RandomState,
    next_hub: AtomicUsize,
    /// `wsd_subscriptions_active`.
    subscriptions: Gauge,
}

impl Router {
    pub fn new(subscriptions: Gauge) -> Router {
        Router {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            hasher: RandomState::new(),
            next_hub: AtomicUsize::new(0),
            subscriptions,
        }
    }

    pub fn next_hub_id(&self) -> usize {
        self.next_hub.fetch_add(1, Ordering::Relaxed)
    }

    fn shard(&self, channel: &ChannelName) -> MutexGuard<'_, HashMap<ChannelName, Route>> {
        let i = self.hasher.hash_one(channel.as_str()) as usize & (SHARDS - 1);
        // Plain counters and handles: a poisoned lock's data is still sound.
        self.shards[i].lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Counts one more subscriber on `hub`, unless the channel is at `max`
    /// (0 = no limit). Says whether the hub is new to the channel.
    pub fn join(
        &self,
        channel: &ChannelName,
        hub: &HubHandle,
        max: usize,
    ) -> Result<bool, AtLimit> {
        let mut shard = self.shard(channel);
        let route = shard.entry(channel.clone()).or_default();
        if max > 0 && route.subscribers >= max {
            return Err(AtLimit(max));
        }
        route.subscribers += 1;
        self.subscriptions.inc();
        let new = !route.hubs.iter().any(|h| h.id == hub.id);
        if new {
            route.hubs.push(hub.clone());
        }
        Ok(new)
    }

    /// One subscriber fewer on hub `id`; `hub_done` when it was the hub's
    /// last for the channel.
    pub fn leave(&self, channel: &ChannelName, id: usize, hub_done: bool) {
        let mut shard = self.shard(channel);
        let Some(route) = shard.get_mut(channel) else {
            return;
        };
        route.subscribers = route.subscribers.saturating_sub(1);
        self.subscriptions.dec();
        if hub_done {
            route.hubs.retain(|h| h.id != id);
        }
        if route.hubs.is_empty() {
            shard.remove(channel);
        }
    }

    /// Local subscribers of one channel.
    pub fn subscribers(&self, channel: &ChannelName) -> usize {
        self.shard(channel)
            .get(channel)
            .map_or(0, |r| r.subscribers)
    }

    /// Every channel with local subscribers, with their count.
    pub fn all(&self) -> Vec<(ChannelName, usize)> {
        let mut all = Vec::new();
        for shard in self.shards.iter() {
            let shard = shard.lock().unwrap_or_else(|e| e.into_inner());
            all.extend(shard.iter().map(|(c, r)| (c.clone(), r.subscribers)));
        }
        all
    }
}

impl Sink for Router {
    fn deliver(&self, delivery: Delivery) {
        let shard = self.shard(delivery.channel());
        let hubs = shard
            .get(delivery.channel())
            .map_or(&[][..], |r| &r.hubs[..]);
        let receipt = match &delivery {
            Delivery::Publication(_, receipt) => receipt.as_ref(),
            Delivery::Presence(_) => None,
        };
        // Told before any hub can answer.
        if let Some(receipt) = receipt {
            receipt.expect(hubs.len());
        }
        for hub in hubs {
            if hub.tx.send(delivery.clone()).is_err() {
                // The hub's thread has gone (a worker that stopped); it will
                // queue nothing.
                if let Some(receipt) = receipt {
                    receipt.report(0);
                }
            }
        }
    }
}
