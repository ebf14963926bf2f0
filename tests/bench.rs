//! `wsc bench` against the real app: the numbers add up, every reply is
//! verified, and each mode reports what it did. No speed assertions: this
//! runs on a loaded 2-core CI machine.
//!
//! The bench blocks on its own runtime, so it runs on a plain thread while
//! the test's actix system keeps serving.

mod common;

use std::ffi::OsString;
use std::process::Stdio;
use std::time::Duration;

use clap::Parser;
use common::{TestWsd, test_config};
use wsd::bench::{self, Args, Report};
use wsd::config::Config;

/// Generous bound for a bench run of a second or two.
const RUN_BOUND: Duration = Duration::from_secs(60);

const PREFIX: &str = "Server received: ";

fn argv(url: &str, extra: &[&str]) -> Vec<OsString> {
    let mut argv: Vec<OsString> = vec!["bench".into(), url.into()];
    argv.extend(extra.iter().map(OsString::from));
    argv
}

/// Runs the bench on its own thread and waits for it without blocking the
/// test's runtime.
async fn off_thread<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    tokio::time::timeout(RUN_BOUND, rx)
        .await
        .expect("bench finished within bound")
        .expect("bench thread panicked")
}

async fn report(wsd: &TestWsd, extra: &[&str]) -> Report {
    let argv = argv(&wsd.ws_url(), extra);
    off_thread(move || {
        let args = Args::try_parse_from(argv).expect("valid flags");
        bench::run(args).expect("bench runs")
    })
    .await
}

/// Runs the real `wsc bench URL EXTRA...` and waits (bounded) for it.
async fn wsc_bench(url: &str, extra: &[&str]) -> common::wsc::Run {
    let mut args = vec!["bench", url];
    args.extend_from_slice(extra);
    let child = common::wsc::wsc(&args).spawn().expect("spawn wsc");
    common::wsc::finish(child).await
}

async fn exit_code(url: &str, extra: &[&str]) -> i32 {
    wsc_bench(url, extra).await.code
}

fn echo_config() -> Config {
    let mut config = test_config();
    config.session.reply_prefix = String::new();
    config
}

fn load(report: Report) -> bench::LoadReport {
    match report {
        Report::Load(r) => r,
        other => panic!("expected a load report, got {other:?}"),
    }
}

#[actix_web::test]
async fn load_accounts_for_every_message_and_verifies_every_reply() {
    let wsd = TestWsd::start(test_config());
    let r = load(
        report(
            &wsd,
            &[
                "-c",
                "4",
                "-d",
                "1s",
                "--warmup",
                "200ms",
                "--expect-prefix",
                PREFIX,
            ],
        )
        .await,
    );
    assert!(r.received > 0, "{r:?}");
    assert_eq!(r.sent, r.received + r.in_flight + r.lost, "{r:?}");
    assert_eq!((r.errors, r.lost, r.connect_failures), (0, 0, 0), "{r:?}");
    assert!(
        r.in_flight <= 4,
        "at most one in flight per connection: {r:?}"
    );
    assert_eq!(r.latency_us.samples, r.received);
    assert!(r.latency_us.p50 <= r.latency_us.p99 && r.latency_us.p99 <= r.latency_us.max);
    assert_eq!(Report::Load(r).exit_code(), 0);
    wsd.wait_sessions(0).await;
}

#[actix_web::test]
async fn json_summary_parses_and_has_the_documented_fields() {
    let wsd = TestWsd::start(echo_config());
    let report = report(
        &wsd,
        &["-c", "2", "-d", "500ms", "--warmup", "0s", "--json"],
    )
    .await;
    let json: serde_json::Value = serde_json::from_str(&report.to_json()).expect("valid JSON");
    assert_eq!(json["mode"], "load");
    for field in [
        "connections",
        "sent",
        "received",
        "in_flight",
        "lost",
        "errors",
        "msgs_per_sec",
        "mb_per_sec",
        "duration_secs",
    ] {
        assert!(json[field].is_number(), "{field} in {json}");
    }
    for q in ["p50", "p90", "p99", "p999", "max"] {
        assert!(json["latency_us"][q].is_u64(), "latency_us.{q} in {json}");
    }
    assert_eq!(json["errors"], 0);
    assert_eq!(
        json["sent"].as_u64(),
        Some(
            json["received"].as_u64().unwrap_or(0)
                + json["in_flight"].as_u64().unwrap_or(0)
                + json["lost"].as_u64().unwrap_or(0)
        )
    );
}

