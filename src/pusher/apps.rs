//! The app table from `[[pusher.app]]`: apps by key (WebSocket clients) and
//! by id (the HTTP API), each app's connection count, and where its
//! channels live in the channel engine.
//!
//! Each app's channels are engine channels in namespaces of their own:
//! `pusher.ID:NAME`, and `pusher.ID.cache:NAME` for `cache-` channels
//! (which keep their last event). So they share the engine with every
//! other channel (scale-out over Redis, metrics, the console) and two apps
//! never see each other's channels. Pusher names may hold `= , ; #`, which
//! engine names may not, and may not hold `:`, which engine names may: each
//! of the four is written as `:` and a letter. (`:t` starts the control
//! channels of signed-in users, which no Pusher name maps to.)

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::mpsc;

use super::protocol::ChannelKind;
use super::webhook::WebhookEvent;
use crate::channels::{ChannelName, MAX_NAME};
use crate::config::{Access, NamespaceConfig, PusherAppConfig, PusherConfig};

/// Webhook events that may wait for the app's sender; more are dropped
/// (with a warning), so a backend that is down cannot grow memory.
pub const WEBHOOK_QUEUE: usize = 10_000;

/// How long a cache channel keeps its last event (as the hosted service).
pub const CACHE_TTL: Duration = Duration::from_secs(30 * 60);

/// One app.
#[derive(Debug)]
pub struct App {
    pub config: PusherAppConfig,
    connections: AtomicUsize,
    /// `pusher.ID:` and `pusher.ID.cache:`.
    prefix: String,
    cache_prefix: String,
    /// To the app's webhook sender, when it has webhooks.
    webhooks: Option<mpsc::Sender<WebhookEvent>>,
}

/// One connection counted against the app's `max_connections`, until
/// dropped.
#[derive(Debug)]
pub struct Admitted(Arc<App>);

impl Drop for Admitted {
    fn drop(&mut self) {
        self.0.connections.fetch_sub(1, Ordering::Relaxed);
    }
}

impl App {
    fn new(config: PusherAppConfig, webhooks: Option<mpsc::Sender<WebhookEvent>>) -> App {
        App {
            prefix: format!("pusher.{}:", config.id),
            cache_prefix: format!("pusher.{}.cache:", config.id),
            config,
            connections: AtomicUsize::new(0),
            webhooks,
        }
    }

    /// Whether the app has webhooks (so that events need not be made).
    pub fn has_webhooks(&self) -> bool {
        self.webhooks.is_some()
    }

    /// Queues a webhook event for the app's sender; dropped when the queue
    /// is full.
    pub fn webhook(&self, event: WebhookEvent) {
        if let Some(tx) = &self.webhooks
            && tx.try_send(event).is_err()
        {
            log::warn!(
                "pusher app {}: webhook queue full ({WEBHOOK_QUEUE} events); dropping one",
                self.config.id
            );
        }
    }

    /// Counts a new connection, unless the app is at `max_connections`.
    pub fn admit(self: &Arc<Self>) -> Option<Admitted> {
        let max = self.config.max_connections;
        let before = self.connections.fetch_add(1, Ordering::Relaxed);
        let admitted = Admitted(self.clone());
        (max == 0 || before < max).then_some(admitted)
    }

    /// The engine channel of the Pusher channel `name` (already checked by
    /// [`ChannelKind::of`]); `None` when the escaped name is too long for
    /// the engine.
    pub fn engine_name(&self, name: &str) -> Option<ChannelName> {
        let prefix = match ChannelKind::of(name) {
            Some(kind) if kind.cache => &self.cache_prefix,
            _ => &self.prefix,
        };
        let mut out = String::with_capacity(prefix.len() + name.len() + 8);
        out.push_str(prefix);
        for c in name.chars() {
            match c {
                '=' => out.push_str(":e"),
                ',' => out.push_str(":c"),
                ';' => out.push_str(":s"),
                '#' => out.push_str(":h"),
                c => out.push(c),
            }
        }
        if out.len() > MAX_NAME {
            return None;
        }
        ChannelName::parse(&out).ok()
    }

    /// The Pusher name of one of this app's engine channels.
    pub fn pusher_name(&self, channel: &ChannelName) -> Option<String> {
        let escaped = channel
            .as_str()
            .strip_prefix(&self.cache_prefix)
            .or_else(|| channel.as_str().strip_prefix(&self.prefix))?;
        let mut out = String::with_capacity(escaped.len());
        let mut chars = escaped.chars();
        while let Some(c) = chars.next() {
            if c != ':' {
                out.push(c);
                continue;
            }
            out.push(match chars.next()? {
                'e' => '=',
                'c' => ',',
                's' => ';',
                'h' => '#',
                _ => return None,
            });
        }
        Some(out)
    }

    /// The engine channel that tells every connection signed in as `user`
    /// to close (`terminate_connections`): none of the escapes a Pusher
    /// name makes, so no Pusher channel maps to it.
    pub fn control_name(&self, user: &str) -> Option<ChannelName> {
        let name = format!("{}:t{user}", self.prefix);
        (name.len() <= MAX_NAME && ChannelKind::of(&format!("#server-to-user-{user}")).is_some())
            .then(|| ChannelName::parse(&name).ok())
            .flatten()
    }

    /// The connections open now on this instance.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::Relaxed)
    }
}

