"""One rule decides whether an outbound message fits (workers/outbound.py `fits`): the
direct `ws:send` and the broadcast path call it; Lua's ws module keeps replies back under
the same rule written in Lua. These check that the two answer alike at every boundary."""

from __future__ import annotations

from typing import Any

import pytest

from lapps.lua.runtime import new_runtime
from lapps.lua.modules.ws import _WS_MODULE
from workers.outbound import fits

LIMIT = 1000

_SENDER = b"""
local ws = ...
return function(size)
  return function(h, op, m) return ws.send(h, 2, string.rep("x", size)) end
end
"""


@pytest.fixture(scope="module")
def lua_keeps(tmp_path_factory) -> Any:
    """keeps(used, size): whether Lua's ws.send keeps a reply of `size` bytes back when the
    worker says `used` bytes are queued (else it goes the direct way, to `py_send`)."""
    lua = new_runtime("outbound", str(tmp_path_factory.mktemp("outbound"))).lua
    direct: list[int] = []

    def py_send(handler: Any, opcode: Any, data: Any) -> Any:
        direct.append(len(data))
        return True

    def unused(*_: Any) -> Any:
        raise AssertionError("not part of this test")

    ws, dispatcher = lua.execute(_WS_MODULE, py_send, unused, unused, unused, LIMIT, unused)[:2]
    sender = lua.execute(_SENDER, ws)

    def keeps(used: int, size: int) -> bool:
        direct.clear()
        result = dispatcher(sender(size))(7, 2, b"", used)
        if result is True:
            assert direct == [size]
            return False
        assert result == (True, 2, b"x" * size) and not direct
        return True
    return keeps


@pytest.mark.parametrize("used", [0, 1, 2, 499, 500, 998, 999, 1000, 1001, 5000])
@pytest.mark.parametrize("size", [0, 1, 2, 500, 501, 999, 1000, 1001, 70000])
def test_lua_keeps_a_reply_back_exactly_when_it_fits(lua_keeps, used: int, size: int) -> None:
    assert lua_keeps(used, size) == fits(used, size, LIMIT)


def test_an_empty_buffer_takes_any_one_message() -> None:
    assert fits(0, 10 * LIMIT, LIMIT)
    assert fits(LIMIT - 10, 10, LIMIT)
    assert not fits(LIMIT - 10, 11, LIMIT)
