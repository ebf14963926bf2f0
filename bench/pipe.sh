#!/usr/bin/env bash
# bench/pipe.sh: wsc in a pipeline, `cat lines | wsc URL > out`, against an
# echo server on loopback, next to websocat 1.14 (`websocat -t`) on the same
# pipe in the same sitting. Prints a Markdown table.
#
#   bench/pipe.sh                              # REPS=5, 100,000 lines of 64 B
#   WSC_BEFORE=/tmp/old/wsc bench/pipe.sh      # also time another wsc build
#
# For each client and repetition: lines/s through the pipe (every reply
# counted and compared with the input: a run that loses one is marked
# LOST), then the time from start to exit for one line, and for one line of
# 10 MiB. The server (release wsd, a pure echo) is pinned to core 0 and the
# client to core 1 when taskset (util-linux) and two cores are there.
#
# websocat: the one on PATH if it is 1.14, else $TOOLS/bin/websocat, else
# it is installed there with `cargo install websocat --version 1.14.0`
# (not --locked: its lock file pins a traitobject that today's rustc
# rejects). SKIP_WEBSOCAT=1 leaves it out.
#
# Environment: REPS (5), LINES (100000), SIZE (64, bytes per line before
# the newline), PORT (19011), WSC (default target/release/wsc, built here),
# WSC_BEFORE (unset), WEBSOCAT, TOOLS (${TMPDIR:-/tmp}/wsd-bench-tools),
# START_REPS (20, runs of the one-line timing), RUN_TIMEOUT (120 s, bound on
# any one client run).
set -euo pipefail
cd "$(dirname "$0")/.."

REPS=${REPS:-5}
LINES=${LINES:-100000}
SIZE=${SIZE:-64}
PORT=${PORT:-19011}
START_REPS=${START_REPS:-20}
RUN_TIMEOUT=${RUN_TIMEOUT:-120}
TOOLS=${TOOLS:-${TMPDIR:-/tmp}/wsd-bench-tools}
BIG=$((10 << 20))

die() { echo "bench/pipe.sh: $*" >&2; exit 1; }
note() { echo "# $*" >&2; }

for tool in cargo awk sort cmp timeout head wc; do
    command -v "$tool" >/dev/null || die "needs $tool"
done
[ -n "${EPOCHREALTIME:-}" ] || die "needs bash 5 (EPOCHREALTIME)"

SERVER_PIN=()
CLIENT_PIN=()
if command -v taskset >/dev/null && [ "$(getconf _NPROCESSORS_ONLN)" -ge 2 ]; then
    SERVER_PIN=(taskset -c 0)
    CLIENT_PIN=(taskset -c 1)
else
    note "running unpinned (no taskset, or one core): figures are noisier"
fi

note "building wsd and wsc (release)"
cargo build --release --locked --bin wsd --bin wsc >&2
WSD=$PWD/target/release/wsd
WSC=${WSC:-$PWD/target/release/wsc}

CLIENTS=("wsc=$WSC")
if [ -n "${WSC_BEFORE:-}" ]; then
    [ -x "$WSC_BEFORE" ] || die "WSC_BEFORE=$WSC_BEFORE is not executable"
    CLIENTS+=("wsc-before=$WSC_BEFORE")
fi
if [ "${SKIP_WEBSOCAT:-0}" != 1 ]; then
    if [ -z "${WEBSOCAT:-}" ]; then
        if command -v websocat >/dev/null && websocat --version 2>/dev/null | grep -q ' 1\.14\.'; then
            WEBSOCAT=$(command -v websocat)
        else
            WEBSOCAT=$TOOLS/bin/websocat
            if [ ! -x "$WEBSOCAT" ]; then
                note "installing websocat 1.14.0 into $TOOLS (a few minutes, once)"
                cargo install websocat --version 1.14.0 --root "$TOOLS" >&2
            fi
        fi
    fi
    CLIENTS+=("websocat=$WEBSOCAT")
fi

# TMP, serve, stop_server; stops the server and removes TMP on exit.
# shellcheck source=bench/lib.sh
. bench/lib.sh

