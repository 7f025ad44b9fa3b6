"""The C frame scanner (`lapps.ws._speedups.scan`) and its UTF-8 check.

The scanner's contract is narrow: it takes a frame only where the Python parser has
nothing to decide, and otherwise stops *before* the frame. So each test checks two
things: what it takes is right, and the server protocol gives the same events and the
same bytes out with the scanner as without it (`protocol._scan = None`), for any input.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import lapps.ws.protocol as protocol_module
from lapps.ws.constants import Opcode
from lapps.ws.protocol import ServerProtocol, State

from wsvectors import client_frame

speedups = pytest.importorskip("lapps.ws._speedups", reason="C extension not built")
scan, utf8_valid = speedups.scan, speedups.utf8_valid

SETTINGS = settings(max_examples=300, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
TEXT, BINARY = Opcode.TEXT, Opcode.BINARY


def python_says_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
        return True
    except UnicodeDecodeError:
        return False


# ------------------------------------------------------------------ UTF-8

@pytest.mark.parametrize("data, valid", [
    (b"", True),
    (b"plain ascii, longer than eight bytes", True),
    ("h\u00e9llo \u20ac \U0001d11e".encode(), True),
    (b"\xc0\xaf", False),                  # overlong '/'
    (b"\xe0\x80\xaf", False),              # overlong, 3 bytes
    (b"\xf0\x80\x80\xaf", False),          # overlong, 4 bytes
    (b"\xed\xa0\x80", False),              # UTF-16 surrogate
    (b"\xf4\x90\x80\x80", False),          # past U+10FFFF
    (b"\xf4\x8f\xbf\xbf", True),           # U+10FFFF itself
    (b"\xf5\x80\x80\x80", False),          # lead byte never used
    (b"abcdefg\xce", False),               # truncated at the end, after an ASCII run
    (b"\xce\xbaxxxxxxxxxxxxxxxxxxxx", True),
    (b"\x80", False),                      # lone continuation
])
def test_utf8_cases(data: bytes, valid: bool) -> None:
    assert utf8_valid(data) is valid
    assert python_says_utf8(data) is valid


@SETTINGS
@given(st.binary(max_size=64))
def test_utf8_matches_python_on_any_bytes(data: bytes) -> None:
    assert utf8_valid(data) == python_says_utf8(data)


@SETTINGS
@given(st.text(max_size=40), st.integers(0, 200), st.integers(0, 255))
def test_utf8_matches_python_on_damaged_text(text: str, where: int, byte: int) -> None:
    """Valid text with one byte replaced: the errors that matter sit inside sequences."""
    data = bytearray(text.encode())
    if data:
        data[where % len(data)] = byte
    assert utf8_valid(bytes(data)) == python_says_utf8(bytes(data))


# ------------------------------------------------------------------ what scan takes

def test_scan_takes_a_run_of_plain_frames_and_stops_at_a_control_frame() -> None:
    data = (client_frame(TEXT, b"one") + client_frame(BINARY, b"\x00" * 300)
            + client_frame(Opcode.PING, b"p") + client_frame(TEXT, b"after"))
    messages, pos = scan(data, 0, 1 << 20)
    assert messages == [(TEXT, b"one"), (BINARY, b"\x00" * 300)]
    assert pos == len(client_frame(TEXT, b"one")) + len(client_frame(BINARY, b"\x00" * 300))


@pytest.mark.parametrize("frame", [
    client_frame(TEXT, b"fragment", fin=False),
    client_frame(Opcode.CONTINUATION, b"x"),
    client_frame(TEXT, b"compressed?", rsv=0x40),
    client_frame(TEXT, b"unmasked", masked=False),
    client_frame(TEXT, b"\xff not utf-8"),
    client_frame(TEXT, b"short", length_bits=16),           # not minimally encoded
    client_frame(BINARY, b"x" * 70000),                     # 64-bit length: left to Python
    client_frame(BINARY, b"x" * 201),                       # over max_size below
    client_frame(TEXT, b"cut short")[:-1],                  # incomplete
    client_frame(Opcode.CLOSE, b"\x03\xe8"),
])
def test_scan_leaves_every_frame_with_a_decision_to_python(frame: bytes) -> None:
    assert scan(frame, 0, 200) == ([], 0)


def test_scan_starts_at_pos() -> None:
    data = b"junk" + client_frame(TEXT, b"hi")
    assert scan(data, 4, 100) == ([(TEXT, b"hi")], len(data))


# ------------------------------------------------------------------ same answers either way

def run(stream: bytes, cut: int | None, scanner: bool, on_close: int | None) -> tuple:
    """An open protocol fed `stream` (in two reads at `cut`), echoing each message; with
    `on_close`, the service starts a close after that many messages."""
    saved = protocol_module._scan
    if not scanner:
        protocol_module._scan = None
    try:
        p = ServerProtocol()
        p.state = State.OPEN
        p.max_message_size = 1000
        seen: list[tuple[int, bytes]] = []

        def on_message(opcode: int, payload: bytes) -> None:
            seen.append((opcode, payload))
            p.send(opcode, payload)
            if on_close is not None and len(seen) == on_close:
                p.close(1000, "enough")
        p.on_message = on_message
        pieces = [stream] if cut is None else [stream[:cut % (len(stream) + 1)], stream[cut % (len(stream) + 1):]]
        for piece in pieces:
            p.receive_data(piece)
        return seen, bytes(p.out), p.events, p.state, p.close_code, p.messages
    finally:
        protocol_module._scan = saved


frames = st.one_of(
    st.builds(lambda t: client_frame(TEXT, t.encode()), st.text(max_size=40)),
    st.builds(lambda b: client_frame(BINARY, b), st.binary(max_size=300)),
    st.builds(lambda b: client_frame(TEXT, b), st.binary(max_size=20)),          # often bad UTF-8
    st.builds(lambda b: client_frame(TEXT, b, fin=False), st.binary(max_size=10)),
    st.builds(lambda b: client_frame(Opcode.CONTINUATION, b), st.binary(max_size=10)),
    st.builds(lambda b: client_frame(Opcode.PING, b), st.binary(max_size=20)),
    st.builds(lambda b: client_frame(BINARY, b, rsv=0x40), st.binary(max_size=10)),
    st.builds(lambda b: client_frame(BINARY, b, length_bits=16), st.binary(max_size=10)),
    st.just(client_frame(BINARY, b"y" * 1001)),                                  # over the limit
    st.just(client_frame(Opcode.CLOSE, b"\x03\xe8bye")),
)


@SETTINGS
@given(st.lists(frames, max_size=8), st.one_of(st.none(), st.integers(0, 4000)),
       st.one_of(st.none(), st.integers(1, 4)))
def test_protocol_answers_the_same_with_and_without_the_scanner(parts: list[bytes], cut: int | None,
                                                                 on_close: int | None) -> None:
    stream = b"".join(parts)
    assert run(stream, cut, True, on_close) == run(stream, cut, False, on_close)


# ------------------------------------------------------------------ frame_into

@pytest.mark.parametrize("size", [0, 1, 125, 126, 65535, 65536, 70000])
@pytest.mark.parametrize("opcode", [TEXT, BINARY])
def test_frame_into_appends_what_the_python_version_appends(size: int, opcode: int) -> None:
    from lapps.ws.frames import frame_into_python
    data = bytes(range(256)) * (size // 256 + 1)
    data = data[:size]
    c, py = bytearray(b"queued"), bytearray(b"queued")
    speedups.frame_into(c, opcode, data)
    frame_into_python(py, opcode, data)
    assert c == py
    assert c.startswith(b"queued") and c.endswith(data)


def test_frame_into_refuses_what_is_not_a_bytearray_or_an_opcode() -> None:
    with pytest.raises(TypeError):
        speedups.frame_into(b"immutable", TEXT, b"x")
    with pytest.raises(ValueError):
        speedups.frame_into(bytearray(), 16, b"x")
