//! The channel endpoints: the WebSocket upgrade at `channels.path` and the
//! HTTP API beside it (publish, list, state, history, presence).
//!
//! The API is for backends: every method needs one of `channels.api_keys`
//! as a bearer token, or, with no keys configured, a loopback client.

use std::net::IpAddr;

use actix_web::http::{StatusCode, header};
use actix_web::{HttpRequest, HttpResponse, web};
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::{Value, json};

use super::http::{AppState, upgrade_session};
use super::session::{Mode, PubSubSetup};
use crate::auth::Claims;
use crate::channels::{
    self, Action, ChannelError, ChannelInfo, ChannelName, ErrorCode, Publish, Source, Start,
};
use crate::engine::{Format, HistoryQuery, Kind, Position};

/// The subprotocol that selects JSON mode, for clients that cannot set a
/// query string.
pub const JSON_PROTOCOL: &str = "wsd.json";

/// How long an `Idempotency-Key` may be.
const MAX_KEY: usize = 256;

/// An API answer: the JSON on success, the error's JSON and status
/// otherwise.
fn json_answer(result: Result<Value, ChannelError>) -> HttpResponse {
    match result {
        Ok(answer) => HttpResponse::Ok().json(answer),
        Err(e) => error_response(&e),
    }
}

/// An error as the API answers it: the code's status, and
/// `{"error":{"code":..,"message":..}}`.
pub(crate) fn error_response(e: &ChannelError) -> HttpResponse {
    let status = StatusCode::from_u16(e.code.http_status()).unwrap_or(StatusCode::BAD_REQUEST);
    HttpResponse::build(status).json(json!({"error": e.to_json()}))
}

fn bad(message: impl Into<String>) -> ChannelError {
    ChannelError::new(ErrorCode::BadRequest, message)
}

/// Whether a caller may use the API: with keys configured, it must present
/// one (`Authorization: Bearer KEY`); without, it must be on loopback.
pub fn api_access(
    keys: &[String],
    peer: Option<IpAddr>,
    authorization: Option<&[u8]>,
) -> Result<(), ChannelError> {
    if keys.is_empty() {
        return match peer {
            Some(ip) if is_loopback(ip) => Ok(()),
            _ => Err(ChannelError::new(
                ErrorCode::Forbidden,
                "the HTTP API is open to loopback clients only; configure channels.api_keys \
                 to use it from elsewhere",
            )),
        };
    }
    let presented = authorization.and_then(|v| v.strip_prefix(b"Bearer "));
    let Some(presented) = presented else {
        return Err(ChannelError::new(
            ErrorCode::Unauthorized,
            "an API key is needed: Authorization: Bearer KEY",
        ));
    };
    check_key(keys, presented)
}

/// Whether `presented` is one of `keys`: the API's check, and the console's.
pub(crate) fn check_key(keys: &[String], presented: &[u8]) -> Result<(), ChannelError> {
    if keys
        .iter()
        .any(|k| constant_time_eq(k.as_bytes(), presented))
    {
        Ok(())
    } else {
        Err(ChannelError::new(
            ErrorCode::Unauthorized,
            "unknown API key",
        ))
    }
}

fn is_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        // ::1, or an IPv4 loopback address mapped into IPv6.
        IpAddr::V6(v6) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    }
}

/// Compares without stopping at the first difference, so the time taken
/// does not tell how much of a guessed key was right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn authorize(req: &HttpRequest, state: &AppState) -> Result<(), ChannelError> {
    api_access(
        &state.config().channels.api_keys,
        req.peer_addr().map(|a| a.ip()),
        req.headers()
            .get(header::AUTHORIZATION)
            .map(|v| v.as_bytes()),
    )
}

fn channel_name(name: &str) -> Result<ChannelName, ChannelError> {
    ChannelName::parse(name).map_err(|e| bad(e.to_string()))
}

/// The query of a channel WebSocket URL.
#[derive(Debug, Default, Deserialize)]
struct WsQuery {
    format: Option<String>,
    since: Option<u64>,
    epoch: Option<String>,
    last: Option<usize>,
    token: Option<String>,
}

