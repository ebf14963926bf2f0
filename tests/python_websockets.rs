//! Python `websockets` (the tutorial's library; permessage-deflate on by
//! default) as an independent client of a server with compression on: the
//! extension is agreed, and echo and channel deliveries survive the trip
//! both ways, compressed and not.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;

use common::tools;
use common::{BOUND, TestWsd, test_config};
use serde_json::Value;
use wsd::config::Compression;

/// The client script, its output read line by line as JSON.
struct Script {
    child: Child,
    lines: mpsc::Receiver<Value>,
}

impl Script {
    fn start(args: &[&str]) -> Script {
        let python = tools::python();
        let script = tools::root().join("tests/python/deflate_client.py");
        let mut child = Command::new(python)
            .arg(script)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the Python client");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let value = serde_json::from_str(&line)
                    .unwrap_or_else(|e| panic!("not JSON from the client ({e}): {line}"));
                if tx.send(value).is_err() {
                    break;
                }
            }
        });
        Script { child, lines }
    }

    fn next(&self) -> Value {
        self.lines
            .recv_timeout(BOUND)
            .expect("a line from the Python client within the bound")
    }

    fn succeeds(mut self) {
        let status = self.child.wait().expect("wait for the client");
        assert!(status.success(), "the Python client failed: {status}");
    }
}

impl Drop for Script {
    fn drop(&mut self) {
        // Only our own child, by its handle; harmless if it has exited.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn server() -> TestWsd {
    let mut config = test_config();
    config.session.compression = Compression::On;
    TestWsd::start(config)
}

fn assert_deflate_agreed(first: &Value) {
    let header = first["extensions"].as_str().unwrap_or_default();
    assert!(header.starts_with("permessage-deflate"), "{first}");
    assert_eq!(
        first["negotiated"],
        serde_json::json!(["PerMessageDeflate"])
    );
}

#[actix_rt::test]
async fn python_websockets_echoes_compressed_text_and_binary() {
    let wsd = server();
    let url = wsd.ws_url();
    let script = Script::start(&["echo", &url]);
    assert_deflate_agreed(&script.next());
    assert_eq!(script.next()["text"], "Server received: hello");
    let json = script.next();
    let text = json["text"].as_str().expect("text");
    let list: Value = serde_json::from_str(text.strip_prefix("Server received: ").expect("prefix"))
        .expect("the echoed JSON parses");
    assert_eq!(list.as_array().map(Vec::len), Some(400));
    assert_eq!(list[399]["seq"], 399);
    let binary: Vec<u8> = (0..64).flat_map(|_| 0..=255u8).collect();
    let hex: String = binary.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(script.next()["binary"], hex.as_str());
    assert_eq!(
        script.next()["text"],
        format!("Server received: {}", "é".repeat(5000)).as_str()
    );
    script.succeeds();
}

#[actix_rt::test]
async fn python_websockets_receives_compressed_channel_publications() {
    let wsd = server();
    let url = format!("ws://{}/channels/prices", wsd.addr());
    let script = Script::start(&["subscribe", &url, "3"]);
    assert_deflate_agreed(&script.next());
    assert_eq!(script.next()["ready"], true);
    wsd.wait_subscriptions(1).await;
    let bodies: Vec<String> = (0..3)
        .map(|n| {
            serde_json::to_string(
                &(0..50 * (n + 1))
                    .map(|i| serde_json::json!({"symbol": "ETH-USD", "bid": 2000 + i, "n": n}))
                    .collect::<Vec<_>>(),
            )
            .expect("json")
        })
        .collect();
    for body in &bodies {
        let res = wsd
            .post("/channels/prices")
            .insert_header(("content-type", "application/json"))
            .send_body(body.clone())
            .await
            .expect("publish");
        assert!(res.status().is_success(), "{}", res.status());
    }
    for body in &bodies {
        assert_eq!(script.next()["text"], body.as_str());
    }
    script.succeeds();
}
