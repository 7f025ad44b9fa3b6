"""Soak test: the real server under mixed, long-running load, good clients and bad.

Starts `python -m lapps` on 127.0.0.1 with its own config in a temporary folder (raw echo
`/echo` from services/echo, the LAppS demo `/echo_lapps` from services/echo_lapps;
limits: max_outbound_buffer 1 MiB, ping_interval 5 s, ping_timeout 5 s, handshake_timeout
5 s), then for `--seconds` (default 120) drives it from several client processes (fork,
`selectors`, the project's Sans-I/O `ClientProtocol`; RLIMIT_NOFILE raised to the hard limit):

- C normal clients (`--clients`, default 2000), 60 % on `/echo` (each message text or binary
  at random, 0 B to 64 KiB, text with multi-byte UTF-8) and 40 % on `/echo_lapps` (`login`,
  then `echo` requests with strings, integers, floats, booleans, lists and maps). Each sends
  a burst of 1 to 3 messages, waits for every answer, pauses 0-500 ms, and again. Every reply
  is checked against the message it answers, content and order. Clients stop sending 2 s
  before the end and wait (at most `--grace` s more) for what is outstanding; then
  **lost = sent - answered** must be 0. `--churn` (default 10 %) of them disconnect now and
  then (a close handshake, a bare TCP FIN, or a RST) and reconnect.
- S slow readers (`--slow`, default 50) on `/echo`, four behaviours: `stall` (sends 256 KiB
  messages until the server stops reading, then neither reads nor writes), `trickle` (reads
  8 KiB every 250 ms while sending 256 KiB messages), `pause` (a fast reader that stops
  reading for 3 s every 10 s: it must survive) and `big` (a fast reader whose single
  1.25 MiB message has an echo larger than max_outbound_buffer). What happened to each
  connection is counted: the close frame's code, or a drop without one, and after how long.
- G garbage senders (`--garbage`, default 50), each looping over ~40 cases: random bytes,
  bad handshakes (every HTTP error of the README's table), slowloris, oversized heads,
  unmasked/reserved/non-minimal frames, bad control frames, invalid UTF-8, oversized
  messages, bad close frames, random frames, LAppS garbage; the HTTP statuses and close
  codes they get are counted per case and compared with what the README documents.
- 4 idle sentinel connections in this process that only answer the server's pings: they must
  stay open the whole run and get close 1001 when the server is stopped.

At the end: RSS (and fds, TCP sockets) of the master and each worker after warm-up, at the
end of the load and once every client left (psutil); messages sent / answered / lost;
close codes and HTTP statuses by category; connections made; the server log's ERROR,
CRITICAL and Traceback lines (printed); the server's stop (SIGTERM, then SIGKILL to its
process group as a last resort) and exit status. The report is also written as JSON to
`soak/results.json`. Exit status 1 when a hard check fails: messages lost, a wrong or
reordered reply, a normal client closed by the server, a server process died, an error in
the log, or an unclean stop. Unexpected outcomes of slow readers and garbage are warnings.

    python soak/soak.py [--quick] [--seconds 120] [--clients 2000] [--slow 50] [--garbage 50]
                        [--workers 2] [--client-procs N] [--churn 0.1] [--seed N]

`--quick`: ~20 s, 200 clients, 10 slow readers, 10 garbage senders (a smoke check).
"""

from __future__ import annotations

import argparse
import errno
import heapq
import math
import multiprocessing as mp
import multiprocessing.connection as mpc
import os
import platform
import random
import selectors
import shutil
import signal
import socket
import struct
import sys
import tempfile
import threading
import time
from array import array
from collections import Counter, defaultdict, deque
from pathlib import Path
from typing import Any, Callable

import cbor2
import psutil

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from harness import (HOST, LappsServer, free_port, git_commit, log, percentile, raise_nofile,  # noqa: E402
                     quick_defaults, reap, save_results, services_folder)
from lapps.client import connect as ws_connect  # noqa: E402
from lapps.ws.client import EV_CLOSED, EV_OPEN, EV_REJECTED, ClientProtocol, State  # noqa: E402
from lapps.ws.frames import frame_header, mask  # noqa: E402

TEXT, BINARY, CONT, CLOSE, PING = 1, 2, 0, 8, 9
READ, WRITE = selectors.EVENT_READ, selectors.EVENT_WRITE
RESULTS = REPO / "soak" / "results.json"
MP = mp.get_context("fork")
MAX_OUTBOUND = 1 << 20
PING_INTERVAL = PING_TIMEOUT = HANDSHAKE_TIMEOUT = 5
TCP_ESTABLISHED, TCP_CLOSE, TCP_CLOSE_WAIT = 1, 7, 8
SAMPLE_LIMIT = 20


# ---------------------------------------------------------------------------- the server

CONFIG = """\
# written by soak/soak.py
[server]
ip = "127.0.0.1"
port = {port}
workers = {workers}
listeners = 2
shutdown_timeout = 5
services_dir = "{services_dir}"

[limits]
max_outbound_buffer = {max_outbound}
ping_interval = {ping_interval}
ping_timeout = {ping_timeout}
handshake_timeout = {handshake_timeout}

[admin]
port = 0

[services.echo]
protocol = "raw"
request_target = "/echo"

[services.echo_lapps]
protocol = "lapps"
request_target = "/echo_lapps"
preload = ["time", "murmur"]
"""


class Server(LappsServer):
    """The soak's `python -m lapps` (see `start_server`), and which processes it had when."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.master = psutil.Process(self.pid)
        self.workers_seen: dict[int, str] = {}      # pid -> name, every child ever seen
        self.initial: set[int] = set()
        self.events: list[str] = []                 # deaths and new processes, with times

    def wait_ready(self, timeout: float = 60.0, path: str | None = "/echo") -> float:
        """The harness's readiness, then the worker processes as they are at the start."""
        took = super().wait_ready(timeout, path)
        kids = self.children()
        self.initial = {p.pid for p in kids}
        for p in kids:
            self.workers_seen[p.pid] = self._name(p)
        return took

    @staticmethod
    def _name(p: psutil.Process) -> str:
        try:
            title = " ".join(p.cmdline()) or p.name()
        except psutil.Error:
            return "?"
        return title.replace("lapps: ", "").strip() or p.name()

    def children(self) -> list[psutil.Process]:
        try:
            return self.master.children(recursive=True)
        except psutil.Error:
            return []

    def check(self, elapsed: float) -> None:
        """Record server processes that died or appeared since the last look."""
        if self.proc.poll() is not None and "master" not in self.workers_seen.get(-1, ""):
            self.workers_seen[-1] = "master"
            self.events.append(f"t={elapsed:.1f}s: the master exited with {self.proc.returncode}")
        now = {p.pid: p for p in self.children()}
        for pid in now:
            if pid not in self.workers_seen:
                self.workers_seen[pid] = self._name(now[pid])
                self.events.append(f"t={elapsed:.1f}s: new server process {pid} ({self.workers_seen[pid]})")
        for pid, name in list(self.workers_seen.items()):
            if pid > 0 and pid not in now and not name.endswith("(gone)"):
                self.workers_seen[pid] = name + " (gone)"
                self.events.append(f"t={elapsed:.1f}s: server process {pid} ({name}) is gone")

    def snapshot(self) -> dict[str, Any]:
        """RSS, fds, threads and TCP sockets of the master and each live worker."""
        out: dict[str, Any] = {}
        for p in [self.master, *self.children()]:
            try:
                name = "master" if p.pid == self.pid else self._name(p)
                with p.oneshot():
                    info = {"pid": p.pid, "rss_mib": round(p.memory_info().rss / 2**20, 2),
                            "fds": p.num_fds(), "threads": p.num_threads()}
                    cpu = p.cpu_times()
                    info["cpu_s"] = round(cpu.user + cpu.system, 2)
                try:
                    conns = p.net_connections(kind="tcp")
                    info["tcp"] = len(conns)
                    info["tcp_established"] = sum(1 for c in conns if c.status == psutil.CONN_ESTABLISHED)
                except psutil.Error:
                    pass
                out[name] = info
            except psutil.Error:
                continue
        return out

    def stop(self, timeout: float = 20.0) -> dict[str, Any]:
        """The harness's stop (SIGTERM, wait, SIGKILL to the process group as a last resort),
        saying so when SIGKILL or what outlived the master was needed."""
        result = super().stop(timeout)
        if result["sigkill"]:
            log(f"  the server did not stop within {timeout:g} s of SIGTERM: SIGKILL to its process group")
        if result["outlived_master"]:
            log(f"  server processes {result['outlived_master']} outlived the master: SIGKILL to the process group")
        return result


def start_server(root: Path, workers: int, log_level: str | None = None) -> Server:
    """One `python -m lapps` in its own session with the soak config under `root`."""
    services = services_folder(root / "services", shipped=("echo", "echo_lapps"))
    port = free_port()
    config = root / "lapps-soak.toml"
    config.write_text(CONFIG.format(
        port=port, workers=workers, services_dir=services, max_outbound=MAX_OUTBOUND,
        ping_interval=PING_INTERVAL, ping_timeout=PING_TIMEOUT, handshake_timeout=HANDSHAKE_TIMEOUT))
    return Server.start(config, port, root / "server.log", workers, tied=True,
                        extra_args=["--log-level", log_level] if log_level else [])


# ---------------------------------------------------------------------------- client machinery


class CountingProtocol(ClientProtocol):
    """ClientProtocol that counts the server's pings (it answers them itself)."""

    __slots__ = ("pings",)

    def __init__(self, host: str, path: str) -> None:
        super().__init__(host, path)
        self.pings = 0

    def _control(self, opcode: int, payload: bytes) -> None:
        if opcode == PING:
            self.pings += 1
        super()._control(opcode, payload)


