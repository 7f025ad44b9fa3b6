"""Hypothesis strategies that draw inputs for the fuzz targets.

Used by the fallback engine of fuzz/run.py and by tests/test_fuzz_targets.py. Each target
gets three kinds of input: seeds with random edits (`mutated`), inputs built from the
target's grammar (`structured`), and plain random bytes.
"""

from __future__ import annotations

import cbor2
from hypothesis import strategies as st

from fuzz.harness import KEY, client_frame, deflate_payload, upgrade_head
from lapps.ws.frames import encode_frame
from lapps.ws.handshake import response_101

_INTERESTING = [b"\x00", b"\xff", b"\x7e", b"\x7f", b"\x80", b"\xff\xff", b"\x00\x00\xff\xff", b"\r\n",
                b"\r\n\r\n", b"\n", b" ", b":", b",", b";", b'"']


@st.composite
def mutated(draw, seeds: list[bytes], max_len: int):
    """A seed with 1..8 edits: byte changes, inserts, deletions, copies, interesting bytes."""
    data = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(1, 8))):
        op = draw(st.integers(0, 4))
        pos = draw(st.integers(0, len(data)))
        if op == 0 and pos < len(data):
            data[pos] = draw(st.integers(0, 255))
        elif op == 1:
            data[pos:pos] = draw(st.binary(min_size=1, max_size=16))
        elif op == 2:
            del data[pos:pos + draw(st.integers(1, 16))]
        elif op == 3:
            end = draw(st.integers(pos, len(data)))
            data[pos:pos] = data[pos:end]
        else:
            data[pos:pos] = draw(st.sampled_from(_INTERESTING))
    return bytes(data[:max_len])


# ---------------------------------------------------------------------------- grammars

_header_names = st.sampled_from(["Host", "Upgrade", "Connection", "Sec-WebSocket-Key", "Sec-WebSocket-Version",
                                 "Sec-WebSocket-Extensions", "Sec-WebSocket-Protocol", "Content-Length",
                                 "Transfer-Encoding", "Origin", "X-Y"])
_header_values = st.one_of(
    st.sampled_from(["websocket", "Upgrade", "keep-alive, upgrade", KEY, "13", "8", "0", "chat, superchat",
                     "permessage-deflate", "permessage-deflate; client_max_window_bits",
                     "permessage-deflate; server_max_window_bits=9; client_no_context_takeover",
                     'permessage-deflate; server_max_window_bits="1\\5"', "x, permessage-deflate;;", ""]),
    st.text(st.characters(min_codepoint=0, max_codepoint=255), max_size=30))


@st.composite
def handshake_inputs(draw):
    """A request head: the valid one with headers added, dropped or changed, some bytes after."""
    head = upgrade_head().decode("latin-1")
    lines = head[:-4].split("\r\n")
    for _ in range(draw(st.integers(0, 4))):
        op = draw(st.integers(0, 2))
        i = draw(st.integers(0, len(lines) - 1))
        if op == 0:
            lines.insert(i + 1, f"{draw(_header_names)}: {draw(_header_values)}")
        elif op == 1 and i:
            del lines[i]
        elif i:
            lines[i] = f"{lines[i].split(':')[0]}: {draw(_header_values)}"
    eol = draw(st.sampled_from(["\r\n"] * 6 + ["\n", "\r"]))
    tail = draw(st.sampled_from([b"", client_frame(9, b"p"), b"\x81"]))
    return (eol.join(lines) + eol + eol).encode("latin-1") + tail


_OPCODES = st.sampled_from([1, 2, 1, 2, 0, 9, 10] * 4 + [8] + list(range(16)))


