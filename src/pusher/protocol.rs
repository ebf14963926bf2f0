//! The Pusher Channels protocol (version 7) without I/O: channel kinds and
//! names, the messages clients send (parsed strictly), the messages the
//! server sends (encoded here, and only here), and the error codes.
//!
//! Every server message is `{"event":..,"channel":..,"data":..}`. Its
//! `data` is a JSON string holding JSON for the events of the protocol
//! itself and for events from the HTTP API (whose `data` is a string), and
//! any JSON for client events, passed on as the client sent it.

use bytes::{BufMut, Bytes, BytesMut};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Value, json};

/// The protocol versions spoken (pusher-js speaks 7).
pub const PROTOCOLS: std::ops::RangeInclusive<u32> = 5..=7;

/// The longest channel name and event name, in bytes.
pub const MAX_NAME: usize = 200;
/// The longest presence `user_id`, and `user_info` once encoded.
pub const MAX_USER_ID: usize = 128;
pub const MAX_USER_INFO: usize = 1024;
/// Client events a connection may send per second (as the hosted service).
pub const CLIENT_EVENTS_PER_SECOND: u32 = 10;

/// Error codes, on the close frame and in `pusher:error` (4000-4099: do
/// not reconnect; 4100-4199: reconnect after a while; 4200-4299: reconnect
/// at once; 4300-4399: errors that do not close).
pub mod code {
    pub const APP_NOT_FOUND: u16 = 4001;
    pub const OVER_QUOTA: u16 = 4004;
    pub const PATH_NOT_FOUND: u16 = 4005;
    pub const BAD_VERSION: u16 = 4006;
    pub const UNSUPPORTED_PROTOCOL: u16 = 4007;
    pub const NO_PROTOCOL: u16 = 4008;
    pub const UNAUTHORIZED: u16 = 4009;
    pub const OVER_CAPACITY: u16 = 4100;
    pub const RECONNECT: u16 = 4200;
    pub const CLIENT_EVENT_RATE: u16 = 4301;
}

/// What a channel's name prefix makes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Privacy {
    Public,
    /// `private-`: subscribing needs a signature.
    Private,
    /// `presence-`: a signature over the member's data; members are listed.
    Presence,
    /// `private-encrypted-`: as private; the payloads are end-to-end
    /// encrypted and the server never reads them.
    Encrypted,
    /// `#server-to-user-ID`: a signed-in user's own channel, for the
    /// server's messages to that user.
    User,
}

/// The prefix of a user's own channel.
pub const USER_CHANNEL: &str = "#server-to-user-";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChannelKind {
    pub privacy: Privacy,
    /// `cache-` (after the privacy prefix): the last event is kept and
    /// replayed to new subscribers.
    pub cache: bool,
}

impl ChannelKind {
    /// The kind of a channel name, `None` if the name is not valid (1-200
    /// of `A-Z a-z 0-9 _ - = @ , . ;`).
    pub fn of(name: &str) -> Option<ChannelKind> {
        let (user, checked) = match name.strip_prefix(USER_CHANNEL) {
            Some(id) => (true, id),
            None => (false, name),
        };
        let valid = !checked.is_empty()
            && name.len() <= MAX_NAME
            && checked.bytes().all(|b| {
                b.is_ascii_alphanumeric()
                    || matches!(b, b'_' | b'-' | b'=' | b'@' | b',' | b'.' | b';')
            });
        if !valid {
            return None;
        }
        if user {
            return Some(ChannelKind {
                privacy: Privacy::User,
                cache: false,
            });
        }
        let (privacy, rest) = if let Some(rest) = name.strip_prefix("private-encrypted-") {
            (Privacy::Encrypted, rest)
        } else if let Some(rest) = name.strip_prefix("private-") {
            (Privacy::Private, rest)
        } else if let Some(rest) = name.strip_prefix("presence-") {
            (Privacy::Presence, rest)
        } else {
            (Privacy::Public, name)
        };
        Some(ChannelKind {
            privacy,
            cache: rest.starts_with("cache-"),
        })
    }

