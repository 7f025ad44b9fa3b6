"""The built-in modules nljson, time, nap and murmur, exercised from Lua code (DESIGN §3).

Each test runs a Lua snippet in a sandboxed runtime with the modules installed as globals;
the snippet asserts in Lua and returns what Python checks further. Both call styles
(`m.f(x)` and `m:f(x)`) are covered, and errors are checked by their message and by the
caller's line they point at.
"""

from __future__ import annotations

import os
import struct
import time
from typing import Any

import cbor2
import pytest

from lapps.lua.modules.basic import install_murmur, install_nap, install_time, murmur3_x64_128
from lapps.lua.modules.nljson import install_nljson
from lapps.lua.runtime import LuaError, describe_lua_error, new_runtime
from lapps.lua.values import LuaValues


def _lua_of(runtime: Any) -> Any:
    # new_runtime returns a Runtime with `.lua` (an older version returned (lua, load))
    return runtime.lua if hasattr(runtime, "lua") else runtime[0]


class Env:
    def __init__(self, directory: str, budget: int = 0) -> None:
        self.dir = directory
        self.lua = _lua_of(new_runtime("modules-test", directory, instruction_budget=budget))
        self.values = LuaValues(self.lua)
        g = self.lua.globals()
        g.nljson = install_nljson(self.lua, self.values, directory)
        g.time = install_time(self.lua)
        g.nap = install_nap(self.lua)
        g.murmur = install_murmur(self.lua)

    def run(self, code: str, *args: Any) -> Any:
        """Run `code` as the chunk "svc.lua"; errors there say svc.lua:LINE."""
        return self.lua.execute(code.encode(), *args, name="=svc.lua")

    def error(self, code: str) -> str:
        """The message of the Lua error `code` raises (through pcall, as a service would)."""
        ok, msg = self.run(f"return pcall(function()\n{code}\nend)")
        assert ok is False, "expected a Lua error"
        return msg.decode()


@pytest.fixture(params=[0, 100_000_000], ids=["jit", "budget"])
def env(request, tmp_path):
    # a budgeted state runs interpreted (jit.off): the modules must work both ways
    return Env(str(tmp_path), request.param)


@pytest.fixture
def lua(tmp_path):
    return Env(str(tmp_path))


# -- nljson.decode -------------------------------------------------------------------------

def test_decode_objects_arrays_and_null(env):
    assert env.run("""
      local t = nljson.decode('{"cid": 0, "result": [1, "two", 3.5, null, true], "o": {}, "a": []}')
      assert(t.cid == 0 and t.result[2] == "two" and t.result[3] == 3.5 and t.result[5] == true)
      assert(#t.result == 5, "null keeps the array's length")
      assert(t.result[4] == nljson.null)
      assert(nljson.typename(t.o) == "object" and nljson.typename(t.a) == "array")
      return nljson.encode(t)
    """) == b'{"a":[],"cid":0,"o":{},"result":[1,"two",3.5,null,true]}'


def test_decode_both_call_styles_and_scalars(lua):
    assert lua.run("""
      local a, b = nljson.decode('[1, 2]'), nljson:decode('[1, 2]')
      assert(#a == 2 and #b == 2 and a[2] == 2 and b[2] == 2)
      assert(nljson.decode('"x"') == "x" and nljson:decode('5') == 5 and nljson.decode('false') == false)
      return nljson.decode('null') == nljson.null, nljson.decode('"h\\\\u00e9"')
    """) == (True, "hé".encode())


@pytest.mark.parametrize("text, message", [
    ('{"a": }', "nljson.decode: invalid JSON at line 1 column 7: Expecting value"),
    ('[1,\\n2,', "nljson.decode: invalid JSON at line 2 column 3: Expecting value"),
    ('', "nljson.decode: invalid JSON at line 1 column 1: Expecting value"),
    ('[1] [2]', "nljson.decode: invalid JSON at line 1 column 5: Extra data"),
    ('[NaN]', "nljson.decode: NaN is not a JSON value"),
    ('Infinity', "nljson.decode: Infinity is not a JSON value"),
    ('"\\255"', "nljson.decode: invalid JSON: not valid UTF-8 at byte 1"),
    ('[18446744073709551616]', "nljson.decode: an integer outside the 64-bit range"),
    ('[' * 65 + ']' * 65, "nljson.decode: data nested deeper than 64 levels"),
    ('[' * 100000, "nljson.decode: invalid JSON: nested too deeply"),
])
def test_decode_errors(lua, text, message):
    msg = lua.error(f"local t = nljson.decode('{text}')")
    assert msg.startswith("svc.lua:2: " + message), msg


