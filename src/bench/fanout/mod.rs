//! The fan-out mode: `-c` subscribers on one channel URL, one publisher at
//! `--rate`, and every delivery checked. The figures are deliveries per
//! second and publish-to-delivery latency; the verdict is whether every
//! subscriber got every publication exactly once and in order.
//!
//! A run goes through four phases, all bounded in time:
//! 1. **connect** the subscribers (spread over source addresses like
//!    `--idle`), then the publisher;
//! 2. **probe**: publish probes until every subscriber has heard one (at most
//!    `--timeout`), since a server may finish a subscription after the
//!    upgrade; only then is every later publication owed to every subscriber;
//! 3. **publish** at `--rate`, first for `--warmup` (not counted), then for
//!    `-d` (counted, numbered from 0);
//! 4. **drain**: wait, at most `--drain`, until every subscriber has every
//!    counted publication; whatever is missing then is lost.
//!
//! Accounting, per subscriber connected: `received + lost == publications`
//! exactly ([`track::Track`]); duplicates and late (out-of-order) arrivals are
//! counted on top. Layout: `payload` (what a publication holds), `track`,
//! `publisher` (WebSocket or `http`), the peers' protocols (`socketio`,
//! `pusher`), and here the phases.

mod http;
mod payload;
mod publisher;
mod pusher;
mod socketio;
mod track;

use std::borrow::Cow;
use std::cell::{Cell, RefCell};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use tokio::sync::{Notify, watch};

use crate::protocol::{Event, opcode};

use super::conn::{Conn, ConnError, Target};
use super::report::{FanoutReport, Latency, Tally, histogram, progress};
use super::{Plan, load, stopped};
use payload::{Phase, Stamp};
use publisher::{Outcome, Publisher, PusherPublisher};
use pusher::{App, Inbound};

pub(crate) use pusher::App as PusherApp;
use track::{Arrival, Track};

pub(crate) use payload::HEADER as MIN_SIZE;

/// How often probes go out while subscribers are still joining: a subscriber
/// is known to listen within this of its subscription completing, and 10,000
/// subscribers hearing 50 probes a second is little work for a server.
const PROBE_INTERVAL: Duration = Duration::from_millis(20);

/// A publisher this far behind its schedule skips the missed slots instead
/// of sending them in a burst: a burst would measure queueing in our own
/// process, and the shortfall shows in `publications_per_sec`.
const MAX_LAG: Duration = Duration::from_millis(50);

/// How often a backlogged WebSocket publisher looks again whether the server
/// has taken its queued output.
const BACKLOG_POLL: Duration = Duration::from_millis(1);

/// How long each connection waits for the server's answer to its close; the
/// closing handshake is not part of the measurement.
const CLOSE_WAIT: Duration = Duration::from_secs(2);

/// The fan-out flags, validated by [`super::Args`].
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    /// Publications per second.
    pub(crate) rate: f64,
    /// `--publish-url`: publish over HTTP there instead of over a WebSocket.
    pub(crate) publish_url: Option<String>,
    pub(crate) drain: Duration,
    /// `--socketio`: subscribers speak Socket.IO v4 (a peer for comparison).
    pub(crate) socketio: bool,
    /// `--pusher`: subscribers speak the Pusher protocol to this app, and
    /// publications are signed triggers to the HTTP API at `publish_url`.
    pub(crate) pusher: Option<App>,
}

/// What every task of a run shares (one thread, so `Cell`s).
struct Flow<'a> {
    plan: &'a Plan,
    /// Subscribers speak Socket.IO v4 ([`socketio`]).
    socketio: bool,
    /// Subscribers speak Pusher ([`pusher`]) to this app's channel.
    pusher: Option<&'a App>,
    /// Their `pusher:subscribe`, made once.
    subscribe: Vec<u8>,
    tally: &'a Tally,
    /// The clock of the send times in publications.
    origin: Instant,
    /// What every publication is made from, and checked against.
    template: Vec<u8>,
    latency: RefCell<Histogram<u64>>,
    subscribers: usize,
    /// Subscribers that have received anything (probes included).
    ready: Cell<usize>,
    all_ready: Notify,
    /// The number of counted publications, once publishing has stopped.
    published: Cell<Option<u64>>,
    /// Told of each counted delivery once `published` is set.
    delivered: Notify,
    /// Subscribers the server closed or dropped.
    dropped: Cell<u64>,
}

