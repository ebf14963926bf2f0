//! permessage-deflate (RFC 7692) over real sockets, with raw frames: the
//! handshake's answers and refusals, compressed messages both ways (whole,
//! fragmented, between pings), RSV1 misuse, context takeover, inflate
//! limits, compressed channel broadcasts, and the cases of the Autobahn
//! testsuite's sections 12 and 13 (many sizes, fragmentations and
//! parameter sets). The test's side of the compression is flate2 driven
//! directly, not wsd's own codec.

mod common;

use std::time::{Duration, Instant};

use common::raw::{RawClient, Read};
use common::{BOUND, TestWsd, test_config};
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};
use wsd::config::{Compression as Setting, Config, NamespaceConfig};
use wsd::protocol::opcode::{BINARY, CLOSE, CONTINUATION, PING, PONG, TEXT};
use wsd::protocol::{RawFrame, code};

const RSV1: u8 = 0b100;
const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

fn config_on() -> Config {
    let mut config = test_config();
    config.session.compression = Setting::On;
    config.session.reply_prefix = String::new();
    config.session.deflate.min_size = 16;
    config
}

/// The test's end of a compressed connection: flate2's raw deflate, with
/// the contexts the agreed parameters allow.
struct Peer {
    compress: Compress,
    decompress: Decompress,
    client_no_context_takeover: bool,
    server_no_context_takeover: bool,
}

impl Peer {
    fn new(client_bits: u8, client_no_ctx: bool, server_no_ctx: bool) -> Peer {
        Peer {
            compress: Compress::new_with_window_bits(Compression::new(6), false, client_bits),
            decompress: Decompress::new_with_window_bits(false, 15),
            client_no_context_takeover: client_no_ctx,
            server_no_context_takeover: server_no_ctx,
        }
    }

    fn standard() -> Peer {
        Peer::new(15, false, true)
    }

    /// The compressed payload of `msg`: a sync flush, tail stripped.
    fn compress(&mut self, msg: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(msg.len() + 64);
        let mut consumed = 0;
        loop {
            let before = self.compress.total_in();
            self.compress
                .compress_vec(&msg[consumed..], &mut out, FlushCompress::Sync)
                .expect("compress");
            consumed += (self.compress.total_in() - before) as usize;
            if consumed == msg.len() && out.len() < out.capacity() {
                break;
            }
            out.reserve(out.capacity().max(64));
        }
        if out.ends_with(&TAIL) {
            out.truncate(out.len() - 4);
        }
        if out.is_empty() {
            // Nothing to flush (an empty message right after a flush): the
            // one-byte empty block of RFC 7692 section 7.2.3.6.
            out.push(0x00);
        }
        if self.client_no_context_takeover {
            self.compress.reset();
        }
        out
    }

    /// Inflates a whole compressed message from the server.
    fn inflate(&mut self, payload: &[u8]) -> Vec<u8> {
        let mut input = payload.to_vec();
        input.extend_from_slice(&TAIL);
        let mut out = Vec::with_capacity(input.len() * 4 + 64);
        let mut offset = 0;
        loop {
            let before = self.decompress.total_in();
            self.decompress
                .decompress_vec(&input[offset..], &mut out, FlushDecompress::Sync)
                .expect("the server's payload inflates");
            offset += (self.decompress.total_in() - before) as usize;
            if offset == input.len() && out.len() < out.capacity() {
                break;
            }
            out.reserve(out.capacity().max(1024));
        }
        if self.server_no_context_takeover {
            self.decompress.reset(false);
        }
        out
    }
}

/// The `Sec-WebSocket-Extensions` line of a handshake response, if any.
fn extensions(head: &str) -> Option<String> {
    head.lines().find_map(|l| {
        let (name, value) = l.split_once(':')?;
        name.eq_ignore_ascii_case("sec-websocket-extensions")
            .then(|| value.trim().to_owned())
    })
}

async fn connect_offering(wsd: &TestWsd, path: &str, offer: &str) -> RawClient {
    let header = format!("Sec-WebSocket-Extensions: {offer}");
    RawClient::connect_with(wsd.addr(), path, &[header.as_str()]).await
}

