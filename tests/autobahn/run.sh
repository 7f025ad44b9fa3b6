#!/usr/bin/env bash
# Autobahn TestSuite (fuzzingclient) against a WebSocket echo server.
#
#   tests/autobahn/run.sh URL [CASES]
#   tests/autobahn/run.sh --probe        exit 0 when Python 2.7 is at hand (or pyenv can build it)
#     URL    e.g. ws://127.0.0.1:9001/echo   (the server must already be running)
#     CASES  comma-separated case patterns, default 1.*,2.*,3.*,4.*,5.*,6.*,7.*,9.*,10.*
#            (Autobahn has no 8.* cases; 12.*/13.* are permessage-deflate).
#
# First run: builds a CPython 2.7 virtualenv at .venv-autobahn (autobahntestsuite is Python 2 only)
# from tests/autobahn/py27-pins.txt, using virtualenv<20.22 installed into .venv-autobahn-tool.
# Later runs reuse it while the pins are unchanged. Reports land in reports/autobahn/.
#
# Environment knobs:
#   AUTOBAHN_TIMEOUT              wall-clock limit for wstest in seconds (default 900)
#   AUTOBAHN_AGENT                agent name in the report (default LAppS)
#   AUTOBAHN_PYTHON27             a python2.7 interpreter to use instead of searching for one
#   AUTOBAHN_ALLOW_UNIMPLEMENTED  comma-separated case patterns allowed to be UNIMPLEMENTED
# Needs: bash, python3 (with venv), gcc and the Python 2.7 headers (wsaccel builds from source;
# pyenv's 2.7.18 ships them; a Debian python2.7 would need python2.7-dev).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
HERE="$ROOT/tests/autobahn"
VENV="$ROOT/.venv-autobahn"
TOOL="$ROOT/.venv-autobahn-tool"
PINS="$HERE/py27-pins.txt"
REPORTS="$ROOT/reports/autobahn"
STAMP="$VENV/.autobahn-installed"
PY27_VERSION=2.7.18
TIMEOUT_S=${AUTOBAHN_TIMEOUT:-900}
AGENT=${AUTOBAHN_AGENT:-LAppS}
DEFAULT_CASES='1.*,2.*,3.*,4.*,5.*,6.*,7.*,9.*,10.*'

say() { echo "autobahn: $*"; }
die() { echo "autobahn: ERROR: $*" >&2; exit 1; }

