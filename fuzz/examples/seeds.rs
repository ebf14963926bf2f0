//! Writes the seed corpus kept in the repository, `corpus/<target>/`:
//! `cargo run --example seeds` (from `fuzz/`). The frames come from
//! `wsd::protocol::RawFrame`, so the seeds are laid out by the same code as
//! everything else.
//!
//! A decoder seed is two steering bytes, then the wire (see `wsd_fuzz`).

use std::fs;
use std::path::Path;

use wsd::protocol::opcode::{CLOSE, PING};
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