fn is_upgrade(req: &HttpRequest) -> bool {
    req.headers()
        .get_all(header::UPGRADE)
        .any(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket"))
}

/// `GET {path}`: JSON mode with no subscription when an upgrade, else the
/// channel list.
pub(crate) async fn root(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> HttpResponse {
    if is_upgrade(&req) {
        return subscribe(&req, payload, &state, None).await;
    }
    list(&req, &state)
        .await
        .unwrap_or_else(|e| error_response(&e))
}

/// `GET {path}/{names}`: subscribe when an upgrade, else the channel's
/// state.
pub(crate) async fn named(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
    names: web::Path<String>,
) -> HttpResponse {
    if is_upgrade(&req) {
        return subscribe(&req, payload, &state, Some(&names)).await;
    }
    describe(&req, &state, &names)
        .await
        .unwrap_or_else(|e| error_response(&e))
}

/// Checks everything a channel connection needs before it is upgraded, so
/// that refusals are HTTP answers (401, 403, 404, 400) a client can read.
fn plan(
    req: &HttpRequest,
    state: &AppState,
    names: Option<&str>,
) -> Result<(PubSubSetup, Option<&'static str>), ChannelError> {
    let query = web::Query::<WsQuery>::from_query(req.query_string())
        .map_err(|e| bad(format!("bad query: {e}")))?
        .into_inner();
    let offered_json = req
        .headers()
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|p| p.trim() == JSON_PROTOCOL);
    let format = match query.format.as_deref() {
        Some("json") => Format::Json,
        Some("plain") | None if !offered_json => Format::Plain,
        None | Some("plain") => Format::Json,
        Some(other) => return Err(bad(format!("format {other:?}: expected json or plain"))),
    };
    let claims = claims(req, state, query.token.as_deref())?;
    let channels = match names {
        Some(names) => ChannelName::parse_list(names).map_err(|e| bad(e.to_string()))?,
        None if format == Format::Json => Vec::new(),
        None => {
            return Err(bad(
                "name a channel (/channels/NAME), or use ?format=json to subscribe by command",
            ));
        }
    };
    let start = match (query.since, query.epoch, query.last) {
        (None, None, None) => Start::Live,
        (Some(offset), Some(epoch), None) => Start::Since(Position { offset, epoch }),
        (None, None, Some(n)) => Start::Last(n),
        (Some(_), None, _) | (None, Some(_), _) => {
            return Err(bad("since and epoch go together"));
        }
        (Some(_), Some(_), Some(_)) => return Err(bad("use since/epoch or last, not both")),
    };
    if start != Start::Live && channels.len() != 1 {
        return Err(bad("since, epoch and last need exactly one channel"));
    }
    for channel in &channels {
        state
            .channels()
            .rules()
            .check(channel, Action::Subscribe, claims.as_ref())?;
    }
    Ok((
        PubSubSetup {
            channels: state.channels().clone(),
            format,
            subscribe: channels.into_iter().map(|c| (c, start.clone())).collect(),
            claims,
        },
        offered_json.then_some(JSON_PROTOCOL),
    ))
}

/// The client's token (`?token=` or `Authorization: Bearer`), verified;
/// `None` without one.
fn claims(
    req: &HttpRequest,
    state: &AppState,
    query_token: Option<&str>,
) -> Result<Option<Claims>, ChannelError> {
    let header_token = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let Some(token) = query_token.or(header_token) else {
        return Ok(None);
    };
    let Some(verifier) = state.verifier() else {
        return Err(ChannelError::new(
            ErrorCode::Unauthorized,
            "this server does not accept tokens ([auth] is not configured)",
        ));
    };
    verifier.verify(token.trim()).map(Some).map_err(|e| {
        log::info!(
            "refused a token from {}: {e}",
            super::session::describe_peer(req.peer_addr())
        );
        ChannelError::new(ErrorCode::Unauthorized, format!("{}: {e}", e.code()))
    })
}

async fn subscribe(
    req: &HttpRequest,
    payload: web::Payload,
    state: &AppState,
    names: Option<&str>,
) -> HttpResponse {
    let planned = async {
        let (mut setup, protocol) = plan(req, state, names)?;
        // The connection is live from its upgrade on: what is published
        // between the 101 and the subscription taking effect (with a
        // networked engine, a round trip or two) is replayed from history.
        for (channel, start) in &mut setup.subscribe {
            if *start == Start::Live {
                *start = Start::After(state.channels().position(channel).await?);
            }
        }
        Ok::<_, ChannelError>((setup, protocol))
    };
    match planned.await {
        Ok((setup, protocol)) => {
            upgrade_session(req, payload, state, Mode::PubSub(setup), protocol)
        }
        Err(e) => {
            log::info!(
                "refused a channel connection from {}: {e}",
                super::session::describe_peer(req.peer_addr())
            );
            error_response(&e)
        }
    }
}

fn info_json(info: &ChannelInfo) -> Value {
    json!({
        "channel": info.channel.as_str(),
        "subscribers": info.subscribers,
        "offset": info.top.as_ref().map(|t| t.offset),
        "epoch": info.top.as_ref().map(|t| t.epoch.as_str()),
        "history": info.kept,
    })
}

async fn list(req: &HttpRequest, state: &AppState) -> Result<HttpResponse, ChannelError> {
    authorize(req, state)?;
    let infos = state.channels().list(None).await?;
    let list: Vec<Value> = infos.iter().map(info_json).collect();
    Ok(HttpResponse::Ok().json(json!({"channels": list})))
}

async fn describe(
    req: &HttpRequest,
    state: &AppState,
    name: &str,
) -> Result<HttpResponse, ChannelError> {
    authorize(req, state)?;
    let channel = channel_name(name)?;
    state.channels().rules().namespace(&channel)?;
    let info = state
        .channels()
        .list(Some(&channel))
        .await?
        .into_iter()
        .next()
        .unwrap_or(ChannelInfo {
            channel,
            subscribers: 0,
            top: None,
            kept: 0,
        });
    Ok(HttpResponse::Ok().json(info_json(&info)))
}

/// Reads a request body, refusing one over `limit` bytes as soon as it is
/// known to be (without reading the rest).
pub(super) async fn body(mut payload: web::Payload, limit: usize) -> Result<Bytes, ChannelError> {
    let mut body = BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| bad(format!("cannot read the body: {e}")))?;
        if body.len() + chunk.len() > limit {
            return Err(ChannelError::new(
                ErrorCode::TooBig,
                format!("the body is over session.max_message_size ({limit} bytes)"),
            ));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

fn idempotency_key(req: &HttpRequest) -> Result<Option<String>, ChannelError> {
    let Some(v) = req.headers().get("idempotency-key") else {
        return Ok(None);
    };
    let key = v
        .to_str()
        .ok()
        .filter(|k| !k.is_empty() && k.len() <= MAX_KEY)
        .ok_or_else(|| {
            bad(format!(
                "Idempotency-Key must be 1-{MAX_KEY} visible ASCII characters"
            ))
        })?;
    Ok(Some(key.to_owned()))
}

/// What a body is, by its `Content-Type`: text for `text/*` and for
/// `application/x-www-form-urlencoded` (what `curl -d` sends unless told
/// otherwise, so `curl -d hello` publishes the text "hello"), JSON for JSON
/// (checked), binary otherwise.
fn kind_of(req: &HttpRequest, body: &[u8]) -> Result<Kind, ChannelError> {
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    let essence = content_type.split(';').next().unwrap_or("").trim();
    if essence == "application/json" || essence.ends_with("+json") {
        serde_json::from_slice::<serde::de::IgnoredAny>(body)
            .map_err(|e| bad(format!("the body is not JSON: {e}")))?;
        Ok(Kind::Json)
    } else if essence.starts_with("text/") || essence == "application/x-www-form-urlencoded" {
        std::str::from_utf8(body).map_err(|e| bad(format!("the body is not UTF-8: {e}")))?;
        Ok(Kind::Text)
    } else {
        Ok(Kind::Binary)
    }
}

/// `POST {path}/{name}`: publishes the body.
pub(crate) async fn publish_one(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
    name: web::Path<String>,
) -> HttpResponse {
    let run = async {
        authorize(&req, &state)?;
        let channel = channel_name(&name)?;
        state.channels().rules().namespace(&channel)?;
        let key = idempotency_key(&req)?;
        let data = body(payload, state.config().session.max_message_size).await?;
        let kind = kind_of(&req, &data)?;
        publish(&state, channel, kind, data, key).await
    };
    json_answer(run.await)
}

async fn publish(
    state: &AppState,
    channel: ChannelName,
    kind: Kind,
    data: Bytes,
    idempotency_key: Option<String>,
) -> Result<Value, ChannelError> {
    let name = channel.as_str().to_owned();
    let (published, delivered) = state
        .channels()
        .publish(
            Publish {
                channel,
                kind,
                data,
                source: Source::Http,
                idempotency_key,
            },
            true,
        )
        .await?;
    let mut answer = json!({
        "channel": name,
        "offset": published.offset,
        "epoch": &*published.epoch,
        "delivered": delivered.unwrap_or(0),
    });
    if published.duplicate {
        answer["duplicate"] = Value::Bool(true);
    }
    Ok(answer)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Many {
    channels: Vec<String>,
    data: Option<Box<serde_json::value::RawValue>>,
    data_b64: Option<String>,
}

/// `POST {path}`: `{"channels":[..],"data":..}` publishes one message to
/// many channels (a string `data` as text, other JSON as JSON, `data_b64`
/// as binary).
pub(crate) async fn publish_many(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> HttpResponse {
    let run = async {
        authorize(&req, &state)?;
        let key = idempotency_key(&req)?;
        // The channel list and JSON framing come on top of the message.
        let limit = state.config().session.max_message_size + 64 * 1024;
        let raw = body(payload, limit).await?;
        let many: Many = serde_json::from_slice(&raw)
            .map_err(|e| bad(format!("expected {{\"channels\":[..],\"data\":..}}: {e}")))?;
        let (kind, data) = channels::payload(many.data.as_deref(), many.data_b64.as_deref())
            .ok_or_else(|| bad("give exactly one of \"data\" and \"data_b64\""))??;
        if data.len() > state.config().session.max_message_size {
            return Err(ChannelError::new(
                ErrorCode::TooBig,
                "the data is over session.max_message_size",
            ));
        }
        if many.channels.is_empty() {
            return Err(bad("\"channels\" is empty"));
        }
        let mut channels = Vec::with_capacity(many.channels.len());
        for name in &many.channels {
            let channel = channel_name(name)?;
            state.channels().rules().namespace(&channel)?;
            channels.push(channel);
        }
        let mut results = Vec::with_capacity(channels.len());
        for channel in channels {
            // One key per channel, so a retry of the whole request lands
            // once on each.
            let key = key.as_ref().map(|k| format!("{k}\u{1f}{channel}"));
            results.push(publish(&state, channel, kind, data.clone(), key).await?);
        }
        Ok(json!({"results": results}))
    };
    json_answer(run.await)
}

#[derive(Deserialize)]
struct HistoryParams {
    since: Option<u64>,
    epoch: Option<String>,
    limit: Option<usize>,
}

/// `GET {path}/{name}/history?since=&epoch=&limit=`.
pub(crate) async fn history(
    req: HttpRequest,
    state: web::Data<AppState>,
    name: web::Path<String>,
) -> HttpResponse {
    let run = async {
        authorize(&req, &state)?;
        let channel = channel_name(&name)?;
        let ns = state.channels().rules().namespace(&channel)?.clone();
        let params = web::Query::<HistoryParams>::from_query(req.query_string())
            .map_err(|e| bad(format!("bad query: {e}")))?
            .into_inner();
        let since = match (params.since, params.epoch) {
            (Some(offset), Some(epoch)) => Some(Position { offset, epoch }),
            (None, None) => None,
            _ => return Err(bad("since and epoch go together")),
        };
        let recovering = since.is_some();
        let query = match since {
            Some(since) => HistoryQuery::Since {
                since,
                limit: params.limit.unwrap_or(0),
            },
            None => HistoryQuery::Last(params.limit.unwrap_or(ns.history_size)),
        };
        let h = state.channels().history(&channel, query).await?;
        let mut answer = json!({
            "channel": channel.as_str(),
            "epoch": h.top.epoch,
            "offset": h.top.offset,
            "publications": h.publications.iter().map(|p| p.to_value()).collect::<Vec<_>>(),
        });
        if recovering {
            answer["recovered"] = Value::Bool(h.recovered);
        }
        Ok(answer)
    };
    json_answer(run.await)
}

/// `GET {path}/{name}/presence`.
pub(crate) async fn presence(
    req: HttpRequest,
    state: web::Data<AppState>,
    name: web::Path<String>,
) -> HttpResponse {
    let run = async {
        authorize(&req, &state)?;
        let channel = channel_name(&name)?;
        let ns = state.channels().rules().namespace(&channel)?;
        if !ns.presence {
            return Err(bad(format!(
                "namespace {:?} does not track presence",
                ns.name
            )));
        }
        let members = state.channels().presence(&channel).await?;
        Ok(json!({"channel": channel.as_str(), "members": members}))
    };
    json_answer(run.await)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_api_is_for_loopback_without_keys_and_for_key_holders_with() {
        let local: IpAddr = "127.0.0.1".parse().unwrap();
        let local6: IpAddr = "::1".parse().unwrap();
        let remote: IpAddr = "10.1.2.3".parse().unwrap();
        assert!(api_access(&[], Some(local), None).is_ok());
        assert!(api_access(&[], Some(local6), None).is_ok());
        let e = api_access(&[], Some(remote), None).unwrap_err();
        assert_eq!(e.code, ErrorCode::Forbidden);
        assert!(api_access(&[], None, None).is_err());
        let keys = ["k".repeat(20)];
        let good = format!("Bearer {}", keys[0]);
        assert!(api_access(&keys, Some(remote), Some(good.as_bytes())).is_ok());
        // With keys, loopback needs one too.
        let e = api_access(&keys, Some(local), None).unwrap_err();
        assert_eq!(e.code, ErrorCode::Unauthorized);
        let e = api_access(&keys, Some(remote), Some(b"Bearer nope")).unwrap_err();
        assert_eq!(e.code, ErrorCode::Unauthorized);
    }
}
