"""LAppS against peer WebSocket servers: the same closed-loop echo load on each, one at a time.

Each server runs alone on 127.0.0.1 and gets the same load from the C++ websocketpp client
(`bench/client/lapps-bench-client`): N connections (80, then 120) each send a 277-byte text
message and send the next when the echo came back (verified byte for byte by the client),
for a 1 s warm-up and S seconds (default 5). The servers:

- LAppS with 1 and with 2 workers (`python -m lapps`, the raw Lua echo of `services/echo`),
  and, on the same servers, the LAppS-protocol echo (`bench/services/lapps_echo`, a CBOR
  request answered from Lua) through the client's `--lapps` (shown, not compared: no peer
  speaks that protocol);
- the peers of `bench/peers/`: python-websockets on asyncio and on uvloop, aiohttp, picows
  (Cython on uvloop), node's `ws`, and a websocketpp (C++, Boost.Asio) server on one thread.

Per case: round trips per second and per connection, p50/p99 round-trip time (from the
client), the server's CPU (user + system of its whole process tree, psutil, over a window
inside the client's measured window) in cores, its peak RSS (summed over the tree, sampled
every 0.1 s), and the efficiency: round trips per server-CPU-second, the figure that depends
least on what else the machine does. R rounds (default 5) with the order of the servers
reversed every other round; before each round the script waits (up to a limit) until the
rest of the machine is quiet and records how busy it was. Medians over the rounds; the ratios
LAppS / peer are medians of the per-round ratios, where LAppS is the better of its 1- and
2-worker runs in that round.

Prints progress and a Markdown table; writes bench/results/peers.csv, peers.json and a bar
chart peers.png. `--quick` is a smoke run (1 round, 3 s).

    bench/peers/.venv/bin/python bench/run_peers.py [--quick] [--rounds 5] [--seconds 5]
        [--connections 80,120] [--only NAME,...] [--skip NAME,...] [--client PATH]

`make bench-peers` installs and builds what is missing, then runs it (ARGS="..." passes flags).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PEERS = REPO / "bench" / "peers"
PEERS_PY = PEERS / ".venv" / "bin" / "python"

# Started with another Python (the system's, the project's .venv): run again in the peers' venv,
# which has psutil, matplotlib and the Python peers (whose versions the results record).
if (__name__ == "__main__" and PEERS_PY.exists() and not os.environ.get("LAPPS_PEERS_REEXEC")
        and Path(sys.prefix).resolve() != (PEERS / ".venv").resolve()):
    os.environ["LAPPS_PEERS_REEXEC"] = "1"
    os.execv(str(PEERS_PY), [str(PEERS_PY), str(Path(__file__).resolve()), *sys.argv[1:]])

try:
    import psutil
except ImportError:
    sys.exit("run_peers.py needs psutil and matplotlib: run `make bench-peers-setup` (bench/peers/.venv)")

import argparse
import csv
import hashlib
import json
import math
import platform
import re
import shutil
import signal
import statistics
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from harness import (HOST, ServerProcess, die_with_parent, echo_probe, free_port, git_commit, lapps_argv, log,  # noqa: E402
                     quick_defaults, raise_nofile, serving_workers, services_folder, spawn, tree_cpu, warning_lines)

LAPPS_PY = REPO / ".venv" / "bin" / "python"
CLIENT = REPO / "bench" / "client" / "lapps-bench-client"
RESULTS = REPO / "bench" / "results"
MSG_SIZE = 277


# ---------------------------------------------------------------------------- servers


@dataclass
class Row:
    """One line of the table: a server and what the client does against it."""
    key: str                 # short name for --only/--skip and the files
    label: str               # the table's name for it
    path: str                # request target
    lapps_protocol: bool = False
    is_lapps: bool = False   # a LAppS row (the ratio's numerator) rather than a peer
    compare: bool = True     # enters the LAppS / peer ratios (raw echo rows)


@dataclass
class ServerSpec:
    """A server process to start, and the rows measured on it while it runs."""
    key: str
    command: Callable[[int, Path], list[str]]   # (port, temp folder) -> argv
    rows: list[Row]
    lapps_workers: int = 0                      # > 0: a LAppS server (readiness from its log)
    needs: list[Path] = field(default_factory=list)


LAPPS_CONFIG = """\
# written by bench/run_peers.py
[server]
ip = "127.0.0.1"
port = {port}
workers = {workers}
shutdown_timeout = 3
services_dir = "{services}"

[admin]
port = 0

[services.echo]
protocol = "raw"
request_target = "/echo"

