//! Just enough of the Pusher Channels protocol (version 7) for `--pusher`:
//! a subscriber joins one public channel and takes each event on it as a
//! delivery; the publisher triggers events through the signed HTTP API. So a
//! Pusher-compatible server (wsd's Pusher mode, sockudo, soketi) is measured
//! with the same subscribers, checks and report as everything else.
//!
//! Subscriber side: the server greets with `pusher:connection_established`,
//! we send `pusher:subscribe`, it answers
//! `pusher_internal:subscription_succeeded`; its `pusher:ping` gets our
//! `pusher:pong`. An event is `{"event":E,"channel":C,"data":"..."}` with
//! `data` a JSON string holding the publication.
//!
//! Publisher side: `POST /apps/ID/events?auth_key=..&auth_timestamp=..&
//! auth_version=1.0&body_md5=..&auth_signature=..`, the signature being
//! HMAC-SHA256 with the app's secret over `POST\nPATH\nQUERY` (the query
//! sorted by key, without the signature), as the Pusher HTTP API defines it.

use std::borrow::Cow;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::pusher::sign;

/// What the bench's publications are called: the event name, and (unless
/// `--pusher-channel` says otherwise) the channel.
pub(crate) const EVENT: &str = "bench";

/// The app a `--pusher` run talks to, and the one channel it uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct App {
    pub(crate) key: String,
    pub(crate) secret: String,
    pub(crate) id: String,
    pub(crate) channel: String,
}

/// Why a `--pusher` value is unusable (a usage error).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum AppError {
    #[error("--pusher wants KEY:SECRET:APP_ID, each part non-empty")]
    Form,
    #[error("--pusher-channel {0:?}: a public channel name is 1-200 of A-Z a-z 0-9 _ - = @ , . ;")]
    Channel(String),
    #[error(
        "--pusher-channel {0:?}: private-, presence- and encrypted channels need auth the bench does not do"
    )]
    NotPublic(String),
}

impl App {
    /// Parses `KEY:SECRET:APP_ID` (the order of `PUSHER_APP_*`-style
    /// credentials people copy from a dashboard) and checks `channel`.
    pub(crate) fn parse(value: &str, channel: &str) -> Result<App, AppError> {
        let parts: Vec<&str> = value.split(':').collect();
        let [key, secret, id] = parts[..] else {
            return Err(AppError::Form);
        };
        if key.is_empty() || secret.is_empty() || id.is_empty() || id.contains(['/', '?', '#']) {
            return Err(AppError::Form);
        }
        let allowed = |c: char| c.is_ascii_alphanumeric() || "_-=@,.;".contains(c);
        if channel.is_empty() || channel.len() > 200 || !channel.chars().all(allowed) {
            return Err(AppError::Channel(channel.to_owned()));
        }
        if channel.starts_with("private-") || channel.starts_with("presence-") {
            return Err(AppError::NotPublic(channel.to_owned()));
        }
        Ok(App {
            key: key.to_owned(),
            secret: secret.to_owned(),
            id: id.to_owned(),
            channel: channel.to_owned(),
        })
    }

    /// The path of the events endpoint, under the HTTP API's `prefix`
    /// (empty, or a path without the trailing slash).
    pub(crate) fn events_path(&self, prefix: &str) -> String {
        format!("{}/apps/{}/events", prefix.trim_end_matches('/'), self.id)
    }

    /// The `pusher:subscribe` a subscriber sends once connected.
    pub(crate) fn subscribe_message(&self) -> Vec<u8> {
        serde_json::json!({
            "event": "pusher:subscribe",
            "data": { "channel": self.channel },
        })
        .to_string()
        .into_bytes()
    }

