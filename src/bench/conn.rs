//! The bench's own WebSocket client: a tokio `TcpStream`, a hand-written HTTP
//! upgrade, our strict [`Decoder`] for the server's frames and
//! [`encode_frame`] for ours.
//!
//! Why not awc (what `wsc` uses): the load generator shares a 2-core machine
//! with the server it measures, so every microsecond it spends per message is
//! taken from the server. This client does no allocation per message in the
//! steady state, batches frames into one write, and never blocks a write while
//! replies wait to be read (reads and writes are driven by readiness, so a
//! large window of in-flight messages cannot deadlock against the server).

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use base64::Engine;
use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt, Interest};
use tokio::net::{TcpSocket, TcpStream};

// What `--compress` offers: what browsers offer, as `wsc --compress` does.
use crate::client::OFFER;
use crate::protocol::deflate::{Compressor, SendSettings};
use crate::protocol::{
    CloseFrame, Decoder, Event, InflateParams, Role, Violation, close_payload, code, encode_frame,
    opcode,
};

use super::BenchError;

/// The longest HTTP upgrade response we read before giving up on it.
const MAX_RESPONSE_HEAD: usize = 16 * 1024;

/// Why one connection failed. Counted and sampled, never fatal to the run.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConnError {
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    #[error("handshake refused: {0}")]
    Handshake(String),
    #[error("the server closed the TCP connection")]
    Eof,
    /// The server's close frame, in [`crate::client::close_text`]'s words.
    #[error("the server sent {0}")]
    ServerClose(String),
    #[error("bad frame from the server: {0}")]
    Violation(#[from] Violation),
    /// An HTTP answer we cannot use (the fan-out bench's HTTP publisher).
    #[error("HTTP: {0}")]
    Http(String),
    /// A well-formed HTTP answer that is not 2xx: this status line.
    #[error("the server answered {0:?}")]
    Refused(String),
}

impl ConnError {
    /// The server closed the connection with `frame`.
    pub(crate) fn server_close(frame: &Option<CloseFrame>) -> ConnError {
        let (code, reason) = match frame {
            Some(f) => (Some(f.code), f.reason.as_str()),
            None => (None, ""),
        };
        ConnError::ServerClose(crate::client::close_text(code, reason))
    }
}

/// Where to connect, parsed once from a `ws://` URL and resolved once.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    /// The `Host` header: the URL's authority as written.
    pub(crate) host_header: String,
    /// Path and query of the request line.
    pub(crate) resource: String,
    pub(crate) addr: SocketAddr,
}

impl Target {
    /// Parses `url` (`ws://host[:port][/path][?query]`) and resolves its host,
    /// preferring IPv4 (source-address spreading works on 127.0.0.0/8).
    pub(crate) async fn resolve(url: &str) -> Result<Target, BenchError> {
        Target::resolve_as(url, "ws").await
    }

    /// [`Target::resolve`] for an `http://` URL: where the fan-out bench
    /// POSTs its publications.
    pub(crate) async fn resolve_http(url: &str) -> Result<Target, BenchError> {
        Target::resolve_as(url, "http").await
    }

    async fn resolve_as(url: &str, want: &'static str) -> Result<Target, BenchError> {
        let bad = |reason: &'static str| BenchError::BadUrl {
            url: url.to_owned(),
            reason,
        };
        let form = if want == "ws" {
            "expected ws://HOST[:PORT][/PATH]"
        } else {
            "expected http://HOST[:PORT][/PATH]"
        };
        let Some((scheme, rest)) = url.split_once("://") else {
            return Err(bad(form));
        };
        if !scheme.eq_ignore_ascii_case(want) {
            return Err(if want == "ws" {
                BenchError::Scheme(url.to_owned())
            } else {
                bad(form)
            });
        }
        let split = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, resource) = rest.split_at(split);
        let resource = match resource {
            "" => "/".to_owned(),
            r if r.starts_with('?') => format!("/{r}"),
            r => r.to_owned(),
        };
        if authority.is_empty() || authority.contains('@') {
            return Err(bad("expected a host (and no user info)"));
        }
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) if !p.contains(']') => {
                let port = p.parse::<u16>().map_err(|_| bad("bad port"))?;
                (h, port)
            }
            _ => (authority, 80),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
            .await
            .map_err(|source| BenchError::Resolve {
                host: host.to_owned(),
                source,
            })?
            .collect();
        let addr = addrs
            .iter()
            .find(|a| a.is_ipv4())
            .or(addrs.first())
            .copied()
            .ok_or_else(|| BenchError::Resolve {
                host: host.to_owned(),
                source: io::Error::new(io::ErrorKind::NotFound, "no address"),
            })?;
        Ok(Target {
            host_header: authority.to_owned(),
            resource,
            addr,
        })
    }
}

