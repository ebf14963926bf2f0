# bench/lib.sh: sourced by the bench scripts. A scratch folder, and the one
# server process a script runs at a time: start it and wait until it
# listens, stop it by its PID. Then what the scripts read off a run: a
# field of `wsc bench --json`, RSS per idle connection, medians over the
# repetitions; and the setup both need: pinning, open files. Expects die()
# and note() from the script.

TMP=$(mktemp -d)
SERVER_PID=""
trap 'stop_server; rm -rf "$TMP"' EXIT
trap 'exit 130' INT TERM

# pin_cores: sets SERVER_PIN and LOAD_PIN, the prefixes that put the server
# on core 0 and the load generator on core 1, and CORES; the prefixes stay
# empty, with a note, without taskset or a second core.
pin_cores() {
    SERVER_PIN=()
    LOAD_PIN=()
    CORES=$(getconf _NPROCESSORS_ONLN 2>/dev/null || echo 1)
    if ! command -v taskset >/dev/null; then
        note "taskset not found (util-linux): running unpinned; figures are noisier"
    elif [ "$CORES" -lt 2 ]; then
        note "only $CORES core: running unpinned, server and load share it"
    else
        SERVER_PIN=(taskset -c 0)
        LOAD_PIN=(taskset -c 1)
    fi
}

# fit_files VAR: raises the open-file limit to the hard limit (N connections
# need N descriptors in the server and in the client), then lowers the
# connection count in the variable VAR, with a note, if it would not fit.
fit_files() {
    ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
    local n=${!1}
    if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt $((n + 200)) ]; then
        note "open-file limit $(ulimit -n) is below $1=$n; lowering it"
        printf -v "$1" '%s' $(( $(ulimit -n) - 200 ))
    fi
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# serve PORT LOG CMD...: starts CMD in the background (stderr to LOG) and
# waits, at most 10 s, until something listens on 127.0.0.1:PORT.
serve() {
    local port=$1 log=$2
    shift 2
    if port_open "$port"; then die "port $port is already in use"; fi
    "$@" 2>"$log" &
    SERVER_PID=$!
    for _ in $(seq 100); do
        port_open "$port" && return 0
        kill -0 "$SERVER_PID" 2>/dev/null || break
        sleep 0.1
    done
    cat "$log" >&2
    die "$1 did not start listening on port $port"
}

# stop_server: SIGTERM to the server we started, up to 5 s for it to exit
# (wsd shuts down gracefully), then SIGKILL.
stop_server() {
    if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill -TERM "$SERVER_PID" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    SERVER_PID=""
}

# field NAME FILE: a number from `wsc bench --json` output (keys are unique
# enough: "p99" does not match "p999").
field() { sed -n "s/^ *\"$1\": \([0-9.e+-]*\).*/\1/p" "$2" | head -n 1; }

rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }

# idle_rss PID URL N: how much the RSS of server PID grows per connection,
# in KiB, while `wsc bench --idle` holds N connections to URL (its JSON in
# $TMP/idle.json). Fails when the idle run had failures. Uses WSC,
# LOAD_PIN, HOLD, RUN_TIMEOUT and, when set, SOURCES and IDLE_FLAGS (more
# flags for the idle run, e.g. --compress).
idle_rss() {
    local pid=$1 url=$2 n=$3 rss0 rss1 idle_pid failed=0
    rss0=$(rss_kib "$pid")
    # shellcheck disable=SC2086 # IDLE_FLAGS: extra flags, word-split on purpose.
    timeout "$RUN_TIMEOUT" "${LOAD_PIN[@]}" "$WSC" bench --idle "$url" -c "$n" --hold "$HOLD" \
        ${SOURCES:+--sources "$SOURCES"} ${IDLE_FLAGS:-} --json >"$TMP/idle.json" 2>"$TMP/idle.err" &
    idle_pid=$!
    # Wait (bounded) until the server holds the connections, then let it settle.
    wait_fds "$pid" "$n" "$idle_pid" 300
    sleep 1
    rss1=$(rss_kib "$pid")
    wait "$idle_pid" || failed=1
    awk -v a="$rss0" -v b="$rss1" -v n="$n" 'BEGIN { printf "%.2f", (b - a) / n }'
    return "$failed"
}

# median NAME KEY: the median of KEY over the REPS repetitions' "key value"
# lines in $TMP/result.NAME.REP; n/a when none has it.
median() {
    for rep in $(seq "$REPS"); do
        awk -v k="$2" '$1 == k { print $2 }' "$TMP/result.$1.$rep"
    done | sort -g | awk '{ v[NR] = $1 } END {
        if (NR == 0) print "n/a"; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# wait_fds SERVER_PID N CLIENT_PID TRIES: waits (TRIES tenths of a second at
# most) until the server holds N open files, or the client has exited.
wait_fds() {
    local server=$1 n=$2 client=$3 tries=$4
    for _ in $(seq "$tries"); do
        [ "$(ls "/proc/$server/fd" | wc -l)" -ge "$n" ] && return 0
        kill -0 "$client" 2>/dev/null || return 0
        sleep 0.1
    done
}

# ratio A B: A/B to two decimals, or n/a when either is missing or zero.
ratio() {
    awk -v a="$1" -v b="$2" 'BEGIN { if (a + 0 > 0 && b + 0 > 0) printf "%.2f", a / b; else printf "n/a" }'
}