/// Reads the next data message (skipping pings and pongs), reassembling
/// fragments; returns its opcode, whether it was compressed, and its
/// payload as sent.
async fn next_message(client: &mut RawClient) -> (u8, bool, Vec<u8>) {
    let first = client.next_data_or_close().await;
    assert_ne!(first.opcode, CLOSE, "expected a message, got {first:?}");
    assert_eq!(first.rsv & 0b011, 0, "RSV2/RSV3 are never set");
    let (opcode, compressed) = (first.opcode, first.rsv & RSV1 != 0);
    let mut payload = first.payload;
    let mut fin = first.fin;
    while !fin {
        let next = client.next_data_or_close().await;
        assert_eq!(next.opcode, CONTINUATION);
        assert_eq!(next.rsv, 0, "RSV1 only on a message's first frame");
        payload.extend(next.payload);
        fin = next.fin;
    }
    (opcode, compressed, payload)
}

/// Sends `msg` compressed, cut into frames of `fragment` bytes (0: one frame).
async fn send_compressed(
    client: &mut RawClient,
    peer: &mut Peer,
    opcode: u8,
    msg: &[u8],
    fragment: usize,
) {
    let payload = peer.compress(msg);
    let frames = fragments(opcode, &payload, fragment);
    client.send_all(&frames).await;
}

fn fragments(opcode: u8, payload: &[u8], fragment: usize) -> Vec<RawFrame> {
    if fragment == 0 || payload.len() <= fragment {
        return vec![RawFrame::new(opcode, payload.to_vec()).rsv(RSV1)];
    }
    let chunks: Vec<&[u8]> = payload.chunks(fragment).collect();
    let last = chunks.len() - 1;
    chunks
        .iter()
        .enumerate()
        .map(|(i, chunk)| {
            let (op, rsv) = if i == 0 {
                (opcode, RSV1)
            } else {
                (CONTINUATION, 0)
            };
            RawFrame::new(op, chunk.to_vec()).rsv(rsv).fin(i == last)
        })
        .collect()
}

/// Text that compresses the way JSON feeds do.
fn json_like(len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 64);
    let mut i = 0u64;
    while out.len() < len {
        out.extend_from_slice(
            format!(
                "{{\"symbol\":\"BTC-USD\",\"price\":{},\"seq\":{i}}},",
                40_000 + i * 7 % 997
            )
            .as_bytes(),
        );
        i += 1;
    }
    out.truncate(len);
    out
}

#[actix_rt::test]
async fn negotiation_answers_every_parameter_and_declines_what_it_cannot_honour() {
    let wsd = TestWsd::start(config_on());
    let cases: &[(&str, Option<&str>)] = &[
        (
            "permessage-deflate",
            Some("permessage-deflate; server_no_context_takeover"),
        ),
        (
            "permessage-deflate; client_no_context_takeover",
            Some("permessage-deflate; server_no_context_takeover; client_no_context_takeover"),
        ),
        (
            "permessage-deflate; server_no_context_takeover",
            Some("permessage-deflate; server_no_context_takeover"),
        ),
        (
            "permessage-deflate; client_max_window_bits",
            Some("permessage-deflate; server_no_context_takeover"),
        ),
        (
            "permessage-deflate; client_max_window_bits=10",
            Some("permessage-deflate; server_no_context_takeover; client_max_window_bits=10"),
        ),
        (
            "permessage-deflate; server_max_window_bits=10",
            Some("permessage-deflate; server_no_context_takeover; server_max_window_bits=10"),
        ),
        // zlib cannot compress with a 256-byte window: answered as 8 (never
        // 9, which the client did not allow), and sent uncompressed.
        (
            "permessage-deflate; server_max_window_bits=8",
            Some("permessage-deflate; server_no_context_takeover; server_max_window_bits=8"),
        ),
        (
            "permessage-deflate; client_max_window_bits=8",
            Some("permessage-deflate; server_no_context_takeover; client_max_window_bits=8"),
        ),
        // Refusals: the extension is left out of the answer.
        ("permessage-deflate; server_max_window_bits=16", None),
        ("permessage-deflate; server_max_window_bits=7", None),
        ("permessage-deflate; server_max_window_bits", None),
        ("permessage-deflate; client_max_window_bits=0x0f", None),
        ("permessage-deflate; unknown_parameter", None),
        ("permessage-deflate; server_no_context_takeover=1", None),
        (
            "permessage-deflate; client_no_context_takeover; client_no_context_takeover",
            None,
        ),
        ("x-webkit-deflate-frame", None),
        // The first acceptable offer wins.
        (
            "permessage-deflate; bogus, permessage-deflate; client_max_window_bits=12, permessage-deflate",
            Some("permessage-deflate; server_no_context_takeover; client_max_window_bits=12"),
        ),
    ];
    for (offer, answer) in cases {
        let client = connect_offering(&wsd, "/", offer).await;
        assert_eq!(
            extensions(client.head()).as_deref(),
            *answer,
            "offer {offer:?}:\n{}",
            client.head()
        );
    }
    // Off (the default), every offer is declined.
    let off = TestWsd::start(test_config());
    let client = connect_offering(&off, "/", "permessage-deflate").await;
    assert_eq!(extensions(client.head()), None);
}

