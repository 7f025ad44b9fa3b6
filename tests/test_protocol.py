"""`ServerProtocol` after the handshake: messages, fragmentation, control frames, and
every close-code rule of DESIGN §5.

Each vector is fed whole, byte by byte and at seeded random split points. Close codes
are read from the close frame the server put in `out` and from `proto.close_code`.
"""

from __future__ import annotations

import zlib

import pytest

from lapps.ws.constants import CloseCode, Opcode
from lapps.ws.protocol import EV_CLOSED, EV_REQUEST, ServerProtocol, State

from wsvectors import (MODES, Frame, client_frame, close_frame, closing_frame, feed, opened,
                       parse_close, parse_frames, parse_http_response, upgrade_request)

TEXT, BINARY, CONT = Opcode.TEXT, Opcode.BINARY, Opcode.CONTINUATION
PING, PONG, CLOSE = Opcode.PING, Opcode.PONG, Opcode.CLOSE
AFTER = client_frame(TEXT, b"after the failure")   # must never be delivered


def run(data: bytes, mode: str, **accept_kwargs) -> ServerProtocol:
    proto = opened(**accept_kwargs)
    feed(proto, data, mode, zlib.crc32(data))
    return proto


def assert_closed_with(proto: ServerProtocol, code: int) -> None:
    """The server failed (or closed) the connection with `code`: a close frame carrying
    it is the last thing in `out`, `close_code` says it, and EV_CLOSED is the last event."""
    frame = closing_frame(proto)
    assert parse_close(frame.payload)[0] == code
    assert proto.close_code == code
    assert proto.state == State.CLOSED
    assert proto.events[-1] == (EV_CLOSED, code)
    assert [k for k, _ in proto.events].count(EV_CLOSED) == 1


def data_events(proto: ServerProtocol) -> list[tuple[int, bytes]]:
    return [(k, v) for k, v in proto.events if k in (TEXT, BINARY)]


# ---------------------------------------------------------------------- messages

@pytest.mark.parametrize("mode", MODES)
def test_text_message_is_delivered(mode):
    proto = run(client_frame(TEXT, "héllo €".encode()), mode)
    assert proto.events == [(TEXT, "héllo €".encode())]
    assert proto.out == b"" and proto.state == State.OPEN


@pytest.mark.parametrize("mode", MODES)
def test_binary_message_is_delivered(mode):
    payload = bytes(range(256)) * 2
    proto = run(client_frame(BINARY, payload), mode)
    assert proto.events == [(BINARY, payload)]


@pytest.mark.parametrize("mode", MODES)
def test_empty_messages_are_delivered(mode):
    proto = run(client_frame(TEXT, b"") + client_frame(BINARY, b""), mode)
    assert proto.events == [(TEXT, b""), (BINARY, b"")]


@pytest.mark.parametrize("mode", MODES)
def test_several_messages_in_one_stream_keep_their_order(mode):
    stream = b"".join(client_frame(TEXT if i % 2 else BINARY, b"m%d" % i, mask_key=bytes((i, 1, 2, 3)))
                      for i in range(10))
    proto = run(stream, mode)
    assert proto.events == [(TEXT if i % 2 else BINARY, b"m%d" % i) for i in range(10)]


@pytest.mark.parametrize("mode", MODES)
def test_send_echoes_text_and_binary_unmasked(mode):
    proto = run(client_frame(TEXT, b"hi") + client_frame(BINARY, b"\x00\xff"), mode)
    for kind, value in proto.events:
        assert proto.send(kind, value) is True
    assert parse_frames(proto.out) == [Frame(TEXT, True, b"hi"), Frame(BINARY, True, b"\x00\xff")]


@pytest.mark.parametrize("mode", MODES)
def test_ping_is_answered_with_pong_of_same_payload(mode):
    proto = run(client_frame(PING, b"are you there") + client_frame(PING, b""), mode)
    assert parse_frames(proto.out) == [Frame(PONG, True, b"are you there"), Frame(PONG, True, b"")]
    assert proto.events == []


@pytest.mark.parametrize("mode", MODES)
def test_ping_with_125_byte_payload_is_answered(mode):
    proto = run(client_frame(PING, b"p" * 125), mode)
    assert parse_frames(proto.out) == [Frame(PONG, True, b"p" * 125)]


