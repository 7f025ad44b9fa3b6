"""The HTTP/1.1 upgrade of RFC 6455 §4, server side: parse, validate, answer.

Strict on purpose: a WebSocket endpoint has no reason to accept sloppy HTTP, and every
leniency (bare LF, obs-fold, spaces before colons, duplicate Host) is a request-smuggling
or cache-poisoning lever when a proxy sits in front (RFC 9112 §2.2, §5.1, §5.2).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass, field
from http import HTTPStatus

WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

# RFC 9110 §5.6.2 token characters: what a header name may contain.
_TCHAR = frozenset(b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
# Control bytes that must not appear in a field value (HTAB is allowed).
_CTL = frozenset(range(0x00, 0x20)) - {0x09} | {0x7F}


class HandshakeError(Exception):
    """A request the server answers with an HTTP error instead of a 101.

    `status` is the HTTP status, `reason` a short human text that goes into the body,
    `headers` extra response headers (426 must name the supported version).
    """

    def __init__(self, status: int, reason: str, headers: tuple[tuple[str, str], ...] = ()):
        super().__init__(f"{status} {reason}")
        self.status = status
        self.reason = reason
        self.headers = headers


@dataclass(slots=True)
class Request:
    """A parsed upgrade request: the target and headers the router and services need."""

    method: str
    target: str
    headers: list[tuple[str, str]] = field(default_factory=list)  # (lower-case name, value)

    @property
    def path(self) -> str:
        """The target without its query string: what `request_target` is matched against."""
        return self.target.split("?", 1)[0]

    def get(self, name: str) -> str | None:
        """First value of header `name` (lower case), or None."""
        for k, v in self.headers:
            if k == name:
                return v
        return None

    def get_all(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k == name]

    def tokens(self, name: str) -> list[str]:
        """Comma-separated tokens of every `name` header, stripped and lower-cased."""
        return [t.strip().lower() for v in self.get_all(name) for t in v.split(",") if t.strip()]


def find_head_end(buf: bytes | bytearray) -> int:
    """Index just past the blank line ending the request head, or -1 if not there yet.

    A head ended by a bare LF is reported as an error at once rather than waited on until
    the size limit or the timeout: such a client will never send CRLF CRLF.
    """
    end = buf.find(b"\r\n\r\n")
    if end >= 0:
        return end + 4
    if b"\n\n" in buf or b"\n\r\n" in buf:
        raise HandshakeError(400, "bare LF in request head")
    return -1


def parse_request(head: bytes, max_headers: int) -> Request:
    """Parse the request head (up to and including the blank line) into a `Request`.

    Raises `HandshakeError` with the status DESIGN §5 assigns to each fault.
    """
    lines = head[:-4].split(b"\r\n")
    for line in lines:
        if b"\n" in line or b"\r" in line:
            raise HandshakeError(400, "bare CR or LF in request head")
    if len(lines) - 1 > max_headers:
        raise HandshakeError(431, "too many header fields")
    parts = lines[0].split(b" ")
    if len(parts) != 3 or not all(parts):
        raise HandshakeError(400, "malformed request line")
    method, target, version = parts
    if any(b in _CTL or b == 0x20 for b in target) or not target.startswith(b"/"):
        raise HandshakeError(400, "malformed request target")
    if version != b"HTTP/1.1":
        raise HandshakeError(400, "HTTP/1.1 required")
    req = Request(method.decode("latin-1"), target.decode("latin-1"))
    for line in lines[1:]:
        if not line:
            raise HandshakeError(400, "empty header line")
        if line[0] in (0x20, 0x09):
            raise HandshakeError(400, "obsolete line folding")
        name, sep, value = line.partition(b":")
        if not sep or not name or any(b not in _TCHAR for b in name):
            raise HandshakeError(400, "malformed header field name")
        value = value.strip(b" \t")
        if any(b in _CTL for b in value):
            raise HandshakeError(400, "control character in header field value")
        req.headers.append((name.decode("ascii").lower(), value.decode("latin-1")))
    return req


def check_host_and_body(req: Request, what: str = "on the upgrade") -> None:
    """One Host header (HTTP/1.1) and no body: what every request to this port must meet,
    the upgrade and a plain GET for a static file alike."""
    if len(req.get_all("host")) != 1:
        raise HandshakeError(400, "exactly one Host header required")
    if req.get("transfer-encoding") is not None:
        raise HandshakeError(400, f"a request body is not allowed {what}")
    for cl in req.get_all("content-length"):
        if cl.strip() != "0":
            raise HandshakeError(400, f"a request body is not allowed {what}")


def is_plain_request(req: Request) -> bool:
    """A GET or HEAD without an `Upgrade` header: a request for a file, not a WebSocket.
    A request that names any Upgrade goes the upgrade's way (and its 400s), as before."""
    return req.method in ("GET", "HEAD") and req.get("upgrade") is None


