#!/usr/bin/env bash
# bench/fanout.sh: wsd's channels against two broadcast servers, a
# fastwebsockets one that encodes each message once (the ceiling) and the
# idiomatic Node `ws` loop, under identical conditions on loopback, measured
# with `wsc bench --fanout`. Prints a Markdown table: the median over REPS
# repetitions, each repetition's value beside it.
#
#   bench/fanout.sh                                   # REPS=3 DURATION=10s
#   REPS=1 DURATION=2s RATES="100 1000" bench/fanout.sh   # a quick look
#   SERVERS="wsd fastws" PUBLISH=http bench/fanout.sh     # publish by HTTP POST
#
# Scenarios, each on a freshly started server:
#   (a) SUBS subscribers, publication rates RATES in turn: the highest
#       deliveries/s with nothing lost, duplicated or reordered, p99 below
#       P99_LIMIT_US and the asked rate achieved (95%); the ladder stops at
#       the first rate that fails;
#   (b) SUBS subscribers at STEADY_RATE publications/s: p99 latency;
#   (c) BIG_SUBS subscribers at BIG_RATE publications/s: p99 latency;
#   (d) server RSS per idle subscriber, BIG_SUBS of them, next to RSS per
#       plain idle echo connection (wsd's echo endpoint; fastws-echo for
#       fastws; Node has no echo peer).
# Publications are 64 B text.
#
# Needs the Rust toolchain, and node + npm for the Node peer (npm ci fetches
# its pinned `ws` once), plus coreutils, awk, sed, and taskset from
# util-linux for pinning: server on core 0, load on core 1.
#
# Environment: REPS (3), DURATION (10s, each measurement), WARMUP (2s),
# DRAIN (2s), SUBS (1000), RATES ("100 200 500 1000 2000 5000 10000 20000"),
# P99_LIMIT_US (50000), STEADY_RATE (100), BIG_SUBS (10000), BIG_RATE (10),
# HOLD (5s, idle hold), SOURCES (8 source addresses 127.0.0.x, so that
# repetitions do not run out of ports to TIME_WAIT), PUBLISH (ws or http),
# SERVERS ("wsd fastws node"), WSD_PORT (19021), FASTWS_PORT (19022),
# NODE_PORT (19023), ECHO_PORT (19024, fastws-echo), RUN_TIMEOUT (180 s per
# run), WSD and WSC (binaries; default target/release/).
set -euo pipefail
cd "$(dirname "$0")/.."

REPS=${REPS:-3}
DURATION=${DURATION:-10s}
WARMUP=${WARMUP:-2s}
DRAIN=${DRAIN:-2s}
SUBS=${SUBS:-1000}
RATES=${RATES:-"100 200 500 1000 2000 5000 10000 20000"}
P99_LIMIT_US=${P99_LIMIT_US:-50000}
STEADY_RATE=${STEADY_RATE:-100}
BIG_SUBS=${BIG_SUBS:-10000}
BIG_RATE=${BIG_RATE:-10}
HOLD=${HOLD:-5s}
SOURCES=${SOURCES:-8}
PUBLISH=${PUBLISH:-ws}
SERVERS=${SERVERS:-"wsd fastws node"}
WSD_PORT=${WSD_PORT:-19021}
FASTWS_PORT=${FASTWS_PORT:-19022}
NODE_PORT=${NODE_PORT:-19023}
ECHO_PORT=${ECHO_PORT:-19024}
RUN_TIMEOUT=${RUN_TIMEOUT:-180}
CHANNEL=bench

die() { echo "bench/fanout.sh: $*" >&2; exit 1; }
note() { echo "# $*" >&2; }

for tool in cargo awk sed getconf timeout; do
    command -v "$tool" >/dev/null || die "needs $tool"
done
case $PUBLISH in ws | http) ;; *) die "PUBLISH must be ws or http" ;; esac
for s in $SERVERS; do
    case $s in
        wsd | fastws) ;;
        node) command -v node >/dev/null && command -v npm >/dev/null || die "SERVERS has node: needs node and npm" ;;
        *) die "unknown server $s (wsd, fastws, node)" ;;
    esac
done
has() { case " $SERVERS " in *" $1 "*) return 0 ;; esac; return 1; }

# TMP, serve, stop_server, pin_cores, fit_files, field, rss_kib, idle_rss,
# median; stops the server and removes TMP on exit.
# shellcheck source=bench/lib.sh
. bench/lib.sh

