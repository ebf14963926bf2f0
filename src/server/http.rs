//! The actix-web application: the upgrade handler that admits or refuses a
//! connection before any actor exists, `/healthz`, `/metrics`, the channel
//! endpoints (`api`), the Pusher endpoints (`pusher_api`) and the browser
//! console ([`crate::console`]).

use std::sync::Arc;
use std::time::Instant;

use actix::{Actor, Addr, MailboxError};
use actix_web::body::BoxBody;
use actix_web::dev::{ServiceFactory, ServiceRequest, ServiceResponse};
use actix_web::http::{Method, StatusCode, header};
use actix_web::{App, HttpRequest, HttpResponse, web};

use super::admission::Admission;
use super::api;
use super::metrics::Metrics;
use super::outbox::ConnSocket;
use super::pusher_api;
use super::registry::{Registry, Shutdown, Stats};
use super::session::{Mode, Session, Setup, describe_peer};
use crate::auth::{AuthError, Verifier};
use crate::channels::Channels;
use crate::config::{Compression, Config, SessionConfig};
use crate::console::Console;
use crate::engine::Health;
use crate::protocol::deflate::{Agreement, ServerSettings};
use crate::protocol::handshake::{self, Refusal, UpgradeRequest};
use crate::pusher::Apps;

/// Everything the handlers share: one per server, cloned into each worker.
#[derive(Clone)]
pub struct AppState {
    config: Arc<Config>,
    session: Arc<SessionConfig>,
    registry: Addr<Registry>,
    admission: Admission,
    metrics: Arc<Metrics>,
    channels: Arc<Channels>,
    verifier: Option<Arc<Verifier>>,
    console: Arc<Console>,
    pusher: Arc<Apps>,
    /// The first half of this process's Pusher socket ids (`NODE.SESSION`):
    /// random, so that instances sharing an engine give different ids.
    pusher_node: u32,
    started: Instant,
}

/// Why the shared state cannot be built: a config problem found only when
/// it is used.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("key `{key}`: {0}", key = .0.config_key())]
    Auth(#[from] AuthError),
    #[error("key `engine.redis.url`: {0}")]
    Engine(String),
}

impl AppState {
    /// Builds the shared state and starts the registry actor and the channel
    /// engine on the current actix system (so call it from inside one, e.g.
    /// `#[actix_web::main]`). Fails when `[auth]`'s key file is unusable.
    pub fn new(config: Config) -> Result<Self, StartError> {
        let verifier = Verifier::new(&config.auth)?.map(Arc::new);
        let metrics = Arc::new(Metrics::new());
        let registry = Registry::new(metrics.clone()).start();
        // The Pusher apps' channels live in namespaces of their own.
        let mut channels_config = config.channels.clone();
        channels_config
            .namespace
            .extend(crate::pusher::apps::namespaces(&config.pusher));
        let channels = Channels::start(
            &channels_config,
            &config.engine,
            metrics.channels.clone(),
            metrics.redis.clone(),
        )
        .map_err(StartError::Engine)?;
        let (pusher, webhooks) = Apps::new(&config.pusher);
        for (app, queue) in webhooks {
            actix_rt::spawn(super::pusher_webhooks::deliver(app, queue));
        }
        let mut node = [0u8; 4];
        // Without randomness, the clock's nanoseconds do as well for this.
        let pusher_node = match getrandom::fill(&mut node) {
            Ok(()) => u32::from_le_bytes(node),
            Err(_) => std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.subsec_nanos()),
        } % 1_000_000_000;
        Ok(AppState {
            console: Arc::new(Console::new(&config)),
            pusher: Arc::new(pusher),
            pusher_node,
            channels,
            verifier,
            admission: Admission::new(config.server.max_connections),
            session: Arc::new(config.session.clone()),
            config: Arc::new(config),
            registry,
            metrics,
            started: Instant::now(),
        })
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn channels(&self) -> &Arc<Channels> {
        &self.channels
    }

    pub(crate) fn verifier(&self) -> Option<&Verifier> {
        self.verifier.as_deref()
    }