    /// Writes the JSON body of a trigger of `data` into `body` (cleared
    /// first): our event on our channel, `data` as a JSON string.
    pub(crate) fn event_body(&self, body: &mut Vec<u8>, data: &[u8]) {
        body.clear();
        body.extend_from_slice(br#"{"name":""#);
        body.extend_from_slice(EVENT.as_bytes());
        body.extend_from_slice(br#"","channel":"#);
        // A String and a checked channel name: serializing cannot fail.
        let _ = serde_json::to_writer(&mut *body, &self.channel);
        body.extend_from_slice(br#","data":"#);
        let _ = serde_json::to_writer(&mut *body, &String::from_utf8_lossy(data));
        body.push(b'}');
    }

    /// The signed query string of a `POST` of `body` to `path`, at
    /// `timestamp` (Unix seconds).
    pub(crate) fn signed_query(&self, path: &str, body: &[u8], timestamp: u64) -> String {
        let query = format!(
            "auth_key={}&auth_timestamp={timestamp}&auth_version=1.0&body_md5={}",
            self.key,
            sign::body_md5(body)
        );
        let signature = sign::sign(&self.secret, format!("POST\n{path}\n{query}").as_bytes());
        format!("{query}&auth_signature={signature}")
    }
}

/// The current Unix time in seconds, for `auth_timestamp`.
pub(crate) fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// One message from the server, as a subscriber sees it.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Inbound<'a> {
    /// `pusher:connection_established`: time to subscribe.
    Established,
    /// `pusher_internal:subscription_succeeded` for our channel.
    Subscribed,
    /// `pusher:ping`: answer with [`PONG`].
    Ping,
    /// Our event on our channel: its data, the publication.
    Delivery(Cow<'a, [u8]>),
    /// `pusher:error`, or `pusher:subscription_error`: what it said.
    Refused(String),
    /// Anything else (`pusher:pong`, other channels, other events).
    Other,
}

/// The `pusher:pong` that answers a `pusher:ping`.
pub(crate) const PONG: &[u8] = br#"{"event":"pusher:pong","data":{}}"#;

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow)]
    event: Cow<'a, str>,
    #[serde(borrow, default)]
    channel: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    data: Option<&'a RawValue>,
}

/// What `message` (a text frame from the server) is, for subscribers of
/// `app`'s channel; `Err` with a description when it is not a Pusher message.
pub(crate) fn inbound<'a>(app: &App, message: &'a [u8]) -> Result<Inbound<'a>, String> {
    let envelope: Envelope<'a> = serde_json::from_slice(message)
        .map_err(|e| format!("not a Pusher message ({e}): {}", excerpt(message)))?;
    let ours = envelope.channel.as_deref() == Some(app.channel.as_str());
    Ok(match envelope.event.as_ref() {
        "pusher:connection_established" => Inbound::Established,
        "pusher:ping" => Inbound::Ping,
        "pusher_internal:subscription_succeeded" if ours => Inbound::Subscribed,
        "pusher:error" | "pusher:subscription_error" => Inbound::Refused(format!(
            "{}: {}",
            envelope.event,
            envelope.data.map_or("", |d| d.get())
        )),
        EVENT if ours => {
            let data = envelope
                .data
                .ok_or_else(|| format!("an event without data: {}", excerpt(message)))?;
            Inbound::Delivery(string_bytes(data).ok_or_else(|| {
                format!("an event whose data is not a string: {}", excerpt(message))
            })?)
        }
        _ => Inbound::Other,
    })
}

/// The contents of a JSON string, borrowed when it has no escapes (the
/// bench's letters never need any).
fn string_bytes(raw: &RawValue) -> Option<Cow<'_, [u8]>> {
    let text = raw.get();
    let inner = text.strip_prefix('"')?.strip_suffix('"')?;
    if !inner.contains('\\') {
        return Some(Cow::Borrowed(inner.as_bytes()));
    }
    serde_json::from_str::<String>(text)
        .ok()
        .map(|s| Cow::Owned(s.into_bytes()))
}