@pytest.mark.parametrize("mode", MODES)
def test_pong_from_client_needs_no_answer(mode):
    proto = run(client_frame(PONG, b"x") + client_frame(TEXT, b"t"), mode)
    assert proto.out == b"" and proto.events == [(TEXT, b"t")]


# ---------------------------------------------------------------------- fragmentation

@pytest.mark.parametrize("mode", MODES)
def test_text_in_three_fragments_is_one_message(mode):
    stream = (client_frame(TEXT, b"frag", fin=False) + client_frame(CONT, b"men", fin=False)
              + client_frame(CONT, b"ted"))
    proto = run(stream, mode)
    assert proto.events == [(TEXT, b"fragmented")]


@pytest.mark.parametrize("mode", MODES)
def test_binary_in_fragments_with_empty_ones_is_one_message(mode):
    stream = (client_frame(BINARY, b"", fin=False) + client_frame(CONT, b"\x01", fin=False)
              + client_frame(CONT, b"", fin=False) + client_frame(CONT, b""))
    proto = run(stream, mode)
    assert proto.events == [(BINARY, b"\x01")]


@pytest.mark.parametrize("mode", MODES)
def test_utf8_char_split_across_fragments_is_valid(mode):
    euro = "€".encode()
    stream = (client_frame(TEXT, b"a" + euro[:1], fin=False) + client_frame(CONT, euro[1:2], fin=False)
              + client_frame(CONT, euro[2:] + b"b"))
    proto = run(stream, mode)
    assert proto.events == [(TEXT, "a€b".encode())]


@pytest.mark.parametrize("mode", MODES)
def test_ping_inside_fragmented_message_is_answered_in_order_and_message_intact(mode):
    stream = (client_frame(TEXT, b"one ", fin=False) + client_frame(PING, b"p1")
              + client_frame(CONT, b"two ", fin=False) + client_frame(PING, b"p2")
              + client_frame(PONG, b"ignored") + client_frame(CONT, b"three"))
    proto = opened()
    proto.send(BINARY, b"queued before")
    feed(proto, stream, mode, 41)
    assert proto.events == [(TEXT, b"one two three")]
    assert parse_frames(proto.out) == [Frame(BINARY, True, b"queued before"),
                                       Frame(PONG, True, b"p1"), Frame(PONG, True, b"p2")]


@pytest.mark.parametrize("mode", MODES)
def test_pong_is_sent_as_soon_as_ping_arrives_mid_message(mode):
    proto = opened()
    feed(proto, client_frame(TEXT, b"start", fin=False) + client_frame(PING, b"now"), mode, 43)
    assert parse_frames(proto.out) == [Frame(PONG, True, b"now")]
    assert proto.events == []
    feed(proto, client_frame(CONT, b" end"), mode, 44)
    assert proto.events == [(TEXT, b"start end")]


# ---------------------------------------------------------------------- pipelining

@pytest.mark.parametrize("mode", MODES)
def test_frames_pipelined_with_handshake_are_delivered_after_accept(mode):
    frames = client_frame(TEXT, b"early") + client_frame(PING, b"pp") + client_frame(BINARY, b"\x01\x02")
    proto = ServerProtocol()
    feed(proto, upgrade_request() + frames, mode, 47)
    assert [k for k, _ in proto.events] == [EV_REQUEST]
    assert proto.out == b""                      # nothing answered before the 101
    proto.accept()
    assert proto.events[1:] == [(TEXT, b"early"), (BINARY, b"\x01\x02")]
    status, _, rest = parse_http_response(proto.out)
    assert status == 101
    assert parse_frames(rest) == [Frame(PONG, True, b"pp")]


@pytest.mark.parametrize("mode", MODES)
def test_frame_split_between_upgrading_and_open_is_reassembled(mode):
    frame = client_frame(TEXT, b"x" * 300)
    proto = ServerProtocol()
    feed(proto, upgrade_request() + frame[:150], mode, 53)
    proto.accept()
    feed(proto, frame[150:], mode, 54)
    assert proto.events[1:] == [(TEXT, b"x" * 300)]


