//! The supervising actor: it knows every live session, reports them, and
//! drives graceful shutdown.
//!
//! Sessions talk to the registry only when they start and stop; the registry
//! talks to sessions only through a `Recipient<GoingAway>`, so it never needs to
//! know the session type and the two modules do not import each other.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use tokio::sync::oneshot;

use super::metrics::Metrics;
use super::session::CloseCause;

/// A session announces itself.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Connect {
    pub id: u64,
    pub peer: Option<SocketAddr>,
    pub addr: Recipient<GoingAway>,
}

/// A session has ended, however it ended.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Disconnect {
    pub id: u64,
    pub cause: CloseCause,
}

/// Sent to a session: close with 1001, the server is going away.
#[derive(Message, Clone, Copy)]
#[rtype(result = "()")]
pub(crate) struct GoingAway;

/// Close every session and resolve when all are gone or `timeout` passes.
/// Answers how many sessions were still open at the end (0 = clean).
#[derive(Message)]
#[rtype(result = "usize")]
pub(crate) struct Shutdown {
    pub timeout: Duration,
}

/// Ask for a [`Report`].
#[derive(Message)]
#[rtype(result = "Report")]
pub(crate) struct Stats;

/// What the registry knows, for `/healthz`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Report {
    pub sessions: usize,
    /// Age of the longest-lived session, in seconds.
    pub oldest_session_secs: u64,
    pub shutting_down: bool,
}

struct Entry {
    since: Instant,
    addr: Recipient<GoingAway>,
}

/// The registry actor. Start it once per server with [`Registry::new`].
pub(crate) struct Registry {
    sessions: HashMap<u64, Entry>,
    metrics: Arc<Metrics>,
    shutting_down: bool,
    drained: Vec<oneshot::Sender<()>>,
}

impl Registry {
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Registry {
            sessions: HashMap::new(),
            metrics,
            shutting_down: false,
            drained: Vec::new(),
        }
    }

    fn update_gauge(&self) {
        self.metrics.sessions_active.set(self.sessions.len() as i64);
    }
}

impl Actor for Registry {
    type Context = Context<Self>;
}

impl Handler<Connect> for Registry {
    type Result = ();

    fn handle(&mut self, msg: Connect, _: &mut Context<Self>) {
        if self.shutting_down {
            // It slipped in between the listener pausing and the drain.
            msg.addr.do_send(GoingAway);
        }
        log::trace!(
            "registry: session {} from {:?} registered",
            msg.id,
            msg.peer
        );
        self.sessions.insert(
            msg.id,
            Entry {
                since: Instant::now(),
                addr: msg.addr,
            },
        );
        self.metrics.sessions_opened.inc();
        self.update_gauge();
    }
}

impl Handler<Disconnect> for Registry {
    type Result = ();

    fn handle(&mut self, msg: Disconnect, _: &mut Context<Self>) {
        if self.sessions.remove(&msg.id).is_some() {
            self.metrics.session_closed(msg.cause);
            self.update_gauge();
        }
        if self.sessions.is_empty() {
            for waiter in self.drained.drain(..) {
                let _ = waiter.send(());
            }
        }
    }
}

impl Handler<Shutdown> for Registry {
    type Result = ResponseActFuture<Self, usize>;

    fn handle(&mut self, msg: Shutdown, _: &mut Context<Self>) -> Self::Result {
        self.shutting_down = true;
        log::info!(
            "closing {} session(s) with 1001 (waiting up to {})",
            self.sessions.len(),
            humantime::format_duration(msg.timeout)
        );
        for entry in self.sessions.values() {
            entry.addr.do_send(GoingAway);
        }
        let (tx, rx) = oneshot::channel();
        if self.sessions.is_empty() {
            let _ = tx.send(());
        } else {
            self.drained.push(tx);
        }
        let wait = async move {
            let _ = tokio::time::timeout(msg.timeout, rx).await;
        };
        Box::pin(wait.into_actor(self).map(|_, act, _| act.sessions.len()))
    }
}

impl Handler<Stats> for Registry {
    type Result = MessageResult<Stats>;

    fn handle(&mut self, _: Stats, _: &mut Context<Self>) -> Self::Result {
        let oldest = self
            .sessions
            .values()
            .map(|e| e.since.elapsed().as_secs())
            .max()
            .unwrap_or(0);
        MessageResult(Report {
            sessions: self.sessions.len(),
            oldest_session_secs: oldest,
            shutting_down: self.shutting_down,
        })
    }
}
