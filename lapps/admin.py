"""The admin endpoint: a small HTTP server in a thread of the master, and the table `lapps status` prints.

Everything it reports is read, never written: the workers' shared-memory slots
(`lapps.ipc.slots`), the arbiter's records of its children (pids, restarts, whether a stop
began) and psutil for memory and CPU. It serves

- `/metrics`: Prometheus text format, built at each scrape by a custom collector;
- `/healthz`: 200 while the master answers and at least one worker heartbeats, else 503;
- `/readyz`: 200 while the server accepts connections, 503 from the moment a stop begins;
- `/status`: JSON for `lapps status` (per worker: pid, state, connections, messages and
  their rates, RSS, CPU%, restarts);

and 404 for anything else. Rates and CPU percentages need a past to compare with: the
server thread samples the slots and the processes once a second and keeps a few seconds.

The arbiter is read duck-typed (`config`, `slots`, `workers`, `services`, `stopping`,
`dispatcher`, and for reloads `generation`/`previous`), so this module does not import it.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import weakref
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import psutil
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from . import __version__
from .ipc.slots import CLOSE_CODES, HANDSHAKE_RESULTS, WorkerState, service_indexes

log = logging.getLogger("lapps.admin")

_SAMPLE_EVERY = 1.0      # seconds between samples of the counters (rates, CPU%)
_RATE_WINDOW = 5.0       # seconds of history the rates are computed over
_POLL_INTERVAL = 0.5     # serve_forever's poll: how often sampling and shutdown are looked at
_REQUEST_TIMEOUT = 5.0   # seconds a client may take to send its request


# ---------------------------------------------------------------------- reading the master


class _Procs:
    """psutil handles by pid (a handle per process, so it is not re-opened per scrape)."""

    def __init__(self) -> None:
        self.handles: dict[int, psutil.Process] = {}

    def sample(self, pid: int) -> tuple[int, float] | None:
        """(RSS bytes, CPU seconds user + system) of `pid`, None if it is gone."""
        if not pid:
            return None
        p = self.handles.get(pid)
        try:
            if p is None:
                p = self.handles[pid] = psutil.Process(pid)
            with p.oneshot():
                cpu = p.cpu_times()
                return p.memory_info().rss, cpu.user + cpu.system
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            self.handles.pop(pid, None)
            return None

    def forget_others(self, live: set[int]) -> None:
        for pid in list(self.handles):
            if pid not in live:
                self.handles.pop(pid, None)


class Observer:
    """What the admin endpoint knows: built from the arbiter at each request."""

    def __init__(self, arbiter: Any) -> None:
        self.arbiter = arbiter
        self.master_pid = os.getpid()
        try:
            self.started = psutil.Process(self.master_pid).create_time()
        except psutil.Error:
            self.started = time.time()
        self.procs = _Procs()
        # (time, {key: (pid, messages in, messages out, CPU seconds)}); key: "master",
        # ("worker", slot index) or ("service", label)
        self.history: deque[tuple[float, dict[Any, tuple[int, int, int, float | None]]]] = deque()
        self.next_sample = 0.0
        self._indexes: dict[int, tuple[Any, dict[str, int]]] = {}

    # --- the arbiter's view

    def worker_config(self, w: Any) -> Any:
        """The config a worker was forked with (a reload runs two generations side by side)."""
        arb = self.arbiter
        gen = getattr(w, "generation", 0)
        previous = getattr(arb, "previous", None)
        if gen != getattr(arb, "generation", 0) and previous and previous[1] == gen:
            return previous[0]
        return arb.config

    def services_of(self, config: Any) -> dict[str, int]:
        cached = self._indexes.get(id(config))
        if cached is None or cached[0] is not config:
            cached = self._indexes[id(config)] = (config, service_indexes(config.services))
        return cached[1]

    def workers(self) -> list[tuple[Any, Any, Any]]:
        """(worker record, slot core, slot tables) of every worker the master holds, by slot."""
        slots = self.arbiter.slots
        out = []
        for w in sorted(list(self.arbiter.workers), key=lambda w: w.index):
            out.append((w, slots.read(w.index), slots.read_tables(w.index)))
        return out

    def fresh(self, slot: Any, now: float) -> bool:
        timeout = self.arbiter.config.workers.heartbeat_timeout
        return now - slot.heartbeat <= timeout

    def healthy(self) -> tuple[bool, str]:
        now = time.monotonic()
        for w, slot, _ in self.workers():
            if w.pid and slot.state in (WorkerState.RUNNING, WorkerState.DRAINING) and self.fresh(slot, now):
                return True, "ok"
        return False, "no worker heartbeat"

    def ready(self) -> tuple[bool, str]:
        if getattr(self.arbiter, "stopping", False):
            return False, "stopping"
        now = time.monotonic()
        for w, slot, _ in self.workers():
            if w.pid and slot.state == WorkerState.RUNNING and self.fresh(slot, now):
                return True, "ready"
        return False, "no worker running"

    # --- history, for rates and CPU%

    def tick(self) -> None:
        """Called from the server thread's loop: one sample a second, a few seconds kept."""
        now = time.monotonic()
        if now < self.next_sample:
            return
        self.next_sample = now + _SAMPLE_EVERY
        sample: dict[Any, tuple[int, int, int, float | None]] = {}
        pids = {self.master_pid}
        master = self.procs.sample(self.master_pid)
        sample["master"] = (self.master_pid, 0, 0, master[1] if master else None)
        for w, slot, _ in self.workers():
            pid = w.pid
            if not pid:
                continue
            pids.add(pid)
            proc = self.procs.sample(pid)
            sample[("worker", w.index)] = (pid, slot.messages_in, slot.messages_out, proc[1] if proc else None)
        for sp in list(getattr(self.arbiter, "services", ())):
            if sp.pid:
                pids.add(sp.pid)
                proc = self.procs.sample(sp.pid)
                sample[("service", sp.label)] = (sp.pid, 0, 0, proc[1] if proc else None)
        self.procs.forget_others(pids)
        history = self.history
        history.append((now, sample))
        while len(history) > 1 and now - history[0][0] > _RATE_WINDOW + _SAMPLE_EVERY / 2:
            history.popleft()

    def past(self, key: Any, pid: int, now: float) -> tuple[float, tuple[int, int, int, float | None]] | None:
        """The oldest kept sample of `key` taken from the same process, at least 0.5 s old."""
        for t, sample in list(self.history):
            entry = sample.get(key)
            if entry is not None and entry[0] == pid and now - t >= 0.5:
                return t, entry
        return None

    def cpu_percent(self, key: Any, pid: int, cpu_now: float | None, now: float) -> float | None:
        old = self.past(key, pid, now)
        if old is None or cpu_now is None or old[1][3] is None:
            return None
        return round(100.0 * max(0.0, cpu_now - old[1][3]) / (now - old[0]), 1)

    # --- /status

    def status(self) -> dict[str, Any]:
        now = time.monotonic()
        arb = self.arbiter
        master = self.procs.sample(self.master_pid)
        ready, why = self.ready()
        workers = []
        for w, slot, tables in self.workers():
            pid = w.pid
            proc = self.procs.sample(pid) if pid else None
            old = self.past(("worker", w.index), pid, now) if pid else None
            rate_in = rate_out = 0.0
            if old is not None:
                dt = now - old[0]
                rate_in = round(max(0, slot.messages_in - old[1][1]) / dt, 1)
                rate_out = round(max(0, slot.messages_out - old[1][2]) / dt, 1)
            names = self.services_of(self.worker_config(w))
            state = slot.state.name.lower() if pid else "down"
            workers.append({
                "worker": w.index + 1,
                "pid": pid,
                "generation": getattr(w, "generation", 0),
                "state": state,
                "heartbeat_age_s": round(now - slot.heartbeat, 2) if slot.heartbeat else None,
                "connections": slot.connections,
                "websockets": {name: tables.service_connections[i] for name, i in names.items()},
                "messages_in": slot.messages_in,
                "messages_out": slot.messages_out,
                "bytes_in": slot.bytes_in,
                "bytes_out": slot.bytes_out,
                "messages_in_per_s": rate_in,
                "messages_out_per_s": rate_out,
                "outbound_backlog_bytes": slot.backlog,
                "lua_errors": slot.lua_errors,
                "internal_errors": slot.internal_errors,
                "dropped_messages": slot.dropped,
                "rss_bytes": proc[0] if proc else None,
                "cpu_percent": self.cpu_percent(("worker", w.index), pid, proc[1] if proc else None, now),
                "restarts": getattr(w, "restarts", 0),
            })
        services = []
        for sp in list(getattr(arb, "services", ())):
            proc = self.procs.sample(sp.pid) if sp.pid else None
            key = ("service", sp.label)
            services.append({"service": sp.label, "pid": sp.pid,
                             "rss_bytes": proc[0] if proc else None,
                             "cpu_percent": self.cpu_percent(key, sp.pid, proc[1] if proc else None, now)})
        return {
            "version": __version__,
            "master": {
                "pid": self.master_pid,
                "uptime_s": round(time.time() - self.started, 1),
                "state": "stopping" if getattr(arb, "stopping", False) else "running",
                "ready": ready,
                "ready_reason": why,
                "rss_bytes": master[0] if master else None,
                "cpu_percent": self.cpu_percent("master", self.master_pid, master[1] if master else None, now),
            },
            "rate_window_s": _RATE_WINDOW,
            "workers": workers,
            "services": services,
        }


