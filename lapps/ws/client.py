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
import codecs
import re
import secrets
from collections.abc import Callable, Iterable
from enum import IntEnum

from .constants import MAX_CONTROL_PAYLOAD, CloseCode, Opcode, is_valid_close_code
from .frames import BadClose, close_payload, frame_header, mask, parse_close
from .handshake import accept_key
from .protocol import EV_CLOSED

_DIGITS = re.compile(r"[0-9]+")

EV_OPEN = 0x102
EV_REJECTED = 0x103
EV_PONG = 0x104

_CONT = Opcode.CONTINUATION.value
_TEXT = Opcode.TEXT.value
_BINARY = Opcode.BINARY.value
_CLOSE = Opcode.CLOSE.value
_PING = Opcode.PING.value
_PONG = Opcode.PONG.value
_Utf8Decoder = codecs.getincrementaldecoder("utf-8")
# RFC 9110 token characters: what a header name (and a subprotocol) may contain
_TCHAR = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
MAX_REJECT_BODY = 65536
"""Bytes of a non-101 answer's body kept for EV_REJECTED; the rest is ignored."""


class State(IntEnum):
    CONNECTING = 0  # request queued; reading the response head
    REJECTED = 1    # a non-101 head arrived; reading its body
    OPEN = 2
    CLOSING = 3     # our close frame is queued; waiting for the server's
    CLOSED = 4      # done: flush `out`, then close TCP


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


