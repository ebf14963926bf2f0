//! The load mode: C connections, each keeping K messages in flight, every
//! reply verified (content and order), latency recorded per reply.
//!
//! Accounting: a message counts when it is sent during the measured interval.
//! When the interval ends each such message has either been answered
//! (`received`), is still awaited (`in_flight`), or was outstanding on a
//! connection that failed (`lost`); nothing else can happen to it, so
//! `sent == received + in_flight + lost` exactly.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use hdrhistogram::Histogram;
use tokio::sync::watch;

use crate::protocol::{Event, opcode};

use super::conn::{Conn, ConnError, Target};
use super::report::{Latency, LoadReport, Tally, histogram, progress};
use super::{CONNECT_CONCURRENCY, Payload, Plan, source_addresses, stopped};

/// How long a connection waits for the server's answer to its close at the
/// end; the closing handshake is not part of the measurement.
const CLOSE_WAIT: Duration = Duration::from_secs(2);

/// Digits that stamp a sequence number into each message, so that a reply
/// can be matched to the message it answers without keeping a copy of it.
const HEX: &[u8; 16] = b"0123456789abcdef";

/// What every connection of a run shares.
struct Flow<'a> {
    plan: &'a Plan,
    tally: &'a Tally,
    latency: RefCell<Histogram<u64>>,
    start: Instant,
    measure_start: Instant,
    end: Instant,
    /// When the last connection stopped measuring (early on Ctrl-C).
    stopped_at: Cell<Instant>,
    interrupted: Cell<bool>,
}

pub(crate) async fn run(plan: &Plan, target: &Target, stop: watch::Receiver<bool>) -> LoadReport {
    let tally = Tally::default();
    let interrupted = Cell::new(false);
    let outcome = RefCell::new(None);
    let work = async {
        let conns = open_all(plan, target, &tally, stop.clone()).await;
        if *stop.borrow() {
            interrupted.set(true);
            return;
        }
        let start = Instant::now();
        let measure_start = start + plan.warmup;
        let flow = Flow {
            plan,
            tally: &tally,
            latency: RefCell::new(histogram()),
            start,
            measure_start,
            end: measure_start + plan.duration,
            stopped_at: Cell::new(measure_start),
            interrupted: Cell::new(false),
        };
        // One thread: joining the futures drives them all, no spawning needed.
        futures_util::future::join_all(
            conns
                .into_iter()
                .map(|(index, conn)| drive(conn, index, &flow, stop.clone())),
        )
        .await;
        interrupted.set(flow.interrupted.get());
        *outcome.borrow_mut() = Some((
            flow.stopped_at
                .get()
                .saturating_duration_since(measure_start),
            Latency::from_histogram(&flow.latency.borrow()),
        ));
    };
    progress(plan.progress, "load", &tally, work).await;

    let (measured, latency) = outcome.into_inner().unwrap_or_default();
    let secs = measured.as_secs_f64();
    let per_sec = |n: u64| if secs > 0.0 { n as f64 / secs } else { 0.0 };
    LoadReport {
        url: plan.url.clone(),
        connections: plan.connections,
        connect_failures: tally.failed.get(),
        size: plan.size,
        binary: plan.binary,
        inflight: plan.inflight,
        warmup_secs: plan.warmup.as_secs_f64(),
        duration_secs: secs,
        sent: tally.sent.get(),
        received: tally.received.get(),
        in_flight: tally.in_flight.get(),
        lost: tally.lost.get(),
        errors: tally.errors.get(),
        msgs_per_sec: per_sec(tally.received.get()),
        mb_per_sec: per_sec(tally.bytes.get()) / 1e6,
        latency_us: latency,
        error_samples: tally.samples(),
        interrupted: interrupted.get(),
    }
}

