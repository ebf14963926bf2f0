//! Pusher Channels compatibility against real, unmodified clients:
//! pusher-js (under Node, with its own WebSocket transport), Laravel Echo
//! with the pusher broadcaster, the official `pusher` server SDKs for Node
//! and Python, and pusher-js in a real page in headless Chromium. The Node
//! checks live in `tests/pusher/*.mjs` (each prints `ok - ...`); this side
//! starts wsd (and Redis), runs them and asserts that every check ran.
//! Protocol details no client library exposes (close codes, limits) are
//! checked here with a raw WebSocket client.

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use common::redis::{Cluster, RedisServer};
use common::{BOUND, TestWsd, Ws, next_message, test_config, tools};
use futures_util::SinkExt;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use wsd::config::{Config, PusherAppConfig};

const KEY: &str = "wsd-test-key";
const SECRET: &str = "wsd-test-secret-0123456789";

/// Longer than a script's own bounds add up to: only a hung run hits it.
const RUN_BOUND: Duration = Duration::from_secs(120);

/// The apps the scripts know (`tests/pusher/common.mjs`): 1001 with client
/// events, 1002 without.
fn add_apps(config: &mut Config) {
    config.pusher.app = vec![
        PusherAppConfig {
            id: 1001,
            key: KEY.into(),
            secret: SECRET.into(),
            client_events: true,
            ..PusherAppConfig::default()
        },
        PusherAppConfig {
            id: 1002,
            key: "wsd-quiet-key".into(),
            secret: "wsd-quiet-secret-0123456789".into(),
            ..PusherAppConfig::default()
        },
    ];
}

fn config() -> Config {
    let mut config = test_config();
    add_apps(&mut config);
    config
}

/// Runs a script (bounded by [`RUN_BOUND`]); its stdout, once it succeeded.
fn run(command: Command, what: &str) -> String {
    tools::run_script(command, what, RUN_BOUND)
}

/// Runs suite `suite` of `tests/pusher/clients.mjs` with `args`.
fn node_suite(suite: &str, args: &[String]) -> String {
    let package = tools::node_package("tests/pusher");
    let mut command = Command::new("node");
    command
        .arg(package.join("clients.mjs"))
        .arg(suite)
        .args(args)
        .current_dir(&package);
    run(command, &format!("the {suite} suite"))
}

fn host_port(wsd: &TestWsd) -> Vec<String> {
    vec![wsd.addr().ip().to_string(), wsd.addr().port().to_string()]
}

#[test]
fn pusher_js_and_the_node_sdk_subscribe_trigger_authorize_exclude_cache_and_client_events() {
    let wsd = TestWsd::start(config());
    let out = node_suite("basics", &host_port(&wsd));
    tools::assert_ran(
        &out,
        &[
            "connection_established with socket_id",
            "public subscribe, then an SDK trigger, received",
            "private channel authorized with the SDK authorizeChannel",
            "a wrong channel signature is refused",
            "batch_events: both events",
            "socket_id exclusion",
            "pusher:cache_miss",
            "a new subscriber gets the last event at once",
            "channel info=cache shows the cached event",
            "private-encrypted channel: the SDK encrypts, pusher-js decrypts",
            "client events on a private channel reach the others, not the sender",
            "client events on a public channel are refused",
            "client events are refused when the app does not enable them",
            "two apps with a channel of the same name",
            "an unknown app key is refused with 4001",
        ],
    );
}

#[test]
fn laravel_echo_presence_members_whispers_and_channel_info() {
    let wsd = TestWsd::start(config());
    let out = node_suite("presence", &host_port(&wsd));
    tools::assert_ran(
        &out,
        &[
            "presence members across two Laravel Echo clients",
            "channel info: /channels with user_count",
            "Laravel Echo whisper",
            "Laravel Echo private channel listen",
            "presence member_removed",
        ],
    );
}

