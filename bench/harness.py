"""Helpers shared by the load scripts (bench/bench_lapps.py, bench/bench_setup.py,
bench/run_peers.py, soak/soak.py): the small things every multi-process load generator on
this machine needs. Standard library only: run_peers.py runs in the peers' own venv."""

from __future__ import annotations

import ctypes
import json
import math
import resource
import signal
import socket
from pathlib import Path
from typing import Any

HOST = "127.0.0.1"   # load scripts talk to loopback only


def log(msg: str) -> None:
    """Progress for a person watching: printed at once, whatever the buffering."""
    print(msg, flush=True)


def save_results(path: Path, results: Any) -> None:
    """Write `results` as JSON to `path` (bench/results/ by default) and say where."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2, default=str) + "\n")
    log(f"\nresults: {path}")


def raise_nofile() -> tuple[int, int]:
    """Soft RLIMIT_NOFILE up to the hard limit (children inherit it); the new limits."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard != resource.RLIM_INFINITY else 1 << 20
    if soft == resource.RLIM_INFINITY or soft >= want:
        return soft, hard
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    except (ValueError, OSError):
        pass   # not allowed here: go on with what we have
    return resource.getrlimit(resource.RLIMIT_NOFILE)


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def percentile(sorted_values: Any, q: float) -> float:
    """Nearest-rank percentile of already sorted values (nan when there are none)."""
    n = len(sorted_values)
    if not n:
        return float("nan")
    return sorted_values[min(n - 1, max(0, math.ceil(q * n) - 1))]


_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """In a server started by a load script, before exec: SIGTERM it if the script dies
    (kill -9 included), so that no server outlives its run."""
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
