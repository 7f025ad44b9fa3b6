"""The fuzz targets (fuzz/targets.py) run as ordinary tests: each over its seed corpus and
over a couple of hundred hypothesis inputs, so `make test` exercises them without atheris.
Longer, coverage-guided runs: `python fuzz/run.py all --seconds 60` (fuzz/README.md).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from fuzz import harness, make_corpus, strategies, targets  # noqa: E402
from fuzz.harness import BINARY, PING, TEXT, client_frame, deflate_payload  # noqa: E402
from lapps.ws.client import EV_REJECTED, MAX_REJECT_BODY  # noqa: E402
from lapps.ws.protocol import EV_CLOSED, ServerProtocol  # noqa: E402

CORPUS = REPO / "fuzz" / "corpus"
NAMES = list(targets.TARGETS)
EXAMPLES = {"handshake": 200, "frames": 200, "utf8": 100, "lapps_message": 300, "client_frames": 200}


def test_seed_corpus_is_what_make_corpus_writes():
    built = make_corpus.build()
    on_disk = {t: {p.name: p.read_bytes() for p in (CORPUS / t).iterdir()} for t in built}
    assert on_disk == built, "fuzz/corpus is stale: run python fuzz/make_corpus.py"
    assert sum(len(v) for seeds in built.values() for v in seeds.values()) < make_corpus.MAX_TOTAL


@pytest.mark.parametrize("name", NAMES)
def test_target_holds_on_its_seed_corpus(name):
    seeds = sorted((CORPUS / name).iterdir())
    assert len(seeds) >= 5
    for seed in seeds:
        targets.TARGETS[name](seed.read_bytes())


@pytest.mark.parametrize("name", NAMES)
def test_target_holds_on_generated_inputs(name):
    seeds = [p.read_bytes() for p in sorted((CORPUS / name).iterdir())]
    fn = targets.TARGETS[name]

    @settings(max_examples=EXAMPLES[name], deadline=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(strategies.inputs(name, seeds, 2048))
    def run(data: bytes) -> None:
        fn(data)

    run()


@pytest.mark.parametrize("selector", [0, 1, 15, 16, 17, 26, 100, 255])
def test_split_keeps_every_byte_in_order(selector):
    data = bytes(range(256)) * 3
    pieces = harness.split(data, selector)
    assert b"".join(pieces) == data
    assert harness.split(b"", selector) == [b""]


# ---------------------------------------------------------------------------- the harness bites

def test_frames_target_catches_events_after_closed(monkeypatch):
    class Chatty(ServerProtocol):
        __slots__ = ()

        def receive_eof(self) -> None:
            super().receive_eof()
            self.events.append((TEXT, b"late"))

    monkeypatch.setattr(targets, "ServerProtocol", Chatty)
    with pytest.raises(AssertionError, match="after"):
        targets.frames(bytes([0, 1]) + client_frame(TEXT, b"hi"))


def test_lapps_target_lets_foreign_exceptions_through(monkeypatch):
    def broken(data):
        raise KeyError("not a LappsError")

    monkeypatch.setattr(targets, "decode_message", broken)
    with pytest.raises(KeyError):
        targets.lapps_message(b"\xa0")


def test_utf8_target_catches_a_lenient_decoder(monkeypatch):
    class Lenient(ServerProtocol):
        __slots__ = ()

        def _fail(self, code: int, reason: str) -> None:
            if code == 1007:
                return
            super()._fail(code, reason)

    monkeypatch.setattr(targets, "ServerProtocol", Lenient)
    with pytest.raises(AssertionError):
        targets.utf8(b"\xff")


def test_ping_seed_is_answered():
    """The targets check output, not only the absence of exceptions: a ping's pong is there."""
    log, out = targets.serve([client_frame(PING, b"x"), client_frame(BINARY, b"b")])
    assert log == [(BINARY, b"b"), (EV_CLOSED, 1006)]
    assert harness.sent_frames(out, masked=False) == [(0xA, True, False, b"x")]


# ---------------------------------------------------------------------------- found and fixed
# What the fuzzer found (fuzz/README.md, "Found and fixed"): the same input gave a different
# answer depending on how it was split. The targets check this strictly; these pin it down.

SELECTORS = [0, 1, 3, 7, 16, 20, 26, 100, 255]
"""Chunkings (harness.split): fixed pieces of 1, 2, 4 and 8 bytes, and PRNG-sized ones."""

