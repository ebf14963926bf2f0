//! `wsc bench --fanout` against the real wsd (publishing over WebSocket, over
//! HTTP, and as a Pusher client through wsd's Pusher protocol and signed HTTP
//! API): every publication reaches every subscriber once, in order, and the
//! numbers add up. Against a broadcast server that drops or doubles
//! one delivery on purpose: the bench says so, exactly, and fails the run.
//! No speed assertions: this runs on a loaded 2-core CI machine.

mod common;

use std::ffi::OsString;
use std::time::Duration;

use clap::Parser;
use common::broadcast::Broadcast;
use common::{TestWsd, test_config};
use wsd::bench::{self, Args, FanoutReport, Report};

/// Generous bound for a run of a second or two (connect, probe, publish,
/// drain, close).
const RUN_BOUND: Duration = Duration::from_secs(60);

const SUBSCRIBERS: u64 = 50;

/// Runs the bench on its own thread (it blocks on a runtime of its own) and
/// waits for it without blocking the test's runtime.
async fn fanout(url: String, extra: &[&str]) -> FanoutReport {
    let mut argv: Vec<OsString> = vec!["bench".into(), "--fanout".into(), url.into()];
    argv.extend(extra.iter().map(OsString::from));
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let args = Args::try_parse_from(argv).expect("valid flags");
        let _ = tx.send(bench::run(args).expect("bench runs"));
    });
    let report = tokio::time::timeout(RUN_BOUND, rx)
        .await
        .expect("bench finished within bound")
        .expect("bench thread panicked");
    match report {
        Report::Fanout(r) => r,
        other => panic!("expected a fan-out report, got {other:?}"),
    }
}

/// 50 subscribers at 200 publications/s for about a second.
const STEADY: &[&str] = &["-c", "50", "--rate", "200", "-d", "1s", "--warmup", "200ms"];

fn assert_everything_delivered_once_in_order(r: &FanoutReport) {
    assert!(r.publications > 0, "{r:?}");
    assert_eq!(r.connected, SUBSCRIBERS, "{r:?}");
    assert_eq!(
        r.ready, SUBSCRIBERS,
        "every subscriber heard a probe: {r:?}"
    );
    assert_eq!(r.expected, r.publications * SUBSCRIBERS, "{r:?}");
    assert_eq!(r.received, r.expected, "{r:?}");
    assert_eq!((r.lost, r.duplicate, r.out_of_order), (0, 0, 0), "{r:?}");
    assert_eq!(
        (r.errors, r.dropped, r.connect_failures),
        (0, 0, 0),
        "{r:?}"
    );
    assert_eq!(r.latency_us.samples, r.received, "{r:?}");
    assert!(r.latency_us.p50 <= r.latency_us.p99 && r.latency_us.p99 <= r.latency_us.max);
    // The rate is a cap: a slow machine may publish fewer, never more.
    assert!(r.publications <= 200 + 20, "{r:?}");
    assert_eq!(Report::Fanout(r.clone()).exit_code(), 0);
}

#[actix_web::test]
async fn websocket_publications_reach_every_subscriber_once_and_in_order() {
    let wsd = TestWsd::start(test_config());
    let url = format!("ws://{}/channels/bench", wsd.addr());
    let r = fanout(url, STEADY).await;
    assert_eq!(r.publisher, "websocket");
    assert_everything_delivered_once_in_order(&r);
    wsd.wait_sessions(0).await;
}

#[actix_web::test]
async fn http_publications_reach_every_subscriber_once_and_in_order() {
    let wsd = TestWsd::start(test_config());
    let url = format!("ws://{}/channels/bench", wsd.addr());
    let publish_url = format!("http://{}/channels/bench", wsd.addr());
    let mut extra = STEADY.to_vec();
    extra.extend(["--publish-url", &publish_url]);
    let r = fanout(url, &extra).await;
    assert_eq!(r.publisher, publish_url);
    assert_everything_delivered_once_in_order(&r);
    wsd.wait_sessions(0).await;
}

/// The Pusher app of the `--pusher` tests, and wsd serving it: the test
/// config with one `[[pusher.app]]`.
const PUSHER_ID: &str = "1";
const PUSHER_KEY: &str = "bench-key";
const PUSHER_SECRET: &str = "bench-secret-0123456789";

fn pusher_wsd() -> TestWsd {
    let text = format!(
        "[server]\nbind = \"127.0.0.1:0\"\nworkers = 1\nshutdown_timeout = \"5s\"\n\
         [[pusher.app]]\nid = {PUSHER_ID}\nkey = \"{PUSHER_KEY}\"\nsecret = \"{PUSHER_SECRET}\"\n"
    );
    let config = wsd::config::Config::parse(&text, std::path::Path::new("pusher-bench.toml"))
        .unwrap_or_else(|e| panic!("a [[pusher.app]] config: {e}"));
    TestWsd::start(config)
}

#[actix_web::test]
async fn pusher_triggers_reach_every_pusher_subscriber_once_and_in_order() {
    let wsd = pusher_wsd();
    let app = format!("{PUSHER_KEY}:{PUSHER_SECRET}:{PUSHER_ID}");
    let mut extra = STEADY.to_vec();
    extra.extend(["--pusher", &app, "--pusher-channel", "bench-public"]);
    let r = fanout(format!("ws://{}", wsd.addr()), &extra).await;
    assert_eq!(
        r.url,
        format!(
            "ws://{}/app/{PUSHER_KEY}?protocol=7&client=wsc-bench&version={}",
            wsd.addr(),
            env!("CARGO_PKG_VERSION")
        )
    );
    assert!(
        r.publisher
            .starts_with(&format!("http://{}/apps/{PUSHER_ID}/events", wsd.addr())),
        "{r:?}"
    );
    assert_everything_delivered_once_in_order(&r);
    wsd.wait_sessions(0).await;
}

