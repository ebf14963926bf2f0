//! The server's configuration: plain serde data, one [`load`] function, and
//! validation whose messages name the file, the key and what was expected.
//!
//! Durations are written for people (`"5s"`, `"250ms"`), sizes too (`"1MiB"`,
//! or a bare number of bytes). `Default` holds the built-in values, which are
//! the same as the shipped `config/wsd.toml`.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Where `wsd` looks for its config when `--config` is not given.
pub const DEFAULT_PATH: &str = "config/wsd.toml";

/// What messages name as the source when no file was read.
pub const DEFAULTS: &str = "(built-in defaults)";

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub server: ServerConfig,
    pub session: SessionConfig,
    pub log: LogConfig,
    pub channels: ChannelsConfig,
    pub auth: AuthConfig,
    pub engine: EngineConfig,
    pub console: ConsoleConfig,
    pub pusher: PusherConfig,
    /// When present, wsd serves wss:// (and https) instead of ws://.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsConfig>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// `host:port`; a host name binds every address it resolves to.
    pub bind: String,
    /// The URL path of the WebSocket endpoint.
    pub path: String,
    /// Worker threads; 0 means one per CPU.
    pub workers: usize,
    /// Upgrades beyond this many live sessions get HTTP 503.
    pub max_connections: usize,
    /// How long a client may take to send its HTTP upgrade request.
    #[serde(with = "human_duration")]
    pub handshake_timeout: Duration,
    /// How long shutdown waits for sessions to finish their closing handshake.
    #[serde(with = "human_duration")]
    pub shutdown_timeout: Duration,
    /// Browser origins allowed to open WebSockets (`https://app.example`);
    /// empty allows any. Requests without an `Origin` header (not browsers)
    /// are not affected.
    pub allowed_origins: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SessionConfig {
    /// How often the server pings each peer.
    #[serde(with = "human_duration")]
    pub heartbeat_interval: Duration,
    /// A peer silent for this long is dropped.
    #[serde(with = "human_duration")]
    pub client_timeout: Duration,
    /// How long a session waits for the peer's answer to a close it sent.
    #[serde(with = "human_duration")]
    pub close_timeout: Duration,
    /// The largest message accepted, after reassembly of fragments.
    #[serde(with = "human_size")]
    pub max_message_size: usize,
    /// Prepended to every text reply; empty makes a pure echo server.
    pub reply_prefix: String,
    /// Bytes of frames that may wait to be written to one peer; a peer that
    /// lets more pile up is dropped as a slow consumer.
    #[serde(with = "human_size")]
    pub max_send_queue: usize,
    /// A peer whose socket takes nothing for this long while frames wait is
    /// dropped as a slow consumer.
    #[serde(with = "human_duration")]
    pub write_timeout: Duration,
    /// permessage-deflate (RFC 7692): off declines every offer.
    pub compression: Compression,
    /// How messages are compressed once a client agreed to it.
    pub deflate: DeflateConfig,
}

/// `[session] compression`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// Offers are declined: no CPU spent on compression.
    #[default]
    Off,
    /// A client's permessage-deflate offer is accepted.
    On,
}

/// `[session.deflate]`: the server's side of permessage-deflate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeflateConfig {
    /// zlib level, 1 (fastest) to 9 (smallest).
    pub level: u32,
    /// Messages shorter than this are sent uncompressed.
    #[serde(with = "human_size")]
    pub min_size: usize,
    /// Keep our compressor's window between messages (better ratios, but a
    /// compressor of its own per connection, and no sharing of a channel
    /// publication's compressed frame).
    pub server_context_takeover: bool,
    /// The largest window we compress with, 9..=15.
    pub server_max_window_bits: u8,
    /// The window we ask clients to compress with, 9..=15 (what we keep to
    /// inflate their messages); only clients that offer
    /// `client_max_window_bits` can be asked.
    pub client_max_window_bits: u8,
}

