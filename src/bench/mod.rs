//! `wsc bench`: a load generator for WebSocket echo and broadcast servers, in
//! the manner of `redis-benchmark` and `nats bench`.
//!
//! Four modes, one per figure people ask for:
//! - **load** (default): C connections each send a message and wait for its
//!   reply (or keep K in flight), verify every reply, and record latency in an
//!   HDR histogram.
//! - **`--idle`**: open N connections (spread over 127.0.0.x source addresses
//!   when one address has too few ports), hold them while answering pings.
//! - **`--connects`**: connect, handshake, close handshake, repeat.
//! - **`--fanout`**: C subscribers on a channel URL, one publisher (over
//!   WebSocket, or HTTP with `--publish-url`) at `--rate`; every subscriber
//!   must get every publication once and in order, and publish-to-delivery
//!   latency goes in an HDR histogram. With `--socketio` or `--pusher` the
//!   subscribers speak that protocol, to measure such a server the same way.
//!
//! Everything runs on one thread (a current-thread tokio runtime): the load
//! generator is meant to be pinned to one core, next to the server on another.
//!
//! Layout: [`Args`] (flags) are turned into a validated [`Plan`] here; `conn`
//! is the raw WebSocket client; `load`, `idle`, `connects` and `fanout` are
//! the modes (`fanout` with its payload, sequence tracking and HTTP
//! publisher); `report` holds the summaries and their printing.

mod conn;
mod connects;
mod fanout;
mod idle;
mod load;
mod report;

use std::io::{IsTerminal, Write};
use std::net::IpAddr;
use std::time::Duration;

use clap::Parser;
use tokio::sync::watch;

use crate::{exit, units};

pub use report::{ConnectsReport, FanoutReport, IdleReport, Latency, LoadReport, Report};

/// The largest message the load mode sends: beyond this, a benchmark measures
/// memory bandwidth rather than the server.
const MAX_SIZE: usize = 64 << 20;

/// How many connection attempts are under way at once while connecting: enough
/// to ramp quickly, few enough not to fill the server's accept backlog.
const CONNECT_CONCURRENCY: usize = 128;