/// Why publishing ended before its time.
enum Halt {
    Interrupted,
    Publisher(ConnError),
}

impl From<ConnError> for Halt {
    fn from(e: ConnError) -> Halt {
        Halt::Publisher(e)
    }
}

/// When things happened, as the publisher saw them.
#[derive(Default)]
struct Timing {
    ready: usize,
    measured: Duration,
    drained: Duration,
    interrupted: bool,
}

/// The run's outcome before it becomes a report.
#[derive(Default)]
struct Outcomes {
    timing: Timing,
    tracks: Vec<Track>,
    latency: Latency,
    dropped: u64,
}

/// Runs the fan-out bench: subscribers on `target`, the publisher on
/// `target` too or, with `http`, at that resolved `--publish-url`.
pub(crate) async fn run(
    plan: &Plan,
    settings: &Settings,
    target: &Target,
    http: Option<Target>,
    stop: watch::Receiver<bool>,
) -> FanoutReport {
    let tally = Tally::default();
    let work = async {
        let conns = load::open_all(plan, target, &tally, stop.clone()).await;
        if *stop.borrow() {
            return None;
        }
        if conns.is_empty() {
            // Every connect failed, and says why in the error samples.
            return Some(Outcomes::default());
        }
        let max_message = plan.size * 2 + 4096;
        let publisher = match (&http, &settings.pusher) {
            (Some(http), Some(app)) => http::HttpPublisher::open(http.clone(), plan.timeout)
                .await
                .map(|p| Publisher::Pusher(PusherPublisher::new(p, app.clone(), &http.resource))),
            (Some(http), None) => http::HttpPublisher::open(http.clone(), plan.timeout)
                .await
                .map(Publisher::Http),
            (None, _) => Conn::open(
                target,
                None,
                plan.timeout,
                max_message,
                u64::MAX,
                plan.compress,
            )
            .await
            .map(Publisher::Ws),
        };
        let publisher = match publisher {
            Ok(p) => p,
            Err(e) => {
                tally.error("publisher", format_args!("cannot connect: {e}"));
                return Some(Outcomes::default());
            }
        };
        let flow = Flow {
            socketio: settings.socketio,
            pusher: settings.pusher.as_ref(),
            subscribe: settings
                .pusher
                .as_ref()
                .map(App::subscribe_message)
                .unwrap_or_default(),
            plan,
            tally: &tally,
            origin: Instant::now(),
            template: load::plan_template(plan),
            latency: RefCell::new(histogram()),
            subscribers: conns.len(),
            ready: Cell::new(0),
            all_ready: Notify::new(),
            published: Cell::new(None),
            delivered: Notify::new(),
            dropped: Cell::new(0),
        };
        let (release_tx, release_rx) = watch::channel(false);
        let subscribers = futures_util::future::join_all(
            conns
                .into_iter()
                .map(|(index, conn)| subscribe(conn, index, &flow, release_rx.clone())),
        );
        let publishing = publish(publisher, settings, &flow, release_tx, stop.clone());
        let (tracks, timing) = tokio::join!(subscribers, publishing);
        Some(Outcomes {
            timing,
            tracks,
            latency: Latency::from_histogram(&flow.latency.borrow()),
            dropped: flow.dropped.get(),
        })
    };
    let outcomes = progress(plan.progress, "--fanout", &tally, work).await;
    let interrupted = outcomes.as_ref().is_none_or(|o| o.timing.interrupted);
    report(
        plan,
        settings,
        &tally,
        outcomes.unwrap_or_default(),
        interrupted,
    )
}

