"""A small blocking WebSocket client for integration tests, over a real TCP socket.

Unlike a full client library it does exactly what a test says and nothing more: it sends
any bytes (broken heads, unmasked frames, bad close codes), never answers a ping or a close
by itself, and reads one frame at a time. Frames are built with the server's own
`lapps.ws.frames`, so a test also checks that the encoder and the server agree.

    client = connect(port, "/echo")           # HTTP upgrade; client.status == 101
    client.send_frame(Opcode.TEXT, b"hello")  # masked, as a client must
    assert client.recv_frame().payload == b"hello"
    client.send_close(1000)
    assert client.recv_close() == (1000, "")
    client.expect_tcp_close()
"""

from __future__ import annotations

import base64
import os
import socket
import struct
import time
from typing import NamedTuple

from lapps import client as lapps_client
from lapps.ws.constants import Opcode
from lapps.ws.frames import close_payload, encode_frame, mask

DEFAULT_TIMEOUT = 5.0
MASK_KEY = b"\x37\xfa\x21\x3d"   # fixed, so a failing test replays the same bytes


class Frame(NamedTuple):
    """One frame as the server sent it (payload already unmasked if it was masked)."""

    opcode: int
    fin: bool
    payload: bytes
    rsv: int = 0
    masked: bool = False


def upgrade_request(path: str = "/echo", headers: dict[str, str] | None = None,
                    host: str | None = "localhost", key: str | None = None,
                    version: str = "13") -> bytes:
    """The bytes of an upgrade GET. `headers` are added (or, same name, replace the defaults);
    a header whose value is None is left out (`{"Host": None}` sends no Host)."""
    fields: dict[str, str | None] = {
        "Host": host,
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Key": key or base64.b64encode(os.urandom(16)).decode(),
        "Sec-WebSocket-Version": version,
    }
    for name, value in (headers or {}).items():
        match = next((k for k in fields if k.lower() == name.lower()), name)
        fields[match] = value
    lines = [f"GET {path} HTTP/1.1"] + [f"{k}: {v}" for k, v in fields.items() if v is not None]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


