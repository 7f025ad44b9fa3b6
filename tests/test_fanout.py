"""Broadcast delivery (workers/fanout.py) on the real server: every subscriber gets every
message in order, and one that does not read is held to max_outbound_buffer by its
service's slow_consumer policy without holding the others up.

Most subscribers get the frame written straight to their socket; once a reader stops, its
kernel buffers fill, the rest of a frame is queued, and later frames join that queue under
the limit. These tests drive both halves: a reader that keeps up and one that reads nothing
until the publishing is over.
"""

from __future__ import annotations

import threading

import pytest

from lapps.client import ConnectionClosed, connect

FAN = """
local fan = {}
function fan.onStart() bcast:create(1000) end
function fan.onMessage(h, msg_type, m)
  if m.method == "subscribe" then
    bcast:subscribe(1000, h)
  elseif m.method == "publish" then
    local first, n, size = m.params[1], m.params[2], m.params[3]
    local pad = string.rep("x", size)
    for i = first + 1, first + n do
      local ok, err = bcast:send(1000, {cid = 5, message = {i, pad}})
      if not ok then error("bcast:send: " .. tostring(err)) end
    end
  end
  ws:send(h, {cid = 0, status = 1, result = {m.method}})
  return true
end
function fan.onDisconnect(h) end
function fan.onShutdown() end
return fan
"""

SIZE, LIMIT = 16 * 1024, 128 * 1024
ROUNDS, PER_ROUND = 12, 32    # 6 MiB to each subscriber: more than the kernel's buffers take


def kernel_send_buffer_max() -> int:
    with open("/proc/sys/net/ipv4/tcp_wmem") as f:
        return int(f.read().split()[2])


def seqs(client, n: int | None, timeout: float, size: int = SIZE, got: list[int] | None = None) -> list[int]:
    """The sequence numbers of the OONs that arrive (appended to `got`): `n` of them, or
    until `timeout` passes without one."""
    got = [] if got is None else got
    while n is None or len(got) < n:
        try:
            message = client.next_oon(5, timeout=timeout)
        except TimeoutError:
            if n is None:
                return got
            raise
        assert len(message[1]) == size
        got.append(message[0])
    return got


@pytest.mark.parametrize("policy", ["close", "drop"])
def test_a_subscriber_that_does_not_read_neither_blocks_others_nor_passes_the_limit(lapps_server, policy):
    server = lapps_server({"fan": {"protocol": "lapps", "slow_consumer": policy}}, lua={"fan": FAN},
                          settings={"limits": {"max_outbound_buffer": LIMIT, "close_timeout": 30, "ping_interval": 0}}, workers=1)
    url = f"ws://127.0.0.1:{server.port}/fan"
    total = ROUNDS * PER_ROUND
    with connect(url) as fast, connect(url) as slow, connect(url) as trigger:
        assert fast.request("subscribe") == ["subscribe"]
        assert slow.request("subscribe") == ["subscribe"]
        fast_got: list[int] = []
        reader = threading.Thread(target=seqs, args=(fast, total, 20), kwargs={"got": fast_got}, daemon=True)
        reader.start()
        for r in range(ROUNDS):   # each publish's messages fit the bus link at once
            assert trigger.request("publish", [r * PER_ROUND, PER_ROUND, SIZE], timeout=20) == ["publish"]
        reader.join(30)
        assert fast_got == list(range(1, total + 1))
        got: list[int] = []
        if policy == "close":
            with pytest.raises(ConnectionClosed) as e:
                seqs(slow, None, timeout=5, got=got)
            assert e.value.code == 1008
        else:
            seqs(slow, None, timeout=2, got=got)
            assert slow.request("subscribe") == ["subscribe"]   # still open, and answered
        # what it did get came in order, without duplicates, and no more than the kernel's
        # buffers and the outbound limit hold
        assert got == sorted(set(got)) and got[:1] == [1]
        assert len(got) < total
        assert len(got) * SIZE <= kernel_send_buffer_max() + 2 * LIMIT + 64 * 1024, (len(got), total)


def test_every_subscriber_gets_every_message_in_order_on_4_workers(lapps_server):
    server = lapps_server({"fan": {"protocol": "lapps"}}, lua={"fan": FAN}, workers=4)
    url = f"ws://127.0.0.1:{server.port}/fan"
    clients = [connect(url) for _ in range(12)]
    try:
        for c in clients:
            assert c.request("subscribe") == ["subscribe"]
        with connect(url) as trigger:
            assert trigger.request("publish", [0, 30, 100]) == ["publish"]
        for c in clients:
            assert seqs(c, 30, timeout=10, size=100) == list(range(1, 31))
    finally:
        for c in clients:
            c.close()