fn report(
    plan: &Plan,
    settings: &Settings,
    tally: &Tally,
    o: Outcomes,
    interrupted: bool,
) -> FanoutReport {
    let publications = tally.sent.get();
    let (mut lost, mut duplicate, mut out_of_order, mut beyond, mut received) = (0, 0, 0, 0, 0);
    for t in &o.tracks {
        lost += t.lost(publications);
        duplicate += t.duplicates;
        out_of_order += t.out_of_order;
        beyond += t.beyond(publications);
        received += t.received;
    }
    if beyond > 0 {
        tally.error(
            "unpublished deliveries",
            format_args!("{beyond} deliveries numbered past the last publication counted"),
        );
    }
    let secs = o.timing.measured.as_secs_f64();
    let per_sec = |n: u64| if secs > 0.0 { n as f64 / secs } else { 0.0 };
    FanoutReport {
        url: plan.url.clone(),
        publisher: match (&settings.publish_url, &settings.pusher) {
            (Some(url), Some(app)) => format!(
                "{}{} (Pusher app {})",
                url.trim_end_matches('/'),
                app.events_path(""),
                app.id
            ),
            (Some(url), None) => url.clone(),
            (None, _) => "websocket".into(),
        },
        subscribers: plan.connections,
        connected: o.tracks.len() as u64,
        connect_failures: tally.failed.get(),
        ready: o.timing.ready as u64,
        size: plan.size,
        rate: settings.rate,
        warmup_secs: plan.warmup.as_secs_f64(),
        duration_secs: secs,
        drain_secs: o.timing.drained.as_secs_f64(),
        publications,
        publications_per_sec: per_sec(publications),
        expected: publications * o.tracks.len() as u64,
        received,
        lost,
        duplicate,
        out_of_order,
        deliveries_per_sec: per_sec(received),
        latency_us: o.latency,
        dropped: o.dropped,
        errors: tally.errors.get(),
        error_samples: tally.samples(),
        interrupted,
    }
}

/// One subscriber: checks each delivery until released, then closes. Its
/// track is the run's record of what it got.
async fn subscribe(
    mut conn: Conn,
    index: usize,
    flow: &Flow<'_>,
    mut release: watch::Receiver<bool>,
) -> Track {
    let mut track = Track::default();
    let mut state = Subscriber::default();
    if flow.socketio {
        socketio::join(&mut conn);
    }
    let result = loop {
        if let Err(e) = deliveries(&mut conn, index, &mut track, &mut state, flow) {
            break Err(e);
        }
        tokio::select! {
            biased;
            io = conn.io() => if let Err(e) = io {
                break Err(e);
            },
            _ = stopped(&mut release) => break Ok(()),
        }
    };
    match result {
        Ok(()) => {
            if let Err(e) = conn.close(CLOSE_WAIT.min(flow.plan.timeout)).await {
                flow.tally
                    .error("closing handshake", format_args!("subscriber {index}: {e}"));
            }
        }
        Err(e) => {
            flow.dropped.set(flow.dropped.get() + 1);
            flow.tally.error(
                "subscriber dropped",
                format_args!("subscriber {index}: {e}"),
            );
        }
    }
    Tally::sub(&flow.tally.open, 1);
    track
}

/// Where one subscriber is, besides its track.
#[derive(Default)]
struct Subscriber {
    /// It has heard a probe.
    ready: bool,
    /// Pusher: its `subscription_succeeded` has arrived.
    subscribed: bool,
}