def tcp_state(sock: socket.socket) -> int:
    try:
        return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)[0]
    except OSError:
        return TCP_CLOSE


class Proc:
    """One client process (or the sentinel thread): a selector, timers, a connect limiter,
    counters. `now` is time.monotonic() at the last wake-up (the clock every process shares)."""

    def __init__(self, port: int, t0: float, seconds: float, grace: float, seed: int, name: str,
                 max_in_flight: int = 64) -> None:
        self.port = port
        self.name = name
        self.sel = selectors.DefaultSelector()
        self.timers: list[tuple[float, int, Callable[..., None], tuple]] = []
        self.tseq = 0
        self.now = time.monotonic()
        self.t0 = t0
        self.t_stop = t0 + seconds - 2.0      # no new messages from here
        self.t_end = t0 + seconds
        self.deadline = self.t_end + grace
        self.rng = random.Random(seed)
        self.st: dict[str, Counter] = defaultdict(Counter)
        self.samples: dict[str, list[str]] = defaultdict(list)
        self.values: dict[str, array] = defaultdict(lambda: array("d"))
        self.waiting: deque[Any] = deque()
        self.in_flight = 0
        self.max_in_flight = max_in_flight
        self.conns: set[WS] = set()

    def note(self, key: str, text: str) -> None:
        s = self.samples[key]
        if len(s) < SAMPLE_LIMIT:
            s.append(f"t={self.now - self.t0:.1f}s {text}")

    def call_later(self, delay: float, fn: Callable[..., None], *args: Any) -> None:
        self.tseq += 1
        heapq.heappush(self.timers, (self.now + delay, self.tseq, fn, args))

    def want_connect(self, owner: Any) -> None:
        self.waiting.append(owner)
        self._start_connects()

    def _start_connects(self) -> None:
        while self.waiting and self.in_flight < self.max_in_flight:
            owner = self.waiting.popleft()
            self.in_flight += 1
            owner.open_connection()

    def handshake_done(self) -> None:
        self.in_flight -= 1
        self._start_connects()

    def run(self, until: Callable[[], bool], deadline: float) -> None:
        sel, timers = self.sel, self.timers
        while True:
            now = self.now = time.monotonic()
            while timers and timers[0][0] <= now:
                _, _, fn, args = heapq.heappop(timers)
                fn(*args)
                now = self.now = time.monotonic()
            if until() or now >= deadline:
                return
            timeout = min(0.1, deadline - now)
            if timers:
                timeout = min(timeout, timers[0][0] - now)
            if not sel.get_map():
                time.sleep(max(0.0, timeout))
                continue
            events = sel.select(max(0.0, timeout))
            self.now = time.monotonic()
            for key, m in events:
                key.data.on_event(m)


class WS:
    """One client connection on the process's selector. The owner gets `on_open(ws)`,
    `on_message(ws, opcode, payload)`, `on_rejected(ws, status, body)` and
    `on_closed(ws, code, reason)` (a failed connect or a drop is 1006 with `ws.error` set).

    `reading = False` stops reading (slow readers); `mute = True` discards what the protocol
    queues (pongs) until the server's close frame arrives; `extra` is sent after `proto.out`
    (raw bytes: garbage)."""

    __slots__ = ("proc", "owner", "sock", "proto", "connected", "closed", "opened", "interest", "reading",
                 "mute", "extra", "hs_pending", "t_start", "t_open", "last_send", "error", "reset",
                 "bytes_in", "__weakref__")

    def __init__(self, proc: Proc, path: str, owner: Any, small_buffers: bool = False) -> None:
        self.proc = proc
        self.owner = owner
        self.proto = CountingProtocol(f"{HOST}:{proc.port}", path)
        self.connected = self.closed = self.opened = self.mute = False
        self.reading = True
        self.interest = 0
        self.extra = bytearray()
        self.hs_pending = True
        self.t_start = self.last_send = proc.now
        self.t_open = 0.0
        self.error = ""
        self.reset = False
        self.bytes_in = 0
        sock = self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if small_buffers:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)
        proc.conns.add(self)
        proc.st["tcp"]["connects"] += 1
        err = sock.connect_ex((HOST, proc.port))
        if err not in (0, errno.EINPROGRESS):
            self.error = f"connect: {os.strerror(err)}"
            proc.call_later(0, self._dropped)
        else:
            self._interest(READ | WRITE)

    def _interest(self, m: int) -> None:
        if m == self.interest or self.closed:
            return
        if not self.interest:
            self.proc.sel.register(self.sock, m, self)
        elif not m:
            self.proc.sel.unregister(self.sock)
        else:
            self.proc.sel.modify(self.sock, m, self)
        self.interest = m

    def update_interest(self) -> None:
        want_write = not self.connected or bool(self.proto.out) or bool(self.extra)
        self._interest((READ if self.reading else 0) | (WRITE if want_write else 0))

    def on_event(self, m: int) -> None:
        if m & WRITE:
            self.flush()
        if m & READ and self.reading and not self.closed:
            self.read()

    def flush(self) -> None:
        if self.closed:
            return
        if not self.connected:
            err = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err:
                self.error = f"connect: {os.strerror(err)}"
                return self._dropped()
            self.connected = True
        out = self.proto.out
        if self.mute and not self.proto.close_received:
            out.clear()
        for buf in (out, self.extra):
            if not buf:
                continue
            try:
                n = self.sock.send(buf)
            except (BlockingIOError, InterruptedError):
                n = 0
            except OSError as e:
                self.error = f"send: {e.strerror or e}"
                self.reset = e.errno == errno.ECONNRESET
                return self._dropped()
            if n:
                self.last_send = self.proc.now
                del buf[:n]
            if buf:
                break
        self.update_interest()

    def read(self, limit: int = 262144) -> None:
        """One recv of at most `limit` bytes, fed to the protocol, events dispatched."""
        try:
            data = self.sock.recv(limit)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as e:
            self.error = f"recv: {e.strerror or e}"
            self.reset = e.errno == errno.ECONNRESET
            self.proto.receive_eof()
            return self.dispatch()
        if data:
            self.bytes_in += len(data)
            self.proto.receive_data(data)
        else:
            self.error = self.error or "EOF"
            self.proto.receive_eof()
        self.dispatch()

    def drain(self) -> None:
        """Read everything the kernel still holds (after the server dropped us), to the end."""
        while not self.closed and self.proto.state != State.CLOSED:
            try:
                data = self.sock.recv(1 << 20)
            except (BlockingIOError, InterruptedError):
                if tcp_state(self.sock) in (TCP_CLOSE, TCP_CLOSE_WAIT):
                    self.error = self.error or "nothing more to read"
                    self.proto.receive_eof()
                    break
                return
            except OSError as e:
                self.error = f"recv: {e.strerror or e}"
                self.reset = e.errno == errno.ECONNRESET
                self.proto.receive_eof()
                break
            if not data:
                self.error = self.error or "EOF"
                self.proto.receive_eof()
                break
            self.bytes_in += len(data)
            self.proto.receive_data(data)
            if self.proto.events:
                self.dispatch()
        self.dispatch()

    def _dropped(self) -> None:
        if self.closed:
            return
        if self.proto.state != State.CLOSED:
            self.proto.receive_eof()
        self.dispatch()

    def dispatch(self) -> None:
        proto = self.proto
        events = proto.events
        owner = self.owner
        while events:
            kind, value = events.pop(0)
            if self.hs_pending and kind in (EV_OPEN, EV_REJECTED, EV_CLOSED):
                self.hs_pending = False
                self.proc.handshake_done()
            if kind == TEXT or kind == BINARY:
                owner.on_message(self, kind, value)
            elif kind == EV_OPEN:
                self.opened = True
                self.t_open = self.proc.now
                self.proc.st["tcp"]["upgrades"] += 1
                owner.on_open(self)
            elif kind == EV_REJECTED:
                self.finish()
                owner.on_rejected(self, value[0], value[2])
            elif kind == EV_CLOSED:
                self.finish()
                owner.on_closed(self, value[0], value[1])
            if self.closed:
                events.clear()
                return
        if proto.state == State.CLOSED:
            self.finish()
        elif not self.closed:
            self.flush()

    def finish(self) -> None:
        """Send what is queued (our close echo) if the socket takes it, then close."""
        if self.closed:
            return
        if self.proto.out and self.connected:
            try:
                self.sock.send(self.proto.out)
            except OSError:
                pass
        self.abort()

    def abort(self, rst: bool = False) -> None:
        if self.closed:
            return
        if self.hs_pending:
            self.hs_pending = False
            self.proc.handshake_done()
        self.proc.st["tcp"]["pings from the server"] += self.proto.pings
        if rst:
            try:
                self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            except OSError:
                pass
        if self.interest:
            try:
                self.proc.sel.unregister(self.sock)
            except (KeyError, ValueError):
                pass
        self.interest = 0
        self.closed = True
        self.sock.close()
        self.proc.conns.discard(self)


def describe_close(ws: WS, code: int, reason: str) -> str:
    """What ended a connection, as a counter key."""
    if ws.proto.close_received:
        return f"close {code}"
    if code != 1006:
        return f"client failed {code}: {reason}"     # our protocol refused the server's bytes
    how = "RST" if ws.reset else ("FIN" if ws.error == "EOF" else ws.error or "?")
    if ws.error.startswith("connect"):
        return ws.error
    if not ws.opened:
        return f"tcp close before an answer ({how})"
    return f"tcp close without close frame ({how})"


# ---------------------------------------------------------------------------- payloads

_TEXT_CHARS = ("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 .,;:!?-_()[]{}<>/\\'\"@#$%^&*+="
               "éüßçøåñ" "жщыэюя" "中文字符测试" "€™✓" "😀🎉𝄞")