#[actix_web::test]
async fn large_binary_messages_with_several_in_flight_echo_exactly() {
    let wsd = TestWsd::start(echo_config());
    let r = load(
        report(
            &wsd,
            &[
                "-c",
                "3",
                "-d",
                "1s",
                "--warmup",
                "100ms",
                "--size",
                "16KiB",
                "--binary",
                "--inflight",
                "4",
            ],
        )
        .await,
    );
    assert!(r.received > 0, "{r:?}");
    assert_eq!(r.sent, r.received + r.in_flight + r.lost, "{r:?}");
    assert_eq!((r.errors, r.lost), (0, 0), "{r:?}");
    assert!(r.in_flight <= 12, "{r:?}");
}

#[actix_web::test]
async fn rate_caps_the_total_messages_per_second() {
    let wsd = TestWsd::start(echo_config());
    let r = load(
        report(
            &wsd,
            &["-c", "2", "-d", "1s", "--warmup", "0s", "--rate", "100"],
        )
        .await,
    );
    assert_eq!(r.errors, 0, "{r:?}");
    assert!(r.sent > 0 && r.sent <= 110, "100 msg/s for 1s: {r:?}");
}

#[actix_web::test]
async fn a_wrong_expected_prefix_counts_errors_and_fails_the_run() {
    let wsd = TestWsd::start(test_config());
    let r = load(
        report(
            &wsd,
            &["-c", "1", "-d", "300ms", "--expect-prefix", "Nope: "],
        )
        .await,
    );
    assert!(r.errors > 0, "{r:?}");
    assert!(
        r.error_samples
            .iter()
            .any(|s| s.contains("mismatched reply")),
        "{r:?}"
    );
    assert_ne!(Report::Load(r).exit_code(), 0);
    // Without a prefix an exact echo is expected, which wsd's default is not.
    let code = exit_code(&wsd.ws_url(), &["-c", "1", "-d", "300ms", "--warmup", "0s"]).await;
    assert_eq!(code, wsd::exit::FAILURE);
}

#[actix_web::test]
async fn idle_connections_stay_open_through_the_hold_by_answering_pings() {
    // The server drops a peer silent for 1s and pings every 250ms: only
    // pongs keep a connection open through a 1.5s hold.
    let mut config = test_config();
    config.session.client_timeout = Duration::from_secs(1);
    let wsd = TestWsd::start(config);
    let Report::Idle(r) = report(&wsd, &["--idle", "-c", "200", "--hold", "1500ms"]).await else {
        panic!("expected an idle report");
    };
    assert_eq!((r.opened, r.failed), (200, 0), "{r:?}");
    assert_eq!((r.held_open, r.dropped), (200, 0), "{r:?}");
    assert!(r.connect_rate > 0.0, "{r:?}");
    wsd.wait_sessions(0).await;
}

#[actix_web::test]
async fn idle_connections_spread_over_source_addresses() {
    let wsd = TestWsd::start(test_config());
    let Report::Idle(r) = report(
        &wsd,
        &["--idle", "-c", "30", "--hold", "100ms", "--sources", "3"],
    )
    .await
    else {
        panic!("expected an idle report");
    };
    assert_eq!(r.source_addresses, 3);
    assert_eq!((r.opened, r.failed, r.held_open), (30, 0, 30), "{r:?}");
}

