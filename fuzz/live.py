"""Live-server fuzzing: a real LAppS, real sockets, many hostile connections at once.

    python fuzz/live.py [--seconds 20] [--seed N] [--codec both|c|python] [--connections 32]
    python fuzz/live.py --codec python --seed N --batch B      # replay one batch

The in-process targets (targets.py) check each parser alone; this checks what only the
running server can get wrong: the worker loop, the fault barrier, Lua dispatch, framing and
flushing, deflate and LAppS decoding together, under concurrency. It starts `python -m
lapps` with one worker (services: raw echo `/echo`, the same with permessage-deflate
`/echo_deflate`, the LAppS demo `/echo_lapps`; max_inbound_message_size 64 KiB), then runs
batches: each opens `--connections` sockets at once and sends each a mutated stream (a
handshake, valid or broken: bad keys, versions, duplicated or huge headers, bare LF, random
bytes; then frames: random cuts, wrong or non-minimal lengths, bad or missing masks, RSV
bits, fragments, control frames, bad UTF-8, compressed payloads valid and corrupt, CBOR
valid and not), interleaved across the sockets, then closes them (FIN or RST).

After every batch the invariant: a well-behaved client on that worker still gets its text
and binary messages echoed, the worker's pid is the one it had at start, and the server log
has no internal error, traceback or respawn. Half the time runs on the C extension, half
with LAPPS_NO_SPEEDUPS=1 (`--codec both`, the default). Batch B of seed S is
`random.Random(f"{S}:{B}")`, so a failure prints the command that replays it. Exit status
0: the invariant held; 1: it broke (the batch and the log tail are printed).
"""

from __future__ import annotations

import argparse
import os
import random
import re
import selectors
import shutil
import socket
import struct
import subprocess
from collections import Counter
import sys
import tempfile
import time
from pathlib import Path

import cbor2
import psutil

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

sys.path.insert(0, str(REPO / "bench"))
from fuzz.harness import deflate_payload  # noqa: E402
from harness import LappsServer, ServerNotReady, free_port, services_folder  # noqa: E402
from lapps.client import ClientError  # noqa: E402
from lapps.client import connect as ws_connect  # noqa: E402
from lapps import NO_SPEEDUPS_ENV  # noqa: E402
from lapps.ws.frames import mask  # noqa: E402
from workers.faults import MARKER  # noqa: E402

PATHS = ("/echo", "/echo_deflate", "/echo_lapps")
MAX_MESSAGE = 65536
BATCH_WINDOW = 0.6        # seconds a batch sends and reads before its sockets are closed
PROBE_TIMEOUT = 5.0
BAD_LOG = re.compile(r"internal error|Traceback|respawning|CRITICAL")


# ---------------------------------------------------------------------- the server

def start_server(folder: Path, pure_python: bool) -> LappsServer:
    """One worker on a free port, its own config and services under `folder` (the harness of
    bench/harness.py starts it, in its own session, its output in folder/server.log)."""
    services = services_folder(folder / "services", {"echo_deflate": REPO / "bench" / "services" / "echo_deflate"},
                               shipped=("echo", "echo_lapps"))
    port = free_port()
    config = folder / "lapps.toml"
    config.write_text(
        f'[server]\nip = "127.0.0.1"\nservices_dir = "{services}"\nshutdown_timeout = 2\n'
        f'[limits]\nhandshake_timeout = 2\nclose_timeout = 1\n[admin]\nport = 0\n'
        f'[services.echo]\nmax_inbound_message_size = {MAX_MESSAGE}\n'
        f'[services.echo_deflate]\nrequest_target = "/echo_deflate"\npermessage_deflate = true\n'
        f'max_inbound_message_size = {MAX_MESSAGE}\n'
        f'[services.echo_lapps]\nprotocol = "lapps"\nrequest_target = "/echo_lapps"\n')
    env = {k: v for k, v in os.environ.items() if k != NO_SPEEDUPS_ENV}
    if pure_python:
        env[NO_SPEEDUPS_ENV] = "1"
    return LappsServer.start(config, port, folder / "server.log", 1, listeners=1, env=env)


def worker_pid(proc: subprocess.Popen) -> int | None:
    for child in psutil.Process(proc.pid).children():
        try:
            if "lapps: worker" in " ".join(child.cmdline()):
                return child.pid
        except psutil.Error:
            continue
    return None


# ---------------------------------------------------------------------- a well-behaved client

