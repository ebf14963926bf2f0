//! The Redis engine end to end: several real wsd instances sharing one real
//! `redis-server` (started per test, on loopback), subscribers on
//! tokio-tungstenite, publishers over HTTP. Redis is killed and restarted,
//! and a wsd process is SIGKILLed, to prove what survives what.

mod common;

use std::cell::Cell;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use common::redis::{
    Cluster, PRESENCE_TTL, RedisServer, WsdProcess, command, conns, get_json, json_msg, json_where,
    metric_sum, presence_conns, publish, pubsub_channel, redis_config, text, try_publish,
    unique_prefix, until_live, wait_engine_up, wait_health,
};
use common::{BOUND, TestWsd, Ws, wait_until};
use futures_util::StreamExt;
use futures_util::future::join_all;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

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

// ---------------------------------------------------------------------------
// The engine. These need `[engine] kind = "redis"` to work.
// ---------------------------------------------------------------------------

/// How long an instance may take to find Redis again after it comes back:
/// its reconnect backoff plus a loaded machine's slack.
const RECONNECT_BOUND: Duration = Duration::from_secs(30);

/// How long a subscriber may take to see the whole outage through (kill,
/// the publishes that fail, restart, reconnect, the last publication).
const OUTAGE_BOUND: Duration = Duration::from_secs(90);

/// Three instances, three plain subscribers (one on each): a publication made
/// on any instance reaches each of them once, in one global offset order.
#[actix_rt::test]
async fn a_publication_on_any_instance_reaches_subscribers_on_every_instance_once() {
    let cluster = Cluster::start(3);
    let [a, b, c] = &cluster.nodes[..] else {
        unreachable!()
    };
    let mut subs = Vec::new();
    for node in [a, b, c] {
        subs.push(node.connect_to("/channels/news").await);
    }
    cluster.wait_listeners("news", 3).await;
    let go = until_live(a, "news", &mut subs).await;
    let go = go["offset"].as_u64().expect("offset");
    let mut epochs = Vec::new();
    for (i, node) in [a, b, c].into_iter().enumerate() {
        let answer = publish(node, "news", &format!("from {i}")).await;
        // Offsets are the channel's, assigned in Redis, not the instance's.
        assert_eq!(answer["offset"], go + i as u64 + 1, "{answer}");
        epochs.push(answer["epoch"].as_str().expect("epoch").to_owned());
    }
    assert!(epochs.iter().all(|e| *e == epochs[0]), "{epochs:?}");
    publish(b, "news", "end").await;
    for (i, sub) in subs.iter_mut().enumerate() {
        // `end` right after the three: nothing twice, nothing out of order.
        for expected in ["from 0", "from 1", "from 2", "end"] {
            assert_eq!(text(sub).await, expected, "subscriber on instance {i}");
        }
    }
}

#[actix_rt::test]
async fn an_http_publish_on_b_reaches_json_subscribers_on_a_and_c() {
    let cluster = Cluster::start(3);
    let [a, b, c] = &cluster.nodes[..] else {
        unreachable!()
    };
    let mut on_a = a.connect_to("/channels/alerts?format=json").await;
    let mut on_c = c.connect_to("/channels/alerts?format=json").await;
    // The subscribe reply: from here on each is live.
    for sub in [&mut on_a, &mut on_c] {
        json_where(sub, |m| m["ok"] == true).await;
    }
    // B, with no subscriber of its own, does not listen.
    cluster.wait_listeners("alerts", 2).await;
    let answer = publish(b, "alerts", "fire").await;
    for sub in [&mut on_a, &mut on_c] {
        let d = json_where(sub, |m| m.get("data").is_some()).await;
        assert_eq!(d["channel"], "alerts");
        assert_eq!(d["data"], "fire");
        assert_eq!(d["offset"], answer["offset"]);
        assert_eq!(d["epoch"], answer["epoch"]);
    }
}

