//! The channel metrics, registered beside the server's at start.
//!
//! Hubs count per publication (one atomic add per hub and publication, not
//! per subscriber).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::engine::Publication;

/// Where a publication came from.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
pub enum Source {
    Ws,
    Http,
}

impl Source {
    fn label(self) -> &'static str {
        match self {
            Source::Ws => "ws",
            Source::Http => "http",
        }
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SourceLabel {
    source: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

#[derive(Debug, Clone)]
pub struct ChannelMetrics {
    pub channels_active: Gauge,
    pub subscriptions_active: Gauge,
    publications: Family<SourceLabel, Counter>,
    deliveries: Counter,
    dropped: Family<ReasonLabel, Counter>,
    latency: Histogram,
}

impl ChannelMetrics {
    pub fn register(registry: &mut Registry) -> ChannelMetrics {
        let metrics = ChannelMetrics {
            channels_active: Gauge::default(),
            subscriptions_active: Gauge::default(),
            publications: Family::default(),
            deliveries: Counter::default(),
            dropped: Family::default(),
            // 20 µs to about 10 s.
            latency: Histogram::new(exponential_buckets(0.000_02, 2.0, 20)),
        };
        registry.register(
            "wsd_channels_active",
            "Channels that exist (with subscribers or history)",
            metrics.channels_active.clone(),
        );
        registry.register(
            "wsd_subscriptions_active",
            "Subscriptions of local sessions to channels",
            metrics.subscriptions_active.clone(),
        );
        registry.register(
            "wsd_publications",
            "Publications accepted, by where they came from",
            metrics.publications.clone(),
        );
        registry.register(
            "wsd_deliveries",
            "Publications queued to subscriber sessions",
            metrics.deliveries.clone(),
        );
        registry.register(
            "wsd_deliveries_dropped",
            "Deliveries not queued, by reason",
            metrics.dropped.clone(),
        );
        registry.register(
            "wsd_publish_to_queued_seconds",
            "Time from accepting a publication to queuing it to a hub's subscribers",
            metrics.latency.clone(),
        );
        metrics
    }

    pub fn published(&self, source: Source) {
        self.publications
            .get_or_create(&SourceLabel {
                source: source.label(),
            })
            .inc();
    }

    /// Frames queued to subscribers so far.
    pub fn deliveries(&self) -> u64 {
        self.deliveries.get()
    }

    /// Publications accepted so far, from anywhere.
    pub fn publications(&self) -> u64 {
        [Source::Ws, Source::Http]
            .into_iter()
            .filter_map(|source| {
                self.publications.get(&SourceLabel {
                    source: source.label(),
                })
            })
            .map(|c| c.get())
            .sum()
    }

    /// A hub queued `p` to `queued` subscribers and dropped it for `dropped`
    /// slow ones.
    pub fn queued(&self, p: &Publication, queued: u64, dropped: u64) {
        self.events(queued, dropped);
        self.latency.observe(p.accepted.elapsed().as_secs_f64());
    }

    /// Frames (publications or presence events) queued and dropped.
    pub fn events(&self, queued: u64, dropped: u64) {
        if queued > 0 {
            self.deliveries.inc_by(queued);
        }
        if dropped > 0 {
            self.dropped
                .get_or_create(&ReasonLabel {
                    reason: "slow_consumer",
                })
                .inc_by(dropped);
        }
    }
}
