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
The frames are parsed by `framing.FrameParser`, the parser the client end shares; this
module is the server's handshake, its sending side and where the C scanner is called.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from .codec import NATIVE
from .constants import CloseCode, Opcode
from .deflate import negotiate, worth_compressing
from .frames import frame_header, frame_into
from .framing import EV_CLOSED, FrameParser, State
from .handshake import (HandshakeError, Request, check_host_and_body, choose_subprotocol, error_response,
                        find_head_end, is_plain_request, parse_request, response_101, validate_upgrade)

# without the extension (or with LAPPS_NO_SPEEDUPS=1) every frame goes through the parser's
# loop; the tests that compare both paths switch the scanner off here
_scan = NATIVE.scan if NATIVE is not None else None

EV_REQUEST = 0x100
EV_HTTP = 0x102

_PING = Opcode.PING.value
_OPEN = State.OPEN.value   # a plain int: the hot path compares with it per read


class ServerProtocol(FrameParser):
    """One connection: handshake, then the frame parser's server end, close handshake."""

    __slots__ = (
        "on_message", "messages", "request", "max_handshake_size", "max_headers", "auto_fragment",
        "_head", "_ws_key", "headers", "plain_http",
    )

    def __init__(self, max_handshake_size: int = 8192, max_headers: int = 100, *,
                 headers: tuple[tuple[str, str], ...] = (), plain_http: bool = False) -> None:
        """`headers` go into every handshake answer, the 101 and the errors (the server's
        `Server:` header: the caller names it, so this module knows no version)."""
        super().__init__(client=False, max_message_size=16 * 1024 * 1024)
        self.headers = headers
        self.plain_http = plain_http           # GET/HEAD without Upgrade become EV_HTTP events
        self.on_message: Callable[[int, bytes], None] | None = None
        self.messages = 0                      # data messages received (idle detection reads it)
        self.request: Request | None = None
        self.max_handshake_size = max_handshake_size
        self.max_headers = max_headers
        self.auto_fragment = 0
        self._head = bytearray()
        self._ws_key = ""                      # the client's Sec-WebSocket-Key

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
                self._parse(data, _scan)
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

    def _message(self, opcode: int, payload: bytes) -> None:
        """One message the parser completed, handed over as the scanner's are (`_deliver`
        stays the one loop, written for the scanner's runs: the hot path)."""
        self._deliver(((opcode, payload),))

    def _queue(self, opcode: int, payload: bytes) -> None:
        """A control frame from the server: unmasked."""
        self.out += frame_header(opcode, len(payload))
        self.out += payload

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
            self._parse(pending, _scan)
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
        subscribers), or the rest of one that a direct write to the socket did not finish;
        False once the connection is no longer open."""
        if self.state != State.OPEN:
            return False
        self.out += frame
        return True

    def ping(self, payload: bytes = b"") -> bool:
        """Queue a ping (the keepalive timer's tool)."""
        if self.state != State.OPEN:
            return False
        self._queue(_PING, payload)
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
