//! Process-wide counters, exposed at `/metrics` in the Prometheus text format.
//!
//! Sessions do not touch these per message: they count in plain fields of
//! their own and add the totals here on each heartbeat tick and when they end
//! (see [`Traffic`]), so the hot path has no shared cache line to fight over.

use std::fmt::Write;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::session::CloseCause;
use crate::channels::ChannelMetrics;
use crate::engine::RedisMetrics;

impl EncodeLabelValue for CloseCause {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        encoder.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CauseLabel {
    reason: CloseCause,
}

/// Every metric the server reports, registered once at start.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    pub sessions_active: Gauge,
    pub sessions_opened: Counter,
    sessions_closed: Family<CauseLabel, Counter>,
    pub messages_received: Counter,
    pub messages_sent: Counter,
    pub bytes_received: Counter,
    pub bytes_sent: Counter,
    pub connections_rejected: Counter,
    pub channels: ChannelMetrics,
    pub redis: RedisMetrics,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let channels = ChannelMetrics::register(&mut registry);
        let redis = RedisMetrics::register(&mut registry);
        let metrics = Metrics {
            channels,
            redis,
            sessions_active: Gauge::default(),
            sessions_opened: Counter::default(),
            sessions_closed: Family::default(),
            messages_received: Counter::default(),
            messages_sent: Counter::default(),
            bytes_received: Counter::default(),
            bytes_sent: Counter::default(),
            connections_rejected: Counter::default(),
            registry: Registry::default(),
        };
        // prometheus-client appends `_total` to counter names itself.
        registry.register(
            "wsd_sessions_active",
            "Live WebSocket sessions",
            metrics.sessions_active.clone(),
        );
        registry.register(
            "wsd_sessions_opened",
            "WebSocket sessions opened",
            metrics.sessions_opened.clone(),
        );
        registry.register(
            "wsd_sessions_closed",
            "WebSocket sessions ended, by reason",
            metrics.sessions_closed.clone(),
        );
        registry.register(
            "wsd_messages_received",
            "Messages received from peers (after reassembly)",
            metrics.messages_received.clone(),
        );
        registry.register(
            "wsd_messages_sent",
            "Messages sent to peers",
            metrics.messages_sent.clone(),
        );
        registry.register(
            "wsd_bytes_received",
            "Message payload bytes received",
            metrics.bytes_received.clone(),
        );
        registry.register(
            "wsd_bytes_sent",
            "Message payload bytes sent",
            metrics.bytes_sent.clone(),
        );
        registry.register(
            "wsd_connections_rejected",
            "Upgrade requests refused because max_connections was reached",
            metrics.connections_rejected.clone(),
        );
        Metrics {
            registry,
            ..metrics
        }
    }

    pub fn session_closed(&self, cause: CloseCause) {
        self.sessions_closed
            .get_or_create(&CauseLabel { reason: cause })
            .inc();
    }

    /// Sessions ended for `cause` so far (a read: a cause never seen stays
    /// absent from `/metrics`).
    pub fn closed(&self, cause: CloseCause) -> u64 {
        self.sessions_closed
            .get(&CauseLabel { reason: cause })
            .map_or(0, |c| c.get())
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(2048);
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry);
        out
    }

    pub const CONTENT_TYPE: &'static str =
        prometheus_client::encoding::prometheus_text::CONTENT_TYPE;
}

/// A session's own traffic counts since its last flush.
#[derive(Debug, Default, Clone, Copy)]
pub struct Traffic {
    pub messages_received: u64,
    pub messages_sent: u64,
    pub bytes_received: u64,
    pub bytes_sent: u64,
}

impl Traffic {
    /// Adds the counts to the shared metrics and starts again from zero.
    pub fn flush(&mut self, metrics: &Metrics) {
        if self.messages_received | self.messages_sent == 0 {
            return;
        }
        metrics.messages_received.inc_by(self.messages_received);
        metrics.messages_sent.inc_by(self.messages_sent);
        metrics.bytes_received.inc_by(self.bytes_received);
        metrics.bytes_sent.inc_by(self.bytes_sent);
        *self = Traffic::default();
    }
}
