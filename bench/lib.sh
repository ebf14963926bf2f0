# bench/lib.sh: sourced by the bench scripts. A scratch folder, and the one
# server process a script runs at a time: start it and wait until it
# listens, stop it by its PID. Expects die() from the script.

TMP=$(mktemp -d)
SERVER_PID=""
trap 'stop_server; rm -rf "$TMP"' EXIT
trap 'exit 130' INT TERM

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
