//! The real `wsd` binary: exit codes, --print-config, signals, and the TCP
//! behaviour of the server exactly as `wsd` configures it.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use wsd::config::Config;

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

/// A running `wsd` on a free loopback port, killed if the test fails.
struct Running {
    child: Child,
    addr: SocketAddr,
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
        let mut stderr = String::new();
        if let Some(mut pipe) = self.child.stderr.take() {
            pipe.read_to_string(&mut stderr).unwrap();
        }
        (self.child.wait().unwrap().code(), stderr)
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

/// `wsd` on a free port of the loopback address `ip`.
fn start_wsd_on(ip: &str, extra_config: &str) -> (Running, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let free = TcpListener::bind(format!("{ip}:0"))
        .unwrap()
        .local_addr()
        .unwrap();
    let addr = SocketAddr::new(free.ip(), free.port());
    let path = write_config(
        dir.path(),
        &format!("[server]\nbind = \"{addr}\"\nworkers = 1\n{extra_config}"),
    );
    let child = wsd()
        .arg("--config")
        .arg(&path)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn wsd");
    let running = Running { child, addr };
    let deadline = Instant::now() + BOUND;
    while TcpStream::connect(addr).is_err() {
        assert!(Instant::now() < deadline, "wsd never started listening");
        std::thread::sleep(Duration::from_millis(20));
    }
    (running, dir)
}

/// A blocking raw WebSocket connection (handshake done).
fn ws_connect(addr: SocketAddr) -> TcpStream {
    let mut stream = TcpStream::connect(addr).unwrap();
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

/// Reads one unmasked server frame: (opcode, payload).
fn read_frame(stream: &mut TcpStream) -> Option<(u8, Vec<u8>)> {
    let mut head = [0u8; 2];
    stream.read_exact(&mut head).ok()?;
    let len = match head[1] & 0x7F {
        126 => {
            let mut b = [0u8; 2];
            stream.read_exact(&mut b).ok()?;
            u16::from_be_bytes(b) as usize
        }
        127 => {
            let mut b = [0u8; 8];
            stream.read_exact(&mut b).ok()?;
            u64::from_be_bytes(b) as usize
        }
        n => n as usize,
    };
    let mut payload = vec![0u8; len];
    stream.read_exact(&mut payload).ok()?;
    Some((head[0] & 0x0F, payload))
}

fn masked_close(code: u16) -> Vec<u8> {
    let mask = [1u8, 2, 3, 4];
    let mut frame = vec![0x88, 0x80 | 2];
    frame.extend_from_slice(&mask);
    frame.extend(
        code.to_be_bytes()
            .iter()
            .enumerate()
            .map(|(i, b)| b ^ mask[i]),
    );
    frame
}

#[test]
fn sigterm_closes_every_session_with_1001_and_exits_0() {
    let (mut wsd, _dir) = start_wsd("");
    let mut clients: Vec<TcpStream> = (0..3).map(|_| ws_connect(wsd.addr)).collect();
    // Sessions register when their actors start: wait until all are known.
    let deadline = Instant::now() + BOUND;
    while healthz_sessions(wsd.addr) != 3 {
        assert!(Instant::now() < deadline, "sessions never registered");
        std::thread::sleep(Duration::from_millis(20));
    }

    wsd.signal("TERM");

    for client in &mut clients {
        let (opcode, payload) = loop {
            let frame = read_frame(client).expect("connection ended without a close frame");
            if frame.0 != 0x9 {
                break frame;
            }
        };
        assert_eq!(opcode, 0x8);
        assert_eq!(u16::from_be_bytes([payload[0], payload[1]]), 1001);
        assert_eq!(&payload[2..], b"server shutting down");
        client.write_all(&masked_close(1001)).unwrap();
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

#[test]
fn the_server_closes_the_tcp_connection_first_right_after_the_close_handshake() {
    let (wsd, _dir) = start_wsd("");
    let mut client = ws_connect(wsd.addr);
    client.write_all(&masked_close(1000)).unwrap();
    let (opcode, payload) = read_frame(&mut client).expect("close reply");
    assert_eq!((opcode, payload), (0x8, 1000u16.to_be_bytes().to_vec()));
    // We never close our side. actix-http's default would hold the
    // connection for up to a second waiting for us; wsd must not.
    let started = Instant::now();
    let mut rest = Vec::new();
    client.read_to_end(&mut rest).expect("read to EOF");
    assert!(rest.is_empty());
    let waited = started.elapsed();
    assert!(
        waited < Duration::from_millis(500),
        "server held the connection {waited:?} after the close handshake"
    );
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
    let mask = [9u8, 8, 7, 6];
    let mut frame = vec![0x81, 0x80 | 2];
    frame.extend_from_slice(&mask);
    frame.extend(b"v6".iter().enumerate().map(|(i, b)| b ^ mask[i]));
    client.write_all(&frame).unwrap();
    let (opcode, payload) = loop {
        let frame = read_frame(&mut client).expect("reply");
        if frame.0 != 0x9 {
            break frame;
        }
    };
    assert_eq!(
        (opcode, payload.as_slice()),
        (0x1, &b"Server received: v6"[..])
    );
}
