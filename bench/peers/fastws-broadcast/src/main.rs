//! The comparison peer for `bench/fanout.sh`: a broadcast server on
//! fastwebsockets with the surface `wsc bench --fanout` uses on wsd:
//! - a WebSocket upgrade on `/channels/NAME` subscribes to NAME;
//! - a text or binary message from a client goes to every subscriber of the
//!   client's channel (the sender too, as on wsd);
//! - `POST /channels/NAME` broadcasts the body (text for `text/*`, binary
//!   otherwise) and answers `{"delivered":N}`.
//!
//! It is the ceiling of the comparison: each message is encoded once and
//! the same bytes are queued for every subscriber, whose writer drains its
//! queue in as few writes as it can. One thread, like wsd pinned to one core.
//! The queues are bounded; a subscriber whose queue is full is disconnected,
//! as wsd does with a slow consumer. No history, no presence, no auth.
//!
//! Usage: `fastws-broadcast [LISTEN_ADDR]` (default 127.0.0.1:9001).

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::rc::Rc;

use bytes::Bytes;
use fastwebsockets::{
    FragmentCollectorRead, Frame, OpCode, Payload, Role, WebSocketError, upgrade,
};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, mpsc};

const DEFAULT_ADDR: &str = "127.0.0.1:9001";

/// Frames queued per subscriber: about wsd's 1 MiB send queue in 64-byte
/// publications. Slots are allocated as they fill, so idle subscribers cost
/// nothing for it.
const QUEUE: usize = 16_384;

/// The largest message or POST body, wsd's default `max_message_size`.
const MAX_MESSAGE: usize = 1 << 20;

/// At most this much is collected for one write: one syscall for many
/// frames, without copying a long backlog into one buffer.
const WRITE_BATCH: usize = 64 * 1024;

struct Subscriber {
    id: u64,
    queue: mpsc::Sender<Bytes>,
    /// Told when the queue overflowed: the connection ends.
    kick: Rc<Notify>,
}

#[derive(Default)]
struct State {
    channels: RefCell<HashMap<String, Vec<Subscriber>>>,
    next_id: Cell<u64>,
}

/// A whole server frame (unmasked, final), encoded once for everyone.
fn encode(opcode: OpCode, payload: &[u8]) -> Bytes {
    let mut buf = Vec::new();
    let len = Frame::new(true, opcode, None, Payload::Borrowed(payload))
        .write(&mut buf)
        .len();
    buf.truncate(len);
    Bytes::from(buf)
}

/// Queues `frame` for every subscriber of `name`; returns how many got it.
fn broadcast(state: &State, name: &str, frame: Bytes) -> usize {
    let mut channels = state.channels.borrow_mut();
    let Some(subscribers) = channels.get_mut(name) else {
        return 0;
    };
    let mut delivered = 0;
    subscribers.retain(|s| match s.queue.try_send(frame.clone()) {
        Ok(()) => {
            delivered += 1;
            true
        }
        Err(mpsc::error::TrySendError::Full(_)) => {
            eprintln!(
                "fastws-broadcast: subscriber {} is too slow, disconnecting",
                s.id
            );
            s.kick.notify_one();
            false
        }
        Err(mpsc::error::TrySendError::Closed(_)) => false,
    });
    if subscribers.is_empty() {
        channels.remove(name);
    }
    delivered
}

fn unsubscribe(state: &State, name: &str, id: u64) {
    let mut channels = state.channels.borrow_mut();
    if let Some(subscribers) = channels.get_mut(name) {
        subscribers.retain(|s| s.id != id);
        if subscribers.is_empty() {
            channels.remove(name);
        }
    }
}

/// Writes queued frames until every sender is gone, then closes its half.
/// Frames waiting together go out in one write; the batch buffer exists
/// only once traffic does, so an idle subscriber costs no buffer.
async fn write_queue(mut write: OwnedWriteHalf, mut queue: mpsc::Receiver<Bytes>) {
    let mut batch = Vec::new();
    while let Some(frame) = queue.recv().await {
        batch.clear();
        batch.extend_from_slice(&frame);
        while batch.len() < WRITE_BATCH {
            match queue.try_recv() {
                Ok(frame) => batch.extend_from_slice(&frame),
                Err(_) => break,
            }
        }
        if write.write_all(&batch).await.is_err() {
            return;
        }
    }
    let _ = write.shutdown().await;
}

