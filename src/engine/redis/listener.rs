//! The one task that reads what Redis pushes to this node, in order: pub/sub
//! messages, and the connection's drops. Per channel it hands publications
//! on in offset order, once each; when offsets jump (pub/sub lost some) or
//! the connection dropped, it replays what is missing from the stream, or
//! tells the channel's subscribers there is a gap when the stream no longer
//! has it. It never spawns a task per message, so order holds.

use std::sync::{Arc, Weak};
use std::time::Duration;

use redis::{PushInfo, PushKind, Value};
use tokio::sync::mpsc::UnboundedReceiver;

use super::wire::{self, Message, Origin};
use super::{Inner, lock, scripts};
use crate::channels::ChannelName;
use crate::engine::{Delivery, Gap, PresenceEvent, Publication};

/// Channels per SUBSCRIBE command when resubscribing after a reconnect.
const RESUBSCRIBE_BATCH: usize = 500;

pub(super) async fn run(inner: Weak<Inner>, mut rx: UnboundedReceiver<PushInfo>) {
    connect(&inner).await;
    let every = match inner.upgrade() {
        Some(i) => (i.presence_ttl / 3).max(Duration::from_millis(100)),
        None => return,
    };
    let mut refresh = tokio::time::interval(every);
    refresh.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            push = rx.recv() => {
                let Some(push) = push else { return };
                let Some(strong) = inner.upgrade() else { return };
                match push.kind {
                    PushKind::Disconnection => {
                        strong.up.store(false, std::sync::atomic::Ordering::Release);
                        strong.metrics.reconnects.inc();
                        log::warn!("redis: connection lost; reconnecting");
                        drop(strong);
                        connect(&inner).await;
                    }
                    PushKind::Message => message(&strong, push.data).await,
                    _ => {}
                }
            }
            _ = refresh.tick() => {
                let Some(strong) = inner.upgrade() else { return };
                strong.refresh().await;
            }
        }
    }
}

/// Waits until Redis answers, loads the scripts, resubscribes to every
/// channel this node listens to (batched), catches each up, and marks the
/// engine up. Returns early only when the engine is gone.
async fn connect(inner: &Weak<Inner>) {
    let mut backoff = Duration::from_millis(50);
    let mut logged = false;
    loop {
        let Some(strong) = inner.upgrade() else {
            return;
        };
        match ready(&strong).await {
            Ok(()) => {
                strong.up.store(true, std::sync::atomic::Ordering::Release);
                log::info!("redis: connected");
                return;
            }
            Err(e) => {
                if !logged {
                    log::warn!("redis: not reachable ({e}); retrying");
                    logged = true;
                }
            }
        }
        drop(strong);
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(1));
    }
}

async fn ready(inner: &Arc<Inner>) -> redis::RedisResult<()> {
    let mut conn = inner.conn.clone();
    redis::cmd("PING").query_async::<()>(&mut conn).await?;
    for script in [
        &*scripts::PUBLISH,
        &*scripts::READ,
        &*scripts::PRESENCE,
        &*scripts::JOIN,
        &*scripts::LEAVE,
    ] {
        script.load_async(&mut conn).await?;
    }
    let channels: Vec<ChannelName> = lock(&inner.listening).keys().cloned().collect();
    for batch in channels.chunks(RESUBSCRIBE_BATCH) {
        let names: Vec<String> = batch.iter().map(|c| inner.pubsub(c)).collect();
        conn.subscribe(names).await?;
        inner.metrics.resubscriptions.inc_by(batch.len() as u64);
    }
    // Everything published from now on arrives live; what was published
    // while we were away is in the streams.
    for channel in channels {
        let last = lock(&inner.listening)
            .get(&channel)
            .and_then(|l| l.last.clone());
        if let Some(last) = last {
            catch_up(inner, &channel, last, None).await;
        }
    }
    Ok(())
}

async fn message(inner: &Arc<Inner>, data: Vec<Value>) {
    let mut data = data.into_iter();
    let (Some(Value::BulkString(name)), Some(Value::BulkString(payload))) =
        (data.next(), data.next())
    else {
        return;
    };
    let Some(channel) = inner.channel_of(&name) else {
        return;
    };
    match wire::decode(&channel, payload.into()) {
        Some(Message::Publication {
            publication,
            origin,
        }) => {
            inner.metrics.received.inc();
            on_publication(inner, publication, origin).await;
        }
        Some(Message::Presence { join, member }) => {
            if lock(&inner.listening).contains_key(&channel) {
                let event = PresenceEvent::new(channel, join, member);
                inner.sink.deliver(Delivery::Presence(Arc::new(event)));
            }
        }
        None => log::warn!("redis: skipped a malformed message on {channel}"),
    }
}

