//! Helpers shared by the integration tests: start the real `app` on a test
//! server, connect with an independent client (tokio-tungstenite) or with raw
//! frames, and wait on events with a bound instead of sleeping.
#![allow(dead_code)]

pub mod broadcast;
pub mod peer;
pub mod pki;
pub mod raw;
pub mod redis;
pub mod stall;
pub mod tools;
pub mod wsc;

use std::future::Future;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use wsd::config::Config;
use wsd::server::{AppState, Server};

/// The bound for anything a test waits on. Generous: a loaded 2-core CI
/// machine must not make a correct server look broken.
pub const BOUND: Duration = Duration::from_secs(10);

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A config for tests: the shipped defaults with short timers.
pub fn test_config() -> Config {
    let mut config = Config::default();
    config.server.bind = "127.0.0.1:0".into();
    config.server.shutdown_timeout = Duration::from_secs(5);
    config.session.heartbeat_interval = Duration::from_millis(250);
    config.session.client_timeout = Duration::from_secs(5);
    config.session.close_timeout = Duration::from_millis(500);
    // One worker: every test's sessions share a thread, as many do under load.
    config.server.workers = 1;
    config
}

/// The real server, as `wsd` builds it, on a free loopback port.
///
/// It runs in a thread with its own actix system, like the binary's, so a
/// test's own runtime never carries the server's work; dropping it stops both.
pub struct TestWsd {
    pub state: AppState,
    addr: std::net::SocketAddr,
    tls: bool,
    handle: actix_web::dev::ServerHandle,
    system: actix_rt::System,
    client: awc::Client,
}

