//! The HTTP side: the [`app`] factory used by both `wsd` and the tests, the
//! upgrade handler that admits or refuses a connection before any actor
//! exists, `/healthz`, `/metrics`, and [`run`], which adds listening, signals
//! and graceful shutdown for the binary.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::{Actor, Addr};
use actix_web::body::BoxBody;
use actix_web::dev::{ServiceFactory, ServiceRequest, ServiceResponse};
use actix_web::http::{Method, StatusCode, header};
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use actix_web_actors::ws;

use crate::config::{Config, SessionConfig};
use crate::metrics::Metrics;
use crate::registry::{Admission, Registry, Shutdown, Stats};
use crate::session::{Session, describe_peer};
use crate::tls::{self, TlsError};

/// Everything the handlers share: one per server, cloned into each worker.
#[derive(Clone)]
pub struct AppState {
    config: Arc<Config>,
    session: Arc<SessionConfig>,
    registry: Addr<Registry>,
    admission: Admission,
    metrics: Arc<Metrics>,
    started: Instant,
}

impl AppState {
    /// Builds the shared state and starts the registry actor on the current
    /// actix system (so call it from inside one, e.g. `#[actix_web::main]`).
    pub fn new(config: Config) -> Self {
        let metrics = Arc::new(Metrics::new());
        let registry = Registry::new(metrics.clone()).start();
        AppState {
            admission: Admission::new(config.server.max_connections),
            session: Arc::new(config.session.clone()),
            config: Arc::new(config),
            registry,
            metrics,
            started: Instant::now(),
        }
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Tells every session to close with 1001 and waits up to `timeout` for
    /// them to finish. Returns how many were still open at the end.
    pub async fn shutdown(&self, timeout: Duration) -> usize {
        self.registry
            .send(Shutdown { timeout })
            .await
            .unwrap_or_default()
    }
}

/// The application: the WebSocket endpoint at `server.path`, `/healthz` and
/// `/metrics`.
pub fn app(
    state: AppState,
) -> App<
    impl ServiceFactory<
        ServiceRequest,
        Config = (),
        Response = ServiceResponse<BoxBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    let path = state.config.server.path.clone();
    App::new()
        .app_data(web::Data::new(state))
        .route("/healthz", web::get().to(healthz))
        .route("/metrics", web::get().to(metrics))
        .route(&path, web::route().to(upgrade))
}

/// Checks the opening handshake ourselves before actix-web-actors does, so
/// each fault gets the status RFC 6455 section 4.2.2 asks for. `Some` is the
/// refusal to send.
fn refuse_handshake(req: &HttpRequest) -> Option<HttpResponse> {
    let headers = req.headers();
    let has_token = |name: header::HeaderName, token: &str| {
        headers.get_all(name).any(|v| {
            v.to_str()
                .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
        })
    };
    if !has_token(header::UPGRADE, "websocket") {
        return Some(HttpResponse::build(StatusCode::UPGRADE_REQUIRED)
            .insert_header((header::UPGRADE, "websocket"))
            .insert_header((header::CONNECTION, "Upgrade"))
            .insert_header((header::SEC_WEBSOCKET_VERSION, "13"))
            .body("This is a WebSocket endpoint: connect with a WebSocket client, e.g. wscat -c ws://HOST:PORT\n"));
    }
    if req.method() != Method::GET {
        return Some(
            HttpResponse::MethodNotAllowed()
                .insert_header((header::ALLOW, "GET"))
                .body("WebSocket upgrades must use GET\n"),
        );
    }
    if !has_token(header::CONNECTION, "upgrade") {
        return Some(HttpResponse::BadRequest().body("missing `Connection: Upgrade`\n"));
    }
    if headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .is_none_or(|v| v != "13")
    {
        return Some(
            HttpResponse::build(StatusCode::UPGRADE_REQUIRED)
                .insert_header((header::SEC_WEBSOCKET_VERSION, "13"))
                .body("unsupported Sec-WebSocket-Version; this server speaks version 13\n"),
        );
    }
    let key_ok = headers
        .get(header::SEC_WEBSOCKET_KEY)
        .is_some_and(|k| is_valid_key(k.as_bytes()));
    if !key_ok {
        return Some(
            HttpResponse::BadRequest()
                .body("missing or malformed Sec-WebSocket-Key (16 bytes, base64)\n"),
        );
    }
    None
}

/// A key is 16 random bytes in base64: 22 significant characters and `==`.
fn is_valid_key(key: &[u8]) -> bool {
    key.len() == 24
        && key.ends_with(b"==")
        && key[..22]
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'+' || *b == b'/')
}

