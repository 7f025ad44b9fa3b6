"""`ClientProtocol` from bytes alone: the upgrade request it writes, the answers it accepts
or fails, every frame rule of the client side, and a pairing with `ServerProtocol` in memory.

Server frames are built by hand (`wsvectors.client_frame(..., masked=False)`), and every
vector is fed whole, byte by byte and at seeded random split points. Mask keys come from
an injected deterministic source, so the frames we send are compared byte for byte.
"""

from __future__ import annotations

import base64
import random
import zlib

import pytest
from hypothesis import given, settings, strategies as st

from lapps.ws.client import (EV_CLOSED, EV_OPEN, EV_PONG, EV_REJECTED, ClientProtocol, State,
                             parse_response_head)
from lapps.ws.constants import CloseCode, Opcode
from lapps.ws.handshake import accept_key, parse_request, validate_upgrade
from lapps.ws.protocol import EV_REQUEST, ServerProtocol
from lapps.ws.protocol import State as ServerState

from wsvectors import MODES, SAMPLE_ACCEPT, SAMPLE_KEY, chunks, client_frame, naive_mask

TEXT, BINARY, CONT = Opcode.TEXT, Opcode.BINARY, Opcode.CONTINUATION
PING, PONG, CLOSE = Opcode.PING, Opcode.PONG, Opcode.CLOSE
KEYS = b"\x01\x02\x03\x04"


