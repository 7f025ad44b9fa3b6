"""End-to-end server benchmark: echo round trips (raw vs LAppS protocol) and broadcast fan-out.

The script starts the real server (`python -m lapps`) on 127.0.0.1 with its own config in a
temporary folder, drives it from separate client processes over real sockets, stops it
(process group: SIGTERM to the master, then SIGKILL to the group), and prints a table; the
figures also go to `bench/results/lapps.json`.

1. Echo, closed loop (the original LAppS benchmark): N connections (default 80) each send a
   277-byte message and wait for its echo before sending the next, for D seconds (default 5)
   after a 1 s warm-up. Four cases alternate, 3 rounds each, all on one server: raw echo
   (`/echo`, text frames, ws://); the same raw echo over wss:// (the server's TLS port;
   certificates from `make certs` in the temporary folder, the client verifies them);
   the raw echo with permessage-deflate (`/echo_deflate`, a service with
   `permessage_deflate = true`; the client offers `client_no_context_takeover` and sends a
   277-byte JSON text compressed, the server inflates it and deflates the echo); and the
   LAppS-protocol echo (`/lapps_echo`, a CBOR request whose param is a 277-byte string;
   every response is decoded and checked). The load comes from K client processes
   (default 2), each driving N/K connections with `selectors` and the project's Sans-I/O
   `ClientProtocol` (non-blocking `ssl` sockets for wss://, a bench-only subclass for
   deflate). Per round: round trips per second, the server's CPU seconds in the
   window (master and workers, psutil), round trips per server-CPU-second, RTT p50/p99,
   the clients' own CPU and what the rest of the machine used meanwhile (noise); each
   variant's ratio to the plain raw echo of the same round, and the median of those.
2. Broadcast fan-out: S subscriber connections (default 10000, spread over client processes
   of at most 2500 each) to `/fanout` on 4 workers, each subscribed to bcast channel 1000;
   a trigger connection calls `publish`, which does one `bcast:send` (OON on cid 5). For R
   rounds (default 5, after one warm-up publish): subscribers reached, the median and the
   last delivery after the trigger's send (each client process stamps each arrival with
   time.time() right after the recv; one machine, one clock), deliveries per second. The
   fan-out server runs under `taskset -c 0` and the subscribers on core 1 (`--no-fanout-pin`
   leaves both to the scheduler).

Client and server share this machine's cores (2 here, shared with other work), so read the
ratios and the medians, not single absolute figures. `--quick` is a smoke run (20 echo
clients, 2 s, 1 round; 1000 subscribers, 1 round).

    python bench/bench_lapps.py [--quick] [--clients 80] [--client-procs 2] [--seconds 5]
                                [--rounds 3] [--subscribers 10000] [--fanout-rounds 5]
"""

from __future__ import annotations

import argparse
import errno
import math
import multiprocessing as mp
import os
import platform
import selectors
import socket
import ssl
import statistics
import subprocess
import sys
import time
import zlib
from array import array
from pathlib import Path
from typing import Any, Callable

import cbor2
import psutil

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from harness import (HOST, LappsServer, free_port, git_commit, log, percentile, raise_nofile,  # noqa: E402
                     quick_defaults, reap, save_results, scratch, services_folder, tree_cpu)
from lapps.client import connect as ws_connect  # noqa: E402
from lapps.ws.client import EV_CLOSED, EV_OPEN, EV_REJECTED, ClientProtocol, State  # noqa: E402
from lapps.ws.client import _BadResponse  # noqa: E402  (DeflateClientProtocol's 101 check)
from lapps.ws.deflate import parse_extensions  # noqa: E402
from lapps.ws.frames import frame_header, mask  # noqa: E402

TEXT, BINARY = 1, 2
MSG_SIZE = 277                        # bytes per echo message (the original LAppS benchmark)
RAW_PAYLOAD = (b"LAppS-bench " * 24)[:MSG_SIZE]
LAPPS_PARAM = RAW_PAYLOAD.decode("ascii")
LAPPS_REQUEST = cbor2.dumps({"lapps": 1, "method": "echo", "params": [LAPPS_PARAM]})
# The permessage-deflate echo sends a realistic compressible text (one market-data quote as
# JSON, 277 bytes, ~186 bytes deflated on its own) rather than RAW_PAYLOAD, which is one word
# repeated and would deflate to almost nothing.
DEFLATE_PAYLOAD = (b'{"type":"quote","symbol":"ACME","exchange":"NASDAQ-GS","seq":48213,'
                   b'"time":"2026-11-25T02:47:52.123Z","bid":{"price":101.25,"size":300},'
                   b'"ask":{"price":101.27,"size":200},"last":{"price":101.26,"size":100},'
                   b'"open":100.5,"high":101.9,"low":99.87,"volume":184321100,"status":"open"}')
assert len(DEFLATE_PAYLOAD) == MSG_SIZE
DEFLATE_OFFER = "permessage-deflate; client_no_context_takeover"
DEFLATE_TAIL = b"\x00\x00\xff\xff"   # RFC 7692 §7.2.1: stripped by the sender, re-added by the receiver
TLS_HOSTNAME = "localhost"            # the name `make certs` puts in the server certificate
# Echo cases, in the order each round runs them: the plain raw echo, its two variants on the
# same server (wss:// on the TLS port; permessage-deflate on /echo_deflate), the LAppS echo.
ECHO_MODES = ("raw", "wss", "deflate", "lapps")
ECHO_PATHS = {"raw": "/echo", "wss": "/echo", "deflate": "/echo_deflate", "lapps": "/lapps_echo"}
ECHO_NAMES = {"raw": "raw echo (text)", "wss": "raw echo over wss:// (TLS)",
              "deflate": "raw echo, permessage-deflate (JSON text)", "lapps": "LAppS echo (CBOR)"}
RATIO_NAMES = {"wss": "wss / ws (raw echo: the TLS cost)", "deflate": "deflate / raw",
               "lapps": "LAppS / raw"}
WOULD_BLOCK = (BlockingIOError, InterruptedError, ssl.SSLWantReadError, ssl.SSLWantWriteError)
SUBSCRIBE_REQUEST = cbor2.dumps({"lapps": 1, "method": "subscribe"})
FANOUT_CHANNEL_CID = 5
MAX_PER_PROCESS = 2500                # subscriber connections per client process at most
HANDSHAKES_IN_FLIGHT = 200            # per client process, while connecting
RESULTS = REPO / "bench" / "results" / "lapps.json"
READ, WRITE = selectors.EVENT_READ, selectors.EVENT_WRITE
MP = mp.get_context("fork")


# ---------------------------------------------------------------------------- the server


