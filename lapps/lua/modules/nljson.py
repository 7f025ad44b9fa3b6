"""The `nljson` module: JSON and CBOR for Lua services, on plain Lua tables.

The original LAppS wrapped nlohmann::json in userdata; here decoded documents are plain
Lua tables (DESIGN §3 "Values between Lua and the protocol"), so a service indexes them
directly and hands them to `ws:send` as they are. The conversion rules are those of
`LuaValues`: JSON null is `nljson.null`, an empty table encodes as an array,
`nljson.object()` makes an empty table that encodes as a map.

| function | does |
|---|---|
| `decode(s)` | JSON text -> Lua value (a table for arrays and objects) |
| `decode_file(path)` | the same, from a file in the service's own directory |
| `encode(v)` | Lua value -> compact JSON, keys sorted |
| `encode_pretty(v[, indent])` | the same, indented (2 by default; 0 is compact) |
| `to_cbor(v)` / `from_cbor(s)` | Lua value <-> one CBOR data item |
| `find(t, key)` | `t[key]` or nil: a map's key (a number meaning its string form) or an array's 1-based index |
| `foreach(t, fn)` | `fn(key, value)` per entry, array entries first and in order |
| `traverse(t, fn)` | `fn(key, value)` for every entry at every depth, children before their container |
| `erase(t, key)` | remove a map's key, or an array's entry at a 0-based position (the original's); true/false |
| `empty(v)` | true for nil, `null` and empty tables; false otherwise |
| `typename(v)` | "null", "object", "array", "string", "number", "boolean" |
| `null`, `object()` | the null sentinel; a new empty table that encodes as {} |

Decoded containers carry the runtime's OBJECT or ARRAY metatable (values.py): on an object a
number key means its string form (`t[5]` is `t["5"]`), and `tostring` of either is its JSON
text, as the original's userdata did (DESIGN §8).

Decisions:
- `encode` refuses NaN and ±inf (JSON has no such numbers; nlohmann silently wrote null),
  and a string that is not UTF-8 (JSON text is Unicode). CBOR carries both.
- `decode` refuses the `NaN`/`Infinity` literals Python's json would accept, and
  integers beyond 64 bits (a Lua number cannot be made from them).
- Keys are sorted in JSON output, as nlohmann's std::map-backed objects were, so that
  one table always encodes to one text; CBOR keeps the table's own order.
- `decode_file` reads only below the service directory (symlinks resolved first) and at
  most `MAX_FILE_BYTES`.
- Errors are Lua errors raised at the caller's line: `nljson.decode: invalid JSON at line
  1 column 5: Expecting value`.
- `find`, `foreach`, `erase`, `empty` and `typename` run in Lua: on plain tables they need
  no Python.
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Any, Callable

import cbor2

from ..values import MAX_DEPTH, LuaValues

MAX_FILE_BYTES = 64 * 1024 * 1024   # decode_file refuses larger files (the default Lua heap cap)

_MODULE = (Path(__file__).parent / "nljson.lua").read_bytes()


class _Refused(ValueError):
    """A call that cannot be done; the message becomes the Lua error."""


def install_nljson(lua: Any, values: LuaValues, directory: str | None = None) -> Any:
    """Build the `nljson` module table in `lua`, converting with `values`.

    `directory` is the service's own folder: `decode_file` reads paths relative to it and
    nothing outside it (without one, `decode_file` refuses every path). The caller sets
    the returned table as the global `nljson`.
    """
    base = os.path.realpath(directory) if directory is not None else None
    to_lua, from_lua = values.to_lua, values.from_lua

    def decode(text: bytes) -> Any:
        return to_lua(_loads(text, "invalid JSON"))

    def decode_file(name: bytes) -> Any:
        path = os.fsdecode(name)
        if base is None:
            raise _Refused("this service has no directory to read files from")
        full = os.path.realpath(os.path.join(base, path))
        if os.path.commonpath([base, full]) != base:
            raise _Refused(f"{path!r} is outside the service directory")
        try:
            with open(full, "rb") as f:
                data = f.read(MAX_FILE_BYTES + 1)
        except OSError as e:
            raise _Refused(f"cannot read {path!r}: {e.strerror}") from None
        if len(data) > MAX_FILE_BYTES:
            raise _Refused(f"{path!r} is larger than {MAX_FILE_BYTES} bytes")
        return to_lua(_loads(data, f"invalid JSON in {path!r}"))

    def encode(value: Any, indent: int | None = None) -> bytes:
        data = from_lua(value)
        try:
            if indent:
                text = json.dumps(data, ensure_ascii=False, allow_nan=False, sort_keys=True,
                                  indent=indent, separators=(",", ": "))
            else:
                text = json.dumps(data, ensure_ascii=False, allow_nan=False, sort_keys=True,
                                  separators=(",", ":"))
        except ValueError:
            raise _Refused("NaN and infinity cannot be encoded as JSON") from None
        except TypeError:
            # from_lua leaves only one type json refuses: bytes, a string not in UTF-8
            raise _Refused("a string that is not valid UTF-8 cannot be encoded as JSON "
                           "(to_cbor can carry it)") from None
        return text.encode()

    def to_cbor(value: Any) -> bytes:
        return cbor2.dumps(from_lua(value))

    def from_cbor(data: bytes) -> Any:
        fp = io.BytesIO(data)
        try:
            obj = cbor2.CBORDecoder(fp, max_depth=MAX_DEPTH).decode()
        except cbor2.CBORDecodeError as e:
            raise _Refused(f"invalid CBOR: {e}") from None
        if fp.tell() != len(data):
            raise _Refused(f"invalid CBOR: {len(data) - fp.tell()} bytes after the data item")
        return to_lua(obj)

    return lua.execute(_MODULE, _protected("decode", decode),
                       _protected("decode_file", decode_file), _protected("encode", encode),
                       _protected("encode_pretty", encode), _protected("to_cbor", to_cbor),
                       _protected("from_cbor", from_cbor), values.null, values.make_object,
                       values.object_marker, values.array_marker, name="=nljson")


def _protected(name: str, fn: Callable[..., Any]) -> Callable[..., tuple[bool, Any]]:
    # The Lua side raises the error at the caller's line: a Python exception would
    # reach the service as a Python traceback instead of its own file:line.
    prefix = f"nljson.{name}: "

    def call(*args: Any) -> tuple[bool, Any]:
        try:
            return True, fn(*args)
        except ValueError as e:     # _Refused, and the converters' ValueErrors
            return False, (prefix + str(e)).encode()
    return call


def _reject_constant(name: str) -> Any:
    raise _Refused(f"{name} is not a JSON value")


def _loads(data: bytes, what: str) -> Any:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise _Refused(f"{what}: not valid UTF-8 at byte {e.start}") from None
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as e:
        raise _Refused(f"{what} at line {e.lineno} column {e.colno}: {e.msg}") from None
    except RecursionError:
        raise _Refused(f"{what}: nested too deeply") from None