class Payloads:
    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.text = "".join(rng.choice(_TEXT_CHARS) for _ in range(200_000))
        self.binary = rng.randbytes(2 << 20)

    def size(self) -> int:
        r = self.rng.random()
        if r < 0.01:
            return 0
        if r < 0.71:
            return self.rng.randint(1, 256)
        if r < 0.97:
            return self.rng.randint(257, 8192)
        return self.rng.randint(8193, 65536)

    def text_of(self, n: int) -> str:
        start = self.rng.randrange(len(self.text) - n)
        return self.text[start:start + n]

    def bytes_of(self, n: int) -> bytes:
        start = self.rng.randrange(len(self.binary) - n)
        return self.binary[start:start + n]


# ---------------------------------------------------------------------------- normal clients


class Normal:
    """A well-behaved client: bursts of 1-3 messages, every reply checked in order."""

    __slots__ = ("proc", "idx", "lapps", "churner", "path", "ws", "expected", "key", "seq", "closing",
                 "next_churn", "churn_mean", "pay")

    def __init__(self, proc: Proc, pay: Payloads, idx: int, lapps: bool, churner: bool, churn_mean: float) -> None:
        self.proc = proc
        self.pay = pay
        self.idx = idx
        self.lapps = lapps
        self.churner = churner
        self.churn_mean = churn_mean
        self.path = "/echo_lapps" if lapps else "/echo"
        self.ws: WS | None = None
        self.expected: deque[tuple[str, int, Any, float]] = deque()
        self.key: str | None = None
        self.seq = 0
        self.closing = ""              # "churn" or "final" while our close handshake runs
        self.next_churn = proc.now + proc.rng.expovariate(1 / churn_mean) if churner else math.inf

    @property
    def busy(self) -> bool:
        return bool(self.expected)

    def start(self) -> None:
        self.proc.want_connect(self)

    def open_connection(self) -> None:
        self.ws = WS(self.proc, self.path, self)
        self.proc.st["normal"]["connections"] += 1

    def on_open(self, ws: WS) -> None:
        if ws is not self.ws:
            return
        if self.proc.now >= self.proc.t_stop:
            return
        if self.lapps:
            self.key = None
            self._send(ws, "lapps_login", BINARY,
                       cbor2.dumps({"lapps": 1, "method": "login", "params": [f"user{self.idx}", "secret"]}), None)
            ws.flush()
        else:
            self.burst(ws)

    def _send(self, ws: WS, cat: str, opcode: int, payload: bytes, expect: Any) -> None:
        ws.proto.send(opcode, payload)
        self.expected.append((cat, opcode, expect if expect is not None else payload, self.proc.now))
        st = self.proc.st["normal"]
        st["sent"] += 1
        st["sent." + cat] += 1
        st["bytes_sent"] += len(payload)

    def burst(self, ws: WS) -> None:
        pay, rng = self.pay, self.proc.rng
        for _ in range(rng.choice((1, 1, 1, 1, 2, 3))):
            self.seq += 1
            n = pay.size()
            if self.lapps:
                values: list[Any] = [self.seq, pay.text_of(min(n, 2000))]
                r = rng.random()
                if r < 0.3:
                    values.append([rng.randint(-2**40, 2**40) for _ in range(rng.randint(0, 8))])
                if r > 0.5:
                    values.append({"n": self.seq, "s": pay.text_of(rng.randint(1, 40)), "f": self.seq + 0.5,
                                   "b": r > 0.75, "l": [1, "x", [2, [3]]]})
                msg = {"lapps": 1, "method": "echo", "params": [{"authkey": self.key}, *values]}
                self._send(ws, "lapps_echo", BINARY, cbor2.dumps(msg), values)
            elif rng.random() < 0.5:
                body = pay.text_of(n)
                self._send(ws, "raw_text", TEXT, f"{self.idx}.{self.seq}|{body}".encode() if n else b"", None)
            else:
                head = struct.pack(">IQ", self.idx, self.seq) if n else b""
                self._send(ws, "raw_binary", BINARY, head + pay.bytes_of(n), None)
        ws.flush()

    def on_message(self, ws: WS, opcode: int, payload: bytes) -> None:
        proc = self.proc
        st = proc.st["normal"]
        if ws is not self.ws:
            return
        if not self.expected:
            st["unsolicited"] += 1
            proc.note("normal.unsolicited", f"client {self.idx} {self.path}: {opcode} {payload[:60]!r}")
            return
        cat, exp_op, exp, t = self.expected.popleft()
        st["answered"] += 1
        st["answered." + cat] += 1
        if proc.now > proc.t_end:
            st["answered_late"] += 1
        proc.values["rtt"].append(proc.now - t)
        ok = True
        why = ""
        if self.lapps:
            try:
                msg = cbor2.loads(payload)
            except Exception as e:   # noqa: BLE001 (any decoding failure is a bad reply)
                msg, why = None, f"bad CBOR: {e}"
            if msg is not None:
                if opcode != BINARY or not isinstance(msg, dict) or msg.get("cid") != 0 or msg.get("status") != 1:
                    why = f"not a response: {msg!r}"[:200]
                elif cat == "lapps_login":
                    res = msg.get("result")
                    if isinstance(res, list) and res and isinstance(res[0], dict) and isinstance(
                            res[0].get("authkey"), str):
                        self.key = res[0]["authkey"]
                    else:
                        why = f"login result {res!r}"[:200]
                elif msg.get("result") != exp:
                    got = msg.get("result")
                    why = f"result {str(got)[:120]} != sent {str(exp)[:120]}"
                    if isinstance(got, list) and got and any(e[2] and e[2][0] == got[0] for e in self.expected
                                                             if isinstance(e[2], list)):
                        why = "order: " + why
            ok = not why
        elif opcode != exp_op or payload != exp:
            ok = False
            order = any(e[2] == payload for e in self.expected)
            why = (f"{'order: ' if order else ''}got opcode {opcode} {len(payload)} B {payload[:40]!r}, "
                   f"expected opcode {exp_op} {len(exp)} B {exp[:40]!r}")
        if not ok:
            st["mismatches"] += 1
            proc.note("normal.mismatch", f"client {self.idx} {self.path} {cat}: {why}")
        if not self.expected:
            self.idle(ws)

    def idle(self, ws: WS) -> None:
        proc = self.proc
        if proc.now >= proc.t_stop or self.closing:
            return
        if proc.now >= self.next_churn:
            return self.churn(ws)
        if self.lapps and self.key is None:
            return
        proc.call_later(proc.rng.uniform(0.0, 0.5), self.fire, ws)

    def fire(self, ws: WS) -> None:
        if ws is not self.ws or ws.closed or self.closing or self.expected:
            return
        if self.proc.now >= self.proc.t_stop:
            return
        self.burst(ws)

    def churn(self, ws: WS) -> None:
        proc = self.proc
        self.next_churn = proc.now + proc.rng.expovariate(1 / self.churn_mean)
        how = proc.rng.choice(("close", "close", "fin", "rst"))
        proc.st["churn"][how] += 1
        if how == "close":
            self.closing = "churn"
            ws.proto.close(1000, "churn")
            ws.flush()
            proc.call_later(5.0, self._close_timeout, ws)
            return
        ws.abort(rst=how == "rst")
        self.ws = None
        proc.call_later(proc.rng.uniform(0.0, 0.2), self.reconnect)

    def _close_timeout(self, ws: WS) -> None:
        if ws is self.ws and not ws.closed:
            st = self.proc.st["churn" if self.closing == "churn" else "normal_final"]
            st["no close answer in 5 s"] += 1
            self.proc.note("normal.close_timeout", f"client {self.idx} {self.path}: no answer to our close")
            ws.abort()
            self.ws = None
            if self.closing == "churn":
                self.closing = ""
                self.reconnect()

    def reconnect(self) -> None:
        if self.proc.now < self.proc.t_stop and self.ws is None:
            self.start()

    def on_rejected(self, ws: WS, status: int, body: bytes) -> None:
        if ws is not self.ws:
            return
        self.ws = None
        self.proc.st["normal_rejected"][f"http {status}"] += 1
        self.proc.note("normal.rejected", f"client {self.idx} {self.path}: HTTP {status} {body[:80]!r}")
        self.expected.clear()
        if self.proc.now < self.proc.t_stop:
            self.proc.call_later(1.0, self.reconnect)

    def on_closed(self, ws: WS, code: int, reason: str) -> None:
        if ws is not self.ws:
            return
        self.ws = None
        proc = self.proc
        what = describe_close(ws, code, reason)
        if self.closing == "churn":
            self.closing = ""
            proc.st["churn"]["our close answered: " + what] += 1
            proc.call_later(proc.rng.uniform(0.0, 0.2), self.reconnect)
            return
        if self.closing == "final":
            proc.st["normal_final"][what] += 1
            return
        st = proc.st["normal_unexpected_close"]
        st[what] += 1
        outstanding = len(self.expected)
        proc.note("normal.unexpected_close",
                  f"client {self.idx} {self.path}: {what} {reason!r} after {proc.now - ws.t_start:.1f}s, "
                  f"{outstanding} message(s) outstanding, {ws.proto.pings} ping(s) seen")
        proc.st["normal"]["lost_on_drop"] += outstanding
        self.expected.clear()
        if proc.now < proc.t_stop:
            proc.call_later(0.5, self.reconnect)

    def close_final(self) -> None:
        ws = self.ws
        if ws is None or ws.closed:
            self.proc.st["normal_final"]["not connected at the end (churned just before it)"] += 1
            return
        if ws.proto.state != State.OPEN:
            ws.abort()
            self.ws = None
            self.proc.st["normal_final"]["not open at the end (aborted)"] += 1
            return
        self.closing = "final"
        ws.proto.close(1000, "done")
        ws.flush()
        self.proc.call_later(5.0, self._close_timeout, ws)


# ---------------------------------------------------------------------------- slow readers

