//! A session that only listens: every `every` it sends the text its
//! [`Feed`] makes (the console's stats stream). What the peer sends is
//! counted and dropped; pings, the heartbeat, the send queue's bound,
//! compression and the 1001 at shutdown work as for any session.

use std::time::Duration;

use actix::prelude::*;

use super::Session;

/// What a listening session sends, and how often.
pub(crate) struct Feed {
    pub every: Duration,
    /// Makes the next message (called on the session's own timer).
    pub next: Box<dyn FnMut() -> Vec<u8>>,
}

impl Session {
    /// Sends the first message at once, then one every `every`.
    pub(super) fn feed_started(&mut self, ctx: &mut Context<Self>) {
        let Some(feed) = &self.feed else {
            return;
        };
        ctx.run_interval(feed.every, Self::feed_tick);
        self.feed_tick(ctx);
    }

    fn feed_tick(&mut self, ctx: &mut Context<Self>) {
        if self.closing {
            return;
        }
        let Some(feed) = self.feed.as_mut() else {
            return;
        };
        let text = (feed.next)();
        self.traffic.messages_sent += 1;
        self.traffic.bytes_sent += text.len() as u64;
        self.send_text(&text, ctx);
    }
}
