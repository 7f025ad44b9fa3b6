"""Python data <-> Lua tables (lapps.lua.values, DESIGN §3 "Values between Lua and the protocol").

Round trips both ways: Python -> Lua -> Python compares in Python; Lua -> Python -> Lua
compares in Lua (two lupa wrappers of one table are not equal in Python, so identity and
structure are checked by Lua code).
"""

from __future__ import annotations

import datetime
import math
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lapps.lua.runtime import new_runtime
from lapps.lua.values import MAX_DEPTH, LuaValues

SETTINGS = settings(max_examples=300, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])

# Lua helpers: deep equality of two Lua values (null compared by identity), and a few
# probes of what a converted table looks like from the Lua side
_HELPERS = b"""
local null, new_object = ...
local function deep_equal(a, b)
  if type(a) ~= type(b) then return false end
  if type(a) ~= "table" then return a == b end
  if rawequal(a, b) then return true end
  if rawequal(a, null) or rawequal(b, null) then return false end
  for k, v in pairs(a) do
    if not deep_equal(v, b[k]) then return false end
  end
  for k in pairs(b) do
    if a[k] == nil then return false end
  end
  return true
end
return {
  deep_equal = deep_equal,
  null = null,
  object = new_object,
  len = function(t) return #t end,
  typeof = function(v) return type(v) end,
  is_null = function(v) return rawequal(v, null) end,
  get = function(t, k) return t[k] end,
  eval = function(src) return assert(loadstring("local null, object = ... return " .. src))(null, new_object) end,
}
"""


def _lua_of(runtime: Any) -> Any:
    # new_runtime returns a Runtime with `.lua` (an older version returned (lua, load))
    return runtime.lua if hasattr(runtime, "lua") else runtime[0]


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    lua = _lua_of(new_runtime("values-test", str(tmp_path_factory.mktemp("svc"))))
    values = LuaValues(lua)
    helpers = lua.execute(_HELPERS, values.null, values.make_object)
    return values, helpers


@pytest.fixture
def values(env):
    return env[0]


@pytest.fixture
def lua_(env):
    return env[1]


SAMPLE = {"cid": 0, "status": 1, "result": [1, "two", 3.5, None]}


# -- Python -> Lua -> Python -----------------------------------------------------------

def test_sample_message_round_trips(values):
    assert values.from_lua(values.to_lua(SAMPLE)) == SAMPLE


def test_to_lua_makes_tables_lua_can_read(values, lua_):
    t = values.to_lua(SAMPLE)
    assert lua_.get(t, b"cid") == 0 and lua_.get(t, b"status") == 1
    result = lua_.get(t, b"result")
    assert lua_.len(result) == 4
    assert lua_.get(result, 2) == b"two"
    assert lua_.get(result, 3) == 3.5
    assert lua_.is_null(lua_.get(result, 4))


def test_to_lua_str_becomes_lua_string_bytes_stay(values, lua_):
    assert values.to_lua("héllo") == "héllo".encode()
    assert lua_.typeof(values.to_lua("x")) == b"string"
    assert values.to_lua(b"\xff\x00") == b"\xff\x00"


def test_null_inside_array_keeps_length(values, lua_):
    t = values.to_lua([None, None, 1, None])
    assert lua_.len(t) == 4
    assert lua_.is_null(lua_.get(t, 1)) and lua_.is_null(lua_.get(t, 4))
    assert values.from_lua(t) == [None, None, 1, None]


def test_none_is_the_null_sentinel(values, lua_):
    assert lua_.is_null(values.to_lua(None))
    assert values.from_lua(values.null) is None
    assert values.from_lua(None) is None      # a Lua nil


def test_empty_list_is_empty_array_and_empty_dict_is_object(values, lua_):
    empty_list = values.to_lua([])
    empty_dict = values.to_lua({})
    assert lua_.typeof(empty_list) == b"table" and lua_.len(empty_list) == 0
    assert values.from_lua(empty_list) == []
    assert values.from_lua(empty_dict) == {}
    assert values.from_lua(values.to_lua({"a": {}, "b": []})) == {"a": {}, "b": []}


def test_bool_stays_bool_and_int_stays_int(values, lua_):
    t = values.to_lua([True, False, 1, 0])
    assert [lua_.typeof(lua_.get(t, i)) for i in (1, 2, 3, 4)] == [b"boolean"] * 2 + [b"number"] * 2
    back = values.from_lua(t)
    assert back == [True, False, 1, 0]
    assert [type(x) for x in back] == [bool, bool, int, int]


