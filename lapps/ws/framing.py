"""The frame parser of both ends of a WebSocket (RFC 6455 §5), the end a flag.

`ServerProtocol` and `ClientProtocol` are made of `FrameParser` and their own handshake,
as python-websockets' `Protocol` has its `side`: every framing rule — opcodes, RSV bits,
control frames, fragmentation, minimal lengths, the message size limit, UTF-8 checked
incrementally (fail fast), close codes, the close handshake — has its one home here, and
the end decides only what it must by RFC 6455 §5.1: a server requires masked frames and
unmasks them, a client requires unmasked ones and masks what it sends (`_queue`, per side).

Payloads are consumed as they arrive (a frame is never buffered whole before it is
unmasked), which is what makes fail-fast UTF-8 and early 1009 possible. The mask and RSV
bits are decided on a header's first two bytes, the other rules once the header (length,
mask key) is whole. The server's C scanner (`_speedups.scan`)
takes runs of plain whole messages and leaves every frame with anything to decide here.

Peer errors never raise: they become a close frame with the RFC's code (1002, 1007, 1009),
and `close_code`/`close_reason` record why (STYLE pattern 2). Each end supplies `_queue`
(one control frame, masked or not), `_message` (a complete data message) and `_finish`
(the connection is done: its EV_CLOSED event).
"""

from __future__ import annotations

import codecs
from abc import ABC, abstractmethod
from collections.abc import Callable
from enum import IntEnum

from .constants import MAX_CONTROL_PAYLOAD, CloseCode, Opcode
from .deflate import Deflate, DeflateError
from .frames import BadClose, close_payload, mask, parse_close

EV_CLOSED = 0x101
EV_PONG = 0x104

_TEXT = Opcode.TEXT.value
_BINARY = Opcode.BINARY.value
_CLOSE = Opcode.CLOSE.value
_PING = Opcode.PING.value
_PONG = Opcode.PONG.value
_Utf8Decoder = codecs.getincrementaldecoder("utf-8")
_BAD_UTF8 = "invalid UTF-8 in text message"   # one reason, whichever path found it
_BAD_COMPRESSED_TEXT = "invalid UTF-8 or DEFLATE data in compressed text message"


class State(IntEnum):
    """Where a connection is, either end (each end uses the handshake states it has)."""

    CONNECTING = 0  # reading the handshake head: the request (server), the answer (client)
    UPGRADING = 1   # server: head parsed; the worker must accept() or reject()
    REJECTED = 2    # client: a non-101 head arrived; reading its body
    OPEN = 3
    CLOSING = 4     # our close frame is queued; waiting for the peer's
    CLOSED = 5      # done: flush `out`, then close TCP
    HANDSHAKE = 0   # the server's name for CONNECTING


_OPEN = State.OPEN.value   # plain ints: the parser compares with them per frame
_CLOSED = State.CLOSED.value