impl Default for DeflateConfig {
    fn default() -> Self {
        DeflateConfig {
            level: 1,
            min_size: 128,
            server_context_takeover: false,
            server_max_window_bits: 15,
            client_max_window_bits: 15,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `error`, `warn`, `info`, `debug`, `trace` or `off`; `RUST_LOG` wins.
    pub level: String,
}

/// The `[channels]` section: publish/subscribe.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ChannelsConfig {
    /// The base path of the channel endpoints, WebSocket and HTTP.
    pub path: String,
    /// Bearer keys for the HTTP API; empty lets only loopback clients use it.
    pub api_keys: Vec<String>,
    /// The namespaces, each with its rules. A channel whose namespace is not
    /// listed is refused.
    pub namespace: Vec<NamespaceConfig>,
}

/// One `[[channels.namespace]]`: the rules for channels named `NAME:...`
/// (or, for the name `""`, for channels without a `:`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NamespaceConfig {
    pub name: String,
    pub subscribe: Access,
    pub publish: Access,
    /// Publications kept per channel for recovery; 0 keeps none.
    pub history_size: usize,
    /// How long a kept publication stays.
    #[serde(with = "human_duration")]
    pub history_ttl: Duration,
    /// Whether subscribers are tracked, with join and leave events.
    pub presence: bool,
    /// Subscribers allowed per channel; 0 means no limit.
    pub max_subscribers: usize,
}

/// Who may subscribe to or publish on a namespace's channels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Access {
    /// Every client.
    Anyone,
    /// Clients with any valid token.
    Authenticated,
    /// Clients whose token's `subscribe` (or `publish`) claim has a pattern
    /// matching the channel.
    Token,
    /// No WebSocket client (publishing then goes through the HTTP API only).
    Nobody,
}

impl Access {
    pub fn as_str(self) -> &'static str {
        match self {
            Access::Anyone => "anyone",
            Access::Authenticated => "authenticated",
            Access::Token => "token",
            Access::Nobody => "nobody",
        }
    }
}

/// The `[engine]` section: where channels keep offsets, history and
/// presence, and how publications reach other instances.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EngineConfig {
    pub kind: EngineKind,
    pub redis: RedisConfig,
}

/// Which engine.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EngineKind {
    /// In this process: one instance.
    #[default]
    Memory,
    /// Shared through Redis: several instances.
    Redis,
}

/// `[engine.redis]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedisConfig {
    /// `redis://`, `rediss://` (TLS) or `redis+unix:///path`.
    pub url: String,
    /// Prefix of every key and pub/sub channel, so that several deployments
    /// can share one Redis.
    pub prefix: String,
    /// How long the presence members of an instance that died linger.
    #[serde(with = "human_duration")]
    pub presence_ttl: Duration,
}

impl Default for RedisConfig {
    fn default() -> Self {
        RedisConfig {
            url: "redis://127.0.0.1:6379".into(),
            prefix: "wsd".into(),
            presence_ttl: Duration::from_secs(30),
        }
    }
}

/// The `[pusher]` section: Pusher Channels protocol compatibility, so that
/// apps written for Pusher (pusher-js, Laravel Echo, the server SDKs) work
/// against wsd. Nothing is served for it while `app` is empty.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PusherConfig {
    /// What `pusher:connection_established` tells clients: after this long
    /// without a message from the server, a client sends `pusher:ping`.
    #[serde(with = "human_duration")]
    pub activity_timeout: Duration,
    /// The apps, each `[[pusher.app]]`.
    pub app: Vec<PusherAppConfig>,
}

impl Default for PusherConfig {
    fn default() -> Self {
        PusherConfig {
            activity_timeout: Duration::from_secs(120),
            app: Vec::new(),
        }
    }
}

/// One `[[pusher.app]]`: the credentials an app's clients and backend use,
/// and its limits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PusherAppConfig {
    /// The app id in the HTTP API's paths (`/apps/ID/events`); numeric, as
    /// the official SDKs expect.
    pub id: u64,
    /// The public key clients connect with (`/app/KEY`).
    pub key: String,
    /// Signs channel authorizations and HTTP API requests.
    pub secret: String,
    /// Whether clients may send `client-*` events on private and presence
    /// channels.
    pub client_events: bool,
    /// Connections allowed for this app at once on this instance; 0 means no
    /// limit (beyond `server.max_connections`).
    pub max_connections: usize,
    /// Members (distinct users) allowed on one presence channel.
    pub max_presence_members: usize,
    /// The largest event `data`, from the HTTP API or a client.
    #[serde(with = "human_size")]
    pub max_event_size: usize,
    /// URLs (`http://` or `https://`) that get the app's webhook events,
    /// batched and signed, POSTed with retries.
    pub webhooks: Vec<String>,
}