def test_int_keys_become_number_keys(values, lua_):
    t = values.to_lua({1: "a", 5: "b"})
    assert lua_.get(t, 1) == b"a" and lua_.get(t, 5) == b"b"
    assert values.from_lua(t) == {1: "a", 5: "b"}


def test_long_lists_round_trip(values, lua_):
    for n in (255, 256, 257, 1000, 10000):     # both the `{...}` and the table_from path
        t = values.to_lua(list(range(n)))
        assert lua_.len(t) == n
        assert values.from_lua(t) == list(range(n))


def test_to_lua_refuses_what_lua_cannot_hold(values):
    for bad in ({1, 2}, object(), datetime.date(2024, 1, 1), [1, {2, 3}], {"a": (1, 2)}):
        with pytest.raises(ValueError, match="cannot convert a Python"):
            values.to_lua(bad)
    with pytest.raises(ValueError, match="table key"):
        values.to_lua({(1, 2): "tuple key"})
    with pytest.raises(ValueError, match="table key"):
        values.to_lua({True: "bool key"})


def test_to_lua_refuses_integers_beyond_64_bits(values):
    for bad in (2 ** 64, [1, 2 ** 64], {"a": -(2 ** 70)}, {2 ** 64: 1}):
        with pytest.raises(ValueError, match="64-bit"):
            values.to_lua(bad)
    assert values.from_lua(values.to_lua(2 ** 53)) == 2 ** 53
    assert values.from_lua(values.to_lua(-(2 ** 53))) == -(2 ** 53)


def test_to_lua_refuses_lone_surrogates(values):
    # json.loads('"\\ud800"') makes such a str; it has no UTF-8 form
    with pytest.raises(ValueError):
        values.to_lua(["\ud800"])


def test_to_lua_depth_limit(values):
    ok: Any = 1
    for _ in range(MAX_DEPTH):
        ok = [ok]
    assert values.from_lua(values.to_lua(ok)) == ok
    with pytest.raises(ValueError, match=f"deeper than {MAX_DEPTH}"):
        values.to_lua([ok])
    with pytest.raises(ValueError, match=f"deeper than {MAX_DEPTH}"):
        values.to_lua({"a": ok})


def test_to_lua_cycle(values):
    cyclic: list[Any] = [1]
    cyclic.append(cyclic)
    with pytest.raises(ValueError, match="cycle"):
        values.to_lua(cyclic)
    d: dict[str, Any] = {}
    d["self"] = [d]
    with pytest.raises(ValueError, match="cycle"):
        values.to_lua(d)


def test_shared_python_subtrees_are_not_cycles(values):
    shared = [1, 2]
    assert values.from_lua(values.to_lua({"a": shared, "b": shared})) == {"a": [1, 2], "b": [1, 2]}


# -- Lua -> Python -> Lua ----------------------------------------------------------------

@pytest.mark.parametrize("src", [
    "{cid = 0, status = 1, result = {1, 'two', 3.5, null}}",
    "{a = {1, 2, {b = null}}, s = 'x', t = true, f = false}",
    "{null, null, null}",
    "{}",
    "{[1] = 'a', [3] = 'c'}",
    "{x = object(), y = {}}",
    "'\\255\\254'",
    "{list = {{}, {{}}, object()}}",
])
def test_lua_values_round_trip(values, lua_, src):
    t = lua_.eval(src.encode())
    assert lua_.deep_equal(t, values.to_lua(values.from_lua(t)))


def test_from_lua_reads_lua_built_tables(values, lua_):
    assert values.from_lua(lua_.eval(b"{cid = 0, status = 1, result = {1, 'two', 3.5, null}}")) == SAMPLE
    assert values.from_lua(lua_.eval(b"{1, null, 3}")) == [1, None, 3]
    assert values.from_lua(lua_.eval(b"{a = null}")) == {"a": None}


def test_empty_table_is_array_object_is_map_null_is_none(values, lua_):
    assert values.from_lua(lua_.eval(b"{}")) == []
    assert values.from_lua(lua_.eval(b"object()")) == {}
    assert values.from_lua(values.object()) == {}
    assert values.from_lua(lua_.eval(b"null")) is None
    assert values.from_lua(lua_.eval(b"{a = {}, b = object(), c = null}")) == {"a": [], "b": {}, "c": None}


