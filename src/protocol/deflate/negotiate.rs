//! `Sec-WebSocket-Extensions` parsing and the permessage-deflate handshake
//! (RFC 7692 sections 5 and 7.1), for the server's answer and the client's
//! offer alike.

use thiserror::Error;

/// The extension's registered name.
pub const PERMESSAGE_DEFLATE: &str = "permessage-deflate";

/// The largest LZ77 window, 32 KiB, and the default when nothing was agreed.
pub const MAX_WINDOW_BITS: u8 = 15;
/// The smallest window the RFC lets a peer ask for.
pub const MIN_OFFER_WINDOW_BITS: u8 = 8;
/// The smallest window zlib compresses with: it cannot produce a 256-byte
/// window stream, so a value of 8 is never one we can promise as a sender.
pub const MIN_ZLIB_WINDOW_BITS: u8 = 9;

/// One element of an extension list: `name; param; param=value`, with a
/// quoted value already unescaped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Extension {
    pub name: String,
    pub params: Vec<(String, Option<String>)>,
}

/// The header does not follow the extension-list grammar of RFC 6455
/// section 9.1. Nothing in such a header can be trusted, so the server
/// answers without any extension.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("malformed Sec-WebSocket-Extensions at byte {at}: {what}")]
pub struct SyntaxError {
    /// Byte offset inside the header value that failed.
    pub at: usize,
    pub what: &'static str,
}

/// Why one permessage-deflate element is not a valid offer or response
/// (RFC 7692 section 5: such an offer is declined, such a response fails the
/// connection).
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ParamError {
    #[error("extension {0:?} is not permessage-deflate")]
    NotDeflate(String),
    #[error("unknown permessage-deflate parameter {0:?}")]
    Unknown(String),
    #[error("permessage-deflate parameter {0:?} given twice")]
    Duplicate(String),
    #[error("permessage-deflate parameter {param:?} has invalid value {value:?}")]
    BadValue {
        param: String,
        value: Option<String>,
    },
}

/// RFC 7230 `tchar`.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn skip_ows(s: &[u8], mut i: usize) -> usize {
    while i < s.len() && (s[i] == b' ' || s[i] == b'\t') {
        i += 1;
    }
    i
}

fn token(s: &[u8], start: usize) -> Result<(String, usize), SyntaxError> {
    let mut i = start;
    while i < s.len() && is_tchar(s[i]) {
        i += 1;
    }
    if i == start {
        return Err(SyntaxError {
            at: start,
            what: "expected a token",
        });
    }
    // tchars are ASCII, so this is valid UTF-8.
    Ok((String::from_utf8_lossy(&s[start..i]).into_owned(), i))
}

/// A quoted-string starting at `start` (which holds `"`), unescaped. RFC 6455
/// section 9.1 requires the unescaped value to be a token.
fn quoted(s: &[u8], start: usize) -> Result<(String, usize), SyntaxError> {
    let mut out = Vec::new();
    let mut i = start + 1;
    loop {
        match s.get(i) {
            None => {
                return Err(SyntaxError {
                    at: i,
                    what: "unterminated quoted-string",
                });
            }
            Some(b'"') => break,
            Some(b'\\') => {
                let Some(&c) = s.get(i + 1) else {
                    return Err(SyntaxError {
                        at: i,
                        what: "unterminated quoted-pair",
                    });
                };
                out.push(c);
                i += 2;
            }
            Some(&c) => {
                out.push(c);
                i += 1;
            }
        }
    }
    if out.is_empty() || !out.iter().all(|&b| is_tchar(b)) {
        return Err(SyntaxError {
            at: start,
            what: "quoted value is not a token",
        });
    }
    Ok((String::from_utf8_lossy(&out).into_owned(), i + 1))
}