ISSUE_1 = bytes([0, 0]) + client_frame(TEXT, b"ok\xe2\x82", key=b"\0\0\0\0")
ISSUE_2 = bytes([1, 3]) + client_frame(TEXT, deflate_payload(b"\xff" + b"a" * 5000), rsv1=True)
ISSUE_3 = bytes([1, 0]) + b"HTTP/1.1 404 Not Found\r\nContent-Length: -3\r\n\r\nnope!extra"


def _close_frame(out: bytes) -> tuple[int, bytes]:
    """(code, reason) of the close frame that ends what the server wrote."""
    sent = harness.sent_frames(out, masked=False, rsv1_ok=True)
    assert sent and sent[-1][0] == harness.CLOSE, f"no close frame last: {sent!r}"
    payload = sent[-1][3]
    return int.from_bytes(payload[:2], "big"), payload[2:]


@pytest.mark.parametrize("selector", SELECTORS)
def test_issue_1_truncated_utf8_closes_the_same_way_however_split(selector):
    """A text message ending in a truncated sequence: the fast path (whole frame) and the
    incremental one (in pieces) give the same close frame."""
    stream = ISSUE_1[2:]
    whole = targets.serve([stream])
    chunked = targets.serve(harness.split(stream, selector))
    assert whole == chunked
    assert whole[0] == [(EV_CLOSED, 1007)]
    assert _close_frame(whole[1]) == (1007, b"invalid UTF-8 in text message")


@pytest.mark.parametrize("selector", SELECTORS)
def test_issue_2_compressed_bad_utf8_too_big_fails_1007_however_split(selector):
    """Inflates to ff + 5000 bytes: invalid UTF-8 and over max_message_size. Whole, the
    inflater hits the limit first; the bytes it inflated are still UTF-8-checked first, so
    every split fails 1007, as the first piece alone would."""
    stream = ISSUE_2[2:]
    whole = targets.serve([stream], "permessage-deflate")
    chunked = targets.serve(harness.split(stream, selector), "permessage-deflate")
    assert whole == chunked
    assert whole[0] == [(EV_CLOSED, 1007)]
    assert _close_frame(whole[1]) == (1007, b"invalid UTF-8 or DEFLATE data in compressed text message")


@pytest.mark.parametrize("selector", SELECTORS)
def test_compressed_message_too_big_with_bad_utf8_past_the_limit_is_1009(selector):
    """The other side of issue 2: invalid UTF-8 only past the limit is never seen, 1009."""
    stream = client_frame(TEXT, deflate_payload(b"a" * 5000 + b"\xff"), rsv1=True)
    whole = targets.serve([stream], "permessage-deflate")
    chunked = targets.serve(harness.split(stream, selector), "permessage-deflate")
    assert whole == chunked
    assert whole[0] == [(EV_CLOSED, 1009)]


@pytest.mark.parametrize(("length", "body"), [
    ("-3", b"nope!extra"),      # issue 3: was int("-3"), the body lost its last 3 bytes
    ("-1", b"nope!extra"),
    ("+5", b"nope!extra"),
    ("1_0", b"nope!extra"),
    ("0x5", b"nope!extra"),
    ("", b"nope!extra"),
    ("5", b"nope!"),
    ("0", b""),
    ("99", b"nope!extra"),      # longer than what came: whatever came before EOF
])
@pytest.mark.parametrize("selector", [0, 3, 20, 255])
def test_issue_3_rejection_body_reads_content_length_only_when_all_digits(length, body, selector):
    """A Content-Length that is not all digits is no length: the body runs to EOF."""
    answer = f"HTTP/1.1 404 Not Found\r\nContent-Length: {length}\r\n\r\n".encode() + b"nope!extra"
    whole, out_w = targets._client_run([answer])
    chunked, out_c = targets._client_run(harness.split(answer, selector))
    assert whole == chunked and out_w == out_c == b""
    assert whole == [(EV_REJECTED, (404, [("content-length", length)], body))]


def test_rejection_body_to_eof_stops_at_the_limit():
    answer = b"HTTP/1.1 500 Oops\r\nContent-Length: -1\r\n\r\n" + b"x" * (MAX_REJECT_BODY + 100)
    whole, _ = targets._client_run([answer])
    chunked, _ = targets._client_run(harness.split(answer, 25))
    assert whole == chunked
    assert whole[0][1][2] == b"x" * MAX_REJECT_BODY


def test_fixed_issues_hold_in_the_targets():
    """The three minimal inputs pass the (strict) targets."""
    targets.frames(ISSUE_1)
    targets.frames(ISSUE_2)
    targets.client_frames(ISSUE_3)
    whole, _ = targets.serve([ISSUE_2[2:]], "permessage-deflate")
    assert whole[-1] == (EV_CLOSED, 1007)