def probe(port: int) -> str | None:
    """None when /echo answers a text and a binary message with themselves, else why not
    (a well-behaved client: the shipped lapps.client)."""
    messages = [(1, "probe ünïcode".encode()), (2, os.urandom(300))]
    try:
        with ws_connect(f"ws://127.0.0.1:{port}/echo", timeout=PROBE_TIMEOUT) as c:
            for opcode, payload in messages:
                if opcode == 1:
                    c.send_text(payload.decode())
                else:
                    c.send_binary(payload)
                got_opcode, got = c.recv()
                if (got_opcode, got) != (opcode, payload):
                    return f"echo of opcode {opcode} came back as opcode {got_opcode}, {len(got)} bytes"
    except (OSError, ClientError) as e:
        return f"{type(e).__name__}: {e}"
    return None


# ---------------------------------------------------------------------- what the bad clients send

def handshake(path: str, rng: random.Random, deflate: bool = False) -> bytes:
    """An upgrade request for `path`, maybe broken in one of many ways."""
    key = "dGhlIHNhbXBsZSBub25jZQ=="
    fields = [("Host", "localhost"), ("Upgrade", "websocket"), ("Connection", "Upgrade"),
              ("Sec-WebSocket-Key", key), ("Sec-WebSocket-Version", "13")]
    if deflate:
        fields.append(("Sec-WebSocket-Extensions", rng.choice(
            ["permessage-deflate", "permessage-deflate; client_max_window_bits",
             "permessage-deflate; server_no_context_takeover; client_no_context_takeover",
             "permessage-deflate; server_max_window_bits=9", "permessage-deflate; bogus=1, x-webkit"])))
    line = f"GET {path} HTTP/1.1"
    if rng.random() < 0.25:
        kind = rng.randrange(10)
        if kind == 0:
            fields = [f for f in fields if f[0] != rng.choice(fields)[0]]          # one missing
        elif kind == 1:
            fields.append(("Host", "other"))                                      # duplicated Host
        elif kind == 2:
            fields.append(("X-Huge", "a" * rng.choice((4000, 9000, 20000))))      # 431 territory
        elif kind == 3:
            fields += [(f"X-{i}", "v") for i in range(rng.choice((99, 101, 300)))]
        elif kind == 4:
            fields[4] = ("Sec-WebSocket-Version", rng.choice(("8", "", "13, 8", "1" * 50)))
        elif kind == 5:
            fields[3] = ("Sec-WebSocket-Key", rng.choice(("", "short", "é" * 16, key * 3)))
        elif kind == 6:
            line = rng.choice(("POST /echo HTTP/1.1", "GET /echo HTTP/1.0", "GET  HTTP/1.1", "\x16\x03\x01"))
        elif kind == 7:
            raw = (line + "\r\n" + "".join(f"{k}: {v}\r\n" for k, v in fields) + "\r\n").encode("utf-8")
            return raw.replace(b"\r\n", b"\n", rng.randint(1, 3))                 # bare LF
        elif kind == 8:
            fields.append(("Content-Length", "5"))
        else:
            raw = bytearray((line + "\r\n" + "".join(f"{k}: {v}\r\n" for k, v in fields) + "\r\n").encode())
            for _ in range(rng.randint(1, 6)):                                   # flipped bytes
                raw[rng.randrange(len(raw))] = rng.randrange(256)
            return bytes(raw)
    return (line + "\r\n" + "".join(f"{k}: {v}\r\n" for k, v in fields) + "\r\n").encode("utf-8")


def frame(opcode: int, payload: bytes, fin: bool = True, rsv: int = 0, key: bytes | None = b"\0\0\0\0",
          length: int | None = None, width: int | None = None) -> bytes:
    """A frame with every field under control: `key` None sends it unmasked, `length` lies
    about the payload, `width` (7, 16, 64) forces a length encoding, minimal or not."""
    n = len(payload) if length is None else length
    if width is None:
        width = 7 if n < 126 else (16 if n < 65536 else 64)
    head = bytes((opcode | (0x80 if fin else 0) | rsv,))
    m = 0x80 if key is not None else 0
    if width == 7:
        head += bytes((m | (n & 0x7F),))
    elif width == 16:
        head += bytes((m | 126,)) + struct.pack("!H", n & 0xFFFF)
    else:
        head += bytes((m | 127,)) + struct.pack("!Q", n & 0xFFFFFFFFFFFFFFFF)
    if key is None:
        return head + payload
    return head + key + mask(payload, key)