SLOW_MODES = ("stall", "trickle", "pause", "big")
SLOW_PATTERN = ("stall", "trickle", "pause", "big", "stall", "trickle", "pause", "big", "stall", "trickle")
SLOW_MSG = 256 * 1024
BIG_MSG = MAX_OUTBOUND + MAX_OUTBOUND // 4


class Slow:
    """A reader that cannot keep up (or a probe of the outbound cap); one connection at a time."""

    def __init__(self, proc: Proc, pay: Payloads, idx: int, mode: str) -> None:
        self.proc = proc
        self.idx = idx
        self.mode = mode
        self.ws: WS | None = None
        self.payload = pay.bytes_of(BIG_MSG if mode == "big" else (64 * 1024 if mode == "pause" else SLOW_MSG))
        self.phase = ""
        self.stalled_at = 0.0
        self.paused_until = 0.0
        self.next_pause = 0.0
        self.sent = self.echoed = 0
        self.pending = 0

    def st(self) -> Counter:
        return self.proc.st["slow." + self.mode]

    def start(self) -> None:
        self.proc.want_connect(self)

    def open_connection(self) -> None:
        self.ws = WS(self.proc, "/echo", self, small_buffers=self.mode in ("stall", "trickle"))
        self.st()["connections"] += 1
        self.phase = "connecting"
        self.sent = self.echoed = self.pending = 0

    def on_open(self, ws: WS) -> None:
        proc = self.proc
        self.phase = "sending"
        if self.mode in ("stall", "trickle"):
            ws.reading = False
        if self.mode == "pause":
            self.next_pause = proc.now + proc.rng.uniform(3.0, 10.0)
        self.pump(ws)
        proc.call_later(0.25, self.tick, ws)

    def pump(self, ws: WS) -> None:
        """Queue more messages: stall keeps the socket full, the others keep 1-2 in flight."""
        if ws.closed or ws.proto.state != State.OPEN or self.phase != "sending":
            return
        if self.mode == "big":
            if not self.pending:
                ws.proto.send(BINARY, self.payload)
                self.sent += 1
                self.pending += 1
        elif self.mode in ("stall", "trickle") or self.paused_until:
            # send without waiting for the echoes: as much as the socket takes
            while len(ws.proto.out) < 2 * len(self.payload):
                ws.proto.send(BINARY, self.payload)
                self.sent += 1
                self.pending += 1
        else:
            while self.pending < 2 and not ws.proto.out:
                ws.proto.send(BINARY, self.payload)
                self.sent += 1
                self.pending += 1
        ws.flush()

    def tick(self, ws: WS) -> None:
        if ws is not self.ws or ws.closed:
            return
        proc = self.proc
        if self.mode == "stall" and self.phase == "sending" and proc.now - ws.last_send > 1.0:
            self.phase = "stalled"
            self.stalled_at = proc.now
            ws.reading = False
            ws._interest(0)                 # neither read nor write from now on
            proc.values[f"slow.{self.mode}.sent_mib"].append(self.sent * SLOW_MSG / 2**20)
        if self.mode == "trickle":
            ws.read(8192)
            if ws.closed or ws is not self.ws:
                return
        if self.mode == "pause":
            if self.paused_until and proc.now >= self.paused_until:
                self.paused_until = 0.0
                ws.reading = True
                ws.update_interest()
                self.st()["pauses survived"] += 1
            elif not self.paused_until and proc.now >= self.next_pause and proc.now < proc.t_stop - 4:
                self.paused_until = proc.now + 3.0
                self.next_pause = proc.now + 10.0
                ws.reading = False
                ws.update_interest()
        if self.mode in ("stall", "trickle") and tcp_state(ws.sock) != TCP_ESTABLISHED:
            ws.reading = True
            ws.drain()
            if not ws.closed:
                ws._dropped()
            return
        if proc.now < proc.t_stop:
            self.pump(ws)
        proc.call_later(0.25, self.tick, ws)

    def on_message(self, ws: WS, opcode: int, payload: bytes) -> None:
        if ws is not self.ws:
            return
        self.pending = max(0, self.pending - 1)
        if opcode == BINARY and payload == self.payload:
            self.echoed += 1
            self.st()["echoes ok"] += 1
        else:
            self.st()["echo mismatches"] += 1
            self.proc.note(f"slow.{self.mode}", f"reader {self.idx}: wrong echo {len(payload)} B")
        if self.mode == "big" and ws.proto.state == State.OPEN:
            self._outcome(ws, "echoed whole")
            ws.proto.close(1000)
            ws.flush()
        elif self.mode != "pause" and self.proc.now < self.proc.t_stop:
            self.pump(ws)       # pause: from tick() only, at most 2 x 64 KiB every 250 ms

    def _outcome(self, ws: WS, what: str) -> None:
        proc = self.proc
        self.st()["outcome: " + what] += 1
        proc.values[f"slow.{self.mode}.lifetime_s"].append(proc.now - (ws.t_open or ws.t_start))
        if self.mode == "stall" and self.stalled_at and not what.startswith("still open"):
            proc.values["slow.stall.drop_after_stall_s"].append(proc.now - self.stalled_at)
        self.phase = "done"

    def on_rejected(self, ws: WS, status: int, body: bytes) -> None:
        if ws is self.ws:
            self._outcome(ws, f"http {status}")
            self.next(ws)

    def on_closed(self, ws: WS, code: int, reason: str) -> None:
        if ws is not self.ws:
            return
        if self.phase != "done":
            what = describe_close(ws, code, reason)
            if ws.proto.close_received and reason:
                what += f" ({reason})"
            self._outcome(ws, what)
        self.next(ws)

    def next(self, ws: WS) -> None:
        self.ws = None
        self.stalled_at = 0.0
        self.paused_until = 0.0
        if self.proc.now < self.proc.t_stop - 1:
            self.proc.call_later(1.0 if self.mode != "big" else 2.0, self.start)

    def close_final(self) -> None:
        ws = self.ws
        if ws is None or ws.closed:
            return
        what = f"still open at the end ({self.phase}"
        if self.phase == "stalled":
            what += f" for {self.proc.now - self.stalled_at:.0f} s"
            self.proc.values["slow.stall.open_at_end_stalled_s"].append(self.proc.now - self.stalled_at)
        self._outcome(ws, what + ")")
        ws.abort()
        self.ws = None


# ---------------------------------------------------------------------------- garbage senders


def http_request(path: str = "/echo", method: str = "GET", version: str = "HTTP/1.1", host: str | None = "h",
                 key: str | None = "dGhlIHNhbXBsZSBub25jZQ==", ws_version: str | None = "13",
                 upgrade: str | None = "websocket", connection: str | None = "Upgrade",
                 extra: tuple[str, ...] = (), eol: str = "\r\n", body: str = "") -> bytes:
    lines = [f"{method} {path} {version}"]
    if host is not None:
        lines.append(f"Host: {host}")
    if upgrade is not None:
        lines.append(f"Upgrade: {upgrade}")
    if connection is not None:
        lines.append(f"Connection: {connection}")
    if key is not None:
        lines.append(f"Sec-WebSocket-Key: {key}")
    if ws_version is not None:
        lines.append(f"Sec-WebSocket-Version: {ws_version}")
    lines.extend(extra)
    return (eol.join(lines) + eol + eol + body).encode("latin-1")


def masked(opcode: int, payload: bytes, fin: bool = True, rsv: int = 0) -> bytes:
    key = os.urandom(4)
    head = bytearray(frame_header(opcode, len(payload), fin, masked=True))
    head[0] |= rsv
    return bytes(head) + key + mask(payload, key)


def unmasked(opcode: int, payload: bytes) -> bytes:
    return frame_header(opcode, len(payload), True, masked=False) + payload


def _nonminimal() -> bytes:
    key = os.urandom(4)
    return bytes((0x81, 0x80 | 126, 0, 5)) + key + mask(b"hello", key)


def _oversized() -> bytes:
    return bytes((0x82, 0x80 | 127)) + (32 << 20).to_bytes(8, "big") + os.urandom(4)


HTTP_ANY = {"http 400", "http 431", "tcp close before an answer (FIN)", "tcp close before an answer (RST)"}
ANY_REACTION = None   # any answer of the server (a close code, an HTTP status or a drop), not our time-out