/// Parses every `Sec-WebSocket-Extensions` header value, in order, into one
/// list (several headers mean the same as one comma-joined header).
/// Empty list elements (`a, , b`) are skipped as RFC 7230 section 7 allows.
pub fn parse_extensions<'a, I>(values: I) -> Result<Vec<Extension>, SyntaxError>
where
    I: IntoIterator<Item = &'a str>,
{
    let mut out = Vec::new();
    for value in values {
        let s = value.as_bytes();
        let mut i = 0;
        loop {
            i = skip_ows(s, i);
            if i == s.len() {
                break;
            }
            if s[i] == b',' {
                i += 1;
                continue;
            }
            let (name, next) = token(s, i)?;
            i = skip_ows(s, next);
            let mut params = Vec::new();
            while i < s.len() && s[i] == b';' {
                i = skip_ows(s, i + 1);
                let (param, next) = token(s, i)?;
                i = skip_ows(s, next);
                let mut value = None;
                if i < s.len() && s[i] == b'=' {
                    i = skip_ows(s, i + 1);
                    let (v, next) = if s.get(i) == Some(&b'"') {
                        quoted(s, i)?
                    } else {
                        token(s, i)?
                    };
                    value = Some(v);
                    i = skip_ows(s, next);
                }
                params.push((param, value));
            }
            out.push(Extension { name, params });
            if i == s.len() {
                break;
            }
            if s[i] != b',' {
                return Err(SyntaxError {
                    at: i,
                    what: "expected ',' or ';'",
                });
            }
            i += 1;
        }
    }
    Ok(out)
}

/// A window-bits value: a decimal without leading zeroes in 8..=15
/// (RFC 7692 sections 7.1.2.1 and 7.1.2.2).
fn window_bits(param: &str, value: Option<&str>) -> Result<u8, ParamError> {
    let bad = || ParamError::BadValue {
        param: param.to_owned(),
        value: value.map(str::to_owned),
    };
    let v = value.ok_or_else(bad)?;
    if v.starts_with('0') || !v.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    match v.parse::<u8>() {
        Ok(n) if (MIN_OFFER_WINDOW_BITS..=MAX_WINDOW_BITS).contains(&n) => Ok(n),
        _ => Err(bad()),
    }
}

fn no_value(param: &str, value: &Option<String>) -> Result<(), ParamError> {
    match value {
        None => Ok(()),
        Some(v) => Err(ParamError::BadValue {
            param: param.to_owned(),
            value: Some(v.clone()),
        }),
    }
}

/// The four permessage-deflate parameters as they appear in one offer or
/// response element, validated but not yet interpreted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeflateParamSet {
    pub server_no_context_takeover: bool,
    pub client_no_context_takeover: bool,
    /// `Some(n)`: the parameter with value `n`.
    pub server_max_window_bits: Option<u8>,
    /// `None`: absent; `Some(None)`: present without a value (allowed only
    /// in an offer); `Some(Some(n))`: present with value `n`.
    pub client_max_window_bits: Option<Option<u8>>,
}

impl DeflateParamSet {
    /// Validates one element. `in_offer` allows `client_max_window_bits`
    /// without a value, which only an offer may carry.
    pub fn from_extension(ext: &Extension, in_offer: bool) -> Result<Self, ParamError> {
        if !ext.name.eq_ignore_ascii_case(PERMESSAGE_DEFLATE) {
            return Err(ParamError::NotDeflate(ext.name.clone()));
        }
        let mut set = DeflateParamSet::default();
        let mut seen = [false; 4];
        for (name, value) in &ext.params {
            let slot = match name.as_str() {
                "server_no_context_takeover" => 0,
                "client_no_context_takeover" => 1,
                "server_max_window_bits" => 2,
                "client_max_window_bits" => 3,
                _ => return Err(ParamError::Unknown(name.clone())),
            };
            if std::mem::replace(&mut seen[slot], true) {
                return Err(ParamError::Duplicate(name.clone()));
            }
            match slot {
                0 => {
                    no_value(name, value)?;
                    set.server_no_context_takeover = true;
                }
                1 => {
                    no_value(name, value)?;
                    set.client_no_context_takeover = true;
                }
                2 => set.server_max_window_bits = Some(window_bits(name, value.as_deref())?),
                _ => {
                    set.client_max_window_bits = match value {
                        None if in_offer => Some(None),
                        _ => Some(Some(window_bits(name, value.as_deref())?)),
                    }
                }
            }
        }
        Ok(set)
    }
}

