"""Server side of one WebSocket connection as a Sans-I/O state machine.

Theory of operation. The worker feeds every byte it reads to `receive_data()` and then
handles `events`, a list of `(kind, value)` tuples that it clears once handled:

- `(EV_REQUEST, Request)`: the upgrade request is complete and a valid upgrade. The worker
  routes it and calls `accept()` (which queues the 101 and parses any frames that came
  pipelined behind the request) or `reject()` (which queues an HTTP error).
- `(Opcode.TEXT, bytes)` / `(Opcode.BINARY, bytes)`: one complete message. Text has
  been checked as UTF-8, fragment by fragment as it arrived (fail fast). When the
  `on_message(opcode, payload)` callback is set, messages go to it instead, at the moment
  each one completes: what it sends in answer is then queued before anything a later
  frame in the same read triggers (a protocol error's close frame, say), so replies keep
  the order of the requests. The worker uses the callback; it also saves a tuple per message.
- `(EV_HTTP, Request)`: only when made with `plain_http=True` (a static folder is served):
  a GET or HEAD without an `Upgrade` header. The worker answers it with `respond()`, which
  queues the whole HTTP answer; the connection is then done, as after `reject()`.
- `(EV_CLOSED, code)`: the WebSocket is finished (close handshake done, or failed with
  `code`). Nothing more will be read; the worker flushes `out` and closes the TCP side.

Whatever must be written accumulates in the bytearray `out`; the worker sends from it and
deletes what the socket took (`del out[:n]`), so no copy is made per send.

Peer errors never raise: they become a close frame with the RFC's code (1002, 1007, 1009)
or an HTTP error status, and `close_code`/`close_reason` record why (STYLE pattern 2).
Payloads are consumed as they arrive (a frame is never buffered whole before it is
unmasked), which is what makes fail-fast UTF-8 and early 1009 possible.
"""

from __future__ import annotations

import codecs
from collections.abc import Callable
from functools import partial
from enum import IntEnum

from .codec import NATIVE
from .constants import MAX_CONTROL_PAYLOAD, CloseCode, Opcode
from .deflate import Deflate, DeflateError, negotiate, worth_compressing
from .frames import BadClose, close_payload, frame_header, mask, parse_close
from .frames import frame_into
from .handshake import (HandshakeError, Request, check_host_and_body, choose_subprotocol, error_response,
                        find_head_end, is_plain_request, parse_request, response_101, validate_upgrade)

# without the extension (or with LAPPS_NO_SPEEDUPS=1) every frame goes through _parse's loop
_scan = NATIVE.scan if NATIVE is not None else None

EV_REQUEST = 0x100
EV_CLOSED = 0x101
EV_HTTP = 0x102

_TEXT = Opcode.TEXT.value
_BINARY = Opcode.BINARY.value
_CLOSE = Opcode.CLOSE.value
_PING = Opcode.PING.value
_PONG = Opcode.PONG.value
_Utf8Decoder = codecs.getincrementaldecoder("utf-8")
_BAD_UTF8 = "invalid UTF-8 in text message"   # one reason, whichever path found it
_BAD_COMPRESSED_TEXT = "invalid UTF-8 or DEFLATE data in compressed text message"


class State(IntEnum):
    HANDSHAKE = 0   # reading the HTTP request head
    UPGRADING = 1   # head parsed; the worker must accept() or reject()
    OPEN = 2
    CLOSING = 3     # our close frame is queued; waiting for the peer's
    CLOSED = 4      # done: flush `out`, then close TCP


_OPEN = State.OPEN.value   # a plain int: the hot path compares with it per read


