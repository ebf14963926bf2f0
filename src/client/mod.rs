//! The `wsc` client: options, the opening handshake, and the connection loop.
//!
//! - this module: [`Options`] (validated settings), [`connect`] (the awc
//!   handshake, with the permessage-deflate offer and its answer checked)
//!   and [`ConnectError`], plus the `clap` value parsers that turn raw flags
//!   into validated values in one place.
//! - [`conn`]: the connection loop. It speaks WebSocket and knows nothing of
//!   terminals: commands come in on a channel, events go out through the
//!   [`conn::Output`] trait.
//! - `wire`: the frames on the upgraded socket: protocol's decoder (with
//!   inflate) for what arrives, its encoder and compressor for what we send.
//! - [`cli`]: the flags, their help text, and their split into options.
//! - [`console`]: the terminal side: stdin lines, `--slash` commands, prompt,
//!   and how events are printed (terminal, pipe, `--json`).
//! - [`stdout`]: the writer thread behind a bounded queue that takes all of
//!   stdout's bytes, so a slow reader never stalls the connection.
//!
//! The client shares [`crate::protocol`] with the server and nothing else.

pub mod cli;
pub mod conn;
pub mod console;
pub mod stdout;
mod wire;

use std::error::Error as StdError;
use std::sync::Arc;
use std::time::Duration;

use awc::error::{ConnectError as AwcConnectError, SendRequestError, WsClientError};
use awc::http::Uri;
use awc::http::header::{
    HeaderMap, HeaderName, HeaderValue, SEC_WEBSOCKET_EXTENSIONS, SEC_WEBSOCKET_PROTOCOL,
};
use rustls::{AlertDescription, CertificateError, ClientConfig};

use crate::protocol::deflate::{ClientOffer, Compressor, DeflateParams, SendSettings};
use crate::protocol::{Decoder, InflateParams, Role};
use crate::units::UnitError;

/// Everything needed to open a connection, already validated.
#[derive(Debug, Clone)]
pub struct Options {
    /// The URL as the user wrote it, for messages.
    pub url_text: String,
    pub url: Uri,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub subprotocols: Vec<String>,
    pub origin: Option<HeaderValue>,
    /// `user` and optional password for Basic auth.
    pub auth: Option<(String, Option<String>)>,
    /// Bounds the TCP connect and, separately, the wait for the handshake reply.
    pub connect_timeout: Duration,
    /// The largest message (after reassembling fragments) we accept.
    pub max_message_size: usize,
    /// For wss://: how to verify the server and what to present, built by
    /// [`crate::tls::client_config`]. `None` verifies against the webpki
    /// roots. Ignored for ws://.
    pub tls: Option<Arc<ClientConfig>>,
    /// Offer permessage-deflate ([`OFFER`]).
    pub compress: bool,
}

/// What `--compress` offers: what browsers offer (any window from the
/// server, context takeover both ways, and leave to the server to limit
/// our window).
pub const OFFER: ClientOffer = ClientOffer {
    server_no_context_takeover: false,
    client_no_context_takeover: false,
    server_max_window_bits: None,
    client_max_window_bits: true,
};

/// How `wsc` compresses what it sends once permessage-deflate is agreed:
/// zlib's fastest level (a pipeline of many lines stays cheap), and
/// messages under 128 bytes plain, where DEFLATE saves little or nothing
/// (the extension allows that message by message: RFC 7692 section 6).
pub const SEND_SETTINGS: SendSettings = SendSettings {
    level: 1,
    min_size: 128,
};

/// An open WebSocket connection: the upgraded socket, split, with the
/// frame reader and writer the handshake agreed on.
pub struct Connection {
    pub(crate) reader: wire::Reader,
    pub(crate) writer: wire::Writer,
    /// The subprotocol the server chose, if any.
    pub protocol: Option<String>,
    /// permessage-deflate's parameters when it was offered and agreed;
    /// `None` without `--compress` or when the server declined.
    pub deflate: Option<DeflateParams>,
}

/// Why a connection could not be opened. Each renders as one line naming the
/// URL and the cause, because that is what `wsc` prints.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("cannot connect to {url}: {cause}")]
    Connect { url: String, cause: String },
    #[error("cannot connect to {url}: handshake failed: {cause}")]
    Handshake { url: String, cause: String },
}