@pytest.mark.parametrize("mode", MODES)
def test_pipelined_bad_frame_fails_after_101(mode):
    proto = ServerProtocol()
    feed(proto, upgrade_request() + client_frame(TEXT, b"unmasked frame", masked=False), mode, 59)
    proto.accept()
    status, _, rest = parse_http_response(proto.out)
    assert status == 101
    [frame] = parse_frames(rest)
    assert frame.opcode == CLOSE and parse_close(frame.payload)[0] == 1002
    assert proto.close_code == 1002 and proto.state == State.CLOSED


# ---------------------------------------------------------------------- close 1002

def _h(b0: int, b1: int, ext: bytes = b"") -> bytes:
    """A raw masked frame header with no payload (the mask key is appended)."""
    return bytes((b0, b1)) + ext + b"\x00\x00\x00\x00"


PROTOCOL_ERRORS = [
    ("unmasked_frame", client_frame(TEXT, b"hello", masked=False)),
    ("unmasked_empty_ping_then_more", client_frame(PING, b"", masked=False) + b"\x00" * 8),
    ("rsv1_bit", client_frame(TEXT, b"x", rsv=0x40)),
    ("rsv2_bit", client_frame(BINARY, b"x", rsv=0x20)),
    ("rsv3_bit", client_frame(PING, b"x", rsv=0x10)),
    *[(f"reserved_opcode_{op:#x}", client_frame(op, b"x")) for op in (3, 4, 5, 6, 7)],
    *[(f"reserved_opcode_{op:#x}", client_frame(op, b"x")) for op in range(0xB, 0x10)],
    ("reserved_opcode_inside_fragmented_message",
     client_frame(TEXT, b"a", fin=False) + client_frame(3, b"x")),
    ("fragmented_ping", client_frame(PING, b"x", fin=False)),
    ("fragmented_close", client_frame(CLOSE, b"\x03\xe8", fin=False)),
    ("ping_payload_126", client_frame(PING, b"p" * 126)),
    ("pong_payload_126", client_frame(PONG, b"p" * 126)),
    ("close_payload_126", client_frame(CLOSE, b"\x03\xe8" + b"r" * 124)),
    ("ping_payload_64bit_length", _h(0x89, 0xFF, (70000).to_bytes(8, "big"))),
    ("continuation_without_start", client_frame(CONT, b"x")),
    ("new_text_during_fragmented_message", client_frame(TEXT, b"a", fin=False) + client_frame(TEXT, b"b")),
    ("new_binary_during_fragmented_text",
     client_frame(TEXT, b"a", fin=False) + client_frame(BINARY, b"b", fin=False)),
    ("non_minimal_16bit_length_5", client_frame(BINARY, b"x" * 5, length_bits=16)),
    ("non_minimal_16bit_length_125", client_frame(BINARY, b"x" * 125, length_bits=16)),
    ("non_minimal_64bit_length_5", client_frame(BINARY, b"x" * 5, length_bits=64)),
    ("non_minimal_64bit_length_65535", client_frame(BINARY, b"x" * 65535, length_bits=64)),
    ("length_64bit_top_bit", _h(0x82, 0xFF, (1 << 63).to_bytes(8, "big"))),
    ("length_64bit_all_ones", _h(0x82, 0xFF, b"\xff" * 8)),
    ("close_with_1_byte_payload", client_frame(CLOSE, b"\x03")),
    *[(f"close_code_{c}", close_frame(c)) for c in (0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535)],
]


def _named(vectors):
    return [pytest.param(data, mode, id=f"{name}-{mode}") for name, data in vectors for mode in MODES]


@pytest.mark.parametrize("data,mode", _named(PROTOCOL_ERRORS))
def test_protocol_error_closes_1002(data, mode):
    if mode == "bytewise" and len(data) > 1000:
        mode = "random"
    proto = run(data + AFTER, mode)
    assert_closed_with(proto, CloseCode.PROTOCOL_ERROR)
    assert data_events(proto) == []


@pytest.mark.parametrize("mode", MODES)
def test_unmasked_frame_closes_1002(mode):
    proto = run(client_frame(TEXT, b"hello", masked=False), mode)
    assert_closed_with(proto, 1002)
    assert proto.events == [(EV_CLOSED, 1002)]


