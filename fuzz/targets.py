"""Fuzz targets: one pure function per parser, `target(data: bytes) -> None`.

Each target feeds `data` to one of our parsers and checks invariants, raising
AssertionError when one is broken. Peer input must never make a parser raise (STYLE
pattern 2), so a target catches only the exceptions the parser documents for bad input
(`LappsError` from `decode_message`, `ValueError` from `validate_outgoing`; nothing at
all from `ServerProtocol` and `ClientProtocol`) and lets anything else propagate: to the
fuzzer, any exception is a crash.

Targets are deterministic: chunkings and mask keys are derived from `data`, so a crashing
input replays the same way (`python fuzz/run.py TARGET --replay FILE`).

Input layouts (what the seed corpora in fuzz/corpus/ hold, written by fuzz/make_corpus.py):

- handshake:      the request head itself (and whatever follows it).
- frames:         [flags][chunking][client frames...]; flags bit 0: offer and accept
                  permessage-deflate, bit 3: offer it with client_no_context_takeover,
                  bit 1: send the frames pipelined behind the request, bit 2: the chunked
                  run delivers messages through `on_message` instead of `events`, bit 4:
                  both runs echo each message back from `on_message` (the echo service),
                  bit 6: with auto_fragment=64, bit 5: the server calls close() right after
                  accept() (not with bit 1), so the frames arrive in CLOSING.
- utf8:           the text message payload.
- lapps_message:  one binary message (CBOR).
- client_frames:  [flags][chunking][server bytes...]; flags bit 0: the bytes are the whole
                  answer (head and all) instead of following a valid 101, bit 1: the first
                  piece arrives in the same read as the 101, bit 2: the 101 picks "chat".
"""

from __future__ import annotations

import itertools
import random
import re
import zlib
from collections.abc import Callable

import cbor2

from lapps.lapps_protocol import (INVALID_REQUEST, NOTIFICATION, PARSE_ERROR, REQUEST, LappsError,
                                  decode_message, validate_outgoing)
from lapps.ws.client import EV_OPEN, EV_PONG, EV_REJECTED, MAX_REJECT_BODY, ClientProtocol
from lapps.ws.client import State as ClientState
from lapps.ws.constants import MAX_CONTROL_PAYLOAD, CloseCode
from lapps.ws.frames import encode_frame
from lapps.ws.handshake import accept_key, response_101
import lapps.ws.protocol as protocol_module
from lapps.ws.protocol import EV_CLOSED, EV_REQUEST, ServerProtocol, State

from .harness import (CONT, KEY, MAX_CLIENT_HEAD, MAX_HANDSHAKE, MAX_HEADERS, MAX_MESSAGE,
                      SUBPROTOCOLS, TEXT, Recorder, check_message, check_sent, client_frame,
                      deflate_payload, sent_frames, split, upgrade_head)

_HTTP_ERROR = re.compile(rb"HTTP/1\.1 ([45]\d\d) [^\r\n]+\r\n((?:[!-9;-~]+: [^\r\n]*\r\n)*)\r\n", re.S)


# ---------------------------------------------------------------------------- 1. handshake

def _http_error_status(out: bytes) -> int:
    """The status of a complete HTTP error answer in `out` (asserts it is one)."""
    m = _HTTP_ERROR.match(out)
    assert m, f"out is not a well-formed HTTP error answer: {out[:120]!r}"
    headers = dict(line.split(": ", 1) for line in m.group(2).decode("latin-1").split("\r\n") if line)
    body = out[m.end():]
    assert int(headers.get("Content-Length", "-1")) == len(body), "Content-Length wrong in error answer"
    status = int(m.group(1))
    if status == 426:
        assert headers.get("Sec-WebSocket-Version") == "13", "426 without Sec-WebSocket-Version: 13"
    return status


