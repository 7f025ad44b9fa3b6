#!/bin/bash
# The Debian package end to end (make deb-test; root, Debian, no systemd needed):
# build it if missing, install it with apt, check what it put where, run the unit's command as the
# lapps user with the unit's limits on a test port, echo through it with the installed venv's
# client, stop it with SIGTERM (exit 0), then remove and purge it and check that nothing is left.
# Exits non-zero on any failure; the last line is "package: N passed, M failed".
#
# Environment: LAPPS_DEB_TEST_PORT (default 15083).
set -u

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
PORT=${LAPPS_DEB_TEST_PORT:-15083}
VENV=/usr/lib/lapps/venv
VPY="$VENV/bin/python -I"
START=$(date +%s)
PASSED=0
FAILED=0
SERVER_PID=""
NOTIFY_PID=""
INSTALLED=no
# In /run, not /tmp: the server gets a private /tmp (PrivateTmp) but must reach $WORK/notify.
WORK=$(mktemp -d /run/lapps-deb-test.XXXXXX 2>/dev/null || mktemp -d /tmp/lapps-deb-test.XXXXXX)

ok()   { PASSED=$((PASSED + 1)); echo "ok   $*"; }
bad()  { FAILED=$((FAILED + 1)); echo "FAIL $*" >&2; }
# check "description" command...: one assertion
check() { local what=$1; shift; if "$@" >"$WORK/out" 2>&1; then ok "$what"; else bad "$what"; sed 's/^/     | /' "$WORK/out" >&2; fi; }
summary() { echo "package: $PASSED passed, $FAILED failed ($(( $(date +%s) - START ))s)"; }
# A failure that makes the rest meaningless.
abort() { bad "$*"; cleanup; summary; exit 1; }

