//! The real `wsd` binary: exit codes, --print-config, signals, and the TCP
//! behaviour of the server exactly as `wsd` configures it.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use wsd::config::Config;
use wsd::protocol::opcode::{CLOSE, PING, TEXT};
use wsd::protocol::{Header, RawFrame, header_size};

const BOUND: Duration = Duration::from_secs(15);

fn wsd() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_wsd"));
    cmd.env_remove("RUST_LOG");
    cmd
}

fn write_config(dir: &Path, text: &str) -> std::path::PathBuf {
    let path = dir.join("wsd.toml");
    std::fs::write(&path, text).expect("write config");
    path
}

/// Runs `wsd` to completion, killing it if it outlives the bound.
fn run(cmd: &mut Command) -> Output {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn wsd");
    wait_bounded(&mut child);
    child.wait_with_output().expect("output")
}

fn wait_bounded(child: &mut Child) {
    let deadline = Instant::now() + BOUND;
    while child.try_wait().expect("try_wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("wsd did not exit within {BOUND:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn print_config_prints_the_effective_config_as_toml() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), "[session]\nreply_prefix = \"got: \"\n");
    let out =
        run(wsd()
            .arg("--config")
            .arg(&path)
            .args(["--bind", "127.0.0.1:9999", "--print-config"]));
    assert!(out.status.success(), "{out:?}");
    let printed = String::from_utf8(out.stdout).unwrap();
    let parsed = Config::parse(&printed, Path::new("stdout")).expect("printed config parses");
    assert_eq!(parsed.session.reply_prefix, "got: ");
    assert_eq!(parsed.server.bind, "127.0.0.1:9999");
    assert_eq!(parsed.session.heartbeat_interval, Duration::from_secs(5));
}

#[test]
fn without_config_flag_it_reads_config_wsd_toml_from_the_working_directory() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("config")).unwrap();
    std::fs::write(
        dir.path().join("config/wsd.toml"),
        "[server]\npath = \"/here\"\n",
    )
    .unwrap();
    let out = run(wsd().current_dir(dir.path()).arg("--print-config"));
    let printed = String::from_utf8(out.stdout).unwrap();
    assert!(printed.contains("path = \"/here\""), "{printed}");

    let empty = tempfile::tempdir().unwrap();
    let out = run(wsd().current_dir(empty.path()).arg("--print-config"));
    let printed = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        Config::parse(&printed, Path::new("-")).unwrap(),
        Config::default()
    );
}

#[test]
fn bad_configs_exit_2_naming_file_and_key_before_listening() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("[server]\nworkerz = 1\n", "server.workerz"),
        (
            "[session]\nclient_timeout = \"soon\"\n",
            "session.client_timeout",
        ),
        (
            "[session]\nheartbeat_interval = \"20s\"\n",
            "session.heartbeat_interval",
        ),
        (
            "[session]\nmax_message_size = \"0B\"\n",
            "session.max_message_size",
        ),
        ("[engine]\nkind = \"etcd\"\n", "engine.kind"),
        (
            "[engine]\nkind = \"redis\"\n[engine.redis]\nurl = \"localhost:6379\"\n",
            "engine.redis.url",
        ),
        (
            "[channels]\napi_keys = [\"short\"]\n",
            "channels.api_keys[0]",
        ),
    ];
    for (text, key) in cases {
        let path = write_config(dir.path(), text);
        let out = run(wsd().arg("--config").arg(&path));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{text}: {stderr}");
        assert!(
            stderr.contains(&path.display().to_string()),
            "{text}: {stderr}"
        );
        assert!(stderr.contains(key), "{text}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{text}: {stderr}");
    }
    let out = run(wsd().args(["--config", "/nonexistent/wsd.toml"]));
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/wsd.toml"));

    let out = run(wsd().args(["--bind", "nonsense", "--print-config"]));
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("server.bind"));

    let out = run(wsd().arg("--no-such-flag"));
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn an_address_in_use_exits_1_naming_the_address() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let empty = tempfile::tempdir().unwrap();
    let out = run(wsd().current_dir(empty.path()).args(["--bind", &addr]));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(&addr), "{stderr}");
}

/// A running `wsd` on a port it chose itself, killed if the test fails.
struct Running {
    child: Child,
    addr: SocketAddr,
    /// Collects everything wsd logs, so the pipe never fills and blocks it.
    log: Option<JoinHandle<String>>,
}

