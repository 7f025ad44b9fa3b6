"""Connection setup rate and memory per idle connection (DESIGN §7), end to end.

The script starts the real server (`python -m lapps`, raw echo service from `services/echo`,
the config and server start/stop of `bench/bench_lapps.py`: temporary folder, own process
group, admin port 0) on 127.0.0.1, drives it from client processes, prints a table and writes
`bench/results/setup.json`.

1. Setup rate: K client processes (default 2) each run connections back to back for D
   seconds (default 5), a few in flight at a time (default 8 per process): TCP connect, the
   upgrade (the 101 checked by `ClientProtocol`), one 16-byte echo (checked), the closing
   handshake (the server's close frame, then its TCP FIN). Completed setups per second (all
   processes), p50/p99 of connect-to-FIN latency, errors. With 1 and then 2 workers.
2. Idle memory: N upgraded idle connections (default 10,000, over 4 client processes) to a
   server with 2 workers. Each worker's RSS and PSS (psutil `memory_full_info`) after a
   warm-up with no connection, and 2 s after the last connection is open; (after - before) /
   connections, per worker (its own connections) and in total (all connections, all server
   processes). Then every connection is closed with the closing handshake.

    python bench/bench_setup.py [--quick] [--seconds 5] [--client-procs 2] [--in-flight 8]
                                [--idle 10000] [--idle-procs 4] [--idle-workers 2]
"""

from __future__ import annotations

import argparse
import errno
import math
import os
import platform
import selectors
import socket
import sys
import time
from pathlib import Path
from typing import Any

import psutil

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from bench_lapps import READ, WRITE, ClientPool, fork_clients, log, recv_or_fail, split, start_server  # noqa: E402
from harness import HOST, git_commit, percentile, raise_nofile, reap, save_results, scratch  # noqa: E402
from lapps.client import connect as ws_connect  # noqa: E402
from lapps.ws.client import EV_CLOSED, EV_OPEN, EV_REJECTED, ClientProtocol, State  # noqa: E402

TEXT = 1
PROBE = b"setup-rate-echo!"        # 16 bytes, echoed once per connection
RESULTS = REPO / "bench" / "results" / "setup.json"


# ---------------------------------------------------------------------------- setup rate


class Attempt:
    __slots__ = ("sock", "proto", "start", "stage", "want_write")

    def __init__(self, sock: socket.socket, proto: ClientProtocol, start: float) -> None:
        self.sock = sock
        self.proto = proto
        self.start = start
        self.stage = 0          # 0 upgrading, 1 waiting for the echo, 2 closing, 3 close frame in, FIN awaited
        self.want_write = True