def test_object_with_keys_is_a_map(values, lua_):
    t = lua_.eval(b"(function() local o = object(); o.k = 1; return o end)()")
    assert values.from_lua(t) == {"k": 1}
    # a number key on an object means its string form (DESIGN §8, the original's nljson)
    t = lua_.eval(b"(function() local o = object(); o[1] = 'x'; return o end)()")
    assert values.from_lua(t) == {"1": "x"}
    t = lua_.eval(b"(function() local t = {}; t[1] = 'x'; return t end)()")
    assert values.from_lua(t) == ["x"]     # a table the service built: its keys decide


def test_keys_one_to_n_in_any_order_make_a_list(values, lua_):
    t = lua_.eval(b"(function() local t = {}; t[3] = 'c'; t[2] = 'b'; t[1] = 'a'; return t end)()")
    assert values.from_lua(t) == ["a", "b", "c"]
    assert values.from_lua(lua_.eval(b"{[2] = 'b', [1] = 'a'}")) == ["a", "b"]


def test_sparse_integer_keys_make_an_int_keyed_dict(values, lua_):
    assert values.from_lua(lua_.eval(b"{[1] = 'a', [3] = 'c'}")) == {1: "a", 3: "c"}
    assert values.from_lua(lua_.eval(b"{[0] = 'z'}")) == {0: "z"}
    assert values.from_lua(lua_.eval(b"{[-1] = 'm', [1] = 'a'}")) == {-1: "m", 1: "a"}


def test_mixed_keys_raise(values, lua_):
    for src in (b"{1, 2, n = 2}", b"{x = 1, [5] = 2}", b"{'a', b = {c = 1, [2] = 2}}"):
        with pytest.raises(ValueError, match="mixes string keys and number keys"):
            values.from_lua(lua_.eval(src))


def test_keys_of_other_types_raise(values, lua_):
    with pytest.raises(ValueError, match="key must be a string or an integer, not a boolean"):
        values.from_lua(lua_.eval(b"{[true] = 1}"))
    with pytest.raises(ValueError, match="key must be a string or an integer"):
        values.from_lua(lua_.eval(b"{[1.5] = 1}"))
    with pytest.raises(ValueError, match="key must be a string or an integer, not a table"):
        values.from_lua(lua_.eval(b"{[{}] = 1}"))


def test_numbers(values, lua_):
    assert values.from_lua(lua_.eval(b"3")) == 3 and type(values.from_lua(lua_.eval(b"3"))) is int
    assert type(values.from_lua(lua_.eval(b"3.0"))) is int
    assert values.from_lua(lua_.eval(b"2^53")) == 2 ** 53
    assert type(values.from_lua(lua_.eval(b"-2^53"))) is int
    assert values.from_lua(lua_.eval(b"1.5")) == 1.5
    assert type(values.from_lua(lua_.eval(b"2^60"))) is int     # integral, fits 64 bits
    assert type(values.from_lua(2.0 ** 60)) is int              # the same from Python
    assert type(values.from_lua(lua_.eval(b"2^70"))) is float   # beyond 64 bits: float
    assert type(values.from_lua(lua_.eval(b"{2^70}"))[0]) is float
    assert values.from_lua(lua_.eval(b"1/0")) == math.inf
    assert values.from_lua(lua_.eval(b"-1/0")) == -math.inf
    assert math.isnan(values.from_lua(lua_.eval(b"0/0")))
    assert [type(x) for x in values.from_lua(lua_.eval(b"{1, 2.5, 1e300, 4}"))] == [int, float, float, int]


def test_strings_utf8_to_str_else_bytes(values, lua_):
    assert values.from_lua(lua_.eval(b"'h\\195\\169llo'")) == "héllo"
    assert values.from_lua(lua_.eval(b"'\\255\\254'")) == b"\xff\xfe"
    assert values.from_lua(lua_.eval(b"{k = '\\255', ['\\254'] = 'v'}")) == {"k": b"\xff", b"\xfe": "v"}
    assert values.from_lua(lua_.eval(b"{'ok', '\\192'}")) == ["ok", b"\xc0"]


def test_functions_threads_userdata_raise(values, lua_):
    with pytest.raises(ValueError, match="cannot convert a Lua function"):
        values.from_lua(lua_.eval(b"function() end"))
    with pytest.raises(ValueError, match="cannot convert a Lua function"):
        values.from_lua(lua_.eval(b"{cb = function() end}"))
    with pytest.raises(ValueError, match="cannot convert a Lua function"):
        values.from_lua(lua_.eval(b"{1, print}"))
    # lupa hands a coroutine over as a function wrapper: refused all the same
    with pytest.raises(ValueError, match="cannot convert a Lua (thread|function)"):
        values.from_lua(lua_.eval(b"{co = coroutine.create(function() end)}"))
    with pytest.raises(ValueError, match="cannot convert a Lua userdata"):
        values.from_lua(lua_.eval(b"{u = newproxy()}"))