/// Flags of `wsc bench`. The doc comment of each field is its help text.
/// A subcommand of `wsc` ([`crate::client::cli`]); also a parser of its own
/// (`Args::try_parse_from(["bench", URL, ...])`) for tests.
#[derive(Parser, Debug, Clone)]
#[command(
    name = "bench",
    about = "Load generator for WebSocket echo and broadcast servers (ws:// only; wss:// is not supported).",
    after_help = "Modes:\n  \
        (default)    each connection sends a message, waits for and verifies the reply\n  \
        --idle       open -c connections and hold them (answering pings) for --hold\n  \
        --connects   connect + handshake + close handshake in a loop, -c at a time\n  \
        --fanout     -c subscribers on a channel URL, one publisher at --rate; every\n               \
        subscriber must get every publication once, in order\n\n\
        Examples:\n  \
        wsc bench ws://127.0.0.1:12345 -c 50 -d 10s --expect-prefix 'Server received: '\n  \
        wsc bench ws://127.0.0.1:12345 -c 50 -d 10s --size 16384 --binary --inflight 4\n  \
        wsc bench ws://127.0.0.1:12345 -c 10 -d 30s --rate 5000 --expect-prefix 'Server received: ' --json > result.json\n  \
        wsc bench --idle ws://127.0.0.1:12345 -c 10000 --hold 30s\n  \
        wsc bench --connects ws://127.0.0.1:12345 -c 8 -d 10s\n  \
        wsc bench --fanout ws://127.0.0.1:12345/channels/bench -c 1000 --rate 100 -d 10s\n  \
        wsc bench --fanout ws://127.0.0.1:12345/channels/bench -c 1000 --rate 100 \\\n      \
        --publish-url http://127.0.0.1:12345/channels/bench --json\n  \
        wsc bench --fanout ws://127.0.0.1:6001 --pusher app-key:app-secret:app-id -c 1000 --rate 100\n\n\
        Replies are verified: a text reply must be PREFIX + the message sent (an exact echo\n\
        without --expect-prefix), a binary reply an exact echo, in order. Mismatches count\n\
        as errors. --fanout publications are text: a sequence number and the send time,\n\
        padded to --size; what a subscriber has not received --drain after publishing\n\
        stopped is lost. Progress goes to stderr once a second (when it is a terminal, or with\n\
        --progress); Ctrl-C stops early and prints the summary so far.\n\n\
        Exit codes: 0 no errors, 1 errors or failures (--fanout: anything lost, duplicated\n\
        or reordered), 2 usage."
)]
pub struct Args {
    /// The server's URL, ws://HOST[:PORT][/PATH].
    #[arg(value_name = "URL")]
    pub url: String,
    /// Connections (load and --idle), connections at once (--connects), or
    /// subscribers (--fanout).
    #[arg(short = 'c', long, value_name = "N", default_value_t = 1)]
    pub connections: usize,
    /// How long to measure, after the warm-up (load and --connects), e.g. 10s, 500ms.
    #[arg(short = 'd', long, value_name = "DURATION", default_value = "10s", value_parser = units::parse_duration)]
    pub duration: Duration,
    /// Traffic before the measurement starts, verified but not counted.
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = units::parse_duration)]
    pub warmup: Duration,
    /// Message size in bytes, optionally with a unit (e.g. 64, 16384, 16KiB, 16kib, 1MB).
    #[arg(long, value_name = "BYTES", default_value = "64", value_parser = units::parse_size)]
    pub size: usize,
    /// Send binary messages instead of text.
    #[arg(long)]
    pub binary: bool,
    /// What messages hold: `letters` (a-z repeated: compresses extremely
    /// well) or `json` (JSON ticks with changing numbers, as feeds send).
    #[arg(long, value_name = "KIND", default_value = "letters")]
    pub payload: Payload,
    /// Offer permessage-deflate (RFC 7692) on every connection: compress
    /// what is sent, inflate what is received. The run fails if the server
    /// declines.
    #[arg(long)]
    pub compress: bool,
    /// Messages each connection keeps in flight (sent, reply not yet received).
    #[arg(long, value_name = "K", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=65_536))]
    pub inflight: u32,
    /// Cap on the total messages per second, over all connections; with
    /// --fanout (where it is required), publications per second.
    #[arg(long, value_name = "MSGS/S")]
    pub rate: Option<f64>,
    /// A text reply must be this prefix followed by the message sent (wsd's
    /// default is 'Server received: '). Without it an exact echo is expected.
    #[arg(long, value_name = "STR")]
    pub expect_prefix: Option<String>,
    /// Print the summary as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    /// Print progress on stderr even when it is not a terminal.
    #[arg(long)]
    pub progress: bool,
    /// Idle mode: open -c connections and hold them.
    #[arg(long, conflicts_with = "connects")]
    pub idle: bool,
    /// How long --idle holds the connections once all are open.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = units::parse_duration)]
    pub hold: Duration,
    /// Connect-rate mode: connect, handshake, close handshake, repeat.
    #[arg(long)]
    pub connects: bool,
    /// Spread connections over this many source addresses 127.0.0.1..N
    /// (IPv4 loopback targets only). Default: as many as the ephemeral port
    /// range needs, i.e. 1 below ~25,000 connections.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u8).range(1..=250))]
    pub sources: Option<u8>,
    /// Fan-out mode: -c subscribers on URL (a channel, e.g.
    /// ws://HOST:PORT/channels/NAME), one publisher at --rate.
    #[arg(long, conflicts_with_all = ["idle", "connects"])]
    pub fanout: bool,
    /// --fanout: publish by HTTP POST to this URL (e.g.
    /// http://HOST:PORT/channels/NAME) instead of over a WebSocket to URL.
    #[arg(long, value_name = "URL", requires = "fanout")]
    pub publish_url: Option<String>,
    /// --fanout: how long to wait, after publishing stops, for deliveries
    /// still on their way; what has not arrived by then is lost.
    #[arg(long, value_name = "DURATION", default_value = "2s", value_parser = units::parse_duration)]
    pub drain: Duration,
    /// --fanout: the subscribers speak Socket.IO v4 (Engine.IO 4 over a
    /// WebSocket; URL like ws://HOST:PORT/socket.io/?EIO=4&transport=websocket&channel=NAME)
    /// and take `42["m","..."]` events as deliveries; needs --publish-url.
    /// For comparing with a Socket.IO server.
    #[arg(long, requires = "publish_url")]
    pub socketio: bool,
    /// --fanout: the subscribers speak the Pusher Channels protocol 7 to this
    /// app (a URL without a path gets /app/KEY?protocol=7 appended) and join
    /// --pusher-channel; publications are signed triggers to the HTTP API,
    /// POST /apps/APP_ID/events on the same host (or under --publish-url,
    /// e.g. http://HOST:PORT). For wsd's Pusher mode and Pusher servers.
    #[arg(
        long,
        value_name = "KEY:SECRET:APP_ID",
        requires = "fanout",
        conflicts_with = "socketio"
    )]
    pub pusher: Option<String>,
    /// --pusher: the public channel the subscribers join and the events go to.
    #[arg(
        long,
        value_name = "NAME",
        default_value = "bench",
        requires = "pusher"
    )]
    pub pusher_channel: String,
    /// Bound on each connect + handshake, on each closing handshake, and
    /// (--fanout) on each HTTP publication and on the subscribers' readiness.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = units::parse_duration)]
    pub timeout: Duration,
}