[services.lapps_echo]
protocol = "lapps"
request_target = "/lapps_echo"
"""


def lapps_command(workers: int) -> Callable[[int, Path], list[str]]:
    def command(port: int, tmp: Path) -> list[str]:
        services = tmp / "services"
        if not services.exists():
            services_folder(services, {"lapps_echo": REPO / "bench" / "services" / "lapps_echo"})
        config = tmp / f"lapps-{port}.toml"
        config.write_text(LAPPS_CONFIG.format(port=port, workers=workers, services=services))
        return lapps_argv(config, port, workers, python=LAPPS_PY)
    return command


def peer_py(script: str, *flags: str) -> Callable[[int, Path], list[str]]:
    return lambda port, tmp: [str(PEERS_PY), str(PEERS / script), str(port), *flags]


def all_servers(lapps_protocol: bool, lapps_workers: tuple[int, ...] = (1, 2)) -> list[ServerSpec]:
    """Every server of the bench; LAppS once per worker count. Only 1 and 2 workers enter the
    ratios (the targets are for the better of those two on this 2-core machine); more
    workers are measured for the scaling line."""
    specs = []
    for w in lapps_workers:
        rows = [Row(f"lapps-w{w}", f"LAppS, {w} worker{'s' if w > 1 else ''} (raw Lua echo)", "/echo",
                    is_lapps=True, compare=w <= 2)]
        if lapps_protocol:
            rows.append(Row(f"lapps-proto-w{w}", f"LAppS, {w} worker{'s' if w > 1 else ''}, LAppS protocol (CBOR)",
                            "/lapps_echo", lapps_protocol=True, is_lapps=True, compare=False))
        specs.append(ServerSpec(f"lapps-w{w}", lapps_command(w), rows, lapps_workers=w, needs=[LAPPS_PY]))
    py = [PEERS_PY]
    specs += [
        ServerSpec("websockets", peer_py("websockets_server.py"),
                   [Row("websockets", "python-websockets (asyncio)", "/echo")], needs=py),
        ServerSpec("websockets-uvloop", peer_py("websockets_server.py", "--uvloop"),
                   [Row("websockets-uvloop", "python-websockets (uvloop)", "/echo")], needs=py),
        ServerSpec("aiohttp", peer_py("aiohttp_server.py"),
                   [Row("aiohttp", "aiohttp (asyncio)", "/echo")], needs=py),
        ServerSpec("picows", peer_py("picows_server.py"),
                   [Row("picows", "picows (Cython, uvloop)", "/echo")], needs=py),
        ServerSpec("node-ws", lambda port, tmp: ["node", str(PEERS / "ws_server.js"), str(port)],
                   [Row("node-ws", "node ws", "/echo")], needs=[PEERS / "node_modules" / "ws"]),
        ServerSpec("websocketpp", lambda port, tmp: [str(PEERS / "websocketpp_server"), str(port)],
                   [Row("websocketpp", "websocketpp (C++, 1 thread)", "/echo")],
                   needs=[PEERS / "websocketpp_server"]),
    ]
    return specs


class Running(ServerProcess):
    """One started server (the harness's process: its own session, its output in a file)."""

    def __init__(self, spec: ServerSpec, tmp: Path) -> None:
        self.spec = spec
        self.port = free_port()
        log_path = tmp / f"{spec.key}-{self.port}.log"
        super().__init__(spawn(spec.command(self.port, tmp), log_path, tied=True), log_path)

    def wait_ready(self, timeout: float = 30.0) -> float:
        """Until the port accepts and an echo comes back (LAppS: and every worker logged
        'serving'); the seconds it took. ServerNotReady (a RuntimeError) otherwise."""
        workers = self.spec.lapps_workers
        ready = (lambda: serving_workers(self.log()) >= workers) if workers else None
        return self.wait_until(lambda: echo_probe(self.port, "/echo"), timeout, ready)

    def stop(self, timeout: float = 10.0) -> dict[str, Any]:
        """The harness's stop; what it printed that counts as a problem."""
        result = super().stop(timeout)
        text = self.log()
        if self.spec.lapps_workers:   # LAppS logs INFO lines; only warnings and errors count
            problems = warning_lines(text)
        else:                         # the peers print nothing but errors
            problems = [ln for ln in text.splitlines() if ln.strip()]
        return {**result, "problems": problems[:20], "problem_count": len(problems)}


# ---------------------------------------------------------------------------- measuring


def per_process_cpu(procs: list[psutil.Process]) -> dict[int, tuple[str, float]]:
    out = {}
    for p in procs:
        try:
            t = p.cpu_times()
            out[p.pid] = (p.name(), t.user + t.system)
        except psutil.NoSuchProcess:
            pass
    return out


def tree_rss(procs: list[psutil.Process]) -> int:
    total = 0
    for p in procs:
        try:
            total += p.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total


def tree_pss(procs: list[psutil.Process]) -> int:
    total = 0
    for p in procs:
        try:
            total += p.memory_full_info().pss
        except (psutil.NoSuchProcess, psutil.AccessDenied, AttributeError):
            pass
    return total


def machine_cpu() -> tuple[float, float]:
    """(busy, softirq + irq) CPU seconds of the whole machine so far."""
    t = psutil.cpu_times()
    idle = t.idle + getattr(t, "iowait", 0.0)
    total = sum(t) - getattr(t, "guest", 0.0) - getattr(t, "guest_nice", 0.0)
    return total - idle, getattr(t, "softirq", 0.0) + getattr(t, "irq", 0.0)


def established(port: int) -> int:
    """TCP connections in ESTABLISHED whose local port is `port` (the server's side)."""
    suffix = f":{port:04X}"
    n = 0
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(name) as f:
                next(f)
                for line in f:
                    parts = line.split(None, 4)
                    if parts[3] == "01" and parts[1].endswith(suffix):
                        n += 1
        except (OSError, StopIteration):
            pass
    return n


def wait_quiet(threshold: float, limit: float) -> dict[str, Any]:
    """Until the machine, less this script, was busy less than `threshold` cores over one
    second, or `limit` seconds passed; what it saw."""
    me = psutil.Process()
    start = time.monotonic()
    seen: list[float] = []
    while True:
        b0, _ = machine_cpu()
        m0 = sum(me.cpu_times()[:2])
        t0 = time.monotonic()
        time.sleep(1.0)
        b1, _ = machine_cpu()
        m1 = sum(me.cpu_times()[:2])
        busy = max(0.0, (b1 - b0) - (m1 - m0)) / (time.monotonic() - t0)
        seen.append(busy)
        waited = time.monotonic() - start
        if busy < threshold or waited >= limit:
            return {"quiet": busy < threshold, "busy_cores": round(busy, 3), "waited_s": round(waited, 1),
                    "min_busy_cores": round(min(seen), 3), "max_busy_cores": round(max(seen), 3),
                    "load_avg": os.getloadavg()}


RESULT_RE = re.compile(r"(\w+)=(\S+)")


def parse_result(stdout: str) -> dict[str, Any] | None:
    for line in stdout.splitlines():
        if line.startswith("RESULT "):
            out: dict[str, Any] = {}
            for k, v in RESULT_RE.findall(line):
                try:
                    out[k] = int(v)
                except ValueError:
                    try:
                        out[k] = float(v)
                    except ValueError:
                        out[k] = v
            return out
    return None


def run_case(server: Running, row: Row, connections: int, args: argparse.Namespace) -> dict[str, Any]:
    """One client run against a running server, with the server measured in a window inside
    the client's: from (all connections established + warm-up + margin) to (that + seconds
    - margin)."""
    cmd = [str(args.client), "--url", f"ws://{HOST}:{server.port}{row.path}", "--connections", str(connections),
           "--size", str(args.size), "--seconds", f"{args.seconds:g}", "--warmup", f"{args.warmup:g}"]
    if row.lapps_protocol:
        cmd.append("--lapps")
    elif args.binary:
        cmd.append("--binary")
    if args.client_procs > 1:
        cmd += ["--processes", str(args.client_procs)]
    t_launch = time.monotonic()
    client = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              stdin=subprocess.DEVNULL, start_new_session=True, preexec_fn=die_with_parent)
    out: dict[str, Any] = {"row": row.key, "connections": connections}
    try:
        t_conn = None
        while client.poll() is None and time.monotonic() - t_launch < 60:
            if established(server.port) >= connections:
                t_conn = time.monotonic()
                break
            time.sleep(0.01)
        if t_conn is None:
            if client.poll() is not None:   # it gave up (or failed) before every connection was open
                stdout, stderr = client.communicate()
                res = parse_result(stdout)
                out.update({"client_exit": client.returncode, "client_stderr": stderr.strip()[-1000:],
                            "failed": f"the client ended before all connections were open (exit "
                                      f"{client.returncode}): {(stdout.strip() + ' ' + stderr.strip())[-300:]}"})
                if res is not None:
                    out["client_result"] = res
                return out
            out["note"] = "connections were never all established"
            t_conn = time.monotonic()
        out["connect_s"] = round(t_conn - t_launch, 3)
        margin = min(0.25, args.seconds / 10)
        w_start = t_conn + args.warmup + margin
        w_end = t_conn + args.warmup + args.seconds - margin
        time.sleep(max(0.0, w_start - time.monotonic()))
        sprocs = server.processes()
        try:
            croot = psutil.Process(client.pid)
            cprocs = [croot, *croot.children(recursive=True)]
        except psutil.NoSuchProcess:
            cprocs = []
        pp0 = per_process_cpu(sprocs)
        s0, c0, (m0, i0) = tree_cpu(sprocs), tree_cpu(cprocs), machine_cpu()
        t0 = time.monotonic()
        peak = tree_rss(sprocs)
        while time.monotonic() < w_end - 0.1 and client.poll() is None:
            time.sleep(0.1)
            peak = max(peak, tree_rss(sprocs))
        time.sleep(max(0.0, w_end - time.monotonic()))
        s1, c1, (m1, i1) = tree_cpu(sprocs), tree_cpu(cprocs), machine_cpu()
        t1 = time.monotonic()
        pp1 = per_process_cpu(sprocs)
        peak = max(peak, tree_rss(sprocs))
        pss = tree_pss(sprocs)
        stdout, stderr = client.communicate(timeout=args.warmup + args.seconds + 60)
    except BaseException:
        if client.poll() is None:
            os.killpg(client.pid, signal.SIGKILL)
            client.wait()
        raise
    window = t1 - t0
    res = parse_result(stdout)
    out.update({"client_exit": client.returncode, "client_stderr": stderr.strip()[-1000:],
                "window_s": round(window, 3), "server_processes": len(sprocs)})
    if res is None:
        out["failed"] = f"no RESULT line (exit {client.returncode}): {stderr.strip()[-300:]}"
        return out
    server_cpu = s1 - s0
    cores = server_cpu / window if window > 0 else float("nan")
    rps = float(res["total_rps"])
    busy, irq = m1 - m0, i1 - i0
    out.update({
        "total_rps": rps, "per_client_rps": float(res["per_client_rps"]), "p50_us": res.get("p50_us"),
        "p99_us": res.get("p99_us"), "errors": res.get("errors", 0), "verified": res.get("verified"),
        "server_cpu_s": round(server_cpu, 4), "server_cores": cores,
        "rps_per_server_cpu_s": rps / cores if cores > 0 else float("nan"),
        "rss_mb": peak / 2**20, "pss_mb": pss / 2**20,
        "client_cores": (c1 - c0) / window, "irq_cores": irq / window,
        "server_cores_by_process": {f"{name} ({pid})": round((pp1[pid][1] - c) / window, 3)
                                    for pid, (name, c) in pp0.items() if pid in pp1},
        "other_cores": max(0.0, busy - server_cpu - (c1 - c0) - irq) / window,
    })
    if not server.running():
        out["failed"] = f"server exited with {server.proc.returncode} during the run"
    return out


