"""Lua services in the real server: errors cost one connection, the ws API, boot failures (DESIGN §3)."""

from __future__ import annotations

import pytest

from lapps.ws.constants import Opcode
from wsclient import connect, echo_ok

LUATEST_LUA = """\
local luatest = {}

function luatest.onStart() end
function luatest.onShutdown() end

function luatest.onDisconnect(handler)
  print("onDisconnect " .. tostring(handler))
end

function luatest.onMessage(handler, opcode, message)
  if message == "boom" then
    error("boom")
  elseif message == "false" then
    return false
  elseif message == "whoami" then
    ws:send(handler, 1, tostring(handler))
  elseif message == "bye" then
    ws:close(handler, 4000, "bye")
  elseif message == "mixed" then
    ws:send(handler, 2, "a")             -- kept back and returned with onMessage's result
    ws:send(handler, 1, "b")             -- text other than the incoming: the direct path
    ws:send(handler, 2, "c")
  elseif message == "reply then boom" then
    ws:send(handler, opcode, message)
    error("after a reply")
  elseif message == "reply then close" then
    ws:send(handler, opcode, message)
    ws:close(handler, 4001, "done")
    local ok, err = ws:send(handler, 2, "late")
    print("late send: " .. tostring(ok) .. " " .. tostring(err))
  elseif message == "burst" then
    local results = {}
    for i = 1, 5 do results[i] = tostring((ws:send(handler, 2, string.rep("x", 300)))) end
    print("burst: " .. table.concat(results, " "))
  elseif message == "styles" then
    local ok1 = ws:send(handler, 1, "colon style")
    local ok2 = ws.send(handler, 1, "dot style")
    ws.send(handler, 1, tostring(ok1) .. " " .. tostring(ok2))
  else
    ws:send(handler, opcode, message)
  end
  return true
end

return luatest
"""
ERROR_LINE = LUATEST_LUA.splitlines().index('    error("boom")') + 1


@pytest.fixture(scope="module")
def server(lapps_server_module):
    """One worker, so every client of a test shares the Lua instance that fails."""
    return lapps_server_module({"luatest": {}}, lua={"luatest": LUATEST_LUA}, workers=1)


# Replies to the connection being served are kept in Lua and handed to Python with
# onMessage's result (one crossing each way); these check that nothing about them shows.

def test_kept_back_replies_keep_their_order_with_direct_sends(server):
    with open_luatest(server) as c:
        c.send_text("mixed")
        assert [c.recv_message() for _ in range(3)] == [
            (Opcode.BINARY, b"a"), (Opcode.TEXT, b"b"), (Opcode.BINARY, b"c")]
        assert echo(c, "still open") == b"still open"


def test_a_reply_made_before_a_lua_error_is_still_sent(server):
    with open_luatest(server) as c:
        c.send_text("reply then boom")
        assert c.recv_message() == (Opcode.TEXT, b"reply then boom")
        assert c.recv_close()[0] == 1011


def test_a_reply_then_a_close_then_a_send_that_is_refused(server):
    with open_luatest(server) as c:
        c.send_text("reply then close")
        assert c.recv_message() == (Opcode.TEXT, b"reply then close")
        assert c.recv_close() == (4001, "done")
        server.wait_log(r"late send: false connection is closing")


def test_kept_back_replies_count_against_the_outbound_buffer(lapps_server):
    """max_outbound_buffer 1000, slow_consumer "drop": three 302-byte frames fit (the first
    always does), the fourth and fifth are refused, as they are on the direct path."""
    server = lapps_server({"luatest": {"slow_consumer": "drop"}}, lua={"luatest": LUATEST_LUA},
                          workers=1, settings={"limits": {"max_outbound_buffer": 1000}})
    with open_luatest(server) as c:
        c.send_text("burst")
        server.wait_log(r"burst: true true true false false")
        assert [c.recv_message() for _ in range(3)] == [(Opcode.BINARY, b"x" * 300)] * 3


def open_luatest(server):
    c = connect(server.port, "/luatest")
    assert c.status == 101, c.status_line
    return c


def echo(c, text: str) -> bytes:
    c.send_text(text)
    opcode, payload = c.recv_message()
    assert opcode == Opcode.TEXT
    return payload


def handler_of(c) -> int:
    return int(echo(c, "whoami"))


def test_lua_error_closes_1011_logs_traceback_and_spares_other_clients(server):
    with open_luatest(server) as bystander, open_luatest(server) as victim:
        assert echo(bystander, "before") == b"before"
        handler = handler_of(victim)
        victim.send_text("boom")
        assert victim.recv_close()[0] == 1011
        victim.send_close(1011)
        victim.expect_tcp_close(timeout=5)
        lines = server.wait_log(rf"handler {handler}\b")
        text = server.log()
        line = lines[0]
        assert "luatest" in line
        assert f"luatest.lua:{ERROR_LINE}" in text, f"no luatest.lua:{ERROR_LINE} in the log:\n{text}"
        assert "stack traceback" in text
        assert echo(bystander, "after") == b"after"
    assert echo_ok(server.port, path="/luatest")


