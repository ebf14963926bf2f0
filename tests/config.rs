//! Config loading: every way a file can be wrong gives one message naming the
//! file, the key and what was expected.

use std::path::Path;
use std::time::Duration;

use wsd::config::{Config, ConfigError};

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(text, Path::new("bad.toml"))
}

#[test]
fn the_shipped_config_file_holds_the_built_in_defaults() {
    let shipped = Config::load(Path::new("config/wsd.toml")).expect("shipped config loads");
    assert_eq!(shipped, Config::default());
}

#[test]
fn an_empty_file_means_defaults() {
    assert_eq!(parse("").unwrap(), Config::default());
}

#[test]
fn human_units_are_understood() {
    let config = parse(
        "[session]\nheartbeat_interval = \"250ms\"\nclient_timeout = \"1m 30s\"\n\
         max_message_size = \"16MiB\"\n[server]\nmax_connections = 5\n",
    )
    .unwrap();
    assert_eq!(
        config.session.heartbeat_interval,
        Duration::from_millis(250)
    );
    assert_eq!(config.session.client_timeout, Duration::from_secs(90));
    assert_eq!(config.session.max_message_size, 16 << 20);
    assert_eq!(config.server.max_connections, 5);
    let bytes = parse("[session]\nmax_message_size = 4096\n").unwrap();
    assert_eq!(bytes.session.max_message_size, 4096);
}

/// (what is wrong, file text, key the message must name, words it must contain)
const BAD: &[(&str, &str, &str, &str)] = &[
    (
        "unknown key",
        "[server]\nbindd = \"x:1\"\n",
        "server.bindd",
        "unknown field `bindd`",
    ),
    (
        "unknown section",
        "[sever]\nbind = \"x:1\"\n",
        "",
        "unknown field `sever`",
    ),
    (
        "wrong type",
        "[server]\nworkers = \"four\"\n",
        "server.workers",
        "invalid type",
    ),
    (
        "bad duration",
        "[session]\nclient_timeout = \"10 parsecs\"\n",
        "session.client_timeout",
        "invalid duration",
    ),
    (
        "duration as number",
        "[session]\nclient_timeout = 10\n",
        "session.client_timeout",
        "duration",
    ),
    (
        "bad size",
        "[session]\nmax_message_size = \"big\"\n",
        "session.max_message_size",
        "invalid size",
    ),
    (
        "negative size",
        "[session]\nmax_message_size = -1\n",
        "session.max_message_size",
        "negative",
    ),
    (
        "zero size",
        "[session]\nmax_message_size = 0\n",
        "session.max_message_size",
        "at least 1",
    ),
    (
        "heartbeat not shorter than timeout",
        "[session]\nheartbeat_interval = \"10s\"\nclient_timeout = \"10s\"\n",
        "session.heartbeat_interval",
        "shorter than session.client_timeout",
    ),
    (
        "zero duration",
        "[server]\nhandshake_timeout = \"0s\"\n",
        "server.handshake_timeout",
        "longer than zero",
    ),
    (
        "bad bind",
        "[server]\nbind = \"localhost\"\n",
        "server.bind",
        "host:port",
    ),
    (
        "bad path",
        "[server]\npath = \"ws\"\n",
        "server.path",
        "starting with '/'",
    ),
    (
        "zero connections",
        "[server]\nmax_connections = 0\n",
        "server.max_connections",
        "at least 1",
    ),
    (
        "bad log level",
        "[log]\nlevel = \"loud\"\n",
        "log.level",
        "expected one of",
    ),
    ("not toml", "[server\nbind = 1\n", "", "bad.toml"),
    (
        "bad channels path",
        "[channels]\npath = \"channels\"\n",
        "channels.path",
        "starting with '/'",
    ),
    (
        "channels path same as server path",
        "[channels]\npath = \"/ws\"\n[server]\npath = \"/ws\"\n",
        "channels.path",
        "must differ from server.path",
    ),
    (
        "compression level out of range",
        "[session.deflate]\nlevel = 0\n",
        "session.deflate.level",
        "expected 1 to 9",
    ),
    (
        "a 256-byte window",
        "[session.deflate]\nserver_max_window_bits = 8\n",
        "session.deflate.server_max_window_bits",
        "expected 9 to 15",
    ),
    (
        "compression neither on nor off",
        "[session]\ncompression = \"yes\"\n",
        "session.compression",
        "unknown variant `yes`",
    ),
    (
        "short API key",
        "[channels]\napi_keys = [\"0123456789abcdef\", \"short\"]\n",
        "channels.api_keys[1]",
        "at least 16 characters",
    ),
    (
        "bad namespace name",
        "[[channels.namespace]]\nname = \"a:b\"\n",
        "channels.namespace[0].name",
        "a:b",
    ),
    (
        "namespace twice",
        "[[channels.namespace]]\nname = \"x\"\n[[channels.namespace]]\nname = \"x\"\n",
        "channels.namespace[1].name",
        "defined twice",
    ),
    (
        "bad access value",
        "[[channels.namespace]]\nname = \"\"\nsubscribe = \"friends\"\n",
        "channels.namespace[0].subscribe",
        "unknown variant",
    ),
    (
        "tokens needed but no auth",
        "[[channels.namespace]]\nname = \"\"\npublish = \"token\"\n",
        "channels.namespace[0].publish",
        "needs tokens",
    ),
    (
        "history kept for no time",
        "[[channels.namespace]]\nname = \"\"\nhistory_size = 10\nhistory_ttl = \"0s\"\n",
        "channels.namespace[0].history_ttl",
        "longer than zero",
    ),
    (
        "history too long",
        "[[channels.namespace]]\nname = \"\"\nhistory_size = 100000000\n",
        "channels.namespace[0].history_size",
        "at most",
    ),
    (
        "short hmac secret",
        "[auth]\nhmac_secret = \"tooshort\"\n",
        "auth.hmac_secret",
        "at least 32 bytes",
    ),
    (
        "both token keys",
        "[auth]\nhmac_secret = \"0123456789abcdef0123456789abcdef\"\npublic_key = \"k.pem\"\n",
        "auth.public_key",
        "not both",
    ),
    (
        "unknown engine",
        "[engine]\nkind = \"etcd\"\n",
        "engine.kind",
        "unknown variant",
    ),
    (
        "bad redis url",
        "[engine.redis]\nurl = \"http://127.0.0.1:6379\"\n",
        "engine.redis.url",
        "redis://127.0.0.1:6379",
    ),
    (
        "bad redis prefix",
        "[engine.redis]\nprefix = \"a b\"\n",
        "engine.redis.prefix",
        "printable",
    ),
    (
        "presence ttl too short",
        "[engine.redis]\npresence_ttl = \"100ms\"\n",
        "engine.redis.presence_ttl",
        "at least 1s",
    ),
    (
        "bad origin",
        "[server]\nallowed_origins = [\"https://ok.example/\"]\n",
        "server.allowed_origins[0]",
        "no path",
    ),
    (
        "bad require_key",
        "[console]\nrequire_key = \"sometimes\"\n",
        "console.require_key",
        "auto",
    ),
    (
        "always without keys",
        "[console]\nrequire_key = \"always\"\n",
        "console.require_key",
        "channels.api_keys",
    ),
    (
        "endpoint on the console",
        "[server]\npath = \"/console\"\n",
        "server.path",
        "console",
    ),
    (
        "channels under the console",
        "[channels]\npath = \"/console/channels\"\n",
        "channels.path",
        "console",
    ),
];

