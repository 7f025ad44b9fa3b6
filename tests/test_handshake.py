"""The HTTP upgrade (RFC 6455 §4, DESIGN §5) through `ServerProtocol`.

Every vector is fed whole, byte by byte and at seeded random split points; the answer is
read back from `out` by parsing the status line, so the tests check the bytes a client
would see, not an internal flag.
"""

from __future__ import annotations

import base64
import zlib

import pytest

from lapps.ws.handshake import accept_key
from lapps.ws.protocol import EV_REQUEST, ServerProtocol, State

from wsvectors import (DROP, MODES, SAMPLE_ACCEPT, SAMPLE_KEY, feed, header_values,
                       parse_http_response, upgrade_request)


def with_raw_line(line: bytes, request: bytes | None = None) -> bytes:
    """`request` with `line` inserted as the first header line, byte for byte."""
    request = upgrade_request() if request is None else request
    first, rest = request.split(b"\r\n", 1)
    return first + b"\r\n" + line + b"\r\n" + rest


def key_of(n: int) -> str:
    return base64.b64encode(bytes(range(n))).decode()


PAD = "a" * 600           # with max_handshake_size=512 below, the head is too large

# (id, request bytes, expected status, ServerProtocol kwargs)
ERROR_VECTORS = [
    # 431
    ("head-over-max-handshake-size", upgrade_request(extra=[("X-Pad", PAD)]), 431,
     {"max_handshake_size": 512}),
    ("unterminated-head-over-max-handshake-size",
     upgrade_request(extra=[("X-Pad", PAD)])[:-4], 431, {"max_handshake_size": 512}),
    ("more-than-max-headers",
     upgrade_request(extra=[(f"X-{i}", "1") for i in range(4)]), 431, {"max_headers": 8}),
    # 400: framing of the head
    ("duplicate-host", upgrade_request(extra=[("Host", "other.example.com")]), 400, {}),
    ("duplicate-host-same-value", upgrade_request(extra=[("host", "server.example.com")]), 400, {}),
    ("missing-host", upgrade_request(headers={"Host": DROP}), 400, {}),
    ("content-length-5", upgrade_request(extra=[("Content-Length", "5")]) + b"hello", 400, {}),
    ("transfer-encoding", upgrade_request(extra=[("Transfer-Encoding", "chunked")]), 400, {}),
    ("bare-lf-everywhere", upgrade_request(eol=b"\n"), 400, {}),
    ("bare-lf-in-one-line", upgrade_request().replace(b"Upgrade: websocket\r\n",
                                                      b"Upgrade: websocket\n"), 400, {}),
    ("bare-lf-before-blank-line", upgrade_request()[:-4] + b"\n\r\n", 400, {}),
    ("bare-cr-in-a-line", with_raw_line(b"X-Test: a\rb"), 400, {}),
    ("obs-fold-space", with_raw_line(b"X-Folded: a\r\n  b"), 400, {}),
    ("obs-fold-tab", with_raw_line(b"X-Folded: a\r\n\tb"), 400, {}),
    ("space-before-colon", with_raw_line(b"X-Test : 1"), 400, {}),
    ("space-before-colon-on-host",
     with_raw_line(b"Host : server.example.com", upgrade_request(headers={"Host": DROP})), 400, {}),
    ("control-byte-0x01-in-value", with_raw_line(b"X-Test: a\x01b"), 400, {}),
    ("nul-in-value", with_raw_line(b"X-Test: a\x00b"), 400, {}),
    ("del-in-value", with_raw_line(b"X-Test: a\x7fb"), 400, {}),
    ("header-line-without-colon", with_raw_line(b"X-Test"), 400, {}),
    # 400: request line
    ("method-post", upgrade_request(method="POST"), 400, {}),
    ("method-lowercase-get", upgrade_request(method="get"), 400, {}),
    ("http-1.0", upgrade_request(version="HTTP/1.0"), 400, {}),
    ("http-2.0", upgrade_request(version="HTTP/2.0"), 400, {}),
    ("malformed-request-line", upgrade_request(target="/a b"), 400, {}),
    # 400: upgrade headers
    ("missing-upgrade", upgrade_request(headers={"Upgrade": DROP}), 400, {}),
    ("invalid-upgrade", upgrade_request(headers={"Upgrade": "h2c"}), 400, {}),
    ("missing-connection", upgrade_request(headers={"Connection": DROP}), 400, {}),
    ("invalid-connection", upgrade_request(headers={"Connection": "keep-alive"}), 400, {}),
    ("missing-key", upgrade_request(headers={"Sec-WebSocket-Key": DROP}), 400, {}),
    ("key-not-base64", upgrade_request(headers={"Sec-WebSocket-Key": "not base64 at all!!"}), 400, {}),
    ("key-15-bytes", upgrade_request(headers={"Sec-WebSocket-Key": key_of(15)}), 400, {}),
    ("key-17-bytes", upgrade_request(headers={"Sec-WebSocket-Key": key_of(17)}), 400, {}),
    ("key-non-ascii", upgrade_request(headers={"Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=\xe9"}),
     400, {}),
    ("two-keys", upgrade_request(extra=[("Sec-WebSocket-Key", key_of(16))]), 400, {}),
    # 426
    ("version-8", upgrade_request(headers={"Sec-WebSocket-Version": "8"}), 426, {}),
    ("missing-version", upgrade_request(headers={"Sec-WebSocket-Version": DROP}), 426, {}),
    ("two-versions", upgrade_request(extra=[("Sec-WebSocket-Version", "8")]), 426, {}),
]


