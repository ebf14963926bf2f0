#!/usr/bin/env bash
# bench/pusher.sh: wsd's Pusher mode against sockudo (a Pusher-compatible
# server in Rust), in the same sitting, on loopback, both measured with
# `wsc bench --fanout --pusher`: Pusher protocol 7 subscribers on one public
# channel, publications triggered through the signed HTTP API
# (POST /apps/ID/events), every delivery checked. Prints a Markdown table:
# the median over REPS repetitions, each repetition's value beside it, and
# the wsd/sockudo ratio.
#
#   SOCKUDO=/path/to/sockudo bench/pusher.sh              # REPS=3 DURATION=10s
#   SOCKUDO=... REPS=1 DURATION=4s bench/pusher.sh        # a quick look
#   SERVERS=wsd bench/pusher.sh                           # wsd alone
#
# sockudo is not built by this script: build it beside the project, e.g. in
# a checkout of github.com/sockudo/sockudo (needs protobuf-compiler),
# `cargo build --release --no-default-features --features local`, and give
# the binary as SOCKUDO. It runs on its defaults (no config file: its
# working directory is a scratch folder) with the app, the port and what
# would stop the bench set through its environment: no rate limits, room for
# the connections, metrics off.
#
# Scenarios, each on a freshly started server pinned to core 0 (wsd: one
# worker; sockudo: its tokio runtime, all threads on that core), the load on
# core 1, 64 B publications, for each N in SUBS (1000 and 10000): N
# subscribers at RATE_N publications/s (RATE_1000, RATE_10000: the same
# deliveries per second), for DURATION after WARMUP. Sampled in the middle
# of the run, once every subscriber is connected and past the warm-up, over
# DURATION/2: the server's CPU time (utime + stime from /proc/PID/stat) and
# its RSS growth over the RSS it had before the run. Figures: deliveries/s
# (the bench's count), p99 publish-to-delivery latency, deliveries per
# CPU-second of the server (deliveries/s x window / CPU seconds in it), and
# RSS KiB per subscribed connection with the traffic flowing.
#
# Environment: SOCKUDO (the sockudo binary; needed when SERVERS has it),
# SERVERS ("wsd sockudo"), REPS (3), DURATION (10s, whole seconds), WARMUP
# (2s), DRAIN (2s), SUBS ("1000 10000"), RATE_1000 (200), RATE_10000 (20),
# SOURCES (8 source addresses 127.0.0.x), WSD_PORT (19041), SOCKUDO_PORT
# (19042), RUN_TIMEOUT (180 s per run), WSD and WSC (default
# target/release/, built when unset).
set -euo pipefail
cd "$(dirname "$0")/.."

SERVERS=${SERVERS:-"wsd sockudo"}
REPS=${REPS:-3}
DURATION=${DURATION:-10s}
WARMUP=${WARMUP:-2s}
DRAIN=${DRAIN:-2s}
SUBS=${SUBS:-"1000 10000"}
RATE_1000=${RATE_1000:-200}
RATE_10000=${RATE_10000:-20}
SOURCES=${SOURCES:-8}
WSD_PORT=${WSD_PORT:-19041}
SOCKUDO_PORT=${SOCKUDO_PORT:-19042}
RUN_TIMEOUT=${RUN_TIMEOUT:-180}
APP_ID=1
APP_KEY=bench-key
APP_SECRET=bench-secret-0123456789
CHANNEL=bench

die() { echo "bench/pusher.sh: $*" >&2; exit 1; }
note() { echo "# $*" >&2; }

for tool in awk sed getconf timeout; do
    command -v "$tool" >/dev/null || die "needs $tool"
done
has() { [[ " $SERVERS " == *" $1 "* ]]; }
for s in $SERVERS; do
    case $s in wsd | sockudo) ;; *) die "unknown server $s (wsd, sockudo)" ;; esac
done
if has sockudo; then
    [ -n "${SOCKUDO:-}" ] || die "SOCKUDO must name the sockudo binary (see the header for how to build it)"
    [ -x "$SOCKUDO" ] || die "SOCKUDO=$SOCKUDO is not an executable"
    SOCKUDO=$(cd "$(dirname "$SOCKUDO")" && pwd)/$(basename "$SOCKUDO")
