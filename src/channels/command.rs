//! JSON mode: the commands a client sends and the replies it gets.
//!
//! A command is one text message, `{"id":1,"op":"subscribe","channel":"c"}`;
//! its reply echoes the `id`: `{"id":1,"ok":true,...}` or
//! `{"id":1,"ok":false,"error":{"code":..,"message":..}}`.

use base64::Engine as _;
use bytes::Bytes;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::ChannelName;
use super::error::{ChannelError, ErrorCode};
use crate::engine::{Kind, Position};

#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    Subscribe {
        channel: ChannelName,
        since: Option<Position>,
    },
    Unsubscribe {
        channel: ChannelName,
    },
    Publish {
        channel: ChannelName,
        kind: Kind,
        data: Bytes,
    },
    History {
        channel: ChannelName,
        since: Option<Position>,
        limit: Option<usize>,
    },
    Presence {
        channel: ChannelName,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Command {
    /// Echoed in the reply; `null` when the client gave none.
    pub id: Value,
    pub op: Op,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw<'a> {
    #[serde(default)]
    id: Value,
    op: String,
    channel: Option<String>,
    since: Option<Position>,
    limit: Option<usize>,
    #[serde(borrow)]
    data: Option<&'a RawValue>,
    data_b64: Option<String>,
}

/// A command that could not be understood, with the `id` if it was readable.
#[derive(Debug, Clone, PartialEq)]
pub struct BadCommand {
    pub id: Value,
    pub error: ChannelError,
}

fn bad(message: impl Into<String>) -> ChannelError {
    ChannelError::new(ErrorCode::BadRequest, message)
}

/// Parses one command message.
pub fn parse(text: &[u8]) -> Result<Command, BadCommand> {
    let raw: Raw = serde_json::from_slice(text).map_err(|e| BadCommand {
        // The id of a command that does not parse as a whole, if it can be
        // found, so that the client can match the error to its request.
        id: serde_json::from_slice::<Map<String, Value>>(text)
            .ok()
            .and_then(|m| m.get("id").cloned())
            .unwrap_or(Value::Null),
        error: bad(format!("not a command: {e}")),
    })?;
    let id = raw.id.clone();
    op(raw)
        .map(|op| Command { id: id.clone(), op })
        .map_err(|error| BadCommand { id, error })
}

fn op(raw: Raw) -> Result<Op, ChannelError> {
    let channel = || -> Result<ChannelName, ChannelError> {
        let name = raw
            .channel
            .as_deref()
            .ok_or_else(|| bad(format!("{:?} needs a \"channel\"", raw.op)))?;
        ChannelName::parse(name).map_err(|e| bad(e.to_string()))
    };
    Ok(match raw.op.as_str() {
        "subscribe" => Op::Subscribe {
            channel: channel()?,
            since: raw.since.clone(),
        },
        "unsubscribe" => Op::Unsubscribe {
            channel: channel()?,
        },
        "publish" => {
            let (kind, data) = match payload(raw.data, raw.data_b64.as_deref()) {
                Some(payload) => payload?,
                None => {
                    return Err(bad(
                        "\"publish\" needs exactly one of \"data\" and \"data_b64\"",
                    ));
                }
            };
            Op::Publish {
                channel: channel()?,
                kind,
                data,
            }
        }
        "history" => Op::History {
            channel: channel()?,
            since: raw.since.clone(),
            limit: raw.limit,
        },
        "presence" => Op::Presence {
            channel: channel()?,
        },
        other => {
            return Err(bad(format!(
                "unknown op {other:?}; expected subscribe, unsubscribe, publish, history or \
                 presence"
            )));
        }
    })
}

/// A string `data` is text; any other JSON value is published as JSON.
/// What a `data` or `data_b64` field publishes (the `publish` command and
/// `POST /channels` alike): a JSON string as text, any other JSON value as
/// JSON, base64 as binary. `None` unless exactly one of them is given.
pub fn payload(
    data: Option<&RawValue>,
    data_b64: Option<&str>,
) -> Option<Result<(Kind, Bytes), ChannelError>> {
    Some(match (data, data_b64) {
        (Some(data), None) => {
            let text = data.get();
            if text.starts_with('"') {
                serde_json::from_str::<String>(text)
                    .map(|s| (Kind::Text, Bytes::from(s)))
                    .map_err(|e| bad(e.to_string()))
            } else {
                Ok((Kind::Json, Bytes::copy_from_slice(text.as_bytes())))
            }
        }
        (None, Some(b64)) => base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map(|b| (Kind::Binary, Bytes::from(b)))
            .map_err(|e| bad(format!("\"data_b64\" is not base64: {e}"))),
        _ => return None,
    })
}

/// `{"id":..,"ok":true, ...fields}`.
pub fn ok(id: &Value, fields: Value) -> Vec<u8> {
    let mut map = Map::new();
    map.insert("id".into(), id.clone());
    map.insert("ok".into(), Value::Bool(true));
    if let Value::Object(fields) = fields {
        map.extend(fields);
    }
    serde_json::to_vec(&Value::Object(map)).unwrap_or_default()
}

/// `{"id":..,"ok":false,"error":{"code":..,"message":..}}`.
pub fn error(id: &Value, error: &ChannelError) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({"id": id, "ok": false, "error": error.to_json()}))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_parse() {
        let c =
            parse(br#"{"id":1,"op":"subscribe","channel":"c","since":{"offset":7,"epoch":"e"}}"#)
                .unwrap();
        assert_eq!(c.id, 1);
        assert_eq!(
            c.op,
            Op::Subscribe {
                channel: ChannelName::parse("c").unwrap(),
                since: Some(Position {
                    offset: 7,
                    epoch: "e".into()
                })
            }
        );
        let text = parse(br#"{"id":"a","op":"publish","channel":"c","data":"hi"}"#).unwrap();
        assert!(
            matches!(text.op, Op::Publish { kind: Kind::Text, ref data, .. } if &data[..] == b"hi")
        );
        let json = parse(br#"{"op":"publish","channel":"c","data":{"x": [1, 2]}}"#).unwrap();
        assert!(
            matches!(json.op, Op::Publish { kind: Kind::Json, ref data, .. } if &data[..] == br#"{"x": [1, 2]}"#)
        );
        assert_eq!(json.id, Value::Null);
        let bin = parse(br#"{"op":"publish","channel":"c","data_b64":"AP8="}"#).unwrap();
        assert!(
            matches!(bin.op, Op::Publish { kind: Kind::Binary, ref data, .. } if &data[..] == b"\x00\xff")
        );
    }

    #[test]
    fn bad_commands_keep_their_id() {
        for (text, id) in [
            (
                &br#"{"id":5,"op":"dance","channel":"c"}"#[..],
                Value::from(5),
            ),
            (br#"{"id":6,"op":"subscribe"}"#, Value::from(6)),
            (
                br#"{"id":7,"op":"subscribe","channel":"a b"}"#,
                Value::from(7),
            ),
            (br#"{"id":8,"op":"publish","channel":"c"}"#, Value::from(8)),
            (
                br#"{"id":9,"op":"subscribe","channel":"c","extra":1}"#,
                Value::from(9),
            ),
            (br#"not json"#, Value::Null),
        ] {
            let e = parse(text).unwrap_err();
            assert_eq!(e.id, id);
            assert_eq!(e.error.code, ErrorCode::BadRequest);
        }
    }
}
