#!/usr/bin/env bash
# bench/deflate.sh: what permessage-deflate costs and saves in wsd, off
# against on in the same sitting, on loopback, measured with `wsc bench`
# (--payload json: feed-like JSON whose numbers change, not repeated letters).
#
#   bench/deflate.sh                          # REPS=3 DURATION=5s
#   REPS=1 DURATION=2s bench/deflate.sh       # a quick look
#
# Scenarios, each on a freshly started wsd (one worker, pinned to core 0;
# the load on core 1):
#   echo-64B, echo-16KiB: ECHO_CONNS connections, INFLIGHT messages each in
#     flight, JSON messages of that size; "on" means the server and wsc bench
#     --compress both compress (level 1, the server's default min_size 128 B).
#   broadcast: BIG_SUBS subscribers (--compress for "on"), 64 B JSON
#     published by HTTP at BIG_RATE/s; "on" is the default min_size (64 B
#     messages then go uncompressed), "on, min_size 0" compresses every
#     publication once for all subscribers, "ctx" (context takeover, with
#     CONTEXT_SUBS subscribers) makes every subscriber compress for itself.
#   memory: server RSS per connection with compression on, idle (agreed,
#     nothing sent yet) and active (each connection sending 1 KiB JSON once
#     a second, so its inflater and the server's context live).
# Figures: the server's CPU time (utime + stime of its process) per message
# (echo: per message received; broadcast: per delivery queued, from its own
# counters; sampled over the middle of the run, see broadcast_run) and the
# bytes on the wire per message: what crossed the loopback
# interface in both directions (/proc/net/dev), frame and TCP/IP headers
# included, so keep the machine's other loopback traffic quiet.
#
# Environment: ONLY ("echo broadcast memory": the scenarios to run), REPS
# (3), DURATION (5s, whole seconds), WARMUP (1s), ECHO_CONNS (50),
# CONTEXT_SUBS (1000, the context-takeover broadcast's subscribers),
# INFLIGHT (4), BIG_SUBS (10000), BIG_RATE (10), MEM_CONNS (2000), PORT
# (19031), SOURCES (8), RUN_TIMEOUT (180), WSD and WSC (default
# target/release/).
set -euo pipefail
cd "$(dirname "$0")/.."

REPS=${REPS:-3}
DURATION=${DURATION:-5s}
WARMUP=${WARMUP:-1s}
ECHO_CONNS=${ECHO_CONNS:-50}
INFLIGHT=${INFLIGHT:-4}
BIG_SUBS=${BIG_SUBS:-10000}
BIG_RATE=${BIG_RATE:-10}
MEM_CONNS=${MEM_CONNS:-2000}
PORT=${PORT:-19031}
SOURCES=${SOURCES:-8}
RUN_TIMEOUT=${RUN_TIMEOUT:-180}
HOLD=${HOLD:-3s}
ONLY=${ONLY:-"echo broadcast memory"}
# Subscribers of the context-takeover broadcast: each holds its own
# compressor (about 300 KiB), so 10,000 of them would need 3 GiB and more
# CPU than the one core has; empty skips it.
CONTEXT_SUBS=${CONTEXT_SUBS:-1000}
CHANNEL=bench

die() { echo "bench/deflate.sh: $*" >&2; exit 1; }
note() { echo "# $*" >&2; }

# shellcheck source=bench/lib.sh
. bench/lib.sh

if [ -z "${WSD:-}" ] || [ -z "${WSC:-}" ]; then
    note "building wsd and wsc (release)"
    cargo build --release --locked --bin wsd --bin wsc >&2
fi
WSD=${WSD:-target/release/wsd}
WSC=${WSC:-target/release/wsc}
pin_cores
fit_files BIG_SUBS

# config NAME EXTRA: bench/wsd-fanout.toml plus EXTRA TOML, as $TMP/NAME.toml.
config() {
    { cat bench/wsd-fanout.toml; printf '%b\n' "$2"; } >"$TMP/$1.toml"
}
config off ''
config on '[session]\ncompression = "on"'
config on0 '[session]\ncompression = "on"\n[session.deflate]\nmin_size = 0'
config ctx '[session]\ncompression = "on"\n[session.deflate]\nmin_size = 0\nserver_context_takeover = true'

