"""lapps.static: the answers to plain GET/HEAD requests for static files, without sockets."""

from __future__ import annotations

import email.utils

import pytest

from lapps.static import FileMeta, content_type, file_response, http_error, resolve_target
from lapps.ws.handshake import HandshakeError, Request
from lapps.ws.protocol import EV_HTTP, EV_REQUEST, ServerProtocol, State

META = FileMeta(size=5, mtime_ns=1_700_000_000_123_456_789, inode=42)


def req(method: str = "GET", target: str = "/index.html", **headers: str) -> Request:
    return Request(method, target, [("host", "x"), *((k.replace("_", "-"), v) for k, v in headers.items())])


def split(response: bytes) -> tuple[str, dict[str, str], bytes]:
    head, _, body = response.partition(b"\r\n\r\n")
    status, *lines = head.decode("latin-1").split("\r\n")
    return status, {k.lower(): v for k, v in (line.split(": ", 1) for line in lines)}, body


@pytest.mark.parametrize("target, parts", [
    ("/", ("index.html",)),
    ("/index.html", ("index.html",)),
    ("/demo.js?v=3", ("demo.js",)),
    ("/vendor/cbor-x/index.js", ("vendor", "cbor-x", "index.js")),
    ("/vendor/", ("vendor", "index.html")),
    ("/a%20b.txt", ("a b.txt",)),
    ("/caf%C3%A9.css", ("café.css",)),
])
def test_resolve_target_names_files_under_the_folder(target, parts):
    assert resolve_target(target) == parts


@pytest.mark.parametrize("target", [
    "/../etc/passwd", "/vendor/../../x", "/%2e%2e/etc/passwd", "/%2E%2E/x", "/.%2e/x", "/vendor/%2e%2e/%2e%2e/x",
    "/%2e", "/./index.html", "/a%2f..%2f..%2fetc%2fpasswd", "/a%2Fb", "/a%5c..%5cb", "/index.html%00.js",
    "/%00", "/a%0ab", "//etc/passwd", "/a//b", "/.git/config", "/.env", "/vendor/.built", "/%ff%fe",
    "*", "http://evil/x",
])
def test_resolve_target_refuses_traversal_and_odd_names_with_404(target):
    with pytest.raises(HandshakeError) as e:
        resolve_target(target)
    assert e.value.status == 404


def test_content_types_of_a_page_and_its_assets():
    assert content_type("index.html") == "text/html; charset=utf-8"
    assert content_type("lapps.JS") == "text/javascript; charset=utf-8"
    assert content_type("demo.css") == "text/css; charset=utf-8"
    assert content_type("logo.svg") == "image/svg+xml"
    assert content_type("LICENSE") == "application/octet-stream"
    assert content_type("x.unknown") == "application/octet-stream"


def test_get_answers_200_with_type_length_validators_and_body():
    response, status = file_response(req(), "index.html", META, b"hello")
    line, headers, body = split(response)
    assert (status, line, body) == (200, "HTTP/1.1 200 OK", b"hello")
    assert headers["content-type"] == "text/html; charset=utf-8"
    assert headers["content-length"] == "5"
    assert headers["etag"] == META.etag
    assert email.utils.parsedate_to_datetime(headers["last-modified"]).timestamp() == 1_700_000_000
    assert headers["connection"] == "close"
    assert headers["x-content-type-options"] == "nosniff"


def test_head_answers_the_same_headers_without_a_body():
    get, _ = file_response(req(), "index.html", META, b"hello")
    head, status = file_response(req("HEAD"), "index.html", META, None)
    assert status == 200
    assert split(head)[:2] == split(get)[:2] and split(head)[2] == b""