/// `PUBSUB` as Redis itself sees it: an instance's subscription to
/// `{prefix}:c:{channel}` lives exactly as long as its local subscribers.
#[actix_rt::test]
async fn an_instance_listens_in_redis_only_while_it_has_local_subscribers() {
    let cluster = Cluster::start(2);
    let [a, b] = &cluster.nodes[..] else {
        unreachable!()
    };
    assert_eq!(cluster.listened(), Vec::<String>::new());
    let first = a.connect_to("/channels/ondemand").await;
    cluster.wait_listeners("ondemand", 1).await;
    assert_eq!(cluster.listened(), [cluster.pubsub("ondemand")]);
    let on_b = b.connect_to("/channels/ondemand").await;
    cluster.wait_listeners("ondemand", 2).await;
    // A second local subscriber shares the instance's one subscription, and
    // one of two leaving does not end it.
    let second = a.connect_to("/channels/ondemand").await;
    a.wait_subscriptions(2).await;
    assert_eq!(cluster.redis.numsub(&cluster.pubsub("ondemand")), 2);
    drop(first);
    a.wait_subscriptions(1).await;
    assert_eq!(cluster.redis.numsub(&cluster.pubsub("ondemand")), 2);
    drop(second);
    cluster.wait_listeners("ondemand", 1).await;
    drop(on_b);
    let gone = wait_until(BOUND, || async { cluster.listened().is_empty() }).await;
    assert!(gone, "still listened to: {:?}", cluster.listened());

    // JSON mode: subscribe and unsubscribe commands do the same.
    let mut ws = b.connect_to("/channels?format=json").await;
    for (id, channel) in [(1, "x"), (2, "y")] {
        let reply = command(
            &mut ws,
            json!({"id": id, "op": "subscribe", "channel": channel}),
        )
        .await;
        assert_eq!(reply["ok"], true, "{reply}");
    }
    cluster.wait_listeners("x", 1).await;
    cluster.wait_listeners("y", 1).await;
    let reply = command(
        &mut ws,
        json!({"id": 3, "op": "unsubscribe", "channel": "x"}),
    )
    .await;
    assert_eq!(reply["ok"], true, "{reply}");
    cluster.wait_listeners("x", 0).await;
    assert_eq!(cluster.listened(), [cluster.pubsub("y")]);
}

/// History lives in Redis: a client of A that went away comes back to C and
/// gets exactly what it missed, published meanwhile on B.
#[actix_rt::test]
async fn a_subscriber_recovers_on_another_instance_exactly_what_it_missed() {
    let cluster = Cluster::start(3);
    let [a, b, c] = &cluster.nodes[..] else {
        unreachable!()
    };
    // A client of A sees m1 (offset 1), then goes away.
    let mut ws = a.connect_to("/channels/feed?format=json").await;
    json_where(&mut ws, |m| m["ok"] == true).await;
    let first = publish(a, "feed", "m1").await;
    assert_eq!(first["offset"], 1);
    let epoch = first["epoch"].as_str().expect("epoch").to_owned();
    let seen = json_where(&mut ws, |m| m.get("data").is_some()).await;
    assert_eq!(
        (seen["offset"].as_u64(), seen["data"].as_str()),
        (Some(1), Some("m1"))
    );
    assert_eq!(seen["epoch"], epoch.as_str());
    drop(ws);
    cluster.wait_listeners("feed", 0).await;
    for i in 2..=6 {
        publish(b, "feed", &format!("m{i}")).await;
    }

    // Plain mode, on C.
    let mut ws = c
        .connect_to(&format!("/channels/feed?since=1&epoch={epoch}"))
        .await;
    for i in 2..=6 {
        assert_eq!(text(&mut ws).await, format!("m{i}"));
    }
    cluster.wait_listeners("feed", 1).await;
    let live = publish(a, "feed", "live").await;
    assert_eq!(live["offset"], 7);
    // Next is the live one: no duplicate of the replay in between.
    assert_eq!(text(&mut ws).await, "live");
    drop(ws);

    // JSON mode, on B: `recovered: true` and the deliveries with offsets.
    let mut ws = b.connect_to("/channels?format=json").await;
    let reply = command(
        &mut ws,
        json!({"id": 1, "op": "subscribe", "channel": "feed", "since": {"offset": 1, "epoch": epoch}}),
    )
    .await;
    assert_eq!(reply["ok"], true, "{reply}");
    assert_eq!(reply["recovered"], true, "{reply}");
    assert_eq!(reply["epoch"], epoch.as_str());
    assert_eq!(reply["offset"], 7);
    for offset in 2..=7u64 {
        let d = json_where(&mut ws, |m| m.get("data").is_some()).await;
        assert_eq!(d["offset"], offset, "{d}");
        assert_eq!(d["epoch"], epoch.as_str());
        let data = if offset == 7 {
            "live".to_owned()
        } else {
            format!("m{offset}")
        };
        assert_eq!(d["data"], data);
    }
    publish(c, "feed", "after").await;
    let d = json_where(&mut ws, |m| m.get("data").is_some()).await;
    assert_eq!(
        (d["offset"].as_u64(), d["data"].as_str()),
        (Some(8), Some("after"))
    );

    // Another epoch cannot be recovered, wherever it is asked.
    let reply = command(
        &mut ws,
        json!({"id": 2, "op": "subscribe", "channel": "other", "since": {"offset": 1, "epoch": "not-this-one"}}),
    )
    .await;
    assert_eq!(reply["recovered"], false, "{reply}");

    // The HTTP history of any instance is the same.
    let (status, history) =
        get_json(a, &format!("/channels/feed/history?since=5&epoch={epoch}")).await;
    assert_eq!(status, 200, "{history}");
    let offsets: Vec<u64> = history["publications"]
        .as_array()
        .unwrap_or_else(|| panic!("no publications in {history}"))
        .iter()
        .map(|p| p["offset"].as_u64().expect("offset"))
        .collect();
    assert_eq!(offsets, [6, 7, 8]);
}

