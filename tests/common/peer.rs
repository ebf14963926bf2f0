//! An independent WebSocket server (tokio-tungstenite) for client tests: any
//! RFC 6455 server must do, not only ours. It records what it receives (the
//! request, messages, pings, pongs, the close frame) and misbehaves on
//! demand (sends frames first, answers late, never answers the close).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use super::{BOUND, wait_until};

/// How the peer behaves. `Script::default()` is a plain echo server.
#[derive(Debug, Clone)]
pub struct Script {
    /// Echo text and binary messages back unchanged.
    pub echo: bool,
    /// Wait this long before each echo (replies still in flight at EOF).
    pub echo_delay: Duration,
    /// Sent right after the handshake, before reading anything.
    pub on_connect: Vec<Message>,
    /// Sent this long after the handshake (e.g. to prove `-w` waits).
    pub later: Option<(Duration, Message)>,
    /// Answer the client's close frame. When false the peer goes silent
    /// (but keeps the TCP connection open) once the close arrives.
    pub answer_close: bool,
    /// The subprotocol to accept if the client offers it.
    pub accept_protocol: Option<String>,
}

impl Default for Script {
    fn default() -> Self {
        Script {
            echo: true,
            echo_delay: Duration::ZERO,
            on_connect: Vec::new(),
            later: None,
            answer_close: true,
            accept_protocol: None,
        }
    }
}

/// What the peer saw on its (single) connection.
#[derive(Debug, Default, Clone)]
pub struct Record {
    pub connected: bool,
    pub path: String,
    /// Request headers, names lower-cased.
    pub headers: Vec<(String, String)>,
    pub messages: Vec<Message>,
    pub pings: Vec<Vec<u8>>,
    pub pongs: Vec<Vec<u8>>,
    /// `Some(None)`: a close frame without a code.
    pub close: Option<Option<(u16, String)>>,
    pub ended: bool,
}

impl Record {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn close_code(&self) -> Option<u16> {
        self.close.clone().flatten().map(|(code, _)| code)
    }
}

pub struct Peer {
    pub addr: SocketAddr,
    record: Arc<Mutex<Record>>,
}

impl Peer {
    /// Listens on 127.0.0.1 and serves connections with `script`.
    pub async fn start(script: Script) -> Peer {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind peer");
        let addr = listener.local_addr().expect("peer addr");
        let record = Arc::new(Mutex::new(Record::default()));
        let shared = record.clone();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                tokio::spawn(serve(tcp, script.clone(), shared.clone()));
            }
        });
        Peer { addr, record }
    }

    pub fn url(&self) -> String {
        format!("ws://{}/peer", self.addr)
    }

    pub fn record(&self) -> Record {
        self.record.lock().unwrap().clone()
    }

    /// Waits (bounded) until `check` holds for the record; panics otherwise.
    pub async fn wait_for(&self, what: &str, check: impl Fn(&Record) -> bool) -> Record {
        let ok = wait_until(BOUND, || async { check(&self.record.lock().unwrap()) }).await;
        assert!(ok, "peer never saw {what}; record: {:?}", self.record());
        self.record()
    }
}

pub fn close_frame(code: u16, reason: &str) -> Message {
    Message::Close(Some(CloseFrame {
        code: CloseCode::from(code),
        reason: reason.to_owned().into(),
    }))
}

// tungstenite's handshake callback type fixes the large error variant.
#[allow(clippy::result_large_err)]
async fn serve(tcp: tokio::net::TcpStream, script: Script, record: Arc<Mutex<Record>>) {
    let rec = record.clone();
    let accept = script.accept_protocol.clone();
    let callback = move |req: &Request, mut res: Response| {
        let mut r = rec.lock().unwrap();
        r.path = req.uri().path().to_owned();
        r.headers = req
            .headers()
            .iter()
            .map(|(n, v)| (n.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
            .collect();
        let offered = r.header("sec-websocket-protocol").unwrap_or("").to_owned();
        if let Some(p) = accept
            && offered.split(',').any(|o| o.trim() == p)
        {
            res.headers_mut()
                .insert("sec-websocket-protocol", HeaderValue::from_str(&p).unwrap());
        }
        Ok(res)
    };
    let Ok(mut ws) = tokio_tungstenite::accept_hdr_async(tcp, callback).await else {
        return;
    };
    record.lock().unwrap().connected = true;
    for msg in &script.on_connect {
        if ws.send(msg.clone()).await.is_err() {
            return;
        }
    }
    let later = async {
        match &script.later {
            Some((delay, msg)) => {
                tokio::time::sleep(*delay).await;
                msg.clone()
            }
            None => std::future::pending().await,
        }
    };
    tokio::pin!(later);
    let mut later_sent = false;
    loop {
        let msg = tokio::select! {
            msg = ws.next() => msg,
            msg = &mut later, if !later_sent => {
                later_sent = true;
                let _ = ws.send(msg).await;
                continue;
            }
        };
        let Some(Ok(msg)) = msg else { break };
        match msg {
            Message::Text(_) | Message::Binary(_) => {
                record.lock().unwrap().messages.push(msg.clone());
                if script.echo {
                    tokio::time::sleep(script.echo_delay).await;
                    if ws.send(msg).await.is_err() {
                        break;
                    }
                }
            }
            Message::Ping(data) => record.lock().unwrap().pings.push(data.to_vec()),
            Message::Pong(data) => record.lock().unwrap().pongs.push(data.to_vec()),
            Message::Close(frame) => {
                record.lock().unwrap().close =
                    Some(frame.map(|f| (u16::from(f.code), f.reason.to_string())));
                if !script.answer_close {
                    // Silent but connected: the client must give up by itself.
                    tokio::time::sleep(Duration::from_secs(60)).await;
                    return;
                }
                // tungstenite queued the echo; flushing sends it.
                let _ = ws.flush().await;
            }
            Message::Frame(_) => {}
        }
    }
    record.lock().unwrap().ended = true;
}