def test_decode_refuses_a_non_string(lua):
    assert lua.error("local t = nljson.decode({})") == "svc.lua:2: nljson.decode: expects a JSON string, got table"
    assert lua.error("local t = nljson:decode()") == "svc.lua:2: nljson.decode: expects a JSON string, got nil"


def test_decode_uncaught_error_is_a_lua_error_at_the_callers_line(lua):
    with pytest.raises(LuaError) as e:
        lua.run("local x = 1\nlocal t = nljson.decode('[1,')\nreturn t")
    assert describe_lua_error(e.value).startswith(
        "svc.lua:2: nljson.decode: invalid JSON at line 1 column 4: Expecting value")


# -- nljson.decode_file ------------------------------------------------------------------------

def test_decode_file_reads_below_the_service_directory(lua, tmp_path):
    (tmp_path / "conf.json").write_text('{"name": "svc", "ports": [1, 2]}')
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "x.json").write_text("[null]")
    assert lua.run("""
      local c = nljson.decode_file("conf.json")
      local x = nljson:decode_file("sub/x.json")
      assert(x[1] == nljson.null and #x == 1)
      return c.name, c.ports[2], nljson.decode_file("./sub/../conf.json").name
    """) == (b"svc", 2, b"svc")


def test_decode_file_refuses_paths_outside(lua, tmp_path):
    outside = tmp_path.parent / "outside.json"
    outside.write_text("[1]")
    (tmp_path / "link.json").symlink_to(outside)
    for path in ("../outside.json", str(outside), "/etc/passwd", "link.json", "sub/../../outside.json"):
        msg = lua.error(f"local t = nljson.decode_file({path!r})")
        assert msg == f"svc.lua:2: nljson.decode_file: {path!r} is outside the service directory", msg


def test_decode_file_errors(lua, tmp_path):
    (tmp_path / "bad.json").write_text('{\n  "a": 1,\n  "b": \n}')
    assert lua.error('local t = nljson.decode_file("bad.json")') == (
        "svc.lua:2: nljson.decode_file: invalid JSON in 'bad.json' at line 4 column 1: Expecting value")
    assert lua.error('local t = nljson.decode_file("missing.json")') == (
        "svc.lua:2: nljson.decode_file: cannot read 'missing.json': No such file or directory")
    assert lua.error('local t = nljson.decode_file(".")').startswith(
        "svc.lua:2: nljson.decode_file: cannot read '.': ")
    assert lua.error("local t = nljson.decode_file(42)") == (
        "svc.lua:2: nljson.decode_file: expects a file name, got number")


def test_decode_file_without_a_directory_refuses(tmp_path):
    lua = _lua_of(new_runtime("nodir", str(tmp_path)))
    nljson = install_nljson(lua, LuaValues(lua))
    ok, msg = lua.execute(b"local nljson = ... return pcall(nljson.decode_file, 'x.json')", nljson)
    assert ok is False and b"no directory" in msg


# -- nljson.encode / encode_pretty --------------------------------------------------------------

def test_encode(env):
    assert env.run("""
      return nljson.encode({cid = 0, status = 1, result = {1, "two", 3.5, nljson.null}}),
             nljson:encode({}), nljson.encode(nljson.object()), nljson.encode(nljson.null),
             nljson.encode("h\\195\\169"), nljson.encode(2^53), nljson.encode({b = true, a = {x = false}}),
             nljson:encode(nil)
    """) == (b'{"cid":0,"result":[1,"two",3.5,null],"status":1}', b"[]", b"{}", b"null",
             '"hé"'.encode(), b"9007199254740992", b'{"a":{"x":false},"b":true}', b"null")


