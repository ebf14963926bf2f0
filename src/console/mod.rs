//! The browser console and live dashboard at `/console`.
//!
//! This module owns:
//! - the page's files, embedded in the binary from `assets/` (plain HTML,
//!   CSS and JavaScript: no build step, nothing from a CDN), served with a
//!   strict `Content-Security-Policy`;
//! - the routes: `GET /console` and its files, `GET /console/info` (what
//!   the page needs to know, and the key check's answer), and the stats
//!   stream `GET /console/stats` (a WebSocket);
//! - the key check ([`Console`]): when the console asks for one of
//!   `channels.api_keys`;
//! - the rule that sends a browser opening `/` here ([`wants_page`]).
//!
//! What lives elsewhere: the page's channel features are an ordinary client
//! of the channel WebSocket protocol and the HTTP API (`server::api`), with
//! their own rules. The stats stream is a session in feed mode
//! (`server::session`), so it has the heartbeat, the bounded send queue and
//! the 1001 at shutdown of every session; it reads the counters of
//! `server::metrics` and the channel node once a second on its own timer,
//! and adds nothing to the per-message path.

mod access;
mod stats;

use actix_web::http::header::{self, HeaderName, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::json;

pub use access::{Console, bind_needs_key, needs_key};

use crate::server::{AppState, error_response};

/// Where the console is served.
pub const PATH: &str = "/console";

/// What the page may do: its own scripts, styles and images, and
/// connections back to this server or to any WebSocket the user names in
/// the URL field. No inline script or style, no frames, no forms posted
/// elsewhere.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self'; connect-src 'self' ws: wss:; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

/// The embedded files: name under `/console/`, content type, bytes.
const ASSETS: &[(&str, &str, &[u8])] = &[
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_bytes!("assets/app.js"),
    ),
    (
        "style.css",
        "text/css; charset=utf-8",
        include_bytes!("assets/style.css"),
    ),
    (
        "favicon.svg",
        "image/svg+xml",
        include_bytes!("assets/favicon.svg"),
    ),
];

const INDEX: &[u8] = include_bytes!("assets/index.html");

/// Mounts the console's routes (when `console.enabled`). With the
/// WebSocket endpoint elsewhere than `/` (`server_path`), `/` still sends
/// browsers here.
pub(crate) fn routes(cfg: &mut web::ServiceConfig, server_path: &str) {
    if server_path != "/" {
        cfg.route("/", web::get().to(front));
    }
    cfg.route(PATH, web::get().to(index))
        .route(&format!("{PATH}/info"), web::get().to(info))
        .route(&format!("{PATH}/stats"), web::get().to(stats::stream))
        .route(&format!("{PATH}/{{file}}"), web::get().to(asset));
}

/// The headers every console response carries.
const SECURITY_HEADERS: [(HeaderName, &str); 5] = [
    (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
    (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
    (header::REFERRER_POLICY, "no-referrer"),
    (header::X_FRAME_OPTIONS, "DENY"),
    // The files change with the binary; a browser revalidates.
    (header::CACHE_CONTROL, "no-cache"),
];

fn secured(mut res: HttpResponse) -> HttpResponse {
    let headers = res.headers_mut();
    for (name, value) in &SECURITY_HEADERS {
        headers.insert(name.clone(), HeaderValue::from_static(value));
    }
    res
}

/// The page. Anyone may load it and its files: they hold no data. What
/// shows the server's state (`info`, the stats stream) checks the key.
async fn index() -> HttpResponse {
    secured(
        HttpResponse::Ok()
            .content_type("text/html; charset=utf-8")
            .body(INDEX),
    )
}

async fn asset(file: web::Path<String>) -> HttpResponse {
    match ASSETS.iter().find(|(name, _, _)| *name == file.as_str()) {
        Some((_, content_type, bytes)) => {
            secured(HttpResponse::Ok().content_type(*content_type).body(*bytes))
        }
        None => secured(
            HttpResponse::NotFound()
                .content_type("text/plain; charset=utf-8")
                .body("no such console file\n"),
        ),
    }
}

/// `GET /console/info`: 401 (or 403, when locked) unless the key check
/// passes; else what the page needs: the endpoints, whether the HTTP API
/// wants a key, the namespaces with presence.
async fn info(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let console = state.console();
    if let Err(e) = console.check(&req) {
        return secured(error_response(&e));
    }
    let config = state.config();
    let namespaces: Vec<_> = config
        .channels
        .namespace
        .iter()
        .map(|ns| {
            json!({
                "name": ns.name,
                "presence": ns.presence,
            })
        })
        .collect();
    secured(HttpResponse::Ok().json(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "key_required": console.key_required(),
        "echo_path": config.server.path,
        "channels_path": config.channels.path,
        "api_key_required": !config.channels.api_keys.is_empty(),
        "namespaces": namespaces,
        "stats_interval_ms": stats::INTERVAL.as_millis() as u64,
        "heartbeat_ms": config.session.heartbeat_interval.as_millis() as u64,
    })))
}