CONFIG = """\
# written by bench/bench_lapps.py
[server]
ip = "127.0.0.1"
port = {port}
workers = {workers}
listeners = 2
shutdown_timeout = 3
services_dir = "{services_dir}"
{tls}
[limits]
handshake_timeout = 30

[admin]
port = 0

[services.echo]
protocol = "raw"
request_target = "/echo"

[services.echo_deflate]
protocol = "raw"
request_target = "/echo_deflate"
permessage_deflate = true

[services.lapps_echo]
protocol = "lapps"
request_target = "/lapps_echo"

[services.fanout]
protocol = "lapps"
request_target = "/fanout"
preload = ["time"]
"""

# With certificates: [server] port serves wss:// and an endpoint beside it serves ws://, so
# one server (same processes, same workers) answers both and only the client differs.
TLS_CONFIG = """
[server.tls]
enabled = true
cert = "{cert}"
key = "{key}"

[[server.endpoints]]
port = {ws_port}
ip = "127.0.0.1"
tls = false
"""


def make_certs(folder: Path) -> Path:
    """`make -s certs CERTS=<folder>`: a development CA (`ca.crt`) and a `localhost`
    certificate signed by it; the folder."""
    try:
        done = subprocess.run(["make", "-s", "certs", f"CERTS={folder}"], cwd=REPO, capture_output=True,
                              text=True, timeout=120)
    except (OSError, subprocess.SubprocessError) as e:
        raise RuntimeError(f"make certs failed: {e}") from None
    if done.returncode != 0 or not (folder / "localhost.crt").is_file():
        raise RuntimeError(f"make certs failed ({done.returncode}): {(done.stderr or done.stdout)[-2000:]}")
    return folder


def client_tls_context(certs: Path) -> ssl.SSLContext:
    """What a careful client uses: verify the server against the development CA."""
    return ssl.create_default_context(cafile=str(certs / "ca.crt"))


