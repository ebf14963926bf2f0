//! `wsc --compress` (permessage-deflate, RFC 7692), the real binary, against
//! wsd with compression on and off and against Python `websockets` as the
//! server. A relay between wsc and the server keeps every byte each way, so
//! the tests read the frames exactly as sent: the offer, the answer, and RSV1
//! with a small payload on the large messages in both directions. Something
//! that would fail if wsc sent (or was sent) uncompressed while claiming to
//! compress.

mod common;

use std::io::BufRead;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};

use common::tools;
use common::wsc::{finish, run, wsc};
use common::{BOUND, TestWsd, test_config};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use wsd::config::Compression;
use wsd::protocol::RawFrame;
use wsd::protocol::opcode::{BINARY, CLOSE, PING, PONG, TEXT};

const RSV1: u8 = 0b100;

/// A TCP relay for one connection that keeps a copy of every byte each way.
struct Tap {
    addr: SocketAddr,
    /// Client to server.
    up: Arc<Mutex<Vec<u8>>>,
    /// Server to client.
    down: Arc<Mutex<Vec<u8>>>,
}

impl Tap {
    async fn start(server: SocketAddr) -> Tap {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (up, down) = (Arc::default(), Arc::default());
        let (up_copy, down_copy) = (Arc::clone(&up), Arc::clone(&down));
        tokio::spawn(async move {
            let Ok((client, _)) = listener.accept().await else {
                return;
            };
            let Ok(server) = TcpStream::connect(server).await else {
                return;
            };
            let (client_read, client_write) = client.into_split();
            let (server_read, server_write) = server.into_split();
            tokio::join!(
                relay(client_read, server_write, up_copy),
                relay(server_read, client_write, down_copy),
            );
        });
        Tap { addr, up, down }
    }

    fn url(&self, path: &str) -> String {
        format!("ws://{}{path}", self.addr)
    }

    /// The HTTP head and the frames sent one way.
    fn read(record: &Mutex<Vec<u8>>) -> (String, Vec<RawFrame>) {
        let bytes = record.lock().expect("record").clone();
        let end = bytes
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("an HTTP head")
            + 4;
        let head = String::from_utf8_lossy(&bytes[..end]).to_ascii_lowercase();
        let mut frames = Vec::new();
        let mut at = end;
        while let Some((frame, used)) = RawFrame::parse(&bytes[at..]) {
            frames.push(frame);
            at += used;
        }
        assert_eq!(at, bytes.len(), "a partial frame at the end");
        (head, frames)
    }

    fn up(&self) -> (String, Vec<RawFrame>) {
        Tap::read(&self.up)
    }

    fn down(&self) -> (String, Vec<RawFrame>) {
        Tap::read(&self.down)
    }
}