def validate_upgrade(req: Request) -> str:
    """Check the WebSocket upgrade headers; return the client's Sec-WebSocket-Key."""
    if req.method != "GET":
        raise HandshakeError(400, "WebSocket upgrade must use GET")
    check_host_and_body(req)
    if "websocket" not in req.tokens("upgrade"):
        raise HandshakeError(400, "missing or invalid Upgrade header")
    if "upgrade" not in req.tokens("connection"):
        raise HandshakeError(400, "missing or invalid Connection header")
    keys = req.get_all("sec-websocket-key")
    if len(keys) != 1:
        raise HandshakeError(400, "exactly one Sec-WebSocket-Key header required")
    try:
        if len(base64.b64decode(keys[0].encode("ascii"), validate=True)) != 16:
            raise ValueError
    except (ValueError, binascii.Error, UnicodeEncodeError):
        raise HandshakeError(400, "invalid Sec-WebSocket-Key") from None
    if req.get_all("sec-websocket-version") != ["13"]:
        raise HandshakeError(426, "unsupported WebSocket version",
                             (("Sec-WebSocket-Version", "13"),))
    return keys[0]


def accept_key(key: str) -> str:
    """Sec-WebSocket-Accept for a client key (RFC 6455 §4.2.2 step 5.4)."""
    return base64.b64encode(hashlib.sha1(key.encode("ascii") + WS_GUID).digest()).decode("ascii")


def choose_subprotocol(req: Request, supported: tuple[str, ...]) -> str | None:
    """The first subprotocol the client offered that the service accepts, or None.

    Compared exactly: the answer must be one of the client's own values (RFC 6455 §4.1),
    and a client fails the connection on any other spelling.
    """
    if not supported:
        return None
    for value in req.get_all("sec-websocket-protocol"):
        for offered in value.split(","):
            if offered.strip() in supported:
                return offered.strip()
    return None


def _header_block(headers: tuple[tuple[str, str], ...] | list[tuple[str, str]]) -> str:
    return "".join(f"{k}: {v}\r\n" for k, v in headers)


def response_101(key: str, subprotocol: str | None = None,
                 extra_headers: tuple[tuple[str, str], ...] = ()) -> bytes:
    """The 101 Switching Protocols answer that opens the WebSocket connection."""
    headers = [("Upgrade", "websocket"), ("Connection", "Upgrade"),
               ("Sec-WebSocket-Accept", accept_key(key))]
    if subprotocol:
        headers.append(("Sec-WebSocket-Protocol", subprotocol))
    headers.extend(extra_headers)
    return f"HTTP/1.1 101 Switching Protocols\r\n{_header_block(headers)}\r\n".encode("latin-1")


def error_response(status: int, reason: str = "",
                   extra_headers: tuple[tuple[str, str], ...] = ()) -> bytes:
    """A complete HTTP error answer with a short text body; the connection then closes."""
    phrase = HTTPStatus(status).phrase
    body = f"{status} {phrase}: {reason}\n" if reason else f"{status} {phrase}\n"
    headers = [("Content-Type", "text/plain; charset=utf-8"),
               ("Content-Length", str(len(body.encode()))), ("Connection", "close")]
    headers.extend(extra_headers)
    return f"HTTP/1.1 {status} {phrase}\r\n{_header_block(headers)}\r\n{body}".encode("utf-8")