#[actix_web::test]
async fn connects_mode_completes_closing_handshakes() {
    let wsd = TestWsd::start(test_config());
    let Report::Connects(r) = report(&wsd, &["--connects", "-c", "2", "-d", "1s"]).await else {
        panic!("expected a connects report");
    };
    assert!(r.connects > 0, "{r:?}");
    assert_eq!(r.failures, 0, "{r:?}");
    assert_eq!(Report::Connects(r).exit_code(), 0);
    wsd.wait_sessions(0).await;
}

#[actix_web::test]
async fn usage_errors_exit_2_before_connecting() {
    for (url, extra) in [
        ("wss://127.0.0.1:9", &[][..]),
        ("127.0.0.1:9", &[][..]),
        ("ws://127.0.0.1:9", &["-c", "0"][..]),
        ("ws://127.0.0.1:9", &["--idle", "--connects"][..]),
        ("ws://127.0.0.1:9", &["--size", "many"][..]),
    ] {
        assert_eq!(
            exit_code(url, extra).await,
            wsd::exit::USAGE,
            "{url} {extra:?}"
        );
    }
}

#[actix_web::test]
async fn wsc_help_lists_bench_and_bench_has_help_of_its_own() {
    let out = tokio::time::timeout(
        common::BOUND,
        tokio::process::Command::new(env!("CARGO_BIN_EXE_wsc"))
            .arg("--help")
            .stdin(Stdio::null())
            .output(),
    )
    .await
    .expect("wsc --help within the bound")
    .expect("run wsc --help");
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{help}");
    let commands = help
        .split_once("Commands:")
        .map(|(_, rest)| rest)
        .unwrap_or_default();
    assert!(
        commands
            .lines()
            .any(|l| l.trim_start().starts_with("bench ")),
        "{help}"
    );
    let r = wsc_bench("--help", &[]).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("Usage: wsc bench"), "{}", r.stdout);
    assert!(r.stdout.contains("--inflight"), "{}", r.stdout);
}

#[actix_web::test]
async fn wsc_bench_takes_sizes_and_durations_in_human_units() {
    let wsd = TestWsd::start(echo_config());
    let r = wsc_bench(
        &wsd.ws_url(),
        &[
            "-c", "1", "-d", "300ms", "--warmup", "0s", "--size", "16kib", "--binary", "--json",
        ],
    )
    .await;
    assert_eq!(r.code, 0, "stderr: {}", r.stderr);
    let json: serde_json::Value = serde_json::from_str(&r.stdout).expect("JSON summary");
    assert_eq!(json["size"], 16 << 10, "{json}");
    assert_eq!(json["errors"], 0, "{json}");
    assert!(json["received"].as_u64() > Some(0), "{json}");
    // The same spelling the config and `wsc --max-message-size` accept.
    let r = wsc_bench(&wsd.ws_url(), &["--size", "16 parsecs"]).await;
    assert_eq!(r.code, wsd::exit::USAGE);
    assert!(
        r.stderr.contains("invalid size \"16 parsecs\""),
        "{}",
        r.stderr
    );
}

#[actix_web::test]
async fn compress_runs_json_load_through_permessage_deflate_and_fails_where_declined() {
    let mut config = test_config();
    config.session.compression = wsd::config::Compression::On;
    config.session.deflate.min_size = 0;
    let wsd = TestWsd::start(config);
    let flags = [
        "-c",
        "2",
        "-d",
        "500ms",
        "--warmup",
        "100ms",
        "--size",
        "16KiB",
        "--payload",
        "json",
        "--compress",
        "--expect-prefix",
        PREFIX,
    ];
    let r = load(report(&wsd, &flags).await);
    assert!(r.received > 0, "{r:?}");
    assert_eq!((r.errors, r.lost, r.connect_failures), (0, 0, 0), "{r:?}");

    // A server that declines the offer fails every connection, saying so.
    let plain = TestWsd::start(test_config());
    let r = load(report(&plain, &flags).await);
    assert_eq!(r.connect_failures, 2, "{r:?}");
    assert!(
        r.error_samples
            .iter()
            .any(|s| s.contains("declined permessage-deflate")),
        "{r:?}"
    );
}
