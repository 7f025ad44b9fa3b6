"""Closing: the close handshake, protocol errors and their codes, close_timeout (DESIGN §5)."""

from __future__ import annotations

import pytest

from lapps.ws.constants import Opcode
from lapps.ws.frames import encode_frame
from wsclient import MASK_KEY, RawClient, connect, echo_ok, upgrade_request

CLOSE_TIMEOUT = 1        # the fixture's [limits] close_timeout
MAX_MESSAGE = 1024       # echo's max_inbound_message_size in this module

# A service that starts the closing handshake itself when asked to.
CLOSER_LUA = """\
local closer = {}
function closer.onStart() end
function closer.onShutdown() end
function closer.onDisconnect(handler) end
function closer.onMessage(handler, opcode, message)
  if message == "close please" then
    ws:close(handler, 1000)
  else
    ws:send(handler, opcode, message)
  end
  return true
end
return closer
"""


@pytest.fixture(scope="module")
def server(lapps_server_module):
    return lapps_server_module({"echo": {"max_inbound_message_size": MAX_MESSAGE}, "closer": {}},
                               lua={"closer": CLOSER_LUA}, workers=1)


@pytest.mark.parametrize("code", [1000, 3000])
def test_server_echoes_close_code(server, code):
    with connect(server.port) as c:
        c.send_close(code, "done")
        assert c.recv_close()[0] == code
        c.expect_tcp_close()


@pytest.mark.parametrize(("case", "frame", "expected"), [
    ("unmasked frame", encode_frame(Opcode.TEXT, b"hello"), 1002),
    ("invalid UTF-8 in text", encode_frame(Opcode.TEXT, b"ok \xff\xfe", mask_key=MASK_KEY), 1007),
    ("message over max_inbound_message_size",
     encode_frame(Opcode.BINARY, b"x" * (MAX_MESSAGE + 1), mask_key=MASK_KEY), 1009),
    ("close code 1005", encode_frame(Opcode.CLOSE, (1005).to_bytes(2, "big"), mask_key=MASK_KEY), 1002),
    ("close code 999", encode_frame(Opcode.CLOSE, (999).to_bytes(2, "big"), mask_key=MASK_KEY), 1002),
    ("1-byte close payload", encode_frame(Opcode.CLOSE, b"\x03", mask_key=MASK_KEY), 1002),
    ("reserved opcode 3", encode_frame(3, b"", mask_key=MASK_KEY), 1002),
])
def test_server_closes_on_bad_input_with_code(server, case, frame, expected):
    with connect(server.port) as c:
        c.send_raw(frame)
        assert c.recv_close()[0] == expected, case
        c.send_close(expected)
        c.expect_tcp_close()
    assert echo_ok(server.port), f"the server stopped echoing after: {case}"


def test_message_of_exactly_max_inbound_message_size_is_echoed(server):
    with connect(server.port) as c:
        c.send_frame(Opcode.BINARY, b"y" * MAX_MESSAGE)
        assert c.recv_message() == (Opcode.BINARY, b"y" * MAX_MESSAGE)


def test_fragmented_message_over_max_inbound_message_size_closes_1009(server):
    with connect(server.port) as c:
        c.send_frame(Opcode.BINARY, b"z" * 600, fin=False)
        c.send_frame(Opcode.CONTINUATION, b"z" * 600, fin=True)
        assert c.recv_close()[0] == 1009


def test_server_drops_client_that_never_answers_its_close(server):
    with connect(server.port, "/closer") as c:
        assert c.status == 101
        c.send_text("close please")
        assert c.recv_close()[0] == 1000
        # no close frame back: the server gives up after close_timeout
        c.expect_tcp_close(timeout=CLOSE_TIMEOUT + 3)
    assert echo_ok(server.port, path="/closer")


def test_server_closes_tcp_once_client_answers_its_close(server):
    """RFC 6455 §7.1.1: once the closing handshake is done, the server closes the TCP connection."""
    with connect(server.port, "/closer") as c:
        c.send_text("close please")
        assert c.recv_close()[0] == 1000
        c.send_close(1000)
        c.expect_tcp_close(timeout=CLOSE_TIMEOUT + 3)


def test_frames_pipelined_with_the_upgrade_request_are_echoed(server):
    with RawClient.open(server.port) as c:
        c.send_raw(upgrade_request("/echo")
                   + encode_frame(Opcode.TEXT, b"first", mask_key=MASK_KEY)
                   + encode_frame(Opcode.BINARY, b"second", mask_key=MASK_KEY))
        c.read_head()
        assert c.status == 101
        assert c.recv_message() == (Opcode.TEXT, b"first")
        assert c.recv_message() == (Opcode.BINARY, b"second")