/// Presence is shared: members joined on any instance are listed on every
/// one, and JSON subscribers everywhere hear joins and leaves.
#[actix_rt::test]
async fn presence_is_shared_across_instances_with_joins_and_leaves_everywhere() {
    let cluster = Cluster::start(3);
    let [a, b, c] = &cluster.nodes[..] else {
        unreachable!()
    };
    const ROOM: &str = "room:1";
    let is = |event: &'static str| move |m: &Value| m["event"] == event;

    let mut on_c = c.connect_to("/channels?format=json").await;
    let reply = command(
        &mut on_c,
        json!({"id": 1, "op": "subscribe", "channel": ROOM}),
    )
    .await;
    assert_eq!(reply["ok"], true, "{reply}");
    let c_conn = json_where(&mut on_c, is("join")).await["conn"].clone();

    let mut on_a = a.connect_to("/channels?format=json").await;
    let reply = command(
        &mut on_a,
        json!({"id": 1, "op": "subscribe", "channel": ROOM}),
    )
    .await;
    assert_eq!(reply["ok"], true, "{reply}");
    let a_conn = json_where(&mut on_a, is("join")).await["conn"].clone();
    let join = json_where(&mut on_c, is("join")).await;
    assert_eq!(join["conn"], a_conn, "C hears A's member join");
    assert_eq!(join["channel"], ROOM);

    let mut on_b = b.connect_to(&format!("/channels/{ROOM}?format=json")).await;
    let b_conn = json_where(&mut on_b, is("join")).await["conn"].clone();
    for sub in [&mut on_a, &mut on_c] {
        let join = json_where(sub, is("join")).await;
        assert_eq!(join["conn"], b_conn);
    }
    // Connection ids must not collide across instances, or members would.
    let mut all: Vec<String> = [&a_conn, &b_conn, &c_conn]
        .iter()
        .map(|c| c.as_str().expect("conn").to_owned())
        .collect();
    all.sort();
    all.dedup();
    assert_eq!(all.len(), 3, "conns {all:?}");

    // Listed from every instance, over HTTP and by command.
    for node in [a, b, c] {
        assert_eq!(presence_conns(node, ROOM).await, all);
    }
    let reply = command(
        &mut on_b,
        json!({"id": 2, "op": "presence", "channel": ROOM}),
    )
    .await;
    assert_eq!(conns(&reply), all, "{reply}");

    // B's member leaves (cleanly): A and C hear it, and no instance lists it.
    drop(on_b);
    for sub in [&mut on_a, &mut on_c] {
        let leave = json_where(sub, is("leave")).await;
        assert_eq!(leave["conn"], b_conn);
        assert_eq!(leave["channel"], ROOM);
    }
    let mut left = all.clone();
    left.retain(|c| *c != b_conn);
    for node in [a, b, c] {
        let ok = wait_until(BOUND, || async { presence_conns(node, ROOM).await == left }).await;
        assert!(ok, "still listed: {:?}", presence_conns(node, ROOM).await);
    }
}