def _handshake_run(pieces: list[bytes]) -> ServerProtocol:
    p = ServerProtocol(max_handshake_size=MAX_HANDSHAKE, max_headers=MAX_HEADERS)
    for piece in pieces:
        p.receive_data(piece)
        assert p.state in (State.HANDSHAKE, State.UPGRADING, State.CLOSED), f"state {p.state.name}"
        if p.state == State.HANDSHAKE:
            # white-box: the head buffer is the limit this target exists to check
            assert len(p._head) <= MAX_HANDSHAKE, f"head buffer {len(p._head)} > {MAX_HANDSHAKE}"
            assert not p.out and not p.events, "output before the head was complete"
    if p.state == State.CLOSED:
        status = _http_error_status(bytes(p.out))
        assert status in (400, 426, 431), f"unexpected status {status}"
        assert p.close_code == status and not p.events, "a rejected handshake emitted events"
    else:
        assert not p.out, "HTTP output while not CLOSED"
    if p.state == State.UPGRADING:
        req = p.request
        assert p.events == [(EV_REQUEST, req)], f"events {p.events[:3]!r}"
        assert req.method == "GET" and req.target.startswith("/"), f"accepted {req.method} {req.target}"
    return p


def _accept_and_check(p: ServerProtocol) -> None:
    """accept() a parsed request, offering deflate and subprotocols: the 101 must be a clean
    head (nothing from the request can inject a line) carrying the right accept key."""
    p.events.clear()
    chosen = p.accept(SUBPROTOCOLS, permessage_deflate=True, max_message_size=MAX_MESSAGE)
    out = bytes(p.out)
    end = out.find(b"\r\n\r\n") + 4
    head = out[:end].decode("latin-1")
    assert end >= 4 and head.startswith("HTTP/1.1 101 Switching Protocols\r\n"), f"bad 101: {out[:80]!r}"
    lines = head[:-4].split("\r\n")
    assert all(not re.search(r"[\x00-\x08\x0a-\x1f\x7f]", line) for line in lines), "control char in 101"
    assert f"Sec-WebSocket-Accept: {accept_key(p.request.get('sec-websocket-key'))}" in lines
    assert chosen is None or chosen in SUBPROTOCOLS
    ext = [line for line in lines if line.startswith("Sec-WebSocket-Extensions:")]
    assert len(ext) == (p.deflate is not None), "extension header and deflate state disagree"
    assert p.state in (State.OPEN, State.CLOSED), f"state {p.state.name} after accept()"


def handshake(data: bytes) -> None:
    """Request head parsing and validation, whole and chunked, then accept()."""
    whole = _handshake_run([data])
    chunked = _handshake_run(split(data, zlib.crc32(data) & 0xFF))
    # the status may differ (a bare LF is caught early in a piece, 431 vs 400), the outcome not
    assert whole.state == chunked.state, f"whole: {whole.state.name}, chunked: {chunked.state.name}"
    if whole.state == State.UPGRADING:
        assert whole.request == chunked.request, "whole and chunked parse to different requests"
        _accept_and_check(whole)
        _accept_and_check(chunked)
        assert whole.out == chunked.out and whole.events == chunked.events


# ---------------------------------------------------------------------------- 2. frames

