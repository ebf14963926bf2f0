//! `wsc`, the real binary, against our server and against an independent
//! tokio-tungstenite peer (tests/common/peer.rs). The child runs under
//! tokio::process so the actix test runtime keeps serving while it runs;
//! every wait is bounded.

mod common;

use std::time::{Duration, Instant};

use common::peer::{Peer, Script, close_frame};
use common::raw::{RawClient, Read};
use common::wsc::{assert_refused, finish, run, wsc};
use common::{BOUND, TestWsd, test_config, wait_until};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout};
use tokio_tungstenite::tungstenite::Message;

#[actix_web::test]
async fn a_pipeline_of_1000_lines_prints_every_reply_in_order() {
    let wsd = TestWsd::start(test_config());
    let input: String = (1..=1000).map(|i| format!("line {i}\n")).collect();
    let r = run(&[&wsd.ws_url()], input.as_bytes()).await;
    let expected: String = (1..=1000)
        .map(|i| format!("Server received: line {i}\n"))
        .collect();
    assert_eq!(r.stdout, expected);
    assert_eq!((r.code, r.stderr.as_str()), (0, ""));
}

#[actix_web::test]
async fn an_empty_line_is_an_empty_message() {
    let peer = Peer::start(Script::default()).await;
    let r = run(&[&peer.url()], b"\nx\n").await;
    assert_eq!(r.stdout, "\nx\n");
    assert_eq!(
        peer.record().messages,
        [Message::text(""), Message::text("x")]
    );
}

#[actix_web::test]
async fn eof_sends_close_1000_and_exits_0() {
    let peer = Peer::start(Script::default()).await;
    let r = run(&[&peer.url()], b"hi\n").await;
    assert_eq!(
        (r.code, r.stdout.as_str(), r.stderr.as_str()),
        (0, "hi\n", "")
    );
    let record = peer
        .wait_for("the close frame", |r| r.close.is_some())
        .await;
    assert_eq!(record.close_code(), Some(1000));
}

#[actix_web::test]
async fn replies_in_flight_at_eof_are_still_printed() {
    let peer = Peer::start(Script {
        echo_delay: Duration::from_millis(200),
        ..Script::default()
    })
    .await;
    let r = run(&[&peer.url()], b"one\ntwo\n").await;
    assert_eq!((r.code, r.stdout.as_str()), (0, "one\ntwo\n"));
}

#[actix_web::test]
async fn a_refused_connection_exits_1_with_one_line_on_stderr() {
    // Bound but not listening: the port stays ours (no other test can take
    // it), and a connection to it is refused.
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket
        .bind(&std::net::SocketAddr::from(([127, 0, 0, 1], 0)).into())
        .unwrap();
    let addr = socket.local_addr().unwrap().as_socket().unwrap();
    let url = format!("ws://{addr}/");
    let r = run(&[&url], b"").await;
    assert_refused(&r, &url, "refused");
}

#[actix_web::test]
async fn a_refused_handshake_exits_1_naming_the_status() {
    let wsd = TestWsd::start(test_config());
    let url = format!("ws://{}/no/such/path", wsd.addr());
    let r = run(&[&url], b"").await;
    assert_eq!(r.code, 1);
    assert_eq!(
        r.stderr,
        format!("wsc: cannot connect to {url}: handshake failed: 404 Not Found\n")
    );
}

#[actix_web::test]
async fn usage_errors_exit_2() {
    let r = run(&["http://127.0.0.1:1/"], b"").await;
    assert_eq!(r.code, 2);
    let r = run(&["-H", "no colon here", "ws://127.0.0.1:1/"], b"").await;
    assert_eq!(r.code, 2);
}

#[actix_web::test]
async fn the_servers_ping_is_answered_while_stdin_is_idle() {
    let peer = Peer::start(Script {
        on_connect: vec![Message::Ping(b"heartbeat".to_vec().into())],
        ..Script::default()
    })
    .await;
    // stdin stays open (nothing typed): reading and writing are independent.
    let mut child = wsc(&[&peer.url()]).spawn().unwrap();
    let record = peer.wait_for("a pong", |r| !r.pongs.is_empty()).await;
    assert_eq!(record.pongs, [b"heartbeat".to_vec()]);
    drop(child.stdin.take());
    let r = finish(child).await;
    assert_eq!((r.code, r.stdout.as_str(), r.stderr.as_str()), (0, "", ""));
}