def fixed_bytes(n: int) -> bytes:
    """The injected randomness: every mask key is KEYS (and a Sec-WebSocket-Key from it)."""
    return (KEYS * (n // 4 + 1))[:n]


def server_frame(opcode: int, payload: bytes = b"", fin: bool = True, **kw) -> bytes:
    """An unmasked frame, as a server sends it, built by hand."""
    return client_frame(opcode, payload, fin, masked=False, **kw)


def server_close(code: int | None = None, reason: bytes = b"") -> bytes:
    return server_frame(CLOSE, b"" if code is None else code.to_bytes(2, "big") + reason)


def answer_101(key: str = SAMPLE_KEY, extra: str = "", accept: str | None = None) -> bytes:
    accept = accept_key(key) if accept is None else accept
    return (f"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Accept: {accept}\r\n{extra}\r\n").encode("latin-1")


def parse_client_frames(data: bytes | bytearray) -> list[tuple[int, bool, bytes, bytes]]:
    """(opcode, fin, unmasked payload, mask key) of every frame we wrote; each must be masked."""
    data = bytes(data)
    frames, pos = [], 0
    while pos < len(data):
        b0, b1 = data[pos], data[pos + 1]
        assert b1 & 0x80, f"unmasked client frame at offset {pos}"
        n, pos = b1 & 0x7F, pos + 2
        if n >= 126:
            width = 2 if n == 126 else 8
            n, pos = int.from_bytes(data[pos:pos + width], "big"), pos + width
        key, pos = data[pos:pos + 4], pos + 4
        frames.append((b0 & 0x0F, bool(b0 & 0x80), naive_mask(data[pos:pos + n], key), key))
        pos += n
    assert pos == len(data)
    return frames


def new_client(**kw) -> ClientProtocol:
    kw.setdefault("ws_key", SAMPLE_KEY)
    kw.setdefault("random_bytes", fixed_bytes)
    return ClientProtocol("server.example.com", "/chat", **kw)


def opened(**kw) -> ClientProtocol:
    """A client past a valid 101, with `out` and `events` cleared."""
    proto = new_client(**kw)
    proto.receive_data(answer_101())
    assert proto.events == [(EV_OPEN, None)]
    proto.out.clear()
    proto.events.clear()
    return proto


def feed(proto: ClientProtocol, data: bytes, mode: str) -> None:
    for piece in chunks(data, mode, zlib.crc32(data)):
        proto.receive_data(piece)


def run(data: bytes, mode: str, **kw) -> ClientProtocol:
    proto = opened(**kw)
    feed(proto, data, mode)
    return proto


def assert_failed_with(proto: ClientProtocol, code: int) -> None:
    """We failed the connection with `code`: our close frame carrying it is all of `out`,
    EV_CLOSED says it, once, last."""
    frames = parse_client_frames(proto.out)
    assert [(f[0], f[2][:2]) for f in frames] == [(CLOSE, code.to_bytes(2, "big"))]
    assert proto.state == State.CLOSED and proto.close_code == code
    assert proto.events[-1][0] == EV_CLOSED and proto.events[-1][1][0] == code
    assert [k for k, _ in proto.events].count(EV_CLOSED) == 1


# ---------------------------------------------------------------------- the upgrade request

def test_request_is_a_valid_upgrade_the_server_accepts():
    proto = ClientProtocol("example.com:8080", "/chat?room=1", subprotocols=("v2.lapps", "v1"),
                           extra_headers=(("Origin", "https://example.com"),))
    head = bytes(proto.out)
    assert head.startswith(b"GET /chat?room=1 HTTP/1.1\r\n") and head.endswith(b"\r\n\r\n")
    req = parse_request(head, 100)
    key = validate_upgrade(req)
    assert key == proto.key
    assert len(base64.b64decode(key)) == 16
    assert req.get("host") == "example.com:8080"
    assert req.get("sec-websocket-protocol") == "v2.lapps, v1"
    assert req.get("origin") == "https://example.com"
    assert proto.state == State.CONNECTING and proto.events == []


def test_request_keys_are_random():
    assert ClientProtocol("h", "/").key != ClientProtocol("h", "/").key


@pytest.mark.parametrize("kwargs", [
    {"path": "chat"},
    {"path": "/a b"},
    {"host": "evil\r\nX-Injected: 1"},
    {"extra_headers": (("X-A", "1\r\nX-B: 2"),)},
    {"extra_headers": (("Bad Name", "1"),)},
    {"subprotocols": ("a,b",)},
])
def test_request_with_bad_arguments_raises(kwargs):
    args = {"host": "h", "path": "/", **kwargs}
    with pytest.raises(ValueError):
        ClientProtocol(**args)


# ---------------------------------------------------------------------- the answer

@pytest.mark.parametrize("mode", MODES)
def test_101_opens_and_frames_behind_it_are_parsed(mode):
    proto = new_client()
    feed(proto, answer_101() + server_frame(TEXT, b"hi") + server_frame(PING, b"p"), mode)
    assert proto.events == [(EV_OPEN, None), (TEXT, b"hi")]
    assert proto.state == State.OPEN and proto.status == 101
    # the request, then our pong
    head_end = proto.out.find(b"\r\n\r\n") + 4
    assert parse_client_frames(proto.out[head_end:]) == [(PONG, True, b"p", KEYS)]


def test_sample_key_accept_vector_of_rfc_6455():
    proto = new_client()
    proto.receive_data(answer_101(accept=SAMPLE_ACCEPT))
    assert proto.state == State.OPEN


def test_101_with_offered_subprotocol_reports_it():
    proto = new_client(subprotocols=("a", "b"))
    proto.receive_data(answer_101(extra="Sec-WebSocket-Protocol: b\r\n"))
    assert proto.events == [(EV_OPEN, "b")] and proto.subprotocol == "b"


def test_header_names_and_tokens_are_case_insensitive():
    proto = new_client()
    proto.receive_data((f"HTTP/1.1 101 OK\r\nupgrade: WebSocket\r\nCONNECTION: keep-alive, upgrade\r\n"
                        f"sec-websocket-accept: {SAMPLE_ACCEPT}\r\n\r\n").encode())
    assert proto.state == State.OPEN


@pytest.mark.parametrize("answer", [
    answer_101(accept="AAAAAAAAAAAAAAAAAAAAAAAAAAA="),                             # bad accept key
    answer_101().replace(f"Sec-WebSocket-Accept: {SAMPLE_ACCEPT}\r\n".encode(), b""),  # no accept
    answer_101(extra=f"Sec-WebSocket-Accept: {SAMPLE_ACCEPT}\r\n"),                 # two of them
    answer_101().replace(b"Upgrade: websocket\r\n", b""),
    answer_101().replace(b"Connection: Upgrade\r\n", b"Connection: keep-alive\r\n"),
    answer_101(extra="Sec-WebSocket-Protocol: chat\r\n"),                            # not offered
    answer_101(extra="Sec-WebSocket-Extensions: permessage-deflate\r\n"),            # not offered
    b"HTTP/1.1 1O1 Switching\r\n\r\n",
    b"SPDY/3 101 Switching\r\n\r\n",
    answer_101().replace(b"Connection: Upgrade\r\n", b"Connection: Upgrade\r\n folded\r\n"),
], ids=["bad-accept", "no-accept", "two-accepts", "no-upgrade", "no-connection-upgrade",
        "unoffered-subprotocol", "unoffered-extension", "bad-status", "not-http", "obs-fold"])
@pytest.mark.parametrize("mode", MODES)
def test_invalid_101_fails_with_1002_and_sends_nothing(answer, mode):
    proto = new_client()
    request = bytes(proto.out)
    feed(proto, answer + server_frame(TEXT, b"never"), mode)
    assert proto.state == State.CLOSED and proto.close_code == CloseCode.PROTOCOL_ERROR
    assert [k for k, _ in proto.events] == [EV_CLOSED]
    assert proto.events[0][1][0] == CloseCode.PROTOCOL_ERROR
    assert proto.out == request   # no close frame: the WebSocket never opened


@pytest.mark.parametrize("mode", MODES)
def test_non_101_answer_is_rejected_with_status_headers_and_body(mode):
    body = b"404 Not Found: no service at /chat\n"
    answer = (b"HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: "
              + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n" + body)
    proto = new_client()
    feed(proto, answer, mode)
    assert proto.state == State.CLOSED
    [(kind, (status, headers, got))] = proto.events
    assert (kind, status, got) == (EV_REJECTED, 404, body)
    assert ("content-type", "text/plain") in headers


def test_non_101_answer_without_length_takes_the_body_up_to_eof():
    proto = new_client()
    proto.receive_data(b"HTTP/1.1 503 Service Unavailable\r\n\r\nfull")
    assert proto.events == [] and proto.state == State.REJECTED
    proto.receive_data(b", try later")
    proto.receive_eof()
    assert proto.events == [(EV_REJECTED, (503, [], b"full, try later"))]


def test_426_answer_keeps_its_headers():
    proto = new_client()
    proto.receive_data(b"HTTP/1.1 426 Upgrade Required\r\nSec-WebSocket-Version: 13\r\n"
                       b"Content-Length: 0\r\n\r\n")
    [(kind, (status, headers, body))] = proto.events
    assert (kind, status, body) == (EV_REJECTED, 426, b"")
    assert ("sec-websocket-version", "13") in headers


def test_oversized_answer_head_fails():
    proto = new_client(max_head_size=1024)
    proto.receive_data(b"HTTP/1.1 101 OK\r\nX-Pad: " + b"a" * 2000)
    assert proto.state == State.CLOSED and proto.close_code == CloseCode.PROTOCOL_ERROR


def test_eof_before_the_answer_is_1006():
    proto = new_client()
    proto.receive_data(b"HTTP/1.1 10")
    proto.receive_eof()
    assert proto.events == [(EV_CLOSED, (CloseCode.ABNORMAL, "connection dropped before the handshake answer"))]


def test_parse_response_head_lower_cases_names():
    assert parse_response_head(b"HTTP/1.1 200 OK\r\nX-A:  b \r\n\r\n") == (200, [("x-a", "b")])


# ---------------------------------------------------------------------- frames from the server

@pytest.mark.parametrize("mode", MODES)
def test_masked_server_frame_fails_with_1002(mode):
    proto = run(client_frame(TEXT, b"masked") + server_frame(TEXT, b"after"), mode)
    assert_failed_with(proto, CloseCode.PROTOCOL_ERROR)
    assert not any(k == TEXT for k, _ in proto.events)


@pytest.mark.parametrize("mode", MODES)
def test_messages_of_every_size_are_delivered(mode):
    payloads = [b"", b"x" * 125, b"y" * 126, b"z" * 65535, bytes(range(256)) * 300]
    data = b"".join(server_frame(BINARY, p) for p in payloads)
    proto = run(data, mode if mode != "bytewise" else "random")
    assert proto.events == [(BINARY, p) for p in payloads]


@pytest.mark.parametrize("mode", MODES)
def test_fragmented_message_is_reassembled_with_control_frames_between(mode):
    text = "grüße, €uro".encode()
    data = (server_frame(TEXT, text[:3], fin=False)            # splits the "ü"
            + server_frame(PING, b"mid")
            + server_frame(CONT, text[3:9], fin=False)
            + server_frame(PONG, b"pong")
            + server_frame(CONT, text[9:], fin=True))
    proto = run(data, mode)
    assert proto.events == [(EV_PONG, b"pong"), (TEXT, text)]
    assert parse_client_frames(proto.out) == [(PONG, True, b"mid", KEYS)]


@pytest.mark.parametrize("mode", MODES)
def test_ping_is_answered_with_a_masked_pong(mode):
    proto = run(server_frame(PING, b"are you there?"), mode)
    assert proto.events == []
    masked = bytes(b ^ KEYS[i % 4] for i, b in enumerate(b"are you there?"))
    assert proto.out == bytes((0x8A, 0x80 | 14)) + KEYS + masked


@pytest.mark.parametrize("mode", MODES)
def test_server_close_is_echoed(mode):
    proto = run(server_frame(TEXT, b"last") + server_close(1001, b"going away") + server_frame(TEXT, b"x"), mode)
    assert proto.events == [(TEXT, b"last"), (EV_CLOSED, (1001, "going away"))]
    assert parse_client_frames(proto.out) == [(CLOSE, True, (1001).to_bytes(2, "big"), KEYS)]
    assert proto.state == State.CLOSED and proto.close_received


def test_codeless_server_close_gets_a_codeless_echo():
    proto = run(server_close(), "whole")
    assert proto.events == [(EV_CLOSED, (CloseCode.NO_STATUS, ""))]
    assert parse_client_frames(proto.out) == [(CLOSE, True, b"", KEYS)]


@pytest.mark.parametrize("mode", MODES)
def test_invalid_utf8_text_fails_with_1007(mode):
    proto = run(server_frame(TEXT, b"ok \xff"), mode)
    assert_failed_with(proto, CloseCode.INVALID_DATA)


def test_invalid_utf8_fails_at_the_first_bad_fragment():
    proto = run(server_frame(TEXT, b"\xc3\x28", fin=False), "whole")   # no final fragment yet
    assert_failed_with(proto, CloseCode.INVALID_DATA)


def test_text_truncated_inside_a_character_fails_with_1007():
    proto = run(server_frame(TEXT, b"ab\xe2\x82", fin=False) + server_frame(CONT, b"", fin=True), "whole")
    assert_failed_with(proto, CloseCode.INVALID_DATA)


@pytest.mark.parametrize("data, code", [
    (server_frame(TEXT, b"x", rsv=0x40), 1002),
    (server_frame(3, b"x"), 1002),
    (server_frame(0xB, b"x"), 1002),
    (server_frame(PING, b"x", fin=False), 1002),
    (server_frame(PING, b"x" * 126), 1002),
    (server_frame(CONT, b"x"), 1002),
    (server_frame(TEXT, b"a", fin=False) + server_frame(BINARY, b"b"), 1002),
    (server_frame(BINARY, b"x" * 10, length_bits=16), 1002),
    (server_frame(BINARY, b"x" * 200, length_bits=64), 1002),
    (server_frame(BINARY, b"", length=1 << 63, length_bits=64), 1002),
    (server_frame(CLOSE, b"\x03"), 1002),
    (server_close(1005), 1002),
    (server_close(999), 1002),
    (server_close(2000), 1002),
    (server_close(1000, b"\xff"), 1007),
    (server_frame(BINARY, b"x" * 201), 1009),
    (server_frame(BINARY, b"x" * 150, fin=False) + server_frame(CONT, b"x" * 60), 1009),
], ids=["rsv1", "opcode-3", "opcode-0xB", "fragmented-ping", "long-ping", "lone-continuation",
        "message-inside-message", "non-minimal-16", "non-minimal-64", "top-bit-64", "close-1-byte",
        "close-1005", "close-999", "close-2000", "close-bad-utf8-reason", "too-big", "too-big-fragmented"])
@pytest.mark.parametrize("mode", MODES)
def test_protocol_errors_fail_with_their_code(data, code, mode):
    proto = run(data + server_frame(TEXT, b"never"), mode, max_message_size=200)
    assert_failed_with(proto, code)
    assert (TEXT, b"never") not in proto.events


def test_too_big_frame_fails_on_its_header_alone():
    proto = opened(max_message_size=1000)
    proto.receive_data(server_frame(BINARY, b"", length=5000)[:4])   # header only, no payload
    assert_failed_with(proto, CloseCode.MESSAGE_TOO_BIG)


def test_eof_after_open_is_1006():
    proto = opened()
    proto.receive_eof()
    assert proto.events == [(EV_CLOSED, (CloseCode.ABNORMAL, "connection dropped without a close frame"))]
    assert proto.out == b""


STREAM = (server_frame(TEXT, "héllo".encode()) + server_frame(BINARY, bytes(300))
          + server_frame(BINARY, b"ab", fin=False) + server_frame(PING, b"1") + server_frame(CONT, b"cd")
          + server_frame(PONG, b"2") + server_frame(TEXT, b"x" * 70000) + server_close(1000, b"done"))


def test_any_chunking_gives_the_same_events_and_output():
    reference = run(STREAM, "whole")
    assert [k for k, _ in reference.events] == [TEXT, BINARY, BINARY, EV_PONG, TEXT, EV_CLOSED]
    for mode in ("bytewise", "random"):
        proto = run(STREAM, mode)
        assert proto.events == reference.events and proto.out == reference.out


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=len(STREAM) - 1), max_size=20))
def test_random_split_points_give_the_same_events(cuts):
    reference = run(STREAM, "whole")
    proto = opened()
    bounds = [0, *sorted(set(cuts)), len(STREAM)]
    for a, b in zip(bounds, bounds[1:]):
        proto.receive_data(STREAM[a:b])
    assert proto.events == reference.events and proto.out == reference.out


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_no_input_raises(data):
    proto = opened(max_message_size=100)
    proto.receive_data(data)
    proto.receive_eof()
    assert proto.state == State.CLOSED