# name -> (kind, path, payload builder (rng -> bytes), expected outcomes, our time-out in s)
#   kind "raw": the bytes replace the upgrade request; "frames": sent after the 101;
#   "pipelined": an upgrade request and the bytes in one write; "slowloris": a valid request,
#   one byte every 0.3 s; "half_close": after the 101, shutdown(SHUT_WR); "silent": nothing.
GARBAGE: dict[str, tuple[str, str, Callable[[random.Random], bytes], set[str] | None, float]] = {
    "random bytes": ("raw", "/echo", lambda r: r.randbytes(r.randint(1, 3000)), HTTP_ANY, 12),
    "random bytes, CRLFCRLF": ("raw", "/echo", lambda r: r.randbytes(r.randint(1, 3000)) + b"\r\n\r\n",
                               {"http 400", "http 431"}, 8),
    "version 8": ("raw", "/echo", lambda r: http_request(ws_version="8"), {"http 426"}, 8),
    "no version": ("raw", "/echo", lambda r: http_request(ws_version=None), {"http 426", "http 400"}, 8),
    "no key": ("raw", "/echo", lambda r: http_request(key=None), {"http 400"}, 8),
    "bad key": ("raw", "/echo", lambda r: http_request(key="abc"), {"http 400"}, 8),
    "POST": ("raw", "/echo", lambda r: http_request(method="POST"), {"http 400"}, 8),
    "HTTP/1.0": ("raw", "/echo", lambda r: http_request(version="HTTP/1.0"), {"http 400"}, 8),
    "no Upgrade": ("raw", "/echo", lambda r: http_request(upgrade=None), {"http 400"}, 8),
    "Upgrade: h2c": ("raw", "/echo", lambda r: http_request(upgrade="h2c"), {"http 400"}, 8),
    "no Connection": ("raw", "/echo", lambda r: http_request(connection=None), {"http 400"}, 8),
    "unknown path": ("raw", "/nope", lambda r: http_request(path="/nope"), {"http 404"}, 8),
    "duplicate Host": ("raw", "/echo", lambda r: http_request(extra=("Host: other",)), {"http 400"}, 8),
    "no Host": ("raw", "/echo", lambda r: http_request(host=None), {"http 400"}, 8),
    "bare LF": ("raw", "/echo", lambda r: http_request(eol="\n"), {"http 400"}, 8),
    "obs-fold": ("raw", "/echo", lambda r: http_request(extra=("X-A: 1", " folded")), {"http 400"}, 8),
    "space before colon": ("raw", "/echo", lambda r: http_request(extra=("X-A : 1",)), {"http 400"}, 8),
    "control byte": ("raw", "/echo", lambda r: http_request(extra=("X-A: a\x01b",)), {"http 400"}, 8),
    "body": ("raw", "/echo", lambda r: http_request(extra=("Content-Length: 4",), body="abcd"), {"http 400"}, 8),
    "header over 8 KiB": ("raw", "/echo", lambda r: http_request(extra=("X-Big: " + "a" * 9000,)),
                          {"http 431"}, 8),
    "120 headers": ("raw", "/echo", lambda r: http_request(extra=tuple(f"X-H{i}: {i}" for i in range(120))),
                    {"http 431"}, 8),
    "head not finished": ("raw", "/echo", lambda r: http_request()[:-2], {"tcp close before an answer (FIN)"}, 12),
    "nothing sent": ("silent", "/echo", lambda r: b"", {"tcp close before an answer (FIN)"}, 12),
    "slowloris": ("slowloris", "/echo", lambda r: http_request(), {"tcp close before an answer (FIN)",
                                                                    "tcp close before an answer (RST)"}, 12),
    "unmasked frame": ("frames", "/echo", lambda r: unmasked(TEXT, b"hello"), {"close 1002"}, 8),
    "RSV1 set": ("frames", "/echo", lambda r: masked(TEXT, b"hello", rsv=0x40), {"close 1002"}, 8),
    "RSV3 set": ("frames", "/echo", lambda r: masked(BINARY, b"hello", rsv=0x10), {"close 1002"}, 8),
    "reserved opcode 3": ("frames", "/echo", lambda r: masked(3, b"x"), {"close 1002"}, 8),
    "reserved opcode 11": ("frames", "/echo", lambda r: masked(11, b""), {"close 1002"}, 8),
    "non-minimal length": ("frames", "/echo", lambda r: _nonminimal(), {"close 1002"}, 8),
    "fragmented ping": ("frames", "/echo", lambda r: masked(PING, b"x", fin=False), {"close 1002"}, 8),
    "ping of 126 bytes": ("frames", "/echo", lambda r: masked(PING, b"x" * 126), {"close 1002"}, 8),
    "continuation first": ("frames", "/echo", lambda r: masked(CONT, b"x"), {"close 1002"}, 8),
    "text inside fragmented": ("frames", "/echo", lambda r: masked(TEXT, b"a", fin=False) + masked(TEXT, b"b"),
                               {"close 1002"}, 8),
    "invalid UTF-8": ("frames", "/echo", lambda r: masked(TEXT, b"ok\xff\xfe"), {"close 1007"}, 8),
    "invalid UTF-8, first fragment": ("frames", "/echo", lambda r: masked(TEXT, b"\xed\xa0\x80", fin=False),
                                      {"close 1007"}, 8),
    "invalid UTF-8, split": ("frames", "/echo",
                             lambda r: masked(TEXT, b"ok\xc3", fin=False) + masked(CONT, b"\x28"), {"close 1007"}, 8),
    "close code 999": ("frames", "/echo", lambda r: masked(CLOSE, (999).to_bytes(2, "big")), {"close 1002"}, 8),
    "close code 1005": ("frames", "/echo", lambda r: masked(CLOSE, (1005).to_bytes(2, "big")), {"close 1002"}, 8),
    "close of 1 byte": ("frames", "/echo", lambda r: masked(CLOSE, b"\x03"), {"close 1002"}, 8),
    "close reason not UTF-8": ("frames", "/echo", lambda r: masked(CLOSE, (1000).to_bytes(2, "big") + b"\xff"),
                               {"close 1007"}, 8),
    "message over 16 MiB": ("frames", "/echo", lambda r: _oversized(), {"close 1009"}, 8),
    "random frames": ("frames", "/echo", lambda r: r.randbytes(r.randint(1, 4000)), ANY_REACTION, 25),
    "pipelined unmasked": ("pipelined", "/echo", lambda r: unmasked(BINARY, b"after the upgrade"),
                           {"close 1002"}, 8),
    "half close": ("half_close", "/echo", lambda r: b"", {"tcp close without close frame (FIN)"}, 8),
    "LAppS bad CBOR x4": ("frames", "/echo_lapps", lambda r: b"".join(masked(BINARY, b"\xff" + r.randbytes(20))
                                                                       for _ in range(4)), {"close 1003"}, 8),
    "LAppS text x4": ("frames", "/echo_lapps", lambda r: b"".join(masked(TEXT, b"hello") for _ in range(4)),
                      {"close 1003"}, 8),
    "LAppS not a request x4": ("frames", "/echo_lapps",
                               lambda r: b"".join(masked(BINARY, cbor2.dumps({"foo": 1})) for _ in range(4)),
                               {"close 1003"}, 8),
}


class Garbage:
    """Connects, misbehaves one way (a case of GARBAGE), records the answer, again."""

    def __init__(self, proc: Proc, idx: int) -> None:
        self.proc = proc
        self.idx = idx
        self.ws: WS | None = None
        self.case = ""
        self.active = False
        self.cases = list(GARBAGE)

    def start(self) -> None:
        proc = self.proc
        if proc.now >= proc.t_stop:
            return
        self.case = proc.rng.choice(self.cases)
        timeout = GARBAGE[self.case][4]
        if proc.now + timeout > proc.deadline - 1:
            self.case = "unmasked frame"
        self.active = True
        proc.want_connect(self)

    def open_connection(self) -> None:
        kind, path, build, expect, timeout = GARBAGE[self.case]
        ws = self.ws = WS(self.proc, path, self)
        payload = build(self.proc.rng)
        if kind == "raw":
            ws.proto.out.clear()
            ws.extra += payload
            ws.mute = True
        elif kind == "pipelined":
            ws.extra += bytes(ws.proto.out) + payload
            ws.proto.out.clear()
            ws.mute = True
        elif kind in ("silent", "slowloris"):
            ws.proto.out.clear()
            ws.mute = True
            if kind == "slowloris":
                self.proc.call_later(0.3, self._drip, ws, payload)
        self.proc.st["garbage"]["connections"] += 1
        self.proc.call_later(timeout, self._timeout, ws)

    def _drip(self, ws: WS, rest: bytes) -> None:
        if ws is self.ws and not ws.closed and rest:
            ws.extra += rest[:1]
            ws.flush()
            self.proc.call_later(0.3, self._drip, ws, rest[1:])

    def on_open(self, ws: WS) -> None:
        if ws is not self.ws:
            return
        kind, _, build, _, _ = GARBAGE[self.case]
        if kind == "frames":
            ws.mute = True
            ws.extra += build(self.proc.rng)
            ws.flush()
        elif kind == "half_close":
            ws.mute = True
            try:
                ws.sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass

    def on_message(self, ws: WS, opcode: int, payload: bytes) -> None:
        st = self.proc.st["garbage_messages"]
        if opcode == BINARY and self.case.startswith("LAppS"):
            try:
                msg = cbor2.loads(payload)
                st[f"{self.case}: LAppS error {msg['error']['code']}"] += 1
                return
            except Exception:   # noqa: BLE001
                pass
        st[f"{self.case}: message opcode {opcode}"] += 1

    def on_rejected(self, ws: WS, status: int, body: bytes) -> None:
        if ws is self.ws:
            self._outcome(ws, f"http {status}")

    def on_closed(self, ws: WS, code: int, reason: str) -> None:
        if ws is self.ws:
            self._outcome(ws, describe_close(ws, code, reason), reason)

    def _outcome(self, ws: WS, what: str, reason: str = "") -> None:
        proc = self.proc
        expect = GARBAGE[self.case][3]
        proc.st["garbage." + self.case][what] += 1
        proc.values["garbage.answer_s." + self.case].append(proc.now - ws.t_start)
        unexpected = what.startswith("no answer") or what.startswith("client failed") if expect is None \
            else what not in expect
        if unexpected:
            proc.st["garbage"]["unexpected"] += 1
            proc.note("garbage.unexpected", f"{self.case}: {what} {reason!r} after {proc.now - ws.t_start:.1f}s")
        ws.abort()
        self.ws = None
        self.active = False
        proc.st["garbage"]["attempts"] += 1
        proc.call_later(proc.rng.uniform(0.05, 0.3), self.start)

    def _timeout(self, ws: WS) -> None:
        if ws is self.ws and not ws.closed:
            self._outcome(ws, f"no answer in {GARBAGE[self.case][4]:g} s")

    def close_final(self) -> None:
        if self.ws is not None and not self.ws.closed:
            self.proc.st["garbage." + self.case]["unfinished at the end"] += 1
            self.ws.abort()
            self.ws = None
            self.active = False


# ---------------------------------------------------------------------------- client processes


