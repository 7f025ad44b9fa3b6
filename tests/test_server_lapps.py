"""LAppS-protocol services, broadcast, mqr and standalone services on the real server.

Clients are the project's own `lapps.client`, over real sockets, against a server started
as a subprocess (tests/conftest.py).
"""

from __future__ import annotations

import os
import signal
import time

import cbor2
import psutil
import pytest

from conftest import wait_for, worker_of_each
from lapps.client import ConnectionClosed, LappsRequestError, connect

# A standalone publisher on bcast channel 1000, fast enough for tests (the shipped
# time_broadcast publishes once a second).
TICKER = """
local ticker = {}
function ticker.init() bcast:create(1000) end
function ticker.run()
  local pause = nap:new()
  local n = 0
  while not must_stop() do
    n = n + 1
    bcast:send(1000, { cid = 5, message = { n, instance_id } })
    pause:usleep(50000)
  end
end
return ticker
"""

# A LAppS service for the mqr test: "post" queues jobs; "watch" subscribes to results.
MQ_FRONT = """
local front = {}
local jobs
function front.onStart() jobs = mqr.create("jobs") end
function front.onMessage(h, msg_type, m)
  if m.method == "post" then
    for i = 1, m.params[1] do jobs:post({ seq = i }) end
    ws:send(h, { cid = 0, status = 1, result = { m.params[1] } })
  elseif m.method == "watch" then
    bcast:subscribe(2000, h)
    ws:send(h, { cid = 0, status = 1, result = {} })
  end
  return true
end
function front.onDisconnect(h) end
function front.onShutdown() end
return front
"""

MQ_WORKER = """
local w = {}
local jobs
function w.init() jobs = mqr.create("jobs") end
function w.run()
  while not must_stop() do
    local job = jobs:recv()
    if job ~= nil then
      bcast:send(2000, { cid = 7, message = { job.seq, instance_id } })
      nap:new():usleep(2000)   -- work takes a little time, so both receivers get some
    end
  end
end
return w
"""

# A raw service that misbehaves on request.
ROGUE = """
local rogue = {}
function rogue.onStart() end
function rogue.onMessage(h, op, m)
  if m == "loop" then while true do end end
  if m == "bomb" then
    local t = {}
    for i = 1, 1e9 do t[i] = string.rep("x", 64) .. i end
  end
  ws:send(h, op, m)
  return true
end
function rogue.onDisconnect(h) end
function rogue.onShutdown() end
return rogue
"""


def lapps_url(server, path="/echo_lapps") -> str:
    return f"ws://127.0.0.1:{server.port}{path}"


@pytest.fixture(scope="module")
def demo(lapps_server_module):
    """The shipped LAppS demo (echo_lapps) with a fast ticker on its channel, 2 workers."""
    return lapps_server_module(
        {"echo_lapps": {"protocol": "LAppS", "preload": ["time", "murmur"]},
         "ticker": {"standalone": True, "preload": ["nap"]}},
        lua={"ticker": TICKER}, workers=2)


def login(client) -> dict:
    result = client.request("login", ["user", "secret"])
    assert isinstance(result[0]["authkey"], str) and len(result[0]["authkey"]) == 16
    return result[0]


def test_lapps_request_response_flow_of_the_demo(demo):
    with connect(lapps_url(demo)) as c:
        key = login(c)
        assert c.request("echo", [key, 1, "two", 3.5, None, [4, {"five": 5}]]) == [1, "two", 3.5, None, [4, {"five": 5}]]
        assert c.request("logout", [key]) == []
        with pytest.raises(LappsRequestError) as e:
            c.request("echo", [key, 1])
        assert e.value.code == -32000


def test_unknown_method_is_an_error_object_and_the_connection_stays(demo):
    with connect(lapps_url(demo)) as c:
        with pytest.raises(LappsRequestError) as e:
            c.request("no_such_method")
        assert e.value.code == -32601
        login(c)


