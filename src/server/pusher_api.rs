//! The Pusher endpoints: the WebSocket upgrade at `/app/KEY` and the HTTP
//! API the official server SDKs call, under `/apps/ID/`: trigger events
//! (one, or a batch), read the channels, one channel, and a presence
//! channel's users, and terminate a signed-in user's connections.
//!
//! Every API request is signed with the app's secret (`auth_key`,
//! `auth_timestamp`, `auth_version`, `body_md5`, `auth_signature`); an
//! unknown app id is a 404 before any signature is looked at.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use actix_web::http::{Method, StatusCode};
use actix_web::{HttpRequest, HttpResponse, web};
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::api::body;
use super::http::{AppState, upgrade_session};
use super::session::{Mode, PusherSetup, describe_peer};
use crate::channels::{ChannelError, ChannelName, Publish, Source};
use crate::engine::Kind;
use crate::pusher::protocol::{self, ChannelKind, Privacy, code};
use crate::pusher::{App, sign};

/// How far `auth_timestamp` may be from the server's clock.
const MAX_SKEW: Duration = Duration::from_secs(600);
/// Channels one event may go to, and events in one batch (as the hosted
/// service allows).
const MAX_CHANNELS: usize = 100;
const MAX_BATCH: usize = 10;

/// An API refusal: its status and a sentence.
#[derive(Debug)]
struct ApiError {
    status: StatusCode,
    message: String,
}

fn api_error(status: StatusCode, message: impl Into<String>) -> ApiError {
    ApiError {
        status,
        message: message.into(),
    }
}

fn bad(message: impl Into<String>) -> ApiError {
    api_error(StatusCode::BAD_REQUEST, message)
}

impl From<ChannelError> for ApiError {
    fn from(e: ChannelError) -> Self {
        api_error(
            StatusCode::from_u16(e.code.http_status()).unwrap_or(StatusCode::BAD_REQUEST),
            e.message,
        )
    }
}

fn answer(result: Result<Value, ApiError>) -> HttpResponse {
    match result {
        Ok(value) => HttpResponse::Ok().json(value),
        Err(e) => HttpResponse::build(e.status).json(json!({
            "error": e.message,
            "code": e.status.as_u16(),
        })),
    }
}

/// The routes, when apps are configured.
pub(crate) fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/app/{key}", web::get().to(connect))
        .route("/apps/{id}/events", web::post().to(events))
        .route("/apps/{id}/batch_events", web::post().to(batch_events))
        .route("/apps/{id}/channels", web::get().to(channels))
        .route("/apps/{id}/channels/{name}", web::get().to(channel))
        .route("/apps/{id}/channels/{name}/users", web::get().to(users))
        .route(
            "/apps/{id}/users/{user}/terminate_connections",
            web::post().to(terminate),
        );
}

#[derive(Deserialize)]
struct ConnectQuery {
    protocol: Option<String>,
}

