//! TLS (wss://) with rustls: loading PEM files into server and client
//! configs with errors that name the file and the problem, and a small local
//! certificate authority so people can try wss:// without openssl recipes.
//!
//! The crypto provider is rustls' `ring` backend, chosen explicitly so no
//! process-wide default has to be installed and nothing needs cmake to build.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};
use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};

use crate::config::TlsConfig;

/// A TLS file that cannot be used, named, with what is wrong with it.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: cannot read: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: no certificate found (expected a PEM file with a CERTIFICATE block)")]
    NoCertificate { path: PathBuf },
    #[error(
        "{path}: no private key found (expected a PEM PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY block)"
    )]
    NoKey { path: PathBuf },
    #[error("{path}: not valid PEM: {message}")]
    Pem { path: PathBuf, message: String },
    #[error("{key}: private key does not match the certificate in {cert}")]
    Mismatch { cert: PathBuf, key: PathBuf },
    #[error("{path}: {message}")]
    Rejected { path: PathBuf, message: String },
    #[error("cannot generate certificate: {0}")]
    Generate(#[from] rcgen::Error),
}

impl TlsError {
    /// The `[tls]` key naming the file this error is about, for messages
    /// that point at the config.
    pub fn config_key(&self, tls: &TlsConfig) -> &'static str {
        let path = match self {
            TlsError::Read { path, .. }
            | TlsError::NoCertificate { path }
            | TlsError::NoKey { path }
            | TlsError::Pem { path, .. }
            | TlsError::Rejected { path, .. } => path,
            TlsError::Mismatch { .. } => return "tls.key",
            TlsError::Generate(_) => return "tls",
        };
        if tls.client_ca.as_deref() == Some(path.as_path()) {
            "tls.client_ca"
        } else if *path == tls.key {
            "tls.key"
        } else {
            "tls.cert"
        }
    }
}

/// The crypto backend for every TLS config we build.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn pem_error(path: &Path, e: pem::Error) -> TlsError {
    match e {
        pem::Error::Io(source) => TlsError::Read {
            path: path.to_owned(),
            source,
        },
        other => TlsError::Pem {
            path: path.to_owned(),
            message: other.to_string(),
        },
    }
}

/// Every certificate in a PEM file; an error if there is none.
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| pem_error(path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(path, e))?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            path: path.to_owned(),
        });
    }
    Ok(certs)
}

/// The first private key in a PEM file.
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| match e {
        pem::Error::NoItemsFound => TlsError::NoKey {
            path: path.to_owned(),
        },
        other => pem_error(path, other),
    })
}

/// A root store holding every certificate in a PEM file.
pub fn load_roots(path: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    add_roots(&mut roots, path)?;
    Ok(roots)
}

/// Adds every certificate in a PEM file to `roots` as a trust anchor.
fn add_roots(roots: &mut RootCertStore, path: &Path) -> Result<(), TlsError> {
    for cert in load_certs(path)? {
        roots.add(cert).map_err(|e| TlsError::Rejected {
            path: path.to_owned(),
            message: format!("not a usable CA certificate: {e}"),
        })?;
    }
    Ok(())
}

/// rustls' answer to a certificate and key that do not go together.
fn identity_error(e: rustls::Error, cert: &Path, key: &Path) -> TlsError {
    match e {
        rustls::Error::InconsistentKeys(_) => TlsError::Mismatch {
            cert: cert.to_owned(),
            key: key.to_owned(),
        },
        other => TlsError::Rejected {
            path: key.to_owned(),
            message: other.to_string(),
        },
    }
}

/// The server's rustls config from the `[tls]` section.
pub fn server_config(tls: &TlsConfig) -> Result<ServerConfig, TlsError> {
    let certs = load_certs(&tls.cert)?;
    let key = load_key(&tls.key)?;
    let builder = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Rejected {
            path: tls.cert.clone(),
            message: e.to_string(),
        })?;
    let builder = match &tls.client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let verifier =
                WebPkiClientVerifier::builder_with_provider(Arc::new(load_roots(ca)?), provider())
                    .build()
                    .map_err(|e| TlsError::Rejected {
                        path: ca.clone(),
                        message: e.to_string(),
                    })?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder
        .with_single_cert(certs, key)
        .map_err(|e| identity_error(e, &tls.cert, &tls.key))?;
    // WebSocket upgrades are HTTP/1.1 requests.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// How a client should decide whether to trust a server.
#[derive(Debug, Clone, Default)]
pub struct ClientTls {
    /// Extra trust anchors (PEM), added to the webpki roots.
    pub ca: Option<PathBuf>,
    /// Skip verification entirely (`wsc -n`).
    pub no_check: bool,
    /// A client certificate and key to present (mutual TLS).
    pub identity: Option<(PathBuf, PathBuf)>,
}