/// What a publication is to the channel's last position.
enum Fit {
    Next,
    Duplicate,
    /// Offsets jumped from this position: something was lost on the way.
    Jump((Arc<str>, u64)),
    NotListened,
}

fn fit(inner: &Inner, p: &Publication) -> Fit {
    let mut listening = lock(&inner.listening);
    let Some(listen) = listening.get_mut(&p.channel) else {
        return Fit::NotListened;
    };
    let fits = match &listen.last {
        // No baseline yet: the channel was just subscribed, and its
        // subscribers' own history reads cover what came before.
        None => true,
        Some((epoch, last)) if **epoch == *p.epoch => {
            if p.offset <= *last {
                return Fit::Duplicate;
            }
            p.offset == last + 1
        }
        // A new epoch (the channel's history started again) that starts at
        // its beginning, after a channel that had none: nothing was missed.
        Some((epoch, _)) => p.offset == 1 && epoch.is_empty(),
    };
    if fits {
        listen.last = Some((p.epoch.clone(), p.offset));
        Fit::Next
    } else {
        Fit::Jump(listen.last.clone().unwrap_or_else(|| (Arc::from(""), 0)))
    }
}

async fn on_publication(inner: &Arc<Inner>, p: Arc<Publication>, origin: Origin) {
    match fit(inner, &p) {
        Fit::Next => deliver(inner, p, Some(&origin)),
        Fit::Duplicate | Fit::NotListened => {}
        Fit::Jump(last) => {
            inner.metrics.gaps.inc();
            log::info!(
                "redis: {} jumped from {}/{} to {}/{}; catching up",
                p.channel,
                last.0,
                last.1,
                p.epoch,
                p.offset
            );
            let channel = p.channel.clone();
            catch_up(inner, &channel, last, Some((p.epoch.clone(), p.offset))).await;
            if let Fit::Next = fit(inner, &p) {
                deliver(inner, p, Some(&origin));
            }
        }
    }
}

/// Replays what the channel published after `last` from its stream, or,
/// if the stream does not hold all of it (or the channel's state in Redis
/// was lost), tells the subscribers of the gap. `before` is the live
/// publication that showed the jump: after a gap, delivery resumes with it.
async fn catch_up(
    inner: &Arc<Inner>,
    channel: &ChannelName,
    last: (Arc<str>, u64),
    before: Option<(Arc<str>, u64)>,
) {
    let (top, complete, publications) = match inner.read(channel, "since", last.1, 0).await {
        Ok(read) => read,
        Err(e) => {
            // Redis went away again: the reconnect catches up later.
            log::warn!("redis: {channel}: catching up failed: {e}");
            return;
        }
    };
    if top.epoch.is_empty() && last.0.is_empty() {
        // Nothing was ever published, and nothing is now.
        return;
    }
    // An empty `last` epoch is "nothing when we started listening": then
    // everything the current epoch holds is what we missed.
    if complete && (*top.epoch == *last.0 || last.0.is_empty()) {
        for p in publications {
            if let Fit::Next = fit(inner, &p) {
                deliver(inner, p, None);
            }
        }
        return;
    }
    inner.metrics.gaps.inc();
    log::warn!(
        "redis: {channel}: publications after {}/{} are not in its stream any more; \
         telling its subscribers",
        last.0,
        last.1
    );
    inner
        .sink
        .deliver(Delivery::Gap(Arc::new(Gap::new(channel.clone()))));
    let resume = before.map_or_else(
        || (Arc::from(top.epoch.as_str()), top.offset),
        |(epoch, offset)| (epoch, offset.saturating_sub(1)),
    );
    set_last(inner, channel, resume);
}

fn set_last(inner: &Inner, channel: &ChannelName, last: (Arc<str>, u64)) {
    if let Some(listen) = lock(&inner.listening).get_mut(channel) {
        listen.last = Some(last);
    }
}

fn deliver(inner: &Inner, p: Arc<Publication>, origin: Option<&Origin>) {
    let receipt = origin
        .filter(|o| o.node == inner.node)
        .and_then(|o| lock(&inner.receipts).remove(&o.seq))
        .map(|(r, _)| r);
    inner.sink.deliver(Delivery::Publication(p, receipt));
}
