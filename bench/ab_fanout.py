"""A/B: the broadcast fan-out of two source trees, alternating rounds, medians and their ratio.

    git archive BASE | tar -x -C /tmp/base && (cd /tmp/base && python setup.py build_ext --inplace)
    python bench/ab_fanout.py /tmp/base . [--rounds 6] [--publishes 5] [--subscribers 10000]

The fan-out of `bench_lapps.py` (its subscriber processes, its `fanout` service, 4 workers)
for a change to the delivery path: each round starts one tree's server (`python -m lapps`
run from that tree, `--workers` workers, the tree's own bench/services/fanout), opens
`--subscribers` connections from `bench_lapps.py`'s subscriber processes (at most 2,500 each),
each subscribed to bcast channel 1000, then a trigger connection calls `publish` once as a
warm-up and `--publishes` times measured, 0.3 s apart; the server stops and the other tree
runs, the order alternating from round to round. With `--pin` (the default) the server and
all its processes run under `taskset -c 0` and the subscriber processes on core 1, so the
server has one core to itself and the figure is its own cost; `--no-pin` leaves both to the
scheduler, as `make bench` does. Figures per publish: the last delivery (every subscriber
stamps its arrival with time.time() after the recv; the clock starts before the trigger's
send) and the server's CPU time (the scheduler's, /proc/PID/task/*/schedstat, master and workers) from before the send until
the last arrival was collected. Prints each round, the medians over all publishes and B/A.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from array import array
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_lapps as bl  # noqa: E402
from harness import HOST, LappsServer, free_port, log, raise_nofile, services_folder  # noqa: E402
from lapps.client import connect as ws_connect  # noqa: E402


def cpu_ns(procs: list) -> int:
    """CPU time (ns) of these processes and all their threads so far, from the scheduler's
    own accounting (/proc/PID/task/TID/schedstat): psutil's ticks are 10 ms, as long as a
    fan-out's whole server cost."""
    total = 0
    for p in procs:
        try:
            for tid in os.listdir(f"/proc/{p.pid}/task"):
                with open(f"/proc/{p.pid}/task/{tid}/schedstat") as f:
                    total += int(f.read().split()[0])
        except OSError:
            continue
    return total


def one_round(tree: Path, args: argparse.Namespace, scratch: Path) -> list[tuple[float, float, float]]:
    """(last delivery in ms, server CPU seconds, subscriber processes' CPU seconds) of each measured publish on `tree`'s server."""
    port = free_port()
    services = scratch / f"services-{port}"
    services_folder(services, {"fanout": tree / "bench" / "services" / "fanout"}, shipped=())
    config = scratch / f"fan-{port}.toml"
    config.write_text(f'[server]\nip = "{HOST}"\nlisteners = 2\nservices_dir = "{services}"\n[admin]\nport = 0\n'
                      f'[limits]\nping_interval = 0\nhandshake_timeout = 30\n'
                      f'[services.fanout]\nprotocol = "lapps"\nrequest_target = "/fanout"\npreload = ["time"]\n')
    env = {k: v for k, v in os.environ.items() if k != "LAPPS_NO_SPEEDUPS"}
    prefix = ["taskset", "-c", "0"] if args.pin else []
    server = LappsServer.start(config, port, scratch / f"server-{port}.log", args.workers,
                               prefix=prefix, cwd=tree, env=env, tied=True)
    pipes, children = [], []
    out: list[tuple[float, float]] = []
    try:
        server.wait_ready(path=None)
        procs = server.processes()
        nprocs = -(-args.subscribers // bl.MAX_PER_PROCESS)
        core = 1 if args.pin else None
        pipes, children = bl.fork_clients(bl.pinned_subscriber, [(core, port, share)
                                                              for share in bl.split(args.subscribers, nprocs)])
        ready = sum(bl.recv_or_fail(pipe, 240, "subscribing")[1] for pipe in pipes)
        if ready != args.subscribers:
            raise SystemExit(f"only {ready} of {args.subscribers} subscribed on {tree}")
        with ws_connect(f"ws://{HOST}:{port}/fanout") as trigger:
            for seq in range(args.publishes + 1):
                time.sleep(0.3)
                cpu0 = cpu_ns(procs)
                t0 = time.time()
                trigger.request("publish", [seq])
                for pipe in pipes:
                    pipe.send(("collect", seq, t0 + 30))
                last, reached, client_cpu = 0.0, 0, 0.0
                for pipe in pipes:
                    _, _, raw, _, problems, ccpu = bl.recv_or_fail(pipe, 60, "arrivals")
                    client_cpu += ccpu
                    a = array("d")
                    a.frombytes(raw)
                    reached += len(a)
                    if a:
                        last = max(last, max(a) - t0)
                    if any(problems.values()):
                        raise SystemExit(f"problems on {tree}: {problems}")
                cpu = (cpu_ns(procs) - cpu0) / 1e9
                if reached != args.subscribers:
                    raise SystemExit(f"publish {seq} reached {reached} of {args.subscribers} on {tree}")
                if seq:
                    out.append((last * 1e3, cpu, client_cpu))
        for pipe in pipes:
            pipe.send(("stop",))
        for pipe in pipes:
            bl.recv_or_fail(pipe, 30, "closing")
    finally:
        bl.reap(children)
        server.stop(5)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("a", type=Path, help="tree A (the baseline)")
    ap.add_argument("b", type=Path, help="tree B (the change)")
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--publishes", type=int, default=5, help="measured publishes per round (after one warm-up)")
    ap.add_argument("--subscribers", type=int, default=10000)
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--pin", action=argparse.BooleanOptionalAction, default=True,
                    help="server on core 0, subscribers on core 1 (default)")
    args = ap.parse_args()
    raise_nofile()
    trees = {"A": args.a.resolve(), "B": args.b.resolve()}
    last: dict[str, list[float]] = {"A": [], "B": []}
    cpu: dict[str, list[float]] = {"A": [], "B": []}
    client: dict[str, list[float]] = {"A": [], "B": []}
    with tempfile.TemporaryDirectory(prefix="lapps-abfan-") as scratch:
        for r in range(args.rounds):
            for name in ("A", "B") if r % 2 == 0 else ("B", "A"):
                got = one_round(trees[name], args, Path(scratch))
                last[name] += [ms for ms, _, _ in got]
                cpu[name] += [c for _, c, _ in got]
                client[name] += [c for _, _, c in got]
                log(f"round {r + 1} {name} ({trees[name]}): last delivery "
                    f"{', '.join(f'{ms:.1f}' for ms, _, _ in got)} ms; server CPU "
                    f"{', '.join(f'{c * 1e3:.0f}' for _, c, _ in got)} ms; subscribers' CPU "
                    f"{', '.join(f'{c * 1e3:.0f}' for _, _, c in got)} ms")
    for what, series, scale in (("last delivery (ms)", last, 1), ("server CPU per publish (ms)", cpu, 1e3),
                                ("subscribers' CPU per publish (ms)", client, 1e3)):
        a, b = statistics.median(series["A"]), statistics.median(series["B"])
        log(f"median {what}: A {a * scale:.1f}, B {b * scale:.1f}; B/A {b / a:.3f}")
    log(f"({args.rounds} rounds x {args.publishes} publishes, {args.subscribers} subscribers, "
        f"{args.workers} workers, {'pinned: server core 0, subscribers core 1' if args.pin else 'not pinned'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