def setup_main(port: int, seconds: float, in_flight: int, start_at: float, pipe: Any) -> None:
    """One client process: setups back to back until start_at + seconds; then the latencies
    (seconds) of the ones completed in the window, the errors and own CPU seconds."""
    sel = selectors.DefaultSelector()
    lat: list[float] = []
    errors: dict[str, int] = {}
    live = 0

    def err(a: Attempt, why: str) -> None:
        errors[why] = errors.get(why, 0) + 1
        done(a)

    def done(a: Attempt) -> None:
        nonlocal live
        live -= 1
        try:
            sel.unregister(a.sock)
        except (KeyError, ValueError):
            pass
        a.sock.close()

    def flush(a: Attempt) -> bool:
        out = a.proto.out
        if out:
            try:
                n = a.sock.send(out)
            except (BlockingIOError, InterruptedError):
                n = 0
            except OSError as e:
                err(a, f"send: {e.strerror or e}")
                return False
            del out[:n]
        want = bool(out)
        if want != a.want_write:
            a.want_write = want
            sel.modify(a.sock, READ | WRITE if want else READ, a)
        return True

    def start() -> None:
        nonlocal live
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        t = time.perf_counter()
        e = sock.connect_ex((HOST, port))
        a = Attempt(sock, ClientProtocol(f"{HOST}:{port}", "/echo"), t)
        live += 1
        sel.register(sock, READ | WRITE, a)
        if e not in (0, errno.EINPROGRESS):
            err(a, f"connect: {os.strerror(e)}")

    def handle(a: Attempt, mask: int) -> None:
        if mask & WRITE:
            if not a.proto.out:   # the connect finished (or failed)
                e = a.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if e:
                    return err(a, f"connect: {os.strerror(e)}")
            if not flush(a):
                return
        if not mask & READ:
            return
        try:
            data = a.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as e:
            return err(a, f"recv: {e.strerror or e}")
        proto = a.proto
        if not data:
            if a.stage == 3:      # the close frame came, then the server's FIN: one setup done
                lat.append(time.perf_counter() - a.start)
                return done(a)
            return err(a, f"EOF at stage {a.stage}")
        proto.receive_data(data)
        for kind, value in proto.events:
            if kind == EV_OPEN:
                a.stage = 1
                proto.send(TEXT, PROBE)
            elif kind == TEXT and a.stage == 1:
                if value != PROBE:
                    return err(a, "bad echo")
                a.stage = 2
                proto.close()
            elif kind == EV_CLOSED:
                if a.stage == 2 and proto.close_received and value[0] == 1000:
                    a.stage = 3
                else:
                    return err(a, f"closed at stage {a.stage}: {value}")
            elif kind == EV_REJECTED:
                return err(a, f"upgrade rejected: HTTP {value[0]}")
            else:
                return err(a, f"unexpected event {kind:#x} at stage {a.stage}")
        proto.events.clear()
        if proto.out:
            flush(a)

    cpu0 = sum(os.times()[:2])
    while time.time() < start_at:
        time.sleep(0.001)
    t0 = time.perf_counter()
    end = t0 + seconds
    in_window = 0
    while True:
        now = time.perf_counter()
        if now < end:
            while live < in_flight:
                start()
        elif not live or now > end + 5:
            break
        for key, mask in sel.select(0.05):
            handle(key.data, mask)
        if now < end:
            in_window = len(lat)
    for key in list(sel.get_map().values()):
        errors["unfinished after the window"] = errors.get("unfinished after the window", 0) + 1
        key.fileobj.close()
    sel.close()
    # latencies of the setups that completed inside the window (those finished just after it are
    # within one select of it; counting setups per second uses the same ones)
    pipe.send((lat[:in_window], errors, sum(os.times()[:2]) - cpu0))


def warm_up(port: int, setups: int) -> None:
    """Setups that are not counted: one echo each, so Lua states and imports are warm."""
    for _ in range(setups):
        with ws_connect(f"ws://{HOST}:{port}/echo") as c:
            c.send_text("warm")
            c.recv()


def run_setup(root: Path, workers: int, args: argparse.Namespace) -> dict[str, Any]:
    log(f"== setup rate: {workers} worker(s), {args.client_procs} client processes x {args.in_flight} in flight, "
        f"{args.seconds:g} s")
    server = start_server(root, workers)
    res: dict[str, Any] = {"workers": workers}
    children = []
    try:
        server.wait_ready()
        # warm-up: a few setups (Lua states, imports), not counted
        warm_up(server.port, 20)
        start_at = time.time() + 0.3
        pipes, children = fork_clients(setup_main, [(server.port, args.seconds, args.in_flight, start_at)]
                                       * args.client_procs)
        time.sleep(max(0.0, start_at - time.time()))
        cpu0, wall0 = server.cpu_seconds(), time.monotonic()
        lat: list[float] = []
        errors: dict[str, int] = {}
        client_cpu = 0.0
        for i, pipe in enumerate(pipes):
            got, errs, ccpu = recv_or_fail(pipe, args.seconds + 60, "setup rate")
            if i == 0:
                server_cpu = server.cpu_seconds() - cpu0   # about the window (the first child ends with it)
                wall = time.monotonic() - wall0
            lat.extend(got)
            client_cpu += ccpu
            for k, v in errs.items():
                errors[k] = errors.get(k, 0) + v
        server.check_alive()
        lat.sort()
        n = len(lat)
        res.update(setups=n, setups_per_s=n / args.seconds, p50_ms=percentile(lat, 0.5) * 1e3,
                   p99_ms=percentile(lat, 0.99) * 1e3, errors=errors, error_count=sum(errors.values()),
                   server_cpu_cores=server_cpu / wall, client_cpu_cores=client_cpu / args.seconds,
                   server_cpu_us_per_setup=server_cpu / n * 1e6 if n else None)
        log(f"  {n} setups = {n / args.seconds:,.0f}/s  p50 {res['p50_ms']:.2f} ms  p99 {res['p99_ms']:.2f} ms  "
            f"server {res['server_cpu_cores']:.2f} cores, clients {res['client_cpu_cores']:.2f} cores  "
            f"errors {errors or 0}")
    finally:
        reap(children)
        res["server_stop"] = server.stop()
    return res


