//! Connection tokens: JWTs that name a user (`sub`), expire (`exp`), and may
//! grant channels by pattern (`subscribe`, `publish`). HS256 with
//! `auth.hmac_secret`, or RS256/ES256 with the PEM public key in
//! `auth.public_key`.
//!
//! [`Verifier`] checks tokens on the upgrade; [`Claims`] is what the channel
//! rules see afterwards; [`Signer`] makes tokens for `wsd token` and tests.
//! The token is checked once, at the upgrade: the session closes itself at
//! `exp` (see the session's pub/sub part), so nothing on the per-message path
//! looks at it again.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::channels::ChannelName;
use crate::config::AuthConfig;

/// Why `[auth]` cannot be used. A config error: `wsd` exits 2.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{} holds no RSA or EC (P-256) public key in PEM form", path.display())]
    NotAPublicKey { path: PathBuf },
    #[error("{} holds no RSA or EC (P-256) private key in PEM form", path.display())]
    NotAPrivateKey { path: PathBuf },
    #[error("tokens can only be made with auth.hmac_secret, or with --key PRIVATE.pem")]
    NoSigningKey,
    #[error("unusable HMAC secret: {0}")]
    Secret(String),
}

impl AuthError {
    /// The config key the problem is about, for "file: key: problem".
    pub fn config_key(&self) -> &'static str {
        match self {
            AuthError::Read { .. } | AuthError::NotAPublicKey { .. } => "auth.public_key",
            AuthError::NotAPrivateKey { .. } | AuthError::NoSigningKey | AuthError::Secret(_) => {
                "auth.hmac_secret"
            }
        }
    }
}

/// Why a token is refused (401 on the upgrade).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the token has expired")]
    Expired,
    #[error("the token's signature does not verify")]
    BadSignature,
    #[error("the token is malformed: {0}")]
    Malformed(String),
}

impl TokenError {
    /// A stable, machine-readable word for the error's JSON.
    pub fn code(&self) -> &'static str {
        match self {
            TokenError::Expired => "token_expired",
            TokenError::BadSignature => "bad_signature",
            TokenError::Malformed(_) => "malformed_token",
        }
    }
}

/// A channel pattern from a token: `.`-separated segments, where `*` matches
/// exactly one segment and a final `>` one or more.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern(String);

impl Pattern {
    /// Checks the pattern's shape: no empty segment, `>` only last.
    pub fn parse(s: &str) -> Result<Pattern, String> {
        if s.is_empty() {
            return Err("an empty channel pattern".into());
        }
        let segments: Vec<&str> = s.split('.').collect();
        for (i, seg) in segments.iter().enumerate() {
            if seg.is_empty() {
                return Err(format!("channel pattern {s:?} has an empty segment"));
            }
            if *seg == ">" && i + 1 != segments.len() {
                return Err(format!(
                    "channel pattern {s:?}: `>` may only be the last segment"
                ));
            }
        }
        Ok(Pattern(s.to_owned()))
    }

    /// Whether the pattern matches the whole of `name`.
    pub fn matches(&self, name: &str) -> bool {
        let mut want = self.0.split('.');
        let mut have = name.split('.');
        loop {
            match (want.next(), have.next()) {
                (Some(">"), Some(_)) => return true,
                (Some("*"), Some(_)) => {}
                (Some(w), Some(h)) if w == h => {}
                (None, None) => return true,
                _ => return false,
            }
        }
    }
}

/// A verified token's contents.
#[derive(Debug, Clone)]
pub struct Claims {
    /// The user id.
    pub sub: String,
    /// Expiry, in seconds since the UNIX epoch.
    pub exp: u64,
    subscribe: Vec<Pattern>,
    publish: Vec<Pattern>,
}

impl Claims {
    /// Whether the token's `subscribe` claim grants `channel`.
    pub fn may_subscribe(&self, channel: &ChannelName) -> bool {
        self.subscribe.iter().any(|p| p.matches(channel.as_str()))
    }

