//! How long a 16 MiB message takes to echo, as one frame and as 64-byte
//! fragments, measured by hand (nothing here asserts speed; the conformance
//! tests check that these messages echo correctly at all).
//!
//! ```text
//! cargo build --release --bin wsd --example big_message
//! printf '[server]\nbind = "127.0.0.1:18450"\n[session]\nmax_message_size = "16MiB"\nreply_prefix = ""\n[log]\nlevel = "warn"\n' > /tmp/big.toml
//! target/release/wsd --config /tmp/big.toml &
//! target/release/examples/big_message 127.0.0.1:18450
//! ```
//! Times run from the first byte written to the last byte of the echo read,
//! three runs per shape; the client writes from one thread and reads from
//! another so neither side's socket buffer stalls the other.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use wsd::protocol::opcode::{BINARY, CLOSE, CONTINUATION};
use wsd::protocol::{DEFAULT_MASK, Header, header_size};

const SIZE: usize = 16 << 20;

/// The binary message as masked wire bytes, in frames of at most `piece`.
fn wire(payload: &[u8], piece: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() * 2);
    let pieces: Vec<&[u8]> = payload.chunks(piece).collect();
    for (i, part) in pieces.iter().enumerate() {
        let header = Header {
            fin: i + 1 == pieces.len(),
            mask: Some(DEFAULT_MASK),
            ..Header::new(if i == 0 { BINARY } else { CONTINUATION }, part.len())
        };
        header.write_frame(part, &mut out);
    }
    out
}

fn connect(addr: &str) -> std::io::Result<TcpStream> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_nodelay(true)?;
    write!(
        stream,
        "GET / HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    loop {
        line.clear();
        reader.read_line(&mut line)?;
        if line == "\r\n" || line.is_empty() {
            break;
        }
    }
    Ok(stream)
}

/// Reads server frames until a complete binary message of `SIZE` bytes.
fn read_echo(stream: &mut TcpStream) -> std::io::Result<usize> {
    let mut total = 0;
    let mut head = Vec::new();
    let mut payload = Vec::new();
    loop {
        head.resize(2, 0);
        stream.read_exact(&mut head)?;
        head.resize(header_size(head[1]), 0);
        stream.read_exact(&mut head[2..])?;
        let (header, _) = Header::parse(&head).ok_or_else(|| std::io::Error::other("header"))?;
        let len = usize::try_from(header.len).map_err(std::io::Error::other)?;
        payload.resize(len, 0);
        stream.read_exact(&mut payload)?;
        match header.opcode {
            BINARY | CONTINUATION => total += len,
            CLOSE => return Err(std::io::Error::other("the server closed the connection")),
            _ => continue, // a heartbeat ping
        }
        if header.fin {
            return Ok(total);
        }
    }
}

fn round_trip(addr: &str, wire: &[u8]) -> std::io::Result<Duration> {
    let mut stream = connect(addr)?;
    let mut writer = stream.try_clone()?;
    let started = Instant::now();
    let wire = wire.to_vec();
    let sender = std::thread::spawn(move || writer.write_all(&wire));
    let got = read_echo(&mut stream)?;
    let took = started.elapsed();
    sender
        .join()
        .map_err(|_| std::io::Error::other("writer panicked"))??;
    if got != SIZE {
        return Err(std::io::Error::other(format!("echo had {got} bytes")));
    }
    Ok(took)
}

fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:18450".into());
    let payload: Vec<u8> = (0..SIZE).map(|i| (i % 251) as u8).collect();
    for (name, piece) in [("one 16 MiB frame", SIZE), ("64-byte fragments", 64)] {
        let bytes = wire(&payload, piece);
        let runs: Vec<String> = (0..3)
            .map(|_| round_trip(&addr, &bytes).map(|d| format!("{:.0} ms", d.as_secs_f64() * 1e3)))
            .collect::<Result<_, _>>()?;
        println!(
            "16 MiB echo, {name} ({} bytes on the wire): {}",
            bytes.len(),
            runs.join(", ")
        );
    }
    Ok(())
}
