//! The opening handshake's rules (RFC 6455 section 4.2), as pure functions of
//! the request's method and headers, so each refusal is unit-testable and the
//! HTTP layer only turns a [`Refusal`] into a response.

use base64::Engine;
use sha1::{Digest, Sha1};

/// Why an upgrade request is refused, with the status section 4.2.2 asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No `Upgrade: websocket`: a plain HTTP request to the WebSocket path.
    NotWebSocket,
    /// The upgrade did not use GET.
    Method,
    /// `Connection` does not list `upgrade`.
    NoConnectionUpgrade,
    /// `Sec-WebSocket-Version` is missing or not 13.
    Version,
    /// `Sec-WebSocket-Key` is missing or not 16 bytes of base64.
    Key,
}

impl Refusal {
    /// The HTTP status to answer with.
    pub fn status(self) -> u16 {
        match self {
            Refusal::NotWebSocket | Refusal::Version => 426,
            Refusal::Method => 405,
            Refusal::NoConnectionUpgrade | Refusal::Key => 400,
        }
    }

    /// The response body: one line a person can act on.
    pub fn message(self) -> &'static str {
        match self {
            Refusal::NotWebSocket => {
                "This is a WebSocket endpoint: connect with a WebSocket client, e.g. wscat -c ws://HOST:PORT\n"
            }
            Refusal::Method => "WebSocket upgrades must use GET\n",
            Refusal::NoConnectionUpgrade => "missing `Connection: Upgrade`\n",
            Refusal::Version => {
                "unsupported Sec-WebSocket-Version; this server speaks version 13\n"
            }
            Refusal::Key => "missing or malformed Sec-WebSocket-Key (16 bytes, base64)\n",
        }
    }
}

/// The parts of an upgrade request the rules look at. Header fields that may
/// repeat are given as every value received.
#[derive(Debug, Default, Clone, Copy)]
pub struct UpgradeRequest<'a> {
    pub method_is_get: bool,
    pub upgrade: &'a [&'a [u8]],
    pub connection: &'a [&'a [u8]],
    pub version: Option<&'a [u8]>,
    pub key: Option<&'a [u8]>,
}

/// Checks an upgrade request, in the order that gives the most useful answer
/// (a browser that forgot the upgrade hears that first). `Ok` carries the
/// `Sec-WebSocket-Accept` value for the 101 response.
pub fn check(req: &UpgradeRequest<'_>) -> Result<String, Refusal> {
    if !has_token(req.upgrade, "websocket") {
        return Err(Refusal::NotWebSocket);
    }
    if !req.method_is_get {
        return Err(Refusal::Method);
    }
    if !has_token(req.connection, "upgrade") {
        return Err(Refusal::NoConnectionUpgrade);
    }
    if req.version != Some(b"13".as_slice()) {
        return Err(Refusal::Version);
    }
    match req.key {
        Some(key) if is_valid_key(key) => Ok(accept_key(key)),
        _ => Err(Refusal::Key),
    }
}

/// Whether any of `values`, as a comma-separated list, holds `token`
/// (case-insensitive, as header tokens are).
fn has_token(values: &[&[u8]], token: &str) -> bool {
    values.iter().any(|v| {
        v.split(|b| *b == b',')
            .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
    })
}

/// A key is 16 random bytes in base64: 22 significant characters and `==`.
fn is_valid_key(key: &[u8]) -> bool {
    key.len() == 24
        && key.ends_with(b"==")
        && key[..22]
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'+' || *b == b'/')
}

/// `Sec-WebSocket-Accept`: base64(SHA-1(key + the RFC's GUID)), section 4.2.2.
pub fn accept_key(key: &[u8]) -> String {
    const GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
    let mut sha = Sha1::new();
    sha.update(key);
    sha.update(GUID);
    base64::engine::general_purpose::STANDARD.encode(sha.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &[u8] = b"dGhlIHNhbXBsZSBub25jZQ==";

    fn valid() -> UpgradeRequest<'static> {
        UpgradeRequest {
            method_is_get: true,
            upgrade: &[b"websocket"],
            connection: &[b"keep-alive, Upgrade"],
            version: Some(b"13"),
            key: Some(KEY),
        }
    }

    #[test]
    fn the_rfc_example_key_gets_the_rfc_example_accept() {
        // RFC 6455 section 1.3.
        assert_eq!(accept_key(KEY), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
        assert_eq!(
            check(&valid()).as_deref(),
            Ok("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
        );
    }

    #[test]
    fn each_fault_gets_its_own_refusal() {
        let cases: [(UpgradeRequest, Refusal); 6] = [
            (
                UpgradeRequest {
                    upgrade: &[],
                    ..valid()
                },
                Refusal::NotWebSocket,
            ),
            (
                UpgradeRequest {
                    method_is_get: false,
                    ..valid()
                },
                Refusal::Method,
            ),
            (
                UpgradeRequest {
                    connection: &[b"keep-alive"],
                    ..valid()
                },
                Refusal::NoConnectionUpgrade,
            ),
            (
                UpgradeRequest {
                    version: Some(b"8"),
                    ..valid()
                },
                Refusal::Version,
            ),
            (
                UpgradeRequest {
                    key: Some(b"short=="),
                    ..valid()
                },
                Refusal::Key,
            ),
            (
                UpgradeRequest {
                    key: None,
                    ..valid()
                },
                Refusal::Key,
            ),
        ];
        for (req, want) in cases {
            assert_eq!(check(&req), Err(want), "{req:?}");
        }
        assert_eq!(Refusal::NotWebSocket.status(), 426);
        assert_eq!(Refusal::Method.status(), 405);
        assert_eq!(Refusal::Key.status(), 400);
    }

    #[test]
    fn header_tokens_are_case_insensitive_and_may_repeat() {
        let req = UpgradeRequest {
            upgrade: &[b"h2c", b"WebSocket"],
            connection: &[b"close", b" UPGRADE "],
            ..valid()
        };
        assert!(check(&req).is_ok());
    }
}