impl TestWsd {
    /// Starts the server with `config` (its `server.bind` should use port 0).
    pub fn start(config: Config) -> TestWsd {
        // The server's log, shown with a failing test's output (RUST_LOG).
        let _ = env_logger::builder().is_test(true).try_init();
        let tls = config.tls.is_some();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            actix_rt::System::new().block_on(async move {
                let server = match Server::bind(config) {
                    Ok(server) => server,
                    Err(e) => {
                        let _ = tx.send(Err(e.to_string()));
                        return;
                    }
                };
                let started = (
                    server.state().clone(),
                    server.addrs()[0],
                    server.handle(),
                    actix_rt::System::current(),
                );
                let _ = tx.send(Ok(started));
                let _ = server.run().await;
            });
        });
        let (state, addr, handle, system) = rx
            .recv()
            .expect("server thread")
            .unwrap_or_else(|e| panic!("cannot start wsd: {e}"));
        TestWsd {
            state,
            addr,
            tls,
            handle,
            system,
            client: http_client(),
        }
    }

    /// Starts the server serving TLS (the config must have `[tls]`).
    pub fn start_tls(config: Config) -> TestWsd {
        assert!(config.tls.is_some(), "start_tls needs config.tls");
        TestWsd::start(config)
    }

    /// An HTTP request to this server (plain HTTP; use only without TLS).
    pub fn get(&self, path: &str) -> awc::ClientRequest {
        assert!(!self.tls, "TestWsd::get speaks plain HTTP");
        self.client.get(format!("http://{}{path}", self.addr))
    }

    /// The channel names `GET /channels` lists, in its order, and the
    /// whole answer (for a failure's message).
    pub async fn channel_names(&self) -> (Vec<String>, serde_json::Value) {
        let mut res = self.get("/channels").send().await.expect("GET /channels");
        let list: serde_json::Value = res.json().await.expect("/channels JSON");
        let names = list["channels"]
            .as_array()
            .expect("a channels array")
            .iter()
            .map(|c| c["channel"].as_str().expect("a channel name").to_owned())
            .collect();
        (names, list)
    }

    /// A POST to this server (plain HTTP).
    pub fn post(&self, path: &str) -> awc::ClientRequest {
        assert!(!self.tls, "TestWsd::post speaks plain HTTP");
        self.client.post(format!("http://{}{path}", self.addr))
    }

    /// Connects to `path` (with its query) with tokio-tungstenite.
    pub async fn connect_to(&self, path: &str) -> Ws {
        let url = format!("ws://{}{path}", self.addr());
        let (ws, _) = tokio::time::timeout(BOUND, tokio_tungstenite::connect_async(url))
            .await
            .expect("connect timed out")
            .unwrap_or_else(|e| panic!("connect to {path} failed: {e}"));
        ws
    }

    /// Waits (bounded) until `wsd_subscriptions_active` is `n`.
    pub async fn wait_subscriptions(&self, n: u64) {
        let ok = wait_until(BOUND, || async {
            self.metric("wsd_subscriptions_active").await == Some(n as f64)
        })
        .await;
        assert!(
            ok,
            "subscriptions stayed at {:?}, expected {n}",
            self.metric("wsd_subscriptions_active").await
        );
    }

    pub fn addr(&self) -> std::net::SocketAddr {
        self.addr
    }

    pub fn ws_url(&self) -> String {
        format!("ws://{}{}", self.addr(), self.state.config().server.path)
    }

    /// Connects with tokio-tungstenite, an implementation independent of ours.
    pub async fn connect(&self) -> Ws {
        let (ws, _) = tokio::time::timeout(BOUND, tokio_tungstenite::connect_async(self.ws_url()))
            .await
            .expect("connect timed out")
            .expect("connect failed");
        ws
    }

    /// `/healthz` as JSON.
    pub async fn health(&self) -> serde_json::Value {
        let mut res = self.get("/healthz").send().await.expect("healthz");
        assert!(res.status().is_success());
        res.json().await.expect("healthz json")
    }

    pub async fn sessions(&self) -> u64 {
        self.health().await["sessions"].as_u64().expect("sessions")
    }

    /// The value of one metric line (`name` may include labels), or None.
    pub async fn metric(&self, name: &str) -> Option<f64> {
        let mut res = self.get("/metrics").send().await.expect("metrics");
        let body = res.body().await.expect("metrics body");
        let text = String::from_utf8_lossy(&body).into_owned();
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
    }

    /// `wsd_sessions_closed_total` for one close reason, or None.
    pub async fn closed(&self, reason: &str) -> Option<f64> {
        self.metric(&format!("wsd_sessions_closed_total{{reason=\"{reason}\"}}"))
            .await
    }

    /// Waits (bounded) until `/healthz` reports `n` sessions.
    pub async fn wait_sessions(&self, n: u64) {
        let ok = wait_until(BOUND, || async { self.sessions().await == n }).await;
        assert!(
            ok,
            "sessions stayed at {}, expected {n}",
            self.sessions().await
        );
    }
}

impl Drop for TestWsd {
    fn drop(&mut self) {
        // `stop` sends its command at once; the future only waits for it.
        #[allow(clippy::let_underscore_future)]
        let _ = self.handle.stop(false);
        self.system.stop();
    }
}

fn http_client() -> awc::Client {
    awc::Client::builder().timeout(BOUND).finish()
}

/// Polls `check` every 20 ms until it is true or `bound` passes.
pub async fn wait_until<F, Fut>(bound: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + bound;
    loop {
        if check().await {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The next data or close message, skipping pings/pongs, within [`BOUND`]
/// in all (one deadline: the server's pings must not extend it).
pub async fn next_message(ws: &mut Ws) -> Message {
    let deadline = tokio::time::Instant::now() + BOUND;
    loop {
        let msg = tokio::time::timeout_at(deadline, ws.next())
            .await
            .expect("no message within bound")
            .expect("stream ended")
            .expect("websocket error");
        match msg {
            Message::Ping(_) | Message::Pong(_) => continue,
            other => return other,
        }
    }
}

/// Sends a text message and returns the text reply.
pub async fn round_trip(ws: &mut Ws, text: &str) -> String {
    ws.send(Message::text(text)).await.expect("send");
    match next_message(ws).await {
        Message::Text(t) => t.to_string(),
        other => panic!("expected text, got {other:?}"),
    }
}
