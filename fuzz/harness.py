"""What the fuzz targets share: the connection setup, input chunking, and the checks of
what a protocol object wrote and emitted. Deterministic and free of I/O, like the targets."""

from __future__ import annotations

import random
import zlib

from lapps.ws.client import ClientProtocol
from lapps.ws.constants import MAX_CONTROL_PAYLOAD, CloseCode, Opcode, is_valid_close_code
from lapps.ws.deflate import TAIL
from lapps.ws.frames import encode_frame, mask
from lapps.ws.protocol import ServerProtocol

KEY = "dGhlIHNhbXBsZSBub25jZQ=="          # RFC 6455 §1.3 sample Sec-WebSocket-Key
MAX_HANDSHAKE = 8192
MAX_HEADERS = 100
MAX_MESSAGE = 4096                        # small, so the fuzzer reaches 1009 easily
MAX_CLIENT_HEAD = 2048                    # the client's answer-head limit, small for the same reason
SUBPROTOCOLS = ("chat", "superchat")

TEXT, BINARY, CONT = Opcode.TEXT, Opcode.BINARY, Opcode.CONTINUATION
CLOSE, PING, PONG = Opcode.CLOSE, Opcode.PING, Opcode.PONG


def split(data: bytes, selector: int) -> list[bytes]:
    """`data` cut into pieces as `selector` (0..255) says: 0..15 fixed pieces of
    selector+1 bytes; 16..255 pieces of 0..2**(selector % 10) bytes from a PRNG seeded with
    `selector` (empty pieces included: `receive_data(b"")` must be harmless)."""
    if selector < 16:
        size = selector + 1
        return [data[i:i + size] for i in range(0, len(data), size)] or [b""]
    rng = random.Random(selector)
    top = 1 << (selector % 10)
    pieces = []
    pos = 0
    while pos < len(data):
        n = rng.randint(0, top)
        pieces.append(data[pos:pos + n])
        pos += n
    return pieces or [b""]


def upgrade_head(extensions: str | None = None, protocols: str | None = None) -> bytes:
    """A valid upgrade request head for KEY."""
    lines = ["GET /chat HTTP/1.1", "Host: example.com", "Upgrade: websocket", "Connection: Upgrade",
             f"Sec-WebSocket-Key: {KEY}", "Sec-WebSocket-Version: 13"]
    if extensions is not None:
        lines.append(f"Sec-WebSocket-Extensions: {extensions}")
    if protocols is not None:
        lines.append(f"Sec-WebSocket-Protocol: {protocols}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def client_frame(opcode: int, payload: bytes, fin: bool = True, rsv1: bool = False,
                 key: bytes = b"\x37\xfa\x21\x3d") -> bytes:
    """A masked frame as a client sends it."""
    return encode_frame(opcode, payload, fin, rsv1, mask_key=key)


def deflate_payload(message: bytes) -> bytes:
    """`message` compressed as a permessage-deflate sender does (tail stripped)."""
    c = zlib.compressobj(6, zlib.DEFLATED, -15)
    data = c.compress(message) + c.flush(zlib.Z_SYNC_FLUSH)
    assert data.endswith(TAIL)
    return data[:-4]


def sent_frames(buf: bytes, masked: bool, rsv1_ok: bool = False) -> list[tuple[int, bool, bool, bytes]]:
    """(opcode, fin, rsv1, payload) of each frame in `buf`, what our side wrote after the
    handshake; asserts that it is whole, well-formed frames (minimal lengths, no RSV bit
    but RSV1 where `rsv1_ok`: permessage-deflate negotiated)."""
    frames = []
    pos = 0
    n = len(buf)
    while pos < n:
        assert n - pos >= 2, f"truncated frame header in out at {pos}"
        b0, b1 = buf[pos], buf[pos + 1]
        assert not b0 & (0x30 if rsv1_ok else 0x70), f"RSV bits in a frame we sent: {b0:#x}"
        assert bool(b1 & 0x80) == masked, "mask bit wrong in a frame we sent"
        ln = b1 & 0x7F
        pos += 2
        if ln == 126:
            ln = int.from_bytes(buf[pos:pos + 2], "big")
            assert ln >= 126, "16-bit length not minimal in a frame we sent"
            pos += 2
        elif ln == 127:
            ln = int.from_bytes(buf[pos:pos + 8], "big")
            assert ln >= 65536, "64-bit length not minimal in a frame we sent"
            pos += 8
        key = b""
        if masked:
            key = bytes(buf[pos:pos + 4])
            pos += 4
        payload = bytes(buf[pos:pos + ln])
        assert len(payload) == ln, "truncated payload in a frame we sent"
        pos += ln
        if masked:
            payload = mask(payload, key)
        frames.append((b0 & 0x0F, bool(b0 & 0x80), bool(b0 & 0x40), payload))
    return frames


