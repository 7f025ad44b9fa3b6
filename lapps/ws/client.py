"""Client side of one WebSocket connection as a Sans-I/O state machine (RFC 6455).

Theory of operation. Whoever owns the socket (`lapps.client`, the Lua `cws` module of a
standalone service, a test) writes `out` to the network, feeds every byte it reads to
`receive_data()` (and `receive_eof()` when the peer shuts TCP), then handles `events`, a
list of `(kind, value)` tuples that it clears once handled:

- `(EV_OPEN, subprotocol)`: the server answered 101 with a correct `Sec-WebSocket-Accept`;
  `subprotocol` is the one it chose, or None. Frames that came right behind the 101 are
  parsed at once, so their events follow on the same list.
- `(EV_REJECTED, (status, headers, body))`: the server answered with anything but 101
  (404, 403, 503, ...). `headers` are `(lower-case name, value)` pairs, `body` the bytes of
  the body (read up to `Content-Length`, or up to EOF when there is none). Done: CLOSED.
- `(Opcode.TEXT, bytes)` / `(Opcode.BINARY, bytes)`: one complete message, fragments
  reassembled, text checked as UTF-8 fragment by fragment (fail fast).
- `(EV_PONG, payload)`: the server answered a ping (or sent an unsolicited pong).
- `(EV_CLOSED, (code, reason))`: the connection is finished. After a close handshake that is
  the server's code and reason (1005 when its close frame had none); after a failure, the
  code we failed with (1002, 1007, 1009) and why; 1006 when TCP dropped without a close
  frame. Nothing more is read; flush `out` (it may hold our close frame) and close TCP.

Pings are answered and the server's close frame echoed by the state machine itself: the
owner only has to flush `out` after each `receive_data()`. Every frame we send is masked
with a fresh key from `secrets.token_bytes(4)` (RFC 6455 §5.3), as a client must.

Peer errors never raise (STYLE pattern 2): a bad handshake answer ends the connection
with EV_CLOSED (1002, reason), a bad frame queues a close frame with the RFC's code and
ends it the same way. Only our own misuse raises (`send()` with a control opcode, a
header value with a line break, a ping over 125 bytes).

    proto = ClientProtocol("example.com", "/echo")
    sock.sendall(proto.out); proto.out.clear()          # the upgrade request
    proto.receive_data(sock.recv(65536))                # ... until EV_OPEN
    proto.send(Opcode.TEXT, b"hello")
    sock.sendall(proto.out); proto.out.clear()
"""

from __future__ import annotations

import base64
import re
import secrets
from collections.abc import Callable, Iterable

from .constants import MAX_CONTROL_PAYLOAD, CloseCode, Opcode, is_valid_close_code
from .frames import frame_header, mask
from .framing import EV_CLOSED, EV_PONG, FrameParser, State
from .handshake import accept_key

_DIGITS = re.compile(r"[0-9]+")

EV_OPEN = 0x102
EV_REJECTED = 0x103

_DATA_OPCODES = (Opcode.TEXT, Opcode.BINARY, Opcode.CONTINUATION)   # what send() takes
# RFC 9110 token characters: what a header name (and a subprotocol) may contain
_TCHAR = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
MAX_REJECT_BODY = 65536
"""Bytes of a non-101 answer's body kept for EV_REJECTED; the rest is ignored."""


class _BadResponse(ValueError):
    """The server's answer to the upgrade is not valid HTTP or not a valid 101."""


def _check_header_text(what: str, value: str) -> None:
    if any(c in value for c in "\r\n\0"):
        raise ValueError(f"{what} must not contain CR, LF or NUL: {value!r}")