/// Returns once the server's heartbeat has dropped a peer that never
/// answers its pings, connected now: an event that proves a whole
/// `client_timeout` has passed since the call, which is long enough for the
/// server to drop anyone else who stayed silent meanwhile.
async fn outlast_a_heartbeat_timeout(wsd: &TestWsd) {
    let mut silent = RawClient::connect(wsd.addr()).await;
    loop {
        match silent.read().await {
            Read::Frame(f) if f.opcode == wsd::protocol::opcode::PING => continue,
            // The server's close (or its TCP close): the peer was dropped.
            Read::Frame(_) | Read::Eof => return,
        }
    }
}

/// wsc (against wsd's default prefix) answers one more line, then, at EOF,
/// closes normally and exits 0 with nothing on stderr.
async fn still_echoes_then_exits_0(
    child: Child,
    mut stdin: ChildStdin,
    stdout: &mut Lines<BufReader<ChildStdout>>,
) {
    stdin.write_all(b"still here\n").await.unwrap();
    let line = tokio::time::timeout(BOUND, stdout.next_line())
        .await
        .expect("no reply within the bound")
        .unwrap();
    assert_eq!(line.as_deref(), Some("Server received: still here"));
    drop(stdin);
    let r = finish(child).await;
    assert_eq!((r.code, r.stderr.as_str()), (0, ""));
}

/// The server pings every 250 ms and drops a client it has not heard from
/// for 1 s.
fn short_heartbeat() -> wsd::config::Config {
    let mut config = test_config();
    config.session.client_timeout = Duration::from_millis(1000);
    config
}

#[actix_web::test]
async fn our_server_heartbeat_does_not_drop_an_idle_client() {
    let wsd = TestWsd::start(short_heartbeat());
    let mut child = wsc(&[&wsd.ws_url()]).spawn().unwrap();
    wsd.wait_sessions(1).await;
    // wsc sends nothing through two heartbeat timeouts (one could end just
    // before wsc's own check): only its pongs keep it alive.
    outlast_a_heartbeat_timeout(&wsd).await;
    outlast_a_heartbeat_timeout(&wsd).await;
    wsd.wait_sessions(1).await;
    let stdin = child.stdin.take().unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
    still_echoes_then_exits_0(child, stdin, &mut stdout).await;
}

#[actix_web::test]
async fn a_stdout_nobody_reads_does_not_stop_pongs_and_loses_nothing() {
    let wsd = TestWsd::start(short_heartbeat());
    let mut child = wsc(&[&wsd.ws_url()]).spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    // Not read until the end: once its pipe is full, every write wsc makes
    // to stdout would block.
    let stdout = child.stdout.take().unwrap();
    // 20,000 replies of 80 bytes: 1.6 MB, 25 times a 64 KiB pipe.
    const LINES: usize = 20_000;
    let line = |i: usize| format!("line {i:05} {}", "x".repeat(52));
    let input: String = (0..LINES).map(|i| line(i) + "\n").collect();
    tokio::time::timeout(BOUND, stdin.write_all(input.as_bytes()))
        .await
        .expect("wsc stopped reading stdin: its stdout holds up the connection")
        .unwrap();
    let sent = wait_until(BOUND, || async {
        wsd.metric("wsd_messages_sent_total").await >= Some(LINES as f64)
    })
    .await;
    assert!(sent, "the server did not send every reply");
    // Two heartbeat timeouts with stdout still unread: wsc must go on
    // answering pings.
    outlast_a_heartbeat_timeout(&wsd).await;
    outlast_a_heartbeat_timeout(&wsd).await;
    wsd.wait_sessions(1).await;
    // Now read: every reply arrives, in order, and wsc still echoes.
    let mut stdout = BufReader::new(stdout).lines();
    let all = tokio::time::timeout(BOUND, async {
        let mut lines = Vec::with_capacity(LINES);
        for _ in 0..LINES {
            lines.push(stdout.next_line().await.unwrap().unwrap_or_default());
        }
        lines
    })
    .await
    .expect("the held replies within the bound");
    for (i, got) in all.iter().enumerate() {
        assert_eq!(*got, format!("Server received: {}", line(i)));
    }
    still_echoes_then_exits_0(child, stdin, &mut stdout).await;
}