    /// Whether the token's `publish` claim grants `channel`.
    pub fn may_publish(&self, channel: &ChannelName) -> bool {
        self.publish.iter().any(|p| p.matches(channel.as_str()))
    }

    /// When the token stops being valid (leeway included), so an open
    /// connection can be closed then.
    pub fn expires_at(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(self.exp)
    }
}

/// The token's JSON, as signed.
#[derive(Debug, Serialize, Deserialize)]
struct Wire {
    sub: String,
    exp: u64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    subscribe: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    publish: Vec<String>,
}

/// Checks tokens with the configured key.
pub struct Verifier {
    key: DecodingKey,
    validation: Validation,
    leeway: u64,
}

impl Verifier {
    /// The verifier `[auth]` describes, or `None` when it sets no key.
    pub fn new(config: &AuthConfig) -> Result<Option<Verifier>, AuthError> {
        let (key, family) = if !config.hmac_secret.is_empty() {
            let key = DecodingKey::from_secret(config.hmac_secret.as_bytes())
                .map_err(|e| AuthError::Secret(e.to_string()))?;
            (key, AlgorithmFamily::Hmac)
        } else if !config.public_key.as_os_str().is_empty() {
            public_key(&config.public_key)?
        } else {
            return Ok(None);
        };
        let mut validation = Validation::new_for_family(family);
        validation.leeway = config.leeway.as_secs();
        validation.set_required_spec_claims(&["exp", "sub"]);
        Ok(Some(Verifier {
            key,
            validation,
            leeway: config.leeway.as_secs(),
        }))
    }

    /// The claims of `token`, if it is well formed, signed with our key, and
    /// not expired.
    pub fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        let data = jsonwebtoken::decode::<Wire>(token, &self.key, &self.validation).map_err(
            |e| match e.kind() {
                ErrorKind::ExpiredSignature => TokenError::Expired,
                ErrorKind::InvalidSignature | ErrorKind::InvalidAlgorithm => {
                    TokenError::BadSignature
                }
                ErrorKind::MissingRequiredClaim(claim) => {
                    TokenError::Malformed(format!("it has no `{claim}` claim"))
                }
                _ => TokenError::Malformed(e.to_string()),
            },
        )?;
        let wire = data.claims;
        let patterns = |list: Vec<String>, claim: &str| {
            list.iter()
                .map(|p| Pattern::parse(p))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| TokenError::Malformed(format!("claim `{claim}`: {e}")))
        };
        Ok(Claims {
            exp: wire.exp.saturating_add(self.leeway),
            subscribe: patterns(wire.subscribe, "subscribe")?,
            publish: patterns(wire.publish, "publish")?,
            sub: wire.sub,
        })
    }
}

/// Reads an RSA or EC public key from a PEM file.
fn public_key(path: &Path) -> Result<(DecodingKey, AlgorithmFamily), AuthError> {
    let pem = std::fs::read(path).map_err(|source| AuthError::Read {
        path: path.to_owned(),
        source,
    })?;
    if let Ok(key) = DecodingKey::from_rsa_pem(&pem) {
        return Ok((key, AlgorithmFamily::Rsa));
    }
    if let Ok(key) = DecodingKey::from_ec_pem(&pem) {
        return Ok((key, AlgorithmFamily::Ec));
    }
    Err(AuthError::NotAPublicKey {
        path: path.to_owned(),
    })
}

/// What a new token says.
#[derive(Debug, Clone, Default)]
pub struct Grant {
    pub sub: String,
    pub ttl: Duration,
    pub subscribe: Vec<String>,
    pub publish: Vec<String>,
}

/// Makes tokens: HS256 with the config's secret, or RS256/ES256 with a
/// private key (the server itself only ever needs the public one).
pub struct Signer {
    key: EncodingKey,
    algorithm: Algorithm,
}

