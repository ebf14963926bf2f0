#!/usr/bin/env bash
# bench/run.sh: wsd against a fastwebsockets echo server, under identical
# conditions on loopback, measured with `wsc bench`. Prints a Markdown table
# (the median over REPS repetitions, each repetition printed as it finishes).
#
#   bench/run.sh                       # REPS=3 DURATION=10s
#   DURATION=5s REPS=1 bench/run.sh    # a quick look
#
# Needs only the Rust toolchain (plus coreutils, awk, sed, and taskset from
# util-linux for pinning: server on core 0, load on core 1).
#
# Environment: REPS (3), DURATION (10s, each load measurement), WARMUP (2s),
# IDLE_CONNS (10000), HOLD (5s, how long the idle connections are held),
# CONNECT_CONCURRENCY (8), WSD_PORT (19001), PEER_PORT (19002), WSD (the
# server binary; default target/release/wsd, e.g. an older build to compare), WSC (the
# binary whose `bench` subcommand generates the load; default target/release/wsc).
set -euo pipefail
cd "$(dirname "$0")/.."

REPS=${REPS:-3}
DURATION=${DURATION:-10s}
WARMUP=${WARMUP:-2s}
IDLE_CONNS=${IDLE_CONNS:-10000}
HOLD=${HOLD:-5s}
CONNECT_CONCURRENCY=${CONNECT_CONCURRENCY:-8}
WSD_PORT=${WSD_PORT:-19001}
PEER_PORT=${PEER_PORT:-19002}
# Bound on any one `wsc bench` run: its duration plus a generous margin.
RUN_TIMEOUT=${RUN_TIMEOUT:-120}

die() { echo "bench/run.sh: $*" >&2; exit 1; }
note() { echo "# $*" >&2; }

for tool in cargo awk sed getconf timeout; do
    command -v "$tool" >/dev/null || die "needs $tool"
done

# TMP, serve, stop_server, pin_cores, fit_files, field, rss_kib, idle_rss,
# median; stops the server and removes TMP on exit.
# shellcheck source=bench/lib.sh
. bench/lib.sh

pin_cores
CLK_TCK=$(getconf CLK_TCK)

fit_files IDLE_CONNS

note "building (release)"
cargo build --release --locked --bin wsd --bin wsc >&2
(cd bench/peers/fastws-echo && cargo build --release --locked >&2)
WSD=${WSD:-$PWD/target/release/wsd}
WSC=${WSC:-$PWD/target/release/wsc}
PEER=$PWD/bench/peers/fastws-echo/target/release/fastws-echo
"$WSC" bench --help >/dev/null 2>&1 || die "$WSC has no 'bench' subcommand"

# wsd: its defaults, except a pure echo (like the peer), room for the idle
# connections, quiet logs, and a short shutdown between runs.
cat >"$TMP/wsd.toml" <<EOF
[server]
bind = "127.0.0.1:$WSD_PORT"
max_connections = 1000000
shutdown_timeout = "2s"
[session]
reply_prefix = ""
[log]
level = "warn"
EOF

start_server() { # name port
    case $1 in
        wsd) serve "$2" "$TMP/$1.log" "${SERVER_PIN[@]}" "$WSD" --config "$TMP/wsd.toml" ;;
        fastws-echo) serve "$2" "$TMP/$1.log" "${SERVER_PIN[@]}" "$PEER" "127.0.0.1:$2" ;;
    esac
}

cpu_ticks() { # utime stime of a PID (fields 14 and 15 of /proc/PID/stat)
    sed 's/.*) //' "/proc/$1/stat" | awk '{ print $12, $13 }'
}

# bench NAME ARGS...: runs wsc bench pinned, JSON into $TMP/NAME.json; warns
# when a run had errors (the figure is still printed, flagged).
bench() {
    local name=$1; shift
    local out="$TMP/$name.json"
    if ! timeout "$RUN_TIMEOUT" "${LOAD_PIN[@]}" "$WSC" bench "$@" --json >"$out" 2>"$TMP/$name.err"; then
        note "$name: wsc bench reported errors or failures:"
        sed -n 's/^ *"\(errors\|failed\|failures\|dropped\|lost\)": \(.*\)/#   \1: \2/p' "$out" >&2
        grep -A3 error_samples "$out" | sed 's/^/#   /' >&2 || true
        FLAGGED="$FLAGGED $name"
    fi
}