cleanup() {
    if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
        local children
        children=$(pgrep -P "$SERVER_PID")
        kill -QUIT "$SERVER_PID" 2>/dev/null; sleep 2
        # shellcheck disable=SC2086
        kill -KILL "$SERVER_PID" $children 2>/dev/null
    fi
    SERVER_PID=""
    [ -n "$NOTIFY_PID" ] && kill "$NOTIFY_PID" 2>/dev/null
    NOTIFY_PID=""
    if [ "$INSTALLED" = yes ]; then
        echo "cleanup: purging the package the test installed" >&2
        DEBIAN_FRONTEND=noninteractive apt-get purge -y -qq lapps >/dev/null 2>&1
        INSTALLED=no
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

cd /
[ "$(id -u)" = 0 ] || abort "deb-test installs a package: run it as root"
command -v dpkg-deb >/dev/null && command -v apt-get >/dev/null || abort "deb-test needs dpkg and apt (Debian)"
if dpkg-query -W -f='${db:Status-Status}' lapps 2>/dev/null | grep -qv '^not-installed$'; then
    abort "package lapps is installed already: this test installs and purges it (apt-get purge -y lapps first)"
fi
getent passwd lapps >/dev/null && abort "a user lapps exists already: purging the package would delete it"
if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then abort "port $PORT is in use"; fi

# --- the .deb ------------------------------------------------------------------------------------
VERSION=$(sed -n 's/^__version__ = "\([^"]*\)"$/\1/p' "$ROOT/lapps/__init__.py")
ARCH=$(dpkg --print-architecture)
DEB=$ROOT/dist/lapps_${VERSION}_${ARCH}.deb
if [ ! -f "$DEB" ]; then
    echo "building $DEB"
    "$ROOT/packaging/build-deb.sh" || abort "make deb failed"
fi
echo "testing $DEB"

dpkg-deb -e "$DEB" "$WORK/control" || abort "dpkg-deb cannot read $DEB"
field() { dpkg-deb -f "$DEB" "$1"; }
check "control: Package lapps, Version $VERSION, Architecture $ARCH" \
    test "$(field Package) $(field Version) $(field Architecture)" = "lapps $VERSION $ARCH"
check "control: Depends on python3 (>= 3.11), libcap2, adduser" \
    sh -c 'echo "$1" | grep -q "python3 (>= 3.11" && echo "$1" | grep -q "libcap2" && echo "$1" | grep -q adduser' _ "$(field Depends)"
check "control: Section net, Priority optional, Maintainer and Description" \
    sh -c '[ "$1" = net ] && [ "$2" = optional ] && [ -n "$3" ] && [ -n "$4" ]' _ \
    "$(field Section)" "$(field Priority)" "$(field Maintainer)" "$(field Description)"
check "DEBIAN/conffiles is /etc/lapps/lapps.toml" test "$(cat "$WORK/control/conffiles")" = /etc/lapps/lapps.toml
check "DEBIAN/ has postinst, prerm, postrm, md5sums" \
    test -x "$WORK/control/postinst" -a -x "$WORK/control/prerm" -a -x "$WORK/control/postrm" -a -s "$WORK/control/md5sums"

# What the package holds: the expectations for after install and after purge.
dpkg-deb --fsys-tarfile "$DEB" | tar -tvf - > "$WORK/listing" || abort "cannot list $DEB"
awk '$1 !~ /^d/ { p = $6; sub(/^\.\//, "/", p); print p }' "$WORK/listing" | sort > "$WORK/files"
NFILES=$(wc -l < "$WORK/files")
for f in /usr/bin/lapps /etc/lapps/lapps.toml /lib/systemd/system/lapps.service $VENV/bin/python \
         $VENV/pyvenv.cfg /usr/share/lapps/services/echo/echo.lua /usr/share/doc/lapps/copyright \
         /usr/share/doc/lapps/changelog.gz /usr/share/doc/lapps/CHANGELOG.md.gz \
         /usr/share/bash-completion/completions/lapps /usr/share/man/man1/lapps.1.gz; do
    grep -qxF "$f" "$WORK/files" || bad "the package has no $f"
done
check "the package holds $NFILES files, no byte code and no build paths" \
    sh -c '! grep -E "__pycache__|\.pyc$" "$1" && ! dpkg-deb --fsys-tarfile "$2" | grep -aqF "$3/build/"' \
    _ "$WORK/files" "$DEB" "$ROOT"

# --- install -------------------------------------------------------------------------------------
export DEBIAN_FRONTEND=noninteractive
INSTALLED=yes
if ! apt-get install -y -qq "$DEB" > "$WORK/apt.log" 2>&1; then
    echo "apt-get install failed; apt-get update and once more" >&2
    apt-get update -qq >/dev/null 2>&1
    apt-get install -y -qq "$DEB" > "$WORK/apt.log" 2>&1 || { cat "$WORK/apt.log" >&2; abort "apt-get install $DEB"; }
fi
ok "apt-get install ./dist/${DEB##*/}"
check "dpkg says lapps $VERSION is installed" \
    test "$(dpkg-query -W -f='${db:Status-Abbrev}${Version}' lapps)" = "ii $VERSION"

missing=$(while read -r f; do [ -e "$f" ] || [ -L "$f" ] || echo "$f"; done < "$WORK/files")
check "all $NFILES files of the package are on disk" test -z "$missing"
[ -z "$missing" ] || echo "$missing" | head -5 >&2
dpkg -L lapps | sort > "$WORK/dpkg-L"
check "dpkg -L lapps lists every file of the .deb" \
    sh -c '[ -z "$(comm -23 "$1" "$2")" ]' _ "$WORK/files" "$WORK/dpkg-L"
check "/etc/lapps/lapps.toml is a conffile" \
    sh -c 'dpkg-query -W -f="\${Conffiles}" lapps | grep -q "^ /etc/lapps/lapps.toml "'
check "lapps.toml: services_dir = /usr/share/lapps/services" \
    grep -qx 'services_dir = "/usr/share/lapps/services".*' /etc/lapps/lapps.toml

check "user lapps: system account, group lapps, home /nonexistent (absent), no login shell" sh -c '
    IFS=: read -r name _ uid gid _ home shell <<EOF
$(getent passwd lapps)
EOF
    [ "$name" = lapps ] && [ "$uid" -lt 1000 ] && [ "$(getent group "$gid" | cut -d: -f1)" = lapps ] &&
    [ "$home" = /nonexistent ] && [ ! -e /nonexistent ] && case "$shell" in */nologin|*/false) ;; *) false ;; esac'