def test_integers_stay_integers_both_ways(demo):
    with connect(lapps_url(demo)) as c:
        key = login(c)
        big = 2**53 - 1
        result = c.request("echo", [key, big, -7, 0, 2.0])
        assert result == [big, -7, 0, 2.0]
        assert [type(x) for x in result[:3]] == [int, int, int]


def test_server_answers_what_never_reaches_lua_then_closes_1003(demo):
    with connect(lapps_url(demo)) as c:
        c.send_text("not cbor, not binary")
        op, raw = c.recv(timeout=5)
        answer = cbor2.loads(raw)
        assert answer["cid"] == 0 and answer["status"] == 0 and answer["error"]["code"] == -32600
        c.send_binary(b"\xff\x00garbage")
        assert cbor2.loads(c.recv(timeout=5)[1])["error"]["code"] == -32700
        c.send_binary(cbor2.dumps({"lapps": 1, "method": "_private"}))
        assert cbor2.loads(c.recv(timeout=5)[1])["error"]["code"] == -32600
        # that was lapps_max_errors (3): the connection is closed with 1003
        with pytest.raises(ConnectionClosed) as e:
            c.recv(timeout=5)
        assert e.value.code == 1003


def test_oons_arrive_while_requests_are_answered_in_order(demo):
    with connect(lapps_url(demo)) as c:
        key = login(c)
        assert c.request("subscribe", [key]) == []
        for i in range(40):
            assert c.request("echo", [key, i]) == [i]
        first = c.next_oon(5, timeout=5)
        second = c.next_oon(5, timeout=5)
        assert isinstance(first[0], int) and second[0] > first[0]


def test_client_notification_is_never_answered(demo):
    with connect(lapps_url(demo)) as c:
        c.notify("echo", [1], cid=3)
        key = login(c)   # the next channel-0 message is the login answer, not an answer to the notification
        assert key


def test_broadcast_from_a_standalone_service_reaches_clients_on_all_4_workers(lapps_server):
    server = lapps_server(
        {"echo_lapps": {"protocol": "lapps", "preload": ["time", "murmur"]},
         "ticker": {"standalone": True, "preload": ["nap"]}},
        lua={"ticker": TICKER}, workers=4)
    clients = [connect(lapps_url(server)) for _ in range(8)]
    try:
        for c in clients:
            c.request("subscribe", [login(c)])
        owners = wait_for(lambda: (lambda o: o if None not in o else None)(worker_of_each(server, clients)), 5)
        assert owners and len(set(owners)) == 4, f"clients are on workers {owners}"
        for c in clients:
            message = c.next_oon(5, timeout=5)
            assert message[1] == "ticker#1"
    finally:
        for c in clients:
            c.close()


def test_mqr_two_consumers_share_the_jobs_each_exactly_once(lapps_server):
    server = lapps_server(
        {"front": {"protocol": "lapps", "preload": ["mqr"]},
         "mqworker": {"standalone": True, "instances": 2, "preload": ["mqr", "nap"]}},
        lua={"front": MQ_FRONT, "mqworker": MQ_WORKER}, workers=1)
    server.wait_log(r"service mqworker#2 .*started|lapps\[service mqworker#2\] INFO started")
    with connect(lapps_url(server, "/front")) as c:
        c.request("watch")
        assert c.request("post", [60]) == [60]
        seen: dict[int, str] = {}
        deadline = time.monotonic() + 15
        while len(seen) < 60 and time.monotonic() < deadline:
            seq, who = c.next_oon(7, timeout=10)
            assert seq not in seen, f"job {seq} was done twice ({seen[seq]} and {who})"
            seen[seq] = who
    assert sorted(seen) == list(range(1, 61))
    assert set(seen.values()) == {"mqworker#1", "mqworker#2"}


def test_standalone_instance_killed_is_restarted(demo):
    def ticker_pid() -> int | None:
        for p in psutil.Process(demo.pid).children():
            try:
                if "lapps: service ticker#1" in " ".join(p.cmdline()):
                    return p.pid
            except psutil.Error:   # the killed one, a zombie until the master reaps it
                continue
        return None

    old = wait_for(ticker_pid, 5)
    assert old, "no process titled 'lapps: service ticker#1'"
    os.kill(old, signal.SIGKILL)
    new = wait_for(lambda: (lambda p: p if p and p != old else None)(ticker_pid()), 10)
    assert new, "the killed instance was not restarted"
    with connect(lapps_url(demo)) as c:
        c.request("subscribe", [login(c)])
        assert c.next_oon(5, timeout=5)[1] == "ticker#1"


