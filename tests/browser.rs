//! The browser console in a real browser: headless Chromium (the system's,
//! driven by playwright-core from `tests/browser/`) against a real wsd. The
//! checks themselves are in `tests/browser/console.mjs`; each prints
//! `ok - ...`, and this side asserts that every one ran and passed.
//! Screenshots of the console and the dashboard land in this test's output
//! directory (`target/tmp/browser-*`).

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use common::{TestWsd, test_config, tools};
use wsd::config::{Config, NamespaceConfig, RequireKey};

/// Longer than the script's own bounds add up to: only a hung browser hits it.
const RUN_BOUND: Duration = Duration::from_secs(150);

const API_KEY: &str = "browser-test-key-0123456789";

fn config() -> Config {
    let mut config = test_config();
    config.channels.namespace.push(NamespaceConfig {
        name: "nohist".into(),
        history_size: 0,
        ..NamespaceConfig::default()
    });
    config.channels.namespace.push(NamespaceConfig {
        name: "room".into(),
        presence: true,
        ..NamespaceConfig::default()
    });
    config
}

/// Runs one suite of `console.mjs` against `wsd`; returns its stdout after
/// asserting that it passed.
fn run_suite(suite: &str, wsd: &TestWsd, extra: &[&str]) -> String {
    let package = tools::node_package("tests/browser");
    let chromium = tools::chromium();
    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("browser-{suite}"));
    let mut command = Command::new("node");
    command
        .arg(package.join("console.mjs"))
        .arg(suite)
        .arg(format!("http://{}", wsd.addr()))
        .arg(&chromium)
        .arg(&out)
        .args(extra);
    let what = format!("the {suite} suite (screenshots in {})", out.display());
    tools::run_script(command, &what, RUN_BOUND)
}

#[test]
fn the_console_works_in_a_real_browser() {
    let wsd = TestWsd::start(config());
    let stdout = run_suite("open", &wsd, &[]);
    tools::assert_ran(
        &stdout,
        &[
            "lands on /console",
            "see Server received: hello",
            "binary sent as hex",
            "<img src=x onerror=alert(1)> is shown as text and no dialog fires",
            "copy button",
            "close code in words",
            "see the delivery with its offset",
            "both replayed, shown as recovered",
            "shown as a gap",
            "over the WebSocket and over the HTTP API",
            "presence",
            "subscriber counts",
            "session count rises by three",
            "10,000 lines",
            "phone-sized",
            "dark theme",
            "no script error, CSP violation or dialog",
        ],
    );
    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("browser-open");
    for shot in ["console.png", "dashboard.png"] {
        let len = std::fs::metadata(out.join(shot)).map_or(0, |m| m.len());
        assert!(len > 10_000, "{shot} is missing or empty ({len} bytes)");
    }
}

#[test]
fn a_console_that_requires_a_key_asks_for_it_in_the_browser() {
    // What a non-loopback bind does under `auto` (the tests may not bind
    // one; the rule itself is unit-tested in `console::access`).
    let mut config = config();
    config.console.require_key = RequireKey::Always;
    config.channels.api_keys = vec![API_KEY.into()];
    let wsd = TestWsd::start(config);
    let stdout = run_suite("key", &wsd, &[API_KEY]);
    tools::assert_ran(
        &stdout,
        &[
            "asks for it",
            "wrong key is refused",
            "unlocks the console",
            "sends the API key field",
            "no script error, CSP violation or dialog",
        ],
    );
}
