"""Frame encoding and payload masking.

Parsing lives in `framing.py` (both ends' one parser), where it is fused with the
connection state so that a payload is consumed as it arrives (fail-fast UTF-8, no double
buffering). This module
holds what both the server and the client side need: building frame headers and XOR
masking, both written for speed since they run once per message.
"""

from __future__ import annotations

import secrets
import struct

from .codec import NATIVE
from .constants import CloseCode, Opcode, is_valid_close_code

_PACK_H = struct.Struct("!BBH").pack
_PACK_Q = struct.Struct("!BBQ").pack


def frame_header(opcode: int, length: int, fin: bool = True, rsv1: bool = False,
                 masked: bool = False) -> bytes:
    """Header of one frame with a payload of `length` bytes, minimal length encoding.

    The mask key (if any) is not included: `encode_frame` appends it.
    """
    b0 = opcode | (0x80 if fin else 0) | (0x40 if rsv1 else 0)
    m = 0x80 if masked else 0
    if length < 126:
        return bytes((b0, m | length))
    if length < 65536:
        return _PACK_H(b0, m | 126, length)
    return _PACK_Q(b0, m | 127, length)


def mask_python(data: bytes | bytearray | memoryview, key: bytes, offset: int = 0) -> bytes:
    """XOR `data` with the 4-byte `key`, starting at byte `offset` of the key stream.

    One big-integer XOR: the interpreter does O(1) work whatever the length, and the
    C loops inside `int.from_bytes`/`int.to_bytes` do the rest. `offset` lets a payload
    that arrives in pieces be unmasked piece by piece. The C extension `_speedups.mask`
    does the same in one pass; this is the fallback where it is not built.
    """
    n = len(data)
    if not n:
        return b""
    key = bytes(key)   # the parser hands a slice of its memoryview: repeat needs bytes
    if offset & 3:
        r = offset & 3
        key = key[r:] + key[:r]
    stream = key * ((n >> 2) + 1)
    return (int.from_bytes(data, "little") ^ int.from_bytes(stream[:n], "little")).to_bytes(n, "little")


def frame_into_python(out: bytearray, opcode: int, data: bytes) -> None:
    """Append one final, unmasked, uncompressed frame carrying `data` to `out`.

    The send path of a plain reply; `_speedups.frame_into` does it in one resize and copy.
    """
    out += frame_header(opcode, len(data))
    out += data


if NATIVE is not None:
    mask, frame_into = NATIVE.mask, NATIVE.frame_into
else:   # no extension, or LAPPS_NO_SPEEDUPS=1 (codec.py)
    mask, frame_into = mask_python, frame_into_python


def encode_frame(opcode: int, payload: bytes = b"", fin: bool = True, rsv1: bool = False,
                 mask_key: bytes | None = None) -> bytes:
    """One complete frame. Servers send unmasked frames; clients pass a `mask_key`."""
    if mask_key is None:
        return frame_header(opcode, len(payload), fin, rsv1) + payload
    return frame_header(opcode, len(payload), fin, rsv1, masked=True) + mask_key + mask(payload, mask_key)


def encode_client_frame(opcode: int, payload: bytes = b"", fin: bool = True) -> bytes:
    """A masked frame with a fresh random key, as a client must send (RFC 6455 §5.3)."""
    return encode_frame(opcode, payload, fin, mask_key=secrets.token_bytes(4))


def close_payload(code: int | None, reason: str = "") -> bytes:
    """Payload of a close frame: the code as 2 bytes then the UTF-8 reason (≤ 123 bytes)."""
    if code is None:
        return b""
    raw = reason.encode("utf-8")
    if len(raw) > 123:
        raw = raw[:123].decode("utf-8", "ignore").encode("utf-8")
    return code.to_bytes(2, "big") + raw


class BadClose(Exception):
    """A received close frame that breaks the rules; `code` is what to fail with."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


def parse_close(payload: bytes) -> tuple[int, str]:
    """(code, reason) of a received close frame, CloseCode.NO_STATUS for an empty one.

    Raises BadClose with 1002 for a 1-byte payload or a code no endpoint may send, and
    with 1007 for a reason that is not UTF-8 (RFC 6455 §5.5.1, §7.4).
    """
    if not payload:
        return CloseCode.NO_STATUS, ""
    if len(payload) == 1:
        raise BadClose(CloseCode.PROTOCOL_ERROR, "close frame with a 1-byte payload")
    code = int.from_bytes(payload[:2], "big")
    if not is_valid_close_code(code):
        raise BadClose(CloseCode.PROTOCOL_ERROR, f"invalid close code {code}")
    try:
        return code, payload[2:].decode("utf-8")
    except UnicodeDecodeError:
        raise BadClose(CloseCode.INVALID_DATA, "invalid UTF-8 in close reason") from None


__all__ = ["Opcode", "BadClose", "parse_close", "frame_header", "frame_into", "frame_into_python",
           "mask", "mask_python", "encode_frame", "encode_client_frame", "close_payload"]
