//! Sessions that never freeze: a peer that stops reading cannot stop its
//! session's timers, grow the server's memory past `max_send_queue`, or hold
//! its slot. Judged by the kernel's view of the client socket (closed or
//! reset) and by `/healthz`, not only by the server's own counters.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::raw;
use common::{BOUND, TestWsd, round_trip, test_config, wait_until};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use wsd::protocol::{Decoder, Event, Role, encode_frame, opcode};

/// A WebSocket client socket with a 4 KiB receive buffer, past the
/// handshake: once it stops reading, the server's writes back up fast.
async fn tight_client(server: SocketAddr) -> TcpStream {
    let socket =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    socket.set_recv_buffer_size(4096).expect("SO_RCVBUF");
    socket.connect(&server.into()).expect("connect");
    socket.set_nonblocking(true).expect("nonblocking");
    let stream = TcpStream::from_std(socket.into()).expect("tokio stream");
    upgrade(stream, server).await
}

/// The opening handshake on `stream`: what follows it is ours to read or not.
async fn upgrade(stream: TcpStream, server: SocketAddr) -> TcpStream {
    let (stream, status, head) = raw::handshake_on(stream, server, "/", &[]).await;
    assert_eq!(status, 101, "{head}");
    stream
}

/// One masked client frame.
fn frame(opcode: u8, payload: &[u8]) -> Bytes {
    let mut out = Vec::new();
    encode_frame(&mut out, opcode, payload, Some([7, 1, 9, 3]));
    Bytes::from(out)
}

/// Writes `count` copies of `frame`, each within [`BOUND`]; stops early,
/// returning how many went in, if the server resets the connection.
async fn write_frames(stream: &mut TcpStream, frame: &[u8], count: usize) -> usize {
    for i in 0..count {
        match tokio::time::timeout(BOUND, stream.write_all(frame)).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return i,
            Err(_) => panic!("write {i} of {count} blocked: the server stopped reading"),
        }
    }
    count
}

/// The kernel's TCP state of the connection from `local` (hex, as in
/// `/proc/net/tcp`: 01 is ESTABLISHED), or `None` once the kernel has
/// forgotten the socket (after a reset).
fn tcp_state(local: SocketAddr) -> Option<u8> {
    let table = std::fs::read_to_string("/proc/net/tcp").expect("/proc/net/tcp");
    let want = format!(":{:04X}", local.port());
    table.lines().skip(1).find_map(|line| {
        let mut fields = line.split_whitespace();
        let local_field = fields.nth(1)?;
        let state = fields.nth(1)?;
        local_field
            .ends_with(&want)
            .then(|| u8::from_str_radix(state, 16).ok())
            .flatten()
    })
}

const ESTABLISHED: u8 = 0x01;

/// Waits until the kernel no longer sees the connection as established: the
/// server closed (FIN) or reset (RST) it.
async fn wait_closed_by_server(local: SocketAddr, bound: Duration) -> bool {
    wait_until(bound, || async { tcp_state(local) != Some(ESTABLISHED) }).await
}

fn rss_bytes() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").expect("status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<usize>().ok())
        .expect("VmRSS")
        * 1024
}