fi

# TMP, serve, stop_server, pin_cores, fit_files, field, rss_kib, median;
# stops the server and removes TMP on exit.
# shellcheck source=bench/lib.sh
. bench/lib.sh

if [ -z "${WSD:-}" ] || [ -z "${WSC:-}" ]; then
    note "building wsd and wsc (release)"
    cargo build --release --locked --bin wsd --bin wsc >&2
fi
WSD=$(realpath "${WSD:-target/release/wsd}")
WSC=$(realpath "${WSC:-target/release/wsc}")
"$WSC" bench --help 2>/dev/null | grep -q -- --pusher || die "$WSC has no 'bench --fanout --pusher'"
pin_cores
MAX_SUBS=$(printf '%s\n' $SUBS | sort -n | tail -n 1)
fit_files MAX_SUBS

# wsd: bench/wsd-fanout.toml (the shipped defaults, one worker, room for the
# connections, quiet logs) plus the app.
{
    cat bench/wsd-fanout.toml
    printf '\n[[pusher.app]]\nid = %s\nkey = "%s"\nsecret = "%s"\n' "$APP_ID" "$APP_KEY" "$APP_SECRET"
} >"$TMP/wsd.toml"
mkdir -p "$TMP/sockudo"

port_of() { case $1 in wsd) echo "$WSD_PORT" ;; sockudo) echo "$SOCKUDO_PORT" ;; esac; }

start_server() { # name
    local port
    port=$(port_of "$1")
    case $1 in
        wsd) serve "$port" "$TMP/wsd.log" "${SERVER_PIN[@]}" "$WSD" --config "$TMP/wsd.toml" --bind "127.0.0.1:$port" ;;
        sockudo)
            # env -C: its working directory holds no config/, so it runs on
            # its defaults plus these (env and taskset exec: SERVER_PID is
            # sockudo's). It logs on stdout, kept out of the table.
            serve "$port" "$TMP/sockudo.log" env -C "$TMP/sockudo" HOST=127.0.0.1 PORT="$port" \
                DEBUG=false RUST_LOG=warn METRICS_ENABLED=false RATE_LIMITER_ENABLED=false \
                ADAPTER_DRIVER=local APP_MANAGER_DRIVER=memory CACHE_DRIVER=memory QUEUE_DRIVER=memory \
                SOCKUDO_DEFAULT_APP_ID="$APP_ID" SOCKUDO_DEFAULT_APP_KEY="$APP_KEY" \
                SOCKUDO_DEFAULT_APP_SECRET="$APP_SECRET" SOCKUDO_DEFAULT_APP_ENABLED=true \
                SOCKUDO_DEFAULT_APP_MAX_CONNECTIONS=1000000 \
                SOCKUDO_DEFAULT_APP_MAX_BACKEND_EVENTS_PER_SECOND=1000000 \
                "${SERVER_PIN[@]}" "$SOCKUDO" >"$TMP/sockudo.out"
            ;;
    esac
}

HZ=$(getconf CLK_TCK)
ticks() { awk '{ print $14 + $15 }' "/proc/$SERVER_PID/stat"; }

