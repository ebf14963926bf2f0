//! The heartbeat: the server pings on an interval and drops a silent peer.

mod common;

use std::time::{Duration, Instant};

use common::raw::{RawClient, Read};
use common::{TestWsd, round_trip, test_config};
use futures_util::StreamExt;
use tokio_tungstenite::tungstenite::Message;
use wsd::protocol::RawFrame;
use wsd::protocol::opcode::{CLOSE, PING, PONG, TEXT};

fn fast_heartbeat() -> wsd::config::Config {
    let mut config = test_config();
    config.session.heartbeat_interval = Duration::from_millis(100);
    config.session.client_timeout = Duration::from_millis(500);
    config
}

#[actix_web::test]
async fn the_server_pings_on_the_interval() {
    let wsd = TestWsd::start(fast_heartbeat());
    let mut client = RawClient::connect(wsd.addr()).await;
    for _ in 0..3 {
        match client.read().await {
            Read::Frame(f) => assert_eq!(f.opcode, PING, "unexpected {f:?}"),
            Read::Eof => panic!("closed while waiting for pings"),
        }
        client.send(&RawFrame::pong(Vec::new())).await;
    }
}

#[actix_web::test]
async fn a_peer_that_never_answers_is_dropped_within_the_timeout() {
    let config = fast_heartbeat();
    let timeout = config.session.client_timeout;
    // The timeout is checked on heartbeat ticks, so the drop comes up to one
    // interval late; the margin is for timers on a loaded 2-core machine.
    let latest = timeout + config.session.heartbeat_interval + Duration::from_secs(2);
    let wsd = TestWsd::start(config);
    // The session's clock starts between these two instants: the first
    // bounds the wait from below, the second from above.
    let before_connect = Instant::now();
    let mut client = RawClient::connect(wsd.addr()).await;
    let connected = Instant::now();
    // Read (pings arrive) but never answer anything.
    let close = loop {
        match client.read().await {
            Read::Frame(f) if f.opcode == PING => continue,
            Read::Frame(f) => break f,
            Read::Eof => panic!("dropped without a close frame"),
        }
    };
    let (at_most, at_least) = (before_connect.elapsed(), connected.elapsed());
    assert_eq!(close.close_code(), Some(1011), "{close:?}");
    assert_eq!(&close.payload[2..], b"heartbeat timeout");
    assert!(
        at_most >= timeout,
        "dropped after {at_most:?}, before the {timeout:?} timeout"
    );
    assert!(
        at_least <= latest,
        "dropped only after {at_least:?}, later than {latest:?}"
    );
    client.expect_eof().await;
    wsd.wait_sessions(0).await;
    assert_eq!(wsd.closed("heartbeat_timeout").await, Some(1.0));
}

#[actix_web::test]
async fn a_peer_that_answers_pings_stays_connected() {
    let config = fast_heartbeat();
    let timeout = config.session.client_timeout;
    let wsd = TestWsd::start(config);
    let mut ws = wsd.connect().await;
    // tokio-tungstenite answers pings while it is being read. Read for four
    // client timeouts: the connection must survive all of it.
    let until = tokio::time::Instant::now() + timeout * 4;
    let mut pings = 0;
    while let Ok(next) = tokio::time::timeout_at(until, ws.next()).await {
        match next {
            Some(Ok(Message::Ping(_))) => pings += 1,
            other => panic!("unexpected {other:?} while idle"),
        }
    }
    assert!(pings >= 4, "only {pings} pings in {:?}", timeout * 4);
    assert_eq!(
        round_trip(&mut ws, "still here").await,
        "Server received: still here"
    );
    assert_eq!(wsd.sessions().await, 1);
}

#[actix_web::test]
async fn any_frame_counts_as_a_sign_of_life() {
    let config = fast_heartbeat();
    let timeout = config.session.client_timeout;
    let wsd = TestWsd::start(config);
    let mut client = RawClient::connect(wsd.addr()).await;
    // Never answer a ping, but keep sending messages: the peer is alive.
    let until = Instant::now() + timeout * 4;
    while Instant::now() < until {
        client.send(&RawFrame::text("tick")).await;
        loop {
            let f = client.next_frame().await;
            assert_ne!(f.opcode, CLOSE, "dropped a talking peer: {f:?}");
            if f.opcode == TEXT {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[actix_web::test]
async fn a_long_message_still_arriving_keeps_the_peer_alive() {
    let config = fast_heartbeat();
    let timeout = config.session.client_timeout;
    let wsd = TestWsd::start(config);
    let mut client = RawClient::connect(wsd.addr()).await;
    // One frame trickling in over four client timeouts; no pongs, no other
    // frame completes meanwhile.
    let wire = RawFrame::text(vec![b'z'; 400]).encode();
    let pieces = wire.chunks(wire.len().div_ceil(40));
    let pause = timeout * 4 / 40;
    for piece in pieces {
        client.write(piece).await;
        tokio::time::sleep(pause).await;
    }
    let reply = loop {
        let f = client.next_frame().await;
        if f.opcode != PONG {
            break f;
        }
    };
    assert_eq!(reply.opcode, TEXT, "{reply:?}");
    assert_eq!(reply.payload.len(), "Server received: ".len() + 400);
}
