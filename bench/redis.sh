#!/usr/bin/env bash
# bench/redis.sh: what crossing Redis costs. The same fan-out (SUBS
# subscribers, 64 B publications at RATE/s over HTTP, every delivery
# checked by `wsc bench --fanout`) three ways, in one sitting:
#   memory  one wsd with the in-memory engine, publish to it;
#   local   wsd A with the Redis engine, subscribers and publisher on A
#           (every publication goes through Redis and back);
#   cross   wsd A, B, C sharing one Redis: subscribers on B, publisher on A;
#   socketio  the same across three Socket.IO 4 servers with the official
#           Redis adapter (bench/peers/socketio-redis), the scale-out peer.
# Prints publish-to-delivery p50/p99 and deliveries/s (medians over REPS),
# and the CPU seconds that Redis and the wsd instances used per run, so it
# shows whether wsd or Redis is the bottleneck.
#
#   bench/redis.sh                      # REPS=3 DURATION=10s SUBS=1000 RATE=1000
#   REPS=1 DURATION=3s bench/redis.sh   # a quick look
#
# Needs redis-server on PATH (apt-get install redis-server), the Rust
# toolchain, node + npm (npm ci fetches the peer's pinned packages once), and
# taskset (util-linux): the servers on core 0, the load on
# core 1. Only processes this script started are stopped, by PID.
#
# Environment: REPS (3), DURATION (10s), WARMUP (2s), DRAIN (2s), SUBS
# (1000), RATE (1000), BASE_PORT (19031; Redis on it, wsd A-C above it),
# RUN_TIMEOUT (120), WSD and WSC (default target/release/).
set -euo pipefail
cd "$(dirname "$0")/.."

REPS=${REPS:-3}
DURATION=${DURATION:-10s}
WARMUP=${WARMUP:-2s}
DRAIN=${DRAIN:-2s}
SUBS=${SUBS:-1000}
RATE=${RATE:-1000}
BASE_PORT=${BASE_PORT:-19031}
RUN_TIMEOUT=${RUN_TIMEOUT:-120}
SOURCES=${SOURCES:-4}
CHANNEL=bench

die() { echo "bench/redis.sh: $*" >&2; exit 1; }
note() { echo "# $*" >&2; }

for tool in cargo awk sed timeout redis-server; do
    command -v "$tool" >/dev/null || die "needs $tool (redis-server: apt-get install redis-server)"
done

# shellcheck source=bench/lib.sh
. bench/lib.sh
pin_cores
fit_files SUBS

if [ -z "${WSD:-}" ] || [ -z "${WSC:-}" ]; then
    note "building wsd and wsc (release)"
    cargo build --release --locked --bins >&2
fi
WSD=${WSD:-target/release/wsd}
WSC=${WSC:-target/release/wsc}
if [ ! -d bench/peers/socketio-redis/node_modules ]; then
    note "installing the Socket.IO peer's pinned packages (npm ci)"
    (cd bench/peers/socketio-redis && npm ci --no-audit --no-fund >&2)
fi

PIDS=()
trap 'for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done; wait 2>/dev/null; rm -rf "$TMP"' EXIT

REDIS_PORT=$BASE_PORT
# start_redis: a fresh redis-server that keeps nothing on disk.
start_redis() {
    if port_open "$REDIS_PORT"; then die "port $REDIS_PORT is already in use"; fi
    "${SERVER_PIN[@]}" redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" \
        --appendonly no --dir "$TMP" >"$TMP/redis.log" 2>&1 &
    REDIS_PID=$!
    PIDS+=("$REDIS_PID")
    for _ in $(seq 100); do port_open "$REDIS_PORT" && return 0; sleep 0.1; done
    die "redis-server did not start"
}

# start_wsd NAME PORT ENGINE: one wsd; its PID in WSD_PIDS[NAME].
declare -A WSD_PIDS
start_wsd() {
    local name=$1 port=$2 engine=$3 config="$TMP/$1.toml"
    cat >"$config" <<TOML
[server]
bind = "127.0.0.1:$port"
workers = 1
max_connections = 100000
shutdown_timeout = "2s"
[log]
level = "warn"
[engine]
kind = "$engine"
[engine.redis]
url = "redis://127.0.0.1:$REDIS_PORT"
TOML
    "${SERVER_PIN[@]}" "$WSD" --config "$config" 2>"$TMP/$name.log" &
    WSD_PIDS[$name]=$!
    PIDS+=("$!")
    for _ in $(seq 100); do
        curl -sf "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    cat "$TMP/$name.log" >&2
    die "wsd $name did not become healthy on port $port"
}

# start_socketio NAME PORT: one Socket.IO peer on the shared Redis.
start_socketio() {
    local name=$1 port=$2
    "${SERVER_PIN[@]}" node bench/peers/socketio-redis/server.js "127.0.0.1:$port" \
        "redis://127.0.0.1:$REDIS_PORT" 2>"$TMP/$name.log" &
    WSD_PIDS[$name]=$!
    PIDS+=("$!")
    for _ in $(seq 100); do port_open "$port" && return 0; sleep 0.1; done
    cat "$TMP/$name.log" >&2
    die "Socket.IO peer $name did not start on port $port"
}