@pytest.mark.parametrize("value, message", [
    ("0/0", "nljson.encode: NaN and infinity cannot be encoded as JSON"),
    ("{x = 1/0}", "nljson.encode: NaN and infinity cannot be encoded as JSON"),
    ("{'\\255'}", "nljson.encode: a string that is not valid UTF-8 cannot be encoded as JSON"),
    ("{1, 2, n = 2}", "nljson.encode: a table mixes string keys and number keys"),
    ("{f = print}", "nljson.encode: cannot convert a Lua function (at key 'f')"),
    ("(function() local t = {}; t[1] = t; return t end)()", "nljson.encode: a table that contains itself"),
])
def test_encode_errors(lua, value, message):
    msg = lua.error(f"local s = nljson.encode({value})")
    assert msg.startswith("svc.lua:2: " + message), msg


def test_encode_pretty(lua):
    two, four, compact, colon = lua.run("""
      local t = {name = "x", list = {1, nljson.null}, empty = nljson.object()}
      return nljson.encode_pretty(t), nljson.encode_pretty(t, 4), nljson.encode_pretty(t, 0),
             nljson:encode_pretty(t)
    """)
    assert two == b'{\n  "empty": {},\n  "list": [\n    1,\n    null\n  ],\n  "name": "x"\n}'
    assert four == b'{\n    "empty": {},\n    "list": [\n        1,\n        null\n    ],\n    "name": "x"\n}'
    assert compact == b'{"empty":{},"list":[1,null],"name":"x"}'
    assert colon == two


def test_encode_pretty_errors(lua):
    assert lua.error("local s = nljson.encode_pretty({}, -1)") == (
        "svc.lua:2: nljson.encode_pretty: expects an indent of 0 to 16, got number")
    assert lua.error("local s = nljson:encode_pretty({}, 'x')") == (
        "svc.lua:2: nljson.encode_pretty: expects an indent of 0 to 16, got string")
    assert lua.error("local s = nljson.encode_pretty(0/0)").startswith(
        "svc.lua:2: nljson.encode_pretty: NaN and infinity")


# -- nljson.to_cbor / from_cbor ------------------------------------------------------------------

def test_cbor_round_trip_in_lua(env):
    assert env.run("""
      local t = {cid = 0, status = 1, result = {1, "two", 3.5, nljson.null, "\\255"}, e = {}, o = nljson.object()}
      local back = nljson.from_cbor(nljson.to_cbor(t))
      assert(back.cid == 0 and back.status == 1 and #back.result == 5)
      assert(back.result[4] == nljson.null and back.result[5] == "\\255")
      assert(nljson.typename(back.e) == "array" and nljson.typename(back.o) == "object")
      local again = nljson:from_cbor(nljson:to_cbor(back))
      return again.result[2], again.result[3]
    """) == (b"two", 3.5)


def test_to_cbor_bytes(lua):
    data = lua.run("return nljson.to_cbor({cid = 0, status = 1, result = {1, 2.5, nljson.null, '\\255'}})")
    assert cbor2.loads(data) == {"cid": 0, "status": 1, "result": [1, 2.5, None, b"\xff"]}
    assert lua.run("return nljson.to_cbor(3)") == cbor2.dumps(3)            # integral: a CBOR integer
    assert lua.run("return nljson.to_cbor(0.5)") == bytes.fromhex("fb3fe0000000000000")   # float64
    assert lua.run("return nljson:to_cbor({})") == b"\x80"
    assert lua.run("return nljson.to_cbor(nljson.object())") == b"\xa0"


def test_from_cbor_python_bytes(lua):
    data = cbor2.dumps({"lapps": 1, "method": "echo", "params": [None, "x", b"\x00\xff", {}]})
    assert lua.run("""
      local m = nljson.from_cbor(...)
      assert(m.lapps == 1 and m.method == "echo" and m.params[1] == nljson.null)
      assert(nljson.typename(m.params[4]) == "object")
      return m.params[2], m.params[3]
    """, data) == (b"x", b"\x00\xff")


