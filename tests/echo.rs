//! Echo behaviour through real sockets, with tokio-tungstenite as the peer and
//! raw frames where no library would send what we need.

mod common;

use common::raw::{self, RawClient};
use common::{TestWsd, next_message, round_trip, test_config};
use futures_util::SinkExt;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use wsd::protocol::RawFrame;
use wsd::protocol::opcode::{BINARY, CLOSE, PONG, TEXT};

#[actix_web::test]
async fn text_is_answered_with_the_configured_prefix() {
    let wsd = TestWsd::start(test_config());
    let mut ws = wsd.connect().await;
    assert_eq!(round_trip(&mut ws, "hello").await, "Server received: hello");
    assert_eq!(round_trip(&mut ws, "").await, "Server received: ");
    assert_eq!(
        round_trip(&mut ws, "ünïcødé ✓").await,
        "Server received: ünïcødé ✓"
    );
}

#[actix_web::test]
async fn an_empty_prefix_makes_a_pure_echo() {
    let mut config = test_config();
    config.session.reply_prefix = String::new();
    let wsd = TestWsd::start(config);
    let mut ws = wsd.connect().await;
    assert_eq!(round_trip(&mut ws, "same").await, "same");
}

#[actix_web::test]
async fn binary_is_echoed_unchanged_as_binary() {
    let wsd = TestWsd::start(test_config());
    let mut ws = wsd.connect().await;
    let data: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
    ws.send(Message::binary(data.clone())).await.unwrap();
    assert_eq!(next_message(&mut ws).await, Message::binary(data));
}

#[actix_web::test]
async fn ping_is_answered_with_a_pong_carrying_the_same_payload() {
    let wsd = TestWsd::start(test_config());
    let mut client = RawClient::connect(wsd.addr()).await;
    client
        .send(&RawFrame::ping(b"are you there?".to_vec()))
        .await;
    let pong = client.next_frame().await;
    assert_eq!(pong.opcode, PONG);
    assert_eq!(pong.payload, b"are you there?");
    assert!(pong.mask.is_none(), "server frames must not be masked");
}

#[actix_web::test]
async fn the_peers_close_code_is_echoed_and_the_connection_ends() {
    let wsd = TestWsd::start(test_config());
    for code in [1000u16, 1001, 3000, 4321] {
        let mut client = RawClient::connect(wsd.addr()).await;
        client.send(&RawFrame::close(code, "bye")).await;
        client.expect_close(code).await;
    }
    // A close without a code is answered by a close without a code.
    let mut client = RawClient::connect(wsd.addr()).await;
    client.send(&RawFrame::new(CLOSE, Vec::new())).await;
    let reply = client.next_frame().await;
    assert_eq!((reply.opcode, reply.payload.len()), (CLOSE, 0));
    client.expect_eof().await;
}

#[actix_web::test]
async fn an_independent_client_sees_a_clean_close() {
    let wsd = TestWsd::start(test_config());
    let mut ws = wsd.connect().await;
    ws.close(Some(CloseFrame {
        code: CloseCode::Normal,
        reason: "done".into(),
    }))
    .await
    .unwrap();
    match next_message(&mut ws).await {
        Message::Close(Some(frame)) => assert_eq!(frame.code, CloseCode::Normal),
        other => panic!("expected a close frame, got {other:?}"),
    }
    wsd.wait_sessions(0).await;
    assert_eq!(wsd.closed("normal").await, Some(1.0));
}

#[actix_web::test]
async fn fragmented_text_and_binary_are_reassembled() {
    let wsd = TestWsd::start(test_config());
    let mut client = RawClient::connect(wsd.addr()).await;
    client.send(&RawFrame::text("frag").fin(false)).await;
    client.send(&RawFrame::continuation("men").fin(false)).await;
    client.send(&RawFrame::continuation("ted")).await;
    let reply = client.next_frame().await;
    assert_eq!((reply.opcode, reply.fin), (TEXT, true));
    assert_eq!(reply.payload, b"Server received: fragmented");

    client.send(&RawFrame::binary(vec![1, 2]).fin(false)).await;
    client
        .send(&RawFrame::continuation(vec![]).fin(false))
        .await;
    client.send(&RawFrame::continuation(vec![3])).await;
    let reply = client.next_frame().await;
    assert_eq!((reply.opcode, reply.payload), (BINARY, vec![1, 2, 3]));
}

#[actix_web::test]
async fn a_continuation_with_no_message_open_closes_with_1002() {
    let wsd = TestWsd::start(test_config());
    let mut client = RawClient::connect(wsd.addr()).await;
    client.send(&RawFrame::continuation("orphan")).await;
    client.expect_close(1002).await;
}

#[actix_web::test]
async fn a_new_message_inside_a_fragmented_one_closes_with_1002() {
    let wsd = TestWsd::start(test_config());
    let mut client = RawClient::connect(wsd.addr()).await;
    client.send(&RawFrame::text("start").fin(false)).await;
    client.send(&RawFrame::text("again")).await;
    client.expect_close(1002).await;
}

#[actix_web::test]
async fn invalid_utf8_text_closes_with_1007() {
    let wsd = TestWsd::start(test_config());
    let mut client = RawClient::connect(wsd.addr()).await;
    client
        .send(&RawFrame::text(b"bad \xFF byte".to_vec()))
        .await;
    client.expect_close(1007).await;
    wsd.wait_sessions(0).await;
    assert_eq!(wsd.closed("invalid_payload").await, Some(1.0));
}

#[actix_web::test]
async fn traffic_is_counted_in_metrics() {
    let wsd = TestWsd::start(test_config());
    let mut ws = wsd.connect().await;
    for _ in 0..3 {
        round_trip(&mut ws, "abc").await;
    }
    ws.close(None).await.unwrap();
    wsd.wait_sessions(0).await;
    assert_eq!(wsd.metric("wsd_messages_received_total").await, Some(3.0));
    assert_eq!(wsd.metric("wsd_messages_sent_total").await, Some(3.0));
    assert_eq!(wsd.metric("wsd_bytes_received_total").await, Some(9.0));
    let reply_len = "Server received: abc".len() as f64;
    assert_eq!(
        wsd.metric("wsd_bytes_sent_total").await,
        Some(3.0 * reply_len)
    );
    assert_eq!(wsd.metric("wsd_sessions_opened_total").await, Some(1.0));
    assert_eq!(wsd.metric("wsd_sessions_active").await, Some(0.0));
}

#[actix_web::test]
async fn a_plain_http_request_to_the_endpoint_gets_426() {
    let wsd = TestWsd::start(test_config());
    let res = wsd.get("/").send().await.unwrap();
    assert_eq!(res.status().as_u16(), 426);
    assert_eq!(res.headers().get("sec-websocket-version").unwrap(), "13");
}

#[actix_web::test]
async fn the_endpoint_path_comes_from_config() {
    let mut config = test_config();
    config.server.path = "/ws".into();
    let wsd = TestWsd::start(config);
    let (_, status, _) = raw::handshake(wsd.addr(), "/", &[]).await;
    assert_eq!(status, 404);
    let mut ws = wsd.connect().await;
    assert_eq!(
        round_trip(&mut ws, "at /ws").await,
        "Server received: at /ws"
    );
}