@st.composite
def _frame(draw, masked: bool):
    opcode = draw(_OPCODES)
    if draw(st.booleans()):
        payload = draw(st.text(max_size=60)).encode("utf-8")
    else:
        payload = draw(st.binary(max_size=200))
    if opcode == 8 and draw(st.booleans()):
        payload = draw(st.sampled_from([1000, 1001, 1005, 1007, 1015, 2999, 3000, 4999, 5000])).to_bytes(2, "big") \
            + payload[:50]
    if opcode >= 8 and draw(st.booleans()):
        payload = payload[:125]
    rsv1 = masked and draw(st.booleans()) and opcode in (1, 2)
    if rsv1 and draw(st.booleans()):
        payload = deflate_payload(payload)
    fin = opcode >= 8 or draw(st.integers(0, 3)) > 0
    if masked:
        return client_frame(opcode, payload, fin, rsv1, key=draw(st.binary(min_size=4, max_size=4)))
    return encode_frame(opcode, payload, fin)


@st.composite
def frames_inputs(draw):
    """[flags][chunking] + a few client frames, mostly plausible."""
    frames = draw(st.lists(_frame(True), max_size=6))
    return bytes([draw(st.integers(0, 15)), draw(st.integers(0, 255))]) + b"".join(frames)


@st.composite
def client_inputs(draw):
    """[flags][chunking] + server frames (or, flag bit 0, a whole answer)."""
    flags = draw(st.integers(0, 7))
    body = b"".join(draw(st.lists(_frame(False), max_size=6)))
    if flags & 1:
        head = draw(st.sampled_from([response_101(KEY), response_101(KEY, "chat"), response_101(KEY, "other"),
                                     b"HTTP/1.1 404 Not Found\r\nContent-Length: 3\r\n\r\n",
                                     b"HTTP/1.1 500 Oops\r\n\r\n", b"HTTP/1.0 101 OK\r\n\r\n"]))
        body = head + body
    return bytes([flags, draw(st.integers(0, 255))]) + body


@st.composite
def utf8_inputs(draw):
    """Valid UTF-8, then maybe broken at one place."""
    data = bytearray(draw(st.text(max_size=80)).encode("utf-8"))
    if draw(st.booleans()):
        pos = draw(st.integers(0, len(data)))
        data[pos:pos + draw(st.integers(0, 2))] = draw(st.sampled_from(
            [b"\x80", b"\xc0\xaf", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xe2\x82", b"\xff", b"\xf0\x9f"]))
    return bytes(data)


_cbor_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(1 << 65), 1 << 65) | st.floats() | st.text(max_size=10)
    | st.binary(max_size=10),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5) | st.binary(max_size=5),
                                                                   inner, max_size=4),
    max_leaves=12)


@st.composite
def lapps_inputs(draw):
    """A LAppS request or notification, maybe with a key dropped, changed or added."""
    message: dict = {"lapps": draw(st.sampled_from([1, 1, 1, 1.0, 2, True, "1"])),
                     "method": draw(st.sampled_from(["echo", "m", "echo", "", "_x", "a.b"]))}
    if draw(st.booleans()):
        message["params"] = draw(st.lists(_cbor_values, max_size=4))
    if draw(st.booleans()):
        message["cid"] = draw(st.sampled_from([0, 3, 1.0, 2.5, -(1 << 63), 1 << 63, "x"]))
    if draw(st.integers(0, 3)) == 0:
        message[draw(st.sampled_from(["x", "lapps", "method"]))] = draw(_cbor_values)
    return cbor2.dumps(message)


STRUCTURED = {
    "handshake": handshake_inputs(),
    "frames": frames_inputs(),
    "utf8": utf8_inputs(),
    "lapps_message": lapps_inputs(),
    "client_frames": client_inputs(),
}


def inputs(target: str, seeds: list[bytes], max_len: int) -> st.SearchStrategy[bytes]:
    """Everything a target is fed by hypothesis: structured, mutated seeds, random bytes."""
    parts = [STRUCTURED[target], st.binary(max_size=min(max_len, 512))]
    if seeds:
        parts.insert(1, mutated(seeds, max_len))
    return st.one_of(parts)