/// Copies one direction, keeping what passed; ends with the connection.
async fn relay(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    record: Arc<Mutex<Vec<u8>>>,
) {
    let mut buf = vec![0; 64 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        record.lock().expect("record").extend_from_slice(&buf[..n]);
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}

/// The data frames among `frames` (text, binary, continuation).
fn data(frames: &[RawFrame]) -> Vec<&RawFrame> {
    frames.iter().filter(|f| f.opcode < CLOSE).collect()
}

/// 64 KiB of JSON-like text that DEFLATE shrinks well, on one line.
fn big_line() -> String {
    let mut line = String::from("[");
    let mut i = 0;
    while line.len() < 64 * 1024 {
        line.push_str(&format!(
            "{{\"symbol\":\"BTC-USD\",\"price\":{},\"seq\":{i}}},",
            40000 + i % 97
        ));
        i += 1;
    }
    line.push(']');
    line
}

fn wsd_with(compression: Compression) -> TestWsd {
    let mut config = test_config();
    config.session.compression = compression;
    TestWsd::start(config)
}

#[actix_web::test]
async fn compress_echoes_text_and_a_64_kib_message_compressed_both_ways() {
    let wsd = wsd_with(Compression::On);
    let tap = Tap::start(wsd.addr()).await;
    let big = big_line();
    let input = format!("hello\n{big}\n");
    let r = run(&["--compress", &tap.url("/")], input.as_bytes()).await;
    assert_eq!((r.code, r.stderr.as_str()), (0, ""));
    assert_eq!(
        r.stdout,
        format!("Server received: hello\nServer received: {big}\n")
    );

    let (request, frames) = tap.up();
    assert!(
        request
            .contains("sec-websocket-extensions: permessage-deflate; client_max_window_bits\r\n"),
        "{request}"
    );
    let sent = data(&frames);
    assert_eq!(sent.len(), 2, "{frames:?}");
    // Under 128 bytes: plain. The large one: compressed, RSV1 set.
    assert_eq!(
        (sent[0].rsv, sent[0].payload.as_slice()),
        (0, &b"hello"[..])
    );
    assert_eq!((sent[1].opcode, sent[1].rsv), (TEXT, RSV1));
    assert!(
        sent[1].payload.len() < big.len() / 4,
        "{} compressed bytes for {}",
        sent[1].payload.len(),
        big.len()
    );
    assert!(frames.iter().all(|f| f.mask.is_some()), "a client masks");

    let (response, frames) = tap.down();
    assert!(
        response.contains("sec-websocket-extensions: permessage-deflate"),
        "{response}"
    );
    let echoed = data(&frames);
    assert_eq!(echoed.len(), 2, "{frames:?}");
    assert_eq!(echoed[0].rsv, 0);
    assert_eq!(echoed[1].rsv, RSV1);
    assert!(echoed[1].payload.len() < big.len() / 4);
}

#[actix_web::test]
async fn compress_keeps_pings_binary_and_close_codes_working() {
    let wsd = wsd_with(Compression::On);
    let tap = Tap::start(wsd.addr()).await;
    let big = big_line();
    let input = format!("/ping abc\n{big}\n/close 4000 done\n");
    let r = run(
        &["--compress", "--slash", "-P", "--binary", &tap.url("/")],
        input.as_bytes(),
    )
    .await;
    // Pipe mode: pongs on stderr, the binary echo as a preview on stdout;
    // the server echoes our 4000, which is a normal ending.
    assert_eq!(r.code, 0, "stderr: {}", r.stderr);
    assert!(r.stderr.contains("[pong 3 bytes]"), "{}", r.stderr);
    assert!(
        r.stdout
            .starts_with(&format!("[binary {} bytes]", big.len())),
        "{}",
        r.stdout
    );

    let (_, frames) = tap.up();
    let kinds: Vec<(u8, u8)> = frames.iter().map(|f| (f.opcode, f.rsv)).collect();
    assert_eq!(kinds, [(PING, 0), (BINARY, RSV1), (CLOSE, 0)], "{frames:?}");
    assert_eq!(frames[2].close_code(), Some(4000));
    let (_, frames) = tap.down();
    assert!(frames.iter().any(|f| f.opcode == PONG && f.rsv == 0));
    assert!(frames.iter().any(|f| f.opcode == BINARY && f.rsv == RSV1));
}

#[actix_web::test]
async fn a_server_that_declines_gets_one_stderr_line_and_plain_frames() {
    let wsd = wsd_with(Compression::Off);
    let tap = Tap::start(wsd.addr()).await;
    let big = big_line();
    let r = run(
        &["--compress", &tap.url("/")],
        format!("{big}\n").as_bytes(),
    )
    .await;
    assert_eq!(r.code, 0);
    assert_eq!(
        r.stderr,
        "wsc: the server declined permessage-deflate; sending uncompressed\n"
    );
    assert_eq!(r.stdout, format!("Server received: {big}\n"));
    let (request, frames) = tap.up();
    assert!(request.contains("permessage-deflate"), "{request}");
    let sent = data(&frames);
    assert_eq!((sent.len(), sent[0].rsv), (1, 0));
    assert_eq!(sent[0].payload, big.as_bytes());
    let (response, _) = tap.down();
    assert!(!response.contains("sec-websocket-extensions"), "{response}");
}

#[actix_web::test]
async fn without_compress_nothing_is_offered_or_compressed() {
    let wsd = wsd_with(Compression::On);
    let tap = Tap::start(wsd.addr()).await;
    let big = big_line();
    let r = run(&[&tap.url("/")], format!("{big}\n").as_bytes()).await;
    assert_eq!((r.code, r.stderr.as_str()), (0, ""));
    assert_eq!(r.stdout, format!("Server received: {big}\n"));
    let (request, frames) = tap.up();
    assert!(!request.contains("sec-websocket-extensions"), "{request}");
    assert!(data(&frames).iter().all(|f| f.rsv == 0));
    let (_, frames) = tap.down();
    assert!(data(&frames).iter().all(|f| f.rsv == 0));
}

/// A one-connection server that answers the upgrade with `extensions` (if
/// any), sends `frames` as they are, and returns everything the client sent
/// after its request head, up to its close (or EOF).
async fn scripted_server(
    extensions: Option<&'static str>,
    frames: Vec<u8>,
) -> (SocketAddr, tokio::task::JoinHandle<Vec<u8>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let task = tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.expect("accept");
        let mut bytes = Vec::new();
        let mut buf = vec![0; 64 * 1024];
        let end = loop {
            if let Some(at) = bytes.windows(4).position(|w| w == b"\r\n\r\n") {
                break at + 4;
            }
            let n = stream.read(&mut buf).await.expect("read the request");
            assert!(n > 0, "no request");
            bytes.extend_from_slice(&buf[..n]);
        };
        let head = String::from_utf8_lossy(&bytes[..end]).into_owned();
        let key = head
            .lines()
            .find_map(|l| {
                let (name, value) = l.split_once(':')?;
                name.eq_ignore_ascii_case("sec-websocket-key")
                    .then(|| value.trim().to_owned())
            })
            .expect("a key");
        let accept = actix_http::ws::hash_key(key.as_bytes());
        let mut response = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: {}\r\n",
            String::from_utf8_lossy(&accept)
        );
        if let Some(ext) = extensions {
            response.push_str(&format!("Sec-WebSocket-Extensions: {ext}\r\n"));
        }
        response.push_str("\r\n");
        stream.write_all(response.as_bytes()).await.expect("answer");
        stream.write_all(&frames).await.expect("frames");
        let mut sent = bytes.split_off(end);
        // Until the client's close frame is in, or it hangs up.
        let _ = tokio::time::timeout(BOUND, async {
            while !has_close(&sent) {
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => sent.extend_from_slice(&buf[..n]),
                }
            }
        })
        .await;
        sent
    });
    (addr, task)
}