    /// Whether subscribing needs a channel signature (a user's channel
    /// needs the connection signed in as that user instead).
    pub fn needs_auth(self) -> bool {
        matches!(
            self.privacy,
            Privacy::Private | Privacy::Presence | Privacy::Encrypted
        )
    }

    /// Whether client events may be sent on it.
    pub fn takes_client_events(self) -> bool {
        matches!(self.privacy, Privacy::Private | Privacy::Presence)
    }
}

/// A client message that cannot be used; answered with `pusher:error`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Refused {
    /// `None` is sent as `"code":null`, as the hosted service does for
    /// errors without a code of their own.
    pub code: Option<u16>,
    pub message: String,
}

impl Refused {
    pub fn new(code: Option<u16>, message: impl Into<String>) -> Refused {
        Refused {
            code,
            message: message.into(),
        }
    }
}

/// What a client sent.
#[derive(Debug)]
pub enum ClientMessage {
    Ping,
    Pong,
    Subscribe {
        channel: String,
        auth: Option<String>,
        channel_data: Option<String>,
    },
    Unsubscribe {
        channel: String,
    },
    Signin {
        auth: String,
        user_data: String,
    },
    /// `client-*` on a channel, with its data as sent.
    ClientEvent {
        event: String,
        channel: String,
        data: Box<RawValue>,
    },
}

#[derive(Deserialize)]
struct Envelope {
    event: String,
    #[serde(default)]
    channel: Option<String>,
    #[serde(default)]
    data: Option<Box<RawValue>>,
}

#[derive(Deserialize)]
struct SubscribeData {
    channel: String,
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    channel_data: Option<String>,
}

#[derive(Deserialize)]
struct UnsubscribeData {
    channel: String,
}

#[derive(Deserialize)]
struct SigninData {
    auth: String,
    user_data: String,
}

/// The `data` of a protocol event: an object, or (older clients) a string
/// holding one.
fn data_of<'a, T: Deserialize<'a>>(raw: Option<&'a RawValue>, event: &str) -> Result<T, Refused> {
    let bad = |e: serde_json::Error| Refused::new(None, format!("{event}: bad data: {e}"));
    let raw = raw.ok_or_else(|| Refused::new(None, format!("{event}: data is missing")))?;
    if raw.get().starts_with('"') {
        let text: String = serde_json::from_str(raw.get()).map_err(bad)?;
        let value: Value = serde_json::from_str(&text).map_err(bad)?;
        return T::deserialize(value).map_err(bad);
    }
    serde_json::from_str(raw.get()).map_err(bad)
}

/// Parses one text message.
pub fn parse(text: &[u8]) -> Result<ClientMessage, Refused> {
    let envelope: Envelope = serde_json::from_slice(text)
        .map_err(|e| Refused::new(None, format!("expected {{\"event\":..,\"data\":..}}: {e}")))?;
    let data = envelope.data.as_deref();
    Ok(match envelope.event.as_str() {
        "pusher:ping" => ClientMessage::Ping,
        "pusher:pong" => ClientMessage::Pong,
        "pusher:subscribe" => {
            let d: SubscribeData = data_of(data, "pusher:subscribe")?;
            ClientMessage::Subscribe {
                channel: d.channel,
                auth: d.auth,
                channel_data: d.channel_data,
            }
        }
        "pusher:unsubscribe" => {
            let d: UnsubscribeData = data_of(data, "pusher:unsubscribe")?;
            ClientMessage::Unsubscribe { channel: d.channel }
        }
        "pusher:signin" => {
            let d: SigninData = data_of(data, "pusher:signin")?;
            ClientMessage::Signin {
                auth: d.auth,
                user_data: d.user_data,
            }
        }
        event if event.starts_with("client-") => {
            if event.len() > MAX_NAME {
                return Err(Refused::new(
                    None,
                    format!("event name of {} bytes; at most {MAX_NAME}", event.len()),
                ));
            }
            let channel = envelope
                .channel
                .ok_or_else(|| Refused::new(None, format!("{event}: channel is missing")))?;
            let data = envelope
                .data
                .ok_or_else(|| Refused::new(None, format!("{event}: data is missing")))?;
            ClientMessage::ClientEvent {
                event: envelope.event,
                channel,
                data,
            }
        }
        other => {
            return Err(Refused::new(
                None,
                format!(
                    "unknown event {:?}: clients send pusher:subscribe, pusher:unsubscribe, \
                     pusher:ping, pusher:signin or client-* events",
                    other.chars().take(64).collect::<String>()
                ),
            ));
        }
    })
}

