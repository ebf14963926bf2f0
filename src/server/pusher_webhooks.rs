//! Each Pusher app's webhook sender: one task per app with webhooks, on the
//! server's main thread, that takes the events sessions queue, batches
//! those arriving within [`BATCH_WINDOW`], and POSTs each batch to every
//! URL with `X-Pusher-Key` and `X-Pusher-Signature`, retrying with backoff.
//! Sessions only `try_send` into the bounded queue: a slow or dead backend
//! never holds them up.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use crate::engine::now_ms;
use crate::pusher::App;
use crate::pusher::webhook::{self, WebhookEvent};

/// Events arriving this soon after the first of a batch go with it.
const BATCH_WINDOW: Duration = Duration::from_millis(100);
/// Events in one POST at most.
const MAX_BATCH: usize = 100;
/// Tries per batch and URL, waiting `FIRST_RETRY`, then twice as long each
/// time (0.5 s, 1 s, 2 s, 4 s).
const ATTEMPTS: u32 = 5;
const FIRST_RETRY: Duration = Duration::from_millis(500);
/// One POST's time limit.
const TIMEOUT: Duration = Duration::from_secs(10);

pub(super) async fn deliver(app: Arc<App>, mut queue: mpsc::Receiver<WebhookEvent>) {
    let client = awc::Client::builder().timeout(TIMEOUT).finish();
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = queue.recv().await {
        batch.push(first);
        let until = tokio::time::Instant::now() + BATCH_WINDOW;
        while batch.len() < MAX_BATCH {
            match tokio::time::timeout_at(until, queue.recv()).await {
                Ok(Some(event)) => batch.push(event),
                _ => break,
            }
        }
        let body = webhook::body(now_ms(), &batch);
        let signature = webhook::signature(&app.config.secret, &body);
        for url in &app.config.webhooks {
            post(&client, &app, url, &body, &signature, batch.len()).await;
        }
        batch.clear();
    }
}

/// POSTs one batch to one URL, with retries; gives up (logged) after
/// [`ATTEMPTS`].
async fn post(
    client: &awc::Client,
    app: &App,
    url: &str,
    body: &[u8],
    signature: &str,
    events: usize,
) {
    let mut wait = FIRST_RETRY;
    for attempt in 1..=ATTEMPTS {
        let sent = client
            .post(url)
            .insert_header(("content-type", "application/json"))
            .insert_header(("x-pusher-key", app.config.key.as_str()))
            .insert_header(("x-pusher-signature", signature))
            .send_body(body.to_vec())
            .await;
        let why = match sent {
            Ok(res) if res.status().is_success() => return,
            Ok(res) => format!("HTTP {}", res.status()),
            Err(e) => e.to_string(),
        };
        if attempt == ATTEMPTS {
            log::warn!(
                "pusher app {}: webhook to {url} failed {ATTEMPTS} times ({why}); \
                 {events} events dropped",
                app.config.id
            );
            return;
        }
        log::info!(
            "pusher app {}: webhook to {url} failed ({why}); retrying in {}",
            app.config.id,
            humantime::format_duration(wait)
        );
        tokio::time::sleep(wait).await;
        wait *= 2;
    }
}