/// Opens the connections, `CONNECT_CONCURRENCY` at a time. Failures are
/// counted as errors; the run goes on with the rest.
pub(super) async fn open_all(
    plan: &Plan,
    target: &Target,
    tally: &Tally,
    mut stop: watch::Receiver<bool>,
) -> Vec<(usize, Conn)> {
    let sources = source_addresses(target, plan.connections, plan.sources);
    // Room for the expected prefix, and for a reply that carries an
    // unexpected one (a mismatch to report, not a protocol fault).
    let max_message = (plan.size + plan.prefix.len()) * 2 + 4096;
    let attempts = futures_util::stream::iter(0..plan.connections)
        .map(|i| {
            let source = (!sources.is_empty()).then(|| sources[i % sources.len()]);
            async move {
                let result = Conn::open(
                    target,
                    source,
                    plan.timeout,
                    max_message,
                    i as u64,
                    plan.compress,
                )
                .await;
                match result {
                    Ok(conn) => {
                        Tally::add(&tally.open, 1);
                        Some((i, conn))
                    }
                    Err(e) => {
                        Tally::add(&tally.failed, 1);
                        tally.error("connect", e);
                        None
                    }
                }
            }
        })
        .buffer_unordered(CONNECT_CONCURRENCY)
        .filter_map(|c| async move { c })
        .collect::<Vec<_>>();
    tokio::select! {
        conns = attempts => conns,
        _ = stopped(&mut stop) => Vec::new(),
    }
}

/// A message of `size` bytes: letters, later stamped with a sequence number.
pub(super) fn template(size: usize) -> Vec<u8> {
    (0..size).map(|i| b'a' + (i % 26) as u8).collect()
}

/// The message template of `plan`'s `--payload`, `plan.size` bytes.
pub(super) fn plan_template(plan: &Plan) -> Vec<u8> {
    match plan.payload {
        Payload::Letters => template(plan.size),
        Payload::Json => json_template(plan.size),
    }
}

/// `size` bytes of JSON-shaped text: ticks whose numbers change from one to
/// the next, so that it compresses the way a real feed does (a few times),
/// not the way repeated letters do (a thousand times).
fn json_template(size: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(size + 96);
    let mut x: u32 = 0x9e37_79b9;
    let mut seq = 0u32;
    while out.len() < size {
        x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        let price = 40_000 + (x >> 16) % 2_000;
        let qty = (x >> 8) % 997;
        out.extend_from_slice(
            format!(
                "{{\"s\":\"BTC-USD\",\"p\":{price}.{:02},\"q\":{qty},\"n\":{seq}}},",
                x % 100
            )
            .as_bytes(),
        );
        seq += 1;
    }
    out.truncate(size);
    out
}

/// Writes `seq` into the first (up to 16) bytes as hex digits, least
/// significant first, so even a 1-byte message tells consecutive ones apart.
fn stamp(message: &mut [u8], seq: u64) {
    for (i, b) in message.iter_mut().take(16).enumerate() {
        *b = HEX[((seq >> (4 * i)) & 0xF) as usize];
    }
}

