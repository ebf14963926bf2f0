//! A worker thread's hub: the subscribers on this thread, by channel, and
//! the task that hands them what the router sends.
//!
//! Sessions live on the worker threads; so does one hub per thread. A
//! delivery reaches a hub once, and the hub queues the same encoded frame
//! into each subscriber's own bounded send queue, on the thread that owns
//! it: no lock, no copy, no message to the session actor. A subscriber whose
//! queue is full is told (it ends as a slow consumer) and skipped from then
//! on; the others never wait for it.
//!
//! A gap (publications the engine lost and cannot replay) reaches a JSON
//! subscriber as an event; a plain one is closed with 1012, to reconnect
//! with `since` (a Pusher one with 4200, to reconnect at once).
//!
//! A new subscriber starts *pending*: deliveries for it are kept aside while
//! its history is read, then replayed after the history, minus what the
//! history already held. So a recovering subscriber sees no gap and no
//! duplicate between replay and live deliveries.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;

use tokio::sync::mpsc;

use super::ChannelName;
use super::metrics::ChannelMetrics;
use super::router::{HubHandle, Router};
use crate::engine::{Delivery, Format, Frame, Position, PresenceEvent, Publication};

/// The subscriber side of a session, as the hub sees it.
pub trait Subscriber {
    /// Queues a frame; `false` when the queue is full.
    fn push(&self, frame: &Frame) -> bool;
    /// Queues a publication in `format`: its shared frame, unless this
    /// subscriber encodes it its own way (compression with a context of its
    /// own). `false` when the queue is full.
    fn push_publication(&self, p: &Publication, format: Format) -> bool {
        self.push(p.frame(format))
    }
    /// For [`Format::Pusher`] subscribers: whether this one gets `p` (a
    /// Pusher publication names one connection that must not).
    fn wants(&self, _p: &Publication) -> bool {
        true
    }
    /// For [`Format::Pusher`] subscribers, which turn presence joins and
    /// leaves into member events of their own (a user with two connections
    /// is one member). `false` when the queue is full.
    fn push_presence(&self, _event: &PresenceEvent) -> bool {
        true
    }
    /// The queue was full: the session must end as a slow consumer.
    fn overflowed(&self);
    /// Publications were lost and plain mode cannot say so: the session
    /// must close with 1012 so that its client reconnects with `since`.
    fn lost(&self);
}

struct Sub {
    key: u64,
    subscriber: Rc<dyn Subscriber>,
    format: Format,
    /// The position delivered up to; publications at or before it are not
    /// delivered again.
    last: u64,
    epoch: Arc<str>,
    /// While the history is read: what arrived meanwhile.
    pending: Option<Vec<Delivery>>,
    dead: bool,
}

#[derive(Default)]
struct Subs {
    list: Vec<Sub>,
    index: HashMap<u64, usize>,
}

impl Subs {
    fn get_mut(&mut self, key: u64) -> Option<&mut Sub> {
        let i = *self.index.get(&key)?;
        self.list.get_mut(i)
    }

    fn remove(&mut self, key: u64) -> bool {
        let Some(i) = self.index.remove(&key) else {
            return false;
        };
        self.list.swap_remove(i);
        if let Some(moved) = self.list.get(i) {
            self.index.insert(moved.key, i);
        }
        true
    }
}

/// What one delivery to one subscriber came to.
enum Outcome {
    Queued,
    Skipped,
    Dropped,
}

impl Sub {
    fn offer(&mut self, delivery: &Delivery) -> Outcome {
        if self.dead {
            return Outcome::Skipped;
        }
        if let Some(pending) = &mut self.pending {
            pending.push(delivery.clone());
            return Outcome::Skipped;
        }
        let frame = match delivery {
            Delivery::Publication(p, _) => {
                if !self.is_new(p) {
                    return Outcome::Skipped;
                }
                self.last = p.offset;
                if self.format == Format::Pusher && !self.subscriber.wants(p) {
                    return Outcome::Skipped;
                }
                return self.queue_publication(p);
            }
            Delivery::Presence(event) => match self.format {
                Format::Json => event.frame(),
                Format::Plain => return Outcome::Skipped,
                Format::Pusher => {
                    let queued = self.subscriber.push_presence(event);
                    return self.outcome(queued);
                }
            },
            Delivery::Gap(gap) => match self.format {
                Format::Json => gap.frame(),
                Format::Plain | Format::Pusher => {
                    self.dead = true;
                    self.subscriber.lost();
                    return Outcome::Skipped;
                }
            },
        };
        self.queue(frame)
    }

    /// Whether `p` comes after what this subscriber has seen. A publication
    /// of another epoch means the channel's stream started again.
    fn is_new(&mut self, p: &Publication) -> bool {
        if !Arc::ptr_eq(&self.epoch, &p.epoch) && *self.epoch != *p.epoch {
            self.epoch = p.epoch.clone();
            return true;
        }
        p.offset > self.last
    }

    fn queue(&mut self, frame: &Frame) -> Outcome {
        let queued = self.subscriber.push(frame);
        self.outcome(queued)
    }

    fn queue_publication(&mut self, p: &Publication) -> Outcome {
        let queued = self.subscriber.push_publication(p, self.format);
        self.outcome(queued)
    }

    fn outcome(&mut self, queued: bool) -> Outcome {
        if queued {
            Outcome::Queued
        } else {
            self.dead = true;
            self.subscriber.overflowed();
            Outcome::Dropped
        }
    }
}

