"""The LAppS request fast path: the common request read straight into onMessage's arguments.

Nearly every message a LAppS service gets is one shape: a definite CBOR map `{lapps: 1,
method: <text>, params: [<scalars>], cid: <int>}` (params and cid optional, keys in any
order). For it, `request_args(data)` returns at once what the worker hands to Lua,
`(msg_type, method, cid[, True, *params])`, exactly what `decode_message` followed by
`LuaValues.request_parts` gives (strings as the bytes Lua holds, cid None when absent),
without cbor2's decoder, the classification of a dict, or a second walk to convert it.

For anything else it returns None, and the worker takes the full path of
lapps/lapps_protocol.py, which decides every rule (DESIGN §4): other encodings of the same
values (lapps 1.0, a float cid, float16), null, nested containers, more than 256 params,
tags, duplicate or unknown keys, invalid UTF-8, trailing bytes, any error. So the fast
path makes no decision of its own: it only recognises inputs where the answer is known.

`request_args` is the C version (`lapps.ws._speedups`), or None where the extension is not
built or is switched off (LAPPS_NO_SPEEDUPS=1: lapps/ws/codec.py): the worker then takes
the full path for every message, which computes the same arguments. `request_args_python` is
the C version's twin, the executable statement of what it recognises and returns; the tests
hold the two to each other and to the full path on any input (tests/test_lapps_fastpath.py).
In Python the twin is no faster than the full path (cbor2 is C), so it is never served.
"""

from __future__ import annotations

import struct
from collections.abc import Callable

from lapps.lapps_protocol import NOTIFICATION, REQUEST
from lapps.ws.codec import NATIVE

__all__ = ["request_args", "request_args_python", "MAX_FAST_PARAMS"]

MAX_FAST_PARAMS = 256          # lapps/lua/values.py _MAX_VARARGS: longer lists are built otherwise
_INT64_MAX = (1 << 63) - 1
_EXTRA = {24: 1, 25: 2, 26: 4, 27: 8}
_FLOAT32 = struct.Struct(">f").unpack_from
_FLOAT64 = struct.Struct(">d").unpack_from


class _NotFast(Exception):
    """The input is not of the fast shape: the full path decides."""


def _head(data: bytes, pos: int) -> tuple[int, int, int, int]:
    """(major, info, argument, position after the head) of the CBOR head at `pos`."""
    if pos >= len(data):
        raise _NotFast
    b = data[pos]
    info = b & 31
    if info < 24:
        return b >> 5, info, info, pos + 1
    extra = _EXTRA.get(info)
    if extra is None or pos + 1 + extra > len(data):
        raise _NotFast            # indefinite, reserved, or truncated
    return b >> 5, info, int.from_bytes(data[pos + 1:pos + 1 + extra], "big"), pos + 1 + extra


def _string(data: bytes, pos: int, major: int, n: int) -> tuple[bytes, int]:
    if pos + n > len(data):
        raise _NotFast
    s = data[pos:pos + n]
    if major == 3:
        try:
            s.decode("utf-8")
        except UnicodeDecodeError:
            raise _NotFast from None
    return s, pos + n


def _int(major: int, n: int) -> int:
    if n > _INT64_MAX:
        raise _NotFast
    return n if major == 0 else -1 - n


def _scalar(data: bytes, pos: int) -> tuple[object, int]:
    major, info, arg, pos = _head(data, pos)
    if major <= 1:
        return _int(major, arg), pos
    if major <= 3:
        return _string(data, pos, major, arg)
    if major == 7:
        if info == 20 or info == 21:
            return info == 21, pos
        if info == 26:
            return _FLOAT32(arg.to_bytes(4, "big"))[0], pos
        if info == 27:
            return _FLOAT64(arg.to_bytes(8, "big"))[0], pos
    raise _NotFast                # null, undefined, simple values, float16, containers, tags


def request_args_python(data: bytes | bytearray | memoryview) -> tuple | None:
    """The pure-Python twin of the C `request_args` (see the module docstring)."""
    data = bytes(data)
    try:
        major, _, n, pos = _head(data, 0)
        if major != 5 or not 2 <= n <= 4:
            return None
        seen: set[bytes] = set()
        method = cid = None
        items: list | None = None
        for _ in range(n):
            major, _, klen, pos = _head(data, pos)
            if major != 3 or pos + klen > len(data):
                return None
            key = data[pos:pos + klen]
            pos += klen
            if key in seen:
                return None
            seen.add(key)
            major, _, arg, pos = _head(data, pos)
            if key == b"lapps":
                if major != 0 or arg != 1:
                    return None
            elif key == b"method":
                if major != 3 or not arg or pos + arg > len(data) or data[pos] == 0x5F \
                        or b"." in data[pos:pos + arg]:
                    return None
                method, pos = _string(data, pos, major, arg)
            elif key == b"cid":
                if major > 1:
                    return None
                cid = _int(major, arg)
            elif key == b"params":
                if major != 4 or arg > MAX_FAST_PARAMS:
                    return None
                items = []
                for _ in range(arg):
                    value, pos = _scalar(data, pos)
                    items.append(value)
            else:
                return None
        if b"lapps" not in seen or method is None or pos != len(data):
            return None
    except _NotFast:
        return None
    msg_type = (REQUEST if cid is None else NOTIFICATION) + (1 if items else 0)
    if items is None:
        return msg_type, method, cid
    return (msg_type, method, cid, True, *items)


request_args: Callable[[bytes], tuple | None] | None = NATIVE.request_args if NATIVE is not None else None
