//! The browser console over HTTP and WebSocket, without a browser: the
//! redirect, the files and their headers, the key check, and the stats
//! stream. (`tests/browser.rs` drives the page itself in Chromium.)

mod common;

use std::time::Duration;

use common::{BOUND, TestWsd, next_message, test_config};
use futures_util::SinkExt;
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use wsd::config::{Config, RequireKey};
use wsd::console::CONTENT_SECURITY_POLICY;

const KEY: &str = "console-test-key-0123456789";

const CHROME_ACCEPT: &str =
    "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,*/*;q=0.8";

fn keyed() -> Config {
    let mut config = test_config();
    config.console.require_key = RequireKey::Always;
    config.channels.api_keys = vec![KEY.into()];
    config
}

/// The status of a WebSocket upgrade to `path`, as tokio-tungstenite sees it.
async fn upgrade_status(wsd: &TestWsd, path: &str) -> u16 {
    let url = format!("ws://{}{path}", wsd.addr());
    match tokio::time::timeout(BOUND, tokio_tungstenite::connect_async(url))
        .await
        .expect("connect timed out")
    {
        Ok((_, res)) => res.status().as_u16(),
        Err(tokio_tungstenite::tungstenite::Error::Http(res)) => res.status().as_u16(),
        Err(e) => panic!("connect to {path}: {e}"),
    }
}

/// The next stats snapshot.
async fn snapshot(ws: &mut common::Ws) -> Value {
    match next_message(ws).await {
        Message::Text(t) => serde_json::from_str(&t).expect("a snapshot is JSON"),
        other => panic!("expected a snapshot, got {other:?}"),
    }
}

#[actix_web::test]
async fn a_browser_opening_the_endpoint_is_sent_to_the_console_and_other_clients_still_get_426() {
    let wsd = TestWsd::start(test_config());
    let client = awc::Client::builder().disable_redirects().finish();
    let res = client
        .get(format!("http://{}/", wsd.addr()))
        .insert_header(("Accept", CHROME_ACCEPT))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 303);
    assert_eq!(res.headers().get("location").unwrap(), "/console");
    // curl, and anything that does not ask for HTML.
    for accept in [None, Some("*/*"), Some("application/json")] {
        let mut req = wsd.get("/");
        if let Some(accept) = accept {
            req = req.insert_header(("Accept", accept));
        }
        let res = req.send().await.unwrap();
        assert_eq!(res.status().as_u16(), 426, "Accept {accept:?}");
    }
    // A WebSocket client is still served.
    let mut ws = wsd.connect().await;
    assert_eq!(
        common::round_trip(&mut ws, "hello").await,
        "Server received: hello"
    );
}

#[actix_web::test]
async fn with_the_endpoint_elsewhere_a_browser_opening_the_root_is_still_sent_to_the_console() {
    let mut config = test_config();
    config.server.path = "/ws".into();
    let wsd = TestWsd::start(config);
    let client = awc::Client::builder().disable_redirects().finish();
    let res = client
        .get(format!("http://{}/", wsd.addr()))
        .insert_header(("Accept", CHROME_ACCEPT))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 303);
    assert_eq!(res.headers().get("location").unwrap(), "/console");
    let mut res = wsd.get("/").send().await.unwrap();
    assert_eq!(res.status().as_u16(), 404);
    assert_eq!(
        res.body().await.unwrap(),
        "the WebSocket endpoint is at /ws\n"
    );
    let mut res = wsd.get("/console/info").send().await.unwrap();
    let info: Value = res.json().await.unwrap();
    assert_eq!(info["echo_path"], "/ws");
}