/// A signed-in user, from the signed `user_data` of `pusher:signin`.
pub fn signin_user(user_data: &str) -> Result<String, String> {
    #[derive(Deserialize)]
    struct Data {
        id: Value,
    }
    let d: Data = serde_json::from_str(user_data)
        .map_err(|e| format!("user_data is not {{\"id\":..}}: {e}"))?;
    let id = match d.id {
        Value::String(s) => s,
        _ => return Err("user_data's id must be a string".into()),
    };
    if id.is_empty() || id.len() > MAX_USER_ID {
        return Err(format!("the user id must be 1-{MAX_USER_ID} bytes"));
    }
    if ChannelKind::of(&format!("{USER_CHANNEL}{id}")).is_none() {
        return Err("the user id may hold only A-Z a-z 0-9 _ - = @ , . ;".into());
    }
    Ok(id)
}

/// A presence member, from the signed `channel_data`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberData {
    pub user_id: String,
    /// JSON; `null` when not given.
    pub user_info: String,
}

impl MemberData {
    /// Reads `{"user_id":..,"user_info":..}` (a numeric id is taken as its
    /// decimal text, as pusher-js does), within the size limits.
    pub fn parse(channel_data: &str) -> Result<MemberData, String> {
        #[derive(Deserialize)]
        struct Data {
            user_id: Value,
            #[serde(default)]
            user_info: Option<Box<RawValue>>,
        }
        let d: Data = serde_json::from_str(channel_data)
            .map_err(|e| format!("channel_data is not {{\"user_id\":..,\"user_info\":..}}: {e}"))?;
        let user_id = match d.user_id {
            Value::String(s) => s,
            Value::Number(n) => n.to_string(),
            _ => return Err("user_id must be a string or a number".into()),
        };
        if user_id.is_empty() || user_id.len() > MAX_USER_ID {
            return Err(format!("user_id must be 1-{MAX_USER_ID} bytes"));
        }
        let user_info = d
            .user_info
            .map_or_else(|| "null".to_owned(), |i| i.get().to_owned());
        if user_info.len() > MAX_USER_INFO {
            return Err(format!(
                "user_info of {} bytes; at most {MAX_USER_INFO}",
                user_info.len()
            ));
        }
        Ok(MemberData { user_id, user_info })
    }

    /// The member as the engine keeps it (the `user` of a presence member):
    /// the same JSON read back by [`MemberData::from_stored`].
    pub fn to_stored(&self) -> String {
        let mut out = String::with_capacity(self.user_id.len() + self.user_info.len() + 28);
        out.push_str("{\"user_id\":");
        out.push_str(&json_string(&self.user_id));
        out.push_str(",\"user_info\":");
        out.push_str(&self.user_info);
        out.push('}');
        out
    }

    pub fn from_stored(user: &str) -> Option<MemberData> {
        MemberData::parse(user).ok()
    }
}

fn json_string(s: &str) -> String {
    // A string always serializes.
    serde_json::to_string(s).unwrap_or_default()
}

fn message(event: &str, channel: Option<&str>, data: &Value) -> Vec<u8> {
    let mut out = json!({"event": event});
    if let Some(channel) = channel {
        out["channel"] = Value::from(channel);
    }
    out["data"] = data.clone();
    out.to_string().into_bytes()
}