# run SERVER N RATE: one fan-out run of N subscribers at RATE, sampled in
# its middle; prints "key value" lines (dps, p99, dpc, rss).
run() {
    local s=$1 n=$2 rate=$3 port name pid rss0 rss1 t0 t1 half
    port=$(port_of "$s")
    name="$s.$n"
    rss0=$(rss_kib "$SERVER_PID")
    timeout "$RUN_TIMEOUT" "${LOAD_PIN[@]}" "$WSC" bench --fanout "ws://127.0.0.1:$port" \
        --pusher "$APP_KEY:$APP_SECRET:$APP_ID" --pusher-channel "$CHANNEL" -c "$n" --rate "$rate" \
        -d "$DURATION" --warmup "$WARMUP" --drain "$DRAIN" --size 64 --sources "$SOURCES" \
        --json >"$TMP/$name.json" 2>"$TMP/$name.err" &
    pid=$!
    # Wait (bounded) until the server holds every subscriber, then past the
    # probes and the warm-up: the ramp is not what is measured.
    wait_fds "$SERVER_PID" "$n" "$pid" 600
    sleep "$(awk -v w="${WARMUP%s}" 'BEGIN { print w + 1 }')"
    half=$(awk -v d="${DURATION%s}" 'BEGIN { print d / 2 }')
    t0=$(ticks)
    sleep "$half"
    t1=$(ticks)
    rss1=$(rss_kib "$SERVER_PID")
    if ! wait "$pid"; then
        note "$name: wsc bench reported errors or failures:"
        sed -n 's/^ *"\(errors\|lost\|duplicate\|out_of_order\|dropped\|connect_failures\)": \(.*\)/#   \1: \2/p' "$TMP/$name.json" >&2
        grep -A3 error_samples "$TMP/$name.json" | sed 's/^/#   /' >&2 || true
        FLAGGED="$FLAGGED $name"
    fi
    local dps p99
    dps=$(field deliveries_per_sec "$TMP/$name.json")
    p99=$(field p99 "$TMP/$name.json")
    awk -v n="$n" -v dps="${dps:-0}" -v p99="${p99:-0}" -v dt=$((t1 - t0)) -v hz="$HZ" -v h="$half" \
        -v r0="$rss0" -v r1="$rss1" 'BEGIN {
            printf "dps_%s %.0f\np99_%s %s\n", n, dps, n, p99
            if (dt > 0 && dps > 0) printf "dpc_%s %.0f\n", n, dps * h / (dt / hz)
            printf "rss_%s %.2f\n", n, (r1 - r0) / n }'
}

FLAGGED=""
for rep in $(seq "$REPS"); do
    for s in $SERVERS; do
        out="$TMP/result.$s.$rep"
        : >"$out"
        for n in $SUBS; do
            rate_var="RATE_$n"
            rate=${!rate_var:-$((200000 / n))}
            start_server "$s"
            run "$s" "$n" "$rate" >>"$out"
            stop_server
        done
        echo "rep $rep $s: $(tr '\n' ' ' <"$out")" >&2
    done
done

# cell SERVER KEY: "median (rep1, rep2, ...)", or n/a.
cell() {
    local m reps
    m=$(median "$1" "$2")
    [ "$m" = n/a ] && { echo n/a; return; }
    reps=$(for rep in $(seq "$REPS"); do awk -v k="$2" '$1 == k { print $2 }' "$TMP/result.$1.$rep"; done |
        awk '{ printf "%s%s", (NR > 1 ? ", " : ""), ($1 + 0 >= 100 ? sprintf("%.0f", $1) : sprintf("%.2f", $1)) }')
    awk -v m="$m" -v r="$reps" 'BEGIN { printf (m + 0 >= 100 ? "%.0f" : "%.2f") " (%s)", m, r }'
}

echo
echo "Pusher fan-out on loopback: $(uname -r), $CORES cores$([ ${#SERVER_PIN[@]} -gt 0 ] && echo ', server on core 0, load on core 1'), 64 B publications triggered by signed HTTP POST, DURATION=$DURATION, median (per rep) of REPS=$REPS"
echo
header="| metric |"
rule="| --- |"
for s in $SERVERS; do header="$header $s |"; rule="$rule ---: |"; done
has wsd && has sockudo && { header="$header wsd/sockudo |"; rule="$rule ---: |"; }
echo "$header"
echo "$rule"
for n in $SUBS; do
    rate_var="RATE_$n"
    rate=${!rate_var:-$((200000 / n))}
    for key in dps dpc p99 rss; do
        case $key in
            dps) label="deliveries/s, $n subscribers at $rate pub/s" ;;
            dpc) label="deliveries per server CPU-second, $n subscribers (higher is better)" ;;
            p99) label="p99 µs, $n subscribers (lower is better)" ;;
            rss) label="RSS KiB per subscribed connection, $n (lower is better)" ;;
        esac
        line="| $label |"
        for s in $SERVERS; do line="$line $(cell "$s" "${key}_$n") |"; done
        has wsd && has sockudo && line="$line $(ratio "$(median wsd "${key}_$n")" "$(median sockudo "${key}_$n")") |"
        echo "$line"
    done
done
if [ -n "$FLAGGED" ]; then
    echo
    echo "Runs with errors or failures (see the notes above):$FLAGGED"
fi