#[actix_web::test]
async fn the_console_and_its_files_carry_a_strict_content_security_policy() {
    let wsd = TestWsd::start(test_config());
    for (path, content_type) in [
        ("/console", "text/html"),
        ("/console/app.js", "text/javascript"),
        ("/console/style.css", "text/css"),
        ("/console/favicon.svg", "image/svg+xml"),
    ] {
        let mut res = wsd.get(path).send().await.unwrap();
        assert_eq!(res.status().as_u16(), 200, "{path}");
        let headers = res.headers();
        assert!(
            headers
                .get("content-type")
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with(content_type),
            "{path}"
        );
        assert_eq!(
            headers.get("content-security-policy").unwrap(),
            CONTENT_SECURITY_POLICY
        );
        assert_eq!(headers.get("x-content-type-options").unwrap(), "nosniff");
        assert!(!res.body().await.unwrap().is_empty(), "{path}");
    }
    assert!(CONTENT_SECURITY_POLICY.starts_with("default-src 'none';"));
    assert!(!CONTENT_SECURITY_POLICY.contains("unsafe"));
    let res = wsd.get("/console/nope.js").send().await.unwrap();
    assert_eq!(res.status().as_u16(), 404);
    // Info, without a key on loopback.
    let mut res = wsd.get("/console/info").send().await.unwrap();
    assert_eq!(res.status().as_u16(), 200);
    let info: Value = res.json().await.unwrap();
    assert_eq!(info["key_required"], false);
    assert_eq!(info["echo_path"], "/");
    assert_eq!(info["channels_path"], "/channels");
}

#[actix_web::test]
async fn a_disabled_console_serves_nothing_and_sends_no_browser_there() {
    let mut config = test_config();
    config.console.enabled = false;
    let wsd = TestWsd::start(config);
    let res = wsd
        .get("/")
        .insert_header(("Accept", CHROME_ACCEPT))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 426);
    for path in ["/console", "/console/app.js", "/console/info"] {
        let res = wsd.get(path).send().await.unwrap();
        assert_eq!(res.status().as_u16(), 404, "{path}");
    }
    assert_eq!(upgrade_status(&wsd, "/console/stats").await, 404);
}

#[actix_web::test]
async fn with_a_key_required_info_and_the_stats_stream_need_one_of_the_api_keys() {
    let wsd = TestWsd::start(keyed());
    // The page itself is public: it holds no data, and asks for the key.
    let res = wsd.get("/console").send().await.unwrap();
    assert_eq!(res.status().as_u16(), 200);

    let mut res = wsd.get("/console/info").send().await.unwrap();
    assert_eq!(res.status().as_u16(), 401);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unauthorized");
    let res = wsd
        .get("/console/info")
        .insert_header(("Authorization", "Bearer wrong-key-0123456789"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 401);
    let mut res = wsd
        .get("/console/info")
        .insert_header(("Authorization", format!("Bearer {KEY}")))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 200);
    let info: Value = res.json().await.unwrap();
    assert_eq!(info["key_required"], true);
    assert_eq!(info["api_key_required"], true);

    assert_eq!(upgrade_status(&wsd, "/console/stats").await, 401);
    assert_eq!(
        upgrade_status(&wsd, "/console/stats?key=wrong-key-0123456789").await,
        401
    );
    assert_eq!(
        upgrade_status(&wsd, &format!("/console/stats?key={KEY}")).await,
        101
    );
}