def serve(pieces: list[bytes], extensions: str | None = None, pipeline: bool = False,
          callback: bool = False, max_message: int = MAX_MESSAGE, echo: bool = False,
          auto_fragment: int = 0, close_first: bool = False) -> tuple[list, bytes]:
    """Upgrade a ServerProtocol, feed it `pieces`, then EOF. Returns (what it emitted, the
    frames it wrote after the 101), having checked the invariants that hold for any input.

    `callback`: messages come through `on_message`; `echo`: and each is sent back at once
    (as the echo service does, compressed when deflate was negotiated, fragmented per
    `auto_fragment`); `close_first`: the server starts the close handshake right after
    accept() (so the frames arrive in CLOSING)."""
    p = ServerProtocol(MAX_HANDSHAKE, MAX_HEADERS)
    rec = Recorder(p, (EV_CLOSED,))
    if echo:
        def echo_back(opcode: int, payload: bytes) -> None:
            rec.message(opcode, payload)
            assert p.send(opcode, payload), f"send() refused in state {p.state.name} from on_message"
        p.on_message = echo_back
    elif callback:
        p.on_message = rec.message
    pieces = list(pieces)
    head = upgrade_head(extensions)
    p.receive_data(head + pieces.pop(0) if pipeline and pieces else head)
    assert p.state == State.UPGRADING and [k for k, _ in p.events] == [EV_REQUEST], "valid upgrade refused"
    p.events.clear()
    p.accept(max_message_size=max_message, auto_fragment=auto_fragment,
             permessage_deflate=extensions is not None)
    assert (p.deflate is not None) == (extensions is not None), "deflate not negotiated"
    end = p.out.find(b"\r\n\r\n") + 4
    assert p.out.startswith(b"HTTP/1.1 101 ") and end >= 4
    del p.out[:end]
    if close_first:
        assert p.close(CloseCode.NORMAL, "going") == (p.state == State.CLOSING), "close() result"
    rec.drain()
    states = (State.OPEN, State.CLOSING, State.CLOSED) if close_first else (State.OPEN, State.CLOSED)
    for piece in pieces:
        p.receive_data(piece)
        assert p.state in states, f"state {p.state.name}"
        rec.drain()
    p.receive_eof()
    rec.drain()
    assert rec.ended_at is not None and p.state == State.CLOSED, "EOF did not end the connection"
    closes = [v for k, v in rec.log if k == EV_CLOSED]
    assert len(closes) == 1, f"{len(closes)} EV_CLOSED events"
    for kind, value in rec.log[:-1]:
        check_message(kind, value, max_message)
    check_sent(sent_frames(bytes(p.out), masked=False, rsv1_ok=p.deflate is not None), closes[0],
               rec.log[:-1] if echo else None)
    return rec.log, bytes(p.out)


def frames(data: bytes) -> None:
    """Client frames into an accepted ServerProtocol: fed whole vs in pieces."""
    if len(data) < 2:
        return
    flags, selector, stream = data[0], data[1], data[2:]
    extensions = None
    if flags & 1:
        extensions = "permessage-deflate" + ("; client_no_context_takeover" if flags & 8 else "")
    pipeline = bool(flags & 2)
    options = {"echo": bool(flags & 16), "close_first": bool(flags & 32) and not pipeline,
               "auto_fragment": 64 if flags & 64 else 0}
    whole = serve([stream], extensions, pipeline, **options)
    chunked = serve(split(stream, selector), extensions, pipeline, callback=bool(flags & 4), **options)
    assert whole[0] == chunked[0], f"events differ: whole {whole[0][:4]!r}, chunked {chunked[0][:4]!r}"
    assert whole[1] == chunked[1], "out differs between whole and chunked feeding"
    if protocol_module._scan is not None:
        # the C scanner may only ever take frames the Python parser would take the same way
        scan, protocol_module._scan = protocol_module._scan, None
        try:
            python_only = serve([stream], extensions, pipeline, **options)
        finally:
            protocol_module._scan = scan
        assert whole == python_only, "the C scanner and the Python parser disagree"


# ---------------------------------------------------------------------------- 3. utf8

def _deterministic_random() -> Callable[[int], bytes]:
    counter = itertools.count(1)
    return lambda n: bytes(next(counter) & 0xFF for _ in range(n))


