#!/usr/bin/env bash
# Start LAppS (shipped config, /echo), run the Autobahn fuzzingclient against it, stop it.
#   tests/autobahn/against_lapps.sh [CASES]      (default: cases 1.* to 10.*)
# Environment: AUTOBAHN_PORT (default: a free port), AUTOBAHN_WORKERS (default 2).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
PORT=${AUTOBAHN_PORT:-$(.venv/bin/python -c "import socket; s=socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])")}
mkdir -p reports/autobahn
LOG=reports/autobahn/server.log
.venv/bin/python -m lapps --port "$PORT" --workers "${AUTOBAHN_WORKERS:-2}" >"$LOG" 2>&1 &
PID=$!
trap 'kill -TERM $PID 2>/dev/null; wait $PID 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do
    if .venv/bin/python -c "import socket,sys; socket.create_connection(('127.0.0.1', $PORT), 0.2)" 2>/dev/null; then
        break
    fi
    kill -0 $PID 2>/dev/null || { cat "$LOG" >&2; echo "autobahn: LAppS did not start" >&2; exit 1; }
    sleep 0.1
done
tests/autobahn/run.sh "ws://127.0.0.1:$PORT/echo" "$@"