/// Opens the TCP connection and performs the opening handshake.
pub async fn connect(opts: &Options) -> Result<Connection, ConnectError> {
    let mut connector = awc::Connector::new()
        .timeout(opts.connect_timeout)
        // The TLS handshake gets the same bound as the TCP connect.
        .handshake_timeout(opts.connect_timeout);
    // awc picks plain TCP or TLS by the URL's scheme.
    if opts.url.scheme_str() == Some("wss") {
        let tls = match &opts.tls {
            Some(config) => config.clone(),
            // No files to load, so this cannot fail in practice; say so if it does.
            None => crate::tls::client_config(&crate::tls::ClientTls::default())
                .map(Arc::new)
                .map_err(|e| ConnectError::Connect {
                    url: opts.url_text.clone(),
                    cause: e.to_string(),
                })?,
        };
        connector = connector.rustls_0_23(tls);
    }
    let client = awc::Client::builder()
        // No `.max_http_version(HTTP_11)` here: awc applies it by replacing
        // the connector's TLS config with its default one (none without a
        // roots feature), so wss:// would fail with "SSL is not supported".
        // HTTP/1.1, the only HTTP with the tunnel a WebSocket needs, is
        // still all we speak: plain TCP is always HTTP/1.1 in awc, and our
        // TLS config offers only http/1.1 by ALPN.
        .connector(connector)
        .timeout(opts.connect_timeout)
        .finish();
    let mut req = client
        .ws(opts.url.clone())
        // The codec's limit applies per frame; `conn` enforces the same limit
        // on the reassembled message.
        .max_frame_size(opts.max_message_size);
    for (name, value) in &opts.headers {
        req = req.header(name.clone(), value.clone());
    }
    if !opts.subprotocols.is_empty() {
        req = req.protocols(&opts.subprotocols);
    }
    if let Some(origin) = &opts.origin {
        req = req.origin(origin.clone());
    }
    if let Some((user, password)) = &opts.auth {
        req = req.basic_auth(user, password.as_deref());
    }
    if opts.compress {
        req = req.header(SEC_WEBSOCKET_EXTENSIONS, OFFER.header_value());
    }
    let (res, framed) = req
        .connect()
        .await
        .map_err(|e| describe(&opts.url_text, e))?;
    let protocol = res
        .headers()
        .get(SEC_WEBSOCKET_PROTOCOL)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    // RFC 6455 section 4.1: a subprotocol we did not offer fails the
    // connection (awc does not check).
    if let Some(p) = &protocol
        && !opts.subprotocols.contains(p)
    {
        return Err(ConnectError::Handshake {
            url: opts.url_text.clone(),
            cause: format!("the server chose subprotocol {p:?}, which was not offered"),
        });
    }
    let handshake_error = |cause: String| ConnectError::Handshake {
        url: opts.url_text.clone(),
        cause,
    };
    let deflate = agreed_extension(opts.compress, res.headers()).map_err(handshake_error)?;
    let mut decoder = Decoder::new(Role::Client, opts.max_message_size);
    let mut compressor = None;
    if let Some(params) = &deflate {
        decoder = decoder.with_inflate(InflateParams {
            window_bits: params.server_max_window_bits,
            no_context_takeover: params.server_no_context_takeover,
        });
        compressor = Compressor::new(SEND_SETTINGS, params, false)
            .map_err(|e| handshake_error(format!("permessage-deflate: {e}")))?;
    }
    // Past the handshake awc's codec is done with: its socket, and any
    // frames it already read after the response, are ours (see `wire`).
    let parts = framed.into_parts();
    let (reader, writer) = wire::split(parts.io, parts.read_buf, decoder, compressor);
    Ok(Connection {
        reader,
        writer,
        protocol,
        deflate,
    })
}

/// The extension the server's response agreed to: permessage-deflate's
/// parameters if we offered it and the answer is one we may accept (RFC
/// 7692 section 7.1: otherwise the client fails the connection), `None` if
/// the server declined. Without an offer any extension in the answer fails
/// the connection (RFC 6455 section 4.1).
fn agreed_extension(offered: bool, headers: &HeaderMap) -> Result<Option<DeflateParams>, String> {
    let values = headers
        .get_all(SEC_WEBSOCKET_EXTENSIONS)
        .map(|v| v.to_str())
        .collect::<Result<Vec<&str>, _>>()
        .map_err(|_| "the server's Sec-WebSocket-Extensions is not text".to_owned())?;
    if offered {
        return OFFER
            .validate_response(values)
            .map_err(|e| format!("permessage-deflate: {e}"));
    }
    let named = crate::protocol::deflate::parse_extensions(values.iter().copied())
        .map_err(|e| format!("the server's Sec-WebSocket-Extensions is malformed: {e}"))?;
    match named.first() {
        None => Ok(None),
        Some(ext) => Err(format!(
            "the server chose extension {:?}, which was not offered (--compress offers permessage-deflate)",
            ext.name
        )),
    }
}