stop_all() {
    for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do
        for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$p" 2>/dev/null || true
    done
    wait 2>/dev/null || true
    PIDS=()
    WSD_PIDS=()
}

# cpu_s PID: user+system CPU seconds the process used so far.
cpu_s() { awk -v hz="$(getconf CLK_TCK)" '{ printf "%.2f", ($14 + $15) / hz }' "/proc/$1/stat"; }

# run NAME SUB_URL PUB_PORT [ARGS]: one fan-out; "key value" lines on stdout.
run() {
    local name=$1 sub=$2 pub=$3 before_r before_w after_r after_w
    shift 3
    before_r=$(cpu_s "$REDIS_PID" 2>/dev/null || echo 0)
    before_w=0
    for p in "${WSD_PIDS[@]}"; do before_w=$(awk -v a="$before_w" -v b="$(cpu_s "$p")" 'BEGIN { print a + b }'); done
    timeout "$RUN_TIMEOUT" "${LOAD_PIN[@]}" "$WSC" bench --fanout "$sub" "$@" \
        --publish-url "http://127.0.0.1:$pub/channels/$CHANNEL" -c "$SUBS" --rate "$RATE" \
        -d "$DURATION" --warmup "$WARMUP" --drain "$DRAIN" --sources "$SOURCES" --json \
        >"$TMP/$name.json" 2>"$TMP/$name.err" || note "$name: wsc bench reported errors (lost $(field lost "$TMP/$name.json"))"
    after_r=$(cpu_s "$REDIS_PID" 2>/dev/null || echo 0)
    after_w=0
    for p in "${WSD_PIDS[@]}"; do after_w=$(awk -v a="$after_w" -v b="$(cpu_s "$p")" 'BEGIN { print a + b }'); done
    echo "p50 $(field p50 "$TMP/$name.json")"
    echo "p99 $(field p99 "$TMP/$name.json")"
    echo "dps $(field deliveries_per_sec "$TMP/$name.json")"
    echo "lost $(field lost "$TMP/$name.json")"
    echo "redis_cpu $(awk -v a="$before_r" -v b="$after_r" 'BEGIN { printf "%.2f", b - a }')"
    echo "wsd_cpu $(awk -v a="$before_w" -v b="$after_w" 'BEGIN { printf "%.2f", b - a }')"
}

A=$((BASE_PORT + 1)) B=$((BASE_PORT + 2)) C=$((BASE_PORT + 3))
for rep in $(seq "$REPS"); do
    start_redis
    start_wsd memory "$A" memory
    run memory "ws://127.0.0.1:$A/channels/$CHANNEL" "$A" >"$TMP/result.memory.$rep"
    stop_all

    start_redis
    start_wsd a "$A" redis
    run local "ws://127.0.0.1:$A/channels/$CHANNEL" "$A" >"$TMP/result.local.$rep"
    stop_all

    start_redis
    start_wsd a "$A" redis
    start_wsd b "$B" redis
    start_wsd c "$C" redis
    run cross "ws://127.0.0.1:$B/channels/$CHANNEL" "$A" >"$TMP/result.cross.$rep"
    stop_all

    start_redis
    start_socketio sa "$((BASE_PORT + 5))"
    start_socketio sb "$((BASE_PORT + 6))"
    start_socketio sc "$((BASE_PORT + 7))"
    run socketio "ws://127.0.0.1:$((BASE_PORT + 6))/socket.io/?EIO=4&transport=websocket&channel=$CHANNEL" \
        "$((BASE_PORT + 5))" --socketio >"$TMP/result.socketio.$rep"
    stop_all
    note "repetition $rep of $REPS done"
done

echo "| $SUBS subscribers, $RATE pub/s, 64 B, HTTP publish | memory | local (Redis) | cross (A -> Redis -> B) | Socket.IO cross | wsd cross / Socket.IO |"
echo "| --- | ---: | ---: | ---: | ---: | ---: |"
for key in p50 p99 dps lost redis_cpu wsd_cpu; do
    case $key in
        p50) label="p50 µs" ;; p99) label="p99 µs" ;; dps) label="deliveries/s" ;;
        lost) label="lost" ;; redis_cpu) label="Redis CPU s per run" ;; wsd_cpu) label="server CPU s per run (all instances)" ;;
    esac
    row="| $label"
    for name in memory local cross socketio; do
        vals=$(for rep in $(seq "$REPS"); do awk -v k="$key" '$1 == k { print $2 }' "$TMP/result.$name.$rep"; done | paste -sd/ -)
        row="$row | $(median "$name" "$key") ($vals)"
    done
    ratio=$(awk -v a="$(median cross "$key")" -v b="$(median socketio "$key")" 'BEGIN { if (b + 0 > 0) printf "%.2f", a / b; else print "n/a" }')
    echo "$row | $ratio |"
done
