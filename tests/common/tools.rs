//! The outside tools some tests drive: Node packages pinned by a
//! `package-lock.json` (installed with `npm ci` on first use), a Python
//! virtualenv with the packages pinned in `tests/python/requirements.txt`,
//! and the system's Chromium. A missing tool fails the test with an install
//! hint; nothing is skipped. `.ci/run` installs them on a fresh machine.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// One installer at a time per test binary: tests run in parallel threads,
/// and two `npm ci` (or `pip install`) runs into one directory would clash.
static INSTALL: Mutex<()> = Mutex::new(());

/// The project's root (where `Cargo.toml` is).
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Panics with `hint` unless `program --version` runs.
fn require(program: &str, hint: &str) {
    let ok = Command::new(program)
        .arg("--version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        ok,
        "`{program}` is needed by this test and was not found: {hint}"
    );
}

/// The Node package in `dir` (relative to the root, e.g. `tests/browser`),
/// with its locked dependencies installed: `npm ci` runs when
/// `node_modules` is missing or was installed from another lock file.
/// Returns the package's absolute path.
pub fn node_package(dir: &str) -> PathBuf {
    require(
        "node",
        "install Node.js 18+ (apt-get install nodejs npm), or run .ci/run",
    );
    require("npm", "install npm (apt-get install npm), or run .ci/run");
    let dir = root().join(dir);
    let _guard = INSTALL.lock().unwrap_or_else(|e| e.into_inner());
    if !installed_from_lock(&dir) {
        let out = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
            .current_dir(&dir)
            .output()
            .unwrap_or_else(|e| panic!("cannot run npm ci in {}: {e}", dir.display()));
        assert!(
            out.status.success(),
            "npm ci in {} failed:\n{}",
            dir.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    dir
}

/// Whether `dir/node_modules` holds what `dir/package-lock.json` pins: npm
/// keeps a copy of the lock it installed from in `node_modules/.package-lock.json`.
fn installed_from_lock(dir: &Path) -> bool {
    let lock: Option<serde_json::Value> = std::fs::read(dir.join("package-lock.json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok());
    let hidden: Option<serde_json::Value> =
        std::fs::read(dir.join("node_modules/.package-lock.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok());
    match (lock, hidden) {
        (Some(lock), Some(hidden)) => {
            // The hidden lock lists the installed packages but not the root.
            let wanted = lock["packages"].as_object().map(|p| {
                p.iter()
                    .filter(|(k, _)| !k.is_empty())
                    .map(|(k, v)| (k.clone(), v["version"].clone()))
                    .collect::<Vec<_>>()
            });
            let have = hidden["packages"].as_object().map(|p| {
                p.iter()
                    .map(|(k, v)| (k.clone(), v["version"].clone()))
                    .collect::<Vec<_>>()
            });
            wanted.is_some() && wanted == have
        }
        _ => false,
    }
}

/// The system Chromium for playwright-core's `executablePath`: `$CHROMIUM`,
/// or Debian's `/usr/bin/chromium`.
pub fn chromium() -> PathBuf {
    let path = std::env::var_os("CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    assert!(
        path.exists(),
        "Chromium is needed by the browser tests and {} does not exist: \
         apt-get install chromium (or set CHROMIUM to a Chromium binary), or run .ci/run",
        path.display()
    );
    path
}

/// A Python interpreter in a virtualenv (under the build's temporary
/// directory) holding exactly the packages pinned in
/// `tests/python/requirements.txt`. Created on first use.
pub fn python() -> PathBuf {
    require(
        "python3",
        "install Python 3.9+ (apt-get install python3 python3-venv), or run .ci/run",
    );
    let venv = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("python-venv");
    let python = venv.join("bin/python");
    let requirements = root().join("tests/python/requirements.txt");
    let stamp = venv.join("requirements.installed");
    let _guard = INSTALL.lock().unwrap_or_else(|e| e.into_inner());
    let wanted = std::fs::read(&requirements)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", requirements.display()));
    if std::fs::read(&stamp).ok().as_deref() == Some(&wanted[..]) && python.exists() {
        return python;
    }
    let run = |cmd: &mut Command, what: &str| {
        let out = cmd
            .output()
            .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
        assert!(
            out.status.success(),
            "{what} failed (apt-get install python3-venv may be missing):\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(
        Command::new("python3").arg("-m").arg("venv").arg(&venv),
        "python3 -m venv",
    );
    run(
        Command::new(&python)
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "-r",
            ])
            .arg(&requirements),
        "pip install -r tests/python/requirements.txt",
    );
    std::fs::write(&stamp, &wanted)
        .unwrap_or_else(|e| panic!("cannot write {}: {e}", stamp.display()));
    python
}

/// Runs a test script to its end, killing it once `bound` has passed, and
/// returns its stdout after asserting that it succeeded; `what` names it
/// in the failure, beside its stdout and stderr.
pub fn run_script(mut command: Command, what: &str, bound: Duration) -> String {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    let deadline = Instant::now() + bound;
    while child.try_wait().ok().flatten().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let output = child.wait_with_output().expect("the script's output");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "{what} failed ({})\n--- stdout\n{stdout}--- stderr\n{stderr}",
        output.status
    );
    println!("{stdout}");
    stdout
}

/// Asserts that a script's `ok - ...` lines include one about each check.
pub fn assert_ran(stdout: &str, checks: &[&str]) {
    for check in checks {
        assert!(
            stdout
                .lines()
                .any(|l| l.starts_with("ok - ") && l.contains(check)),
            "no passed check about {check:?} in:\n{stdout}"
        );
    }
}