    pub(crate) fn pusher_apps(&self) -> &Apps {
        &self.pusher
    }

    pub(crate) fn pusher_node(&self) -> u32 {
        self.pusher_node
    }

    pub(crate) fn console(&self) -> &Console {
        &self.console
    }

    pub(crate) fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    pub(crate) fn uptime(&self) -> std::time::Duration {
        self.started.elapsed()
    }

    pub(crate) fn max_connections(&self) -> usize {
        self.admission.max()
    }

    /// Tells every session to close with 1001 and waits up to `timeout` for
    /// them to finish. Returns how many were still open at the end, or the
    /// error if the registry could not be asked.
    pub async fn shutdown(&self, timeout: std::time::Duration) -> Result<usize, MailboxError> {
        self.registry.send(Shutdown { timeout }).await
    }
}

/// The application: the WebSocket endpoint at `server.path`, `/healthz`,
/// `/metrics`, the channel endpoints and the console.
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
    let channels = state.config.channels.path.clone();
    let console = state.config.console.enabled;
    let pusher = !state.pusher.is_empty();
    App::new()
        .app_data(web::Data::new(state))
        .configure(|cfg| {
            if console {
                crate::console::routes(cfg, &path);
            }
            if pusher {
                pusher_api::routes(cfg);
            }
        })
        .route("/healthz", web::get().to(healthz))
        .route("/metrics", web::get().to(metrics))
        .service(
            web::resource(channels.as_str())
                .route(web::get().to(api::root))
                .route(web::post().to(api::publish_many)),
        )
        .service(
            web::resource(format!("{channels}/{{names}}"))
                .route(web::get().to(api::named))
                .route(web::post().to(api::publish_one)),
        )
        .route(
            &format!("{channels}/{{name}}/history"),
            web::get().to(api::history),
        )
        .route(
            &format!("{channels}/{{name}}/presence"),
            web::get().to(api::presence),
        )
        .route(&path, web::route().to(upgrade))
}

/// Runs the RFC's handshake rules on the request; `Ok` is the accept key.
fn check_handshake(req: &HttpRequest) -> Result<String, Refusal> {
    let headers = req.headers();
    let upgrade: Vec<&[u8]> = headers
        .get_all(header::UPGRADE)
        .map(|v| v.as_bytes())
        .collect();
    let connection: Vec<&[u8]> = headers
        .get_all(header::CONNECTION)
        .map(|v| v.as_bytes())
        .collect();
    handshake::check(&UpgradeRequest {
        method_is_get: req.method() == Method::GET,
        upgrade: &upgrade,
        connection: &connection,
        version: headers
            .get(header::SEC_WEBSOCKET_VERSION)
            .map(|v| v.as_bytes()),
        key: headers.get(header::SEC_WEBSOCKET_KEY).map(|v| v.as_bytes()),
    })
}

/// The HTTP answer to a refused handshake, with the headers section 4.2.2
/// asks for (what to upgrade to, which version we speak, which method).
fn refusal_response(refusal: Refusal) -> HttpResponse {
    let status = StatusCode::from_u16(refusal.status()).unwrap_or(StatusCode::BAD_REQUEST);
    let mut res = HttpResponse::build(status);
    match refusal {
        Refusal::NotWebSocket => {
            res.insert_header((header::UPGRADE, "websocket"))
                .insert_header((header::CONNECTION, "Upgrade"))
                .insert_header((header::SEC_WEBSOCKET_VERSION, "13"));
        }
        Refusal::Version => {
            res.insert_header((header::SEC_WEBSOCKET_VERSION, "13"));
        }
        Refusal::Method => {
            res.insert_header((header::ALLOW, "GET"));
        }
        Refusal::NoConnectionUpgrade | Refusal::Key => {}
    }
    res.body(refusal.message())
}

