"""The real server on whichever frame codec runs: echoes of every size, fragmented, cut anywhere.

`make test` runs this module twice: on the C extension and with LAPPS_NO_SPEEDUPS=1 (the
pure-Python scanner, masking, UTF-8 check and frame_into, lapps/ws/codec.py), so the path a
checkout without a C compiler takes is tested end to end. The server says at start which
codec it runs; one test checks a checkout where the extension cannot be imported at all.
"""

from __future__ import annotations

import os

import pytest

from lapps.ws import codec
from lapps.ws.constants import Opcode
from wsclient import connect

SIZES = [0, 1, 124, 125, 126, 127, 65535, 65536, 65537, 1 << 20]
BIG = 2 << 20


@pytest.fixture(scope="module")
def server(lapps_server_module):
    return lapps_server_module({"echo": {"max_inbound_message_size": BIG}})


@pytest.fixture(scope="module")
def bytewise_server(lapps_server_module):
    """A server that reads one byte per recv: every frame reaches it cut at every position."""
    return lapps_server_module(settings={"workers": {"input_buffer_size": 1}})


def payload(size: int, opcode: int) -> bytes:
    if opcode == Opcode.TEXT:
        return ("é€" * (size // 5 + 1)).encode()[:size].decode("utf-8", "ignore").encode()
    return os.urandom(size)


def test_server_says_which_codec_it_runs(server):
    line = server.wait_log(r"frame codec: ")[0]
    assert line.endswith(f"frame codec: {codec.DESCRIPTION}")
    assert ("pure Python" in line) == (codec.NATIVE is None)


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("opcode", [Opcode.TEXT, Opcode.BINARY])
def test_message_of_every_size_is_echoed_whole_and_fragmented(server, size, opcode):
    data = payload(size, opcode)
    with connect(server.port) as c:
        c.send_frame(opcode, data)
        assert c.recv_message(timeout=20) == (opcode, data)
        third = len(data) // 3
        c.send_frame(opcode, data[:third], fin=False)
        c.send_frame(Opcode.PING, b"between")
        c.send_frame(Opcode.CONTINUATION, data[third:2 * third], fin=False)
        c.send_frame(Opcode.CONTINUATION, data[2 * third:], fin=True)
        pong = c.recv_frame(timeout=20)
        assert (pong.opcode, pong.payload) == (Opcode.PONG, b"between")
        assert c.recv_message(timeout=20) == (opcode, data)


@pytest.mark.parametrize("size", [0, 1, 125, 126, 300, 65536, 70000])
def test_frames_read_one_byte_at_a_time_are_echoed(bytewise_server, size):
    """input_buffer_size = 1: headers, mask keys, lengths and payloads split at every byte."""
    text, binary = payload(size, Opcode.TEXT), payload(size, Opcode.BINARY)
    with connect(bytewise_server.port) as c:
        c.send_frame(Opcode.BINARY, binary)
        c.send_frame(Opcode.TEXT, text[:len(text) // 2], fin=False)
        c.send_frame(Opcode.CONTINUATION, text[len(text) // 2:])
        assert c.recv_message(timeout=30) == (Opcode.BINARY, binary)
        assert c.recv_message(timeout=30) == (Opcode.TEXT, text)
        c.send_close(1000)
        assert c.recv_close()[0] == 1000


def test_a_checkout_without_the_extension_runs_pure_python_and_says_so(lapps_server, tmp_path):
    """`make run` from a plain checkout: no _speedups importable, so the Python twins run."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(
        "import sys\n"
        "class NoSpeedups:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'lapps.ws._speedups':\n"
        "            raise ImportError('not built (test)')\n"
        "sys.meta_path.insert(0, NoSpeedups())\n")
    env = {"PYTHONPATH": str(site), "LAPPS_NO_SPEEDUPS": ""}
    server = lapps_server(env=env)
    assert server.wait_log(r"frame codec: ")[0].endswith("frame codec: pure Python (extension not built)")
    data = os.urandom(300)
    with connect(server.port) as c:
        c.send_frame(Opcode.BINARY, data)
        assert c.recv_message() == (Opcode.BINARY, data)