#[actix_rt::test]
async fn server_context_takeover_is_answered_only_when_configured_or_asked() {
    let mut config = config_on();
    config.session.deflate.server_context_takeover = true;
    let wsd = TestWsd::start(config);
    let client = connect_offering(&wsd, "/", "permessage-deflate").await;
    assert_eq!(
        extensions(client.head()).as_deref(),
        Some("permessage-deflate")
    );
    let client =
        connect_offering(&wsd, "/", "permessage-deflate; server_no_context_takeover").await;
    assert_eq!(
        extensions(client.head()).as_deref(),
        Some("permessage-deflate; server_no_context_takeover")
    );
}

#[actix_rt::test]
async fn compressed_text_and_binary_are_echoed_compressed_and_short_ones_plain() {
    let wsd = TestWsd::start(config_on());
    let mut client = connect_offering(&wsd, "/", "permessage-deflate").await;
    let mut peer = Peer::standard();
    let text = json_like(2000);
    send_compressed(&mut client, &mut peer, TEXT, &text, 0).await;
    let (op, compressed, payload) = next_message(&mut client).await;
    assert!(compressed && op == TEXT);
    assert!(payload.len() < text.len() / 3, "{} bytes", payload.len());
    assert_eq!(peer.inflate(&payload), text);

    let binary: Vec<u8> = (0..3000u32).map(|i| (i % 7) as u8).collect();
    send_compressed(&mut client, &mut peer, BINARY, &binary, 0).await;
    let (op, compressed, payload) = next_message(&mut client).await;
    assert!(compressed && op == BINARY);
    assert_eq!(peer.inflate(&payload), binary);

    // Shorter than min_size (16 here): uncompressed both ways is fine.
    client.send(&RawFrame::text("tiny")).await;
    assert_eq!(
        next_message(&mut client).await,
        (TEXT, false, b"tiny".to_vec())
    );
    send_compressed(&mut client, &mut peer, TEXT, b"tiny too", 0).await;
    assert_eq!(
        next_message(&mut client).await,
        (TEXT, false, b"tiny too".to_vec())
    );
    // An empty compressed message.
    send_compressed(&mut client, &mut peer, TEXT, b"", 0).await;
    assert_eq!(next_message(&mut client).await, (TEXT, false, Vec::new()));
}

#[actix_rt::test]
async fn fragmented_compressed_messages_between_pings_are_reassembled() {
    let wsd = TestWsd::start(config_on());
    let mut client = connect_offering(&wsd, "/", "permessage-deflate").await;
    let mut peer = Peer::standard();
    let text = json_like(5000);
    let payload = peer.compress(&text);
    let mut frames = fragments(TEXT, &payload, 64);
    assert!(frames.len() > 4);
    // A ping after the first and after the third fragment.
    frames.insert(3, RawFrame::ping("b"));
    frames.insert(1, RawFrame::ping("a"));
    for frame in &frames {
        client.send(frame).await;
    }
    for expected in [b"a", b"b"] {
        let pong = client.next_frame().await;
        assert_eq!(
            (pong.opcode, pong.rsv, &pong.payload[..]),
            (PONG, 0, &expected[..])
        );
    }
    let (op, compressed, reply) = next_message(&mut client).await;
    assert!(compressed && op == TEXT);
    assert_eq!(peer.inflate(&reply), text);
}