/// Whether a request to the WebSocket endpoint is a browser opening a page
/// there (a GET with no `Upgrade` that accepts HTML), to be sent to the
/// console; everything else keeps the endpoint's answers (426 for a plain
/// HTTP client).
pub(crate) fn wants_page(req: &HttpRequest) -> bool {
    let headers = req.headers();
    is_page_request(
        req.method() == actix_web::http::Method::GET,
        headers.contains_key(header::UPGRADE),
        headers
            .get_all(header::ACCEPT)
            .map(|v| v.as_bytes())
            .collect::<Vec<_>>()
            .as_slice(),
    )
}

/// [`wants_page`]'s rule, on the parts of the request it reads.
fn is_page_request(get: bool, upgrade: bool, accept: &[&[u8]]) -> bool {
    get && !upgrade
        && accept.iter().any(|value| {
            value.split(|&b| b == b',').any(|item| {
                let media = item.split(|&b| b == b';').next().unwrap_or_default();
                media.trim_ascii().eq_ignore_ascii_case(b"text/html")
            })
        })
}

/// `GET /` when it is not the WebSocket endpoint: browsers go to the
/// console, others are told where the endpoint is.
async fn front(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    if wants_page(&req) {
        return redirect();
    }
    HttpResponse::NotFound()
        .content_type("text/plain; charset=utf-8")
        .body(format!(
            "the WebSocket endpoint is at {}\n",
            state.config().server.path
        ))
}

/// 303 to the console.
pub(crate) fn redirect() -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, PATH))
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .body("the browser console is at /console\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn browsers_asking_for_html_are_told_apart_from_websocket_and_other_clients() {
        let chrome: &[u8] = b"text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";
        assert!(is_page_request(true, false, &[chrome]));
        assert!(is_page_request(true, false, &[b"TEXT/HTML; q=1"]));
        assert!(is_page_request(
            true,
            false,
            &[b"application/json", b"text/html"]
        ));
        // A WebSocket handshake, even a browser's.
        assert!(!is_page_request(true, true, &[chrome]));
        // curl and other plain clients.
        assert!(!is_page_request(true, false, &[]));
        assert!(!is_page_request(true, false, &[b"*/*"]));
        assert!(!is_page_request(true, false, &[b"text/htmlx"]));
        assert!(!is_page_request(false, false, &[chrome]));
    }

    #[test]
    fn every_embedded_file_is_one_the_page_names() {
        let index = std::str::from_utf8(INDEX).unwrap();
        for (name, _, bytes) in ASSETS {
            assert!(!bytes.is_empty(), "{name} is empty");
            assert!(
                index.contains(&format!("{PATH}/{name}")),
                "index.html does not use {name}"
            );
        }
        // The policy forbids inline code; the page must not need any.
        assert!(!index.contains("<script>") && !index.contains("style="));
    }
}