# ---------------------------------------------------------------------- /metrics


# The metric families, in the order LappsCollector.collect() fills them: kind, name, help, labels.
_FAMILIES: tuple[tuple[type, str, str, tuple[str, ...]], ...] = (
    (GaugeMetricFamily, "lapps_connections",
     "Open WebSocket connections, by worker and service.", ("worker", "service")),
    (GaugeMetricFamily, "lapps_tcp_connections",
     "Client sockets a worker holds (handshakes included): what the balancer weighs.", ("worker",)),
    (CounterMetricFamily, "lapps_handshakes_total",
     "Finished WebSocket handshakes by HTTP status (101: upgraded; 'aborted': ended without an "
     "answer); worker 'master' for the listeners' refusals.", ("worker", "status")),
    (CounterMetricFamily, "lapps_messages_total",
     "WebSocket data messages, received (in) and sent (out).", ("worker", "direction")),
    (CounterMetricFamily, "lapps_bytes_total",
     "Bytes read from and written to client sockets.", ("worker", "direction")),
    (CounterMetricFamily, "lapps_close_codes_total",
     "Close codes of ended WebSocket connections: sent by the server, received from the peer "
     "(1006: no close frame).", ("worker", "direction", "code")),
    (CounterMetricFamily, "lapps_lua_errors_total",
     "Lua errors in service callbacks (each closed its connection with 1011).", ("worker",)),
    (CounterMetricFamily, "lapps_internal_errors_total",
     "Unexpected server exceptions on a connection's path (each closed that connection, 1011 "
     "or TCP; the worker went on).", ("worker",)),
    (GaugeMetricFamily, "lapps_outbound_backlog_bytes",
     "Bytes queued for clients that read slower than the server writes.", ("worker",)),
    (CounterMetricFamily, "lapps_dropped_messages_total",
     "Messages refused because a client's outbound buffer was full.", ("worker",)),
    (CounterMetricFamily, "lapps_worker_restarts_total",
     "Times the master respawned the worker in this slot after it died.", ("worker",)),
    (GaugeMetricFamily, "lapps_worker_heartbeat_age_seconds",
     "Seconds since the worker last published its slot.", ("worker",)),
    (GaugeMetricFamily, "lapps_process_resident_memory_bytes",
     "Resident memory of each server process.", ("process",)),
    (CounterMetricFamily, "lapps_process_cpu_seconds_total",
     "User and system CPU time of each server process.", ("process",)),
)


