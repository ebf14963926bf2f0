//! When the console asks for an API key, and the check itself.
//!
//! The key is one of `channels.api_keys`, presented as
//! `Authorization: Bearer KEY` or, where a browser cannot set headers (a
//! WebSocket), as `?key=KEY`.

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};

use actix_web::HttpRequest;
use actix_web::http::header;
use serde::Deserialize;

use crate::channels::{ChannelError, ErrorCode};
use crate::config::{Config, RequireKey};
use crate::server::check_key;

/// The console's key rule, decided once at start.
#[derive(Debug, Clone)]
pub struct Console {
    rule: Rule,
}

#[derive(Debug, Clone)]
enum Rule {
    Open,
    Keys(Vec<String>),
    /// A key is needed and none is configured.
    Locked,
}

/// Whether `addrs` (what `server.bind` resolves to) ask for a key under
/// `rule`: with `auto`, unless every address is a loopback address. An
/// unspecified address (`0.0.0.0`, `[::]`) serves the network; a bind that
/// resolves to nothing asks too.
pub fn needs_key(rule: RequireKey, addrs: &[SocketAddr]) -> bool {
    match rule {
        RequireKey::Always => true,
        RequireKey::Never => false,
        RequireKey::Auto => addrs.is_empty() || addrs.iter().any(|a| !is_loopback(a.ip())),
    }
}

/// [`needs_key`] for a `server.bind` string, resolved the way the listener
/// resolves it (`localhost` is whatever the system says it is).
pub fn bind_needs_key(rule: RequireKey, bind: &str) -> bool {
    let addrs: Vec<SocketAddr> = bind
        .to_socket_addrs()
        .map(|a| a.collect())
        .unwrap_or_default();
    needs_key(rule, &addrs)
}

fn is_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    }
}

#[derive(Deserialize)]
struct KeyQuery {
    key: Option<String>,
}

impl Console {
    pub fn new(config: &Config) -> Console {
        let rule = if !bind_needs_key(config.console.require_key, &config.server.bind) {
            Rule::Open
        } else if config.channels.api_keys.is_empty() {
            log::warn!(
                "the browser console needs an API key (server.bind {:?} is not loopback) and \
                 channels.api_keys is empty: it stays locked; set a key, or console.enabled = \
                 false",
                config.server.bind
            );
            Rule::Locked
        } else {
            Rule::Keys(config.channels.api_keys.clone())
        };
        Console { rule }
    }

    pub fn key_required(&self) -> bool {
        !matches!(self.rule, Rule::Open)
    }

    /// For the start-up log line.
    pub fn describe(&self) -> &'static str {
        match self.rule {
            Rule::Open => "",
            Rule::Keys(_) => " (it asks for one of channels.api_keys)",
            Rule::Locked => " (locked: it needs channels.api_keys)",
        }
    }

    /// Whether the request may see the server's state.
    pub(crate) fn check(&self, req: &HttpRequest) -> Result<(), ChannelError> {
        let keys = match &self.rule {
            Rule::Open => return Ok(()),
            Rule::Locked => {
                return Err(ChannelError::new(
                    ErrorCode::Forbidden,
                    "the console needs an API key on a server that is not bound to loopback, \
                     and channels.api_keys is empty: set one in the config",
                ));
            }
            Rule::Keys(keys) => keys,
        };
        let header = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "))
            .map(<[u8]>::to_vec);
        let query = actix_web::web::Query::<KeyQuery>::from_query(req.query_string())
            .ok()
            .and_then(|q| q.into_inner().key)
            .map(String::into_bytes);
        match header.or(query) {
            Some(presented) if !presented.is_empty() => check_key(keys, &presented),
            _ => Err(ChannelError::new(
                ErrorCode::Unauthorized,
                "this console asks for an API key (one of channels.api_keys)",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_asks_for_a_key_unless_the_bind_is_loopback() {
        for bind in [
            "0.0.0.0:12345",
            "[::]:12345",
            "192.168.1.20:12345",
            "10.0.0.1:80",
        ] {
            assert!(bind_needs_key(RequireKey::Auto, bind), "{bind}");
            assert!(!bind_needs_key(RequireKey::Never, bind), "{bind}");
        }
        for bind in [
            "localhost:12345",
            "127.0.0.1:12345",
            "127.1.2.3:0",
            "[::1]:12345",
            "[::ffff:127.0.0.1]:1",
        ] {
            assert!(!bind_needs_key(RequireKey::Auto, bind), "{bind}");
            assert!(bind_needs_key(RequireKey::Always, bind), "{bind}");
        }
        // One network address among loopback ones is enough to ask.
        let mixed: Vec<SocketAddr> = vec![
            "127.0.0.1:1".parse().unwrap(),
            "192.168.1.20:1".parse().unwrap(),
        ];
        assert!(needs_key(RequireKey::Auto, &mixed));
        // A bind that resolves to nothing fails safe.
        assert!(needs_key(RequireKey::Auto, &[]));
        assert!(bind_needs_key(RequireKey::Auto, "not an address"));
    }

    fn console(bind: &str, keys: &[&str]) -> Console {
        let mut config = Config::default();
        config.server.bind = bind.into();
        config.channels.api_keys = keys.iter().map(|k| k.to_string()).collect();
        Console::new(&config)
    }

    fn code(console: &Console, req: actix_web::test::TestRequest) -> Option<ErrorCode> {
        console.check(&req.to_http_request()).err().map(|e| e.code)
    }

    #[test]
    fn the_key_comes_as_a_bearer_header_or_a_query_and_must_be_a_configured_one() {
        use actix_web::test::TestRequest;
        let key = "a-console-key-0123456789";
        let keyed = console("0.0.0.0:12345", &[key]);
        assert!(keyed.key_required());
        assert_eq!(
            code(&keyed, TestRequest::get()),
            Some(ErrorCode::Unauthorized)
        );
        assert_eq!(
            code(&keyed, TestRequest::get().uri("/?key=")),
            Some(ErrorCode::Unauthorized)
        );
        assert_eq!(
            code(&keyed, TestRequest::get().uri("/?key=wrong-key-0123456789")),
            Some(ErrorCode::Unauthorized)
        );
        assert_eq!(
            code(&keyed, TestRequest::get().uri(&format!("/?key={key}"))),
            None
        );
        let bearer = TestRequest::get().insert_header(("Authorization", format!("Bearer {key}")));
        assert_eq!(code(&keyed, bearer), None);
        // Loopback: no key asked.
        let open = console("localhost:12345", &[key]);
        assert!(!open.key_required());
        assert_eq!(code(&open, TestRequest::get()), None);
    }

    #[test]
    fn a_network_bind_without_api_keys_locks_the_console() {
        use actix_web::test::TestRequest;
        let locked = console("[::]:12345", &[]);
        assert!(locked.key_required());
        assert_eq!(
            code(
                &locked,
                TestRequest::get().uri("/?key=anything-at-all-0123")
            ),
            Some(ErrorCode::Forbidden)
        );
    }
}
