//! The Redis engine's test harness: a real `redis-server` per test on a
//! loopback port (killed, by the PID it was started with, when dropped), wsd
//! instances sharing it under a prefix of their own, a real `wsd` binary for
//! the tests that must crash an instance, and the channel helpers those tests
//! share.
//!
//! A missing `redis-server` fails the test (saying how to install it) rather
//! than skipping it: a skipped engine test reads like a passing one.

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;
use wsd::config::{Config, EngineKind, NamespaceConfig};

use super::{BOUND, TestWsd, Ws, test_config, wait_until};

/// How to get the binary, for the failure message.
const INSTALL: &str = "install it with `apt-get install redis-server` \
     (Debian/Ubuntu; .ci/run does this) or put a redis-server on PATH";

/// How long the presence members of a dead instance linger in these tests:
/// short, so the crash test is quick, and long against a loaded machine's
/// scheduling hiccups, so live members are not expired by mistake.
pub const PRESENCE_TTL: Duration = Duration::from_secs(2);

/// Starts to bind a port already taken by someone else are retried on
/// another port this many times.
const PORT_ATTEMPTS: usize = 5;

/// A `redis-server` this test started, on 127.0.0.1.
///
/// Without persistence (the default) a restart loses every key, as a Redis
/// that crashed without a disk would; with it (`start_persistent`), every
/// acknowledged write survives a SIGKILL.
pub struct RedisServer {
    /// `None` while killed.
    child: Option<Child>,
    port: u16,
    persistent: bool,
    /// Its `--dir` (and log file), kept across restarts.
    dir: tempfile::TempDir,
}

impl RedisServer {
    /// A Redis without persistence: `--save "" --appendonly no`.
    pub fn start() -> RedisServer {
        RedisServer::start_with(false)
    }

    /// A Redis that keeps its data across a kill: `--appendonly yes` with
    /// `--appendfsync always`, so a write it answered is on disk.
    pub fn start_persistent() -> RedisServer {
        RedisServer::start_with(true)
    }

