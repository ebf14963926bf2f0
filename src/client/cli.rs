//! `wsc`'s flags: parsed raw by clap, checked by the value parsers in
//! [`super`], and split into validated [`Options`] and [`Settings`] in one
//! place ([`Args::into_mode`]). The doc comment of each field is its help.
//!
//! `wsc URL` connects; `wsc bench URL` is the load generator, a subcommand
//! with flags of its own ([`crate::bench::Args`]). The two forms exclude each
//! other: the URL is required only when no subcommand is given, and after a
//! subcommand every argument is the subcommand's.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use awc::http::Uri;
use awc::http::header::{HeaderName, HeaderValue};
use clap::{Parser, Subcommand};

use super::console::Settings;
use super::{
    Options, parse_header, parse_interval, parse_origin, parse_secs, parse_size, parse_subprotocol,
};
use crate::tls::{ClientTls, TlsError};

const AFTER_HELP: &str = "\
Examples:
  python server.py                              # the tutorial's server, in one terminal;
  wsc ws://localhost:12345                      # then, in another: type lines, see replies
  printf 'a\\nb\\n' | wsc ws://localhost:12345    # pipeline: prints exactly the two replies
  wsc -x hello -x world -w 1 ws://localhost:12345
  wsc --json -P --ping-interval 5 ws://example.com/feed | jq .
  wsc -H 'Authorization: Bearer T' -s chat.v1 ws://localhost:8080/chat
  wsc --compress ws://localhost:8080/feed       # permessage-deflate, if the server agrees
  wsd gen-cert --out certs                      # a local CA and a certificate for localhost;
  wsc --ca certs/ca.pem wss://localhost:12345   # then trust that CA for wss://
  wsc --ca ca.pem --cert me.pem --key me-key.pem wss://host   # mutual TLS
  wsc bench ws://localhost:12345 -c 50 -d 10s --expect-prefix 'Server received: '   # load test (wsc bench --help)

