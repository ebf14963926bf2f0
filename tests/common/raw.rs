//! A raw WebSocket peer for frames no library will send: any opcode, FIN and
//! RSV bits, masked or not, any length encoding, split into writes of any size.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::BOUND;

pub const CONT: u8 = 0x0;
pub const TEXT: u8 = 0x1;
pub const BINARY: u8 = 0x2;
pub const CLOSE: u8 = 0x8;
pub const PING: u8 = 0x9;
pub const PONG: u8 = 0xA;

const MASK: [u8; 4] = [0x37, 0xFA, 0x21, 0x3D];

/// How to encode a payload length (RFC 6455 section 5.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Len {
    /// The shortest encoding, as the RFC requires of senders.
    Minimal,
    /// Force the 16-bit form.
    U16,
    /// Force the 64-bit form.
    U64,
}

/// One frame to put on the wire.
#[derive(Debug, Clone)]
pub struct Frame {
    pub fin: bool,
    pub rsv: u8,
    pub opcode: u8,
    pub masked: bool,
    pub len: Len,
    pub payload: Vec<u8>,
}

impl Frame {
    pub fn new(opcode: u8, payload: impl Into<Vec<u8>>) -> Frame {
        Frame {
            fin: true,
            rsv: 0,
            opcode,
            masked: true,
            len: Len::Minimal,
            payload: payload.into(),
        }
    }
    pub fn text(payload: impl Into<Vec<u8>>) -> Frame {
        Frame::new(TEXT, payload)
    }
    pub fn binary(payload: impl Into<Vec<u8>>) -> Frame {
        Frame::new(BINARY, payload)
    }
    pub fn cont(payload: impl Into<Vec<u8>>) -> Frame {
        Frame::new(CONT, payload)
    }
    pub fn close(code: u16, reason: &str) -> Frame {
        let mut payload = code.to_be_bytes().to_vec();
        payload.extend_from_slice(reason.as_bytes());
        Frame::new(CLOSE, payload)
    }
    pub fn fin(mut self, fin: bool) -> Frame {
        self.fin = fin;
        self
    }
    pub fn rsv(mut self, rsv: u8) -> Frame {
        self.rsv = rsv;
        self
    }
    pub fn unmasked(mut self) -> Frame {
        self.masked = false;
        self
    }
    pub fn len(mut self, len: Len) -> Frame {
        self.len = len;
        self
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.payload.len() + 14);
        out.push((u8::from(self.fin) << 7) | ((self.rsv & 7) << 4) | (self.opcode & 0x0F));
        let mask_bit = if self.masked { 0x80 } else { 0 };
        let n = self.payload.len();
        match self.len {
            Len::Minimal if n < 126 => out.push(mask_bit | n as u8),
            Len::Minimal | Len::U16 if n <= 0xFFFF => {
                out.push(mask_bit | 126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            _ => {
                out.push(mask_bit | 127);
                out.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        if self.masked {
            out.extend_from_slice(&MASK);
            out.extend(
                self.payload
                    .iter()
                    .enumerate()
                    .map(|(i, b)| b ^ MASK[i % 4]),
            );
        } else {
            out.extend_from_slice(&self.payload);
        }
        out
    }
}

/// A frame as the server sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    pub fin: bool,
    pub rsv: u8,
    pub opcode: u8,
    pub masked: bool,
    pub payload: Vec<u8>,
}

impl Received {
    /// The close code of a close frame, if it carried one.
    pub fn close_code(&self) -> Option<u16> {
        (self.opcode == CLOSE && self.payload.len() >= 2)
            .then(|| u16::from_be_bytes([self.payload[0], self.payload[1]]))
    }
}

/// What reading from the server produced.
#[derive(Debug, PartialEq, Eq)]
pub enum Read {
    Frame(Received),
    /// The server closed the TCP connection.
    Eof,
}

/// A raw peer with a completed opening handshake.
pub struct RawClient {
    pub stream: TcpStream,
    buf: Vec<u8>,
    head: String,
}

impl RawClient {
    /// Connects and performs the opening handshake with `extra` header lines.
    pub async fn connect_with(addr: SocketAddr, path: &str, extra: &[&str]) -> RawClient {
        let (stream, status, head) = handshake(addr, path, extra).await;
        assert_eq!(status, 101, "handshake refused:\n{head}");
        RawClient {
            stream,
            buf: Vec::new(),
            head,
        }
    }

    /// The server's handshake response head (status line and headers).
    pub fn head(&self) -> &str {
        &self.head
    }

    pub async fn connect(addr: SocketAddr) -> RawClient {
        RawClient::connect_with(addr, "/", &[]).await
    }

    pub async fn send(&mut self, frame: &Frame) {
        self.write(&frame.encode()).await;
    }

    pub async fn write(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.expect("write");
    }

    /// Writes `bytes` in pieces of `size`, flushing each, so the server sees
    /// many small reads. Stops quietly at the first failed write: a server
    /// that fails the connection part-way may close before the last piece,
    /// and what it answered is for the test's next read to judge.
    pub async fn write_split(&mut self, bytes: &[u8], size: usize) {
        for piece in bytes.chunks(size.max(1)) {
            if self.stream.write_all(piece).await.is_err() || self.stream.flush().await.is_err() {
                return;
            }
        }
    }

    /// The next frame (pings included) or EOF, within [`BOUND`].
    pub async fn read(&mut self) -> Read {
        self.read_within(BOUND)
            .await
            .expect("nothing from the server within the bound")
    }

    /// Like [`RawClient::read`], but `None` if nothing arrives within `wait`.
    pub async fn read_within(&mut self, wait: Duration) -> Option<Read> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Some((frame, used)) = parse(&self.buf) {
                self.buf.drain(..used);
                return Some(Read::Frame(frame));
            }
            let mut chunk = vec![0u8; 64 * 1024];
            let n = match tokio::time::timeout_at(deadline, self.stream.read(&mut chunk)).await {
                Err(_) => return None,
                Ok(Ok(n)) => n,
                // A reset after the server's close counts as the end, too.
                Ok(Err(_)) => 0,
            };
            if n == 0 {
                return Some(Read::Eof);
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// Writes `bytes` while reading `count` frames (pings skipped), all within
    /// [`BOUND`]. Reading as we write keeps a large exchange from deadlocking
    /// on full socket buffers when the server echoes before we finish.
    pub async fn exchange(&mut self, bytes: &[u8], count: usize) -> Vec<Received> {
        let (mut reader, mut writer) = self.stream.split();
        let buf = &mut self.buf;
        let write = async {
            writer.write_all(bytes).await.expect("write");
        };
        let read = async {
            let mut frames = Vec::with_capacity(count);
            let mut chunk = vec![0u8; 256 * 1024];
            while frames.len() < count {
                let mut at = 0;
                while frames.len() < count {
                    let Some((frame, used)) = parse(&buf[at..]) else {
                        break;
                    };
                    at += used;
                    if frame.opcode != PING {
                        frames.push(frame);
                    }
                }
                buf.drain(..at);
                if frames.len() == count {
                    break;
                }
                let n = reader.read(&mut chunk).await.expect("read");
                assert!(
                    n > 0,
                    "connection ended after {} of {count} frames",
                    frames.len()
                );
                buf.extend_from_slice(&chunk[..n]);
            }
            frames
        };
        let ((), frames) = tokio::time::timeout(BOUND, async { tokio::join!(write, read) })
            .await
            .expect("exchange did not complete within the bound");
        frames
    }

    /// The next frame that is not a ping (heartbeats arrive at any time).
    pub async fn next_frame(&mut self) -> Received {
        loop {
            match self.read().await {
                Read::Frame(f) if f.opcode == PING => continue,
                Read::Frame(f) => return f,
                Read::Eof => panic!("connection closed while expecting a frame"),
            }
        }
    }

    /// Expects the server to fail the connection: a close frame with `code`,
    /// then the end of the TCP connection, with no data frame before the close
    /// and nothing at all after it (RFC 6455 section 5.5.1: no frame follows a
    /// close).
    pub async fn expect_close(&mut self, code: u16) {
        let frame = self.next_frame().await;
        assert_eq!(frame.opcode, CLOSE, "expected close {code}, got {frame:?}");
        assert_eq!(
            frame.close_code(),
            Some(code),
            "close payload {:?}",
            frame.payload
        );
        self.expect_nothing_then_eof().await;
    }

    /// Expects the TCP connection to end with no frame at all before it: what
    /// must follow a close frame from the server.
    pub async fn expect_nothing_then_eof(&mut self) {
        match self.read().await {
            Read::Eof => {}
            Read::Frame(f) => panic!("frame after the server's close: {f:?}"),
        }
    }

    /// Writes several frames in one write, so the server reads them together.
    pub async fn send_all(&mut self, frames: &[Frame]) {
        let wire: Vec<u8> = frames.iter().flat_map(Frame::encode).collect();
        self.write(&wire).await;
    }

    /// The next frame that is neither a ping nor a pong (heartbeats, and pongs
    /// the test does not care about).
    pub async fn next_data_or_close(&mut self) -> Received {
        loop {
            let frame = self.next_frame().await;
            if frame.opcode != PONG {
                return frame;
            }
        }
    }

    /// Expects the TCP connection to end (skipping pings and pongs).
    pub async fn expect_eof(&mut self) {
        loop {
            match self.read().await {
                Read::Eof => return,
                Read::Frame(f) if f.opcode == PING || f.opcode == PONG => continue,
                Read::Frame(f) => panic!("expected the connection to end, got {f:?}"),
            }
        }
    }
}

/// Parses one unmasked-or-masked frame from the front of `buf`.
pub fn parse(buf: &[u8]) -> Option<(Received, usize)> {
    if buf.len() < 2 {
        return None;
    }
    let masked = buf[1] & 0x80 != 0;
    let (len, mut at) = match buf[1] & 0x7F {
        126 => {
            if buf.len() < 4 {
                return None;
            }
            (u16::from_be_bytes([buf[2], buf[3]]) as usize, 4)
        }
        127 => {
            if buf.len() < 10 {
                return None;
            }
            let mut b = [0u8; 8];
            b.copy_from_slice(&buf[2..10]);
            (u64::from_be_bytes(b) as usize, 10)
        }
        n => (n as usize, 2),
    };
    let mask = if masked {
        if buf.len() < at + 4 {
            return None;
        }
        let m = [buf[at], buf[at + 1], buf[at + 2], buf[at + 3]];
        at += 4;
        Some(m)
    } else {
        None
    };
    if buf.len() < at + len {
        return None;
    }
    let mut payload = buf[at..at + len].to_vec();
    if let Some(m) = mask {
        payload
            .iter_mut()
            .enumerate()
            .for_each(|(i, b)| *b ^= m[i % 4]);
    }
    Some((
        Received {
            fin: buf[0] & 0x80 != 0,
            rsv: (buf[0] >> 4) & 7,
            opcode: buf[0] & 0x0F,
            masked,
            payload,
        },
        at + len,
    ))
}

/// Sends an HTTP upgrade request with `extra` header lines (replacing the
/// defaults of the same name) and returns the stream, status and response head.
pub async fn handshake(addr: SocketAddr, path: &str, extra: &[&str]) -> (TcpStream, u16, String) {
    let mut headers = vec![
        format!("Host: {addr}"),
        "Upgrade: websocket".to_owned(),
        "Connection: Upgrade".to_owned(),
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==".to_owned(),
        "Sec-WebSocket-Version: 13".to_owned(),
    ];
    for line in extra {
        let name = line
            .split(':')
            .next()
            .unwrap_or_default()
            .to_ascii_lowercase();
        headers.retain(|h| !h.to_ascii_lowercase().starts_with(&format!("{name}:")));
        if line.contains(':') && !line.trim_end().ends_with(':') {
            headers.push((*line).to_owned());
        }
    }
    let request = format!("GET {path} HTTP/1.1\r\n{}\r\n\r\n", headers.join("\r\n"));
    let mut stream = tokio::time::timeout(BOUND, TcpStream::connect(addr))
        .await
        .expect("connect timed out")
        .expect("connect");
    stream.set_nodelay(true).expect("nodelay");
    stream
        .write_all(request.as_bytes())
        .await
        .expect("write request");
    // Read the response head byte by byte so no frame bytes are consumed.
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        let n = tokio::time::timeout(BOUND, stream.read(&mut byte))
            .await
            .expect("response timed out")
            .expect("read response");
        if n == 0 {
            break;
        }
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (stream, status, head)
}

/// Reads everything `stream` still delivers until the server closes it, within
/// [`BOUND`]. Returns the bytes and whether the end was reached.
pub async fn read_to_eof(stream: &mut TcpStream) -> (Vec<u8>, bool) {
    let deadline = tokio::time::Instant::now() + BOUND;
    let mut all = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut chunk)).await {
            Err(_) => return (all, false),
            Ok(Ok(0)) | Ok(Err(_)) => return (all, true),
            Ok(Ok(n)) => all.extend_from_slice(&chunk[..n]),
        }
    }
}
