"""lapps.ws.frames: frame encoding, masking and close payloads.

Round trip both ways: serialize(frame) == bytes against hand-written vectors (RFC 6455
§5.7 plus length boundaries), and parse(bytes) == frame, where parse is the server's own
parser (`ServerProtocol`) for masked client frames and `wsvectors.parse_frames` for the
unmasked frames a server sends.
"""

from __future__ import annotations

import pytest

from lapps.ws.constants import Opcode
from lapps.ws.frames import close_payload, encode_frame, frame_header, mask, mask_python
from lapps.ws.protocol import EV_CLOSED

from wsvectors import MODES, MASK_KEY, Frame, feed, naive_mask, opened, parse_frames

# (opcode, payload, fin, rsv1, mask_key, exact bytes) — RFC 6455 §5.7 examples first.
VECTORS = [
    pytest.param(Opcode.TEXT, b"Hello", True, False, None,
                 bytes.fromhex("81 05 48 65 6c 6c 6f"), id="rfc-unmasked-text"),
    pytest.param(Opcode.TEXT, b"Hello", True, False, MASK_KEY,
                 bytes.fromhex("81 85 37 fa 21 3d 7f 9f 4d 51 58"), id="rfc-masked-text"),
    pytest.param(Opcode.TEXT, b"Hel", False, False, None,
                 bytes.fromhex("01 03 48 65 6c"), id="rfc-first-fragment"),
    pytest.param(Opcode.CONTINUATION, b"lo", True, False, None,
                 bytes.fromhex("80 02 6c 6f"), id="rfc-last-fragment"),
    pytest.param(Opcode.PING, b"Hello", True, False, None,
                 bytes.fromhex("89 05 48 65 6c 6c 6f"), id="rfc-ping"),
    pytest.param(Opcode.PONG, b"Hello", True, False, MASK_KEY,
                 bytes.fromhex("8a 85 37 fa 21 3d 7f 9f 4d 51 58"), id="rfc-masked-pong"),
    pytest.param(Opcode.BINARY, b"\xab" * 256, True, False, None,
                 bytes.fromhex("82 7e 01 00") + b"\xab" * 256, id="rfc-256-bytes"),
    pytest.param(Opcode.BINARY, b"\xcd" * 65536, True, False, None,
                 bytes.fromhex("82 7f 00 00 00 00 00 01 00 00") + b"\xcd" * 65536, id="rfc-64KiB"),
    pytest.param(Opcode.BINARY, b"", True, False, None, b"\x82\x00", id="empty"),
    pytest.param(Opcode.BINARY, b"", True, False, MASK_KEY, b"\x82\x80" + MASK_KEY, id="empty-masked"),
    pytest.param(Opcode.CLOSE, b"\x03\xe8", True, False, None, b"\x88\x02\x03\xe8", id="close-1000"),
    pytest.param(Opcode.TEXT, b"x", True, True, None, b"\xc1\x01x", id="rsv1"),
]

# (length, the header bytes after the first byte, for an unmasked frame)
LENGTHS = [
    pytest.param(0, b"\x00", id="0"),
    pytest.param(125, b"\x7d", id="125-7bit"),
    pytest.param(126, b"\x7e\x00\x7e", id="126-16bit"),
    pytest.param(65535, b"\x7e\xff\xff", id="65535-16bit"),
    pytest.param(65536, b"\x7f\x00\x00\x00\x00\x00\x01\x00\x00", id="65536-64bit"),
]


@pytest.mark.parametrize("opcode,payload,fin,rsv1,key,wire", VECTORS)
def test_encode_frame_serializes_vector(opcode, payload, fin, rsv1, key, wire):
    assert encode_frame(opcode, payload, fin=fin, rsv1=rsv1, mask_key=key) == wire


@pytest.mark.parametrize("opcode,payload,fin,rsv1,key,wire", VECTORS)
def test_encode_frame_parses_back_to_vector(opcode, payload, fin, rsv1, key, wire):
    if key is None:
        assert parse_frames(wire) == [Frame(opcode, fin, payload, 0x40 if rsv1 else 0)]
    else:   # masked: unmask by hand
        assert wire[1] & 0x80
        n = wire[1] & 0x7F
        assert n == len(payload) < 126
        assert wire[2:6] == key
        assert naive_mask(wire[6:], key) == payload
        assert wire[0] == (0x80 if fin else 0) | (0x40 if rsv1 else 0) | opcode


@pytest.mark.parametrize("length,rest", LENGTHS)
def test_frame_header_uses_minimal_length_encoding(length, rest):
    assert frame_header(Opcode.BINARY, length) == b"\x82" + rest
    masked = bytes((rest[0] | 0x80,)) + rest[1:]
    assert frame_header(Opcode.BINARY, length, masked=True) == b"\x82" + masked
    assert frame_header(Opcode.TEXT, length, fin=False, rsv1=True) == b"\x41" + rest


@pytest.mark.parametrize("length,rest", LENGTHS)
def test_unmasked_frame_round_trips_at_length_boundary(length, rest):
    payload = bytes(i & 0xFF for i in range(length))
    wire = encode_frame(Opcode.BINARY, payload)
    assert wire == b"\x82" + rest + payload
    assert parse_frames(wire) == [Frame(Opcode.BINARY, True, payload)]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("length,rest", LENGTHS)
