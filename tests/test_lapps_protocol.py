"""The LAppS protocol core (lapps/lapps_protocol.py): classification vectors, every invalid
request shape, bad CBOR, bombs, the data model, outgoing validation, and properties
(hypothesis): no input raises anything but LappsError, and valid requests classify right.
"""

from __future__ import annotations

import math
import struct

import cbor2
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from lapps.lapps_protocol import (INTERNAL_ERROR, INVALID_PARAMS, INVALID_REQUEST,
                                  METHOD_NOT_FOUND, NOTIFICATION, NOTIFICATION_WITH_PARAMS,
                                  PARSE_ERROR, REQUEST, REQUEST_WITH_PARAMS, LappsError,
                                  decode_message, encode, encode_answer, error_response, validate_outgoing)

SETTINGS = settings(max_examples=300, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

U64 = struct.Struct(">BQ").pack   # initial byte + 8-byte argument (additional info 27)


def req(**fields) -> bytes:
    return cbor2.dumps({"lapps": 1, "method": "m", **fields})


def code_of(data: bytes, **kw) -> int:
    with pytest.raises(LappsError) as info:
        decode_message(data, **kw)
    return info.value.code


def test_error_codes_are_json_rpc():
    assert (PARSE_ERROR, INVALID_REQUEST, METHOD_NOT_FOUND, INVALID_PARAMS, INTERNAL_ERROR) == (
        -32700, -32600, -32601, -32602, -32603)
    assert (NOTIFICATION, NOTIFICATION_WITH_PARAMS, REQUEST, REQUEST_WITH_PARAMS) == (1, 2, 3, 4)


# --- classification --------------------------------------------------------------------------

@pytest.mark.parametrize("message, msg_type", [
    ({"lapps": 1, "method": "echo"}, REQUEST),
    ({"lapps": 1, "method": "echo", "params": []}, REQUEST),
    ({"lapps": 1, "method": "echo", "params": ["x", 1, 2.5, None, True, b"\x00", [1], {"k": "v"}]},
     REQUEST_WITH_PARAMS),
    ({"lapps": 1, "method": "sub", "cid": 5}, NOTIFICATION),
    ({"lapps": 1, "method": "sub", "cid": 5, "params": []}, NOTIFICATION),
    ({"lapps": 1, "method": "sub", "cid": 0, "params": [{"a": [1, 2]}]}, NOTIFICATION_WITH_PARAMS),
    ({"lapps": 1, "method": "sub", "cid": -7, "params": [1]}, NOTIFICATION_WITH_PARAMS),
    ({"lapps": 1, "method": "мир-ñ", "params": [""]}, REQUEST_WITH_PARAMS),
])
def test_valid_message_classifies(message, msg_type):
    assert decode_message(cbor2.dumps(message)) == (msg_type, message)


def test_request_in_bytearray_and_memoryview_decodes():
    data = req(params=[1])
    assert decode_message(bytearray(data)) == decode_message(memoryview(data)) == (
        REQUEST_WITH_PARAMS, {"lapps": 1, "method": "m", "params": [1]})


def test_lapps_and_cid_sent_as_float64_become_ints():
    msg_type, message = decode_message(cbor2.dumps({"lapps": 1.0, "method": "m", "cid": 3.0}))
    assert msg_type == NOTIFICATION
    assert message == {"lapps": 1, "method": "m", "cid": 3}
    assert type(message["lapps"]) is int and type(message["cid"]) is int


def test_lapps_as_half_precision_float_is_accepted():
    data = bytes.fromhex("a2") + cbor2.dumps("lapps") + bytes.fromhex("f93c00") + cbor2.dumps("method") + cbor2.dumps("m")
    assert decode_message(data) == (REQUEST, {"lapps": 1, "method": "m"})


def test_indefinite_length_request_decodes():
    data = (b"\xbf" + cbor2.dumps("lapps") + b"\x01" + cbor2.dumps("method") + b"\x7f\x61a\x61b\xff"
            + cbor2.dumps("params") + b"\x9f\x01\x02\xff\xff")
    assert decode_message(data) == (REQUEST_WITH_PARAMS, {"lapps": 1, "method": "ab", "params": [1, 2]})


def test_large_request_over_4096_bytes_decodes():
    big = "x" * (1 << 20)
    assert decode_message(req(params=[big, list(range(5000))]))[1]["params"] == [big, list(range(5000))]


# --- invalid shapes: INVALID_REQUEST -----------------------------------------------------------

@pytest.mark.parametrize("message", [
    pytest.param([1, 2], id="array"),
    pytest.param("lapps", id="text"),
    pytest.param(1, id="int"),
    pytest.param(None, id="null"),
    pytest.param({}, id="empty-map"),
    pytest.param({"method": "m"}, id="lapps-missing"),
    pytest.param({"lapps": 2, "method": "m"}, id="lapps-2"),
    pytest.param({"lapps": "1", "method": "m"}, id="lapps-text"),
    pytest.param({"lapps": True, "method": "m"}, id="lapps-true"),
    pytest.param({"lapps": 1.5, "method": "m"}, id="lapps-1.5"),
    pytest.param({"lapps": None, "method": "m"}, id="lapps-null"),
    pytest.param({"lapps": 1}, id="method-missing"),
    pytest.param({"lapps": 1, "method": ""}, id="method-empty"),
    pytest.param({"lapps": 1, "method": "a.b"}, id="method-dot"),
    pytest.param({"lapps": 1, "method": "_internal"}, id="method-underscore"),
    pytest.param({"lapps": 1, "method": 7}, id="method-int"),
    pytest.param({"lapps": 1, "method": b"m"}, id="method-bytes"),
    pytest.param({"lapps": 1, "method": None}, id="method-null"),
    pytest.param({"lapps": 1, "method": ["m"]}, id="method-array"),
    pytest.param({"lapps": 1, "method": "m", "params": {"a": 1}}, id="params-map"),
    pytest.param({"lapps": 1, "method": "m", "params": "x"}, id="params-text"),
    pytest.param({"lapps": 1, "method": "m", "params": None}, id="params-null"),
    pytest.param({"lapps": 1, "method": "m", "cid": "1"}, id="cid-text"),
    pytest.param({"lapps": 1, "method": "m", "cid": None}, id="cid-null"),
    pytest.param({"lapps": 1, "method": "m", "cid": True}, id="cid-true"),
    pytest.param({"lapps": 1, "method": "m", "cid": 1.5}, id="cid-1.5"),
    pytest.param({"lapps": 1, "method": "m", "cid": math.nan}, id="cid-nan"),
    pytest.param({"lapps": 1, "method": "m", "cid": math.inf}, id="cid-inf"),
    pytest.param({"lapps": 1, "method": "m", "cid": 2**63}, id="cid-beyond-int64"),
    pytest.param({"lapps": 1, "method": "m", "cid": [1]}, id="cid-array"),
    pytest.param({"lapps": 1, "method": "m", "id": 1}, id="unknown-key"),
    pytest.param({"lapps": 1, "method": "m", "param": [1]}, id="typo-key"),
    pytest.param({"lapps": 1, "method": "m", b"cid": 1}, id="bytes-key"),
    pytest.param({"lapps": 1, b"method": "m"}, id="bytes-method-key"),
    pytest.param({"lapps": 1, "method": "m", "params": [cbor2.undefined]}, id="params-undefined"),
    pytest.param({"lapps": 1, "method": "m", "params": [[{"a": cbor2.undefined}]]}, id="nested-undefined"),
    pytest.param({"lapps": 1, "method": "m", "params": [cbor2.CBORSimpleValue(16)]}, id="params-simple"),
    pytest.param({"lapps": 1, "method": "m", "params": [{"k": [cbor2.CBORSimpleValue(255)]}]},
                 id="nested-simple"),
    pytest.param({"lapps": 1, "method": "m", "params": [2**63]}, id="params-uint64-beyond-int64"),
    pytest.param({"lapps": 1, "method": "m", "params": [[-(2**63) - 1]]}, id="params-nint-beyond-int64"),
    pytest.param({"lapps": cbor2.undefined, "method": "m"}, id="lapps-undefined"),
])
def test_invalid_request_shape_is_invalid_request(message):
    with pytest.raises(LappsError) as info:
        decode_message(cbor2.dumps(message))
    assert info.value.code == INVALID_REQUEST
    assert info.value.message.startswith("invalid request: ")


@pytest.mark.parametrize("message, reason", [
    ({"lapps": 1, "method": "a.b"}, "method must not contain '.'"),
    ({"lapps": 1, "method": "_x"}, "method must not start with '_'"),
    ({"lapps": 1, "method": ""}, "method must not be empty"),
    ({"lapps": 1}, "method is missing"),
    ({"method": "m"}, "lapps is missing"),
    ({"lapps": 1, "method": "m", "params": 1}, "params must be an array"),
    ({"lapps": 1, "method": "m", "cid": "x"}, "cid must be an integer"),
    ({"lapps": 1, "method": "m", "x": 1}, "unknown key 'x'"),
    ({"lapps": 1, "method": "m", b"x": 1}, "map keys must be text strings"),
    ([], "a request must be a CBOR map"),
])
def test_invalid_request_says_why(message, reason):
    with pytest.raises(LappsError, match=reason):
        decode_message(cbor2.dumps(message))


def test_values_at_the_int64_edges_are_accepted():
    params = [2**63 - 1, -(2**63), {"k": [2**63 - 1]}]
    assert decode_message(req(params=params, cid=-(2**63))) == (
        NOTIFICATION_WITH_PARAMS, {"lapps": 1, "method": "m", "params": params, "cid": -(2**63)})


def test_bytes_keys_inside_params_are_accepted():
    assert decode_message(req(params=[{b"k": 1}]))[1]["params"] == [{b"k": 1}]


# --- bad CBOR: PARSE_ERROR ---------------------------------------------------------------------

@pytest.mark.parametrize("data", [
    pytest.param(b"", id="empty"),
    pytest.param(b"\x1c", id="reserved-0x1c"),
    pytest.param(b"\x1d", id="reserved-0x1d"),
    pytest.param(b"\x1e", id="reserved-0x1e"),
    pytest.param(b"\x3c", id="reserved-nint"),
    pytest.param(b"\x5d", id="reserved-bytes"),
    pytest.param(b"\x7e", id="reserved-text"),
    pytest.param(b"\xff", id="break-at-top"),
    pytest.param(b"\x82\x01\xff", id="break-in-definite-array"),
    pytest.param(b"\xa1\xff\x01", id="break-as-key"),
    pytest.param(b"\x5f\x01\xff", id="int-chunk-in-indefinite-bytes"),
    pytest.param(b"\x7f\x41a\xff", id="bytes-chunk-in-indefinite-text"),
    pytest.param(b"\x62\xc3\x28", id="invalid-utf8"),
    pytest.param(b"\x18", id="truncated-argument"),
    pytest.param(b"\x01\x02", id="trailing-int"),
    pytest.param(b"\xa2\x61a\x01\x61a\x02", id="duplicate-key"),
    pytest.param(b"\xa1\x01\x02", id="int-key"),
    pytest.param(b"\xa1\x80\x01", id="array-key"),
    pytest.param(b"\xa1\xa0\x01", id="map-key"),
    pytest.param(b"\xa1\xf6\x01", id="null-key"),
])
def test_bad_cbor_is_parse_error(data):
    assert code_of(data) == PARSE_ERROR


def test_every_truncation_of_a_request_is_parse_error():
    data = req(params=["text", 1.5, -300, {"k": [b"by"]}], cid=70000)
    for n in range(len(data)):
        assert code_of(data[:n]) == PARSE_ERROR, n


@pytest.mark.parametrize("tail", [b"\x00", b"\xff", b"\xf6", req(), b"\x9f"])
def test_bytes_after_the_item_are_parse_error(tail):
    with pytest.raises(LappsError, match="bytes follow the CBOR item") as info:
        decode_message(req(params=[1]) + tail)
    assert info.value.code == PARSE_ERROR


def test_non_text_key_in_request_map_is_parse_error():
    # Refused by the decoder before hashing (hash flooding), so a parse error, not a shape error.
    data = bytes.fromhex("a3") + cbor2.dumps("lapps") + b"\x01" + cbor2.dumps("method") + b"\x61m\x01\x01"
    assert code_of(data) == PARSE_ERROR


# --- bombs and limits: PARSE_ERROR ------------------------------------------------------------

PREFIX = bytes.fromhex("a3") + cbor2.dumps("lapps") + b"\x01" + cbor2.dumps("method") + b"\x61m" + cbor2.dumps("params")


@pytest.mark.parametrize("bomb", [
    pytest.param(b"\x81" * 10000 + b"\x01", id="arrays-10000-deep"),
    pytest.param(b"\xa1\x61k" * 10000 + b"\x01", id="maps-10000-deep"),
    pytest.param(b"\x9f" * 10000, id="indefinite-arrays-10000-deep"),
    pytest.param(U64(0x9B, 2**62) + b"\x01", id="array-2**62"),
    pytest.param(U64(0xBB, 2**62) + b"\x61a\x01", id="map-2**62"),
    pytest.param(U64(0x5B, 2**62) + b"abc", id="bytes-2**62"),
    pytest.param(U64(0x7B, 2**62) + b"abc", id="text-2**62"),
    pytest.param(U64(0x9B, 2**64 - 1), id="array-2**64-1"),
    pytest.param(b"\x5f" + U64(0x5B, 2**62), id="indefinite-bytes-chunk-2**62"),
    pytest.param(b"\x9f" + b"\x01" * 1000, id="unterminated-indefinite-array"),
    pytest.param(b"\xbf" + b"".join(cbor2.dumps(f"k{i}") + b"\x01" for i in range(100)),
                 id="unterminated-indefinite-map"),
    pytest.param(b"\x7f\x61a", id="unterminated-indefinite-text"),
    pytest.param(b"\xd9\xd9\xf7" * 10000 + b"\x01", id="tags-10000-deep"),
    pytest.param(b"\xc6" * 10000 + b"\x01", id="tag6-10000-deep"),
])
def test_bomb_is_parse_error(bomb):
    assert code_of(bomb) == PARSE_ERROR
    assert code_of(PREFIX + bomb) == PARSE_ERROR


def test_max_depth_counts_the_request_map_as_one():
    def nested(depth):            # params at depth 2, then depth - 2 more arrays
        return req(params=[_nest(depth - 2)]) if depth > 2 else req(params=[1])
    assert decode_message(nested(32))[0] == REQUEST_WITH_PARAMS
    assert code_of(nested(33)) == PARSE_ERROR
    assert decode_message(nested(5), max_depth=5)[0] == REQUEST_WITH_PARAMS
    assert code_of(nested(6), max_depth=5) == PARSE_ERROR


def _nest(levels):
    """`levels` arrays, one inside the other, around the integer 1."""
    value = 1
    for _ in range(levels):
        value = [value]
    return value


@pytest.mark.parametrize("tagged", [
    pytest.param(bytes.fromhex("c11a5f5e1000"), id="tag1-epoch-datetime"),
    pytest.param(bytes.fromhex("c074323031332d30332d32315432303a30343a30305a"), id="tag0-datetime"),
    pytest.param(bytes.fromhex("c249010000000000000000"), id="tag2-bignum"),
    pytest.param(bytes.fromhex("c24101"), id="tag2-small-bignum"),
    pytest.param(bytes.fromhex("c4822003"), id="tag4-decimal"),
    pytest.param(bytes.fromhex("d9010283010203"), id="tag258-set"),
    pytest.param(bytes.fromhex("d81c81d81d00"), id="tag28-29-cycle"),
    pytest.param(bytes.fromhex("d90100826161d81900"), id="tag256-25-stringref"),
    pytest.param(bytes.fromhex("d9d9f701"), id="tag55799-self-describe"),
    pytest.param(bytes.fromhex("d903e701"), id="tag999-unknown"),
    pytest.param(U64(0xDB, 2**64 - 1) + b"\x01", id="tag-2**64-1"),
])
def test_tag_is_parse_error_anywhere(tagged):
    with pytest.raises(LappsError, match="CBOR tags are not accepted") as info:
        decode_message(tagged)
    assert info.value.code == PARSE_ERROR
    assert code_of(PREFIX + b"\x81" + tagged) == PARSE_ERROR


def test_self_described_request_is_parse_error():
    assert code_of(b"\xd9\xd9\xf7" + req()) == PARSE_ERROR


# --- numbers survive the round trip ------------------------------------------------------------

@pytest.mark.parametrize("value", [0, 1, -1, 23, 24, 255, 256, 2**32, 2**53 + 1, -(2**53) - 1,
                                   2**63 - 1, -(2**63)])
def test_integers_stay_integers(value):
    _, message = decode_message(encode({"lapps": 1, "method": "m", "params": [value, [value]]}))
    assert message["params"] == [value, [value]]
    assert type(message["params"][0]) is int and type(message["params"][1][0]) is int


@pytest.mark.parametrize("value", [0.0, -0.0, 1.0, 0.1, 2.0**53 + 2, 1e308, 5e-324, math.inf, -math.inf])
def test_floats_stay_floats(value):
    _, message = decode_message(encode({"lapps": 1, "method": "m", "params": [value]}))
    got = message["params"][0]
    assert type(got) is float and got == value and math.copysign(1, got) == math.copysign(1, value)


def test_nan_stays_a_float():
    got = decode_message(encode({"lapps": 1, "method": "m", "params": [math.nan]}))[1]["params"][0]
    assert type(got) is float and math.isnan(got)


def test_encode_writes_ints_as_cbor_ints_and_floats_as_float64():
    assert encode({"cid": 0}) == bytes.fromhex("a163636964") + b"\x00"
    assert encode(2**53 + 1) == bytes.fromhex("1b0020000000000001")
    assert encode(1.0) == bytes.fromhex("fb3ff0000000000000")
    assert encode(b"ab") == bytes.fromhex("426162")


# --- outgoing ----------------------------------------------------------------------------------

@pytest.mark.parametrize("message", [
    {"cid": 0, "status": 1, "result": []},
    {"cid": 0, "status": 1, "result": [1, "two", {"three": [3.0]}, None]},
    {"cid": 0, "status": 0, "error": {"code": -32601, "message": "Method not found"}},
    {"cid": 0, "status": 0, "error": {"code": 5, "message": "", "data": {"why": [1]}}},
    {"cid": 3, "status": 0, "error": {"code": -32000, "message": "subscription failed"}},
    {"cid": -1, "status": 0, "error": {"code": 1, "message": "m", "data": None}},
    {"cid": 5, "message": []},
    {"cid": 5, "message": ["tick", 1700000000]},
    {"cid": 5, "status": 1, "message": [1]},
    {"cid": 2**63 - 1, "message": [1]},
])
def test_valid_outgoing_passes(message):
    assert validate_outgoing(message) is None


@pytest.mark.parametrize("message, reason", [
    ([], "must be a table"),
    ("x", "must be a table"),
    ({"status": 1, "result": []}, "needs a cid"),
    ({"cid": "0", "status": 1, "result": []}, "cid must be an integer"),
    ({"cid": 0.0, "status": 1, "result": []}, "cid must be an integer"),
    ({"cid": True, "message": []}, "cid must be an integer"),
    ({"cid": 2**63, "message": []}, "cid must be an integer"),
    ({"cid": 0, "result": []}, "response on cid 0 needs status"),
    ({"cid": 0, "status": 1}, "response on cid 0 needs a result array"),
    ({"cid": 0, "status": 1, "result": {}}, "result must be an array"),
    ({"cid": 0, "status": 1, "result": None}, "result must be an array"),
    ({"cid": 0, "status": 1, "message": []}, "cid 0 carries responses only"),
    ({"cid": 0, "status": 1, "result": [], "message": []}, "cid 0 carries responses only"),
    ({"cid": 0, "status": 2, "result": []}, "status must be 0 or 1"),
    ({"cid": 0, "status": True, "result": []}, "status must be 0 or 1"),
    ({"cid": 0, "status": "1", "result": []}, "status must be 0 or 1"),
    ({"cid": 0, "status": 1.0, "result": []}, "status must be 0 or 1"),
    ({"cid": 5}, "OON needs a message array"),
    ({"cid": 5, "message": "tick"}, "OON needs a message array"),
    ({"cid": 5, "message": {}}, "OON needs a message array"),
    ({"cid": 5, "status": 2, "message": []}, "status must be 0 or 1"),
    ({"cid": 5, "result": [1]}, "result is for responses on cid 0"),
    ({"cid": 0, "status": 1, "results": []}, "unknown key 'results'"),
    ({"cid": 5, "message": [], "extra": 1}, "unknown key 'extra'"),
    ({"cid": 5, "message": [], 1: 1}, "map keys must be text strings"),
    ({"cid": 0, "status": 0}, "status 0 needs an error object"),
    ({"cid": 0, "error": {"code": 1, "message": "m"}}, "error message needs status 0"),
    ({"cid": 0, "status": 1, "error": {"code": 1, "message": "m"}}, "a message with error needs status 0"),
    ({"cid": 0, "status": 0, "error": {"code": 1, "message": "m"}, "result": []}, "carries no result"),
    ({"cid": 3, "status": 0, "error": {"code": 1, "message": "m"}, "message": []}, "carries no result"),
    ({"cid": 0, "status": 0, "error": "boom"}, "error must be a map"),
    ({"cid": 0, "status": 0, "error": {"message": "m"}}, "error.code must be an integer"),
    ({"cid": 0, "status": 0, "error": {"code": "1", "message": "m"}}, "error.code must be an integer"),
    ({"cid": 0, "status": 0, "error": {"code": 1.0, "message": "m"}}, "error.code must be an integer"),
    ({"cid": 0, "status": 0, "error": {"code": True, "message": "m"}}, "error.code must be an integer"),
    ({"cid": 0, "status": 0, "error": {"code": 1}}, "error.message must be a string"),
    ({"cid": 0, "status": 0, "error": {"code": 1, "message": None}}, "error.message must be a string"),
    ({"cid": 0, "status": 0, "error": {"code": 1, "message": "m", "detail": 1}}, "error: unknown key 'detail'"),
])
def test_invalid_outgoing_says_why(message, reason):
    with pytest.raises(ValueError, match=reason):
        validate_outgoing(message)


def test_error_response_shape():
    assert error_response(PARSE_ERROR, "parse error: x") == {
        "cid": 0, "status": 0, "error": {"code": -32700, "message": "parse error: x"}}
    assert error_response(-32000, "busy", data={"retry": 5}, cid=3) == {
        "cid": 3, "status": 0, "error": {"code": -32000, "message": "busy", "data": {"retry": 5}}}
    validate_outgoing(error_response(INVALID_REQUEST, "m", data=[1], cid=7))


def test_server_answer_to_a_bad_message_round_trips():
    with pytest.raises(LappsError) as info:
        decode_message(b"\x1c")
    wire = encode(error_response(info.value.code, info.value.message, info.value.data))
    assert cbor2.loads(wire) == {"cid": 0, "status": 0,
                                 "error": {"code": PARSE_ERROR, "message": info.value.message}}


def test_lapps_error_carries_code_message_data():
    err = LappsError(INVALID_PARAMS, "bad", {"at": 1})
    assert (err.code, err.message, err.data, str(err)) == (INVALID_PARAMS, "bad", {"at": 1}, "bad")


# --- properties --------------------------------------------------------------------------------

def _decode_or_error(data: bytes) -> None:
    try:
        msg_type, message = decode_message(data)
    except LappsError as err:
        assert err.code in (PARSE_ERROR, INVALID_REQUEST)
        return
    assert msg_type in (1, 2, 3, 4)
    assert type(message) is dict and set(message) <= {"lapps", "method", "params", "cid"}
    _assert_plain(message, depth=1)


def _assert_plain(value, depth):
    assert depth <= 32
    kind = type(value)
    if kind is int:
        assert -(2**63) <= value < 2**63
    elif kind is list:
        for item in value:
            _assert_plain(item, depth + 1)
    elif kind is dict:
        for key, item in value.items():
            assert type(key) in (str, bytes)
            _assert_plain(item, depth + 1)
    else:
        assert kind in (str, bytes, float, bool, type(None)), kind


@SETTINGS
@given(st.binary(max_size=200))
def test_arbitrary_bytes_only_raise_lapps_error(data):
    _decode_or_error(data)


# CBOR built from random heads: every major type and additional-info value, so the decoder
# meets tags, simple values, reserved bytes, breaks and indefinite lengths far more often
# than random bytes make them.
_heads = st.one_of(
    st.integers(0, 255).map(lambda b: bytes([b])),
    st.tuples(st.integers(0, 7), st.sampled_from([24, 25, 26, 27]), st.binary(min_size=8, max_size=8)).map(
        lambda t: bytes([t[0] << 5 | t[1]]) + t[2][: 1 << (t[1] - 24)]),
    st.sampled_from([b"\x9f", b"\xbf", b"\x5f", b"\x7f", b"\xff", b"\xf7", b"\xf8\x20", b"\xd8\x1c", b"\xd8\x1d"]),
    st.text(max_size=3).map(cbor2.dumps),
)


@SETTINGS
@given(st.lists(_heads, max_size=40).map(b"".join))
def test_random_cbor_heads_only_raise_lapps_error(data):
    _decode_or_error(data)
    _decode_or_error(PREFIX + data)


json_like = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats(allow_nan=False)
    | st.text(max_size=10) | st.binary(max_size=10),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=5), children, max_size=4),
    max_leaves=20,
)
methods = st.text(min_size=1, max_size=12).filter(lambda m: "." not in m and not m.startswith("_"))


