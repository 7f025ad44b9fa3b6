"""A/B: the raw Lua echo and the LAppS echo of two source trees, alternating rounds, pinned,
medians and their ratios.

    git archive BASE | tar -x -C /tmp/base && (cd /tmp/base && python setup.py build_ext --inplace)
    python bench/ab_trees.py /tmp/base . [--rounds 8] [--seconds 3] [--connections 80] [--echo raw lapps]

For a change that must not cost the hot path (the fault barrier's `try`, say): each round
starts one tree's server (`python -m lapps` run from that tree, one worker, `/echo`, pings
off, `taskset -c 0`; bench/harness.py starts it and waits until it echoes), runs the
websocketpp client (`make bench-client`; `taskset -c 1`, 277-byte text messages, closed
loop) for `--seconds`, and stops the server. `--echo` names the echoes compared (both by
default, each round running each of them on both trees): `raw`, the Lua echo above, and
`lapps`, the LAppS echo (`/lapps_echo` of bench/services, a CBOR request whose param is 277
bytes). The order of the two trees alternates from round to round so drift in the machine's
load hits both alike. Two figures
per round: round trips per second (wall clock), and round trips per CPU-second of the
server's processes (psutil, over the client's run), which a busy neighbour on a shared
machine disturbs much less. Prints each round, and per echo the medians and B/A. Both trees run on this
interpreter (the venv's), each with the C extension built in place.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from harness import HOST, LappsServer, free_port, log, tree_cpu

CLIENT = Path(__file__).resolve().parent / "client" / "lapps-bench-client"
ECHOES = ("raw", "lapps")


def one_round(tree: Path, seconds: float, connections: int, scratch: Path,
              lapps: bool = False) -> tuple[float, float]:
    """(round trips per second, per server CPU-second) of `tree`'s server, one run."""
    port = free_port()
    config = scratch / "ab.toml"
    services, service = (tree / "bench" / "services", "lapps_echo") if lapps else (tree / "services", "echo")
    extra = f'protocol = "lapps"\nrequest_target = "/{service}"\n' if lapps else ""
    config.write_text(f'[server]\nip = "{HOST}"\nservices_dir = "{services}"\n[admin]\nport = 0\n'
                      f'[limits]\nping_interval = 0\n[services.{service}]\n{extra}')
    env = {k: v for k, v in os.environ.items() if k != "LAPPS_NO_SPEEDUPS"}
    server = LappsServer.start(config, port, scratch / f"{tree.name or 'tree'}.log", 1, listeners=1,
                               prefix=["taskset", "-c", "0"], cwd=tree, env=env, tied=True)
    try:
        server.wait_ready(path=None if lapps else "/echo")
        procs = server.processes()
        cpu0 = tree_cpu(procs)
        done = subprocess.run(["taskset", "-c", "1", str(CLIENT), "--url", f"ws://{HOST}:{port}/{service}",
                               "--connections", str(connections), "--size", "277", "--seconds", str(seconds),
                               "--warmup", "0", *(["--lapps"] if lapps else [])], capture_output=True, text=True)
        cpu = tree_cpu(procs) - cpu0
        found = re.search(r"^RESULT .*\btotal_rps=([\d.]+).*\berrors=(\d+) verified=(\d+)", done.stdout, re.M)
        if not found or found.group(2) != "0":
            raise SystemExit(f"client failed on {tree}: {done.stdout}{done.stderr}")
        return float(found.group(1)), int(found.group(3)) / max(cpu, 1e-9)
    finally:
        server.stop(5)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("a", type=Path, help="tree A (the baseline)")
    ap.add_argument("b", type=Path, help="tree B (the change)")
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=3)
    ap.add_argument("--connections", type=int, default=80)
    ap.add_argument("--echo", nargs="+", choices=ECHOES, default=list(ECHOES),
                    help="the echoes compared (default: both)")
    args = ap.parse_args()
    if not CLIENT.exists():
        raise SystemExit(f"{CLIENT} is missing: make bench-client")
    trees = {"A": args.a.resolve(), "B": args.b.resolve()}
    rates: dict[tuple[str, str], list[float]] = {(e, name): [] for e in args.echo for name in trees}
    per_cpu: dict[tuple[str, str], list[float]] = {key: [] for key in rates}
    with tempfile.TemporaryDirectory(prefix="lapps-ab-") as scratch:
        for r in range(args.rounds):
            for echo in args.echo:
                for name in ("A", "B") if r % 2 == 0 else ("B", "A"):
                    rate, cpu_rate = one_round(trees[name], args.seconds, args.connections, Path(scratch),
                                               echo == "lapps")
                    rates[echo, name].append(rate)
                    per_cpu[echo, name].append(cpu_rate)
                    log(f"round {r + 1} {echo} {name} ({trees[name]}): {rate:,.0f} round trips/s, "
                        f"{cpu_rate:,.0f} per server CPU-second")
    for echo in args.echo:
        for what, series in (("round trips/s", rates), ("round trips per server CPU-second", per_cpu)):
            a, b = statistics.median(series[echo, "A"]), statistics.median(series[echo, "B"])
            log(f"{echo} echo, median {what}: A {a:,.0f}, B {b:,.0f}; B/A {b / a:.3f}")
    if len(args.echo) == 2:   # each tree's LAppS / raw, from the rounds that ran both
        for what, series in (("round trips/s", rates), ("round trips per server CPU-second", per_cpu)):
            for name in trees:
                ratios = [lp / raw for lp, raw in zip(series["lapps", name], series["raw", name])]
                log(f"LAppS / raw, {what}, {name}: median of per-round ratios {statistics.median(ratios):.3f}")
    log(f"({args.rounds} rounds of {args.seconds:g} s, {args.connections} connections, 277 B)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