/// The loop of one connection: fill the window, wait for I/O or the next
/// rate slot, check replies. Ends at the end of the interval or on Ctrl-C.
async fn drive(mut conn: Conn, index: usize, flow: &Flow<'_>, mut stop: watch::Receiver<bool>) {
    let plan = flow.plan;
    let tally = flow.tally;
    let op = if plan.binary {
        opcode::BINARY
    } else {
        opcode::TEXT
    };
    let prefix: &[u8] = if plan.binary { &[] } else { &plan.prefix };
    let mut message = plan_template(plan);
    let mut expected = message.clone();
    // Send time and whether the message counts, oldest first: replies come
    // back in order.
    let mut window: VecDeque<(Instant, bool)> = VecDeque::with_capacity(plan.inflight);
    let (mut next_seq, mut reply_seq) = (0u64, 0u64);
    // --rate: each connection gets an equal share, its first slot staggered
    // so that connections do not send in lockstep.
    let interval = plan
        .rate
        .map(|rate| Duration::from_secs_f64(plan.connections as f64 / rate));
    let mut next_slot = match interval {
        Some(iv) => flow.start + iv.mul_f64(index as f64 / plan.connections as f64),
        None => flow.start,
    };
    let sleep = tokio::time::sleep_until(flow.end.into());
    tokio::pin!(sleep);
    let mut interrupted = false;

    let result: Result<(), ConnError> = 'run: loop {
        let now = Instant::now();
        if now >= flow.end {
            break Ok(());
        }
        while window.len() < plan.inflight {
            if let Some(iv) = interval {
                if now < next_slot {
                    break;
                }
                // A connection that fell behind does not burst to catch up.
                next_slot = (next_slot + iv).max(now);
            }
            stamp(&mut message, next_seq);
            next_seq += 1;
            conn.queue(op, &message);
            let counted = now >= flow.measure_start;
            if counted {
                Tally::add(&tally.sent, 1);
            }
            window.push_back((now, counted));
        }
        let wake = if interval.is_some() && window.len() < plan.inflight {
            next_slot.min(flow.end)
        } else {
            flow.end
        };
        if sleep.deadline() != wake.into() {
            sleep.as_mut().reset(wake.into());
        }
        tokio::select! {
            biased;
            io = conn.io() => {
                if let Err(e) = io {
                    break Err(e);
                }
            }
            _ = &mut sleep => {}
            _ = stopped(&mut stop) => {
                interrupted = true;
                break Ok(());
            }
        }
        loop {
            let event = match conn.next_event() {
                Ok(Some(event)) => event,
                Ok(None) => break,
                Err(e) => break 'run Err(e),
            };
            let (reply, is_text) = match event {
                Event::Text(b) => (b, true),
                Event::Binary(b) => (b, false),
                Event::Ping(_) | Event::Pong(_) => continue,
                Event::Close(frame) => {
                    break 'run Err(ConnError::server_close(&frame));
                }
            };
            let Some((sent_at, counted)) = window.pop_front() else {
                tally.error("reply to no message", format_args!("connection {index}"));
                continue;
            };
            stamp(&mut expected, reply_seq);
            reply_seq += 1;
            let matches = is_text != plan.binary
                && reply.len() == prefix.len() + expected.len()
                && reply.starts_with(prefix)
                && reply[prefix.len()..] == expected[..];
            if !matches {
                tally.error(
                    "mismatched reply",
                    format_args!(
                        "connection {index}: a {} reply is not {}: {:?}",
                        if is_text { "text" } else { "binary" },
                        if prefix.is_empty() {
                            "an exact echo of the message sent".to_owned()
                        } else {
                            format!("{:?} + the message sent", String::from_utf8_lossy(prefix))
                        },
                        String::from_utf8_lossy(&reply[..reply.len().min(80)]),
                    ),
                );
            }
            if counted {
                Tally::add(&tally.received, 1);
                Tally::add(&tally.bytes, reply.len() as u64);
                let micros = sent_at.elapsed().as_micros().max(1) as u64;
                let _ = flow.latency.borrow_mut().record(micros);
            }
        }
    };

    let now = Instant::now().min(flow.end);
    if now > flow.stopped_at.get() {
        flow.stopped_at.set(now);
    }
    if interrupted {
        flow.interrupted.set(true);
    }
    let outstanding = window.iter().filter(|(_, counted)| *counted).count() as u64;
    match result {
        Ok(()) => {
            Tally::add(&tally.in_flight, outstanding);
            // Not measured: a server that answers the data but fumbles the
            // close still shows up, as an error.
            if let Err(e) = conn.close(CLOSE_WAIT.min(plan.timeout)).await {
                tally.error("closing handshake", format_args!("connection {index}: {e}"));
            }
        }
        Err(e) => {
            Tally::add(&tally.lost, outstanding);
            tally.error("connection failed", format_args!("connection {index}: {e}"));
        }
    }
    Tally::sub(&tally.open, 1);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_tell_consecutive_messages_apart_at_any_size() {
        for size in [1, 2, 15, 16, 64] {
            let (mut a, mut b) = (template(size), template(size));
            stamp(&mut a, 41);
            stamp(&mut b, 42);
            assert_ne!(a, b, "size {size}");
            assert!(std::str::from_utf8(&a).is_ok());
        }
        let mut m = template(20);
        stamp(&mut m, 0x1f);
        assert_eq!(&m, b"f100000000000000qrst");
    }
}