#[actix_web::test]
async fn a_peer_that_stops_reading_then_goes_silent_is_dropped_by_the_heartbeat() {
    let mut config = test_config();
    config.session.heartbeat_interval = Duration::from_millis(200);
    config.session.client_timeout = Duration::from_secs(1);
    // Neither the queue bound nor the write timeout may end it first.
    config.session.max_send_queue = 64 << 20;
    config.session.write_timeout = Duration::from_secs(60);
    let timeout = config.session.client_timeout;
    let interval = config.session.heartbeat_interval;
    let wsd = TestWsd::start(config);
    let mut client = tight_client(wsd.addr()).await;
    let local = client.local_addr().expect("local addr");
    assert_eq!(tcp_state(local), Some(ESTABLISHED));
    wsd.wait_sessions(1).await;

    // 16 MiB of requests, never reading a reply: far more than the kernel's
    // buffers hold, so the server's output backs up.
    let big = frame(opcode::BINARY, &vec![0xAB; 64 * 1024]);
    assert_eq!(write_frames(&mut client, &big, 256).await, 256);
    let silent_from = Instant::now();

    // Then silence. The session's heartbeat still runs and drops us, and the
    // kernel sees the connection end.
    let bound = timeout + interval * 2 + Duration::from_secs(4);
    assert!(
        wait_closed_by_server(local, bound).await,
        "still established {:?} after going silent",
        silent_from.elapsed()
    );
    let waited = silent_from.elapsed();
    assert!(
        waited >= timeout,
        "dropped after {waited:?}, before {timeout:?}"
    );
    wsd.wait_sessions(0).await;
    assert_eq!(wsd.closed("heartbeat_timeout").await, Some(1.0));
}

#[actix_web::test]
async fn overflowing_max_send_queue_ends_the_session_as_a_slow_consumer() {
    let mut config = test_config();
    config.session.max_send_queue = 256 << 10;
    config.session.write_timeout = Duration::from_secs(60);
    config.session.client_timeout = Duration::from_secs(60);
    config.session.heartbeat_interval = Duration::from_secs(1);
    let wsd = TestWsd::start(config);
    let mut other = wsd.connect().await;
    let mut client = tight_client(wsd.addr()).await;
    let local = client.local_addr().expect("local addr");

    // Pipelined far faster than it reads (it reads nothing).
    let big = frame(opcode::BINARY, &vec![0xCD; 64 * 1024]);
    write_frames(&mut client, &big, 256).await;

    assert!(
        wait_closed_by_server(local, BOUND).await,
        "the overflowing peer is still connected"
    );
    wsd.wait_sessions(1).await;
    assert_eq!(wsd.closed("slow_consumer").await, Some(1.0));
    // Nobody else noticed.
    assert_eq!(
        round_trip(&mut other, "still here").await,
        "Server received: still here"
    );
}

#[actix_web::test]
async fn a_socket_that_takes_nothing_for_write_timeout_is_a_slow_consumer() {
    let mut config = test_config();
    config.session.heartbeat_interval = Duration::from_millis(200);
    config.session.client_timeout = Duration::from_secs(60);
    config.session.max_send_queue = 64 << 20;
    config.session.write_timeout = Duration::from_secs(1);
    let wsd = TestWsd::start(config);
    let mut client = tight_client(wsd.addr()).await;
    let local = client.local_addr().expect("local addr");
    let big = frame(opcode::BINARY, &vec![0xEF; 64 * 1024]);
    assert_eq!(write_frames(&mut client, &big, 256).await, 256);

    // Keep talking (so the heartbeat is satisfied) but never read. A bounded
    // loop: it ends when the server drops us, or after BOUND.
    let ping = frame(opcode::PING, b"");
    let deadline = Instant::now() + BOUND;
    while tcp_state(local) == Some(ESTABLISHED) && Instant::now() < deadline {
        if client.write_all(&ping).await.is_err() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        wait_closed_by_server(local, BOUND).await,
        "a stalled socket outlived write_timeout"
    );
    wsd.wait_sessions(0).await;
    assert_eq!(wsd.closed("slow_consumer").await, Some(1.0));
}

