"""A synchronous Python client for LAppS services, raw and LAppS-protocol (DESIGN §4).

It drives `lapps.ws.client.ClientProtocol` over a blocking socket: no threads, no event
loop. Everything happens inside the call that waits (`recv`, `request`, `next_oon`,
`poll`, `close`): pings are answered, the server's close is echoed and out-of-order
notifications are dispatched there.

Raw services (messages as they are):

    with connect("ws://127.0.0.1:5083/echo") as c:
        c.send_text("hello")
        assert c.recv() == (1, b"hello")          # (opcode, payload)
        c.send_binary(b"\\x00\\x01")
        assert c.recv() == (2, b"\\x00\\x01")

LAppS services (one CBOR map per binary message):

    with connect("ws://127.0.0.1:5083/echo_lapps") as c:
        c.request("login", [{"user": "admin", "password": "admin"}])   # -> the result list
        c.on_oon(5, lambda message: print("time:", message))           # or c.next_oon(5)
        c.request("subscribe", [{"channel": 5}])
        c.poll(2.0)                     # let 2 s of notifications reach the callback
        c.notify("bye", cid=7)          # a client notification: never answered

`request()` waits for the next response on channel 0, since the server answers requests in
order; a request that timed out is remembered, so its late response is skipped and never
taken for the answer to a later request. A `timeout=None` argument means the client's
default timeout (the one given to `connect`), so no call waits forever.

Errors: every error the client raises is a `ClientError`, except timeouts (`TimeoutError`),
our own misuse (`ValueError`, `TypeError`) and socket errors (`OSError`).
"""

from __future__ import annotations

import socket
import ssl
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

import cbor2

from lapps.ws.client import EV_CLOSED, EV_OPEN, EV_PONG, EV_REJECTED, ClientProtocol, State
from lapps.ws.constants import CloseCode, Opcode

RECV_SIZE = 65536
_TEXT = Opcode.TEXT.value
_BINARY = Opcode.BINARY.value


class ClientError(Exception):
    """Base of the errors this client raises."""


class HandshakeRejected(ClientError):
    """The server answered the upgrade with `status` instead of 101 (404 unknown path, 403
    ACL or Origin, 503 every worker full, ...). `body` is the answer's body (bytes),
    `headers` its `(lower-case name, value)` pairs."""

    def __init__(self, status: int, body: bytes, headers: list[tuple[str, str]] | None = None):
        super().__init__(f"handshake rejected with HTTP {status}: {body[:200]!r}")
        self.status = status
        self.body = body
        self.headers = headers or []


class ConnectionClosed(ClientError):
    """The connection ended while we waited or sent: the server closed it (`code`,
    `reason` from its close frame), TCP dropped (1006), or the server broke the protocol
    and we failed the connection (1002, 1007, 1009, with our reason)."""

    def __init__(self, code: int, reason: str):
        super().__init__(f"connection closed: {code} {reason}".rstrip())
        self.code = code
        self.reason = reason


class LappsRequestError(ClientError):
    """The server answered a request with an error object (`status: 0`):
    `code` (JSON-RPC 2.0 numbering), `message`, and `data` when it sent one."""

    def __init__(self, code: int, message: str, data: Any = None):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.data = data


class LappsProtocolError(ClientError):
    """A message on a LAppS connection that is not a LAppS message (not CBOR, not a map,
    no cid, a text frame)."""


def _parse_url(url: str) -> tuple[bool, str, int, str, str]:
    """(tls, host to connect to, port, Host header, request target) of a ws:// or wss:// URL."""
    parts = urlsplit(url)
    if parts.scheme not in ("ws", "wss"):
        raise ValueError(f"not a ws:// or wss:// URL: {url!r}")
    if parts.fragment or "#" in url:
        raise ValueError(f"a WebSocket URL has no fragment: {url!r}")
    if not parts.hostname:
        raise ValueError(f"no host in {url!r}")
    tls = parts.scheme == "wss"
    default = 443 if tls else 80
    port = parts.port or default
    name = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    host_header = name if port == default else f"{name}:{port}"
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return tls, parts.hostname, port, host_header, target


