"""The `cws` Lua module (a WebSocket client for standalone services) against the real server.

One server serves the whole module: the shipped raw `echo` at /echo, and a standalone
service `pinger` (preload cws, nap) that connects with cws to that same server's /echo,
sends "ping from cws" and prints the echo. The server's port must be in the pinger's Lua
source before the server starts, so the fixture picks the port and lends it to the
factory (which otherwise picks its own with `conftest.free_port`).

The other tests drive cws from Lua in a sandboxed runtime of this process.
"""

from __future__ import annotations

import re
import socket
import threading

import pytest

import conftest
from conftest import free_port
from lapps.lua.modules import cws as cws_module
from lapps.lua.modules.cws import install_cws
from lapps.lua.runtime import LuaError, new_runtime
from lapps.lua.values import LuaValues
from lapps.ws.handshake import accept_key

PINGER = """
local pinger = {}
local URI = "ws://127.0.0.1:%d/echo"
local done, retry = false, false
local function connect()
  local ws, err = cws:new(URI, {
    onopen = function(h) cws:send(h, "ping from cws", 1) end,
    onmessage = function(h, message, opcode)
      print("cws echo: " .. message .. " (opcode " .. opcode .. ")")
      done = true
      cws:close(h)
    end,
    onerror = function(h, message) print("cws error: " .. message) end,
    onclose = function(h) if not done then retry = true end end,
  })
  assert(ws, err)
end
function pinger.init() end
function pinger.run()
  connect()
  while not must_stop() do
    cws:eventLoop(0.05)
    if retry then   -- the workers were not serving yet: try again
      retry = false
      nap:new():usleep(100000)
      connect()
    end
  end
end
return pinger
"""


@pytest.fixture(scope="module")
def server(lapps_server_module):
    port = free_port()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(conftest, "free_port", lambda: port)
        return lapps_server_module(
            {"pinger": {"standalone": True, "preload": ["cws", "nap"]}},
            lua={"pinger": PINGER % port})


@pytest.fixture
def lua(tmp_path):
    runtime = new_runtime("cwstest", str(tmp_path))
    runtime.lua.globals().cws = install_cws(runtime.lua, LuaValues(runtime.lua))
    return runtime.lua


# Runs the loop until every connection closed (5 s at most); returns the log of callbacks.
RUN = """
local uri, send = ...
local log = {}
local function add(s) log[#log + 1] = s end
local ws, err
ws, err = cws:new(uri, {
  onopen = function(h)
    add("open " .. tostring(h == ws.handler))
    if send then send(ws, h) end
  end,
  onmessage = function(h, message, opcode)
    add("message " .. opcode .. " " .. message)
    if message == "last" then ws:close(1000, "bye") end
  end,
  onerror = function(h, message) add("error " .. message) end,
  onclose = function(h, code, reason) add("close " .. code .. " " .. reason) end,
})
if not ws then return {"new failed: " .. tostring(err)} end
for i = 1, 100 do
  if cws:eventLoop(0.05) == 0 then break end
end
return log
"""


def run(lua, uri: str, send=None) -> list[str]:
    log = lua.execute(RUN.encode(), uri.encode(), send)
    return [v.decode("utf-8", "replace") for v in log.values()]


def test_echo_text_and_binary_then_close(lua, server):
    send = lua.eval(b"""function(ws, h)
      assert(cws:send(h, "hello"))                -- text by default, colon style
      assert(cws.send(ws, "\\0\\1\\255", 2))      -- dot style, the object instead of the handler
      assert(ws:send("caf\\195\\169", 1))         -- object method, colon style
      assert(ws.send("last"))                     -- object method, dot style
    end""")
    log = run(lua, f"ws://127.0.0.1:{server.port}/echo", send)
    # onclose carries the server's answer to our close: its code (the echo server gives no reason)
    assert log == ["open true", "message 1 hello", "message 2 \0\1\ufffd", "message 1 café",
                   "message 1 last", "close 1000 "]


def test_refused_connection_is_onerror_then_onclose(lua):
    log = run(lua, f"ws://127.0.0.1:{free_port()}/echo")
    assert len(log) == 2, log
    assert log[0].startswith("error cannot connect to 127.0.0.1:") and "refused" in log[0]
    assert log[1].startswith("close 1006")


def test_unknown_path_is_a_rejected_handshake(lua, server):
    log = run(lua, f"ws://127.0.0.1:{server.port}/no_such_service")
    assert len(log) == 2, log
    assert log[0].startswith("error handshake rejected: HTTP 404")
    assert log[1] == "close 1006 HTTP 404"