impl Signer {
    /// A signer from a private key PEM file, or else the config's secret.
    pub fn new(config: &AuthConfig, private_key: Option<&Path>) -> Result<Signer, AuthError> {
        if let Some(path) = private_key {
            let pem = std::fs::read(path).map_err(|source| AuthError::Read {
                path: path.to_owned(),
                source,
            })?;
            if let Ok(key) = EncodingKey::from_rsa_pem(&pem) {
                return Ok(Signer {
                    key,
                    algorithm: Algorithm::RS256,
                });
            }
            if let Ok(key) = EncodingKey::from_ec_pem(&pem) {
                return Ok(Signer {
                    key,
                    algorithm: Algorithm::ES256,
                });
            }
            return Err(AuthError::NotAPrivateKey {
                path: path.to_owned(),
            });
        }
        if config.hmac_secret.is_empty() {
            return Err(AuthError::NoSigningKey);
        }
        Signer::hmac(config.hmac_secret.as_bytes())
    }

    /// An HS256 signer with `secret`.
    pub fn hmac(secret: &[u8]) -> Result<Signer, AuthError> {
        let key = EncodingKey::from_secret(secret).map_err(|e| AuthError::Secret(e.to_string()))?;
        Ok(Signer {
            key,
            algorithm: Algorithm::HS256,
        })
    }