def connect(url: str, timeout: float = 10, subprotocols: Iterable[str] = (),
            headers: Mapping[str, str] | Iterable[tuple[str, str]] | None = None,
            ssl_context: ssl.SSLContext | None = None,
            max_message_size: int = 16 * 1024 * 1024) -> "Client":
    """Open a WebSocket connection to `url` and complete the upgrade.

    `timeout` bounds the TCP connect, the TLS and HTTP handshakes, and is the default of
    every later call that waits. `subprotocols` are offered in order of preference (the
    chosen one is `client.subprotocol`); `headers` are added to the upgrade request. For
    wss://, `ssl_context` defaults to `ssl.create_default_context()` (certificates checked).

        c = connect("ws://127.0.0.1:5083/echo", timeout=5)
        c = connect("wss://example.com/app", ssl_context=my_ctx, headers={"Origin": "https://example.com"})

    Raises `HandshakeRejected` when the server answers anything but 101, `ConnectionClosed`
    when its 101 is not a valid WebSocket answer (code 1002) or it drops the connection,
    `TimeoutError`, and `OSError` when the TCP or TLS connection fails.
    """
    tls, host, port, host_header, target = _parse_url(url)
    if isinstance(headers, Mapping):
        headers = list(headers.items())
    proto = ClientProtocol(host_header, target, subprotocols, headers or (), max_message_size)
    deadline = time.monotonic() + timeout
    sock = socket.create_connection((host, port), timeout=timeout)
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if tls:
            context = ssl_context or ssl.create_default_context()
            sock.settimeout(max(deadline - time.monotonic(), 0.001))
            sock = context.wrap_socket(sock, server_hostname=host)
        client = Client(sock, proto, timeout)
        client._handshake(deadline)
    except BaseException:
        sock.close()
        raise
    return client