def test_masked_frame_round_trips_through_server_parser_at_length_boundary(length, rest, mode):
    payload = bytes((i * 7) & 0xFF for i in range(length))
    wire = encode_frame(Opcode.BINARY, payload, mask_key=MASK_KEY)
    masked_rest = bytes((rest[0] | 0x80,)) + rest[1:]
    assert wire == b"\x82" + masked_rest + MASK_KEY + naive_mask(payload, MASK_KEY)
    proto = opened()
    if mode == "bytewise" and length > 1000:
        mode = "random"     # a byte-by-byte 64 KiB feed adds time, not coverage
    feed(proto, wire, mode)
    assert proto.events == [(Opcode.BINARY, payload)]
    assert proto.out == b""


@pytest.mark.parametrize("mode", MODES)
def test_masked_text_frame_parses_to_message(mode):
    proto = opened()
    feed(proto, bytes.fromhex("81 85 37 fa 21 3d 7f 9f 4d 51 58"), mode)
    assert proto.events == [(Opcode.TEXT, b"Hello")]


@pytest.mark.parametrize("offset", range(4))
@pytest.mark.parametrize("length", [0, 1, 2, 3, 4, 5, 7, 8, 9, 31, 125, 126, 1000])
def test_mask_matches_naive_xor(length, offset):
    data = bytes((i * 31 + 5) & 0xFF for i in range(length))
    key = b"\x01\x80\xfe\x7f"
    assert mask(data, key, offset) == naive_mask(data, key, offset)


@pytest.mark.parametrize("offset", range(4))
def test_mask_with_offset_continues_the_key_stream(offset):
    data = bytes(range(40))
    whole = mask(data, MASK_KEY)
    assert mask(data[offset:], MASK_KEY, offset) == whole[offset:]
    assert mask(data[offset:], MASK_KEY, offset + 4) == whole[offset:]


@pytest.mark.parametrize("offset", range(4))
def test_mask_of_empty_data_is_empty(offset):
    assert mask(b"", MASK_KEY, offset) == b""


def test_mask_accepts_bytearray_and_memoryview():
    data = bytes(range(50))
    expected = naive_mask(data, MASK_KEY, 1)
    assert mask(bytearray(data), MASK_KEY, 1) == expected
    assert mask(memoryview(data), MASK_KEY, 1) == expected


@pytest.mark.parametrize("impl", [mask, mask_python], ids=["mask", "mask_python"])
@pytest.mark.parametrize("offset", range(4))
def test_mask_takes_data_and_key_sliced_from_a_memoryview(impl, offset):
    """The parser slices both out of the worker's read buffer, a memoryview: the pure-Python
    twin once crashed there (memoryview * int) on every masked frame of 125 bytes or more."""
    wire = memoryview(bytearray(MASK_KEY + bytes(range(200))))
    data = bytes(range(200))
    assert impl(wire[4:], wire[:4], offset) == naive_mask(data, MASK_KEY, offset)


def test_mask_is_an_involution():
    data = bytes(range(256)) * 3
    assert mask(mask(data, MASK_KEY), MASK_KEY) == data


def test_mask_keeps_leading_and_trailing_zero_bytes():
    # the big-integer XOR must not drop zero bytes at either end
    data = b"\x00\x00abc\x00\x00"
    key = b"\x00\x00\x00\x00"
    assert mask(data, key) == data
    assert mask(b"\x37\xfa\x21\x3d", MASK_KEY) == b"\x00\x00\x00\x00"


def test_close_payload_without_code_is_empty():
    assert close_payload(None) == b""
    assert close_payload(None, "ignored") == b""


def test_close_payload_is_code_then_utf8_reason():
    assert close_payload(1000) == b"\x03\xe8"
    assert close_payload(4999, "é") == b"\x13\x87" + "é".encode()


def test_close_payload_keeps_a_123_byte_reason():
    assert close_payload(1001, "a" * 123) == b"\x03\xe9" + b"a" * 123


def test_close_payload_truncates_ascii_reason_to_123_bytes():
    assert close_payload(1001, "a" * 200) == b"\x03\xe9" + b"a" * 123


@pytest.mark.parametrize("prefix,char", [
    pytest.param(122, "é", id="2-byte-char-split-after-1"),
    pytest.param(121, "€", id="3-byte-char-split-after-2"),
    pytest.param(122, "€", id="3-byte-char-split-after-1"),
    pytest.param(120, "😀", id="4-byte-char-split-after-3"),
    pytest.param(122, "😀", id="4-byte-char-split-after-1"),
])
def test_close_payload_truncation_does_not_split_utf8_char(prefix, char):
    payload = close_payload(1000, "a" * prefix + char * 5)
    reason = payload[2:]
    assert payload[:2] == b"\x03\xe8"
    assert len(reason) <= 123
    assert reason.decode("utf-8") == "a" * prefix      # no partial character left
    assert len(payload) <= 125                          # fits a control frame


def test_close_payload_truncation_keeps_whole_multibyte_chars():
    reason = close_payload(1000, "€" * 50)[2:]          # 150 bytes, 41 chars fit exactly
    assert reason == ("€" * 41).encode()
    reason = close_payload(1000, "a" + "€" * 50)[2:]    # 1 + 40*3 = 121, the 41st is split
    assert reason == ("a" + "€" * 40).encode()


def test_server_close_with_long_reason_fits_a_control_frame():
    proto = opened()
    proto.close(1000, "é" * 100)
    [frame] = parse_frames(proto.out)
    assert frame.opcode == Opcode.CLOSE and len(frame.payload) <= 125
    assert frame.payload[2:].decode("utf-8") == "é" * 61
    assert (EV_CLOSED, 1000) not in proto.events
