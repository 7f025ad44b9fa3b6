"""Python data <-> Lua tables, as DESIGN §3 "Values between Lua and the protocol" decides.

One `LuaValues` per runtime, made once after the runtime (it owns that runtime's `null`
sentinel and `object()` marker). The protocol layer calls `to_lua` on every decoded CBOR
message before `onMessage`, and `from_lua` on every table a service hands to `ws:send`,
`bcast:send` or `q:post`, so both run per message and are written for that:

- `to_lua` builds each table with one Lua call (`{...}` for a list, `table_from` for a
  dict; no per-item Lua call);
- `from_lua` walks each table once with lupa's `.items()` and decides list or dict from
  the keys it sees; only an EMPTY table costs one more Lua call (`kind`), because `{}`,
  `nljson.object()` and `nljson.null` are all empty tables and only Lua can tell them
  apart (two lupa wrappers of one Lua table are not equal in Python).

The rules (so services written for the original LAppS run unchanged):

=====================================  ===========================================
Python                                  Lua
=====================================  ===========================================
dict (str keys / int keys)              table with string keys / number keys (OBJECT)
list                                    table with keys 1..n (ARRAY)
{} (empty dict)                         a fresh `nljson.object()` table
None                                    `nljson.null` (arrays keep their length)
str                                     string (UTF-8 bytes)
bytes                                   string
bool, int, float                        boolean, number
=====================================  ===========================================

Back from Lua: keys exactly 1..n -> list; string keys -> dict; integer keys that are not
1..n -> dict with int keys; string and number keys together -> ValueError; an empty table
-> [] unless it is `nljson.object()` ({}) or `nljson.null` (None); a string -> str when it
is valid UTF-8, else bytes; an integral number -> int: lupa already hands over as int
every integral number that fits a C long (so 2**60 too, the double's exact value), and
an integral float met here gets the same treatment in the same range; NaN, ±inf and
larger integral doubles stay floats. Functions, userdata, threads ->
ValueError. Nesting deeper than `MAX_DEPTH` containers -> ValueError, and a table that
contains itself -> ValueError naming the cycle (found only once the depth limit trips, so
the common case pays nothing for it).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .runtime import lua_type

MAX_DEPTH = 64          # containers nested inside one another, the outermost counting as 1
_INT64 = 2 ** 63        # lupa hands Lua only ints that fit a C long
_MAX_VARARGS = 256      # lists up to this long are built as `{...}` (Lua's C stack holds <8000)

# Made once per runtime. `null` refuses writes and cannot be re-metatabled. Every map this
# runtime decodes, and every `object()`, shares the OBJECT metatable, every decoded list the
# ARRAY one: that is how `kind` (called for empty tables only) tells `object()` from `{}`,
# how a number key on a map means its string form (DESIGN §8), and where nljson hangs
# `tostring` (JSON text). Tables a service builds itself stay without a metatable.
# `has_repeat` runs only after the depth limit tripped, to say "cycle".
_HELPERS = (Path(__file__).parent / "values.lua").read_bytes()

_NULL, _OBJECT = b"null", b"object"


class _TooDeep(Exception):
    """Raised at the depth limit by the container `deepest`; every enclosing table adds
    itself on the way out."""

    def __init__(self, deepest: Any) -> None:
        super().__init__()
        self.path: list[Any] = [deepest]


class LuaValues:
    """Converters between Python data and the Lua tables of one runtime.

    Make one per runtime, after `new_runtime` and before the host modules (which take it).
    `null` is the sentinel that is `nljson.null`; `make_object` the Lua function behind
    `nljson.object()`; `object_marker` and `array_marker` the metatables that decoded maps
    (and `object()` tables) and decoded lists share; `object()` calls `make_object` from
    Python.
    """

    def __init__(self, lua: Any) -> None:
        self.lua = lua
        (self.null, self.make_object, self._kind, self.object_marker, self.array_marker,
         self._has_repeat, self._array, self._as_array, self._as_object,
         self.build_request) = lua.execute(_HELPERS, name="=nljson.values")
        self._table_from = lua.table_from
        self._table_type = type(lua.table())

    def object(self) -> Any:
        """A new empty Lua table that encodes as a map ({}), not as an array."""
        return self.make_object()

    # -- Python -> Lua ---------------------------------------------------------------

    def to_lua(self, obj: Any) -> Any:
        """`obj` (what cbor2/json decode) as a Lua value; containers become tables.

        Raises ValueError for nesting deeper than MAX_DEPTH or a cycle (cbor2 decodes
        shared references into real cycles), for a type Lua cannot hold (a set, a
        datetime, ...) and for an integer outside the 64-bit range (a CBOR bignum).
        Integers beyond ±2**53 arrive in Lua rounded to the nearest double: Lua numbers
        are doubles.
        """
        t = type(obj)
        if t is not dict and t is not list:
            return self._leaf_to_lua(obj)
        return self._converted(self._container_to_lua, obj, 1)

    def request_parts(self, message: dict) -> tuple:
        """The arguments of the Lua function `build_request` that make `message` (a map from
        `decode_message`) into a table; the worker passes them on to a Lua function that
        builds the table and calls onMessage with it, so the table never crosses to Python.

        `message` has been classified: `lapps` is 1, `method` a str, `params` (if any) a
        list, `cid` (if any) an int.
        """
        method = message["method"].encode()
        cid = message.get("cid")
        params = message.get("params")
        if params is None:
            return method, cid
        if len(params) > _MAX_VARARGS:
            return method, cid, self._converted(self._container_to_lua, params, 2)
        return (method, cid, True, *self._converted(self._items_to_lua, params, 2))

    def _converted(self, convert: Any, obj: Any, depth: int) -> Any:
        """`convert(obj, depth)`, its failures said as ValueError."""
        try:
            return convert(obj, depth)
        except _TooDeep as e:
            if len({id(o) for o in e.path}) < len(e.path):
                raise ValueError("data that contains itself (a cycle) cannot be "
                                 "converted to Lua") from None
            raise ValueError(f"data nested deeper than {MAX_DEPTH} levels") from None
        except OverflowError:
            # lupa refuses an int that does not fit 64 bits; say so in our words
            raise ValueError("an integer outside the 64-bit range cannot be a Lua "
                             "number") from None

    def _leaf_to_lua(self, obj: Any) -> Any:
        t = type(obj)
        if t is str:
            return obj.encode()
        if obj is None:
            return self.null
        if t is bytes or t is bool or t is float:
            return obj
        if t is int:
            if -_INT64 <= obj < _INT64:
                return obj
            raise ValueError(f"integer {obj} is outside the 64-bit range a Lua number "
                             "can be made from")
        if t is bytearray or t is memoryview:
            return bytes(obj)
        raise ValueError(f"cannot convert a Python {t.__name__} to a Lua value")

    def _container_to_lua(self, obj: Any, depth: int) -> Any:
        if depth > MAX_DEPTH:
            raise _TooDeep(obj)
        null = self.null
        try:
            if type(obj) is list:
                out = self._items_to_lua(obj, depth)
                if len(out) <= _MAX_VARARGS:
                    return self._array(*out)     # `{...}` in Lua: cheaper than table_from
                return self._as_array(self._table_from(out))
            if not obj:
                return self.make_object()
            items: dict[Any, Any] = {}
            for k, v in obj.items():
                tk = type(k)
                if tk is str:
                    k = k.encode()
                elif tk is not bytes and tk is not int:
                    raise ValueError(f"cannot use a Python {tk.__name__} as a Lua table key "
                                     "(only str, bytes and int keys)")
                t = type(v)
                if t is str:
                    items[k] = v.encode()
                elif t is int or t is bytes or t is float or t is bool:
                    items[k] = v
                elif v is None:
                    items[k] = null
                elif t is dict or t is list:
                    items[k] = self._container_to_lua(v, depth + 1)
                else:
                    items[k] = self._leaf_to_lua(v)
            return self._as_object(self._table_from(items))
        except _TooDeep as e:
            e.path.append(obj)
            raise

    def _items_to_lua(self, items: list, depth: int) -> list[Any]:
        """The items of the list `items` (at `depth`) as Lua values, in a Python list."""
        null = self.null
        out: list[Any] = []
        append = out.append
        for v in items:
            t = type(v)
            if t is str:
                append(v.encode())
            elif t is int or t is bytes or t is float or t is bool:
                append(v)
            elif v is None:
                append(null)
            elif t is dict or t is list:
                append(self._container_to_lua(v, depth + 1))
            else:
                append(self._leaf_to_lua(v))
        return out

    # -- Lua -> Python ---------------------------------------------------------------

    def from_lua(self, value: Any) -> Any:
        """The Lua `value` as Python data that cbor2 and json can encode.

        Raises ValueError naming the problem: a table with both string and number keys,
        a key of another type, a function/userdata/thread, nesting deeper than MAX_DEPTH,
        a cycle.
        """
        if type(value) is self._table_type:
            try:
                return self._table_from_lua(value, 1)
            except _TooDeep as e:
                if self._has_repeat(self._table_from(e.path)):
                    raise ValueError("a table that contains itself (a cycle) cannot be "
                                     "converted") from None
                raise ValueError(f"tables nested deeper than {MAX_DEPTH} levels") from None
        return self.leaf_from_lua(value)

    def leaf_from_lua(self, v: Any) -> Any:
        """A Lua value that is not a table, as `from_lua` converts it."""
        t = type(v)
        if t is bytes:
            try:
                return v.decode()
            except UnicodeDecodeError:
                return v
        if t is int or t is bool or t is str:
            return v
        if t is float:
            if v.is_integer() and -_INT64 <= v < _INT64:
                return int(v)
            return v
        if v is None:
            return None
        raise ValueError(f"cannot convert a Lua {_lua_type_name(v)}")

    def _table_from_lua(self, table: Any, depth: int) -> Any:
        # One pass: read as an array while the keys run 1, 2, 3, ...; at the first other
        # key, what was read moves into a dict and the pass goes on as a map.
        if depth > MAX_DEPTH:
            raise _TooDeep(table)
        table_type = self._table_type
        out: list[Any] = []
        append = out.append
        n = 0
        d: dict[Any, Any] | None = None
        str_keys = int_keys = False
        try:
            for k, v in table.items():
                t = type(v)
                if t is bytes:
                    try:
                        v = v.decode()
                    except UnicodeDecodeError:
                        pass
                elif t is table_type:
                    v = self._table_from_lua(v, depth + 1)
                elif t is float:
                    if v.is_integer() and -_INT64 <= v < _INT64:
                        v = int(v)
                elif t is not int and t is not bool and t is not str:
                    raise ValueError(f"cannot convert a Lua {_lua_type_name(v)} "
                                     f"(at key {_show_key(k)})")
                if d is None:
                    n += 1
                    if k == n and type(k) is int:
                        append(v)
                        continue
                    d = dict(zip(range(1, n), out))
                    int_keys = n > 1
                tk = type(k)
                if tk is bytes:
                    try:
                        k = k.decode()
                    except UnicodeDecodeError:
                        pass
                    str_keys = True
                elif tk is int:
                    int_keys = True
                elif tk is str:
                    str_keys = True
                else:
                    raise ValueError(f"a table key must be a string or an integer, "
                                     f"not a {_lua_type_name(k)} ({_show_key(k)})")
                d[k] = v
        except _TooDeep as e:
            e.path.append(table)
            raise
        if d is None:
            if n:
                return out
            kind = self._kind(table)    # empty: {}, nljson.object() or nljson.null
            if kind == _NULL:
                return None
            return {} if kind == _OBJECT else out
        if str_keys and int_keys:
            raise ValueError("a table mixes string keys and number keys, so it is neither "
                             f"an array (keys 1..n) nor a map (string keys): keys {_show_keys(d)}")
        if int_keys and min(d) == 1 and max(d) == len(d):
            return [d[i] for i in range(1, len(d) + 1)]    # keys 1..n, met out of order
        return d


_PY_AS_LUA = {bool: "boolean", int: "number", float: "number", bytes: "string", str: "string"}


def _lua_type_name(v: Any) -> str:
    # only for error messages. lupa hands a coroutine over as a function wrapper
    name = lua_type(v)
    if name is not None:
        return name.decode() if type(name) is bytes else name
    return _PY_AS_LUA.get(type(v)) or f"Python {type(v).__name__}"


def _show_key(k: Any) -> str:
    if type(k) is bytes:
        return repr(k.decode("utf-8", "replace"))
    return repr(k)


def _show_keys(d: dict[Any, Any], limit: int = 6) -> str:
    keys = [_show_key(k) for k in list(d)[:limit]]
    return ", ".join(keys) + (", ..." if len(d) > limit else "")
