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

use wsd::protocol::apply_mask;

const SIZE: usize = 16 << 20;
const MASK: [u8; 4] = [0x11, 0x22, 0x33, 0x44];

/// One masked frame with the given FIN bit and opcode.
fn frame(out: &mut Vec<u8>, fin: bool, opcode: u8, payload: &[u8]) {
    out.push((u8::from(fin) << 7) | opcode);
    match payload.len() {
        n @ 0..=125 => out.push(0x80 | n as u8),
        n @ 126..=0xFFFF => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&MASK);
    let start = out.len();
    out.extend_from_slice(payload);
    apply_mask(&mut out[start..], MASK, 0);
}

/// The message as wire bytes: one frame, or fragments of `piece` bytes.
fn wire(payload: &[u8], piece: Option<usize>) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() * 2);
    match piece {
        None => frame(&mut out, true, 0x2, payload),
        Some(size) => {
            let pieces: Vec<&[u8]> = payload.chunks(size).collect();
            for (i, part) in pieces.iter().enumerate() {
                let opcode = if i == 0 { 0x2 } else { 0x0 };
                frame(&mut out, i + 1 == pieces.len(), opcode, part);
            }
        }
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
    loop {
        let mut head = [0u8; 2];
        stream.read_exact(&mut head)?;
        let len = match head[1] & 0x7F {
            126 => {
                let mut b = [0u8; 2];
                stream.read_exact(&mut b)?;
                u16::from_be_bytes(b) as usize
            }
            127 => {
                let mut b = [0u8; 8];
                stream.read_exact(&mut b)?;
                u64::from_be_bytes(b) as usize
            }
            n => n as usize,
        };
        let mut payload = vec![0u8; len];
        stream.read_exact(&mut payload)?;
        match head[0] & 0x0F {
            0x2 | 0x0 => total += len,
            _ => continue, // a heartbeat ping
        }
        if head[0] & 0x80 != 0 {
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
    for (name, piece) in [("one 16 MiB frame", None), ("64-byte fragments", Some(64))] {
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
