#!/bin/bash
# The container image end to end (make image-test; root, podman): run localhost/lapps:<version>
# as Kubernetes would (read-only root, no capabilities, no new privileges, uid 10001) with the
# config and the services as read-only mounts, check HEALTHCHECK and /readyz, echo through it
# from 127.0.0.1 over the published port, then stop it with SIGTERM (podman stop): an open
# connection gets 1001, the container exits 0 well before the stop timeout.
# Exits non-zero on any failure; the last line is "image: N passed, M failed".
#
# Environment: LAPPS_IMAGE (default localhost/lapps).
set -u

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
VERSION=$(sed -n 's/^__version__ = "\([^"]*\)"$/\1/p' "$ROOT/lapps/__init__.py")
IMAGE=${LAPPS_IMAGE:-localhost/lapps}:$VERSION
PY=$ROOT/.venv/bin/python
NAME=lapps-image-test-$$
START=$(date +%s)
PASSED=0
FAILED=0
WORK=$(mktemp -d /tmp/lapps-image-test.XXXXXX)
CLIENT_PID=""

ok()   { PASSED=$((PASSED + 1)); echo "ok   $*"; }
bad()  { FAILED=$((FAILED + 1)); echo "FAIL $*" >&2; }
check() { local what=$1; shift; if "$@" >"$WORK/out" 2>&1; then ok "$what"; else bad "$what"; sed 's/^/     | /' "$WORK/out" >&2; fi; }
summary() { echo "image: $PASSED passed, $FAILED failed ($(( $(date +%s) - START ))s)"; }
abort() { bad "$*"; cleanup; summary; exit 1; }
cleanup() {
    [ -n "$CLIENT_PID" ] && kill "$CLIENT_PID" 2>/dev/null
    CLIENT_PID=""
    podman rm -f -t 0 "$NAME" >/dev/null 2>&1
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

command -v podman >/dev/null || abort "no podman: make image installs it"
[ -x "$PY" ] || abort "no $PY: make venv"
# shellcheck source=packaging/container/podman.sh
. "$ROOT/packaging/container/podman.sh"
podman image exists "$IMAGE" || abort "no image $IMAGE: make image"
echo "testing $IMAGE"

# --- what the image says about itself ----------------------------------------------------------
inspect() { podman image inspect --format "$1" "$IMAGE"; }
check "USER 10001:10001, STOPSIGNAL SIGTERM, ENTRYPOINT /usr/bin/lapps" sh -c \
    '[ "$1" = 10001:10001 ] && [ "$2" = SIGTERM ] && [ "$3" = "[/usr/bin/lapps]" ]' _ \
    "$(inspect '{{.Config.User}}')" "$(inspect '{{.Config.StopSignal}}')" "$(inspect '{{.Config.Entrypoint}}')"
check "HEALTHCHECK runs probe.py /healthz" sh -c 'echo "$1" | grep -q "probe.py /healthz"' _ \
    "$(inspect '{{.Config.Healthcheck.Test}}')"
check "LAPPS_CONFIG=/etc/lapps/lapps.toml" sh -c 'echo "$1" | grep -q "LAPPS_CONFIG=/etc/lapps/lapps.toml"' _ \
    "$(inspect '{{.Config.Env}}')"

# --- the mounts: the packaged config with the admin endpoint on every address (published here
# on 127.0.0.1 only) and services_dir on the mounted services; two workers ---------------------
mkdir -p "$WORK/etc"
podman run --rm "${PODMAN_RUN[@]}" --no-healthcheck --network none --entrypoint cat "$IMAGE" /etc/lapps/lapps.toml \
    > "$WORK/packaged.toml" || abort "cannot read /etc/lapps/lapps.toml from $IMAGE"
sed -e '/^\[admin\]/,/^\[/ s|^ip = "127.0.0.1"|ip = "0.0.0.0"|' \
    -e 's|^services_dir = .*|services_dir = "/srv/lapps/services"|' \
    -e 's|^workers = [0-9]*|workers = 2|' "$WORK/packaged.toml" > "$WORK/etc/lapps.toml"
grep -q '^ip = "0.0.0.0"' <(sed -n '/^\[admin\]/,/^\[/p' "$WORK/etc/lapps.toml") || abort "no [admin] ip line to change"
cp -r "$ROOT/services" "$WORK/services"
find "$WORK" -type d -exec chmod 0755 {} + && find "$WORK/etc" "$WORK/services" -type f -exec chmod 0644 {} +
MOUNTS=(-v "$WORK/etc:/etc/lapps:ro" -v "$WORK/services:/srv/lapps/services:ro")
check "lapps check-config in the container, on the mounted config and services" \
    podman run --rm "${PODMAN_RUN[@]}" --no-healthcheck --network none "${MOUNTS[@]}" "$IMAGE" check-config

check "lapps check-config in the container, on deploy/kubernetes/lapps.toml (the ConfigMap's)" \
    podman run --rm "${PODMAN_RUN[@]}" --no-healthcheck --network none \
    -v "$ROOT/deploy/kubernetes/lapps.toml:/etc/lapps/lapps.toml:ro" "$IMAGE" check-config

read -r PORT ADMIN < <("$PY" -c 'import socket
s = [socket.socket() for _ in range(2)]
for x in s: x.bind(("127.0.0.1", 0))
print(*(x.getsockname()[1] for x in s))')
# --health-interval=disable: no timer (podman's needs systemd); `podman healthcheck run` below
# runs the image's HEALTHCHECK command once, as the timer would.
podman run -d --name "$NAME" "${PODMAN_RUN[@]}" --read-only --cap-drop=ALL \
    --security-opt no-new-privileges --health-interval=disable "${MOUNTS[@]}" \
    -p "127.0.0.1:$PORT:5083" -p "127.0.0.1:$ADMIN:5084" "$IMAGE" > "$WORK/id" 2>"$WORK/run.err" \
    || { cat "$WORK/run.err" >&2; abort "podman run $IMAGE"; }
ok "podman run --read-only --cap-drop=ALL --security-opt no-new-privileges (ports $PORT, $ADMIN on 127.0.0.1)"

check "GET http://127.0.0.1:$ADMIN/readyz is 200 within 30 s" "$PY" -c '
import sys, time, urllib.request
for _ in range(150):
    try:
        if urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/readyz", timeout=2).status == 200:
            sys.exit(0)
    except OSError:
        pass
    time.sleep(0.2)
sys.exit(1)' "$ADMIN"
check "podman healthcheck run (the image's HEALTHCHECK): healthy, \"/healthz: ok\"" sh -c '
    podman healthcheck run "$1" 2>/dev/null && health=$(podman inspect --format "{{json .State.Health}}" "$1") &&
    echo "$health" | grep -q "\"Status\":\"healthy\"" && echo "$health" | grep -q "/healthz: ok" ||
    { echo "$health"; exit 1; }' _ "$NAME"
check "every process in the container runs as uid 10001" sh -c '
    users=$(podman top "$1" huser | tail -n +2 | sort -u); [ "$users" = 10001 ] || { echo "$users"; exit 1; }' _ "$NAME"
check "the root file system is read-only" sh -c '! podman exec "$1" touch /usr/lib/lapps/x 2>/dev/null' _ "$NAME"

check "WebSocket echo from 127.0.0.1:$PORT (raw /echo, LAppS /echo_lapps)" "$PY" - "$PORT" <<'PYEOF'
import sys
from lapps.client import connect
port = sys.argv[1]
with connect(f"ws://127.0.0.1:{port}/echo", timeout=10) as c:
    c.send_text("hello from the image test")
    assert c.recv() == (1, b"hello from the image test")
    c.send_binary(bytes(range(256)) * 64)
    assert c.recv() == (2, bytes(range(256)) * 64)
with connect(f"ws://127.0.0.1:{port}/echo_lapps", timeout=10) as c:
    key = c.request("login", ["image", "test"])[0]
    got = c.request("echo", [key, "lua", 42, [1, 2]])
    assert got == ["lua", 42, [1, 2]], got
PYEOF

# The Deployment's preStop hook, as the kubelet runs it (exec in the container): it must exist in
# the image and leave the server serving (the drain itself is SIGTERM's).
PRESTOP=$("$PY" -c 'import sys, yaml
d = yaml.safe_load(open(sys.argv[1]))
(c,) = [c for c in d["spec"]["template"]["spec"]["containers"] if c["name"] == "lapps"]
print(" ".join(c["lifecycle"]["preStop"]["exec"]["command"]))' "$ROOT/deploy/kubernetes/deployment.yaml")
# shellcheck disable=SC2086
check "the Deployment's preStop hook ($PRESTOP) runs in the container, and the server still serves" sh -c '
    podman exec "$1" $2 && [ "$(podman inspect --format "{{.State.Running}}" "$1")" = true ] &&
    '"$PY"' -c "import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=5)" "http://127.0.0.1:$3/readyz"' \
    _ "$NAME" "$PRESTOP" "$ADMIN"

# --- stop: a connection held open through it must get 1001 (going away) ------------------------
"$PY" - "$PORT" > "$WORK/client.log" 2>&1 <<'PYEOF' &
import sys
from lapps.client import ConnectionClosed, connect
with connect(f"ws://127.0.0.1:{sys.argv[1]}/echo", timeout=10) as c:
    c.send_text("held")
    assert c.recv() == (1, b"held")
    print("open", flush=True)
    try:
        print("message", c.recv(timeout=60))
    except ConnectionClosed as e:
        print("closed", e.code, flush=True)
PYEOF
CLIENT_PID=$!
for _ in $(seq 100); do grep -q open "$WORK/client.log" && break; sleep 0.1; done
grep -q open "$WORK/client.log" || abort "the held connection did not open: $(cat "$WORK/client.log")"
T0=$(date +%s%N)
podman stop -t 30 "$NAME" >/dev/null 2>"$WORK/stop.err"
T1=$(date +%s%N)
wait "$CLIENT_PID"; CLIENT_PID=""
MS=$(( (T1 - T0) / 1000000 ))
check "podman stop (SIGTERM): exit code 0, in ${MS} ms of the 30 s allowed (no SIGKILL)" sh -c \
    '[ "$(podman inspect --format "{{.State.ExitCode}}" "$1")" = 0 ]' _ "$NAME"
check "the held connection got close code 1001" grep -qx "closed 1001" "$WORK/client.log"
podman logs "$NAME" > "$WORK/server.log" 2>&1
check "server log: SIGTERM: graceful stop ... stopped, no traceback" sh -c \
    'grep -q "SIGTERM: graceful stop" "$1" && grep -q "lapps\[master\] INFO stopped" "$1" && ! grep -q Traceback "$1"' \
    _ "$WORK/server.log"
if [ "$FAILED" != 0 ]; then
    echo "---- container log (last 30 lines) ----" >&2; tail -30 "$WORK/server.log" >&2
fi
cleanup
summary
[ "$FAILED" = 0 ]