start() { # config
    serve "$PORT" "$TMP/wsd.log" "${SERVER_PIN[@]}" "$WSD" --config "$TMP/$1.toml" --bind "127.0.0.1:$PORT"
}

# CPU ticks (utime + stime) and bytes written of the server.
ticks() { awk '{ print $14 + $15 }' "/proc/$SERVER_PID/stat"; }
# Bytes through the loopback interface (both directions, TCP/IP headers
# included): socket writes do not show in /proc/PID/io.
wchar() { awk '$1 == "lo:" { print $10 }' /proc/net/dev; }
metric() { # NAME: a counter from /metrics (0 when absent)
    local v
    v=$(exec 3<>"/dev/tcp/127.0.0.1/$PORT" && printf 'GET /metrics HTTP/1.0\r\n\r\n' >&3 &&
        awk -v m="$1" '$1 == m { print $2 }' <&3)
    echo "${v:-0}"
}
HZ=$(getconf CLK_TCK)

# measure NAME COUNTER CMD...: runs CMD against the running server and prints
# "cpu_us NAME value" and "bytes NAME value", per unit of COUNTER.
measure() {
    local name=$1 counter=$2 t0 w0 c0 t1 w1 c1
    shift 2
    t0=$(ticks); w0=$(wchar); c0=$(metric "$counter")
    timeout "$RUN_TIMEOUT" "${LOAD_PIN[@]}" "$@" --json >"$TMP/$name.json" 2>"$TMP/$name.err" ||
        note "$name: wsc bench reported errors: $(grep -A2 error_samples "$TMP/$name.json" | tr -d '\n' | head -c 300)"
    # Sessions add their counters to the shared ones on each heartbeat and
    # when they end; the runs close every connection, so wait for that.
    for _ in $(seq 50); do [ "$(metric wsd_sessions_active)" = 0 ] && break; sleep 0.1; done
    t1=$(ticks); w1=$(wchar); c1=$(metric "$counter")
    awk -v n="$name" -v dt=$((t1 - t0)) -v dw=$((w1 - w0)) -v dc="$(awk -v a="$c0" -v b="$c1" 'BEGIN { print b - a }')" -v hz="$HZ" \
        'BEGIN { if (dc <= 0) { print "cpu_us", n, "n/a"; print "bytes", n, "n/a"; exit }
                 printf "cpu_us %s %.3f\nbytes %s %.1f\n", n, dt / hz * 1e6 / dc, n, dw / dc }'
}

echo_run() { # name size compress
    local flags=()
    [ "$3" = on ] && flags=(--compress)
    measure "$1" wsd_messages_received_total "$WSC" bench "ws://127.0.0.1:$PORT/" -c "$ECHO_CONNS" \
        --inflight "$INFLIGHT" -d "$DURATION" --warmup "$WARMUP" --size "$2" --payload json \
        --expect-prefix "Server received: " "${flags[@]}"
}

# broadcast_run NAME COMPRESS: a fan-out run, sampled in its middle: the
# server's CPU, its deliveries and the loopback bytes over DURATION/2 once
# deliveries flow, so connecting 10,000 subscribers is not counted.
broadcast_run() {
    local name=$1 flags=() pid d0 t0 w0 t1 w1 d1 half
    [ "$2" = on ] && flags=(--compress)
    timeout "$RUN_TIMEOUT" "${LOAD_PIN[@]}" "$WSC" bench --fanout "ws://127.0.0.1:$PORT/channels/$CHANNEL" \
        --publish-url "http://127.0.0.1:$PORT/channels/$CHANNEL" -c "$BIG_SUBS" --rate "$BIG_RATE" \
        -d "$DURATION" --warmup "$WARMUP" --size 64 --payload json --sources "$SOURCES" "${flags[@]}" \
        --json >"$TMP/$name.json" 2>"$TMP/$name.err" &
    pid=$!
    # Wait (bounded) until every subscriber is subscribed (the connections'
    # ramp must not be counted), then past the warm-up.
    for _ in $(seq 600); do
        [ "$(metric wsd_subscriptions_active)" -ge "$BIG_SUBS" ] && break
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    sleep "${WARMUP%s}"
    half=$(awk -v d="${DURATION%s}" 'BEGIN { print d / 2 }')
    t0=$(ticks); w0=$(wchar); d0=$(metric wsd_deliveries_total)
    sleep "$half"
    t1=$(ticks); w1=$(wchar); d1=$(metric wsd_deliveries_total)
    wait "$pid" || note "$name: wsc bench reported errors: $(grep -A2 error_samples "$TMP/$name.json" | tr -d '\n' | head -c 300)"
    awk -v n="$name" -v dt=$((t1 - t0)) -v dw=$((w1 - w0)) -v d0="$d0" -v d1="$d1" -v hz="$HZ" -v h="$half" \
        'BEGIN { dc = d1 - d0; if (dc <= 0) { print "cpu_us", n, "n/a"; print "bytes", n, "n/a"; exit }
                 printf "cpu_us %s %.3f\nbytes %s %.1f\ndps %s %.0f\n", n, dt / hz * 1e6 / dc, n, dw / dc, n, dc / h }'
}