fn frames_in(bytes: &[u8]) -> Vec<RawFrame> {
    let mut frames = Vec::new();
    let mut at = 0;
    while let Some((frame, used)) = RawFrame::parse(&bytes[at..]) {
        frames.push(frame);
        at += used;
    }
    frames
}

fn has_close(bytes: &[u8]) -> bool {
    frames_in(bytes).iter().any(|f| f.opcode == CLOSE)
}

#[actix_web::test]
async fn answers_the_rfc_forbids_fail_the_handshake() {
    // An extension we did not offer (RFC 6455 section 4.1), and a parameter
    // we did not offer (RFC 7692 section 7.1).
    for (args, answer, why) in [
        (&[][..], "permessage-deflate", "not offered"),
        (
            &["--compress"][..],
            "permessage-deflate; x_bits=3",
            "permessage-deflate",
        ),
        (
            &["--compress"][..],
            "permessage-deflate; client_max_window_bits=8",
            "zlib needs at least 9",
        ),
    ] {
        let (addr, _server) = scripted_server(Some(answer), Vec::new()).await;
        let url = format!("ws://{addr}/");
        let mut all = args.to_vec();
        all.push(&url);
        let r = run(&all, b"").await;
        assert_eq!(r.code, 1, "{answer}: {}", r.stderr);
        assert!(
            r.stderr.contains("handshake failed") && r.stderr.contains(why),
            "{answer}: {}",
            r.stderr
        );
    }
}

#[actix_web::test]
async fn a_compressed_frame_without_the_extension_fails_with_1002() {
    let frame = RawFrame::text("x").rsv(RSV1).unmasked().encode();
    let (addr, server) = scripted_server(None, frame).await;
    // stdin stays open: the server's frame alone ends wsc.
    let r = finish(wsc(&[&format!("ws://{addr}/")]).spawn().expect("spawn")).await;
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert!(r.stderr.contains("protocol error"), "{}", r.stderr);
    let sent = server.await.expect("server");
    let close = frames_in(&sent).into_iter().find(|f| f.opcode == CLOSE);
    assert_eq!(close.and_then(|f| f.close_code()), Some(1002));
}

#[actix_web::test]
async fn a_bomb_from_the_server_stops_at_max_message_size_with_1009() {
    // 4 MiB of zeros in a few KiB, compressed by wsd's own compressor as a
    // server would, against a 64 KiB limit.
    let params = wsd::protocol::deflate::DeflateParams {
        server_no_context_takeover: false,
        client_no_context_takeover: false,
        server_max_window_bits: 15,
        client_max_window_bits: 15,
    };
    let settings = wsd::protocol::deflate::SendSettings {
        level: 9,
        min_size: 0,
    };
    let mut compressor = wsd::protocol::deflate::Compressor::new(settings, &params, true)
        .expect("settings")
        .expect("a compressor");
    let bomb = compressor
        .frame(BINARY, &[&vec![0; 4 << 20]], None)
        .expect("compressed");
    assert!(bomb.len() < 64 << 10, "{} bytes", bomb.len());
    let (addr, server) = scripted_server(Some("permessage-deflate"), bomb.to_vec()).await;
    let url = format!("ws://{addr}/");
    let args = ["--compress", "--max-message-size", "64KiB", &url];
    let r = finish(wsc(&args).spawn().expect("spawn")).await;
    assert_eq!((r.code, r.stdout.as_str()), (3, ""), "{}", r.stderr);
    assert!(r.stderr.contains("over 65536 bytes"), "{}", r.stderr);
    let sent = server.await.expect("server");
    let close = frames_in(&sent).into_iter().find(|f| f.opcode == CLOSE);
    assert_eq!(close.and_then(|f| f.close_code()), Some(1009));
}

