"""permessage-deflate (RFC 7692), server side: `lapps.ws.deflate`.

Negotiation is checked against header vectors and against the offers the `websockets`
client builds, whose own permessage-deflate (`websockets.extensions.permessage_deflate`)
is then the peer of every round trip: it compresses the client's frames (with or without
context takeover) and decodes what we compress. Limits are checked by allocation
(tracemalloc), never by time.

`python tests/test_deflate.py` prints the measurements the report quotes (memory per
connection, compress throughput); they are not asserted.
"""

from __future__ import annotations

import ast
import os
import random
import tracemalloc
import zlib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory, PerMessageDeflate
from websockets.frames import Frame, Opcode
from websockets.headers import build_extension, parse_extension

from lapps.ws import deflate as deflate_mod
from lapps.ws.deflate import TAIL, Deflate, DeflateError, negotiate, parse_extensions, worth_compressing

SETTINGS = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

BASE = "permessage-deflate; server_no_context_takeover"
CNCT = BASE + "; client_no_context_takeover"
MiB = 1024 * 1024


# ---------------------------------------------------------------------------- helpers

def connect(**offer) -> tuple[Deflate, str, PerMessageDeflate]:
    """Negotiate as the websockets client would with `offer`; return our Deflate, our
    response value and the client's extension configured from that response."""
    factory = ClientPerMessageDeflateFactory(**offer)
    request = build_extension([(factory.name, factory.get_request_params())])
    d, response = negotiate([request])
    assert d is not None and response is not None, request
    [(name, params)] = parse_extension(response)
    assert name == "permessage-deflate"
    return d, response, factory.process_response_params(params, [])