/// An instance killed with SIGKILL cannot remove its members: they must
/// expire within about `presence_ttl`, while the live instance's stay.
#[actix_rt::test]
async fn the_members_of_a_killed_instance_disappear_within_presence_ttl() {
    let cluster = Cluster::start(1);
    let a = &cluster.nodes[0];
    const ROOM: &str = "room:k";
    let mut doomed = WsdProcess::start(&cluster.config);

    let mut observer = a.connect_to(&format!("/channels/{ROOM}?format=json")).await;
    let own = json_where(&mut observer, |m| m["event"] == "join").await;
    let observer_conn = own["conn"].as_str().expect("conn").to_owned();
    let mut victim = doomed
        .connect_to(&format!("/channels/{ROOM}?format=json"))
        .await;
    let victim_conn = json_where(&mut victim, |m| m["event"] == "join").await["conn"]
        .as_str()
        .expect("conn")
        .to_owned();
    let join = json_where(&mut observer, |m| m["event"] == "join").await;
    assert_eq!(join["conn"], victim_conn.as_str());
    let mut both = vec![observer_conn.clone(), victim_conn.clone()];
    both.sort();
    assert_eq!(presence_conns(a, ROOM).await, both);

    doomed.kill();
    drop(victim);
    let bound = PRESENCE_TTL * 4;
    let expired = wait_until(bound, || async {
        presence_conns(a, ROOM).await == [observer_conn.clone()]
    })
    .await;
    assert!(
        expired,
        "after {bound:?} the killed instance's member is still listed: {:?}",
        presence_conns(a, ROOM).await
    );
    // Its subscribers are told, as for a member that left.
    let leave = json_where(&mut observer, |m| m["event"] == "leave").await;
    assert_eq!(leave["conn"], victim_conn.as_str());
    // The live instance's member outlived presence_ttl: it is refreshed.
    assert_eq!(presence_conns(a, ROOM).await, [observer_conn]);
}

/// Redis down at start: wsd starts anyway, says it is unavailable, and
/// recovers by itself when Redis appears.
#[actix_rt::test]
async fn with_redis_unreachable_wsd_starts_answers_503_and_recovers_when_it_returns() {
    let mut redis = RedisServer::start();
    redis.kill();
    let prefix = unique_prefix();
    let wsd = TestWsd::start(redis_config(&redis, &prefix));
    wait_health(&wsd, 503, "down", BOUND).await;
    let (status, body) = try_publish(&wsd, "x", "lost")
        .await
        .expect_err("a publish with Redis down");
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "unavailable", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty())
    );
    // A plain subscriber arriving now is refused, or accepted; if accepted,
    // it is either told (closed) or really subscribed once Redis is back.
    let early = tokio_tungstenite::connect_async(format!("ws://{}/channels/early", wsd.addr()));
    let early = tokio::time::timeout(BOUND, early)
        .await
        .expect("the upgrade got no answer");

    redis.restart();
    wait_health(&wsd, 200, "up", RECONNECT_BOUND).await;
    eprintln!(
        "a subscriber during the outage: {:?}",
        early.as_ref().map(|_| "accepted")
    );
    if let Ok((early, _)) = early {
        let channel = pubsub_channel(&prefix, "early");
        let deadline = tokio::time::Instant::now() + RECONNECT_BOUND;
        let mut early = Some(early);
        while redis.numsub(&channel) == 0 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "a subscriber accepted while Redis was down is open, but never subscribed in Redis"
            );
            // Anything but a close is not an answer here (pings, pongs).
            let ws = early.as_mut().expect("open");
            let next = tokio::time::timeout(Duration::from_millis(50), ws.next()).await;
            if matches!(next, Ok(Some(Ok(Message::Close(_))) | None | Some(Err(_)))) {
                eprintln!("... then closed: {next:?}");
                early = None;
                break;
            }
        }
        if let Some(early) = early {
            // Subscribed: it must go live and get what is published.
            let mut subs = vec![early];
            until_live(&wsd, "early", &mut subs).await;
            publish(&wsd, "early", "late but there").await;
            assert_eq!(text(&mut subs[0]).await, "late but there");
        }
    }
    let mut sub = wsd.connect_to("/channels/x?format=json").await;
    json_where(&mut sub, |m| m["ok"] == true).await;
    publish(&wsd, "x", "found").await;
    let found = json_where(&mut sub, |m| m.get("data").is_some()).await;
    assert_eq!(found["data"], "found");
}

/// What one subscriber saw through a Redis outage.
#[derive(Debug, Default)]
struct Seen {
    /// The numbers of the publications received, in arrival order, with
    /// their offset and epoch in JSON mode.
    got: Vec<(u64, Option<(u64, String)>)>,
    /// Told of a gap: a JSON `gap` event, or (plain) a close with 1012.
    gap: bool,
    /// Got the last publication, made after the outage.
    end: bool,
}

/// One publish attempt of the outage publisher.
#[derive(Debug)]
struct Attempt {
    n: u64,
    /// Offset and epoch if it answered 200.
    answer: Option<(u64, String)>,
    /// Which phase it started in: 0 before the kill, 1 during the outage,
    /// 2 once every instance is back.
    phase: u8,
}

const END: &str = "end";