/// What the messages of a run hold (`--payload`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Payload {
    Letters,
    Json,
}

/// Errors that stop a run before it measures anything.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("{0}: only ws:// URLs are supported by wsc bench")]
    Scheme(String),
    #[error("bad URL {url:?}: {reason}")]
    BadUrl { url: String, reason: &'static str },
    #[error("cannot resolve {host}: {source}")]
    Resolve {
        host: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Usage(String),
    #[error("cannot start the runtime: {0}")]
    Runtime(std::io::Error),
}

impl BenchError {
    /// Usage errors exit 2, the rest 1.
    pub fn exit_code(&self) -> i32 {
        match self {
            BenchError::Scheme(_) | BenchError::BadUrl { .. } | BenchError::Usage(_) => exit::USAGE,
            BenchError::Resolve { .. } | BenchError::Runtime(_) => exit::FAILURE,
        }
    }
}

/// What the flags mean, validated: the one place that judges them.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    url: String,
    connections: usize,
    duration: Duration,
    warmup: Duration,
    size: usize,
    binary: bool,
    payload: Payload,
    compress: bool,
    inflight: usize,
    rate: Option<f64>,
    prefix: Vec<u8>,
    hold: Duration,
    timeout: Duration,
    sources: Option<u8>,
    progress: bool,
}

#[derive(Debug, Clone)]
enum Mode {
    Load,
    Idle,
    Connects,
    Fanout(fanout::Settings),
}

impl Args {
    fn plan(&self) -> Result<(Mode, Plan), BenchError> {
        let usage = |m: &str| Err(BenchError::Usage(m.to_owned()));
        if self.connections == 0 {
            return usage("-c must be at least 1");
        }
        if self.duration.is_zero() && !self.idle {
            return usage("-d must be longer than 0");
        }
        if self.size > MAX_SIZE {
            return usage("--size is at most 64MiB");
        }
        if let Some(rate) = self.rate
            && !(rate.is_finite() && rate > 0.0)
        {
            return usage("--rate must be a positive number of messages per second");
        }
        let mut url = self.url.clone();
        let mode = match (self.idle, self.connects, self.fanout) {
            (true, _, _) => Mode::Idle,
            (_, true, _) => Mode::Connects,
            (_, _, true) => {
                let mut settings = self.fanout_settings()?;
                if let Some(app) = &settings.pusher {
                    let (subscribe, api) =
                        pusher_urls(&self.url, self.publish_url.as_deref(), app)?;
                    url = subscribe;
                    settings.publish_url = Some(api);
                }
                Mode::Fanout(settings)
            }
            _ => Mode::Load,
        };
        let plan = Plan {
            url,
            connections: self.connections,
            duration: self.duration,
            warmup: self.warmup,
            size: self.size,
            binary: self.binary,
            payload: self.payload,
            compress: self.compress,
            inflight: self.inflight as usize,
            rate: self.rate,
            prefix: self.expect_prefix.clone().unwrap_or_default().into_bytes(),
            hold: self.hold,
            timeout: self.timeout,
            sources: self.sources,
            progress: self.progress || std::io::stderr().is_terminal(),
        };
        Ok((mode, plan))
    }

    fn fanout_settings(&self) -> Result<fanout::Settings, BenchError> {
        let usage = |m: String| Err(BenchError::Usage(m));
        let Some(rate) = self.rate else {
            return usage("--fanout needs --rate (publications per second)".into());
        };
        if self.size < fanout::MIN_SIZE {
            return usage(format!(
                "--fanout needs --size of at least {} bytes (the sequence number and send time)",
                fanout::MIN_SIZE
            ));
        }
        if self.binary || self.expect_prefix.is_some() || self.inflight != 1 {
            return usage(
                "--fanout publishes text as fast as --rate says: --binary, --expect-prefix and \
                 --inflight do not apply"
                    .into(),
            );
        }
        let pusher = match &self.pusher {
            Some(value) => Some(
                fanout::PusherApp::parse(value, &self.pusher_channel)
                    .map_err(|e| BenchError::Usage(e.to_string()))?,
            ),
            None => None,
        };
        Ok(fanout::Settings {
            rate,
            publish_url: self.publish_url.clone(),
            drain: self.drain,
            socketio: self.socketio,
            pusher,
        })
    }
}

