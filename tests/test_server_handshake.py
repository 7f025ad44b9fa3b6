"""HTTP upgrade refusals and the handshake timeout, over real sockets (DESIGN §5).

After every refusal a fresh client must still get its message echoed: a bad client costs
its own connection and nothing else.
"""

from __future__ import annotations

import pytest

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