/// The client's rustls config.
pub fn client_config(opts: &ClientTls) -> Result<ClientConfig, TlsError> {
    let mut roots = RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(ca) = &opts.ca {
        add_roots(&mut roots, ca)?;
    }
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Rejected {
            path: PathBuf::from("(client)"),
            message: e.to_string(),
        })?;
    let builder = if opts.no_check {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerification(provider())))
    } else {
        builder.with_root_certificates(roots)
    };
    let mut config = match &opts.identity {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => builder
            .with_client_auth_cert(load_certs(cert)?, load_key(key)?)
            .map_err(|e| identity_error(e, cert, key))?,
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// Accepts any server certificate (still checking handshake signatures, so
/// the connection is encrypted, just not authenticated). Only for `-n`.
#[derive(Debug)]
struct NoVerification(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A certificate and its private key, both PEM.
#[derive(Debug, Clone)]
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
}

/// A throwaway certificate authority, as `mkcert` makes: trust its
/// certificate once (`wsc --ca`, a browser's authority list) and every
/// certificate it issues verifies, names and all.
pub struct LocalCa {
    cert_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl LocalCa {
    pub fn new(name: &str) -> Result<LocalCa, TlsError> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate()?;
        let cert = params.self_signed(&key)?;
        Ok(LocalCa {
            cert_pem: cert.pem(),
            issuer: Issuer::new(params, key),
        })
    }

    /// The CA certificate, for trust stores.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// A server certificate for `hosts` (DNS names or IP addresses) valid from
    /// `not_before` to `not_after`.
    pub fn issue_server(
        &self,
        hosts: &[String],
        validity: Option<(time::OffsetDateTime, time::OffsetDateTime)>,
    ) -> Result<Issued, TlsError> {
        let mut params = CertificateParams::new(hosts.to_vec())?;
        if let Some(first) = hosts.first() {
            params.distinguished_name.push(DnType::CommonName, first);
        }
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.issue(params, validity)
    }

    /// A client certificate (for mutual TLS) with common name `name`.
    pub fn issue_client(&self, name: &str) -> Result<Issued, TlsError> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name.push(DnType::CommonName, name);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.issue(params, None)
    }

    fn issue(
        &self,
        mut params: CertificateParams,
        validity: Option<(time::OffsetDateTime, time::OffsetDateTime)>,
    ) -> Result<Issued, TlsError> {
        let now = time::OffsetDateTime::now_utc();
        let (not_before, not_after) = validity.unwrap_or((
            now - time::Duration::days(1),
            now + time::Duration::days(825),
        ));
        params.not_before = not_before;
        params.not_after = not_after;
        params.use_authority_key_identifier_extension = true;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

/// What `wsd gen-cert` writes: a local CA and a server certificate it signed.
/// Displays as the instructions for using them.
pub struct Generated {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub hosts: Vec<String>,
}

impl std::fmt::Display for Generated {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (ca, cert, key) = (self.ca.display(), self.cert.display(), self.key.display());
        writeln!(
            f,
            "wrote {ca}, {cert} and {key} (for {})",
            self.hosts.join(", ")
        )?;
        writeln!(f, "\nServe wss:// by adding to config/wsd.toml:\n")?;
        writeln!(f, "[tls]\ncert = \"{cert}\"\nkey = \"{key}\"\n")?;
        write!(f, "then connect with: wsc --ca {ca} wss://localhost:12345")
    }
}

/// Writes `ca.pem`, `cert.pem` and `key.pem` into `dir` for `hosts`.
pub fn generate_files(dir: &Path, hosts: &[String]) -> Result<Generated, TlsError> {
    let ca = LocalCa::new("wsd local development CA")?;
    let server = ca.issue_server(hosts, None)?;
    std::fs::create_dir_all(dir).map_err(|source| TlsError::Read {
        path: dir.to_owned(),
        source,
    })?;
    let files = Generated {
        ca: dir.join("ca.pem"),
        cert: dir.join("cert.pem"),
        key: dir.join("key.pem"),
        hosts: hosts.to_vec(),
    };
    for (path, text) in [
        (&files.ca, ca.cert_pem()),
        (&files.cert, server.cert_pem.as_str()),
        (&files.key, server.key_pem.as_str()),
    ] {
        write_private(path, text).map_err(|source| TlsError::Read {
            path: path.clone(),
            source,
        })?;
    }
    Ok(files)
}

/// Writes a file readable only by its owner (it may hold a private key).
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(text.as_bytes())
}