class LappsCollector:
    """Builds every metric family from the slots at scrape time (nothing is kept)."""

    def __init__(self, observer: Observer) -> None:
        self.observer = observer

    @staticmethod
    def _families() -> tuple[Any, ...]:
        """This scrape's empty metric families, in the order collect() yields them."""
        return tuple(kind(name, doc, labels=list(labels)) for kind, name, doc, labels in _FAMILIES)

    def collect(self):
        obs = self.observer
        now = time.monotonic()
        rows = obs.workers()
        families = self._families()
        (conns, tcp, handshakes, messages, nbytes, closes, lua_errors, internal, backlog, dropped,
         restarts, heartbeat, rss, cpu) = families

        master = obs.procs.sample(obs.master_pid)
        if master:
            rss.add_metric(["master"], master[0])
            cpu.add_metric(["master"], master[1])
        for w, slot, tables in rows:
            label = str(w.index + 1)
            for name, i in obs.services_of(obs.worker_config(w)).items():
                conns.add_metric([label, name], tables.service_connections[i])
            tcp.add_metric([label], slot.connections)
            for status, n in zip(HANDSHAKE_RESULTS, tables.handshakes):
                handshakes.add_metric([label, status], n)
            messages.add_metric([label, "in"], slot.messages_in)
            messages.add_metric([label, "out"], slot.messages_out)
            nbytes.add_metric([label, "in"], slot.bytes_in)
            nbytes.add_metric([label, "out"], slot.bytes_out)
            for code, n in zip(CLOSE_CODES, tables.close_sent):
                closes.add_metric([label, "sent", code], n)
            for code, n in zip(CLOSE_CODES, tables.close_received):
                closes.add_metric([label, "received", code], n)
            lua_errors.add_metric([label], slot.lua_errors)
            internal.add_metric([label], slot.internal_errors)
            backlog.add_metric([label], slot.backlog)
            dropped.add_metric([label], slot.dropped)
            restarts.add_metric([label], getattr(w, "restarts", 0))
            if slot.heartbeat:
                heartbeat.add_metric([label], max(0.0, now - slot.heartbeat))
            proc = obs.procs.sample(w.pid)
            if proc:
                rss.add_metric([f"worker {label}"], proc[0])
                cpu.add_metric([f"worker {label}"], proc[1])
        for status, n in obs.arbiter.dispatcher.refusals().items():
            handshakes.add_metric(["master", status], n)
        for sp in list(getattr(obs.arbiter, "services", ())):
            proc = obs.procs.sample(sp.pid)
            if proc:
                rss.add_metric([f"service {sp.label}"], proc[0])
                cpu.add_metric([f"service {sp.label}"], proc[1])
        yield from families