#[test]
fn signin_server_to_user_messages_and_terminate_connections() {
    let wsd = TestWsd::start(config());
    let out = node_suite("users", &host_port(&wsd));
    tools::assert_ran(
        &out,
        &[
            "pusher:signin with the SDK authenticateUser",
            "sendToUser: a server-to-user message reaches the signed-in user",
            "cannot subscribe to the user's channel",
            "a forged signin is refused with 4009",
            "terminate_connections closes every connection of the user",
        ],
    );
}

#[test]
fn webhooks_are_batched_signed_and_retried() {
    // A free port for the script's receiver, named in the config first.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port();
    let mut config = config();
    config.pusher.app[0].webhooks = vec![format!("http://127.0.0.1:{port}/pusher/webhook")];
    let wsd = TestWsd::start(config);
    let mut args = host_port(&wsd);
    args.push(port.to_string());
    let out = node_suite("webhooks", &args);
    tools::assert_ran(
        &out,
        &[
            "channel_occupied, POSTed again after the receiver failed once, signed",
            "member_added for each user",
            "client_event with its channel, event, data, socket_id and user_id",
            "member_removed and channel_vacated",
        ],
    );
}

#[test]
fn the_http_api_checks_signatures_timestamps_app_ids_and_limits() {
    let wsd = TestWsd::start(config());
    let out = node_suite("signatures", &host_port(&wsd));
    tools::assert_ran(
        &out,
        &[
            "a correctly signed request is accepted",
            "a bad signature is refused with 401",
            "more than 600 s old is refused with 401",
            "another auth_key is refused with 401",
            "does not match body_md5 is refused with 401",
            "an unknown app id is 404",
            "over 10 KB is refused with 413",
            "more than 100 channels",
            "more than 10 events",
            "an invalid channel name",
            "user_count on a non-presence prefix",
        ],
    );
}

#[test]
fn with_redis_an_event_triggered_on_one_instance_reaches_pusher_js_on_another() {
    let cluster = Cluster::on(RedisServer::start(), 2, add_apps);
    let mut args = host_port(&cluster.nodes[0]);
    args.extend(host_port(&cluster.nodes[1]));
    let out = node_suite("redis", &args);
    tools::assert_ran(
        &out,
        &[
            "an event triggered on instance A reaches pusher-js on instance B",
            "presence members across instances",
        ],
    );
}

#[test]
fn pusher_js_in_headless_chromium_gets_an_sdk_event() {
    let wsd = TestWsd::start(config());
    let package = tools::node_package("tests/pusher");
    let chromium = tools::chromium();
    let mut command = Command::new("node");
    command
        .arg(package.join("browser.mjs"))
        .arg("page")
        .args(host_port(&wsd))
        .arg(&chromium)
        .current_dir(&package);
    let out = run(command, "the browser page");
    tools::assert_ran(
        &out,
        &[
            "pusher-js in Chromium connected",
            "pusher-js in Chromium got the SDK's event on a private channel",
        ],
    );
}

/// A raw Pusher connection: the upgrade to `/app/KEY?..` and its first
/// message.
async fn raw(wsd: &TestWsd, path: &str) -> (Ws, Value) {
    let mut ws = wsd.connect_to(path).await;
    let first = json_message(&mut ws).await;
    (ws, first)
}

async fn json_message(ws: &mut Ws) -> Value {
    match next_message(ws).await {
        Message::Text(t) => serde_json::from_str(&t).expect("JSON"),
        other => panic!("expected a text message, got {other:?}"),
    }
}

async fn send(ws: &mut Ws, value: Value) {
    ws.send(Message::text(value.to_string()))
        .await
        .expect("send");
}

/// The close frame's code, after any messages before it.
async fn close_code(ws: &mut Ws) -> u16 {
    loop {
        match next_message(ws).await {
            Message::Close(Some(frame)) => return frame.code.into(),
            Message::Close(None) => panic!("a close without a code"),
            _ => continue,
        }
    }
}