# ---------------------------------------------------------------------- what we send

def test_send_masks_with_the_injected_key():
    proto = opened()
    assert proto.send(TEXT, b"Hello")
    assert proto.out == b"\x81\x85" + KEYS + bytes(b ^ KEYS[i % 4] for i, b in enumerate(b"Hello"))


def test_default_mask_keys_are_fresh_per_frame():
    proto = ClientProtocol("h", "/", ws_key=SAMPLE_KEY)
    proto.receive_data(answer_101())
    proto.out.clear()
    for _ in range(4):
        proto.send(BINARY, b"same payload")
    frames = parse_client_frames(proto.out)
    assert {f[2] for f in frames} == {b"same payload"}
    assert len({f[3] for f in frames}) == 4


def test_fragmented_send_uses_continuation_frames():
    proto = opened()
    proto.send(TEXT, b"ab", fin=False)
    proto.send(CONT, b"cd", fin=False)
    proto.send(CONT, b"ef")
    assert [(f[0], f[1], f[2]) for f in parse_client_frames(proto.out)] == [
        (TEXT, False, b"ab"), (CONT, False, b"cd"), (CONT, True, b"ef")]


@pytest.mark.parametrize("call", [
    lambda p: p.send(PING, b""),
    lambda p: p.send(CLOSE, b""),
    lambda p: p.send(CONT, b"x"),
    lambda p: (p.send(TEXT, b"a", fin=False), p.send(BINARY, b"b")),
    lambda p: p.ping(b"x" * 126),
    lambda p: p.close(1005),
    lambda p: p.close(1000, "x" * 124),
])
def test_misuse_raises(call):
    with pytest.raises(ValueError):
        call(opened())


