"""Shared vectors and helpers for the Sans-I/O WebSocket tests (tests/test_frames.py,
tests/test_handshake.py, tests/test_protocol.py, tests/test_protocol_properties.py).

Everything here is deterministic: client frames carry an explicit mask key, random
split points come from a seeded generator, so a failing test replays the same bytes.

    proto = ServerProtocol()
    feed(proto, upgrade_request(), "random")       # or "whole", "bytewise"
    proto.accept()
    status, headers, rest = parse_http_response(proto.out)   # 101, frames after it in rest
    proto.out.clear()
    feed(proto, client_frame(Opcode.PING, b"hi"), "bytewise")
    assert parse_frames(proto.out) == [Frame(Opcode.PONG, True, b"hi")]
"""

from __future__ import annotations

import random
from typing import NamedTuple

from lapps.ws.constants import Opcode
from lapps.ws.protocol import EV_REQUEST, ServerProtocol

SAMPLE_KEY = "dGhlIHNhbXBsZSBub25jZQ=="            # RFC 6455 §1.3
SAMPLE_ACCEPT = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="      # its Sec-WebSocket-Accept
MASK_KEY = b"\x37\xfa\x21\x3d"                     # RFC 6455 §5.7 example key

MODES = ("whole", "bytewise", "random")
"""The three chunkings every vector is replayed under."""

_DEFAULT_HEADERS = (
    ("Host", "server.example.com"),
    ("Upgrade", "websocket"),
    ("Connection", "Upgrade"),
    ("Sec-WebSocket-Key", SAMPLE_KEY),
    ("Sec-WebSocket-Version", "13"),
)

DROP = object()
"""Pass as a header's value to `upgrade_request` to leave that header out."""


def upgrade_request(target: str = "/chat", method: str = "GET", version: str = "HTTP/1.1",
                    headers: dict | None = None, extra: list[tuple[str, str]] | tuple = (),
                    eol: bytes = b"\r\n") -> bytes:
    """A request head that is a valid RFC 6455 upgrade unless told otherwise.

    `headers` overrides default headers by name (case-insensitive match, the override's
    spelling is used); a value of `DROP` removes the header. `extra` appends fields as
    given (duplicates allowed). `eol` replaces every CRLF, including the blank line.
    """
    overrides = {k.lower(): (k, v) for k, v in (headers or {}).items()}
    fields: list[tuple[str, str]] = []
    for name, value in _DEFAULT_HEADERS:
        if name.lower() in overrides:
            name, value = overrides.pop(name.lower())
        if value is not DROP:
            fields.append((name, value))
    fields.extend((k, v) for k, v in overrides.values() if v is not DROP)
    fields.extend(extra)
    lines = [f"{method} {target} {version}".encode("latin-1")]
    lines += [f"{k}: {v}".encode("latin-1") for k, v in fields]
    return eol.join(lines) + eol + eol


def client_frame(opcode: int, payload: bytes = b"", fin: bool = True, rsv: int = 0,
                 mask_key: bytes = MASK_KEY, masked: bool = True, length: int | None = None,
                 length_bits: int | None = None) -> bytes:
    """A client frame with an explicit mask key, built by hand (not with lapps.ws.frames).

    `rsv` is ORed into the first byte (0x40/0x20/0x10). `length` overrides the declared
    payload length (the payload is still appended as given); `length_bits` forces the
    7/16/64-bit length encoding, which lets tests build non-minimal lengths.
    """
    n = len(payload) if length is None else length
    if length_bits is None:
        length_bits = 7 if n < 126 else (16 if n < 65536 else 64)
    b0 = (0x80 if fin else 0) | rsv | opcode
    m = 0x80 if masked else 0
    if length_bits == 7:
        head = bytes((b0, m | n))
    elif length_bits == 16:
        head = bytes((b0, m | 126)) + n.to_bytes(2, "big")
    else:
        head = bytes((b0, m | 127)) + n.to_bytes(8, "big")
    if not masked:
        return head + payload
    return head + mask_key + naive_mask(payload, mask_key)


def close_frame(code: int | None = None, reason: bytes = b"", mask_key: bytes = MASK_KEY) -> bytes:
    """A masked client close frame; `code=None` gives an empty payload."""
    payload = b"" if code is None else code.to_bytes(2, "big") + reason
    return client_frame(Opcode.CLOSE, payload, mask_key=mask_key)


def naive_mask(data: bytes, key: bytes, offset: int = 0) -> bytes:
    """Per-byte XOR of RFC 6455 §5.3: the reference `lapps.ws.frames.mask` is checked against."""
    return bytes(b ^ key[(i + offset) % 4] for i, b in enumerate(data))


def split_points(n: int, rng: random.Random) -> list[int]:
    """Sorted cut positions in 1..n-1 (possibly none), as a stream would cut n bytes."""
    if n < 2:
        return []
    k = rng.randint(1, min(n - 1, 12))
    return sorted(rng.sample(range(1, n), k))


def chunks(data: bytes, mode: str, seed: int = 0) -> list[bytes]:
    """`data` cut as `mode` says: "whole", "bytewise" or "random" (seeded split points)."""
    if mode == "whole":
        return [data] if data else []
    if mode == "bytewise":
        return [data[i:i + 1] for i in range(len(data))]
    if mode == "random":
        cuts = [0] + split_points(len(data), random.Random(seed)) + [len(data)]
        return [data[a:b] for a, b in zip(cuts, cuts[1:]) if b > a]
    raise ValueError(f"unknown feed mode {mode!r}")