/// A small xorshift generator for masks and handshake keys. RFC 6455 wants
/// masks an intermediary cannot predict; a benchmark on loopback only needs
/// them to vary, and a CSPRNG per frame would be a cost the server pays for.
#[derive(Debug, Clone)]
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Rng {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        Rng((seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ nanos) | 1)
    }

    pub(crate) fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
}

/// One open WebSocket connection, client side.
pub(crate) struct Conn {
    stream: TcpStream,
    decoder: Decoder,
    /// Bytes read and not yet decoded.
    input: Bytes,
    read_buf: BytesMut,
    read_chunk: usize,
    /// Encoded frames not yet written; `written` of them already are.
    out: Vec<u8>,
    written: usize,
    rng: Rng,
    /// permessage-deflate, when offered and agreed: compresses our messages.
    compressor: Option<Box<Compressor>>,
}

impl Conn {
    /// Connects (from `source` when given), performs the HTTP upgrade and
    /// checks `101` and `Sec-WebSocket-Accept`, all within `timeout`. With
    /// `compress`, offers permessage-deflate and fails if it is not agreed.
    pub(crate) async fn open(
        target: &Target,
        source: Option<IpAddr>,
        timeout: Duration,
        max_message: usize,
        seed: u64,
        compress: bool,
    ) -> Result<Conn, ConnError> {
        tokio::time::timeout(
            timeout,
            Conn::open_inner(target, source, max_message, seed, compress),
        )
        .await
        .map_err(|_| ConnError::Timeout(timeout))?
    }

    async fn open_inner(
        target: &Target,
        source: Option<IpAddr>,
        max_message: usize,
        seed: u64,
        compress: bool,
    ) -> Result<Conn, ConnError> {
        let socket = if target.addr.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        if let Some(ip) = source {
            socket.bind(SocketAddr::new(ip, 0))?;
        }
        let mut stream = socket.connect(target.addr).await?;
        stream.set_nodelay(true)?;
        let mut rng = Rng::new(seed);
        let mut key_bytes = [0u8; 16];
        key_bytes[..8].copy_from_slice(&rng.next().to_ne_bytes());
        key_bytes[8..].copy_from_slice(&rng.next().to_ne_bytes());
        let key = base64::engine::general_purpose::STANDARD.encode(key_bytes);
        let offer = if compress {
            format!("Sec-WebSocket-Extensions: {}\r\n", OFFER.header_value())
        } else {
            String::new()
        };
        let request = format!(
            "GET {} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n{offer}\r\n",
            target.resource, target.host_header
        );
        stream.write_all(request.as_bytes()).await?;

        let mut head = BytesMut::with_capacity(1024);
        let end = loop {
            if let Some(pos) = head.windows(4).position(|w| w == b"\r\n\r\n") {
                break pos + 4;
            }
            if head.len() >= MAX_RESPONSE_HEAD {
                return Err(ConnError::Handshake("response head too long".into()));
            }
            if stream.read_buf(&mut head).await? == 0 {
                return Err(ConnError::Handshake(
                    "connection closed during the handshake".into(),
                ));
            }
        };
        let rest = head.split_off(end);
        check_response(&head, key.as_bytes())?;
        let mut decoder = Decoder::new(Role::Client, max_message);
        let mut compressor = None;
        if compress {
            let params = OFFER
                .validate_response(header_values(&head, "sec-websocket-extensions"))
                .map_err(|e| ConnError::Handshake(format!("permessage-deflate: {e}")))?
                .ok_or_else(|| {
                    ConnError::Handshake("the server declined permessage-deflate".into())
                })?;
            decoder = decoder.with_inflate(InflateParams {
                window_bits: params.server_max_window_bits,
                no_context_takeover: params.server_no_context_takeover,
            });
            // Level 1 and everything compressed: the cheapest client whose
            // every message exercises the server's inflater.
            let settings = SendSettings {
                level: 1,
                min_size: 0,
            };
            compressor = Compressor::new(settings, &params, false)
                .map_err(|e| ConnError::Handshake(format!("permessage-deflate: {e}")))?
                .map(Box::new);
        }
        let read_chunk = (max_message / 2).clamp(4096, 64 * 1024);
        Ok(Conn {
            stream,
            decoder,
            compressor,
            input: rest.freeze(),
            read_buf: BytesMut::new(),
            read_chunk,
            out: Vec::new(),
            written: 0,
            rng,
        })
    }