def test_nothing_is_sent_before_open_or_after_close():
    proto = new_client()
    assert not proto.send(TEXT, b"early") and not proto.ping() and not proto.close()
    proto.receive_data(answer_101())
    proto.out.clear()
    assert proto.close(1000, "bye")
    assert not proto.send(TEXT, b"late") and not proto.ping() and not proto.close()
    assert [f[0] for f in parse_client_frames(proto.out)] == [CLOSE]


@pytest.mark.parametrize("mode", MODES)
def test_client_close_completes_on_the_server_close(mode):
    proto = opened()
    assert proto.close(1000, "bye")
    assert proto.state == State.CLOSING
    assert parse_client_frames(proto.out) == [(CLOSE, True, b"\x03\xe8bye", KEYS)]
    proto.out.clear()
    # a message the server sent before it saw our close still arrives; its ping is not answered
    feed(proto, server_frame(TEXT, b"in flight") + server_frame(PING) + server_close(1000, b"bye"), mode)
    assert proto.events == [(TEXT, b"in flight"), (EV_CLOSED, (1000, "bye"))]
    assert proto.out == b"" and proto.state == State.CLOSED


# ---------------------------------------------------------------------- against ServerProtocol

class Pair:
    """A ClientProtocol and a ServerProtocol wired back to back in memory."""

    def __init__(self, subprotocols=(), offered=(), **accept):
        self.client = ClientProtocol("localhost", "/chat", subprotocols=offered)
        self.server = ServerProtocol()
        self.pipe()
        assert [k for k, _ in self.server.events] == [EV_REQUEST]
        self.server.events.clear()
        self.server.accept(subprotocols, **accept)
        self.pipe()

    def pipe(self, step: int | None = None) -> None:
        """Move bytes both ways until neither side has anything to send (`step` bytes at a time)."""
        c, s = self.client, self.server
        while c.out or s.out:
            for src, dst in ((c, s), (s, c)):
                data = bytes(src.out)
                src.out.clear()
                for piece in ([data] if step is None else [data[i:i + step] for i in range(0, len(data), step)]):
                    dst.receive_data(piece)

    def echo(self) -> None:
        """The server sends every message it received back, then the bytes flow."""
        for kind, value in self.server.events:
            if kind in (TEXT, BINARY):
                self.server.send(kind, value)
        self.server.events.clear()
        self.pipe()

    def take(self) -> list:
        events, self.client.events[:] = list(self.client.events), []
        return events


