//! `wsc` over wss://: the real binary against our server behind rustls, with
//! certificates made at test time. Every failure must be one line on stderr
//! that says why in words, and exit 1; unusable TLS files exit 2.

mod common;

use common::pki::{Pki, localhost};
use common::wsc::{Run, assert_refused, run};
use common::{TestWsd, test_config};

/// By name, so the certificate's names are what is checked.
fn wss_url(wsd: &TestWsd) -> String {
    format!("wss://localhost:{}/", wsd.addr().port())
}

/// Runs the real wsc with `input` on stdin (then EOF).
async fn wsc(args: &[&str], input: &str) -> Run {
    run(args, input.as_bytes()).await
}

#[actix_web::test]
async fn wss_echo_through_wsc_trusting_the_ca() {
    let pki = Pki::new();
    let wsd = pki.serve(None);
    let r = wsc(&["--ca", &pki.ca_arg(), &wss_url(&wsd)], "one\ntwo\n").await;
    assert_eq!(
        (r.code, r.stdout.as_str(), r.stderr.as_str()),
        (0, "Server received: one\nServer received: two\n", "")
    );
}

#[actix_web::test]
async fn wss_with_compress_agrees_permessage_deflate_and_echoes() {
    let pki = Pki::new();
    let mut config = test_config();
    config.tls = Some(pki.tls());
    config.session.compression = wsd::config::Compression::On;
    let wsd = TestWsd::start_tls(config);
    // Large enough that both sides compress it (see tests/wsc_deflate.rs
    // for the frames on the wire); no stderr line: the server agreed.
    let big = "compress me over TLS ".repeat(1000);
    let input = format!("one\n{big}\n");
    let url = wss_url(&wsd);
    let r = wsc(&["--compress", "--ca", &pki.ca_arg(), &url], &input).await;
    assert_eq!((r.code, r.stderr.as_str()), (0, ""));
    assert!(
        r.stdout == format!("Server received: one\nServer received: {big}\n"),
        "{} bytes of output",
        r.stdout.len()
    );
}

#[actix_web::test]
async fn a_server_signed_by_another_ca_is_an_unknown_issuer() {
    let pki = Pki::new();
    let other = Pki::named("some other CA");
    let wsd = pki.serve(None);
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
    let wsd = pki.serve(None);
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
    let wsd = pki.serve(None);
    let url = wss_url(&wsd);
    let r = wsc(&["--ca", &pki.ca_arg(), &url], "x\n").await;
    assert_refused(&r, &url, "certificate expired");
}

#[actix_web::test]
async fn no_check_connects_to_an_untrusted_server_and_warns() {
    let pki = Pki::new();
    let wsd = pki.serve(None);
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
    let wsd = pki.serve(Some(&pki.path("ca.pem")));
    let url = wss_url(&wsd);
    let ca = pki.ca_arg();

    let r = wsc(&["--ca", &ca, &url], "x\n").await;
    assert_refused(&r, &url, "server requires a client certificate");

    let stranger = Pki::named("a stranger's CA");
    let (cert, key) = stranger.client_identity_args();
    let r = wsc(&["--ca", &ca, "--cert", &cert, "--key", &key, &url], "x\n").await;
    assert_refused(&r, &url, "server rejected our client certificate");

    let (cert, key) = pki.client_identity_args();
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
    let (cert, _) = pki.client_identity_args();
    let (_, foreign_key) = other.client_identity_args();
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