class Server(LappsServer):
    """The bench's `python -m lapps` (see `start_server`): its processes as they were when it
    became ready, their CPU, and a check that none of them died."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.procs: list[psutil.Process] = []   # the master and its children once ready
        self.tls_port: int | None = None         # wss://, when started with certificates

    def wait_ready(self, timeout: float = 30.0, path: str | None = "/echo") -> float:
        """Every worker logged 'serving' and an upgrade to /echo echoes."""
        took = super().wait_ready(timeout, path)
        self.procs = self.processes()
        return took

    def worker_pids(self) -> list[int]:
        return [p.pid for p in self.procs[1:]]

    def cpu_seconds(self) -> float:
        """User + system CPU seconds of the master and its children so far."""
        return tree_cpu(self.procs)

    def check_alive(self) -> None:
        """Raise when the master or a worker we started with has gone (crash, respawn)."""
        if not self.running():
            raise RuntimeError(f"server exited with {self.proc.returncode}; log:\n{self.log()[-4000:]}")
        gone = [p.pid for p in self.procs if not p.is_running()]
        if gone:
            raise RuntimeError(f"server processes {gone} died during the run; log:\n{self.log()[-4000:]}")

    def stop(self, timeout: float = 10.0) -> dict[str, Any]:
        """The harness's stop, plus the log's warnings and errors (the first five printed)."""
        result = super().stop(timeout)
        if result["sigkill"]:
            log(f"  server did not stop within {timeout:g} s of SIGTERM: SIGKILL")
        problems = self.log_problems()
        for line in problems[:5]:
            log(f"  server log: {line[:200]}")
        if len(problems) > 5:
            log(f"  server log: ... {len(problems) - 5} more warning/error lines")
        return {**result, "log_problems": problems[:20], "log_problem_count": len(problems)}


def start_server(root: Path, workers: int, certs: Path | None = None, prefix: list[str] | None = None) -> Server:
    """One `python -m lapps` in its own session with the bench config under `root`.

    `port` is the ws:// port. With `certs` (a `make certs` folder) the same server also
    serves wss:// on `tls_port` ([server] port with [server.tls]; `port` is then an endpoint).
    """
    services = root / "services"
    if not services.exists():
        services_folder(services, {name: REPO / "bench" / "services" / name
                                   for name in ("echo_deflate", "lapps_echo", "fanout")})
    port = free_port()
    tls_port: int | None = None
    tls = ""
    if certs is not None:
        while tls_port in (None, port):
            tls_port = free_port()
        tls = TLS_CONFIG.format(cert=certs / "localhost.crt", key=certs / "localhost.key", ws_port=port)
    main_port = tls_port or port
    config = root / f"lapps-{port}.toml"
    config.write_text(CONFIG.format(port=main_port, workers=workers, services_dir=services, tls=tls))
    server = Server.start(config, main_port, root / f"server-{port}.log", workers, tied=True, prefix=prefix or ())
    server.port, server.tls_port = port, tls_port   # the probe and the clients use ws://
    return server


def _frame_size(buf: bytearray) -> tuple[int, int] | None:
    """(header length with the mask key, payload length) of the frame at the start of
    `buf`, or None while its header is incomplete."""
    n = len(buf)
    if n < 2:
        return None
    b1 = buf[1]
    ln = b1 & 0x7F
    hlen = 2
    if ln == 126:
        if n < 4:
            return None
        ln = int.from_bytes(buf[2:4], "big")
        hlen = 4
    elif ln == 127:
        if n < 10:
            return None
        ln = int.from_bytes(buf[2:10], "big")
        hlen = 10
    return hlen + (4 if b1 & 0x80 else 0), ln


_deflater: Any = None   # one per client process (created after the fork)


class DeflateClientProtocol(ClientProtocol):
    """`ClientProtocol` plus the smallest permessage-deflate (RFC 7692) the benchmark needs.

    `ClientProtocol` offers no extension, refuses a 101 that names one and fails any frame
    with RSV1 (1002), so this subclass, used only by the bench: offers `permessage-deflate;
    client_no_context_takeover`; accepts a 101 whose `Sec-WebSocket-Extensions` is that
    extension with parameters it understands (the base class checks the rest); sends each
    whole data message compressed (RSV1, raw DEFLATE, the trailing `00 00 ff ff` stripped), by
    one compressor per process with a full flush after each message, so no message refers to
    an earlier one (what client_no_context_takeover promises); and inflates the server's
    compressed messages (whole, unfragmented ones: LAppS does not fragment a 277-byte echo)
    with one inflater per connection, which also reads a server that keeps its context.
    Frames without RSV1 (uncompressed messages under 128 bytes, control frames) go to the
    base class one at a time.
    """

    __slots__ = ("agreed", "compressed_in", "compressed_in_bytes", "_inflater")

    def __init__(self, host: str, path: str) -> None:
        super().__init__(host, path, extra_headers=[("Sec-WebSocket-Extensions", DEFLATE_OFFER)])
        self.agreed: str | None = None      # the server's Sec-WebSocket-Extensions answer
        self.compressed_in = 0               # compressed messages received
        self.compressed_in_bytes = 0         # their payload bytes on the wire
        self._inflater: Any = None

    def _check_101(self) -> str | None:
        answers = [v for k, v in self.headers if k == "sec-websocket-extensions"]
        if len(answers) != 1:
            raise _BadResponse(f"expected one permessage-deflate answer, got {answers!r}")
        offers = parse_extensions(answers)
        if len(offers) != 1 or offers[0] is None or offers[0][0] != "permessage-deflate":
            raise _BadResponse(f"server chose extension {answers[0]!r}, not the permessage-deflate offered")
        for name, value in offers[0][1]:
            if name not in ("server_no_context_takeover", "client_no_context_takeover", "server_max_window_bits"):
                raise _BadResponse(f"permessage-deflate parameter {name!r} not understood")
        headers = self.headers
        self.headers = [(k, v) for k, v in headers if k != "sec-websocket-extensions"]
        try:
            chosen = super()._check_101()
        finally:
            self.headers = headers
        self.agreed = answers[0]
        return chosen

    def _parse(self) -> None:
        buf = self._buf
        while len(buf) >= 2 and self.state != State.CLOSED:
            size = _frame_size(buf)
            complete = size is not None and len(buf) >= size[0] + size[1]
            b0 = buf[0]
            if not b0 & 0x40:
                if not complete:
                    return super()._parse()   # checks the header, waits for the rest
                # exactly this frame to the base class: what follows may be compressed
                one = bytearray(buf[:size[0] + size[1]])
                del buf[:size[0] + size[1]]
                self._buf = one
                try:
                    super()._parse()
                finally:
                    self._buf = buf
                if self.state == State.CLOSED:
                    buf.clear()
                continue
            opcode = b0 & 0x0F
            if b0 & 0x30 or not b0 & 0x80 or (opcode != TEXT and opcode != BINARY) or buf[1] & 0x80 \
                    or self.agreed is None:
                return self._fail(1002, "bench client: RSV1 only on whole unmasked data frames")
            if not complete:
                return
            hlen, ln = size
            payload = bytes(buf[hlen:hlen + ln])
            del buf[:hlen + ln]
            d = self._inflater
            if d is None:
                d = self._inflater = zlib.decompressobj(-15)
            try:
                message = d.decompress(payload + DEFLATE_TAIL)
                if opcode == TEXT:
                    message.decode("utf-8")
            except (zlib.error, UnicodeDecodeError) as e:
                return self._fail(1007, f"bench client: bad compressed message: {e}")
            self.compressed_in += 1
            self.compressed_in_bytes += ln
            self.events.append((opcode, message))

    def send(self, opcode: int, payload: bytes | bytearray | memoryview, fin: bool = True) -> bool:
        if not fin or opcode not in (TEXT, BINARY) or self.state != State.OPEN:
            return super().send(opcode, payload, fin)
        global _deflater
        c = _deflater
        if c is None:
            c = _deflater = zlib.compressobj(6, zlib.DEFLATED, -15)
        data = c.compress(payload) + c.flush(zlib.Z_FULL_FLUSH)
        data = data[:-4]   # always the empty stored block 00 00 ff ff after a full flush
        key = self._random(4)
        out = self.out
        out += frame_header(opcode, len(data), True, rsv1=True, masked=True)
        out += key
        out += mask(data, key)
        return True


class Conn:
    __slots__ = ("sock", "proto", "ready", "dead", "want_write", "sent_at", "last_seq", "tls_state")

    def __init__(self, sock: socket.socket, proto: ClientProtocol) -> None:
        self.sock = sock
        self.proto = proto
        self.ready = False
        self.dead = False
        self.want_write = True
        self.sent_at = 0.0
        self.last_seq = -1
        self.tls_state = 0      # TLS: 0 none or done, 1 TCP connecting, 2 handshaking


class ClientPool:
    """Many client connections in one process on one selector (epoll).

    `on_open(conn)` runs when a connection's upgrade succeeded and `on_message(conn, opcode,
    payload)` for each message; either calls `mark_ready(conn)` when the connection is set
    up (open, or subscribed). `now` is time.time() just after the recv that is being handled.

    With `tls` (a client SSLContext) each socket is wrapped once TCP is connected
    (`do_handshake_on_connect=False`) and the handshake is driven on readiness; then the
    upgrade goes out as usual. `protocol` makes each connection's Sans-I/O protocol.
    """

    def __init__(self, port: int, path: str, on_open: Callable[[Conn], None],
                 on_message: Callable[[Conn, int, bytes], None], tls: ssl.SSLContext | None = None,
                 protocol: Callable[[str, str], ClientProtocol] = ClientProtocol) -> None:
        self.port = port
        self.path = path
        self.on_open = on_open
        self.on_message = on_message
        self.tls = tls
        self.protocol = protocol
        self.sel = selectors.DefaultSelector()
        self.conns: list[Conn] = []
        self.ready = 0
        self.failed = 0
        self.errors: list[str] = []
        self.now = 0.0

    def _start_one(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        err = sock.connect_ex((HOST, self.port))
        conn = Conn(sock, self.protocol(f"{HOST}:{self.port}", self.path))
        self.conns.append(conn)
        if err not in (0, errno.EINPROGRESS):
            return self.fail(conn, f"connect: {os.strerror(err)}")
        if self.tls is not None:
            conn.tls_state = 1
        self.sel.register(sock, READ | WRITE, conn)

    def _tls_step(self, conn: Conn) -> None:
        """TCP connected: wrap the socket; then one more step of the TLS handshake. When it
        is done, the upgrade request (already in `proto.out`) goes out."""
        if conn.tls_state == 1:
            err = conn.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err:
                return self.fail(conn, f"connect: {os.strerror(err)}")
            self.sel.unregister(conn.sock)
            conn.sock = self.tls.wrap_socket(conn.sock, server_hostname=TLS_HOSTNAME,
                                             do_handshake_on_connect=False)
            self.sel.register(conn.sock, READ | WRITE, conn)
            conn.want_write = True
            conn.tls_state = 2
        try:
            conn.sock.do_handshake()
        except ssl.SSLWantReadError:
            want = False
        except ssl.SSLWantWriteError:
            want = True
        except OSError as e:
            return self.fail(conn, f"TLS handshake: {e}")
        else:
            conn.tls_state = 0
            return self.flush(conn)
        if want != conn.want_write:
            conn.want_write = want
            self.sel.modify(conn.sock, READ | WRITE if want else READ, conn)

    def mark_ready(self, conn: Conn) -> None:
        if not conn.ready:
            conn.ready = True
            self.ready += 1

    def fail(self, conn: Conn, why: str) -> None:
        if conn.dead:
            return
        conn.dead = True
        self.failed += 1
        if len(self.errors) < 5:
            self.errors.append(why)
        try:
            self.sel.unregister(conn.sock)
        except (KeyError, ValueError):
            pass
        conn.sock.close()

    def flush(self, conn: Conn) -> None:
        out = conn.proto.out
        if out:
            try:
                n = conn.sock.send(out)
            except WOULD_BLOCK:   # TLS: retried with the same bytes first, as OpenSSL wants
                n = 0
            except OSError as e:
                return self.fail(conn, f"send: {e}")
            del out[:n]
        want = bool(out)
        if want != conn.want_write:
            conn.want_write = want
            self.sel.modify(conn.sock, READ | WRITE if want else READ, conn)

    def handle(self, conn: Conn, mask: int) -> None:
        if conn.tls_state:
            return self._tls_step(conn)
        if mask & WRITE:
            self.flush(conn)
            if conn.dead:
                return
        if not mask & READ:
            return
        try:
            data = recv_all(conn.sock)
        except WOULD_BLOCK:
            return
        except OSError as e:
            return self.fail(conn, f"recv: {e}")
        self.now = time.time()
        proto = conn.proto
        if data:
            proto.receive_data(data)
        else:
            proto.receive_eof()
        events = proto.events
        for kind, value in events:
            if kind == TEXT or kind == BINARY:
                self.on_message(conn, kind, value)
            elif kind == EV_OPEN:
                self.on_open(conn)
            elif kind == EV_REJECTED:
                self.fail(conn, f"upgrade rejected: HTTP {value[0]}")
            elif kind == EV_CLOSED:
                self.fail(conn, f"closed by the server: {value}")
        events.clear()
        if not conn.dead and proto.out:
            self.flush(conn)

    def poll(self, timeout: float) -> None:
        for key, mask in self.sel.select(timeout):
            if key.data is not None:
                self.handle(key.data, mask)

    def open(self, n: int, timeout: float) -> float:
        """Start `n` connections (at most HANDSHAKES_IN_FLIGHT unfinished at a time) and run
        until each is ready or failed; the seconds it took."""
        start = time.monotonic()
        deadline = start + timeout
        started = 0
        while self.ready + self.failed < n and time.monotonic() < deadline:
            while started < n and started - self.ready - self.failed < HANDSHAKES_IN_FLIGHT:
                self._start_one()
                started += 1
            self.poll(0.05)
        for conn in self.conns:
            if not conn.ready and not conn.dead:
                self.fail(conn, f"not set up within {timeout} s")
        return time.monotonic() - start

    def close_all(self, timeout: float = 3.0) -> None:
        """Closing handshake on every connection still open, then close the sockets."""
        live = [c for c in self.conns if not c.dead]
        for c in live:
            if c.proto.close():
                self.flush(c)
        deadline = time.monotonic() + timeout
        while any(not c.dead and c.proto.state != State.CLOSED for c in live) and time.monotonic() < deadline:
            for key, mask in self.sel.select(0.05):
                conn = key.data
                if conn is None:
                    continue
                try:
                    data = recv_all(conn.sock) if mask & READ else None
                except WOULD_BLOCK:
                    continue
                except OSError:
                    data = b""
                if data:
                    conn.proto.receive_data(data)
                elif data is not None:
                    conn.proto.receive_eof()
                conn.proto.events.clear()
                if conn.proto.state == State.CLOSED or data == b"":
                    conn.dead = True
                    self.sel.unregister(conn.sock)
                    conn.sock.close()
        for c in self.conns:
            if not c.dead:
                c.dead = True
                try:
                    self.sel.unregister(c.sock)
                except (KeyError, ValueError):
                    pass
                c.sock.close()
        self.sel.close()


# ---------------------------------------------------------------------------- echo (client side)


def recv_all(sock: socket.socket) -> bytes:
    """One recv; on a TLS socket also what OpenSSL already holds decrypted (`pending()`),
    which the selector cannot see. Raises what recv raises (WOULD_BLOCK included)."""
    data = sock.recv(65536)
    if data and type(sock) is ssl.SSLSocket:
        while sock.pending():
            data += sock.recv(65536)
    return data


def _lapps_echo_ok(payload: bytes) -> bool:
    try:
        msg = cbor2.loads(payload)
    except Exception:
        return False
    if type(msg) is not dict or msg.get("cid") != 0 or msg.get("status") != 1:
        return False
    result = msg.get("result")
    return type(result) is list and len(result) == 1 and result[0] == LAPPS_PARAM


def echo_client_main(port: int, path: str, mode: str, n: int, certs: Path | None, pipe: Any) -> None:
    """A client process: open `n` connections, then the closed loop the parent schedules.
    `mode` "wss" connects with TLS (`port` is then the TLS port), "deflate" negotiates
    permessage-deflate and sends DEFLATE_PAYLOAD compressed."""
    tls = client_tls_context(certs) if mode == "wss" else None
    pool = ClientPool(port, path, on_open=lambda c: pool.mark_ready(c), on_message=lambda c, k, v: None,
                      tls=tls, protocol=DeflateClientProtocol if mode == "deflate" else ClientProtocol)
    pool.open(n, timeout=60)
    pipe.send(("ready", pool.ready, pool.errors))
    cmd = pipe.recv()
    if cmd[0] != "go":
        pool.close_all()
        return
    _, t_go, t_start, t_end = cmd
    if mode == "raw" or mode == "wss":
        opcode, payload = TEXT, RAW_PAYLOAD
        check: Callable[[bytes], bool] = RAW_PAYLOAD.__eq__
    elif mode == "deflate":
        opcode, payload = TEXT, DEFLATE_PAYLOAD
        check = DEFLATE_PAYLOAD.__eq__
    else:
        opcode, payload = BINARY, LAPPS_REQUEST
        check = _lapps_echo_ok
    conns = [c for c in pool.conns if not c.dead]
    monotonic = time.monotonic
    rtts = array("d")
    count = bad = received = 0
    cpu_start = cpu_end = None
    while monotonic() < t_go:
        time.sleep(min(0.01, max(0.0, t_go - monotonic())))
    for c in conns:
        c.proto.send(opcode, payload)
        c.sent_at = monotonic()
        pool.flush(c)
    sel = pool.sel
    flush = pool.flush
    while True:
        now = monotonic()
        if now >= t_end:
            break
        if cpu_start is None and now >= t_start:
            cpu_start = time.process_time()
        for key, mask in sel.select(t_end - now):
            c = key.data
            if mask & WRITE:
                flush(c)
                if c.dead:
                    continue
            if not mask & READ:
                continue
            sock = c.sock
            try:
                data = sock.recv(65536)
                if tls is not None and data:
                    while sock.pending():   # decrypted bytes OpenSSL holds: the selector cannot see them
                        data += sock.recv(65536)
            except WOULD_BLOCK:
                continue
            except OSError as e:
                pool.fail(c, f"recv: {e}")
                continue
            proto = c.proto
            if not data:
                proto.receive_eof()
            else:
                proto.receive_data(data)
            now = monotonic()
            for kind, value in proto.events:
                if kind == opcode:
                    received += 1
                    if not check(value):
                        bad += 1
                    if t_start <= now < t_end:
                        count += 1
                        rtts.append(now - c.sent_at)
                    if now < t_end:
                        proto.send(opcode, payload)
                        c.sent_at = now
                elif kind == EV_CLOSED:
                    pool.fail(c, f"closed by the server: {value}")
                else:
                    bad += 1
            proto.events.clear()
            if proto.out and not c.dead:
                flush(c)
    cpu_end = time.process_time()
    if cpu_start is None:
        cpu_start = cpu_end
    done = {"count": count, "bad": bad, "failed": pool.failed, "errors": pool.errors,
            "cpu": cpu_end - cpu_start, "rtts": rtts.tobytes(), "received": received}
    if mode == "deflate":
        # how many echoes came back compressed (all of them, with the server's 128-byte
        # threshold) and their payload size on the wire; what was agreed in the handshake
        done["compressed_in"] = sum(c.proto.compressed_in for c in conns)
        done["compressed_in_bytes"] = sum(c.proto.compressed_in_bytes for c in conns)
        done["agreed"] = sorted({c.proto.agreed for c in conns if c.proto.agreed})
    pipe.send(("done", done))
    pool.close_all()


# ---------------------------------------------------------------------------- fan-out (client side)


def fanout_subscriber_main(port: int, n: int, pipe: Any) -> None:
    """A subscriber process: `n` connections subscribed to the channel; then, per round,
    every arrival's time.time(), sent to the parent when all `n` came or the deadline passed."""
    arrivals: dict[int, array] = {}
    stamps: dict[int, int] = {}
    problems = {"bad": 0, "dup": 0}

    def on_open(conn: Conn) -> None:
        conn.proto.send(BINARY, SUBSCRIBE_REQUEST)

    def on_message(conn: Conn, kind: int, payload: bytes) -> None:
        now = pool.now
        try:
            msg = cbor2.loads(payload)
        except Exception:
            problems["bad"] += 1
            return
        cid = msg.get("cid")
        if cid == FANOUT_CHANNEL_CID:
            seq, stamp = msg["message"]
            if seq == conn.last_seq:
                problems["dup"] += 1
                return
            conn.last_seq = seq
            got = arrivals.get(seq)
            if got is None:
                got = arrivals[seq] = array("d")
                stamps[seq] = stamp
            got.append(now)
        elif cid == 0 and not conn.ready:
            if msg.get("status") == 1:
                pool.mark_ready(conn)
            else:
                pool.fail(conn, f"subscribe refused: {msg.get('error')}")
        else:
            problems["bad"] += 1

    pool = ClientPool(port, "/fanout", on_open, on_message)
    setup = pool.open(n, timeout=180)
    pipe.send(("ready", pool.ready, setup, pool.errors))
    pool.sel.register(pipe.fileno(), READ, None)
    pending: tuple[int, float] | None = None
    cpu_mark = time.process_time()
    while True:
        for key, mask in pool.sel.select(0.05):
            if key.data is not None:
                pool.handle(key.data, mask)
                continue
            cmd = pipe.recv()
            if cmd[0] == "stop":
                pool.sel.unregister(pipe.fileno())
                pool.close_all()
                pipe.send(("stopped",))
                return
            pending = (cmd[1], cmd[2])   # ("collect", seq, deadline)
        if pending is not None:
            seq, deadline = pending
            got = arrivals.get(seq, array("d"))
            if len(got) >= pool.ready or time.time() >= deadline:
                cpu = time.process_time()
                pipe.send(("arrivals", seq, got.tobytes(), stamps.get(seq), dict(problems), cpu - cpu_mark))
                cpu_mark = cpu
                arrivals.pop(seq, None)
                pending = None


def pinned_subscriber(core: int | None, port: int, n: int, pipe: Any) -> None:
    """`fanout_subscriber_main` on `core` (None: wherever the scheduler puts it)."""
    if core is not None:
        os.sched_setaffinity(0, {core})
    fanout_subscriber_main(port, n, pipe)


# ---------------------------------------------------------------------------- the parent's side


def split(n: int, k: int) -> list[int]:
    return [n // k + (1 if i < n % k else 0) for i in range(k)]


def fork_clients(target: Callable[..., None], arg_lists: list[tuple]) -> tuple[list[Any], list[Any]]:
    """One client process (fork, daemon) per argument tuple, each called with the child end of
    a pipe after its arguments; (the parent ends, the processes)."""
    pipes, children = [], []
    for args in arg_lists:
        mine, theirs = MP.Pipe()
        p = MP.Process(target=target, args=(*args, theirs), daemon=True)
        p.start()
        theirs.close()
        pipes.append(mine)
        children.append(p)
    return pipes, children


def recv_or_fail(pipe: Any, timeout: float, what: str) -> Any:
    if not pipe.poll(timeout):
        raise RuntimeError(f"no answer from a client process within {timeout} s ({what})")
    return pipe.recv()


def machine_busy() -> tuple[float, float, float]:
    """CPU seconds of the whole machine so far: (busy, interrupts (softirq + irq: loopback
    TCP is partly processed there, outside any process), steal)."""
    t = psutil.cpu_times()
    idle = t.idle + getattr(t, "iowait", 0.0)
    total = sum(t) - getattr(t, "guest", 0.0) - getattr(t, "guest_nice", 0.0)   # guest is inside user
    irq = getattr(t, "softirq", 0.0) + getattr(t, "irq", 0.0)
    return total - idle, irq, getattr(t, "steal", 0.0)


def echo_round(server: Server, mode: str, clients: int, procs: int, warmup: float,
               seconds: float, certs: Path | None = None) -> dict[str, Any]:
    path = ECHO_PATHS[mode]
    port = server.tls_port if mode == "wss" else server.port
    pipes, children = fork_clients(echo_client_main, [(port, path, mode, share, certs)
                                                      for share in split(clients, procs)])
    try:
        opened = 0
        for pipe in pipes:
            _, ready, errors = recv_or_fail(pipe, 90, "connecting")
            opened += ready
            if errors:
                log(f"    connection errors: {errors}")
        if opened != clients:
            raise RuntimeError(f"only {opened} of {clients} {mode} connections opened")
        t_go = time.monotonic() + 0.05
        t_start = t_go + warmup
        t_end = t_start + seconds
        for pipe in pipes:
            pipe.send(("go", t_go, t_start, t_end))
        time.sleep(max(0.0, t_start - time.monotonic()))
        cpu0, (busy0, irq0, steal0) = server.cpu_seconds(), machine_busy()
        w0 = time.monotonic()
        time.sleep(max(0.0, t_end - time.monotonic()))
        cpu1, (busy1, irq1, steal1) = server.cpu_seconds(), machine_busy()
        window = time.monotonic() - w0
        results = [recv_or_fail(pipe, 30, "results")[1] for pipe in pipes]
    finally:
        reap(children)
    count = sum(r["count"] for r in results)
    bad = sum(r["bad"] for r in results)
    failed = sum(r["failed"] for r in results)
    rtts: list[float] = []
    for r in results:
        a = array("d")
        a.frombytes(r["rtts"])
        rtts.extend(a)
    rtts.sort()
    server_cpu = cpu1 - cpu0
    client_cpu = sum(r["cpu"] for r in results)
    busy = busy1 - busy0
    out = {
        "mode": mode, "clients": clients, "client_procs": procs, "seconds": seconds,
        "round_trips": count, "rps": count / seconds, "bad_responses": bad, "failed_connections": failed,
        "server_cpu_s": server_cpu, "server_cores": server_cpu / window,
        "rps_per_server_cpu_s": count / server_cpu if server_cpu > 0 else float("nan"),
        "client_cpu_s": client_cpu, "machine_busy_s": busy, "irq_s": irq1 - irq0, "steal_s": steal1 - steal0,
        "other_cpu_s": max(0.0, busy - server_cpu - client_cpu - (irq1 - irq0)),
        "rtt_p50_ms": percentile(rtts, 0.5) * 1e3, "rtt_p99_ms": percentile(rtts, 0.99) * 1e3,
    }
    if mode == "deflate":
        received = sum(r["received"] for r in results)
        compressed = sum(r["compressed_in"] for r in results)
        out["compressed_echoes"] = compressed
        out["echoes_received"] = received
        out["echo_wire_bytes"] = sum(r["compressed_in_bytes"] for r in results) / compressed if compressed else 0.0
        out["agreed"] = sorted({a for r in results for a in r["agreed"]})
        if compressed != received:
            log(f"    WARNING: {received - compressed} of {received} echoes came back uncompressed")
    if bad or failed:
        errors = [e for r in results for e in r["errors"]]
        log(f"    WARNING: {bad} bad responses, {failed} failed connections {errors[:3]}")
    return out


def run_echo(root: Path, args: argparse.Namespace) -> dict[str, Any]:
    log(f"== echo: {args.clients} clients x {MSG_SIZE} B, closed loop, {args.client_procs} client processes, "
        f"{args.workers} server workers, {args.rounds} rounds each, {args.warmup:g} s warm-up + "
        f"{args.seconds:g} s; cases {', '.join(ECHO_MODES)} (wss:// and ws:// on one server)")
    certs = make_certs(root / "certs")
    server = start_server(root, args.workers, certs)
    rounds: dict[str, list[dict[str, Any]]] = {mode: [] for mode in ECHO_MODES}
    try:
        server.wait_ready()
        for i in range(args.rounds):
            for mode in ECHO_MODES:
                r = echo_round(server, mode, args.clients, args.client_procs, args.warmup, args.seconds, certs)
                server.check_alive()
                rounds[mode].append(r)
                log(f"  round {i + 1} {mode:7}: {r['rps']:9,.0f} round trips/s  server CPU {r['server_cpu_s']:5.2f} s "
                    f"({r['rps_per_server_cpu_s']:7,.0f}/CPU-s)  clients {r['client_cpu_s']:5.2f} s  "
                    f"irq {r['irq_s']:4.2f} s  other {r['other_cpu_s']:4.2f} s  RTT p50 {r['rtt_p50_ms']:.2f} ms p99 {r['rtt_p99_ms']:.2f} ms")
    finally:
        stopped = server.stop()
    summary: dict[str, Any] = {"cases": list(ECHO_MODES), "rounds": rounds, "server_stop": stopped}
    for mode in ECHO_MODES:
        rs = rounds[mode]
        summary[mode] = {key: statistics.median(r[key] for r in rs) for key in
                         ("rps", "server_cpu_s", "server_cores", "rps_per_server_cpu_s", "client_cpu_s",
                          "irq_s", "other_cpu_s", "machine_busy_s", "rtt_p50_ms", "rtt_p99_ms")}
        summary[mode]["server_cpu_us_per_round_trip"] = 1e6 / summary[mode]["rps_per_server_cpu_s"]
        summary[mode]["bad_responses"] = sum(r["bad_responses"] for r in rs)
        summary[mode]["failed_connections"] = sum(r["failed_connections"] for r in rs)
    dfl = summary["deflate"]
    dfl["echoes_received"] = sum(r["echoes_received"] for r in rounds["deflate"])
    dfl["compressed_echoes"] = sum(r["compressed_echoes"] for r in rounds["deflate"])
    dfl["echo_wire_bytes"] = statistics.median(r["echo_wire_bytes"] for r in rounds["deflate"])
    dfl["agreed"] = sorted({a for r in rounds["deflate"] for a in r["agreed"]})
    c = zlib.compressobj(6, zlib.DEFLATED, -15)
    dfl["request_wire_bytes"] = len(c.compress(DEFLATE_PAYLOAD) + c.flush(zlib.Z_FULL_FLUSH)) - 4
    # per-round ratios of each case to the plain raw echo of the same round; the median
    summary["ratios"] = {}
    for mode in ECHO_MODES[1:]:
        pairs = list(zip(rounds["raw"], rounds[mode]))
        summary["ratios"][mode] = {
            "rps": statistics.median(b["rps"] / a["rps"] for a, b in pairs),
            "rps_per_server_cpu_s": statistics.median(
                b["rps_per_server_cpu_s"] / a["rps_per_server_cpu_s"] for a, b in pairs)}
    summary["ratio_rps"] = summary["ratios"]["lapps"]["rps"]                    # LAppS / raw, as before
    summary["ratio_rps_per_cpu"] = summary["ratios"]["lapps"]["rps_per_server_cpu_s"]
    return summary


def worker_spread(server: Server) -> list[int]:
    """Established client connections each worker holds (its share of the subscribers)."""
    counts = []
    for pid in server.worker_pids():
        try:
            counts.append(sum(1 for c in psutil.Process(pid).net_connections(kind="tcp")
                              if c.raddr and c.status == psutil.CONN_ESTABLISHED))
        except psutil.Error:
            counts.append(-1)
    return counts


def run_fanout(root: Path, args: argparse.Namespace) -> dict[str, Any]:
    s = args.subscribers
    nprocs = args.sub_procs or max(1, math.ceil(s / MAX_PER_PROCESS))
    nprocs = max(nprocs, math.ceil(s / MAX_PER_PROCESS))
    log(f"== fan-out: {s} subscribers in {nprocs} client processes, {args.fanout_workers} server workers, "
        f"{args.fanout_rounds} rounds (+1 warm-up)")
    # pinned (the default): the server and all its processes on core 0, the subscribers on
    # core 1, as every echo comparison is; unpinned the figure depends on where the
    # scheduler happens to put 4 workers and 4 subscriber processes
    server = start_server(root, args.fanout_workers, prefix=["taskset", "-c", "0"] if args.fanout_pin else None)
    pipes, children = [], []
    result: dict[str, Any] = {"subscribers": s, "client_procs": nprocs, "workers": args.fanout_workers,
                              "pinned": args.fanout_pin}
    try:
        server.wait_ready()
        t_setup = time.monotonic()
        core = 1 if args.fanout_pin else None
        pipes, children = fork_clients(pinned_subscriber, [(core, server.port, share) for share in split(s, nprocs)])
        subscribed = 0
        for pipe in pipes:
            _, ready, _setup, errors = recv_or_fail(pipe, 240, "subscribing")
            subscribed += ready
            if errors:
                log(f"  subscriber errors: {errors}")
        setup = time.monotonic() - t_setup
        server.check_alive()
        spread = worker_spread(server)
        result.update(subscribed=subscribed, setup_s=setup, setup_per_s=subscribed / setup,
                      per_worker=spread)
        log(f"  {subscribed} of {s} subscribed in {setup:.1f} s ({subscribed / setup:,.0f} connect+subscribe/s); "
            f"per worker {spread}")
        rounds = []
        with ws_connect(f"ws://{HOST}:{server.port}/fanout") as trigger:
            for seq in range(args.fanout_rounds + 1):
                time.sleep(0.5)
                cpu0 = server.cpu_seconds()
                t0 = time.time()
                trigger.request("publish", [seq])   # a refusal raises LappsRequestError
                t_reply = time.time()
                deadline = t0 + args.fanout_timeout
                for pipe in pipes:
                    pipe.send(("collect", seq, deadline))
                lat: list[float] = []
                stamp = None
                problems = {"bad": 0, "dup": 0}
                client_cpu = 0.0
                for pipe in pipes:
                    _, got_seq, raw, st, prob, ccpu = recv_or_fail(pipe, args.fanout_timeout + 30, "arrivals")
                    client_cpu += ccpu
                    a = array("d")
                    a.frombytes(raw)
                    lat.extend(x - t0 for x in a)
                    stamp = st if st is not None else stamp
                    for k in problems:
                        problems[k] += prob[k]
                cpu = server.cpu_seconds() - cpu0
                lat.sort()
                reached = len(lat)
                last = lat[-1] if lat else float("nan")
                r = {"seq": seq, "reached": reached, "p50_ms": percentile(lat, 0.5) * 1e3,
                     "p99_ms": percentile(lat, 0.99) * 1e3, "max_ms": last * 1e3,
                     "first_ms": lat[0] * 1e3 if lat else float("nan"),
                     "deliveries_per_s": reached / last if lat else 0.0,
                     "reply_ms": (t_reply - t0) * 1e3,
                     "publish_stamp_ms": (stamp - t0 * 1e3) if stamp is not None else None,
                     "server_cpu_s": cpu, "client_cpu_s": client_cpu, "problems": problems}
                tag = "warm-up" if seq == 0 else f"round {seq}"
                log(f"  {tag:8}: reached {reached}/{subscribed}  first {r['first_ms']:.1f} ms  "
                    f"p50 {r['p50_ms']:.1f} ms  p99 {r['p99_ms']:.1f} ms  last {r['max_ms']:.1f} ms  "
                    f"{r['deliveries_per_s']:,.0f} deliveries/s  CPU server {cpu:.2f} s clients {client_cpu:.2f} s"
                    + (f"  problems {problems}" if any(problems.values()) else ""))
                if seq:
                    rounds.append(r)
                server.check_alive()
        for pipe in pipes:
            pipe.send(("stop",))
        for pipe in pipes:
            recv_or_fail(pipe, 30, "closing")
    finally:
        reap(children)
        result["server_stop"] = server.stop()
    result["rounds"] = rounds
    result["all_reached"] = all(r["reached"] == s for r in rounds)
    for key in ("p50_ms", "p99_ms", "max_ms", "deliveries_per_s", "reply_ms", "server_cpu_s", "client_cpu_s"):
        result[key] = statistics.median(r[key] for r in rounds)
    result["reached_min"] = min(r["reached"] for r in rounds)
    return result


# ---------------------------------------------------------------------------- report


def per_round(fan: dict[str, Any], key: str, fmt: str) -> str:
    return ", ".join(fmt.format(r[key]) for r in fan["rounds"])


def table(meta: dict[str, Any], echo: dict[str, Any] | None, fan: dict[str, Any] | None) -> str:
    lines = [f"LAppS end to end, {meta['cpus']} cores shared by the server, the Python load generator and "
             f"whatever else runs here (medians of alternating rounds)", ""]
    if echo:
        modes = echo.get("cases", ["raw", "lapps"])
        lines += [
            f"Echo, closed loop: {meta['clients']} clients x {MSG_SIZE} B, {meta['client_procs']} client processes, "
            f"{meta['workers']} workers, {meta['rounds']} x {meta['seconds']:g} s per case",
            "",
            "| case | round trips/s | server CPU (cores) | round trips / server CPU-s | RTT p50 | RTT p99 |",
            "|---|---|---|---|---|---|",
        ]
        for mode in modes:
            r = echo[mode]
            lines.append(f"| {ECHO_NAMES[mode]} | {r['rps']:,.0f} | {r['server_cores']:.2f} | "
                         f"{r['rps_per_server_cpu_s']:,.0f} | {r['rtt_p50_ms']:.2f} ms | {r['rtt_p99_ms']:.2f} ms |")
        for mode in modes[1:]:
            q = echo["ratios"][mode] if "ratios" in echo else \
                {"rps": echo["ratio_rps"], "rps_per_server_cpu_s": echo["ratio_rps_per_cpu"]}
            lines.append(f"| {RATIO_NAMES[mode]} | {q['rps']:.2f}x | | {q['rps_per_server_cpu_s']:.2f}x | | |")
        d = meta["seconds"]
        names = " / ".join("LAppS" if m == "lapps" else m for m in modes)

        def each(key: str, scale: float) -> str:
            return " / ".join(f"{echo[m][key] / scale:.2f}" for m in modes)
        lines += ["", f"In the window (cores busy, {names}): server {each('server_cores', 1)}, "
                      f"client processes {each('client_cpu_s', d)}, kernel softirq {each('irq_s', d)}, "
                      f"everything else on the machine {each('other_cpu_s', d)}, of {meta['cpus']}."]
        if "deflate" in modes:
            dfl = echo["deflate"]
            lines.append(f"permessage-deflate: agreed `{', '.join(dfl['agreed']) or 'nothing'}`; the {MSG_SIZE}-byte "
                         f"JSON text is {dfl['request_wire_bytes']} bytes deflated from the client, "
                         f"{dfl['echo_wire_bytes']:.0f} from the server; {dfl['compressed_echoes']:,} of "
                         f"{dfl['echoes_received']:,} echoes came back compressed.")
        if any(echo[m]["bad_responses"] or echo[m]["failed_connections"] for m in modes):
            lines.append("WARNING: bad responses " + ", ".join(f"{m} {echo[m]['bad_responses']}" for m in modes)
                         + "; failed connections " + ", ".join(f"{m} {echo[m]['failed_connections']}" for m in modes))
        lines.append("")
    if fan:
        lines += [
            f"Broadcast fan-out: {fan['subscribers']} subscribers ({fan['client_procs']} client processes), "
            f"{fan['workers']} workers, one bcast:send per round, {len(fan['rounds'])} rounds"
            + (" (server pinned to core 0, subscribers to core 1)" if fan.get("pinned") else " (not pinned)"),
            "",
            "| figure | median | per round |",
            "|---|---|---|",
            f"| subscribers reached | min {fan['reached_min']} of {fan['subscribers']} | "
            f"{per_round(fan, 'reached', '{}')} |",
            f"| p50 delivery latency | {fan['p50_ms']:.1f} ms | {per_round(fan, 'p50_ms', '{:.0f} ms')} |",
            f"| last delivery (max) | {fan['max_ms']:.1f} ms | {per_round(fan, 'max_ms', '{:.0f} ms')} |",
            f"| deliveries / s | {fan['deliveries_per_s']:,.0f} | {per_round(fan, 'deliveries_per_s', '{:,.0f}')} |",
            f"| publish reply to the trigger | {fan['reply_ms']:.1f} ms | |",
            f"| CPU per round: server / subscriber processes | {fan['server_cpu_s']:.2f} s / {fan['client_cpu_s']:.2f} s | |",
            "",
            f"Connect + upgrade + subscribe of {fan['subscribed']}: {fan['setup_s']:.1f} s "
            f"({fan['setup_per_s']:,.0f}/s); connections per worker {fan['per_worker']}.",
        ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smoke run: 20 clients, 2 s, 1 round; 1000 subscribers, 1 round")
    ap.add_argument("--clients", type=int, help="echo connections (default 80; quick 20)")
    ap.add_argument("--client-procs", type=int, default=2, help="echo client processes (default 2)")
    ap.add_argument("--seconds", type=float, help="measured seconds per echo round (default 5; quick 2)")
    ap.add_argument("--warmup", type=float, help="warm-up seconds before each echo round (default 1; quick 0.5)")
    ap.add_argument("--rounds", type=int, help="echo rounds per case, alternating (default 3; quick 1)")
    ap.add_argument("--workers", type=int, default=2, help="server workers for the echo (default 2)")
    ap.add_argument("--subscribers", type=int, help="fan-out subscribers (default 10000; quick 1000)")
    ap.add_argument("--sub-procs", type=int, default=0,
                    help=f"subscriber client processes (default: enough for {MAX_PER_PROCESS} each, at least 4)")
    ap.add_argument("--fanout-workers", type=int, default=4, help="server workers for the fan-out (default 4)")
    ap.add_argument("--fanout-rounds", type=int, help="fan-out rounds after one warm-up (default 5; quick 1)")
    ap.add_argument("--fanout-pin", action=argparse.BooleanOptionalAction, default=True,
                    help="fan-out server on core 0, subscriber processes on core 1 (default)")
    ap.add_argument("--fanout-timeout", type=float, default=30.0, help="seconds a round waits for every subscriber")
    ap.add_argument("--skip-echo", action="store_true")
    ap.add_argument("--skip-fanout", action="store_true")
    ap.add_argument("--output", type=Path, default=RESULTS, help=f"JSON results (default {RESULTS.relative_to(REPO)})")
    args = ap.parse_args(argv)
    q = args.quick
    quick_defaults(args, clients=(80, 20), seconds=(5.0, 2.0), warmup=(1.0, 0.5), rounds=(3, 1),
                   subscribers=(10000, 1000), fanout_rounds=(5, 1))
    if not args.sub_procs:
        args.sub_procs = max(2 if q else 4, math.ceil(args.subscribers / MAX_PER_PROCESS))
    if args.client_procs < 1 or args.clients < args.client_procs:
        ap.error("--clients must be at least --client-procs, which must be at least 1")

    soft, hard = raise_nofile()
    per_proc = math.ceil(args.subscribers / args.sub_procs)
    if not args.skip_fanout and per_proc + 64 > soft:
        ap.error(f"{per_proc} connections per subscriber process is over `ulimit -n` ({soft}): raise --sub-procs")
    if not args.skip_fanout and args.subscribers / args.fanout_workers + 64 > soft:
        ap.error(f"{args.subscribers} subscribers over {args.fanout_workers} workers is over `ulimit -n` ({soft})")
    cpus = os.cpu_count() or 1
    meta = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %z"), "host": platform.node(), "cpus": cpus,
        "python": platform.python_version(), "machine": platform.machine(), "load_avg_before": os.getloadavg(),
        "nofile": [soft, hard], "quick": q, "clients": args.clients, "client_procs": args.client_procs,
        "seconds": args.seconds, "warmup": args.warmup, "rounds": args.rounds, "workers": args.workers,
        "message_bytes": MSG_SIZE, "subscribers": args.subscribers, "sub_procs": args.sub_procs,
        "fanout_workers": args.fanout_workers, "fanout_rounds": args.fanout_rounds,
    }
    meta["commit"] = git_commit()
    log(f"LAppS bench: {cpus} cores (client and server processes share them), load average "
        f"{meta['load_avg_before'][0]:.2f}, ulimit -n {soft}{' [quick]' if q else ''}")
    echo = fan = None
    with scratch("lapps-bench-") as root:
        if not args.skip_echo:
            echo = run_echo(root, args)
        if not args.skip_fanout:
            fan = run_fanout(root, args)
    report = table(meta, echo, fan)
    print()
    print(report)
    save_results(args.output, {"meta": meta, "echo": echo, "fanout": fan, "table": report})
    return 0 if (fan is None or fan["all_reached"]) else 1


if __name__ == "__main__":
    sys.exit(main())