fn excerpt(message: &[u8]) -> String {
    String::from_utf8_lossy(&message[..message.len().min(120)]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app() -> App {
        App::parse("278d425bdf160c739803:7ad3773142a6692b25b8:3", "project-3").expect("valid")
    }

    /// The worked example of the Pusher HTTP API reference ("Generating
    /// authentication signatures"): a published vector, so this catches the
    /// string to sign being put together wrong, not only our code agreeing
    /// with itself.
    #[test]
    fn a_trigger_is_signed_as_the_pusher_http_api_reference_signs_it() {
        let body = br#"{"name":"foo","channels":["project-3"],"data":"{\"some\":\"data\"}"}"#;
        assert_eq!(sign::body_md5(body), "ec365a775a4cd0599faeb73354201b6f");
        let query = app().signed_query("/apps/3/events", body, 1_353_088_179);
        assert_eq!(
            query,
            "auth_key=278d425bdf160c739803&auth_timestamp=1353088179&auth_version=1.0\
             &body_md5=ec365a775a4cd0599faeb73354201b6f\
             &auth_signature=da454824c97ba181a32ccc17a72625ba02771f50b50e1e7430e47a1f3f457e6c"
        );
    }

    #[test]
    fn an_event_body_carries_the_publication_as_a_json_string() {
        let app = app();
        let mut body = b"stale".to_vec();
        app.event_body(&mut body, b"m0001abc");
        assert_eq!(
            body,
            br#"{"name":"bench","channel":"project-3","data":"m0001abc"}"#
        );
        app.event_body(&mut body, br#"{"p":1}"#);
        let v: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
        assert_eq!(v["data"], r#"{"p":1}"#);
        assert_eq!(app.events_path(""), "/apps/3/events");
        assert_eq!(app.events_path("/pusher/"), "/pusher/apps/3/events");
        let subscribe: serde_json::Value =
            serde_json::from_slice(&app.subscribe_message()).expect("JSON");
        assert_eq!(subscribe["event"], "pusher:subscribe");
        assert_eq!(subscribe["data"]["channel"], "project-3");
    }

    #[test]
    fn server_messages_are_told_apart() {
        let app = app();
        let read = |m: &'static str| inbound(&app, m.as_bytes());
        assert_eq!(
            read(
                r#"{"event":"pusher:connection_established","data":"{\"socket_id\":\"1.2\",\"activity_timeout\":120}"}"#
            ),
            Ok(Inbound::Established)
        );
        assert_eq!(
            read(r#"{"event":"pusher_internal:subscription_succeeded","channel":"project-3"}"#),
            Ok(Inbound::Subscribed)
        );
        assert_eq!(
            read(r#"{"event":"pusher:ping","data":{}}"#),
            Ok(Inbound::Ping)
        );
        // Field order is the server's choice.
        assert_eq!(
            read(r#"{"channel":"project-3","data":"m0001abc","event":"bench"}"#),
            Ok(Inbound::Delivery(Cow::Borrowed(&b"m0001abc"[..])))
        );
        assert_eq!(
            read(r#"{"event":"bench","channel":"project-3","data":"{\"p\":1}"}"#),
            Ok(Inbound::Delivery(Cow::Owned(br#"{"p":1}"#.to_vec())))
        );
        assert_eq!(
            read(r#"{"event":"bench","channel":"other","data":"m1"}"#),
            Ok(Inbound::Other)
        );
        assert_eq!(
            read(r#"{"event":"pusher:pong","data":{}}"#),
            Ok(Inbound::Other)
        );
        assert!(matches!(
            read(r#"{"event":"pusher:error","data":{"code":4001,"message":"unknown key"}}"#),
            Ok(Inbound::Refused(m)) if m.contains("4001")
        ));
        assert!(matches!(
            read(r#"{"event":"pusher:subscription_error","channel":"project-3","data":{"type":"AuthError","status":401}}"#),
            Ok(Inbound::Refused(m)) if m.contains("401")
        ));
        assert!(read(r#"{"event":"bench","channel":"project-3","data":{"a":1}}"#).is_err());
        assert!(read(r#"{"event":"bench","channel":"project-3"}"#).is_err());
        assert!(read("m0001abc").is_err());
    }

    #[test]
    fn pusher_flags_name_key_secret_id_and_a_public_channel() {
        assert_eq!(
            App::parse("k:s:1", "bench"),
            Ok(App {
                key: "k".into(),
                secret: "s".into(),
                id: "1".into(),
                channel: "bench".into()
            })
        );
        for bad in ["k:s", "k:s:1:2", "k::1", ":s:1", "k:s:", "k:s:1/2", ""] {
            assert_eq!(App::parse(bad, "bench"), Err(AppError::Form), "{bad:?}");
        }
        assert!(matches!(App::parse("k:s:1", ""), Err(AppError::Channel(_))));
        assert!(matches!(
            App::parse("k:s:1", "a b"),
            Err(AppError::Channel(_))
        ));
        assert!(matches!(
            App::parse("k:s:1", "private-x"),
            Err(AppError::NotPublic(_))
        ));
    }
}