/// The subscribers' URL and the HTTP API's base URL of a `--pusher` run:
/// `/app/KEY?protocol=7...` appended to a `url` that has no path (a `url`
/// with one is taken as the subscribers' already), and the API at
/// `publish_url`, else at http:// and the same host.
fn pusher_urls(
    url: &str,
    publish_url: Option<&str>,
    app: &fanout::PusherApp,
) -> Result<(String, String), BenchError> {
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err(BenchError::BadUrl {
            url: url.to_owned(),
            reason: "expected ws://HOST[:PORT][/PATH]",
        });
    };
    let split = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, resource) = rest.split_at(split);
    let subscribe = if resource.is_empty() || resource == "/" {
        format!(
            "{scheme}://{authority}/app/{}?protocol=7&client=wsc-bench&version={}",
            app.key,
            env!("CARGO_PKG_VERSION")
        )
    } else {
        url.to_owned()
    };
    let api = publish_url.map_or_else(|| format!("http://{authority}"), str::to_owned);
    Ok((subscribe, api))
}

/// The entry point of `wsc bench`, with its flags parsed by `wsc`. Prints
/// the summary and returns the exit code.
pub fn main(args: Args) -> i32 {
    let json = args.json;
    match run(args) {
        Ok(report) => {
            let text = if json {
                report.to_json()
            } else {
                report.to_string()
            };
            // A closed stdout (`| head`) is not the benchmark's failure.
            let _ = writeln!(std::io::stdout(), "{}", text.trim_end());
            report.exit_code()
        }
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "wsc bench: {e}");
            e.exit_code()
        }
    }
}

/// Runs the benchmark the flags describe, on a current-thread runtime of its
/// own, and returns its summary. Blocks: call it from a plain thread.
pub fn run(args: Args) -> Result<Report, BenchError> {
    let (mode, plan) = args.plan()?;
    // Thousands of sockets need thousands of descriptors; the soft limit is
    // often 1024. Failing to raise it only matters if we then run out.
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(BenchError::Runtime)?;
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, async move {
        let target = conn::Target::resolve(&plan.url).await?;
        let stop = stop_on_ctrl_c();
        Ok(match mode {
            Mode::Load => Report::Load(load::run(&plan, &target, stop).await),
            Mode::Idle => Report::Idle(idle::run(&plan, &target, stop).await),
            Mode::Connects => Report::Connects(connects::run(&plan, &target, stop).await),
            Mode::Fanout(settings) => {
                let http = match &settings.publish_url {
                    Some(url) => Some(conn::Target::resolve_http(url).await?),
                    None => None,
                };
                Report::Fanout(fanout::run(&plan, &settings, &target, http, stop).await)
            }
        })
    })
}

/// A flag that turns true on Ctrl-C: every loop watches it and winds down, so
/// the summary of what was measured so far still prints.
fn stop_on_ctrl_c() -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(false);
    tokio::task::spawn_local(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            let _ = tx.send(true);
        } else {
            // No signal handling here: keep the sender alive so the flag
            // simply never turns.
            std::future::pending::<()>().await;
        }
    });
    rx
}

/// Resolves when `stop` turns true (never, if its sender is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    if stop.wait_for(|s| *s).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// The source addresses to spread `n` connections over: 127.0.0.1,
/// 127.0.0.2, ..., as many as `forced` says or as one address's ephemeral
/// ports require. Only for an IPv4 loopback target; empty means "let the
/// kernel choose".
fn source_addresses(target: &conn::Target, n: usize, forced: Option<u8>) -> Vec<IpAddr> {
    let IpAddr::V4(ip) = target.addr.ip() else {
        return Vec::new();
    };
    if !ip.is_loopback() {
        return Vec::new();
    }
    // Leave a tenth of the range to everything else on the machine.
    let count = match forced {
        Some(count) => usize::from(count),
        None => address_count(n, ephemeral_ports() * 9 / 10),
    };
    if count <= 1 && forced.is_none() {
        return Vec::new();
    }
    (1..=count)
        .map(|i| IpAddr::from([127, 0, 0, i as u8]))
        .collect()
}