#[actix_web::test]
async fn a_peer_that_reads_slowly_within_the_bound_gets_every_reply_in_order() {
    let mut config = test_config();
    config.session.max_send_queue = 256 << 10;
    let wsd = TestWsd::start(config);
    let server = wsd.addr();
    let mut client = upgrade(TcpStream::connect(server).await.expect("connect"), server).await;

    // 150 KiB of requests at once: more than a fast reader would ever let
    // queue, less than the bound.
    const N: usize = 150;
    let mut requests = Vec::new();
    for i in 0..N {
        let mut text = format!("{i:05}:").into_bytes();
        text.resize(1024, b'.');
        encode_frame(&mut requests, opcode::TEXT, &text, Some([1, 2, 3, 4]));
    }
    client.write_all(&requests).await.expect("requests");

    // Read in small bites with pauses: slow, but it reads.
    let mut decoder = Decoder::new(Role::Client, 1 << 20);
    let mut next = 0;
    let mut chunk = vec![0u8; 2048];
    let deadline = Instant::now() + BOUND * 2;
    while next < N {
        assert!(Instant::now() < deadline, "only {next} of {N} replies");
        tokio::time::sleep(Duration::from_millis(2)).await;
        let n = tokio::time::timeout(BOUND, client.read(&mut chunk))
            .await
            .expect("replies stopped")
            .expect("read");
        assert!(n > 0, "closed after {next} replies");
        let mut input = Bytes::copy_from_slice(&chunk[..n]);
        while let Some(event) = decoder.decode(&mut input).expect("valid frames") {
            match event {
                Event::Text(text) => {
                    let want = format!("Server received: {next:05}:");
                    assert!(
                        text.starts_with(want.as_bytes()),
                        "reply {next} out of order"
                    );
                    next += 1;
                }
                Event::Ping(_) => {}
                other => panic!("unexpected {other:?}"),
            }
        }
    }
    assert_eq!(wsd.closed("slow_consumer").await, None);
    assert_eq!(wsd.sessions().await, 1);
}

#[actix_web::test]
async fn a_hundred_stalled_peers_stay_within_their_bound_and_all_go() {
    const PEERS: usize = 100;
    let mut config = test_config();
    config.session.heartbeat_interval = Duration::from_millis(250);
    config.session.client_timeout = Duration::from_secs(4);
    config.session.max_send_queue = 256 << 10;
    config.session.write_timeout = Duration::from_secs(60);
    let queue = config.session.max_send_queue;
    let wsd = TestWsd::start(config);
    let mut other = wsd.connect().await;
    round_trip(&mut other, "warm up").await;
    let before = rss_bytes();

    let big = frame(opcode::BINARY, &vec![0x5A; 64 * 1024]);
    let mut peers = Vec::new();
    for i in 0..PEERS {
        let mut client = tight_client(wsd.addr()).await;
        write_frames(&mut client, &big, 16).await;
        peers.push(client);
        if i % 10 == 0 {
            // Reading is what answers the server's pings for this client.
            round_trip(&mut other, "keep alive").await;
        }
    }
    let grown = rss_bytes().saturating_sub(before);
    // Each may hold its queue plus actix-http's buffers (about 200 KiB in
    // read and write buffers at most); the kernel's buffers are not ours.
    let allowed = PEERS * (queue + (256 << 10));
    assert!(
        grown <= allowed,
        "RSS grew {} KiB for {PEERS} stalled peers (allowed {} KiB)",
        grown >> 10,
        allowed >> 10
    );
    // Everyone else is still served, while they are all stalled.
    for i in 0..20 {
        let text = format!("meanwhile {i}");
        assert_eq!(
            round_trip(&mut other, &text).await,
            format!("Server received: {text}")
        );
    }

    // They are silent from now on: all go, and only they do. (`other` keeps
    // talking meanwhile, which is also how it answers the server's pings.)
    let deadline = Instant::now() + BOUND * 2;
    while wsd.sessions().await > 1 {
        assert!(
            Instant::now() < deadline,
            "stalled peers outlived their timeout"
        );
        round_trip(&mut other, "waiting").await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for peer in &peers {
        let local = peer.local_addr().expect("local addr");
        assert!(
            wait_closed_by_server(local, BOUND).await,
            "a stalled peer is still established"
        );
    }
    assert_eq!(
        round_trip(&mut other, "last").await,
        "Server received: last"
    );
}
