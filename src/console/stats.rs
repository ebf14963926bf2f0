//! The dashboard's stats stream: `GET /console/stats` upgrades to a session
//! in feed mode that sends one JSON snapshot a second.
//!
//! Each stream reads the shared counters on its own timer (a few atomic
//! loads), so the per-message path pays nothing for it. Sessions add their
//! message counts to those counters on each heartbeat tick, so messages in
//! and out move in steps of `session.heartbeat_interval`; their rates are
//! averaged over that interval (each session reports once in it). Connects,
//! publications and deliveries are counted as they happen, and their rates
//! are over the last second.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::json;

use crate::server::{
    AppState, CloseCause, Feed, Mode, describe_peer, error_response, upgrade_session,
};

/// How often a snapshot is sent.
pub(super) const INTERVAL: Duration = Duration::from_secs(1);

/// The counters a snapshot reads.
#[derive(Debug, Clone, Copy, Default)]
struct Totals {
    connects: u64,
    messages_in: u64,
    messages_out: u64,
    publications: u64,
    deliveries: u64,
    slow_consumer: u64,
    heartbeat_timeout: u64,
}

impl Totals {
    fn read(state: &AppState) -> Totals {
        let m = state.metrics();
        Totals {
            connects: m.sessions_opened.get(),
            messages_in: m.messages_received.get(),
            messages_out: m.messages_sent.get(),
            publications: m.channels.publications(),
            deliveries: m.channels.deliveries(),
            slow_consumer: m.closed(CloseCause::SlowConsumer),
            heartbeat_timeout: m.closed(CloseCause::HeartbeatTimeout),
        }
    }
}

/// One stream's memory of the totals it read before, for rates.
struct Stats {
    state: AppState,
    /// Oldest first; at most `window + 1` readings.
    seen: VecDeque<(Instant, Totals)>,
    /// Readings in one heartbeat interval (at least 1).
    window: usize,
}

/// Per second, from `then` to `now`.
fn rate(now: u64, then: u64, elapsed: Duration) -> f64 {
    let secs = elapsed.as_secs_f64();
    if secs <= 0.0 {
        return 0.0;
    }
    // Counters only grow; a lower reading would be a bug, not a negative rate.
    (now.saturating_sub(then) as f64 / secs * 10.0).round() / 10.0
}

impl Stats {
    fn new(state: AppState) -> Stats {
        let heartbeat = state.config().session.heartbeat_interval;
        let window = heartbeat.as_millis().div_ceil(INTERVAL.as_millis()).max(1) as usize;
        Stats {
            state,
            seen: VecDeque::with_capacity(window + 1),
            window,
        }
    }

    fn snapshot(&mut self) -> Vec<u8> {
        let now = Instant::now();
        let t = Totals::read(&self.state);
        let (last_at, last) = self.seen.back().copied().unwrap_or((now, t));
        let (first_at, first) = self.seen.front().copied().unwrap_or((now, t));
        if self.seen.len() > self.window {
            self.seen.pop_front();
        }
        self.seen.push_back((now, t));
        let tick = now - last_at;
        let span = now - first_at;
        let m = self.state.metrics();
        let channels = self.state.channels();
        let snapshot = json!({
            "version": env!("CARGO_PKG_VERSION"),
            "uptime_secs": self.state.uptime().as_secs(),
            "engine": channels.health().as_str(),
            "sessions": m.sessions_active.get(),
            "max_connections": self.state.max_connections(),
            "channels": channels.channel_count(),
            "subscriptions": m.channels.subscriptions_active.get(),
            "totals": {
                "connects": t.connects,
                "messages_in": t.messages_in,
                "messages_out": t.messages_out,
                "publications": t.publications,
                "deliveries": t.deliveries,
                "slow_consumer_closes": t.slow_consumer,
                "heartbeat_timeout_closes": t.heartbeat_timeout,
            },
            "rates": {
                "connects": rate(t.connects, last.connects, tick),
                "messages_in": rate(t.messages_in, first.messages_in, span),
                "messages_out": rate(t.messages_out, first.messages_out, span),
                "publications": rate(t.publications, last.publications, tick),
                "deliveries": rate(t.deliveries, last.deliveries, tick),
            },
            "rate_window_ms": {
                "messages": span.as_millis() as u64,
                "others": tick.as_millis() as u64,
            },
        });
        serde_json::to_vec(&snapshot).unwrap_or_default()
    }
}

/// `GET /console/stats`: the key check (`?key=`, since a browser cannot set
/// headers on a WebSocket), then the stream.
pub(super) async fn stream(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> HttpResponse {
    if let Err(e) = state.console().check(&req) {
        log::info!(
            "refused a console stats stream from {}: {e}",
            describe_peer(req.peer_addr())
        );
        return error_response(&e);
    }
    let mut stats = Stats::new(state.get_ref().clone());
    let feed = Feed {
        every: INTERVAL,
        next: Box::new(move || stats.snapshot()),
    };
    upgrade_session(&req, payload, &state, Mode::Feed(feed), None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_are_per_second_and_never_negative() {
        assert_eq!(rate(30, 10, Duration::from_secs(2)), 10.0);
        assert_eq!(rate(1, 0, Duration::from_millis(3000)), 0.3);
        assert_eq!(rate(5, 9, Duration::from_secs(1)), 0.0);
        assert_eq!(rate(5, 0, Duration::ZERO), 0.0);
    }
}