Output:
  Text messages are written one per line as they arrive. On a terminal the
  prompt is '> ' and received messages are marked '< '; control characters are
  escaped. In a pipe stdout carries the messages and nothing else.
  Binary messages are shown as '[binary N bytes]' and a hex preview of the
  first 16 bytes (prefixed '< ' on a terminal), or written as they are with
  --raw-binary. With -P, pings and pongs are shown the same way ('[ping N
  bytes] ...', '[pong] rtt 0.42 ms' for pongs answering --ping-interval pings):
  on a terminal among the messages, in a pipe on stderr.
  --json writes one object per line: {\"type\":\"text\",\"data\":\"...\"},
  {\"type\":\"binary\",\"data\":BASE64,\"len\":N}, {\"type\":\"ping\"|\"pong\",\"data\":BASE64}
  (pongs to our pings add \"rtt_ms\"; both only with -P), and
  {\"type\":\"close\",\"code\":N|null,\"reason\":\"...\"}.

TLS (wss://):
  The server's certificate is checked against the built-in webpki roots (the
  Mozilla list) plus --ca, and must name the URL's host. A certificate that
  does not verify ends wsc with one line saying why (exit 1). -n skips the
  check, with a warning: the connection is encrypted but not authenticated.
  TLS flags are ignored for ws:// URLs.

Compression (--compress):
  wsc offers permessage-deflate as browsers do (context takeover both ways,
  any window the server picks). Messages it sends of 128 bytes or more go
  compressed; received ones are inflated within --max-message-size. A server
  that declines gets one stderr line ('the server declined permessage-deflate;
  sending uncompressed') and the connection goes on uncompressed; an answer
  the RFC forbids fails the handshake (exit 1).

Closing:
  At end of input (stdin EOF, or after -x and -w) or on Ctrl-C, wsc sends
  close 1000 and prints replies until the server's close arrives (at most
  --close-timeout). A second Ctrl-C quits at once. When the server closes
  first, its code and reason go to stderr.

With --slash, input lines starting with '/' are commands:
  /ping [data]   /pong [data]   /close [code [reason]]   //text sends '/text'

Exit codes:
  0  normal close (1000, 1001, a close without a code, or the server echoing the
     code we closed with); also when stdout's reader goes away (wsc ... | head -1)
  1  cannot connect, the server's certificate does not verify, or the
     handshake failed (one line on stderr)
  2  usage error, or a --ca/--cert/--key file that cannot be used
  3  the connection ended abnormally: another close code, a reset, a protocol
     error, no close reply within --close-timeout
Logs: RUST_LOG=debug wsc ... (default: warnings only).";

/// A WebSocket client for people and pipelines: sends each stdin line as a
/// message and writes each message received to stdout.
#[derive(Parser, Debug)]
#[command(
    name = "wsc",
    version,
    after_help = AFTER_HELP,
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true,
    // `wsc help` would be one more command for one flag's work.
    disable_help_subcommand = true
)]
pub struct Args {
    #[command(subcommand)]
    command: Option<Command>,
    /// Server URL: ws://HOST[:PORT][/PATH] or wss://HOST[:PORT][/PATH].
    // An Option only because `wsc bench ...` has none; clap requires it
    // whenever no subcommand is given.
    #[arg(value_parser = parse_url_arg, required = true)]
    url: Option<(String, Uri)>,
    /// Send MSG instead of reading stdin (repeatable), then close.
    #[arg(short = 'x', long = "execute", value_name = "MSG")]
    execute: Vec<String>,
    /// After the last message (stdin EOF or the last -x), wait this long
    /// before closing. Durations here are seconds (0.5) or with a unit (500ms).
    #[arg(short, long, value_name = "SECS", value_parser = parse_secs, default_value = "0")]
    wait: Duration,
    /// Treat input lines starting with / as commands: /ping, /pong, /close.
    #[arg(long)]
    slash: bool,
    /// Send input lines as binary messages instead of text.
    #[arg(short, long)]
    binary: bool,
    /// Write received binary messages to stdout as raw bytes (for piping files).
    #[arg(long, conflicts_with = "json")]
    raw_binary: bool,
    /// Write each event as one JSON object per line (see Output below).
    #[arg(long)]
    json: bool,
    /// Show pings and pongs, with the round-trip time of pongs to our pings.
    #[arg(short = 'P', long)]
    show_ping_pong: bool,
    /// Ping the server every SECS seconds (we always answer its pings).
    #[arg(long, value_name = "SECS", value_parser = parse_interval)]
    ping_interval: Option<Duration>,
    /// Add a request header, "Name: value" (repeatable).
    #[arg(short = 'H', long = "header", value_name = "NAME: VALUE", value_parser = parse_header)]
    headers: Vec<(HeaderName, HeaderValue)>,
    /// Ask for a subprotocol (repeatable, in order of preference).
    #[arg(short, long = "subprotocol", value_name = "NAME", value_parser = parse_subprotocol)]
    subprotocols: Vec<String>,
    /// Origin header to send.
    #[arg(short, long, value_parser = parse_origin)]
    origin: Option<HeaderValue>,
    /// Basic authentication, user:password.
    #[arg(long, value_name = "USER:PASS")]
    auth: Option<String>,
    /// Give up connecting (TCP, then the handshake reply) after SECS.
    #[arg(long, value_name = "SECS", value_parser = parse_secs, default_value = "10")]
    connect_timeout: Duration,
    /// After sending close, wait at most SECS for the server's close.
    #[arg(long, value_name = "SECS", value_parser = parse_secs, default_value = "3")]
    close_timeout: Duration,
    /// Largest message accepted (fragments reassembled), e.g. 64MiB, 1MB,
    /// 512kib, 65536 (KB/MB/GB are powers of 1000, KiB/MiB/GiB of 1024).
    #[arg(long, value_name = "SIZE", value_parser = parse_size, default_value = "64MiB")]
    max_message_size: usize,
    /// wss://: also trust the CA certificate(s) in FILE (PEM), e.g. certs/ca.pem from `wsd gen-cert`.
    #[arg(long, value_name = "FILE")]
    ca: Option<PathBuf>,
    /// wss://: do not verify the server's certificate (warns on stderr).
    #[arg(short = 'n', long, conflicts_with = "ca")]
    no_check: bool,
    /// wss://: present the client certificate in FILE (PEM) for mutual TLS; needs --key.
    #[arg(long, value_name = "FILE", requires = "key")]
    cert: Option<PathBuf>,
    /// wss://: the private key (PEM) for --cert.
    #[arg(long, value_name = "FILE", requires = "cert")]
    key: Option<PathBuf>,
    /// Offer permessage-deflate compression (RFC 7692), as browsers do. If
    /// the server declines, wsc says so on stderr and goes on uncompressed.
    #[arg(long)]
    compress: bool,
}

/// `wsc`'s subcommands.
#[derive(Subcommand, Debug)]
enum Command {
    /// Load generator for WebSocket echo and broadcast servers, ws:// only (wsc bench --help).
    Bench(crate::bench::Args),
}

/// What `wsc` was asked to do, validated.
#[derive(Debug)]
pub enum Mode {
    /// `wsc URL`: connect with these options and run the console.
    Connect(Options, Settings),
    /// `wsc bench ...`.
    Bench(crate::bench::Args),
}

/// Flags that parse but cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// clap requires the URL without a subcommand; this is the fallback
    /// should that ever not hold.
    #[error("no URL given (see wsc --help)")]
    NoUrl,
}

fn parse_url_arg(text: &str) -> Result<(String, Uri), String> {
    super::parse_url(text).map(|uri| (text.to_owned(), uri))
}

impl Args {
    /// True when the connection will be encrypted but the server not
    /// verified (`-n` with a wss:// URL), so the caller can warn.
    pub fn skips_verification(&self) -> bool {
        self.no_check
            && self
                .url
                .as_ref()
                .is_some_and(|(_, url)| url.scheme_str() == Some("wss"))
    }

    /// The subcommand, or the connection's options and the console's
    /// settings. For wss:// this loads the TLS files, so an unusable one is
    /// reported before connecting.
    pub fn into_mode(self) -> Result<Mode, CliError> {
        if let Some(Command::Bench(bench)) = self.command {
            return Ok(Mode::Bench(bench));
        }
        let (url_text, url) = self.url.ok_or(CliError::NoUrl)?;
        let tls = if url.scheme_str() == Some("wss") {
            let tls = ClientTls {
                ca: self.ca,
                no_check: self.no_check,
                identity: self.cert.zip(self.key),
            };
            Some(Arc::new(crate::tls::client_config(&tls)?))
        } else {
            None
        };
        let auth = self.auth.map(|a| match a.split_once(':') {
            Some((user, pass)) => (user.to_owned(), Some(pass.to_owned())),
            None => (a, None),
        });
        let opts = Options {
            url_text,
            url,
            headers: self.headers,
            subprotocols: self.subprotocols,
            origin: self.origin,
            auth,
            connect_timeout: self.connect_timeout,
            max_message_size: self.max_message_size,
            tls,
            compress: self.compress,
        };
        let settings = Settings {
            binary_input: self.binary,
            raw_binary: self.raw_binary,
            json: self.json,
            show_ping_pong: self.show_ping_pong,
            slash: self.slash,
            execute: self.execute,
            wait: self.wait,
            ping_interval: self.ping_interval,
            close_timeout: self.close_timeout,
        };
        Ok(Mode::Connect(opts, settings))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_cli_definition_is_consistent() {
        Args::command().debug_assert();
    }

    #[test]
    fn flags_become_options() {
        let args = Args::try_parse_from([
            "wsc",
            "-H",
            "X-A: 1",
            "-s",
            "p1",
            "-s",
            "p2",
            "--auth",
            "u:p:w",
            "-x",
            "hi",
            "ws://127.0.0.1:1/x",
        ])
        .unwrap();
        let Ok(Mode::Connect(opts, settings)) = args.into_mode() else {
            panic!("expected a connection");
        };
        assert!(opts.tls.is_none(), "ws:// needs no TLS config");
        assert_eq!(opts.url_text, "ws://127.0.0.1:1/x");
        assert_eq!(opts.subprotocols, ["p1", "p2"]);
        assert_eq!(opts.auth, Some(("u".into(), Some("p:w".into()))));
        assert_eq!(opts.max_message_size, 64 << 20);
        assert_eq!(settings.execute, ["hi"]);
    }

    #[test]
    fn durations_and_sizes_take_units() {
        let args = Args::try_parse_from([
            "wsc",
            "-w",
            "250ms",
            "--close-timeout",
            "1.5",
            "--ping-interval",
            "1m 30s",
            "--max-message-size",
            "16kib",
            "ws://x",
        ])
        .unwrap();
        let Ok(Mode::Connect(opts, settings)) = args.into_mode() else {
            panic!("expected a connection");
        };
        assert_eq!(settings.wait, Duration::from_millis(250));
        assert_eq!(settings.close_timeout, Duration::from_millis(1500));
        assert_eq!(settings.ping_interval, Some(Duration::from_secs(90)));
        assert_eq!(opts.max_message_size, 16 << 10);
    }

    #[test]
    fn bench_is_a_subcommand_with_its_own_flags() {
        let args = Args::try_parse_from([
            "wsc",
            "bench",
            "ws://127.0.0.1:1",
            "-c",
            "3",
            "--size",
            "16kib",
            "-d",
            "2s",
        ])
        .unwrap();
        let Ok(Mode::Bench(bench)) = args.into_mode() else {
            panic!("expected bench");
        };
        assert_eq!(
            (bench.url.as_str(), bench.connections, bench.size),
            ("ws://127.0.0.1:1", 3, 16 << 10)
        );
        assert_eq!(bench.duration, Duration::from_secs(2));
        let help = Args::command().render_help().to_string();
        assert!(help.contains("bench"), "{help}");
    }

    #[test]
    fn bad_values_are_usage_errors() {
        for bad in [
            &["wsc", "http://x"][..],
            &["wsc", "-H", "nocolon", "ws://x"],
            &["wsc", "--json", "--raw-binary", "ws://x"],
            &["wsc", "-w", "soon", "ws://x"],
            &["wsc", "--cert", "c.pem", "wss://x"],
            &["wsc", "--key", "k.pem", "wss://x"],
            &["wsc", "-n", "--ca", "ca.pem", "wss://x"],
            &["wsc", "--ping-interval", "0", "ws://x"],
            &["wsc", "--max-message-size", "16 parsecs", "ws://x"],
            &["wsc"],
            // A subcommand excludes the URL form and its flags.
            &["wsc", "ws://x", "bench"],
            &["wsc", "-x", "hi", "bench", "ws://x"],
            &["wsc", "bench", "ws://x", "--size", "lots"],
        ] {
            assert!(Args::try_parse_from(bad).is_err(), "{bad:?}");
        }
    }
}
