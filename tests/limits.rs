//! Limits: connection count, message size, handshake timeout, and sessions
//! that vanish without a goodbye.

mod common;

use std::time::Duration;

use common::raw::{self, RawClient};
use common::{BOUND, TestWsd, round_trip, test_config, wait_until};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use wsd::protocol::RawFrame;

#[actix_web::test]
async fn max_connections_refuses_with_503_then_admits_when_a_slot_frees() {
    let mut config = test_config();
    config.server.max_connections = 2;
    let wsd = TestWsd::start(config);
    let first = RawClient::connect(wsd.addr()).await;
    let _second = RawClient::connect(wsd.addr()).await;

    let (_, status, head) = raw::handshake(wsd.addr(), "/", &[]).await;
    assert_eq!(status, 503, "{head}");
    assert_eq!(
        wsd.metric("wsd_connections_rejected_total").await,
        Some(1.0)
    );
    // HTTP endpoints are not counted against the limit.
    assert_eq!(wsd.sessions().await, 2);

    drop(first);
    let admitted = wait_until(BOUND, || async {
        raw::handshake(wsd.addr(), "/", &[]).await.1 == 101
    })
    .await;
    assert!(admitted, "a freed slot was never given to a new client");
}

#[actix_web::test]
async fn a_message_over_the_limit_closes_with_1009_as_one_frame() {
    let mut config = test_config();
    config.session.max_message_size = 1024;
    let wsd = TestWsd::start(config);
    let mut client = RawClient::connect(wsd.addr()).await;
    client.send(&RawFrame::binary(vec![7; 1024])).await;
    assert_eq!(client.next_frame().await.payload.len(), 1024);
    // Only the header of an oversized frame: refused before its payload.
    let header = RawFrame::binary(vec![0; 1025]).encode();
    client.write(&header[..8]).await;
    client.expect_close(1009).await;
    wsd.wait_sessions(0).await;
    assert_eq!(wsd.closed("message_too_big").await, Some(1.0));
}

#[actix_web::test]
async fn a_message_over_the_limit_closes_with_1009_when_fragmented() {
    let mut config = test_config();
    config.session.max_message_size = 1024;
    let wsd = TestWsd::start(config);
    let mut client = RawClient::connect(wsd.addr()).await;
    client
        .send(&RawFrame::text(vec![b'a'; 100]).fin(false))
        .await;
    for _ in 0..9 {
        client
            .send(&RawFrame::continuation(vec![b'a'; 100]).fin(false))
            .await;
    }
    client.send(&RawFrame::continuation(vec![b'a'; 25])).await;
    client.expect_close(1009).await;
}

#[actix_web::test]
async fn sessions_that_vanish_without_a_close_are_all_unregistered() {
    let wsd = TestWsd::start(test_config());
    let mut clients = Vec::new();
    for _ in 0..200 {
        clients.push(RawClient::connect(wsd.addr()).await);
    }
    wsd.wait_sessions(200).await;
    for client in clients {
        // SO_LINGER 0: the close is a TCP reset, the rudest way to leave.
        let std = client.stream.into_std().expect("into_std");
        socket2::SockRef::from(&std)
            .set_linger(Some(Duration::ZERO))
            .expect("linger");
        drop(std);
    }
    wsd.wait_sessions(0).await;
    assert_eq!(wsd.closed("abnormal").await, Some(200.0));
    // And the server is fine.
    let mut ws = wsd.connect().await;
    assert_eq!(round_trip(&mut ws, "alive").await, "Server received: alive");
}

#[actix_web::test]
async fn a_client_that_never_finishes_its_upgrade_is_dropped_and_delays_no_one() {
    let mut config = test_config();
    config.server.handshake_timeout = Duration::from_millis(300);
    let wsd = TestWsd::start(config);
    let mut slow = TcpStream::connect(wsd.addr()).await.expect("connect");
    slow.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: web")
        .await
        .expect("write");

    // Someone else is served meanwhile.
    let mut ws = wsd.connect().await;
    assert_eq!(
        round_trip(&mut ws, "not delayed").await,
        "Server received: not delayed"
    );

    // The slow one is cut off (a 408 or a bare close, then EOF) well before
    // actix's own 5 s default could have done it.
    let mut sink = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(3), slow.read_to_end(&mut sink)).await;
    assert!(
        read.is_ok(),
        "half-open upgrade was held past handshake_timeout"
    );
}