class ServerProtocol:
    """One connection: handshake, frame parsing, message assembly, close handshake."""

    __slots__ = (
        "state", "out", "events", "on_message", "messages", "request", "max_handshake_size", "max_headers",
        "max_message_size", "auto_fragment", "close_code", "close_reason", "close_received",
        "_head", "_ws_key", "_tail", "_remaining", "_opcode", "_fin", "_key", "_key_off",
        "_msg_opcode", "_msg_size", "_parts", "_utf8", "_ctrl", "deflate", "_compressed", "headers",
        "plain_http",
    )

    def __init__(self, max_handshake_size: int = 8192, max_headers: int = 100, *,
                 headers: tuple[tuple[str, str], ...] = (), plain_http: bool = False) -> None:
        """`headers` go into every handshake answer, the 101 and the errors (the server's
        `Server:` header: the caller names it, so this module knows no version)."""
        self.headers = headers
        self.state = State.HANDSHAKE
        self.plain_http = plain_http           # GET/HEAD without Upgrade become EV_HTTP events
        self.out = bytearray()
        self.events: list[tuple[int, object]] = []
        self.on_message: Callable[[int, bytes], None] | None = None
        self.messages = 0                      # data messages received (idle detection reads it)
        self.request: Request | None = None
        self.max_handshake_size = max_handshake_size
        self.max_headers = max_headers
        self.max_message_size = 16 * 1024 * 1024
        self.auto_fragment = 0
        self.close_code: int | None = None     # the code that ended (or is ending) the connection
        self.close_reason = ""
        self.close_received = False            # the peer's close frame arrived
        self._head = bytearray()
        self._ws_key = ""                      # the client's Sec-WebSocket-Key
        self._tail = b""                       # an incomplete frame header
        self._remaining = 0                    # payload bytes of the current frame not yet read
        self._opcode = 0                       # opcode of the current frame
        self._fin = True
        self._key = b""
        self._key_off = 0
        self._msg_opcode = 0                   # TEXT or BINARY while a message is being read
        self._msg_size = 0
        self._parts: list[bytes] = []
        self._utf8 = None                      # incremental decoder of a multi-part text message
        self._ctrl: list[bytes] = []
        self.deflate: Deflate | None = None    # permessage-deflate, when negotiated
        self._compressed = False               # the message being read has RSV1 (deflate)

    # ------------------------------------------------------------------ input

    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        """Feed bytes read from the socket. `data` is not kept after the call returns."""
        state = self.state
        if state == _OPEN and _scan is not None and not self._tail and not self._remaining \
                and not self._msg_opcode:
            # the common case, whole plain messages and nothing pending: the C scanner's
            # loop of _parse, without the way through it
            messages, pos = _scan(data, 0, self.max_message_size)
            self._deliver(messages)
            if pos == len(data):
                return
            data = data[pos:]
            state = self.state
        if state >= State.OPEN:
            if state != State.CLOSED:
                self._parse(data)
        elif state == State.HANDSHAKE:
            self._receive_head(data)
        else:
            # UPGRADING: frames behind the head wait for accept(), which parses them with
            # the service's limits; the worker answers in the same read, so this holds at
            # most one read
            self._head += data

    def receive_eof(self) -> None:
        """The peer closed its side of TCP: a connection without a close frame ends as 1006."""
        if self.state < State.CLOSED:
            self._finish(CloseCode.ABNORMAL, "connection dropped")

    def _receive_head(self, data: bytes | bytearray | memoryview) -> None:
        head = self._head
        head += data
        try:
            if head[:4] != b"GET "[:len(head)] and not (self.plain_http and head[:5] == b"HEAD "[:len(head)]):
                # an upgrade is a GET: anything else (a TLS ClientHello on a plain port, a
                # POST, garbage) is answered at once instead of waiting for the timeout
                raise HandshakeError(400, "not a WebSocket upgrade: expected GET")
            end = find_head_end(head)
            if end < 0:
                if len(head) > self.max_handshake_size:
                    raise HandshakeError(431, "request head too large")
                return
            if end > self.max_handshake_size:
                raise HandshakeError(431, "request head too large")
            req = parse_request(bytes(head[:end]), self.max_headers)
            plain = self.plain_http and is_plain_request(req)
            if plain:
                check_host_and_body(req, "here")
            else:
                self._ws_key = validate_upgrade(req)
        except HandshakeError as e:
            self.reject(e.status, e.reason, e.headers)
            return
        del head[:end]
        self.request = req
        self.state = State.UPGRADING
        self.events.append((EV_HTTP if plain else EV_REQUEST, req))

    def _parse(self, data: bytes | bytearray | memoryview) -> None:
        if self._tail:
            data = self._tail + bytes(data)
            self._tail = b""
        pos = 0
        end = len(data)
        events = self.events
        while pos < end:
            rem = self._remaining
            if not rem:
                if _scan is not None and not self._msg_opcode:
                    # ---- the C scanner takes the run of plain whole messages from here
                    # and stops at the first frame with anything to decide (see _speedups.c)
                    messages, pos = _scan(data, pos, self.max_message_size)
                    if messages:
                        self._deliver(messages)
                        continue
                # ---- a frame header
                if end - pos < 2:
                    self._tail = bytes(data[pos:])
                    return
                b0 = data[pos]
                b1 = data[pos + 1]
                # mask and RSV bits are checked on the first two bytes: a short unmasked or
                # RSV frame must not wait for more
                if not b1 & 0x80:
                    return self._fail(CloseCode.PROTOCOL_ERROR, "unmasked client frame")
                rsv = b0 & 0x70
                if rsv and (rsv != 0x40 or self.deflate is None):
                    return self._fail(CloseCode.PROTOCOL_ERROR, "reserved bit set without extension")
                ln = b1 & 0x7F
                hlen = 6 if ln < 126 else (8 if ln == 126 else 14)
                if end - pos < hlen:
                    self._tail = bytes(data[pos:])
                    return
                if ln == 126:
                    ln = int.from_bytes(data[pos + 2:pos + 4], "big")
                    if ln < 126:
                        return self._fail(CloseCode.PROTOCOL_ERROR, "length not minimally encoded")
                elif ln == 127:
                    ln = int.from_bytes(data[pos + 2:pos + 10], "big")
                    if ln >> 63:
                        return self._fail(CloseCode.PROTOCOL_ERROR, "64-bit length with top bit set")
                    if ln < 65536:
                        return self._fail(CloseCode.PROTOCOL_ERROR, "length not minimally encoded")
                opcode = b0 & 0x0F
                fin = b0 & 0x80
                if rsv and (opcode == 0 or opcode & 0x08):
                    return self._fail(CloseCode.PROTOCOL_ERROR, "RSV1 on a continuation or control frame")
                if opcode & 0x08:
                    if opcode != _CLOSE and opcode != _PING and opcode != _PONG:
                        return self._fail(CloseCode.PROTOCOL_ERROR, f"reserved opcode {opcode}")
                    if not fin:
                        return self._fail(CloseCode.PROTOCOL_ERROR, "fragmented control frame")
                    if ln > MAX_CONTROL_PAYLOAD:
                        return self._fail(CloseCode.PROTOCOL_ERROR, "control frame payload over 125 bytes")
                elif opcode == 0:
                    if not self._msg_opcode:
                        return self._fail(CloseCode.PROTOCOL_ERROR, "continuation frame without a message")
                elif opcode == _TEXT or opcode == _BINARY:
                    if self._msg_opcode:
                        return self._fail(CloseCode.PROTOCOL_ERROR, "new message inside a fragmented one")
                    self._msg_opcode = opcode
                    self._msg_size = 0
                    self._compressed = bool(rsv)
                else:
                    return self._fail(CloseCode.PROTOCOL_ERROR, f"reserved opcode {opcode}")
                if not opcode & 0x08:
                    self._msg_size += ln
                    if self._msg_size > self.max_message_size:
                        return self._fail(CloseCode.MESSAGE_TOO_BIG,
                                          f"message over {self.max_message_size} bytes")
                key = data[pos + hlen - 4:pos + hlen]
                pos += hlen
                avail = end - pos
                if ln <= avail and fin and opcode and not opcode & 0x08 and not rsv:
                    # ---- fast path: a whole unfragmented data message is here
                    payload = mask(data[pos:pos + ln], key)
                    pos += ln
                    self._msg_opcode = 0
                    if opcode == _TEXT:
                        try:
                            payload.decode("utf-8")
                        except UnicodeDecodeError:
                            return self._fail(CloseCode.INVALID_DATA, _BAD_UTF8)
                    if self.state == State.OPEN:
                        self.messages += 1
                        if self.on_message is None:
                            events.append((opcode, payload))
                        else:
                            self.on_message(opcode, payload)
                    continue
                self._opcode = opcode
                self._fin = fin
                self._key = bytes(key)
                self._key_off = 0
                self._remaining = rem = ln
                if not ln:
                    self._frame_complete(b"")
                    if self.state == State.CLOSED:
                        return
                    continue
            # ---- payload bytes of the current frame (maybe only some of them)
            take = rem if rem <= end - pos else end - pos
            off = self._key_off
            chunk = mask(data[pos:pos + take], self._key, off)
            pos += take
            self._key_off = off + take
            self._remaining = rem - take
            self._frame_complete(chunk)
            if self.state == State.CLOSED:
                return

    def _deliver(self, messages: list[tuple[int, bytes]]) -> None:
        """Hand over the messages the C scanner took, each as it would have completed here:
        while the connection is open (the service may close it on any of them)."""
        for opcode, payload in messages:
            if self.state == _OPEN:
                self.messages += 1
                if self.on_message is None:
                    self.events.append((opcode, payload))
                else:
                    self.on_message(opcode, payload)

    def _frame_complete(self, chunk: bytes) -> None:
        """Handle `chunk`, the next piece of the current frame's payload (maybe the last)."""
        opcode = self._opcode
        if opcode & 0x08:
            self._ctrl.append(chunk)
            if not self._remaining:
                payload = b"".join(self._ctrl)
                self._ctrl.clear()
                self._control(opcode, payload)
            return
        last = not self._remaining and self._fin
        if self._compressed:
            try:
                chunk = self.deflate.decompress(chunk, self.max_message_size)
                if last:
                    chunk += self.deflate.end_message(self.max_message_size)
            except DeflateError as e:
                # Bytes inflated before the failure are checked first, as they would have
                # been had the payload arrived in smaller pieces. In a compressed text message
                # bad UTF-8 and bad DEFLATE data are one fault (1007, one reason): which one
                # shows first depends on the read boundaries (zlib drops the output of a call
                # that fails), and the answer must not.
                if self._msg_opcode == _TEXT and (e.code == CloseCode.INVALID_DATA
                                                  or not all(map(self._utf8_ok, e.inflated))):
                    return self._fail(CloseCode.INVALID_DATA, _BAD_COMPRESSED_TEXT)
                return self._fail(e.code, e.reason)
        if self._msg_opcode == _TEXT and not self._utf8_ok(chunk):
            return self._fail(CloseCode.INVALID_DATA, _BAD_COMPRESSED_TEXT if self._compressed else _BAD_UTF8)
        self._parts.append(chunk)
        if not last:
            return
        if self._utf8 is not None:
            try:
                self._utf8.decode(b"", True)
            except UnicodeDecodeError:
                return self._fail(CloseCode.INVALID_DATA, _BAD_UTF8)
            self._utf8 = None
        payload = b"".join(self._parts)
        self._parts.clear()
        opcode = self._msg_opcode
        self._msg_opcode = 0
        if self.state == State.OPEN:
            self.messages += 1
            if self.on_message is None:
                self.events.append((opcode, payload))
            else:
                self.on_message(opcode, payload)

    def _utf8_ok(self, chunk: bytes) -> bool:
        """Feed the next bytes of a text message to its incremental UTF-8 check."""
        if self._utf8 is None:
            self._utf8 = _Utf8Decoder()
        try:
            self._utf8.decode(chunk, False)
            return True
        except UnicodeDecodeError:
            return False

    def _control(self, opcode: int, payload: bytes) -> None:
        if opcode == _PING:
            if self.state == State.OPEN:
                self.out += frame_header(_PONG, len(payload))
                self.out += payload
        elif opcode == _CLOSE:
            self.close_received = True
            try:
                code, reason = parse_close(payload)
            except BadClose as e:
                return self._fail(e.code, e.reason)
            if self.state == State.OPEN:
                # echo the peer's code (RFC 6455 §5.5.1); a codeless close gets a codeless reply
                self._send_close(None if code == CloseCode.NO_STATUS else code)
                self._finish(code, reason)
            else:
                self._finish(self.close_code or code, self.close_reason or reason)
        # a PONG needs nothing: keepalive reads liveness from any received byte

    def _fail(self, code: int, reason: str) -> None:
        """Fail the connection (RFC 6455 §7.1.7): a close frame if still open, then done."""
        if self.state == State.OPEN:
            self._send_close(code, reason)
        self._finish(code, reason)

    def _finish(self, code: int, reason: str) -> None:
        if self.close_code is None or self.state == State.OPEN:
            self.close_code, self.close_reason = code, reason
        self.state = State.CLOSED
        self._tail = b""
        self._parts.clear()
        self.events.append((EV_CLOSED, self.close_code))

    # ------------------------------------------------------------------ the handshake answer

    def accept(self, subprotocols: tuple[str, ...] = (), extra_headers: tuple[tuple[str, str], ...] = (),
               max_message_size: int | None = None, auto_fragment: int = 0,
               permessage_deflate: bool = False) -> str | None:
        """Answer the request with 101 and start framing; return the chosen subprotocol.

        With `permessage_deflate`, the client's offers are negotiated (RFC 7692; an offer
        we cannot honour is declined, never an error). Frames the client pipelined behind
        its request are parsed at once, so their events follow on the same `events` list.
        """
        if self.state != State.UPGRADING or self.request is None:
            raise RuntimeError(f"accept() in state {self.state.name}")
        key = self._ws_key
        chosen = choose_subprotocol(self.request, subprotocols)
        if permessage_deflate:
            self.deflate, agreed = negotiate(self.request.get_all("sec-websocket-extensions"))
            if agreed:
                extra_headers = (*extra_headers, ("Sec-WebSocket-Extensions", agreed))
        if max_message_size is not None:
            self.max_message_size = max_message_size
        self.auto_fragment = auto_fragment
        self.out += response_101(key, chosen, (*self.headers, *extra_headers))
        self.state = State.OPEN
        pending = bytes(self._head)
        self._head.clear()
        if pending:
            self._parse(pending)
        return chosen

    def reject(self, status: int, reason: str = "", headers: tuple[tuple[str, str], ...] = ()) -> None:
        """Answer the handshake with an HTTP error; the connection is then done."""
        self.respond(error_response(status, reason, (*self.headers, *headers)), status, reason)

    def respond(self, response: bytes, status: int, reason: str = "") -> None:
        """Queue a complete HTTP answer (`status` is its code, for the counters and logs)
        instead of a 101; the connection is then done. Bytes pipelined behind the request
        are dropped: every answer says `Connection: close`."""
        if self.state > State.UPGRADING:
            raise RuntimeError(f"respond() in state {self.state.name}")
        self.out += response
        self.close_code, self.close_reason = status, reason
        self.state = State.CLOSED
        self._head.clear()

    # ------------------------------------------------------------------ output

    def send(self, opcode: int, payload: bytes) -> bool:
        """Queue one data message; False once the connection is no longer open."""
        if self.state != State.OPEN:
            return False
        n = len(payload)
        rsv1 = False
        if self.deflate is not None and worth_compressing(n):
            payload = self.deflate.compress(payload)
            n = len(payload)
            rsv1 = True
        frag = self.auto_fragment
        out = self.out
        if not frag or n <= frag:
            out += frame_header(opcode, n, rsv1=rsv1)
            out += payload
            return True
        view = memoryview(payload)
        for start in range(0, n, frag):
            last = start + frag >= n
            first = start == 0
            out += frame_header(opcode if first else 0, min(frag, n - start), fin=last, rsv1=rsv1 and first)
            out += view[start:start + frag]
        return True

    def plain_sender(self) -> Callable[[int, bytes], None]:
        """The call that queues one final, unmasked, uncompressed frame `(opcode, data)`,
        bound once per connection so that a reply costs one C call (the echo path).

        For replies the caller has checked already: the connection is open and neither
        compression nor auto-fragmenting is on (the kept replies of the Lua host, which
        keeps none otherwise). Anything else goes through `send`.
        """
        return partial(frame_into, self.out)

    def send_frame(self, frame: bytes) -> bool:
        """Queue a frame encoded elsewhere (a broadcast is framed once for all its
        subscribers); False once the connection is no longer open."""
        if self.state != State.OPEN:
            return False
        self.out += frame
        return True

    def ping(self, payload: bytes = b"") -> bool:
        """Queue a ping (the keepalive timer's tool)."""
        if self.state != State.OPEN:
            return False
        self.out += frame_header(_PING, len(payload))
        self.out += payload
        return True

    def close(self, code: int = CloseCode.NORMAL, reason: str = "") -> bool:
        """Start the closing handshake from the server side; the peer's close ends it.

        Returns False when the connection is not open (nothing queued).
        """
        if self.state != State.OPEN:
            return False
        self._send_close(code, reason)
        self.close_code, self.close_reason = code, reason
        self.state = State.CLOSING
        return True

    def abort(self, code: int = CloseCode.INTERNAL_ERROR, reason: str = "internal error") -> bool:
        """The server failed on this connection (its own fault, not the peer's): queue a close
        frame with `code` when the WebSocket is open, then stop reading (CLOSED), so the
        worker sends what is queued and closes TCP. True when a close frame was queued."""
        queued = self.state == State.OPEN
        if queued:
            self._send_close(code, reason)
        if self.state != State.CLOSED:
            self._finish(code, reason)
        return queued

    def _send_close(self, code: int | None, reason: str = "") -> None:
        payload = close_payload(code, reason)
        self.out += frame_header(_CLOSE, len(payload))
        self.out += payload