pin_cores

fit_files BIG_SUBS

note "building (release)"
cargo build --release --locked --bin wsd --bin wsc >&2
WSD=${WSD:-$PWD/target/release/wsd}
WSC=${WSC:-$PWD/target/release/wsc}
"$WSC" bench --help 2>/dev/null | grep -q -- --fanout || die "$WSC has no 'bench --fanout'"
if has fastws; then
    (cd bench/peers/fastws-broadcast && cargo build --release --locked >&2)
    (cd bench/peers/fastws-echo && cargo build --release --locked >&2)
fi
FASTWS=$PWD/bench/peers/fastws-broadcast/target/release/fastws-broadcast
FASTWS_ECHO=$PWD/bench/peers/fastws-echo/target/release/fastws-echo
if has node; then
    (cd bench/peers/node-ws-broadcast && npm ci --no-audit --no-fund >&2) ||
        die "npm ci failed in bench/peers/node-ws-broadcast (is the npm registry reachable?)"
fi

port_of() {
    case $1 in
        wsd) echo "$WSD_PORT" ;;
        fastws) echo "$FASTWS_PORT" ;;
        node) echo "$NODE_PORT" ;;
        fastws-echo) echo "$ECHO_PORT" ;;
    esac
}

start_server() { # name
    local port
    port=$(port_of "$1")
    case $1 in
        wsd) serve "$port" "$TMP/$1.log" "${SERVER_PIN[@]}" "$WSD" --config bench/wsd-fanout.toml --bind "127.0.0.1:$port" ;;
        fastws) serve "$port" "$TMP/$1.log" "${SERVER_PIN[@]}" "$FASTWS" "127.0.0.1:$port" ;;
        node) serve "$port" "$TMP/$1.log" "${SERVER_PIN[@]}" node bench/peers/node-ws-broadcast/server.js "127.0.0.1:$port" ;;
        fastws-echo) serve "$port" "$TMP/$1.log" "${SERVER_PIN[@]}" "$FASTWS_ECHO" "127.0.0.1:$port" ;;
    esac
}

# fanout NAME SERVER ARGS...: one `wsc bench --fanout` against SERVER's
# channel, JSON into $TMP/NAME.json; its exit code is the verdict.
fanout() {
    local name=$1 server=$2 port
    shift 2
    port=$(port_of "$server")
    local publish=()
    [ "$PUBLISH" = http ] && publish=(--publish-url "http://127.0.0.1:$port/channels/$CHANNEL")
    timeout "$RUN_TIMEOUT" "${LOAD_PIN[@]}" "$WSC" bench --fanout "ws://127.0.0.1:$port/channels/$CHANNEL" \
        "${publish[@]}" -d "$DURATION" --warmup "$WARMUP" --drain "$DRAIN" --sources "$SOURCES" \
        "$@" --json >"$TMP/$name.json" 2>"$TMP/$name.err"
}

# flag NAME: says what went wrong in a run whose figure is still printed.
flag() {
    note "$1: wsc bench reported errors or failures:"
    sed -n 's/^ *"\(errors\|lost\|duplicate\|out_of_order\|dropped\|failed\|connect_failures\)": \(.*\)/#   \1: \2/p' "$TMP/$1.json" >&2
    grep -A3 error_samples "$TMP/$1.json" | sed 's/^/#   /' >&2 || true
    FLAGGED="$FLAGGED $1"
}

# passes NAME RATE: the run lost nothing, kept p99 under the limit and
# published at (nearly) the asked rate.
passes() {
    awk -v p99="$(field p99 "$TMP/$1.json")" -v got="$(field publications_per_sec "$TMP/$1.json")" \
        -v want="$2" -v limit="$P99_LIMIT_US" 'BEGIN { exit !(p99 + 0 < limit && got + 0 >= 0.95 * want) }'
}

