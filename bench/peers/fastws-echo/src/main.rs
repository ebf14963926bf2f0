//! The comparison peer for `bench/run.sh`: the echo server of fastwebsockets'
//! own `echo_server` example (hyper upgrade, whole messages echoed, pings
//! answered and closes handled by the library), on one thread like `wsd`
//! pinned to one core.
//!
//! Usage: `fastws-echo [LISTEN_ADDR]` (default 127.0.0.1:9001).

use std::net::SocketAddr;

use fastwebsockets::{FragmentCollector, OpCode, WebSocketError, upgrade};
use http_body_util::Empty;
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

const DEFAULT_ADDR: &str = "127.0.0.1:9001";

/// Echoes text and binary messages until the peer closes. Pongs and the
/// closing handshake are the library's (auto_pong and auto_close are on by
/// default).
async fn echo(fut: upgrade::UpgradeFut) -> Result<(), WebSocketError> {
    let mut ws = FragmentCollector::new(fut.await?);
    loop {
        let frame = ws.read_frame().await?;
        match frame.opcode {
            OpCode::Close => return Ok(()),
            OpCode::Text | OpCode::Binary => ws.write_frame(frame).await?,
            _ => {}
        }
    }
}

async fn upgrade_request(
    mut req: Request<Incoming>,
) -> Result<Response<Empty<Bytes>>, WebSocketError> {
    let (response, fut) = upgrade::upgrade(&mut req)?;
    tokio::task::spawn_local(async move {
        if let Err(e) = echo(fut).await {
            eprintln!("fastws-echo: connection: {e}");
        }
    });
    Ok(response)
}

fn main() {
    let addr = std::env::args().nth(1).unwrap_or_else(|| DEFAULT_ADDR.into());
    let addr: SocketAddr = match addr.parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("fastws-echo: bad listen address {addr:?}: {e}");
            std::process::exit(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("fastws-echo: cannot start the runtime: {e}");
            std::process::exit(1);
        }
    };
    let local = tokio::task::LocalSet::new();
    let result: std::io::Result<()> = local.block_on(&runtime, async move {
        let listener = TcpListener::bind(addr).await?;
        eprintln!("fastws-echo listening on ws://{addr}/");
        loop {
            let (stream, _) = match listener.accept().await {
                Ok(s) => s,
                // Out of file descriptors and the like: keep serving the rest.
                Err(e) => {
                    eprintln!("fastws-echo: accept: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            tokio::task::spawn_local(async move {
                let conn = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service_fn(upgrade_request))
                    .with_upgrades();
                if let Err(e) = conn.await {
                    eprintln!("fastws-echo: http: {e}");
                }
            });
        }
    });
    if let Err(e) = result {
        eprintln!("fastws-echo: {e}");
        std::process::exit(1);
    }
}