impl Default for PusherAppConfig {
    fn default() -> Self {
        PusherAppConfig {
            id: 0,
            key: String::new(),
            secret: String::new(),
            client_events: false,
            max_connections: 0,
            max_presence_members: 100,
            max_event_size: 10 * 1024,
            webhooks: Vec::new(),
        }
    }
}

/// The `[console]` section: the browser console and live dashboard at
/// `/console`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConsoleConfig {
    /// Whether `/console` (the page, its files and its stats stream) is
    /// served, and browsers asking for `/` are sent there.
    pub enabled: bool,
    /// When the console asks for one of `channels.api_keys`.
    pub require_key: RequireKey,
}

impl Default for ConsoleConfig {
    fn default() -> Self {
        ConsoleConfig {
            enabled: true,
            require_key: RequireKey::Auto,
        }
    }
}

/// When the console needs an API key.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RequireKey {
    /// When `server.bind` is not a loopback address: anyone who can reach
    /// the server from elsewhere must hold a key.
    #[default]
    Auto,
    Always,
    /// Never (for a server behind something that already checks).
    Never,
}

/// The `[auth]` section: how connection tokens (JWTs) are checked.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// The secret of HS256 tokens; empty means none.
    pub hmac_secret: String,
    /// A PEM file with the public key of RS256 or ES256 tokens; empty means
    /// none.
    pub public_key: PathBuf,
    /// Clock leeway allowed when checking `exp`.
    #[serde(with = "human_duration")]
    pub leeway: Duration,
}

impl AuthConfig {
    /// Whether tokens can be checked at all.
    pub fn enabled(&self) -> bool {
        !self.hmac_secret.is_empty() || !self.public_key.as_os_str().is_empty()
    }
}

/// The `[tls]` config section. Relative paths are relative to the working
/// directory `wsd` runs in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM file with the server certificate (then any intermediates).
    pub cert: PathBuf,
    /// PEM file with the matching private key.
    pub key: PathBuf,
    /// PEM file with the CA(s) that client certificates must chain to. When
    /// set, clients without a valid certificate are refused (mutual TLS).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_ca: Option<PathBuf>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            bind: "localhost:12345".into(),
            path: "/".into(),
            workers: 0,
            max_connections: 10_000,
            handshake_timeout: Duration::from_secs(5),
            shutdown_timeout: Duration::from_secs(10),
            allowed_origins: Vec::new(),
        }
    }
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            heartbeat_interval: Duration::from_secs(5),
            client_timeout: Duration::from_secs(10),
            close_timeout: Duration::from_secs(1),
            max_message_size: 1 << 20,
            reply_prefix: "Server received: ".into(),
            max_send_queue: 1 << 20,
            write_timeout: Duration::from_secs(10),
            compression: Compression::Off,
            deflate: DeflateConfig::default(),
        }
    }
}

impl Default for ChannelsConfig {
    fn default() -> Self {
        ChannelsConfig {
            path: "/channels".into(),
            api_keys: Vec::new(),
            namespace: vec![NamespaceConfig::default()],
        }
    }
}

impl Default for NamespaceConfig {
    fn default() -> Self {
        NamespaceConfig {
            name: String::new(),
            subscribe: Access::Anyone,
            publish: Access::Anyone,
            history_size: 100,
            history_ttl: Duration::from_secs(600),
            presence: false,
            max_subscribers: 0,
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: "info".into(),
        }
    }
}

/// A config that could not be used. Every variant names the file, so a
/// person running several servers knows which one to fix.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: cannot read config file: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Syntax { path: PathBuf, message: String },
    #[error("{path}: key `{key}`: {message}")]
    Invalid {
        path: PathBuf,
        key: String,
        message: String,
    },
}