def test_bad_uris_and_sends(lua):
    check = lua.eval(b"""function()
      local out = {}
      local ws, err = cws:new("ftp://example.com/", {})
      out[1] = tostring(ws) .. " " .. err
      ws, err = cws.new("http://example.com/", {})
      out[2] = tostring(ws) .. " " .. err
      ws, err = cws:new("ws://127.0.0.1:1/", "not a table")
      out[3] = tostring(ws) .. " " .. err
      local ok
      ok, err = cws:send(12345, "x")
      out[4] = tostring(ok) .. " " .. err
      ws = cws:new("ws://127.0.0.1:1/", {})
      ok, err = ws:send("too early")
      out[5] = tostring(ok) .. " " .. err
      ok, err = ws:send("x", 9)
      out[6] = tostring(ok) .. " " .. err
      out[7] = tostring(ws:close())          -- not open yet: dropped
      out[8] = tostring(cws:eventLoop(0))
      return out
    end""")
    out = [v.decode() for v in check().values()]
    assert out[0].startswith("nil cws:new: expects a ws:// or wss:// URI")
    assert out[1].startswith("nil cws:new: expects a ws:// or wss:// URI")
    assert out[2].startswith("nil cws:new: callbacks must be a table")
    assert out[3] == "false cws:send: no open connection with handler 12345"
    assert out[4].endswith("is not open yet")
    assert out[5].startswith("false Usage: cws:send(")
    assert out[6:] == ["true", "0"]


def test_callback_errors_reach_the_caller_of_eventLoop_and_later_events_still_come(lua, server):
    setup = lua.eval(b"""function(uri)
      local log = {}
      local ws = cws:new(uri, {
        onopen = function(h) log[#log + 1] = "open"; cws:send(h, "boom") end,
        onmessage = function(h, m)
          log[#log + 1] = "message"
          cws:close(h)
          error("callback failed: " .. m)
        end,
        onclose = function(h, code) log[#log + 1] = "close " .. code end,
      })
      return log
    end""")
    step = lua.eval(b"function() return cws:eventLoop(0.05) end")
    log = setup(f"ws://127.0.0.1:{server.port}/echo".encode())
    with pytest.raises(LuaError, match="callback failed: boom"):
        for _ in range(100):
            step()
    for _ in range(100):
        if step() == 0:
            break
    assert list(log.values()) == [b"open", b"message", b"close 1000"]


def test_eventLoop_refuses_a_bad_timeout(lua):
    with pytest.raises(LuaError, match="non-negative number"):
        lua.execute(b"cws:eventLoop(-1)")


@pytest.fixture
def fake_server():
    """A one-connection TCP server on 127.0.0.1: `fake_server(answer)` answers the upgrade
    with a correct 101 followed by the bytes `answer`, or (`answer=None`) never answers;
    it then holds the connection open, reading, until the test ends. Returns the port."""
    listener = socket.create_server(("127.0.0.1", 0))
    done = threading.Event()
    threads = []

    def serve(answer):
        conn, _ = listener.accept()
        with conn:
            head = b""
            while b"\r\n\r\n" not in head:
                head += conn.recv(4096)
            if answer is not None:
                key = re.search(rb"Sec-WebSocket-Key: (\S+)", head).group(1).decode()
                conn.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                             b"Connection: Upgrade\r\nSec-WebSocket-Accept: "
                             + accept_key(key).encode() + b"\r\n\r\n" + answer)
            conn.settimeout(0.05)
            while not done.is_set():
                try:
                    if not conn.recv(4096):
                        break
                except socket.timeout:
                    pass

    def start(answer):
        t = threading.Thread(target=serve, args=(answer,), daemon=True)
        t.start()
        threads.append(t)
        return listener.getsockname()[1]

    yield start
    done.set()
    listener.close()
    for t in threads:
        t.join(2)


def test_a_protocol_error_of_the_server_is_onerror_then_onclose(lua, fake_server):
    port = fake_server(b"\x81\x02hi" + b"\x83\x00")   # a text message, then reserved opcode 3
    log = run(lua, f"ws://127.0.0.1:{port}/")
    assert log == ["open true", "message 1 hi", "error connection failed (1002): reserved opcode 3",
                   "close 1002 reserved opcode 3"]


def test_no_handshake_answer_is_the_open_timeout(lua, fake_server, monkeypatch):
    monkeypatch.setattr(cws_module, "OPEN_TIMEOUT", 0.2)
    port = fake_server(None)
    why = f"connection to 127.0.0.1:{port} not open within 0.2 s"
    assert run(lua, f"ws://127.0.0.1:{port}/") == [f"error {why}", f"close 1006 {why}"]


def test_no_answer_to_our_close_is_the_close_timeout(lua, fake_server, monkeypatch):
    monkeypatch.setattr(cws_module, "CLOSE_TIMEOUT", 0.2)
    port = fake_server(b"\x81\x04last")   # our RUN script closes on "last"
    log = run(lua, f"ws://127.0.0.1:{port}/")
    assert log[:2] == ["open true", "message 1 last"]
    assert log[2:] == [f"error close handshake with 127.0.0.1:{port} timed out after 0.2 s",
                       f"close 1006 close handshake with 127.0.0.1:{port} timed out after 0.2 s"]


def test_standalone_service_talks_to_the_servers_own_echo(server):
    # (a first try may meet a 503 while the worker is still starting: the pinger retries)
    server.wait_log(r"\[pinger\] cws echo: ping from cws \(opcode 1\)")