#[actix_rt::test]
async fn rsv1_misuse_closes_with_1002() {
    let wsd = TestWsd::start(config_on());
    let mut peer = Peer::standard();
    let payload = peer.compress(b"some compressed text");

    // Not negotiated: no offer made.
    let mut client = RawClient::connect(wsd.addr()).await;
    client
        .send(&RawFrame::text(payload.clone()).rsv(RSV1))
        .await;
    client
        .expect_close_for(code::PROTOCOL_ERROR, format_args!("no extension"))
        .await;

    // On control frames.
    for frame in [
        RawFrame::ping("p").rsv(RSV1),
        RawFrame::pong("p").rsv(RSV1),
        RawFrame::close(1000, "").rsv(RSV1),
    ] {
        let mut client = connect_offering(&wsd, "/", "permessage-deflate").await;
        client.send(&frame).await;
        client
            .expect_close_for(code::PROTOCOL_ERROR, format_args!("{frame:?}"))
            .await;
    }

    // On a continuation frame.
    let mut client = connect_offering(&wsd, "/", "permessage-deflate").await;
    let (a, b) = payload.split_at(4);
    client
        .send_all(&[
            RawFrame::text(a.to_vec()).rsv(RSV1).fin(false),
            RawFrame::continuation(b.to_vec()).rsv(RSV1),
        ])
        .await;
    client
        .expect_close_for(code::PROTOCOL_ERROR, format_args!("continuation"))
        .await;

    // RSV2 and RSV3 stay reserved with the extension.
    for rsv in [0b010, 0b001] {
        let mut client = connect_offering(&wsd, "/", "permessage-deflate").await;
        client.send(&RawFrame::text("x").rsv(rsv)).await;
        client
            .expect_close_for(code::PROTOCOL_ERROR, format_args!("rsv {rsv:03b}"))
            .await;
    }

    // Data that is not DEFLATE: 1007.
    let mut client = connect_offering(&wsd, "/", "permessage-deflate").await;
    client
        .send(&RawFrame::binary(vec![0xff, 0xff]).rsv(RSV1))
        .await;
    client
        .expect_close_for(code::INVALID_PAYLOAD, format_args!("corrupt"))
        .await;
}

#[actix_rt::test]
async fn context_takeover_lets_message_two_use_the_window_of_message_one() {
    let mut config = config_on();
    config.session.deflate.server_context_takeover = true;
    let wsd = TestWsd::start(config);
    // The client keeps its context (no client_no_context_takeover), and so
    // does the server (configured, not refused by the offer).
    let mut client = connect_offering(&wsd, "/", "permessage-deflate").await;
    let mut peer = Peer::new(15, false, false);
    let text = json_like(3000);
    let first = peer.compress(&text);
    let second = peer.compress(&text);
    assert!(
        second.len() * 4 < first.len(),
        "message 2 refers back to message 1"
    );
    // Message 2 alone, with a fresh window, cannot be inflated correctly.
    let mut fresh = Decompress::new_with_window_bits(false, 15);
    let mut out = Vec::with_capacity(10_000);
    let alone = [&second[..], &TAIL].concat();
    let broken = fresh.decompress_vec(&alone, &mut out, FlushDecompress::Sync);
    assert!(broken.is_err() || out != text);

    client.send(&RawFrame::text(first).rsv(RSV1)).await;
    client.send(&RawFrame::text(second).rsv(RSV1)).await;
    let (_, _, reply1) = next_message(&mut client).await;
    let (_, _, reply2) = next_message(&mut client).await;
    assert!(
        reply2.len() * 4 < reply1.len(),
        "the server's reply 2 refers back too"
    );
    assert_eq!(peer.inflate(&reply1), text);
    assert_eq!(peer.inflate(&reply2), text);
}

#[actix_rt::test]
async fn without_client_context_takeover_the_server_inflates_each_message_alone() {
    let wsd = TestWsd::start(config_on());
    let mut client =
        connect_offering(&wsd, "/", "permessage-deflate; client_no_context_takeover").await;
    let mut peer = Peer::new(15, true, true);
    for _ in 0..3 {
        let text = json_like(1000);
        send_compressed(&mut client, &mut peer, TEXT, &text, 0).await;
        let (_, compressed, reply) = next_message(&mut client).await;
        assert!(compressed);
        assert_eq!(peer.inflate(&reply), text);
    }
}