@pytest.mark.parametrize("what", ["loop", "bomb"])
def test_endless_loop_and_memory_bomb_close_1011_and_spare_the_worker(lapps_server, what):
    server = lapps_server({"rogue": {"instruction_budget": 20_000_000, "max_memory": 32 * 1024 * 1024}},
                          lua={"rogue": ROGUE}, workers=1)
    url = lapps_url(server, "/rogue")
    with connect(url) as bystander, connect(url) as victim:
        bystander.send_text("before")
        assert bystander.recv(timeout=5) == (1, b"before")
        victim.send_text(what)
        with pytest.raises(ConnectionClosed) as e:
            victim.recv(timeout=15)
        assert e.value.code == 1011
        bystander.send_text("after")
        assert bystander.recv(timeout=5) == (1, b"after")
    expected = "instruction budget exceeded" if what == "loop" else "not enough memory"
    server.wait_log(expected)


# Answers to the connection being served are kept in Lua and go back with onMessage's
# result (lapps/lua/service.py); the order of everything sent must not show it.
KEEPER = """
local keeper = {}
function keeper.onStart() end
function keeper.onMessage(h, msg_type, m)
  if m.method == "mixed" then
    ws:send(h, { cid = 0, status = 1, result = { 1 } })         -- kept
    ws:send(h, { cid = 9, message = { "after" } })               -- direct: the kept one first
    ws:send(h, { cid = 0, status = 1, result = { 2 } })          -- direct
  elseif m.method == "then_error" then
    ws:send(h, { cid = 0, status = 1, result = { "made" } })
    error("after the answer")
  elseif m.method == "results" then
    local a = ws:send(h, { cid = 0, status = 1, result = { "a" } })
    local b = ws:send(h, { cid = 0, status = 1, result = { "b" } })
    local c = ws:send(h, { cid = 0, status = 7, result = { "c" } })
    ws:send(h, { cid = 0, status = 1, result = { tostring(a), tostring(b), tostring(c) } })
  end
  return true
end
function keeper.onDisconnect(h) end
function keeper.onShutdown() end
return keeper
"""


@pytest.fixture(scope="module")
def keeper(lapps_server_module):
    return lapps_server_module({"keeper": {"protocol": "LAppS"}}, lua={"keeper": KEEPER}, workers=1)


def raw_answers(c, n: int) -> list:
    return [cbor2.loads(c.recv(timeout=5)[1]) for _ in range(n)]


def test_a_kept_answer_goes_before_what_is_sent_after_it(keeper):
    with connect(lapps_url(keeper, "/keeper")) as c:
        c.send_binary(cbor2.dumps({"lapps": 1, "method": "mixed"}))
        assert raw_answers(c, 3) == [{"cid": 0, "status": 1, "result": [1]},
                                     {"cid": 9, "message": ["after"]},
                                     {"cid": 0, "status": 1, "result": [2]}]


def test_an_answer_made_before_a_lua_error_is_still_sent(keeper):
    with connect(lapps_url(keeper, "/keeper")) as c:
        assert c.request("then_error") == ["made"]
        with pytest.raises(ConnectionClosed) as e:
            c.recv(timeout=5)
        assert e.value.code == 1011


def test_ws_send_of_answers_returns_what_the_direct_way_returns(keeper):
    with connect(lapps_url(keeper, "/keeper")) as c:
        c.send_binary(cbor2.dumps({"lapps": 1, "method": "results"}))
        assert raw_answers(c, 3) == [{"cid": 0, "status": 1, "result": ["a"]},
                                     {"cid": 0, "status": 1, "result": ["b"]},
                                     {"cid": 0, "status": 1, "result": ["true", "true", "false"]}]