/// tests/python/echo_server.py, its output read line by line as JSON.
struct PythonEcho {
    child: Child,
    lines: mpsc::Receiver<Value>,
    port: u16,
}

impl PythonEcho {
    fn start() -> PythonEcho {
        let python = tools::python();
        let script = tools::root().join("tests/python/echo_server.py");
        let mut child = Command::new(python)
            .arg(script)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the Python echo server");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                let value = serde_json::from_str(&line)
                    .unwrap_or_else(|e| panic!("not JSON from the server ({e}): {line}"));
                if tx.send(value).is_err() {
                    break;
                }
            }
        });
        let mut server = PythonEcho {
            child,
            lines,
            port: 0,
        };
        let first = server.next();
        server.port = first["port"]
            .as_u64()
            .and_then(|p| u16::try_from(p).ok())
            .unwrap_or_else(|| panic!("expected the port first, got {first}"));
        server
    }

    fn next(&self) -> Value {
        self.lines
            .recv_timeout(BOUND)
            .expect("a line from the Python server within the bound")
    }

    fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }
}

impl Drop for PythonEcho {
    fn drop(&mut self) {
        // Only our own child, by its handle; harmless if it has exited.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[actix_web::test]
async fn python_websockets_echoes_several_messages_compressed_both_ways() {
    let python = PythonEcho::start();
    let tap = Tap::start(python.addr()).await;
    let big = big_line();
    let noise = noise(2000);
    // `noise` twice: DEFLATE cannot shrink it, but its second copy is a
    // reference into the 4 KiB window the first one left (context
    // takeover). Short ones in between go plain, outside the window.
    let lines = [
        "hello".to_owned(),
        big.clone(),
        noise.clone(),
        "short".to_owned(),
        noise,
        "é".repeat(3000),
        big[..5000].to_owned(),
    ];
    // One line at a time, each echo awaited: websockets answers a close at
    // once, dropping echoes its handler has not sent yet.
    let mut child = wsc(&["--compress", &tap.url("/")])
        .spawn()
        .expect("spawn wsc");
    let mut stdin = child.stdin.take().expect("stdin");
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout")).lines();
    for (i, line) in lines.iter().enumerate() {
        stdin
            .write_all(format!("{line}\n").as_bytes())
            .await
            .expect("write");
        let echo = tokio::time::timeout(BOUND, stdout.next_line())
            .await
            .expect("no echo within the bound")
            .expect("read");
        let echo = echo.unwrap_or_default();
        assert!(
            echo == *line,
            "echo {i}: {} bytes, expected {}; starts {:?}",
            echo.len(),
            line.len(),
            &echo[..echo.len().min(80)]
        );
    }
    drop(stdin);
    let r = finish(child).await;
    assert_eq!((r.code, r.stderr.as_str()), (0, ""));

    let hello = python.next();
    let offer = hello["offer"].as_str().unwrap_or_default();
    assert_eq!(offer, "permessage-deflate; client_max_window_bits");
    // websockets' answer: a 4 KiB window for both sides.
    let answer = hello["answer"].as_str().unwrap_or_default();
    assert!(answer.starts_with("permessage-deflate"), "{hello}");
    assert!(answer.contains("client_max_window_bits=12"), "{hello}");
    assert_eq!(python.next()["echoed"], lines.len());

    let (_, frames) = tap.up();
    let rsv: Vec<u8> = data(&frames).iter().map(|f| f.rsv).collect();
    assert_eq!(rsv, [0, RSV1, RSV1, 0, RSV1, RSV1, RSV1], "{frames:?}");
    let sizes: Vec<usize> = data(&frames).iter().map(|f| f.payload.len()).collect();
    assert!(sizes[2] > 1000 && sizes[4] < 100, "{sizes:?}");
    // websockets compresses what it sends too, the large ones at least.
    let (_, frames) = tap.down();
    let echoed = data(&frames);
    assert_eq!(echoed.len(), lines.len());
    for i in [1, 2, 4, 5, 6] {
        assert_eq!(echoed[i].rsv, RSV1, "echo {i}");
    }
}

/// `len` letters that DEFLATE cannot shrink much (a fixed xorshift stream).
fn noise(len: usize) -> String {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            char::from(b'a' + (x % 26) as u8)
        })
        .collect()
}
