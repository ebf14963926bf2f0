//! RFC 6455 conformance, proven with raw frames over a real socket.
//!
//! Each section below is one rule of the protocol; each test fails if the
//! server breaks that rule. The cases mirror the Autobahn testsuite (sections
//! 1-7, 9 and 10, named in the comments) so that a regression shows up here
//! long before an Autobahn run. Text replies use an empty prefix, so the echo
//! must be byte-for-byte the message.

mod common;

use std::time::{Duration, Instant};

use common::raw::{self, RawClient, Read};
use common::{TestWsd, test_config};
use tokio::io::AsyncWriteExt;
use wsd::config::Config;
use wsd::protocol::opcode::{BINARY, CLOSE, CONTINUATION, PING, PONG, TEXT};
use wsd::protocol::{DEFAULT_MASK, Header, LengthForm, MAX_HEADER_LEN, RawFrame};

const MIB: usize = 1 << 20;

/// The test config with a pure echo.
fn echo_config() -> Config {
    let mut config = test_config();
    config.session.reply_prefix = String::new();
    config
}

fn start() -> TestWsd {
    TestWsd::start(echo_config())
}

async fn connect(wsd: &TestWsd) -> RawClient {
    RawClient::connect(wsd.addr()).await
}

/// Asserts that `frame` is a single, unmasked, unreserved data frame carrying
/// `payload` (compared without printing megabytes on failure).
fn assert_echo(frame: &RawFrame, opcode: u8, payload: &[u8]) {
    assert_eq!(
        (frame.opcode, frame.fin, frame.rsv, frame.mask.is_some()),
        (opcode, true, 0, false),
        "expected an echo of {} bytes, got opcode {} with {} bytes",
        payload.len(),
        frame.opcode,
        frame.payload.len()
    );
    assert!(
        frame.payload == payload,
        "echo differs: sent {} bytes, got {} bytes{}",
        payload.len(),
        frame.payload.len(),
        if payload.len() <= 200 {
            format!(": sent {payload:?}, got {:?}", frame.payload)
        } else {
            String::new()
        }
    );
}

async fn expect_echo(client: &mut RawClient, opcode: u8, payload: &[u8]) {
    let frame = client.next_data_or_close().await;
    assert_echo(&frame, opcode, payload);
}

async fn expect_pong(client: &mut RawClient, payload: &[u8]) {
    let frame = client.next_frame().await;
    assert_eq!(frame.opcode, PONG, "expected a pong, got {frame:?}");
    assert_eq!(frame.payload, payload);
    assert!(
        frame.fin && frame.mask.is_none() && frame.rsv == 0,
        "{frame:?}"
    );
}

/// `payload` as a message of `opcode` in masked frames of at most `size`
/// bytes, written straight from the borrowed parts (a `RawFrame` per part
/// would copy each one; there can be hundreds of thousands).
fn fragmented(opcode: u8, payload: &[u8], size: usize) -> Vec<u8> {
    let parts: Vec<&[u8]> = if payload.is_empty() {
        vec![&[]]
    } else {
        payload.chunks(size.max(1)).collect()
    };
    let last = parts.len() - 1;
    let mut wire = Vec::with_capacity(payload.len() + parts.len() * MAX_HEADER_LEN);
    for (i, part) in parts.into_iter().enumerate() {
        let header = Header {
            fin: i == last,
            mask: Some(DEFAULT_MASK),
            ..Header::new(if i == 0 { opcode } else { CONTINUATION }, part.len())
        };
        header.write_frame(part, &mut wire);
    }
    wire
}

/// `len` bytes of printable ASCII, so the same payload serves text and binary.
fn ascii(len: usize) -> Vec<u8> {
    (0..len).map(|i| b'a' + (i % 26) as u8).collect()
}

// ---------------------------------------------------------------------------
// Rule 1: framing (Autobahn 1.1.x, 1.2.x)
// ---------------------------------------------------------------------------

#[actix_web::test]
async fn payloads_of_every_length_encoding_echo_exactly() {
    let wsd = start();
    let mut client = connect(&wsd).await;
    for len in [0, 1, 125, 126, 127, 128, 65535, 65536] {
        let payload = ascii(len);
        client.send(&RawFrame::text(payload.clone())).await;
        expect_echo(&mut client, TEXT, &payload).await;
        let binary: Vec<u8> = (0..len).map(|i| (i * 7 % 256) as u8).collect();
        client.send(&RawFrame::binary(binary.clone())).await;
        expect_echo(&mut client, BINARY, &binary).await;
    }
}

#[actix_web::test]
async fn non_minimal_length_encodings_are_accepted() {
    let wsd = start();
    let mut client = connect(&wsd).await;
    for (len, form) in [
        (5, LengthForm::U16),
        (5, LengthForm::U64),
        (0, LengthForm::U16),
        (200, LengthForm::U64),
        (70_000, LengthForm::U64),
    ] {
        let payload = ascii(len);
        client
            .send(&RawFrame::text(payload.clone()).length(form))
            .await;
        expect_echo(&mut client, TEXT, &payload).await;
    }
}

#[actix_web::test]
async fn a_multi_mib_frame_echoes_with_a_raised_limit() {
    let mut config = echo_config();
    config.session.max_message_size = 8 * MIB;
    let wsd = TestWsd::start(config);
    let mut client = connect(&wsd).await;
    let payload = ascii(5 * MIB + 3);
    let echoes = client
        .exchange(&RawFrame::binary(payload.clone()).encode(), 1)
        .await;
    assert_echo(&echoes[0], BINARY, &payload);
}