/// The socket id of a `pusher:connection_established`.
fn socket_id(established: &Value) -> String {
    assert_eq!(established["event"], "pusher:connection_established");
    let data: Value = serde_json::from_str(established["data"].as_str().unwrap()).unwrap();
    assert_eq!(data["activity_timeout"], 120);
    data["socket_id"].as_str().unwrap().to_owned()
}

fn auth(socket_id: &str, channel: &str, data: Option<&str>) -> String {
    let message = wsd::pusher::sign::channel_message(socket_id, channel, data);
    format!(
        "{KEY}:{}",
        wsd::pusher::sign::sign(SECRET, message.as_bytes())
    )
}

const OK: &str = "/app/wsd-test-key?protocol=7&client=js&version=8.6.0";

#[actix_rt::test]
async fn unknown_keys_and_protocols_are_refused_with_their_codes_on_error_and_close() {
    let wsd = TestWsd::start(config());
    for (path, code) in [
        ("/app/nope?protocol=7", 4001),
        ("/app/wsd-test-key?protocol=3", 4007),
        ("/app/wsd-test-key?protocol=x", 4007),
        ("/app/wsd-test-key", 4008),
    ] {
        let (mut ws, error) = raw(&wsd, path).await;
        assert_eq!(error["event"], "pusher:error", "{path}");
        assert_eq!(error["data"]["code"], code, "{path}: {error}");
        assert_eq!(close_code(&mut ws).await, code, "{path}");
    }
}

#[actix_rt::test]
async fn pings_are_answered_and_bad_messages_get_pusher_errors() {
    let wsd = TestWsd::start(config());
    let (mut ws, hello) = raw(&wsd, OK).await;
    let id = socket_id(&hello);
    assert!(wsd::pusher::protocol::is_socket_id(&id), "{id}");
    send(&mut ws, json!({"event": "pusher:ping", "data": {}})).await;
    assert_eq!(json_message(&mut ws).await["event"], "pusher:pong");
    ws.send(Message::text("not json")).await.unwrap();
    let error = json_message(&mut ws).await;
    assert_eq!(error["event"], "pusher:error");
    assert_eq!(error["data"]["code"], Value::Null);
    // Still open: a bad message is not a reason to close.
    send(&mut ws, json!({"event": "pusher:ping", "data": {}})).await;
    assert_eq!(json_message(&mut ws).await["event"], "pusher:pong");
}

#[actix_rt::test]
async fn client_events_are_rate_limited_and_size_limited() {
    let mut config = config();
    config.pusher.app[0].max_event_size = 100;
    let wsd = TestWsd::start(config);
    let (mut ws, hello) = raw(&wsd, OK).await;
    let id = socket_id(&hello);
    let channel = "private-rate";
    send(
        &mut ws,
        json!({"event": "pusher:subscribe", "data": {"channel": channel, "auth": auth(&id, channel, None)}}),
    )
    .await;
    assert_eq!(
        json_message(&mut ws).await["event"],
        "pusher_internal:subscription_succeeded"
    );
    let big = json!({"event": "client-x", "channel": channel, "data": "x".repeat(101)});
    send(&mut ws, big).await;
    let error = json_message(&mut ws).await;
    assert!(
        error["data"]["message"]
            .as_str()
            .unwrap()
            .contains("max_event_size"),
        "{error}"
    );
    // Eleven at once: the eleventh is over the ten per second (one second
    // cannot pass between sends on any machine this runs on... but if it
    // did, the window restarts, so send until refused, within a bound).
    let started = Instant::now();
    let mut refused = None;
    for _ in 0..11 {
        send(
            &mut ws,
            json!({"event": "client-x", "channel": channel, "data": {}}),
        )
        .await;
    }
    while refused.is_none() && started.elapsed() < BOUND {
        let m = json_message(&mut ws).await;
        if m["event"] == "pusher:error" {
            refused = Some(m);
        }
    }
    let refused = refused.expect("a rate refusal");
    assert_eq!(refused["data"]["code"], 4301, "{refused}");
}