# ---------------------------------------------------------------------------- the run


def med(values: list[float]) -> float:
    values = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    return statistics.median(values) if values else float("nan")


def summarize(rows: list[Row], conns: list[int], cases: dict[tuple[str, int], list[dict[str, Any]]],
              rounds: int) -> dict[str, Any]:
    """Medians per (row, connections), and the LAppS / peer ratios (medians of per-round
    ratios, LAppS = the better raw LAppS row of that round, separately for each figure)."""
    summary: dict[str, Any] = {}
    lapps_keys = [r.key for r in rows if r.is_lapps and r.compare]
    for n in conns:
        per: dict[str, Any] = {}
        for row in rows:
            ok = [c for c in cases.get((row.key, n), []) if "failed" not in c]
            if not ok:
                per[row.key] = {"rounds": 0}
                continue
            m = {k: med([c[k] for c in ok]) for k in
                 ("total_rps", "per_client_rps", "p50_us", "p99_us", "server_cores", "rps_per_server_cpu_s",
                  "rss_mb", "pss_mb", "client_cores", "irq_cores", "other_cores")}
            m["rounds"] = len(ok)
            m["errors"] = sum(c.get("errors", 0) or 0 for c in ok)
            m["failed_rounds"] = len(cases.get((row.key, n), [])) - len(ok)
            m["min_rps"] = min(c["total_rps"] for c in ok)
            m["max_rps"] = max(c["total_rps"] for c in ok)
            m["min_eff"] = min(c["rps_per_server_cpu_s"] for c in ok)
            m["max_eff"] = max(c["rps_per_server_cpu_s"] for c in ok)
            per[row.key] = m
        # which LAppS row is better, by median, for each figure (reported beside the ratios)
        for fig in ("total_rps", "rps_per_server_cpu_s"):
            best = max((k for k in lapps_keys if per.get(k, {}).get("rounds")),
                       key=lambda k: per[k][fig], default=None)
            per.setdefault("_best", {})[fig] = best
        for row in rows:
            if row.is_lapps:
                continue
            for fig, name in (("total_rps", "ratio_rps"), ("rps_per_server_cpu_s", "ratio_eff")):
                ratios = []
                for r in range(rounds):
                    peer = next((c for c in cases.get((row.key, n), []) if c["round"] == r and "failed" not in c), None)
                    best = max((c[fig] for k in lapps_keys for c in cases.get((k, n), [])
                                if c["round"] == r and "failed" not in c), default=None)
                    if peer and best and peer[fig] > 0:
                        ratios.append(best / peer[fig])
                if per.get(row.key, {}).get("rounds"):
                    per[row.key][name] = med(ratios)
                    per[row.key][name + "_rounds"] = [round(x, 3) for x in ratios]
        summary[str(n)] = per
    return summary