#[actix_web::test]
async fn frames_written_byte_by_byte_are_echoed() {
    let wsd = start();
    let mut client = connect(&wsd).await;
    // Every header form, each byte its own TCP write (Autobahn 1.1.8-ish).
    for len in [3, 300, 70_000] {
        let payload = ascii(len);
        let frame = RawFrame::text(payload.clone()).encode();
        let size = if len > 1000 { 997 } else { 1 };
        client.write_split(&frame, size).await;
        expect_echo(&mut client, TEXT, &payload).await;
    }
    let mut header_then_payload = RawFrame::binary(vec![9; 70_000])
        .length(LengthForm::U64)
        .encode();
    client.write_split(&header_then_payload[..14], 1).await;
    client.write(&header_then_payload.split_off(14)).await;
    expect_echo(&mut client, BINARY, &[9; 70_000]).await;
}

#[actix_web::test]
async fn an_unmasked_client_frame_fails_with_1002() {
    let wsd = start();
    for frame in [
        RawFrame::text("plain"),
        RawFrame::binary(vec![1, 2, 3]),
        RawFrame::ping("p"),
        RawFrame::close(1000, ""),
    ] {
        let mut client = connect(&wsd).await;
        client
            .send_all(&[RawFrame::text("ok"), frame.unmasked(), RawFrame::ping("x")])
            .await;
        expect_echo(&mut client, TEXT, b"ok").await;
        client.expect_close(1002).await;
    }
}

#[actix_web::test]
async fn a_64_bit_length_with_the_top_bit_set_fails_with_1002() {
    let wsd = start();
    let mut client = connect(&wsd).await;
    let header = RawFrame::binary("")
        .length(LengthForm::U64)
        .declare(1 << 63 | 5);
    client.send(&header).await;
    client.expect_close(1002).await;
}

// ---------------------------------------------------------------------------
// Rule 2: reserved bits (Autobahn 3.x)
// ---------------------------------------------------------------------------

#[actix_web::test]
async fn any_reserved_bit_fails_with_1002_and_nothing_of_that_frame_is_answered() {
    let wsd = start();
    for rsv in 1..=7u8 {
        for bad in [
            RawFrame::text("rsv"),
            RawFrame::binary(vec![0, 1]),
            RawFrame::text(""),
            RawFrame::ping("rsv ping"),
            RawFrame::pong(""),
            RawFrame::close(1000, ""),
        ] {
            let what = format!("rsv {rsv} on opcode {}", bad.opcode);
            let mut client = connect(&wsd).await;
            // Autobahn 3.2/3.3: a good message, the bad frame, then a ping that
            // must not be answered; all in one write.
            client
                .send_all(&[
                    RawFrame::text("before"),
                    bad.rsv(rsv),
                    RawFrame::ping("after"),
                ])
                .await;
            expect_echo(&mut client, TEXT, b"before").await;
            client.expect_close_for(1002, format_args!("{what}")).await;
        }
    }
}

#[actix_web::test]
async fn reserved_bits_in_a_fragment_or_chopped_frame_fail_with_1002() {
    let wsd = start();
    // On a continuation frame.
    let mut client = connect(&wsd).await;
    client
        .send_all(&[
            RawFrame::text("a").fin(false),
            RawFrame::continuation("b").rsv(4),
        ])
        .await;
    client.expect_close(1002).await;
    // Autobahn 3.4: sent frame by frame in small chops. Only the first two
    // bytes of the bad frame are written: its header alone must condemn it.
    let mut client = connect(&wsd).await;
    client
        .write_split(&RawFrame::text("fine").encode(), 1)
        .await;
    expect_echo(&mut client, TEXT, b"fine").await;
    let bad = RawFrame::binary(vec![7; 1000]).rsv(2).encode();
    client.write_split(&bad[..2], 1).await;
    client.expect_close(1002).await;
}

// ---------------------------------------------------------------------------
// Rule 3: opcodes (Autobahn 4.x)
// ---------------------------------------------------------------------------

#[actix_web::test]
async fn reserved_opcodes_fail_with_1002() {
    let wsd = start();
    for opcode in (3..=7).chain(11..=15) {
        for payload in [&b""[..], b"reserved opcode payload"] {
            let mut client = connect(&wsd).await;
            client
                .send_all(&[
                    RawFrame::text("before"),
                    RawFrame::new(opcode, payload),
                    RawFrame::ping("after"),
                ])
                .await;
            expect_echo(&mut client, TEXT, b"before").await;
            client
                .expect_close_for(1002, format_args!("opcode {opcode}"))
                .await;
        }
        // Header alone, written byte by byte (Autobahn 4.1.5 / 4.2.5 chop).
        let mut client = connect(&wsd).await;
        client
            .write_split(&RawFrame::new(opcode, vec![0; 300]).encode()[..2], 1)
            .await;
        client.expect_close(1002).await;
    }
}

// ---------------------------------------------------------------------------
// Rule 4: control frames (Autobahn 2.x, 5.6-5.8, 5.19, 5.20)
// ---------------------------------------------------------------------------

#[actix_web::test]
async fn a_control_frame_over_125_bytes_fails_with_1002() {
    let wsd = start();
    let mut long_close = 1000u16.to_be_bytes().to_vec();
    long_close.extend(ascii(124)); // Autobahn 7.3.6: 126-byte close payload.
    for frame in [
        RawFrame::ping(vec![0xFE; 126]),
        RawFrame::pong(vec![0; 126]),
        RawFrame::new(CLOSE, long_close),
    ] {
        let opcode = frame.opcode;
        let mut client = connect(&wsd).await;
        client.send(&frame).await;
        client
            .expect_close_for(1002, format_args!("opcode {opcode}"))
            .await;
    }
}

#[actix_web::test]
async fn a_fragmented_control_frame_fails_with_1002() {
    let wsd = start();
    for opcode in [PING, PONG, CLOSE] {
        let mut client = connect(&wsd).await;
        let payload = if opcode == CLOSE {
            1000u16.to_be_bytes().to_vec()
        } else {
            b"frag".to_vec()
        };
        client
            .send_all(&[
                RawFrame::new(opcode, payload).fin(false),
                RawFrame::continuation("ment"),
            ])
            .await;
        client
            .expect_close_for(1002, format_args!("opcode {opcode}"))
            .await;
    }
}