/// How many source addresses `n` connections need at `per_address` each.
fn address_count(n: usize, per_address: usize) -> usize {
    n.div_ceil(per_address.max(1)).clamp(1, 250)
}

/// The size of the kernel's ephemeral port range (28,232 by default).
fn ephemeral_ports() -> usize {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|text| {
            let mut parts = text.split_whitespace().map(|p| p.parse::<usize>());
            match (parts.next(), parts.next()) {
                (Some(Ok(lo)), Some(Ok(hi))) if hi >= lo => Some(hi - lo + 1),
                _ => None,
            }
        })
        .unwrap_or(28_232)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_beyond_one_address_s_ports_get_more_addresses() {
        assert_eq!(address_count(1, 25_000), 1);
        assert_eq!(address_count(25_000, 25_000), 1);
        assert_eq!(address_count(25_001, 25_000), 2);
        assert_eq!(address_count(100_000, 25_000), 4);
        assert_eq!(address_count(usize::MAX, 1), 250);
    }

    #[test]
    fn flags_are_validated_in_one_place() {
        let plan = |extra: &[&str]| {
            let mut argv = vec!["bench", "ws://127.0.0.1:1"];
            argv.extend_from_slice(extra);
            Args::try_parse_from(argv).expect("parses").plan()
        };
        assert!(plan(&[]).is_ok());
        assert!(plan(&["-c", "0"]).is_err());
        assert!(plan(&["-d", "0s"]).is_err());
        assert!(plan(&["--rate", "0"]).is_err());
        assert!(plan(&["--size", "65MiB"]).is_err());
        assert!(Args::try_parse_from(["bench", "ws://h", "--idle", "--connects"]).is_err());
        assert!(Args::try_parse_from(["bench", "ws://h", "--inflight", "0"]).is_err());
        assert!(plan(&["--fanout", "--rate", "10"]).is_ok());
        assert!(plan(&["--fanout"]).is_err(), "--fanout needs --rate");
        assert!(plan(&["--fanout", "--rate", "10", "--size", "32"]).is_err());
        assert!(plan(&["--fanout", "--rate", "10", "--binary"]).is_err());
        assert!(Args::try_parse_from(["bench", "ws://h", "--publish-url", "http://h/"]).is_err());
        assert!(Args::try_parse_from(["bench", "ws://h", "--fanout", "--idle"]).is_err());
        let pusher = ["--fanout", "--rate", "10", "--pusher", "k:s:1"];
        assert!(plan(&pusher).is_ok());
        assert!(plan(&["--fanout", "--rate", "10", "--pusher", "k:s"]).is_err());
        assert!(Args::try_parse_from(["bench", "ws://h", "--pusher", "k:s:1"]).is_err());
        assert!(Args::try_parse_from(["bench", "ws://h", "--pusher-channel", "c"]).is_err());
    }

    #[test]
    fn pusher_runs_subscribe_under_app_key_and_publish_to_the_same_host() {
        let plan = |url: &str, extra: &[&str]| {
            let mut argv = vec![
                "bench",
                url,
                "--fanout",
                "--rate",
                "10",
                "--pusher",
                "key:sec:7",
            ];
            argv.extend_from_slice(extra);
            let (mode, plan) = Args::try_parse_from(argv)
                .expect("parses")
                .plan()
                .expect("valid");
            let Mode::Fanout(settings) = mode else {
                panic!("not a fan-out plan");
            };
            let app = settings.pusher.expect("a Pusher app");
            (plan.url, settings.publish_url, app.channel)
        };
        let version = env!("CARGO_PKG_VERSION");
        assert_eq!(
            plan("ws://127.0.0.1:6001", &[]),
            (
                format!(
                    "ws://127.0.0.1:6001/app/key?protocol=7&client=wsc-bench&version={version}"
                ),
                Some("http://127.0.0.1:6001".into()),
                "bench".into()
            )
        );
        assert_eq!(
            plan(
                "ws://h:1/prefix/app/key?protocol=7",
                &[
                    "--publish-url",
                    "http://h:2/prefix",
                    "--pusher-channel",
                    "c1"
                ]
            ),
            (
                "ws://h:1/prefix/app/key?protocol=7".into(),
                Some("http://h:2/prefix".into()),
                "c1".into()
            )
        );
    }
}