check "the venv's python is /usr/bin/python3" test "$(readlink $VENV/bin/python3)" = /usr/bin/python3
check "import lapps, lupa from /usr/lib/lapps/venv (not the source tree)" \
    $VPY -c 'import lapps, lupa, workers, lapps.ws._speedups, sys
assert lapps.__file__.startswith("/usr/lib/lapps/venv/lib/"), lapps.__file__
assert sys.prefix == "/usr/lib/lapps/venv", sys.prefix'
check "postinst compiled the venv's byte code" test -n "$(find $VENV/lib -name '*.pyc' -print -quit)"
check "no path into a build or source tree under /usr/lib/lapps" \
    sh -c '! grep -rlaF -e "$1/" -e "/build/deb/" /usr/lib/lapps' _ "$ROOT"
check "/usr/bin/lapps --check-config (default config: /etc/lapps/lapps.toml)" \
    sh -c '/usr/bin/lapps --check-config | grep -q "/etc/lapps/lapps.toml"'
check "/usr/bin/lapps --version and lapps version say lapps $VERSION (the package's version)" \
    sh -c '[ "$(/usr/bin/lapps --version)" = "lapps $1" ] && [ "$(/usr/bin/lapps version)" = "lapps $1" ]' _ "$VERSION"
check "bash completion: lapps mig<TAB> completes migrate-config, lapps status --j<TAB> --json" bash -c '
    . /usr/share/bash-completion/completions/lapps
    COMP_WORDS=(lapps mig); COMP_CWORD=1; _lapps; [ "${COMPREPLY[*]}" = migrate-config ] || exit 1
    COMP_WORDS=(lapps status --j); COMP_CWORD=2; _lapps; [ "${COMPREPLY[*]}" = --json ]'
check "the lapps user reads the config: --check-config as lapps" \
    setpriv --reuid=lapps --regid=lapps --init-groups -- /usr/bin/lapps --config /etc/lapps/lapps.toml --check-config

UNIT=/lib/systemd/system/lapps.service
check "lapps.service: Type=notify, ExecStart, User/Group lapps, KillMode=mixed, hardening, no MDWE" sh -c '
    u=$1
    for line in "Type=notify" "ExecStart=/usr/bin/lapps --config /etc/lapps/lapps.toml" \
        "ExecReload=/bin/kill -HUP \$MAINPID" "KillMode=mixed" "KillSignal=SIGTERM" "TimeoutStopSec=30" \
        "User=lapps" "Group=lapps" "LimitNOFILE=65536" "Restart=on-failure" "NoNewPrivileges=yes" \
        "ProtectSystem=strict" "CapabilityBoundingSet=" "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX"; do
        grep -qxF "$line" "$u" || { echo "missing: $line"; exit 1; }
    done
    ! grep -q "^MemoryDenyWriteExecute" "$u"' _ "$UNIT"
if command -v systemd-analyze >/dev/null; then
    # Offline: checks the unit's syntax and that its commands exist (man: lines need man-db).
    check "systemd-analyze verify lapps.service" sh -c '
        systemd-analyze verify "$1" 2>&1 | grep -v -e "man lapps(1)" -e "^$" | { ! grep .; }' _ "$UNIT"
fi