# One repetition against one server; prints "key value" lines.
measure() { # name port
    local name=$1 port=$2 url="ws://127.0.0.1:$2/"
    start_server "$name" "$port"
    local pid=$SERVER_PID

    # Memory per idle connection first, on a fresh server.
    local rss
    rss=$(idle_rss "$pid" "$url" "$IDLE_CONNS") || { note "$name idle: failures"; FLAGGED="$FLAGGED idle"; }
    echo "rss_per_conn $rss"
    echo "idle_connect_rate $(field connect_rate "$TMP/idle.json")"
    echo "idle_held $(field held_open "$TMP/idle.json")"

    bench connects --connects "$url" -c "$CONNECT_CONCURRENCY" -d "$DURATION"
    echo "connects_per_sec $(field connects_per_sec "$TMP/connects.json")"

    bench c1 "$url" -c 1 -d "$DURATION" --warmup "$WARMUP"
    echo "c1 $(field msgs_per_sec "$TMP/c1.json")"

    bench c50 "$url" -c 50 -d "$DURATION" --warmup "$WARMUP"
    echo "c50 $(field msgs_per_sec "$TMP/c50.json")"
    echo "p99_c50 $(field p99 "$TMP/c50.json")"

    # CPU per message: the server is warm from the run above, so no warm-up
    # here, and every message the server handled is one `sent` counts.
    local t0 t1
    t0=$(cpu_ticks "$pid")
    bench cpu "$url" -c 50 -d "$DURATION" --warmup 0s
    t1=$(cpu_ticks "$pid")
    awk -v t0="$t0" -v t1="$t1" -v hz="$CLK_TCK" -v n="$(field sent "$TMP/cpu.json")" 'BEGIN {
        split(t0, a, " "); split(t1, b, " ");
        user = (b[1] - a[1]) / hz * 1e6; sys = (b[2] - a[2]) / hz * 1e6;
        if (n > 0) { printf "cpu_total %.3f\ncpu_user %.3f\n", (user + sys) / n, user / n }
    }'

    bench c500 "$url" -c 500 -d "$DURATION" --warmup "$WARMUP"
    echo "c500 $(field msgs_per_sec "$TMP/c500.json")"

    bench big "$url" -c 50 -d "$DURATION" --warmup "$WARMUP" --size 16KiB --binary
    echo "mb_16k $(field mb_per_sec "$TMP/big.json")"

    stop_server
}

ROWS=(c1 c50 c500 mb_16k p99_c50 cpu_total cpu_user rss_per_conn connects_per_sec idle_connect_rate)
label() {
    case $1 in
        c1) echo "msgs/s, C=1, 64 B text" ;;
        c50) echo "msgs/s, C=50, 64 B text" ;;
        c500) echo "msgs/s, C=500, 64 B text" ;;
        mb_16k) echo "MB/s, C=50, 16 KiB binary" ;;
        p99_c50) echo "p99 latency µs, C=50, 64 B (lower is better)" ;;
        cpu_total) echo "server CPU µs/msg, C=50 64 B, user+sys (lower is better)" ;;
        cpu_user) echo "server CPU µs/msg, C=50 64 B, user only (lower is better)" ;;
        rss_per_conn) echo "server RSS KiB per idle connection ($IDLE_CONNS conns, lower is better)" ;;
        connects_per_sec) echo "connects/s with closing handshake (-c $CONNECT_CONCURRENCY)" ;;
        idle_connect_rate) echo "connects/s during the idle ramp" ;;
    esac
}

FLAGGED=""
SERVERS=("wsd $WSD_PORT" "fastws-echo $PEER_PORT")
for rep in $(seq "$REPS"); do
    for s in "${SERVERS[@]}"; do
        set -- $s
        note "rep $rep/$REPS: $1"
        measure "$1" "$2" >"$TMP/result.$1.$rep"
        echo "rep $rep $1: $(tr '\n' ' ' <"$TMP/result.$1.$rep")" >&2
    done
done

echo
echo "wsd vs fastws-echo on loopback: $(uname -r), $CORES cores$([ ${#SERVER_PIN[@]} -gt 0 ] && echo ', server on core 0, load on core 1'), DURATION=$DURATION, median of REPS=$REPS"
echo
echo "| metric | wsd | fastws-echo | wsd/peer |"
echo "| --- | ---: | ---: | ---: |"
for key in "${ROWS[@]}"; do
    a=$(median wsd "$key")
    b=$(median fastws-echo "$key")
    awk -v l="$(label "$key")" -v a="$a" -v b="$b" 'BEGIN {
        r = (a + 0 > 0 && b + 0 > 0) ? sprintf("%.2f", a / b) : "n/a";
        fmt = (a + 0 >= 100 || b + 0 >= 100) ? "%.0f" : "%.2f";
        printf "| %s | " fmt " | " fmt " | %s |\n", l, a, b, r
    }'
done
if [ -n "$FLAGGED" ]; then
    echo
    echo "Runs with errors or failures (see the notes above):$FLAGGED"
fi
