//! Writes the seed corpus kept in the repository, `corpus/<target>/`:
//! `cargo run --example seeds` (from `fuzz/`). The frames come from
//! `wsd::protocol::RawFrame`, so the seeds are laid out by the same code as
//! everything else.
//!
//! A decoder seed is two steering bytes, then the wire (see `wsd_fuzz`);
//! an inflate seed has the parameter byte in front. Its compressed frames
//! come from `wsd::protocol::deflate::Compressor`, as a client would send
//! them.

use std::fs;
use std::path::Path;

use wsd::protocol::deflate::{Compressor, DeflateParams, SendSettings};
use wsd::protocol::opcode::{BINARY, CLOSE, PING, TEXT};
use wsd::protocol::{LengthForm, RawFrame};

/// The limit byte for 1 MiB (1 << 20) and for 16 bytes (1 << 4).
const BIG: u8 = 20;
const SMALL: u8 = 4;

fn decoder_seeds() -> Vec<(&'static str, u8, u8, Vec<RawFrame>)> {
    let euro = "€".as_bytes();
    vec![
        ("text", BIG, 0, vec![RawFrame::text("hello")]),
        (
            "fragments-with-ping",
            BIG,
            3,
            vec![
                RawFrame::text("frag").fin(false),
                RawFrame::ping("p"),
                RawFrame::continuation("ment").fin(false),
                RawFrame::continuation("ed"),
            ],
        ),
        (
            "utf8-split",
            BIG,
            0,
            vec![
                RawFrame::text(&euro[..1]).fin(false),
                RawFrame::continuation(&euro[1..2]).fin(false),
                RawFrame::continuation(&euro[2..]),
            ],
        ),
        (
            "empty-fragments",
            BIG,
            1,
            vec![
                RawFrame::binary("").fin(false),
                RawFrame::continuation("").fin(false),
                RawFrame::continuation(""),
            ],
        ),
        (
            "binary-16bit",
            BIG,
            17,
            vec![RawFrame::binary(vec![7; 300])],
        ),
        (
            "non-minimal-lengths",
            BIG,
            5,
            vec![
                RawFrame::text("u16").length(LengthForm::U16),
                RawFrame::binary("u64").length(LengthForm::U64),
                RawFrame::ping("").length(LengthForm::U16),
            ],
        ),
        (
            "control",
            BIG,
            2,
            vec![
                RawFrame::ping("ping"),
                RawFrame::pong("pong"),
                RawFrame::close(1000, "bye"),
            ],
        ),
        ("close-empty", BIG, 0, vec![RawFrame::new(CLOSE, "")]),
        ("close-bad-code", BIG, 0, vec![RawFrame::close(1005, "")]),
        (
            "close-bad-reason",
            BIG,
            0,
            vec![RawFrame::new(CLOSE, &b"\x03\xe8\xff"[..])],
        ),
        (
            "text-bad-utf8",
            BIG,
            4,
            vec![RawFrame::text(&b"ok\xf4\x90\x80\x80"[..])],
        ),
        ("rsv", BIG, 0, vec![RawFrame::text("x").rsv(0b100)]),
        ("reserved-opcode", BIG, 0, vec![RawFrame::new(11, "x")]),
        ("long-ping", BIG, 9, vec![RawFrame::new(PING, vec![0; 126])]),
        (
            "fragmented-ping",
            BIG,
            0,
            vec![RawFrame::ping("").fin(false)],
        ),
        (
            "top-bit-length",
            BIG,
            0,
            vec![
                RawFrame::binary("")
                    .length(LengthForm::U64)
                    .declare(1 << 63),
            ],
        ),
        (
            "too-big-fragmented",
            SMALL,
            2,
            vec![
                RawFrame::text("0123456789").fin(false),
                RawFrame::continuation("0123456789"),
            ],
        ),
        (
            "stray-continuation",
            BIG,
            0,
            vec![RawFrame::continuation("x")],
        ),
    ]
}