    /// Queues one masked frame (a data frame compressed, when agreed);
    /// [`Conn::io`] (or [`Conn::flush`]) writes it.
    pub(crate) fn queue(&mut self, op: u8, payload: &[u8]) {
        let mask = (self.rng.next() as u32).to_ne_bytes();
        if op < opcode::CLOSE
            && let Some(c) = &mut self.compressor
            && let Some(frame) = c.frame(op, &[payload], Some(mask))
        {
            self.out.extend_from_slice(&frame);
            return;
        }
        encode_frame(&mut self.out, op, payload, Some(mask));
    }

    /// Queues a close frame with `code` 1000.
    pub(crate) fn queue_close(&mut self) {
        self.queue(opcode::CLOSE, &close_payload(code::NORMAL, ""));
    }

    /// The next complete event from bytes already read, if there is one.
    /// Pings are answered here, so no mode can forget to.
    pub(crate) fn next_event(&mut self) -> Result<Option<Event>, ConnError> {
        if self.input.is_empty() {
            return Ok(None);
        }
        let event = self.decoder.decode(&mut self.input)?;
        if let Some(Event::Ping(payload)) = &event {
            let payload = payload.clone();
            self.queue(opcode::PONG, &payload);
        }
        Ok(event)
    }

    /// Bytes queued and not yet written: what a sender checks before it
    /// queues more, so a server that stops reading cannot grow our memory.
    pub(crate) fn backlog(&self) -> usize {
        self.out.len() - self.written
    }