def utf8(data: bytes) -> None:
    """Differential: text validation (server fast and slow paths, fragments, deflate; the
    client) against `data.decode("utf-8")`: 1007 iff Python refuses the bytes."""
    try:
        data.decode("utf-8")
        valid = True
    except UnicodeDecodeError:
        valid = False
    seed = zlib.crc32(data)
    rng = random.Random(seed)
    key = seed.to_bytes(4, "big")
    cuts = sorted(rng.sample(range(len(data) + 1), min(len(data) + 1, rng.randint(1, 5))))
    bounds = [0, *cuts, len(data)]
    fragments = [data[a:b] for a, b in zip(bounds, bounds[1:])]

    def fragmented(parts: list[bytes], rsv1: bool = False) -> bytes:
        return b"".join(client_frame(TEXT if i == 0 else CONT, part, fin=i == len(parts) - 1,
                                     rsv1=rsv1 and i == 0, key=key) for i, part in enumerate(parts))

    single = client_frame(TEXT, data, key=key)
    compressed = deflate_payload(data)
    ccuts = sorted(rng.sample(range(len(compressed) + 1), min(len(compressed) + 1, 3)))
    cbounds = [0, *ccuts, len(compressed)]
    big = 1 << 24
    runs = {
        "one frame, whole": serve([single], max_message=big)[0],
        "one frame, in pieces": serve(split(single, rng.randrange(256)), max_message=big)[0],
        "fragments, whole": serve([fragmented(fragments)], max_message=big)[0],
        "fragments, in pieces": serve(split(fragmented(fragments), rng.randrange(256)), max_message=big)[0],
        "deflate": serve(split(fragmented([compressed[a:b] for a, b in zip(cbounds, cbounds[1:])], True),
                               rng.randrange(256)), "permessage-deflate", max_message=big)[0],
    }
    expected = [(TEXT, data), (EV_CLOSED, CloseCode.ABNORMAL)] if valid else [(EV_CLOSED, CloseCode.INVALID_DATA)]
    for name, log in runs.items():
        assert log == expected, f"server, {name}: {log[:2]!r}, Python says valid={valid}"

    server_single = encode_frame(TEXT, data)
    server_frags = b"".join(encode_frame(TEXT if i == 0 else CONT, part, fin=i == len(fragments) - 1)
                            for i, part in enumerate(fragments))
    for name, stream in (("one frame", server_single), ("fragments", server_frags)):
        log = _client_log(response_101(KEY) + stream)
        codes = [v[0] for k, v in log if k == EV_CLOSED]
        got = [(k, v) for k, v in log if k == TEXT]
        if valid:
            assert got == [(TEXT, data)] and codes == [CloseCode.ABNORMAL], f"client, {name}: {log[:3]!r}"
        else:
            assert not got and codes == [CloseCode.INVALID_DATA], f"client, {name}: {log[:3]!r}"


# ---------------------------------------------------------------------------- 4. lapps_message

def _containers(value: object, limit: int = 200) -> list[object]:
    """Every list and dict inside `value` (itself included), breadth first, at most `limit`."""
    found, queue = [], [value]
    while queue and len(found) < limit:
        v = queue.pop(0)
        if type(v) is list:
            found.append(v)
            queue.extend(v)
        elif type(v) is dict:
            found.append(v)
            queue.extend(v.values())
    return found


def lapps_message(data: bytes) -> None:
    """decode_message raises only LappsError; what it accepts is a well-formed request that
    survives a cbor2 round trip with the same classification; validate_outgoing raises
    only ValueError on anything decoded."""
    try:
        msg_type, message = decode_message(data)
    except LappsError as e:
        assert e.code in (PARSE_ERROR, INVALID_REQUEST), f"LappsError code {e.code}"
        assert isinstance(e.message, str) and e.message, "LappsError without a message"
        return
    assert type(message) is dict and set(message) <= {"lapps", "method", "params", "cid"}
    assert type(message["lapps"]) is int and message["lapps"] == 1, f"lapps {message.get('lapps')!r}"
    method = message["method"]
    assert type(method) is str and method and method[0] != "_" and "." not in method
    params = message.get("params", [])
    assert type(params) is list
    if "cid" in message:
        cid = message["cid"]
        assert type(cid) is int and -(1 << 63) <= cid < (1 << 63), f"cid {cid!r}"
    expected = (NOTIFICATION if "cid" in message else REQUEST) + (1 if params else 0)
    assert msg_type == expected, f"msg_type {msg_type}, expected {expected}"

    encoded = cbor2.dumps(message)
    try:
        again_type, again = decode_message(encoded)
    except LappsError as e:
        raise AssertionError(f"re-encoded message refused: {e!r}") from None
    assert again_type == msg_type, f"re-encoded message classified {again_type}, was {msg_type}"
    assert cbor2.dumps(again) == encoded, "re-encoded message decodes to a different value"

    for value in _containers(message):
        try:
            validate_outgoing(value)
        except ValueError:
            pass


# ---------------------------------------------------------------------------- 5. client_frames

