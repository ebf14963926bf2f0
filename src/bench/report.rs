//! The summaries of a run: plain data (serialized as `--json`), a human
//! rendering, and the exit code each implies.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::exit;

/// How many distinct error messages a summary keeps, to say what went wrong
/// without printing ten thousand lines.
const ERROR_SAMPLES: usize = 5;

/// The summary of one run, whichever mode.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "mode", rename_all = "snake_case")]
pub enum Report {
    Load(LoadReport),
    Idle(IdleReport),
    Connects(ConnectsReport),
    Fanout(FanoutReport),
}

/// The load mode's figures. `sent == received + in_flight + lost` holds
/// exactly, over messages sent in the measured interval.
#[derive(Debug, Clone, Serialize)]
pub struct LoadReport {
    pub url: String,
    pub connections: usize,
    /// Connections that could not be opened (also counted in `errors`).
    pub connect_failures: u64,
    pub size: usize,
    pub binary: bool,
    pub inflight: usize,
    pub warmup_secs: f64,
    /// The measured interval (shorter than asked if interrupted).
    pub duration_secs: f64,
    /// Messages sent during the measured interval.
    pub sent: u64,
    /// Replies to those messages received during the interval.
    pub received: u64,
    /// Those still awaiting their reply when the interval ended.
    pub in_flight: u64,
    /// Those outstanding on a connection that failed.
    pub lost: u64,
    /// Mismatched replies, failed connections, protocol faults (the whole run,
    /// warm-up included).
    pub errors: u64,
    pub msgs_per_sec: f64,
    /// Reply payload bytes per second, in MB (10^6 bytes).
    pub mb_per_sec: f64,
    pub latency_us: Latency,
    pub error_samples: Vec<String>,
    /// True when Ctrl-C ended the run early.
    pub interrupted: bool,
}

/// Round-trip latency in microseconds, from the write of a message to the
/// decoding of its reply.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Latency {
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
    pub mean: f64,
    pub samples: u64,
}

/// The idle mode's figures.
#[derive(Debug, Clone, Serialize)]
pub struct IdleReport {
    pub url: String,
    pub requested: usize,
    pub opened: u64,
    pub failed: u64,
    /// Source addresses the connections were spread over (1 = not spread).
    pub source_addresses: usize,
    /// From the first connect to the last connection opened or failed.
    pub ramp_secs: f64,
    /// Connections opened per second of ramp.
    pub connect_rate: f64,
    pub hold_secs: f64,
    /// Connections still open when the hold ended.
    pub held_open: u64,
    /// Connections the server closed or dropped during the ramp or hold.
    pub dropped: u64,
    pub error_samples: Vec<String>,
    pub interrupted: bool,
}

/// The connect-rate mode's figures.
#[derive(Debug, Clone, Serialize)]
pub struct ConnectsReport {
    pub url: String,
    pub concurrency: usize,
    pub duration_secs: f64,
    /// Connect + handshake + closing handshake cycles completed.
    pub connects: u64,
    pub failures: u64,
    pub connects_per_sec: f64,
    pub error_samples: Vec<String>,
    pub interrupted: bool,
}

/// The fan-out mode's figures. For every subscriber connected,
/// `received + lost == publications`, so `received + lost == expected`
/// exactly; `duplicate` copies come on top, and `out_of_order` counts the
/// received ones that arrived after a later publication.
#[derive(Debug, Clone, Serialize)]
pub struct FanoutReport {
    pub url: String,
    /// "websocket" (a publisher connection to `url` sending text), or the
    /// `--publish-url` POSTed to.
    pub publisher: String,
    /// Subscribers asked for (-c).
    pub subscribers: usize,
    pub connected: u64,
    /// Subscribers that could not connect (also counted in `errors`).
    pub connect_failures: u64,
    /// Subscribers that had heard a probe when publishing began.
    pub ready: u64,
    pub size: usize,
    /// Publications per second asked for.
    pub rate: f64,
    pub warmup_secs: f64,
    /// The counted publishing interval (shorter than asked if interrupted).
    pub duration_secs: f64,
    /// From the end of publishing until the last delivery (or --drain).
    pub drain_secs: f64,
    /// Publications counted.
    pub publications: u64,
    /// Publications per second achieved: below `rate` when the publisher
    /// could not keep up (a slow HTTP answer, a server not reading).
    pub publications_per_sec: f64,
    /// publications x subscribers connected.
    pub expected: u64,
    /// Distinct counted publications received, over all subscribers.
    pub received: u64,
    /// Those never received by the end of the drain.
    pub lost: u64,
    /// Second and later copies of a publication.
    pub duplicate: u64,
    /// Received after a later publication.
    pub out_of_order: u64,
    /// `received` over the publishing interval.
    pub deliveries_per_sec: f64,
    /// From the publication being handed to the socket to its delivery
    /// being decoded by a subscriber.
    pub latency_us: Latency,
    /// Subscribers the server closed or dropped.
    pub dropped: u64,
    /// Malformed deliveries, failed connections, refused publications.
    pub errors: u64,
    pub error_samples: Vec<String>,
    pub interrupted: bool,
}