#[actix_web::test]
async fn the_stats_stream_sends_the_live_figures_every_second() {
    let wsd = TestWsd::start(test_config());
    let mut stats = wsd.connect_to("/console/stats").await;
    let first = snapshot(&mut stats).await;
    for key in [
        "version",
        "uptime_secs",
        "engine",
        "sessions",
        "channels",
        "subscriptions",
    ] {
        assert!(!first[key].is_null(), "no {key} in {first}");
    }
    for key in [
        "connects",
        "messages_in",
        "messages_out",
        "publications",
        "deliveries",
        "slow_consumer_closes",
        "heartbeat_timeout_closes",
    ] {
        assert!(first["totals"][key].is_u64(), "no totals.{key} in {first}");
    }
    for key in [
        "connects",
        "messages_in",
        "messages_out",
        "publications",
        "deliveries",
    ] {
        assert!(first["rates"][key].is_number(), "no rates.{key} in {first}");
    }
    assert_eq!(first["engine"], "up");
    assert_eq!(first["version"], env!("CARGO_PKG_VERSION"));
    // The stream is a session like any other (registered just after its
    // first snapshot, maybe).
    wait_snapshot(&mut stats, |s| s["sessions"] == 1).await;

    // Three clients and a subscriber: the figures follow within a few
    // snapshots (sessions report traffic on their heartbeat tick).
    let mut clients = Vec::new();
    for _ in 0..3 {
        clients.push(wsd.connect().await);
    }
    let mut subscriber = wsd.connect_to("/channels/news").await;
    wsd.wait_subscriptions(1).await;
    for ws in &mut clients {
        assert_eq!(common::round_trip(ws, "hi").await, "Server received: hi");
    }
    let res = wsd
        .post("/channels/news")
        .content_type("text/plain")
        .send_body("extra")
        .await
        .unwrap();
    assert!(res.status().is_success());
    assert_eq!(next_message(&mut subscriber).await, Message::text("extra"));
    let seen = wait_snapshot(&mut stats, |s| {
        let t = &s["totals"];
        s["sessions"] == 5
            && t["messages_in"].as_u64() >= Some(3)
            && t["deliveries"].as_u64() >= Some(1)
            && t["publications"] == 1
            && s["channels"] == 1
    })
    .await;
    assert!(seen["totals"]["connects"].as_u64() >= Some(5), "{seen}");
    drop(clients);
    drop(subscriber);
    wait_snapshot(&mut stats, |s| s["sessions"] == 1).await;
}

/// Reads snapshots until `check` holds for one (bounded).
async fn wait_snapshot(stats: &mut common::Ws, check: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + BOUND;
    loop {
        let s = snapshot(stats).await;
        if check(&s) {
            return s;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "figures stayed at {s}"
        );
    }
}

#[actix_web::test]
async fn the_stats_stream_counts_heartbeat_timeout_closes() {
    let mut config = test_config();
    config.session.client_timeout = Duration::from_millis(600);
    let wsd = TestWsd::start(config);
    // tokio-tungstenite answers pings when it reads, so the stream stays.
    let mut stats = wsd.connect_to("/console/stats").await;
    // A raw client that never answers the server's pings.
    let _silent = common::raw::RawClient::connect(wsd.addr()).await;
    let s = wait_snapshot(&mut stats, |s| s["totals"]["heartbeat_timeout_closes"] == 1).await;
    assert_eq!(s["totals"]["slow_consumer_closes"], 0);
}

#[actix_web::test]
async fn the_stats_stream_counts_slow_consumer_closes() {
    use common::stall::{frame, tight_client, write_frames};
    let mut config = test_config();
    config.session.max_send_queue = 256 << 10;
    let wsd = TestWsd::start(config);
    let mut stats = wsd.connect_to("/console/stats").await;
    // Pipelined far faster than it reads (it reads nothing).
    let mut client = tight_client(wsd.addr()).await;
    let big = frame(wsd::protocol::opcode::BINARY, &vec![0xCD; 64 * 1024]);
    write_frames(&mut client, &big, 256).await;
    let s = wait_snapshot(&mut stats, |s| s["totals"]["slow_consumer_closes"] == 1).await;
    assert_eq!(s["totals"]["heartbeat_timeout_closes"], 0);
}

#[actix_web::test]
async fn the_stats_stream_is_told_1001_at_shutdown() {
    let wsd = TestWsd::start(test_config());
    let mut stats = wsd.connect_to("/console/stats").await;
    snapshot(&mut stats).await;
    let state = wsd.state.clone();
    let shutdown = actix_web::rt::spawn(async move { state.shutdown(BOUND).await });
    loop {
        match next_message(&mut stats).await {
            Message::Text(_) => continue,
            Message::Close(Some(frame)) => {
                assert_eq!(frame.code, CloseCode::Away);
                break;
            }
            other => panic!("expected close 1001, got {other:?}"),
        }
    }
    let _ = stats.flush().await;
    let left = tokio::time::timeout(BOUND, shutdown)
        .await
        .expect("shutdown did not finish")
        .expect("shutdown task");
    assert_eq!(left, Ok(0));
}
