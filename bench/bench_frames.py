"""Frame codec throughput: LAppS's Sans-I/O core against python-websockets', same run.

What it measures (all in one process, no sockets, so only the codec's own cost shows):
- parse: masked client frames fed to each library's Sans-I/O server protocol, messages
  out the other side (277-byte text, the original LAppS benchmark's size; 64 KiB binary);
- serialize: one server frame queued per message;
- mask: XOR of a payload with a 4-byte key (LAppS: its C extension `_speedups.mask`, and
  the pure-Python big-int XOR used where the extension is not built; websockets: its C
  extension `speedups.apply_mask`).

Figures are ratios LAppS / websockets from alternating rounds, medians: this machine is
shared and noisy, so absolute numbers alone mean little.

    python bench/bench_frames.py [--rounds 7] [--seconds 0.3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lapps.ws.frames import encode_frame, mask, mask_python  # noqa: E402
from lapps.ws.protocol import ServerProtocol  # noqa: E402

KEY = b"\x37\xfa\x21\x3d"
REQUEST = (b"GET /echo HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")


def rate(fn: Callable[[], int], seconds: float) -> float:
    """Units per second of `fn` (which returns the units it did), run for about `seconds`."""
    done = 0
    start = time.perf_counter()
    end = start + seconds
    while True:
        done += fn()
        now = time.perf_counter()
        if now >= end:
            return done / (now - start)


def lapps_parser(stream: bytes, per_chunk: int) -> Callable[[], int]:
    proto = ServerProtocol()
    proto.receive_data(REQUEST)
    proto.events.clear()
    proto.accept()
    proto.out.clear()
    view = memoryview(stream)

    def run() -> int:
        proto.receive_data(view)
        n = len(proto.events)
        proto.events.clear()
        return n if n == per_chunk else 0
    return run


def websockets_parser(stream: bytes, per_chunk: int) -> Callable[[], int]:
    from websockets.server import ServerProtocol as WSProtocol
    proto = WSProtocol()
    proto.receive_data(REQUEST)
    req = proto.events_received()[0]
    proto.send_response(proto.accept(req))
    proto.data_to_send()
    proto.max_size = None

    def run() -> int:
        proto.receive_data(stream)
        n = len(proto.events_received())
        proto.data_to_send()
        return n if n == per_chunk else 0
    return run


def lapps_serializer(payload: bytes, batch: int) -> Callable[[], int]:
    proto = ServerProtocol()
    proto.receive_data(REQUEST)
    proto.events.clear()
    proto.accept()
    send, out = proto.send, proto.out

    def run() -> int:
        for _ in range(batch):
            send(1, payload)
        out.clear()
        return batch
    return run


def websockets_serializer(payload: bytes, batch: int) -> Callable[[], int]:
    from websockets.server import ServerProtocol as WSProtocol
    proto = WSProtocol()
    proto.receive_data(REQUEST)
    req = proto.events_received()[0]
    proto.send_response(proto.accept(req))
    text = payload.decode()
    send = proto.send_text

    def run() -> int:
        for _ in range(batch):
            send(text.encode())
        proto.data_to_send()
        return batch
    return run


def masker(fn: Callable[[bytes, bytes], bytes], size: int) -> Callable[[], int]:
    data = bytes(range(256)) * (size // 256) + bytes(size % 256)

    def run() -> int:
        fn(data, KEY)
        return size
    return run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--seconds", type=float, default=0.3, help="per measurement")
    args = ap.parse_args()
    from websockets.speedups import apply_mask

    small = b"x" * 277
    big = bytes(65536)
    batch_small = 200
    cases: list[tuple[str, str, Callable[[], int], Callable[[], int]]] = [
        ("parse 277 B text", "msg/s",
         lapps_parser(encode_frame(1, small, mask_key=KEY) * batch_small, batch_small),
         websockets_parser(encode_frame(1, small, mask_key=KEY) * batch_small, batch_small)),
        ("parse 64 KiB binary", "msg/s",
         lapps_parser(encode_frame(2, big, mask_key=KEY) * 4, 4),
         websockets_parser(encode_frame(2, big, mask_key=KEY) * 4, 4)),
        ("serialize 277 B text", "msg/s", lapps_serializer(small, batch_small),
         websockets_serializer(small, batch_small)),
    ]
    for size in (16, 277, 4096, 65536, 1 << 20):
        cases.append((f"mask {size} B", "MB/s", masker(mask, size), masker(apply_mask, size)))
    for size in (277, 65536):
        cases.append((f"mask {size} B (no C ext)", "MB/s", masker(mask_python, size), masker(apply_mask, size)))

    print(f"bench_frames: {args.rounds} alternating rounds x {args.seconds}s, medians; "
          "peer = python-websockets (C-accelerated masking)")
    print(f"{'case':24} {'LAppS':>14} {'websockets':>14} {'ratio':>7}")
    for name, unit, ours, theirs in cases:
        a, b = [], []
        for _ in range(args.rounds):
            a.append(rate(ours, args.seconds))
            b.append(rate(theirs, args.seconds))
        scale = 1e-6 if unit == "MB/s" else 1.0
        ma, mb = statistics.median(a) * scale, statistics.median(b) * scale
        print(f"{name:24} {ma:>10,.0f} {unit:<4}{mb:>10,.0f} {unit:<4}{ma / mb:>6.2f}x", flush=True)


if __name__ == "__main__":
    main()
