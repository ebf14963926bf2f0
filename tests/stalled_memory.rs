//! A hundred peers that stop reading at once: the server's memory stays
//! within their `max_send_queue`s, everyone else is still served, and all of
//! them go. Alone in its test binary, so no other test's allocations show in
//! the process's RSS.

mod common;

use std::time::{Duration, Instant};

use common::stall::{frame, rss_bytes, tight_client, wait_closed_by_server, write_frames};
use common::{BOUND, TestWsd, round_trip, test_config};
use wsd::protocol::opcode;

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
        assert!(
            wait_closed_by_server(peer, BOUND).await,
            "a stalled peer is still established"
        );
    }
    assert_eq!(
        round_trip(&mut other, "last").await,
        "Server received: last"
    );
}
