#!/usr/bin/env bash
# docs/screenshots.sh: regenerates the README's images of the browser console
# (docs/console.png, docs/channels.png, docs/dashboard.png). It starts a real
# wsd on loopback and runs the browser test's "open" suite against it in
# headless Chromium, with DWELL_SECS of light traffic before the dashboard's
# picture so that its charts have something to show.
#
#   docs/screenshots.sh
#   DWELL_SECS=60 PORT=19081 docs/screenshots.sh
#
# Needs what `cargo test --test browser` needs: the Rust toolchain, Node.js
# with npm, and Chromium (apt-get install chromium; or CHROMIUM=/path).
set -euo pipefail
cd "$(dirname "$0")/.."

PORT=${PORT:-19080}
export DWELL_SECS=${DWELL_SECS:-40}
CHROMIUM=${CHROMIUM:-/usr/bin/chromium}
[ -x "$CHROMIUM" ] || {
    echo "error: no Chromium at $CHROMIUM: apt-get install chromium, or set CHROMIUM" >&2
    exit 1
}
command -v npm >/dev/null || { echo "error: npm not found: apt-get install nodejs npm" >&2; exit 1; }

# A debug build is enough for pictures (and shares the tests' build).
cargo build --locked --bin wsd
[ -d tests/browser/node_modules ] || (cd tests/browser && npm ci --no-audit --no-fund --loglevel=error)

work=$(mktemp -d)
wsd_pid=
cleanup() {
    [ -n "$wsd_pid" ] && kill "$wsd_pid" 2>/dev/null && wait "$wsd_pid" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT

# The namespaces the suite uses: one without history (to show a gap), one
# with presence. The defaults otherwise, as a new user runs it.
cat > "$work/wsd.toml" <<TOML
[server]
bind = "127.0.0.1:$PORT"

[[channels.namespace]]
name = ""

[[channels.namespace]]
name = "nohist"
history_size = 0

[[channels.namespace]]
name = "room"
presence = true
TOML

target/debug/wsd --config "$work/wsd.toml" > "$work/wsd.log" 2>&1 &
wsd_pid=$!
for _ in $(seq 100); do
    grep -q "browser console at" "$work/wsd.log" && break
    kill -0 "$wsd_pid" 2>/dev/null || { cat "$work/wsd.log" >&2; exit 1; }
    sleep 0.1
done
grep -q "browser console at" "$work/wsd.log" || { cat "$work/wsd.log" >&2; exit 1; }

timeout $((DWELL_SECS + 120)) node tests/browser/console.mjs open "http://127.0.0.1:$PORT" "$CHROMIUM" "$work/shots"
cp "$work/shots/console.png" "$work/shots/channels.png" "$work/shots/dashboard.png" docs/
echo "wrote docs/console.png, docs/channels.png and docs/dashboard.png"