impl Running {
    fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits (bounded) for wsd to exit; its exit code and everything it logged.
    fn finish(&mut self) -> (Option<i32>, String) {
        wait_bounded(&mut self.child);
        let code = self.child.wait().unwrap().code();
        (code, self.log())
    }

    /// Everything logged, once the pipe has closed.
    fn log(&mut self) -> String {
        self.log
            .take()
            .map(|log| log.join().expect("log reader"))
            .unwrap_or_default()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_wsd(extra_config: &str) -> (Running, tempfile::TempDir) {
    start_wsd_on("127.0.0.1", extra_config)
}

/// What wsd logs for each address it listens on, before the address.
const LISTENING: &str = "wsd listening on ws://";

/// `wsd` on loopback address `ip`, port 0. The kernel picks a free port as
/// wsd binds, and wsd logs it; choosing one here first and handing it over
/// would race with every other test doing the same.
fn start_wsd_on(ip: &str, extra_config: &str) -> (Running, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(
        dir.path(),
        &format!("[server]\nbind = \"{ip}:0\"\nworkers = 1\n{extra_config}"),
    );
    let mut child = wsd()
        .arg("--config")
        .arg(&path)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn wsd");
    let stderr = child.stderr.take().expect("stderr");
    let (listening, bound) = mpsc::channel();
    let log = std::thread::spawn(move || {
        let mut log = String::new();
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if let Some(addr) = line.split(LISTENING).nth(1) {
                let addr = addr.split('/').next().unwrap_or_default();
                let _ = listening.send(addr.parse::<SocketAddr>());
            }
            log.push_str(&line);
            log.push('\n');
        }
        log
    });
    let mut running = Running {
        child,
        addr: SocketAddr::from(([0, 0, 0, 0], 0)),
        log: Some(log),
    };
    match bound.recv_timeout(BOUND) {
        Ok(Ok(addr)) => running.addr = addr,
        other => {
            let _ = running.child.kill();
            panic!(
                "no listening address from wsd ({other:?}); it logged:\n{}",
                running.log()
            );
        }
    }
    (running, dir)
}

/// A blocking raw WebSocket connection (handshake done).
fn ws_connect(addr: SocketAddr) -> TcpStream {
    ws_upgrade(TcpStream::connect(addr).unwrap(), addr)
}

/// A connection whose 4 KiB receive buffer fills at once when it stops
/// reading, so the server's output to it backs up.
fn ws_connect_tight(addr: SocketAddr) -> TcpStream {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        None,
    )
    .unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket.connect(&addr.into()).unwrap();
    ws_upgrade(socket.into(), addr)
}

