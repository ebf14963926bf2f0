//! A raw WebSocket peer for frames no library will send: any opcode, FIN and
//! RSV bits, masked or not, any length encoding, split into writes of any size.
//! Frames are built and read with `wsd::protocol::RawFrame`, which shows what
//! the server sent exactly as sent (opcode, bits, mask, close payload).

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use wsd::protocol::RawFrame;
use wsd::protocol::opcode::{CLOSE, PING, PONG};

use super::BOUND;

/// What reading from the server produced.
#[derive(Debug, PartialEq, Eq)]
pub enum Read {
    Frame(RawFrame),
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

    pub async fn send(&mut self, frame: &RawFrame) {
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
            if let Some((frame, used)) = RawFrame::parse(&self.buf) {
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
    pub async fn exchange(&mut self, bytes: &[u8], count: usize) -> Vec<RawFrame> {
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
                    let Some((frame, used)) = RawFrame::parse(&buf[at..]) else {
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
    pub async fn next_frame(&mut self) -> RawFrame {
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
        self.expect_close_for(code, format_args!("")).await;
    }

    /// [`RawClient::expect_close`], naming the case in a failure.
    pub async fn expect_close_for(&mut self, code: u16, case: std::fmt::Arguments<'_>) {
        let case = case.to_string();
        let frame = self.next_frame().await;
        assert_eq!(
            (frame.opcode, frame.close_code()),
            (CLOSE, Some(code)),
            "{case}: expected close {code}, got {frame:?}"
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
    pub async fn send_all(&mut self, frames: &[RawFrame]) {
        let mut wire = Vec::new();
        for frame in frames {
            frame.encode_into(&mut wire);
        }
        self.write(&wire).await;
    }

    /// The next frame that is neither a ping nor a pong (heartbeats, and pongs
    /// the test does not care about).
    pub async fn next_data_or_close(&mut self) -> RawFrame {
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

/// Sends an HTTP upgrade request with `extra` header lines (replacing the
/// defaults of the same name) and returns the stream, status and response head.
pub async fn handshake(addr: SocketAddr, path: &str, extra: &[&str]) -> (TcpStream, u16, String) {
    let stream = tokio::time::timeout(BOUND, TcpStream::connect(addr))
        .await
        .expect("connect timed out")
        .expect("connect");
    stream.set_nodelay(true).expect("nodelay");
    handshake_on(stream, addr, path, extra).await
}

/// [`handshake`] on a stream the caller connected (with socket options of
/// its own, say).
pub async fn handshake_on(
    mut stream: TcpStream,
    addr: SocketAddr,
    path: &str,
    extra: &[&str],
) -> (TcpStream, u16, String) {
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