/// What both ends agreed for one connection. Window bits are the largest
/// window each sender may use (15 when the handshake did not limit it);
/// a value of 8 means "at most 256 bytes", which a receiver inflates with a
/// 9-bit window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeflateParams {
    pub server_no_context_takeover: bool,
    pub client_no_context_takeover: bool,
    pub server_max_window_bits: u8,
    pub client_max_window_bits: u8,
}

impl DeflateParams {
    /// The response element that states these parameters.
    fn header_value(&self, answer_server_window: bool, answer_client_window: bool) -> String {
        let mut s = String::from(PERMESSAGE_DEFLATE);
        if self.server_no_context_takeover {
            s.push_str("; server_no_context_takeover");
        }
        if self.client_no_context_takeover {
            s.push_str("; client_no_context_takeover");
        }
        if answer_server_window {
            s.push_str(&format!(
                "; server_max_window_bits={}",
                self.server_max_window_bits
            ));
        }
        if answer_client_window {
            s.push_str(&format!(
                "; client_max_window_bits={}",
                self.client_max_window_bits
            ));
        }
        s
    }
}

/// The server's own limits, applied to every offer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerSettings {
    /// Keep the compressor's window between messages. Off by default: a
    /// 32 KiB+ deflate state per idle connection is the cost of keeping it,
    /// so by default we answer `server_no_context_takeover` and reset.
    pub server_context_takeover: bool,
    /// The largest window we compress with, 9..=15.
    pub server_max_window_bits: u8,
    /// The largest window we are willing to inflate with, 9..=15. Below 15
    /// it is answered only to an offer that carries `client_max_window_bits`
    /// (RFC 7692 section 7.1.2.2); otherwise we must accept 15.
    pub client_max_window_bits: u8,
}

impl Default for ServerSettings {
    fn default() -> Self {
        ServerSettings {
            server_context_takeover: false,
            server_max_window_bits: MAX_WINDOW_BITS,
            client_max_window_bits: MAX_WINDOW_BITS,
        }
    }
}

/// An accepted offer: the parameters to build the codec with and the exact
/// `Sec-WebSocket-Extensions` value to send back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Agreement {
    pub params: DeflateParams,
    pub response: String,
}

impl ServerSettings {
    /// Answers one validated offer, or `None` when we cannot honour it.
    pub fn accept(&self, offer: &DeflateParamSet) -> Option<Agreement> {
        let ours = self
            .server_max_window_bits
            .clamp(MIN_ZLIB_WINDOW_BITS, MAX_WINDOW_BITS);
        let server_max_window_bits = match offer.server_max_window_bits {
            // The client can only inflate a 256-byte window, which zlib
            // cannot produce. Answering 9 would break "equal to or smaller"
            // (section 7.1.2.1); so 8 is answered as 8, and we send that
            // connection's messages uncompressed (section 6 lets a sender
            // choose per message), while still inflating what it sends.
            Some(n) => n.min(ours),
            None => ours,
        };
        let limit = self
            .client_max_window_bits
            .clamp(MIN_ZLIB_WINDOW_BITS, MAX_WINDOW_BITS);
        let (client_max_window_bits, answer_client_window) = match offer.client_max_window_bits {
            // Never answered unless offered; then the sender may use 15.
            None => (MAX_WINDOW_BITS, false),
            // The client promised at most `n`; answering a smaller limit
            // saves our inflate window. 8 may be answered as is: we inflate
            // it with 9, which a larger window always can.
            Some(Some(n)) => (n.min(limit), n.min(limit) < MAX_WINDOW_BITS),
            Some(None) => (limit, limit < MAX_WINDOW_BITS),
        };
        let params = DeflateParams {
            server_no_context_takeover: offer.server_no_context_takeover
                || !self.server_context_takeover,
            client_no_context_takeover: offer.client_no_context_takeover,
            server_max_window_bits,
            client_max_window_bits,
        };
        // An offered server_max_window_bits is accepted only by answering it
        // (section 7.1.2.1); unoffered, we may still state a smaller window.
        let answer_server_window =
            offer.server_max_window_bits.is_some() || server_max_window_bits < MAX_WINDOW_BITS;
        let response = params.header_value(answer_server_window, answer_client_window);
        Some(Agreement { params, response })
    }

