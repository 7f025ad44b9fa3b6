"""Limits and timeouts on the real server (DESIGN §2 [limits], issue: hardening).

Each test checks the exact status or close code, and that the server still serves a
normal client afterwards.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import time

import pytest
import websockets

from conftest import wait_for
from lapps.client import ConnectionClosed, connect
from lapps.ws.constants import Opcode
from wsclient import RawClient, echo_ok
from wsclient import connect as raw_connect

FLOOD = """
local flood = {}
function flood.onStart() end
function flood.onMessage(h, op, m)
  if m == "flood" then
    local chunk = string.rep("x", 65536)
    local sent, refused = 0, 0
    for i = 1, 40 do
      local ok, err = ws:send(h, 2, chunk)
      if ok then sent = sent + 1 else refused = refused + 1 end
    end
    print("flood sent " .. sent .. " refused " .. refused)
    return true
  end
  ws:send(h, op, m)
  return true
end
function flood.onDisconnect(h) end
function flood.onShutdown() end
return flood
"""

COUNTER = """
local counter = {}
local counts = {}
function counter.onStart() end
function counter.onMessage(h, op, m)
  counts[h] = (counts[h] or 0) + 1
  ws:send(h, op, m)
  return true
end
function counter.onDisconnect(h)
  print("handled " .. h .. " " .. (counts[h] or 0))
end
function counter.onShutdown() end
return counter
"""


def test_per_address_cap_answers_429_and_frees_the_place_on_close(lapps_server):
    server = lapps_server(settings={"limits": {"max_connections_per_ip": 2}}, workers=2)
    time.sleep(0.5)   # let the readiness probe's own connection be reported closed
    first, second = raw_connect(server.port), raw_connect(server.port)
    try:
        assert first.status == 101 and second.status == 101
        with raw_connect(server.port) as third:
            assert third.status == 429, third.status_line
    finally:
        first.close()
    # the worker reports the close to the master within a loop turn
    assert wait_for(lambda: echo_ok(server.port), timeout=5)
    second.close()


@pytest.mark.parametrize("policy", ["close", "drop"])
def test_outbound_buffer_over_the_limit_closes_1008_or_drops(lapps_server, policy):
    server = lapps_server({"flood": {"slow_consumer": policy}}, lua={"flood": FLOOD},
                          settings={"limits": {"max_outbound_buffer": 256 * 1024}})
    with connect(f"ws://127.0.0.1:{server.port}/flood") as c:
        c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        c.send_text("flood")
        line = server.wait_log(r"flood sent \d+ refused \d+")[0]
        sent = int(line.split("sent ")[1].split()[0])
        assert sent < 40, f"every 64 KiB message was queued past a 256 KiB limit: {line}"
        received = 0
        if policy == "close":
            with pytest.raises(ConnectionClosed) as e:
                while True:
                    c.recv(timeout=5)
                    received += 1
            assert e.value.code == 1008
            assert received <= sent
        else:
            for _ in range(sent):
                assert c.recv(timeout=5)[0] == Opcode.BINARY
            c.send_text("still open")
            assert c.recv(timeout=5) == (1, b"still open")
    assert echo_ok(server.port, path="/flood")


def test_idle_connection_is_closed_1001_and_a_chatty_one_is_not(lapps_server):
    server = lapps_server(settings={"limits": {"idle_timeout": 1.5}})
    with connect(f"ws://127.0.0.1:{server.port}/echo") as idle, \
            connect(f"ws://127.0.0.1:{server.port}/echo") as chatty:
        deadline = time.monotonic() + 6
        while time.monotonic() < deadline:
            chatty.send_text("here")
            assert chatty.recv(timeout=5) == (1, b"here")
            time.sleep(0.3)
        with pytest.raises(ConnectionClosed) as e:
            idle.recv(timeout=1)
        assert e.value.code == 1001


def test_server_pings_and_drops_a_peer_that_never_answers(lapps_server):
    server = lapps_server(settings={"limits": {"ping_interval": 1, "ping_timeout": 1}})
    with raw_connect(server.port) as c:
        frame = c.recv_frame(timeout=5)
        assert frame.opcode == Opcode.PING
        c.expect_tcp_close(timeout=6)   # never answered: dropped


def test_a_peer_that_answers_pings_stays_connected(lapps_server):
    server = lapps_server(settings={"limits": {"ping_interval": 1, "ping_timeout": 1}})

    async def go() -> str:
        async with websockets.connect(f"ws://127.0.0.1:{server.port}/echo") as ws:   # answers pings
            await asyncio.sleep(4.5)
            await ws.send("alive")
            return await ws.recv()
    assert asyncio.run(go()) == "alive"


def test_message_rate_limit_closes_1008(lapps_server):
    server = lapps_server(settings={"limits": {"max_messages_per_second": 5}})
    with connect(f"ws://127.0.0.1:{server.port}/echo") as c:
        with pytest.raises(ConnectionClosed) as e:
            for i in range(50):
                c.send_text(f"m{i}")
            while True:
                c.recv(timeout=5)
        assert e.value.code == 1008
    assert echo_ok(server.port)


def test_sigterm_under_load_answers_every_handled_message_before_1001(lapps_server):
    """Clients send without pause; on SIGTERM each gets close 1001, and the number of
    echoes it received equals the number of messages the service handled for it."""
    server = lapps_server({"counter": {}}, lua={"counter": COUNTER}, workers=2,
                          settings={"limits": {"max_outbound_buffer": 64 * 1024 * 1024}})
    clients = [RawClient.open(server.port) for _ in range(6)]
    echoed = []
    for c in clients:
        c.upgrade("/counter")
        c.send_text("whoami")
        assert c.recv_message() == (Opcode.TEXT, b"whoami")
    for c in clients:
        for i in range(200):
            c.send_text(f"message {i}")
    os.kill(server.pid, signal.SIGTERM)
    for c in clients:
        count, code = 1, None
        while code is None:
            frame = c.recv_frame(timeout=10)
            if frame.opcode == Opcode.CLOSE:
                code = int.from_bytes(frame.payload[:2], "big")
            elif frame.opcode == Opcode.TEXT:
                count += 1
        assert code == 1001
        c.send_close(1001)
        echoed.append(count)
        c.close()
    server.proc.wait(timeout=15)
    assert server.proc.returncode == 0
    handled = [int(line.rsplit(" ", 1)[1]) for line in server.log().splitlines() if "] handled " in line]
    assert sorted(handled) == sorted(echoed), f"handled {handled}, echoed {echoed}"
