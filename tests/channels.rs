//! Channels end to end: the real server, subscribers on tokio-tungstenite (an
//! independent implementation), publishers over HTTP and WebSocket.

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{BOUND, TestWsd, Ws, next_message, raw, test_config};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::AsyncReadExt;
use tokio_tungstenite::tungstenite::Message;
use wsd::auth::{Grant, Signer};
use wsd::config::{Access, Config, NamespaceConfig};

fn namespace(name: &str) -> NamespaceConfig {
    NamespaceConfig {
        name: name.into(),
        ..NamespaceConfig::default()
    }
}

fn config_with(namespaces: Vec<NamespaceConfig>) -> Config {
    let mut config = test_config();
    config.channels.namespace = namespaces;
    config
}

async fn publish(wsd: &TestWsd, channel: &str, content_type: &str, body: &'static [u8]) -> Value {
    let mut res = wsd
        .post(&format!("/channels/{channel}"))
        .insert_header(("content-type", content_type))
        .send_body(body)
        .await
        .expect("publish");
    assert_eq!(res.status(), 200, "{:?}", res.body().await);
    res.json().await.expect("publish answer")
}

async fn publish_text(wsd: &TestWsd, channel: &str, text: String) -> Value {
    let mut res = wsd
        .post(&format!("/channels/{channel}"))
        .insert_header(("content-type", "text/plain"))
        .send_body(text)
        .await
        .expect("publish");
    assert_eq!(res.status(), 200, "{:?}", res.body().await);
    res.json().await.expect("publish answer")
}

async fn text(ws: &mut Ws) -> String {
    match next_message(ws).await {
        Message::Text(t) => t.to_string(),
        other => panic!("expected text, got {other:?}"),
    }
}

async fn json_msg(ws: &mut Ws) -> Value {
    serde_json::from_str(&text(ws).await).expect("json message")
}

async fn command(ws: &mut Ws, command: Value) -> Value {
    ws.send(Message::text(command.to_string()))
        .await
        .expect("send");
    loop {
        let msg = json_msg(ws).await;
        if msg.get("id") == command.get("id") && msg.get("ok").is_some() {
            return msg;
        }
    }
}

/// The status a refused upgrade gets.
async fn refused(wsd: &TestWsd, path: &str, extra: &[&str]) -> (u16, String) {
    let (_, status, head) = raw::handshake(wsd.addr(), path, extra).await;
    (status, head)
}

#[actix_rt::test]
async fn plain_subscribers_get_exactly_the_published_data_text_and_binary() {
    let wsd = TestWsd::start(test_config());
    let mut a = wsd.connect_to("/channels/room").await;
    let mut b = wsd.connect_to("/channels/room,other").await;
    wsd.wait_subscriptions(3).await;
    let answer = publish(&wsd, "room", "text/plain", b"hello").await;
    assert_eq!(answer["delivered"], 2);
    assert_eq!(answer["offset"], 1);
    assert!(answer["epoch"].as_str().is_some_and(|e| !e.is_empty()));
    assert_eq!(text(&mut a).await, "hello");
    assert_eq!(text(&mut b).await, "hello");
    publish(&wsd, "other", "application/octet-stream", b"\x00\x01\xff").await;
    assert_eq!(
        next_message(&mut b).await,
        Message::binary(&b"\x00\x01\xff"[..])
    );
    // What `curl -d` sends by default is text; no Content-Type is binary.
    publish(&wsd, "room", "application/x-www-form-urlencoded", b"curl").await;
    assert_eq!(text(&mut a).await, "curl");
    let res = wsd.post("/channels/room").send_body("raw").await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(next_message(&mut a).await, Message::binary(&b"raw"[..]));
    let answer = publish(&wsd, "room", "application/json", b"{\"n\":1}").await;
    assert_eq!(answer["offset"], 4);
    assert_eq!(text(&mut a).await, "{\"n\":1}");
    assert_eq!(
        wsd.metric("wsd_publications_total{source=\"http\"}").await,
        Some(5.0)
    );
}

