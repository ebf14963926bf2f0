//! `wsc` over wss://: the real binary against our server behind rustls, with
//! certificates made at test time. Every failure must be one line on stderr
//! that says why in words, and exit 1; unusable TLS files exit 2.

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;

use common::{BOUND, TestWsd, test_config};
use tokio::io::AsyncWriteExt;
use tokio::process::Command;
use wsd::config::TlsConfig;
use wsd::tls::LocalCa;

/// A CA, a server certificate signed by it, and the files (as in tests/tls.rs).
struct Pki {
    dir: tempfile::TempDir,
    ca: LocalCa,
}

/// The names the default server certificate is for.
fn localhost() -> Vec<String> {
    vec!["localhost".into(), "127.0.0.1".into()]
}

impl Pki {
    fn new() -> Pki {
        Pki::named("test CA")
    }

    /// CAs with different names: two CAs with the same name make rustls
    /// report BadSignature (it finds the wrong issuer by name) instead of
    /// UnknownIssuer.
    fn named(ca_name: &str) -> Pki {
        Pki::with_server(ca_name, &localhost(), None)
    }

    fn with_server(
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

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The CA file as a string argument.
    fn ca_arg(&self) -> String {
        self.path("ca.pem").display().to_string()
    }

    fn tls(&self) -> TlsConfig {
        TlsConfig {
            cert: self.path("cert.pem"),
            key: self.path("key.pem"),
            client_ca: None,
        }
    }

    /// Writes a client certificate signed by this CA; returns (cert, key).
    fn client_identity(&self) -> (String, String) {
        let issued = self.ca.issue_client("test client").unwrap();
        std::fs::write(self.path("client.pem"), &issued.cert_pem).unwrap();
        std::fs::write(self.path("client-key.pem"), &issued.key_pem).unwrap();
        let show = |p: PathBuf| p.display().to_string();
        (
            show(self.path("client.pem")),
            show(self.path("client-key.pem")),
        )
    }
}

fn start(pki: &Pki, client_ca: Option<&Path>) -> TestWsd {
    let mut config = test_config();
    let mut tls = pki.tls();
    tls.client_ca = client_ca.map(Path::to_owned);
    config.tls = Some(tls);
    TestWsd::start_tls(config)
}

/// By name, so the certificate's names are what is checked.
fn wss_url(wsd: &TestWsd) -> String {
    format!("wss://localhost:{}/", wsd.addr().port())
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

/// Runs the real wsc with `input` on stdin (then EOF), without blocking the
/// actix runtime that serves it, and collects everything within [`BOUND`].
async fn wsc(args: &[&str], input: &str) -> Run {
    let mut child = Command::new(env!("CARGO_BIN_EXE_wsc"))
        .args(args)
        .env_remove("RUST_LOG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn wsc");
    let mut stdin = child.stdin.take().expect("stdin");
    let input = input.to_owned();
    tokio::spawn(async move {
        let _ = stdin.write_all(input.as_bytes()).await;
    });
    let out = tokio::time::timeout(BOUND, child.wait_with_output())
        .await
        .expect("wsc did not exit within the bound")
        .expect("wait for wsc");
    Run {
        code: out.status.code().expect("exit code, not a signal"),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Exit 1, nothing on stdout, and exactly one stderr line naming the URL and
/// containing `why`.
fn assert_refused(r: &Run, url: &str, why: &str) {
    assert_eq!(r.code, 1, "stderr: {}", r.stderr);
    assert_eq!(r.stdout, "");
    assert_eq!(r.stderr.lines().count(), 1, "stderr: {:?}", r.stderr);
    assert!(
        r.stderr
            .starts_with(&format!("wsc: cannot connect to {url}: ")),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains(why), "expected {why:?} in {:?}", r.stderr);
}

#[actix_web::test]
async fn wss_echo_through_wsc_trusting_the_ca() {
    let pki = Pki::new();
    let wsd = start(&pki, None);
    let r = wsc(&["--ca", &pki.ca_arg(), &wss_url(&wsd)], "one\ntwo\n").await;
    assert_eq!(
        (r.code, r.stdout.as_str(), r.stderr.as_str()),
        (0, "Server received: one\nServer received: two\n", "")
    );
}

#[actix_web::test]
async fn a_server_signed_by_another_ca_is_an_unknown_issuer() {
    let pki = Pki::new();
    let other = Pki::named("some other CA");
    let wsd = start(&pki, None);
    let url = wss_url(&wsd);
    let r = wsc(&["--ca", &other.ca_arg(), &url], "x\n").await;
    assert_refused(&r, &url, "unknown issuer");
    // Without --ca only the webpki roots are trusted: the same failure.
    let r = wsc(&[&url], "x\n").await;
    assert_refused(&r, &url, "unknown issuer");
}

#[actix_web::test]
async fn a_certificate_for_another_name_is_a_name_mismatch() {
    let pki = Pki::with_server("test CA", &["example.invalid".into()], None);
    let wsd = start(&pki, None);
    let url = wss_url(&wsd);
    let r = wsc(&["--ca", &pki.ca_arg(), &url], "x\n").await;
    assert_refused(&r, &url, "not valid for localhost (name mismatch)");
}

#[actix_web::test]
async fn an_expired_certificate_is_refused_as_expired() {
    let now = time::OffsetDateTime::now_utc();
    let validity = (
        now - time::Duration::days(30),
        now - time::Duration::days(1),
    );
    let pki = Pki::with_server("test CA", &localhost(), Some(validity));
    let wsd = start(&pki, None);
    let url = wss_url(&wsd);
    let r = wsc(&["--ca", &pki.ca_arg(), &url], "x\n").await;
    assert_refused(&r, &url, "certificate expired");
}

#[actix_web::test]
async fn no_check_connects_to_an_untrusted_server_and_warns() {
    let pki = Pki::new();
    let wsd = start(&pki, None);
    let r = wsc(&["-n", &wss_url(&wsd)], "hi\n").await;
    assert_eq!((r.code, r.stdout.as_str()), (0, "Server received: hi\n"));
    assert_eq!(r.stderr.lines().count(), 1, "stderr: {:?}", r.stderr);
    assert!(
        r.stderr.starts_with("wsc: warning: ") && r.stderr.contains("not verifying"),
        "{}",
        r.stderr
    );
}

#[actix_web::test]
async fn mutual_tls_refuses_wsc_without_a_certificate_and_serves_it_with_one() {
    let pki = Pki::new();
    let wsd = start(&pki, Some(&pki.path("ca.pem")));
    let url = wss_url(&wsd);
    let ca = pki.ca_arg();

    let r = wsc(&["--ca", &ca, &url], "x\n").await;
    assert_refused(&r, &url, "server requires a client certificate");

    let stranger = Pki::named("a stranger's CA");
    let (cert, key) = stranger.client_identity();
    let r = wsc(&["--ca", &ca, "--cert", &cert, "--key", &key, &url], "x\n").await;
    assert_refused(&r, &url, "server rejected our client certificate");

    let (cert, key) = pki.client_identity();
    let r = wsc(
        &["--ca", &ca, "--cert", &cert, "--key", &key, &url],
        "mutual\n",
    )
    .await;
    assert_eq!(
        (r.code, r.stdout.as_str(), r.stderr.as_str()),
        (0, "Server received: mutual\n", "")
    );
}

#[actix_web::test]
async fn wss_to_a_plain_server_says_it_did_not_answer_in_tls() {
    let wsd = TestWsd::start(test_config());
    let url = format!("wss://localhost:{}/", wsd.addr().port());
    let r = wsc(&[&url], "x\n").await;
    assert_refused(&r, &url, "did not answer in TLS");
}

#[actix_web::test]
async fn unusable_tls_flags_and_files_exit_2_before_connecting() {
    let pki = Pki::new();
    let other = Pki::named("other CA");
    // Nothing listens here: exit 2 proves nothing was attempted.
    let url = "wss://localhost:9/";
    let (cert, _) = pki.client_identity();
    let (_, foreign_key) = other.client_identity();
    let missing = pki.path("missing-ca.pem").display().to_string();
    let cases: [(&[&str], &str); 4] = [
        (&["--cert", &cert, url], "--key"),
        (&["--key", &foreign_key, url], "--cert"),
        (&["--ca", &missing, url], "missing-ca.pem: cannot read"),
        (
            &["--cert", &cert, "--key", &foreign_key, url],
            "does not match",
        ),
    ];
    for (args, why) in cases {
        let r = wsc(args, "").await;
        assert_eq!(r.code, 2, "{args:?}: {}", r.stderr);
        assert!(r.stderr.contains(why), "{args:?}: {}", r.stderr);
        assert_eq!(r.stdout, "");
    }
}