#[actix_web::test]
async fn a_ping_between_fragments_is_answered_at_once_and_the_message_arrives_whole() {
    let wsd = start();
    let mut client = connect(&wsd).await;
    // Autobahn 5.19: the rest of the message is only sent once the pong is in,
    // so a server that waits for the message to finish fails here.
    client.send(&RawFrame::text("fragment1 ").fin(false)).await;
    client
        .send(&RawFrame::continuation("fragment2 ").fin(false))
        .await;
    client.send(&RawFrame::ping("pongme 1!")).await;
    expect_pong(&mut client, b"pongme 1!").await;
    client
        .send(&RawFrame::continuation("fragment3 ").fin(false))
        .await;
    client.send(&RawFrame::ping(vec![0, 0xFF, 0x80])).await;
    expect_pong(&mut client, &[0, 0xFF, 0x80]).await;
    client.send(&RawFrame::continuation("fragment4")).await;
    expect_echo(
        &mut client,
        TEXT,
        b"fragment1 fragment2 fragment3 fragment4",
    )
    .await;

    // Autobahn 5.8: the same with every byte in its own TCP write, a ping
    // between the two fragments, and a multi-byte character split by it.
    let mut wire = RawFrame::binary(vec![1, 2]).fin(false).encode();
    wire.extend(RawFrame::ping("mid").encode());
    wire.extend(RawFrame::continuation(vec![3]).encode());
    wire.extend(RawFrame::text(&"€".as_bytes()[..1]).fin(false).encode());
    wire.extend(RawFrame::ping("").encode());
    wire.extend(RawFrame::continuation(&"€".as_bytes()[1..]).encode());
    client.write_split(&wire, 1).await;
    expect_pong(&mut client, b"mid").await;
    expect_echo(&mut client, BINARY, &[1, 2, 3]).await;
    expect_pong(&mut client, b"").await;
    expect_echo(&mut client, TEXT, "€".as_bytes()).await;
}

#[actix_web::test]
async fn pings_are_answered_with_the_exact_payload() {
    let wsd = start();
    let mut client = connect(&wsd).await;
    let payloads: [Vec<u8>; 5] = [
        Vec::new(),
        b"Hello, world!".to_vec(),
        vec![0x00, 0xFF, 0xFE, 0xFD, 0xFC, 0xFB, 0x00, 0xFF], // Autobahn 2.3
        vec![0xFE; 125],                                      // Autobahn 2.4
        (0..125).map(|i| i as u8 ^ 0xA5).collect(),
    ];
    for payload in &payloads {
        client.send(&RawFrame::ping(payload.clone())).await;
        expect_pong(&mut client, payload).await;
    }
    // Autobahn 2.6: 125 bytes, chopped into one-byte writes.
    client
        .write_split(&RawFrame::ping(vec![0xFE; 125]).encode(), 1)
        .await;
    expect_pong(&mut client, &[0xFE; 125]).await;
    // Autobahn 2.10 / 2.11: ten pings back to back, then ten chopped; each
    // answered, in order.
    let pings: Vec<RawFrame> = (0..10)
        .map(|i| RawFrame::ping(format!("payload-{i}")))
        .collect();
    client.send_all(&pings).await;
    for i in 0..10 {
        expect_pong(&mut client, format!("payload-{i}").as_bytes()).await;
    }
    let wire: Vec<u8> = pings.iter().flat_map(RawFrame::encode).collect();
    client.write_split(&wire, 1).await;
    for i in 0..10 {
        expect_pong(&mut client, format!("payload-{i}").as_bytes()).await;
    }
}

#[actix_web::test]
async fn unsolicited_pongs_are_ignored() {
    let wsd = start();
    let mut client = connect(&wsd).await;
    // Autobahn 2.7-2.9: pongs nobody asked for, then a ping and a message;
    // the first thing back must be the pong to our ping, then the echo.
    client
        .send_all(&[
            RawFrame::pong(""),
            RawFrame::pong("unsolicited pong payload"),
            RawFrame::pong(vec![0xFF; 125]),
            RawFrame::ping("ping payload"),
            RawFrame::text("after"),
        ])
        .await;
    expect_pong(&mut client, b"ping payload").await;
    expect_echo(&mut client, TEXT, b"after").await;
    // And in the middle of a fragmented message.
    client
        .send_all(&[
            RawFrame::binary(vec![1]).fin(false),
            RawFrame::pong("x"),
            RawFrame::continuation(vec![2]),
        ])
        .await;
    expect_echo(&mut client, BINARY, &[1, 2]).await;
}

// ---------------------------------------------------------------------------
// Rule 5: fragmentation (Autobahn 5.x, 6.1, 10.1.1)
// ---------------------------------------------------------------------------

#[actix_web::test]
async fn any_number_of_fragments_including_empty_ones_reassemble() {
    let wsd = start();
    let mut client = connect(&wsd).await;
    let text = ascii(65536);
    // Autobahn 10.1.1 uses 1300-byte fragments; 1 makes 65536 of them.
    for size in [1, 2, 7, 1300, 65535, 65536] {
        client.write(&fragmented(TEXT, &text, size)).await;
        expect_echo(&mut client, TEXT, &text).await;
        client.write(&fragmented(BINARY, &text[..3000], size)).await;
        expect_echo(&mut client, BINARY, &text[..3000]).await;
    }
    // Autobahn 6.1.1-6.1.3: empty messages, empty fragments everywhere.
    let cases: [(&[RawFrame], &[u8]); 4] = [
        (&[RawFrame::text("")], b""),
        (
            &[
                RawFrame::text("").fin(false),
                RawFrame::continuation("").fin(false),
                RawFrame::continuation(""),
            ],
            b"",
        ),
        (
            &[
                RawFrame::text("").fin(false),
                RawFrame::continuation("middle").fin(false),
                RawFrame::continuation(""),
            ],
            b"middle",
        ),
        (
            &[
                RawFrame::binary(vec![]).fin(false),
                RawFrame::continuation(vec![]).fin(false),
                RawFrame::continuation(vec![1]).fin(false),
                RawFrame::continuation(vec![]).fin(false),
                RawFrame::continuation(vec![2]),
            ],
            &[1, 2],
        ),
    ];
    for (frames, expected) in cases {
        client.send_all(frames).await;
        expect_echo(&mut client, frames[0].opcode, expected).await;
    }
}