class RawClient:
    """A connected socket plus a receive buffer; see the module docstring."""

    def __init__(self, sock: socket.socket, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.sock = sock
        self.timeout = timeout
        self.buf = bytearray()
        self.status_line = ""
        self.status = 0
        self.headers: dict[str, str] = {}   # lower-case names

    @classmethod
    def open(cls, port: int, host: str = "127.0.0.1", timeout: float = DEFAULT_TIMEOUT) -> "RawClient":
        """A TCP connection, not upgraded yet."""
        return cls(socket.create_connection((host, port), timeout=timeout), timeout)

    # ------------------------------------------------------------------ sending

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def send_frame(self, opcode: int, payload: bytes = b"", fin: bool = True,
                   masked: bool = True, mask_key: bytes = MASK_KEY, rsv1: bool = False) -> None:
        """One frame; masked unless told otherwise (an unmasked one is a protocol error);
        `rsv1` marks a permessage-deflate message."""
        self.sock.sendall(encode_frame(opcode, payload, fin, rsv1, mask_key=mask_key if masked else None))

    def send_text(self, text: str) -> None:
        self.send_frame(Opcode.TEXT, text.encode("utf-8"))

    def send_close(self, code: int | None = 1000, reason: str = "") -> None:
        self.send_frame(Opcode.CLOSE, close_payload(code, reason))

    # ------------------------------------------------------------------ receiving

    def _fill(self, n: int, deadline: float) -> None:
        """Read until the buffer holds `n` bytes; TimeoutError, or EOFError on a closed socket."""
        while len(self.buf) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"waited for {n} bytes, have {len(self.buf)}")
            self.sock.settimeout(left)
            chunk = self.sock.recv(max(65536, n - len(self.buf)))
            if not chunk:
                raise EOFError(f"connection closed with {len(self.buf)} of {n} bytes read")
            self.buf += chunk

    def _take(self, n: int) -> bytes:
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def read_head(self, timeout: float | None = None) -> tuple[str, dict[str, str]]:
        """Read an HTTP response head; sets and returns (status line, lower-cased headers).
        Bytes after the head (early frames) stay in the buffer."""
        deadline = time.monotonic() + (timeout or self.timeout)
        while b"\r\n\r\n" not in self.buf:
            self._fill(len(self.buf) + 1, deadline)
        end = self.buf.index(b"\r\n\r\n")
        lines = self._take(end + 4)[:end].decode("latin-1").split("\r\n")
        self.status_line = lines[0]
        self.status = int(lines[0].split()[1])
        self.headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            self.headers[name.strip().lower()] = value.strip()
        return self.status_line, self.headers

    def upgrade(self, path: str = "/echo", headers: dict[str, str] | None = None,
                **request: str | None) -> tuple[str, dict[str, str]]:
        """Send an upgrade request and read the answer's head."""
        self.send_raw(upgrade_request(path, headers, **request))
        return self.read_head()

    def recv_frame(self, timeout: float | None = None) -> Frame:
        """The next frame (any opcode); TimeoutError or EOFError if none comes."""
        deadline = time.monotonic() + (timeout or self.timeout)
        self._fill(2, deadline)
        b0, b1 = self.buf[0], self.buf[1]
        length, pos = b1 & 0x7F, 2
        if length == 126:
            self._fill(4, deadline)
            length, pos = struct.unpack_from("!H", self.buf, 2)[0], 4
        elif length == 127:
            self._fill(10, deadline)
            length, pos = struct.unpack_from("!Q", self.buf, 2)[0], 10
        masked = bool(b1 & 0x80)
        key_len = 4 if masked else 0
        self._fill(pos + key_len + length, deadline)
        head = self._take(pos + key_len)
        payload = self._take(length)
        if masked:
            payload = mask(payload, head[pos:])
        return Frame(b0 & 0x0F, bool(b0 & 0x80), payload, (b0 >> 4) & 7, masked)

    def recv_message(self, timeout: float | None = None) -> tuple[int, bytes]:
        """(opcode, payload) of the next data message, joining continuation frames."""
        first = self.recv_frame(timeout)
        assert first.opcode in (Opcode.TEXT, Opcode.BINARY), f"expected a data frame, got {first}"
        parts = [first.payload]
        frame = first
        while not frame.fin:
            frame = self.recv_frame(timeout)
            assert frame.opcode == Opcode.CONTINUATION, f"expected a continuation frame, got {frame}"
            parts.append(frame.payload)
        return first.opcode, b"".join(parts)

    def recv_close(self, timeout: float | None = None) -> tuple[int | None, str]:
        """Read until a close frame (data frames in between are skipped); (code, reason)."""
        while True:
            frame = self.recv_frame(timeout)
            if frame.opcode == Opcode.CLOSE:
                if len(frame.payload) < 2:
                    return None, ""
                return int.from_bytes(frame.payload[:2], "big"), frame.payload[2:].decode("utf-8")

    def expect_tcp_close(self, timeout: float | None = None) -> float:
        """Wait for the server to end the TCP connection (EOF or reset), discarding what comes
        first; returns the seconds it took. AssertionError if it is still open at the timeout."""
        start = time.monotonic()
        deadline = start + (timeout or self.timeout)
        self.buf.clear()
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"the server kept the connection open for {timeout or self.timeout}s")
            self.sock.settimeout(left)
            try:
                if not self.sock.recv(65536):
                    break
            except (ConnectionResetError, BrokenPipeError):
                break
            except TimeoutError:
                continue
        return time.monotonic() - start

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> "RawClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def connect(port: int, path: str = "/echo", headers: dict[str, str] | None = None,
            timeout: float = DEFAULT_TIMEOUT, **request: str | None) -> RawClient:
    """Open a connection and send the upgrade; the answer is in `.status_line`, `.status`
    and `.headers` whatever it is (a test of a refusal checks them)."""
    client = RawClient.open(port, timeout=timeout)
    try:
        client.upgrade(path, headers, **request)
    except BaseException:
        client.close()
        raise
    return client


def echo_ok(port: int, text: str = "still alive", path: str = "/echo") -> bool:
    """A fresh client upgrades, gets its message echoed, and closes cleanly. A well-behaved
    client's job, so it is the shipped `lapps.client`'s, not this module's raw one."""
    try:
        client = lapps_client.connect(f"ws://127.0.0.1:{port}{path}", timeout=DEFAULT_TIMEOUT)
    except lapps_client.HandshakeRejected:
        return False
    with client:
        client.send_text(text)
        echoed = client.recv() == (Opcode.TEXT, text.encode())
        return echoed and client.close()[0] == 1000