# --- run it as the unit does: lapps user, no capabilities, no new privileges, 65536 files --------
# and, where mount namespaces work, a read-only file system with empty /tmp, /var/tmp, /home and
# /root (ProtectSystem=strict, PrivateTmp, ProtectHome), so a write the unit would forbid fails here.
cat > "$WORK/sandbox.sh" <<'EOF'
set -e
findmnt -rn -o TARGET | sort -u | while read -r m; do
    case $m in /proc|/proc/*|/sys|/sys/*|/dev|/dev/*) continue ;; esac
    mount -o remount,bind,ro "$m" 2>/dev/null || [ "$m" != / ] || exit 3
done
for d in /tmp /var/tmp /home /root; do [ -d "$d" ] && mount -t tmpfs -o mode=1777 tmpfs "$d"; done
exec "$@"
EOF
SANDBOX=""
if unshare --mount sh "$WORK/sandbox.sh" sh -c '! touch /etc/lapps-deb-test-probe' 2>/dev/null; then
    SANDBOX="unshare --mount sh $WORK/sandbox.sh"
    echo "note: the server runs with / read-only and a private /tmp, /home, /root (mount namespace)"
else
    echo "note: no mount namespace here: ProtectSystem/PrivateTmp/ProtectHome are not emulated"
fi
rm -f /etc/lapps-deb-test-probe
NOTIFY=$WORK/notify
chmod 0755 "$WORK"
python3 - "$NOTIFY" > "$WORK/notify.log" 2>&1 <<'EOF' &
import os, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1]); os.chmod(sys.argv[1], 0o666); s.settimeout(60)
while True:
    try:
        print(s.recv(4096).decode().replace("\n", " "), flush=True)
    except TimeoutError:
        break
EOF
NOTIFY_PID=$!
for _ in $(seq 50); do [ -S "$NOTIFY" ] && break; sleep 0.1; done

(
    ulimit -n 65536 2>/dev/null
    # shellcheck disable=SC2086
    exec $SANDBOX env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 NOTIFY_SOCKET="$NOTIFY" \
        setpriv --reuid=lapps --regid=lapps --init-groups --bounding-set=-all --inh-caps=-all --no-new-privs -- \
        /usr/bin/lapps --config /etc/lapps/lapps.toml --port "$PORT"
) > "$WORK/server.log" 2>&1 &
SERVER_PID=$!
up=no
for _ in $(seq 150); do
    kill -0 "$SERVER_PID" 2>/dev/null || break
    if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then up=yes; break; fi
    sleep 0.2
done
[ "$up" = yes ] || { sed 's/^/     | /' "$WORK/server.log" >&2; abort "the server did not listen on 127.0.0.1:$PORT within 30 s"; }
ok "/usr/bin/lapps --config /etc/lapps/lapps.toml --port $PORT listens (as lapps)"

for _ in $(seq 50); do grep -q "READY=1" "$WORK/notify.log" && break; sleep 0.2; done
check "the master sent READY=1 to \$NOTIFY_SOCKET (Type=notify)" grep -q "READY=1" "$WORK/notify.log"
check "master and workers run as lapps" sh -c '
    [ "$(ps -o user= -p "$1")" = lapps ] && [ -n "$(pgrep -P "$1")" ] &&
    [ -z "$(ps -o user= --ppid "$1" | grep -vx lapps)" ]' _ "$SERVER_PID"

check "WebSocket echo through the installed server (raw /echo, LAppS /echo_lapps)" \
    $VPY - "$PORT" <<'EOF'
import sys
from lapps.client import connect
port = sys.argv[1]
with connect(f"ws://127.0.0.1:{port}/echo", timeout=10) as c:
    c.send_text("hello from the package test")
    got = c.recv()
    assert got == (1, b"hello from the package test"), got
    c.send_binary(bytes(range(256)) * 64)
    got = c.recv()
    assert got == (2, bytes(range(256)) * 64), got[:1]
with connect(f"ws://127.0.0.1:{port}/echo_lapps", timeout=10) as c:
    key = c.request("login", ["deb", "test"])[0]
    got = c.request("echo", [key, "lua", 42, [1, 2]])
    assert got == ["lua", 42, [1, 2]], got
EOF

check "the demo page and lapps.js from the installed server (GET /, /vendor/lapps.js)" \
    $VPY - "$PORT" <<'EOF'
import sys
import urllib.request
port = sys.argv[1]
for path, kind in (("/", "text/html"), ("/vendor/lapps.js", "text/javascript"), ("/vendor/cbor-x/index.js", "text/javascript")):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as r:
        assert r.status == 200 and r.headers["Content-Type"].startswith(kind), (path, r.status, r.headers)
        assert r.read(), path
EOF

ADMIN_PORT=$($VPY -c 'import toml; print(toml.load("/etc/lapps/lapps.toml").get("admin", {}).get("port", 0))' 2>/dev/null)
if $VPY -c 'import lapps.admin' 2>/dev/null && [ "${ADMIN_PORT:-0}" != 0 ]; then
    check "admin endpoint: GET http://127.0.0.1:$ADMIN_PORT/readyz is 200" $VPY -c '
import sys, time, urllib.request
for _ in range(50):
    try:
        sys.exit(0 if urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/readyz", timeout=2).status == 200 else 1)
    except OSError:
        time.sleep(0.2)
sys.exit(1)' "$ADMIN_PORT"
fi

kill -TERM "$SERVER_PID"
for _ in $(seq 300); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
if kill -0 "$SERVER_PID" 2>/dev/null; then
    abort "the server is still running 30 s after SIGTERM (TimeoutStopSec=30)"
fi
wait "$SERVER_PID"; rc=$?
SERVER_PID=""
check "SIGTERM: the server stops with exit status 0 (got $rc)" test "$rc" = 0
sleep 0.5
check "no lapps process is left" sh -c '! pgrep -u lapps -a'
check "server log: no Python traceback" sh -c '! grep -n -A3 Traceback "$1"' _ "$WORK/server.log"
if [ "$FAILED" != 0 ]; then
    echo "---- server log (last 30 lines) ----" >&2; tail -30 "$WORK/server.log" >&2
fi
kill "$NOTIFY_PID" 2>/dev/null; NOTIFY_PID=""

# --- remove: the conffile and the user stay ------------------------------------------------------
apt-get remove -y -qq lapps > "$WORK/apt.log" 2>&1 || { cat "$WORK/apt.log" >&2; abort "apt-get remove lapps"; }
ok "apt-get remove lapps"
check "after remove: /etc/lapps/lapps.toml and the lapps user stay, the venv is gone" \
    sh -c '[ -f /etc/lapps/lapps.toml ] && getent passwd lapps >/dev/null && [ ! -e /usr/lib/lapps ] && [ ! -e /usr/bin/lapps ]'

# --- purge: nothing stays ------------------------------------------------------------------------
apt-get purge -y -qq lapps > "$WORK/apt.log" 2>&1 || { cat "$WORK/apt.log" >&2; abort "apt-get purge lapps"; }
INSTALLED=no
ok "apt-get purge lapps"
left=$(while read -r f; do if [ -e "$f" ] || [ -L "$f" ]; then echo "$f"; fi; done < "$WORK/files")
check "after purge: none of the $NFILES files of the package is left" test -z "$left"
[ -z "$left" ] || echo "$left" | head -5 >&2
check "after purge: no /etc/lapps, /usr/lib/lapps, /usr/share/lapps, /usr/share/doc/lapps, /var/log/lapps" \
    sh -c 'for d in /etc/lapps /usr/lib/lapps /usr/share/lapps /usr/share/doc/lapps /var/log/lapps; do
               [ ! -e "$d" ] || { echo "left: $d"; exit 1; }; done'
check "after purge: no lapps user or group" sh -c '! getent passwd lapps && ! getent group lapps'
check "after purge: dpkg knows no lapps" \
    sh -c '! dpkg-query -W -f="\${db:Status-Status}" lapps 2>/dev/null | grep -qv "^not-installed$"'

cleanup
summary
[ "$FAILED" = 0 ]
