"""permessage-deflate (RFC 7692) on the real server, with python-websockets as the client
(it offers permessage-deflate by default)."""

from __future__ import annotations

import asyncio
import zlib

import pytest
import websockets

from lapps.client import connect
from wsclient import RawClient


@pytest.fixture(scope="module")
def server(lapps_server_module):
    return lapps_server_module(
        {"echo": {"permessage_deflate": True, "max_inbound_message_size": 1024 * 1024},
         "plain": {"permessage_deflate": False}},
        lua={"plain": PLAIN_ECHO}, workers=1)


PLAIN_ECHO = """
local plain = {}
function plain.onStart() end
function plain.onMessage(h, op, m) ws:send(h, op, m) return true end
function plain.onDisconnect(h) end
function plain.onShutdown() end
return plain
"""


def run(coro):
    return asyncio.run(coro)


def test_negotiated_with_a_deflate_client_and_messages_round_trip(server):
    async def go():
        async with websockets.connect(f"ws://127.0.0.1:{server.port}/echo") as ws:
            agreed = ws.response.headers.get("Sec-WebSocket-Extensions", "")
            texts = ["x" * 10, "abc" * 1000, "ünïcödé " * 500]
            for t in texts:
                await ws.send(t)
                assert await ws.recv() == t
            blob = bytes(range(256)) * 200
            await ws.send(blob)
            assert await ws.recv() == blob
            return agreed
    agreed = run(go())
    assert "permessage-deflate" in agreed and "server_no_context_takeover" in agreed


def test_service_without_deflate_declines_the_offer(server):
    async def go():
        async with websockets.connect(f"ws://127.0.0.1:{server.port}/plain") as ws:
            await ws.send("hello")
            assert await ws.recv() == "hello"
            return ws.response.headers.get("Sec-WebSocket-Extensions")
    assert run(go()) is None


def test_server_compresses_large_messages_on_the_wire(server):
    """A raw socket that offers deflate sees RSV1 frames smaller than the payload."""
    with RawClient.open(server.port) as c:
        c.upgrade("/echo", {"Sec-WebSocket-Extensions": "permessage-deflate; client_no_context_takeover"})
        assert c.status == 101
        assert "permessage-deflate" in c.headers["sec-websocket-extensions"]
        payload = b"a" * 10000
        comp = zlib.compressobj(wbits=-15)
        data = comp.compress(payload) + comp.flush(zlib.Z_SYNC_FLUSH)
        c.send_frame(0x2, data[:-4], rsv1=True)
        frame = c.recv_frame()
        wire = frame.payload
        assert frame.rsv == 4, "the echo should come compressed (RSV1)"
        assert len(wire) < len(payload) // 10
        assert zlib.decompressobj(wbits=-15).decompress(wire + b"\x00\x00\xff\xff") == payload


def test_compression_bomb_closes_1009_before_inflating_it(server):
    """16 MiB of zeros compresses to about 16 KiB; the service allows 1 MiB."""
    bomb = zlib.compressobj(wbits=-15)
    data = bomb.compress(bytes(16 * 1024 * 1024)) + bomb.flush(zlib.Z_SYNC_FLUSH)
    with RawClient.open(server.port) as c:
        c.upgrade("/echo", {"Sec-WebSocket-Extensions": "permessage-deflate"})
        assert c.status == 101
        c.send_frame(0x2, data[:-4], rsv1=True)
        assert c.recv_close()[0] == 1009
    with connect(f"ws://127.0.0.1:{server.port}/echo") as ok:
        ok.send_text("after the bomb")
        assert ok.recv(timeout=5) == (1, b"after the bomb")


def test_rsv1_without_negotiation_is_a_protocol_error(server):
    with RawClient.open(server.port) as c:
        c.upgrade("/plain", {"Sec-WebSocket-Extensions": "permessage-deflate"})
        assert c.status == 101 and "sec-websocket-extensions" not in c.headers
        c.send_frame(0x1, b"not really compressed", rsv1=True)
        assert c.recv_close()[0] == 1002