#[actix_rt::test]
async fn a_client_publishes_to_its_channel_and_hears_its_own_publication() {
    let wsd = TestWsd::start(test_config());
    let mut a = wsd.connect_to("/channels/chat").await;
    let mut b = wsd.connect_to("/channels/chat").await;
    wsd.wait_subscriptions(2).await;
    a.send(Message::text("hi from a")).await.unwrap();
    assert_eq!(text(&mut b).await, "hi from a");
    assert_eq!(text(&mut a).await, "hi from a");
    b.send(Message::binary(vec![1u8, 2, 3])).await.unwrap();
    assert_eq!(next_message(&mut a).await, Message::binary(vec![1u8, 2, 3]));
    assert_eq!(
        wsd.metric("wsd_publications_total{source=\"ws\"}").await,
        Some(2.0)
    );
}

#[actix_rt::test]
async fn publishing_where_the_namespace_forbids_it_closes_with_1008_naming_the_rule() {
    let ticks = NamespaceConfig {
        publish: Access::Nobody,
        ..namespace("ticks")
    };
    let wsd = TestWsd::start(config_with(vec![namespace(""), ticks]));
    let mut sub = wsd.connect_to("/channels/ticks:BTC").await;
    wsd.wait_subscriptions(1).await;
    sub.send(Message::text("spoof")).await.unwrap();
    match next_message(&mut sub).await {
        Message::Close(Some(frame)) => {
            assert_eq!(u16::from(frame.code), 1008);
            assert!(
                frame.reason.contains("publish = \"nobody\""),
                "{}",
                frame.reason
            );
        }
        other => panic!("expected close, got {other:?}"),
    }
    // The API still publishes there.
    publish(&wsd, "ticks:BTC", "text/plain", b"42").await;
}

#[actix_rt::test]
async fn unknown_namespaces_and_bad_names_are_refused_before_the_upgrade() {
    let wsd = TestWsd::start(config_with(vec![namespace("")]));
    let (status, head) = refused(&wsd, "/channels/nope:x", &[]).await;
    assert_eq!(status, 404, "{head}");
    let (status, _) = refused(&wsd, "/channels/a%20b", &[]).await;
    assert_eq!(status, 400);
    let (status, _) = refused(&wsd, "/channels/a,,b", &[]).await;
    assert_eq!(status, 400);
    let (status, _) = refused(&wsd, &format!("/channels/{}", "x".repeat(256)), &[]).await;
    assert_eq!(status, 400);
    // Plain mode needs a channel.
    let (status, _) = refused(&wsd, "/channels", &[]).await;
    assert_eq!(status, 400);
    let mut res = wsd.post("/channels/nope:x").send_body("x").await.unwrap();
    assert_eq!(res.status(), 404);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unknown_namespace");
}

#[actix_rt::test]
async fn since_replays_exactly_what_was_missed_then_goes_live() {
    let wsd = TestWsd::start(test_config());
    let first = publish(&wsd, "feed", "text/plain", b"m0").await;
    let epoch = first["epoch"].as_str().unwrap().to_owned();
    // A subscriber that saw m0 (offset 1) and went away; 10 more are
    // published meanwhile.
    for i in 1..=10 {
        publish_text(&wsd, "feed", format!("m{i}")).await;
    }
    let mut ws = wsd
        .connect_to(&format!("/channels/feed?since=1&epoch={epoch}"))
        .await;
    for i in 1..=10 {
        assert_eq!(text(&mut ws).await, format!("m{i}"));
    }
    publish(&wsd, "feed", "text/plain", b"live").await;
    assert_eq!(text(&mut ws).await, "live");
    // ?last=N replays the last N.
    let mut last = wsd.connect_to("/channels/feed?last=2").await;
    assert_eq!(text(&mut last).await, "m10");
    assert_eq!(text(&mut last).await, "live");
}