pub(crate) struct Hub {
    handle: HubHandle,
    router_id: usize,
    channels: RefCell<HashMap<ChannelName, Subs>>,
    metrics: ChannelMetrics,
}

thread_local! {
    /// This thread's hubs, one per router (one per server; tests run several
    /// servers in one process).
    static HUBS: RefCell<Vec<Rc<Hub>>> = const { RefCell::new(Vec::new()) };
}

/// A delivery batch: deliveries waiting in the hub's queue are taken this
/// many at a time, so a burst costs one wake-up.
const BATCH: usize = 256;

impl Hub {
    /// This thread's hub for `router`, started on first use. Must be called
    /// on an actix (tokio local) runtime: the hub's task runs on it.
    pub fn current(router: &Arc<Router>, metrics: &ChannelMetrics) -> Rc<Hub> {
        let router_id = Arc::as_ptr(router) as *const () as usize;
        HUBS.with(|hubs| {
            let mut hubs = hubs.borrow_mut();
            if let Some(hub) = hubs.iter().find(|h| h.router_id == router_id) {
                return hub.clone();
            }
            let (tx, rx) = mpsc::unbounded_channel();
            let hub = Rc::new(Hub {
                handle: HubHandle {
                    id: router.next_hub_id(),
                    tx,
                },
                router_id,
                channels: RefCell::new(HashMap::new()),
                metrics: metrics.clone(),
            });
            tokio::task::spawn_local(run(Rc::downgrade(&hub), rx));
            hubs.push(hub.clone());
            hub
        })
    }

    pub fn handle(&self) -> &HubHandle {
        &self.handle
    }

    /// Whether `key` is subscribed to `channel` here.
    pub fn has(&self, channel: &ChannelName, key: u64) -> bool {
        self.channels
            .borrow()
            .get(channel)
            .is_some_and(|s| s.index.contains_key(&key))
    }

    /// Adds a pending subscriber. Says whether it is the channel's first on
    /// this hub; `None` if `key` is subscribed already.
    pub fn join(
        &self,
        channel: &ChannelName,
        key: u64,
        subscriber: Rc<dyn Subscriber>,
        format: Format,
    ) -> Option<bool> {
        let mut channels = self.channels.borrow_mut();
        let subs = channels.entry(channel.clone()).or_default();
        let first = subs.list.is_empty();
        if subs.index.contains_key(&key) {
            return None;
        }
        subs.index.insert(key, subs.list.len());
        subs.list.push(Sub {
            key,
            subscriber,
            format,
            last: 0,
            epoch: Arc::from(""),
            pending: Some(Vec::new()),
            dead: false,
        });
        Some(first)
    }

    /// Makes a pending subscriber live: queues `replay`, then what arrived
    /// meanwhile that comes after `top` (the history's position). Returns
    /// how many frames it queued; `None` if it overflowed on the way.
    pub fn activate(
        &self,
        channel: &ChannelName,
        key: u64,
        replay: &[Arc<Publication>],
        top: &Position,
    ) -> Option<usize> {
        let mut channels = self.channels.borrow_mut();
        let sub = channels.get_mut(channel)?.get_mut(key)?;
        let pending = sub.pending.take().unwrap_or_default();
        sub.epoch = Arc::from(top.epoch.as_str());
        sub.last = top.offset;
        let mut queued = 0;
        for p in replay {
            match sub.queue_publication(p) {
                Outcome::Queued => queued += 1,
                _ => return None,
            }
        }
        for delivery in &pending {
            match sub.offer(delivery) {
                Outcome::Queued => queued += 1,
                Outcome::Skipped => {}
                Outcome::Dropped => return None,
            }
        }
        Some(queued)
    }

    /// Removes a subscriber. Says whether the channel has no subscriber left
    /// on this hub (`None`: it was not subscribed).
    pub fn leave(&self, channel: &ChannelName, key: u64) -> Option<bool> {
        let mut channels = self.channels.borrow_mut();
        let subs = channels.get_mut(channel)?;
        if !subs.remove(key) {
            return None;
        }
        let empty = subs.list.is_empty();
        if empty {
            channels.remove(channel);
        }
        Some(empty)
    }

    fn dispatch(&self, delivery: &Delivery) {
        let mut queued = 0u64;
        let mut dropped = 0u64;
        if let Some(subs) = self.channels.borrow_mut().get_mut(delivery.channel()) {
            for sub in &mut subs.list {
                match sub.offer(delivery) {
                    Outcome::Queued => queued += 1,
                    Outcome::Skipped => {}
                    Outcome::Dropped => dropped += 1,
                }
            }
        }
        if let Delivery::Publication(p, receipt) = delivery {
            self.metrics.queued(p, queued, dropped);
            if let Some(receipt) = receipt {
                receipt.report(queued as usize);
            }
        } else {
            self.metrics.events(queued, dropped);
        }
    }
}

async fn run(hub: std::rc::Weak<Hub>, mut rx: mpsc::UnboundedReceiver<Delivery>) {
    let mut batch = Vec::with_capacity(BATCH);
    while rx.recv_many(&mut batch, BATCH).await > 0 {
        let Some(hub) = hub.upgrade() else { return };
        for delivery in batch.drain(..) {
            hub.dispatch(&delivery);
        }
    }
}