impl Config {
    /// Reads, parses and validates the config file at `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Config::parse(&text, path)
    }

    /// The config `wsd` runs with: the file at `path`, or else
    /// [`DEFAULT_PATH`] if it exists, or else the defaults; then `bind` (the
    /// `--bind` flag) over whatever the file said.
    pub fn resolve(path: Option<&Path>, bind: Option<&str>) -> Result<Config, ConfigError> {
        let file = Config::file(path);
        let mut config = match &file {
            Some(file) => Config::load(file)?,
            None => Config::default(),
        };
        let source = file.unwrap_or_else(|| PathBuf::from(DEFAULTS));
        if let Some(bind) = bind {
            config.server.bind = bind.to_owned();
            config.validate(Path::new("--bind"))?;
        }
        config.validate(&source)?;
        Ok(config)
    }

    /// The file [`resolve`](Config::resolve) reads: `path`, else
    /// [`DEFAULT_PATH`] if it exists; `None` means the built-in defaults.
    pub fn file(path: Option<&Path>) -> Option<PathBuf> {
        match path {
            Some(path) => Some(path.to_owned()),
            None => Some(PathBuf::from(DEFAULT_PATH)).filter(|p| p.exists()),
        }
    }

    /// Parses and validates config text; `path` is only used in messages.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let deserializer = toml::Deserializer::parse(text).map_err(|e| ConfigError::Syntax {
            path: path.to_owned(),
            message: one_line(&e.to_string()),
        })?;
        let config: Config = serde_path_to_error::deserialize(deserializer).map_err(|e| {
            // A quoted key may hold a newline; the message stays one line.
            let key = e.path().to_string().replace('\n', "\\n");
            let message = one_line(&e.into_inner().to_string());
            if key == "." {
                ConfigError::Syntax {
                    path: path.to_owned(),
                    message,
                }
            } else {
                ConfigError::Invalid {
                    path: path.to_owned(),
                    key,
                    message,
                }
            }
        })?;
        config.validate(path)?;
        Ok(config)
    }

    /// Checks the rules that types alone cannot express.
    pub fn validate(&self, path: &Path) -> Result<(), ConfigError> {
        let invalid = |key: &str, message: String| ConfigError::Invalid {
            path: path.to_owned(),
            key: key.into(),
            message,
        };
        let s = &self.server;
        let bind_ok = s
            .bind
            .rsplit_once(':')
            .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
        if !bind_ok {
            return Err(invalid(
                "server.bind",
                format!(
                    "expected host:port (e.g. \"localhost:12345\"), got {:?}",
                    s.bind
                ),
            ));
        }
        if !s.path.starts_with('/') {
            return Err(invalid(
                "server.path",
                format!("expected a path starting with '/', got {:?}", s.path),
            ));
        }
        if s.max_connections == 0 {
            return Err(invalid(
                "server.max_connections",
                "must be at least 1".into(),
            ));
        }
        for (key, value) in [
            ("server.handshake_timeout", s.handshake_timeout),
            ("server.shutdown_timeout", s.shutdown_timeout),
            (
                "session.heartbeat_interval",
                self.session.heartbeat_interval,
            ),
            ("session.client_timeout", self.session.client_timeout),
            ("session.close_timeout", self.session.close_timeout),
            ("session.write_timeout", self.session.write_timeout),
        ] {
            if value.is_zero() {
                return Err(invalid(key, "must be longer than zero".into()));
            }
        }
        let session = &self.session;
        if session.heartbeat_interval >= session.client_timeout {
            return Err(invalid(
                "session.heartbeat_interval",
                format!(
                    "must be shorter than session.client_timeout ({}), or a healthy peer \
                     could time out before it is ever pinged; got {}",
                    humantime::format_duration(session.client_timeout),
                    humantime::format_duration(session.heartbeat_interval)
                ),
            ));
        }
        if session.close_timeout >= s.shutdown_timeout {
            return Err(invalid(
                "session.close_timeout",
                format!(
                    "must be shorter than server.shutdown_timeout ({}), or a shutdown \
                     could end before sessions finish their closing handshake; got {}",
                    humantime::format_duration(s.shutdown_timeout),
                    humantime::format_duration(session.close_timeout)
                ),
            ));
        }
        if session.max_send_queue == 0 {
            return Err(invalid(
                "session.max_send_queue",
                "must be at least 1 byte".into(),
            ));
        }
        if session.max_message_size == 0 {
            return Err(invalid(
                "session.max_message_size",
                "must be at least 1 byte".into(),
            ));
        }
        let deflate = &session.deflate;
        if !(1..=9).contains(&deflate.level) {
            return Err(invalid(
                "session.deflate.level",
                format!("expected 1 to 9, got {}", deflate.level),
            ));
        }
        for (key, bits) in [
            (
                "session.deflate.server_max_window_bits",
                deflate.server_max_window_bits,
            ),
            (
                "session.deflate.client_max_window_bits",
                deflate.client_max_window_bits,
            ),
        ] {
            if !(9..=15).contains(&bits) {
                return Err(invalid(
                    key,
                    format!("expected 9 to 15 (zlib cannot use a 256-byte window), got {bits}"),
                ));
            }
        }
        self.validate_channels(path)?;
        self.validate_engine(path)?;
        self.validate_console(path)?;
        self.validate_pusher(path)?;
        if self.log.level.parse::<log::LevelFilter>().is_err() {
            return Err(invalid(
                "log.level",
                format!(
                    "expected one of off, error, warn, info, debug, trace; got {:?}",
                    self.log.level
                ),
            ));
        }
        Ok(())
    }

    /// The `[channels]` and `[auth]` rules.
    fn validate_channels(&self, path: &Path) -> Result<(), ConfigError> {
        let invalid = |key: String, message: String| ConfigError::Invalid {
            path: path.to_owned(),
            key,
            message,
        };
        let c = &self.channels;
        if !c.path.starts_with('/') || c.path.len() < 2 || c.path.ends_with('/') {
            return Err(invalid(
                "channels.path".into(),
                format!(
                    "expected a path such as \"/channels\" (starting with '/', not ending \
                     with one), got {:?}",
                    c.path
                ),
            ));
        }
        if c.path == self.server.path {
            return Err(invalid(
                "channels.path".into(),
                format!("must differ from server.path ({:?})", self.server.path),
            ));
        }
        if let Some(i) = c.api_keys.iter().position(|k| k.trim().len() < 16) {
            return Err(invalid(
                format!("channels.api_keys[{i}]"),
                "an API key must be at least 16 characters (try `openssl rand -hex 24`)".into(),
            ));
        }
        for (i, ns) in c.namespace.iter().enumerate() {
            let key = |field: &str| format!("channels.namespace[{i}].{field}");
            if let Err(e) = crate::channels::check_namespace_name(&ns.name) {
                return Err(invalid(key("name"), e));
            }
            if c.namespace[..i].iter().any(|other| other.name == ns.name) {
                return Err(invalid(
                    key("name"),
                    format!("namespace {:?} is defined twice", ns.name),
                ));
            }
            for (field, access) in [("subscribe", ns.subscribe), ("publish", ns.publish)] {
                if matches!(access, Access::Authenticated | Access::Token) && !self.auth.enabled() {
                    return Err(invalid(
                        key(field),
                        format!(
                            "{:?} needs tokens, but [auth] sets neither hmac_secret nor \
                             public_key",
                            access.as_str()
                        ),
                    ));
                }
            }
            if ns.history_size > MAX_HISTORY {
                return Err(invalid(
                    key("history_size"),
                    format!("at most {MAX_HISTORY}, got {}", ns.history_size),
                ));
            }
            if ns.history_size > 0 && ns.history_ttl.is_zero() {
                return Err(invalid(
                    key("history_ttl"),
                    "must be longer than zero when history_size is above zero".into(),
                ));
            }
        }
        if !self.auth.hmac_secret.is_empty() && !self.auth.public_key.as_os_str().is_empty() {
            return Err(invalid(
                "auth.public_key".into(),
                "set either auth.hmac_secret or auth.public_key, not both".into(),
            ));
        }
        if !self.auth.hmac_secret.is_empty() && self.auth.hmac_secret.len() < 32 {
            return Err(invalid(
                "auth.hmac_secret".into(),
                "an HS256 secret must be at least 32 bytes (try `openssl rand -hex 32`)".into(),
            ));
        }
        for (i, origin) in self.server.allowed_origins.iter().enumerate() {
            let ok = (origin.starts_with("http://") || origin.starts_with("https://"))
                && !origin.ends_with('/');
            if !ok {
                return Err(invalid(
                    format!("server.allowed_origins[{i}]"),
                    format!(
                        "expected an origin such as \"https://app.example.com\" (scheme, host, \
                         optional port, no path), got {origin:?}"
                    ),
                ));
            }
        }
        Ok(())
    }

    /// The `[pusher]` rules.
    fn validate_pusher(&self, path: &Path) -> Result<(), ConfigError> {
        let invalid = |key: String, message: String| ConfigError::Invalid {
            path: path.to_owned(),
            key,
            message,
        };
        let p = &self.pusher;
        if p.activity_timeout < Duration::from_secs(1) {
            return Err(invalid(
                "pusher.activity_timeout".into(),
                "must be at least 1s (clients are told it in whole seconds)".into(),
            ));
        }
        let key_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
        for (i, app) in p.app.iter().enumerate() {
            let key = |field: &str| format!("pusher.app[{i}].{field}");
            if app.id == 0 {
                return Err(invalid(
                    key("id"),
                    "expected a numeric app id above 0 (e.g. id = 1001)".into(),
                ));
            }
            if p.app[..i].iter().any(|a| a.id == app.id) {
                return Err(invalid(
                    key("id"),
                    format!("app id {} is used twice", app.id),
                ));
            }
            if app.key.is_empty() || app.key.len() > 64 || !app.key.chars().all(key_char) {
                return Err(invalid(
                    key("key"),
                    "expected 1-64 characters of A-Z a-z 0-9 - _ . (it is part of the URL \
                     /app/KEY)"
                        .into(),
                ));
            }
            if p.app[..i].iter().any(|a| a.key == app.key) {
                return Err(invalid(
                    key("key"),
                    format!("key {:?} is used by two apps", app.key),
                ));
            }
            if app.secret.len() < 16 {
                return Err(invalid(
                    key("secret"),
                    "a secret must be at least 16 characters (try `openssl rand -hex 20`)".into(),
                ));
            }
            if app.max_presence_members == 0 {
                return Err(invalid(
                    key("max_presence_members"),
                    "must be at least 1".into(),
                ));
            }
            if app.max_event_size == 0 || app.max_event_size > self.session.max_message_size {
                return Err(invalid(
                    key("max_event_size"),
                    format!(
                        "expected 1 byte to session.max_message_size ({} bytes), got {}",
                        self.session.max_message_size, app.max_event_size
                    ),
                ));
            }
        }
        for (i, app) in p.app.iter().enumerate() {
            for (j, url) in app.webhooks.iter().enumerate() {
                let ok = (url.starts_with("http://") || url.starts_with("https://"))
                    && url
                        .parse::<actix_web::http::Uri>()
                        .is_ok_and(|u| u.host().is_some());
                if !ok {
                    return Err(invalid(
                        format!("pusher.app[{i}].webhooks[{j}]"),
                        format!("expected an http:// or https:// URL, got {url:?}"),
                    ));
                }
            }
        }
        if !p.app.is_empty()
            && let Some(i) = self
                .channels
                .namespace
                .iter()
                .position(|ns| ns.name.starts_with("pusher."))
        {
            return Err(invalid(
                format!("channels.namespace[{i}].name"),
                "names starting with \"pusher.\" are kept for the Pusher apps' channels".into(),
            ));
        }
        Ok(())
    }

    /// The `[engine]` rules.
    fn validate_engine(&self, path: &Path) -> Result<(), ConfigError> {
        let invalid = |key: &str, message: String| ConfigError::Invalid {
            path: path.to_owned(),
            key: key.into(),
            message,
        };
        let r = &self.engine.redis;
        let scheme_ok = ["redis://", "rediss://", "redis+unix://", "unix://"]
            .iter()
            .any(|s| r.url.starts_with(s));
        if !scheme_ok || redis::Client::open(r.url.as_str()).is_err() {
            return Err(invalid(
                "engine.redis.url",
                format!(
                    "expected a URL such as \"redis://127.0.0.1:6379\", \"rediss://host:6380\" \
                     or \"redis+unix:///run/redis.sock\", got {:?}",
                    r.url
                ),
            ));
        }
        let prefix_ok = !r.prefix.is_empty()
            && r.prefix.len() <= 64
            && r.prefix
                .bytes()
                .all(|b| b.is_ascii_graphic() && b != b'{' && b != b'}');
        if !prefix_ok {
            return Err(invalid(
                "engine.redis.prefix",
                format!(
                    "expected 1-64 printable characters without spaces or braces, got {:?}",
                    r.prefix
                ),
            ));
        }
        if r.presence_ttl < Duration::from_secs(1) {
            return Err(invalid(
                "engine.redis.presence_ttl",
                format!("must be at least 1s, got {:?}", r.presence_ttl),
            ));
        }
        Ok(())
    }

    /// The `[console]` rules: its paths are free, and a key it always asks
    /// for exists.
    fn validate_console(&self, path: &Path) -> Result<(), ConfigError> {
        let invalid = |key: &str, message: String| ConfigError::Invalid {
            path: path.to_owned(),
            key: key.into(),
            message,
        };
        if !self.console.enabled {
            return Ok(());
        }
        let prefix = crate::console::PATH;
        for (key, value) in [
            ("server.path", &self.server.path),
            ("channels.path", &self.channels.path),
        ] {
            let taken = value
                .strip_prefix(prefix)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'));
            if taken {
                return Err(invalid(
                    key,
                    format!(
                        "{value:?} is the browser console's path; choose another, or set \
                         console.enabled = false"
                    ),
                ));
            }
        }
        if self.console.require_key == RequireKey::Always && self.channels.api_keys.is_empty() {
            return Err(invalid(
                "console.require_key",
                "\"always\" needs at least one key in channels.api_keys".into(),
            ));
        }
        Ok(())
    }

    /// The effective config as TOML, for `wsd --print-config`.
    pub fn to_toml(&self) -> String {
        // Serializing plain structs of strings, numbers and durations cannot fail.
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# cannot render config: {e}\n"))
    }
}