/// `GET /app/KEY?protocol=7&client=js&version=..`: a Pusher connection.
/// Refusals (unknown key, protocol, quota) are told after the upgrade, as
/// `pusher:error` and the close code, which is where clients look.
async fn connect(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
    key: web::Path<String>,
) -> HttpResponse {
    let protocol = web::Query::<ConnectQuery>::from_query(req.query_string())
        .ok()
        .and_then(|q| q.into_inner().protocol);
    let app = match (state.pusher_apps().by_key(&key), protocol) {
        (None, _) => Err((
            code::APP_NOT_FOUND,
            format!(
                "app key {:?} does not exist",
                key.chars().take(64).collect::<String>()
            ),
        )),
        (Some(_), None) => Err((
            code::NO_PROTOCOL,
            "no protocol version given (?protocol=7)".to_owned(),
        )),
        (Some(app), Some(version)) => match version.parse::<u32>() {
            Ok(v) if protocol::PROTOCOLS.contains(&v) => match app.admit() {
                Some(admitted) => Ok((app.clone(), admitted)),
                None => Err((
                    code::OVER_QUOTA,
                    format!(
                        "the app is at its connection quota (max_connections = {})",
                        app.config.max_connections
                    ),
                )),
            },
            _ => Err((
                code::UNSUPPORTED_PROTOCOL,
                format!(
                    "protocol version {:?} is not supported (5 to 7 are)",
                    version.chars().take(16).collect::<String>()
                ),
            )),
        },
    };
    let setup = PusherSetup {
        channels: state.channels().clone(),
        app,
        node: state.pusher_node(),
        activity_timeout: state.config().pusher.activity_timeout,
    };
    upgrade_session(&req, payload, &state, Mode::Pusher(setup), None)
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A request's query, decoded, in its order.
type Params = Vec<(String, String)>;

/// The app of the path's id, with the request's signature checked.
fn authenticate<'a>(
    req: &HttpRequest,
    state: &'a AppState,
    id: &str,
    body: &[u8],
) -> Result<(&'a Arc<App>, Params), ApiError> {
    let app = state
        .pusher_apps()
        .by_id(id)
        .ok_or_else(|| api_error(StatusCode::NOT_FOUND, format!("unknown app id {id:?}")))?;
    let params = web::Query::<Params>::from_query(req.query_string())
        .map_err(|e| bad(format!("bad query: {e}")))?
        .into_inner();
    let param = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    };
    let unauthorized = |m: String| api_error(StatusCode::UNAUTHORIZED, m);
    match param("auth_key") {
        Some(key) if key == app.config.key => {}
        Some(_) => return Err(unauthorized("auth_key is not this app's key".into())),
        None => return Err(unauthorized("auth_key is missing".into())),
    }
    if let Some(version) = param("auth_version")
        && version != "1.0"
    {
        return Err(unauthorized(format!(
            "auth_version {version:?}: only 1.0 is spoken"
        )));
    }
    let timestamp = param("auth_timestamp")
        .and_then(|t| t.parse::<u64>().ok())
        .ok_or_else(|| unauthorized("auth_timestamp is missing or not a number".into()))?;
    if now_secs().abs_diff(timestamp) > MAX_SKEW.as_secs() {
        return Err(unauthorized(format!(
            "auth_timestamp {timestamp} is more than {} s from the server's time ({}); check \
             the clock",
            MAX_SKEW.as_secs(),
            now_secs()
        )));
    }
    match param("body_md5") {
        Some(md5) if !md5.eq_ignore_ascii_case(&sign::body_md5(body)) => {
            return Err(unauthorized("body_md5 is not the body's MD5".into()));
        }
        None if !body.is_empty() => {
            return Err(unauthorized("body_md5 is missing".into()));
        }
        _ => {}
    }
    let signature =
        param("auth_signature").ok_or_else(|| unauthorized("auth_signature is missing".into()))?;
    let method = if req.method() == Method::POST {
        "POST"
    } else {
        "GET"
    };
    let message = sign::request_message(method, req.path(), &params);
    if !sign::verify(&app.config.secret, message.as_bytes(), signature) {
        return Err(unauthorized(format!(
            "invalid signature: expected HMAC-SHA256 with the app's secret of {message:?}"
        )));
    }
    Ok((app, params))
}

/// One event to trigger, as `events` and each of `batch_events` take it.
#[derive(Deserialize)]
struct Event {
    name: String,
    data: Value,
    #[serde(default)]
    channels: Option<Vec<String>>,
    #[serde(default)]
    channel: Option<String>,
    #[serde(default)]
    socket_id: Option<String>,
    #[serde(default)]
    info: Option<String>,
}

#[derive(Deserialize)]
struct Batch {
    batch: Vec<Event>,
}

/// The `info` attributes asked for (`user_count`, `subscription_count`,
/// `cache`).
fn wanted(info: Option<&str>) -> HashSet<&str> {
    info.map(|i| {
        i.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect()
    })
    .unwrap_or_default()
}

/// An event, checked: its channels (Pusher names) and the publication
/// data for them.
struct Checked {
    channels: Vec<String>,
    name: String,
    data: String,
    socket_id: Option<String>,
}