#[actix_rt::test]
async fn presence_channels_are_limited_in_members_and_member_size() {
    let mut config = config();
    config.pusher.app[0].max_presence_members = 1;
    let wsd = TestWsd::start(config);
    let channel = "presence-small";
    let join = |id: &str, user: &str| {
        let data = json!({"user_id": user, "user_info": {"n": user}}).to_string();
        json!({"event": "pusher:subscribe", "data": {
            "channel": channel, "auth": auth(id, channel, Some(&data)), "channel_data": data,
        }})
    };
    let (mut a, hello) = raw(&wsd, OK).await;
    let a_id = socket_id(&hello);
    send(&mut a, join(&a_id, "a")).await;
    let ok = json_message(&mut a).await;
    assert_eq!(ok["event"], "pusher_internal:subscription_succeeded");
    let data: Value = serde_json::from_str(ok["data"].as_str().unwrap()).unwrap();
    assert_eq!(data["presence"]["count"], 1);
    assert_eq!(data["presence"]["hash"]["a"]["n"], "a");

    let (mut b, hello) = raw(&wsd, OK).await;
    let b_id = socket_id(&hello);
    send(&mut b, join(&b_id, "b")).await;
    let refused = json_message(&mut b).await;
    assert_eq!(refused["event"], "pusher:subscription_error", "{refused}");
    assert_eq!(refused["channel"], channel);
    assert!(
        refused["data"]["error"]
            .as_str()
            .unwrap()
            .contains("max_presence_members")
    );
    // The same user again (a second tab) is no new member.
    send(&mut b, join(&b_id, "a")).await;
    assert_eq!(
        json_message(&mut b).await["event"],
        "pusher_internal:subscription_succeeded"
    );

    let (mut c, hello) = raw(&wsd, OK).await;
    let c_id = socket_id(&hello);
    let huge = json!({"user_id": "c", "user_info": "i".repeat(2000)}).to_string();
    send(
        &mut c,
        json!({"event": "pusher:subscribe", "data": {
            "channel": channel, "auth": auth(&c_id, channel, Some(&huge)), "channel_data": huge,
        }}),
    )
    .await;
    let refused = json_message(&mut c).await;
    assert_eq!(refused["event"], "pusher:subscription_error");
    assert!(
        refused["data"]["error"]
            .as_str()
            .unwrap()
            .contains("user_info")
    );
}

#[actix_rt::test]
async fn an_app_over_its_connection_quota_is_refused_with_4004() {
    let mut config = config();
    config.pusher.app[0].max_connections = 1;
    let wsd = TestWsd::start(config);
    let (_first, hello) = raw(&wsd, OK).await;
    socket_id(&hello);
    let (mut second, error) = raw(&wsd, OK).await;
    assert_eq!(error["data"]["code"], 4004, "{error}");
    assert_eq!(close_code(&mut second).await, 4004);
}

#[actix_rt::test]
async fn pusher_channels_are_engine_channels_listed_like_any_other() {
    let wsd = TestWsd::start(config());
    let (mut ws, _) = raw(&wsd, OK).await;
    send(
        &mut ws,
        json!({"event": "pusher:subscribe", "data": {"channel": "lobby"}}),
    )
    .await;
    json_message(&mut ws).await;
    wsd.wait_subscriptions(1).await;
    let (names, list) = wsd.channel_names().await;
    assert!(names.iter().any(|n| n == "pusher.1001:lobby"), "{list}");
    // The channel protocol cannot reach into an app's namespace.
    let refused =
        tokio_tungstenite::connect_async(format!("ws://{}/channels/pusher.1001:lobby", wsd.addr()))
            .await;
    assert!(
        refused.is_err(),
        "subscribed to a Pusher channel from outside"
    );
}