#[actix_rt::test]
async fn recovery_is_refused_whole_when_the_epoch_is_lost_or_history_exceeded() {
    let small = NamespaceConfig {
        history_size: 5,
        ..namespace("")
    };
    let wsd = TestWsd::start(config_with(vec![small]));
    let first = publish(&wsd, "c", "text/plain", b"one").await;
    let epoch = first["epoch"].as_str().unwrap().to_owned();
    for i in 0..10 {
        publish_text(&wsd, "c", format!("n{i}")).await;
    }
    let mut ws = wsd.connect_to("/channels?format=json").await;
    // Offset 1 is older than the 5 kept.
    let reply = command(
        &mut ws,
        json!({"id": 1, "op": "subscribe", "channel": "c", "since": {"offset": 1, "epoch": epoch}}),
    )
    .await;
    assert_eq!(reply["ok"], true);
    assert_eq!(reply["recovered"], false);
    assert_eq!(reply["offset"], 11);
    // Another epoch.
    let reply = command(
        &mut ws,
        json!({"id": 2, "op": "subscribe", "channel": "d", "since": {"offset": 0, "epoch": "gone"}}),
    )
    .await;
    assert_eq!(reply["recovered"], false);
    // Nothing was replayed: the next message is the live one.
    publish(&wsd, "c", "text/plain", b"live").await;
    let live = json_msg(&mut ws).await;
    assert_eq!(live["data"], "live");
    assert_eq!(live["offset"], 12);
    // Within the history, recovery is complete.
    let reply = command(
        &mut ws,
        json!({"id": 3, "op": "history", "channel": "c", "since": {"offset": 9, "epoch": epoch}}),
    )
    .await;
    assert_eq!(reply["recovered"], true);
    let offsets: Vec<u64> = reply["publications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["offset"].as_u64().unwrap())
        .collect();
    assert_eq!(offsets, [10, 11, 12]);
}

#[actix_rt::test]
async fn json_mode_delivers_objects_and_answers_commands() {
    let wsd = TestWsd::start(test_config());
    let mut ws = wsd.connect_to("/channels/j?format=json").await;
    let subscribed = json_msg(&mut ws).await;
    assert_eq!(subscribed["ok"], true);
    assert_eq!(subscribed["channel"], "j");
    publish(&wsd, "j", "application/json", b"{\"price\":1.5}").await;
    let d = json_msg(&mut ws).await;
    assert_eq!(d["channel"], "j");
    assert_eq!(d["offset"], 1);
    assert_eq!(d["data"]["price"], 1.5);
    assert!(d["time"].as_u64().unwrap() > 1_700_000_000_000);
    publish(&wsd, "j", "application/octet-stream", b"\xff").await;
    assert_eq!(json_msg(&mut ws).await["data_b64"], "/w==");
    let reply = command(
        &mut ws,
        json!({"id": "p", "op": "publish", "channel": "j", "data": [1, 2]}),
    )
    .await;
    assert_eq!(reply["ok"], true);
    assert_eq!(reply["offset"], 3);
    // The publisher is subscribed: its publication arrives, as JSON.
    let mine = json_msg(&mut ws).await;
    assert_eq!(mine["data"], json!([1, 2]));
    let reply = command(
        &mut ws,
        json!({"id": 4, "op": "unsubscribe", "channel": "j"}),
    )
    .await;
    assert_eq!(reply["ok"], true);
    let reply = command(
        &mut ws,
        json!({"id": 5, "op": "unsubscribe", "channel": "j"}),
    )
    .await;
    assert_eq!(reply["error"]["code"], "not_subscribed");
    let reply = command(
        &mut ws,
        json!({"id": 6, "op": "subscribe", "channel": "x:y"}),
    )
    .await;
    assert_eq!(reply["error"]["code"], "unknown_namespace");
    let reply = command(&mut ws, json!({"id": 7, "op": "jump"})).await;
    assert_eq!(reply["error"]["code"], "bad_request");
    // The subprotocol selects JSON mode too.
    let (_, status, head) = raw::handshake(
        wsd.addr(),
        "/channels/j",
        &["Sec-WebSocket-Protocol: wsd.json"],
    )
    .await;
    assert_eq!(status, 101);
    assert!(
        head.to_ascii_lowercase()
            .contains("sec-websocket-protocol: wsd.json"),
        "{head}"
    );
}

#[actix_rt::test]
async fn a_recovering_subscriber_racing_live_publications_sees_no_gap_and_no_duplicate() {
    let wsd = TestWsd::start(test_config());
    let first = publish(&wsd, "race", "text/plain", b"0").await;
    let epoch = first["epoch"].as_str().unwrap().to_owned();
    const TOTAL: usize = 300;
    let addr = wsd.addr();
    // A publisher on its own connection, publishing while we subscribe.
    let publisher = tokio::spawn(async move {
        let (mut p, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/channels/race"))
            .await
            .unwrap();
        for i in 1..=TOTAL {
            p.send(Message::text(i.to_string())).await.unwrap();
        }
        p
    });
    let mut ws = wsd.connect_to("/channels?format=json").await;
    let reply = command(
        &mut ws,
        json!({"id": 1, "op": "subscribe", "channel": "race", "since": {"offset": 1, "epoch": epoch}}),
    )
    .await;
    assert_eq!(reply["recovered"], true, "{reply}");
    let mut next = 2u64;
    while next <= (TOTAL + 1) as u64 {
        let d = json_msg(&mut ws).await;
        assert_eq!(d["offset"], next, "{d}");
        assert_eq!(d["data"], (next - 1).to_string());
        next += 1;
    }
    drop(publisher.await.unwrap());
}

#[actix_rt::test]
async fn max_subscribers_is_enforced_per_channel() {
    let limited = NamespaceConfig {
        max_subscribers: 2,
        ..namespace("")
    };
    let wsd = TestWsd::start(config_with(vec![limited]));
    let _a = wsd.connect_to("/channels/full").await;
    let _b = wsd.connect_to("/channels/full").await;
    wsd.wait_subscriptions(2).await;
    let mut c = wsd.connect_to("/channels/full").await;
    match next_message(&mut c).await {
        Message::Close(Some(frame)) => {
            assert_eq!(u16::from(frame.code), 1008);
            assert!(
                frame.reason.contains("max_subscribers = 2"),
                "{}",
                frame.reason
            );
        }
        other => panic!("expected close, got {other:?}"),
    }
    let mut d = wsd.connect_to("/channels?format=json").await;
    let reply = command(
        &mut d,
        json!({"id": 1, "op": "subscribe", "channel": "full"}),
    )
    .await;
    assert_eq!(reply["error"]["code"], "limit");
    // Another channel is not affected.
    let _e = wsd.connect_to("/channels/other").await;
    wsd.wait_subscriptions(3).await;
}

#[actix_rt::test]
async fn presence_lists_members_and_tells_joins_and_leaves() {
    let room = NamespaceConfig {
        presence: true,
        ..namespace("room")
    };
    let wsd = TestWsd::start(config_with(vec![namespace(""), room]));
    let mut a = wsd.connect_to("/channels?format=json").await;
    let reply = command(
        &mut a,
        json!({"id": 1, "op": "subscribe", "channel": "room:1"}),
    )
    .await;
    assert_eq!(reply["ok"], true);
    let own = json_msg(&mut a).await;
    assert_eq!(own["event"], "join");
    let b = wsd.connect_to("/channels/room:1?format=json").await;
    let join = json_msg(&mut a).await;
    assert_eq!(join["event"], "join");
    assert_eq!(join["channel"], "room:1");
    let b_conn = join["conn"].as_str().unwrap().to_owned();
    assert_ne!(b_conn, own["conn"].as_str().unwrap());
    let reply = command(
        &mut a,
        json!({"id": 2, "op": "presence", "channel": "room:1"}),
    )
    .await;
    assert_eq!(reply["members"].as_array().unwrap().len(), 2);
    let mut res = wsd.get("/channels/room:1/presence").send().await.unwrap();
    let listed: Value = res.json().await.unwrap();
    assert_eq!(listed["members"].as_array().unwrap().len(), 2);
    drop(b);
    let leave = json_msg(&mut a).await;
    assert_eq!(leave["event"], "leave");
    assert_eq!(leave["conn"], b_conn);
    // Presence off: the command says so.
    let reply = command(
        &mut a,
        json!({"id": 3, "op": "presence", "channel": "lobby"}),
    )
    .await;
    assert_eq!(reply["error"]["code"], "bad_request");
}

#[actix_rt::test]
async fn the_api_needs_a_key_when_keys_are_configured() {
    let mut config = test_config();
    let key = "k".repeat(24);
    config.channels.api_keys = vec![key.clone()];
    let wsd = TestWsd::start(config);
    let mut res = wsd.post("/channels/x").send_body("a").await.unwrap();
    assert_eq!(res.status(), 401);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unauthorized");
    let res = wsd
        .post("/channels/x")
        .insert_header(("authorization", "Bearer wrong-key-wrong-key"))
        .send_body("a")
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    for path in ["/channels", "/channels/x", "/channels/x/history"] {
        assert_eq!(wsd.get(path).send().await.unwrap().status(), 401, "{path}");
    }
    let res = wsd
        .post("/channels/x")
        .insert_header(("authorization", format!("Bearer {key}")))
        .send_body("a")
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
}

#[actix_rt::test]
async fn an_idempotency_key_makes_a_retried_publish_land_once() {
    let wsd = TestWsd::start(test_config());
    let mut sub = wsd.connect_to("/channels/idem").await;
    wsd.wait_subscriptions(1).await;
    let mut answers = Vec::new();
    for _ in 0..2 {
        let mut res = wsd
            .post("/channels/idem")
            .insert_header(("content-type", "text/plain"))
            .insert_header(("idempotency-key", "order-17"))
            .send_body("once")
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        answers.push(res.json::<Value>().await.unwrap());
    }
    assert_eq!(answers[0]["offset"], answers[1]["offset"]);
    assert_eq!(answers[1]["duplicate"], true);
    publish(&wsd, "idem", "text/plain", b"after").await;
    assert_eq!(text(&mut sub).await, "once");
    assert_eq!(text(&mut sub).await, "after");
}

#[actix_rt::test]
async fn the_http_api_lists_channels_and_gives_state_and_history() {
    let wsd = TestWsd::start(test_config());
    let _sub = wsd.connect_to("/channels/listed").await;
    wsd.wait_subscriptions(1).await;
    publish(&wsd, "listed", "text/plain", b"a").await;
    publish(&wsd, "kept", "text/plain", b"b").await;
    let (names, _) = wsd.channel_names().await;
    assert_eq!(names, ["kept", "listed"]);
    let mut res = wsd.get("/channels/listed").send().await.unwrap();
    let state: Value = res.json().await.unwrap();
    assert_eq!(state["subscribers"], 1);
    assert_eq!(state["offset"], 1);
    let mut res = wsd.get("/channels/kept/history").send().await.unwrap();
    let h: Value = res.json().await.unwrap();
    assert_eq!(h["publications"][0]["data"], "b");
    let health = wsd.health().await;
    assert_eq!(health["channels"], 2);
    assert_eq!(health["engine"], "up");
    // Many channels at once.
    let mut res = wsd
        .post("/channels")
        .send_json(&json!({"channels": ["kept", "listed"], "data": {"x": 1}}))
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let many: Value = res.json().await.unwrap();
    assert_eq!(many["results"][0]["offset"], 2);
    assert_eq!(many["results"][1]["delivered"], 1);
    // Over max_message_size: 413.
    let big = vec![b'x'; (1 << 20) + 1];
    let res = wsd.post("/channels/kept").send_body(big).await.unwrap();
    assert_eq!(res.status(), 413);
}

#[actix_rt::test]
async fn an_origin_not_allowed_is_refused_and_requests_without_one_are_not() {
    let mut config = test_config();
    config.server.allowed_origins = vec!["https://ok.example".into()];
    let wsd = TestWsd::start(config);
    for path in ["/", "/channels/o"] {
        let (status, _) = refused(&wsd, path, &["Origin: https://evil.example"]).await;
        assert_eq!(status, 403, "{path}");
        let (status, _) = refused(&wsd, path, &["Origin: https://ok.example"]).await;
        assert_eq!(status, 101, "{path}");
        let (status, _) = refused(&wsd, path, &[]).await;
        assert_eq!(status, 101, "{path}");
    }
}

#[actix_rt::test]
async fn a_slow_subscriber_is_ended_while_a_hundred_fast_ones_get_every_publication() {
    let mut config = test_config();
    config.session.max_send_queue = 64 << 10;
    // Whichever comes first ends it: the queue overflowing, or the socket
    // taking nothing for a second (the kernel's buffers may absorb the lot).
    config.session.write_timeout = Duration::from_secs(1);
    // It never answers a ping: on a loaded machine, connecting the hundred
    // others can outlast a short client_timeout, and the heartbeat would end
    // it first, as a heartbeat timeout.
    config.session.client_timeout = Duration::from_secs(120);
    config.server.max_connections = 1000;
    let wsd = TestWsd::start(config);
    // A subscriber that never reads, with a tiny receive buffer.
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket.connect(&wsd.addr().into()).unwrap();
    socket.set_nonblocking(true).unwrap();
    let stream = tokio::net::TcpStream::from_std(socket.into()).unwrap();
    let (_slow, status, _) = raw::handshake_on(stream, wsd.addr(), "/channels/fan", &[]).await;
    assert_eq!(status, 101);
    let mut fast = Vec::new();
    for _ in 0..100 {
        fast.push(wsd.connect_to("/channels/fan").await);
    }
    wsd.wait_subscriptions(101).await;
    const N: usize = 100;
    let payload: &'static [u8] = Box::leak(vec![b'p'; 4096].into_boxed_slice());
    for _ in 0..N {
        publish(&wsd, "fan", "application/octet-stream", payload).await;
    }
    let readers: Vec<_> = fast
        .into_iter()
        .map(|mut ws| {
            tokio::spawn(async move {
                let mut got = 0;
                while got < N {
                    match tokio::time::timeout(BOUND, ws.next()).await {
                        Ok(Some(Ok(Message::Binary(b)))) => {
                            assert_eq!(b.len(), 4096);
                            got += 1;
                        }
                        Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => {}
                        other => panic!("after {got}: {other:?}"),
                    }
                }
                (got, ws)
            })
        })
        .collect();
    let mut fast = Vec::new();
    for r in readers {
        let (got, ws) = r.await.unwrap();
        assert_eq!(got, N);
        fast.push(ws);
    }
    let ended = common::wait_until(BOUND, || async {
        wsd.closed("slow_consumer").await == Some(1.0)
    })
    .await;
    assert!(
        ended,
        "the slow subscriber was not ended as a slow consumer (heartbeat timeouts: {:?})",
        wsd.closed("heartbeat_timeout").await
    );
    wsd.wait_subscriptions(100).await;
}

const SECRET: &str = "a-test-secret-of-32-bytes-or-more";

/// A server with tokens on: `tok:` grants by the token's claims, `member:`
/// lets any valid token in.
fn token_config() -> Config {
    let tok = NamespaceConfig {
        subscribe: Access::Token,
        publish: Access::Token,
        ..namespace("tok")
    };
    let member = NamespaceConfig {
        subscribe: Access::Authenticated,
        ..namespace("member")
    };
    let mut config = config_with(vec![namespace(""), tok, member]);
    config.auth.hmac_secret = SECRET.into();
    config
}

fn token(subscribe: &[&str], publish: &[&str], exp: u64) -> String {
    let grant = Grant {
        sub: "ann".into(),
        subscribe: subscribe.iter().map(|s| s.to_string()).collect(),
        publish: publish.iter().map(|s| s.to_string()).collect(),
        ..Grant::default()
    };
    Signer::hmac(SECRET.as_bytes())
        .expect("signer")
        .sign_expiring(&grant, exp)
        .expect("sign")
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

/// A refused upgrade's status and its JSON error body.
async fn refused_json(wsd: &TestWsd, path: &str, extra: &[&str]) -> (u16, Value) {
    let (mut stream, status, head) = raw::handshake(wsd.addr(), path, extra).await;
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())?
        })
        .unwrap_or_else(|| panic!("no content-length in {head}"));
    let mut body = vec![0u8; length];
    tokio::time::timeout(BOUND, stream.read_exact(&mut body))
        .await
        .expect("body timed out")
        .expect("body");
    (status, serde_json::from_slice(&body).expect("a JSON error"))
}