@pytest.mark.parametrize("frame", [
    pytest.param(b"\x81\x02hi", id="text-2"),
    pytest.param(b"\x89\x00", id="empty-ping"),
    pytest.param(b"\x88\x02\x03\xe8", id="close-1000"),
])
@pytest.mark.parametrize("mode", MODES)
def test_short_unmasked_frame_closes_1002_without_waiting_for_more_bytes(frame, mode):
    # the mask bit is in the second byte: nothing after it can make the frame valid,
    # so a client that sends a short unmasked frame and waits must not hang until a timeout
    proto = run(frame, mode)
    assert_closed_with(proto, 1002)


@pytest.mark.parametrize("mode", MODES)
def test_length_64bit_top_bit_closes_1002_not_1009(mode):
    proto = run(_h(0x82, 0xFF, (1 << 63 | 5).to_bytes(8, "big")), mode, max_message_size=10)
    assert_closed_with(proto, 1002)


@pytest.mark.parametrize("mode", MODES)
def test_valid_messages_before_protocol_error_are_delivered(mode):
    proto = run(client_frame(TEXT, b"ok") + client_frame(CONT, b"x") + AFTER, mode)
    assert data_events(proto) == [(TEXT, b"ok")]
    assert_closed_with(proto, 1002)


@pytest.mark.parametrize("mode", MODES)
def test_nothing_is_read_after_failure(mode):
    proto = run(client_frame(TEXT, b"x", rsv=0x40), mode)
    out, events = bytes(proto.out), list(proto.events)
    feed(proto, client_frame(PING, b"p") + client_frame(TEXT, b"t"), mode)
    assert proto.out == out and proto.events == events


# ---------------------------------------------------------------------- close 1007

INVALID_UTF8 = [
    pytest.param(b"\xff", id="ff"),
    pytest.param(b"\xc0\xaf", id="overlong-slash"),
    pytest.param(b"\xed\xa0\x80", id="surrogate"),
    pytest.param(b"\xf4\x90\x80\x80", id="over-10ffff"),
    pytest.param(b"\xe2\x82A", id="bad-continuation"),
    pytest.param(b"\x80", id="lone-continuation"),
]


@pytest.mark.parametrize("bad", INVALID_UTF8)
@pytest.mark.parametrize("mode", MODES)
def test_invalid_utf8_text_closes_1007(bad, mode):
    proto = run(client_frame(TEXT, b"valid " + bad + b" tail") + AFTER, mode)
    assert_closed_with(proto, CloseCode.INVALID_DATA)
    assert data_events(proto) == []


@pytest.mark.parametrize("bad", INVALID_UTF8)
@pytest.mark.parametrize("mode", MODES)
def test_invalid_utf8_in_last_fragment_closes_1007(bad, mode):
    stream = client_frame(TEXT, b"abc", fin=False) + client_frame(CONT, bad + b"x") + AFTER
    proto = run(stream, mode)
    assert_closed_with(proto, 1007)
    assert data_events(proto) == []


@pytest.mark.parametrize("bad", INVALID_UTF8)
@pytest.mark.parametrize("mode", MODES)
def test_invalid_utf8_in_first_of_three_fragments_closes_1007_before_the_rest(bad, mode):
    first = client_frame(TEXT, b"ok " + bad, fin=False)
    rest = client_frame(CONT, b"middle", fin=False) + client_frame(CONT, b"end")
    proto = opened()
    feed(proto, first, mode, 61)
    assert_closed_with(proto, 1007)                 # fail fast: the rest is not needed
    feed(proto, rest, mode, 62)
    assert proto.events == [(EV_CLOSED, 1007)]


@pytest.mark.parametrize("bad", INVALID_UTF8)
@pytest.mark.parametrize("mode", MODES)
def test_invalid_utf8_in_a_single_frame_in_chunks_closes_1007_when_bad_chunk_arrives(bad, mode):
    prefix, suffix = "déjà vu ".encode() * 3, b"z" * 200
    frame = client_frame(TEXT, prefix + bad + suffix)
    header = 2 + 2 + 4                              # 16-bit length, mask key
    assert len(frame) == header + len(prefix) + len(bad) + len(suffix)
    cut = header + len(prefix)
    proto = opened()
    feed(proto, frame[:cut], mode, 67)
    assert proto.state == State.OPEN and proto.out == b""
    feed(proto, frame[cut:cut + len(bad)], mode, 68)
    assert_closed_with(proto, 1007)                 # long before the frame's end


