#!/usr/bin/env bash
# Start LAppS with an echo service, run the Autobahn fuzzingclient against it, stop it.
#   tests/autobahn/against_lapps.sh [--tls] [--deflate] [CASES]
#     --tls       serve wss:// (certificates from `make certs`, into reports/autobahn/certs)
#     --deflate   enable permessage-deflate on the echo service (cases 12.* and 13.*)
#     --no-speedups  run the server on the pure-Python codec (LAPPS_NO_SPEEDUPS=1)
#     CASES       case patterns, default 1.* to 10.*
# Environment: AUTOBAHN_PORT (default: a free port), AUTOBAHN_WORKERS (default 2).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
TLS=0 DEFLATE=false
while [ $# -gt 0 ]; do
    case "$1" in
        --tls) TLS=1; shift ;;
        --deflate) DEFLATE=true; shift ;;
        --no-speedups) export LAPPS_NO_SPEEDUPS=1; export AUTOBAHN_AGENT="${AUTOBAHN_AGENT:-LAppS-pure-Python}"; shift ;;
        *) break ;;
    esac
done
PORT=${AUTOBAHN_PORT:-$(.venv/bin/python -c "import socket; s=socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])")}
OUT=reports/autobahn
mkdir -p "$OUT"
CONFIG="$OUT/lapps.toml"
{
    echo "[server]"
    echo "services_dir = \"$ROOT/services\""
    if [ "$TLS" = 1 ]; then
        make -s certs CERTS="$OUT/certs" >/dev/null
        echo "[server.tls]"
        echo "enabled = true"
        echo "cert = \"$ROOT/$OUT/certs/localhost.crt\""
        echo "key = \"$ROOT/$OUT/certs/localhost.key\""
    fi
    echo "[admin]"
    echo "port = 0"     # no admin endpoint: another server on this machine may hold 5084
    echo "[services.echo]"
    echo "permessage_deflate = $DEFLATE"
} >"$CONFIG"
LOG="$OUT/server.log"
.venv/bin/python -m lapps --config "$CONFIG" --port "$PORT" --workers "${AUTOBAHN_WORKERS:-2}" >"$LOG" 2>&1 &
PID=$!
trap 'kill -TERM $PID 2>/dev/null; wait $PID 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do
    if .venv/bin/python -c "import socket,sys; socket.create_connection(('127.0.0.1', $PORT), 0.2)" 2>/dev/null; then
        break
    fi
    kill -0 $PID 2>/dev/null || { cat "$LOG" >&2; echo "autobahn: LAppS did not start" >&2; exit 1; }
    sleep 0.1
done
SCHEME=ws
[ "$TLS" = 1 ] && SCHEME=wss
tests/autobahn/run.sh "$SCHEME://127.0.0.1:$PORT/echo" "$@"
