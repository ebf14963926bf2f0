//! The connect-rate mode: connect, upgrade, closing handshake (close 1000,
//! then the server's close and its TCP close), repeat, `-c` at a time. This
//! is the cost of a connection's whole life, not just of an accept.

use std::cell::Cell;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::conn::{Conn, Target};
use super::report::{ConnectsReport, Tally, progress};
use super::{Plan, stopped};

/// Only a close ever arrives on these connections.
const MAX_MESSAGE: usize = 4096;

/// A pause after a failure, so a refused connect does not spin the loop.
const BACKOFF: Duration = Duration::from_millis(10);

pub(crate) async fn run(
    plan: &Plan,
    target: &Target,
    stop: watch::Receiver<bool>,
) -> ConnectsReport {
    let tally = Tally::default();
    let start = Instant::now();
    let end = start + plan.duration;
    let interrupted = Cell::new(false);
    let workers = futures_util::future::join_all((0..plan.connections).map(|worker| {
        let mut stop = stop.clone();
        let (tally, interrupted) = (&tally, &interrupted);
        async move {
            let mut seq = 0u64;
            while Instant::now() < end {
                seq += 1;
                let seed = (worker as u64) << 32 | seq;
                let cycle = async {
                    let mut conn =
                        Conn::open(target, None, plan.timeout, MAX_MESSAGE, seed, false).await?;
                    Tally::add(&tally.open, 1);
                    let closed = conn.close(plan.timeout).await;
                    Tally::sub(&tally.open, 1);
                    closed
                };
                tokio::select! {
                    result = cycle => match result {
                        // `received` counts completed cycles, for the progress line.
                        Ok(()) => Tally::add(&tally.received, 1),
                        Err(e) => {
                            Tally::add(&tally.failed, 1);
                            tally.error("connect and close", e);
                            tokio::time::sleep(BACKOFF).await;
                        }
                    },
                    // A cycle cut off by the end of the run counts neither way.
                    _ = tokio::time::sleep_until(end.into()) => break,
                    _ = stopped(&mut stop) => {
                        interrupted.set(true);
                        break;
                    }
                }
            }
        }
    }));
    progress(plan.progress, "--connects", &tally, workers).await;
    let secs = Instant::now().min(end).duration_since(start).as_secs_f64();
    let connects = tally.received.get();
    ConnectsReport {
        url: plan.url.clone(),
        concurrency: plan.connections,
        duration_secs: secs,
        connects,
        failures: tally.failed.get(),
        connects_per_sec: if secs > 0.0 {
            connects as f64 / secs
        } else {
            0.0
        },
        error_samples: tally.samples(),
        interrupted: interrupted.get(),
    }
}
