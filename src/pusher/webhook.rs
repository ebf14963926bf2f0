//! Webhooks without I/O: the events an app's backend is told about, the
//! batched body they are POSTed in, and its signature. Sending them (with
//! retries) is the server's `pusher_webhooks`.

use serde_json::{Value, json};

use super::sign;

/// One webhook event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WebhookEvent {
    /// A channel got its first subscriber.
    ChannelOccupied { channel: String },
    /// A channel lost its last subscriber.
    ChannelVacated { channel: String },
    /// A user's first connection joined a presence channel.
    MemberAdded { channel: String, user_id: String },
    /// A user's last connection left a presence channel.
    MemberRemoved { channel: String, user_id: String },
    /// A client sent `event` with `data` (its JSON text).
    ClientEvent {
        channel: String,
        event: String,
        data: String,
        socket_id: String,
        user_id: Option<String>,
    },
}

impl WebhookEvent {
    pub fn to_json(&self) -> Value {
        match self {
            WebhookEvent::ChannelOccupied { channel } => {
                json!({"name": "channel_occupied", "channel": channel})
            }
            WebhookEvent::ChannelVacated { channel } => {
                json!({"name": "channel_vacated", "channel": channel})
            }
            WebhookEvent::MemberAdded { channel, user_id } => {
                json!({"name": "member_added", "channel": channel, "user_id": user_id})
            }
            WebhookEvent::MemberRemoved { channel, user_id } => {
                json!({"name": "member_removed", "channel": channel, "user_id": user_id})
            }
            WebhookEvent::ClientEvent {
                channel,
                event,
                data,
                socket_id,
                user_id,
            } => {
                let mut out = json!({
                    "name": "client_event",
                    "channel": channel,
                    "event": event,
                    "data": data,
                    "socket_id": socket_id,
                });
                if let Some(user_id) = user_id {
                    out["user_id"] = Value::from(user_id.as_str());
                }
                out
            }
        }
    }
}

/// `{"time_ms":..,"events":[..]}`.
pub fn body(time_ms: u64, events: &[WebhookEvent]) -> Vec<u8> {
    let events: Vec<Value> = events.iter().map(WebhookEvent::to_json).collect();
    json!({"time_ms": time_ms, "events": events})
        .to_string()
        .into_bytes()
}

/// `X-Pusher-Signature`: HMAC-SHA256 of the body with the app's secret.
pub fn signature(secret: &str, body: &[u8]) -> String {
    sign::sign(secret, body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_holds_every_event_and_is_signed_over_its_bytes() {
        let events = [
            WebhookEvent::ChannelOccupied {
                channel: "c".into(),
            },
            WebhookEvent::ClientEvent {
                channel: "presence-r".into(),
                event: "client-x".into(),
                data: "{\"a\":1}".into(),
                socket_id: "1.2".into(),
                user_id: Some("u".into()),
            },
        ];
        let body = body(5, &events);
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["time_ms"], 5);
        assert_eq!(
            v["events"][0],
            json!({"name": "channel_occupied", "channel": "c"})
        );
        assert_eq!(v["events"][1]["data"], "{\"a\":1}");
        assert_eq!(v["events"][1]["user_id"], "u");
        assert_eq!(signature("s", &body), sign::sign("s", &body));
        assert_ne!(signature("s", &body), signature("t", &body));
    }
}
