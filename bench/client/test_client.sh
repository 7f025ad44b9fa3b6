#!/usr/bin/env bash
# Smoke test of lapps-bench-client: build it, start a fresh LAppS (2 workers, 127.0.0.1, a free
# port, its own config: /echo raw and /lapps_echo LAppS), run the client 2 s against /echo and
# 1 s with --lapps against /lapps_echo, and require errors=0 (and exit status 0) from both.
# Usage: bench/client/test_client.sh     (from anywhere; exit 0 = pass)
set -euo pipefail

REPO=$(cd "$(dirname "$0")/../.." && pwd)
CLIENT=$REPO/bench/client/lapps-bench-client
PY=$REPO/.venv/bin/python

make -s -C "$REPO" bench-client
[ -x "$PY" ] || make -s -C "$REPO" venv

TMP=$(mktemp -d /tmp/lapps-bench-client-test.XXXXXX)
SERVER_PID=
cleanup() {
    if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill -TERM "$SERVER_PID" 2>/dev/null || true          # graceful stop of the master
        for _ in $(seq 50); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$SERVER_PID" 2>/dev/null || true
    fi
    rm -rf "$TMP"
}
trap cleanup EXIT

PORT=$("$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
mkdir -p "$TMP/services"
cp -r "$REPO/services/echo" "$REPO/bench/services/lapps_echo" "$TMP/services/"
cat > "$TMP/lapps.toml" <<EOF
[server]
ip = "127.0.0.1"
port = $PORT
workers = 2
services_dir = "$TMP/services"
[admin]
port = 0
[services.echo]
protocol = "raw"
request_target = "/echo"
[services.lapps_echo]
protocol = "lapps"
request_target = "/lapps_echo"
EOF

(cd "$REPO" && exec "$PY" -m lapps --config "$TMP/lapps.toml") >"$TMP/server.log" 2>&1 &
SERVER_PID=$!

# Ready when an echo goes through (the client itself, one connection, a fraction of a second).
ready=
for _ in $(seq 100); do
    kill -0 "$SERVER_PID" 2>/dev/null || { echo "FAIL: server exited"; cat "$TMP/server.log"; exit 1; }
    if "$CLIENT" --url "ws://127.0.0.1:$PORT/echo" --connections 1 --seconds 0.1 --warmup 0 >/dev/null 2>&1; then
        ready=1; break
    fi
    sleep 0.2
done
[ -n "$ready" ] || { echo "FAIL: server not ready"; cat "$TMP/server.log"; exit 1; }

status=0
check() {   # check NAME ARGS...: run the client, print its RESULT line, require errors=0 and exit 0
    local name=$1; shift
    local out rc=0
    out=$("$CLIENT" "$@") || rc=$?
    echo "$name: $out"
    if [ $rc -ne 0 ] || ! grep -q '^RESULT .* errors=0 verified=[1-9][0-9]*$' <<<"$out"; then
        echo "FAIL: $name (exit $rc)"; status=1
    fi
}
check raw   --url "ws://127.0.0.1:$PORT/echo" --connections 80 --seconds 2 --warmup 0.5
check lapps --url "ws://127.0.0.1:$PORT/lapps_echo" --lapps --connections 20 --seconds 1 --warmup 0.2

if grep -E ' (WARNING|ERROR) ' "$TMP/server.log"; then echo "FAIL: server logged warnings/errors"; status=1; fi
[ $status -eq 0 ] && echo "PASS"
exit $status