impl Report {
    pub fn to_json(&self) -> String {
        // Plain numbers and strings: serializing cannot fail.
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// 0 when nothing went wrong, 1 otherwise.
    pub fn exit_code(&self) -> i32 {
        let clean = match self {
            Report::Load(r) => r.errors == 0 && r.lost == 0 && r.received > 0,
            Report::Idle(r) => r.failed == 0 && r.dropped == 0,
            Report::Connects(r) => r.failures == 0 && r.connects > 0,
            Report::Fanout(r) => {
                r.errors == 0
                    && r.lost == 0
                    && r.duplicate == 0
                    && r.out_of_order == 0
                    && r.publications > 0
            }
        };
        if clean { exit::OK } else { exit::FAILURE }
    }
}

fn ms(us: u64) -> String {
    format!("{:.3} ms", us as f64 / 1000.0)
}

fn latency(f: &mut fmt::Formatter<'_>, l: &Latency) -> fmt::Result {
    writeln!(
        f,
        "  latency:    p50 {}  p90 {}  p99 {}  p99.9 {}  max {}",
        ms(l.p50),
        ms(l.p90),
        ms(l.p99),
        ms(l.p999),
        ms(l.max)
    )
}

fn samples(f: &mut fmt::Formatter<'_>, samples: &[String], interrupted: bool) -> fmt::Result {
    for s in samples {
        writeln!(f, "  error:      {s} (first of its kind)")?;
    }
    if interrupted {
        writeln!(f, "  (interrupted: figures cover the run so far)")?;
    }
    Ok(())
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Report::Load(r) => {
                writeln!(
                    f,
                    "wsc bench {}: {} connections, {} B {}, {} in flight each, {:.1}s after {:.1}s warm-up",
                    r.url,
                    r.connections,
                    r.size,
                    if r.binary { "binary" } else { "text" },
                    r.inflight,
                    r.duration_secs,
                    r.warmup_secs
                )?;
                writeln!(
                    f,
                    "  messages:   {} sent = {} received + {} in flight at the end + {} lost",
                    r.sent, r.received, r.in_flight, r.lost
                )?;
                writeln!(
                    f,
                    "  throughput: {:.0} msg/s, {:.2} MB/s",
                    r.msgs_per_sec, r.mb_per_sec
                )?;
                latency(f, &r.latency_us)?;
                writeln!(
                    f,
                    "  errors:     {} ({} connections failed to open)",
                    r.errors, r.connect_failures
                )?;
                samples(f, &r.error_samples, r.interrupted)
            }
            Report::Idle(r) => {
                writeln!(
                    f,
                    "wsc bench --idle {}: {} connections from {} source address(es)",
                    r.url, r.requested, r.source_addresses
                )?;
                writeln!(
                    f,
                    "  opened:     {} in {:.2}s ({:.0} connections/s), {} failed",
                    r.opened, r.ramp_secs, r.connect_rate, r.failed
                )?;
                writeln!(
                    f,
                    "  held:       {} still open after {:.1}s, {} dropped",
                    r.held_open, r.hold_secs, r.dropped
                )?;
                samples(f, &r.error_samples, r.interrupted)
            }
            Report::Connects(r) => {
                writeln!(
                    f,
                    "wsc bench --connects {}: {} at a time for {:.1}s",
                    r.url, r.concurrency, r.duration_secs
                )?;
                writeln!(
                    f,
                    "  connects:   {} ({:.0}/s, each with a closing handshake), {} failures",
                    r.connects, r.connects_per_sec, r.failures
                )?;
                samples(f, &r.error_samples, r.interrupted)
            }
            Report::Fanout(r) => {
                writeln!(
                    f,
                    "wsc bench --fanout {}: {} subscribers ({} connected), publisher {}, {} B text at {}/s, {:.1}s after {:.1}s warm-up",
                    r.url,
                    r.subscribers,
                    r.connected,
                    r.publisher,
                    r.size,
                    r.rate,
                    r.duration_secs,
                    r.warmup_secs
                )?;
                writeln!(
                    f,
                    "  published:  {} ({:.0}/s)",
                    r.publications, r.publications_per_sec
                )?;
                writeln!(
                    f,
                    "  deliveries: {} expected = {} received + {} lost ({:.1}s drain); {} duplicate, {} out of order",
                    r.expected, r.received, r.lost, r.drain_secs, r.duplicate, r.out_of_order
                )?;
                writeln!(f, "  throughput: {:.0} deliveries/s", r.deliveries_per_sec)?;
                latency(f, &r.latency_us)?;
                writeln!(
                    f,
                    "  errors:     {} ({} subscribers failed to connect, {} dropped)",
                    r.errors, r.connect_failures, r.dropped
                )?;
                samples(f, &r.error_samples, r.interrupted)
            }
        }
    }
}

