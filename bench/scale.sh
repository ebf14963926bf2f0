#!/usr/bin/env bash
# bench/scale.sh: hold many idle connections on one wsd and watch what they
# cost: how many stay open, server CPU while idle (heartbeats only), and peak
# RSS. The load is spread over several `wsc bench --idle` processes, because
# each process (the server too) may open at most `ulimit -Hn` files.
#
#   bench/scale.sh                          # 19000 connections, held 60 s, 5 s heartbeat
#   CONNS=5000 HOLD=20s bench/scale.sh      # a quicker look
#
# Environment: CONNS (19000), CLIENTS (2 processes), HOLD (60s), PORT (19011).
set -euo pipefail
cd "$(dirname "$0")/.."

CONNS=${CONNS:-19000}
CLIENTS=${CLIENTS:-2}
HOLD=${HOLD:-60s}
PORT=${PORT:-19011}

die() { echo "bench/scale.sh: $*" >&2; exit 1; }
note() { echo "# $*" >&2; }
secs() { # "60s" / "2m" / "500ms" -> whole seconds (rounded up)
    case $1 in
        *ms) echo $(( (${1%ms} + 999) / 1000 )) ;;
        *s) echo "${1%s}" ;;
        *m) echo $(( ${1%m} * 60 )) ;;
        *) echo "$1" ;;
    esac
}

ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
PER_CLIENT=$(( (CONNS + CLIENTS - 1) / CLIENTS ))
[ "$PER_CLIENT" -lt "$(( $(ulimit -n) - 100 ))" ] ||
    die "$PER_CLIENT connections per client exceed the open-file limit $(ulimit -n); raise CLIENTS"

SERVER_PIN=()
LOAD_PIN=()
if command -v taskset >/dev/null && [ "$(getconf _NPROCESSORS_ONLN)" -ge 2 ]; then
    SERVER_PIN=(taskset -c 0)
    LOAD_PIN=(taskset -c 1)
fi
CLK_TCK=$(getconf CLK_TCK)

note "building (release)"
cargo build --release --locked --bin wsd --bin wsc >&2
WSD=$PWD/target/release/wsd
WSC=$PWD/target/release/wsc

TMP=$(mktemp -d)
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
    done
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The shipped defaults (5 s heartbeat, 10 s client timeout), room for CONNS.
cat >"$TMP/wsd.toml" <<EOF
[server]
bind = "127.0.0.1:$PORT"
max_connections = $(( CONNS + 100 ))
[log]
level = "warn"
EOF

"${SERVER_PIN[@]}" "$WSD" --config "$TMP/wsd.toml" 2>"$TMP/wsd.log" &
SERVER=$!
PIDS+=("$SERVER")
for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break
    kill -0 "$SERVER" 2>/dev/null || { cat "$TMP/wsd.log" >&2; die "wsd exited"; }
    sleep 0.1
done

rss_kib() { awk "/^$2:/ { print \$2 }" "/proc/$1/status"; }
ticks() { sed 's/.*) //' "/proc/$1/stat" | awk '{ print $12 + $13 }'; }
RSS0=$(rss_kib "$SERVER" VmRSS)

note "opening $CONNS connections from $CLIENTS processes, holding them $HOLD"
CLIENT_PIDS=()
for i in $(seq "$CLIENTS"); do
    timeout $(( $(secs "$HOLD") + 300 )) "${LOAD_PIN[@]}" "$WSC" bench --idle "ws://127.0.0.1:$PORT/" \
        -c "$PER_CLIENT" --hold "$HOLD" --json >"$TMP/client$i.json" 2>"$TMP/client$i.err" &
    CLIENT_PIDS+=($!)
    PIDS+=($!)
done

# Wait (bounded) until the server holds every connection.
READY=0
for _ in $(seq 600); do
    OPEN=$(( $(ls "/proc/$SERVER/fd" | wc -l) ))
    if [ "$OPEN" -ge "$CONNS" ]; then READY=1; break; fi
    sleep 0.1
done
[ "$READY" = 1 ] || note "only $OPEN descriptors open on the server after 60 s"

# Idle CPU over most of the hold (heartbeats are the only traffic).
WINDOW=$(( $(secs "$HOLD") * 3 / 4 ))
T0=$(ticks "$SERVER")
sleep "$WINDOW"
T1=$(ticks "$SERVER")
RSS1=$(rss_kib "$SERVER" VmRSS)

STATUS=0
for pid in "${CLIENT_PIDS[@]}"; do wait "$pid" || STATUS=1; done
HWM=$(rss_kib "$SERVER" VmHWM)

HELD=0
FAILED=0
for i in $(seq "$CLIENTS"); do
    HELD=$(( HELD + $(sed -n 's/^ *"held_open": \([0-9]*\).*/\1/p' "$TMP/client$i.json" | head -n 1) ))
    FAILED=$(( FAILED + $(sed -n 's/^ *"failed": \([0-9]*\).*/\1/p' "$TMP/client$i.json" | head -n 1) ))
done

awk -v conns="$CONNS" -v held="$HELD" -v failed="$FAILED" -v t0="$T0" -v t1="$T1" -v hz="$CLK_TCK" \
    -v window="$WINDOW" -v rss0="$RSS0" -v rss1="$RSS1" -v hwm="$HWM" 'BEGIN {
    printf "| connections opened | %d |\n", conns
    printf "| held open through the hold | %d |\n", held
    printf "| failures | %d |\n", failed
    printf "| server CPU while idle (%% of one core, over %d s) | %.2f |\n", window, (t1 - t0) / hz / window * 100
    printf "| server RSS with all open (KiB) | %d |\n", rss1
    printf "| RSS per connection (KiB) | %.2f |\n", (rss1 - rss0) / conns
    printf "| peak RSS, VmHWM (KiB) | %d |\n", hwm
}'
exit "$STATUS"