fn check_event(app: &App, event: Event) -> Result<Checked, ApiError> {
    if event.name.is_empty() || event.name.len() > protocol::MAX_NAME {
        return Err(bad(format!(
            "the event name must be 1-{} bytes",
            protocol::MAX_NAME
        )));
    }
    // The protocol's data is a string; other JSON is sent as its text.
    let data = match event.data {
        Value::String(s) => s,
        other => other.to_string(),
    };
    if data.len() > app.config.max_event_size {
        return Err(api_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "the event data is {} bytes; at most {} (max_event_size)",
                data.len(),
                app.config.max_event_size
            ),
        ));
    }
    let channels = match (event.channels, event.channel) {
        (Some(list), None) => list,
        (None, Some(one)) => vec![one],
        _ => return Err(bad("give exactly one of \"channels\" and \"channel\"")),
    };
    if channels.is_empty() || channels.len() > MAX_CHANNELS {
        return Err(bad(format!(
            "an event goes to 1-{MAX_CHANNELS} channels, not {}",
            channels.len()
        )));
    }
    if let Some(bad_name) = channels.iter().find(|c| ChannelKind::of(c).is_none()) {
        return Err(bad(format!(
            "invalid channel name {:?}: 1-200 of A-Z a-z 0-9 _ - = @ , . ;",
            bad_name.chars().take(64).collect::<String>()
        )));
    }
    if let Some(id) = &event.socket_id
        && !protocol::is_socket_id(id)
    {
        return Err(bad(format!("invalid socket_id {id:?}")));
    }
    Ok(Checked {
        channels,
        name: event.name,
        data,
        socket_id: event.socket_id,
    })
}

fn engine_name(app: &App, name: &str) -> Result<ChannelName, ApiError> {
    app.engine_name(name)
        .ok_or_else(|| bad(format!("channel name {name:?} is too long")))
}

/// Publishes a checked event on each of its channels.
async fn trigger(state: &AppState, app: &App, event: &Checked) -> Result<(), ApiError> {
    let data = serde_json::to_string(&event.data).unwrap_or_default();
    for name in &event.channels {
        let channel = engine_name(app, name)?;
        let message = protocol::event(&event.name, name, &data, None);
        state
            .channels()
            .publish(
                Publish {
                    channel,
                    kind: Kind::Text,
                    data: protocol::publication(event.socket_id.as_deref(), &message),
                    source: Source::Http,
                    idempotency_key: None,
                },
                false,
            )
            .await?;
    }
    Ok(())
}

/// A Pusher channel name's kind and its name in the engine.
fn lookup(app: &App, name: &str) -> Result<(ChannelKind, ChannelName), ApiError> {
    let kind = ChannelKind::of(name).ok_or_else(|| bad("invalid channel name"))?;
    Ok((kind, engine_name(app, name)?))
}

/// A channel's attributes for `info` (on this instance for
/// `subscription_count`; the engine's for `user_count`), reading only the
/// counts asked for.
async fn attributes(
    state: &AppState,
    app: &App,
    name: &str,
    info: &HashSet<&str>,
) -> Result<Map<String, Value>, ApiError> {
    let (kind, channel) = lookup(app, name)?;
    let users = if info.contains("user_count") && kind.privacy == Privacy::Presence {
        user_ids(state, &channel).await?.len()
    } else {
        0
    };
    let subscribers = if info.contains("subscription_count") {
        subscribers(state, &channel).await?
    } else {
        0
    };
    counts(&kind, info, subscribers, users)
}

/// The `info` attributes from counts already read.
fn counts(
    kind: &ChannelKind,
    info: &HashSet<&str>,
    subscribers: usize,
    users: usize,
) -> Result<Map<String, Value>, ApiError> {
    let mut out = Map::new();
    if info.contains("user_count") {
        if kind.privacy != Privacy::Presence {
            return Err(bad("user_count is only for presence channels"));
        }
        out.insert("user_count".into(), users.into());
    }
    if info.contains("subscription_count") {
        out.insert("subscription_count".into(), subscribers.into());
    }
    Ok(out)
}

async fn subscribers(state: &AppState, channel: &ChannelName) -> Result<usize, ApiError> {
    Ok(state
        .channels()
        .list(Some(channel))
        .await?
        .first()
        .map_or(0, |i| i.subscribers))
}