#[actix_web::test]
async fn pusher_triggers_signed_with_the_wrong_secret_are_refused_and_fail_the_run() {
    let wsd = pusher_wsd();
    let app = format!("{PUSHER_KEY}:not-the-secret:{PUSHER_ID}");
    let r = fanout(
        format!("ws://{}", wsd.addr()),
        &[
            "-c",
            "3",
            "--rate",
            "50",
            "-d",
            "300ms",
            "--warmup",
            "0s",
            "--timeout",
            "1s",
            "--pusher",
            &app,
        ],
    )
    .await;
    assert_eq!(
        r.connected, 3,
        "the key is right, so subscribers connect: {r:?}"
    );
    assert_eq!((r.publications, r.received), (0, 0), "{r:?}");
    assert!(r.errors > 0, "{r:?}");
    assert!(
        r.error_samples
            .iter()
            .any(|s| s.starts_with("publication refused") && s.contains("401")),
        "{r:?}"
    );
    assert_eq!(Report::Fanout(r).exit_code(), wsd::exit::FAILURE);
}

#[actix_web::test]
async fn the_json_summary_of_wsc_bench_fanout_parses_and_adds_up() {
    let wsd = TestWsd::start(test_config());
    let url = format!("ws://{}/channels/json", wsd.addr());
    let args = [
        "bench", "--fanout", &url, "-c", "10", "--rate", "100", "-d", "500ms", "--warmup", "0s",
        "--json",
    ];
    let child = common::wsc::wsc(&args).spawn().expect("spawn wsc");
    let run = common::wsc::finish(child).await;
    assert_eq!(
        run.code, 0,
        "stderr: {}\nstdout: {}",
        run.stderr, run.stdout
    );
    let json: serde_json::Value = serde_json::from_str(&run.stdout).expect("valid JSON");
    assert_eq!(json["mode"], "fanout");
    for field in [
        "subscribers",
        "connected",
        "publications",
        "publications_per_sec",
        "expected",
        "received",
        "lost",
        "duplicate",
        "out_of_order",
        "deliveries_per_sec",
        "drain_secs",
        "errors",
    ] {
        assert!(json[field].is_number(), "{field} in {json}");
    }
    for q in ["p50", "p90", "p99", "p999", "max"] {
        assert!(json["latency_us"][q].is_u64(), "latency_us.{q} in {json}");
    }
    let n = |field: &str| json[field].as_u64().unwrap_or(u64::MAX);
    assert_eq!(n("expected"), n("publications") * 10, "{json}");
    assert_eq!(n("expected"), n("received") + n("lost"), "{json}");
}

#[actix_web::test]
async fn one_delivery_dropped_for_one_subscriber_is_one_lost_and_fails_the_run() {
    // Connection 0 is a subscriber (the publisher connects after them all);
    // it misses measured publication 3.
    let server = Broadcast::start(|conn, text| {
        usize::from(!(conn == 0 && text.starts_with("m0000000000000003")))
    })
    .await;
    let r = fanout(
        server.url(),
        &[
            "-c", "5", "--rate", "100", "-d", "500ms", "--warmup", "0s", "--drain", "300ms",
        ],
    )
    .await;
    assert!(r.publications > 3, "{r:?}");
    assert_eq!(r.lost, 1, "{r:?}");
    assert_eq!((r.duplicate, r.out_of_order, r.errors), (0, 0, 0), "{r:?}");
    assert_eq!(r.received + r.lost, r.expected, "{r:?}");
    assert_eq!(Report::Fanout(r).exit_code(), wsd::exit::FAILURE);
}

#[actix_web::test]
async fn one_delivery_sent_twice_is_one_duplicate_and_fails_the_run() {
    let server = Broadcast::start(|conn, text| {
        if conn == 1 && text.starts_with("m0000000000000002") {
            2
        } else {
            1
        }
    })
    .await;
    let r = fanout(
        server.url(),
        &["-c", "5", "--rate", "100", "-d", "500ms", "--warmup", "0s"],
    )
    .await;
    assert!(r.publications > 2, "{r:?}");
    assert_eq!((r.duplicate, r.lost, r.out_of_order), (1, 0, 0), "{r:?}");
    assert_eq!(r.received, r.expected, "{r:?}");
    assert_eq!(Report::Fanout(r).exit_code(), wsd::exit::FAILURE);
}

#[actix_web::test]
async fn fanout_usage_errors_exit_2_before_connecting() {
    for extra in [
        &["--fanout"][..],
        &["--fanout", "--rate", "10", "--size", "16"][..],
        &[
            "--fanout",
            "--rate",
            "10",
            "--publish-url",
            "ws://127.0.0.1:9/",
        ][..],
        &["--rate", "10", "--publish-url", "http://127.0.0.1:9/"][..],
        &["--fanout", "--rate", "10", "--pusher", "key-without-secret"][..],
        &[
            "--fanout",
            "--rate",
            "10",
            "--pusher",
            "k:s:1",
            "--pusher-channel",
            "private-x",
        ][..],
        &[
            "--fanout",
            "--rate",
            "10",
            "--pusher",
            "k:s:1",
            "--socketio",
            "--publish-url",
            "http://127.0.0.1:9/",
        ][..],
    ] {
        let mut args = vec!["bench", "ws://127.0.0.1:9/channels/x"];
        args.extend_from_slice(extra);
        let child = common::wsc::wsc(&args).spawn().expect("spawn wsc");
        let run = common::wsc::finish(child).await;
        assert_eq!(run.code, wsd::exit::USAGE, "{extra:?}: {}", run.stderr);
    }
}