/// Every configured app.
#[derive(Debug, Default)]
pub struct Apps {
    by_key: HashMap<String, Arc<App>>,
    by_id: HashMap<u64, Arc<App>>,
}

/// An app's webhook events, for its sender.
pub type WebhookQueue = (Arc<App>, mpsc::Receiver<WebhookEvent>);

impl Apps {
    /// The apps, and the queues of those with webhooks.
    pub fn new(config: &PusherConfig) -> (Apps, Vec<WebhookQueue>) {
        let mut apps = Apps::default();
        let mut queues = Vec::new();
        for app in &config.app {
            let (tx, rx) = if app.webhooks.is_empty() {
                (None, None)
            } else {
                let (tx, rx) = mpsc::channel(WEBHOOK_QUEUE);
                (Some(tx), Some(rx))
            };
            let app = Arc::new(App::new(app.clone(), tx));
            if let Some(rx) = rx {
                queues.push((app.clone(), rx));
            }
            apps.by_key.insert(app.config.key.clone(), app.clone());
            apps.by_id.insert(app.config.id, app);
        }
        (apps, queues)
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// The largest `max_event_size` of any app (0 without apps).
    pub fn max_event_size(&self) -> usize {
        self.by_id
            .values()
            .map(|a| a.config.max_event_size)
            .max()
            .unwrap_or(0)
    }

    pub fn by_key(&self, key: &str) -> Option<&Arc<App>> {
        self.by_key.get(key)
    }

    /// The app of an HTTP API path's id (`None` also for an id that is not
    /// a number).
    pub fn by_id(&self, id: &str) -> Option<&Arc<App>> {
        self.by_id.get(&id.parse::<u64>().ok()?)
    }
}

/// The engine namespaces the apps' channels live in, to add to the
/// configured ones. No client of the channel protocol may use them (only
/// Pusher connections and the Pusher API reach them, with their own
/// checks); cache channels keep their last event.
pub fn namespaces(config: &PusherConfig) -> Vec<NamespaceConfig> {
    let mut out = Vec::new();
    for app in &config.app {
        let base = NamespaceConfig {
            name: format!("pusher.{}", app.id),
            subscribe: Access::Nobody,
            publish: Access::Nobody,
            history_size: 0,
            history_ttl: CACHE_TTL,
            presence: false,
            max_subscribers: 0,
        };
        out.push(NamespaceConfig {
            name: format!("pusher.{}.cache", app.id),
            history_size: 1,
            ..base.clone()
        });
        out.push(base);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app(max_connections: usize) -> Arc<App> {
        Arc::new(App::new(
            PusherAppConfig {
                id: 7,
                key: "k".into(),
                secret: "s".repeat(16),
                max_connections,
                ..PusherAppConfig::default()
            },
            None,
        ))
    }

    #[test]
    fn names_map_into_the_apps_namespaces_and_back() {
        let app = app(0);
        for (name, engine) in [
            ("lobby", "pusher.7:lobby"),
            ("private-a=b,c;d", "pusher.7:private-a:eb:cc:sd"),
            ("cache-x", "pusher.7.cache:cache-x"),
            ("presence-cache-x", "pusher.7.cache:presence-cache-x"),
            (
                "private-encrypted-cache-x",
                "pusher.7.cache:private-encrypted-cache-x",
            ),
        ] {
            let mapped = app.engine_name(name).unwrap();
            assert_eq!(mapped.as_str(), engine);
            assert_eq!(app.pusher_name(&mapped).as_deref(), Some(name));
        }
        assert_eq!(app.engine_name("x").unwrap().namespace(), "pusher.7");
        assert!(
            app.engine_name(&"=".repeat(200)).is_none(),
            "too long escaped"
        );
        let control = app.control_name("u1").unwrap();
        assert_eq!(control.as_str(), "pusher.7::tu1");
        assert_eq!(
            app.pusher_name(&control),
            None,
            "no Pusher channel maps to it"
        );
        assert!(app.control_name("a b").is_none());
        let other = ChannelName::parse("pusher.8:lobby").unwrap();
        assert_eq!(app.pusher_name(&other), None);
    }

    #[test]
    fn max_connections_counts_live_connections() {
        let app = app(2);
        let a = app.admit().unwrap();
        let _b = app.admit().unwrap();
        assert!(app.admit().is_none());
        assert_eq!(app.connections(), 2, "a refusal is not counted");
        drop(a);
        assert!(app.admit().is_some());
        let free = super::tests::app(0);
        let held: Vec<_> = (0..100).map(|_| free.admit().unwrap()).collect();
        assert_eq!(free.connections(), held.len());
    }

    #[test]
    fn each_app_has_a_namespace_and_a_cache_namespace() {
        let config = PusherConfig {
            app: vec![PusherAppConfig {
                id: 3,
                ..PusherAppConfig::default()
            }],
            ..PusherConfig::default()
        };
        let ns = namespaces(&config);
        let names: Vec<&str> = ns.iter().map(|n| n.name.as_str()).collect();
        assert_eq!(names, ["pusher.3.cache", "pusher.3"]);
        assert_eq!(ns[0].history_size, 1);
        assert_eq!(ns[1].history_size, 0);
        assert!(ns.iter().all(|n| n.subscribe == Access::Nobody));
    }
}
