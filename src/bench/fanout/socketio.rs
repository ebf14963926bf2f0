//! Just enough Socket.IO v4 (Engine.IO 4 over a WebSocket, no polling) for
//! a subscriber of a Socket.IO peer: join the default namespace, answer the
//! server's pings, and take each event's one string argument as the
//! delivery. Only for `--socketio`, so that a Socket.IO server can be
//! measured with the same subscribers and checks as everything else.
//!
//! Packets are text frames: `0{..}` open, `2` ping (we answer `3`), `40`
//! connect (we send it; the server answers `40{..}`), and `42["m","DATA"]`
//! an event. The bench's payloads are plain ASCII, so DATA needs no JSON
//! unescaping; anything else is not a delivery.

use bytes::Bytes;

use crate::bench::conn::Conn;
use crate::protocol::opcode;

/// Joins the default namespace.
pub(super) fn join(conn: &mut Conn) {
    conn.queue(opcode::TEXT, b"40");
}

/// The delivery a packet holds, if it is an event; answers pings.
pub(super) fn event(conn: &mut Conn, packet: &Bytes) -> Option<Bytes> {
    if packet.as_ref() == b"2" {
        conn.queue(opcode::TEXT, b"3");
        return None;
    }
    argument(packet)
}

/// The string argument of an event packet `42["NAME","ARG"]`, as a slice.
fn argument(packet: &Bytes) -> Option<Bytes> {
    let rest = packet.strip_prefix(b"42[\"")?;
    let comma = rest.iter().position(|&b| b == b',')?;
    let from = packet.len() - rest.len() + comma + 2;
    if !rest[comma..].starts_with(b",\"") || !packet.ends_with(b"\"]") {
        return None;
    }
    let end = packet.len() - 2;
    (from <= end).then(|| packet.slice(from..end))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_packet_yields_its_string_and_nothing_else_does() {
        let arg = |p: &'static [u8]| argument(&Bytes::from_static(p));
        assert_eq!(arg(b"42[\"m\",\"M0001\"]").as_deref(), Some(&b"M0001"[..]));
        assert_eq!(arg(b"42[\"m\",\"\"]").as_deref(), Some(&b""[..]));
        for other in [
            &b"0{\"sid\":\"x\"}"[..],
            b"40{\"sid\":\"x\"}",
            b"42[\"m\",1]",
            b"42[\"m\"]",
            b"3",
        ] {
            assert_eq!(argument(&Bytes::copy_from_slice(other)), None, "{other:?}");
        }
    }
}
