//! wss://: the server behind rustls, with certificates made at test time.

mod common;

use std::sync::Arc;

use common::pki::Pki;
use common::{BOUND, TestWsd, round_trip, test_config};
use futures_util::SinkExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::Connector;
use tokio_tungstenite::tungstenite::Message;
use wsd::config::TlsConfig;
use wsd::tls::{ClientTls, TlsError};

fn wss_url(wsd: &TestWsd) -> String {
    format!("wss://localhost:{}/", wsd.addr().port())
}

/// Connects with tokio-tungstenite over rustls, trusting `opts`.
async fn connect_wss(
    wsd: &TestWsd,
    opts: &ClientTls,
) -> Result<common::Ws, tokio_tungstenite::tungstenite::Error> {
    let config = wsd::tls::client_config(opts).expect("client config");
    let connector = Connector::Rustls(Arc::new(config));
    let connect = tokio_tungstenite::connect_async_tls_with_config(
        wss_url(wsd),
        None,
        false,
        Some(connector),
    );
    let (ws, _) = tokio::time::timeout(BOUND, connect)
        .await
        .expect("wss connect timed out")?;
    Ok(ws)
}

fn trusting(pki: &Pki) -> ClientTls {
    ClientTls {
        ca: Some(pki.path("ca.pem")),
        ..ClientTls::default()
    }
}

#[actix_web::test]
async fn wss_echo_with_an_independent_client() {
    let pki = Pki::new();
    let wsd = pki.serve(None);
    let mut ws = connect_wss(&wsd, &trusting(&pki)).await.expect("wss");
    assert_eq!(
        round_trip(&mut ws, "over tls").await,
        "Server received: over tls"
    );
    ws.send(Message::binary(vec![0u8; 100_000])).await.unwrap();
    assert_eq!(common::next_message(&mut ws).await.len(), 100_000);
}

#[actix_web::test]
async fn a_client_that_does_not_trust_the_ca_is_refused_by_its_own_verifier() {
    let pki = Pki::new();
    let other = Pki::named("some other CA");
    let wsd = pki.serve(None);
    let Err(err) = connect_wss(&wsd, &trusting(&other)).await else {
        panic!("a server signed by an untrusted CA was accepted");
    };
    assert!(
        err.to_string().contains("UnknownIssuer"),
        "expected an unknown-issuer failure, got {err}"
    );
    // -n skips verification: the same server is reachable.
    let no_check = ClientTls {
        no_check: true,
        ..ClientTls::default()
    };
    let mut ws = connect_wss(&wsd, &no_check)
        .await
        .expect("no-check connects");
    assert_eq!(round_trip(&mut ws, "x").await, "Server received: x");
}

#[actix_web::test]
async fn mutual_tls_refuses_clients_without_a_certificate_and_serves_those_with_one() {
    let pki = Pki::new();
    let wsd = pki.serve(Some(&pki.path("ca.pem")));
    assert!(connect_wss(&wsd, &trusting(&pki)).await.is_err());

    let stranger = Pki::named("a stranger's CA");
    let foreign = ClientTls {
        identity: Some(stranger.client_identity()),
        ..trusting(&pki)
    };
    assert!(
        connect_wss(&wsd, &foreign).await.is_err(),
        "a cert from another CA was accepted"
    );

    let with_cert = ClientTls {
        identity: Some(pki.client_identity()),
        ..trusting(&pki)
    };
    let mut ws = connect_wss(&wsd, &with_cert).await.expect("mtls");
    assert_eq!(
        round_trip(&mut ws, "mutual").await,
        "Server received: mutual"
    );
}

#[actix_web::test]
async fn plain_http_and_garbage_on_the_tls_port_do_not_disturb_sessions() {
    let pki = Pki::new();
    let wsd = pki.serve(None);
    let mut ws = connect_wss(&wsd, &trusting(&pki)).await.expect("wss");

    for junk in [
        &b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\r\n"[..],
        &[0xFFu8; 512][..],
    ] {
        let mut stream = TcpStream::connect(wsd.addr()).await.unwrap();
        stream.write_all(junk).await.unwrap();
        let mut sink = Vec::new();
        // The server drops it (possibly after a TLS alert).
        let ended = tokio::time::timeout(BOUND, stream.read_to_end(&mut sink)).await;
        assert!(ended.is_ok(), "junk connection was held open");
    }
    assert_eq!(
        round_trip(&mut ws, "undisturbed").await,
        "Server received: undisturbed"
    );
}