def test_from_lua_depth_limit(values, lua_):
    deep = f"(function() local t = {{}} for i = 2, {MAX_DEPTH} do t = {{t}} end return t end)()"
    assert values.from_lua(lua_.eval(deep.encode()))   # 64 levels: fine
    with pytest.raises(ValueError, match=f"nested deeper than {MAX_DEPTH}"):
        values.from_lua(lua_.eval(f"{{{deep}}}".encode()))


def test_from_lua_cycles(values, lua_):
    for src in (b"(function() local t = {}; t.self = t; return t end)()",
                b"(function() local t = {1}; t[2] = t; return t end)()",
                b"(function() local a, b = {}, {}; a.b = b; b.list = {a}; return {root = a} end)()"):
        with pytest.raises(ValueError, match="cycle"):
            values.from_lua(lua_.eval(src))


def test_shared_lua_subtables_are_not_cycles(values, lua_):
    t = lua_.eval(b"(function() local s = {1, 2}; return {a = s, b = {s, s}} end)()")
    assert values.from_lua(t) == {"a": [1, 2], "b": [[1, 2], [1, 2]]}


def test_only_empty_tables_cost_a_kind_call(values, lua_, monkeypatch):
    calls = []
    kind = values._kind
    monkeypatch.setattr(values, "_kind", lambda t: calls.append(1) or kind(t))
    values.from_lua(lua_.eval(b"{cid = 0, status = 1, result = {1, 'two', 3.5, {x = {1, 2}}}}"))
    assert calls == []
    values.from_lua(lua_.eval(b"{a = {}, b = {null, object()}}"))
    assert len(calls) == 3


# -- the null sentinel -----------------------------------------------------------------------

def test_null_sentinel_behaviour(values, lua_):
    assert lua_.eval(b"tostring(null)") == b"null"
    assert lua_.eval(b"getmetatable(null)") == b"nljson.null"
    assert lua_.eval(b"select(2, pcall(function() null.x = 1 end))").endswith(b"nljson.null is read-only")
    assert lua_.eval(b"(pcall(setmetatable, null, {}))") is False
    assert lua_.eval(b"next(null) == nil")


# -- properties ----------------------------------------------------------------------------

_json_leaf = (st.none() | st.booleans()
              | st.integers(min_value=-(2 ** 53), max_value=2 ** 53)
              | st.floats(allow_nan=False)
              | st.text(st.characters(blacklist_categories=("Cs",)))
              | st.binary(max_size=8))
_json_like = st.recursive(
    _json_leaf,
    lambda inner: st.lists(inner, max_size=6)
    | st.dictionaries(st.text(st.characters(blacklist_categories=("Cs",)), max_size=8), inner,
                      max_size=6),
    max_leaves=30)


def _normalised(x: Any) -> Any:
    """What from_lua(to_lua(x)) should give: UTF-8 bytes come back as str, integral
    floats as int, -0.0 as 0."""
    if isinstance(x, bytes):
        try:
            return x.decode()
        except UnicodeDecodeError:
            return x
    if isinstance(x, float) and x.is_integer() and -(2 ** 63) <= x < 2 ** 63:
        return int(x)    # lupa hands over an integral number that fits a C long as int
    if isinstance(x, list):
        return [_normalised(v) for v in x]
    if isinstance(x, dict):
        return {k: _normalised(v) for k, v in x.items()}
    return x


def _strict_equal(a: Any, b: Any) -> bool:
    if type(a) is not type(b):
        return False
    if isinstance(a, list):
        return len(a) == len(b) and all(_strict_equal(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_strict_equal(a[k], b[k]) for k in a)
    return a == b


@SETTINGS
@given(_json_like)
def test_property_python_lua_python(values, x):
    back = values.from_lua(values.to_lua(x))
    assert _strict_equal(back, _normalised(x)), (x, back)


@SETTINGS
@given(_json_like)
def test_property_lua_python_lua(values, lua_, x):
    t = values.to_lua(x)
    assert lua_.deep_equal(t, values.to_lua(values.from_lua(t)))