#[actix_web::test]
async fn a_continuation_with_no_message_open_fails_with_1002() {
    let wsd = start();
    let cases: [Vec<RawFrame>; 4] = [
        // Autobahn 5.9 / 5.12: a lone continuation, final or not.
        vec![RawFrame::continuation("orphan")],
        vec![RawFrame::continuation("orphan").fin(false)],
        // Autobahn 5.15: a complete fragmented message, then a continuation.
        vec![
            RawFrame::text("frag1").fin(false),
            RawFrame::continuation("frag2"),
            RawFrame::continuation("frag3").fin(false),
            RawFrame::text("frag4"),
        ],
        // After a complete single-frame message.
        vec![RawFrame::binary(vec![1]), RawFrame::continuation(vec![2])],
    ];
    for (i, frames) in cases.iter().enumerate() {
        let mut client = connect(&wsd).await;
        client.send_all(frames).await;
        match i {
            2 => expect_echo(&mut client, TEXT, b"frag1frag2").await,
            3 => expect_echo(&mut client, BINARY, &[1]).await,
            _ => {}
        }
        client.expect_close(1002).await;
    }
    // Autobahn 5.10 / 5.11: the lone continuation chopped byte by byte.
    let mut client = connect(&wsd).await;
    client
        .write_split(&RawFrame::continuation("orphan").encode(), 1)
        .await;
    client.expect_close(1002).await;
}

#[actix_web::test]
async fn a_data_frame_inside_an_open_fragmented_message_fails_with_1002() {
    let wsd = start();
    for (first, second) in [
        (RawFrame::text("a").fin(false), RawFrame::text("b")),
        (RawFrame::text("a").fin(false), RawFrame::binary(vec![1])),
        (
            RawFrame::binary(vec![1]).fin(false),
            RawFrame::text("b").fin(false),
        ),
        (
            RawFrame::binary(vec![]).fin(false),
            RawFrame::binary(vec![]),
        ),
    ] {
        let mut client = connect(&wsd).await;
        client
            .send_all(&[first, RawFrame::ping("ok"), second])
            .await;
        expect_pong(&mut client, b"ok").await;
        client.expect_close(1002).await;
    }
}

#[actix_web::test]
async fn echoes_of_complete_messages_precede_a_later_protocol_error() {
    let wsd = start();
    let mut client = connect(&wsd).await;
    // All in one write: three good messages, then a frame that fails.
    client
        .send_all(&[
            RawFrame::text("one"),
            RawFrame::binary(vec![2]),
            RawFrame::text("th").fin(false),
            RawFrame::continuation("ree"),
            RawFrame::text("bad").rsv(1),
            RawFrame::text("never"),
        ])
        .await;
    expect_echo(&mut client, TEXT, b"one").await;
    expect_echo(&mut client, BINARY, &[2]).await;
    expect_echo(&mut client, TEXT, b"three").await;
    client.expect_close(1002).await;
}

// ---------------------------------------------------------------------------
// Rule 6: UTF-8 (Autobahn 6.x)
// ---------------------------------------------------------------------------

const KOSME: &[u8] = b"\xCE\xBA\xE1\xBD\xB9\xCF\x83\xCE\xBC\xCE\xB5";

/// Valid UTF-8, including every boundary of every sequence length.
const VALID_UTF8: &[&[u8]] = &[
    "Hello-µ@ßöäüàá-UTF-8!!".as_bytes(),
    KOSME,
    b"\x00",
    b"\xC2\x80",
    b"\xE0\xA0\x80",
    b"\xF0\x90\x80\x80",
    b"\x7F",
    b"\xDF\xBF",
    b"\xEF\xBF\xBF",
    b"\xF4\x8F\xBF\xBF",
    b"\xED\x9F\xBF",
    b"\xEE\x80\x80",
    b"\xEF\xBF\xBD",
    b"\xEF\xBF\xBE",
    "𝄞 and 😀 mixed with ascii".as_bytes(),
];

/// Invalid UTF-8 after Markus Kuhn's stress test, as Autobahn uses it.
const INVALID_UTF8: &[&[u8]] = &[
    // Autobahn 6.3.1: κόσμε with a surrogate inserted.
    b"\xCE\xBA\xE1\xBD\xB9\xCF\x83\xCE\xBC\xCE\xB5\xED\xA0\x80\x65\x64\x69\x74\x65\x64",
    // Above U+10FFFF, and the old 5- and 6-byte forms.
    b"\xF4\x90\x80\x80",
    b"\xF7\xBF\xBF\xBF",
    b"\xF8\x88\x80\x80\x80",
    b"\xFC\x84\x80\x80\x80\x80",
    // Lone continuation bytes.
    b"\x80",
    b"\xBF",
    b"\x80\xBF",
    b"\x80\xBF\x80\xBF\x80",
    // Lonely start bytes followed by a space.
    b"\xC0 \xC1 ",
    b"\xE0 ",
    b"\xF0 ",
    // Overlong encodings of '/', the largest overlongs, overlong NUL.
    b"\xC0\xAF",
    b"\xE0\x80\xAF",
    b"\xF0\x80\x80\xAF",
    b"\xC1\xBF",
    b"\xE0\x9F\xBF",
    b"\xF0\x8F\xBF\xBF",
    b"\xC0\x80",
    b"\xE0\x80\x80",
    // Surrogates, single and paired.
    b"\xED\xA0\x80",
    b"\xED\xAD\xBF",
    b"\xED\xAE\x80",
    b"\xED\xB0\x80",
    b"\xED\xBF\xBF",
    b"\xED\xA0\x80\xED\xB0\x80",
    // Bytes that never appear.
    b"\xFE",
    b"\xFF",
    b"\xFE\xFE\xFF\xFF",
    // Truncated at the end of the message.
    b"\xC2",
    b"\xDF",
    b"\xE0\xA0",
    b"\xEF\xBF",
    b"\xF0\x90\x80",
    b"\xF4\x8F\xBF",
    b"\xCE\xBA\xE1\xBD\xB9\xCF\x83\xCE\xBC\xCE",
    // Valid text, then trouble.
    b"ok\xCE\x20",
    b"Hello-\xC0\x80-world",
];