def payload_for(rng: random.Random, path: str) -> tuple[int, bytes]:
    """(opcode, payload) of one message worth sending to `path`."""
    pick = rng.random()
    if pick > 0.98:
        # a plain message, unless the server runs with LAPPS_FAULT_INJECT: then it is the
        # fault the invariant must catch (tests/test_fuzz_live.py checks that it does)
        return 2, MARKER
    if path == "/echo_lapps" and pick < 0.6:
        message = rng.choice([
            {"lapps": 1, "method": "login", "params": ["user", "password"]},
            {"lapps": 1, "method": "echo", "params": [{"authkey": "x"}, 1, "two", [3.5, None]]},
            {"lapps": 1, "method": "_hidden"}, {"lapps": 1, "method": "a.b"}, {"lapps": 2, "method": "x"},
            {"lapps": 1, "method": "echo", "cid": rng.randint(-3, 2**40), "params": {"not": "a list"}},
            [1, 2, 3], "text", {"method": "echo"}])
        data = bytearray(cbor2.dumps(message))
        if rng.random() < 0.4 and data:
            data[rng.randrange(len(data))] = rng.randrange(256)
        return 2, bytes(data)
    size = rng.choice((0, 1, 2, 125, 126, 127, 300, 4096, 65535, 65536, 65537, 70000))
    size = min(size, rng.randint(0, 70000))
    if pick < 0.3:
        text = "".join(rng.choice("aé€😀\u0000z ") for _ in range(size // 3))
        return 1, text.encode()
    if pick < 0.4:
        return 1, bytes(rng.randrange(256) for _ in range(min(size, 64))) + b"\xc3"   # bad UTF-8
    return 2, rng.randbytes(size)


def frames_for(rng: random.Random, path: str, deflated: bool) -> bytes:
    """A stream of 1..12 frames, most of them plausible, some broken on purpose."""
    out = bytearray()
    for _ in range(rng.randint(1, 12)):
        opcode, payload = payload_for(rng, path)
        key = os.urandom(4) if rng.random() < 0.95 else None        # unmasked now and then
        rsv = 0
        if deflated and rng.random() < 0.6:
            payload = deflate_payload(payload)
            rsv = 0x40
            if rng.random() < 0.2 and payload:                      # corrupt DEFLATE data
                payload = payload[:-1] + bytes((payload[-1] ^ 0x5A,))
        elif rng.random() < 0.05:
            rsv = rng.choice((0x10, 0x20, 0x40, 0x70))              # RSV bits without extension
        kind = rng.random()
        if kind < 0.6:
            out += frame(opcode, payload, rsv=rsv, key=key)
        elif kind < 0.75:                                           # fragments, control frames between
            cut = sorted(rng.randint(0, len(payload)) for _ in range(rng.randint(1, 3)))
            parts = [payload[a:b] for a, b in zip([0, *cut], [*cut, len(payload)])]
            for i, part in enumerate(parts):
                out += frame(opcode if i == 0 else 0, part, fin=i == len(parts) - 1,
                             rsv=rsv if i == 0 else 0, key=key)
                if rng.random() < 0.3:
                    out += frame(9, rng.randbytes(rng.randint(0, 125)), key=key)
        elif kind < 0.85:                                           # lengths that lie or waste bytes
            out += frame(opcode, payload, key=key, length=rng.choice((len(payload) + 1, max(0, len(payload) - 1),
                                                                      2**63 + 5, 2**31, 126)),
                         width=rng.choice((None, 16, 64)))
        elif kind < 0.95:                                           # control frames, good and bad
            op = rng.choice((8, 9, 10, 11, 15, 3))
            body = rng.choice((b"", b"\x03\xe8", b"\x03\xe8bye", b"\x00\x01", b"\x03", b"\x03\xe8\xff",
                               rng.randbytes(126)))
            out += frame(op, body, fin=rng.random() < 0.9, key=key)
        else:
            out += rng.randbytes(rng.randint(1, 64))                # noise
    return bytes(out)


def stream_for(rng: random.Random) -> list[bytes]:
    """What one bad client sends, already cut into the pieces it sends them in."""
    path = rng.choice(PATHS) if rng.random() < 0.95 else "/nowhere"
    deflate = path == "/echo_deflate" or rng.random() < 0.1
    data = handshake(path, rng, deflate=deflate) if rng.random() < 0.95 else rng.randbytes(rng.randint(1, 200))
    if rng.random() < 0.9:
        data += frames_for(rng, path, deflate and path == "/echo_deflate")
    cuts = sorted({rng.randrange(len(data)) for _ in range(rng.choice((0, 1, 3, 10, 40)))} | {0, len(data)})
    return [data[a:b] for a, b in zip(cuts, cuts[1:]) if b > a]


# ---------------------------------------------------------------------- one batch

def run_batch(port: int, rng: random.Random, connections: int, answers: Counter) -> tuple[int, int]:
    """Open the sockets, send every stream interleaved, read what comes back, close; (connections,
    bytes sent). `answers` counts the HTTP status each connection got ("none": closed unanswered)."""
    sel = selectors.DefaultSelector()
    pending: dict[socket.socket, list[bytes]] = {}
    first: dict[socket.socket, bytes] = {}
    sent = 0
    for _ in range(connections):
        s = socket.socket()
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            s.connect(("127.0.0.1", port))
        except OSError:
            s.close()
            continue
        s.setblocking(False)
        pending[s] = stream_for(rng)
        sel.register(s, selectors.EVENT_READ)
    deadline = time.monotonic() + BATCH_WINDOW
    while time.monotonic() < deadline:
        busy = False
        for s, pieces in pending.items():
            if pieces and rng.random() < 0.7:
                busy = True
                try:
                    n = s.send(pieces[0])
                    sent += n
                    pieces[0] = pieces[0][n:]
                    if not pieces[0]:
                        pieces.pop(0)
                except (BlockingIOError, InterruptedError):
                    pass
                except OSError:
                    pieces.clear()       # the server closed it: that is an answer too
        for key, _ in sel.select(0.005 if busy else 0.05):
            try:
                got = key.fileobj.recv(65536)
                first.setdefault(key.fileobj, got[:12])
                if not got:
                    sel.unregister(key.fileobj)
            except (BlockingIOError, InterruptedError):
                pass
            except OSError:
                sel.unregister(key.fileobj)
        if not busy and not sel.get_map():
            break
    for s in pending:
        head = first.get(s, b"")
        answers[head[9:12].decode("latin-1") if head.startswith(b"HTTP/1.1 ") else "none"] += 1
        if rng.random() < 0.3:   # RST instead of FIN
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.close()
    sel.close()
    return len(pending), sent


# ---------------------------------------------------------------------- the driver

def fuzz_codec(pure_python: bool, seconds: float, seed: int, connections: int,
               only_batch: int | None) -> bool:
    codec = "python" if pure_python else "c"
    folder = Path(tempfile.mkdtemp(prefix=f"lapps-live-{codec}-"))
    server = start_server(folder, pure_python)
    proc, port = server.proc, server.port
    ok = True
    try:
        try:
            server.wait_until(lambda: probe(port) is None, 10, interval=0.1)
        except ServerNotReady as e:
            print(f"== live/{codec}: the server did not start: {str(e)[-3000:]}")
            return False
        pid = worker_pid(proc)
        batches = conns = nbytes = 0
        answers: Counter = Counter()
        started = time.monotonic()
        batch = only_batch if only_batch is not None else 0
        while True:
            n, b = run_batch(port, random.Random(f"{seed}:{batch}"), connections, answers)
            batches, conns, nbytes = batches + 1, conns + n, nbytes + b
            why = probe(port)
            now_pid = worker_pid(proc)
            text = server.log()
            bad = [line for line in text.splitlines() if BAD_LOG.search(line)]
            if why is not None or now_pid != pid or bad:
                ok = False
                print(f"== live/{codec}: INVARIANT BROKEN after batch {batch} (seed {seed}): "
                      f"probe: {why or 'echoed'}; worker pid {pid} -> {now_pid}")
                print("\n".join(bad[:10]))
                print(f"server log (tail):\n{text[-4000:]}")
                print(f"replay: {sys.executable} fuzz/live.py --codec {codec} --seed {seed} --batch {batch}")
                break
            batch += 1
            if only_batch is not None or time.monotonic() - started >= seconds:
                break
        elapsed = time.monotonic() - started
        print(f"== live/{codec}: {batches} batches, {conns} connections ({conns / max(elapsed, 1e-9):.0f}/s), "
              f"{nbytes} bytes sent, {elapsed:.1f} s, {'clean' if ok else 'FAILED'}; answers: "
              + ", ".join(f"{k} {v}" for k, v in sorted(answers.items())), flush=True)
    finally:
        server.stop(5)
        shutil.rmtree(folder, ignore_errors=True)
    return ok


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=20, help="total time, split between the codecs (default 20)")
    ap.add_argument("--seed", type=int, default=None, help="batch seed (default: random, printed)")
    ap.add_argument("--codec", choices=("both", "c", "python"), default="both",
                    help="the C extension, the pure-Python path (LAPPS_NO_SPEEDUPS=1), or both")
    ap.add_argument("--connections", type=int, default=32, help="bad clients per batch (default 32)")
    ap.add_argument("--batch", type=int, default=None, help="run this one batch only (a replay)")
    args = ap.parse_args(argv)
    seed = args.seed if args.seed is not None else random.randrange(1 << 31)
    codecs = {"both": (False, True), "c": (False,), "python": (True,)}[args.codec]
    print(f"== live: seed {seed}, {args.connections} connections per batch, codecs: {args.codec}", flush=True)
    results = [fuzz_codec(pure, args.seconds / len(codecs), seed, args.connections, args.batch) for pure in codecs]
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