/// `data` as the JSON string the protocol sends it in.
fn stringified(data: &Value) -> Value {
    Value::String(data.to_string())
}

pub fn connection_established(socket_id: &str, activity_timeout: u64) -> Vec<u8> {
    message(
        "pusher:connection_established",
        None,
        &stringified(&json!({"socket_id": socket_id, "activity_timeout": activity_timeout})),
    )
}

/// `pusher:error`; `data` is an object here, as pusher-js expects.
pub fn error(code: Option<u16>, text: &str) -> Vec<u8> {
    message(
        "pusher:error",
        None,
        &json!({"code": code, "message": text}),
    )
}

pub fn pong() -> Vec<u8> {
    message("pusher:pong", None, &json!({}))
}

pub fn subscription_succeeded(channel: &str) -> Vec<u8> {
    message(
        "pusher_internal:subscription_succeeded",
        Some(channel),
        &stringified(&json!({})),
    )
}

/// The answer to a presence subscription: every member (each user once),
/// the subscriber included.
pub fn presence_succeeded(channel: &str, members: &[MemberData]) -> Vec<u8> {
    let mut ids = Vec::with_capacity(members.len());
    let mut hash = serde_json::Map::with_capacity(members.len());
    for m in members {
        if hash.contains_key(&m.user_id) {
            continue;
        }
        let info: Value = serde_json::from_str(&m.user_info).unwrap_or(Value::Null);
        ids.push(Value::from(m.user_id.as_str()));
        hash.insert(m.user_id.clone(), info);
    }
    let count = ids.len();
    message(
        "pusher_internal:subscription_succeeded",
        Some(channel),
        &stringified(&json!({"presence": {"ids": ids, "hash": hash, "count": count}})),
    )
}

/// A refused subscription, naming the channel, as soketi and sockudo send
/// it; pusher-js hands it to the channel's `pusher:subscription_error`
/// listeners (Laravel Echo's `.error()`).
pub fn subscription_error(channel: &str, kind: &str, text: &str, status: u16) -> Vec<u8> {
    message(
        "pusher:subscription_error",
        Some(channel),
        &json!({"type": kind, "error": text, "status": status}),
    )
}

pub fn cache_miss(channel: &str) -> Vec<u8> {
    message("pusher:cache_miss", Some(channel), &stringified(&json!({})))
}

pub fn member_added(channel: &str, member: &MemberData) -> Vec<u8> {
    let info: Value = serde_json::from_str(&member.user_info).unwrap_or(Value::Null);
    message(
        "pusher_internal:member_added",
        Some(channel),
        &stringified(&json!({"user_id": member.user_id, "user_info": info})),
    )
}

pub fn member_removed(channel: &str, user_id: &str) -> Vec<u8> {
    message(
        "pusher_internal:member_removed",
        Some(channel),
        &stringified(&json!({"user_id": user_id})),
    )
}

pub fn signin_success(user_data: &str) -> Vec<u8> {
    message(
        "pusher:signin_success",
        None,
        &json!({"user_data": user_data}),
    )
}

/// An event as subscribers get it. `data` is JSON: a string for events of
/// the HTTP API, anything for client events; `user_id` is set for client
/// events on presence channels.
pub fn event(name: &str, channel: &str, data: &str, user_id: Option<&str>) -> Vec<u8> {
    let mut out = Vec::with_capacity(name.len() + channel.len() + data.len() + 48);
    out.extend_from_slice(b"{\"event\":");
    out.extend_from_slice(json_string(name).as_bytes());
    out.extend_from_slice(b",\"channel\":");
    out.extend_from_slice(json_string(channel).as_bytes());
    out.extend_from_slice(b",\"data\":");
    out.extend_from_slice(data.as_bytes());
    if let Some(user_id) = user_id {
        out.extend_from_slice(b",\"user_id\":");
        out.extend_from_slice(json_string(user_id).as_bytes());
    }
    out.push(b'}');
    out
}