@st.composite
def requests(draw):
    message = {"lapps": 1, "method": draw(methods)}
    if draw(st.booleans()):
        message["params"] = draw(st.lists(json_like, max_size=5))
    if draw(st.booleans()):
        message["cid"] = draw(st.integers(-(2**63), 2**63 - 1))
    return message


def _depth(value):
    if type(value) is list:
        return 1 + max(map(_depth, value), default=0)
    if type(value) is dict:
        return 1 + max(map(_depth, value.values()), default=0)
    return 0


@SETTINGS
@given(requests())
def test_valid_request_round_trips_and_classifies(message):
    assume(_depth(message) <= 32)
    expected = (NOTIFICATION if "cid" in message else REQUEST) + (1 if message.get("params") else 0)
    assert decode_message(encode(message)) == (expected, message)


@SETTINGS
@given(requests(), st.data())
def test_mutated_request_only_raises_lapps_error(message, data):
    wire = bytearray(encode(message))
    for _ in range(data.draw(st.integers(1, 4))):
        wire[data.draw(st.integers(0, len(wire) - 1))] = data.draw(st.integers(0, 255))
    _decode_or_error(bytes(wire))


_lua_scalars = st.one_of(st.binary(max_size=300), st.text(max_size=30).map(str.encode),
                         st.integers(-(2 ** 63), 2 ** 63 - 1), st.floats(), st.booleans(),
                         st.sampled_from([2.0 ** 63, -(2.0 ** 63), 1e300, -0.0, 24.0, -25.0]))


@given(st.lists(_lua_scalars, max_size=70))
def test_encode_answer_is_encode_of_the_answer_as_from_lua_converts_it(values):
    def from_lua(v):   # LuaValues.from_lua's rule for scalars
        if type(v) is bytes:
            try:
                return v.decode()
            except UnicodeDecodeError:
                return v
        if type(v) is float and v.is_integer() and -(2 ** 63) <= v < 2 ** 63:
            return int(v)
        return v
    expected = encode({"cid": 0, "status": 1, "result": [from_lua(v) for v in values]})
    assert encode_answer(values) == expected
    assert encode_answer(tuple(values)) == expected