# ---------------------------------------------------------------------- the HTTP server

_LIVE_SERVERS: "weakref.WeakSet[_AdminHTTPServer]" = weakref.WeakSet()


def _close_in_child() -> None:
    """A forked child (worker, service) must not keep the admin port or its clients open."""
    for server in list(_LIVE_SERVERS):
        for sock in [server.socket, *list(server.open_requests)]:
            try:
                sock.close()
            except OSError:
                pass


os.register_at_fork(after_in_child=_close_in_child)


class _AdminHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64   # probes and scrapes may come in bursts

    def __init__(self, address: tuple[str, int], observer: Observer) -> None:
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.observer = observer
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(LappsCollector(observer))
        self.open_requests: set[socket.socket] = set()
        super().__init__(address, _Handler)
        _LIVE_SERVERS.add(self)

    def service_actions(self) -> None:
        try:
            self.observer.tick()
        except Exception:   # a failing sample must not stop the endpoint
            log.exception("admin: sampling failed")

    def process_request(self, request, client_address) -> None:
        self.open_requests.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request) -> None:
        self.open_requests.discard(request)
        super().shutdown_request(request)


class _Handler(BaseHTTPRequestHandler):
    server: _AdminHTTPServer
    server_version = f"LAppS-admin/{__version__}"
    timeout = _REQUEST_TIMEOUT

    def version_string(self) -> str:
        """The Server: header: ours alone, without "Python/3.x" after it."""
        return self.server_version

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        obs = self.server.observer
        try:
            if path == "/metrics":
                return self._reply(200, CONTENT_TYPE_LATEST, generate_latest(self.server.registry))
            if path == "/healthz":
                ok, why = obs.healthy()
                return self._reply(200 if ok else 503, "text/plain; charset=utf-8", f"{why}\n".encode())
            if path == "/readyz":
                ok, why = obs.ready()
                return self._reply(200 if ok else 503, "text/plain; charset=utf-8", f"{why}\n".encode())
            if path == "/status":
                body = json.dumps(obs.status(), indent=1).encode()
                return self._reply(200, "application/json", body + b"\n")
        except Exception:
            log.exception("admin: %s failed", path)
            return self._reply(500, "text/plain; charset=utf-8", b"internal error\n")
        self._reply(404, "text/plain; charset=utf-8", b"not found: /metrics, /healthz, /readyz, /status\n")

    def _reply(self, status: int, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("admin %s: " + format, self.client_address[0], *args)


class AdminServer:
    """The endpoint's server and its thread; `stop()` ends both."""

    def __init__(self, arbiter: Any, ip: str, port: int) -> None:
        self.observer = Observer(arbiter)
        try:
            self.httpd = _AdminHTTPServer((ip, port), self.observer)
        except OSError as e:
            raise OSError(e.errno, f"cannot listen on admin {ip}:{port}: {e.strerror}") from None
        self.address = self.httpd.server_address[:2]
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(_POLL_INTERVAL,),
                                       name="admin", daemon=True)

    def start(self) -> "AdminServer":
        self.thread.start()
        log.info("admin endpoint on http://%s:%d (/metrics, /healthz, /readyz, /status)",
                 self.address[0], self.address[1])
        return self

    def stop(self) -> None:
        if self.thread.is_alive():
            self.httpd.shutdown()
        self.httpd.server_close()
        _LIVE_SERVERS.discard(self.httpd)