#[actix_web::test]
async fn headers_subprotocol_origin_and_auth_reach_the_server() {
    let peer = Peer::start(Script {
        accept_protocol: Some("chat.v1".into()),
        ..Script::default()
    })
    .await;
    let r = run(
        &[
            "-H",
            "X-Trace: abc 123",
            "-H",
            "X-Other: two",
            "-s",
            "chat.v2",
            "-s",
            "chat.v1",
            "-o",
            "http://origin.test",
            "--auth",
            "user:pa:ss",
            &peer.url(),
        ],
        b"",
    )
    .await;
    assert_eq!(r.code, 0, "stderr: {}", r.stderr);
    let record = peer.record();
    assert_eq!(record.path, "/peer");
    assert_eq!(record.header("x-trace"), Some("abc 123"));
    assert_eq!(record.header("x-other"), Some("two"));
    let offered: Vec<&str> = record
        .header("sec-websocket-protocol")
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .collect();
    assert_eq!(offered, ["chat.v2", "chat.v1"]);
    assert_eq!(record.header("origin"), Some("http://origin.test"));
    // base64("user:pa:ss")
    assert_eq!(
        record.header("authorization"),
        Some("Basic dXNlcjpwYTpzcw==")
    );
}

#[actix_web::test]
async fn execute_sends_without_reading_stdin() {
    let wsd = TestWsd::start(test_config());
    let mut cmd = wsc(&["-x", "one", "-x", "two", &wsd.ws_url()]);
    // stdin stays open and unread: -x must not wait for it.
    let child = cmd.spawn().unwrap();
    let r = finish(child).await;
    assert_eq!(r.stdout, "Server received: one\nServer received: two\n");
    assert_eq!((r.code, r.stderr.as_str()), (0, ""));
}

#[actix_web::test]
async fn wait_keeps_the_connection_open_for_late_messages() {
    let peer = Peer::start(Script {
        echo: false,
        later: Some((Duration::from_millis(100), Message::text("late news"))),
        ..Script::default()
    })
    .await;
    let start = Instant::now();
    let r = run(&["-x", "hi", "-w", "1.5", &peer.url()], b"").await;
    assert!(start.elapsed() >= Duration::from_millis(1500));
    assert_eq!((r.code, r.stdout.as_str()), (0, "late news\n"));
    assert_eq!(peer.record().messages, [Message::text("hi")]);
}

#[actix_web::test]
async fn slash_commands_send_control_frames() {
    let peer = Peer::start(Script::default()).await;
    let r = run(
        &["--slash", &peer.url()],
        b"/ping are you there\n/pong unsolicited\n//literal\n/bogus\n/close 4000 all done\n",
    )
    .await;
    assert_eq!(r.stdout, "/literal\n");
    assert!(r.stderr.contains("unknown command /bogus"), "{}", r.stderr);
    // The server echoed the code we chose: a normal end.
    assert_eq!(r.code, 0, "stderr: {}", r.stderr);
    let record = peer.record();
    assert_eq!(record.pings, [b"are you there".to_vec()]);
    assert_eq!(record.pongs, [b"unsolicited".to_vec()]);
    assert_eq!(record.messages, [Message::text("/literal")]);
    assert_eq!(record.close, Some(Some((4000, "all done".into()))));
}