/// The most publications a namespace may keep per channel.
pub const MAX_HISTORY: usize = 1_000_000;

/// toml's errors span several lines (a source excerpt with a caret); a log line
/// or a terminal message reads better as one.
fn one_line(message: &str) -> String {
    message
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !is_excerpt(l))
        .collect::<Vec<_>>()
        .join("; ")
}

/// A line of toml's source excerpt: `2 | key = 1`, `|`, `^^^`.
fn is_excerpt(line: &str) -> bool {
    let rest = line
        .trim_start_matches(|c: char| c.is_ascii_digit())
        .trim_start();
    rest.starts_with('|') || rest.starts_with('^') || line.starts_with("-->")
}

/// `"5s"`, `"250ms"`, `"1m 30s"`: [`crate::units::parse_duration`].
mod human_duration {
    use super::*;

    pub fn serialize<S: Serializer>(value: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*value).to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Duration;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a duration such as \"5s\" or \"250ms\"")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Duration, E> {
                crate::units::parse_duration(v).map_err(E::custom)
            }
        }
        d.deserialize_str(Visitor)
    }
}

/// `"1MiB"`, `"64KiB"`, `"10MB"` or a bare number of bytes:
/// [`crate::units::parse_size`].
mod human_size {
    use super::*;

    pub fn serialize<S: Serializer>(value: &usize, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&crate::units::format_size(*value))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = usize;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a size such as \"1MiB\", \"64KiB\" or a number of bytes")
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<usize, E> {
                usize::try_from(v)
                    .map_err(|_| E::custom(format!("invalid size {v}; must not be negative")))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<usize, E> {
                usize::try_from(v).map_err(|_| E::custom(format!("size {v} is too large")))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<usize, E> {
                crate::units::parse_size(v).map_err(E::custom)
            }
        }
        d.deserialize_any(Visitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unknown_key_with_a_newline_is_still_a_one_line_error() {
        let err = Config::parse("\"a\\nb\" = 1\n", Path::new("x.toml"))
            .unwrap_err()
            .to_string();
        assert!(!err.contains('\n'), "{err}");
    }

    #[test]
    fn close_timeout_must_be_shorter_than_shutdown_timeout() {
        let text = "[server]\nshutdown_timeout = \"1s\"\n[session]\nclose_timeout = \"2s\"\n";
        let err = Config::parse(text, Path::new("x.toml"))
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("x.toml: key `session.close_timeout`: must be shorter than server.shutdown_timeout (1s)"),
            "{err}"
        );
    }

    #[test]
    fn the_send_queue_keys_parse_and_are_checked() {
        let text = "[session]\nmax_send_queue = \"64KiB\"\nwrite_timeout = \"3s\"\n";
        let config = Config::parse(text, Path::new("x.toml")).unwrap();
        assert_eq!(config.session.max_send_queue, 64 << 10);
        assert_eq!(config.session.write_timeout, Duration::from_secs(3));
        for (text, key) in [
            ("[session]\nmax_send_queue = 0\n", "session.max_send_queue"),
            (
                "[session]\nwrite_timeout = \"0s\"\n",
                "session.write_timeout",
            ),
        ] {
            let err = Config::parse(text, Path::new("x.toml"))
                .unwrap_err()
                .to_string();
            assert!(err.starts_with(&format!("x.toml: key `{key}`")), "{err}");
        }
    }

    #[test]
    fn defaults_round_trip_through_toml() {
        let text = Config::default().to_toml();
        let parsed = Config::parse(&text, Path::new("x.toml")).unwrap();
        assert_eq!(parsed, Config::default());
    }
}