# ---------------------------------------------------------------------------- idle memory


def idle_main(port: int, n: int, pipe: Any) -> None:
    """n idle upgraded connections; kept (pings answered) until told to close them."""
    pool = ClientPool(port, "/echo", lambda c: pool.mark_ready(c), lambda c, k, v: None)
    setup = pool.open(n, timeout=180)
    pipe.send(("ready", pool.ready, setup, pool.errors))
    pool.sel.register(pipe.fileno(), READ, None)
    while not pipe.poll():
        pool.poll(0.5)
    pipe.recv()
    pool.sel.unregister(pipe.fileno())
    lost = pool.failed
    pool.close_all(timeout=15)
    clean = sum(1 for c in pool.conns if c.ready and c.proto.state == State.CLOSED
                and c.proto.close_received and c.proto.close_code == 1000)
    pipe.send(("closed", clean, lost))


def memory(pids: list[int]) -> dict[int, dict[str, int]]:
    out = {}
    for pid in pids:
        m = psutil.Process(pid).memory_full_info()
        out[pid] = {"rss": m.rss, "pss": m.pss, "uss": m.uss}
    return out


def connections_of(pid: int) -> int:
    return sum(1 for c in psutil.Process(pid).net_connections(kind="tcp")
               if c.raddr and c.status == psutil.CONN_ESTABLISHED)


def run_idle(root: Path, args: argparse.Namespace) -> dict[str, Any]:
    n, k, w = args.idle, args.idle_procs, args.idle_workers
    log(f"== idle memory: {n} connections from {k} client processes, {w} workers")
    server = start_server(root, w)
    res: dict[str, Any] = {"connections": n, "client_procs": k, "workers": w}
    children, pipes = [], []
    try:
        server.wait_ready()
        warm_up(server.port, 50)   # upgrade paths, Lua, buffers touched once
        time.sleep(1.0)
        master, workers = server.pid, server.worker_pids()
        before = memory([master, *workers])
        t0 = time.monotonic()
        pipes, children = fork_clients(idle_main, [(server.port, share) for share in split(n, k)])
        ready, errors = 0, []
        for pipe in pipes:
            _, got, _setup, errs = recv_or_fail(pipe, 240, "opening idle connections")
            ready += got
            errors += errs
        opened_s = time.monotonic() - t0
        time.sleep(2.0)
        server.check_alive()
        after = memory([master, *workers])
        per_worker = []
        for pid in workers:
            conns = connections_of(pid)
            d_rss = after[pid]["rss"] - before[pid]["rss"]
            d_pss = after[pid]["pss"] - before[pid]["pss"]
            per_worker.append({"pid": pid, "connections": conns, "before": before[pid], "after": after[pid],
                               "rss_per_conn": d_rss / conns if conns else None,
                               "pss_per_conn": d_pss / conns if conns else None})
        d_rss = sum(after[p]["rss"] - before[p]["rss"] for p in after)
        d_pss = sum(after[p]["pss"] - before[p]["pss"] for p in after)
        res.update(opened=ready, open_errors=errors[:5], open_s=opened_s, per_worker=per_worker,
                   master={"before": before[master], "after": after[master]},
                   rss_per_conn=d_rss / ready if ready else None, pss_per_conn=d_pss / ready if ready else None)
        log(f"  {ready} of {n} open in {opened_s:.1f} s; per worker "
            + ", ".join(f"{x['connections']} conns {x['rss_per_conn'] or 0:,.0f} B RSS / {x['pss_per_conn'] or 0:,.0f}"
                        f" B PSS each" for x in per_worker)
            + f"; all processes {res['rss_per_conn'] or 0:,.0f} B RSS / {res['pss_per_conn'] or 0:,.0f} B PSS per connection")
        for pipe in pipes:
            pipe.send(("close",))
        clean = lost = 0
        for pipe in pipes:
            _, c, lo = recv_or_fail(pipe, 60, "closing")
            clean += c
            lost += lo
        res.update(closed_cleanly=clean, lost_while_idle=lost)
        log(f"  closed cleanly (1000 both ways): {clean} of {ready}; dropped while idle: {lost}")
    finally:
        reap(children)
        res["server_stop"] = server.stop()
    return res


# ---------------------------------------------------------------------------- report