    /// Writes as much queued output as the socket takes without waiting.
    pub(crate) fn flush(&mut self) -> Result<(), ConnError> {
        while self.written < self.out.len() {
            match self.stream.try_write(&self.out[self.written..]) {
                Ok(n) => self.written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) => return Err(e.into()),
            }
        }
        self.out.clear();
        self.written = 0;
        Ok(())
    }

    /// Waits until new bytes have been read (writing queued output meanwhile).
    /// Call once [`Conn::next_event`] returns `None`. Cancel-safe: all state
    /// changes happen in non-blocking calls after the only await point.
    pub(crate) async fn io(&mut self) -> Result<(), ConnError> {
        loop {
            self.flush()?;
            let interest = if self.out.is_empty() {
                Interest::READABLE
            } else {
                Interest::READABLE | Interest::WRITABLE
            };
            let ready = self.stream.ready(interest).await?;
            if ready.is_readable() {
                self.read_buf.reserve(self.read_chunk);
                match self.stream.try_read_buf(&mut self.read_buf) {
                    Ok(0) => return Err(ConnError::Eof),
                    Ok(_) => {
                        let fresh = self.read_buf.split().freeze();
                        self.input = if self.input.is_empty() {
                            fresh
                        } else {
                            let mut joined = BytesMut::from(&self.input[..]);
                            joined.extend_from_slice(&fresh);
                            joined.freeze()
                        };
                        return Ok(());
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
    }

    /// The client's half of the closing handshake: sends close 1000, then
    /// waits for the server's close frame and for the server to close TCP
    /// (RFC 6455 section 7.1.1: the server closes first). Data frames still
    /// arriving are discarded.
    pub(crate) async fn close(&mut self, timeout: Duration) -> Result<(), ConnError> {
        self.queue_close();
        let handshake = async {
            let mut got_close = false;
            loop {
                while let Some(event) = self.next_event()? {
                    if let Event::Close(_) = event {
                        got_close = true;
                    }
                }
                match self.io().await {
                    Ok(()) => {}
                    Err(ConnError::Eof) if got_close => return Ok(()),
                    Err(e) => return Err(e),
                }
            }
        };
        tokio::time::timeout(timeout, handshake)
            .await
            .map_err(|_| ConnError::Timeout(timeout))?
    }
}

/// The values of every `name` header (lowercase) in a response head.
fn header_values<'a>(head: &'a [u8], name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
    std::str::from_utf8(head)
        .unwrap_or_default()
        .split("\r\n")
        .filter_map(move |line| {
            let (n, value) = line.split_once(':')?;
            n.trim().eq_ignore_ascii_case(name).then(|| value.trim())
        })
}

/// Checks the status line and `Sec-WebSocket-Accept` of an upgrade response.
fn check_response(head: &[u8], key: &[u8]) -> Result<(), ConnError> {
    let text = String::from_utf8_lossy(head);
    let status = text.split("\r\n").next().unwrap_or_default();
    let mut parts = status.split_whitespace();
    let _version = parts.next();
    if parts.next() != Some("101") {
        return Err(ConnError::Handshake(format!("server answered {status:?}")));
    }
    let expected = actix_http::ws::hash_key(key);
    let accept = header_values(head, "sec-websocket-accept").next();
    match accept {
        Some(value) if value.as_bytes() == expected => Ok(()),
        Some(value) => Err(ConnError::Handshake(format!(
            "wrong Sec-WebSocket-Accept {value:?}"
        ))),
        None => Err(ConnError::Handshake("no Sec-WebSocket-Accept".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn urls_parse_to_host_header_resource_and_address() {
        let t = Target::resolve("ws://127.0.0.1:9001").await.expect("url");
        assert_eq!(t.addr, "127.0.0.1:9001".parse().expect("addr"));
        assert_eq!(t.resource, "/");
        assert_eq!(t.host_header, "127.0.0.1:9001");
        let t = Target::resolve("ws://127.0.0.1/chat?x=1")
            .await
            .expect("url");
        assert_eq!(t.addr.port(), 80);
        assert_eq!(t.resource, "/chat?x=1");
        let t = Target::resolve("ws://[::1]:9/").await.expect("url");
        assert_eq!(t.addr, "[::1]:9".parse().expect("addr"));
        assert!(matches!(
            Target::resolve("wss://localhost").await,
            Err(BenchError::Scheme(_))
        ));
        assert!(matches!(
            Target::resolve("localhost:9").await,
            Err(BenchError::BadUrl { .. })
        ));
        assert!(matches!(
            Target::resolve("ws://h:notaport/").await,
            Err(BenchError::BadUrl { .. })
        ));
        let t = Target::resolve_http("http://127.0.0.1:9/channels/a")
            .await
            .expect("url");
        assert_eq!((t.addr.port(), t.resource.as_str()), (9, "/channels/a"));
        assert!(matches!(
            Target::resolve_http("ws://127.0.0.1:9/").await,
            Err(BenchError::BadUrl { .. })
        ));
    }

    #[test]
    fn responses_need_101_and_the_right_accept() {
        let key = b"dGhlIHNhbXBsZSBub25jZQ==";
        let ok = b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\n\
                   sec-websocket-accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";
        assert!(check_response(ok, key).is_ok());
        let wrong = b"HTTP/1.1 101 Switching Protocols\r\nSec-WebSocket-Accept: nope\r\n\r\n";
        assert!(check_response(wrong, key).is_err());
        let busy = b"HTTP/1.1 503 Service Unavailable\r\n\r\n";
        assert!(check_response(busy, key).is_err());
    }
}