    /// A token for `grant`, expiring `grant.ttl` from now.
    pub fn sign(&self, grant: &Grant) -> Result<String, TokenError> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO);
        self.sign_expiring(grant, (now + grant.ttl).as_secs())
    }

    /// A token for `grant` with `exp` given (seconds since the UNIX epoch).
    pub fn sign_expiring(&self, grant: &Grant, exp: u64) -> Result<String, TokenError> {
        for p in grant.subscribe.iter().chain(&grant.publish) {
            Pattern::parse(p).map_err(TokenError::Malformed)?;
        }
        let wire = Wire {
            sub: grant.sub.clone(),
            exp,
            subscribe: grant.subscribe.clone(),
            publish: grant.publish.clone(),
        };
        jsonwebtoken::encode(&Header::new(self.algorithm), &wire, &self.key)
            .map_err(|e| TokenError::Malformed(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    fn config(secret: &str) -> AuthConfig {
        AuthConfig {
            hmac_secret: secret.into(),
            ..AuthConfig::default()
        }
    }

    fn grant(subscribe: &[&str], publish: &[&str]) -> Grant {
        Grant {
            sub: "ann".into(),
            ttl: Duration::from_secs(60),
            subscribe: subscribe.iter().map(|s| s.to_string()).collect(),
            publish: publish.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn name(s: &str) -> ChannelName {
        ChannelName::parse(s).expect("valid name")
    }

    #[test]
    fn patterns_match_whole_names_by_segment() {
        let p = |s: &str| Pattern::parse(s).expect("valid pattern");
        assert!(p("tok:room.*").matches("tok:room.a"));
        assert!(!p("tok:room.*").matches("tok:room.a.b"));
        assert!(!p("tok:room.*").matches("tok:room"));
        assert!(p("tok:room.>").matches("tok:room.a.b"));
        assert!(!p("tok:room.>").matches("tok:room"));
        assert!(p("lobby").matches("lobby"));
        assert!(!p("lobby").matches("lobby2"));
        assert!(!p("lob").matches("lobby"));
        assert!(p(">").matches("anything.at.all"));
        assert!(p("a.*.c").matches("a.b.c"));
        assert!(!p("a.*.c").matches("a.b.d"));
        for bad in ["", "a..b", ".a", "a.", "a.>.b"] {
            assert!(Pattern::parse(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn a_signed_token_verifies_and_grants_its_patterns() {
        let verifier = Verifier::new(&config(SECRET)).unwrap().unwrap();
        let token = Signer::hmac(SECRET.as_bytes())
            .unwrap()
            .sign(&grant(&["tok:room.*"], &["tok:room.lobby"]))
            .unwrap();
        let claims = verifier.verify(&token).unwrap();
        assert_eq!(claims.sub, "ann");
        assert!(claims.may_subscribe(&name("tok:room.a")));
        assert!(!claims.may_subscribe(&name("tok:other")));
        assert!(claims.may_publish(&name("tok:room.lobby")));
        assert!(!claims.may_publish(&name("tok:room.a")));
        let left = claims
            .expires_at()
            .duration_since(SystemTime::now())
            .unwrap();
        assert!(left > Duration::from_secs(50) && left <= Duration::from_secs(60));
    }

    #[test]
    fn expired_badly_signed_and_malformed_tokens_are_told_apart() {
        let verifier = Verifier::new(&config(SECRET)).unwrap().unwrap();
        let signer = Signer::hmac(SECRET.as_bytes()).unwrap();
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let expired = signer.sign_expiring(&grant(&[], &[]), now - 1).unwrap();
        assert_eq!(verifier.verify(&expired).unwrap_err(), TokenError::Expired);

        let other = Signer::hmac(b"another secret, 32 bytes long....")
            .unwrap()
            .sign(&grant(&[], &[]))
            .unwrap();
        assert_eq!(
            verifier.verify(&other).unwrap_err(),
            TokenError::BadSignature
        );

        for junk in ["", "abc", "a.b.c", "eyJhbGciOiJIUzI1NiJ9.e30.x"] {
            let e = verifier.verify(junk).unwrap_err();
            assert_eq!(e.code(), "malformed_token", "{junk:?}: {e}");
        }
    }

    #[test]
    fn leeway_extends_expiry() {
        let mut c = config(SECRET);
        c.leeway = Duration::from_secs(30);
        let verifier = Verifier::new(&c).unwrap().unwrap();
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let token = Signer::hmac(SECRET.as_bytes())
            .unwrap()
            .sign_expiring(&grant(&[], &[]), now - 5)
            .unwrap();
        let claims = verifier.verify(&token).unwrap();
        assert!(claims.expires_at() > SystemTime::now());
    }

    #[test]
    fn es256_with_a_public_key_file() {
        let dir = tempfile::tempdir().unwrap();
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let public = dir.path().join("public.pem");
        let private = dir.path().join("private.pem");
        std::fs::write(&public, pair.public_key_pem()).unwrap();
        std::fs::write(&private, pair.serialize_pem()).unwrap();
        let config = AuthConfig {
            public_key: public.clone(),
            ..AuthConfig::default()
        };
        let verifier = Verifier::new(&config).unwrap().unwrap();
        let signer = Signer::new(&config, Some(&private)).unwrap();
        let token = signer.sign(&grant(&["a"], &[])).unwrap();
        assert!(verifier.verify(&token).unwrap().may_subscribe(&name("a")));
        // An HS256 token made with the public key's bytes as the secret (the
        // classic algorithm-confusion attack) is refused.
        let forged = Signer::hmac(pair.public_key_pem().as_bytes())
            .unwrap()
            .sign(&grant(&["a"], &[]))
            .unwrap();
        assert!(verifier.verify(&forged).is_err());
    }

    #[test]
    fn unusable_key_files_are_config_errors() {
        let dir = tempfile::tempdir().unwrap();
        let missing = AuthConfig {
            public_key: dir.path().join("nope.pem"),
            ..AuthConfig::default()
        };
        let e = Verifier::new(&missing).err().unwrap();
        assert_eq!(e.config_key(), "auth.public_key");
        let junk = dir.path().join("junk.pem");
        std::fs::write(&junk, "not a key").unwrap();
        let e = Verifier::new(&AuthConfig {
            public_key: junk,
            ..AuthConfig::default()
        })
        .err()
        .unwrap();
        assert!(matches!(e, AuthError::NotAPublicKey { .. }), "{e}");
        assert!(Verifier::new(&AuthConfig::default()).unwrap().is_none());
    }
}
