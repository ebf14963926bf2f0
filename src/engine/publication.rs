//! What flows through the engine: publications (with their wire frames,
//! encoded once), presence events, and the receipt that counts deliveries.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use crate::channels::ChannelName;
use crate::protocol::{self, deflate, opcode};

/// What a publication's data is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// UTF-8 text (validated when published).
    Text,
    /// Arbitrary bytes.
    Binary,
    /// A JSON document (validated when published), delivered as text in
    /// plain mode and embedded as raw JSON in JSON mode.
    Json,
}

/// How a subscriber wants its deliveries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Each publication as one message holding exactly its data.
    Plain,
    /// Each publication as a JSON object with its channel, offset, epoch and
    /// time; events too.
    Json,
    /// Pusher protocol connections ([`crate::pusher`]): the publication's
    /// text is `EXCLUDED\nMESSAGE`, where `MESSAGE` is the Pusher event,
    /// encoded once by whoever published it, and `EXCLUDED` the socket id
    /// (maybe empty) that must not get it. Presence events are turned into
    /// Pusher member events by each subscriber.
    Pusher,
}

/// A whole frame, as the pieces to queue (see `protocol::server_message`).
pub type Frame = (Bytes, Option<Bytes>);

/// A text frame holding `text` (JSON-mode deliveries, events and replies).
pub fn text_frame(text: &[u8]) -> Frame {
    (protocol::server_frame(opcode::TEXT, &[text]), None)
}

/// A place in a channel's stream: the offset of the last publication seen,
/// in the epoch it belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    pub offset: u64,
    pub epoch: String,
}

impl Position {
    /// Offset 0 with no epoch: a channel's beginning, in whatever epoch it
    /// turns out to have (it did not exist when the position was read).
    pub fn is_beginning(&self) -> bool {
        self.epoch.is_empty() && self.offset == 0
    }
}

/// One publication, shared (`Arc`) by the history and by every hub that
/// delivers it. Its frames are encoded the first time a subscriber of each
/// format needs them, once for all subscribers.
#[derive(Debug)]
pub struct Publication {
    pub channel: ChannelName,
    pub offset: u64,
    pub epoch: Arc<str>,
    /// Milliseconds since the Unix epoch, when the engine took it.
    pub time_ms: u64,
    pub kind: Kind,
    pub data: Bytes,
    /// When this node accepted it, for the publish-to-queued histogram.
    pub accepted: Instant,
    plain: OnceLock<Frame>,
    json: OnceLock<Frame>,
    pusher: OnceLock<Frame>,
    /// Compressed (permessage-deflate) once for every subscriber that can
    /// take the shared frame; the plain frame when too short to compress.
    plain_deflated: OnceLock<Frame>,
    json_deflated: OnceLock<Frame>,
    pusher_deflated: OnceLock<Frame>,
}

impl Publication {
    pub fn new(
        channel: ChannelName,
        offset: u64,
        epoch: Arc<str>,
        kind: Kind,
        data: Bytes,
        accepted: Instant,
    ) -> Publication {
        Publication {
            channel,
            offset,
            epoch,
            time_ms: now_ms(),
            kind,
            data,
            accepted,
            plain: OnceLock::new(),
            json: OnceLock::new(),
            pusher: OnceLock::new(),
            plain_deflated: OnceLock::new(),
            json_deflated: OnceLock::new(),
            pusher_deflated: OnceLock::new(),
        }
    }

    /// The frame's opcode in `format`.
    fn opcode(&self, format: Format) -> u8 {
        match (format, self.kind) {
            (Format::Plain, Kind::Binary) => opcode::BINARY,
            _ => opcode::TEXT,
        }
    }

    /// The message a subscriber in `format` gets, without its frame header.
    pub fn payload(&self, format: Format) -> Bytes {
        match format {
            Format::Plain => self.data.clone(),
            Format::Json => {
                let (frame, _) = self.frame(Format::Json);
                frame.slice(protocol::header_size(frame[1])..)
            }
            Format::Pusher => match self.data.iter().position(|&b| b == b'\n') {
                Some(i) => self.data.slice(i + 1..),
                None => self.data.clone(),
            },
        }
    }

    /// For [`Format::Pusher`]: whether the publication names `socket_id` as
    /// the one connection that must not get it (the HTTP API's `socket_id`,
    /// the sender of a client event).
    pub fn excludes(&self, socket_id: &[u8]) -> bool {
        !socket_id.is_empty()
            && self.data.len() > socket_id.len()
            && self.data.starts_with(socket_id)
            && self.data[socket_id.len()] == b'\n'
    }

    /// The compressed frame for the subscribers in `format` that take
    /// `shared`'s frames, compressed on first use, once for all of them.
    pub fn deflated_frame(&self, format: Format, shared: &deflate::Shared) -> &Frame {
        let cell = match format {
            Format::Plain => &self.plain_deflated,
            Format::Json => &self.json_deflated,
            Format::Pusher => &self.pusher_deflated,
        };
        cell.get_or_init(
            || match shared.frame(self.opcode(format), &self.payload(format)) {
                Some(frame) => (frame, None),
                None => self.frame(format).clone(),
            },
        )
    }

