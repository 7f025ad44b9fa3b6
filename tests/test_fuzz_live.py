"""The live-server fuzzer (fuzz/live.py) runs, holds on both codecs, and fails when it should.

Longer runs: `make fuzz` (CI: FUZZ_SECONDS=10) or `python fuzz/live.py --seconds 60`.
"""

from __future__ import annotations

import os
import subprocess
import sys

from conftest import REPO

LIVE = [sys.executable, str(REPO / "fuzz" / "live.py")]


def run_live(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*LIVE, *args], cwd=REPO, capture_output=True, text=True, timeout=120,
                          env={**os.environ, **(env or {})})


def test_live_fuzzer_holds_a_short_run_on_both_codecs():
    done = run_live("--seconds", "3", "--seed", "12")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "live/c:" in done.stdout and "live/python:" in done.stdout
    assert done.stdout.count("clean") == 2, done.stdout


def test_live_fuzzer_fails_when_the_fault_barrier_catches_something():
    """With the fault-injection hook on, the marker message some bad clients send becomes an
    internal error: the worker survives it, and the fuzzer must still report it."""
    done = run_live("--seconds", "20", "--seed", "12", "--codec", "c", env={"LAPPS_FAULT_INJECT": "parser"})
    assert done.returncode == 1, done.stdout + done.stderr
    assert "INVARIANT BROKEN" in done.stdout and "internal error" in done.stdout
    assert "replay:" in done.stdout