def _client_run(pieces: list[bytes]) -> tuple[list, bytes]:
    """A ClientProtocol fed `pieces` (the answer to its request), then EOF; returns (what it
    emitted, what it wrote after the request), having checked the invariants."""
    c = ClientProtocol("example.com", "/chat", subprotocols=("chat",), max_message_size=MAX_MESSAGE,
                       max_head_size=MAX_CLIENT_HEAD, ws_key=KEY, random_bytes=_deterministic_random())
    assert c.out.endswith(b"\r\n\r\n") and c.key == KEY
    c.out.clear()
    rec = Recorder(c, (EV_CLOSED, EV_REJECTED))
    for piece in pieces:
        c.receive_data(piece)
        rec.drain()
    c.receive_eof()
    rec.drain()
    assert rec.ended_at is not None and c.state == ClientState.CLOSED, "EOF did not end the connection"
    log = rec.log
    kinds = [k for k, _ in log]
    opened = kinds[0] == EV_OPEN
    assert kinds.count(EV_OPEN) == int(opened), "EV_OPEN not first or twice"
    if opened:
        assert log[0][1] in (None, "chat"), f"subprotocol {log[0][1]!r}"
    end_kind, end_value = log[-1]
    if end_kind == EV_REJECTED:
        assert kinds == [EV_REJECTED], f"rejection after other events: {kinds[:4]}"
        _check_rejection(b"".join(pieces), end_value)
        assert not c.out, "a rejected client wrote frames"
        return log, bytes(c.out)
    for kind, value in log[int(opened):-1]:
        if kind == EV_PONG:
            assert len(value) <= MAX_CONTROL_PAYLOAD
        else:
            check_message(kind, value, MAX_MESSAGE)
    frames_out = sent_frames(bytes(c.out), masked=True)
    assert opened or not frames_out, "frames written before the 101"
    check_sent(frames_out, end_value[0])
    return log, bytes(c.out)


def _client_log(stream: bytes) -> list:
    return _client_run([stream])[0]


_DIGITS = re.compile(r"[0-9]+")
"""A Content-Length the client takes (1*DIGIT, ASCII only: not "-1", "+5", "1_0" or "²")."""


def _check_rejection(stream: bytes, value: tuple) -> None:
    """The body of a non-101 answer: read up to the first Content-Length when that is all
    digits, else (absent, negative, anything odd) to EOF, and never more than
    MAX_REJECT_BODY bytes."""
    status, headers, body = value
    assert status != 101 and 0 <= status <= 999, f"status {status}"
    rest = stream[stream.find(b"\r\n\r\n") + 4:]
    lengths = [v.strip() for k, v in headers if k == "content-length"]
    limit = MAX_REJECT_BODY
    if lengths and _DIGITS.fullmatch(lengths[0]):
        limit = min(int(lengths[0]), MAX_REJECT_BODY)
    assert body == rest[:limit], (f"rejection body of {len(body)} bytes, expected {len(rest[:limit])} "
                                  f"(Content-Length {lengths[:1]}, {len(rest)} bytes after the head)")


def client_frames(data: bytes) -> None:
    """A ClientProtocol after a valid 101 (or a fuzzed answer): whole vs in pieces."""
    if len(data) < 2:
        return
    flags, selector, stream = data[0], data[1], data[2:]
    if flags & 1:
        pieces = split(stream, selector)            # the answer's head is fuzzed too
    else:
        head = response_101(KEY, "chat" if flags & 4 else None)
        body = split(stream, selector)
        pieces = [head + body[0], *body[1:]] if flags & 2 else [head, *body]
        stream = head + stream
    whole = _client_run([stream])
    chunked = _client_run(pieces)
    assert whole[0] == chunked[0], f"events differ: whole {whole[0][:4]!r}, chunked {chunked[0][:4]!r}"
    assert whole[1] == chunked[1], "out differs between whole and chunked feeding"


TARGETS: dict[str, Callable[[bytes], None]] = {
    "handshake": handshake,
    "frames": frames,
    "utf8": utf8,
    "lapps_message": lapps_message,
    "client_frames": client_frames,
}
"""Every target by name, in the order `run.py all` runs them."""