@pytest.mark.parametrize("headers, fresh", [
    ({"if_none_match": META.etag}, True),
    ({"if_none_match": f'"other", W/{META.etag}'}, True),
    ({"if_none_match": "*"}, True),
    ({"if_none_match": '"other"'}, False),
    # If-None-Match decides even when If-Modified-Since alone would say fresh
    ({"if_none_match": '"other"', "if_modified_since": "Fri, 01 Jan 2100 00:00:00 GMT"}, False),
    ({"if_modified_since": META.last_modified}, True),
    ({"if_modified_since": "Fri, 01 Jan 2100 00:00:00 GMT"}, True),
    ({"if_modified_since": "Thu, 01 Jan 2015 00:00:00 GMT"}, False),
    ({"if_modified_since": "not a date"}, False),
    ({}, False),
])
def test_conditional_get_answers_304_when_the_copy_is_current(headers, fresh):
    response, status = file_response(req(**headers), "index.html", META, b"hello")
    line, out, body = split(response)
    if fresh:
        assert (status, line, body) == (304, "HTTP/1.1 304 Not Modified", b"")
        assert out["etag"] == META.etag and "content-length" not in out
    else:
        assert status == 200 and body == b"hello"


def test_a_get_without_the_whole_body_is_our_own_misuse():
    with pytest.raises(ValueError):
        file_response(req(), "index.html", META, b"hel")


def test_errors_have_a_text_body_except_for_head():
    line, headers, body = split(http_error(req(), 404, "not found"))
    assert line == "HTTP/1.1 404 Not Found" and body == b"404 Not Found: not found\n"
    assert headers["content-length"] == str(len(body))
    line, headers, body = split(http_error(req("HEAD"), 404, "not found"))
    assert line == "HTTP/1.1 404 Not Found" and body == b"" and headers["content-length"] != "0"


# --- the protocol's side: which requests become EV_HTTP ---------------------------------------

def feed(data: bytes, plain_http: bool = True) -> ServerProtocol:
    proto = ServerProtocol(8192, 100, plain_http=plain_http)
    proto.receive_data(data)
    return proto


def test_plain_get_and_head_become_http_events_when_enabled():
    for method in (b"GET", b"HEAD"):
        proto = feed(method + b" /index.html HTTP/1.1\r\nHost: x\r\n\r\n")
        assert [k for k, _ in proto.events] == [EV_HTTP] and proto.state == State.UPGRADING
        proto.respond(b"HTTP/1.1 200 OK\r\n\r\n", 200)
        assert proto.state == State.CLOSED and proto.close_code == 200


def test_plain_get_is_400_as_before_when_disabled():
    proto = feed(b"GET /index.html HTTP/1.1\r\nHost: x\r\n\r\n", plain_http=False)
    assert proto.events == [] and proto.out.startswith(b"HTTP/1.1 400")
    assert feed(b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n", plain_http=False).out.startswith(b"HTTP/1.1 400")


def test_an_upgrade_stays_an_upgrade_when_static_files_are_on():
    proto = feed(b"GET /index.html HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                 b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
    assert [k for k, _ in proto.events] == [EV_REQUEST]
    # a broken upgrade keeps its 400, it is not served as a file
    proto = feed(b"GET /index.html HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\r\n")
    assert proto.events == [] and proto.out.startswith(b"HTTP/1.1 400")


@pytest.mark.parametrize("head", [
    b"GET / HTTP/1.1\r\n\r\n",                                           # no Host
    b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",                     # two
    b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc",        # a body
    b"GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: a\r\n\r\n",
    b"GET / HTTP/1.0\r\nHost: a\r\n\r\n",
])
def test_bad_plain_requests_are_400(head):
    proto = feed(head)
    assert proto.events == [] and proto.out.startswith(b"HTTP/1.1 400"), proto.out


def test_plain_request_heads_have_the_handshake_limits():
    assert feed(b"GET / HTTP/1.1\r\nHost: a\r\nX-Pad: " + b"a" * 9000 + b"\r\n\r\n").out.startswith(b"HTTP/1.1 431")
    many = b"".join(b"X-%d: 1\r\n" % i for i in range(101))
    assert feed(b"GET / HTTP/1.1\r\nHost: a\r\n" + many + b"\r\n").out.startswith(b"HTTP/1.1 431")


@pytest.mark.parametrize("head", [b"GET /a.js?x=1 HTTP/1.1\r\nHost: x\r\n\r\n", b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n"])
def test_plain_requests_fed_byte_by_byte_give_the_same_event(head):
    whole = feed(head)
    proto = ServerProtocol(8192, 100, plain_http=True)
    for i in range(len(head)):
        proto.receive_data(head[i:i + 1])
    assert [(k, r.method, r.target) for k, r in proto.events] == \
        [(k, r.method, r.target) for k, r in whole.events] and len(whole.events) == 1