/// The shortest prefix of `bytes` that no continuation can make valid UTF-8,
/// or `None` if only the end of the message makes it invalid. `std`'s
/// validator is the oracle: `error_len() == None` means "cut short".
fn hopeless_prefix(bytes: &[u8]) -> Option<usize> {
    (1..=bytes.len())
        .find(|&n| matches!(std::str::from_utf8(&bytes[..n]), Err(e) if e.error_len().is_some()))
}

#[test]
fn the_utf8_vectors_are_what_they_claim() {
    for v in VALID_UTF8 {
        assert!(std::str::from_utf8(v).is_ok(), "{v:?}");
    }
    for v in INVALID_UTF8 {
        assert!(std::str::from_utf8(v).is_err(), "{v:?}");
    }
}

#[actix_web::test]
async fn valid_utf8_echoes_whole_fragmented_and_byte_by_byte() {
    let wsd = start();
    let mut client = connect(&wsd).await;
    for text in VALID_UTF8 {
        client.send(&RawFrame::text(*text)).await;
        expect_echo(&mut client, TEXT, text).await;
        // Autobahn 6.2.x / 6.5.x: one byte per fragment, so every sequence is
        // split at every point.
        client.write(&fragmented(TEXT, text, 1)).await;
        expect_echo(&mut client, TEXT, text).await;
        // One frame, one byte per TCP write.
        client.write_split(&RawFrame::text(*text).encode(), 1).await;
        expect_echo(&mut client, TEXT, text).await;
    }
}

#[actix_web::test]
async fn invalid_utf8_fails_with_1007_as_one_frame() {
    let wsd = start();
    for text in INVALID_UTF8 {
        let mut client = connect(&wsd).await;
        client
            .send_all(&[RawFrame::text("fine"), RawFrame::text(*text)])
            .await;
        expect_echo(&mut client, TEXT, b"fine").await;
        client
            .expect_close_for(1007, format_args!("{text:?}"))
            .await;
    }
}

#[actix_web::test]
async fn invalid_utf8_in_fragments_fails_at_the_first_hopeless_fragment() {
    let wsd = start();
    for text in INVALID_UTF8 {
        // One byte per fragment; only the fragments up to the one that makes
        // the text hopeless are sent. A final fragment is never sent for a
        // hopeless text, so a server that waits for the message end times out.
        let wire = fragmented(TEXT, text, 1);
        let frame_len = wire.len() / text.len();
        let sent = hopeless_prefix(text).unwrap_or(text.len());
        let mut client = connect(&wsd).await;
        client.write(&wire[..sent * frame_len]).await;
        client
            .expect_close_for(1007, format_args!("{text:?}"))
            .await;
    }
}

#[actix_web::test]
async fn invalid_utf8_inside_one_frame_fails_at_the_chunk_that_makes_it_invalid() {
    let wsd = start();
    for text in INVALID_UTF8 {
        let Some(sent) = hopeless_prefix(text) else {
            continue;
        };
        // A frame declaring the whole text plus a tail that never comes;
        // written in one-byte pieces up to the hopeless byte.
        let mut payload = text.to_vec();
        payload.extend_from_slice(b" and a tail that is never sent");
        let frame = RawFrame::text(payload);
        let (wire, header) = (frame.encode(), frame.header().size());
        let mut client = connect(&wsd).await;
        client.write_split(&wire[..header + sent], 1).await;
        client
            .expect_close_for(1007, format_args!("{text:?}"))
            .await;
    }
}

#[actix_web::test]
async fn autobahn_6_4_fail_fast_cases() {
    let wsd = start();
    // 6.4.1: κόσμε | F4 90 80 80 | "edited", the last fragment never sent.
    let mut client = connect(&wsd).await;
    client.send(&RawFrame::text(KOSME).fin(false)).await;
    client
        .send(&RawFrame::continuation(&b"\xF4\x90\x80\x80"[..]).fin(false))
        .await;
    client.expect_close(1007).await;
    // 6.4.2: κόσμε F4 | 90 | ...: hopeless at the one-byte fragment.
    let mut client = connect(&wsd).await;
    let mut first = KOSME.to_vec();
    first.push(0xF4);
    client.send(&RawFrame::text(first).fin(false)).await;
    client
        .send(&RawFrame::continuation(&b"\x90"[..]).fin(false))
        .await;
    client.expect_close(1007).await;
    // 6.4.3: one frame in three chops, the third never sent.
    let mut payload = KOSME.to_vec();
    payload.extend_from_slice(b"\xF4\x90\x80\x80");
    payload.extend_from_slice(b"edited");
    let frame = RawFrame::text(payload);
    let (wire, header) = (frame.encode(), frame.header().size());
    let mut client = connect(&wsd).await;
    client.write(&wire[..header + KOSME.len()]).await;
    client
        .write(&wire[header + KOSME.len()..header + KOSME.len() + 4])
        .await;
    client.expect_close(1007).await;
    // 6.4.4: the same, chopped right after the byte that breaks it.
    let mut client = connect(&wsd).await;
    client.write(&wire[..header + KOSME.len()]).await;
    client
        .write(&wire[header + KOSME.len()..header + KOSME.len() + 2])
        .await;
    client.expect_close(1007).await;
}