@pytest.mark.parametrize("data, message", [
    (b"\xff", "nljson.from_cbor: invalid CBOR: break code encountered"),
    (b"", "nljson.from_cbor: invalid CBOR: premature end of stream"),
    (b"\x01\x02", "nljson.from_cbor: invalid CBOR: 1 bytes after the data item"),
    (b"\x81" * 80 + b"\x00", "nljson.from_cbor: invalid CBOR: maximum container nesting depth"),
    (cbor2.dumps(2 ** 64), "nljson.from_cbor: integer 18446744073709551616 is outside the 64-bit range"),
    (cbor2.dumps({(1, 2): 3}), "nljson.from_cbor: cannot use a Python tuple as a Lua table key"),
    (cbor2.dumps(cbor2.CBORTag(4000, 1)), "nljson.from_cbor: cannot convert a Python CBORTag"),
])
def test_from_cbor_errors(lua, data, message):
    ok, msg = lua.run("return pcall(function(s)\nlocal t = nljson.from_cbor(s)\nend, ...)", data)
    assert ok is False and msg.decode().startswith("svc.lua:2: " + message), msg


def test_from_cbor_refuses_a_non_string(lua):
    assert lua.error("local t = nljson:from_cbor(1)") == "svc.lua:2: nljson.from_cbor: expects a CBOR string, got number"


# -- find / foreach / erase / empty / typename ----------------------------------------------------

def test_find(env):
    assert env.run("""
      local t = nljson.decode('{"a": 1, "n": null, "list": ["x", "y"]}')
      assert(nljson.find(t, "a") == 1 and nljson:find(t, "a") == 1)
      assert(nljson.find(t, "n") == nljson.null)
      assert(nljson.find(t, "missing") == nil and nljson.find(t, nil) == nil)
      assert(nljson.find(t.list, 2) == "y" and nljson:find(t.list, 3) == nil)
      assert(nljson.find(nljson.null, "x") == nil)
      return nljson.find(t.list, 1)
    """) == b"x"


def test_find_refuses_a_non_table(lua):
    assert lua.error("local v = nljson.find('abc', 1)") == "svc.lua:2: nljson.find: expects a table, got string"


def test_foreach(env):
    assert env.run("""
      local keys, vals = {}, {}
      nljson.foreach({"a", nljson.null, "c"}, function(k, v) keys[#keys + 1] = k; vals[#vals + 1] = v end)
      assert(#keys == 3 and keys[1] == 1 and keys[2] == 2 and keys[3] == 3)
      assert(vals[1] == "a" and vals[2] == nljson.null and vals[3] == "c")
      local seen = {}
      nljson:foreach({x = 1, y = 2}, function(k, v) seen[k] = v end)
      assert(seen.x == 1 and seen.y == 2)
      local n = 0
      nljson.foreach({}, function() n = n + 1 end)
      nljson.foreach(nljson.null, function() n = n + 1 end)
      assert(n == 0)
      local order = {}
      nljson.foreach(nljson.decode('[10, 20, 30, 40, 50, 60, 70, 80, 90, 100]'),
                     function(k, v) order[#order + 1] = v end)
      return table.concat(order, ",")
    """) == b"10,20,30,40,50,60,70,80,90,100"


def test_foreach_errors(lua):
    assert lua.error("nljson.foreach({}, 1)") == (
        "svc.lua:2: nljson.foreach: expects a function as its second argument, got number")
    assert lua.error("nljson:foreach(nil, print)") == "svc.lua:2: nljson.foreach: expects a table, got nil"
    msg = lua.error("nljson.foreach({1}, function() error('inside') end)")
    assert msg.startswith("svc.lua:2: inside")


