"""The short cuts between Python and Lua on the LAppS-protocol path give exactly what the
general converters give (lapps.lua.values, lapps.lua.service's ws module).

- `build_request(*request_parts(m))` builds onMessage's table in one Lua call: it must
  equal `to_lua(m)`.
- `ws:send(handler, table)` passes the usual answer {cid, status, result = {scalars}} in
  pieces (`py_reply`): the dict that arrives must equal `from_lua` of the whole table, and
  every other table must still go the general way.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lapps.lua.runtime import new_runtime
from lapps.lua.modules.ws import _WS_MODULE, reply_sender
from lapps.lua.values import LuaValues

SETTINGS = settings(max_examples=300, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])

_DEEP_EQUAL = b"""
local null = ...
local function deep_equal(a, b)
  if type(a) ~= type(b) then return false end
  if type(a) ~= "table" then return a == b end
  if rawequal(a, b) then return true end
  if rawequal(a, null) or rawequal(b, null) then return false end
  if getmetatable(a) ~= getmetatable(b) then return false end
  for k, v in pairs(a) do
    if not deep_equal(v, b[k]) then return false end
  end
  for k in pairs(b) do
    if a[k] == nil then return false end
  end
  return true
end
return deep_equal
"""


class Env:
    """A runtime, its converters, and the ws module wired to recorders."""

    def __init__(self, directory: str) -> None:
        self.lua = new_runtime("fast-paths", directory).lua
        self.values = LuaValues(self.lua)
        self.deep_equal = self.lua.execute(_DEEP_EQUAL, self.values.null)
        self.sent: list[tuple[str, Any]] = []

        def general(handler: Any, table: Any) -> Any:
            try:
                self.sent.append(("general", self.values.from_lua(table)))
            except ValueError as e:   # ReactiveService's send_table answers false, reason
                self.sent.append(("general", str(e)))
            return True

        def reply(handler: Any, message: Any) -> Any:
            self.sent.append(("reply", message))
            return True

        def unused(*_: Any) -> Any:
            raise AssertionError("not part of this test")

        self.ws = self.lua.execute(_WS_MODULE, unused, general, unused, unused, 1 << 20,
                                   reply_sender(self.values, reply))[0]

    def send(self, table: Any) -> tuple[str, Any]:
        self.sent.clear()
        assert self.ws.send(7, table) is True
        assert len(self.sent) == 1
        return self.sent[0]


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> Env:
    return Env(str(tmp_path_factory.mktemp("svc")))


_leaf = (st.none() | st.booleans() | st.integers(-(2 ** 53), 2 ** 53) | st.floats(allow_nan=False)
         | st.text(st.characters(blacklist_categories=("Cs",)), max_size=20) | st.binary(max_size=8))
_value = st.recursive(_leaf, lambda inner: st.lists(inner, max_size=4)
                      | st.dictionaries(st.text(max_size=5), inner, max_size=4), max_leaves=10)


@st.composite
def requests(draw) -> dict:
    message: dict[str, Any] = {"lapps": 1, "method": draw(st.text(min_size=1, max_size=10))}
    if draw(st.booleans()):
        message["params"] = draw(st.lists(_value, max_size=6))
    if draw(st.booleans()):
        message["cid"] = draw(st.integers(-(2 ** 53), 2 ** 53))
    return message


@SETTINGS
@given(requests())
def test_request_parts_build_what_to_lua_builds(env: Env, message: dict) -> None:
    assert env.deep_equal(env.values.build_request(*env.values.request_parts(message)), env.values.to_lua(message))


def test_request_parts_with_a_long_params_list(env: Env) -> None:
    message = {"lapps": 1, "method": "many", "params": list(range(1000)), "cid": 3}
    assert env.deep_equal(env.values.build_request(*env.values.request_parts(message)), env.values.to_lua(message))


_scalar = (st.booleans() | st.integers(-(2 ** 53), 2 ** 53) | st.floats(allow_nan=False)
           | st.text(st.characters(blacklist_categories=("Cs",)), max_size=20) | st.binary(max_size=8))


@st.composite
def replies(draw) -> dict:
    """Mostly the usual answer's shape, sometimes one thing off it."""
    message: dict[str, Any] = {}
    if draw(st.booleans()):
        message["cid"] = draw(st.integers(-5, 5) | st.floats(-5, 5) | st.text(max_size=2))
    if draw(st.booleans()):
        message["status"] = draw(st.integers(0, 2) | st.floats(0, 1))
    message["result"] = draw(st.lists(_scalar, min_size=0, max_size=70) | _value)
    if draw(st.integers(0, 5)) == 0:
        message[draw(st.sampled_from(["error", "message", "extra"]))] = draw(_leaf)
    return message


@SETTINGS
@given(replies())
def test_a_reply_arrives_as_from_lua_makes_it(env: Env, message: dict) -> None:
    table = env.values.to_lua(message)
    expected = env.values.from_lua(table)
    path, got = env.send(table)
    assert got == expected
    result = message["result"]
    usual = (set(message) <= {"cid", "status", "result"} and type(result) is list
             and 0 < len(result) <= 64 and all(type(v) in (bool, int, float, str, bytes) for v in result)
             and type(message.get("cid", 0)) in (int, float)
             and type(message.get("status", 0)) in (int, float))
    assert (path == "reply") == usual, (path, message)


@pytest.mark.parametrize("src", [
    "{cid = 0, status = 1, result = {[0] = 'zero', [2] = 'b', [3] = 'c'}}",   # # may say 3
    "{cid = 0, status = 1, result = {1, 2, [2.5] = 3}}",
    "{cid = 0, status = 1, result = {1, 2, x = 3}}",
    "{cid = 0, status = 1, result = {1, nil, 3}}",
    "{cid = 0, status = 1, result = {1, {2}}}",
    "{cid = 0, status = 1, result = {null}}",
    "{cid = '0', status = 1, result = {1}}",
    "{cid = 0, status = 1, result = {1}, [1] = 'x'}",
])
def test_tables_off_the_usual_shape_go_the_general_way(env: Env, src: str) -> None:
    table = env.lua.execute(f"local null = ... return {src}".encode(), env.values.null)
    path, _ = env.send(table)
    assert path == "general"