    /// Picks the first acceptable permessage-deflate offer from the
    /// request's `Sec-WebSocket-Extensions` values (RFC 7692 section 5:
    /// invalid offers are declined one by one). `None` means: answer with no
    /// extension, including when the header is malformed.
    pub fn negotiate<'a, I>(&self, header_values: I) -> Option<Agreement>
    where
        I: IntoIterator<Item = &'a str>,
    {
        parse_extensions(header_values)
            .ok()?
            .iter()
            .filter_map(|ext| DeflateParamSet::from_extension(ext, true).ok())
            .find_map(|offer| self.accept(&offer))
    }
}

/// What the client offers (for `wsc`): one permessage-deflate element.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClientOffer {
    /// Ask the server to reset its compressor after every message.
    pub server_no_context_takeover: bool,
    /// Tell the server we reset ours.
    pub client_no_context_takeover: bool,
    /// Limit the server's window, 9..=15 (8 would make zlib servers decline).
    pub server_max_window_bits: Option<u8>,
    /// Offer `client_max_window_bits` without a value: we accept any limit
    /// the server sets, down to 9.
    pub client_max_window_bits: bool,
}

/// Why a server's response is not one the client may accept (RFC 7692
/// section 5 and 7.1: the client must fail the connection).
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ResponseError {
    #[error(transparent)]
    Syntax(#[from] SyntaxError),
    #[error(transparent)]
    Param(#[from] ParamError),
    #[error("the server answered {0} extensions; we offered one")]
    TooMany(usize),
    #[error("the server answered {0} that we did not offer")]
    NotOffered(&'static str),
    #[error("the server ignored our server_no_context_takeover")]
    MissingServerNoContextTakeover,
    #[error("the server ignored our server_max_window_bits")]
    MissingServerMaxWindowBits,
    #[error("the server answered {param}={got}, above the {limit} we offered")]
    WindowTooLarge {
        param: &'static str,
        got: u8,
        limit: u8,
    },
    #[error("the server limits our window to {0} bits; zlib needs at least 9")]
    ClientWindowUnsupported(u8),
}

impl ClientOffer {
    /// The `Sec-WebSocket-Extensions` request value.
    pub fn header_value(&self) -> String {
        let mut s = String::from(PERMESSAGE_DEFLATE);
        if self.server_no_context_takeover {
            s.push_str("; server_no_context_takeover");
        }
        if self.client_no_context_takeover {
            s.push_str("; client_no_context_takeover");
        }
        if let Some(n) = self.server_max_window_bits {
            s.push_str(&format!("; server_max_window_bits={n}"));
        }
        if self.client_max_window_bits {
            s.push_str("; client_max_window_bits");
        }
        s
    }

    /// Checks the response's `Sec-WebSocket-Extensions` values. `Ok(None)`:
    /// the server declined (no extension answered), so messages are sent
    /// uncompressed.
    pub fn validate_response<'a, I>(
        &self,
        header_values: I,
    ) -> Result<Option<DeflateParams>, ResponseError>
    where
        I: IntoIterator<Item = &'a str>,
    {
        let exts = parse_extensions(header_values)?;
        let ext = match exts.as_slice() {
            [] => return Ok(None),
            [one] => one,
            more => return Err(ResponseError::TooMany(more.len())),
        };
        let got = DeflateParamSet::from_extension(ext, false)?;
        if self.server_no_context_takeover && !got.server_no_context_takeover {
            return Err(ResponseError::MissingServerNoContextTakeover);
        }
        let server_max_window_bits = match (self.server_max_window_bits, got.server_max_window_bits)
        {
            (Some(_), None) => return Err(ResponseError::MissingServerMaxWindowBits),
            (Some(limit), Some(n)) if n > limit => {
                return Err(ResponseError::WindowTooLarge {
                    param: "server_max_window_bits",
                    got: n,
                    limit,
                });
            }
            (_, Some(n)) => n,
            (None, None) => MAX_WINDOW_BITS,
        };
        let client_max_window_bits = match got.client_max_window_bits {
            Some(_) if !self.client_max_window_bits => {
                return Err(ResponseError::NotOffered("client_max_window_bits"));
            }
            Some(Some(n)) if n < MIN_ZLIB_WINDOW_BITS => {
                return Err(ResponseError::ClientWindowUnsupported(n));
            }
            Some(Some(n)) => n,
            _ => MAX_WINDOW_BITS,
        };
        Ok(Some(DeflateParams {
            server_no_context_takeover: got.server_no_context_takeover,
            client_no_context_takeover: got.client_no_context_takeover,
            server_max_window_bits,
            client_max_window_bits,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(values: &[&str]) -> Option<Agreement> {
        ServerSettings::default().negotiate(values.iter().copied())
    }

    fn response(values: &[&str]) -> Option<String> {
        server(values).map(|a| a.response)
    }

    fn with(settings: ServerSettings, values: &[&str]) -> Option<String> {
        settings
            .negotiate(values.iter().copied())
            .map(|a| a.response)
    }

    #[test]
    fn parses_several_headers_offers_and_quoted_values() {
        let exts = parse_extensions([
            "foo, permessage-deflate; client_max_window_bits",
            " permessage-deflate ; server_max_window_bits=\"1\\0\" ;server_no_context_takeover,,",
        ])
        .unwrap();
        let names: Vec<_> = exts.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["foo", "permessage-deflate", "permessage-deflate"]);
        assert_eq!(
            exts[1].params,
            [("client_max_window_bits".to_owned(), None)]
        );
        assert_eq!(
            exts[2].params,
            [
                ("server_max_window_bits".to_owned(), Some("10".to_owned())),
                ("server_no_context_takeover".to_owned(), None),
            ]
        );
    }

    #[test]
    fn malformed_header_is_a_syntax_error_and_declines_everything() {
        for bad in [
            "permessage-deflate; server_max_window_bits=\"10",
            "permessage-deflate; server_max_window_bits=\"1 0\"",
            "permessage-deflate; server_max_window_bits=\"\"",
            "permessage-deflate; =10",
            "permessage-deflate;",
            "permessage-deflate x",
            "permessage-deflate; a=",
            "\"permessage-deflate\"",
        ] {
            assert!(parse_extensions([bad]).is_err(), "{bad}");
            assert_eq!(response(&[bad]), None, "{bad}");
        }
        // One malformed header spoils the list, even after a good offer.
        assert_eq!(response(&["permessage-deflate", "x;;"]), None);
    }

    #[test]
    fn plain_offer_gets_server_no_context_takeover_by_default() {
        let a = server(&["permessage-deflate"]).unwrap();
        assert_eq!(a.response, "permessage-deflate; server_no_context_takeover");
        assert_eq!(
            a.params,
            DeflateParams {
                server_no_context_takeover: true,
                client_no_context_takeover: false,
                server_max_window_bits: 15,
                client_max_window_bits: 15,
            }
        );
    }

    #[test]
    fn server_context_takeover_setting_keeps_the_window_unless_the_client_asks() {
        let keep = ServerSettings {
            server_context_takeover: true,
            ..ServerSettings::default()
        };
        assert_eq!(
            with(keep, &["permessage-deflate"]).unwrap(),
            "permessage-deflate"
        );
        assert_eq!(
            with(keep, &["permessage-deflate; server_no_context_takeover"]).unwrap(),
            "permessage-deflate; server_no_context_takeover"
        );
    }

    #[test]
    fn client_no_context_takeover_is_honoured_and_never_invented() {
        let a = server(&["permessage-deflate; client_no_context_takeover"]).unwrap();
        assert!(a.params.client_no_context_takeover);
        assert_eq!(
            a.response,
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
        );
        assert!(
            !response(&["permessage-deflate"])
                .unwrap()
                .contains("client_no")
        );
    }

    #[test]
    fn declines_duplicate_unknown_and_valued_flag_params() {
        for offer in [
            "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
            "permessage-deflate; client_max_window_bits; client_max_window_bits=10",
            "permessage-deflate; server_max_window_bits=10; server_max_window_bits=10",
            "permessage-deflate; mystery",
            "permessage-deflate; Server_No_Context_Takeover",
            "permessage-deflate; server_no_context_takeover=1",
            "permessage-deflate; client_no_context_takeover=\"x\"",
        ] {
            assert_eq!(response(&[offer]), None, "{offer}");
        }
    }

    #[test]
    fn param_errors_say_what_was_wrong() {
        let ext = |s: &str| parse_extensions([s]).unwrap().remove(0);
        let check = |s: &str| DeflateParamSet::from_extension(&ext(s), true);
        assert_eq!(
            check("permessage-deflate; a; a"),
            Err(ParamError::Unknown("a".into()))
        );
        assert_eq!(
            check("permessage-deflate; client_no_context_takeover; client_no_context_takeover"),
            Err(ParamError::Duplicate("client_no_context_takeover".into()))
        );
        assert_eq!(
            check("x-webkit-deflate-frame"),
            Err(ParamError::NotDeflate("x-webkit-deflate-frame".into()))
        );
        assert_eq!(
            check("permessage-deflate; server_max_window_bits=16"),
            Err(ParamError::BadValue {
                param: "server_max_window_bits".into(),
                value: Some("16".into())
            })
        );
    }

    #[test]
    fn declines_bad_window_bits_values_in_either_param() {
        for v in [
            "7", "16", "abc", "010", "09", "-9", "255", "1000", "\"7\"", "\"abc\"",
        ] {
            for p in ["server_max_window_bits", "client_max_window_bits"] {
                let offer = format!("permessage-deflate; {p}={v}");
                assert_eq!(response(&[&offer]), None, "{offer}");
            }
        }
        // server_max_window_bits needs a value; client_max_window_bits may lack one.
        assert_eq!(
            response(&["permessage-deflate; server_max_window_bits"]),
            None
        );
    }

    #[test]
    fn quoted_window_bits_are_accepted() {
        let a = server(&["permessage-deflate; server_max_window_bits=\"10\""]).unwrap();
        assert_eq!(a.params.server_max_window_bits, 10);
        assert_eq!(
            a.response,
            "permessage-deflate; server_no_context_takeover; server_max_window_bits=10"
        );
    }

    #[test]
    fn first_acceptable_offer_wins() {
        let a = server(&[
            "x-unknown; foo, permessage-deflate; bogus, permessage-deflate; server_max_window_bits=7",
            "permessage-deflate; client_max_window_bits=11, permessage-deflate",
        ])
        .unwrap();
        assert_eq!(a.params.client_max_window_bits, 11);
        assert_eq!(
            a.response,
            "permessage-deflate; server_no_context_takeover; client_max_window_bits=11"
        );
        assert_eq!(response(&["x-unknown, foo"]), None);
        assert_eq!(response(&[]), None);
    }

    #[test]
    fn server_max_window_bits_request_is_answered_with_at_most_that() {
        let narrow = ServerSettings {
            server_max_window_bits: 12,
            ..ServerSettings::default()
        };
        // The client's limit is below ours: we use it.
        let a = narrow
            .negotiate(["permessage-deflate; server_max_window_bits=10"])
            .unwrap();
        assert_eq!(a.params.server_max_window_bits, 10);
        assert!(a.response.ends_with("; server_max_window_bits=10"));
        // Ours is below the client's: ours, which is still <= its value.
        let a = narrow
            .negotiate(["permessage-deflate; server_max_window_bits=14"])
            .unwrap();
        assert_eq!(a.params.server_max_window_bits, 12);
        assert!(a.response.ends_with("; server_max_window_bits=12"));
        // Offered at 15: accepting means answering the parameter.
        assert_eq!(
            response(&["permessage-deflate; server_max_window_bits=15"]).unwrap(),
            "permessage-deflate; server_no_context_takeover; server_max_window_bits=15"
        );
        // Not offered: we may still state our smaller window...
        assert_eq!(
            with(narrow, &["permessage-deflate"]).unwrap(),
            "permessage-deflate; server_no_context_takeover; server_max_window_bits=12"
        );
        // ...but do not mention the default.
        assert!(
            !response(&["permessage-deflate"])
                .unwrap()
                .contains("window")
        );
    }

    #[test]
    fn server_max_window_bits_8_is_answered_as_8_never_as_9() {
        // Answering 9 would exceed what the client allowed; the session
        // then sends uncompressed (see `frames::Compressor::new`).
        let a =
            server(&["permessage-deflate; server_max_window_bits=8, permessage-deflate"]).unwrap();
        assert_eq!(a.params.server_max_window_bits, 8);
        assert_eq!(
            a.response,
            "permessage-deflate; server_no_context_takeover; server_max_window_bits=8"
        );
    }

    #[test]
    fn client_max_window_bits_is_never_answered_unless_offered() {
        let small = ServerSettings {
            client_max_window_bits: 10,
            ..ServerSettings::default()
        };
        let a = small.negotiate(["permessage-deflate"]).unwrap();
        assert!(!a.response.contains("client_max_window_bits"));
        assert_eq!(a.params.client_max_window_bits, 15);
    }

    #[test]
    fn client_max_window_bits_without_value() {
        // Nothing to limit at our default: answering nothing is allowed.
        let a = server(&["permessage-deflate; client_max_window_bits"]).unwrap();
        assert_eq!(a.response, "permessage-deflate; server_no_context_takeover");
        assert_eq!(a.params.client_max_window_bits, 15);
        // With a smaller setting we answer it.
        let small = ServerSettings {
            client_max_window_bits: 10,
            ..ServerSettings::default()
        };
        let a = small
            .negotiate(["permessage-deflate; client_max_window_bits"])
            .unwrap();
        assert_eq!(a.params.client_max_window_bits, 10);
        assert!(a.response.ends_with("; client_max_window_bits=10"));
    }

    #[test]
    fn client_max_window_bits_value_is_never_raised() {
        let small = ServerSettings {
            client_max_window_bits: 10,
            ..ServerSettings::default()
        };
        for (offered, answered) in [(15, 10), (12, 10), (10, 10), (9, 9), (8, 8)] {
            let offer = format!("permessage-deflate; client_max_window_bits={offered}");
            let a = small.negotiate([offer.as_str()]).unwrap();
            assert_eq!(a.params.client_max_window_bits, answered, "{offer}");
            assert!(
                a.response
                    .ends_with(&format!("; client_max_window_bits={answered}")),
                "{offer}"
            );
        }
        // 8 is kept as 8 (answering 9 would exceed the client's promise);
        // the inflater reads it with a 9-bit window.
        let a = server(&["permessage-deflate; client_max_window_bits=8"]).unwrap();
        assert_eq!(a.params.client_max_window_bits, 8);
        assert!(a.response.ends_with("; client_max_window_bits=8"));
    }

    #[test]
    fn server_window_setting_of_8_is_raised_to_9() {
        let eight = ServerSettings {
            server_max_window_bits: 8,
            ..ServerSettings::default()
        };
        let a = eight.negotiate(["permessage-deflate"]).unwrap();
        assert_eq!(a.params.server_max_window_bits, 9);
        assert!(a.response.ends_with("; server_max_window_bits=9"));
    }

    #[test]
    fn client_offer_header_value() {
        assert_eq!(ClientOffer::default().header_value(), "permessage-deflate");
        let full = ClientOffer {
            server_no_context_takeover: true,
            client_no_context_takeover: true,
            server_max_window_bits: Some(10),
            client_max_window_bits: true,
        };
        let value = full.header_value();
        assert_eq!(
            value,
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover; \
             server_max_window_bits=10; client_max_window_bits"
        );
        // What we offer, our own server accepts.
        let a = ServerSettings::default()
            .negotiate([value.as_str()])
            .unwrap();
        let params = full
            .validate_response([a.response.as_str()])
            .unwrap()
            .unwrap();
        assert_eq!(params, a.params);
    }

    #[test]
    fn client_accepts_valid_responses() {
        let offer = ClientOffer {
            client_max_window_bits: true,
            ..ClientOffer::default()
        };
        assert_eq!(offer.validate_response([]), Ok(None));
        assert_eq!(offer.validate_response([""]), Ok(None));
        let p = offer
            .validate_response([
                "permessage-deflate; server_no_context_takeover; client_no_context_takeover; \
                 server_max_window_bits=\"9\"; client_max_window_bits=11",
            ])
            .unwrap()
            .unwrap();
        assert_eq!(
            p,
            DeflateParams {
                server_no_context_takeover: true,
                client_no_context_takeover: true,
                server_max_window_bits: 9,
                client_max_window_bits: 11,
            }
        );
        // A server may limit its own window to 8 unasked; we inflate with 9.
        let p = offer
            .validate_response(["permessage-deflate; server_max_window_bits=8"])
            .unwrap()
            .unwrap();
        assert_eq!(p.server_max_window_bits, 8);
    }

    #[test]
    fn client_rejects_responses_that_break_the_offer() {
        let plain = ClientOffer::default();
        let cases: &[(ClientOffer, &str, ResponseError)] = &[
            (
                plain,
                "permessage-deflate; client_max_window_bits=10",
                ResponseError::NotOffered("client_max_window_bits"),
            ),
            (
                plain,
                "permessage-deflate, permessage-deflate",
                ResponseError::TooMany(2),
            ),
            (
                plain,
                "x-other",
                ResponseError::Param(ParamError::NotDeflate("x-other".into())),
            ),
            (
                plain,
                "permessage-deflate; foo",
                ResponseError::Param(ParamError::Unknown("foo".into())),
            ),
            (
                ClientOffer {
                    client_max_window_bits: true,
                    ..plain
                },
                // A response must give client_max_window_bits a value.
                "permessage-deflate; client_max_window_bits",
                ResponseError::Param(ParamError::BadValue {
                    param: "client_max_window_bits".into(),
                    value: None,
                }),
            ),
            (
                ClientOffer {
                    client_max_window_bits: true,
                    ..plain
                },
                "permessage-deflate; client_max_window_bits=8",
                ResponseError::ClientWindowUnsupported(8),
            ),
            (
                ClientOffer {
                    server_no_context_takeover: true,
                    ..plain
                },
                "permessage-deflate",
                ResponseError::MissingServerNoContextTakeover,
            ),
            (
                ClientOffer {
                    server_max_window_bits: Some(10),
                    ..plain
                },
                "permessage-deflate",
                ResponseError::MissingServerMaxWindowBits,
            ),
            (
                ClientOffer {
                    server_max_window_bits: Some(10),
                    ..plain
                },
                "permessage-deflate; server_max_window_bits=11",
                ResponseError::WindowTooLarge {
                    param: "server_max_window_bits",
                    got: 11,
                    limit: 10,
                },
            ),
        ];
        for (offer, resp, want) in cases {
            assert_eq!(
                offer.validate_response([*resp]).as_ref(),
                Err(want),
                "{resp}"
            );
        }
        assert!(matches!(
            plain.validate_response(["permessage-deflate;"]),
            Err(ResponseError::Syntax(_))
        ));
    }
}
