//! The Pusher signatures: channel authorizations (`private-`, `presence-`)
//! and the HTTP API's request signing, both HMAC-SHA256 with the app's
//! secret in lower-case hex; and the MD5 of request bodies.

use hmac::{Hmac, KeyInit, Mac};
use md5::{Digest, Md5};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Lower-case hex of `bytes`.
fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[(b >> 4) as usize] as char);
        out.push(DIGITS[(b & 15) as usize] as char);
    }
    out
}

/// HMAC-SHA256 of `message` with `secret`, in hex.
pub fn sign(secret: &str, message: &[u8]) -> String {
    // HMAC takes a key of any length.
    let mut mac = HmacSha256::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
    mac.update(message);
    hex(&mac.finalize().into_bytes())
}

/// Whether `presented` (hex) is the signature of `message`, compared in
/// constant time so the time taken does not tell how much of a guess was
/// right.
pub fn verify(secret: &str, message: &[u8], presented: &str) -> bool {
    let mut mac = HmacSha256::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
    mac.update(message);
    let expected = hex(&mac.finalize().into_bytes());
    expected.len() == presented.len()
        && expected
            .bytes()
            .zip(presented.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b.to_ascii_lowercase()))
            == 0
}

/// The MD5 of a request body, in hex (`body_md5`).
pub fn body_md5(body: &[u8]) -> String {
    hex(&Md5::digest(body))
}

/// What a channel authorization signs: `socket_id:channel`, and for a
/// presence channel `:channel_data` after it.
pub fn channel_message(socket_id: &str, channel: &str, channel_data: Option<&str>) -> String {
    match channel_data {
        Some(data) => format!("{socket_id}:{channel}:{data}"),
        None => format!("{socket_id}:{channel}"),
    }
}

/// What `pusher:signin` signs: `socket_id::user::user_data`.
pub fn signin_message(socket_id: &str, user_data: &str) -> String {
    format!("{socket_id}::user::{user_data}")
}

/// Whether `auth` (`KEY:SIGNATURE`) authorizes `message` for the app with
/// `key` and `secret`.
pub fn check_auth(key: &str, secret: &str, message: &str, auth: &str) -> bool {
    match auth.split_once(':') {
        Some((k, signature)) => k == key && verify(secret, message.as_bytes(), signature),
        None => false,
    }
}

/// The string an HTTP API request signs: the method, the path and the
/// query (without `auth_signature`, keys in lower case, sorted, values
/// decoded), one per line.
pub fn request_message(method: &str, path: &str, params: &[(String, String)]) -> String {
    let mut pairs: Vec<(String, &str)> = params
        .iter()
        .filter(|(k, _)| k != "auth_signature")
        .map(|(k, v)| (k.to_ascii_lowercase(), v.as_str()))
        .collect();
    pairs.sort();
    let query: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!(
        "{}\n{path}\n{}",
        method.to_ascii_uppercase(),
        query.join("&")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    // The credentials of the worked examples in Pusher's HTTP API and
    // channel authorization references.
    const KEY: &str = "278d425bdf160c739803";
    const SECRET: &str = "7ad3773142a6692b25b8";

    #[test]
    fn the_http_api_reference_example_signs_as_documented() {
        let body = br#"{"name":"foo","channels":["project-3"],"data":"{\"some\":\"data\"}"}"#;
        let md5 = body_md5(body);
        assert_eq!(md5, "ec365a775a4cd0599faeb73354201b6f");
        let params = vec![
            ("auth_version".to_owned(), "1.0".to_owned()),
            ("auth_key".to_owned(), KEY.to_owned()),
            ("body_md5".to_owned(), md5),
            ("auth_timestamp".to_owned(), "1353088179".to_owned()),
            ("auth_signature".to_owned(), "ignored".to_owned()),
        ];
        let message = request_message("post", "/apps/3/events", &params);
        assert_eq!(
            message,
            "POST\n/apps/3/events\nauth_key=278d425bdf160c739803&auth_timestamp=1353088179\
             &auth_version=1.0&body_md5=ec365a775a4cd0599faeb73354201b6f"
        );
        let expected = "da454824c97ba181a32ccc17a72625ba02771f50b50e1e7430e47a1f3f457e6c";
        assert_eq!(sign(SECRET, message.as_bytes()), expected);
        assert!(verify(SECRET, message.as_bytes(), expected));
        assert!(verify(
            SECRET,
            message.as_bytes(),
            &expected.to_ascii_uppercase()
        ));
        assert!(!verify(SECRET, message.as_bytes(), &expected[1..]));
        assert!(!verify("other-secret", message.as_bytes(), expected));
    }

    #[test]
    fn the_channel_authorization_example_signs_as_documented() {
        let message = channel_message("1234.1234", "private-foobar", None);
        let auth =
            format!("{KEY}:58df8b0c36d6982b82c3ecf6b4662e34fe8c25bba48f5369f135bf843651c3a4");
        assert!(check_auth(KEY, SECRET, &message, &auth));
        assert!(!check_auth("other-key", SECRET, &message, &auth));
        let other = channel_message("1234.1235", "private-foobar", None);
        assert!(!check_auth(KEY, SECRET, &other, &auth));
        assert!(!check_auth(KEY, SECRET, &message, "no-colon"));
        // Presence signs the channel data after the channel (the vector
        // computed with `openssl dgst -sha256 -hmac`).
        let data = r#"{"user_id":10,"user_info":{"name":"Mr. Channels"}}"#;
        let message = channel_message("1234.1234", "presence-foobar", Some(data));
        assert_eq!(
            sign(SECRET, message.as_bytes()),
            "31935e7d86dba64c2a90aed31fdc61869f9b22ba9d8863bba239c03ca481bc80"
        );
        assert_eq!(
            signin_message("1.2", r#"{"id":"u"}"#),
            r#"1.2::user::{"id":"u"}"#
        );
    }
}