/// This process's resident memory (the server runs in it), in bytes.
fn rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .expect("VmRSS")
        * 1024
}

#[actix_rt::test]
async fn a_decompression_bomb_closes_with_1009_and_memory_stays_flat() {
    // 1 MiB of zeros is about 1 KiB compressed (DEFLATE's ratio tops out
    // near 1000:1, so no single 1 KiB frame can hold 1 GiB): 1024 such
    // 1 KiB frames make one message that would inflate to 1 GiB.
    let mut config = config_on();
    config.session.max_message_size = 1 << 20;
    let wsd = TestWsd::start(config);
    let mut chunk_compressor = Compress::new_with_window_bits(Compression::new(9), false, 15);
    let mut chunk = Vec::with_capacity(4096);
    chunk_compressor
        .compress_vec(&vec![0; 1 << 20], &mut chunk, FlushCompress::Sync)
        .expect("compress");
    assert!(chunk.len() <= 1100, "{} bytes", chunk.len());

    let before = rss();
    let started = Instant::now();
    let mut client = connect_offering(&wsd, "/", "permessage-deflate").await;
    let mut sent = 0;
    for i in 0..1024 {
        let frame = if i == 0 {
            RawFrame::binary(chunk.clone()).rsv(RSV1).fin(false)
        } else {
            RawFrame::continuation(chunk.clone()).fin(i == 1023)
        };
        // The server closes early; writes after that may fail.
        if tokio::io::AsyncWriteExt::write_all(&mut client.stream, &frame.encode())
            .await
            .is_err()
        {
            break;
        }
        sent += 1;
        if sent >= 8 {
            // Far past the limit already; stop feeding and read the verdict.
            break;
        }
    }
    client.expect_close(code::TOO_BIG).await;
    assert!(started.elapsed() < BOUND);
    let grown = rss().saturating_sub(before);
    assert!(grown < 32 << 20, "RSS grew by {} MiB", grown >> 20);

    // One 1 KiB frame that inflates to 1 MiB, against a 64 KiB limit.
    let mut config = config_on();
    config.session.max_message_size = 64 << 10;
    let small = TestWsd::start(config);
    let mut client = connect_offering(&small, "/", "permessage-deflate").await;
    let mut frame = chunk.clone();
    frame.truncate(frame.len() - 4);
    client.send(&RawFrame::binary(frame).rsv(RSV1)).await;
    client.expect_close(code::TOO_BIG).await;
}

#[actix_rt::test]
async fn a_broadcast_is_compressed_once_for_subscribers_that_share_the_window() {
    let mut config = config_on();
    config.channels.namespace = vec![NamespaceConfig::default()];
    let wsd = TestWsd::start(config);
    let mut shared_a = connect_offering(&wsd, "/channels/feed", "permessage-deflate").await;
    let mut shared_b = connect_offering(
        &wsd,
        "/channels/feed",
        "permessage-deflate; client_no_context_takeover",
    )
    .await;
    // A smaller window: this one gets a frame compressed for it alone.
    let mut narrow = connect_offering(
        &wsd,
        "/channels/feed",
        "permessage-deflate; server_max_window_bits=9",
    )
    .await;
    let mut plain = RawClient::connect_with(wsd.addr(), "/channels/feed", &[]).await;
    wsd.wait_subscriptions(4).await;

    let published = json_like(4000);
    let res = wsd
        .post("/channels/feed")
        .insert_header(("content-type", "text/plain"))
        .send_body(published.clone())
        .await
        .expect("publish");
    assert!(res.status().is_success(), "{}", res.status());

    let a = shared_a.next_data_or_close().await;
    let b = shared_b.next_data_or_close().await;
    assert_eq!(a.rsv, RSV1);
    assert_eq!(a.encode(), b.encode(), "the same compressed frame");
    assert_eq!(Peer::standard().inflate(&a.payload), published);

    let n = narrow.next_data_or_close().await;
    assert_eq!(n.rsv, RSV1);
    let mut nine = Decompress::new_with_window_bits(false, 9);
    let mut out = Vec::with_capacity(published.len() + 64);
    nine.decompress_vec(
        &[&n.payload[..], &TAIL].concat(),
        &mut out,
        FlushDecompress::Sync,
    )
    .expect("inflates with a 512-byte window");
    assert_eq!(out, published);

    let p = plain.next_data_or_close().await;
    assert_eq!((p.rsv, p.payload), (0, published));
}