/// A publication's data for Pusher subscribers ([`crate::engine::Format::Pusher`]):
/// the socket id that must not get it (or nothing), a newline, the message.
pub fn publication(exclude: Option<&str>, message: &[u8]) -> Bytes {
    let exclude = exclude.unwrap_or("");
    let mut out = BytesMut::with_capacity(exclude.len() + 1 + message.len());
    out.put_slice(exclude.as_bytes());
    out.put_u8(b'\n');
    out.put_slice(message);
    out.freeze()
}

/// Whether `id` is a socket id as the protocol writes them (`123.456`).
pub fn is_socket_id(id: &str) -> bool {
    match id.split_once('.') {
        Some((a, b)) => {
            !a.is_empty()
                && !b.is_empty()
                && a.bytes().all(|c| c.is_ascii_digit())
                && b.bytes().all(|c| c.is_ascii_digit())
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_kinds_come_from_their_prefixes() {
        let kind = |n| ChannelKind::of(n).map(|k| (k.privacy, k.cache));
        assert_eq!(kind("lobby"), Some((Privacy::Public, false)));
        assert_eq!(kind("cache-lobby"), Some((Privacy::Public, true)));
        assert_eq!(kind("private-a"), Some((Privacy::Private, false)));
        assert_eq!(kind("private-cache-a"), Some((Privacy::Private, true)));
        assert_eq!(kind("presence-a"), Some((Privacy::Presence, false)));
        assert_eq!(kind("presence-cache-a"), Some((Privacy::Presence, true)));
        assert_eq!(
            kind("private-encrypted-a"),
            Some((Privacy::Encrypted, false))
        );
        assert_eq!(
            kind("private-encrypted-cache-a"),
            Some((Privacy::Encrypted, true))
        );
        assert_eq!(kind("a=b,c;d@e.f_g-h"), Some((Privacy::Public, false)));
        assert_eq!(kind("#server-to-user-u1"), Some((Privacy::User, false)));
        assert_eq!(
            signin_user(r#"{"id":"u1","user_info":{}}"#),
            Ok("u1".to_owned())
        );
        for bad in [r#"{"id":1}"#, r#"{"id":""}"#, r#"{"id":"a b"}"#, "{}", "x"] {
            assert!(signin_user(bad).is_err(), "{bad}");
        }
        for bad in [
            "",
            "a b",
            "a:b",
            "#server-to-user-",
            "#other",
            "é",
            &"x".repeat(201),
        ] {
            assert_eq!(kind(bad), None, "{bad}");
        }
        assert!(ChannelKind::of(&"x".repeat(200)).is_some());
        assert!(
            !ChannelKind::of("private-encrypted-a")
                .unwrap()
                .takes_client_events()
        );
        assert!(ChannelKind::of("presence-a").unwrap().takes_client_events());
        assert!(!ChannelKind::of("a").unwrap().needs_auth());
    }

    #[test]
    fn client_messages_parse_strictly() {
        assert!(matches!(
            parse(br#"{"event":"pusher:ping","data":{}}"#),
            Ok(ClientMessage::Ping)
        ));
        let sub =
            parse(br#"{"event":"pusher:subscribe","data":{"channel":"private-a","auth":"k:s"}}"#)
                .unwrap();
        assert!(
            matches!(sub, ClientMessage::Subscribe { ref channel, auth: Some(_), channel_data: None } if channel == "private-a")
        );
        // Data as a string holding JSON, as older clients send it.
        let sub = parse(br#"{"event":"pusher:subscribe","data":"{\"channel\":\"a\"}"}"#).unwrap();
        assert!(matches!(sub, ClientMessage::Subscribe { ref channel, .. } if channel == "a"));
        let ev =
            parse(br#"{"event":"client-typing","channel":"private-a","data":{"x":1}}"#).unwrap();
        match ev {
            ClientMessage::ClientEvent {
                event,
                channel,
                data,
            } => {
                assert_eq!(
                    (event.as_str(), channel.as_str()),
                    ("client-typing", "private-a")
                );
                assert_eq!(data.get(), r#"{"x":1}"#);
            }
            other => panic!("{other:?}"),
        }
        for bad in [
            &b"not json"[..],
            br#"{"data":{}}"#,
            br#"{"event":"pusher:subscribe"}"#,
            br#"{"event":"pusher:subscribe","data":{"auth":"x"}}"#,
            br#"{"event":"client-x","data":{}}"#,
            br#"{"event":"other","data":{}}"#,
        ] {
            assert!(parse(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
        let long = format!(
            r#"{{"event":"client-{}","channel":"private-a","data":1}}"#,
            "x".repeat(200)
        );
        assert!(parse(long.as_bytes()).is_err());
    }

    #[test]
    fn members_are_read_within_their_limits() {
        let m = MemberData::parse(r#"{"user_id":10,"user_info":{"name":"Mr. Channels"}}"#).unwrap();
        assert_eq!(m.user_id, "10");
        assert_eq!(MemberData::from_stored(&m.to_stored()), Some(m.clone()));
        let bare = MemberData::parse(r#"{"user_id":"u"}"#).unwrap();
        assert_eq!(bare.user_info, "null");
        assert!(MemberData::parse(r#"{"user_info":{}}"#).is_err());
        assert!(MemberData::parse(r#"{"user_id":""}"#).is_err());
        assert!(MemberData::parse(r#"{"user_id":true}"#).is_err());
        let long_id = format!(r#"{{"user_id":"{}"}}"#, "u".repeat(129));
        assert!(MemberData::parse(&long_id).is_err());
        let big = format!(r#"{{"user_id":"u","user_info":"{}"}}"#, "i".repeat(1100));
        assert!(MemberData::parse(&big).is_err());
    }

    #[test]
    fn server_messages_are_what_pusher_js_reads() {
        let v: Value = serde_json::from_slice(&connection_established("1.2", 120)).unwrap();
        assert_eq!(v["event"], "pusher:connection_established");
        let data: Value = serde_json::from_str(v["data"].as_str().unwrap()).unwrap();
        assert_eq!(data, json!({"socket_id": "1.2", "activity_timeout": 120}));
        let v: Value = serde_json::from_slice(&error(Some(4001), "no")).unwrap();
        assert_eq!(v["data"], json!({"code": 4001, "message": "no"}));
        let members = [
            MemberData::parse(r#"{"user_id":"a","user_info":{"n":1}}"#).unwrap(),
            MemberData::parse(r#"{"user_id":"a","user_info":{"n":1}}"#).unwrap(),
            MemberData::parse(r#"{"user_id":"b"}"#).unwrap(),
        ];
        let v: Value = serde_json::from_slice(&presence_succeeded("presence-x", &members)).unwrap();
        let data: Value = serde_json::from_str(v["data"].as_str().unwrap()).unwrap();
        assert_eq!(
            data,
            json!({"presence": {"ids": ["a", "b"], "hash": {"a": {"n": 1}, "b": null}, "count": 2}})
        );
        let e = event("my-event", "c", r#""{\"a\":1}""#, Some("u"));
        let v: Value = serde_json::from_slice(&e).unwrap();
        assert_eq!(
            v,
            json!({"event": "my-event", "channel": "c", "data": "{\"a\":1}", "user_id": "u"})
        );
        assert_eq!(&publication(Some("1.2"), b"{}")[..], b"1.2\n{}");
        assert_eq!(&publication(None, b"{}")[..], b"\n{}");
        assert!(is_socket_id("123.456"));
        for bad in ["123", ".1", "1.", "a.1", "1.2.3"] {
            assert!(!is_socket_id(bad), "{bad}");
        }
    }
}