#[actix_web::test]
async fn binary_messages_are_not_held_to_utf8() {
    let wsd = start();
    let mut client = connect(&wsd).await;
    for bytes in INVALID_UTF8 {
        client.send(&RawFrame::binary(*bytes)).await;
        expect_echo(&mut client, BINARY, bytes).await;
    }
}

// ---------------------------------------------------------------------------
// Rule 7: closing (Autobahn 7.x)
// ---------------------------------------------------------------------------

#[actix_web::test]
async fn every_valid_close_code_is_echoed() {
    let wsd = start();
    let codes = (1000..=1003)
        .chain(1007..=1014)
        .chain([3000, 3999, 4000, 4999]);
    for code in codes {
        let mut client = connect(&wsd).await;
        client.send(&RawFrame::close(code, "")).await;
        client.expect_close(code).await;
    }
    // Autobahn 7.3.1 / 7.3.3-7.3.5: no payload, code only, code and reason,
    // the longest reason that fits (123 bytes).
    let mut client = connect(&wsd).await;
    client.send(&RawFrame::new(CLOSE, vec![])).await;
    let reply = client.next_frame().await;
    assert_eq!((reply.opcode, reply.payload.len()), (CLOSE, 0), "{reply:?}");
    client.expect_nothing_then_eof().await;
    for reason in [
        String::from("Hello World!"),
        String::from("κόσμε"),
        String::from_utf8(ascii(123)).unwrap(),
    ] {
        let mut client = connect(&wsd).await;
        client.send(&RawFrame::close(1000, &reason)).await;
        client.expect_close(1000).await;
    }
}

#[actix_web::test]
async fn invalid_close_codes_fail_with_1002() {
    let wsd = start();
    let codes = [
        0, 1, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 5061, 65535,
    ];
    for code in codes {
        let mut client = connect(&wsd).await;
        client.send(&RawFrame::close(code, "")).await;
        client
            .expect_close_for(1002, format_args!("code {code}"))
            .await;
    }
}

#[actix_web::test]
async fn a_one_byte_close_payload_fails_with_1002() {
    let wsd = start();
    let mut client = connect(&wsd).await;
    client.send(&RawFrame::new(CLOSE, vec![0x03])).await;
    client.expect_close(1002).await;
}

#[actix_web::test]
async fn a_close_reason_that_is_not_utf8_fails_with_1007() {
    let wsd = start();
    for reason in [
        &b"\xCE\xBA\xE1\xBD\xB9\xCF\x83\xCE\xBC\xCE\xB5\xED\xA0\x80\x65\x64"[..],
        b"\xFF",
        b"cut \xCE",
    ] {
        let mut client = connect(&wsd).await;
        let mut payload = 1000u16.to_be_bytes().to_vec();
        payload.extend_from_slice(reason);
        client.send(&RawFrame::new(CLOSE, payload)).await;
        client.expect_close(1007).await;
    }
}

#[actix_web::test]
async fn nothing_follows_the_close_reply() {
    let wsd = start();
    // Autobahn 7.1.2-7.1.4 and more: whatever follows the peer's close in the
    // same write must be neither answered nor echoed, nor fail the
    // connection a second time.
    let followers = [
        RawFrame::text("after close"),
        RawFrame::binary(vec![1, 2, 3]),
        RawFrame::ping("after close"),
        RawFrame::close(1000, "second close"),
        RawFrame::text("bad").rsv(1),
        RawFrame::text(&b"\xFF"[..]),
    ];
    for follower in followers {
        let what = format!("{follower:?}");
        let mut client = connect(&wsd).await;
        client
            .send_all(&[RawFrame::close(1000, ""), follower])
            .await;
        let close = client.next_frame().await;
        assert_eq!(
            (close.opcode, close.close_code()),
            (CLOSE, Some(1000)),
            "{what}: {close:?}"
        );
        match client.read().await {
            Read::Eof => {}
            Read::Frame(f) => panic!("after close then {what}: frame after the close reply: {f:?}"),
        }
    }
}

#[actix_web::test]
async fn a_close_inside_a_fragmented_message_is_echoed_and_the_message_dropped() {
    let wsd = start();
    let mut client = connect(&wsd).await;
    // Autobahn 7.1.5.
    client
        .send_all(&[
            RawFrame::text("fragment1").fin(false),
            RawFrame::close(1000, ""),
            RawFrame::continuation("fragment2"),
        ])
        .await;
    client.expect_close(1000).await;
    // Autobahn 7.1.6: a large message, then a close; the echo comes first.
    let mut client = connect(&wsd).await;
    let big = ascii(256 * 1024);
    let mut wire = RawFrame::text(big.clone()).encode();
    wire.extend(RawFrame::close(1000, "").encode());
    wire.extend(RawFrame::ping("").encode());
    let frames = client.exchange(&wire, 2).await;
    assert_echo(&frames[0], TEXT, &big);
    assert_eq!(
        (frames[1].opcode, frames[1].close_code()),
        (CLOSE, Some(1000))
    );
    client.expect_nothing_then_eof().await;
}