/// One subscriber: its reader runs here, its writer in a task of its own.
async fn subscriber(
    fut: upgrade::UpgradeFut,
    name: String,
    state: Rc<State>,
) -> Result<(), WebSocketError> {
    let upgraded = fut.await?.into_inner().into_inner();
    // Our own TCP halves: the writer must send bytes encoded elsewhere.
    let parts = upgraded
        .downcast::<TokioIo<TcpStream>>()
        .map_err(|_| WebSocketError::IoError(std::io::Error::other("not a TCP stream")))?;
    let (read, write) = parts.io.into_inner().into_split();
    // Bytes hyper read past the upgrade request come first.
    let read = std::io::Cursor::new(parts.read_buf).chain(read);
    // fastwebsockets reads; the write side it wants is never used.
    let (mut ws, _) = fastwebsockets::after_handshake_split(read, tokio::io::sink(), Role::Server);
    ws.set_max_message_size(MAX_MESSAGE);
    let mut reader = FragmentCollectorRead::new(ws);

    let (queue, rx) = mpsc::channel(QUEUE);
    let kick = Rc::new(Notify::new());
    let id = state.next_id.get();
    state.next_id.set(id + 1);
    state
        .channels
        .borrow_mut()
        .entry(name.clone())
        .or_default()
        .push(Subscriber {
            id,
            queue: queue.clone(),
            kick: kick.clone(),
        });
    let writer = tokio::task::spawn_local(write_queue(write, rx));

    // Pongs and the answer to a close go through the same queue, in order.
    let mut obligated = |mut frame: Frame<'_>| {
        let mut buf = Vec::new();
        let bytes = Bytes::copy_from_slice(frame.write(&mut buf));
        let queue = queue.clone();
        async move { queue.send(bytes).await.map_err(|_| "the writer is gone") }
    };
    let result = loop {
        let frame = tokio::select! {
            frame = reader.read_frame(&mut obligated) => frame,
            _ = kick.notified() => break Ok(()),
        };
        let frame = match frame {
            Ok(frame) => frame,
            Err(e) => break Err(e),
        };
        match frame.opcode {
            OpCode::Close => break Ok(()),
            OpCode::Text | OpCode::Binary => {
                broadcast(&state, &name, encode(frame.opcode, &frame.payload));
            }
            _ => {}
        }
    };
    unsubscribe(&state, &name, id);
    drop(queue);
    let _ = writer.await;
    result
}

fn answer(status: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    response
}

async fn handle(
    mut req: Request<Incoming>,
    state: Rc<State>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let name = match req.uri().path().strip_prefix("/channels/") {
        Some(name) if !name.is_empty() => name.to_owned(),
        _ => return Ok(answer(StatusCode::NOT_FOUND, "use /channels/NAME\n")),
    };
    if upgrade::is_upgrade_request(&req) {
        let (response, fut) = match upgrade::upgrade(&mut req) {
            Ok(upgrade) => upgrade,
            Err(e) => return Ok(answer(StatusCode::BAD_REQUEST, format!("{e}\n"))),
        };
        tokio::task::spawn_local(async move {
            if let Err(e) = subscriber(fut, name, state).await {
                eprintln!("fastws-broadcast: connection: {e}");
            }
        });
        return Ok(response.map(|_| Full::new(Bytes::new())));
    }
    if req.method() != Method::POST {
        return Ok(answer(
            StatusCode::METHOD_NOT_ALLOWED,
            "GET with an upgrade, or POST\n",
        ));
    }
    let text = req
        .headers()
        .get(hyper::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().to_ascii_lowercase().starts_with("text/"));
    let body = match Limited::new(req.into_body(), MAX_MESSAGE).collect().await {
        Ok(body) => body.to_bytes(),
        Err(e) => return Ok(answer(StatusCode::PAYLOAD_TOO_LARGE, format!("{e}\n"))),
    };
    let opcode = if text {
        if std::str::from_utf8(&body).is_err() {
            return Ok(answer(
                StatusCode::BAD_REQUEST,
                "a text body must be UTF-8\n",
            ));
        }
        OpCode::Text
    } else {
        OpCode::Binary
    };
    let delivered = broadcast(&state, &name, encode(opcode, &body));
    let mut response = answer(StatusCode::OK, format!("{{\"delivered\":{delivered}}}"));
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    Ok(response)
}

fn main() {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| DEFAULT_ADDR.into());
    let addr: SocketAddr = match addr.parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("fastws-broadcast: bad listen address {addr:?}: {e}");
            std::process::exit(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("fastws-broadcast: cannot start the runtime: {e}");
            std::process::exit(1);
        }
    };
    let state = Rc::new(State::default());
    let local = tokio::task::LocalSet::new();
    let result: std::io::Result<()> = local.block_on(&runtime, async move {
        let listener = TcpListener::bind(addr).await?;
        eprintln!("fastws-broadcast listening on ws://{addr}/channels/NAME");
        loop {
            let (stream, _) = match listener.accept().await {
                Ok(s) => s,
                // Out of file descriptors and the like: keep serving the rest.
                Err(e) => {
                    eprintln!("fastws-broadcast: accept: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            let state = state.clone();
            tokio::task::spawn_local(async move {
                let service = service_fn(move |req| handle(req, state.clone()));
                let conn = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .with_upgrades();
                if let Err(e) = conn.await {
                    eprintln!("fastws-broadcast: http: {e}");
                }
            });
        }
    });
    if let Err(e) = result {
        eprintln!("fastws-broadcast: {e}");
        std::process::exit(1);
    }
}