def progress_of(proc: Proc) -> dict[str, Any]:
    n = proc.st["normal"]
    return {"sent": n["sent"], "answered": n["answered"], "mismatches": n["mismatches"],
            "unexpected_closes": sum(proc.st["normal_unexpected_close"].values()),
            "open": len(proc.conns), "slow_outcomes": sum(v for k, c in proc.st.items() if k.startswith("slow.")
                                                          for kk, v in c.items() if kk.startswith("outcome")),
            "garbage_attempts": proc.st["garbage"]["attempts"]}


def client_main(role: str, spec: list[Any], port: int, t0: float, seconds: float, grace: float, seed: int,
                churn_mean: float, pipe: Any) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    raise_nofile()
    proc = Proc(port, t0, seconds, grace, seed, f"{role}")
    pay = Payloads(proc.rng)
    clients: list[Any] = []
    if role == "normal":
        clients = [Normal(proc, pay, idx, lapps, churner, churn_mean) for idx, lapps, churner in spec]
    elif role == "slow":
        clients = [Slow(proc, pay, idx, mode) for idx, mode in spec]
    else:
        clients = [Garbage(proc, idx) for idx in spec]
    while time.monotonic() < t0:
        time.sleep(0.01)
    proc.now = time.monotonic()
    for i, c in enumerate(clients):
        if role == "normal":
            c.start()
        else:
            proc.call_later(i * 0.02, c.start)

    def report() -> None:
        try:
            pipe.send(("progress", progress_of(proc)))
        except OSError:
            pass
        proc.call_later(5.0, report)
    proc.call_later(5.0, report)

    if role == "normal":
        def done() -> bool:
            return proc.now >= proc.t_end and not any(c.busy for c in clients)
    elif role == "slow":
        def done() -> bool:
            return proc.now >= proc.t_end
    else:
        def done() -> bool:
            return proc.now >= proc.t_end and not any(c.active for c in clients)
    proc.run(done, proc.deadline)
    proc.st["timing"]["finished_after_end_ms"] = int(max(0.0, proc.now - proc.t_end) * 1000)
    # the end: close what is open (normal clients with a close handshake)
    for c in clients:
        c.close_final()
    proc.timers = [t for t in proc.timers if getattr(t[2], "__name__", "") == "_close_timeout"]
    heapq.heapify(proc.timers)
    proc.run(lambda: not proc.conns, proc.now + 6.0)
    for ws in list(proc.conns):
        proc.st["tcp"]["aborted at the very end"] += 1
        ws.abort()
    result = {"role": role, "st": {k: dict(v) for k, v in proc.st.items()}, "samples": dict(proc.samples),
              "values": {k: v.tobytes() for k, v in proc.values.items()},
              "cpu_s": sum(os.times()[:2])}
    pipe.send(("result", result))
    pipe.close()


# ---------------------------------------------------------------------------- sentinels


class Sentinel:
    """An idle connection that only answers pings; must stay open until the server stops."""

    def __init__(self, proc: Proc, idx: int, path: str) -> None:
        self.proc = proc
        self.idx = idx
        self.path = path
        self.ws: WS | None = None
        self.outcome = ""
        self.echoes = 0

    def start(self) -> None:
        self.proc.want_connect(self)

    def open_connection(self) -> None:
        self.ws = WS(self.proc, self.path, self)

    def on_open(self, ws: WS) -> None:
        self.ping_echo()

    def ping_echo(self) -> None:
        ws = self.ws
        if ws is None or ws.closed:
            return
        if self.path == "/echo":
            ws.proto.send(TEXT, b"sentinel")
        else:
            ws.proto.send(BINARY, cbor2.dumps({"lapps": 1, "method": "login", "params": ["sentinel", "x"]}))
        ws.flush()

    def on_message(self, ws: WS, opcode: int, payload: bytes) -> None:
        self.echoes += 1

    def on_rejected(self, ws: WS, status: int, body: bytes) -> None:
        self.outcome = f"http {status}"

    def on_closed(self, ws: WS, code: int, reason: str) -> None:
        self.outcome = describe_close(ws, code, reason) + (f" ({reason})" if reason else "") + \
            f" after {self.proc.now - ws.t_start:.1f}s"


class Sentinels(threading.Thread):
    def __init__(self, port: int, count: int = 4) -> None:
        super().__init__(daemon=True, name="sentinels")
        now = time.monotonic()
        self.proc = Proc(port, now, 1e9, 0, 1, "sentinels")
        self.items = [Sentinel(self.proc, i, "/echo" if i % 2 == 0 else "/echo_lapps") for i in range(count)]
        self.stop_at = math.inf
        self.lock = threading.Lock()
        self.do_echo = threading.Event()

    def run(self) -> None:
        for s in self.items:
            s.start()

        def until() -> bool:
            if self.do_echo.is_set():
                self.do_echo.clear()
                for s in self.items:
                    s.ping_echo()
            return time.monotonic() > self.stop_at and not self.proc.conns
        self.proc.run(until, math.inf)

    def state(self) -> list[dict[str, Any]]:
        return [{"path": s.path, "open": s.ws is not None and not s.ws.closed,
                 "pings_answered": s.ws.proto.pings if s.ws else 0, "echoes": s.echoes,
                 "outcome": s.outcome} for s in self.items]


# ---------------------------------------------------------------------------- the run


def split(items: list[Any], parts: int) -> list[list[Any]]:
    return [items[i::parts] for i in range(parts)]


def merge_results(results: list[dict[str, Any]]) -> tuple[dict[str, Counter], dict[str, list[str]], dict[str, array]]:
    st: dict[str, Counter] = defaultdict(Counter)
    samples: dict[str, list[str]] = defaultdict(list)
    values: dict[str, array] = defaultdict(lambda: array("d"))
    for r in results:
        for k, c in r["st"].items():
            st[k].update(c)
        for k, s in r["samples"].items():
            samples[k].extend(s[:SAMPLE_LIMIT - len(samples[k])])
        for k, raw in r["values"].items():
            a = array("d")
            a.frombytes(raw)
            values[k].extend(a)
    return st, samples, values


def stats_of(a: Any, scale: float = 1.0, digits: int = 2) -> dict[str, float] | None:
    if not len(a):
        return None
    s = sorted(a)
    return {"n": len(s), "min": round(s[0] * scale, digits), "p50": round(percentile(s, 0.5) * scale, digits),
            "p99": round(percentile(s, 0.99) * scale, digits), "max": round(s[-1] * scale, digits)}


