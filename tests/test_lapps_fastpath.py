"""The LAppS request fast path (lapps/lapps_fastpath.py) makes no decision of its own.

Whatever bytes arrive, the C `request_args` and its Python twin give the same answer, and
when that answer is not None it is exactly what the full path gives: `decode_message`
(which then accepts the message) followed by `LuaValues.request_parts`. None hands the
message to the full path, which is tested on its own (test_lapps_protocol.py) and, through
the real server, by test_server_lapps.py; CI runs those without the extension too.
"""

from __future__ import annotations

import math
import struct
from typing import Any

import cbor2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lapps.lapps_fastpath import MAX_FAST_PARAMS, request_args, request_args_python
from lapps.lapps_protocol import LappsError, decode_message
from lapps.lua.runtime import new_runtime
from lapps.lua.values import LuaValues

SETTINGS = settings(max_examples=400, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
native = pytest.mark.skipif(request_args is None, reason="C extension not built (or LAPPS_NO_SPEEDUPS=1)")


@pytest.fixture(scope="module")
def values(tmp_path_factory: pytest.TempPathFactory) -> LuaValues:
    return LuaValues(new_runtime("fastpath", str(tmp_path_factory.mktemp("fastpath"))).lua)


def same(a: Any, b: Any) -> bool:
    """Equal, NaN equal to NaN, and of the same types (True is not 1 here)."""
    if type(a) is not type(b):
        return False
    if type(a) is tuple:
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if type(a) is float:
        return struct.pack(">d", a) == struct.pack(">d", b) or (math.isnan(a) and math.isnan(b))
    return a == b


def full_path(data: bytes, values: LuaValues) -> tuple | None:
    try:
        msg_type, message = decode_message(data)
    except LappsError:
        return None
    return (msg_type, *values.request_parts(message))


def check(data: bytes, values: LuaValues) -> tuple | None:
    fast = request_args_python(data)
    if request_args is not None:
        assert same(request_args(data), fast), data.hex()
    if fast is not None:
        assert same(fast, full_path(data, values)), data.hex()
    return fast


# ------------------------------------------------------------------ inputs

scalars = st.one_of(
    st.text(max_size=40), st.binary(max_size=40), st.booleans(),
    st.integers(min_value=-(1 << 64), max_value=(1 << 64) - 1),
    st.floats(allow_nan=True, allow_infinity=True), st.none(),
)
params = st.one_of(st.lists(scalars, max_size=6),
                   st.lists(st.one_of(scalars, st.lists(scalars, max_size=2),
                                      st.dictionaries(st.text(max_size=3), scalars, max_size=2)), max_size=4))
methods = st.one_of(st.sampled_from(["echo", "publish", "_hidden", "a.b", "", "méthode"]), st.text(max_size=8))
cids = st.one_of(st.integers(min_value=-(1 << 64), max_value=(1 << 64) - 1), st.floats(), st.sampled_from([0, 1, 5]))


@st.composite
def requests(draw: st.DrawFn) -> bytes:
    message: dict[Any, Any] = {}
    if draw(st.integers(0, 9)):
        message["lapps"] = draw(st.sampled_from([1, 1, 1, 1.0, 2, True, "1"]))
    if draw(st.integers(0, 9)):
        message["method"] = draw(methods)
    if draw(st.booleans()):
        message["params"] = draw(params)
    if draw(st.booleans()):
        message["cid"] = draw(cids)
    if not draw(st.integers(0, 9)):
        message[draw(st.sampled_from(["extra", "Method", b"lapps"]))] = 1
    keys = draw(st.permutations(list(message)))
    # canonical=True writes floats in their shortest exact form (float16/32 too)
    return cbor2.dumps({k: message[k] for k in keys}, canonical=draw(st.booleans()))


@SETTINGS
@given(data=requests())
def test_request_shapes_agree_with_the_full_path(data: bytes, values: LuaValues) -> None:
    check(data, values)


@SETTINGS
@given(data=requests(), cut=st.integers(0, 400), extra=st.binary(max_size=3))
def test_cut_or_extended_requests_agree(data: bytes, cut: int, extra: bytes, values: LuaValues) -> None:
    check(data[:cut] + extra, values)
    check(data + extra, values)


@SETTINGS
@given(data=requests(), where=st.integers(0, 400), byte=st.integers(0, 255))
def test_damaged_requests_agree(data: bytes, where: int, byte: int, values: LuaValues) -> None:
    damaged = bytearray(data)
    damaged[where % len(damaged)] = byte
    check(bytes(damaged), values)


@SETTINGS
@given(data=st.binary(max_size=64))
def test_any_bytes_agree(data: bytes, values: LuaValues) -> None:
    check(data, values)


# ------------------------------------------------------------------ what it takes, what it leaves

def test_the_common_request_is_taken(values: LuaValues) -> None:
    data = cbor2.dumps({"lapps": 1, "method": "echo", "params": ["text", b"\xff", -3, 2.5, True]})
    assert check(data, values) == (4, b"echo", None, True, b"text", b"\xff", -3, 2.5, True)
    assert check(cbor2.dumps({"cid": 7, "method": "tick", "lapps": 1}), values) == (1, b"tick", 7)
    assert check(cbor2.dumps({"lapps": 1, "method": "m", "params": []}), values) == (3, b"m", None, True)


@pytest.mark.parametrize("data", [
    bytes.fromhex("a3") + cbor2.dumps("lapps")[0:] + b"\x01" + cbor2.dumps("method") + cbor2.dumps("a")
    + cbor2.dumps("lapps") + b"\x01",                                              # duplicate key
    cbor2.dumps({"lapps": 1, "method": "echo"}) + b"\x00",                         # bytes after the item
    cbor2.dumps({"lapps": 1.0, "method": "echo"}),                                 # lapps as a float
    cbor2.dumps({"lapps": 1, "method": "echo", "cid": 3.0}),                       # cid as a float
    cbor2.dumps({"lapps": 1, "method": "echo", "params": [None]}),                 # null: Lua's sentinel
    cbor2.dumps({"lapps": 1, "method": "echo", "params": [[1]]}),                  # a nested container
    cbor2.dumps({"lapps": 1, "method": "echo", "params": [1.5]}, canonical=True),  # float16
    cbor2.dumps({"lapps": 1, "method": "echo", "params": [0] * (MAX_FAST_PARAMS + 1)}),
    cbor2.dumps({"lapps": 1, "method": "echo", "params": [1 << 63]}),              # past int64
    cbor2.dumps({"lapps": 1, "method": "_x"}),
    cbor2.dumps({"lapps": 1, "method": "a.b"}),
    cbor2.dumps({"lapps": 1, "method": b"echo"}),
    cbor2.dumps({"lapps": 1, "method": "echo", "extra": 1}),
    cbor2.dumps(cbor2.CBORTag(55799, {"lapps": 1, "method": "echo"})),
    bytes.fromhex("bf") + cbor2.dumps("lapps") + b"\x01" + cbor2.dumps("method") + cbor2.dumps("e") + b"\xff",
    bytes.fromhex("a2") + cbor2.dumps("lapps") + b"\x01" + cbor2.dumps("method") + b"\x64ab\xff\xfe",  # bad UTF-8
], ids=["duplicate", "trailing", "lapps-float", "cid-float", "null", "nested", "float16", "long", "int65",
        "reserved", "dot", "bytes-method", "unknown-key", "tag", "indefinite", "utf8"])
def test_everything_else_goes_the_full_way(data: bytes, values: LuaValues) -> None:
    assert check(data, values) is None


@native
def test_the_c_version_reads_any_buffer() -> None:
    data = cbor2.dumps({"lapps": 1, "method": "echo", "params": [1]})
    assert request_args(bytearray(data)) == request_args(memoryview(data)) == (4, b"echo", None, True, 1)
    with pytest.raises(TypeError):
        request_args("not bytes")


# ------------------------------------------------------------------ the answer, encoded

answer_values = st.lists(st.one_of(
    st.binary(max_size=300), st.text(max_size=30).map(str.encode), st.booleans(),
    st.integers(-(1 << 64) + 1, (1 << 64) - 1), st.floats(),
    st.sampled_from([2.0 ** 63, -(2.0 ** 63), 2.0 ** 64, 1e300, -0.0, 23.0, 24.0, -24.0, -25.0, 65535.0,
                     4294967296.0, -(2 ** 63), (1 << 64) - 1, -(1 << 64)])), max_size=70)


@native
@SETTINGS
@given(values=answer_values)
def test_encode_answer_in_c_is_its_python_twin(values: list) -> None:
    from lapps.lapps_protocol import encode_answer, encode_answer_python
    assert encode_answer(values) == encode_answer_python(values)
    assert encode_answer(tuple(values)) == encode_answer_python(values)


@native
@pytest.mark.parametrize("bad, error", [([1 << 64], OverflowError), ([-(1 << 64) - 1], OverflowError),
                                        (["text"], TypeError), ([None], TypeError), ([[1]], TypeError)])
def test_encode_answer_in_c_refuses_what_its_twin_refuses(bad: list, error: type) -> None:
    from lapps.lapps_protocol import encode_answer, encode_answer_python
    with pytest.raises(error):
        encode_answer_python(bad)
    with pytest.raises(error):
        encode_answer(bad)