@pytest.mark.parametrize("mode", MODES)
def test_incomplete_utf8_inside_a_chunk_is_not_an_error_yet(mode):
    euro = "€".encode()
    frame = client_frame(TEXT, b"a" + euro + b"b")
    proto = opened()
    feed(proto, frame[:2 + 4 + 2], mode, 71)        # header, mask, "a", first byte of €
    assert proto.state == State.OPEN
    feed(proto, frame[8:], mode, 72)
    assert proto.events == [(TEXT, "a€b".encode())]


@pytest.mark.parametrize("truncated", [b"\xc3", b"\xe2\x82", b"\xf0\x9f\x98"])
@pytest.mark.parametrize("mode", MODES)
def test_truncated_utf8_at_message_end_closes_1007(truncated, mode):
    proto = run(client_frame(TEXT, b"abc" + truncated) + AFTER, mode)
    assert_closed_with(proto, 1007)
    assert data_events(proto) == []


@pytest.mark.parametrize("truncated", [b"\xc3", b"\xe2\x82", b"\xf0\x9f\x98"])
@pytest.mark.parametrize("mode", MODES)
def test_truncated_utf8_at_end_of_fragmented_message_closes_1007(truncated, mode):
    stream = (client_frame(TEXT, b"abc", fin=False) + client_frame(CONT, truncated, fin=False)
              + client_frame(CONT, b"") + AFTER)
    proto = run(stream, mode)
    assert_closed_with(proto, 1007)
    assert data_events(proto) == []


@pytest.mark.parametrize("mode", MODES)
def test_invalid_utf8_in_binary_is_fine(mode):
    proto = run(client_frame(BINARY, b"\xff\xc0"), mode)
    assert proto.events == [(BINARY, b"\xff\xc0")]


@pytest.mark.parametrize("mode", MODES)
def test_invalid_utf8_close_reason_closes_1007(mode):
    proto = run(close_frame(1000, b"bad \xff reason") + AFTER, mode)
    assert_closed_with(proto, 1007)


# ---------------------------------------------------------------------- close 1009

@pytest.mark.parametrize("opcode", [TEXT, BINARY])
@pytest.mark.parametrize("mode", MODES)
def test_message_over_max_size_closes_1009_from_header_alone(opcode, mode):
    frame = client_frame(opcode, b"x" * 1001)
    header = frame[:2 + 2 + 4]
    proto = opened(max_message_size=1000)
    feed(proto, header, mode, 73)                   # no payload byte sent
    assert_closed_with(proto, CloseCode.MESSAGE_TOO_BIG)
    assert data_events(proto) == []


@pytest.mark.parametrize("mode", MODES)
def test_huge_64bit_length_closes_1009_from_header_alone(mode):
    proto = opened(max_message_size=1 << 20)
    feed(proto, _h(0x82, 0xFF, (1 << 40).to_bytes(8, "big")), mode, 79)
    assert_closed_with(proto, 1009)


@pytest.mark.parametrize("mode", MODES)
def test_fragmented_message_over_max_size_closes_1009_at_the_fragment_header(mode):
    proto = opened(max_message_size=1000)
    feed(proto, client_frame(BINARY, b"a" * 600, fin=False), mode, 83)
    assert proto.state == State.OPEN
    feed(proto, client_frame(CONT, b"b" * 401)[:8], mode, 84)
    assert_closed_with(proto, 1009)
    assert data_events(proto) == []


@pytest.mark.parametrize("mode", MODES)
def test_message_of_exactly_max_size_is_delivered(mode):
    stream = client_frame(TEXT, b"a" * 600, fin=False) + client_frame(CONT, b"b" * 400)
    proto = run(stream + client_frame(BINARY, b"c" * 1000), mode, max_message_size=1000)
    assert proto.events == [(TEXT, b"a" * 600 + b"b" * 400), (BINARY, b"c" * 1000)]