/// The parameter byte of an inflate seed: the client's window bits and
/// whether it resets its context (see `wsd_fuzz::decoder_inflate`).
fn params(window_bits: u8, no_context_takeover: bool) -> u8 {
    (window_bits - 8) | if no_context_takeover { 8 } else { 0 }
}

/// A client's compressor for `window_bits`, compressing every message.
fn compressor(window_bits: u8, no_context_takeover: bool) -> Compressor {
    let agreed = DeflateParams {
        server_no_context_takeover: false,
        client_no_context_takeover: no_context_takeover,
        server_max_window_bits: 15,
        client_max_window_bits: window_bits,
    };
    let settings = SendSettings {
        level: 6,
        min_size: 0,
    };
    Compressor::new(settings, &agreed, false)
        .expect("valid settings")
        .expect("a window zlib can do")
}

/// One compressed message as `pieces` frames: the payload the compressor
/// made, cut evenly, RSV1 on the first frame only (RFC 7692 section 6.1).
fn compressed(c: &mut Compressor, opcode: u8, message: &[u8], pieces: usize) -> Vec<RawFrame> {
    let frame = c.frame(opcode, &[message], None).expect("compressed");
    let (frame, _) = RawFrame::parse(&frame).expect("a whole frame");
    let size = frame.payload.len().div_ceil(pieces.max(1)).max(1);
    let chunks: Vec<&[u8]> = frame.payload.chunks(size).collect();
    let last = chunks.len() - 1;
    chunks
        .iter()
        .enumerate()
        .map(|(i, chunk)| {
            let op = if i == 0 { opcode } else { 0 };
            let rsv = if i == 0 { 0b100 } else { 0 };
            RawFrame::new(op, chunk.to_vec()).rsv(rsv).fin(i == last)
        })
        .collect()
}

fn inflate_seeds() -> Vec<(&'static str, u8, u8, u8, Vec<RawFrame>)> {
    let json = br#"{"channel":"prices","data":{"symbol":"ABC","bid":101.25,"ask":101.5}}"#;
    let mut seeds = Vec::new();
    let mut c = compressor(15, false);
    seeds.push((
        "text",
        params(15, false),
        BIG,
        0,
        compressed(&mut c, TEXT, json, 1),
    ));
    let mut c = compressor(15, false);
    seeds.push((
        "binary-fragmented",
        params(15, false),
        BIG,
        3,
        compressed(&mut c, BINARY, &[7; 2000], 3),
    ));
    // Message 2 and 3 need the window of message 1.
    let mut c = compressor(15, false);
    let mut frames = compressed(&mut c, TEXT, json, 1);
    frames.push(RawFrame::ping("p"));
    frames.extend(compressed(&mut c, TEXT, json, 2));
    frames.extend(compressed(&mut c, TEXT, json, 1));
    seeds.push(("context-takeover", params(15, false), BIG, 5, frames));
    let mut c = compressor(9, true);
    let mut frames = compressed(&mut c, TEXT, json, 1);
    frames.extend(compressed(&mut c, BINARY, json, 2));
    seeds.push(("no-context-takeover-9", params(9, true), BIG, 2, frames));
    let mut c = compressor(12, false);
    let mut frames = vec![RawFrame::text("plain")];
    frames.extend(compressed(&mut c, TEXT, json, 4));
    frames.push(RawFrame::pong(""));
    seeds.push(("mixed-12", params(12, false), BIG, 7, frames));
    // 1 MiB of zeros in a few KiB, against a 1 KiB limit: must stop at 1009.
    let mut c = compressor(15, false);
    seeds.push((
        "bomb",
        params(15, false),
        10,
        0,
        compressed(&mut c, BINARY, &vec![0; 1 << 20], 2),
    ));
    let mut c = compressor(15, false);
    seeds.push((
        "empty",
        params(15, false),
        BIG,
        1,
        compressed(&mut c, TEXT, b"", 1),
    ));
    let mut c = compressor(15, false);
    let mut frames = compressed(&mut c, TEXT, json, 2);
    frames[1].rsv = 0b100;
    seeds.push(("rsv1-continuation", params(15, false), BIG, 0, frames));
    seeds.push((
        "rsv1-control",
        params(15, false),
        BIG,
        0,
        vec![RawFrame::ping("x").rsv(0b100)],
    ));
    seeds.push((
        "corrupt",
        params(15, false),
        BIG,
        0,
        vec![RawFrame::text(&b"\xff\xff\xff\xff"[..]).rsv(0b100)],
    ));
    let mut c = compressor(15, false);
    seeds.push((
        "invalid-utf8",
        params(15, false),
        BIG,
        2,
        compressed(&mut c, TEXT, b"ok\xf4\x90\x80\x80 and more", 2),
    ));
    seeds
}