# RSS per connection while MEM_CONNS connections send 1 KiB JSON at 1/s each.
active_rss() {
    local rss0 rss1 pid
    rss0=$(rss_kib "$SERVER_PID")
    timeout "$RUN_TIMEOUT" "${LOAD_PIN[@]}" "$WSC" bench "ws://127.0.0.1:$PORT/" -c "$MEM_CONNS" \
        --rate "$MEM_CONNS" -d 4s --warmup 1s --size 1KiB --payload json --compress \
        --expect-prefix "Server received: " --sources "$SOURCES" --json >"$TMP/active.json" 2>&1 &
    pid=$!
    sleep 4
    rss1=$(rss_kib "$SERVER_PID")
    wait "$pid" || note "active: wsc bench reported errors"
    awk -v a="$rss0" -v b="$rss1" -v n="$MEM_CONNS" 'BEGIN { printf "%.2f", (b - a) / n }'
}

wants() { [[ " $ONLY " == *" $1 "* ]]; }
for rep in $(seq "$REPS"); do
    out="$TMP/result.all.$rep"
    : >"$out"
    if wants echo; then
        for size in 64 16KiB; do
            start off; echo_run "echo-$size-off" "$size" off >>"$out"; stop_server
            start on; echo_run "echo-$size-on" "$size" on >>"$out"; stop_server
        done
    fi
    if wants broadcast; then
        start off; broadcast_run broadcast-off off >>"$out"; stop_server
        start on; broadcast_run broadcast-on on >>"$out"; stop_server
        start on0; broadcast_run broadcast-on0 on >>"$out"; stop_server
        if [ -n "$CONTEXT_SUBS" ]; then
            start ctx; BIG_SUBS=$CONTEXT_SUBS broadcast_run broadcast-ctx on >>"$out"; stop_server
        fi
    fi
    if ! wants memory; then
        note "repetition $rep done"
        continue
    fi
    start on
    echo "rss idle-on $(IDLE_FLAGS=--compress idle_rss "$SERVER_PID" "ws://127.0.0.1:$PORT/" "$MEM_CONNS" || echo n/a)" >>"$out"
    stop_server
    start off
    echo "rss idle-off $(idle_rss "$SERVER_PID" "ws://127.0.0.1:$PORT/" "$MEM_CONNS" || echo n/a)" >>"$out"
    stop_server
    start on; echo "rss active-on $(active_rss)" >>"$out"; stop_server
    note "repetition $rep done"
done

# The median of each figure over the repetitions.
printf '| figure | scenario | median | each repetition |\n| --- | --- | --- | --- |\n'
awk '{ print $1, $2 }' "$TMP/result.all.1" | while read -r kind name; do
    values=$(for rep in $(seq "$REPS"); do awk -v k="$kind" -v n="$name" '$1 == k && $2 == n { print $3 }' "$TMP/result.all.$rep"; done)
    median=$(echo "$values" | sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }')
    printf '| %s | %s | %s | %s |\n' "$kind" "$name" "$median" "$(echo "$values" | tr '\n' ' ')"
done