def client_frames(ext: PerMessageDeflate, payload: bytes, parts: int = 1) -> list[bytes]:
    """Payloads of the frames the client sends for `payload` cut into `parts` frames."""
    n = len(payload)
    cuts = [n * i // parts for i in range(parts + 1)]
    out = []
    for i in range(parts):
        frame = Frame(Opcode.BINARY if i == 0 else Opcode.CONT, payload[cuts[i]:cuts[i + 1]],
                      fin=i == parts - 1)
        enc = ext.encode(frame)
        assert enc.rsv1 == (i == 0)
        out.append(bytes(enc.data))
    return out


def receive(d: Deflate, chunks: list[bytes], max_size: int = 16 * MiB) -> bytes:
    """Feed one message's compressed chunks as the protocol would; the inflated message."""
    out = [d.decompress(c, max_size) for c in chunks]
    out.append(d.end_message(max_size))
    return b"".join(out)


def client_decode(ext: PerMessageDeflate, compressed: bytes) -> bytes:
    return bytes(ext.decode(Frame(Opcode.BINARY, compressed, rsv1=True), max_size=None).data)


def standalone(compressed: bytes, wbits: int = 15) -> bytes:
    """Inflate one message with a fresh inflater: what server_no_context_takeover promises
    works. A reference to any earlier message fails ("invalid distance too far back").

    Output comes 64 bytes per call: zlib checks distances against the window only when
    it copies from the window, not from the caller's output buffer, so a big buffer would
    let a reference farther back than 2**wbits pass."""
    d = zlib.decompressobj(-wbits)
    out = []
    data = compressed + TAIL
    while True:
        part = d.decompress(data, 64)
        out.append(part)
        data = d.unconsumed_tail
        if not data and len(part) < 64:
            return b"".join(out)


def texty(rng: random.Random, n: int) -> bytes:
    """Compressible but not trivial data, like JSON traffic."""
    words = [b"alpha", b"beta", b"gamma", b'"id":', b"1234", b"{", b"}", b", ", b"delta"]
    out = bytearray()
    while len(out) < n:
        out += rng.choice(words)
    return bytes(out[:n])


def cut(data: bytes, points: list[int]) -> list[bytes]:
    pts = sorted({p % (len(data) + 1) for p in points} | {0, len(data)})
    return [data[a:b] for a, b in zip(pts, pts[1:])]


# ---------------------------------------------------------------------------- negotiation

# (id, header values, expected response value or None)
NEGOTIATION = [
    ("websockets-default-offer", ["permessage-deflate; client_max_window_bits"], BASE),
    ("bare", ["permessage-deflate"], BASE),
    ("client-no-context-takeover", ["permessage-deflate; client_no_context_takeover"], CNCT),
    ("server-no-context-takeover", ["permessage-deflate; server_no_context_takeover"], BASE),
    ("both-no-context-takeover",
     ["permessage-deflate; server_no_context_takeover; client_no_context_takeover"], CNCT),
    ("server-max-window-bits-10", ["permessage-deflate; server_max_window_bits=10"],
     BASE + "; server_max_window_bits=10"),
    ("server-max-window-bits-9", ["permessage-deflate; server_max_window_bits=9"],
     BASE + "; server_max_window_bits=9"),
    ("server-max-window-bits-15", ["permessage-deflate; server_max_window_bits=15"],
     BASE + "; server_max_window_bits=15"),
    ("all-params",
     ["permessage-deflate; client_no_context_takeover; server_max_window_bits=12; "
      "client_max_window_bits=10; server_no_context_takeover"],
     CNCT + "; server_max_window_bits=12"),
    ("client-max-window-bits-values-ignored", ["permessage-deflate; client_max_window_bits=8"], BASE),
    ("client-max-window-bits-15", ["permessage-deflate; client_max_window_bits=15"], BASE),
    ("server-max-window-bits-8-declined", ["permessage-deflate; server_max_window_bits=8"], None),
    ("server-max-window-bits-8-then-fallback",
     ["permessage-deflate; server_max_window_bits=8, permessage-deflate; client_no_context_takeover"],
     CNCT),
    ("first-acceptable-offer-wins",
     ["permessage-deflate; server_max_window_bits=11, permessage-deflate; client_no_context_takeover"],
     BASE + "; server_max_window_bits=11"),
    ("two-headers", ["x-webkit-deflate-frame", "permessage-deflate; client_no_context_takeover"], CNCT),
    ("two-headers-first-declined",
     ["permessage-deflate; server_max_window_bits=8", "permessage-deflate; server_max_window_bits=13"],
     BASE + "; server_max_window_bits=13"),
    ("quoted-value", ['permessage-deflate; server_max_window_bits="10"'],
     BASE + "; server_max_window_bits=10"),
    ("quoted-value-with-escape", ['permessage-deflate; server_max_window_bits="1\\1"'],
     BASE + "; server_max_window_bits=11"),
    ("quoted-client-max-window-bits", ['permessage-deflate; client_max_window_bits="12"'], BASE),
    ("whitespace", ["  permessage-deflate ;client_no_context_takeover ;\tserver_max_window_bits = 10 "],
     CNCT + "; server_max_window_bits=10"),
    ("empty-list-elements", [", ,permessage-deflate,,"], BASE),
    ("quoted-comma-in-other-extension",
     ['foo; bar="x, permessage-deflate; nope=1", permessage-deflate; client_no_context_takeover'], CNCT),
    ("quoted-offer-text-is-not-an-offer", ['foo; bar="permessage-deflate"'], None),
    ("other-extensions-ignored", ["x-webkit-deflate-frame, deflate-frame; x=1, permessage-deflate"], BASE),
    ("only-other-extensions", ["x-webkit-deflate-frame", "deflate-frame"], None),
    ("no-header", [], None),
    ("empty-header", [""], None),
    ("only-commas", [" , , "], None),
    # invalid offers are skipped, never fatal
    ("unknown-param", ["permessage-deflate; foo"], None),
    ("unknown-param-then-fallback", ["permessage-deflate; foo=1, permessage-deflate"], BASE),
    ("duplicate-flag", ["permessage-deflate; client_no_context_takeover; client_no_context_takeover"], None),
    ("duplicate-server-max-window-bits",
     ["permessage-deflate; server_max_window_bits=10; server_max_window_bits=10"], None),
    ("duplicate-client-max-window-bits",
     ["permessage-deflate; client_max_window_bits; client_max_window_bits=10"], None),
    ("duplicate-then-fallback",
     ["permessage-deflate; server_no_context_takeover; server_no_context_takeover",
      "permessage-deflate; client_no_context_takeover"], CNCT),
    ("server-max-window-bits-without-value", ["permessage-deflate; server_max_window_bits"], None),
    ("server-max-window-bits-16", ["permessage-deflate; server_max_window_bits=16"], None),
    ("server-max-window-bits-7", ["permessage-deflate; server_max_window_bits=7"], None),
    ("server-max-window-bits-leading-zero", ["permessage-deflate; server_max_window_bits=010"], None),
    ("server-max-window-bits-not-a-number", ["permessage-deflate; server_max_window_bits=abc"], None),
    ("server-max-window-bits-empty-quoted", ['permessage-deflate; server_max_window_bits=""'], None),
    ("server-max-window-bits-empty", ["permessage-deflate; server_max_window_bits="], None),
    ("client-max-window-bits-16", ["permessage-deflate; client_max_window_bits=16"], None),
    ("client-max-window-bits-7", ["permessage-deflate; client_max_window_bits=7"], None),
    ("flag-with-value", ["permessage-deflate; server_no_context_takeover=1"], None),
    ("flag-with-empty-quoted-value", ['permessage-deflate; client_no_context_takeover=""'], None),
    ("quoted-value-not-a-token", ['permessage-deflate; server_max_window_bits="1 0"'], None),
    ("trailing-semicolon", ["permessage-deflate;"], None),
    ("name-case-differs", ["PerMessage-Deflate"], None),
    ("param-case-differs", ["permessage-deflate; Client_No_Context_Takeover"], None),
    ("similar-name", ["permessage-deflate-x, xpermessage-deflate"], None),
    ("garbage-semicolons", [";;;"], None),
    ("garbage-equals", ["=, =="], None),
    ("garbage-non-token", ["permessage deflate", "(permessage-deflate)"], None),
    ("garbage-unicode", ["permessage-deflate; é"], None),
    ("unterminated-quote", ['permessage-deflate; server_max_window_bits="10'], None),
    ("unterminated-quote-spoils-only-its-header",
     ['foo; a="x, permessage-deflate', "permessage-deflate; server_max_window_bits=14"],
     BASE + "; server_max_window_bits=14"),
    ("quote-in-token-value", ['permessage-deflate; server_max_window_bits=1"0"'], None),
]


@pytest.mark.parametrize("values,expected", [v[1:] for v in NEGOTIATION], ids=[v[0] for v in NEGOTIATION])
def test_negotiation_vectors(values, expected):
    d, response = negotiate(values)
    assert response == expected
    if expected is None:
        assert d is None
        return
    assert isinstance(d, Deflate)
    assert d.client_no_context_takeover == ("client_no_context_takeover" in expected)
    bits = int(expected.rsplit("=", 1)[1]) if "server_max_window_bits" in expected else 15
    assert d.server_max_window_bits == bits
    # the answer is well formed for a real client parser, and never limits the client's window
    [(name, params)] = parse_extension(expected)
    assert name == "permessage-deflate" and "client_max_window_bits" not in dict(params)


def test_parse_extensions_shapes():
    got = parse_extensions(['a; b; c=1; d="2", e', "f"])
    assert got == [("a", [("b", None), ("c", "1"), ("d", "2")]), ("e", []), ("f", [])]
    # a quoted value that does not unescape to a token spoils its element only
    assert parse_extensions(['a; d="x y", e']) == [None, ("e", [])]
    assert parse_extensions(['a="1', "b"]) == [None, ("b", [])]


@pytest.mark.parametrize("server_nct", [False, True])
@pytest.mark.parametrize("client_nct", [False, True])
@pytest.mark.parametrize("server_bits", [None, 9, 10, 12, 15])
@pytest.mark.parametrize("client_bits", [None, True, 9, 12, 15])
def test_websockets_client_offers_round_trip(server_nct, client_nct, server_bits, client_bits):
    """Every offer the websockets client can make is accepted, its client accepts our
    answer, and messages round trip both ways with the configuration both sides agreed."""
    d, response, ext = connect(server_no_context_takeover=server_nct, client_no_context_takeover=client_nct,
                               server_max_window_bits=server_bits, client_max_window_bits=client_bits)
    assert ext.remote_no_context_takeover is True            # we always declare it
    assert ext.local_no_context_takeover is client_nct
    assert ext.remote_max_window_bits == (server_bits or 15) == d.server_max_window_bits
    assert d.client_no_context_takeover is client_nct
    rng = random.Random(f"{server_nct}{client_nct}{server_bits}{client_bits}")
    for i in range(4):
        msg = texty(rng, 200 + 700 * i)
        assert receive(d, client_frames(ext, msg, parts=1 + i % 3)) == msg
        out = d.compress(msg)
        assert client_decode(ext, out) == msg
        assert standalone(out, d.server_max_window_bits) == msg


def test_level_is_configurable():
    d, _ = negotiate(["permessage-deflate"], level=1)
    assert d.level == 1
    msg = texty(random.Random(1), 5000)
    assert standalone(d.compress(msg)) == msg


def test_window_bits_outside_9_to_15_refused():
    with pytest.raises(ValueError):
        Deflate(server_max_window_bits=8)
    with pytest.raises(ValueError):
        Deflate(server_max_window_bits=16)


def test_worth_compressing():
    assert not worth_compressing(0) and not worth_compressing(127)
    assert worth_compressing(128) and Deflate.worth_compressing(1 << 20)


def test_module_is_sans_io():
    tree = ast.parse(Path(deflate_mod.__file__).read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names.add(node.module.split(".")[0])
    assert not names & {"socket", "select", "selectors", "os", "ssl", "lupa", "asyncio"}


# ---------------------------------------------------------------------------- inbound

RFC_VECTORS = [
    # RFC 7692 §7.2.3: one payload per message, "Hello" each time
    ("7.2.3.1-hello", [bytes.fromhex("f248cdc9c90700")]),
    ("7.2.3.3-stored-block", [bytes.fromhex("000500faff48656c6c6f00")]),
    ("7.2.3.4-bfinal-set", [bytes.fromhex("f348cdc9c9070000")]),
    ("7.2.3.5-two-blocks", [bytes.fromhex("f24805000000ffffcac9c90700")]),
    ("7.2.3.1-fragmented", [bytes.fromhex("f248cd"), bytes.fromhex("c9c90700")]),
    ("bfinal-ends-the-payload", [bytes.fromhex("f348cdc9c90700")]),
]


@pytest.mark.parametrize("client_nct", [False, True])
@pytest.mark.parametrize("chunks", [v[1] for v in RFC_VECTORS], ids=[v[0] for v in RFC_VECTORS])
def test_rfc_examples(chunks, client_nct):
    d = Deflate(client_no_context_takeover=client_nct)
    for _ in range(3):                 # and the inflater is ready for the next message
        assert receive(d, chunks) == b"Hello"


def test_rfc_context_takeover_example():
    """§7.2.3.2: the second "Hello" refers back into the first message."""
    d = Deflate(client_no_context_takeover=False)
    assert receive(d, [bytes.fromhex("f248cdc9c90700")]) == b"Hello"
    assert receive(d, [bytes.fromhex("f200110000")]) == b"Hello"
    # the same bytes without the window are invalid
    d = Deflate(client_no_context_takeover=True)
    assert receive(d, [bytes.fromhex("f248cdc9c90700")]) == b"Hello"
    with pytest.raises(DeflateError) as e:
        receive(d, [bytes.fromhex("f200110000")])
    assert e.value.code == 1007


def test_reference_across_a_bfinal_block_fails_loudly():
    """After a BFINAL=1 block zlib's stream is over and its window gone: a later message
    referring back into it fails with 1007, never inflates to something else."""
    d = Deflate(client_no_context_takeover=False)
    assert receive(d, [bytes.fromhex("f348cdc9c9070000")]) == b"Hello"
    with pytest.raises(DeflateError) as e:
        receive(d, [bytes.fromhex("f200110000")])
    assert e.value.code == 1007


@pytest.mark.parametrize("chunks", [[], [b""], [b"\x00"]],
                         ids=["no-payload", "empty-chunk", "rfc-empty-0x00"])
@pytest.mark.parametrize("client_nct", [False, True])
def test_empty_message(chunks, client_nct):
    d = Deflate(client_no_context_takeover=client_nct)
    assert receive(d, [bytes.fromhex("f248cdc9c90700")]) == b"Hello"
    assert receive(d, chunks) == b""
    assert receive(d, [bytes.fromhex("f248cdc9c90700")]) == b"Hello"


def test_client_context_takeover_kept_between_messages():
    """Without client_no_context_takeover the websockets client compresses each message
    against the previous ones; our per-connection inflater follows it."""
    d, response, ext = connect()
    assert response == BASE
    msg = os.urandom(600).hex().encode()            # 1200 bytes, incompressible on its own
    sizes = []
    for _ in range(4):
        chunks = client_frames(ext, msg)
        sizes.append(len(chunks[0]))
        assert receive(d, chunks) == msg
        assert d._inflater is not None               # the window lives between messages
    assert sizes[0] > 600 and max(sizes[1:]) < 30    # later copies are back references


def test_client_no_context_takeover_drops_inflater():
    d, response, ext = connect(client_no_context_takeover=True)
    assert response == CNCT
    msg = os.urandom(600).hex().encode()
    sizes = []
    for _ in range(4):
        assert d._inflater is None                   # nothing held between messages
        chunks = client_frames(ext, msg)
        sizes.append(len(chunks[0]))
        assert receive(d, chunks) == msg
    assert d._inflater is None
    assert len(set(sizes)) == 1 and sizes[0] > 600   # every message compressed alone


def test_fragmented_client_message_with_takeover():
    d, _, ext = connect()
    rng = random.Random(7)
    for parts in (1, 2, 5, 9):
        msg = texty(rng, 3000)
        assert receive(d, client_frames(ext, msg, parts)) == msg


# ---------------------------------------------------------------------------- limits and bad data

def zero_bomb(mib: int) -> bytes:
    """A compressed message of `mib` MiB of zeros, about 1 KiB per MiB.

    A first unit of 1 MiB zeros, then copies of a second unit: every unit ends with a sync
    flush (byte aligned, complete blocks) and the second refers only to zeros within its
    window, so the copies inflate to more zeros. Built in milliseconds instead of seconds.
    """
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    z = bytes(MiB)
    first = c.compress(z) + c.flush(zlib.Z_SYNC_FLUSH)
    second = c.compress(z) + c.flush(zlib.Z_SYNC_FLUSH)
    return (first + second * (mib - 1))[:-4]


def test_zero_bomb_helper_is_what_it_says():
    bomb = zero_bomb(20)
    assert len(bomb) < 25 * 1024
    out = zlib.decompressobj(-15).decompress(bomb + TAIL)
    assert len(out) == 20 * MiB and not out.strip(b"\x00")


@pytest.mark.parametrize("chunk", [None, 65536, 1024], ids=["whole", "64KiB-reads", "1KiB-reads"])
def test_bomb_stopped_with_1009_within_max_size(chunk):
    """1 GiB of zeros (~1 MB compressed) against max_size 16 MiB: 1009 after allocating
    about max_size, measured with tracemalloc (zlib's own allocations included)."""
    bomb = zero_bomb(1024)
    assert len(bomb) < 1_100_000
    max_size = 16 * MiB
    d = Deflate()
    pieces = [bomb] if chunk is None else [bomb[i:i + chunk] for i in range(0, len(bomb), chunk)]
    received = []
    tracemalloc.start()
    try:
        with pytest.raises(DeflateError) as e:
            for p in pieces:
                received.append(d.decompress(p, max_size))   # kept, as the protocol keeps parts
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert e.value.code == 1009
    assert sum(map(len, received)) <= max_size
    assert peak < max_size + 2 * MiB, peak


def test_limit_is_exact():
    d, _, ext = connect()
    msg = bytes(100_000)
    chunks = client_frames(ext, msg)
    assert receive(d, chunks, max_size=100_000) == msg
    chunks = client_frames(ext, msg)
    with pytest.raises(DeflateError) as e:
        receive(d, chunks, max_size=99_999)
    assert e.value.code == 1009


def test_limit_counts_the_whole_message_across_chunks():
    d = Deflate()
    bomb = zero_bomb(8)                       # 8 MiB of zeros in ~8 KiB
    pieces = cut(bomb, list(range(0, len(bomb), 512)))
    total = 0
    with pytest.raises(DeflateError) as e:
        for p in pieces:
            total += len(d.decompress(p, 3 * MiB))
    assert e.value.code == 1009 and total <= 3 * MiB


def test_limit_applies_to_what_the_tail_releases():
    """Output held back in zlib until the tail arrives counts too."""
    c = zlib.compressobj(6, zlib.DEFLATED, -15)
    msg = texty(random.Random(3), 50_000)
    payload = (c.compress(msg) + c.flush(zlib.Z_SYNC_FLUSH))[:-4]
    for max_size in (len(msg) - 1, len(msg) - 1000):
        d = Deflate()
        with pytest.raises(DeflateError) as e:
            receive(d, [payload], max_size=max_size)
        assert e.value.code == 1009


INVALID = [
    ("reserved-block-type", [b"\x06"]),
    ("bad-stored-lengths", [bytes.fromhex("0005000000") + b"hello"]),
    ("junk-after-message", [bytes.fromhex("f248cdc9c90700") + b"\xff\xff"]),
    ("truncated-in-a-block", [bytes.fromhex("f248cdc9")]),
    ("truncated-after-one-byte", [bytes.fromhex("f2")]),
    ("stored-block-cut-short", [bytes.fromhex("000a00f5ff48")]),
    ("all-ff", [b"\xff" * 64]),
]


@pytest.mark.parametrize("client_nct", [False, True])
@pytest.mark.parametrize("chunks", [v[1] for v in INVALID], ids=[v[0] for v in INVALID])
def test_invalid_data_fails_with_1007(chunks, client_nct):
    d = Deflate(client_no_context_takeover=client_nct)
    with pytest.raises(DeflateError) as e:
        receive(d, chunks)
    assert e.value.code == 1007


def test_reference_before_the_window_is_invalid():
    """A client that compressed against data we never saw (a preset dictionary here)."""
    c = zlib.compressobj(6, zlib.DEFLATED, -15, zdict=b"hello world, " * 20)
    payload = (c.compress(b"hello world, hello world") + c.flush(zlib.Z_SYNC_FLUSH))[:-4]
    with pytest.raises(DeflateError) as e:
        receive(Deflate(), [payload])
    assert e.value.code == 1007


# ---------------------------------------------------------------------------- outbound

def test_compress_output_shape():
    d = Deflate()
    out = d.compress(b"Hello")
    assert out == bytes.fromhex("f248cdc9c90700")          # RFC 7692 §7.2.3.1
    assert not out.endswith(TAIL)
    assert standalone(d.compress(b"")) == b""
    assert standalone(d.compress(memoryview(b"Hello"))) == b"Hello"


def test_compressor_shared_per_window_and_level():
    a, b = Deflate(), Deflate(client_no_context_takeover=True)
    a.compress(b"x")
    b.compress(b"y")
    key = (15, 6)
    assert deflate_mod._COMPRESSORS[key] is deflate_mod._compressor(15, 6)
    c = Deflate(server_max_window_bits=10)
    c.compress(b"z")
    assert deflate_mod._COMPRESSORS[(10, 6)] is not deflate_mod._COMPRESSORS[key]


def test_shared_compressor_does_not_leak_between_connections():
    """Messages to two connections, interleaved, through the one shared compressor: each
    decodes alone with a fresh inflater (the websockets client resets its own per message
    too), so none refers to an earlier message of its own or of the other connection."""
    rng = random.Random(11)
    secret = os.urandom(300).hex().encode()                  # sent to both connections
    a, _, ext_a = connect()
    b, _, ext_b = connect(client_no_context_takeover=True)
    sent: dict[str, list[tuple[bytes, bytes]]] = {"a": [], "b": []}
    for i in range(12):
        for name, d in (("a", a), ("b", b)):
            msg = secret + texty(rng, 100 * i) + secret if i % 2 else texty(rng, 2000) + secret
            sent[name].append((msg, d.compress(msg)))
    for name, ext in (("a", ext_a), ("b", ext_b)):
        for msg, out in sent[name]:
            assert standalone(out) == msg
            assert client_decode(ext, out) == msg
            assert len(out) > len(secret) // 2              # the secret is really in there


def test_leak_check_would_catch_a_shared_history():
    """Control for the test above: the same shared compressor flushed with Z_SYNC_FLUSH
    (history kept) makes the second connection's message undecodable alone."""
    c = zlib.compressobj(6, zlib.DEFLATED, -15)
    secret = os.urandom(300).hex().encode()
    first = (c.compress(secret) + c.flush(zlib.Z_SYNC_FLUSH))[:-4]
    second = (c.compress(secret) + c.flush(zlib.Z_SYNC_FLUSH))[:-4]
    assert standalone(first) == secret
    assert len(second) < 20
    with pytest.raises(zlib.error):
        standalone(second)


@pytest.mark.parametrize("bits", [9, 10, 12])
def test_compress_respects_server_max_window_bits(bits):
    """A repeat farther back than 2**bits is not referenced: an inflater with a
    2**bits window (all the client promised to keep) reads it."""
    block = os.urandom(200).hex().encode()                   # 400 bytes
    msg = block + os.urandom(5000) + block                   # repeat at distance 5400
    d, response, ext = connect(server_max_window_bits=bits)
    assert response == BASE + f"; server_max_window_bits={bits}"
    out = d.compress(msg)
    assert standalone(out, bits) == msg
    assert client_decode(ext, out) == msg
    with pytest.raises(zlib.error):                          # control: a 15-bit window does refer back
        standalone(Deflate().compress(msg), bits)


def test_compressor_failure_drops_the_shared_compressor():
    Deflate().compress(b"warm")
    before = deflate_mod._COMPRESSORS[(15, 6)]
    with pytest.raises(TypeError):
        Deflate().compress("not bytes")                      # type: ignore[arg-type]
    assert deflate_mod._COMPRESSORS.get((15, 6)) is not before
    assert standalone(Deflate().compress(b"Hello again")) == b"Hello again"


# ---------------------------------------------------------------------------- properties

payloads = st.one_of(st.binary(max_size=4000),
                     st.builds(lambda seed, n: texty(random.Random(seed), n),
                               st.integers(0, 2**32), st.integers(0, 20000)))


@SETTINGS
@given(payloads)
def test_outbound_round_trip(msg):
    d = Deflate()
    out = d.compress(msg)
    assert standalone(out) == msg


@SETTINGS
@given(st.lists(payloads, min_size=1, max_size=4), st.booleans(), st.integers(1, 4))
def test_inbound_round_trip(msgs, client_nct, parts):
    d, _, ext = connect(client_no_context_takeover=client_nct)
    for msg in msgs:
        assert receive(d, client_frames(ext, msg, parts)) == msg


@SETTINGS
@given(st.lists(st.tuples(payloads, st.lists(st.integers(0, 10**6), max_size=8)), min_size=1, max_size=4),
       st.booleans())
def test_split_points_do_not_change_the_message(msgs, client_nct):
    """Any split of each message's compressed stream inflates to the same message, and
    leaves the context for the next message the same."""
    d, _, ext = connect(client_no_context_takeover=client_nct)
    for msg, points in msgs:
        stream = b"".join(client_frames(ext, msg))
        assert receive(d, cut(stream, points)) == msg


@SETTINGS
@given(st.binary(max_size=300), st.booleans())
def test_arbitrary_bytes_never_escape_as_other_errors(data, client_nct):
    d = Deflate(client_no_context_takeover=client_nct)
    try:
        out = receive(d, [data], max_size=4096)
    except DeflateError as e:
        assert e.code in (1007, 1009)
    else:
        assert len(out) <= 4096


# ---------------------------------------------------------------------------- measurements

def _measure() -> None:  # pragma: no cover - run by hand: python tests/test_deflate.py
    import time

    msg = texty(random.Random(5), 2000)
    for nct in (False, True):
        d, _, ext = connect(client_no_context_takeover=nct)
        tracemalloc.start()
        base = tracemalloc.get_traced_memory()[0]
        d = Deflate(client_no_context_takeover=nct)
        receive(d, client_frames(ext, msg))
        held = tracemalloc.get_traced_memory()[0] - base
        tracemalloc.stop()
        print(f"Deflate after one message, client_no_context_takeover={nct}: {held} bytes held")
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    c = zlib.compressobj(6, zlib.DEFLATED, -15)
    c.compress(msg)
    c.flush(zlib.Z_FULL_FLUSH)
    print(f"one shared compressor (level 6, 15 bits): {tracemalloc.get_traced_memory()[0] - base} bytes")
    tracemalloc.stop()

    rng = random.Random(9)
    for size, level in ((277, 6), (64 * 1024, 6), (277, 1), (64 * 1024, 1)):
        msgs = [texty(rng, size) for _ in range(64)]
        d = Deflate(level=level)
        n = 20000 if size < 1000 else 300
        t = time.perf_counter()
        total = out = 0
        for i in range(n):
            m = msgs[i & 63]
            out += len(d.compress(m))
            total += len(m)
        dt = time.perf_counter() - t
        print(f"compress {size} B messages, level {level}: {total / dt / 1e6:.1f} MB/s, "
              f"{dt / n * 1e6:.1f} us/msg, ratio {out / total:.3f}")
        t = time.perf_counter()
        for i in range(n):
            c = zlib.compressobj(level, zlib.DEFLATED, -15)
            c.compress(msgs[i & 63])
            c.flush(zlib.Z_SYNC_FLUSH)
        dt2 = time.perf_counter() - t
        print(f"  (a fresh compressor per message instead: {dt2 / n * 1e6:.1f} us/msg)")
        packed = [d.compress(m) for m in msgs]
        t = time.perf_counter()
        for i in range(n):
            receive(d, [packed[i & 63]])
        dt3 = time.perf_counter() - t
        print(f"  inflate the same through Deflate.decompress/end_message: {total / dt3 / 1e6:.1f} MB/s")

    bomb = zero_bomb(1024)
    d = Deflate()
    tracemalloc.start()
    try:
        d.decompress(bomb, 16 * MiB)
    except DeflateError as e:
        peak = tracemalloc.get_traced_memory()[1]
        print(f"1 GiB zero bomb ({len(bomb)} B) vs 16 MiB: {e.code} after a peak of {peak / MiB:.2f} MiB")
    tracemalloc.stop()


if __name__ == "__main__":
    _measure()