def feed(proto: ServerProtocol, data: bytes, mode: str, seed: int = 0) -> None:
    """Feed `data` to `proto` whole, byte by byte, or at seeded random split points."""
    for piece in chunks(data, mode, seed):
        proto.receive_data(piece)


def opened(mode: str = "whole", request: bytes | None = None, **accept_kwargs) -> ServerProtocol:
    """A protocol past a valid handshake and `accept()`, with `out` and `events` cleared."""
    proto = ServerProtocol()
    feed(proto, upgrade_request() if request is None else request, mode)
    assert [k for k, _ in proto.events] == [EV_REQUEST], proto.events
    proto.accept(**accept_kwargs)
    status, _, rest = parse_http_response(proto.out)
    assert status == 101 and rest == b"", (status, rest)
    proto.out.clear()
    proto.events.clear()
    return proto


# ---------------------------------------------------------------------- reading `out`

class Frame(NamedTuple):
    opcode: int
    fin: bool
    payload: bytes
    rsv: int = 0


class FrameError(ValueError):
    """`out` does not hold well-formed server frames."""


def parse_frames(data: bytes | bytearray, allow_partial: bool = False) -> list[Frame]:
    """Split the server's output into frames. Server frames must be unmasked and use
    the minimal length encoding; trailing bytes that are not a whole frame raise unless
    `allow_partial`."""
    data = bytes(data)
    frames: list[Frame] = []
    pos = 0
    while pos < len(data):
        if len(data) - pos < 2:
            break
        b0, b1 = data[pos], data[pos + 1]
        if b1 & 0x80:
            raise FrameError(f"masked server frame at offset {pos}")
        n = b1 & 0x7F
        hlen = 2
        if n == 126:
            if len(data) - pos < 4:
                break
            n = int.from_bytes(data[pos + 2:pos + 4], "big")
            hlen = 4
            if n < 126:
                raise FrameError(f"non-minimal 16-bit length at offset {pos}")
        elif n == 127:
            if len(data) - pos < 10:
                break
            n = int.from_bytes(data[pos + 2:pos + 10], "big")
            hlen = 10
            if n < 65536 or n >> 63:
                raise FrameError(f"bad 64-bit length at offset {pos}")
        if len(data) - pos - hlen < n:
            break
        frames.append(Frame(b0 & 0x0F, bool(b0 & 0x80), data[pos + hlen:pos + hlen + n], b0 & 0x70))
        pos += hlen + n
    if pos != len(data) and not allow_partial:
        raise FrameError(f"{len(data) - pos} trailing bytes are not a whole frame")
    return frames


def parse_close(payload: bytes) -> tuple[int | None, bytes]:
    """(code, raw reason) of a close frame payload; (None, b"") when empty."""
    if not payload:
        return None, b""
    if len(payload) < 2:
        raise FrameError("1-byte close payload from the server")
    return int.from_bytes(payload[:2], "big"), payload[2:]


def messages(frames: list[Frame]) -> list[tuple[int, bytes]]:
    """Reassemble data frames into (opcode, payload) messages; control frames are skipped."""
    out: list[tuple[int, bytes]] = []
    current: tuple[int, list[bytes]] | None = None
    for f in frames:
        if f.opcode & 0x08:
            continue
        if f.opcode != Opcode.CONTINUATION:
            if current is not None:
                raise FrameError("new message inside a fragmented one")
            current = (f.opcode, [])
        elif current is None:
            raise FrameError("continuation without a message")
        current[1].append(f.payload)
        if f.fin:
            out.append((current[0], b"".join(current[1])))
            current = None
    return out


def parse_http_response(data: bytes | bytearray) -> tuple[int, list[tuple[str, str]], bytes]:
    """(status, [(lower-case name, value)], bytes after the head and its body).

    The status comes from the status line `HTTP/1.1 NNN phrase`; a `Content-Length`
    body is skipped, so `rest` is what follows the response (frames after a 101).
    """
    data = bytes(data)
    end = data.find(b"\r\n\r\n")
    if end < 0:
        raise ValueError(f"no complete HTTP response head in {data[:200]!r}")
    lines = data[:end].decode("latin-1").split("\r\n")
    version, status, *_ = lines[0].split(" ", 2)
    if version != "HTTP/1.1" or len(status) != 3 or not status.isdigit():
        raise ValueError(f"malformed status line {lines[0]!r}")
    headers = []
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep:
            raise ValueError(f"malformed response header {line!r}")
        headers.append((name.strip().lower(), value.strip()))
    rest = data[end + 4:]
    length = [int(v) for k, v in headers if k == "content-length"]
    if length:
        if len(rest) < length[0]:
            raise ValueError("response body shorter than its Content-Length")
        rest = rest[length[0]:]
    return int(status), headers, rest


def header_values(headers: list[tuple[str, str]], name: str) -> list[str]:
    return [v for k, v in headers if k == name.lower()]


def closing_frame(proto: ServerProtocol) -> Frame:
    """The last frame in `proto.out`, asserted to be the one close frame there."""
    frames = parse_frames(proto.out)
    closes = [f for f in frames if f.opcode == Opcode.CLOSE]
    assert len(closes) == 1, frames
    assert frames[-1].opcode == Opcode.CLOSE, frames
    return frames[-1]