def fmt_int(v: float) -> str:
    return "–" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:,.0f}"


def table(meta: dict[str, Any], rows: list[Row], conns: list[int], summary: dict[str, Any],
          quiet: list[dict[str, Any]], cases: dict[tuple[str, int], list[dict[str, Any]]]) -> str:
    lines = [f"Echo, closed loop, {meta['size']}-byte {'binary' if meta['binary'] else 'text'} messages, "
             f"{meta['rounds']} round{'s' if meta['rounds'] > 1 else ''} x {meta['seconds']:g} s (+{meta['warmup']:g} s "
             f"warm-up) per case, medians; client: {meta['client_name']}; {meta['cpus']} cores shared by "
             f"the server, the client and the rest of the machine.", ""]
    if not meta["client_is_cpp"]:
        lines += ["**NOT the websocketpp client: a harness test only, not a result.**", ""]
    for n in conns:
        per = summary[str(n)]
        best = per.get("_best", {})
        lines += [f"**{n} connections**", "",
                  "| server | round trips/s | per connection/s | p99 | server CPU (cores) | peak RSS (PSS) | "
                  "round trips / server CPU-s | LAppS ÷ peer, rt/s | LAppS ÷ peer, rt / CPU-s |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for row in rows:
            m = per.get(row.key, {})
            if not m.get("rounds"):
                lines.append(f"| {row.label} | failed | | | | | | | |")
                continue
            ratio_rps = f"{m['ratio_rps']:.2f}×" if "ratio_rps" in m and not math.isnan(m["ratio_rps"]) else ""
            ratio_eff = f"{m['ratio_eff']:.2f}×" if "ratio_eff" in m and not math.isnan(m["ratio_eff"]) else ""
            mark = ""
            if row.key == best.get("total_rps"):
                mark += " ᵗ"
            if row.key == best.get("rps_per_server_cpu_s"):
                mark += " ᵉ"
            errs = f" ({m['errors']} errors)" if m["errors"] else ""
            lines.append(f"| {row.label}{mark}{errs} | {fmt_int(m['total_rps'])} | {fmt_int(m['per_client_rps'])} | "
                         f"{m['p99_us'] / 1000:.1f} ms | {m['server_cores']:.2f} | {m['rss_mb']:.0f} MB ({m['pss_mb']:.0f}) | "
                         f"{fmt_int(m['rps_per_server_cpu_s'])} | {ratio_rps} | {ratio_eff} |")
        lines.append("")
        scaling = [(r.key.removeprefix("lapps-w"), per[r.key]) for r in rows
                   if r.is_lapps and not r.lapps_protocol and per.get(r.key, {}).get("rounds")]
        if len(scaling) > 1:
            base = scaling[0][1]
            lines += ["Scaling with `--workers` (raw Lua echo): " + "; ".join(
                f"{w}: {fmt_int(m['total_rps'])} rt/s ({m['total_rps'] / base['total_rps']:.2f}×), "
                f"{m['server_cores']:.2f} server cores, {fmt_int(m['rps_per_server_cpu_s'])} rt/CPU-s"
                for w, m in scaling) + f" (relative to {scaling[0][0]} worker{'s' if scaling[0][0] != '1' else ''}; "
                f"{meta['cpus']} cores in all, the client's included).", ""]
    lines.append("ᵗ / ᵉ: the LAppS configuration with the higher median throughput / efficiency. The ratios "
                 "are LAppS (the better of 1 and 2 workers in each round, per figure) ÷ the peer: below 1× "
                 "LAppS is slower / uses more CPU per round trip. Peak RSS is summed over the server's "
                 "processes (LAppS: master + workers; a page they share counts once in each); PSS, at the "
                 "window's end, shares such pages out, so it is the fairer memory figure for LAppS.")
    done = [c for v in cases.values() for c in v if "failed" not in c]
    if done:
        lines.append(f"During the measured windows (median over all {len(done)}, and range): client "
                     f"{med([c['client_cores'] for c in done]):.2f} cores, kernel softirq "
                     f"{med([c['irq_cores'] for c in done]):.2f}, the rest of the machine "
                     f"{med([c['other_cores'] for c in done]):.2f} ({min(c['other_cores'] for c in done):.2f}–"
                     f"{max(c['other_cores'] for c in done):.2f}), of {meta['cpus']}.")
    idle = meta.get("idle_cores") or {}
    if idle and all(v < 0.01 for v in idle.values()):
        lines.append("Idle (no client, 1 s right after start, first round): every server used less than 0.01 "
                     "CPU-s (psutil's resolution).")
    elif idle:
        lines.append("Idle (no client, 1 s right after start, first round): " + ", ".join(
            f"{k} {v:.2f}" for k, v in idle.items()) + " CPU-s.")
    if quiet:
        lines.append("Before each round, the rest of the machine: " + ", ".join(
            f"{q['busy_cores']:.2f} cores{'' if q['quiet'] else ' (not quiet)'} after {q['waited_s']:.0f} s"
            for q in quiet) + f" (threshold {meta['quiet_threshold']:g} cores).")
    return "\n".join(lines)


def chart(path: Path, meta: dict[str, Any], rows: list[Row], conns: list[int], summary: dict[str, Any]) -> bool:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log("matplotlib is missing: no chart (make bench-peers installs it in bench/peers/.venv)")
        return False
    shown = [r for r in rows if any(summary[str(n)].get(r.key, {}).get("rounds") for n in conns)]
    fig, axes = plt.subplots(2, 1, figsize=(max(8, 1.1 * len(shown) + 3), 9), constrained_layout=True)
    width = 0.8 / len(conns)
    colors = ["#4C72B0", "#DD8452", "#55A868", "#C44E52"]
    for ax, (fig_key, lo, hi, title) in zip(axes, (
            ("total_rps", "min_rps", "max_rps", "round trips / s (higher is better)"),
            ("rps_per_server_cpu_s", "min_eff", "max_eff", "round trips per server CPU-second (higher is better)"))):
        for j, n in enumerate(conns):
            xs, ys, err_lo, err_hi = [], [], [], []
            for i, r in enumerate(shown):
                m = summary[str(n)].get(r.key, {})
                if not m.get("rounds"):
                    continue
                xs.append(i + (j - (len(conns) - 1) / 2) * width)
                ys.append(m[fig_key])
                err_lo.append(max(0.0, m[fig_key] - m[lo]))
                err_hi.append(max(0.0, m[hi] - m[fig_key]))
            ax.bar(xs, ys, width, yerr=[err_lo, err_hi], capsize=2, label=f"{n} connections",
                   color=colors[j % len(colors)])
        ax.set_xticks(range(len(shown)))
        ax.set_xticklabels([r.label.replace(" (", "\n(").replace(", LAppS protocol", "\nLAppS protocol")
                            for r in shown], fontsize=7)
        ax.set_title(title, fontsize=10)
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=8)
        ax.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:,.0f}"))
    fig.suptitle(f"Echo, {meta['size']} B, medians of {meta['rounds']} rounds (bars: min–max); "
                 f"{meta['cpus']} cores; client {meta['client_name']}", fontsize=10)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def versions() -> dict[str, str]:
    from importlib import metadata
    out = {}
    for name in ("websockets", "aiohttp", "picows", "uvloop", "aiofastnet"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    try:
        out["node"] = subprocess.run(["node", "--version"], capture_output=True, text=True, timeout=10).stdout.strip()
        out["ws"] = json.loads((PEERS / "node_modules" / "ws" / "package.json").read_text())["version"]
    except (OSError, ValueError, KeyError, subprocess.SubprocessError):
        pass
    try:
        text = Path("/usr/include/websocketpp/version.hpp").read_text()
        out["websocketpp"] = ".".join(re.search(rf"{p}_version = (\d+)", text).group(1)
                                      for p in ("major", "minor", "patch"))
    except (OSError, AttributeError):
        pass
    try:
        out["lapps_python"] = subprocess.run([str(LAPPS_PY), "-c", "import platform; print(platform.python_version())"],
                                             capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return out


def find_client(args: argparse.Namespace) -> Path:
    if args.client is not None:
        return args.client.resolve()
    if not os.access(CLIENT, os.X_OK) and re.search(r"^bench-client:", (REPO / "Makefile").read_text(), re.M):
        log("the C++ client is not built: make bench-client")
        subprocess.run(["make", "-s", "bench-client"], cwd=REPO)
    if not os.access(CLIENT, os.X_OK):
        sys.exit(f"no load client: {CLIENT.relative_to(REPO)} is not built (make bench-client), and no --client given")
    return CLIENT


def client_supports_lapps(client: Path) -> bool:
    try:
        done = subprocess.run([str(client), "--help"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return False
    return "--lapps" in done.stdout + done.stderr


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smoke run: 1 round, 3 s per case, 0.5 s warm-up")
    ap.add_argument("--rounds", type=int, help="rounds, the order reversed every other one (default 5; quick 1)")
    ap.add_argument("--seconds", type=float, help="measured seconds per case (default 5; quick 3)")
    ap.add_argument("--warmup", type=float, help="warm-up seconds before each (default 1; quick 0.5)")
    ap.add_argument("--connections", default="80,120", help="connection counts, comma-separated (default 80,120)")
    ap.add_argument("--size", type=int, default=MSG_SIZE, help=f"message bytes (default {MSG_SIZE})")
    ap.add_argument("--binary", action="store_true", help="binary messages instead of text (raw echo rows)")
    ap.add_argument("--client-procs", type=int, default=1, help="client processes (--processes; default 1)")
    ap.add_argument("--client", type=Path, help=f"load client (default {CLIENT.relative_to(REPO)})")
    ap.add_argument("--only", default="", help="servers to run, comma-separated (" +
                    ", ".join(s.key for s in all_servers(True)) + ")")
    ap.add_argument("--skip", default="", help="servers to leave out, comma-separated")
    ap.add_argument("--no-lapps-protocol", action="store_true", help="leave out the LAppS-protocol rows")
    ap.add_argument("--lapps-workers", default="1,2,4",
                    help="LAppS worker counts, comma-separated (default 1,2,4; the ratios use 1 and 2)")
    ap.add_argument("--quiet-threshold", type=float, default=0.3,
                    help="cores the rest of the machine may use over 1 s before a round starts (default 0.3)")
    ap.add_argument("--quiet-limit", type=float, help="seconds to wait for that at most (default 60; quick 10)")
    ap.add_argument("--output-dir", type=Path, default=RESULTS, help="where peers.csv/json/png go (default bench/results)")
    ap.add_argument("--from-json", type=Path, metavar="PEERS_JSON",
                    help="run nothing: write the table, CSV and chart again from a peers.json")
    args = ap.parse_args(argv)
    if args.from_json:
        return rewrite_from(args.from_json, args.output_dir)
    q = args.quick
    quick_defaults(args, rounds=(5, 1), seconds=(5.0, 3.0), warmup=(1.0, 0.5), quiet_limit=(60.0, 10.0))
    conns = [int(x) for x in args.connections.split(",") if x.strip()]
    if args.rounds < 1 or args.seconds <= 0 or not conns:
        ap.error("--rounds, --seconds and --connections must be positive")

    args.client = find_client(args)
    client_is_cpp = args.client == CLIENT.resolve() or args.client.name == CLIENT.name
    lapps_protocol = not args.no_lapps_protocol and client_supports_lapps(args.client)
    if not args.no_lapps_protocol and not lapps_protocol:
        log("the client has no --lapps: the LAppS-protocol rows are left out")
    lapps_workers = tuple(int(x) for x in args.lapps_workers.split(",") if x.strip())
    if not lapps_workers or min(lapps_workers) < 1:
        ap.error("--lapps-workers: positive worker counts, comma-separated")
    specs = all_servers(lapps_protocol, lapps_workers)
    only = {s for s in args.only.split(",") if s}
    skip = {s for s in args.skip.split(",") if s}
    unknown = (only | skip) - {s.key for s in specs}
    if unknown:
        ap.error(f"unknown servers {sorted(unknown)}; known: {[s.key for s in specs]}")
    specs = [s for s in specs if (not only or s.key in only) and s.key not in skip]
    missing = [(s.key, p) for s in specs for p in s.needs if not p.exists()]
    if missing:
        for key, p in missing:
            log(f"{key}: {p.relative_to(REPO)} is missing (make bench-peers installs and builds it): left out")
        specs = [s for s in specs if all(p.exists() for p in s.needs)]
    if not specs:
        sys.exit("no server to run")
    rows = [r for s in specs for r in s.rows]

    raise_nofile()
    cpus = os.cpu_count() or 1
    meta: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %z"), "host": platform.node(), "cpus": cpus,
        "python": platform.python_version(), "load_avg_before": os.getloadavg(), "quick": q,
        "rounds": args.rounds, "seconds": args.seconds, "warmup": args.warmup, "connections": conns,
        "size": args.size, "binary": args.binary, "client": str(args.client), "client_procs": args.client_procs,
        "client_name": ("websocketpp lapps-bench-client" if client_is_cpp else args.client.name)
                       + (f", {args.client_procs} processes" if args.client_procs > 1 else ", 1 process"),
        "client_is_cpp": client_is_cpp, "lapps_protocol_rows": lapps_protocol,
        "quiet_threshold": args.quiet_threshold, "quiet_limit": args.quiet_limit, "versions": versions(),
        "servers": [s.key for s in specs],
    }
    meta["commit"] = git_commit()
    try:
        meta["dirty"] = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO,
                                            capture_output=True, text=True, timeout=5).stdout.strip())
    except (OSError, subprocess.SubprocessError):
        pass
    n_cases = sum(len(s.rows) for s in specs) * len(conns)
    est = args.rounds * (n_cases * (args.warmup + args.seconds + 0.6) + len(specs) * 1.5 + 1)
    log(f"peers bench: {len(specs)} servers, {n_cases} cases per round, {args.rounds} rounds x "
        f"{args.seconds:g} s; about {est / 60:.0f} min plus waits for a quiet machine; {cpus} cores, "
        f"load average {meta['load_avg_before'][0]:.2f}; client {args.client}")
    if not client_is_cpp:
        log("WARNING: not the websocketpp client: the figures test the harness, they are no result")

    tmp = Path(tempfile.mkdtemp(prefix="lapps-peers-"))
    # Run a private copy of the client, so that a rebuild during the run changes nothing.
    client_copy = tmp / "client" / args.client.name
    client_copy.parent.mkdir()
    shutil.copy2(args.client, client_copy)
    meta["client_sha256"] = hashlib.sha256(client_copy.read_bytes()).hexdigest()
    args.client = client_copy
    cases: dict[tuple[str, int], list[dict[str, Any]]] = {}
    quiet: list[dict[str, Any]] = []
    stops: list[dict[str, Any]] = []
    idle: dict[str, float] = {}
    ok = False
    t_begin = time.monotonic()
    try:
        for rnd in range(args.rounds):
            qinfo = wait_quiet(args.quiet_threshold, args.quiet_limit)
            qinfo["round"] = rnd
            quiet.append(qinfo)
            log(f"round {rnd + 1}/{args.rounds}: rest of the machine {qinfo['busy_cores']:.2f} cores over 1 s"
                f"{'' if qinfo['quiet'] else ' (still above the threshold: going on)'}"
                f", after {qinfo['waited_s']:.0f} s")
            order = specs if rnd % 2 == 0 else specs[::-1]
            for spec in order:
                server = Running(spec, tmp)
                try:
                    ready = server.wait_ready()
                except RuntimeError as e:
                    log(f"  {spec.key}: FAILED to start: {str(e)[:300]}")
                    stops.append({"server": spec.key, "round": rnd, "start_failed": str(e)[:2000], **server.stop()})
                    continue
                if rnd == 0:   # what the server costs with no client at all, over 1 s
                    procs = server.processes()
                    i0 = tree_cpu(procs)
                    time.sleep(1.0)
                    idle[spec.key] = round(tree_cpu(procs) - i0, 4)
                todo = [(row, n) for row in spec.rows for n in conns]
                if rnd % 2:
                    todo.reverse()
                for row, n in todo:
                    if not server.running():
                        res = {"row": row.key, "connections": n, "failed": "server not running"}
                    else:
                        res = run_case(server, row, n, args)
                    res["round"] = rnd
                    cases.setdefault((row.key, n), []).append(res)
                    if "failed" in res:
                        log(f"  {row.label}, {n} conns: FAILED: {res['failed'][:300]}")
                        continue
                    warn = f"  ERRORS {res['errors']}: {res['client_stderr'][:200]}" if res["errors"] else ""
                    log(f"  {row.label}, {n} conns: {res['total_rps']:,.0f} rt/s, p99 {res['p99_us'] / 1000:.1f} ms, "
                        f"server {res['server_cores']:.2f} cores -> {res['rps_per_server_cpu_s']:,.0f} rt/CPU-s, "
                        f"RSS {res['rss_mb']:.0f} MB; client {res['client_cores']:.2f}, others "
                        f"{res['other_cores']:.2f} cores{warn}")
                st = server.stop()
                st.update({"server": spec.key, "round": rnd, "ready_s": round(ready, 2)})
                stops.append(st)
                if st["sigkill"] or st["problem_count"] or st["exit_code"] not in (0, -signal.SIGTERM, 143):
                    log(f"  {spec.key}: stop exit {st['exit_code']}{', SIGKILL' if st['sigkill'] else ''}; "
                        f"output: {st['problems'][:3]}")
        ok = True
    finally:
        if ok:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            print(f"server logs kept in {tmp}", file=sys.stderr)
    meta["elapsed_s"] = round(time.monotonic() - t_begin, 1)
    meta["idle_cores"] = idle

    write_results(args.output_dir, meta, rows, conns, cases, quiet, stops)
    bad = any("failed" in c or c.get("errors") for v in cases.values() for c in v)
    return 1 if bad else 0


def write_results(out_dir: Path, meta: dict[str, Any], rows: list[Row], conns: list[int],
                  cases: dict[tuple[str, int], list[dict[str, Any]]], quiet: list[dict[str, Any]],
                  stops: list[dict[str, Any]]) -> None:
    """The table on stdout; peers.csv, peers.json and peers.png in `out_dir`."""
    summary = summarize(rows, conns, cases, meta["rounds"])
    report = table(meta, rows, conns, summary, quiet, cases)
    print()
    print(report)
    out_dir.mkdir(parents=True, exist_ok=True)
    with open(out_dir / "peers.csv", "w", newline="") as f:
        w = csv.writer(f)
        cols = ["total_rps", "per_client_rps", "p50_us", "p99_us", "server_cores", "rss_mb", "pss_mb",
                "rps_per_server_cpu_s", "client_cores", "other_cores", "errors", "rounds", "ratio_rps", "ratio_eff"]
        w.writerow(["server", "label", "connections", *cols])
        for n in conns:
            for row in rows:
                m = summary[str(n)].get(row.key, {})
                w.writerow([row.key, row.label, n, *[("" if m.get(c) is None else
                                                      round(m[c], 4) if isinstance(m[c], float) else m[c])
                                                     for c in cols]])
    (out_dir / "peers.json").write_text(json.dumps({
        "meta": meta, "rows": [vars(r) for r in rows], "summary": summary, "quiet": quiet, "stops": stops,
        "cases": {f"{k}@{n}": v for (k, n), v in cases.items()}, "table": report}, indent=2, default=str) + "\n")
    drew = chart(out_dir / "peers.png", meta, rows, conns, summary)
    log(f"\nresults: {out_dir / 'peers.csv'}, {out_dir / 'peers.json'}" + (f", {out_dir / 'peers.png'}" if drew else ""))


def rewrite_from(path: Path, out_dir: Path) -> int:
    """--from-json: the table, CSV, JSON and chart again from a peers.json (no servers run)."""
    d = json.loads(path.read_text())
    rows = [Row(**r) for r in d["rows"]]
    cases: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for key, v in d["cases"].items():
        row, n = key.rsplit("@", 1)
        cases[(row, int(n))] = v
    write_results(out_dir, d["meta"], rows, d["meta"]["connections"], cases, d["quiet"], d["stops"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