/// Turns awc's error into one line a person can act on.
fn describe(url: &str, e: WsClientError) -> ConnectError {
    let url = url.to_owned();
    let connect = |cause: String| ConnectError::Connect {
        url: url.clone(),
        cause,
    };
    if let Some(tls) = inner_io(&e).and_then(|io| find_rustls(io)) {
        return connect(tls_cause(tls));
    }
    match e {
        WsClientError::InvalidResponseStatus(status) => ConnectError::Handshake {
            url,
            cause: status.to_string(),
        },
        WsClientError::SendRequest(SendRequestError::Connect(c)) => match c {
            AwcConnectError::Io(io) => connect(io_cause(&io)),
            AwcConnectError::Timeout => connect("timed out".into()),
            AwcConnectError::Resolver(e) => connect(format!("cannot resolve host: {e}")),
            AwcConnectError::NoRecords => connect("host name has no addresses".into()),
            other => connect(other.to_string()),
        },
        WsClientError::SendRequest(SendRequestError::Timeout) => ConnectError::Handshake {
            url,
            cause: "no reply within the connect timeout".into(),
        },
        WsClientError::SendRequest(SendRequestError::Send(io)) => connect(io_cause(&io)),
        WsClientError::SendRequest(other) => connect(other.to_string()),
        other => ConnectError::Handshake {
            url,
            cause: other.to_string(),
        },
    }
}

/// The I/O error inside awc's error, where a TLS failure travels. awc's error
/// types do not implement `source()`, so the variants are opened by hand.
fn inner_io(e: &WsClientError) -> Option<&std::io::Error> {
    use actix_http::error::ParseError;
    match e {
        WsClientError::SendRequest(
            SendRequestError::Connect(AwcConnectError::Io(io))
            | SendRequestError::Send(io)
            | SendRequestError::Response(ParseError::Io(io)),
        ) => Some(io),
        _ => None,
    }
}