@pytest.mark.parametrize("mode", MODES)
def test_control_frames_do_not_count_toward_message_size(mode):
    stream = (client_frame(TEXT, b"a" * 10, fin=False) + client_frame(PING, b"p" * 100)
              + client_frame(CONT, b"b" * 10))
    proto = run(stream, mode, max_message_size=20)
    assert proto.events == [(TEXT, b"a" * 10 + b"b" * 10)]


# ---------------------------------------------------------------------- close handshake

@pytest.mark.parametrize("code", [1000, 1001, 1003, 1007, 1011, 1014, 3000, 4000, 4999])
@pytest.mark.parametrize("mode", MODES)
def test_close_frame_with_valid_code_is_echoed(code, mode):
    proto = run(close_frame(code, "bye é".encode()) + AFTER, mode)
    frame = closing_frame(proto)
    assert parse_close(frame.payload)[0] == code
    assert proto.close_code == code
    assert proto.close_received is True
    assert proto.state == State.CLOSED
    assert proto.events == [(EV_CLOSED, code)]


@pytest.mark.parametrize("mode", MODES)
def test_close_reason_is_recorded(mode):
    proto = run(close_frame(1000, "au revoir".encode()), mode)
    assert proto.close_reason == "au revoir"


@pytest.mark.parametrize("code", [999, 1004, 1005, 1006, 1015, 1016, 2999, 5000])
@pytest.mark.parametrize("mode", MODES)
def test_close_with_invalid_code_closes_1002(code, mode):
    proto = run(close_frame(code) + AFTER, mode)
    assert_closed_with(proto, 1002)


@pytest.mark.parametrize("mode", MODES)
def test_close_with_1_byte_payload_closes_1002(mode):
    proto = run(client_frame(CLOSE, b"\x03") + AFTER, mode)
    assert_closed_with(proto, 1002)


@pytest.mark.parametrize("mode", MODES)
def test_empty_close_is_answered_with_empty_close(mode):
    proto = run(close_frame(None) + AFTER, mode)
    assert parse_frames(proto.out) == [Frame(CLOSE, True, b"")]
    assert proto.close_code == CloseCode.NO_STATUS
    assert proto.state == State.CLOSED
    assert proto.events == [(EV_CLOSED, 1005)]


@pytest.mark.parametrize("mode", MODES)
def test_close_during_fragmented_message_is_echoed_and_message_dropped(mode):
    proto = run(client_frame(TEXT, b"half", fin=False) + close_frame(1000), mode)
    assert parse_close(closing_frame(proto).payload)[0] == 1000
    assert proto.events == [(EV_CLOSED, 1000)]


@pytest.mark.parametrize("mode", MODES)
def test_server_close_then_peer_close_gives_closed_event(mode):
    proto = opened()
    assert proto.close(1001, "going away") is True
    [frame] = parse_frames(proto.out)
    assert frame.opcode == CLOSE
    assert parse_close(frame.payload) == (1001, b"going away")
    assert proto.state == State.CLOSING
    assert proto.events == []
    proto.out.clear()
    feed(proto, close_frame(1001), mode, 89)
    assert proto.out == b""                          # our close was already sent
    assert proto.state == State.CLOSED
    assert proto.close_code == 1001
    assert proto.events == [(EV_CLOSED, 1001)]


@pytest.mark.parametrize("mode", MODES)
def test_server_close_then_peer_empty_close_gives_closed_event(mode):
    proto = opened()
    proto.close(1000)
    proto.out.clear()
    feed(proto, close_frame(None), mode, 97)
    assert proto.out == b""
    assert proto.state == State.CLOSED
    assert proto.events == [(EV_CLOSED, 1000)]


def test_close_twice_queues_one_close_frame():
    proto = opened()
    assert proto.close(1000) is True
    assert proto.close(1001) is False
    assert len(parse_frames(proto.out)) == 1


def test_send_after_close_returns_false():
    proto = opened()
    proto.close()
    out = bytes(proto.out)
    assert proto.send(TEXT, b"late") is False
    assert proto.ping(b"late") is False
    assert proto.out == out
    feed(proto, close_frame(1000), "whole")
    assert proto.state == State.CLOSED
    assert proto.send(BINARY, b"later") is False
    assert proto.out == out