/// The parameter sets of Autobahn's section 13 (offer, and what the test's
/// side then does), each run with the message sizes and fragmentations of
/// section 12.
#[actix_rt::test]
async fn autobahn_sections_12_and_13_compressed_echo_in_every_combination() {
    let wsd = TestWsd::start(config_on());
    // (offer, client window, client no context takeover, server no context takeover)
    let sets: &[(&str, u8, bool, bool)] = &[
        ("permessage-deflate", 15, false, true),
        (
            "permessage-deflate; client_no_context_takeover",
            15,
            true,
            true,
        ),
        (
            "permessage-deflate; server_no_context_takeover",
            15,
            false,
            true,
        ),
        (
            "permessage-deflate; client_max_window_bits=9",
            9,
            false,
            true,
        ),
        (
            "permessage-deflate; client_max_window_bits=15",
            15,
            false,
            true,
        ),
        (
            "permessage-deflate; server_max_window_bits=9",
            15,
            false,
            true,
        ),
        (
            "permessage-deflate; server_max_window_bits=8",
            15,
            false,
            true,
        ),
        (
            "permessage-deflate; client_no_context_takeover; client_max_window_bits=9; server_no_context_takeover; server_max_window_bits=9",
            9,
            true,
            true,
        ),
    ];
    let sizes = [16, 64, 256, 1024, 4096, 8192, 16384, 32768, 65536, 131072];
    let deadline = Instant::now() + Duration::from_secs(60);
    for (offer, bits, client_no_ctx, server_no_ctx) in sets {
        let mut client = connect_offering(&wsd, "/", offer).await;
        assert!(
            extensions(client.head()).is_some(),
            "offer {offer:?} accepted"
        );
        let mut peer = Peer::new(*bits, *client_no_ctx, *server_no_ctx);
        for size in sizes {
            for fragment in [0, 256] {
                for round in 0..3 {
                    let msg = if round == 1 {
                        // Incompressible-ish bytes as text-safe letters.
                        let mut x = size as u32 ^ 0x9e37_79b9;
                        (0..size)
                            .map(|_| {
                                x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                                b'a' + ((x >> 16) % 26) as u8
                            })
                            .collect()
                    } else {
                        json_like(size)
                    };
                    send_compressed(&mut client, &mut peer, TEXT, &msg, fragment).await;
                    let (op, compressed, reply) = next_message(&mut client).await;
                    let got = if compressed {
                        peer.inflate(&reply)
                    } else {
                        reply
                    };
                    assert_eq!(op, TEXT);
                    assert!(
                        got == msg,
                        "offer {offer:?}, size {size}, fragment {fragment}, round {round}"
                    );
                    let expect_compressed = !offer.contains("server_max_window_bits=8");
                    assert_eq!(compressed, expect_compressed, "offer {offer:?}");
                }
            }
            assert!(Instant::now() < deadline, "took too long");
        }
        client.send(&RawFrame::close(1000, "")).await;
        let close = client.next_data_or_close().await;
        assert_eq!(close.close_code(), Some(1000));
        assert_eq!(client.read().await, Read::Eof);
    }
}

#[actix_rt::test]
async fn pings_are_never_compressed() {
    let wsd = TestWsd::start(config_on());
    let mut client = connect_offering(&wsd, "/", "permessage-deflate").await;
    let long = "p".repeat(125);
    client.send(&RawFrame::ping(long.clone())).await;
    let pong = client.next_frame().await;
    assert_eq!(
        (pong.opcode, pong.rsv, pong.payload),
        (PONG, 0, long.into_bytes())
    );
    // The server's heartbeat pings are plain too.
    let deadline = Instant::now() + BOUND;
    loop {
        match client.read().await {
            Read::Frame(f) if f.opcode == PING => {
                assert_eq!(f.rsv, 0);
                break;
            }
            Read::Frame(_) => {}
            Read::Eof => panic!("closed"),
        }
        assert!(Instant::now() < deadline, "no heartbeat ping");
    }
}