    /// The frame for a subscriber in `format`, encoded on first use.
    pub fn frame(&self, format: Format) -> &Frame {
        match format {
            Format::Plain => self
                .plain
                .get_or_init(|| protocol::server_message(self.opcode(format), &[], &self.data)),
            Format::Json => self.json.get_or_init(|| text_frame(&self.to_json())),
            Format::Pusher => self.pusher.get_or_init(|| {
                protocol::server_message(opcode::TEXT, &[], &self.payload(Format::Pusher))
            }),
        }
    }

    /// `{"channel":..,"offset":..,"epoch":..,"time":..,"data":..}`: the
    /// JSON-mode delivery, also what the HTTP history answers hold.
    pub fn to_json(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.data.len() + 96);
        out.extend_from_slice(b"{\"channel\":");
        push_json_str(&mut out, self.channel.as_str());
        out.extend_from_slice(b",\"offset\":");
        out.extend_from_slice(self.offset.to_string().as_bytes());
        out.extend_from_slice(b",\"epoch\":");
        push_json_str(&mut out, &self.epoch);
        out.extend_from_slice(b",\"time\":");
        out.extend_from_slice(self.time_ms.to_string().as_bytes());
        match self.kind {
            Kind::Json => {
                out.extend_from_slice(b",\"data\":");
                out.extend_from_slice(&self.data);
            }
            Kind::Text => {
                out.extend_from_slice(b",\"data\":");
                // Validated as UTF-8 when it was published.
                push_json_str(&mut out, &String::from_utf8_lossy(&self.data));
            }
            Kind::Binary => {
                out.extend_from_slice(b",\"data_b64\":\"");
                out.extend_from_slice(
                    base64::engine::general_purpose::STANDARD
                        .encode(&self.data)
                        .as_bytes(),
                );
                out.push(b'"');
            }
        }
        out.push(b'}');
        out
    }

    /// The publication as a JSON value (HTTP history answers).
    pub fn to_value(&self) -> serde_json::Value {
        serde_json::from_slice(&self.to_json()).unwrap_or(serde_json::Value::Null)
    }
}

fn push_json_str(out: &mut Vec<u8>, s: &str) {
    // Writing a string into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A subscriber of a presence channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// The token's `sub`, or `""` for a client without a token.
    pub user: String,
    /// The connection's id, unique on this node.
    pub conn: String,
}

/// A join or leave on a presence channel.
#[derive(Debug)]
pub struct PresenceEvent {
    pub channel: ChannelName,
    pub join: bool,
    pub member: Member,
    frame: OnceLock<Frame>,
}

impl PresenceEvent {
    pub fn new(channel: ChannelName, join: bool, member: Member) -> PresenceEvent {
        PresenceEvent {
            channel,
            join,
            member,
            frame: OnceLock::new(),
        }
    }

    /// `{"channel":"c","event":"join","user":"u","conn":"id"}`, encoded once.
    pub fn frame(&self) -> &Frame {
        self.frame.get_or_init(|| {
            let json = serde_json::json!({
                "channel": self.channel.as_str(),
                "event": if self.join { "join" } else { "leave" },
                "user": self.member.user,
                "conn": self.member.conn,
            })
            .to_string();
            text_frame(json.as_bytes())
        })
    }
}

/// Publications on a channel were lost between the engine and this node
/// (a networked engine's connection dropped, or its pub/sub skipped some)
/// and cannot be replayed: its subscribers must be told.
#[derive(Debug)]
pub struct Gap {
    pub channel: ChannelName,
    frame: OnceLock<Frame>,
}

impl Gap {
    pub fn new(channel: ChannelName) -> Gap {
        Gap {
            channel,
            frame: OnceLock::new(),
        }
    }

    /// `{"channel":"c","event":"gap","recovered":false}`, for JSON mode,
    /// encoded once.
    pub fn frame(&self) -> &Frame {
        self.frame.get_or_init(|| {
            let json = serde_json::json!({
                "channel": self.channel.as_str(),
                "event": "gap",
                "recovered": false,
            })
            .to_string();
            text_frame(json.as_bytes())
        })
    }
}

/// What the engine hands to this node's subscribers.
#[derive(Debug, Clone)]
pub enum Delivery {
    Publication(Arc<Publication>, Option<Arc<Receipt>>),
    Presence(Arc<PresenceEvent>),
    Gap(Arc<Gap>),
}

impl Delivery {
    pub fn channel(&self) -> &ChannelName {
        match self {
            Delivery::Publication(p, _) => &p.channel,
            Delivery::Presence(e) => &e.channel,
            Delivery::Gap(g) => &g.channel,
        }
    }
}

/// Counts the subscriber sessions a publication was queued to, across the
/// hubs it was sent to, for the HTTP publish answer.
#[derive(Debug)]
pub struct Receipt {
    hubs: AtomicUsize,
    queued: AtomicUsize,
    done: Mutex<Option<oneshot::Sender<usize>>>,
}