def log_problems(text: str) -> tuple[list[str], list[str], Counter]:
    """ERROR/CRITICAL lines and Traceback blocks; WARNING lines; INFO kinds."""
    problems: list[str] = []
    warnings: list[str] = []
    info = Counter()
    lines = text.splitlines()
    in_tb = False
    for line in lines:
        if " ERROR " in line or " CRITICAL " in line or "Traceback" in line:
            problems.append(line)
            in_tb = "Traceback" in line
            continue
        if in_tb:
            if line.startswith(" ") or not line.startswith("20"):
                problems.append(line)
                continue
            in_tb = False
        if " WARNING " in line:
            warnings.append(line)
        elif " INFO " in line:
            msg = line.split(" INFO ", 1)[1]
            key = " ".join(w for w in msg.split()[:3] if not any(ch.isdigit() for ch in w))
            info[key] += 1
    return problems, warnings, info


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smoke check: ~20 s, 200 clients, 10 slow, 10 garbage")
    ap.add_argument("--seconds", type=float, help="length of the load (default 120; quick 20)")
    ap.add_argument("--clients", type=int, help="normal clients (default 2000; quick 200)")
    ap.add_argument("--slow", type=int, help="slow readers (default 50; quick 10)")
    ap.add_argument("--garbage", type=int, help="garbage senders (default 50; quick 10)")
    ap.add_argument("--workers", type=int, default=2, help="server workers (default 2)")
    ap.add_argument("--client-procs", type=int, default=0,
                    help="processes for the normal clients (default: one per 500, at least 2)")
    ap.add_argument("--churn", type=float, default=0.1, help="fraction of normal clients that reconnect now and then")
    ap.add_argument("--churn-every", type=float,
                    help="mean seconds between a churner's reconnects (default 10; quick 4)")
    ap.add_argument("--lapps-share", type=float, default=0.4, help="fraction of normal clients on /echo_lapps")
    ap.add_argument("--warmup", type=float, help="seconds before the start RSS snapshot (default 10; quick 4)")
    ap.add_argument("--grace", type=float, default=10.0, help="seconds after the end to wait for outstanding replies")
    ap.add_argument("--seed", type=int, default=None, help="random seed (default: from the clock)")
    ap.add_argument("--output", type=Path, default=RESULTS, help="JSON report (default soak/results.json)")
    ap.add_argument("--server-log-level", help="the server's --log-level (default: its own, INFO)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder (config, server log)")
    args = ap.parse_args(argv)
    q = args.quick
    quick_defaults(args, seconds=(120.0, 20.0), clients=(2000, 200), slow=(50, 10), garbage=(50, 10),
                   churn_every=(10.0, 4.0), warmup=(10.0, 4.0))
    if args.seconds < 8:
        ap.error("--seconds must be at least 8")
    args.warmup = min(args.warmup, args.seconds / 3)
    procs_n = args.client_procs or max(2, math.ceil(args.clients / 500))
    seed = args.seed if args.seed is not None else int(time.time())
    soft, hard = raise_nofile()
    need = math.ceil(args.clients / procs_n) + args.slow + args.garbage + 64
    if need > soft:
        ap.error(f"about {need} sockets per client process is over `ulimit -n` ({soft}): raise --client-procs")
    if args.clients / args.workers + args.slow + args.garbage + 64 > soft:
        ap.error(f"{args.clients} clients over {args.workers} workers is over `ulimit -n` ({soft})")
    meta: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %z"), "host": platform.node(), "cpus": os.cpu_count(),
        "python": platform.python_version(), "load_avg_before": os.getloadavg(), "nofile": [soft, hard],
        "quick": q, "seconds": args.seconds, "clients": args.clients, "slow": args.slow, "garbage": args.garbage,
        "workers": args.workers, "client_procs": procs_n, "churn": args.churn, "churn_every_s": args.churn_every,
        "lapps_share": args.lapps_share, "warmup_s": args.warmup, "grace_s": args.grace, "seed": seed,
        "limits": {"max_outbound_buffer": MAX_OUTBOUND, "ping_interval": PING_INTERVAL,
                   "ping_timeout": PING_TIMEOUT, "handshake_timeout": HANDSHAKE_TIMEOUT},
    }
    meta["commit"] = git_commit()
    log(f"LAppS soak: {args.seconds:g} s, {args.clients} normal clients ({procs_n} processes), "
        f"{args.slow} slow readers, {args.garbage} garbage senders, {args.workers} workers, "
        f"{os.cpu_count()} cores, ulimit -n {soft}, seed {seed}{' [quick]' if q else ''}")

    root = Path(tempfile.mkdtemp(prefix="lapps-soak-"))
    server = start_server(root, args.workers, args.server_log_level)
    report: dict[str, Any] = {"meta": meta}
    children: list[Any] = []
    results: list[dict[str, Any]] = []
    sentinels: Sentinels | None = None
    snaps: dict[str, Any] = {}
    samples_rss: list[dict[str, Any]] = []
    stop_info: dict[str, Any] = {}
    try:
        server.wait_ready()
        log(f"server ready: pid {server.pid}, port {server.port}, workers "
            f"{sorted(server.initial)}, log {server.log_path}")
        # the LAppS service answers as the clients expect (a smoke check of the checker)
        with ws_connect(f"ws://{HOST}:{server.port}/echo_lapps") as c:
            key = c.request("login", ["probe", "x"])[0]
            probe = [1, "é€😀", [1, -2, 2**40], {"n": 1, "s": "x", "f": 1.5, "b": True, "l": [1, "x", [2, [3]]]}]
            got = c.request("echo", [key, *probe])
            if got != probe:
                raise RuntimeError(f"LAppS echo answers {got!r} to {probe!r}: the checker would be wrong")
        sentinels = Sentinels(server.port)
        sentinels.start()

        rng = random.Random(seed)
        normal = [(i, rng.random() < args.lapps_share, rng.random() < args.churn) for i in range(args.clients)]
        slow = [(i, SLOW_PATTERN[i % len(SLOW_PATTERN)]) for i in range(args.slow)]
        specs: list[tuple[str, list[Any]]] = [("normal", part) for part in split(normal, procs_n)]
        if slow:
            specs.append(("slow", slow))
        if args.garbage:
            specs.append(("garbage", list(range(args.garbage))))
        t0 = time.monotonic() + 1.0
        pipes = []
        for n, (role, spec) in enumerate(specs):
            parent_end, child_end = MP.Pipe(duplex=False)
            p = MP.Process(target=client_main, name=f"soak-{role}-{n}",
                           args=(role, spec, server.port, t0, args.seconds, args.grace, seed * 100 + n,
                                 args.churn_every, child_end))
            p.start()
            child_end.close()
            children.append(p)
            pipes.append(parent_end)
        progress: dict[int, dict[str, Any]] = {}
        open_pipes = {pipe: i for i, pipe in enumerate(pipes)}
        next_sample = t0
        next_print = t0 + 10
        warm_done = end_done = False
        hard_deadline = t0 + args.seconds + args.grace + 60
        while open_pipes and time.monotonic() < hard_deadline:
            for pipe in mpc.wait(list(open_pipes), timeout=0.5):
                i = open_pipes[pipe]
                try:
                    kind, value = pipe.recv()
                except (EOFError, OSError):
                    del open_pipes[pipe]
                    continue
                if kind == "progress":
                    progress[i] = value
                else:
                    results.append(value)
                    del open_pipes[pipe]
            now = time.monotonic()
            elapsed = now - t0
            server.check(elapsed)
            if now >= next_sample:
                next_sample += 5.0
                snap = server.snapshot()
                samples_rss.append({"t": round(elapsed, 1), **{k: v["rss_mib"] for k, v in snap.items()}})
            if not warm_done and elapsed >= args.warmup:
                warm_done = True
                snaps["start"] = server.snapshot()
                snaps["start"]["_t"] = round(elapsed, 1)
            if not end_done and elapsed >= args.seconds - 2.5:   # just before the clients stop sending
                end_done = True
                snaps["end"] = server.snapshot()
                snaps["end"]["_t"] = round(elapsed, 1)
            if now >= next_print and elapsed < args.seconds + args.grace:
                next_print += 10.0
                tot = Counter()
                for v in progress.values():
                    tot.update(v)
                rss = " ".join(f"{k.replace('worker ', 'w')} {v['rss_mib']:.0f}"
                               for k, v in server.snapshot().items())
                log(f"  t={elapsed:5.0f}s  sent {tot['sent']:,}  answered {tot['answered']:,}  "
                    f"mismatches {tot['mismatches']}  unexpected closes {tot['unexpected_closes']}  "
                    f"client sockets {tot['open']}  slow outcomes {tot['slow_outcomes']}  "
                    f"garbage attempts {tot['garbage_attempts']}  RSS MiB: {rss}")
        for p in reap(children):
            log(f"  client process {p.name} was still running: killed")
        if len(results) != len(specs):
            log(f"  WARNING: {len(specs) - len(results)} client process(es) sent no result")
        if "end" not in snaps:
            snaps["end"] = server.snapshot()
        time.sleep(3.0)      # let the workers release what the clients left
        server.check(time.monotonic() - t0)
        snaps["after_clients"] = server.snapshot()
        snaps["after_clients"]["_t"] = round(time.monotonic() - t0, 1)
        sentinels.do_echo.set()
        time.sleep(1.0)
        sentinel_before = sentinels.state()
        sentinels.stop_at = time.monotonic()
        log("stopping the server (SIGTERM)")
        stop_info = server.stop()
        sentinels.join(10)
        sentinel_after = sentinels.state()
    except BaseException:
        for p in children:
            if p.is_alive():
                p.kill()
        if not stop_info:
            try:
                stop_info = server.stop()
            except Exception as e:   # noqa: BLE001
                log(f"  stopping the server failed: {e}")
        print(f"server log and config kept in {root}", file=sys.stderr)
        raise

    # ------------------------------------------------------------------ the report
    st, samples, values = merge_results(results)
    text = server.log()
    problems, warnings, info = log_problems(text)
    n = st["normal"]
    lost = n["sent"] - n["answered"]
    rtt = stats_of(values.get("rtt", []), 1000, 1)
    normal_report = {
        "clients": args.clients, "connections": n["connections"], "sent": n["sent"], "answered": n["answered"],
        "lost": lost, "lost_when_dropped": n["lost_on_drop"], "answered_after_end": n["answered_late"],
        "mismatches": n["mismatches"], "unsolicited": n["unsolicited"], "bytes_sent": n["bytes_sent"],
        "by_kind": {k: {"sent": n["sent." + k], "answered": n["answered." + k]}
                    for k in ("raw_text", "raw_binary", "lapps_echo", "lapps_login")},
        "rtt_ms": rtt, "unexpected_closes": dict(st["normal_unexpected_close"]),
        "rejected": dict(st["normal_rejected"]), "final_close": dict(st["normal_final"]),
        "churn": dict(st["churn"]), "samples": {k: v for k, v in samples.items() if k.startswith("normal")},
    }
    slow_report = {}
    for mode in SLOW_MODES:
        c = st.get("slow." + mode)
        if not c:
            continue
        slow_report[mode] = {"counts": dict(c),
                             "lifetime_s": stats_of(values.get(f"slow.{mode}.lifetime_s", []), 1, 1)}
        if mode == "stall":
            slow_report[mode]["drop_after_stall_s"] = stats_of(values.get("slow.stall.drop_after_stall_s", []), 1, 1)
            slow_report[mode]["sent_before_stall_mib"] = stats_of(values.get("slow.stall.sent_mib", []), 1, 2)
    slow_report["samples"] = {k: v for k, v in samples.items() if k.startswith("slow")}
    garbage_report: dict[str, Any] = {"attempts": st["garbage"]["attempts"],
                                      "connections": st["garbage"]["connections"],
                                      "unexpected": st["garbage"]["unexpected"], "cases": {}}
    for case, (_, _, _, expect, _) in GARBAGE.items():
        c = st.get("garbage." + case)
        if not c:
            continue
        a = values.get("garbage.answer_s." + case, [])
        garbage_report["cases"][case] = {"outcomes": dict(c), "expected": sorted(expect) if expect else "any reaction",
                                         "answer_s": stats_of(a, 1, 2)}
    garbage_report["lapps_answers"] = dict(st["garbage_messages"])
    garbage_report["samples"] = samples.get("garbage.unexpected", [])

    def codes(counter: Counter) -> dict[str, int]:
        out: Counter = Counter()
        for k, v in counter.items():
            if k.startswith("close ") or k.startswith("http "):
                out[k.split(" (")[0].split(":")[0]] += v
            elif k.startswith("outcome: close ") or k.startswith("outcome: http "):
                out[k[9:].split(" (")[0]] += v
            elif "tcp close" in k:
                out["TCP closed, no close frame / no answer"] += v
        return dict(out)
    by_category = {
        "normal (unexpected)": codes(st["normal_unexpected_close"]) | codes(st["normal_rejected"]),
        "normal (our final close)": codes(st["normal_final"]),
        "normal (churn close)": codes(Counter({k.replace("our close answered: ", ""): v
                                               for k, v in st["churn"].items()})),
        "slow readers": codes(sum((st.get("slow." + m, Counter()) for m in SLOW_MODES), Counter())),
        "garbage": codes(sum((st.get("garbage." + c, Counter()) for c in GARBAGE), Counter())),
        "sentinels (server stop)": dict(Counter(s["outcome"].split(" (")[0].split(" after")[0]
                                                for s in sentinel_after)),
    }
    connections = {"tcp connects": st["tcp"]["connects"], "upgrades": st["tcp"]["upgrades"],
                   "normal": n["connections"], "slow": sum(st.get("slow." + m, Counter())["connections"]
                                                          for m in SLOW_MODES),
                   "garbage": st["garbage"]["connections"], "sentinels": len(sentinel_after)}
    rss = {}
    for phase in ("start", "end", "after_clients"):
        s = snaps.get(phase, {})
        rss[phase] = {k: v for k, v in s.items()}
    growth = {}
    for name in snaps.get("start", {}):
        if name.startswith("_"):
            continue
        a, b = snaps["start"].get(name), snaps.get("end", {}).get(name)
        c = snaps.get("after_clients", {}).get(name)
        if a and b:
            growth[name] = {"start_mib": a["rss_mib"], "end_mib": b["rss_mib"],
                            "after_clients_mib": c["rss_mib"] if c else None,
                            "end_minus_start_mib": round(b["rss_mib"] - a["rss_mib"], 2)}
    after = snaps.get("after_clients", {})
    leftover = {k: v.get("tcp_established") for k, v in after.items() if k.startswith("worker")}
    sentinels_open = sum(1 for s in sentinel_before if s["open"])
    stalled_open = max(values.get("slow.stall.open_at_end_stalled_s", [0.0]) or [0.0])
    stall_drops = values.get("slow.stall.drop_after_stall_s", [])
    pause_c = st.get("slow.pause", Counter())
    pause_bad = {k: v for k, v in pause_c.items() if k.startswith("outcome: ") and "still open" not in k}
    trickle_life = max(values.get("slow.trickle.lifetime_s", [0.0]) or [0.0])
    slow_ok = stalled_open < 15 and max(stall_drops or [0.0]) < 15 and not pause_bad and trickle_life < 40
    slow_detail = (f"stall: dropped {max(stall_drops or [0.0]):.1f} s after stalling at most, longest still open "
                   f"{stalled_open:.1f} s; pause: {pause_bad or 'none closed'}; trickle: longest life "
                   f"{trickle_life:.1f} s")
    sentinel_ok = all(s["outcome"].startswith("close 1001") for s in sentinel_after) and \
        all(s["open"] for s in sentinel_before)
    checks = {
        "no message lost": (lost == 0, f"sent {n['sent']:,}, answered {n['answered']:,}, lost {lost:,}", True),
        "every reply matches, in order": (n["mismatches"] == 0 and n["unsolicited"] == 0,
                                          f"{n['mismatches']} mismatches, {n['unsolicited']} unsolicited", True),
        "no normal client closed by the server": (not st["normal_unexpected_close"] and not st["normal_rejected"],
                                                  f"{dict(st['normal_unexpected_close'])} "
                                                  f"{dict(st['normal_rejected'])}", True),
        "no server process died": (not server.events,
                                   "; ".join(server.events) or "none", True),
        "no ERROR/CRITICAL/Traceback in the log": (not problems, f"{len(problems)} line(s)", True),
        "clean stop (SIGTERM, exit 0)": (stop_info.get("exit_code") == 0 and not stop_info.get("sigkill")
                                         and not stop_info.get("outlived_master"),
                                         f"exit {stop_info.get('exit_code')} in {stop_info.get('stop_s')} s, "
                                         f"SIGKILL {stop_info.get('sigkill')}", True),
        "sentinels kept open, closed 1001 at stop": (sentinel_ok, "; ".join(
            f"{s['path']} {s['outcome']} pings {s['pings_answered']}" for s in sentinel_after), False),
        "garbage answered as documented": (garbage_report["unexpected"] == 0,
                                           f"{garbage_report['unexpected']} unexpected of {garbage_report['attempts']}",
                                           False),
        "slow readers handled (stalled ones dropped within 15 s, pause ones kept, trickle ones ended)": (
            slow_ok, slow_detail, False),
        "all client processes reported": (len(results) == len(specs), f"{len(results)} of {len(specs)}", True),
        "no worker socket left after the clients": (
            sum(v or 0 for v in leftover.values()) <= sentinels_open,
            f"established TCP sockets per worker {leftover}, {sentinels_open} of them the sentinels'", False),
    }
    report.update({
        "ok": all(ok for ok, _, fatal in checks.values() if fatal),
        "checks": {k: {"ok": ok, "detail": d, "fatal": fatal} for k, (ok, d, fatal) in checks.items()},
        "normal": normal_report, "slow": slow_report, "garbage": garbage_report,
        "close_codes_and_statuses": by_category, "connections": connections,
        "server": {"pid": server.pid, "port": server.port, "rss": rss, "rss_growth": growth,
                   "rss_samples": samples_rss, "process_events": server.events, "stop": stop_info,
                   "log_errors": problems[:200], "log_error_count": len(problems),
                   "log_warning_count": len(warnings), "log_warnings": warnings[:100],
                   "log_kinds": dict(info.most_common(30)), "log_lines": text.count("\n")},
        "sentinels": {"before_stop": sentinel_before, "after_stop": sentinel_after},
        "client_cpu_s": round(sum(r["cpu_s"] for r in results), 1),
    })
    print_report(report)
    save_results(args.output, report)
    if args.keep or not report["ok"]:
        log(f"server log and config kept in {root}")
    else:
        shutil.rmtree(root, ignore_errors=True)
    return 0 if report["ok"] else 1


