//! Sessions that never freeze: a peer that stops reading cannot stop its
//! session's timers, grow the server's memory past `max_send_queue`, or hold
//! its slot. Judged by the kernel's view of the client socket (closed or
//! reset) and by `/healthz`, not only by the server's own counters.

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::stall::{
    ESTABLISHED, frame, tcp_state, tight_client, upgrade, wait_closed_by_server, write_frames,
};
use common::{BOUND, TestWsd, round_trip, test_config};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use wsd::protocol::{Decoder, Event, Role, encode_frame, opcode};

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
    assert_eq!(tcp_state(&client), Some(ESTABLISHED));
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
        wait_closed_by_server(&client, bound).await,
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

    // Pipelined far faster than it reads (it reads nothing).
    let big = frame(opcode::BINARY, &vec![0xCD; 64 * 1024]);
    write_frames(&mut client, &big, 256).await;

    assert!(
        wait_closed_by_server(&client, BOUND).await,
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
    let big = frame(opcode::BINARY, &vec![0xEF; 64 * 1024]);
    assert_eq!(write_frames(&mut client, &big, 256).await, 256);

    // Keep talking (so the heartbeat is satisfied) but never read. A bounded
    // loop: it ends when the server drops us, or after BOUND.
    let ping = frame(opcode::PING, b"");
    let deadline = Instant::now() + BOUND;
    while tcp_state(&client) == Some(ESTABLISHED) && Instant::now() < deadline {
        if client.write_all(&ping).await.is_err() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        wait_closed_by_server(&client, BOUND).await,
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