def _vector_params():
    for name, request, status, kwargs in ERROR_VECTORS:
        for mode in MODES:
            yield pytest.param(request, status, kwargs, mode, id=f"{name}-{status}-{mode}")


def _seed(request: bytes) -> int:
    return zlib.crc32(request)


@pytest.mark.parametrize("request_bytes,status,kwargs,mode", list(_vector_params()))
def test_bad_handshake_answers_http_error_and_closes(request_bytes, status, kwargs, mode):
    proto = ServerProtocol(**kwargs)
    feed(proto, request_bytes, mode, _seed(request_bytes))
    got, headers, rest = parse_http_response(proto.out)
    assert got == status
    assert rest == b""                               # one response, nothing after it
    assert proto.state == State.CLOSED
    assert proto.close_code == status
    assert proto.events == []                        # the service never sees the request
    assert header_values(headers, "connection") == ["close"]
    if status == 426:
        assert header_values(headers, "sec-websocket-version") == ["13"]


@pytest.mark.parametrize("mode", MODES)
def test_version_8_answers_426_with_supported_version(mode):
    proto = ServerProtocol()
    feed(proto, upgrade_request(headers={"Sec-WebSocket-Version": "8"}), mode)
    status, headers, _ = parse_http_response(proto.out)
    assert status == 426
    assert ("sec-websocket-version", "13") in headers
    assert proto.state == State.CLOSED


@pytest.mark.parametrize("mode", MODES)
def test_head_of_exactly_max_handshake_size_is_accepted(mode):
    base = upgrade_request(extra=[("X-Pad", "")])
    request = upgrade_request(extra=[("X-Pad", "a" * (512 - len(base)))])
    assert len(request) == 512
    proto = ServerProtocol(max_handshake_size=512)
    feed(proto, request, mode, 7)
    assert [k for k, _ in proto.events] == [EV_REQUEST]
    assert proto.out == b""


@pytest.mark.parametrize("mode", MODES)
def test_exactly_max_headers_fields_is_accepted(mode):
    proto = ServerProtocol(max_headers=8)
    feed(proto, upgrade_request(extra=[(f"X-{i}", "1") for i in range(3)]), mode, 3)
    assert [k for k, _ in proto.events] == [EV_REQUEST]


@pytest.mark.parametrize("mode", MODES)
def test_content_length_zero_is_not_a_body(mode):
    proto = ServerProtocol()
    feed(proto, upgrade_request(extra=[("Content-Length", "0")]), mode, 5)
    assert [k for k, _ in proto.events] == [EV_REQUEST]


@pytest.mark.parametrize("mode", MODES)
def test_valid_request_yields_one_request_event_with_path_without_query(mode):
    proto = ServerProtocol()
    feed(proto, upgrade_request(target="/chat?room=1&x=%20"), mode, 11)
    assert len(proto.events) == 1
    kind, req = proto.events[0]
    assert kind == EV_REQUEST
    assert req is proto.request
    assert req.method == "GET"
    assert req.target == "/chat?room=1&x=%20"
    assert req.path == "/chat"
    assert req.get("host") == "server.example.com"
    assert proto.state == State.UPGRADING
    assert proto.out == b""


@pytest.mark.parametrize("mode", MODES)
def test_accept_answers_101_with_rfc_sample_accept_key(mode):
    assert accept_key(SAMPLE_KEY) == SAMPLE_ACCEPT
    proto = ServerProtocol()
    feed(proto, upgrade_request(), mode, 13)
    assert proto.accept() is None
    status, headers, rest = parse_http_response(proto.out)
    assert status == 101
    assert rest == b""
    assert header_values(headers, "sec-websocket-accept") == [SAMPLE_ACCEPT]
    assert [v.lower() for v in header_values(headers, "upgrade")] == ["websocket"]
    assert [v.lower() for v in header_values(headers, "connection")] == ["upgrade"]
    assert header_values(headers, "sec-websocket-protocol") == []
    assert proto.state == State.OPEN
    assert proto.out.startswith(b"HTTP/1.1 101 ")