#[actix_web::test]
async fn after_the_closing_handshake_the_server_closes_tcp_first() {
    // Timers far beyond BOUND: an EOF within BOUND can only come from the
    // completed handshake, not from a timeout giving up on us.
    let mut config = echo_config();
    config.session.close_timeout = Duration::from_secs(60);
    config.session.client_timeout = Duration::from_secs(60);
    let wsd = TestWsd::start(config);
    let mut client = connect(&wsd).await;
    client.send(&RawFrame::text("hi")).await;
    expect_echo(&mut client, TEXT, b"hi").await;
    client.send(&RawFrame::close(1000, "done")).await;
    let close = client.next_frame().await;
    assert_eq!((close.opcode, close.close_code()), (CLOSE, Some(1000)));
    // The client keeps its side open: the EOF must come from the server.
    let started = Instant::now();
    client.expect_nothing_then_eof().await;
    eprintln!(
        "server closed TCP {:?} after its close reply",
        started.elapsed()
    );
    wsd.wait_sessions(0).await;
}

#[actix_web::test]
async fn a_server_initiated_close_to_a_silent_peer_ends_within_close_timeout() {
    let mut config = echo_config();
    config.session.close_timeout = Duration::from_millis(300);
    let wsd = TestWsd::start(config);
    let mut client = connect(&wsd).await;
    client.send(&RawFrame::text("up")).await;
    expect_echo(&mut client, TEXT, b"up").await;
    let reader = async {
        let close = client.next_frame().await;
        assert_eq!(
            (close.opcode, close.close_code()),
            (CLOSE, Some(1001)),
            "{close:?}"
        );
        // We never answer; the server must give up on its own.
        client.expect_nothing_then_eof().await;
    };
    let (left, ()) = tokio::join!(wsd.state.shutdown(Duration::from_secs(5)), reader);
    assert_eq!(left, Ok(0), "the silent session outlived the shutdown");
}

#[actix_web::test]
async fn a_server_initiated_close_ends_tcp_as_soon_as_the_peer_answers() {
    let mut config = echo_config();
    // Far beyond BOUND: the EOF within BOUND can only come from the answer.
    config.session.close_timeout = Duration::from_secs(60);
    let wsd = TestWsd::start(config);
    let mut client = connect(&wsd).await;
    // The session registers as its actor starts, just after the handshake: a
    // shutdown sent before that would find nobody to close.
    wsd.wait_sessions(1).await;
    let reader = async {
        let close = client.next_frame().await;
        assert_eq!(
            (close.opcode, close.close_code()),
            (CLOSE, Some(1001)),
            "{close:?}"
        );
        client.send(&RawFrame::close(1001, "")).await;
        client.expect_nothing_then_eof().await;
    };
    let (left, ()) = tokio::join!(wsd.state.shutdown(Duration::from_secs(30)), reader);
    assert_eq!(left, Ok(0));
}

#[actix_web::test]
async fn a_heartbeat_timeout_sends_a_close_and_ends_tcp() {
    let mut config = echo_config();
    config.session.heartbeat_interval = Duration::from_millis(50);
    config.session.client_timeout = Duration::from_millis(200);
    let wsd = TestWsd::start(config);
    let mut client = connect(&wsd).await;
    // Never answering the pings: the server must fail the connection itself.
    client.expect_close(1011).await;
}

// ---------------------------------------------------------------------------
// Rule 8: limits and performance (Autobahn 9.x)
// ---------------------------------------------------------------------------

/// Autobahn 9.1-9.4: 16 MiB messages, in one frame and in fragments of 64 B
/// to 64 KiB, each echoed whole. Round trips are reported, never asserted.
#[actix_web::test]
async fn sixteen_mib_messages_echo_whole_and_fragmented() {
    const WHOLE: usize = 16 * MIB;
    let text = ascii(16 * MIB);
    let binary: Vec<u8> = (0..16 * MIB).map(|i| (i * 31 % 251) as u8).collect();
    // (opcode, payload, largest frame)
    let cases: [(u8, &[u8], usize); 7] = [
        (TEXT, &text, WHOLE),
        (BINARY, &binary, WHOLE),
        (TEXT, &text, 64),
        (TEXT, &text, 256),
        (BINARY, &text, 1024),
        (TEXT, &text, 4096),
        (TEXT, &text, 65536),
    ];
    let mut config = echo_config();
    config.session.max_message_size = 16 * MIB;
    let wsd = TestWsd::start(config);
    for (opcode, payload, frame) in cases {
        let wire = fragmented(opcode, payload, frame);
        let mut client = connect(&wsd).await;
        let started = Instant::now();
        let echoes = client.exchange(&wire, 1).await;
        eprintln!(
            "16 MiB, opcode {opcode}, frames of {frame} B: round trip in {:?}",
            started.elapsed()
        );
        assert_echo(&echoes[0], opcode, payload);
    }
}

#[actix_web::test]
async fn a_large_frame_in_small_tcp_writes_is_echoed() {
    // Autobahn 9.5 / 9.6: one 1 MiB frame, written in chops of 64 B to 4 KiB.
    let mut config = echo_config();
    config.session.max_message_size = 16 * MIB;
    let wsd = TestWsd::start(config);
    let mut client = connect(&wsd).await;
    let payload = ascii(MIB);
    for chop in [64, 256, 1024, 4096] {
        let started = Instant::now();
        client
            .write_split(&RawFrame::text(payload.clone()).encode(), chop)
            .await;
        expect_echo(&mut client, TEXT, &payload).await;
        eprintln!("1 MiB text in {chop} B writes: {:?}", started.elapsed());
    }
}

#[actix_web::test]
async fn a_thousand_messages_in_one_write_are_echoed_in_order() {
    let wsd = start();
    let mut client = connect(&wsd).await;
    // Autobahn 9.7 / 9.8, all sent before any echo is read.
    for size in [0, 16, 64, 256, 1024, 4096] {
        let messages: Vec<Vec<u8>> = (0..1000)
            .map(|i| {
                let mut m = format!("{i:04}").into_bytes();
                m.resize(size.max(4), b'.');
                m.truncate(size.max(4));
                m
            })
            .collect();
        for opcode in [TEXT, BINARY] {
            let wire: Vec<u8> = messages
                .iter()
                .flat_map(|m| RawFrame::new(opcode, m.clone()).encode())
                .collect();
            let echoes = client.exchange(&wire, 1000).await;
            for (echo, message) in echoes.iter().zip(&messages) {
                assert_echo(echo, opcode, message);
            }
        }
    }
}

