"""The LAppS protocol (DESIGN §4): message classification and validation, no I/O.

Theory of operation. A `protocol = "lapps"` service receives one CBOR data item per binary
WebSocket message. The IO worker hands the payload to `decode_message`, which either returns
`(msg_type, message)` — `message` being the decoded map that becomes the Lua table given to
`onMessage(handler, msg_type, message)` — or raises `LappsError`, which the worker answers
itself with `encode(error_response(err.code, err.message, err.data))` without calling Lua.
Going the other way, a service's `ws:send(handler, table)` / `bcast:send(id, table)` is checked
by `validate_outgoing` (a `ValueError` becomes Lua's `false, reason`) and serialized by `encode`.

What reaches Lua is plain JSON-like data: null, booleans, 64-bit integers, floats, text, bytes
(they reach Lua as strings, like text), arrays and maps. Everything else is refused here:

* PARSE_ERROR (-32700) when the bytes are not one CBOR item the decoder accepts: malformed or
  truncated CBOR, bytes after the item, nesting deeper than `max_depth`, invalid UTF-8, any
  CBOR tag (datetimes, bignums, sets, shared references that build cycles, string references,
  self-describe 55799, unknown tags: there is no Lua value for them, and tags 28/29 can make a
  cyclic structure), a duplicate map key, and a map key that is neither text nor bytes
  (anywhere in the item: keys that are arrays or maps would be hashed, and crafted hash
  collisions make one message cost quadratic time, so cbor2 refuses them before hashing).
* INVALID_REQUEST (-32600) when the item decodes but is not a request or client notification:
  not a map, a bytes key or an unknown key at the top level (typos are caught, the original
  ignored extra keys), a bad `lapps`/`method`/`params`/`cid`, or params that hold CBOR
  `undefined`, a simple value, or an integer outside the signed 64-bit range.

Length bombs (a header claiming 2**62 items or bytes, indefinite items never terminated) cost
nothing: cbor2 6 allocates as bytes arrive, so they end at the end of the input.

Everything here runs once per message: type checks are `type(x) is T`, and the only objects
made per message are the ones cbor2 makes (plus one BytesIO per call; the decoder is reused).
Requires cbor2 >= 6.3 (`strict_hashable_types`, `allow_duplicate_keys`).
"""

from __future__ import annotations

import io
import math
import struct
from collections.abc import Iterator, Mapping
from typing import Any

import cbor2

from lapps.ws.codec import NATIVE

if not hasattr(cbor2.CBORDecoder, "strict_hashable_types"):   # pragma: no cover
    raise ImportError("lapps.lapps_protocol needs cbor2 >= 6.3 (CBORDecoder strict_hashable_types)")

__all__ = [
    "LappsError", "PARSE_ERROR", "INVALID_REQUEST", "METHOD_NOT_FOUND", "INVALID_PARAMS",
    "INTERNAL_ERROR", "NOTIFICATION", "NOTIFICATION_WITH_PARAMS", "REQUEST", "REQUEST_WITH_PARAMS",
    "decode_message", "error_response", "validate_outgoing", "encode", "encode_answer",
    "encode_answer_python",
]

# JSON-RPC 2.0 error codes (-32000..-32099 are free for server errors). Plain ints, not an
# IntEnum: they go into CBOR and into Lua, where an enum member would be a foreign object.
PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603

# msg_type handed to Lua's onMessage(handler, msg_type, message); plain ints for the same reason.
NOTIFICATION = 1               # client notification (has `cid`), no params or `params: []`
NOTIFICATION_WITH_PARAMS = 2
REQUEST = 3                    # request on channel 0 (no `cid`), no params or `params: []`
REQUEST_WITH_PARAMS = 4

_INT64_MIN = -(1 << 63)
_INT64_MAX = (1 << 63) - 1
_REQUEST_KEYS = frozenset(("lapps", "method", "params", "cid"))
_OUTGOING_KEYS = frozenset(("cid", "status", "result", "error", "message"))
_ERROR_KEYS = frozenset(("code", "message", "data"))
_MISSING = object()