#[actix_rt::test]
async fn tokens_are_checked_on_the_upgrade_and_grant_what_their_claims_say() {
    let wsd = TestWsd::start(token_config());
    let hour = now_secs() + 3600;
    let good = token(&["tok:room.*"], &["tok:room.lobby"], hour);

    // No token where one is needed: 401 naming the rule.
    let (status, body) = refused_json(&wsd, "/channels/tok:room.a", &[]).await;
    assert_eq!(status, 401);
    assert_eq!(body["error"]["code"], "unauthorized");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("subscribe = \"token\""),
        "{body}"
    );

    // Expired (no leeway by default), badly signed, malformed: 401, told apart.
    let expired = token(&["tok:room.*"], &[], now_secs() - 1);
    let forged = Signer::hmac(b"not-the-secret-not-the-secret-!!")
        .unwrap()
        .sign_expiring(
            &Grant {
                sub: "eve".into(),
                ..Grant::default()
            },
            hour,
        )
        .unwrap();
    for (token, why) in [
        (&expired, "token_expired"),
        (&forged, "bad_signature"),
        (&"x.y.z".to_owned(), "malformed_token"),
    ] {
        let (status, body) =
            refused_json(&wsd, &format!("/channels/tok:room.a?token={token}"), &[]).await;
        assert_eq!(status, 401, "{why}");
        assert!(
            body["error"]["message"].as_str().unwrap().starts_with(why),
            "{why}: {body}"
        );
    }

    // Valid, but the channel is not in the claims: 403.
    let (status, body) =
        refused_json(&wsd, &format!("/channels/tok:other?token={good}"), &[]).await;
    assert_eq!(status, 403);
    assert_eq!(body["error"]["code"], "forbidden");
    // `*` is exactly one segment.
    let (status, _) =
        refused_json(&wsd, &format!("/channels/tok:room.a.b?token={good}"), &[]).await;
    assert_eq!(status, 403);

    // Granted: by query string, and by header.
    let mut a = wsd
        .connect_to(&format!("/channels/tok:room.lobby?token={good}"))
        .await;
    let bearer = format!("Authorization: Bearer {good}");
    let (_by_header, status, _) =
        raw::handshake(wsd.addr(), "/channels/tok:room.a", &[&bearer]).await;
    assert_eq!(status, 101);
    // `authenticated`: any valid token.
    let (_member, status, _) =
        raw::handshake(wsd.addr(), &format!("/channels/member:x?token={good}"), &[]).await;
    assert_eq!(status, 101);
    let (status, _) = refused_json(&wsd, "/channels/member:x", &[]).await;
    assert_eq!(status, 401);

    // Publishing follows the `publish` claim.
    wsd.wait_subscriptions(3).await;
    a.send(Message::text("allowed")).await.unwrap();
    assert_eq!(text(&mut a).await, "allowed");
    let mut b = wsd
        .connect_to(&format!("/channels/tok:room.b?token={good}"))
        .await;
    wsd.wait_subscriptions(4).await;
    b.send(Message::text("not allowed")).await.unwrap();
    match next_message(&mut b).await {
        Message::Close(Some(frame)) => {
            assert_eq!(u16::from(frame.code), 1008);
            assert!(frame.reason.contains("publish"), "{}", frame.reason);
        }
        other => panic!("expected close, got {other:?}"),
    }
}

