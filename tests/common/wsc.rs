//! Running the real `wsc` binary from a test. The child runs under
//! tokio::process so the actix test runtime keeps serving while it runs.

use std::process::Stdio;

use tokio::io::AsyncWriteExt;
use tokio::process::{Child, Command};

use super::BOUND;

/// What a finished `wsc` left behind.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// `wsc ARGS` with every stream piped, killed if the test drops it.
pub fn wsc(args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_wsc"));
    cmd.args(args)
        .env_remove("RUST_LOG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd
}

/// Runs wsc with `input` on stdin (then EOF) and collects everything.
pub async fn run(args: &[&str], input: &[u8]) -> Run {
    let mut child = wsc(args).spawn().expect("spawn wsc");
    let mut stdin = child.stdin.take().expect("stdin");
    let input = input.to_vec();
    // Written concurrently: wsc reads stdin and writes stdout at once.
    tokio::spawn(async move {
        let _ = stdin.write_all(&input).await;
    });
    finish(child).await
}

/// Waits (bounded) for wsc to exit and collects its output. A stdin still
/// attached stays open until wsc has exited (`wait_with_output` alone would
/// close it first, and EOF would race whatever the test is waiting for).
pub async fn finish(mut child: Child) -> Run {
    let stdin = child.stdin.take();
    let out = tokio::time::timeout(BOUND, child.wait_with_output())
        .await
        .expect("wsc did not exit within the bound")
        .expect("wait for wsc");
    drop(stdin);
    Run {
        code: out.status.code().expect("exit code, not a signal"),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Exit 1, nothing on stdout, and exactly one stderr line naming the URL and
/// containing `why`.
pub fn assert_refused(r: &Run, url: &str, why: &str) {
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