/// Seeds end in `.seed`: what fuzzing adds beside them is not kept.
fn write(dir: &Path, name: &str, bytes: &[u8]) {
    fs::create_dir_all(dir).expect("create corpus dir");
    fs::write(dir.join(format!("{name}.seed")), bytes).expect("write seed");
}

fn main() {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    for (name, limit, cuts, frames) in decoder_seeds() {
        // The server reads masked frames, the client unmasked ones; each
        // gets the other's too, as a fault to find.
        for (target, masked) in [("decoder_server", true), ("decoder_client", false)] {
            let mut bytes = vec![limit, cuts];
            for frame in &frames {
                let frame = if masked {
                    frame.clone()
                } else {
                    frame.clone().unmasked()
                };
                frame.encode_into(&mut bytes);
            }
            write(&corpus.join(target), name, &bytes);
        }
    }
    let mut wrong_side = vec![BIG, 0];
    RawFrame::text("masked").encode_into(&mut wrong_side);
    write(&corpus.join("decoder_client"), "masked", &wrong_side);
    let mut wrong_side = vec![BIG, 0];
    RawFrame::text("unmasked")
        .unmasked()
        .encode_into(&mut wrong_side);
    write(&corpus.join("decoder_server"), "unmasked", &wrong_side);

    for (name, params, limit, cuts, frames) in inflate_seeds() {
        let mut bytes = vec![params, limit, cuts];
        for frame in &frames {
            frame.encode_into(&mut bytes);
        }
        write(&corpus.join("decoder_inflate"), name, &bytes);
    }

    let shipped = include_str!("../../config/wsd.toml");
    let configs: [(&str, &str); 8] = [
        ("shipped", shipped),
        ("empty", ""),
        (
            "short-timers",
            "[server]\nbind = \"127.0.0.1:0\"\nworkers = 1\n[session]\nheartbeat_interval = \"250ms\"\nclient_timeout = \"1m 30s\"\nclose_timeout = \"1s 500ms\"\nmax_message_size = \"64 KiB\"\nreply_prefix = \"\"\n",
        ),
        (
            "tls",
            "[server]\nbind = \"[::1]:8443\"\npath = \"/ws\"\n[tls]\ncert = \"certs/cert.pem\"\nkey = \"certs/key.pem\"\nclient_ca = \"certs/ca.pem\"\n",
        ),
        (
            "sizes",
            "[session]\nmax_message_size = 1048576\n[log]\nlevel = \"debug\"\n",
        ),
        ("unknown-key", "[server]\nworkerz = 1\n"),
        (
            "bad-duration",
            "[session]\nclient_timeout = \"10 parsecs\"\n",
        ),
        (
            "inline-tables",
            "server = { bind = \"localhost:1\", max_connections = 3 }\nsession.reply_prefix = 'got: '\n",
        ),
    ];
    for (name, text) in configs {
        write(&corpus.join("config"), name, text.as_bytes());
    }
}