#[actix_web::test]
async fn json_writes_one_object_per_event() {
    let peer = Peer::start(Script {
        on_connect: vec![
            Message::binary(vec![0u8, 1, 2]),
            Message::Ping(b"p".to_vec().into()),
        ],
        ..Script::default()
    })
    .await;
    let r = run(&["--json", "-P", "-x", "hi", &peer.url()], b"").await;
    assert_eq!(r.code, 0, "stderr: {}", r.stderr);
    let events: Vec<serde_json::Value> = r
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is JSON"))
        .collect();
    use serde_json::json;
    assert_eq!(
        events,
        [
            json!({"type": "binary", "data": "AAEC", "len": 3}),
            json!({"type": "ping", "data": "cA=="}),
            json!({"type": "text", "data": "hi"}),
            json!({"type": "close", "code": 1000, "reason": ""}),
        ]
    );
}

#[actix_web::test]
async fn binary_is_shown_in_hex_or_written_raw() {
    let script = Script {
        on_connect: vec![Message::binary(vec![0u8, 1, 2, 3, 4])],
        ..Script::default()
    };
    let peer = Peer::start(script.clone()).await;
    let r = run(&[&peer.url()], b"").await;
    assert_eq!(r.stdout, "[binary 5 bytes] 00 01 02 03 04\n");
    let peer = Peer::start(script).await;
    let r = run(&["--raw-binary", &peer.url()], b"").await;
    assert_eq!(r.stdout.as_bytes(), [0u8, 1, 2, 3, 4]);
    assert_eq!(r.code, 0);
}

#[actix_web::test]
async fn binary_input_sends_binary_messages() {
    let peer = Peer::start(Script::default()).await;
    let r = run(&["--binary", &peer.url()], b"\x00\xff\n").await;
    assert_eq!(r.stdout, "[binary 2 bytes] 00 ff\n");
    assert_eq!(peer.record().messages, [Message::binary(vec![0u8, 0xff])]);
}

#[actix_web::test]
async fn multi_mebibyte_messages_pass() {
    let mut config = test_config();
    config.session.max_message_size = 8 << 20;
    config.session.reply_prefix = String::new();
    let wsd = TestWsd::start(config);
    let line = "x".repeat(3 << 20);
    let r = run(&[&wsd.ws_url()], format!("{line}\n").as_bytes()).await;
    assert_eq!(r.code, 0, "stderr: {}", r.stderr);
    assert!(
        r.stdout == format!("{line}\n"),
        "got {} bytes",
        r.stdout.len()
    );
}

#[actix_web::test]
async fn a_message_over_the_limit_closes_with_1009_and_exits_3() {
    let peer = Peer::start(Script {
        on_connect: vec![Message::text("y".repeat(2000))],
        ..Script::default()
    })
    .await;
    let child = wsc(&["--max-message-size", "1000", &peer.url()])
        .spawn()
        .unwrap();
    let record = peer.wait_for("a close", |r| r.close.is_some()).await;
    assert_eq!(record.close_code(), Some(1009));
    let r = finish(child.tap_stdin_drop()).await;
    assert_eq!((r.code, r.stdout.as_str()), (3, ""));
}

#[actix_web::test]
async fn a_server_close_with_1011_is_reported_and_exits_3() {
    let peer = Peer::start(Script {
        on_connect: vec![close_frame(1011, "boom")],
        ..Script::default()
    })
    .await;
    // stdin stays open: the server's close alone ends wsc.
    let child = wsc(&[&peer.url()]).spawn().unwrap();
    let r = finish(child).await;
    assert_eq!(r.code, 3);
    assert_eq!(
        r.stderr,
        "wsc: server closed the connection: close code 1011 (internal error), reason \"boom\"\n"
    );
    // The client echoed the code (RFC 6455 section 5.5.1).
    let record = peer
        .wait_for("the echoed close", |r| r.close.is_some())
        .await;
    assert_eq!(record.close_code(), Some(1011));
}

#[actix_web::test]
async fn a_server_going_away_exits_0() {
    let peer = Peer::start(Script {
        on_connect: vec![close_frame(1001, "restart")],
        ..Script::default()
    })
    .await;
    let child = wsc(&[&peer.url()]).spawn().unwrap();
    let r = finish(child).await;
    assert_eq!(r.code, 0);
    assert!(r.stderr.contains("1001"), "{}", r.stderr);
}