def test_erase(env):
    assert env.run("""
      local t = nljson.decode('{"a": 1, "b": 2}')
      assert(nljson.erase(t, "a") == true and t.a == nil and t.b == 2)
      assert(nljson.erase(t, "a") == false and nljson.erase(t, "zzz") == false)
      assert(nljson:erase(t, "b") == true)
      assert(nljson.encode(t) == "{}", "a map that erase empties stays a map")
      -- arrays: the original's 0-based position (nlohmann's erase(idx))
      local list = {"x", "y", "z"}
      assert(nljson.erase(list, 1) == true and #list == 2 and list[1] == "x" and list[2] == "z")
      assert(nljson.erase(list, 2) == false and nljson.erase(list, -1) == false)
      assert(nljson.erase(list, 0.5) == false)
      assert(nljson.erase(list, "x") == false and nljson.erase(list, nil) == false)
      assert(nljson:erase(list, 1) == true and nljson.erase(list, 0) == true)
      assert(nljson.encode(list) == "[]", "an emptied array stays an array")
      assert(nljson.erase(nljson.null, 1) == false)
      return nljson.encode({nljson.erase({1}, 0)})
    """) == b"[true]"


def test_erase_refuses_a_non_table(lua):
    assert lua.error("local r = nljson.erase(1, 1)") == "svc.lua:2: nljson.erase: expects a table, got number"


# -- the original's nljson (DESIGN §8): number keys on objects, tostring, traverse ------------

def test_number_key_on_an_object_means_its_string_form(env):
    # the original's echo_lapps stores under tostring(handler) and looks up with the number
    assert env.run("""
      local keys = nljson.decode('{}')
      keys[tostring(42)] = 7
      assert(nljson.find(keys, 42) == 7 and nljson:find(keys, "42") == 7, "find")
      assert(keys[42] == 7, "index")
      keys[43] = 8
      assert(rawget(keys, "43") == 8 and rawget(keys, 43) == nil, "assignment")
      assert(nljson.erase(keys, 42) == true and keys["42"] == nil, "erase")
      assert(nljson.erase(keys, 42) == false)
      local built = {}
      built[tostring(5)] = "x"
      assert(nljson.find(built, 5) == "x", "a map the service built")
      local decoded = nljson.decode('{"1": "one", "k": {"2": "two"}}')
      assert(decoded[1] == "one" and decoded.k[2] == "two" and nljson.find(decoded.k, 2) == "two")
      return nljson.encode(keys)
    """) == b'{"43":8}'


def test_a_number_key_on_an_array_stays_an_index(env):
    assert env.run("""
      local a = nljson.decode('["x", "y"]')
      a[3] = "z"
      assert(#a == 3 and nljson.find(a, 3) == "z" and a["3"] == nil)
      return nljson.encode(a)
    """) == b'["x","y","z"]'


def test_tostring_of_a_decoded_value_is_its_json_text(env):
    assert env.run("""
      local t = nljson.decode('{"cid": 5, "message": [1, "a", null, {}]}')
      assert(tostring(t.message) == '[1,"a",null,{}]')
      assert(tostring(nljson.object()) == "{}")
      assert(tostring(nljson.from_cbor(nljson.to_cbor({x = {1, 2}}))) == '{"x":[1,2]}')
      assert(tostring({}):find("^table: "), "a table the service built is a plain table")
      return tostring(t)
    """) == b'{"cid":5,"message":[1,"a",null,{}]}'


def test_traverse_visits_every_entry_children_first(env):
    assert env.run("""
      local seen = {}
      nljson.traverse(nljson.decode('{"b": [10, {"c": true}], "a": 1}'),
                      function(k, v) seen[#seen + 1] = tostring(k) .. "=" .. nljson.typename(v) end)
      local n = 0
      nljson:traverse(nljson.null, function() n = n + 1 end)
      nljson.traverse({}, function() n = n + 1 end)
      assert(n == 0)
      return table.concat(seen, " ")
    """) == b"a=number 1=number c=boolean 2=object b=array"


def test_traverse_errors(lua):
    assert lua.error("nljson.traverse({}, 1)") == (
        "svc.lua:2: nljson.traverse: expects a function as its second argument, got number")
    assert lua.error("nljson:traverse(1, print)") == "svc.lua:2: nljson.traverse: expects a table, got number"


def test_length_of_arrays_counts_nulls(env):
    assert env.run("return #nljson.decode('[null, 1, null]'), #nljson.from_cbor('\\x83\\xf6\\xf6\\xf6')") == (3, 3)