#[test]
fn the_console_keys_parse() {
    let config = parse(
        "[console]\nenabled = false\nrequire_key = \"never\"\n[server]\npath = \"/console\"\n",
    )
    .unwrap();
    assert!(!config.console.enabled);
    assert_eq!(config.console.require_key, wsd::config::RequireKey::Never);
    let config = parse(
        "[console]\nrequire_key = \"always\"\n[channels]\napi_keys = [\"0123456789abcdef\"]\n\
         [server]\npath = \"/consoles\"\n",
    )
    .unwrap();
    assert_eq!(config.console.require_key, wsd::config::RequireKey::Always);
}

#[test]
fn every_bad_config_names_the_file_the_key_and_the_problem() {
    for (what, text, key, words) in BAD {
        let err = parse(text).expect_err(what);
        let message = err.to_string();
        assert!(message.starts_with("bad.toml: "), "{what}: {message}");
        if !key.is_empty() {
            assert!(
                message.contains(&format!("`{key}`")),
                "{what}: no key in {message}"
            );
        }
        assert!(
            message.contains(words),
            "{what}: {message:?} lacks {words:?}"
        );
        assert!(
            !message.contains('\n'),
            "{what}: message spans lines: {message}"
        );
        eprintln!("{what}: {message}");
    }
}

#[test]
fn an_unreadable_file_is_named() {
    let err = Config::load(Path::new("no/such/wsd.toml")).unwrap_err();
    assert!(matches!(err, ConfigError::Read { .. }));
    assert!(
        err.to_string()
            .starts_with("no/such/wsd.toml: cannot read config file")
    );
}