def test_pair_upgrade_negotiates_the_subprotocol():
    pair = Pair(subprotocols=("lapps.v1",), offered=("other", "lapps.v1"))
    assert pair.take() == [(EV_OPEN, "lapps.v1")]
    assert pair.client.state == State.OPEN and pair.server.state == ServerState.OPEN


def test_pair_without_subprotocol():
    pair = Pair(subprotocols=("x",))
    assert pair.take() == [(EV_OPEN, None)]


@pytest.mark.parametrize("step", [None, 1, 7])
def test_pair_echoes_text_binary_and_fragmented_messages(step):
    pair = Pair()
    pair.take()
    pair.client.send(TEXT, "ünïcode".encode())
    pair.client.send(BINARY, bytes(range(256)) * 400)           # 64-bit length
    pair.client.send(BINARY, b"frag", fin=False)
    pair.client.send(CONT, b"ment", fin=False)
    pair.client.send(CONT, b"ed")
    pair.pipe(step)
    pair.echo()
    assert pair.take() == [(TEXT, "ünïcode".encode()), (BINARY, bytes(range(256)) * 400),
                           (BINARY, b"fragmented")]


def test_pair_client_reassembles_auto_fragmented_server_messages():
    pair = Pair(auto_fragment=10)
    pair.take()
    pair.client.send(TEXT, "x€".encode() * 20)
    pair.pipe()
    pair.echo()
    assert pair.take() == [(TEXT, "x€".encode() * 20)]