/// Handles the deliveries already read on one subscriber's connection.
fn deliveries(
    conn: &mut Conn,
    index: usize,
    track: &mut Track,
    state: &mut Subscriber,
    flow: &Flow<'_>,
) -> Result<(), ConnError> {
    while let Some(event) = conn.next_event()? {
        let data = match event {
            Event::Text(data) | Event::Binary(data) => data,
            Event::Ping(_) | Event::Pong(_) => continue,
            Event::Close(frame) => return Err(ConnError::server_close(&frame)),
        };
        let packet;
        let data: Cow<'_, [u8]> = if flow.socketio {
            match socketio::event(conn, &data) {
                Some(payload) => {
                    packet = payload;
                    Cow::Borrowed(&packet)
                }
                None => continue,
            }
        } else if let Some(app) = flow.pusher {
            match pusher_delivery(conn, app, &data, index, state, flow) {
                Some(payload) => payload,
                None => continue,
            }
        } else {
            Cow::Borrowed(&data)
        };
        let stamp = match payload::read(&data, &flow.template) {
            Ok(stamp) => stamp,
            Err(e) => {
                flow.tally.error(
                    "malformed delivery",
                    format_args!("subscriber {index}: {e}"),
                );
                continue;
            }
        };
        if !state.ready {
            state.ready = true;
            flow.ready.set(flow.ready.get() + 1);
            if flow.ready.get() == flow.subscribers {
                flow.all_ready.notify_one();
            }
        }
        if stamp.phase != Phase::Measured || track.record(stamp.seq) == Arrival::Duplicate {
            continue;
        }
        Tally::add(&flow.tally.received, 1);
        let latency_ns = nanos_since(flow.origin).saturating_sub(stamp.sent_ns);
        let _ = flow.latency.borrow_mut().record((latency_ns / 1000).max(1));
        if flow.published.get().is_some() {
            flow.delivered.notify_one();
        }
    }
    Ok(())
}

/// Acts on one Pusher message to a subscriber: subscribes once connected,
/// answers pings, notes refusals; returns the publication an event holds.
fn pusher_delivery<'d>(
    conn: &mut Conn,
    app: &App,
    message: &'d [u8],
    index: usize,
    state: &mut Subscriber,
    flow: &Flow<'_>,
) -> Option<Cow<'d, [u8]>> {
    match pusher::inbound(app, message) {
        Ok(Inbound::Delivery(data)) => {
            if !state.subscribed {
                flow.tally.error(
                    "pusher protocol",
                    format_args!("subscriber {index}: an event before subscription_succeeded"),
                );
            }
            return Some(data);
        }
        Ok(Inbound::Established) => conn.queue(opcode::TEXT, &flow.subscribe),
        Ok(Inbound::Subscribed) => state.subscribed = true,
        Ok(Inbound::Ping) => conn.queue(opcode::TEXT, pusher::PONG),
        Ok(Inbound::Refused(what)) => flow
            .tally
            .error("pusher error", format_args!("subscriber {index}: {what}")),
        Ok(Inbound::Other) => {}
        Err(e) => flow.tally.error(
            "malformed delivery",
            format_args!("subscriber {index}: {e}"),
        ),
    }
    None
}