/// The rustls error somewhere in `e`'s chain. `io::Error::source()` skips
/// the error it wraps (it returns that error's source), so an I/O error is
/// opened with `get_ref()` instead.
fn find_rustls<'a>(e: &'a (dyn StdError + 'static)) -> Option<&'a rustls::Error> {
    let mut next = Some(e);
    while let Some(e) = next {
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        if let Some(inner) = e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            next = Some(inner as &(dyn StdError + 'static));
            continue;
        }
        next = e.source();
    }
    None
}

/// A TLS failure in words: why the server was not trusted, or why it
/// refused us.
pub(crate) fn tls_cause(e: &rustls::Error) -> String {
    use rustls::Error as E;
    match e {
        E::InvalidCertificate(cert) => certificate_cause(cert),
        E::AlertReceived(AlertDescription::CertificateRequired) => {
            "server requires a client certificate (--cert and --key)".into()
        }
        E::AlertReceived(alert) => match alert_words(*alert) {
            Some(words) => format!("server rejected our client certificate ({words})"),
            None => format!("server refused the TLS handshake ({alert:?})"),
        },
        E::InvalidMessage(rustls::InvalidMessage::InvalidContentType) => {
            "server did not answer in TLS (is it a ws:// server?)".into()
        }
        other => format!("TLS: {other}"),
    }
}

/// The alerts a server sends about the certificate we presented.
fn alert_words(alert: AlertDescription) -> Option<&'static str> {
    use AlertDescription as A;
    Some(match alert {
        A::BadCertificate => "bad certificate",
        A::UnknownCA => "unknown CA",
        A::CertificateExpired => "certificate expired",
        A::CertificateRevoked => "certificate revoked",
        A::CertificateUnknown => "certificate unknown",
        A::UnsupportedCertificate => "unsupported certificate",
        A::AccessDenied => "access denied",
        _ => return None,
    })
}

fn certificate_cause(e: &CertificateError) -> String {
    use CertificateError as C;
    match e {
        C::UnknownIssuer => {
            "certificate not trusted (unknown issuer); --ca FILE trusts its CA".into()
        }
        C::NotValidForName => "certificate is not valid for this host (name mismatch)".into(),
        C::NotValidForNameContext { expected, .. } => format!(
            "certificate is not valid for {} (name mismatch)",
            expected.to_str()
        ),
        C::Expired | C::ExpiredContext { .. } => "certificate expired".into(),
        C::NotValidYet | C::NotValidYetContext { .. } => "certificate is not valid yet".into(),
        C::Revoked => "certificate revoked".into(),
        C::BadSignature => "certificate signature does not verify (bad signature)".into(),
        C::InvalidPurpose | C::InvalidPurposeContext { .. } => {
            "certificate is not for server authentication (invalid purpose)".into()
        }
        C::BadEncoding => "certificate is malformed (bad encoding)".into(),
        other => format!("certificate rejected ({other})"),
    }
}

/// `Connection refused`, not `Connection refused (os error 111)`.
pub(crate) fn io_cause(e: &std::io::Error) -> String {
    let text = e.to_string();
    match text.find(" (os error ") {
        Some(at) => text[..at].to_owned(),
        None => text,
    }
}

/// A close frame in words, the one rendering shared by `wsc`'s messages and
/// `wsc bench`'s error samples: `close code 1011 (internal error), reason
/// "boom"`, or `close frame without a code`. The reason is quoted (escaped)
/// because it is the peer's text.
pub fn close_text(code: Option<u16>, reason: &str) -> String {
    let mut text = match code {
        Some(c) => format!("close code {c} ({})", crate::protocol::close_code_name(c)),
        None => "close frame without a code".to_owned(),
    };
    if !reason.is_empty() {
        text.push_str(&format!(", reason {reason:?}"));
    }
    text
}

/// `--header "Name: value"`.
pub fn parse_header(text: &str) -> Result<(HeaderName, HeaderValue), String> {
    let (name, value) = text
        .split_once(':')
        .ok_or_else(|| format!("expected \"Name: value\", got {text:?}"))?;
    let name = HeaderName::try_from(name.trim())
        .map_err(|_| format!("invalid header name {:?}", name.trim()))?;
    let value = HeaderValue::try_from(value.trim())
        .map_err(|_| format!("invalid value for header {name}"))?;
    Ok((name, value))
}

/// A ws:// or wss:// URL with a host.
pub fn parse_url(text: &str) -> Result<Uri, String> {
    let uri: Uri = text
        .parse()
        .map_err(|e| format!("invalid URL {text:?}: {e}"))?;
    match uri.scheme_str() {
        Some("ws" | "wss") => {}
        Some(other) => {
            return Err(format!(
                "unsupported scheme {other}://; use ws:// or wss://"
            ));
        }
        None => return Err(format!("{text:?} has no scheme; did you mean ws://{text}?")),
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(format!("{text:?} has no host"));
    }
    Ok(uri)
}

/// A subprotocol name: an HTTP token (RFC 7230 section 3.2.6), since it goes
/// into a comma-separated header. awc panics on a value that is not a valid
/// header, so this check must come first.
pub fn parse_subprotocol(text: &str) -> Result<String, String> {
    let tchar = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    if !text.is_empty() && text.bytes().all(tchar) {
        Ok(text.to_owned())
    } else {
        Err(format!(
            "invalid subprotocol {text:?}: expected a token such as chat.v1"
        ))
    }
}

/// `--origin`: any valid header value.
pub fn parse_origin(text: &str) -> Result<HeaderValue, String> {
    HeaderValue::try_from(text).map_err(|_| format!("invalid origin {text:?}"))
}

/// A duration flag: a bare number of seconds (`0.5`, as the flags always
/// took) or humantime's syntax (`250ms`, `1m 30s`); see
/// [`crate::units::parse_duration_or_secs`].
pub fn parse_secs(text: &str) -> Result<Duration, UnitError> {
    crate::units::parse_duration_or_secs(text)
}

/// `--ping-interval`: a duration as [`parse_secs`] reads it, longer than
/// zero (a zero period would ping in a busy loop, and tokio refuses it).
pub fn parse_interval(text: &str) -> Result<Duration, String> {
    match parse_secs(text) {
        Ok(d) if d.is_zero() => Err(format!("{text:?}: the interval must be longer than 0")),
        Ok(d) => Ok(d),
        Err(e) => Err(e.to_string()),
    }
}

/// `--max-message-size`: a size as [`crate::units::parse_size`] reads it
/// (`64MiB`, `512kib`, `1000000`), of at least one byte.
pub fn parse_size(text: &str) -> Result<usize, String> {
    match crate::units::parse_size(text) {
        Ok(0) => Err(format!("{text:?}: the limit must be at least 1 byte")),
        Ok(n) => Ok(n),
        Err(e) => Err(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_parse_as_name_colon_value() {
        let (name, value) = parse_header("X-Token:  abc def ").unwrap();
        assert_eq!(
            (name.as_str(), value.to_str().unwrap()),
            ("x-token", "abc def")
        );
        assert!(parse_header("no colon").is_err());
        assert!(parse_header("bad name: x").is_err());
        assert!(parse_header("X: bad\nvalue").is_err());
    }

    #[test]
    fn urls_need_a_websocket_scheme_and_a_host() {
        assert!(parse_url("ws://127.0.0.1:9/").is_ok());
        assert!(parse_url("wss://example.com/chat").is_ok());
        assert!(parse_url("http://example.com").is_err());
        assert!(parse_url("localhost:12345").is_err());
        assert!(parse_url("not a url").is_err());
    }

    #[test]
    fn subprotocols_are_tokens() {
        assert!(parse_subprotocol("chat.v1").is_ok());
        assert!(parse_subprotocol("a,b").is_err());
        assert!(parse_subprotocol("new\nline").is_err());
        assert!(parse_subprotocol("").is_err());
    }

    #[test]
    fn durations_take_bare_seconds_or_units_and_limits_are_never_zero() {
        assert_eq!(parse_secs("0.5"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_secs("250ms"), Ok(Duration::from_millis(250)));
        assert!(parse_secs("-1").is_err());
        assert_eq!(parse_interval("2"), Ok(Duration::from_secs(2)));
        assert!(parse_interval("0").is_err());
        assert!(parse_interval("0s").is_err());
        assert_eq!(parse_size("64MiB"), Ok(64 << 20));
        assert_eq!(parse_size("16kib"), Ok(16 << 10));
        assert!(parse_size("0").is_err());
        assert!(parse_size("0KiB").is_err());
    }

    #[test]
    fn tls_errors_are_found_inside_io_errors_and_put_in_words() {
        // As tokio-rustls reports them: the rustls error inside an io::Error,
        // whose source() would skip it.
        let io = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer),
        );
        let found = find_rustls(&io).map(tls_cause);
        assert!(found.is_some_and(|c| c.contains("unknown issuer")));
        let alert = rustls::Error::AlertReceived(AlertDescription::CertificateRequired);
        assert!(tls_cause(&alert).contains("requires a client certificate"));
        let plain = std::io::Error::from_raw_os_error(111);
        assert!(find_rustls(&plain).is_none());
    }

    #[test]
    fn close_frames_render_code_name_and_quoted_reason() {
        assert_eq!(
            close_text(Some(1011), "boom"),
            "close code 1011 (internal error), reason \"boom\""
        );
        assert_eq!(close_text(Some(1000), ""), "close code 1000 (normal)");
        assert_eq!(close_text(None, ""), "close frame without a code");
        assert!(close_text(Some(4000), "a\x1b[2J").contains("\\u{1b}"));
    }

    fn answer(values: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for v in values {
            headers.append(
                SEC_WEBSOCKET_EXTENSIONS,
                HeaderValue::from_str(v).expect("value"),
            );
        }
        headers
    }

    #[test]
    fn the_deflate_answer_is_taken_declined_or_refused() {
        // Agreed, with the server's limit on our window.
        let params = agreed_extension(
            true,
            &answer(&["permessage-deflate; client_max_window_bits=12"]),
        )
        .expect("valid")
        .expect("agreed");
        assert_eq!(
            (params.client_max_window_bits, params.server_max_window_bits),
            (12, 15)
        );
        // Declined: no header at all.
        assert_eq!(agreed_extension(true, &answer(&[])), Ok(None));
        // Answers the RFC forbids fail the handshake.
        for bad in [
            "permessage-deflate; client_max_window_bits=8",
            "permessage-deflate; server_max_window_bits=16",
            "permessage-deflate; x=1",
            "permessage-deflate, permessage-deflate",
            "x-webkit-deflate-frame",
        ] {
            let got = agreed_extension(true, &answer(&[bad]));
            assert!(got.is_err(), "{bad}: {got:?}");
        }
        // Without an offer, any extension in the answer fails it.
        assert_eq!(agreed_extension(false, &answer(&[])), Ok(None));
        let got = agreed_extension(false, &answer(&["permessage-deflate"]));
        assert!(got.is_err_and(|e| e.contains("not offered")));
    }

    #[test]
    fn io_causes_lose_the_os_error_number() {
        let e = std::io::Error::from_raw_os_error(111);
        assert!(!io_cause(&e).contains("os error"));
    }
}
