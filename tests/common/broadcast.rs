//! A minimal broadcast server (tokio-tungstenite) that misbehaves on demand:
//! every text message a client sends goes to every connection (the sender
//! too, as wsd does), as many times as a fault function says: 1 normally,
//! 0 to drop it, 2 to send it twice. It proves that `wsc bench --fanout`
//! notices what a broken server does.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

/// How many copies connection `index` (in accept order, from 0) gets of
/// the text message `text`.
pub type Fault = Arc<dyn Fn(usize, &str) -> usize + Send + Sync>;

type Connections = Arc<Mutex<Vec<(usize, mpsc::UnboundedSender<Message>)>>>;

pub struct Broadcast {
    pub addr: SocketAddr,
}

impl Broadcast {
    /// Listens on 127.0.0.1; any path subscribes.
    pub async fn start(fault: impl Fn(usize, &str) -> usize + Send + Sync + 'static) -> Broadcast {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind broadcast");
        let addr = listener.local_addr().expect("broadcast addr");
        let fault: Fault = Arc::new(fault);
        let connections = Connections::default();
        tokio::spawn(async move {
            let mut index = 0;
            while let Ok((tcp, _)) = listener.accept().await {
                tokio::spawn(serve(tcp, index, connections.clone(), fault.clone()));
                index += 1;
            }
        });
        Broadcast { addr }
    }

    pub fn url(&self) -> String {
        format!("ws://{}/channels/test", self.addr)
    }
}

async fn serve(tcp: tokio::net::TcpStream, index: usize, connections: Connections, fault: Fault) {
    let Ok(ws) = tokio_tungstenite::accept_async(tcp).await else {
        return;
    };
    let (mut sink, mut stream) = ws.split();
    // Unbounded: a test server, fed by a bench that sends a few hundred
    // small messages.
    let (tx, mut rx) = mpsc::unbounded_channel();
    connections.lock().unwrap().push((index, tx));
    let writer = tokio::spawn(async move {
        while let Some(msg) = rx.recv().await {
            if sink.send(msg).await.is_err() {
                break;
            }
        }
    });
    // After a close frame, the next read sends tungstenite's answer and
    // then ends the stream.
    while let Some(Ok(msg)) = stream.next().await {
        if let Message::Text(text) = msg {
            for (i, tx) in connections.lock().unwrap().iter() {
                for _ in 0..fault(*i, text.as_str()) {
                    let _ = tx.send(Message::Text(text.clone()));
                }
            }
        }
    }
    // Dropping the sender ends the writer, and with both halves gone the
    // TCP connection closes, as a server should after the closing handshake.
    connections.lock().unwrap().retain(|(i, _)| *i != index);
    let _ = writer.await;
}
