//! Peers that stop reading, for the send-queue tests: a client socket whose
//! receive buffer is tiny, frames written without reading a reply, and the
//! kernel's view of whether the server has closed the connection.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use wsd::protocol::encode_frame;

use super::{BOUND, raw, wait_until};

/// A WebSocket client socket with a 4 KiB receive buffer, past the
/// handshake: once it stops reading, the server's writes back up fast.
pub async fn tight_client(server: SocketAddr) -> TcpStream {
    let socket =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    socket.set_recv_buffer_size(4096).expect("SO_RCVBUF");
    socket.connect(&server.into()).expect("connect");
    socket.set_nonblocking(true).expect("nonblocking");
    let stream = TcpStream::from_std(socket.into()).expect("tokio stream");
    upgrade(stream, server).await
}

/// The opening handshake on `stream`: what follows it is ours to read or not.
pub async fn upgrade(stream: TcpStream, server: SocketAddr) -> TcpStream {
    let (stream, status, head) = raw::handshake_on(stream, server, "/", &[]).await;
    assert_eq!(status, 101, "{head}");
    stream
}

/// One masked client frame.
pub fn frame(opcode: u8, payload: &[u8]) -> Bytes {
    let mut out = Vec::new();
    encode_frame(&mut out, opcode, payload, Some([7, 1, 9, 3]));
    Bytes::from(out)
}

/// Writes `count` copies of `frame`, each within [`BOUND`]; stops early,
/// returning how many went in, if the server resets the connection.
pub async fn write_frames(stream: &mut TcpStream, frame: &[u8], count: usize) -> usize {
    for i in 0..count {
        match tokio::time::timeout(BOUND, stream.write_all(frame)).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return i,
            Err(_) => panic!("write {i} of {count} blocked: the server stopped reading"),
        }
    }
    count
}

/// The kernel's TCP state of the connection `stream` (hex, as in
/// `/proc/net/tcp`: 01 is ESTABLISHED), or `None` once the kernel has
/// forgotten the socket (after a reset).
pub fn tcp_state(stream: &TcpStream) -> Option<u8> {
    let local = stream.local_addr().expect("local addr");
    let peer = stream.peer_addr().ok()?;
    tcp_state_of(local, peer)
}

pub fn tcp_state_of(local: SocketAddr, peer: SocketAddr) -> Option<u8> {
    let table = std::fs::read_to_string("/proc/net/tcp").expect("/proc/net/tcp");
    let (want_local, want_peer) = (hex_addr(local), hex_addr(peer));
    table.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        (fields.get(1) == Some(&want_local.as_str()) && fields.get(2) == Some(&want_peer.as_str()))
            .then(|| u8::from_str_radix(fields.get(3)?, 16).ok())
            .flatten()
    })
}

/// An IPv4 address as `/proc/net/tcp` writes it: `0100007F:1F90`.
pub fn hex_addr(addr: SocketAddr) -> String {
    let SocketAddr::V4(v4) = addr else {
        panic!("IPv4 only: {addr}")
    };
    format!(
        "{:08X}:{:04X}",
        u32::from_ne_bytes(v4.ip().octets()),
        v4.port()
    )
}

pub const ESTABLISHED: u8 = 0x01;

/// Waits until the kernel no longer sees the connection as established: the
/// server closed (FIN) or reset (RST) it.
pub async fn wait_closed_by_server(stream: &TcpStream, bound: Duration) -> bool {
    let local = stream.local_addr().expect("local addr");
    // After a reset the socket has no peer any more.
    let Ok(peer) = stream.peer_addr() else {
        return true;
    };
    wait_until(bound, || async {
        tcp_state_of(local, peer) != Some(ESTABLISHED)
    })
    .await
}

pub fn rss_bytes() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").expect("status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<usize>().ok())
        .expect("VmRSS")
        * 1024
}