#[actix_web::test]
async fn a_frame_over_max_message_size_fails_with_1009_on_its_header() {
    let mut config = echo_config();
    config.session.max_message_size = 4096;
    let wsd = TestWsd::start(config);
    for (opcode, len) in [
        (TEXT, 4097),
        (BINARY, 4097),
        (BINARY, 16 * MIB),
        (TEXT, usize::MAX >> 1),
    ] {
        let mut client = connect(&wsd).await;
        // Only the 14-byte header: the payload is never sent.
        let header = RawFrame::new(opcode, "")
            .length(LengthForm::U64)
            .declare(len as u64);
        client.send(&header).await;
        client.expect_close(1009).await;
    }
    // Exactly at the limit is fine.
    let mut client = connect(&wsd).await;
    client.send(&RawFrame::binary(vec![5; 4096])).await;
    expect_echo(&mut client, BINARY, &[5; 4096]).await;
}

#[actix_web::test]
async fn a_fragmented_message_over_max_message_size_fails_with_1009() {
    let mut config = echo_config();
    config.session.max_message_size = 4096;
    let wsd = TestWsd::start(config);
    let payload = ascii(4096);
    // Exactly the limit in 64-byte fragments is fine.
    let mut client = connect(&wsd).await;
    client.write(&fragmented(TEXT, &payload, 64)).await;
    expect_echo(&mut client, TEXT, &payload).await;
    // One byte more fails when that byte's frame header arrives; the final
    // fragment is never sent.
    for opcode in [TEXT, BINARY] {
        let mut client = connect(&wsd).await;
        let mut wire = fragmented(opcode, &payload, 64);
        let last = wire.len() - RawFrame::continuation(vec![0; 64]).encode().len();
        wire.truncate(last);
        wire.extend(RawFrame::continuation(ascii(64)).fin(false).encode());
        wire.extend(RawFrame::continuation(&b"x"[..]).fin(false).encode());
        client.write(&wire).await;
        client.expect_close(1009).await;
    }
}

// ---------------------------------------------------------------------------
// Rule 9: the opening handshake
// ---------------------------------------------------------------------------

#[actix_web::test]
async fn a_bad_handshake_gets_4xx_and_the_server_keeps_serving() {
    let wsd = start();
    let cases: [(&[&str], u16); 10] = [
        (&["Sec-WebSocket-Version:"], 426),
        (&["Sec-WebSocket-Version: 8"], 426),
        (&["Sec-WebSocket-Version: 14"], 426),
        (&["Sec-WebSocket-Key:"], 400),
        (&["Sec-WebSocket-Key: c2hvcnQ="], 400),
        (&["Sec-WebSocket-Key: not base64 at all, not at all"], 400),
        (&["Upgrade:"], 426),
        (&["Upgrade: h2c"], 426),
        (&["Connection:"], 400),
        (&["Connection: keep-alive"], 400),
    ];
    for (extra, status) in cases {
        let (mut stream, got, head) = raw::handshake(wsd.addr(), "/", extra).await;
        assert_eq!(got, status, "{extra:?}:\n{head}");
        if status == 426 && extra[0].starts_with("Sec-WebSocket-Version") {
            assert!(
                head.to_ascii_lowercase()
                    .contains("sec-websocket-version: 13"),
                "{head}"
            );
        }
        // Not a WebSocket: a ping gets no pong, and the server ends the
        // connection rather than leave it open.
        let _ = stream.write_all(&RawFrame::ping("x").encode()).await;
        let (rest, ended) = raw::read_to_eof(&mut stream).await;
        assert!(ended, "{extra:?}: the refused connection was left open");
        let pong = RawFrame::pong("x").unmasked().encode();
        assert!(
            !rest.windows(pong.len()).any(|w| w == pong),
            "{extra:?}: the refused connection answered like a WebSocket"
        );
    }
    assert_eq!(wsd.sessions().await, 0);
    let mut client = connect(&wsd).await;
    client.send(&RawFrame::text("still serving")).await;
    expect_echo(&mut client, TEXT, b"still serving").await;
}

#[actix_web::test]
async fn the_handshake_answer_is_101_with_the_rfc_accept_key() {
    let wsd = start();
    let (_stream, status, head) = raw::handshake(wsd.addr(), "/", &[]).await;
    assert_eq!(status, 101, "{head}");
    // RFC 6455 section 1.3's worked example.
    assert!(head.contains("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="), "{head}");
}

#[actix_web::test]
async fn a_permessage_deflate_offer_is_declined_and_the_connection_works_uncompressed() {
    let wsd = start();
    let offers = [
        "Sec-WebSocket-Extensions: permessage-deflate",
        "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits, x-webkit-deflate-frame",
    ];
    for offer in offers {
        let mut client = RawClient::connect_with(wsd.addr(), "/", &[offer]).await;
        assert!(
            !client
                .head()
                .to_ascii_lowercase()
                .contains("sec-websocket-extensions"),
            "{}",
            client.head()
        );
        let text = "uncompressed, compressible, uncompressed, compressible".as_bytes();
        client.send(&RawFrame::text(text)).await;
        expect_echo(&mut client, TEXT, text).await;
        // A compressed frame (RSV1) was not negotiated, so it is a protocol error.
        client
            .send(&RawFrame::text(vec![0xF2, 0x48, 0xCD, 0xC9, 0xC9, 0x07, 0x00]).rsv(4))
            .await;
        client.expect_close(1002).await;
    }
}