class FrameParser(ABC):
    """Frames in, messages and control answers out: the rules both ends share."""

    __slots__ = (
        "state", "out", "events", "max_message_size", "close_code", "close_reason", "close_received",
        "deflate", "_client", "_tail", "_remaining", "_opcode", "_fin", "_key", "_key_off",
        "_msg_opcode", "_msg_size", "_parts", "_utf8", "_ctrl", "_compressed",
    )

    def __init__(self, client: bool, max_message_size: int) -> None:
        """`client`: this is the client end (frames must arrive unmasked); else the server's."""
        self._client = client
        self.state = State.CONNECTING
        self.out = bytearray()
        self.events: list[tuple[int, object]] = []
        self.max_message_size = max_message_size
        self.close_code: int | None = None     # the code that ended (or is ending) the connection
        self.close_reason = ""
        self.close_received = False            # the peer's close frame arrived
        self.deflate: Deflate | None = None    # permessage-deflate, when negotiated
        self._tail = b""                       # an incomplete frame header
        self._remaining = 0                    # payload bytes of the current frame not yet read
        self._opcode = 0                       # opcode of the current frame
        self._fin = True
        self._key = b""                        # its mask key (server end)
        self._key_off = 0
        self._msg_opcode = 0                   # TEXT or BINARY while a message is being read
        self._msg_size = 0
        self._parts: list[bytes] = []
        self._utf8 = None                      # incremental decoder of a multi-part text message
        self._ctrl: list[bytes] = []
        self._compressed = False               # the message being read has RSV1 (deflate)

    # ------------------------------------------------------------------ what each end supplies

    @abstractmethod
    def _queue(self, opcode: int, payload: bytes) -> None:
        """Queue one frame we send (masked by a client, not by a server)."""

    @abstractmethod
    def _message(self, opcode: int, payload: bytes) -> None:
        """A complete data message arrived."""

    @abstractmethod
    def _finish(self, code: int, reason: str) -> None:
        """The connection is done (CLOSED): record why and say so in `events`."""

    # ------------------------------------------------------------------ frames

    def _parse(self, data: bytes | bytearray | memoryview, scan: Callable | None = None) -> None:
        """Consume `data`. `scan` is the server's C scanner (`_speedups.scan`), when built:
        it takes each run of plain whole messages, and every other frame is decided here."""
        if self._tail:
            data = self._tail + bytes(data)
            self._tail = b""
        client = self._client
        pos = 0
        end = len(data)
        while pos < end:
            rem = self._remaining
            if not rem:
                if scan is not None and not self._msg_opcode:
                    # ---- the C scanner takes the run of plain whole messages from here
                    # and stops at the first frame with anything to decide (see _speedups.c)
                    messages, pos = scan(data, pos, self.max_message_size)
                    if messages:
                        self._deliver(messages)
                        continue
                pos = self._header(data, pos, end)
                if pos < 0:
                    return
                opcode = self._opcode
                rem = self._remaining
                if rem <= end - pos and self._fin and opcode and not opcode & 0x08 and not self._compressed:
                    # ---- fast path: a whole unfragmented data message is here
                    payload = bytes(data[pos:pos + rem]) if client else mask(data[pos:pos + rem], self._key)
                    pos += rem
                    self._remaining = 0
                    self._msg_opcode = 0
                    if opcode == _TEXT:
                        try:
                            payload.decode("utf-8")
                        except UnicodeDecodeError:
                            self._fail(CloseCode.INVALID_DATA, _BAD_UTF8)
                            return
                    self._message(opcode, payload)
                    if self.state == _CLOSED:
                        return
                    continue
                if not rem:
                    self._frame_complete(b"")
                    if self.state == _CLOSED:
                        return
                    continue
            # ---- payload bytes of the current frame (maybe only some of them)
            take = rem if rem <= end - pos else end - pos
            if client:
                chunk = bytes(data[pos:pos + take])
            else:
                off = self._key_off
                chunk = mask(data[pos:pos + take], self._key, off)
                self._key_off = off + take
            pos += take
            self._remaining = rem - take
            self._frame_complete(chunk)
            if self.state == _CLOSED:
                return

    def _header(self, data: bytes | bytearray | memoryview, pos: int, end: int) -> int:
        """Check the frame header at `pos` and make it the current frame; where its payload
        starts, or -1 when parsing stops here (the header is incomplete: kept in `_tail`;
        or it broke a rule: the connection failed)."""
        if end - pos < 2:
            self._tail = bytes(data[pos:])
            return -1
        b0 = data[pos]
        b1 = data[pos + 1]
        # mask and RSV bits are checked on the first two bytes: a short frame with the
        # wrong mask bit or an RSV bit must not wait for more
        if self._client:
            if b1 & 0x80:
                return self._fail(CloseCode.PROTOCOL_ERROR, "masked server frame")
        elif not b1 & 0x80:
            return self._fail(CloseCode.PROTOCOL_ERROR, "unmasked client frame")
        rsv = b0 & 0x70
        if rsv and (rsv != 0x40 or self.deflate is None):
            return self._fail(CloseCode.PROTOCOL_ERROR, "reserved bit set without extension")
        ln = b1 & 0x7F
        klen = 0 if self._client else 4        # mask key bytes
        hlen = (2 if ln < 126 else (4 if ln == 126 else 10)) + klen
        if end - pos < hlen:
            self._tail = bytes(data[pos:])
            return -1
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
                return self._fail(CloseCode.MESSAGE_TOO_BIG, f"message over {self.max_message_size} bytes")
        self._opcode = opcode
        self._fin = fin
        self._key = bytes(data[pos + hlen - klen:pos + hlen])
        self._key_off = 0
        self._remaining = ln
        return pos + hlen

    def _deliver(self, messages: list[tuple[int, bytes]]) -> None:
        """Hand over the messages the C scanner took, as if each had been completed here
        (the server's end, the only one that scans, has a faster loop of its own)."""
        for opcode, payload in messages:
            self._message(opcode, payload)

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
                    self._fail(CloseCode.INVALID_DATA, _BAD_COMPRESSED_TEXT)
                    return
                self._fail(e.code, e.reason)
                return
        if self._msg_opcode == _TEXT and not self._utf8_ok(chunk):
            self._fail(CloseCode.INVALID_DATA, _BAD_COMPRESSED_TEXT if self._compressed else _BAD_UTF8)
            return
        self._parts.append(chunk)
        if not last:
            return
        if self._utf8 is not None:
            try:
                self._utf8.decode(b"", True)
            except UnicodeDecodeError:
                self._fail(CloseCode.INVALID_DATA, _BAD_UTF8)
                return
            self._utf8 = None
        payload = b"".join(self._parts)
        self._parts.clear()
        opcode = self._msg_opcode
        self._msg_opcode = 0
        self._message(opcode, payload)

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
            if self.state == _OPEN:
                self._queue(_PONG, payload)
        elif opcode == _CLOSE:
            self.close_received = True
            try:
                code, reason = parse_close(payload)
            except BadClose as e:
                self._fail(e.code, e.reason)
                return
            if self.state == _OPEN:
                # echo the peer's code (RFC 6455 §5.5.1); a codeless close gets a codeless reply
                self._send_close(None if code == CloseCode.NO_STATUS else code)
            self._finish(code, reason)
        elif self._client:
            # the client's owner sees pongs (round trips); the server's keepalive reads
            # liveness from any received byte
            self.events.append((EV_PONG, payload))

    def _fail(self, code: int, reason: str) -> int:
        """Fail the connection (RFC 6455 §7.1.7): a close frame if still open, then done.
        -1, so that `_header` can return it: parsing stops."""
        if self.state == _OPEN:
            self._send_close(code, reason)
        self._finish(code, reason)
        return -1

    def _send_close(self, code: int | None, reason: str = "") -> None:
        self._queue(_CLOSE, close_payload(code, reason))


__all__ = ["FrameParser", "State", "EV_CLOSED", "EV_PONG"]