# One repetition against one server; prints "key value" lines.
measure() { # server
    local s=$1 best=0 best_rate=0 rate

    for rate in $RATES; do
        start_server "$s"
        if fanout "ladder.$s" "$s" -c "$SUBS" --rate "$rate" && passes "ladder.$s" "$rate"; then
            best=$(field deliveries_per_sec "$TMP/ladder.$s.json")
            best_rate=$rate
            stop_server
        else
            note "$s: the ladder stops at $rate/s: p99 $(field p99 "$TMP/ladder.$s.json") µs, published $(field publications_per_sec "$TMP/ladder.$s.json")/s, lost $(field lost "$TMP/ladder.$s.json"), errors $(field errors "$TMP/ladder.$s.json")"
            stop_server
            break
        fi
    done
    echo "ladder_dps $best"
    echo "ladder_rate $best_rate"

    start_server "$s"
    fanout steady "$s" -c "$SUBS" --rate "$STEADY_RATE" || flag steady
    echo "p99_steady $(field p99 "$TMP/steady.json")"
    stop_server

    start_server "$s"
    fanout big "$s" -c "$BIG_SUBS" --rate "$BIG_RATE" || flag big
    echo "p99_big $(field p99 "$TMP/big.json")"
    stop_server

    local rss peer
    start_server "$s"
    rss=$(idle_rss "$SERVER_PID" "ws://127.0.0.1:$(port_of "$s")/channels/idle" "$BIG_SUBS") || flag idle
    echo "rss_sub $rss"
    stop_server
    case $s in
        wsd) peer=wsd ;;
        fastws) peer=fastws-echo ;;
        node) return 0 ;;
    esac
    start_server "$peer"
    rss=$(idle_rss "$SERVER_PID" "ws://127.0.0.1:$(port_of "$peer")/" "$BIG_SUBS") || flag idle
    echo "rss_echo $rss"
    stop_server
}

ROWS=(ladder_dps ladder_rate p99_steady p99_big rss_sub rss_echo)
label() {
    case $1 in
        ladder_dps) echo "(a) max deliveries/s, $SUBS subscribers, nothing lost, p99 < $((P99_LIMIT_US / 1000)) ms" ;;
        ladder_rate) echo "(a) publications/s at that point" ;;
        p99_steady) echo "(b) p99 µs, $SUBS subscribers, $STEADY_RATE pub/s (lower is better)" ;;
        p99_big) echo "(c) p99 µs, $BIG_SUBS subscribers, $BIG_RATE pub/s (lower is better)" ;;
        rss_sub) echo "(d) RSS KiB per idle subscriber, $BIG_SUBS (lower is better)" ;;
        rss_echo) echo "(d) RSS KiB per idle echo connection, $BIG_SUBS (lower is better)" ;;
    esac
}

FLAGGED=""
for rep in $(seq "$REPS"); do
    for s in $SERVERS; do
        note "rep $rep/$REPS: $s"
        measure "$s" >"$TMP/result.$s.$rep"
        echo "rep $rep $s: $(tr '\n' ' ' <"$TMP/result.$s.$rep")" >&2
    done
done

# cell SERVER KEY: "median (rep1, rep2, ...)", or n/a.
cell() {
    local m
    m=$(median "$1" "$2")
    [ "$m" = n/a ] && { echo n/a; return; }
    local reps
    reps=$(for rep in $(seq "$REPS"); do awk -v k="$2" '$1 == k { print $2 }' "$TMP/result.$1.$rep"; done |
        awk '{ printf "%s%s", (NR > 1 ? ", " : ""), ($1 + 0 >= 100 ? sprintf("%.0f", $1) : sprintf("%.2f", $1)) }')
    awk -v m="$m" -v r="$reps" 'BEGIN { printf (m + 0 >= 100 ? "%.0f" : "%.2f") " (%s)", m, r }'
}

echo
echo "Fan-out on loopback: $(uname -r), $CORES cores$([ ${#SERVER_PIN[@]} -gt 0 ] && echo ', server on core 0, load on core 1'), 64 B text published over $PUBLISH, DURATION=$DURATION, median (per rep) of REPS=$REPS"
echo
header="| metric |"
rule="| --- |"
for s in $SERVERS; do header="$header $s |"; rule="$rule ---: |"; done
has wsd && has fastws && { header="$header wsd/fastws |"; rule="$rule ---: |"; }
has wsd && has node && { header="$header wsd/node |"; rule="$rule ---: |"; }
echo "$header"
echo "$rule"
for key in "${ROWS[@]}"; do
    line="| $(label "$key") |"
    for s in $SERVERS; do line="$line $(cell "$s" "$key") |"; done
    if has wsd && has fastws; then line="$line $(ratio "$(median wsd "$key")" "$(median fastws "$key")") |"; fi
    if has wsd && has node; then line="$line $(ratio "$(median wsd "$key")" "$(median node "$key")") |"; fi
    echo "$line"
done
if [ -n "$FLAGGED" ]; then
    echo
    echo "Runs with errors or failures (see the notes above):$FLAGGED"
fi