/// Counters shared by the tasks of one run (one thread, so `Cell`s), read by
/// the progress printer and turned into a report at the end.
#[derive(Debug, Default)]
pub(crate) struct Tally {
    pub(crate) open: Cell<u64>,
    pub(crate) failed: Cell<u64>,
    pub(crate) sent: Cell<u64>,
    pub(crate) received: Cell<u64>,
    pub(crate) in_flight: Cell<u64>,
    pub(crate) lost: Cell<u64>,
    pub(crate) errors: Cell<u64>,
    pub(crate) bytes: Cell<u64>,
    samples: RefCell<Vec<String>>,
}

impl Tally {
    pub(crate) fn add(cell: &Cell<u64>, n: u64) {
        cell.set(cell.get() + n);
    }

    pub(crate) fn sub(cell: &Cell<u64>, n: u64) {
        cell.set(cell.get().saturating_sub(n));
    }

    /// Counts an error, and keeps its message when it is the first of its
    /// `kind` (and one of the first few kinds), so ten thousand identical
    /// mismatches print one line.
    pub(crate) fn error(&self, kind: &str, detail: impl fmt::Display) {
        Tally::add(&self.errors, 1);
        let mut samples = self.samples.borrow_mut();
        if samples.len() < ERROR_SAMPLES && !samples.iter().any(|s| s.starts_with(kind)) {
            samples.push(format!("{kind}: {detail}"));
        }
    }

    pub(crate) fn samples(&self) -> Vec<String> {
        self.samples.borrow().clone()
    }
}

/// A latency histogram in microseconds, 1 µs to 1 hour, 3 significant digits.
pub(crate) fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("constant bounds are valid")
}

impl Latency {
    pub(crate) fn from_histogram(h: &Histogram<u64>) -> Latency {
        if h.is_empty() {
            return Latency::default();
        }
        Latency {
            p50: h.value_at_quantile(0.5),
            p90: h.value_at_quantile(0.9),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            max: h.max(),
            mean: (h.mean() * 10.0).round() / 10.0,
            samples: h.len(),
        }
    }
}

/// Prints a progress line on stderr once a second until `done` resolves.
pub(crate) async fn progress<F: std::future::Future>(
    enabled: bool,
    label: &'static str,
    tally: &Tally,
    done: F,
) -> F::Output {
    if !enabled {
        return done.await;
    }
    let start = Instant::now();
    let mut tick = tokio::time::interval_at(
        tokio::time::Instant::now() + Duration::from_secs(1),
        Duration::from_secs(1),
    );
    tokio::pin!(done);
    let mut last = 0;
    loop {
        tokio::select! {
            output = &mut done => return output,
            _ = tick.tick() => {
                let received = tally.received.get();
                eprintln!(
                    "wsc bench {label}: {:>4.0}s  open {}  failed {}  messages {} (+{}/s)  errors {}",
                    start.elapsed().as_secs_f64(),
                    tally.open.get(),
                    tally.failed.get(),
                    received,
                    received - last,
                    tally.errors.get(),
                );
                last = received;
            }
        }
    }
}