def test_empty(env):
    assert env.run("""
      assert(nljson.empty({}) == true and nljson:empty({}) == true)
      assert(nljson.empty(nljson.object()) == true and nljson.empty(nljson.null) == true)
      assert(nljson.empty(nil) == true)
      assert(nljson.empty({1}) == false and nljson:empty({a = 1}) == false)
      assert(nljson.empty("") == false and nljson.empty(0) == false and nljson.empty(false) == false)
      return true
    """) is True


def test_typename(env):
    assert env.run("""
      local t = nljson.decode('{"o": {"k": 1}, "a": [1], "e": [], "eo": {}, "s": "x", "n": 1.5, "b": true, "z": null}')
      return nljson.typename(t.o), nljson.typename(t.a), nljson.typename(t.e), nljson.typename(t.eo),
             nljson.typename(t.s), nljson:typename(t.n), nljson:typename(t.b), nljson.typename(t.z),
             nljson.typename(nil), nljson.typename(nljson.object()), nljson.typename({}), nljson.typename(t)
    """) == (b"object", b"array", b"array", b"object", b"string", b"number", b"boolean", b"null",
             b"null", b"object", b"array", b"object")


def test_null_and_object(env):
    assert env.run("""
      assert(tostring(nljson.null) == "null")
      assert(nljson.decode("[null]")[1] == nljson.null, "one sentinel per runtime")
      local ok, err = pcall(function() nljson.null.x = 1 end)
      assert(not ok and err:find("nljson.null is read-only", 1, true))
      local o1, o2 = nljson.object(), nljson:object()
      assert(o1 ~= o2 and next(o1) == nil)
      o1.k = "v"
      return nljson.encode(o1), nljson.encode(o2)
    """) == (b'{"k":"v"}', b"{}")


def test_nljson_values_reach_python(lua):
    t = lua.run("return nljson.decode('{\"a\": [1, null], \"b\": {}}')")
    assert lua.values.from_lua(t) == {"a": [1, None], "b": {}}


# -- time ---------------------------------------------------------------------------------------

def test_time_now(env):
    before = time.time() * 1000
    a, b = env.run("""
      local a, b = time.now(), time:now()
      assert(type(a) == "number" and a == math.floor(a), "an integer")
      assert(b >= a)
      return a, b
    """)
    after = time.time() * 1000
    assert isinstance(a, int) and before - 1 <= a <= b <= after + 1


# -- nap ---------------------------------------------------------------------------------------

def test_nap_sleeps_in_both_styles(env):
    start = time.monotonic()
    assert env.run("""
      local n1, n2 = nap:new(), nap.new()
      assert(type(n1) == "table" and n1 ~= n2)
      n1:sleep(0.02)
      n2:usleep(20000)
      n1:nsleep(20000000)
      n2.sleep(0)
      n1.usleep(1)
      n2.nsleep(1)
      n1:sleep(0)
      return getmetatable(n1)
    """) == b"nap"
    assert time.monotonic() - start >= 0.06


@pytest.mark.parametrize("call, message", [
    ("n:sleep(-1)", "nap:sleep: expects a non-negative number of seconds, got -1"),
    ("n:usleep('x')", "nap:usleep: expects a non-negative number of microseconds, got x"),
    ("n:nsleep(0/0)", "nap:nsleep: expects a non-negative number of nanoseconds, got nan"),
    ("n.sleep(1/0)", "nap:sleep: expects a non-negative number of seconds, got inf"),
    ("n:sleep()", "nap:sleep: expects a non-negative number of seconds, got nil"),
])
def test_nap_errors(lua, call, message):
    msg = lua.error(f"local n = nap:new(); {call}")
    assert msg == "svc.lua:2: " + message, msg


# -- murmur ---------------------------------------------------------------------------------------