fn nanos_since(origin: Instant) -> u64 {
    u64::try_from(origin.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// The publisher's side of the run: probe, warm up, publish, drain, then
/// release the subscribers and close.
async fn publish(
    mut publisher: Publisher,
    settings: &Settings,
    flow: &Flow<'_>,
    release: watch::Sender<bool>,
    mut stop: watch::Receiver<bool>,
) -> Timing {
    let mut timing = Timing::default();
    let phases = async {
        probe(&mut publisher, flow, &mut stop).await?;
        timing.ready = flow.ready.get();
        let warmup_end = Instant::now() + flow.plan.warmup;
        pace(
            &mut publisher,
            settings,
            flow,
            Phase::Warmup,
            warmup_end,
            &mut stop,
        )
        .await?;
        let start = Instant::now();
        let end = start + flow.plan.duration;
        let paced = pace(
            &mut publisher,
            settings,
            flow,
            Phase::Measured,
            end,
            &mut stop,
        )
        .await;
        timing.measured = start.elapsed().min(flow.plan.duration);
        paced?;
        let drain_start = Instant::now();
        let drained = drain(&mut publisher, settings, flow, &mut stop).await;
        timing.drained = drain_start.elapsed();
        drained
    };
    match phases.await {
        Ok(()) => {}
        Err(Halt::Interrupted) => timing.interrupted = true,
        Err(Halt::Publisher(e)) => flow.tally.error("publisher failed", e),
    }
    let _ = release.send(true);
    if let Err(e) = publisher.close(CLOSE_WAIT.min(flow.plan.timeout)).await {
        flow.tally
            .error("closing handshake", format_args!("publisher: {e}"));
    }
    timing
}

/// Stamps and publishes one publication; `false` if the server refused it
/// (counted as an error, and its number used again).
async fn publish_one(
    publisher: &mut Publisher,
    flow: &Flow<'_>,
    message: &mut [u8],
    phase: Phase,
    seq: u64,
) -> Result<bool, ConnError> {
    let sent_ns = nanos_since(flow.origin);
    payload::write(
        message,
        Stamp {
            phase,
            seq,
            sent_ns,
        },
    );
    match publisher.publish(message).await? {
        Outcome::Published => Ok(true),
        Outcome::Refused(status) => {
            flow.tally.error("publication refused", status);
            Ok(false)
        }
    }
}

/// Publishes probes until every subscriber has heard one, or `--timeout`.
async fn probe(
    publisher: &mut Publisher,
    flow: &Flow<'_>,
    stop: &mut watch::Receiver<bool>,
) -> Result<(), Halt> {
    let deadline = Instant::now() + flow.plan.timeout;
    let mut message = flow.template.clone();
    let mut seq = 0;
    while flow.ready.get() < flow.subscribers {
        if Instant::now() >= deadline {
            flow.tally.error(
                "not listening",
                format_args!(
                    "{} of {} subscribers heard no probe within {:?}",
                    flow.subscribers - flow.ready.get(),
                    flow.subscribers,
                    flow.plan.timeout
                ),
            );
            return Ok(());
        }
        if publish_one(publisher, flow, &mut message, Phase::Probe, seq).await? {
            seq += 1;
        }
        publisher.flush()?;
        tokio::select! {
            biased;
            _ = stopped(stop) => return Err(Halt::Interrupted),
            e = publisher.serve() => return Err(e.into()),
            _ = flow.all_ready.notified() => {}
            _ = tokio::time::sleep(PROBE_INTERVAL) => {}
        }
    }
    Ok(())
}

/// Publishes at `--rate` until `end`, numbering from 0; counted in
/// `tally.sent` when `phase` is the measured one.
async fn pace(
    publisher: &mut Publisher,
    settings: &Settings,
    flow: &Flow<'_>,
    phase: Phase,
    end: Instant,
    stop: &mut watch::Receiver<bool>,
) -> Result<(), Halt> {
    let interval = Duration::from_secs_f64(1.0 / settings.rate);
    let mut message = flow.template.clone();
    let mut next = Instant::now();
    let mut seq = 0;
    while Instant::now() < end {
        // Everything due, in one write: the timer wakes us at most once a
        // millisecond, and a high rate has many publications in one.
        loop {
            let now = Instant::now();
            if next > now || now >= end || publisher.backlogged() {
                break;
            }
            if now - next > MAX_LAG {
                next = now;
            }
            if publish_one(publisher, flow, &mut message, phase, seq).await? {
                seq += 1;
                if phase == Phase::Measured {
                    Tally::add(&flow.tally.sent, 1);
                }
            }
            next += interval;
        }
        publisher.flush()?;
        let wake = if publisher.backlogged() {
            Instant::now() + BACKLOG_POLL
        } else {
            next.min(end)
        };
        tokio::select! {
            biased;
            _ = stopped(stop) => return Err(Halt::Interrupted),
            e = publisher.serve() => return Err(e.into()),
            _ = tokio::time::sleep_until(wake.into()) => {}
        }
    }
    Ok(())
}

/// Waits, at most `--drain`, until every subscriber has every counted
/// publication, keeping the publisher's connection going (a WebSocket
/// publisher may still be writing its last publications).
async fn drain(
    publisher: &mut Publisher,
    settings: &Settings,
    flow: &Flow<'_>,
    stop: &mut watch::Receiver<bool>,
) -> Result<(), Halt> {
    let published = flow.tally.sent.get();
    flow.published.set(Some(published));
    let expected = published * flow.subscribers as u64;
    let deadline = tokio::time::Instant::now() + settings.drain;
    while flow.tally.received.get() < expected {
        tokio::select! {
            biased;
            _ = stopped(stop) => return Err(Halt::Interrupted),
            e = publisher.serve() => return Err(e.into()),
            _ = flow.delivered.notified() => {}
            _ = tokio::time::sleep_until(deadline) => break,
        }
    }
    Ok(())
}