/// Reads one subscriber until the last publication, or (plain) its close.
async fn watch(mut ws: Ws, json: bool, channel: &str) -> Seen {
    let mut seen = Seen::default();
    let number = |data: &str| -> u64 {
        data.strip_prefix('p')
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("not a test publication: {data:?}"))
    };
    // One deadline for the lot: heartbeat pings would restart a timeout
    // taken per frame.
    let deadline = tokio::time::Instant::now() + OUTAGE_BOUND;
    for _ in 0..100_000 {
        let msg = match tokio::time::timeout_at(deadline, ws.next()).await {
            Ok(Some(Ok(msg))) => msg,
            other => panic!("json={json}: {other:?} after {seen:?}"),
        };
        match msg {
            Message::Text(t) if json => {
                let m: Value = serde_json::from_str(&t).expect("JSON");
                if m.get("ok").is_some() {
                    continue;
                }
                if m["event"] == "gap" {
                    assert_eq!(m["channel"], channel, "{m}");
                    assert_eq!(m["recovered"], false, "{m}");
                    seen.gap = true;
                    continue;
                }
                let data = m["data"].as_str().unwrap_or_else(|| panic!("{m}"));
                if data == END {
                    seen.end = true;
                    return seen;
                }
                let position = (
                    m["offset"].as_u64().expect("offset"),
                    m["epoch"].as_str().expect("epoch").to_owned(),
                );
                seen.got.push((number(data), Some(position)));
            }
            Message::Text(t) => {
                if t.as_str() == END {
                    seen.end = true;
                    return seen;
                }
                seen.got.push((number(&t), None));
            }
            Message::Close(frame) if !json => {
                let code = frame.map(|f| u16::from(f.code));
                assert_eq!(code, Some(1012), "plain closes only to tell of a gap");
                seen.gap = true;
                return seen;
            }
            Message::Ping(_) | Message::Pong(_) => {}
            other => panic!("json={json}: unexpected {other:?} after {seen:?}"),
        }
    }
    panic!("json={json}: more messages than were published");
}