#[test]
fn the_python_sdk_triggers_authorizes_and_reads_channels() {
    let wsd = TestWsd::start(config());
    let python = tools::python();
    let system = actix_rt::System::new();
    system.block_on(async {
        let (mut ws, hello) = raw(&wsd, OK).await;
        let id = socket_id(&hello);
        send(
            &mut ws,
            json!({"event": "pusher:subscribe", "data": {"channel": "lobby"}}),
        )
        .await;
        json_message(&mut ws).await;
        let script = tools::root().join("tests/pusher/sdk.py");
        let mut command = Command::new(&python);
        command
            .arg(&script)
            .arg(wsd.addr().ip().to_string())
            .arg(wsd.addr().port().to_string())
            .arg(&id);
        let out = actix_rt::task::spawn_blocking(move || run(command, "tests/pusher/sdk.py"))
            .await
            .unwrap();
        tools::assert_ran(
            &out,
            &[
                "trigger accepted",
                "trigger_batch accepted",
                "channels_info lists lobby",
                "channel_info: occupied",
                "authenticate signs a private channel",
                "a wrong secret is refused",
            ],
        );
        let mut events = Vec::new();
        while events.len() < 2 {
            let m = json_message(&mut ws).await;
            if m["event"] != "pusher_internal:subscription_succeeded" {
                events.push(m);
            }
        }
        assert_eq!(events[0]["event"], "from-python");
        assert_eq!(events[0]["channel"], "lobby");
        let data: Value = serde_json::from_str(events[0]["data"].as_str().unwrap()).unwrap();
        assert_eq!(data, json!({"n": 1}));
        assert_eq!(events[1]["event"], "batched");
    });
}

#[test]
fn a_bad_pusher_config_exits_2_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    for (text, key) in [
        (
            "[[pusher.app]]\nid = 1\nkey = \"k\"\nsecret = \"short\"\n",
            "pusher.app[0].secret",
        ),
        (
            "[[pusher.app]]\nid = 0\nkey = \"k\"\nsecret = \"0123456789abcdef\"\n",
            "pusher.app[0].id",
        ),
        (
            "[[pusher.app]]\nid = 1\nkey = \"k/x\"\nsecret = \"0123456789abcdef\"\n",
            "pusher.app[0].key",
        ),
        (
            "[[pusher.app]]\nid = 1\nkey = \"k\"\nsecret = \"0123456789abcdef\"\n\
             [[pusher.app]]\nid = 1\nkey = \"j\"\nsecret = \"0123456789abcdef\"\n",
            "pusher.app[1].id",
        ),
        (
            "[[pusher.app]]\nid = 1\nkey = \"k\"\nsecret = \"0123456789abcdef\"\nwebhook = 1\n",
            "pusher.app[0].webhook",
        ),
        (
            "[[pusher.app]]\nid = 1\nkey = \"k\"\nsecret = \"0123456789abcdef\"\n\
             webhooks = [\"ftp://x\"]\n",
            "pusher.app[0].webhooks[0]",
        ),
    ] {
        let path: PathBuf = dir.path().join("bad.toml");
        std::fs::write(&path, text).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_wsd"))
            .arg("--config")
            .arg(&path)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{text}: {stderr}");
        assert!(stderr.contains(key), "{text}: {stderr}");
        assert!(stderr.contains("bad.toml"), "{stderr}");
    }
}

#[test]
fn the_shipped_commented_pusher_app_example_is_a_valid_app() {
    let shipped = std::fs::read_to_string(tools::root().join("config/wsd.toml")).unwrap();
    let example: String = shipped
        .lines()
        .skip_while(|l| *l != "# [[pusher.app]]")
        .take_while(|l| l.starts_with("# "))
        .map(|l| format!("{}\n", &l[2..]))
        .collect();
    assert!(example.contains("secret"), "no example found");
    let config = Config::parse(&example, std::path::Path::new("example.toml"))
        .unwrap_or_else(|e| panic!("{e}\n{example}"));
    assert_eq!(config.pusher.app.len(), 1);
    assert_eq!(config.pusher.app[0].id, 1001);
    assert_eq!(config.pusher.app[0].max_event_size, 10 * 1024);
}