# A pure echo with room for the 10 MiB line and a short shutdown.
cat >"$TMP/wsd.toml" <<EOF
[server]
bind = "127.0.0.1:$PORT"
shutdown_timeout = "1s"
[session]
reply_prefix = ""
max_message_size = "16MiB"
[log]
level = "warn"
EOF

serve "$PORT" "$TMP/wsd.log" "${SERVER_PIN[@]}" "$WSD" --config "$TMP/wsd.toml"
URL="ws://127.0.0.1:$PORT/"

# LINES distinct lines of SIZE bytes: a number, then padding.
awk -v n="$LINES" -v size="$SIZE" 'BEGIN {
    pad = sprintf("%*s", size, ""); gsub(/ /, "x", pad)
    for (i = 1; i <= n; i++) { s = i " " pad; print substr(s, 1, size) }
}' >"$TMP/lines"
echo hello >"$TMP/one"
head -c "$BIG" /dev/zero | tr '\0' 'y' >"$TMP/big"
echo >>"$TMP/big"

client_cmd() { # name path input -> the command line for that client
    case $1 in
        # websocat reads at most -B bytes (64 KiB) as one message.
        websocat*) if [ "$3" = "$TMP/big" ]; then echo "$2 -t -B $((BIG + 1024)) $URL"; else echo "$2 -t $URL"; fi ;;
        *) echo "$2 $URL" ;;
    esac
}

# run NAME PATH INPUT: seconds from start to exit (6 decimals) on stdout;
# the replies in $TMP/out.
run() {
    local cmd start end
    cmd=$(client_cmd "$1" "$2" "$3")
    start=$EPOCHREALTIME
    # shellcheck disable=SC2086 # cmd is split on purpose
    timeout "$RUN_TIMEOUT" "${CLIENT_PIN[@]}" $cmd <"$3" >"$TMP/out" 2>"$TMP/err" || true
    end=$EPOCHREALTIME
    awk -v s="$start" -v e="$end" 'BEGIN { printf "%.6f\n", e - s }'
}

median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

note "server: wsd (release, reply_prefix = \"\") on $URL; $LINES lines of $SIZE B; REPS=$REPS"
echo "| client | lines/s (median) | each repetition | one line, start to exit (ms, median of $START_REPS) | one 10 MiB line (ms, median of 3) |"
echo "| --- | ---: | --- | ---: | ---: |"
for entry in "${CLIENTS[@]}"; do
    name=${entry%%=*}
    path=${entry#*=}
    rates=()
    for _ in $(seq "$REPS"); do
        secs=$(run "$name" "$path" "$TMP/lines")
        got=$(wc -l <"$TMP/out")
        rate=$(awk -v n="$LINES" -v s="$secs" 'BEGIN { printf "%.0f", n / s }')
        if [ "$got" -eq "$LINES" ] && cmp -s "$TMP/lines" "$TMP/out"; then
            rates+=("$rate")
        else
            rates+=("${rate}(LOST:$((LINES - got)))")
            note "$name: $got of $LINES replies; stderr: $(head -c 300 "$TMP/err")"
        fi
    done
    median_rate=$(printf '%s\n' "${rates[@]}" | sed 's/(.*//' | median)
    starts=()
    for _ in $(seq "$START_REPS"); do
        starts+=("$(run "$name" "$path" "$TMP/one")")
        [ "$(cat "$TMP/out")" = hello ] || note "$name: one line: got $(head -c 100 "$TMP/out")"
    done
    start_ms=$(printf '%s\n' "${starts[@]}" | median | awk '{ printf "%.1f", $1 * 1000 }')
    bigs=()
    for _ in 1 2 3; do
        bigs+=("$(run "$name" "$path" "$TMP/big")")
        cmp -s "$TMP/big" "$TMP/out" || note "$name: the 10 MiB line came back different ($(wc -c <"$TMP/out") bytes)"
    done
    big_ms=$(printf '%s\n' "${bigs[@]}" | median | awk '{ printf "%.0f", $1 * 1000 }')
    echo "| $name | $median_rate | ${rates[*]} | $start_ms | $big_ms |"
done
