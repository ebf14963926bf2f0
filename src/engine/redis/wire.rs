//! What wsd writes into Redis pub/sub messages and stream entries, and reads
//! back. One format for both, so a publication read from history is the
//! same bytes that went out live:
//!
//! - a publication: `P{offset}:{time_ms}:{kind}:{epoch}:{origin}:{data}`,
//!   where kind is `t`, `b` or `j`, epoch is URL-safe base64 and origin is
//!   `{node}/{seq}` (so the publishing node can count its local deliveries);
//! - a presence event: `J{member json}` or `L{member json}` (the
//!   presence scripts write these).
//!
//! Only the data may hold `:`; it comes last, so it is never scanned.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;

use crate::channels::ChannelName;
use crate::engine::{Kind, Member, Publication};

/// A decoded message.
#[derive(Debug)]
pub enum Message {
    Publication {
        publication: Arc<Publication>,
        origin: Origin,
    },
    Presence {
        join: bool,
        member: Member,
    },
}

/// Who published: a node and its publish sequence number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub node: String,
    pub seq: u64,
}

pub fn kind_char(kind: Kind) -> &'static str {
    match kind {
        Kind::Text => "t",
        Kind::Binary => "b",
        Kind::Json => "j",
    }
}

/// Decodes a message of `channel`. `None` for anything malformed (another
/// program writing into our prefix): it is logged and skipped by the caller.
/// The data is a slice of `message`, not a copy.
pub fn decode(channel: &ChannelName, message: Bytes) -> Option<Message> {
    let (&tag, rest) = message.split_first()?;
    match tag {
        b'P' => {
            // Five `:`-terminated fields, then the data.
            let mut fields: [&[u8]; 5] = [&[]; 5];
            let mut at = 1;
            for field in &mut fields {
                let len = message[at..].iter().position(|&b| b == b':')?;
                *field = &message[at..at + len];
                at += len + 1;
            }
            let [offset, time_ms, kind, epoch, origin] = fields;
            let kind = match kind {
                b"t" => Kind::Text,
                b"b" => Kind::Binary,
                b"j" => Kind::Json,
                _ => return None,
            };
            let (node, seq) = std::str::from_utf8(origin).ok()?.split_once('/')?;
            let origin = Origin {
                node: node.to_owned(),
                seq: seq.parse().ok()?,
            };
            let epoch: Arc<str> = Arc::from(std::str::from_utf8(epoch).ok()?);
            let (offset, time_ms) = (number(offset)?, number(time_ms)?);
            let data = message.slice(at..);
            if kind != Kind::Binary && std::str::from_utf8(&data).is_err() {
                return None;
            }
            let mut publication =
                Publication::new(channel.clone(), offset, epoch, kind, data, Instant::now());
            publication.time_ms = time_ms;
            Some(Message::Publication {
                publication: Arc::new(publication),
                origin,
            })
        }
        b'J' | b'L' => Some(Message::Presence {
            join: tag == b'J',
            member: serde_json::from_slice(rest).ok()?,
        }),
        _ => None,
    }
}

fn number(field: &[u8]) -> Option<u64> {
    std::str::from_utf8(field).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name() -> ChannelName {
        ChannelName::parse("c").unwrap()
    }

    #[test]
    fn a_publication_decodes_with_colons_in_its_data() {
        let m = decode(
            &name(),
            Bytes::from_static(b"P7:1700000000123:t:AbC-_d:n1/42:a:b:c"),
        )
        .unwrap();
        let Message::Publication {
            publication: p,
            origin,
        } = m
        else {
            panic!("not a publication");
        };
        assert_eq!(
            (p.offset, p.time_ms, p.kind, &*p.epoch),
            (7, 1700000000123, Kind::Text, "AbC-_d")
        );
        assert_eq!(&p.data[..], b"a:b:c");
        assert_eq!(
            origin,
            Origin {
                node: "n1".into(),
                seq: 42
            }
        );
    }

    #[test]
    fn presence_round_trips_and_junk_is_refused() {
        let member = Member {
            user: "ann".into(),
            conn: "n1-7".into(),
        };
        // As the presence scripts write them.
        let mut message = b"L".to_vec();
        message.extend_from_slice(serde_json::to_string(&member).unwrap().as_bytes());
        match decode(&name(), Bytes::from(message)) {
            Some(Message::Presence { join, member: m }) => {
                assert!(!join);
                assert_eq!(m, member);
            }
            other => panic!("{other:?}"),
        }
        for junk in [
            &b""[..],
            b"X",
            b"P1:2:t",
            b"Px:2:t:e:n/1:d",
            b"P1:2:q:e:n/1:d",
            b"P1:2:t:e:n/1:\xff",
        ] {
            assert!(
                decode(&name(), Bytes::copy_from_slice(junk)).is_none(),
                "{junk:?}"
            );
        }
    }
}