#[actix_rt::test]
async fn a_connection_is_closed_with_4001_when_its_token_expires() {
    let wsd = TestWsd::start(token_config());
    let exp = now_secs() + 2;
    let short = token(&["tok:room.a"], &[], exp);
    let mut ws = wsd
        .connect_to(&format!("/channels/tok:room.a?token={short}"))
        .await;
    // Still live before expiry.
    wsd.wait_subscriptions(1).await;
    publish(&wsd, "tok:room.a", "text/plain", b"before").await;
    assert_eq!(text(&mut ws).await, "before");
    let frame = loop {
        match tokio::time::timeout(Duration::from_secs(10), ws.next()).await {
            Ok(Some(Ok(Message::Close(Some(frame))))) => break frame,
            Ok(Some(Ok(_))) => continue,
            other => panic!("expected a close, got {other:?}"),
        }
    };
    let at = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    assert_eq!(u16::from(frame.code), 4001);
    assert_eq!(frame.reason, "token expired");
    // Not before `exp`, and (generously, for a loaded machine) soon after.
    assert!(
        at >= Duration::from_secs(exp),
        "closed early: {at:?} < {exp}"
    );
    assert!(
        at < Duration::from_secs(exp + 3),
        "closed late: {at:?} vs {exp}"
    );
    let counted = common::wait_until(BOUND, || async {
        wsd.closed("token_expired").await == Some(1.0)
    })
    .await;
    assert!(counted, "the close is counted as token_expired");
}