def test_onmessage_returning_false_closes_1011_and_is_logged(server):
    with open_luatest(server) as bystander, open_luatest(server) as c:
        handler = handler_of(c)
        c.send_text("false")
        assert c.recv_close()[0] == 1011
        line = server.wait_log(rf"handler {handler}\b")[0]
        assert "luatest" in line
        assert echo(bystander, "still here") == b"still here"


def test_ws_close_from_lua_arrives_with_code_and_reason(server):
    with open_luatest(server) as c:
        c.send_text("bye")
        assert c.recv_close() == (4000, "bye")


def test_ws_send_works_with_colon_and_dot_call_styles(server):
    with open_luatest(server) as c:
        c.send_text("styles")
        assert c.recv_message() == (Opcode.TEXT, b"colon style")
        assert c.recv_message() == (Opcode.TEXT, b"dot style")
        assert c.recv_message() == (Opcode.TEXT, b"true true")


def test_ondisconnect_is_called_when_the_client_closes(server):
    with open_luatest(server) as c:
        handler = handler_of(c)
        c.send_close(1000)
        assert c.recv_close()[0] == 1000
    server.wait_log(rf"\[luatest\] onDisconnect {handler}\b")


def test_ondisconnect_is_called_when_the_tcp_connection_drops(server):
    c = open_luatest(server)
    handler = handler_of(c)
    c.close()
    server.wait_log(rf"\[luatest\] onDisconnect {handler}\b")


# ---------------------------------------------------------------------- boot failures

BROKEN_LUA = """\
local broken = {}
function broken.onStart() end
local x = = 1
return broken
"""

NO_ONMESSAGE_LUA = """\
local partial = {}
function partial.onStart() end
function partial.onShutdown() end
function partial.onDisconnect(handler) end
return partial
"""


def test_lua_syntax_error_stops_server_naming_file_and_line(lapps_server):
    server = lapps_server({"broken": {}}, lua={"broken": BROKEN_LUA}, workers=2, wait=False)
    status = server.proc.wait(10)
    assert status != 0
    log = server.log()
    assert "broken.lua:3" in log, log


def test_service_without_onmessage_stops_server_naming_the_function(lapps_server):
    server = lapps_server({"partial": {}}, lua={"partial": NO_ONMESSAGE_LUA}, workers=2, wait=False)
    status = server.proc.wait(10)
    assert status != 0
    log = server.log()
    assert "partial" in log and "onMessage" in log, log


# ---------------------------------------------------------------------- [server] lua_path

ROCKS_USER_LUA = """\
local user = {}
local b = require("a.b")          -- <lua_path>/a/b.lua
local pkg = require("pkg")        -- <lua_path>/pkg/init.lua
function user.onStart() end
function user.onShutdown() end
function user.onDisconnect(handler) end
function user.onMessage(handler, opcode, message)
  ws:send(handler, 1, b.name .. " " .. pkg)
  return true
end
return user
"""


def test_pure_lua_modules_load_from_lua_path(lapps_server, tmp_path):
    rocks = tmp_path / "rocks" / "share" / "lua" / "5.1"
    (rocks / "a").mkdir(parents=True)
    (rocks / "pkg").mkdir()
    (rocks / "a" / "b.lua").write_text("return { name = ... }\n")
    (rocks / "pkg" / "init.lua").write_text("return 'pkg/init.lua'\n")
    server = lapps_server({"user": {}}, lua={"user": ROCKS_USER_LUA}, workers=1,
                          settings={"server": {"lua_path": [str(rocks)]}})
    with connect(server.port, "/user") as c:
        assert echo(c, "which?") == b"a.b pkg/init.lua"


def test_a_message_the_lua_heap_has_no_room_for_closes_1009_and_spares_the_worker(lapps_server):
    """lupa pushes a message outside any protected call, where running past max_memory would
    abort the whole worker (a Lua PANIC): such a message is refused before it reaches Lua."""
    server = lapps_server({"small": {"max_memory": 3 * 1024 * 1024, "request_target": "/small"}},
                          lua={"small": SMALL_ECHO})
    pid = server.worker_pids()
    bystander = connect(server.port, "/echo")
    with connect(server.port, "/small") as c:
        c.send_frame(Opcode.BINARY, b"x" * 100_000)
        assert c.recv_frame(timeout=5).payload == b"x" * 100_000    # fits: echoed
        c.send_frame(Opcode.BINARY, b"y" * (2 * 1024 * 1024))
        frame = c.recv_frame(timeout=5)
        assert frame.opcode == Opcode.CLOSE and int.from_bytes(frame.payload[:2], "big") == 1009
    bystander.send_text("still here")
    assert bystander.recv_frame(timeout=5).payload == b"still here"
    bystander.close()
    assert server.worker_pids() == pid
    server.wait_log(r"service small: a message of 2097152 bytes does not fit in its Lua heap")


SMALL_ECHO = """
local s = {}
function s.onStart() end
function s.onShutdown() end
function s.onDisconnect(h) end
function s.onMessage(h, op, m) return ws:send(h, op, m) end
return s
"""
