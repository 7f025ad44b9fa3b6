"""HTTP upgrade refusals and the handshake timeout, over real sockets (DESIGN §5).

After every refusal a fresh client must still get its message echoed: a bad client costs
its own connection and nothing else.
"""

from __future__ import annotations

import pytest

from conftest import wait_for
from wsclient import RawClient, connect, echo_ok

HANDSHAKE_TIMEOUT = 2   # the fixture's [limits] handshake_timeout


@pytest.fixture(scope="module")
def server(lapps_server_module):
    return lapps_server_module(workers=1)


@pytest.mark.parametrize(("case", "request_args", "status"), [
    ("unknown path", {"path": "/no-such-service"}, 404),
    ("missing Host", {"host": None}, 400),
    ("duplicate Host", {"headers": {"Host": "a\r\nHost: b"}}, 400),
    ("missing Upgrade", {"headers": {"Upgrade": None}}, 400),
    ("missing key", {"headers": {"Sec-WebSocket-Key": None}}, 400),
    ("version 8", {"version": "8"}, 426),
    ("head over max_handshake_size", {"headers": {"X-Big": "a" * 9000}}, 431),
    ("more than max_headers fields", {"headers": {f"X-H{i}": "v" for i in range(101)}}, 431),
])
def test_server_refuses_bad_upgrade_with_http_status(server, case, request_args, status):
    args = dict(request_args)
    path = args.pop("path", "/echo")
    with connect(server.port, path, **args) as c:
        assert c.status == status, f"{case}: {c.status_line}"
        assert "upgrade" not in c.headers
        if status == 426:
            assert c.headers.get("sec-websocket-version") == "13"
        c.expect_tcp_close()
    assert echo_ok(server.port), f"the server stopped echoing after: {case}"


def test_server_drops_client_that_stalls_mid_handshake(server):
    with RawClient.open(server.port) as c:
        c.send_raw(b"GET /echo HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n")
        elapsed = c.expect_tcp_close(timeout=HANDSHAKE_TIMEOUT + 3)
        assert elapsed >= HANDSHAKE_TIMEOUT / 2, f"dropped after {elapsed:.2f}s, before the timeout"
    assert echo_ok(server.port)


def test_server_drops_client_that_sends_nothing(server):
    with RawClient.open(server.port) as c:
        c.expect_tcp_close(timeout=HANDSHAKE_TIMEOUT + 3)
    assert echo_ok(server.port)


def test_every_worker_full_answers_503_and_a_freed_place_is_used_again(lapps_server):
    server = lapps_server(workers=2, settings={"server": {"max_connections": 1}})
    with connect(server.port, "/echo") as a, connect(server.port, "/echo") as b:
        assert a.status == 101 and b.status == 101
        with connect(server.port, "/echo") as c:
            assert c.status == 503, c.status_line
            c.expect_tcp_close()
    # the places are free again once the first two left (the slots say so within a loop turn)
    assert wait_for(lambda: echo_ok(server.port), timeout=5)


def test_service_acl_refuses_with_403_before_any_101(lapps_server):
    server = lapps_server({"echo": {}, "guarded": {"acl": {"policy": "deny", "exclude": ["10.0.0.0/8"]}}},
                          lua={"guarded": GUARDED_LUA})
    with connect(server.port, "/guarded") as c:
        assert c.status == 403, c.status_line
        c.expect_tcp_close()
    assert echo_ok(server.port)


def test_origin_not_in_the_allow_list_gets_403(lapps_server):
    server = lapps_server({"echo": {"origins": ["https://good.example"]}})
    with connect(server.port, "/echo", headers={"Origin": "https://evil.example"}) as c:
        assert c.status == 403, c.status_line
    with connect(server.port, "/echo", headers={"Origin": "https://good.example"}) as c:
        assert c.status == 101, c.status_line


GUARDED_LUA = """
local guarded = {}
function guarded.onStart() end
function guarded.onMessage(h, op, m) return true end
function guarded.onDisconnect(h) end
function guarded.onShutdown() end
return guarded
"""


def test_server_acl_closes_a_refused_address_before_reading_a_byte(lapps_server):
    server = lapps_server(settings={"server": {"acl": {"policy": "deny", "exclude": ["10.0.0.0/8"]}}},
                          wait=False)
    server.wait_log("serving")
    with RawClient.open(server.port) as c:
        c.expect_tcp_close(timeout=3)


def test_a_tls_client_hello_on_a_plain_port_gets_400_at_once(server):
    """Not a GET: answered when the first bytes arrive, not after handshake_timeout."""
    with RawClient.open(server.port) as c:
        c.send_raw(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")
        status_line, _ = c.read_head(timeout=1)
        assert status_line.startswith("HTTP/1.1 400")