def check_sent(frames: list[tuple[int, bool, bool, bytes]], close_code: int | None,
               echoed: list[tuple[int, bytes]] | None = None) -> None:
    """What a protocol object wrote: pongs, the `echoed` messages in order when it was
    told to send them (compressed ones must inflate alone: we declare
    server_no_context_takeover), then at most one close frame, last, with a sendable code
    equal to the code it closed with."""
    messages: list[tuple[int, bytes]] = []
    current: tuple[int, bool, list[bytes]] | None = None     # a data message being reassembled
    for i, (opcode, fin, rsv1, payload) in enumerate(frames):
        if opcode in (TEXT, BINARY, CONT):
            assert echoed is not None, "a data frame was sent, but nothing was sent by send()"
            if opcode == CONT:
                assert current is not None and not rsv1, "bad continuation frame sent"
                current[2].append(payload)
            else:
                assert current is None, "new message sent inside a fragmented one"
                current = (opcode, rsv1, [payload])
            if fin:
                op, compressed, parts = current
                body = b"".join(parts)
                if compressed:
                    body = zlib.decompressobj(-15).decompress(body + TAIL)
                messages.append((op, body))
                current = None
            continue
        assert opcode in (PONG, CLOSE), f"unexpected opcode {opcode} sent"
        assert fin and not rsv1 and len(payload) <= MAX_CONTROL_PAYLOAD, "bad control frame sent"
        if opcode == CLOSE:
            assert i == len(frames) - 1, "a frame was sent after our close frame"
            code = CloseCode.NO_STATUS
            if payload:
                assert len(payload) >= 2, "1-byte close payload sent"
                code = int.from_bytes(payload[:2], "big")
                assert is_valid_close_code(code), f"unsendable close code {code} sent"
                try:
                    payload[2:].decode("utf-8")
                except UnicodeDecodeError:
                    raise AssertionError("close reason sent is not UTF-8") from None
            assert code == close_code, f"sent close code {code}, closed with {close_code}"
    assert current is None, "a fragmented message was sent unfinished"
    if echoed is not None:
        assert messages == echoed, "what was sent does not decode to the messages given to send()"


def check_message(opcode: int, payload: object, limit: int) -> None:
    assert opcode in (TEXT, BINARY), f"message with opcode {opcode}"
    assert isinstance(payload, (bytes, bytearray)), f"payload of type {type(payload).__name__}"
    assert len(payload) <= limit, f"message of {len(payload)} bytes passed the {limit}-byte limit"
    if opcode == TEXT:
        try:
            bytes(payload).decode("utf-8")
        except UnicodeDecodeError:
            raise AssertionError("text message delivered with invalid UTF-8") from None


class Recorder:
    """Collects what a protocol object emits and checks that nothing is emitted once it
    reported its end (EV_CLOSED, or EV_REJECTED for the client)."""

    def __init__(self, proto: ServerProtocol | ClientProtocol, terminal: tuple[int, ...]):
        self.proto = proto
        self.terminal = terminal
        self.log: list[tuple[int, object]] = []
        self.ended_at: tuple[int, int] | None = None   # (len(log), len(out)) at the end event

    def message(self, opcode: int, payload: bytes) -> None:   # the on_message callback
        self.log.append((opcode, payload))

    def drain(self) -> None:
        events = self.proto.events
        if self.ended_at is not None:
            assert not events, f"events after the end: {events[:3]!r}"
            assert (len(self.log), len(self.proto.out)) == self.ended_at, "output after the end"
            return
        for i, (kind, value) in enumerate(events):
            self.log.append((kind, value))
            if kind in self.terminal:
                assert i == len(events) - 1, f"events after {kind:#x}: {events[i + 1:i + 4]!r}"
                self.ended_at = (len(self.log), len(self.proto.out))
        events.clear()