class LappsError(Exception):
    """An error the server answers itself, without calling Lua.

    `code` is the JSON-RPC code (PARSE_ERROR or INVALID_REQUEST from `decode_message`),
    `message` says precisely what was wrong, `data` is optional extra detail (None: omitted).
    Answer it with `encode(error_response(err.code, err.message, err.data))`.
    """

    def __init__(self, code: int, message: str, data: object = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data

    def __repr__(self) -> str:
        return f"LappsError({self.code}, {self.message!r})"


# --- decoding -------------------------------------------------------------------------------

class _TagRefused(Exception):
    """Raised from inside cbor2 for every tag; cbor2 chains it to its CBORDecodeError."""


def _refuse_tag(value: object, immutable: bool) -> object:
    # Called with the tag's decoded content; which tag it was is read off the decoder's error.
    raise _TagRefused


class _EveryTag(Mapping):
    """A `semantic_decoders` mapping that answers every tag number with `_refuse_tag`.

    cbor2 consults `semantic_decoders` for each tag before its built-in decoders, so this
    turns off all of them (datetime, bignum, decimal, set, shared and string references,
    ...) at no cost to messages without tags. `tag_hook` covers tags cbor2 does not know.
    """

    __slots__ = ()

    def __getitem__(self, tag: int) -> object:
        return _refuse_tag

    def __contains__(self, tag: object) -> bool:
        return True

    def __iter__(self) -> Iterator[int]:
        return iter(())

    def __len__(self) -> int:
        return 0


_EVERY_TAG = _EveryTag()


def _parse_error(exc: cbor2.CBORDecodeError) -> LappsError:
    text = str(exc)
    if isinstance(exc.__cause__, _TagRefused):     # text is cbor2's "error decoding semantic tag N"
        text = f"CBOR tags are not accepted ({text})"
    return LappsError(PARSE_ERROR, "parse error: " + text)


def _new_decoder(max_depth: int) -> cbor2.CBORDecoder:
    return cbor2.CBORDecoder(io.BytesIO(), max_depth=max_depth, semantic_decoders=_EVERY_TAG,
                             tag_hook=_refuse_tag, strict_hashable_types=True, allow_duplicate_keys=False)


# One decoder per depth limit, reused: making one (its options parsed, its state set up) cost
# more than the decode of a small message. A decoder holds no state from one item to the next
# here (tags, the only thing that would leave some, are refused).
_decoders: dict[int, cbor2.CBORDecoder] = {}


def decode_message(data: bytes | bytearray | memoryview, max_depth: int = 32) -> tuple[int, dict]:
    """Decode one binary WebSocket message (one CBOR item) and classify it.

    Returns `(msg_type, message)`: `msg_type` is NOTIFICATION(1), NOTIFICATION_WITH_PARAMS(2),
    REQUEST(3) or REQUEST_WITH_PARAMS(4) (`params: []` counts as without params, as in the
    original); `message` is the decoded map, keys `lapps`, `method`, optional `params` (a list)
    and optional `cid`. `lapps` and `cid` are ints in it even when the client sent the
    float64 forms (see `_classify`). `max_depth` bounds container nesting, the message map
    being depth 1 and `params` depth 2.

    Raises LappsError(PARSE_ERROR) or LappsError(INVALID_REQUEST), see the module docstring;
    nothing else for any input (hypothesis-tested).
    """
    fp = io.BytesIO(data)
    decoder = _decoders.get(max_depth)
    if decoder is None:
        decoder = _decoders[max_depth] = _new_decoder(max_depth)
    decoder.fp = fp
    try:
        message = decoder.decode()
    except cbor2.CBORDecodeError as exc:
        del _decoders[max_depth]   # a fresh one next time: nothing of a failed decode lingers
        raise _parse_error(exc) from None
    # the item must end the message: nothing may follow it (asked of the stream's position,
    # not by reading on: an exception per good message would cost more than the decode)
    if fp.tell() != len(data):
        raise LappsError(PARSE_ERROR, "parse error: bytes follow the CBOR item")
    return _classify(message), message


def _invalid(text: str) -> LappsError:
    return LappsError(INVALID_REQUEST, "invalid request: " + text)


def _classify(message: object) -> int:
    """msg_type of a decoded item, or LappsError(INVALID_REQUEST).

    Decisions: `lapps` is the integer 1, or the float 1.0 (the original compared numbers with
    nlohmann's ==, and Lua clients built on it sent every number as float64); `cid` is an
    integer, or a float with an integral value (same reason), in the signed 64-bit range. Both
    are stored back as ints. Booleans are not numbers here.
    """
    if type(message) is not dict:
        raise _invalid("a request must be a CBOR map")
    if not _REQUEST_KEYS.issuperset(message):
        raise _invalid(_unknown_key(message, _REQUEST_KEYS))
    lapps = message.get("lapps", _MISSING)
    if type(lapps) is not int or lapps != 1:
        if type(lapps) is float and lapps == 1.0:
            message["lapps"] = 1
        elif lapps is _MISSING:
            raise _invalid("lapps is missing")
        else:
            raise _invalid("lapps must be 1")
    method = message.get("method", _MISSING)
    if type(method) is not str or not method or method[0] == "_" or "." in method:
        raise _invalid(_method_problem(method))
    params = message.get("params", _MISSING)
    if params is _MISSING:
        has_params = 0
    elif type(params) is list:
        has_params = 1 if params else 0
        if has_params:
            _check_values(params)
    else:
        raise _invalid("params must be an array")
    cid = message.get("cid", _MISSING)
    if cid is _MISSING:
        return REQUEST + has_params
    if type(cid) is not int or not _INT64_MIN <= cid <= _INT64_MAX:
        if type(cid) is float and cid.is_integer() and _INT64_MIN <= cid <= _INT64_MAX:
            message["cid"] = int(cid)
        else:
            raise _invalid("cid must be an integer (64-bit)")
    return NOTIFICATION + has_params


def _unknown_key(message: Mapping, allowed: frozenset) -> str:
    for key in message:
        if key not in allowed:
            if type(key) is not str:
                return f"map keys must be text strings, not {type(key).__name__} ({key!r:.40})"
            return f"unknown key {key!r:.40} (allowed: {', '.join(sorted(allowed))})"
    raise AssertionError("no unknown key")   # only called after issuperset() said there is one


def _method_problem(method: object) -> str:
    if method is _MISSING:
        return "method is missing"
    if type(method) is not str:
        return "method must be a text string"
    if not method:
        return "method must not be empty"
    if method[0] == "_":
        return "method must not start with '_' (reserved)"
    return "method must not contain '.'"


def _check_values(params: list) -> None:
    """Refuse values in `params` that have no plain Lua counterpart.

    The decoder has already refused tags, non-text/bytes keys and excess depth; what is left
    are CBOR `undefined`, simple values and integers beyond 64 bits (CBOR has 65-bit ones).
    Iterative, one `type()` per value; containers are pushed, never recursed into.
    """
    lo, hi = _INT64_MIN, _INT64_MAX       # locals: this loop runs once per value
    stack: list | None = None             # made only when params hold a container
    container: list | dict = params
    while True:
        for value in (container if type(container) is list else container.values()):
            kind = type(value)
            if kind is str or kind is float or kind is bool or kind is bytes or value is None:
                continue
            if kind is int:
                if lo <= value <= hi:
                    continue
                raise _invalid("params hold an integer outside the signed 64-bit range")
            if kind is list or kind is dict:
                if stack is None:
                    stack = []
                stack.append(value)
                continue
            if value is cbor2.undefined:
                raise _invalid("params hold CBOR undefined (send null)")
            raise _invalid(f"params hold a CBOR simple value ({value!r:.40})")
        if not stack:
            return
        container = stack.pop()


# --- outgoing -------------------------------------------------------------------------------

def error_response(code: int, message: str, data: object = None, cid: int = 0) -> dict:
    """`{"cid": cid, "status": 0, "error": {"code": code, "message": message[, "data": data]}}`.

    `data` is left out when None. The server's own answers (LappsError) go on cid 0.
    """
    error = {"code": code, "message": message}
    if data is not None:
        error["data"] = data
    return {"cid": cid, "status": 0, "error": error}


def validate_outgoing(message: object) -> None:
    """Check a message a service sends (`ws:send(handler, table)`, `bcast:send(id, table)`).

    Raises ValueError with a short reason; returns None when the message may be sent:
    * response: `{cid: 0, status: 1, result: <array>}`;
    * error: `{cid: <int>, status: 0, error: {code: <int>, message: <str>[, data: any]}}` on
      any channel (the original's examples report errors on cid 3);
    * OON: `{cid: N, message: <array>}` with N != 0 and, optionally, `status: 1`.
    Keys other than these (top level, or in `error`) are refused, to catch typos such as
    `{cid = 0, status = 1, results = {...}}` at the send rather than in the client. Integers
    must be ints (the Lua converter turns integral Lua numbers into ints, DESIGN §3).
    Only the envelope is checked, not the payload inside result/message/data.
    """
    if type(message) is not dict:
        raise ValueError("a LAppS message must be a table (map)")
    if not _OUTGOING_KEYS.issuperset(message):
        raise ValueError(_unknown_key(message, _OUTGOING_KEYS))
    cid = message.get("cid", _MISSING)
    if cid is _MISSING:
        raise ValueError("message needs a cid")
    if type(cid) is not int or not _INT64_MIN <= cid <= _INT64_MAX:
        raise ValueError("cid must be an integer")
    status = message.get("status", _MISSING)
    if status is not _MISSING and (type(status) is not int or (status != 0 and status != 1)):
        raise ValueError("status must be 0 or 1")
    if status == 0 or "error" in message:
        _check_error_message(message, status)
    elif cid == 0:
        if status is _MISSING:
            raise ValueError("response on cid 0 needs status")
        if "message" in message:
            raise ValueError("cid 0 carries responses only: an OON needs a cid other than 0")
        _required(message, "result", list, "response on cid 0 needs a result array",
                  "result must be an array")
    else:
        if "result" in message:
            raise ValueError("result is for responses on cid 0; an OON carries message")
        if type(message.get("message")) is not list:
            raise ValueError("OON needs a message array")


def _required(message: dict, key: str, kind: type, missing: str, wrong: str) -> Any:
    """`message[key]`, which a message of its kind must have, of type `kind`; else
    ValueError(`missing` or `wrong`)."""
    value = message.get(key, _MISSING)
    if value is _MISSING:
        raise ValueError(missing)
    if type(value) is not kind:
        raise ValueError(wrong)
    return value


def _check_error_message(message: dict, status: object) -> None:
    if status is _MISSING:
        raise ValueError("error message needs status 0")
    if status != 0:
        raise ValueError("a message with error needs status 0")
    if "result" in message or "message" in message:
        raise ValueError("an error message carries no result or message")
    error = _required(message, "error", dict, "status 0 needs an error object",
                      "error must be a map {code, message[, data]}")
    if not _ERROR_KEYS.issuperset(error):
        raise ValueError("error: " + _unknown_key(error, _ERROR_KEYS))
    code = error.get("code")
    if type(code) is not int or not _INT64_MIN <= code <= _INT64_MAX:
        raise ValueError("error.code must be an integer")
    if type(error.get("message")) is not str:
        raise ValueError("error.message must be a string")


# {"cid": 0, "status": 1, "result": ...} up to the array: what cbor2 writes for that map
_REPLY_HEAD = cbor2.dumps({"cid": 0, "status": 1, "result": []})[:-1]
_PACK_DOUBLE = struct.Struct(">d").pack
_NAN, _INF, _MINUS_INF = b"\xf9\x7e\x00", b"\xf9\x7c\x00", b"\xf9\xfc\x00"   # cbor2's forms


def _head(major: int, n: int) -> bytes:
    """A CBOR item head: major type (shifted) and argument, shortest form."""
    if n < 24:
        return _SMALL_HEADS[major | n]
    if n < 0x100:
        return bytes((major | 24, n))
    if n < 0x10000:
        return bytes((major | 25,)) + n.to_bytes(2, "big")
    if n < 0x100000000:
        return bytes((major | 26,)) + n.to_bytes(4, "big")
    return bytes((major | 27,)) + n.to_bytes(8, "big")


_SMALL_HEADS = [bytes((b,)) for b in range(256)]


def encode_answer_python(values: tuple | list) -> bytes:
    """The CBOR bytes of the success answer `{cid: 0, status: 1, result: [...]}` whose result
    holds `values`, Lua scalars (bytes, int, float, bool as lupa hands them over), converted
    as `LuaValues.from_lua` converts them: bytes that are UTF-8 become text, an integral
    float in the 64-bit range an integer.

    Byte for byte what `encode` gives for that answer (tested against it), written out
    directly: the answer a service sends back to the request it serves is the most common
    message of all, and this costs a third of going through a dict and cbor2.
    `encode_answer` is this function in C where the extension is built (a fifth of its time).
    """
    parts = [_REPLY_HEAD, _head(0x80, len(values))]
    append = parts.append
    for v in values:
        t = type(v)
        if t is bytes:
            append(_head(0x60 if _utf8_valid(v) else 0x40, len(v)))
            append(v)
            continue
        if t is bool:
            append(b"\xf5" if v else b"\xf4")
            continue
        if t is float:
            if v.is_integer() and _INT64_MIN <= v <= _INT64_MAX:
                v = int(v)
            elif v != v:
                append(_NAN)
                continue
            elif math.isinf(v):
                append(_INF if v > 0 else _MINUS_INF)
                continue
            else:
                append(b"\xfb" + _PACK_DOUBLE(v))
                continue
        elif t is not int:
            raise TypeError(f"not a Lua scalar: {t.__name__}")
        append(_head(0x00, v) if v >= 0 else _head(0x20, -1 - v))
    return b"".join(parts)


def _utf8_valid_python(data: bytes) -> bool:
    try:
        data.decode("utf-8")
        return True
    except UnicodeDecodeError:
        return False


# without the extension (or with LAPPS_NO_SPEEDUPS=1: lapps/ws/codec.py) the Python twins
_utf8_valid = NATIVE.utf8_valid if NATIVE is not None else _utf8_valid_python
encode_answer = NATIVE.encode_answer if NATIVE is not None else encode_answer_python


def encode(message: dict) -> bytes:
    """The CBOR bytes of an outgoing message (one binary WebSocket message).

    `cbor2.dumps` with its defaults (not canonical): ints stay CBOR integers, finite floats
    are float64 (NaN and infinities take cbor2's 3-byte half-precision form, same value),
    bytes stay byte strings. Call `validate_outgoing` first for what a service sends.
    Raises cbor2.CBOREncodeError for what CBOR cannot carry (e.g. a cyclic table).
    """
    return cbor2.dumps(message)