if [ "${1:-}" = "--probe" ]; then PROBE=1; set -- ws://probe; else PROBE=0; fi
[ $# -ge 1 ] && [ $# -le 2 ] || die "usage: $0 URL [CASES]   e.g. $0 ws://127.0.0.1:9001/echo '1.*,2.*'"
URL=$1
CASES=${2:-$DEFAULT_CASES}
case "$URL" in ws://*|wss://*) ;; *) die "URL must start with ws:// or wss:// (got '$URL')" ;; esac

# Python 3 for the tool venv and the summary: the repo's .venv if present, else python3.
if [ -x "$ROOT/.venv/bin/python" ]; then PY3="$ROOT/.venv/bin/python"
elif command -v python3 >/dev/null 2>&1; then PY3=$(command -v python3)
else die "python3 not found"; fi

mkdir -p "$REPORTS"
SETUP_LOG="$REPORTS/setup.log"

# Run a setup step with its output in setup.log; on failure show the log's tail and stop.
step() {
    if ! "$@" >>"$SETUP_LOG" 2>&1; then
        tail -n 30 "$SETUP_LOG" >&2
        die "setup step failed: $* (full log: ${SETUP_LOG#$ROOT/})"
    fi
}

is_py27() { [ -n "$1" ] && [ -x "$1" ] && "$1" -c 'import sys; sys.exit(sys.version_info[:2] != (2, 7))' >/dev/null 2>&1; }

find_py27() {
    local cand root
    local -a cands=()
    [ -n "${AUTOBAHN_PYTHON27:-}" ] && cands+=("$AUTOBAHN_PYTHON27")
    if command -v pyenv >/dev/null 2>&1 && root=$(pyenv root 2>/dev/null); then
        cands+=("$root/versions/$PY27_VERSION/bin/python2.7")
        for cand in "$root"/versions/2.7.*/bin/python2.7; do cands+=("$cand"); done
    fi
    cands+=("$HOME/.pyenv/versions/$PY27_VERSION/bin/python2.7")
    for cand in python2.7 python2; do
        command -v "$cand" >/dev/null 2>&1 && cands+=("$(command -v "$cand")")
    done
    for cand in "${cands[@]}"; do
        if is_py27 "$cand"; then echo "$cand"; return 0; fi
    done
    return 1
}

# --probe: exit 0 when a Python 2.7 is here or can be installed (pyenv), 1 when not.
if [ "$PROBE" = 1 ]; then
    find_py27 >/dev/null || command -v pyenv >/dev/null 2>&1
    exit
fi

venv_complete() {
    [ -f "$STAMP" ] && [ -f "$VENV/bin/wstest" ] && [ "$(cat "$STAMP")" = "$(cksum <"$PINS")" ] &&
        is_py27 "$VENV/bin/python" && "$VENV/bin/python" -c 'import autobahntestsuite, wsaccel' >/dev/null 2>&1
}

setup_venv() {
    local py27 t0=$SECONDS
    : >"$SETUP_LOG"
    if ! py27=$(find_py27); then
        if command -v pyenv >/dev/null 2>&1; then
            say "no Python 2.7 found; installing $PY27_VERSION with pyenv (several minutes)"
            step pyenv install -s "$PY27_VERSION"
            py27=$(find_py27) || die "pyenv install $PY27_VERSION succeeded but no python2.7 was found"
        else
            die "no CPython 2.7 interpreter found (tried AUTOBAHN_PYTHON27, pyenv, python2.7, python2) and pyenv is not installed; install pyenv and run 'pyenv install $PY27_VERSION', or set AUTOBAHN_PYTHON27"
        fi
    fi
    say "building $(basename "$VENV") from $($py27 -V 2>&1) at $py27 (log: ${SETUP_LOG#$ROOT/})"

    if [ ! -x "$TOOL/bin/virtualenv" ]; then
        rm -rf "$TOOL"
        step "$PY3" -m venv "$TOOL"
        step "$TOOL/bin/python" -m pip install -q 'virtualenv<20.22'
    fi
    rm -rf "$VENV"
    step "$TOOL/bin/virtualenv" -q --no-periodic-update -p "$py27" "$VENV"
    step "$VENV/bin/python" -m pip install -q --no-warn-script-location 'setuptools==44.0.0'
    say "installing pins (wsaccel compiles from source)"
    step "$VENV/bin/python" -m pip install -q --no-warn-script-location -r "$PINS"
    step "$VENV/bin/python" -c 'import autobahntestsuite, wsaccel'
    [ -f "$VENV/bin/wstest" ] || die "wstest missing from $VENV/bin after install"
    cksum <"$PINS" >"$STAMP"
    say "venv ready in $((SECONDS - t0)) s"
}

[ -f "$PINS" ] || die "pins file missing: $PINS"
if venv_complete; then
    say "reusing $(basename "$VENV")"
else
    setup_venv
fi

# Fail early, with a clear message, when nothing listens at the URL.
"$PY3" - "$URL" <<'PY' || die "cannot connect to $URL; is the server running?"
import socket, sys
from urllib.parse import urlsplit
u = urlsplit(sys.argv[1])
port = u.port or (443 if u.scheme == "wss" else 80)
try:
    socket.create_connection((u.hostname, port), timeout=5).close()
except OSError as exc:
    sys.exit(f"autobahn: {u.hostname}:{port}: {exc}")
PY

# Fuzzingclient spec; the old report directory goes so a stale index.json is never read.
SPEC="$REPORTS/fuzzingclient.json"
rm -rf "$REPORTS/servers"
"$PY3" - "$SPEC" "$URL" "$CASES" "$AGENT" <<'PY'
import json, sys
spec_path, url, cases, agent = sys.argv[1:]
spec = {
    "options": {"failByDrop": False},
    "outdir": "reports/autobahn/servers",
    "servers": [{"agent": agent, "url": url}],
    "cases": [c.strip() for c in cases.split(",") if c.strip()],
    "exclude-cases": [],
    "exclude-agent-cases": {},
}
with open(spec_path, "w") as f:
    json.dump(spec, f, indent=2)
    f.write("\n")
PY

# wstest never stops when no case matches, so check every pattern against Autobahn's case list.
if ! NCASES=$("$VENV/bin/python" - "$SPEC" 2>&1 <<'PY'
import json, sys
from autobahntestsuite.case import Cases, CaseCategories, CaseSubCategories, CaseSetname, CaseBasename
from autobahntestsuite.caseset import CaseSet
cs = CaseSet(CaseSetname, CaseBasename, Cases, CaseCategories, CaseSubCategories)
spec = json.load(open(sys.argv[1]))
bad = [p for p in spec["cases"]
       if not [c for c in cs.resolveCasePatternList([p]) if c in cs.CasesIndices]]
if bad or not spec["cases"]:
    sys.exit("no Autobahn case matches: %s" % (", ".join(bad) or "(empty case list)"))
print(len(cs.parseSpecCases(spec)))
PY
); then
    die "$NCASES"
fi

WSTEST_LOG="$REPORTS/wstest.log"
say "running $NCASES cases ($CASES) against $URL (limit ${TIMEOUT_S} s, log: ${WSTEST_LOG#$ROOT/})"
t0=$SECONDS
rc=0
# --foreground keeps wstest in our process group (Ctrl-C reaches it); the trap stops it if we are killed.
(cd "$ROOT" && exec timeout --foreground -k 15 "$TIMEOUT_S" "$VENV/bin/python" "$VENV/bin/wstest" -m fuzzingclient -s "$SPEC") \
    </dev/null >"$WSTEST_LOG" 2>&1 &
WSTEST_PID=$!
trap 'kill "$WSTEST_PID" 2>/dev/null; exit 130' INT
trap 'kill "$WSTEST_PID" 2>/dev/null; exit 143' TERM
wait "$WSTEST_PID" || rc=$?
trap - INT TERM
if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
    tail -n 20 "$WSTEST_LOG" >&2
    die "wstest ran past ${TIMEOUT_S} s and was stopped"
elif [ "$rc" -ne 0 ]; then
    tail -n 30 "$WSTEST_LOG" >&2
    die "wstest exited with status $rc"
fi
say "cases finished in $((SECONDS - t0)) s; report: ${REPORTS#$ROOT/}/servers/index.html"

exec "$PY3" "$HERE/summary.py" "$REPORTS/servers/index.json" --expected-cases "$NCASES" \
    ${AUTOBAHN_ALLOW_UNIMPLEMENTED:+--allow-unimplemented "$AUTOBAHN_ALLOW_UNIMPLEMENTED"}
