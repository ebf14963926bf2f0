//! Certificates made at test time: a CA, a server certificate it signed, and
//! the PEM files, in a temporary directory that lives as long as the `Pki`.

use std::path::{Path, PathBuf};

use wsd::config::TlsConfig;
use wsd::tls::LocalCa;

use super::{TestWsd, test_config};

pub struct Pki {
    pub dir: tempfile::TempDir,
    pub ca: LocalCa,
}

/// The names the default server certificate is for.
pub fn localhost() -> Vec<String> {
    vec!["localhost".into(), "127.0.0.1".into()]
}

impl Pki {
    pub fn new() -> Pki {
        Pki::named("test CA")
    }

    /// CAs with different names: two CAs with the same name make rustls
    /// report BadSignature (it finds the wrong issuer by name) instead of
    /// UnknownIssuer.
    pub fn named(ca_name: &str) -> Pki {
        Pki::with_server(ca_name, &localhost(), None)
    }

    pub fn with_server(
        ca_name: &str,
        hosts: &[String],
        validity: Option<(time::OffsetDateTime, time::OffsetDateTime)>,
    ) -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let ca = LocalCa::new(ca_name).unwrap();
        let server = ca.issue_server(hosts, validity).unwrap();
        std::fs::write(dir.path().join("ca.pem"), ca.cert_pem()).unwrap();
        std::fs::write(dir.path().join("cert.pem"), &server.cert_pem).unwrap();
        std::fs::write(dir.path().join("key.pem"), &server.key_pem).unwrap();
        Pki { dir, ca }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The CA file as a command-line argument.
    pub fn ca_arg(&self) -> String {
        self.path("ca.pem").display().to_string()
    }

    pub fn tls(&self) -> TlsConfig {
        TlsConfig {
            cert: self.path("cert.pem"),
            key: self.path("key.pem"),
            client_ca: None,
        }
    }

    /// Writes a client certificate signed by this CA; returns (cert, key).
    pub fn client_identity(&self) -> (PathBuf, PathBuf) {
        let issued = self.ca.issue_client("test client").unwrap();
        std::fs::write(self.path("client.pem"), &issued.cert_pem).unwrap();
        std::fs::write(self.path("client-key.pem"), &issued.key_pem).unwrap();
        (self.path("client.pem"), self.path("client-key.pem"))
    }

    /// [`Pki::client_identity`] as command-line arguments.
    pub fn client_identity_args(&self) -> (String, String) {
        let (cert, key) = self.client_identity();
        (cert.display().to_string(), key.display().to_string())
    }

    /// Our server over TLS with this certificate; `client_ca` turns on
    /// mutual TLS.
    pub fn serve(&self, client_ca: Option<&Path>) -> TestWsd {
        let mut config = test_config();
        let mut tls = self.tls();
        tls.client_ca = client_ca.map(Path::to_owned);
        config.tls = Some(tls);
        TestWsd::start_tls(config)
    }
}