class ClientProtocol:
    """One client connection: upgrade request, response check, frames, close handshake.

    `host` is the Host header's value (with `:port` when not the scheme's default),
    `path` the request target (path and query). `extra_headers` are `(name, value)` pairs
    added to the request (Origin, Authorization, ...). `ws_key` and `random_bytes` exist
    for tests: a fixed Sec-WebSocket-Key and a deterministic source of mask keys.
    """

    __slots__ = (
        "state", "out", "events", "key", "subprotocols", "subprotocol", "status", "headers",
        "max_message_size", "max_head_size", "close_code", "close_reason", "close_received",
        "_random", "_head", "_buf", "_body_len", "_msg_opcode", "_msg_size", "_parts", "_utf8",
        "_sending_fragmented",
    )

    def __init__(self, host: str, path: str, subprotocols: Iterable[str] = (),
                 extra_headers: Iterable[tuple[str, str]] = (), max_message_size: int = 16 * 1024 * 1024,
                 *, max_head_size: int = 16384, ws_key: str | None = None,
                 random_bytes: Callable[[int], bytes] = secrets.token_bytes) -> None:
        self.state = State.CONNECTING
        self.out = bytearray()
        self.events: list[tuple[int, object]] = []
        self._random = random_bytes
        self.key = ws_key or base64.b64encode(random_bytes(16)).decode("ascii")
        self.subprotocols = tuple(subprotocols)
        self.subprotocol: str | None = None       # what the server chose, once OPEN
        self.status = 0                           # HTTP status of the answer
        self.headers: list[tuple[str, str]] = []  # its headers, names in lower case
        self.max_message_size = max_message_size
        self.max_head_size = max_head_size
        self.close_code: int | None = None        # the code that ended (or is ending) the connection
        self.close_reason = ""
        self.close_received = False               # the server's close frame arrived
        self._head = bytearray()                  # response head, then the body of a rejection
        self._buf = bytearray()                   # frame bytes not yet consumed
        self._body_len: int | None = None         # Content-Length of a rejection
        self._msg_opcode = 0                      # TEXT or BINARY while a fragmented message is read
        self._msg_size = 0
        self._parts: list[bytes] = []
        self._utf8 = None
        self._sending_fragmented = False          # our last send() had fin=False
        self.out += upgrade_request(host, path, self.key, self.subprotocols, extra_headers)

    # ------------------------------------------------------------------ input

    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        """Feed bytes read from the socket. `data` is not kept after the call returns."""
        state = self.state
        if state == State.OPEN or state == State.CLOSING:
            self._buf += data
            self._parse()
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
            self._buf += head
            head.clear()
            self._parse()

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

    def _parse(self) -> None:
        """Consume every whole frame in `_buf`. A frame waits until it is all there; its
        header is checked as soon as its first bytes are, so a bad frame fails at once."""
        buf = self._buf
        pos = 0
        end = len(buf)
        try:
            while end - pos >= 2:
                b0 = buf[pos]
                b1 = buf[pos + 1]
                if b1 & 0x80:
                    return self._fail(CloseCode.PROTOCOL_ERROR, "masked server frame")
                if b0 & 0x70:
                    return self._fail(CloseCode.PROTOCOL_ERROR, "reserved bit set without extension")
                opcode = b0 & 0x0F
                fin = b0 & 0x80
                ln = b1 & 0x7F
                if opcode & 0x08:
                    if opcode != _CLOSE and opcode != _PING and opcode != _PONG:
                        return self._fail(CloseCode.PROTOCOL_ERROR, f"reserved opcode {opcode}")
                    if not fin:
                        return self._fail(CloseCode.PROTOCOL_ERROR, "fragmented control frame")
                    if ln > MAX_CONTROL_PAYLOAD:
                        return self._fail(CloseCode.PROTOCOL_ERROR, "control frame payload over 125 bytes")
                elif opcode == _CONT:
                    if not self._msg_opcode:
                        return self._fail(CloseCode.PROTOCOL_ERROR, "continuation frame without a message")
                elif opcode == _TEXT or opcode == _BINARY:
                    if self._msg_opcode:
                        return self._fail(CloseCode.PROTOCOL_ERROR, "new message inside a fragmented one")
                else:
                    return self._fail(CloseCode.PROTOCOL_ERROR, f"reserved opcode {opcode}")
                hlen = 2
                if ln == 126:
                    if end - pos < 4:
                        return
                    ln = int.from_bytes(buf[pos + 2:pos + 4], "big")
                    hlen = 4
                    if ln < 126:
                        return self._fail(CloseCode.PROTOCOL_ERROR, "length not minimally encoded")
                elif ln == 127:
                    if end - pos < 10:
                        return
                    ln = int.from_bytes(buf[pos + 2:pos + 10], "big")
                    hlen = 10
                    if ln >> 63:
                        return self._fail(CloseCode.PROTOCOL_ERROR, "64-bit length with top bit set")
                    if ln < 65536:
                        return self._fail(CloseCode.PROTOCOL_ERROR, "length not minimally encoded")
                if not opcode & 0x08 and self._msg_size + ln > self.max_message_size:
                    return self._fail(CloseCode.MESSAGE_TOO_BIG, f"message over {self.max_message_size} bytes")
                if end - pos - hlen < ln:
                    return
                start = pos + hlen
                pos = start + ln
                payload = bytes(buf[start:pos])
                if opcode & 0x08:
                    self._control(opcode, payload)
                else:
                    self._data(opcode, fin, payload)
                if self.state == State.CLOSED:
                    return
        finally:
            if self.state == State.CLOSED:
                buf.clear()
            elif pos:
                del buf[:pos]

    def _data(self, opcode: int, fin: int, payload: bytes) -> None:
        if opcode and fin:
            # the common case: a whole message in one frame
            if opcode == _TEXT:
                try:
                    payload.decode("utf-8")
                except UnicodeDecodeError:
                    return self._fail(CloseCode.INVALID_DATA, "invalid UTF-8 in text message")
            self.events.append((opcode, payload))
            return
        if opcode:
            self._msg_opcode = opcode
            self._msg_size = 0
            self._utf8 = _Utf8Decoder() if opcode == _TEXT else None
        if self._utf8 is not None:
            try:
                self._utf8.decode(payload, bool(fin))
            except UnicodeDecodeError:
                return self._fail(CloseCode.INVALID_DATA, "invalid UTF-8 in text message")
        self._msg_size += len(payload)
        self._parts.append(payload)
        if not fin:
            return
        message = b"".join(self._parts)
        self._parts.clear()
        self._utf8 = None
        self.events.append((self._msg_opcode, message))
        self._msg_opcode = 0
        self._msg_size = 0

    def _control(self, opcode: int, payload: bytes) -> None:
        if opcode == _PING:
            if self.state == State.OPEN:
                self._queue(_PONG, payload)
        elif opcode == _PONG:
            self.events.append((EV_PONG, payload))
        else:
            self.close_received = True
            try:
                code, reason = parse_close(payload)
            except BadClose as e:
                return self._fail(e.code, e.reason)
            if self.state == State.OPEN:
                # echo the server's code (RFC 6455 §5.5.1); a codeless close gets a codeless reply
                self._queue(_CLOSE, close_payload(None if code == CloseCode.NO_STATUS else code))
            self._finish(code, reason)

    def _fail(self, code: int, reason: str) -> None:
        """Fail the connection (RFC 6455 §7.1.7): a close frame if still open, then done."""
        if self.state == State.OPEN:
            self._queue(_CLOSE, close_payload(code, reason))
        self._finish(code, reason)

    def _finish(self, code: int, reason: str) -> None:
        self.close_code, self.close_reason = int(code), reason
        self.state = State.CLOSED
        self._parts.clear()
        self._head.clear()
        self.events.append((EV_CLOSED, (self.close_code, reason)))

    # ------------------------------------------------------------------ output

    def _queue(self, opcode: int, payload: bytes | bytearray | memoryview, fin: bool = True) -> None:
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
        if opcode not in (_TEXT, _BINARY, _CONT):
            raise ValueError(f"send() takes TEXT, BINARY or CONTINUATION, not opcode {opcode}")
        if (opcode == _CONT) != self._sending_fragmented:
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
        self._queue(_PING, payload)
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
        self._queue(_CLOSE, close_payload(code, reason))
        self.close_code, self.close_reason = int(code), reason
        self.state = State.CLOSING
        return True


__all__ = ["ClientProtocol", "State", "EV_OPEN", "EV_REJECTED", "EV_PONG", "EV_CLOSED",
           "upgrade_request", "parse_response_head"]