#[actix_web::test]
async fn no_close_reply_within_the_timeout_exits_3() {
    let peer = Peer::start(Script {
        answer_close: false,
        ..Script::default()
    })
    .await;
    let start = Instant::now();
    let r = run(&["--close-timeout", "0.3", &peer.url()], b"hi\n").await;
    assert!(start.elapsed() >= Duration::from_millis(300));
    assert_eq!((r.code, r.stdout.as_str()), (3, "hi\n"));
    assert!(r.stderr.contains("no close reply"), "{}", r.stderr);
    assert_eq!(r.stderr.lines().count(), 1);
}

#[actix_web::test]
async fn a_closed_stdout_ends_quietly_with_0() {
    let wsd = TestWsd::start(test_config());
    let mut child = wsc(&[&wsd.ws_url()]).spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    // Keep feeding lines until wsc stops reading (it exited).
    tokio::spawn(async move {
        for i in 0..100_000 {
            if stdin.write_all(format!("{i}\n").as_bytes()).await.is_err() {
                return;
            }
        }
    });
    let mut first = String::new();
    tokio::time::timeout(BOUND, stdout.read_line(&mut first))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first, "Server received: 0\n");
    drop(stdout); // like `| head -1`
    let r = finish(child).await;
    assert_eq!((r.code, r.stderr.as_str()), (0, ""));
}

#[actix_web::test]
async fn ping_interval_pings_the_server_and_shows_the_round_trip() {
    let peer = Peer::start(Script::default()).await;
    let child = wsc(&["--ping-interval", "0.05", "-P", &peer.url()])
        .spawn()
        .unwrap();
    let record = peer.wait_for("two pings", |r| r.pings.len() >= 2).await;
    assert!(record.pings.iter().all(|p| p.starts_with(b"wsc")));
    let r = finish(child.tap_stdin_drop()).await;
    assert_eq!((r.code, r.stdout.as_str()), (0, ""));
    // In a pipe, ping/pong reports go to stderr.
    assert!(r.stderr.contains("[pong] rtt "), "{}", r.stderr);
}

/// Closes the child's stdin (EOF) and hands the child on.
trait TapStdinDrop {
    fn tap_stdin_drop(self) -> Self;
}

impl TapStdinDrop for Child {
    fn tap_stdin_drop(mut self) -> Self {
        drop(self.stdin.take());
        self
    }
}

#[actix_web::test]
async fn wsc_is_a_channel_client_through_the_url_alone() {
    use futures_util::StreamExt;
    let wsd = TestWsd::start(test_config());
    let url = format!("ws://{}/channels/chat", wsd.addr());
    let mut child = wsc(&[&url]).spawn().expect("spawn wsc");
    let mut stdin = child.stdin.take().expect("stdin");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut other = wsd.connect_to("/channels/chat").await;
    wsd.wait_subscriptions(2).await;

    // A publication over HTTP reaches wsc's stdout.
    let res = wsd
        .post("/channels/chat")
        .insert_header(("content-type", "text/plain"))
        .send_body("from the backend")
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let line = tokio::time::timeout(BOUND, lines.next_line())
        .await
        .expect("line in time");
    assert_eq!(line.unwrap().as_deref(), Some("from the backend"));

    // A line on wsc's stdin is published to everyone on the channel, wsc too.
    stdin.write_all(b"hello from wsc\n").await.unwrap();
    for want in ["from the backend", "hello from wsc"] {
        let got = tokio::time::timeout(BOUND, other.next()).await;
        match got.expect("delivery in time") {
            Some(Ok(Message::Text(t))) => assert_eq!(t.as_str(), want),
            other => panic!("expected {want:?}, got {other:?}"),
        }
    }
    let line = tokio::time::timeout(BOUND, lines.next_line())
        .await
        .expect("line in time");
    assert_eq!(line.unwrap().as_deref(), Some("hello from wsc"));
    drop(stdin);
    let r = finish(child).await;
    assert_eq!((r.code, r.stderr.as_str()), (0, ""));
}