/// Publishes (alternately on A and B) while Redis is killed and restarted,
/// with plain and JSON subscribers on both; returns every attempt, what each
/// subscriber saw, and the cluster for its metrics.
async fn through_an_outage(redis: RedisServer) -> (Vec<Attempt>, Vec<(String, Seen)>, Cluster) {
    const CHANNEL: &str = "c";
    // Room for every publication an instance may miss while it reconnects
    // (a full history is what a correct engine recovers from).
    let mut cluster = Cluster::on(redis, 2, |config| {
        config.channels.namespace[0].history_size = 10_000;
    });
    let mut subs = Vec::new();
    for (i, node) in cluster.nodes.iter().enumerate() {
        for json in [false, true] {
            let path = if json {
                format!("/channels/{CHANNEL}?format=json")
            } else {
                format!("/channels/{CHANNEL}")
            };
            let name = format!(
                "{} on {}",
                if json { "json" } else { "plain" },
                ["A", "B"][i]
            );
            subs.push((name, json, node.connect_to(&path).await));
        }
    }
    cluster.wait_listeners(CHANNEL, 2).await;
    let (names, mut sockets): (Vec<_>, Vec<_>) = subs
        .into_iter()
        .map(|(name, json, ws)| ((name, json), ws))
        .unzip();
    until_live(&cluster.nodes[0], CHANNEL, &mut sockets).await;
    let subs = names
        .into_iter()
        .zip(sockets)
        .map(|((name, json), ws)| (name, json, ws));

    let Cluster {
        nodes,
        redis,
        prefix,
        ..
    } = &mut cluster;
    let nodes = &*nodes;
    let pubsub = pubsub_channel(prefix, CHANNEL);
    let phase = Cell::new(0u8);
    let accepted = Cell::new(0usize);
    let refused = Cell::new(0usize);
    let stop = Cell::new(false);
    let publisher = async {
        let mut attempts = Vec::new();
        let mut n = 0;
        while !stop.get() {
            n += 1;
            assert!(n < 100_000, "the outage never ended");
            let started = phase.get();
            let node = &nodes[(n % 2) as usize];
            match try_publish(node, CHANNEL, &format!("p{n}")).await {
                Ok(answer) => {
                    let offset = answer["offset"].as_u64().expect("offset");
                    let epoch = answer["epoch"].as_str().expect("epoch").to_owned();
                    attempts.push(Attempt {
                        n,
                        answer: Some((offset, epoch)),
                        phase: started,
                    });
                    accepted.set(accepted.get() + 1);
                }
                Err((status, body)) => {
                    assert_eq!(status, 503, "a publish during the outage: {body}");
                    assert_eq!(body["error"]["code"], "unavailable", "{body}");
                    attempts.push(Attempt {
                        n,
                        answer: None,
                        phase: started,
                    });
                    refused.set(refused.get() + 1);
                    // Paces the retries while Redis is away.
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
        publish(&nodes[0], CHANNEL, END).await;
        attempts
    };
    let controller = async {
        assert!(wait_until(BOUND, || async { accepted.get() >= 20 }).await);
        redis.kill();
        phase.set(1);
        let failed = wait_until(BOUND, || async { refused.get() >= 1 }).await;
        assert!(failed, "no publish failed while Redis was down");
        redis.restart();
        for node in nodes {
            wait_health(node, 200, "up", RECONNECT_BOUND).await;
        }
        // Both listen again: from here on every publication reaches both.
        let ok = wait_until(RECONNECT_BOUND, || async { redis.numsub(&pubsub) == 2 }).await;
        assert!(ok, "the instances did not subscribe again");
        phase.set(2);
        let base = accepted.get();
        assert!(wait_until(BOUND, || async { accepted.get() >= base + 20 }).await);
        stop.set(true);
    };
    let watchers = join_all(
        subs.map(|(name, json, ws)| async move { (name, watch(ws, json, CHANNEL).await) }),
    );
    let (attempts, (), seen) = futures_util::join!(publisher, controller, watchers);
    // For a failing test's output.
    let refused: Vec<u64> = attempts
        .iter()
        .filter(|a| a.answer.is_none())
        .map(|a| a.n)
        .collect();
    eprintln!("{} publishes, refused: {refused:?}", attempts.len());
    for (name, seen) in &seen {
        eprintln!(
            "{name}: got {}, gap {}, end {}",
            seen.got.len(),
            seen.gap,
            seen.end
        );
    }
    (attempts, seen, cluster)
}

/// The rule every subscriber keeps through an outage: what it got is in
/// publish order with nothing twice and nothing never published, each with
/// the offset and epoch its publish answered; and either it got every
/// accepted publication or it was told of the gap.
fn check_outage(attempts: &[Attempt], seen: &[(String, Seen)]) {
    let answers: HashMap<u64, &(u64, String)> = attempts
        .iter()
        .filter_map(|a| Some((a.n, a.answer.as_ref()?)))
        .collect();
    let last = attempts.last().expect("attempts").n;
    for (name, seen) in seen {
        let numbers: Vec<u64> = seen.got.iter().map(|(n, _)| *n).collect();
        assert!(
            numbers.windows(2).all(|w| w[0] < w[1]),
            "{name}: out of order or twice: {numbers:?}"
        );
        assert!(numbers.iter().all(|n| *n <= last), "{name}: {numbers:?}");
        for (n, position) in &seen.got {
            if let (Some(position), Some(answer)) = (position, answers.get(n)) {
                assert_eq!(position, *answer, "{name}: p{n} delivered as {position:?}");
            }
        }
        if seen.gap {
            continue;
        }
        assert!(seen.end, "{name}: neither the last publication nor a gap");
        let missing: Vec<u64> = answers
            .keys()
            .copied()
            .filter(|n| !numbers.contains(n))
            .collect();
        assert!(
            missing.is_empty(),
            "{name}: accepted publications missing without a gap: {missing:?}"
        );
    }
}

/// The epochs the accepted publishes answered, before the kill and after
/// the restart.
fn epochs(attempts: &[Attempt]) -> (HashSet<&str>, HashSet<&str>) {
    let of = |phase| {
        attempts
            .iter()
            .filter(|a| a.phase == phase)
            .filter_map(|a| Some(a.answer.as_ref()?.1.as_str()))
            .collect::<HashSet<_>>()
    };
    (of(0), of(2))
}

#[actix_rt::test]
async fn redis_restarted_empty_mid_stream_loses_nothing_silently() {
    let (attempts, seen, cluster) = through_an_outage(RedisServer::start()).await;
    check_outage(&attempts, &seen);
    // A JSON subscriber stays subscribed through a gap.
    for (name, seen) in &seen {
        if name.starts_with("json") {
            assert!(seen.end, "{name} did not get the last publication");
        }
    }
    // Redis lost the channel's history: the epoch is new.
    let (before, after) = epochs(&attempts);
    assert_eq!(before.len(), 1, "{before:?}");
    assert_eq!(after.len(), 1, "{after:?}");
    assert!(before.is_disjoint(&after), "{before:?} then {after:?}");
    for (i, node) in cluster.nodes.iter().enumerate() {
        let reconnects = metric_sum(node, "wsd_redis_reconnects_total").await;
        assert!(
            reconnects >= Some(1.0),
            "instance {i}: reconnects {reconnects:?}"
        );
        let resubscribed = metric_sum(node, "wsd_redis_resubscriptions_total").await;
        assert!(resubscribed >= Some(1.0), "instance {i}: {resubscribed:?}");
        let told = seen
            .iter()
            .any(|(name, s)| s.gap && name.ends_with(["A", "B"][i]));
        if told {
            let gaps = metric_sum(node, "wsd_redis_gaps_total").await;
            assert!(gaps >= Some(1.0), "instance {i}: gaps {gaps:?}");
        }
    }
}

#[actix_rt::test]
async fn redis_restarted_with_its_data_mid_stream_delivers_everything_with_no_gap() {
    let (attempts, seen, cluster) = through_an_outage(RedisServer::start_persistent()).await;
    check_outage(&attempts, &seen);
    for (name, seen) in &seen {
        assert!(
            !seen.gap,
            "{name} was told of a gap, but Redis kept everything"
        );
        assert!(seen.end, "{name}");
    }
    // The history survived: the same epoch, offsets going on.
    let (before, after) = epochs(&attempts);
    assert_eq!(before.len(), 1, "{before:?}");
    assert_eq!(before, after);
    for (i, node) in cluster.nodes.iter().enumerate() {
        let reconnects = metric_sum(node, "wsd_redis_reconnects_total").await;
        assert!(
            reconnects >= Some(1.0),
            "instance {i}: reconnects {reconnects:?}"
        );
        // (`wsd_redis_gaps_total` may move: it counts replayed gaps too.)
    }
}

/// Publishes `{tag}0`, `{tag}1`, ... one request at a time, so that the
/// publisher's own order is defined; returns each one's offset.
async fn publish_all(wsd: &TestWsd, tag: &str, count: u64) -> Vec<(u64, u64)> {
    let mut offsets = Vec::new();
    for i in 0..count {
        let answer = publish(wsd, "order", &format!("{tag}{i}")).await;
        offsets.push((answer["offset"].as_u64().expect("offset"), i));
    }
    offsets
}

/// Two publishers on two instances at once: one order for the channel,
/// seen alike on all three instances, and each publisher's own order kept.
#[actix_rt::test]
async fn concurrent_publishers_on_two_instances_make_one_order_seen_everywhere() {
    const EACH: u64 = 500;
    let cluster = Cluster::start(3);
    let [a, b, c] = &cluster.nodes[..] else {
        unreachable!()
    };
    let mut subs = Vec::new();
    for node in [a, b, c] {
        let mut ws = node.connect_to("/channels/order?format=json").await;
        json_where(&mut ws, |m| m["ok"] == true).await;
        subs.push(ws);
    }
    cluster.wait_listeners("order", 3).await;
    let read_all = |mut ws: Ws| async move {
        let mut got = Vec::new();
        for _ in 0..2 * EACH * 2 {
            if got.len() as u64 == 2 * EACH {
                break;
            }
            let m = json_msg(&mut ws).await;
            if let Some(data) = m["data"].as_str() {
                got.push((m["offset"].as_u64().expect("offset"), data.to_owned()));
            }
        }
        got
    };
    let (from_a, from_b, seen) = futures_util::join!(
        publish_all(a, "a", EACH),
        publish_all(b, "b", EACH),
        join_all(subs.into_iter().map(read_all))
    );
    // The offsets answered: 1..=1000, once each, rising for each publisher.
    let mut by_offset = BTreeMap::new();
    for (tag, answers) in [("a", &from_a), ("b", &from_b)] {
        assert!(
            answers.windows(2).all(|w| w[0].0 < w[1].0),
            "{tag}: {answers:?}"
        );
        for (offset, i) in answers {
            assert!(by_offset.insert(*offset, format!("{tag}{i}")).is_none());
        }
    }
    let expected: Vec<(u64, String)> = by_offset.into_iter().collect();
    assert_eq!(expected.first().map(|e| e.0), Some(1));
    assert_eq!(expected.last().map(|e| e.0), Some(2 * EACH));
    // Every subscriber: exactly that, in that order.
    for (i, got) in seen.iter().enumerate() {
        assert_eq!(got.len(), expected.len(), "subscriber on instance {i}");
        if let Some(k) = (0..got.len()).find(|&k| got[k] != expected[k]) {
            panic!(
                "subscriber on instance {i}: at {k} got {:?}, expected {:?}",
                got[k], expected[k]
            );
        }
    }
}

/// Two deployments on one Redis, told apart by their prefixes, share
/// nothing; every key and pub/sub channel carries its deployment's prefix.
#[actix_rt::test]
async fn deployments_with_different_prefixes_on_one_redis_share_nothing() {
    let redis = RedisServer::start();
    let (p1, p2) = (unique_prefix(), unique_prefix());
    let x = TestWsd::start(redis_config(&redis, &p1));
    let y = TestWsd::start(redis_config(&redis, &p2));
    wait_engine_up(x.addr());
    wait_engine_up(y.addr());
    let mut on_x = x.connect_to("/channels/shared?format=json").await;
    let mut on_y = y.connect_to("/channels/shared?format=json").await;
    for sub in [&mut on_x, &mut on_y] {
        json_where(sub, |m| m["ok"] == true).await;
    }
    redis.wait_numsub(&pubsub_channel(&p1, "shared"), 1).await;
    redis.wait_numsub(&pubsub_channel(&p2, "shared"), 1).await;
    assert_eq!(publish(&x, "shared", "for x").await["offset"], 1);
    assert_eq!(publish(&y, "shared", "for y").await["offset"], 1);
    // Each subscriber's first delivery is its own deployment's.
    let data = |m: &Value| m.get("data").is_some();
    assert_eq!(json_where(&mut on_x, data).await["data"], "for x");
    assert_eq!(json_where(&mut on_y, data).await["data"], "for y");
    publish(&x, "shared", "x again").await;
    assert_eq!(json_where(&mut on_x, data).await["data"], "x again");
    let ours =
        |name: &str| name.starts_with(&format!("{p1}:")) || name.starts_with(&format!("{p2}:"));
    let keys = redis.keys();
    assert!(!keys.is_empty(), "the history is in Redis");
    assert!(keys.iter().all(|k| ours(k)), "{keys:?}");
    for p in [&p1, &p2] {
        assert!(
            keys.iter().any(|k| k.starts_with(&format!("{p}:"))),
            "{p}: {keys:?}"
        );
    }
    let channels = redis.pubsub_channels("*");
    assert!(channels.iter().all(|c| ours(c)), "{channels:?}");
}

#[actix_rt::test]
async fn the_redis_metrics_exist_and_count() {
    let cluster = Cluster::start(2);
    let [a, b] = &cluster.nodes[..] else {
        unreachable!()
    };
    let mut sub = a.connect_to("/channels/m?format=json").await;
    json_where(&mut sub, |m| m["ok"] == true).await;
    publish(b, "m", "counted").await;
    let d = json_where(&mut sub, |m| m.get("data").is_some()).await;
    assert_eq!(d["data"], "counted");
    for node in [a, b] {
        for name in [
            "wsd_redis_reconnects_total",
            "wsd_redis_resubscriptions_total",
            "wsd_redis_gaps_total",
            "wsd_redis_publications_received_total",
            "wsd_redis_round_trip_seconds_bucket",
        ] {
            assert!(metric_sum(node, name).await.is_some(), "no {name}");
        }
    }
    // B made the publish's round trip; A received it from Redis.
    let trips = metric_sum(b, "wsd_redis_round_trip_seconds_count").await;
    assert!(trips >= Some(1.0), "round trips {trips:?}");
    let received = wait_until(BOUND, || async {
        metric_sum(a, "wsd_redis_publications_received_total").await >= Some(1.0)
    })
    .await;
    assert!(received, "A counted no publication received");
}

#[actix_rt::test]
async fn a_plain_subscriber_is_live_from_its_upgrade_on() {
    // No waiting for the subscription to take effect in Redis: whatever is
    // published once the 101 arrived must reach the subscriber, here from
    // another instance, on a channel that did not exist before and on one
    // that did.
    let cluster = Cluster::start(2);
    let [a, b] = &cluster.nodes[..] else {
        unreachable!()
    };
    publish(a, "old", "before").await;
    for channel in ["fresh", "old"] {
        for round in 0..5 {
            let name = format!("{channel}{round}");
            if channel == "old" {
                publish(a, &name, "before").await;
            }
            let mut sub = b.connect_to(&format!("/channels/{name}")).await;
            publish(a, &name, "right after the upgrade").await;
            assert_eq!(text(&mut sub).await, "right after the upgrade", "{name}");
        }
    }
}