def print_report(r: dict[str, Any]) -> None:
    m, n, srv = r["meta"], r["normal"], r["server"]
    log("")
    log(f"== LAppS soak: {m['seconds']:g} s, {m['workers']} workers, {m['cpus']} cores, seed {m['seed']}")
    log(f"normal clients: {n['clients']} ({n['connections']} connections)  sent {n['sent']:,}  answered "
        f"{n['answered']:,}  LOST {n['lost']:,}  mismatches {n['mismatches']}  late {n['answered_after_end']}")
    for k, v in n["by_kind"].items():
        log(f"  {k:12} sent {v['sent']:,}  answered {v['answered']:,}")
    if n["rtt_ms"]:
        t = n["rtt_ms"]
        log(f"  RTT ms: p50 {t['p50']}  p99 {t['p99']}  max {t['max']}")
    log(f"  churn: {n['churn']}")
    log(f"  final close: {n['final_close']}")
    if n["unexpected_closes"] or n["rejected"]:
        log(f"  UNEXPECTED closes: {n['unexpected_closes']}  rejected: {n['rejected']}")
    for k, v in n["samples"].items():
        for s in v[:5]:
            log(f"    {k}: {s}")
    log("slow readers:")
    for mode, v in r["slow"].items():
        if mode == "samples":
            continue
        outcomes = {k[9:]: c for k, c in v["counts"].items() if k.startswith("outcome: ")}
        other = {k: c for k, c in v["counts"].items() if not k.startswith("outcome: ")}
        log(f"  {mode:8} {outcomes}  {other}")
        if v.get("drop_after_stall_s"):
            log(f"           dropped after the stall (s): {v['drop_after_stall_s']}")
        if v.get("lifetime_s"):
            log(f"           connection lifetime (s): {v['lifetime_s']}")
    g = r["garbage"]
    log(f"garbage: {g['attempts']} attempts, {g['unexpected']} unexpected")
    for case, v in g["cases"].items():
        bad = "" if v["expected"] == "any reaction" or set(v["outcomes"]) <= set(v["expected"]) | \
            {"unfinished at the end"} else "   <-- expected " + ", ".join(v["expected"])
        log(f"  {case:32} {v['outcomes']}{bad}")
    if g["lapps_answers"]:
        log(f"  LAppS answers to garbage: {g['lapps_answers']}")
    log("close codes / HTTP statuses by category:")
    for k, v in r["close_codes_and_statuses"].items():
        log(f"  {k:26} {v}")
    log(f"connections: {r['connections']}")
    log("server processes (RSS MiB start -> end -> after the clients left; fds; established TCP):")
    for name, v in srv["rss_growth"].items():
        a = srv["rss"]["after_clients"].get(name, {})
        s = srv["rss"]["start"].get(name, {})
        e = srv["rss"]["end"].get(name, {})
        log(f"  {name:10} {v['start_mib']:7.1f} -> {v['end_mib']:7.1f} -> {v['after_clients_mib'] or 0:7.1f}   "
            f"fds {s.get('fds')} -> {e.get('fds')} -> {a.get('fds')}   tcp {s.get('tcp_established')} -> "
            f"{e.get('tcp_established')} -> {a.get('tcp_established')}")
    log(f"server process events: {srv['process_events'] or 'none'}")
    log(f"server stop: {srv['stop']}")
    log(f"server log: {srv['log_lines']} lines, {srv['log_warning_count']} WARNING, {srv['log_error_count']} "
        "ERROR/CRITICAL/Traceback")
    for line in srv["log_warnings"][:10]:
        log(f"  | {line[:300]}")
    for line in srv["log_errors"][:40]:
        log(f"  | {line[:300]}")
    if srv["log_error_count"] > 40:
        log(f"  | ... {srv['log_error_count'] - 40} more (see results.json)")
    log(f"sentinels: {r['sentinels']['after_stop']}")
    log("checks:")
    for k, v in r["checks"].items():
        mark = "ok  " if v["ok"] else ("FAIL" if v["fatal"] else "warn")
        log(f"  [{mark}] {k}: {v['detail']}")
    log("RESULT: " + ("PASS" if r["ok"] else "FAIL"))


if __name__ == "__main__":
    sys.exit(main())
