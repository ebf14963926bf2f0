//! The Redis engine end to end: several real wsd instances sharing one real
//! `redis-server` (started per test, on loopback), subscribers on
//! tokio-tungstenite, publishers over HTTP. Redis is killed and restarted,
//! and a wsd process is SIGKILLed, to prove what survives what.

mod common;

use common::redis::RedisServer;

#[test]
fn the_harness_redis_answers_ping_dies_on_kill_and_comes_back_empty_on_restart() {
    let mut redis = RedisServer::start();
    assert!(redis.ping());
    let _: () = redis.query(&["SET", "k", "v"]).unwrap();
    redis.kill();
    assert!(!redis.is_running());
    assert!(!redis.ping(), "still answering after SIGKILL");
    let port = redis.port();
    redis.restart();
    assert_eq!(redis.port(), port);
    assert!(redis.ping());
    // No persistence: the restart lost the key.
    let got: Option<String> = redis.query(&["GET", "k"]).unwrap();
    assert_eq!(got, None);
}

#[test]
fn the_harness_persistent_redis_keeps_acknowledged_writes_across_a_kill() {
    let mut redis = RedisServer::start_persistent();
    let _: () = redis.query(&["SET", "k", "v"]).unwrap();
    redis.kill();
    redis.restart();
    let got: Option<String> = redis.query(&["GET", "k"]).unwrap();
    assert_eq!(got.as_deref(), Some("v"));
}