    fn start_with(persistent: bool) -> RedisServer {
        let mut server = RedisServer {
            child: None,
            port: 0,
            persistent,
            dir: tempfile::tempdir().expect("a temporary directory for redis-server"),
        };
        // The port is chosen here and handed over, so another process may
        // take it in between; then try another.
        for _ in 0..PORT_ATTEMPTS {
            server.port = free_port();
            match server.spawn() {
                Ok(()) => return server,
                Err(Spawn::PortTaken) => continue,
            }
        }
        panic!("redis-server: no free port in {PORT_ATTEMPTS} attempts");
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// SIGKILL, as a crash: nothing is saved that was not already on disk.
    /// Returns once the process is gone (and its port free).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            // `Child::kill` is SIGKILL on Unix, sent to this child's PID only.
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port with the same `--dir` (killing it
    /// first if it still runs), and waits until it answers PING.
    pub fn restart(&mut self) {
        self.kill();
        if let Err(Spawn::PortTaken) = self.spawn() {
            panic!(
                "redis-server: port {} was taken while it was down; cannot restart on it",
                self.port
            );
        }
    }

    /// Whether it answers PING now.
    pub fn ping(&self) -> bool {
        let Ok(client) = redis::Client::open(self.url()) else {
            return false;
        };
        let Ok(mut con) = client.get_connection_with_timeout(Duration::from_millis(500)) else {
            return false;
        };
        let _ = con.set_read_timeout(Some(Duration::from_millis(500)));
        redis::cmd("PING")
            .query::<String>(&mut con)
            .is_ok_and(|pong| pong == "PONG")
    }

    /// A fresh connection, with timeouts so that no call can hang a test.
    pub fn connection(&self) -> redis::Connection {
        let client = redis::Client::open(self.url()).expect("redis url");
        let con = client
            .get_connection_with_timeout(BOUND)
            .unwrap_or_else(|e| panic!("connect to {}: {e}", self.url()));
        con.set_read_timeout(Some(BOUND)).expect("read timeout");
        con.set_write_timeout(Some(BOUND)).expect("write timeout");
        con
    }

    /// Runs one command, e.g. `query(&["SET", "k", "v"])`.
    pub fn query<T: redis::FromRedisValue>(&self, args: &[&str]) -> redis::RedisResult<T> {
        let mut cmd = redis::cmd(args[0]);
        for arg in &args[1..] {
            cmd.arg(*arg);
        }
        cmd.query(&mut self.connection())
    }

    /// `PUBSUB CHANNELS pattern`, sorted.
    pub fn pubsub_channels(&self, pattern: &str) -> Vec<String> {
        let mut channels: Vec<String> = self
            .query(&["PUBSUB", "CHANNELS", pattern])
            .expect("PUBSUB CHANNELS");
        channels.sort();
        channels
    }

    /// `PUBSUB NUMSUB channel`: how many connections are subscribed to it.
    pub fn numsub(&self, channel: &str) -> i64 {
        let (_, n): (String, i64) = self
            .query(&["PUBSUB", "NUMSUB", channel])
            .expect("PUBSUB NUMSUB");
        n
    }

    /// Waits (bounded) until exactly `n` connections are subscribed to the
    /// pub/sub `channel`.
    pub async fn wait_numsub(&self, channel: &str, n: i64) {
        let ok = wait_until(BOUND, || async { self.numsub(channel) == n }).await;
        assert!(
            ok,
            "PUBSUB NUMSUB {channel} stayed at {}, expected {n}",
            self.numsub(channel)
        );
    }

    /// Every key, sorted (SCAN, so a big keyspace would not block Redis).
    pub fn keys(&self) -> Vec<String> {
        let mut con = self.connection();
        let mut keys: Vec<String> = redis::cmd("SCAN")
            .cursor_arg(0)
            .arg("COUNT")
            .arg(1000)
            .clone()
            .iter(&mut con)
            .expect("SCAN")
            .map(|k: redis::RedisResult<String>| k.expect("a key"))
            .collect();
        keys.sort();
        keys
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("redis.log")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Starts the process and waits (bounded) until it answers PING.
    fn spawn(&mut self) -> Result<(), Spawn> {
        assert!(self.child.is_none(), "redis-server is already running");
        // A restart's log starts afresh, so a failure shows only its own.
        let _ = std::fs::remove_file(self.log_path());
        let mut cmd = Command::new("redis-server");
        cmd.args(["--bind", "127.0.0.1", "--port", &self.port.to_string()])
            .arg("--dir")
            .arg(self.dir.path())
            .arg("--logfile")
            .arg(self.log_path())
            .args(["--save", "", "--daemonize", "no"]);
        if self.persistent {
            cmd.args(["--appendonly", "yes", "--appendfsync", "always"]);
        } else {
            cmd.args(["--appendonly", "no"]);
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        die_with_parent(&mut cmd);
        let child = match cmd.spawn() {
            Ok(child) => child,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                panic!("redis-server is not on PATH, and the Redis engine tests need it: {INSTALL}")
            }
            Err(e) => panic!("cannot run redis-server: {e}; {INSTALL}"),
        };
        self.child = Some(child);
        let deadline = Instant::now() + BOUND;
        loop {
            let child = self.child.as_mut().expect("child");
            if let Some(status) = child.try_wait().expect("try_wait") {
                self.child = None;
                let log = self.log();
                if log.contains("Address already in use") {
                    return Err(Spawn::PortTaken);
                }
                panic!(
                    "redis-server on port {} exited at once ({status}); its log:\n{log}",
                    self.port
                );
            }
            if self.ping() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                self.kill();
                panic!(
                    "redis-server on port {} did not answer PING within {BOUND:?}; its log:\n{}",
                    self.port,
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

enum Spawn {
    PortTaken,
}

/// Has the kernel SIGKILL the child when the thread that started it ends,
/// so that a test killed or aborted (no `Drop` runs then) leaves no server
/// behind. Each test starts, restarts and drops its servers on its own
/// thread, which lives as long as the test.
fn die_with_parent(cmd: &mut Command) {
    // SAFETY: the closure runs in the child between fork and exec and only
    // makes one async-signal-safe system call.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

/// Waits (bounded) until the instance at `addr` answers `/healthz` with
/// `"engine":"up"`: until then it refuses what needs Redis (it connects after
/// it starts), and a load balancer would not send it clients yet.
pub fn wait_engine_up(addr: SocketAddr) {
    let deadline = Instant::now() + BOUND;
    let mut last = String::new();
    while Instant::now() < deadline {
        match healthz(addr) {
            Ok(body) if body.contains("\"engine\":\"up\"") => return,
            Ok(body) => last = body,
            Err(e) => last = e.to_string(),
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("the engine of wsd at {addr} did not come up within {BOUND:?}: {last}");
}

/// `GET /healthz` over a plain TCP connection (usable outside a runtime):
/// the whole answer, status line included.
fn healthz(addr: SocketAddr) -> std::io::Result<String> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect_timeout(&addr, BOUND)?;
    stream.set_read_timeout(Some(BOUND))?;
    stream.write_all(b"GET /healthz HTTP/1.1\r\nHost: wsd\r\nConnection: close\r\n\r\n")?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer)?;
    Ok(answer)
}

/// A prefix no other test uses, so that nothing a test finds in Redis can
/// come from another one.
pub fn unique_prefix() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!(
        "wsdtest{}n{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// A namespace with the default rules.
pub fn namespace(name: &str) -> NamespaceConfig {
    NamespaceConfig {
        name: name.into(),
        ..NamespaceConfig::default()
    }
}

/// The test config on the Redis engine: the default namespace, and `room`
/// with presence.
pub fn redis_config(redis: &RedisServer, prefix: &str) -> Config {
    let mut config = test_config();
    config.engine.kind = EngineKind::Redis;
    config.engine.redis.url = redis.url();
    config.engine.redis.prefix = prefix.into();
    config.engine.redis.presence_ttl = PRESENCE_TTL;
    let room = NamespaceConfig {
        presence: true,
        ..namespace("room")
    };
    config.channels.namespace = vec![namespace(""), room];
    config
}

/// Several wsd instances on one Redis, under a prefix of their own.
/// Dropped instances first, then Redis (the field order), so that they can
/// still clean up.
pub struct Cluster {
    pub nodes: Vec<TestWsd>,
    pub redis: RedisServer,
    pub prefix: String,
    /// What the instances run with (for starting one more).
    pub config: Config,
}

impl Cluster {
    /// `n` instances on a new Redis without persistence.
    pub fn start(n: usize) -> Cluster {
        Cluster::on(RedisServer::start(), n, |_| {})
    }

    /// `n` instances on `redis`, with [`redis_config`] changed by `edit`.
    pub fn on(redis: RedisServer, n: usize, edit: impl FnOnce(&mut Config)) -> Cluster {
        let prefix = unique_prefix();
        let mut config = redis_config(&redis, &prefix);
        edit(&mut config);
        let nodes: Vec<TestWsd> = (0..n).map(|_| TestWsd::start(config.clone())).collect();
        for node in &nodes {
            wait_engine_up(node.addr());
        }
        Cluster {
            nodes,
            redis,
            prefix,
            config,
        }
    }

    /// The Redis pub/sub channel of a wsd channel: `{prefix}:c:{channel}`.
    pub fn pubsub(&self, channel: &str) -> String {
        pubsub_channel(&self.prefix, channel)
    }

    /// Waits (bounded) until exactly `n` instances listen to `channel` in
    /// Redis: after that, a publication reaches all of them.
    pub async fn wait_listeners(&self, channel: &str, n: i64) {
        self.redis.wait_numsub(&self.pubsub(channel), n).await;
    }

    /// The pub/sub channels of this cluster's wsd channels, sorted.
    pub fn listened(&self) -> Vec<String> {
        self.redis.pubsub_channels(&format!("{}:c:*", self.prefix))
    }
}

/// The Redis pub/sub channel of a wsd channel: `{prefix}:c:{channel}`.
pub fn pubsub_channel(prefix: &str, channel: &str) -> String {
    format!("{prefix}:c:{channel}")
}

/// A real `wsd` process, for a test that must crash an instance (dropping a
/// [`TestWsd`] shuts it down cleanly). Killed on drop.
pub struct WsdProcess {
    child: Option<Child>,
    pub addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl WsdProcess {
    /// Runs `wsd --config FILE` with `config` (its bind's port should be 0)
    /// and waits (bounded) for the address it logs.
    pub fn start(config: &Config) -> WsdProcess {
        const LISTENING: &str = "wsd listening on ws://";
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path = dir.path().join("wsd.toml");
        std::fs::write(&path, config.to_toml()).expect("write the config");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_wsd"));
        cmd.arg("--config")
            .arg(&path)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        die_with_parent(&mut cmd);
        let mut child = cmd.spawn().expect("spawn wsd");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = mpsc::channel();
        // Reads stderr to its end, so that wsd never blocks on a full pipe;
        // hands over the address and echoes the log for a failing test.
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                eprintln!("[wsd process] {line}");
                if let Some((_, rest)) = line.split_once(LISTENING) {
                    let addr = rest.split('/').next().unwrap_or_default().to_owned();
                    let _ = tx.send(addr);
                }
            }
        });
        let addr = match rx.recv_timeout(BOUND) {
            Ok(addr) => addr,
            Err(_) => {
                let _ = child.kill();
                panic!("wsd did not log {LISTENING:?} within {BOUND:?}");
            }
        };
        let process = WsdProcess {
            child: Some(child),
            addr: addr.parse().expect("the logged address"),
            _dir: dir,
        };
        wait_engine_up(process.addr);
        process
    }

    pub async fn connect_to(&self, path: &str) -> Ws {
        let url = format!("ws://{}{path}", self.addr);
        let (ws, _) = tokio::time::timeout(BOUND, tokio_tungstenite::connect_async(url))
            .await
            .expect("connect timed out")
            .unwrap_or_else(|e| panic!("connect to {path} failed: {e}"));
        ws
    }

    /// SIGKILL: the process gets no chance to clean anything up.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for WsdProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Publishes `text` over HTTP and returns the answer; panics unless 200.
pub async fn publish(wsd: &TestWsd, channel: &str, text: &str) -> Value {
    match try_publish(wsd, channel, text).await {
        Ok(answer) => answer,
        Err((status, body)) => panic!("publish to {channel}: {status} {body}"),
    }
}

/// Publishes `text` over HTTP: the answer, or the status and error body.
pub async fn try_publish(wsd: &TestWsd, channel: &str, text: &str) -> Result<Value, (u16, Value)> {
    let mut res = wsd
        .post(&format!("/channels/{channel}"))
        .insert_header(("content-type", "text/plain"))
        .send_body(text.to_owned())
        .await
        .unwrap_or_else(|e| panic!("publish to {channel} got no answer: {e}"));
    let status = res.status().as_u16();
    let body: Value = res.json().await.unwrap_or(Value::Null);
    if status == 200 {
        Ok(body)
    } else {
        Err((status, body))
    }
}

/// A GET answering JSON, with its status.
pub async fn get_json(wsd: &TestWsd, path: &str) -> (u16, Value) {
    let mut res = wsd
        .get(path)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {path}: {e}"));
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

/// `/healthz`, whatever its status (the engine being down makes it 503).
pub async fn health_status(wsd: &TestWsd) -> (u16, Value) {
    get_json(wsd, "/healthz").await
}

/// Waits (bounded by `bound`) until `/healthz` answers `status` with
/// `"engine": engine`.
pub async fn wait_health(wsd: &TestWsd, status: u16, engine: &str, bound: Duration) {
    let ok = wait_until(bound, || async {
        let (s, body) = health_status(wsd).await;
        s == status && body["engine"] == engine
    })
    .await;
    assert!(
        ok,
        "/healthz stayed at {:?}, expected {status} with engine {engine:?}",
        health_status(wsd).await
    );
}

/// The conns of a presence channel's members, sorted, as listed over HTTP.
pub async fn presence_conns(wsd: &TestWsd, channel: &str) -> Vec<String> {
    let (status, body) = get_json(wsd, &format!("/channels/{channel}/presence")).await;
    assert_eq!(status, 200, "presence of {channel}: {body}");
    conns(&body)
}

/// The sorted `conn`s of an answer's `members`.
pub fn conns(answer: &Value) -> Vec<String> {
    let mut conns: Vec<String> = answer["members"]
        .as_array()
        .unwrap_or_else(|| panic!("no members in {answer}"))
        .iter()
        .map(|m| m["conn"].as_str().expect("a member's conn").to_owned())
        .collect();
    conns.sort();
    conns
}

/// The sum of every sample of metric `name` (all its label sets), or None if
/// it has none. A histogram's samples are `name_count`, `name_sum`, ...
pub async fn metric_sum(wsd: &TestWsd, name: &str) -> Option<f64> {
    let mut res = wsd.get("/metrics").send().await.expect("metrics");
    let body = res.body().await.expect("metrics body");
    let text = String::from_utf8_lossy(&body).into_owned();
    let values: Vec<f64> = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (sample, value) = l.rsplit_once(' ')?;
            let sample_name = sample.split('{').next()?;
            (sample_name == name).then(|| value.parse().ok())?
        })
        .collect();
    (!values.is_empty()).then(|| values.iter().sum())
}

/// The next data or close message, skipping pings and pongs, before
/// `deadline`. (The deadline is fixed before the first read: the server's
/// heartbeat pings arrive every 250 ms, so a timeout started afresh for each
/// frame would never expire.)
pub async fn next_before(ws: &mut Ws, deadline: tokio::time::Instant) -> Message {
    loop {
        let msg = tokio::time::timeout_at(deadline, ws.next())
            .await
            .expect("no message within the bound")
            .expect("the stream ended")
            .expect("a websocket error");
        match msg {
            Message::Ping(_) | Message::Pong(_) => continue,
            other => return other,
        }
    }
}

fn deadline() -> tokio::time::Instant {
    tokio::time::Instant::now() + BOUND
}

async fn text_before(ws: &mut Ws, deadline: tokio::time::Instant) -> String {
    match next_before(ws, deadline).await {
        Message::Text(t) => t.to_string(),
        other => panic!("expected text, got {other:?}"),
    }
}

/// The next text message, within [`BOUND`].
pub async fn text(ws: &mut Ws) -> String {
    text_before(ws, deadline()).await
}

/// The next message, as JSON, within [`BOUND`].
pub async fn json_msg(ws: &mut Ws) -> Value {
    serde_json::from_str(&text(ws).await).expect("a JSON message")
}

/// The next JSON message for which `wanted` is true, skipping others
/// (replies, events the test does not look at), within [`BOUND`].
pub async fn json_where(ws: &mut Ws, wanted: impl Fn(&Value) -> bool) -> Value {
    let deadline = deadline();
    loop {
        let text = text_before(ws, deadline).await;
        let msg: Value = serde_json::from_str(&text).expect("a JSON message");
        if wanted(&msg) {
            return msg;
        }
    }
}

/// Sends a JSON-mode command and returns its reply (the message with its
/// `id` and an `ok`), skipping deliveries and events in between.
pub async fn command(ws: &mut Ws, command: Value) -> Value {
    ws.send(Message::text(command.to_string()))
        .await
        .expect("send a command");
    let id = command["id"].clone();
    json_where(ws, |m| m["id"] == id && m.get("ok").is_some()).await
}

/// The next data or close message before `deadline`, or None then.
async fn try_next_before(ws: &mut Ws, deadline: tokio::time::Instant) -> Option<Message> {
    loop {
        match tokio::time::timeout_at(deadline, ws.next()).await {
            Err(_) => return None,
            Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => continue,
            Ok(Some(Ok(msg))) => return Some(msg),
            Ok(other) => panic!("while waiting to be live: {other:?}"),
        }
    }
}

/// Whether a message (plain text, or a JSON delivery) is the `go` marker.
fn is_go(text: &str) -> bool {
    text == "go" || serde_json::from_str::<Value>(text).is_ok_and(|m| m["data"] == "go")
}

/// Returns once every subscriber in `subs` (plain or JSON) is live on
/// `channel`, with the `go` marker as the last thing each has read; answers
/// the publish of `go`.
///
/// A subscriber is counted (and the instance SUBSCRIBEd in Redis) when it
/// joins, but it goes live only after the engine has read the channel's
/// position, and a plain subscriber without `since` starts after what was
/// published before then. A plain client has no sign of that moment, so:
/// publish markers until each subscriber has got one (a live one gets each
/// at once), then `go`, and read up to it.
pub async fn until_live(wsd: &TestWsd, channel: &str, subs: &mut [Ws]) -> Value {
    let deadline = tokio::time::Instant::now() + BOUND;
    let mut live = vec![false; subs.len()];
    let mut markers = 0;
    while live.iter().any(|l| !l) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{markers} markers published to {channel}, but subscribers {:?} got none",
            live.iter()
                .enumerate()
                .filter(|(_, l)| !**l)
                .map(|(i, _)| i)
                .collect::<Vec<_>>()
        );
        publish(wsd, channel, &format!("sync {markers}")).await;
        markers += 1;
        for (ws, live) in subs.iter_mut().zip(&mut live) {
            if *live {
                continue;
            }
            // Short: how long decides only how many markers are sent.
            let soon = tokio::time::Instant::now() + Duration::from_millis(100);
            if let Some(msg) = try_next_before(ws, soon).await {
                assert!(matches!(msg, Message::Text(_)), "while syncing: {msg:?}");
                *live = true;
            }
        }
    }
    let go = publish(wsd, channel, "go").await;
    let deadline = tokio::time::Instant::now() + BOUND;
    for ws in subs {
        while !is_go(&text_before(ws, deadline).await) {}
    }
    go
}
