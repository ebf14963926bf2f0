//! What TLS costs, measured by hand (not a test: nothing here asserts speed).
//!
//! For each URL: N sequential connections (TCP connect, TLS handshake for
//! wss://, WebSocket handshake, closing handshake, TCP end) with mean/p50/p99
//! per connection; then echo throughput of 64-byte text messages on one
//! connection, one at a time and with a window of 64 in flight.
//!
//! ```text
//! cargo build --release --bin wsd --example tls_cost
//! target/release/wsd gen-cert --out /tmp/tlscost
//! printf '[server]\nbind = "127.0.0.1:18445"\n[log]\nlevel = "warn"\n' > /tmp/plain.toml
//! printf '[server]\nbind = "127.0.0.1:18443"\n[tls]\ncert = "/tmp/tlscost/cert.pem"\nkey = "/tmp/tlscost/key.pem"\n[log]\nlevel = "warn"\n' > /tmp/tls.toml
//! target/release/wsd -c /tmp/plain.toml & target/release/wsd -c /tmp/tls.toml &
//! target/release/examples/tls_cost --ca /tmp/tlscost/ca.pem ws://127.0.0.1:18445/ wss://127.0.0.1:18443/
//! ```
//! Use 127.0.0.1, not localhost, for both: a name costs a resolver lookup
//! (and a refused ::1 attempt when wsd listens on 127.0.0.1 only) that would
//! be charged to whichever URL used it.
//! Options: `--ca FILE` (trust for wss://), `--connects N` (200),
//! `--secs S` (3 per throughput run).

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{Connector, MaybeTlsStream, WebSocketStream};
use wsd::tls::ClientTls;

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;
type Error = Box<dyn std::error::Error>;

const PAYLOAD: usize = 64;
const WINDOW: usize = 64;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    let mut ca = None;
    let mut connects = 200usize;
    let mut secs = 3.0f64;
    let mut urls = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--ca" => ca = args.next().map(PathBuf::from),
            "--connects" => connects = args.next().ok_or("--connects N")?.parse()?,
            "--secs" => secs = args.next().ok_or("--secs S")?.parse()?,
            url => urls.push(url.to_owned()),
        }
    }
    let tls = wsd::tls::client_config(&ClientTls {
        ca,
        ..ClientTls::default()
    })?;
    let connector = Connector::Rustls(Arc::new(tls));
    for url in &urls {
        println!("{url}");
        connect_loop(url, &connector, connects).await?;
        for window in [1, WINDOW] {
            throughput(url, &connector, window, Duration::from_secs_f64(secs)).await?;
        }
    }
    Ok(())
}

async fn open(url: &str, connector: &Connector) -> Result<Ws, Error> {
    let (ws, _) =
        tokio_tungstenite::connect_async_tls_with_config(url, None, true, Some(connector.clone()))
            .await?;
    Ok(ws)
}

/// Sends close and reads until the server's close and the end of the stream.
async fn close(mut ws: Ws) -> Result<(), Error> {
    ws.close(None).await?;
    while let Some(msg) = ws.next().await {
        msg?;
    }
    Ok(())
}

async fn connect_loop(url: &str, connector: &Connector, n: usize) -> Result<(), Error> {
    // One unmeasured connection warms the resolver and both processes.
    close(open(url, connector).await?).await?;
    let mut times = Vec::with_capacity(n);
    for _ in 0..n {
        let start = Instant::now();
        close(open(url, connector).await?).await?;
        times.push(start.elapsed());
    }
    times.sort();
    let mean = times.iter().sum::<Duration>() / n as u32;
    let pct = |p: f64| times[((n as f64 * p).ceil() as usize).clamp(1, n) - 1];
    println!(
        "  {n} connects: mean {:.3} ms  p50 {:.3} ms  p99 {:.3} ms",
        ms(mean),
        ms(pct(0.50)),
        ms(pct(0.99))
    );
    Ok(())
}

async fn throughput(
    url: &str,
    connector: &Connector,
    window: usize,
    run: Duration,
) -> Result<(), Error> {
    let ws = open(url, connector).await?;
    let (mut tx, mut rx) = ws.split();
    let payload = "x".repeat(PAYLOAD);
    let mut sent_at = VecDeque::with_capacity(window);
    let mut rtts = Vec::new();
    let start = Instant::now();
    while start.elapsed() < run {
        while sent_at.len() < window {
            tx.feed(Message::text(payload.clone())).await?;
            sent_at.push_back(Instant::now());
        }
        tx.flush().await?;
        match rx.next().await.ok_or("stream ended")?? {
            Message::Text(_) => {
                let t0 = sent_at.pop_front().ok_or("unexpected reply")?;
                rtts.push(t0.elapsed());
            }
            Message::Close(c) => return Err(format!("server closed: {c:?}").into()),
            _ => {}
        }
    }
    while !sent_at.is_empty() {
        if let Message::Text(_) = rx.next().await.ok_or("stream ended")?? {
            sent_at.pop_front();
        }
    }
    let elapsed = start.elapsed();
    close(tx.reunite(rx)?).await?;
    rtts.sort();
    let n = rtts.len();
    println!(
        "  echo 64 B, window {window:>2}: {:>8.0} msg/s over {:.1} s  (rtt p50 {:.3} ms)",
        n as f64 / elapsed.as_secs_f64(),
        elapsed.as_secs_f64(),
        ms(rtts.get(n / 2).copied().unwrap_or_default())
    );
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