async fn upgrade(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> HttpResponse {
    if let Some(refusal) = refuse_handshake(&req) {
        return refusal;
    }
    let Some(slot) = state.admission.try_admit() else {
        state.metrics.connections_rejected.inc();
        log::warn!(
            "refused upgrade from {}: {} sessions open (max_connections)",
            describe_peer(req.peer_addr()),
            state.admission.max()
        );
        return HttpResponse::ServiceUnavailable()
            .insert_header((header::RETRY_AFTER, "1"))
            .body("too many connections\n");
    };
    let mut response = match ws::handshake(&req) {
        Ok(builder) => builder,
        Err(e) => return HttpResponse::BadRequest().body(format!("{e}\n")),
    };
    let body = Session::start(
        payload,
        req.peer_addr(),
        state.session.clone(),
        state.registry.clone(),
        state.metrics.clone(),
        slot,
    );
    response.streaming(body)
}

async fn healthz(state: web::Data<AppState>) -> HttpResponse {
    match state.registry.send(Stats).await {
        Ok(report) => HttpResponse::Ok().json(serde_json::json!({
            "status": if report.shutting_down { "shutting_down" } else { "ok" },
            "sessions": report.sessions,
            "max_connections": state.admission.max(),
            "oldest_session_secs": report.oldest_session_secs,
            "uptime_secs": state.started.elapsed().as_secs(),
            "version": env!("CARGO_PKG_VERSION"),
        })),
        Err(e) => HttpResponse::InternalServerError()
            .json(serde_json::json!({"status": "error", "error": e.to_string()})),
    }
}

async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(Metrics::CONTENT_TYPE)
        .body(state.metrics.render())
}

/// Why the server could not run.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error("TLS: {0}")]
    Tls(#[from] TlsError),
    #[error("server error: {0}")]
    Io(#[from] std::io::Error),
}

impl ServeError {
    /// Bad TLS files are configuration errors (exit 2), like a bad config
    /// file; anything else is a failure to run (exit 1).
    pub fn exit_code(&self) -> i32 {
        match self {
            ServeError::Tls(_) => crate::exit::USAGE,
            _ => crate::exit::FAILURE,
        }
    }
}

/// Runs the server until SIGINT or SIGTERM, then shuts down gracefully:
/// stop accepting, close every session with 1001, wait up to
/// `shutdown_timeout`, exit.
pub async fn run(config: Config) -> Result<(), ServeError> {
    // Read certificates before anything listens: a bad file is reported as
    // such, not as a failure halfway through starting.
    let tls = config.tls.as_ref().map(tls::server_config).transpose()?;
    check_file_limit(config.server.max_connections);
    let state = AppState::new(config.clone());
    let factory_state = state.clone();
    let mut server = HttpServer::new(move || app(factory_state.clone()))
        .client_request_timeout(config.server.handshake_timeout)
        // Without this, actix-http lingers up to a second after a session ends
        // before closing the TCP connection, waiting for the client to close
        // first. RFC 6455 section 7.1.1 has the server close first.
        .client_disconnect_timeout(Duration::ZERO)
        .disable_signals()
        // Echo replies are small writes; Nagle would hold them back for the
        // peer's delayed ACK.
        .tcp_nodelay(true)
        // actix's own per-worker cap would silently stop accepting before our
        // limit could answer 503; keep it out of the way.
        .max_connections(
            config
                .server
                .max_connections
                .saturating_add(1024)
                .max(25_000),
        )
        .backlog(4096)
        .shutdown_timeout(1);
    if config.server.workers > 0 {
        server = server.workers(config.server.workers);
    }
    let bound = match tls {
        Some(tls) => server.bind_rustls_0_23(&config.server.bind, tls),
        None => server.bind(&config.server.bind),
    };
    let server = bound.map_err(|source| ServeError::Bind {
        addr: config.server.bind.clone(),
        source,
    })?;
    let scheme = if config.tls.is_some() { "wss" } else { "ws" };
    let addrs: Vec<SocketAddr> = server.addrs();
    for addr in &addrs {
        log::info!("wsd listening on {scheme}://{addr}{}", config.server.path);
    }
    let server = server.run();
    let handle = server.handle();
    actix_rt::spawn(async move {
        let signal = wait_for_signal().await;
        log::info!("{signal} received: shutting down");
        handle.pause().await;
        let left = state.shutdown(config.server.shutdown_timeout).await;
        if left > 0 {
            log::warn!("{left} session(s) did not close in time; dropping them");
        }
        handle.stop(true).await;
    });
    server.await?;
    log::info!("wsd stopped");
    Ok(())
}

/// File descriptors kept free for listeners, logs and the like.
const RESERVED_FDS: u64 = 64;

/// Raises the soft open-file limit to the hard limit (every connection is a
/// file descriptor) and says how many connections that allows.
fn check_file_limit(max_connections: usize) {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => {
            let room = limit.saturating_sub(RESERVED_FDS);
            log::info!("open-file limit {limit}: room for about {room} connections");
            if max_connections as u64 > room {
                log::warn!(
                    "max_connections ({max_connections}) exceeds what the open-file limit \
                     allows (about {room}); accepts will fail beyond that"
                );
            }
        }
        Err(e) => log::warn!("cannot read or raise the open-file limit: {e}"),
    }
}

async fn wait_for_signal() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) {
        (Ok(mut int), Ok(mut term)) => tokio::select! {
            _ = int.recv() => "SIGINT",
            _ = term.recv() => "SIGTERM",
        },
        _ => {
            let _ = tokio::signal::ctrl_c().await;
            "Ctrl-C"
        }
    }
}