@pytest.mark.parametrize("offered,supported,chosen", [
    pytest.param("chat, superchat", ("superchat",), "superchat", id="second-offered"),
    pytest.param("chat, superchat", ("superchat", "chat"), "chat", id="client-order-wins"),
    pytest.param("Chat", ("chat",), None, id="case-differs-no-match"),
    pytest.param("chat", ("other",), None, id="offered-not-supported"),
    pytest.param(None, ("chat",), None, id="supported-not-offered"),
    pytest.param("chat", (), None, id="service-has-none"),
])
@pytest.mark.parametrize("mode", MODES)
def test_subprotocol_chosen_only_when_offered_and_supported(offered, supported, chosen, mode):
    extra = [] if offered is None else [("Sec-WebSocket-Protocol", offered)]
    proto = ServerProtocol()
    feed(proto, upgrade_request(extra=extra), mode, 17)
    assert proto.accept(subprotocols=supported) == chosen
    status, headers, _ = parse_http_response(proto.out)
    assert status == 101
    assert header_values(headers, "sec-websocket-protocol") == ([] if chosen is None else [chosen])


def test_subprotocol_offered_in_two_header_fields():
    extra = [("Sec-WebSocket-Protocol", "a"), ("Sec-WebSocket-Protocol", "b")]
    proto = ServerProtocol()
    feed(proto, upgrade_request(extra=extra), "whole")
    assert proto.accept(subprotocols=("b",)) == "b"


@pytest.mark.parametrize("case", [str.lower, str.upper, str.swapcase])
@pytest.mark.parametrize("mode", MODES)
def test_header_names_are_case_insensitive(case, mode):
    names = ("Host", "Upgrade", "Connection", "Sec-WebSocket-Key", "Sec-WebSocket-Version")
    request = upgrade_request()
    for name in names:
        request = request.replace(name.encode() + b":", case(name).encode() + b":")
    proto = ServerProtocol()
    feed(proto, request, mode, 19)
    assert [k for k, _ in proto.events] == [EV_REQUEST]
    proto.accept()
    status, headers, _ = parse_http_response(proto.out)
    assert status == 101
    assert header_values(headers, "sec-websocket-accept") == [SAMPLE_ACCEPT]


@pytest.mark.parametrize("mode", MODES)
def test_upgrade_and_connection_values_are_token_lists_in_any_case(mode):
    request = upgrade_request(headers={"Upgrade": "WebSocket", "Connection": "keep-alive, UPGRADE"})
    proto = ServerProtocol()
    feed(proto, request, mode, 23)
    assert [k for k, _ in proto.events] == [EV_REQUEST]


def test_extra_headers_appear_in_101():
    proto = ServerProtocol()
    feed(proto, upgrade_request(), "whole")
    proto.accept(extra_headers=(("X-Served-By", "lapps"), ("Set-Cookie", "a=b")))
    status, headers, _ = parse_http_response(proto.out)
    assert status == 101
    assert header_values(headers, "x-served-by") == ["lapps"]
    assert header_values(headers, "set-cookie") == ["a=b"]


@pytest.mark.parametrize("status", [403, 404, 503])
def test_reject_after_request_answers_status_and_closes(status):
    proto = ServerProtocol()
    feed(proto, upgrade_request(), "whole")
    proto.reject(status, "refused")
    got, headers, rest = parse_http_response(proto.out)
    assert got == status and rest == b""
    assert proto.state == State.CLOSED
    assert proto.close_code == status


def test_bytes_after_rejection_are_ignored():
    proto = ServerProtocol()
    feed(proto, upgrade_request(method="POST"), "whole")
    out = bytes(proto.out)
    proto.receive_data(upgrade_request())
    assert proto.out == out and proto.events == []
    assert proto.state == State.CLOSED


def test_accept_twice_raises():
    proto = ServerProtocol()
    feed(proto, upgrade_request(), "whole")
    proto.accept()
    with pytest.raises(RuntimeError):
        proto.accept()
    with pytest.raises(RuntimeError):
        proto.reject(400)


def test_accept_before_request_raises():
    with pytest.raises(RuntimeError):
        ServerProtocol().accept()


@pytest.mark.parametrize("mode", MODES)
def test_incomplete_head_waits_without_answer(mode):
    proto = ServerProtocol()
    feed(proto, upgrade_request()[:-2], mode, 29)
    assert proto.state == State.HANDSHAKE
    assert proto.events == [] and proto.out == b""