/// The opening handshake on a connected stream.
fn ws_upgrade(mut stream: TcpStream, addr: SocketAddr) -> TcpStream {
    stream.set_read_timeout(Some(BOUND)).unwrap();
    write!(
        stream,
        "GET / HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(stream.read(&mut byte).unwrap(), 1, "handshake cut short");
        head.push(byte[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    stream
}

/// `sessions` from `/healthz`, over a plain blocking HTTP/1.0 request.
fn healthz_sessions(addr: SocketAddr) -> u64 {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(BOUND)).unwrap();
    write!(stream, "GET /healthz HTTP/1.0\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let body = response.split("\r\n\r\n").nth(1).unwrap_or_default();
    let json: serde_json::Value = serde_json::from_str(body).expect("healthz json");
    json["sessions"].as_u64().expect("sessions")
}

/// Reads one frame exactly as the server sent it; `None` once the stream ends.
fn read_frame(stream: &mut TcpStream) -> Option<RawFrame> {
    let mut wire = vec![0u8; 2];
    stream.read_exact(&mut wire).ok()?;
    wire.resize(header_size(wire[1]), 0);
    stream.read_exact(&mut wire[2..]).ok()?;
    let (header, size) = Header::parse(&wire)?;
    wire.resize(size + usize::try_from(header.len).ok()?, 0);
    stream.read_exact(&mut wire[size..]).ok()?;
    RawFrame::parse(&wire).map(|(frame, _)| frame)
}

/// The next frame that is not a heartbeat ping.
fn next_frame(stream: &mut TcpStream) -> RawFrame {
    loop {
        let frame = read_frame(stream).expect("the connection ended while expecting a frame");
        if frame.opcode != PING {
            return frame;
        }
    }
}

#[test]
fn sigterm_closes_every_session_with_1001_and_exits_0() {
    let (mut wsd, _dir) = start_wsd("");
    let mut clients: Vec<TcpStream> = (0..3).map(|_| ws_connect(wsd.addr)).collect();
    // Sessions register when their actors start: wait until all are known.
    wait_sessions(wsd.addr, 3);

    wsd.signal("TERM");

    for client in &mut clients {
        let close = next_frame(client);
        assert_eq!((close.opcode, close.close_code()), (CLOSE, Some(1001)));
        assert_eq!(&close.payload[2..], b"server shutting down");
        client
            .write_all(&RawFrame::close(1001, "").encode())
            .unwrap();
    }
    let (code, stderr) = wsd.finish();
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("SIGTERM received"), "{stderr}");
    assert!(stderr.contains("open-file limit"), "{stderr}");
    assert!(
        stderr.contains("session 1 connected from 127.0.0.1:"),
        "{stderr}"
    );
    assert!(
        stderr.contains("disconnected: shutdown (code 1001"),
        "{stderr}"
    );
}

/// Waits (bounded) until `/healthz` reports `n` sessions.
fn wait_sessions(addr: SocketAddr, n: u64) {
    let deadline = Instant::now() + BOUND;
    while healthz_sessions(addr) != n {
        assert!(Instant::now() < deadline, "sessions never reached {n}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn sigterm_with_stalled_peers_tells_everyone_who_can_hear_and_exits_promptly() {
    // shutdown_timeout stays at its 10 s default: the drain must not need it.
    let (mut wsd, _dir) = start_wsd(
        "[session]\nheartbeat_interval = \"200ms\"\nclient_timeout = \"60s\"\n\
         close_timeout = \"1s\"\nwrite_timeout = \"60s\"\nmax_send_queue = \"64MiB\"\n",
    );
    let mut listener = ws_connect(wsd.addr);
    // Three peers that send 8 MiB each and never read a reply: their
    // sessions' output is stuck behind full sockets.
    let big = RawFrame::binary(vec![0x42; 64 * 1024]).encode();
    let stalled: Vec<TcpStream> = (0..3)
        .map(|_| {
            let mut peer = ws_connect_tight(wsd.addr);
            for _ in 0..128 {
                peer.write_all(&big).unwrap();
            }
            peer
        })
        .collect();
    wait_sessions(wsd.addr, 4);

    let signalled = Instant::now();
    wsd.signal("TERM");
    let close = next_frame(&mut listener);
    assert_eq!((close.opcode, close.close_code()), (CLOSE, Some(1001)));
    listener
        .write_all(&RawFrame::close(1001, "").encode())
        .unwrap();
    let (code, stderr) = wsd.finish();
    let took = signalled.elapsed();
    assert_eq!(code, Some(0), "{stderr}");
    // Not the 10 s shutdown_timeout: the stalled peers were reset, at once
    // or after their close_timeout.
    assert!(
        took < Duration::from_secs(6),
        "exit took {took:?}\n{stderr}"
    );
    assert!(!stderr.contains("did not close in time"), "{stderr}");
    drop(stalled);
}

#[test]
fn a_second_signal_during_the_drain_exits_130_at_once() {
    let (mut wsd, _dir) =
        start_wsd("shutdown_timeout = \"60s\"\n[session]\nclose_timeout = \"30s\"\n");
    // A client that hears the 1001 but never answers: the drain would wait
    // out close_timeout for it.
    let mut deaf = ws_connect(wsd.addr);
    wait_sessions(wsd.addr, 1);
    wsd.signal("INT");
    let close = next_frame(&mut deaf);
    assert_eq!(close.close_code(), Some(1001));
    let again = Instant::now();
    wsd.signal("INT");
    let (code, stderr) = wsd.finish();
    assert_eq!(code, Some(130), "{stderr}");
    assert!(again.elapsed() < Duration::from_secs(10), "{stderr}");
    assert!(stderr.contains("SIGINT received again"), "{stderr}");
}

#[test]
fn a_missing_tls_file_is_reported_once_with_the_config_file_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(
        dir.path(),
        "[server]\nbind = \"127.0.0.1:0\"\n[tls]\ncert = \"nowhere/cert.pem\"\nkey = \"nowhere/key.pem\"\n",
    );
    let out = run(wsd().current_dir(dir.path()).arg("--config").arg(&path));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("nowhere/cert.pem"))
        .collect();
    assert_eq!(lines.len(), 1, "reported more than once:\n{stderr}");
    let want = format!(
        "wsd: {}: key `tls.cert`: nowhere/cert.pem: cannot read",
        path.display()
    );
    assert!(lines[0].starts_with(&want), "{stderr}");
}

/// The least time a server with actix-http's default `client_disconnect_timeout`
/// (what wsd turns off) holds a finished connection for the client to close
/// first: 1 s from actix's cached clock, which lags by up to its 500 ms tick.
const ACTIX_LINGER: Duration = Duration::from_millis(500);

#[test]
fn the_server_closes_the_tcp_connection_first_right_after_the_close_handshake() {
    let (wsd, _dir) = start_wsd("");
    // A lingering server does not end the connection sooner than
    // ACTIX_LINGER after our close is written; a correct one ends it at once,
    // unless a loaded machine stalls us. So one fast try in three proves the
    // point, and a slow machine alone cannot fail it.
    let mut waits = Vec::new();
    for _ in 0..3 {
        let mut client = ws_connect(wsd.addr);
        let started = Instant::now();
        client
            .write_all(&RawFrame::close(1000, "").encode())
            .unwrap();
        let reply = next_frame(&mut client);
        assert_eq!(
            (reply.opcode, reply.payload),
            (CLOSE, 1000u16.to_be_bytes().to_vec())
        );
        // We never close our side: the end must come from the server.
        let mut rest = Vec::new();
        client.read_to_end(&mut rest).expect("read to EOF");
        assert!(rest.is_empty(), "bytes after the close reply: {rest:?}");
        let waited = started.elapsed();
        if waited < ACTIX_LINGER {
            return;
        }
        waits.push(waited);
    }
    panic!("the server held the connection after every close handshake: {waits:?}");
}

#[test]
fn a_max_connections_beyond_the_open_file_limit_is_warned_about() {
    let (mut wsd, _dir) = start_wsd("max_connections = 1000000000\n");
    wsd.signal("INT");
    let (_, stderr) = wsd.finish();
    assert!(stderr.contains("SIGINT received"), "{stderr}");
    assert!(
        stderr.contains("max_connections (1000000000) exceeds what the open-file limit allows"),
        "{stderr}"
    );
}

#[test]
fn it_serves_ipv6_loopback() {
    let (wsd, _dir) = start_wsd_on("[::1]", "");
    assert!(wsd.addr.is_ipv6());
    let mut client = ws_connect(wsd.addr);
    client.write_all(&RawFrame::text("v6").encode()).unwrap();
    let reply = next_frame(&mut client);
    assert_eq!(
        (reply.opcode, reply.payload.as_slice()),
        (TEXT, &b"Server received: v6"[..])
    );
}

#[test]
fn an_unusable_token_key_file_exits_2_naming_the_file_and_key() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("junk.pem"), "not a key").unwrap();
    for (file, problem) in [("missing.pem", "cannot read"), ("junk.pem", "no RSA or EC")] {
        let path = write_config(
            dir.path(),
            &format!("[server]\nbind = \"127.0.0.1:0\"\n[auth]\npublic_key = \"{file}\"\n"),
        );
        let out = run(wsd().current_dir(dir.path()).arg("--config").arg(&path));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        let want = format!("wsd: {}: key `auth.public_key`: ", path.display());
        let lines: Vec<&str> = stderr.lines().filter(|l| l.starts_with(&want)).collect();
        assert_eq!(lines.len(), 1, "{stderr}");
        assert!(
            lines[0].contains(file) && lines[0].contains(problem),
            "{stderr}"
        );
    }
}

#[test]
fn wsd_token_prints_a_token_the_server_accepts() {
    let dir = tempfile::tempdir().unwrap();
    let secret = "0123456789abcdef0123456789abcdef";
    let path = write_config(dir.path(), &format!("[auth]\nhmac_secret = \"{secret}\"\n"));
    let out = run(wsd()
        .args([
            "token",
            "--sub",
            "ann",
            "--ttl",
            "10m",
            "--subscribe",
            "tok:room.*",
        ])
        .arg("--config")
        .arg(&path));
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout).unwrap();
    let config = wsd::config::Config::load(&path).unwrap();
    let verifier = wsd::auth::Verifier::new(&config.auth).unwrap().unwrap();
    let claims = verifier
        .verify(token.trim())
        .expect("the server accepts it");
    assert_eq!(claims.sub, "ann");
    assert!(claims.may_subscribe(&wsd::channels::ChannelName::parse("tok:room.7").unwrap()));

    // Without a secret (or --key) there is nothing to sign with: usage error.
    let empty = write_config(dir.path(), "");
    let out = run(wsd()
        .args(["token", "--sub", "ann"])
        .arg("--config")
        .arg(&empty));
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("hmac_secret"));
}