def test_pair_pings_both_ways():
    pair = Pair()
    pair.take()
    pair.client.ping(b"c")
    pair.server.ping(b"s")
    pair.pipe()
    assert pair.take() == [(EV_PONG, b"c")]
    assert pair.server.events == [] and pair.server.state == ServerState.OPEN


def test_pair_close_from_the_client():
    pair = Pair()
    pair.take()
    pair.client.close(1000, "done")
    pair.pipe()
    assert pair.take() == [(EV_CLOSED, (1000, ""))]   # the server echoes the code, not the reason
    assert pair.server.events == [(EV_CLOSED, 1000)]
    assert pair.client.state == State.CLOSED and pair.server.state == ServerState.CLOSED


def test_pair_close_from_the_server():
    pair = Pair()
    pair.take()
    pair.server.close(1001, "going away")
    pair.pipe()
    assert pair.take() == [(EV_CLOSED, (1001, "going away"))]
    assert pair.server.events == [(EV_CLOSED, 1001)]
    assert pair.client.state == State.CLOSED and pair.server.state == ServerState.CLOSED


def test_pair_client_error_reaches_the_server_as_its_close_code():
    pair = Pair()
    pair.take()
    pair.server.out += b"\x81\x02\xff\xfe"   # the server sends invalid UTF-8 as text
    pair.pipe()
    assert pair.take() == [(EV_CLOSED, (1007, "invalid UTF-8 in text message"))]
    assert pair.server.events == [(EV_CLOSED, 1007)]


def test_pair_rejection():
    client = ClientProtocol("localhost", "/nowhere")
    server = ServerProtocol()
    server.receive_data(bytes(client.out))
    server.reject(404, "no service at /nowhere")
    client.receive_data(bytes(server.out))
    [(kind, (status, _, body))] = client.events
    assert (kind, status, body) == (EV_REJECTED, 404, b"404 Not Found: no service at /nowhere\n")


@pytest.mark.parametrize("seed", range(5))
def test_pair_random_traffic(seed):
    rng = random.Random(seed)
    pair = Pair()
    pair.take()
    sent = []
    for _ in range(30):
        opcode = rng.choice((TEXT, BINARY))
        payload = ("é" * rng.randint(0, 50)).encode() if opcode == TEXT else rng.randbytes(rng.randint(0, 3000))
        pair.client.send(opcode, payload)
        sent.append((opcode, payload))
    pair.pipe(rng.randint(1, 50))
    pair.echo()
    assert pair.take() == sent