def start_admin(arbiter: Any) -> AdminServer | None:
    """Start the endpoint of `arbiter.config.admin`; None when its port is 0 (off).

    Raises OSError (with the address in the message) when the port cannot be bound.
    """
    cfg = arbiter.config.admin
    if not cfg.port:
        return None
    return AdminServer(arbiter, cfg.ip, cfg.port).start()


# ---------------------------------------------------------------------- lapps status
# (the client itself is lapps/commands/status.py; the table it prints is made here)


def _size(n: int | None) -> str:
    if n is None:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return "-"


def _duration(seconds: float) -> str:
    s = int(seconds)
    d, s = divmod(s, 86400)
    h, s = divmod(s, 3600)
    m, s = divmod(s, 60)
    return (f"{d}d" if d else "") + f"{h:02d}:{m:02d}:{s:02d}"


def format_status(status: dict[str, Any]) -> str:
    """The table `lapps status` prints: a line for the master, then one row per worker."""
    m = status["master"]
    lines = [f"master pid {m['pid']}, up {_duration(m['uptime_s'])}, {m['state']}"
             f" ({'ready' if m['ready'] else 'not ready: ' + m.get('ready_reason', '')}),"
             f" RSS {_size(m['rss_bytes'])}, CPU {_pct(m['cpu_percent'])}%"]
    header = ("WORKER", "PID", "STATE", "CONNS", "MSG/S IN", "MSG/S OUT", "RSS", "CPU%", "RESTARTS")
    rows = [header]
    for w in status["workers"]:
        rows.append((str(w["worker"]), str(w["pid"] or "-"), w["state"], str(w["connections"]),
                     f"{w['messages_in_per_s']:.1f}", f"{w['messages_out_per_s']:.1f}",
                     _size(w["rss_bytes"]), _pct(w["cpu_percent"]), str(w["restarts"])))
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    for r in rows:
        lines.append("  ".join(cell.ljust(width) for cell, width in zip(r, widths)).rstrip())
    return "\n".join(lines) + "\n"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"