#[test]
fn bad_tls_files_name_the_file_and_the_problem() {
    let pki = Pki::new();
    let other = Pki::new();
    std::fs::write(
        pki.path("garbage.pem"),
        "-----BEGIN CERTIFICATE-----\n!!!\n",
    )
    .unwrap();
    let good = pki.tls();
    // (what is wrong, the config, words the message must contain)
    let cases = [
        (
            "missing file",
            TlsConfig {
                cert: pki.path("nope.pem"),
                ..good.clone()
            },
            ["nope.pem", "cannot read"],
        ),
        (
            "a key file as the certificate",
            TlsConfig {
                cert: pki.path("key.pem"),
                ..good.clone()
            },
            ["key.pem", "no certificate"],
        ),
        (
            "a certificate file as the key",
            TlsConfig {
                key: pki.path("cert.pem"),
                ..good.clone()
            },
            ["cert.pem", "no private key"],
        ),
        (
            "another certificate's key",
            TlsConfig {
                key: other.path("key.pem"),
                ..good.clone()
            },
            ["key.pem", "does not match"],
        ),
        (
            "garbage PEM",
            TlsConfig {
                cert: pki.path("garbage.pem"),
                ..good.clone()
            },
            ["garbage.pem", "garbage.pem"],
        ),
        (
            "a key file as the client CA",
            TlsConfig {
                client_ca: Some(pki.path("key.pem")),
                ..good.clone()
            },
            ["key.pem", "no certificate"],
        ),
    ];
    for (what, tls, words) in cases {
        let err: TlsError = wsd::tls::server_config(&tls).expect_err(what);
        let msg = err.to_string();
        for word in words {
            assert!(msg.contains(word), "{what}: {msg:?} lacks {word:?}");
        }
    }
}

#[test]
fn wsd_exits_2_on_a_bad_tls_file_before_listening() {
    let pki = Pki::new();
    let config = pki.path("wsd.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nbind = \"127.0.0.1:0\"\n[tls]\ncert = \"{}\"\nkey = \"{}\"\n",
            pki.path("cert.pem").display(),
            pki.path("missing-key.pem").display()
        ),
    )
    .unwrap();
    // Bounded: a wsd that went on to listen would otherwise hang the test.
    let out = assert_cmd::Command::new(env!("CARGO_BIN_EXE_wsd"))
        .arg("--config")
        .arg(&config)
        .timeout(BOUND)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("missing-key.pem"), "{stderr}");
}

#[test]
fn gen_cert_writes_a_ca_and_a_certificate_that_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let out = assert_cmd::Command::new(env!("CARGO_BIN_EXE_wsd"))
        .args(["gen-cert", "--host", "localhost", "--out"])
        .arg(dir.path())
        .timeout(BOUND)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("[tls]"), "{stdout}");
    let tls = TlsConfig {
        cert: dir.path().join("cert.pem"),
        key: dir.path().join("key.pem"),
        client_ca: None,
    };
    wsd::tls::server_config(&tls).expect("generated files load");
    // The CA verifies the certificate for localhost (through a real handshake).
    let roots = wsd::tls::load_roots(&dir.path().join("ca.pem")).expect("ca loads");
    assert_eq!(roots.len(), 1);
    let mode = std::fs::metadata(dir.path().join("key.pem")).unwrap();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        mode.permissions().mode() & 0o077,
        0,
        "key.pem readable by others"
    );
}

#[actix_web::test]
async fn generated_files_serve_a_verified_wss_session() {
    let dir = tempfile::tempdir().unwrap();
    let hosts = vec!["localhost".to_owned()];
    let files = wsd::tls::generate_files(dir.path(), &hosts).unwrap();
    let mut config = test_config();
    config.tls = Some(TlsConfig {
        cert: files.cert,
        key: files.key,
        client_ca: None,
    });
    let wsd = TestWsd::start_tls(config);
    let opts = ClientTls {
        ca: Some(files.ca),
        ..ClientTls::default()
    };
    let mut ws = connect_wss(&wsd, &opts).await.expect("verified wss");
    assert_eq!(
        round_trip(&mut ws, "gen-cert").await,
        "Server received: gen-cert"
    );
}