/// A presence channel's users, each once, in the order first seen.
async fn user_ids(state: &AppState, channel: &ChannelName) -> Result<Vec<String>, ApiError> {
    let members = state.channels().presence(channel).await?;
    let mut seen = HashSet::new();
    Ok(members
        .iter()
        .filter_map(|m| protocol::MemberData::from_stored(&m.user))
        .filter(|m| seen.insert(m.user_id.clone()))
        .map(|m| m.user_id)
        .collect())
}

/// The body limit: a batch of the largest events, and its JSON around them.
fn body_limit(state: &AppState) -> usize {
    let largest = state
        .pusher_apps()
        .max_event_size()
        .max(state.config().session.max_message_size);
    largest + 64 * 1024
}

async fn read(
    req: &HttpRequest,
    payload: web::Payload,
    state: &AppState,
) -> Result<Bytes, ApiError> {
    body(payload, body_limit(state)).await.map_err(|e| {
        log::info!(
            "pusher API: refused a body from {}: {e}",
            describe_peer(req.peer_addr())
        );
        ApiError::from(e)
    })
}

/// `POST /apps/ID/events`.
async fn events(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> HttpResponse {
    let run = async {
        let body = read(&req, payload, &state).await?;
        let (app, _) = authenticate(&req, &state, &id, &body)?;
        let event: Event = serde_json::from_slice(&body).map_err(|e| {
            bad(format!(
                "expected {{\"name\":..,\"data\":..,\"channels\":[..]}}: {e}"
            ))
        })?;
        let info = event.info.clone();
        let event = check_event(app, event)?;
        trigger(&state, app, &event).await?;
        let info = wanted(info.as_deref());
        if info.is_empty() {
            return Ok(json!({}));
        }
        let mut channels = Map::new();
        for name in &event.channels {
            let attributes = attributes(&state, app, name, &info).await?;
            channels.insert(name.clone(), Value::Object(attributes));
        }
        Ok(json!({"channels": channels}))
    };
    answer(run.await)
}

/// `POST /apps/ID/batch_events`: up to ten events, all checked before any
/// is triggered.
async fn batch_events(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> HttpResponse {
    let run = async {
        let body = read(&req, payload, &state).await?;
        let (app, _) = authenticate(&req, &state, &id, &body)?;
        let batch: Batch = serde_json::from_slice(&body)
            .map_err(|e| bad(format!("expected {{\"batch\":[..]}}: {e}")))?;
        if batch.batch.is_empty() || batch.batch.len() > MAX_BATCH {
            return Err(bad(format!(
                "a batch holds 1-{MAX_BATCH} events, not {}",
                batch.batch.len()
            )));
        }
        let mut checked = Vec::with_capacity(batch.batch.len());
        for event in batch.batch {
            let info = event.info.clone();
            let event = check_event(app, event)?;
            if event.channels.len() != 1 {
                return Err(bad("each event of a batch names one \"channel\""));
            }
            checked.push((event, info));
        }
        for (event, _) in &checked {
            trigger(&state, app, event).await?;
        }
        if checked
            .iter()
            .all(|(_, info)| wanted(info.as_deref()).is_empty())
        {
            return Ok(json!({}));
        }
        let mut out = Vec::with_capacity(checked.len());
        for (event, info) in &checked {
            let attributes =
                attributes(&state, app, &event.channels[0], &wanted(info.as_deref())).await?;
            out.push(Value::Object(attributes));
        }
        Ok(json!({"batch": out}))
    };
    answer(run.await)
}

/// `GET /apps/ID/channels?filter_by_prefix=..&info=user_count`: the
/// occupied channels.
async fn channels(
    req: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> HttpResponse {
    let run = async {
        let (app, params) = authenticate(&req, &state, &id, &[])?;
        let param = |name: &str| {
            params
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        };
        let prefix = param("filter_by_prefix").unwrap_or("");
        let info = wanted(param("info"));
        if info.contains("user_count") && !prefix.starts_with("presence-") {
            return Err(bad(
                "info=user_count needs filter_by_prefix=presence- (it is only for presence \
                 channels)",
            ));
        }
        let mut channels = Map::new();
        for listed in state.channels().list(None).await? {
            let Some(name) = app.pusher_name(&listed.channel) else {
                continue;
            };
            if !name.starts_with(prefix) {
                continue;
            }
            let presence = ChannelKind::of(&name).is_some_and(|k| k.privacy == Privacy::Presence);
            let users = if presence {
                user_ids(&state, &listed.channel).await?.len()
            } else {
                0
            };
            if listed.subscribers == 0 && users == 0 {
                continue;
            }
            let mut attributes = Map::new();
            if info.contains("user_count") {
                attributes.insert("user_count".into(), users.into());
            }
            if info.contains("subscription_count") {
                attributes.insert("subscription_count".into(), listed.subscribers.into());
            }
            channels.insert(name, Value::Object(attributes));
        }
        Ok(json!({"channels": channels}))
    };
    answer(run.await)
}

/// `GET /apps/ID/channels/NAME?info=user_count,subscription_count,cache`.
async fn channel(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> HttpResponse {
    let (id, name) = path.into_inner();
    let run = async {
        let (app, params) = authenticate(&req, &state, &id, &[])?;
        let (kind, channel) = lookup(app, &name)?;
        let info = params
            .iter()
            .find(|(k, _)| k == "info")
            .map(|(_, v)| v.as_str());
        let info = wanted(info);
        let subscribers = subscribers(&state, &channel).await?;
        let users = if kind.privacy == Privacy::Presence {
            user_ids(&state, &channel).await?.len()
        } else {
            0
        };
        let mut out = Map::new();
        out.insert("occupied".into(), (subscribers > 0 || users > 0).into());
        // The counts just read serve `info` too.
        out.extend(counts(&kind, &info, subscribers, users)?);
        if info.contains("cache") && kind.cache {
            let history = state
                .channels()
                .history(&channel, crate::engine::HistoryQuery::Last(1))
                .await?;
            if let Some(last) = history.publications.last() {
                let message: Value =
                    serde_json::from_slice(&last.payload(crate::engine::Format::Pusher))
                        .unwrap_or(Value::Null);
                let ttl = crate::pusher::apps::CACHE_TTL
                    .as_millis()
                    .saturating_sub(crate::engine::now_ms().saturating_sub(last.time_ms) as u128)
                    / 1000;
                out.insert(
                    "cache".into(),
                    json!({"event": message["event"], "data": message["data"], "ttl": ttl as u64}),
                );
            }
        }
        Ok(Value::Object(out))
    };
    answer(run.await)
}

/// `GET /apps/ID/channels/NAME/users`: a presence channel's users.
async fn users(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> HttpResponse {
    let (id, name) = path.into_inner();
    let run = async {
        let (app, _) = authenticate(&req, &state, &id, &[])?;
        let (kind, channel) = lookup(app, &name)?;
        if kind.privacy != Privacy::Presence {
            return Err(bad("users are listed only for presence channels"));
        }
        let users: Vec<Value> = user_ids(&state, &channel)
            .await?
            .into_iter()
            .map(|id| json!({"id": id}))
            .collect();
        Ok(json!({"users": users}))
    };
    answer(run.await)
}

/// `POST /apps/ID/users/USER/terminate_connections`: closes every
/// connection signed in as USER, on every instance (through the user's
/// control channel in the engine).
async fn terminate(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> HttpResponse {
    let (id, user) = path.into_inner();
    let run = async {
        let body = read(&req, payload, &state).await?;
        let (app, _) = authenticate(&req, &state, &id, &body)?;
        let control = app
            .control_name(&user)
            .ok_or_else(|| bad(format!("invalid user id {user:?}")))?;
        state
            .channels()
            .publish(
                Publish {
                    channel: control,
                    kind: Kind::Text,
                    data: protocol::publication(None, b"{}"),
                    source: Source::Http,
                    idempotency_key: None,
                },
                false,
            )
            .await?;
        Ok(json!({}))
    };
    answer(run.await)
}