class Client:
    """One open WebSocket connection; made by `connect()`. Use it as a context manager so
    that it is closed (close handshake, then TCP) whatever happens:

        with connect("ws://127.0.0.1:5083/echo") as c:
            c.send_text("hi")
            opcode, payload = c.recv()
    """

    def __init__(self, sock: socket.socket, proto: ClientProtocol, timeout: float) -> None:
        self.sock = sock
        self.proto = proto
        self.timeout = timeout
        self.subprotocol: str | None = None
        self.closed: tuple[int, str] | None = None      # (code, reason) once the connection ended
        self._rejected: tuple[int, list[tuple[str, str]], bytes] | None = None
        self._inbox: deque[tuple[int, bytes]] = deque()  # data messages not read yet
        self._pongs: deque[bytes] = deque()
        self._responses: deque[dict] = deque()           # channel-0 messages not taken yet
        self._oons: dict[int, deque[Any]] = {}           # per channel: message lists (or errors)
        self._callbacks: dict[int, Callable[[Any], None]] = {}
        self._abandoned = 0                              # timed-out requests whose responses are due

    # ------------------------------------------------------------------ plumbing

    def _deadline(self, timeout: float | None) -> float:
        return time.monotonic() + (self.timeout if timeout is None else timeout)

    def _flush(self) -> None:
        out = self.proto.out
        if not out or self.sock.fileno() < 0:
            out.clear()
            return
        try:
            self.sock.sendall(out)
        except (BrokenPipeError, ConnectionResetError):
            pass   # the server is gone; the next read says how (its close frame, or EOF)
        out.clear()

    def _take_events(self) -> None:
        events = self.proto.events
        for kind, value in events:
            if kind == _TEXT or kind == _BINARY:
                self._inbox.append((kind, value))
            elif kind == EV_PONG:
                self._pongs.append(value)
            elif kind == EV_OPEN:
                self.subprotocol = value
            elif kind == EV_CLOSED:
                self.closed = value
            elif kind == EV_REJECTED:
                self._rejected = value
        events.clear()

    def _pump(self, deadline: float) -> None:
        """Read once (waiting until `deadline` at most), handle what came, send the answers.
        Raises TimeoutError when nothing came in time."""
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("timed out waiting for the server")
        self.sock.settimeout(remaining)
        try:
            data = self.sock.recv(RECV_SIZE)
        except (ConnectionResetError, BrokenPipeError):
            data = b""
        except socket.timeout:
            raise TimeoutError("timed out waiting for the server") from None
        if data:
            self.proto.receive_data(data)
        else:
            self.proto.receive_eof()
        self._take_events()
        self._flush()
        if self.closed is not None or self._rejected is not None:
            self.sock.close()

    def _wait(self, ready: Callable[[], Any], timeout: float | None) -> Any:
        """Pump until `ready()` returns something other than None; return it. What already
        arrived is served before a close is reported."""
        deadline = self._deadline(timeout)
        while True:
            value = ready()
            if value is not None:
                return value
            if self.closed is not None:
                raise ConnectionClosed(*self.closed)
            self._pump(deadline)

    def _handshake(self, deadline: float) -> None:
        self._flush()
        while self.proto.state == State.CONNECTING or self.proto.state == State.REJECTED:
            self._pump(deadline)
        if self._rejected is not None:
            status, headers, body = self._rejected
            raise HandshakeRejected(status, body, headers)
        if self.closed is not None:
            raise ConnectionClosed(*self.closed)

    def _send(self, opcode: int, payload: bytes) -> None:
        if not self.proto.send(opcode, payload):
            raise ConnectionClosed(*(self.closed or (CloseCode.ABNORMAL, "connection is closing")))
        self._flush()

    # ------------------------------------------------------------------ raw messages

    def send_text(self, text: str) -> None:
        """Send one text message."""
        self._send(_TEXT, text.encode("utf-8"))

    def send_binary(self, data: bytes | bytearray | memoryview) -> None:
        """Send one binary message."""
        self._send(_BINARY, data)

    def recv(self, timeout: float | None = None) -> tuple[int, bytes]:
        """The next message as `(opcode, payload)`: `(1, utf-8 bytes)` or `(2, bytes)`.

        Raises `ConnectionClosed` once the server closed and every message before its close
        was read, `TimeoutError` when none comes in time.
        """
        return self._wait(lambda: self._inbox.popleft() if self._inbox else None, timeout)

    def ping(self, payload: bytes = b"", timeout: float | None = None) -> None:
        """Send a ping and wait for the pong that carries the same payload (a liveness check).
        Messages that arrive meanwhile are kept for `recv()`."""
        if not self.proto.ping(payload):
            raise ConnectionClosed(*(self.closed or (CloseCode.ABNORMAL, "connection is closing")))
        self._flush()

        def pong() -> bool | None:
            while self._pongs:
                if self._pongs.popleft() == payload:
                    return True
            return None
        self._wait(pong, timeout)

    # ------------------------------------------------------------------ LAppS protocol

    def request(self, method: str, params: list | tuple | None = None, timeout: float | None = None) -> Any:
        """Call `method` on a LAppS service and return the response's `result`.

        Sends `{lapps: 1, method, params}` (no `params` when None) and waits for the next
        response on channel 0. OONs that arrive meanwhile go to their callbacks or queues.

            result = c.request("echo", ["hello", 42])      # -> ["hello", 42]

        Raises `LappsRequestError` when the response is an error object (`status: 0`),
        `LappsProtocolError` on a message that is not LAppS, `ConnectionClosed`, `TimeoutError`.
        """
        self._send_lapps(method, params, None)
        try:
            response = self._wait(self._take_response, timeout)
        except TimeoutError:
            self._abandoned += 1   # its response, when it comes, is not the next request's
            raise
        status = response.get("status")
        if status == 1:
            return response.get("result")
        if status == 0:
            raise _error_of(response)
        raise LappsProtocolError(f"response with status {status!r}: {response!r}")

    def notify(self, method: str, params: list | tuple | None = None, *, cid: int) -> None:
        """Send a client notification about channel `cid`: a request with a `cid`, which the
        server never answers.

            c.notify("unsubscribe", [{"channel": 5}], cid=5)
        """
        if isinstance(cid, bool) or not isinstance(cid, int):
            raise TypeError(f"cid must be an integer, not {cid!r}")
        self._send_lapps(method, params, cid)

    def on_oon(self, cid: int, fn: Callable[[Any], None] | None) -> None:
        """Call `fn(message)` for every OON on channel `cid` (`message` is the OON's message
        list; for an error object on that channel, a `LappsRequestError`). Notifications
        already queued for that channel are handed to `fn` at once. `fn=None` unregisters:
        later OONs are queued for `next_oon()` again. Callbacks run inside whichever call
        is waiting (`request`, `next_oon`, `poll`, ...); what they raise propagates from it.
        """
        if cid == 0:
            raise ValueError("channel 0 carries responses, not notifications")
        if fn is None:
            self._callbacks.pop(cid, None)
            return
        self._callbacks[cid] = fn
        queued = self._oons.pop(cid, None)
        while queued:
            fn(queued.popleft())

    def next_oon(self, cid: int, timeout: float | None = None) -> Any:
        """The next OON on channel `cid` that no callback took: its message list.

            tick = c.next_oon(5, timeout=2)     # e.g. [{"time": 1700000000000}]

        Raises `LappsRequestError` when that channel carried an error object instead,
        `ConnectionClosed`, `TimeoutError`.
        """
        if cid == 0:
            raise ValueError("channel 0 carries responses, not notifications")

        def ready() -> Any:
            self._drain_inbox()
            queue = self._oons.get(cid)
            return (queue.popleft(),) if queue else None
        (message,) = self._wait(ready, timeout)
        if isinstance(message, LappsRequestError):
            raise message
        return message

    def poll(self, timeout: float = 0.0) -> None:
        """Process what arrives for `timeout` seconds (0: only what is already readable,
        without waiting): OON callbacks run, pings are answered. Returns at the timeout;
        raises `ConnectionClosed` when the connection ends."""
        deadline = time.monotonic() + timeout
        while True:
            self._drain_inbox()
            if self.closed is not None:
                raise ConnectionClosed(*self.closed)
            try:
                self._pump(max(deadline, time.monotonic() + 0.001))
            except TimeoutError:
                self._drain_inbox()
                return
            if time.monotonic() >= deadline:
                self._drain_inbox()
                return

    def _send_lapps(self, method: str, params: list | tuple | None, cid: int | None) -> None:
        if not isinstance(method, str) or not method or "." in method or method.startswith("_"):
            raise ValueError(f"invalid LAppS method name {method!r} (no '.', no leading '_')")
        message: dict[str, Any] = {"lapps": 1, "method": method}
        if params is not None:
            if not isinstance(params, (list, tuple)):
                raise TypeError(f"params must be a list, not {type(params).__name__}")
            message["params"] = list(params)
        if cid is not None:
            message["cid"] = cid
        self._send(_BINARY, cbor2.dumps(message))

    def _drain_inbox(self) -> None:
        """Sort the messages received so far: responses to `_responses`, OONs to their
        callback or queue."""
        inbox = self._inbox
        while inbox:
            opcode, payload = inbox.popleft()
            if opcode != _BINARY:
                raise LappsProtocolError(f"text message on a LAppS connection: {payload[:100]!r}")
            try:
                message = cbor2.loads(payload)
            except (cbor2.CBORDecodeError, ValueError) as e:
                raise LappsProtocolError(f"message is not CBOR ({e}): {payload[:100]!r}") from None
            cid = message.get("cid") if isinstance(message, dict) else None
            if isinstance(cid, bool) or not isinstance(cid, int):
                raise LappsProtocolError(f"message without an integer cid: {message!r}")
            if cid == 0:
                if self._abandoned:
                    self._abandoned -= 1
                else:
                    self._responses.append(message)
                continue
            item = _error_of(message) if message.get("status") == 0 else message.get("message")
            fn = self._callbacks.get(cid)
            if fn is not None:
                fn(item)
            else:
                self._oons.setdefault(cid, deque()).append(item)

    def _take_response(self) -> dict | None:
        self._drain_inbox()
        return self._responses.popleft() if self._responses else None

    # ------------------------------------------------------------------ closing

    def close(self, code: int = CloseCode.NORMAL, reason: str = "", timeout: float | None = None) -> tuple[int, str]:
        """Close the connection: send a close frame, wait for the server's (at most
        `timeout`, default the client's), close TCP. Returns the server's `(code, reason)`;
        when the connection had already ended, how it ended. Raises `TimeoutError` when the
        server does not answer in time (TCP is closed all the same)."""
        try:
            if self.proto.close(code, reason):
                self._flush()
            if self.closed is None:
                deadline = self._deadline(timeout)
                while self.closed is None:
                    self._pump(deadline)
            return self.closed
        finally:
            self.sock.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc_info: object) -> None:
        try:
            self.close()
        except (TimeoutError, OSError):
            pass   # leaving the block anyway: the socket is closed by close()


def _error_of(message: dict) -> LappsRequestError:
    error = message.get("error")
    if not isinstance(error, dict):
        return LappsRequestError(-32603, f"error response without an error object: {message!r}")
    return LappsRequestError(error.get("code"), error.get("message", ""), error.get("data"))


__all__ = ["connect", "Client", "ClientError", "HandshakeRejected", "ConnectionClosed",
           "LappsRequestError", "LappsProtocolError"]