impl Receipt {
    pub fn new() -> (Arc<Receipt>, oneshot::Receiver<usize>) {
        let (tx, rx) = oneshot::channel();
        let receipt = Receipt {
            hubs: AtomicUsize::new(0),
            queued: AtomicUsize::new(0),
            done: Mutex::new(Some(tx)),
        };
        (Arc::new(receipt), rx)
    }

    /// The publication was sent to `hubs` hubs (called once, by the router,
    /// before any of them can report).
    pub fn expect(&self, hubs: usize) {
        self.hubs.store(hubs, Ordering::Release);
        if hubs == 0 {
            self.finish();
        }
    }

    /// A hub queued it to `sessions` of its subscribers.
    pub fn report(&self, sessions: usize) {
        self.queued.fetch_add(sessions, Ordering::AcqRel);
        if self.hubs.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.finish();
        }
    }

    fn finish(&self) {
        let sender = self.done.lock().ok().and_then(|mut s| s.take());
        if let Some(sender) = sender {
            let _ = sender.send(self.queued.load(Ordering::Acquire));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn publication(kind: Kind, data: &'static [u8]) -> Publication {
        Publication::new(
            ChannelName::parse("c").unwrap(),
            7,
            Arc::from("e"),
            kind,
            Bytes::from_static(data),
            Instant::now(),
        )
    }

    #[test]
    fn a_publication_is_compressed_once_and_short_ones_not_at_all() {
        use crate::protocol::deflate::{SendSettings, Shared};
        let shared = Shared {
            settings: SendSettings {
                level: 1,
                min_size: 32,
            },
            window_bits: 15,
        };
        let long = publication(Kind::Text, b"tick tick tick tick tick tick tick tick tick");
        let (a, _) = long.deflated_frame(Format::Plain, &shared);
        let (b, _) = long.deflated_frame(Format::Plain, &shared);
        assert_eq!(
            a.as_ptr(),
            b.as_ptr(),
            "the same bytes, not a second compression"
        );
        assert_eq!(a[0] & 0x40, 0x40, "RSV1");
        let (json, _) = long.deflated_frame(Format::Json, &shared);
        assert_eq!(json[0] & 0x40, 0x40);
        let short = publication(Kind::Text, b"tick");
        assert_eq!(
            short.deflated_frame(Format::Plain, &shared),
            short.frame(Format::Plain),
            "under min_size: the plain frame"
        );
    }

    #[test]
    fn json_deliveries_embed_text_json_and_binary() {
        let text: serde_json::Value =
            serde_json::from_slice(&publication(Kind::Text, b"a\"b").to_json()).unwrap();
        assert_eq!(text["data"], "a\"b");
        assert_eq!(text["offset"], 7);
        assert_eq!(text["epoch"], "e");
        let json: serde_json::Value =
            serde_json::from_slice(&publication(Kind::Json, b"{\"x\":[1]}").to_json()).unwrap();
        assert_eq!(json["data"]["x"][0], 1);
        let bin: serde_json::Value =
            serde_json::from_slice(&publication(Kind::Binary, b"\x00\xff").to_json()).unwrap();
        assert_eq!(bin["data_b64"], "AP8=");
        assert!(bin.get("data").is_none());
    }

    #[test]
    fn a_frame_is_encoded_once() {
        let p = publication(Kind::Text, b"hi");
        let a = p.frame(Format::Plain).0.as_ptr();
        let b = p.frame(Format::Plain).0.as_ptr();
        assert_eq!(a, b);
        assert_eq!(&p.frame(Format::Plain).0[..], b"\x81\x02hi");
    }

    #[test]
    fn a_pusher_frame_is_the_message_after_the_excluded_socket() {
        let p = publication(Kind::Text, b"1.2\n{\"event\":\"e\"}");
        assert_eq!(&p.payload(Format::Pusher)[..], b"{\"event\":\"e\"}");
        let (head, rest) = p.frame(Format::Pusher);
        let mut whole = head.to_vec();
        whole.extend_from_slice(rest.as_deref().unwrap_or_default());
        assert_eq!(&whole[..], b"\x81\x0d{\"event\":\"e\"}");
        let again = p.frame(Format::Pusher);
        assert_eq!(head.as_ptr(), again.0.as_ptr(), "encoded once, shared");
        assert!(p.excludes(b"1.2"));
        assert!(!p.excludes(b"1.20"));
        assert!(!p.excludes(b"1."));
        assert!(!p.excludes(b""));
        let open = publication(Kind::Text, b"\n{}");
        assert!(!open.excludes(b""));
        assert_eq!(&open.payload(Format::Pusher)[..], b"{}");
    }

    #[test]
    fn a_receipt_sums_the_hubs_reports() {
        let (receipt, mut rx) = Receipt::new();
        receipt.expect(2);
        receipt.report(3);
        assert!(rx.try_recv().is_err());
        receipt.report(4);
        assert_eq!(rx.try_recv().unwrap(), 7);
        let (none, mut rx) = Receipt::new();
        none.expect(0);
        assert_eq!(rx.try_recv().unwrap(), 0);
    }
}