# Guava's Murmur3Hash128Test.testKnownValues (google/guava,
# guava-tests/test/com/google/common/hash/Murmur3Hash128Test.java): (seed, h1, h2, input)
GUAVA_VECTORS = [
    (0, 0x629942693E10F867, 0x92DB0B82BAEB5347, b"hell"),
    (1, 0xA78DDFF5ADAE8D10, 0x128900EF20900135, b"hello"),
    (2, 0x8A486B23F422E826, 0xF962A2C58947765F, b"hello "),
    (3, 0x2EA59F466F6BED8C, 0xC610990ACC428A17, b"hello w"),
    (4, 0x79F6305A386C572C, 0x46305AED3483B94E, b"hello wo"),
    (5, 0xC2219D213EC1F1B5, 0xA1D8E2E0A52785BD, b"hello wor"),
    (0, 0xE34BBC7BBC071B6C, 0x7A433CA9C49A9347, b"The quick brown fox jumps over the lazy dog"),
    (0, 0x658CA970FF85269A, 0x43FEE3EAA68E5C3E, b"The quick brown fox jumps over the lazy cog"),
]


@pytest.mark.parametrize("seed, h1, h2, data", GUAVA_VECTORS)
def test_murmur3_known_vectors(seed, h1, h2, data):
    assert murmur3_x64_128(data, seed) == (h1, h2)


def test_murmur3_empty_input_seed_0_is_zero():
    assert murmur3_x64_128(b"") == (0, 0)


def test_murmur3_smhasher_verification_value():
    # SMHasher's VerificationTest: hash the prefixes key[0:i] of key = 0..255 with seed
    # 256 - i, hash the concatenated digests with seed 0, read the first 4 bytes as a
    # little-endian uint32. MurmurHash3_x64_128 ("Murmur3F") must give 0x6384BA69.
    key = bytes(range(256))
    digests = b"".join(struct.pack("<QQ", *murmur3_x64_128(key[:i], 256 - i)) for i in range(256))
    h1, _ = murmur3_x64_128(digests, 0)
    assert h1 & 0xFFFFFFFF == 0x6384BA69


def test_murmur3_every_tail_length():
    # lengths 0..33 cover every tail (0..15 bytes) after zero, one and two blocks;
    # cross-checked once against the mmh3 package (mmh3.hash64(data, 0, signed=False))
    for n in range(34):
        h1, h2 = murmur3_x64_128(bytes(range(n)))
        assert 0 <= h1 < 2 ** 64 and 0 <= h2 < 2 ** 64
    assert murmur3_x64_128(bytes(range(33))) != murmur3_x64_128(bytes(range(32)))


def test_murmur_hashstr(env):
    assert env.run("""
      local a, b = murmur.hashstr("hell"), murmur:hashstr("hell")
      assert(a == b and #a == 16 and a:match("^[0-9a-f]+$"))
      assert(murmur.hashstr(42) == murmur.hashstr("42"))
      assert(murmur.hashstr(1.5) == murmur.hashstr("1.5"))
      return a, murmur.hashstr(""), murmur.hashstr("The quick brown fox jumps over the lazy dog")
    """) == (b"629942693e10f867", b"0000000000000000", b"e34bbc7bbc071b6c")


def test_murmur_hashnum(env):
    a, b, c, d = env.run("""
      local a, b = murmur.hashnum("hell"), murmur:hashnum("hell")
      assert(a == b and a >= 0 and a < 2^53 and a == math.floor(a))
      assert(murmur.hashnum(42) == murmur.hashnum("42"))
      return a, murmur.hashnum(42), murmur.hashnum(""), murmur:hashnum(0.1)
    """)
    assert a == 0x629942693E10F867 & (2 ** 53 - 1)
    assert b == murmur3_x64_128(b"42")[0] & (2 ** 53 - 1)
    assert c == 0
    assert d == murmur3_x64_128(b"0.1")[0] & (2 ** 53 - 1)


def test_murmur_errors(lua):
    assert lua.error("local h = murmur.hashstr({})") == (
        "svc.lua:2: murmur.hashstr: expects a string or a number, got table")
    assert lua.error("local h = murmur:hashnum(nil)") == (
        "svc.lua:2: murmur.hashnum: expects a string or a number, got nil")


def test_modules_survive_a_sandboxed_service_directory(tmp_path):
    # the path check resolves the service directory itself through symlinks
    real = tmp_path / "real"
    real.mkdir()
    (real / "d.json").write_text("[1]")
    link = tmp_path / "svc"
    os.symlink(real, link)
    env = Env(str(link))
    assert env.run("return nljson.decode_file('d.json')[1]") == 1