def upgrade_request(host: str, path: str, key: str, subprotocols: Iterable[str] = (),
                    extra_headers: Iterable[tuple[str, str]] = ()) -> bytes:
    """The bytes of the upgrade GET (RFC 6455 §4.1). Raises ValueError on a bad argument."""
    if not path.startswith("/") or any(c <= " " or c == "\x7f" for c in path):
        raise ValueError(f"request path must start with '/' and hold no space or control: {path!r}")
    _check_header_text("host", host)
    lines = [f"GET {path} HTTP/1.1", f"Host: {host}", "Upgrade: websocket", "Connection: Upgrade",
             f"Sec-WebSocket-Key: {key}", "Sec-WebSocket-Version: 13"]
    protocols = list(subprotocols)
    for p in protocols:
        if not p or any(c not in _TCHAR for c in p):
            raise ValueError(f"invalid subprotocol name {p!r}")
    if protocols:
        lines.append("Sec-WebSocket-Protocol: " + ", ".join(protocols))
    for name, value in extra_headers:
        if not name or any(c not in _TCHAR for c in name):
            raise ValueError(f"invalid header name {name!r}")
        _check_header_text(f"header {name}", value)
        lines.append(f"{name}: {value}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def parse_response_head(head: bytes) -> tuple[int, list[tuple[str, str]]]:
    """(status, [(lower-case name, value)]) of a response head ending with CRLF CRLF."""
    lines = head[:-4].split(b"\r\n")
    parts = lines[0].split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or len(parts[1]) != 3 \
            or not parts[1].isdigit():
        raise _BadResponse(f"malformed status line {lines[0][:80]!r}")
    headers = []
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        if not sep or not name or line[0] in (0x20, 0x09) or b"\n" in line or b"\r" in line:
            raise _BadResponse(f"malformed response header line {line[:80]!r}")
        headers.append((name.decode("latin-1").lower(), value.strip(b" \t").decode("latin-1")))
    return int(parts[1]), headers


def _values(headers: list[tuple[str, str]], name: str) -> list[str]:
    return [v for k, v in headers if k == name]


def _tokens(headers: list[tuple[str, str]], name: str) -> list[str]:
    return [t.strip().lower() for v in _values(headers, name) for t in v.split(",") if t.strip()]


class ClientProtocol(FrameParser):
    """One client connection: upgrade request, response check, then the frame parser's
    client end (`framing.FrameParser`, shared with the server), close handshake.

    `host` is the Host header's value (with `:port` when not the scheme's default),
    `path` the request target (path and query). `extra_headers` are `(name, value)` pairs
    added to the request (Origin, Authorization, ...). `ws_key` and `random_bytes` exist
    for tests: a fixed Sec-WebSocket-Key and a deterministic source of mask keys.
    """

    __slots__ = (
        "key", "subprotocols", "subprotocol", "status", "headers", "max_head_size",
        "_random", "_head", "_body_len", "_sending_fragmented",
    )

    def __init__(self, host: str, path: str, subprotocols: Iterable[str] = (),
                 extra_headers: Iterable[tuple[str, str]] = (), max_message_size: int = 16 * 1024 * 1024,
                 *, max_head_size: int = 16384, ws_key: str | None = None,
                 random_bytes: Callable[[int], bytes] = secrets.token_bytes) -> None:
        super().__init__(client=True, max_message_size=max_message_size)
        self._random = random_bytes
        self.key = ws_key or base64.b64encode(random_bytes(16)).decode("ascii")
        self.subprotocols = tuple(subprotocols)
        self.subprotocol: str | None = None       # what the server chose, once OPEN
        self.status = 0                           # HTTP status of the answer
        self.headers: list[tuple[str, str]] = []  # its headers, names in lower case
        self.max_head_size = max_head_size
        self._head = bytearray()                  # response head, then the body of a rejection
        self._body_len: int | None = None         # Content-Length of a rejection
        self._sending_fragmented = False          # our last send() had fin=False
        self.out += upgrade_request(host, path, self.key, self.subprotocols, extra_headers)

    # ------------------------------------------------------------------ input

    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        """Feed bytes read from the socket. `data` is not kept after the call returns."""
        state = self.state
        if state == State.OPEN or state == State.CLOSING:
            self._parse(data)
        elif state == State.CONNECTING:
            self._receive_head(data)
        elif state == State.REJECTED:
            self._head += data
            self._check_body()

    def receive_eof(self) -> None:
        """The server closed its side of TCP."""
        if self.state == State.REJECTED:
            self._reject_done()
        elif self.state != State.CLOSED:
            what = "before the handshake answer" if self.state == State.CONNECTING else "without a close frame"
            self._finish(CloseCode.ABNORMAL, f"connection dropped {what}")

    def _receive_head(self, data: bytes | bytearray | memoryview) -> None:
        head = self._head
        head += data
        end = head.find(b"\r\n\r\n")
        if end < 0:
            if len(head) > self.max_head_size:
                self._finish(CloseCode.PROTOCOL_ERROR, "handshake answer head too large")
            return
        end += 4
        if end > self.max_head_size:
            return self._finish(CloseCode.PROTOCOL_ERROR, "handshake answer head too large")
        try:
            self.status, self.headers = parse_response_head(bytes(head[:end]))
            del head[:end]
            if self.status != 101:
                return self._start_reject()
            self.subprotocol = self._check_101()
        except _BadResponse as e:
            return self._finish(CloseCode.PROTOCOL_ERROR, f"handshake: {e}")
        self.state = State.OPEN
        self.events.append((EV_OPEN, self.subprotocol))
        if head:
            pending = bytes(head)
            head.clear()
            self._parse(pending)

    def _check_101(self) -> str | None:
        """Validate a 101 answer (RFC 6455 §4.1, client steps 1-6); the chosen subprotocol."""
        h = self.headers
        if "websocket" not in _tokens(h, "upgrade"):
            raise _BadResponse("101 without 'Upgrade: websocket'")
        if "upgrade" not in _tokens(h, "connection"):
            raise _BadResponse("101 without 'Connection: Upgrade'")
        if _values(h, "sec-websocket-accept") != [accept_key(self.key)]:
            raise _BadResponse("wrong or missing Sec-WebSocket-Accept")
        if _values(h, "sec-websocket-extensions"):
            raise _BadResponse("server chose an extension the client did not offer")
        chosen = _values(h, "sec-websocket-protocol")
        if not chosen:
            return None
        if len(chosen) != 1 or chosen[0] not in self.subprotocols:
            raise _BadResponse(f"server chose subprotocol {', '.join(chosen)!r}, not offered")
        return chosen[0]

    def _start_reject(self) -> None:
        lengths = _values(self.headers, "content-length")
        if lengths and _DIGITS.fullmatch(lengths[0].strip()):   # not "-1", "+5", "1_0" or "²"
            self._body_len = int(lengths[0])
        self.state = State.REJECTED
        self._check_body()

    def _check_body(self) -> None:
        if self._body_len is not None and len(self._head) >= self._body_len:
            self._reject_done()
        elif len(self._head) >= MAX_REJECT_BODY:
            self._reject_done()

    def _reject_done(self) -> None:
        n = MAX_REJECT_BODY if self._body_len is None else min(self._body_len, MAX_REJECT_BODY)
        body = bytes(self._head[:n])
        self._head.clear()
        self.close_code, self.close_reason = self.status, "handshake rejected"
        self.state = State.CLOSED
        self.events.append((EV_REJECTED, (self.status, self.headers, body)))

    def _message(self, opcode: int, payload: bytes) -> None:
        """One message the parser completed: an event, also while our close is on its way."""
        self.events.append((opcode, payload))

    def _finish(self, code: int, reason: str) -> None:
        self.close_code, self.close_reason = int(code), reason
        self.state = State.CLOSED
        self._tail = b""
        self._parts.clear()
        self._head.clear()
        self.events.append((EV_CLOSED, (self.close_code, reason)))

    # ------------------------------------------------------------------ output

    def _queue(self, opcode: int, payload: bytes | bytearray | memoryview, fin: bool = True) -> None:
        """One frame from the client: masked with a fresh key (RFC 6455 §5.3)."""
        key = self._random(4)
        out = self.out
        out += frame_header(opcode, len(payload), fin, masked=True)
        out += key
        out += mask(payload, key)

    def send(self, opcode: int, payload: bytes | bytearray | memoryview, fin: bool = True) -> bool:
        """Queue one data frame, masked; False once the connection is no longer open.

        `fin=False` starts (or continues) a fragmented message: the frames after the first
        use `Opcode.CONTINUATION`, the last one `fin=True`. Control frames go through
        `ping()` and `close()`.
        """
        if opcode not in _DATA_OPCODES:
            raise ValueError(f"send() takes TEXT, BINARY or CONTINUATION, not opcode {opcode}")
        if (opcode == Opcode.CONTINUATION) != self._sending_fragmented:
            raise ValueError("CONTINUATION only (and always) after a send() with fin=False")
        if self.state != State.OPEN:
            return False
        self._queue(opcode, payload, fin)
        self._sending_fragmented = not fin
        return True

    def ping(self, payload: bytes = b"") -> bool:
        """Queue a ping; the server's pong arrives as an EV_PONG event."""
        if len(payload) > MAX_CONTROL_PAYLOAD:
            raise ValueError("a ping payload is at most 125 bytes")
        if self.state != State.OPEN:
            return False
        self._queue(Opcode.PING, payload)
        return True

    def close(self, code: int = CloseCode.NORMAL, reason: str = "") -> bool:
        """Start the closing handshake; the server's close frame ends it (EV_CLOSED).

        Returns False when the connection is not open (nothing queued). Raises ValueError
        for a code a close frame may not carry or a reason over 123 UTF-8 bytes.
        """
        if not is_valid_close_code(code):
            raise ValueError(f"close code {code} may not be sent")
        if len(reason.encode("utf-8")) > MAX_CONTROL_PAYLOAD - 2:
            raise ValueError("a close reason is at most 123 UTF-8 bytes")
        if self.state != State.OPEN:
            return False
        self._send_close(code, reason)
        self.close_code, self.close_reason = int(code), reason
        self.state = State.CLOSING
        return True


__all__ = ["ClientProtocol", "State", "EV_OPEN", "EV_REJECTED", "EV_PONG", "EV_CLOSED",
           "upgrade_request", "parse_response_head"]