def test_send_after_peer_close_returns_false():
    proto = run(close_frame(1000), "whole")
    out = bytes(proto.out)
    assert proto.send(TEXT, b"late") is False
    assert proto.close() is False
    assert proto.out == out


def test_ping_from_server_is_queued_unmasked():
    proto = opened()
    assert proto.ping(b"hb") is True
    assert parse_frames(proto.out) == [Frame(PING, True, b"hb")]


# ---------------------------------------------------------------------- output

@pytest.mark.parametrize("size,expected", [
    (10, [Frame(TEXT, False, b"abcd"), Frame(CONT, False, b"efgh"), Frame(CONT, True, b"ij")]),
    (8, [Frame(TEXT, False, b"abcd"), Frame(CONT, True, b"efgh")]),
    (4, [Frame(TEXT, True, b"abcd")]),
    (3, [Frame(TEXT, True, b"abc")]),
    (0, [Frame(TEXT, True, b"")]),
])
def test_auto_fragment_splits_outbound_message(size, expected):
    proto = opened(auto_fragment=4)
    assert proto.send(TEXT, b"abcdefghij"[:size]) is True
    assert parse_frames(proto.out) == expected


def test_auto_fragment_splits_binary_and_keeps_pongs_between_messages():
    proto = opened(auto_fragment=100)
    payload = bytes(range(256)) * 4
    proto.send(BINARY, payload)
    feed(proto, client_frame(PING, b"x"), "whole")
    frames = parse_frames(proto.out)
    assert [f.opcode for f in frames] == [BINARY] + [CONT] * 10 + [PONG]
    assert all(len(f.payload) <= 100 for f in frames)
    assert b"".join(f.payload for f in frames[:-1]) == payload
    assert [f.fin for f in frames[:-1]] == [False] * 10 + [True]


def test_without_auto_fragment_a_large_message_is_one_frame():
    proto = opened()
    proto.send(BINARY, b"z" * 70000)
    assert parse_frames(proto.out) == [Frame(BINARY, True, b"z" * 70000)]


# ---------------------------------------------------------------------- EOF

def test_receive_eof_gives_closed_1006():
    proto = opened()
    proto.receive_eof()
    assert proto.events == [(EV_CLOSED, CloseCode.ABNORMAL)]
    assert proto.close_code == 1006
    assert proto.state == State.CLOSED
    assert proto.out == b""                          # 1006 never goes on the wire


def test_receive_eof_mid_message_gives_closed_1006():
    proto = opened()
    feed(proto, client_frame(TEXT, b"part", fin=False) + client_frame(TEXT, b"xx")[:3], "whole")
    proto.receive_eof()
    assert proto.events == [(EV_CLOSED, 1006)]
    assert proto.close_code == 1006


def test_receive_eof_during_handshake_gives_closed_1006():
    proto = ServerProtocol()
    feed(proto, upgrade_request()[:20], "whole")
    proto.receive_eof()
    assert proto.events == [(EV_CLOSED, 1006)]
    assert proto.state == State.CLOSED


def test_receive_eof_after_close_adds_nothing():
    proto = run(close_frame(1000), "whole")
    proto.receive_eof()
    assert proto.events == [(EV_CLOSED, 1000)]
    assert proto.close_code == 1000


def test_receive_eof_while_closing_keeps_server_code():
    proto = opened()
    proto.close(1001)
    proto.receive_eof()
    assert proto.state == State.CLOSED
    assert proto.events == [(EV_CLOSED, 1001)]


@pytest.mark.parametrize("size", [0, 1, 124, 125, 126, 65535, 65536, 70000])
def test_frames_read_into_a_memoryview_parse_on_either_codec_path(size):
    """The worker hands `receive_data` a memoryview of its read buffer; whole and in two
    reads, the message comes out right (on the C path, or with LAPPS_NO_SPEEDUPS=1)."""
    payload = bytes(i & 0xFF for i in range(size))
    wire = bytearray(client_frame(Opcode.BINARY, payload) * 2)
    for cut in (len(wire), len(wire) // 2 + 3):
        proto = opened()
        view = memoryview(wire)
        proto.receive_data(view[:cut])
        proto.receive_data(view[cut:])
        assert proto.events == [(Opcode.BINARY, payload)] * 2