async fn upgrade(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> HttpResponse {
    if state.config.console.enabled && crate::console::wants_page(&req) {
        return crate::console::redirect();
    }
    upgrade_session(&req, payload, &state, Mode::Echo, None)
}

/// Whether a browser's `Origin` may open a WebSocket: any, when
/// `server.allowed_origins` is empty; requests without one are not from a
/// browser and are not affected.
fn origin_allowed(req: &HttpRequest, allowed: &[String]) -> bool {
    if allowed.is_empty() {
        return true;
    }
    match req.headers().get(header::ORIGIN) {
        None => true,
        Some(origin) => allowed
            .iter()
            .any(|a| a.as_bytes().eq_ignore_ascii_case(origin.as_bytes())),
    }
}

/// Runs the handshake's checks and admission, then starts the session in
/// `mode`. `protocol` is the subprotocol to answer with.
pub(crate) fn upgrade_session(
    req: &HttpRequest,
    payload: web::Payload,
    state: &AppState,
    mode: Mode,
    protocol: Option<&'static str>,
) -> HttpResponse {
    let accept = match check_handshake(req) {
        Ok(accept) => accept,
        Err(refusal) => return refusal_response(refusal),
    };
    if !origin_allowed(req, &state.config.server.allowed_origins) {
        log::info!(
            "refused upgrade from {}: origin {:?} is not in server.allowed_origins",
            describe_peer(req.peer_addr()),
            req.headers()
                .get(header::ORIGIN)
                .map(|o| String::from_utf8_lossy(o.as_bytes()).into_owned())
                .unwrap_or_default()
        );
        return HttpResponse::Forbidden().json(serde_json::json!({"error": {
            "code": "forbidden",
            "message": "this origin may not open WebSockets here (server.allowed_origins)",
        }}));
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
    let deflate = negotiate_deflate(req, &state.session);
    let body = Session::start(
        payload,
        Setup {
            peer: req.peer_addr(),
            socket: req.conn_data::<ConnSocket>().copied(),
            config: state.session.clone(),
            registry: state.registry.clone(),
            metrics: state.metrics.clone(),
            slot,
            mode,
            deflate: deflate.as_ref().map(|a| a.params),
        },
    );
    let mut res = HttpResponse::SwitchingProtocols();
    res.upgrade("websocket")
        .insert_header((header::SEC_WEBSOCKET_ACCEPT, accept));
    if let Some(agreement) = deflate {
        res.insert_header((header::SEC_WEBSOCKET_EXTENSIONS, agreement.response));
    }
    if let Some(protocol) = protocol {
        res.insert_header((header::SEC_WEBSOCKET_PROTOCOL, protocol));
    }
    res.streaming(body)
}

/// permessage-deflate for this connection: the first acceptable offer in
/// the request's `Sec-WebSocket-Extensions` (RFC 7692 section 5), when
/// `[session] compression = "on"`. A header value that is not text is no
/// offer.
fn negotiate_deflate(req: &HttpRequest, session: &SessionConfig) -> Option<Agreement> {
    if session.compression != Compression::On {
        return None;
    }
    let d = &session.deflate;
    ServerSettings {
        server_context_takeover: d.server_context_takeover,
        server_max_window_bits: d.server_max_window_bits,
        client_max_window_bits: d.client_max_window_bits,
    }
    .negotiate(
        req.headers()
            .get_all(header::SEC_WEBSOCKET_EXTENSIONS)
            .filter_map(|v| v.to_str().ok()),
    )
}

async fn healthz(state: web::Data<AppState>) -> HttpResponse {
    // A load balancer takes an instance whose engine is down out of
    // rotation: it could not publish or subscribe.
    let engine = state.channels.health();
    match state.registry.send(Stats).await {
        Ok(report) => HttpResponse::build(match engine {
            Health::Up => StatusCode::OK,
            Health::Down => StatusCode::SERVICE_UNAVAILABLE,
        })
        .json(serde_json::json!({
            "status": match (report.shutting_down, engine) {
                (true, _) => "shutting_down",
                (false, Health::Down) => "engine_down",
                (false, Health::Up) => "ok",
            },
            "sessions": report.sessions,
            "max_connections": state.admission.max(),
            "oldest_session_secs": report.oldest_session_secs,
            "channels": state.channels.channel_count(),
            "engine": engine.as_str(),
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
