//! `wsd_redis_*`: how the Redis engine is doing. Registered always (they
//! stay at zero with the memory engine), so dashboards need no condition.

use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Debug, Clone)]
pub struct RedisMetrics {
    round_trip: Histogram,
    pub reconnects: Counter,
    pub resubscriptions: Counter,
    pub gaps: Counter,
    pub received: Counter,
}

impl RedisMetrics {
    pub fn register(registry: &mut Registry) -> RedisMetrics {
        let m = RedisMetrics {
            round_trip: Histogram::new(exponential_buckets(0.000_05, 2.0, 16)),
            reconnects: Counter::default(),
            resubscriptions: Counter::default(),
            gaps: Counter::default(),
            received: Counter::default(),
        };
        registry.register(
            "wsd_redis_round_trip_seconds",
            "Redis script round trips (publish, history)",
            m.round_trip.clone(),
        );
        registry.register(
            "wsd_redis_reconnects",
            "Times the Redis connection dropped",
            m.reconnects.clone(),
        );
        registry.register(
            "wsd_redis_resubscriptions",
            "Channels subscribed again after a reconnect",
            m.resubscriptions.clone(),
        );
        registry.register(
            "wsd_redis_gaps",
            "Offset jumps or lost stretches detected on channels",
            m.gaps.clone(),
        );
        registry.register(
            "wsd_redis_publications_received",
            "Publications received from Redis pub/sub",
            m.received.clone(),
        );
        m
    }

    pub fn round_trip(&self, took: Duration) {
        self.round_trip.observe(took.as_secs_f64());
    }
}
