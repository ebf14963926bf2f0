//! The idle mode: open N connections, hold them while answering the server's
//! pings, then close them all. Measures the connect rate during the ramp and
//! how many connections survive the hold; `bench/run.sh` reads the server's
//! memory per connection meanwhile.

use std::cell::Cell;
use std::time::{Duration, Instant};

use tokio::sync::{Notify, Semaphore, watch};

use crate::protocol::Event;

use super::conn::{Conn, ConnError, Target};
use super::report::{IdleReport, Tally, progress};
use super::{CONNECT_CONCURRENCY, Plan, source_addresses, stopped};

/// An idle connection only ever receives pings and a close: a small decoder
/// limit keeps 10,000 of them cheap.
const MAX_MESSAGE: usize = 4096;

/// How long each connection waits for the server's answer to its close.
const CLOSE_WAIT: Duration = Duration::from_secs(5);

struct Ramp {
    start: Instant,
    /// When the last attempt finished (opened or failed).
    last: Cell<Instant>,
    done: Cell<usize>,
    all_done: Notify,
}

pub(crate) async fn run(plan: &Plan, target: &Target, stop: watch::Receiver<bool>) -> IdleReport {
    let tally = Tally::default();
    let sources = source_addresses(target, plan.connections, plan.sources);
    let (release_tx, release_rx) = watch::channel(false);
    let permits = Semaphore::new(CONNECT_CONCURRENCY);
    let ramp = Ramp {
        start: Instant::now(),
        last: Cell::new(Instant::now()),
        done: Cell::new(0),
        all_done: Notify::new(),
    };
    let held = Cell::new(0u64);
    let dropped = Cell::new(0u64);
    let hold_secs = Cell::new(0.0);
    let interrupted = Cell::new(false);

    let connections = futures_util::future::join_all((0..plan.connections).map(|i| {
        let source = (!sources.is_empty()).then(|| sources[i % sources.len()]);
        let mut release = release_rx.clone();
        let (tally, ramp, permits, held, dropped) = (&tally, &ramp, &permits, &held, &dropped);
        async move {
            let opened = tokio::select! {
                result = async {
                    let _permit = permits.acquire().await;
                    Conn::open(target, source, plan.timeout, MAX_MESSAGE, i as u64, plan.compress).await
                } => Some(result),
                _ = stopped(&mut release) => None,
            };
            let Some(opened) = opened else { return };
            ramp.last.set(Instant::now());
            ramp.done.set(ramp.done.get() + 1);
            if ramp.done.get() == plan.connections {
                ramp.all_done.notify_one();
            }
            let mut conn = match opened {
                Ok(conn) => conn,
                Err(e) => {
                    Tally::add(&tally.failed, 1);
                    tally.error("connect", e);
                    return;
                }
            };
            Tally::add(&tally.open, 1);
            match hold(&mut conn, &mut release).await {
                Ok(()) => {
                    held.set(held.get() + 1);
                    if let Err(e) = conn.close(CLOSE_WAIT.min(plan.timeout)).await {
                        tally.error("closing handshake", e);
                    }
                }
                Err(e) => {
                    dropped.set(dropped.get() + 1);
                    tally.error("dropped while held", e);
                }
            }
            Tally::sub(&tally.open, 1);
        }
    }));

    let coordinator = async {
        let mut stop = stop.clone();
        tokio::select! {
            _ = ramp.all_done.notified() => {}
            _ = stopped(&mut stop) => interrupted.set(true),
        }
        if !interrupted.get() {
            let hold_start = Instant::now();
            tokio::select! {
                _ = tokio::time::sleep(plan.hold) => {}
                _ = stopped(&mut stop) => interrupted.set(true),
            }
            hold_secs.set(hold_start.elapsed().as_secs_f64());
        }
        let _ = release_tx.send(true);
    };

    let work = async {
        tokio::join!(connections, coordinator);
    };
    progress(plan.progress, "--idle", &tally, work).await;

    let ramp_secs = ramp.last.get().duration_since(ramp.start).as_secs_f64();
    let opened = ramp.done.get() as u64 - tally.failed.get();
    IdleReport {
        url: plan.url.clone(),
        requested: plan.connections,
        opened,
        failed: tally.failed.get(),
        source_addresses: sources.len().max(1),
        ramp_secs,
        connect_rate: if ramp_secs > 0.0 {
            opened as f64 / ramp_secs
        } else {
            0.0
        },
        hold_secs: hold_secs.get(),
        held_open: held.get(),
        dropped: dropped.get(),
        error_samples: tally.samples(),
        interrupted: interrupted.get(),
    }
}

/// Keeps `conn` open (pongs are queued by `next_event` and written by `io`)
/// until `release` turns true. An error means the server ended it.
async fn hold(conn: &mut Conn, release: &mut watch::Receiver<bool>) -> Result<(), ConnError> {
    loop {
        while let Some(event) = conn.next_event()? {
            if let Event::Close(frame) = event {
                return Err(ConnError::server_close(&frame));
            }
        }
        tokio::select! {
            io = conn.io() => io?,
            _ = stopped(release) => return Ok(()),
        }
    }
}