def table(meta: dict[str, Any], setup: list[dict[str, Any]], idle: dict[str, Any] | None) -> str:
    lines = []
    if setup:
        lines += [f"Setup rate: connect + upgrade + one echo + closing handshake, {meta['client_procs']} client "
                  f"processes x {meta['in_flight']} in flight, {meta['seconds']:g} s, {meta['cpus']} cores", "",
                  "| workers | setups/s | p50 | p99 | errors | server CPU (cores) | server CPU per setup |",
                  "|---|---|---|---|---|---|---|"]
        for r in setup:
            us = r["server_cpu_us_per_setup"]
            lines.append(f"| {r['workers']} | {r['setups_per_s']:,.0f} | {r['p50_ms']:.2f} ms | {r['p99_ms']:.2f} ms | "
                         f"{r['error_count']} | {r['server_cpu_cores']:.2f} | "
                         f"{f'{us:.0f} µs' if us else '-'} |")
        lines.append("")
    if idle:
        lines += [f"Idle memory: {idle['opened']:,} upgraded idle connections ({idle['client_procs']} client processes), "
                  f"{idle['workers']} workers; (after - before) / connections", "",
                  "| process | connections | RSS before → after | bytes/conn (RSS) | bytes/conn (PSS) |",
                  "|---|---|---|---|---|"]
        for i, x in enumerate(idle["per_worker"]):
            lines.append(f"| worker {i + 1} | {x['connections']:,} | {x['before']['rss'] / 2**20:.1f} → "
                         f"{x['after']['rss'] / 2**20:.1f} MiB | {x['rss_per_conn'] or 0:,.0f} | "
                         f"{x['pss_per_conn'] or 0:,.0f} |")
        m = idle["master"]
        lines.append(f"| master | - | {m['before']['rss'] / 2**20:.1f} → {m['after']['rss'] / 2**20:.1f} MiB | | |")
        lines.append(f"| all server processes | {idle['opened']:,} | | {idle['rss_per_conn'] or 0:,.0f} | "
                     f"{idle['pss_per_conn'] or 0:,.0f} |")
        lines.append(f"\nClosed cleanly: {idle['closed_cleanly']:,} of {idle['opened']:,}.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="2 s setup runs, 1,000 idle connections")
    ap.add_argument("--seconds", type=float, help="setup-rate window per worker count (default 5; quick 2)")
    ap.add_argument("--client-procs", type=int, default=2, help="setup-rate client processes (default 2)")
    ap.add_argument("--in-flight", type=int, default=8, help="setups in flight per client process (default 8)")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="worker counts for the setup rate")
    ap.add_argument("--idle", type=int, help="idle connections (default 10000; quick 1000)")
    ap.add_argument("--idle-procs", type=int, default=4, help="client processes for the idle connections (default 4)")
    ap.add_argument("--idle-workers", type=int, default=2, help="server workers for the idle test (default 2)")
    ap.add_argument("--skip-setup", action="store_true")
    ap.add_argument("--skip-idle", action="store_true")
    ap.add_argument("--output", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    args.seconds = args.seconds if args.seconds is not None else (2.0 if args.quick else 5.0)
    args.idle = args.idle if args.idle is not None else (1000 if args.quick else 10000)
    soft, hard = raise_nofile()
    if not args.skip_idle and math.ceil(args.idle / args.idle_procs) + 64 > soft:
        ap.error(f"{math.ceil(args.idle / args.idle_procs)} connections per client process is over ulimit -n ({soft})")
    cpus = os.cpu_count() or 1
    meta = {"date": time.strftime("%Y-%m-%d %H:%M:%S %z"), "cpus": cpus, "python": platform.python_version(),
            "load_avg_before": os.getloadavg(), "nofile": [soft, hard], "quick": args.quick,
            "seconds": args.seconds, "client_procs": args.client_procs, "in_flight": args.in_flight,
            "idle": args.idle, "idle_procs": args.idle_procs, "idle_workers": args.idle_workers}
    meta["commit"] = git_commit()
    log(f"LAppS setup bench: {cpus} cores, load average {meta['load_avg_before'][0]:.2f}, ulimit -n {soft}")
    setup: list[dict[str, Any]] = []
    idle = None
    with scratch("lapps-setup-") as root:
        if not args.skip_setup:
            for w in args.workers:
                setup.append(run_setup(root, w, args))
        if not args.skip_idle:
            idle = run_idle(root, args)
    report = table(meta, setup, idle)
    print()
    print(report)
    save_results(args.output, {"meta": meta, "setup": setup, "idle": idle, "table": report})
    bad = any(r["error_count"] for r in setup) or (idle is not None and idle["opened"] != args.idle)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
