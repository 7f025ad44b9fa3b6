"""Write the seed corpora, fuzz/corpus/<target>/<name>: a few small valid (and a few
instructively invalid) inputs per target, in the layout fuzz/targets.py documents.

    python fuzz/make_corpus.py            # rewrites fuzz/corpus/ (deterministic)
    python fuzz/make_corpus.py --check    # exit 1 if the files on disk differ from these

The fuzzer never writes here: new inputs it finds go to fuzz/work/<target>/ (not committed).
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import cbor2

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from fuzz.harness import (BINARY, CLOSE, CONT, KEY, PING, PONG, TEXT, client_frame,  # noqa: E402
                          deflate_payload, upgrade_head)
from lapps.ws.frames import encode_frame  # noqa: E402
from lapps.ws.handshake import response_101  # noqa: E402

CORPUS = Path(__file__).resolve().parent / "corpus"
MAX_TOTAL = 100 * 1024


def _handshake() -> dict[str, bytes]:
    ping = client_frame(PING, b"hi")
    return {
        "valid": upgrade_head(),
        "valid_deflate_subprotocol": upgrade_head(
            "permessage-deflate; client_max_window_bits, permessage-deflate; server_max_window_bits=10",
            "superchat, chat"),
        "deflate_quoted_params": upgrade_head('x-foo; a="b", permessage-deflate; server_max_window_bits="12"; '
                                              "client_no_context_takeover"),
        "pipelined_ping": upgrade_head() + ping,
        "version_8": upgrade_head().replace(b"Version: 13", b"Version: 8"),
        "bare_lf": upgrade_head().replace(b"\r\n", b"\n"),
        "obs_fold": upgrade_head().replace(b"Upgrade: websocket", b"Upgrade:\r\n websocket"),
        "post_with_body": upgrade_head().replace(b"GET", b"POST").replace(
            b"\r\n\r\n", b"\r\nContent-Length: 3\r\n\r\nabc"),
        "bad_key": upgrade_head().replace(KEY.encode(), b"dGhlIHNhbXBsZSBub25jZQ="),
        "two_hosts": upgrade_head().replace(b"\r\n\r\n", b"\r\nHost: other\r\n\r\n"),
        "incomplete": upgrade_head()[:-2],
    }


def _frames() -> dict[str, bytes]:
    k = b"\x01\x02\x03\x04"
    hello = client_frame(TEXT, b"Hello", key=k)
    close = client_frame(CLOSE, (1000).to_bytes(2, "big") + b"bye", key=k)
    frag = (client_frame(TEXT, "héll".encode()[:3], fin=False, key=k) + client_frame(PING, b"p", key=k)
            + client_frame(CONT, "héll".encode()[3:] + b"o", key=k))
    text = "compressed " * 20
    comp = deflate_payload(text.encode())
    seeds = {
        # [flags][chunking] + client frames (see fuzz/targets.py)
        "text_close": bytes([0, 1]) + hello + close,
        "fragmented_with_ping": bytes([4, 200]) + frag + close,
        "binary_300_pipelined": bytes([2, 37]) + client_frame(BINARY, bytes(range(256)) + b"x" * 44, key=k),
        "ping_pong_bytewise": bytes([0, 0]) + client_frame(PING, b"abc", key=k) + client_frame(PONG, b"", key=k),
        "too_big_1009": bytes([0, 99]) + client_frame(BINARY, b"\0" * 4097, key=k),
        "len64_not_minimal": bytes([0, 5]) + b"\x82\xff" + (5).to_bytes(8, "big") + k + b"12345",
        "unmasked": bytes([0, 3]) + encode_frame(TEXT, b"no mask"),
        "bad_utf8": bytes([4, 17]) + client_frame(TEXT, b"\xce\xba\xe1\xbd\xb9\xcf\x83\xed\xa0\x80", key=k),
        "close_bad_code": bytes([0, 2]) + client_frame(CLOSE, (1005).to_bytes(2, "big"), key=k),
        "deflate_text": bytes([1, 150]) + client_frame(TEXT, comp, rsv1=True, key=k) + close,
        "deflate_nct_fragmented": bytes([9, 21]) + client_frame(TEXT, comp[:10], fin=False, rsv1=True, key=k)
        + client_frame(CONT, comp[10:], key=k) + client_frame(TEXT, comp, rsv1=True, key=k),
        "deflate_bomb": bytes([1, 64]) + client_frame(BINARY, deflate_payload(b"\0" * 20000), rsv1=True, key=k),
        "echo_deflate_fragmenting": bytes([1 | 16 | 64, 33]) + client_frame(TEXT, comp, rsv1=True, key=k)
        + client_frame(BINARY, bytes(range(256)), key=k) + hello + close,
        "echo_nct": bytes([1 | 8 | 16, 18]) + client_frame(TEXT, comp, rsv1=True, key=k)
        + client_frame(TEXT, comp, rsv1=True, key=k),
        "server_closes_first": bytes([32, 44]) + hello + client_frame(PING, b"?", key=k) + close,
        "deflate_bfinal": bytes([1, 7]) + client_frame(BINARY, b"\xf2\x48\xcd\xc9\xc9\x07\x00\x00", rsv1=True, key=k),
    }
    return seeds


def _utf8() -> dict[str, bytes]:
    return {
        "ascii": b"Hello, world",
        "mixed": "héllo € 𝄞 κόσμε".encode(),
        "empty": b"",
        "max_codepoint": b"\xf4\x8f\xbf\xbf",
        "above_max": b"\xf4\x90\x80\x80",
        "surrogate": b"a\xed\xa0\x80b",
        "overlong": b"\xc0\xaf",
        "truncated": b"ok\xe2\x82",
        "lone_continuation": b"\x80abc",
        "long": ("ünïcödé " * 60).encode(),
    }


def _lapps() -> dict[str, bytes]:
    d = cbor2.dumps
    return {
        "request": d({"lapps": 1, "method": "echo"}),
        "request_params": d({"lapps": 1, "method": "echo", "params": [1, "two", 3.5, None, True,
                                                                     {"k": [b"\x00"]}]}),
        "notification": d({"lapps": 1, "method": "tick", "cid": 3, "params": [{"a": 1}]}),
        "float_lapps_cid": d({"lapps": 1.0, "method": "m", "cid": 7.0}),
        "empty_params": d({"lapps": 1, "method": "m", "params": []}),
        "tag": d({"lapps": 1, "method": "m", "params": [cbor2.CBORTag(1, 0)]}),
        "dup_key": b"\xa3\x65lapps\x01\x66method\x61m\x65lapps\x01",
        "unknown_key": d({"lapps": 1, "method": "m", "x": 0}),
        "big_int": d({"lapps": 1, "method": "m", "params": [1 << 64]}),
        "undefined": d({"lapps": 1, "method": "m", "params": [cbor2.undefined]}),
        "indefinite": b"\xbf\x65lapps\x01\x66method\x7f\x61m\xff\x66params\x9f\x01\xff\xff",
        "outgoing_shapes": d({"lapps": 1, "method": "m", "params": [
            {"cid": 0, "status": 1, "result": []}, {"cid": 3, "status": 0, "error": {"code": 1, "message": "x"}},
            {"cid": 5, "message": [1]}]}),
        "trailing_byte": d({"lapps": 1, "method": "m"}) + b"\x00",
    }


def _client() -> dict[str, bytes]:
    f = encode_frame
    return {
        # [flags][chunking] + what the server sends after its 101 (flags bit 0: the whole answer)
        "text_close": bytes([0, 1]) + f(TEXT, b"Hello") + f(CLOSE, (1000).to_bytes(2, "big")),
        "fragments_ping": bytes([2, 31]) + f(BINARY, b"ab", fin=False) + f(PING, b"x") + f(CONT, b"cd"),
        "pong_and_codeless_close": bytes([4, 0]) + f(PONG, b"1") + f(CLOSE, b""),
        "too_big": bytes([0, 150]) + f(BINARY, b"\0" * 4097),
        "masked_frame": bytes([0, 2]) + encode_frame(TEXT, b"m", mask_key=b"abcd"),
        "bad_close_utf8": bytes([0, 3]) + f(CLOSE, (1000).to_bytes(2, "big") + b"\xff"),
        "answer_101_subprotocol": bytes([1, 40]) + response_101(KEY, "chat") + f(TEXT, b"hi"),
        "answer_404_empty": bytes([1, 4]) + b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n",
        "answer_404_body": bytes([1, 13]) + b"HTTP/1.1 404 Not Found\r\nContent-Length: 5\r\n\r\nnope!extra",
        "answer_503_no_length": bytes([1, 200]) + b"HTTP/1.1 503 Busy\r\nRetry-After: 1\r\n\r\nlater",
        "answer_wrong_accept": bytes([1, 9]) + response_101("AAAAAAAAAAAAAAAAAAAAAA=="),
    }


SEEDS = {
    "handshake": _handshake,
    "frames": _frames,
    "utf8": _utf8,
    "lapps_message": _lapps,
    "client_frames": _client,
}


def build() -> dict[str, dict[str, bytes]]:
    return {target: make() for target, make in SEEDS.items()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true", help="compare with fuzz/corpus/ instead of writing")
    args = ap.parse_args()
    corpora = build()
    total = sum(len(v) for seeds in corpora.values() for v in seeds.values())
    if total > MAX_TOTAL:
        print(f"seed corpora total {total} bytes, over {MAX_TOTAL}", file=sys.stderr)
        return 1
    if args.check:
        stale = [f"{t}/{n}" for t, seeds in corpora.items() for n, v in seeds.items()
                 if not (CORPUS / t / n).is_file() or (CORPUS / t / n).read_bytes() != v]
        extra = [str(p.relative_to(CORPUS)) for t in corpora if (CORPUS / t).is_dir()
                 for p in (CORPUS / t).iterdir() if p.name not in corpora[t]]
        if stale or extra:
            print(f"fuzz/corpus is stale: differs {stale}, unknown {extra}", file=sys.stderr)
            return 1
        print(f"fuzz/corpus up to date ({total} bytes)")
        return 0
    for target, seeds in corpora.items():
        folder = CORPUS / target
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
        for name, value in seeds.items():
            (folder / name).write_bytes(value)
    print(f"wrote {sum(len(s) for s in corpora.values())} seeds, {total} bytes, under {CORPUS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
