//! Graceful shutdown: every session is told 1001 before the server goes.

mod common;

use std::time::Duration;

use common::raw::RawClient;
use common::{BOUND, TestWsd, next_message, test_config};
use futures_util::SinkExt;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use wsd::protocol::RawFrame;

#[actix_web::test]
async fn shutdown_sends_1001_to_every_session_and_waits_for_them() {
    let wsd = TestWsd::start(test_config());
    let mut clients = Vec::new();
    for _ in 0..5 {
        clients.push(wsd.connect().await);
    }
    wsd.wait_sessions(5).await;

    let state = wsd.state.clone();
    let shutdown = actix_web::rt::spawn(async move { state.shutdown(BOUND).await });

    for ws in &mut clients {
        match next_message(ws).await {
            Message::Close(Some(frame)) => {
                assert_eq!(frame.code, CloseCode::Away);
                assert_eq!(frame.reason, "server shutting down");
            }
            other => panic!("expected close 1001, got {other:?}"),
        }
        // tokio-tungstenite answers the close when flushed.
        let _ = ws.flush().await;
    }
    let left = tokio::time::timeout(BOUND, shutdown)
        .await
        .expect("shutdown did not finish")
        .expect("shutdown task");
    assert_eq!(left, Ok(0));
    assert_eq!(wsd.sessions().await, 0);
    assert_eq!(wsd.closed("shutdown").await, Some(5.0));
    assert_eq!(wsd.health().await["status"], "shutting_down");
}

#[actix_web::test]
async fn a_peer_that_ignores_the_close_is_dropped_after_close_timeout() {
    let mut config = test_config();
    config.session.close_timeout = Duration::from_millis(300);
    let wsd = TestWsd::start(config);
    let mut client = RawClient::connect(wsd.addr()).await;
    wsd.wait_sessions(1).await;

    let left = tokio::time::timeout(BOUND, wsd.state.shutdown(BOUND))
        .await
        .expect("shutdown hung on a silent peer");
    assert_eq!(left, Ok(0));
    // The peer got its close frame and then the end of the connection.
    client.expect_close(1001).await;
}

#[actix_web::test]
async fn no_data_is_echoed_after_the_server_sent_its_close() {
    let mut config = test_config();
    config.session.close_timeout = Duration::from_secs(5);
    let wsd = TestWsd::start(config);
    let mut client = RawClient::connect(wsd.addr()).await;
    wsd.wait_sessions(1).await;
    let state = wsd.state.clone();
    let shutdown = actix_web::rt::spawn(async move { state.shutdown(BOUND).await });
    let close = client.next_frame().await;
    assert_eq!(close.close_code(), Some(1001));
    client.send(&RawFrame::text("too late")).await;
    client.send(&RawFrame::close(1001, "")).await;
    // The close completes the handshake; the text got no reply (expect_eof
    // fails on any data frame).
    client.expect_eof().await;
    assert_eq!(shutdown.await.expect("shutdown"), Ok(0));
}
