"""The `cws` module: a WebSocket client for standalone Lua services (the original LAppS API).

    local ws, err = cws:new("ws://127.0.0.1:5083/echo", {
      onopen    = function(handler) cws:send(handler, "hello") end,
      onmessage = function(handler, message, opcode) print(message) end,
      onerror   = function(handler, message) print("cws: " .. message) end,
      onclose   = function(handler, code, reason) print("closed " .. code) end,
    })
    while not must_stop() do cws:eventLoop() end

API (colon or dot call style everywhere, as in the other host modules):

- `cws:new(uri, callbacks)` -> an object (a Lua table), or `nil, errmsg` for a bad URI or
  callbacks table. `uri` is `ws://host[:port][/path][?query]` (port 80 by default) or
  `wss://...` (TLS, port 443 by default, the certificate verified as cws_tls.py says).
  Nothing happens on the network until the next `cws:eventLoop()`. The object carries `obj.handler`, an integer unique
  within the process for its lifetime (the original used the socket's fd, which the
  kernel reuses; a counter never names two connections), and the methods
  `obj:send(data[, opcode])` and `obj:close([code[, reason]])`. Every callback is
  optional and gets the handler (the integer) first:
  `onopen(handler)` after the server's 101; `onmessage(handler, message, opcode)` per
  message (opcode 1 text, 2 binary; fragments already joined); `onerror(handler, message)`
  when the connection FAILED: connection refused, DNS, the 5 s open timeout (TCP connect,
  TLS and the opening handshake), a TLS failure (an untrusted certificate names the reason), a rejected handshake ("handshake rejected: HTTP 404 ..."), a bad 101,
  a protocol violation by the server (or its close with 1002/1007/1009), TCP dropped
  without a close frame, the 5 s close timeout; `onclose(handler, code, reason)` exactly
  once at the end, after `onerror` when there was one (`code` is the server's close code
  after a close handshake, 1006 when there was none; the original passed only the
  handler, so extra arguments do not disturb services written for it).
- `cws:send(handler_or_object, data[, opcode])` (opcode 1 text, the default, or 2 binary)
  -> `true`, or `false, errmsg` (unknown handler, not open yet or any more, bad opcode,
  text that is not UTF-8, a write error). Sends never block: what the socket does not
  take at once waits in the connection's buffer for the next `eventLoop` (no cap: a
  service that sends faster than the peer reads grows that buffer).
- `cws:close(handler_or_object[, code[, reason]])`, `obj:close([code[, reason]])`: starts
  the close handshake (code 1000 by default) -> `true` or `false, errmsg`; the server's
  answer, in a later `eventLoop`, fires `onclose`. Closing a connection that is not open
  yet drops it: `onclose(handler, 1006, ...)` in the next `eventLoop`, no `onerror`.
- `cws:eventLoop([timeout])` -> the number of connections not yet closed (connecting,
  open or closing): one pass that starts the pending connects, writes what is queued,
  waits up to `timeout` seconds (default 0.05; less when a timeout falls due sooner, 0
  when callbacks are already due) for sockets to become readable or writable, feeds what
  arrived to the protocol, then runs the callbacks in order. This is the only call that
  blocks (and a DNS look-up of a host name, done in the pass that connects, may take
  longer than `timeout`).

Callback errors are not swallowed (the original printed them and went on): a Lua error
raised in a callback propagates out of `cws:eventLoop()` to its caller as a Lua error
with its traceback, so a service's `run()` fails and the server logs it, unless the
service wraps the call in `pcall`. The callbacks not yet run stay queued and run first in
the next `eventLoop`, so a service that catches the error loses no event (and `onclose`
still comes once).

The sockets and the `ClientProtocol` state machines (lapps.ws.client: it parses, masks,
answers pings and echoes the server's close) live on the Python side; the Lua wrapper only
sorts out the call styles, builds the objects and calls the callbacks, so that their
errors are plain Lua errors. A connection an object no longer references stays open (Lua
5.1 tables have no `__gc`): close it.
"""

from __future__ import annotations

import errno
import functools
import os
import selectors
import socket
import ssl
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ...ws.client import EV_CLOSED, EV_OPEN, EV_REJECTED, ClientProtocol, State
from ..runtime import lua_type
from .cws_tls import TlsContexts, TlsOptions, handshake_step

DEFAULT_TIMEOUT = 0.05          # seconds an eventLoop() waits by default
OPEN_TIMEOUT = 5.0              # TCP connect plus opening handshake
CLOSE_TIMEOUT = 5.0             # our close frame sent, the server's answer due
READ_BUDGET = 1 << 20           # bytes read from one socket in one pass at most
_RECV_SIZE = 65536
_FAILURE_CODES = frozenset((1002, 1007, 1009))   # protocol error, bad data, too big
_CALLBACKS = (b"onopen", b"onmessage", b"onerror", b"onclose")
_DEFAULT_PORTS = {"ws": 80, "wss": 443}
_TLS_WRITE = 16384               # bytes per TLS write (one record)

_CWS_MODULE = (Path(__file__).parent / "cws.lua").read_bytes()


def _int(value: Any) -> int | None:
    if type(value) is float and value.is_integer():
        return int(value)
    if type(value) is int:
        return value
    return None


class _Refused(Exception):
    """A cws:send or cws:close that cannot be done; Lua gets (false, the message)."""


def _answering(method: Callable[..., Any]) -> Callable[..., Any]:
    """`method` as Lua calls it: what it returns, or (False, why) where it raised _Refused."""
    @functools.wraps(method)
    def call(*args: Any) -> Any:
        try:
            return method(*args)
        except _Refused as e:
            return False, str(e).encode()
    return call


def _utf8(data: bytes, refusal: str) -> str:
    """`data` as text; _Refused(`refusal`) if it is not UTF-8."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise _Refused(refusal) from None


class _Connection:
    """One client connection: where it goes, its socket, its protocol state, its callbacks."""

    __slots__ = ("handler", "host", "port", "tls", "tls_wait", "tls_retry", "where", "addrs", "proto", "sock",
                 "connected", "opened", "alive", "deadline", "mask", "onopen", "onmessage",
                 "onerror", "onclose")

    def __init__(self, handler: int, host: str, port: int, tls: bool, proto: ClientProtocol,
                 callbacks: dict[bytes, Any]):
        self.handler = handler
        self.host = host
        self.port = port
        self.tls = tls                          # wss://
        self.tls_wait = 0                       # selector events the TLS handshake waits for
        self.tls_retry = 0                      # bytes of a TLS write to repeat, as OpenSSL wants
        self.where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"   # for messages
        self.addrs: list[tuple[Any, ...]] | None = None   # addresses not tried yet, once resolved
        self.proto = proto
        self.sock: socket.socket | None = None
        self.connected = False                  # TCP is up
        self.opened = False                     # the 101 arrived
        self.alive = True                       # onclose not yet queued
        self.deadline: float | None = None
        self.mask = 0                           # selector events registered
        self.onopen = callbacks.get(b"onopen")
        self.onmessage = callbacks.get(b"onmessage")
        self.onerror = callbacks.get(b"onerror")
        self.onclose = callbacks.get(b"onclose")


class CwsClient:
    """The Python side of one runtime's `cws` module: every connection, one selector, and
    the queue of callbacks due (`(function, handler, arg, arg)`, which Lua pops and runs)."""

    def __init__(self, tls: TlsOptions | None = None) -> None:
        self._tls = TlsContexts(tls or TlsOptions())
        self._conns: dict[int, _Connection] = {}
        self._pending: list[_Connection] = []   # made by new(), connect in the next pass
        self._events: deque[tuple[Any, ...]] = deque()
        self._selector: selectors.BaseSelector | None = None
        self._next_handler = 1

    # ---- called from Lua ----------------------------------------------------------

    def new(self, uri: Any = None, callbacks: Any = None) -> Any:
        if type(uri) is not bytes:
            return None, (b"Usage: cws:new(uri, callbacks): uri is a ws:// or wss:// URI string, callbacks "
                          b"a table of functions onopen, onmessage, onerror, onclose")
        if lua_type(callbacks) != "table":
            return None, b"cws:new: callbacks must be a table (onopen, onmessage, onerror, onclose)"
        found: dict[bytes, Any] = {}
        for name in _CALLBACKS:
            fn = callbacks[name]
            if fn is not None and lua_type(fn) != "function":
                return None, b"cws:new: callbacks." + name + b" must be a function"
            found[name] = fn
        try:
            text = uri.decode("utf-8")
            parts = urlsplit(text)
            scheme = parts.scheme.lower()
            if scheme not in _DEFAULT_PORTS:
                raise ValueError(f"expects a ws:// or wss:// URI, got {text!r}")
            host = parts.hostname
            if not host:
                raise ValueError(f"no host in {text!r}")
            default = _DEFAULT_PORTS[scheme]
            port = parts.port or default   # ValueError for a port that is not a number or out of range
            path = parts.path or "/"
            if parts.query:
                path += "?" + parts.query
            shown = f"[{host}]" if ":" in host else host
            host_header = shown if port == default else f"{shown}:{port}"
            proto = ClientProtocol(host_header, path)
        except (UnicodeDecodeError, ValueError) as e:
            return None, f"cws:new: {e}".encode()
        if scheme == "wss":
            try:
                self._tls.context()
            except (ssl.SSLError, OSError) as e:
                return None, f"cws:new: cannot load cws_ca_file {self._tls.options.ca_file}: {e}".encode()
        handler = self._next_handler
        self._next_handler += 1
        conn = _Connection(handler, host, port, scheme == "wss", proto, found)
        self._conns[handler] = conn
        self._pending.append(conn)
        return handler

    @_answering
    def send(self, handler: Any = None, data: Any = None, opcode: Any = None) -> Any:
        conn = self._connection(handler, "send")
        op = 1 if opcode is None else _int(opcode)
        if (op != 1 and op != 2) or type(data) is not bytes:
            raise _Refused("Usage: cws:send(handler, data, opcode): data is a string, opcode 1 "
                           "(text, the default) or 2 (binary)")
        if conn.proto.state != State.OPEN:
            what = "not open yet" if not conn.opened else "closing"
            raise _Refused(f"cws:send: connection {conn.handler} is {what}")
        if op == 1:
            _utf8(data, "cws:send: a text message must be valid UTF-8 (send it as binary, opcode 2)")
        conn.proto.send(op, data)
        error = self._flush(conn)
        if error:
            self._finish(conn, error)
            raise _Refused(f"cws:send: {error}")
        return True

    @_answering
    def close(self, handler: Any = None, code: Any = None, reason: Any = None) -> Any:
        conn = self._connection(handler, "close")
        c = 1000 if code is None else _int(code)
        if c is None or (reason is not None and type(reason) is not bytes):
            raise _Refused("Usage: obj:close([code[, reason]]): code an integer, reason a string")
        text = _utf8(reason or b"", "cws:close: the reason must be valid UTF-8")
        proto = conn.proto
        if not conn.opened:
            self._finish(conn, None, 1006, "closed by the client before the connection opened")
            return True
        if proto.state != State.OPEN:
            raise _Refused(f"cws:close: connection {conn.handler} is already closing")
        try:
            proto.close(c, text)
        except ValueError as e:
            raise _Refused(f"cws:close: {e}") from None
        conn.deadline = time.monotonic() + CLOSE_TIMEOUT
        error = self._flush(conn)
        if error:
            self._finish(conn, error)
        return True

    def _connection(self, handler: Any, verb: str) -> _Connection:
        """The open connection `handler` names, for cws:`verb`; _Refused if there is none."""
        conn = self._conns.get(_int(handler))   # type: ignore[arg-type]
        if conn is None:
            raise _Refused(f"cws:{verb}: no open connection with handler {handler}")
        return conn

    def poll(self, timeout: Any = None) -> None:
        """One pass of the loop (Lua runs the callbacks it queued right after)."""
        wait = DEFAULT_TIMEOUT if timeout is None else float(timeout)
        if self._selector is None:
            self._selector = selectors.DefaultSelector()
        pending, self._pending = self._pending, []
        for conn in pending:
            if conn.alive:
                self._connect(conn)
        now = time.monotonic()
        for conn in list(self._conns.values()):
            if conn.deadline is not None and now >= conn.deadline:
                if conn.opened:
                    self._finish(conn, f"close handshake with {conn.where} timed out "
                                       f"after {CLOSE_TIMEOUT:g} s")
                else:
                    self._finish(conn, f"connection to {conn.where} not open within "
                                       f"{OPEN_TIMEOUT:g} s")
                continue
            if conn.connected and conn.proto.out:
                error = self._flush(conn)
                if error:
                    self._finish(conn, error)
                    continue
            if conn.alive:
                self._register(conn)
        if self._events or self._pending:
            wait = 0.0
        deadlines = [c.deadline for c in self._conns.values() if c.deadline is not None]
        if deadlines:
            wait = max(0.0, min(wait, min(deadlines) - now))
        if not self._selector.get_map():
            if wait > 0:
                time.sleep(wait)
            return
        for key, events in self._selector.select(wait):
            conn = key.data
            if not conn.alive:
                continue
            if conn.tls_wait:
                self._tls_handshake(conn)
                continue
            if not conn.connected:
                self._connected(conn)
                continue
            if events & selectors.EVENT_READ:
                self._read(conn)
            if conn.alive and conn.proto.out:
                error = self._flush(conn)
                if error:
                    self._finish(conn, error)
        for conn in list(self._conns.values()):
            if conn.alive and conn.sock is not None:
                self._register(conn)

    def next_event(self) -> Any:
        return self._events.popleft() if self._events else False

    def count(self) -> int:
        return len(self._conns)

    # ---- the sockets ---------------------------------------------------------------

    def _connect(self, conn: _Connection) -> None:
        """Start a non-blocking connect to the next address of `conn`."""
        if conn.addrs is None:
            conn.deadline = time.monotonic() + OPEN_TIMEOUT
            host, port = self._tls.options.address(conn.host, conn.port)
            try:
                infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            except OSError as e:
                conn.addrs = []
                return self._finish(conn, f"cannot resolve {conn.host}: {e.strerror or e}")
            conn.addrs = [(family, kind, proto, addr) for family, kind, proto, _, addr in infos]
        last = "no address"
        while conn.addrs:
            family, kind, proto, addr = conn.addrs.pop(0)
            sock = socket.socket(family, kind, proto)
            sock.setblocking(False)
            err = sock.connect_ex(addr)
            if err in (0, errno.EINPROGRESS, errno.EAGAIN, errno.EWOULDBLOCK):
                if family in (socket.AF_INET, socket.AF_INET6):
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                conn.sock = sock
                conn.mask = 0
                self._register(conn)
                return
            sock.close()
            last = os.strerror(err)
        self._finish(conn, f"cannot connect to {conn.where}: {last}")

    def _connected(self, conn: _Connection) -> None:
        """The socket of a connect in progress is writable: connected, or failed."""
        sock = conn.sock
        assert sock is not None
        err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            self._drop_socket(conn)
            if conn.addrs:   # another address of the host
                return self._connect(conn)
            return self._finish(conn, f"cannot connect to {conn.where}: {os.strerror(err)}")
        if conn.tls:
            if conn.mask and self._selector is not None:
                self._selector.unregister(sock)   # the TLS socket takes over the descriptor
            conn.mask = 0
            conn.sock = self._tls.context().wrap_socket(sock, server_hostname=conn.host,
                                                        do_handshake_on_connect=False)
            return self._tls_handshake(conn)
        self._opened_transport(conn)

    def _tls_handshake(self, conn: _Connection) -> None:
        """One step of the TLS handshake; once it is done the upgrade request goes out."""
        state, error = handshake_step(conn.sock, conn.where)   # type: ignore[arg-type]
        if state == "failed":
            return self._finish(conn, error)
        if state == "done":
            conn.tls_wait = 0
            return self._opened_transport(conn)
        conn.tls_wait = selectors.EVENT_READ if state == "read" else selectors.EVENT_WRITE
        self._register(conn)

    def _opened_transport(self, conn: _Connection) -> None:
        """TCP (and TLS) is up: send the upgrade request."""
        conn.connected = True
        error = self._flush(conn)   # the upgrade request
        if error:
            return self._finish(conn, error)
        self._register(conn)

    def _register(self, conn: _Connection) -> None:
        selector = self._selector
        if selector is None or conn.sock is None:
            return
        if conn.tls_wait:
            mask = conn.tls_wait
        elif conn.connected:
            mask = selectors.EVENT_READ | (selectors.EVENT_WRITE if conn.proto.out else 0)
        else:
            mask = selectors.EVENT_WRITE
        if mask == conn.mask:
            return
        if conn.mask:
            selector.modify(conn.sock, mask, conn)
        else:
            selector.register(conn.sock, mask, conn)
        conn.mask = mask

    def _flush(self, conn: _Connection) -> str | None:
        """Write what the socket takes now; an error message when the connection broke."""
        sock = conn.sock
        out = conn.proto.out
        if sock is None or not conn.connected:
            return None
        while out:
            if conn.tls:
                # a TLS write that wanted the socket must be repeated with the same bytes
                size = conn.tls_retry or min(len(out), _TLS_WRITE)
                chunk: bytes | bytearray = bytes(out[:size])
            else:
                chunk = out
            try:
                n = sock.send(chunk)
            except (ssl.SSLWantWriteError, ssl.SSLWantReadError):
                conn.tls_retry = len(chunk)
                break
            except (BlockingIOError, InterruptedError):
                break
            except OSError as e:
                return f"send to {conn.where} failed: {e.strerror or e}"
            conn.tls_retry = 0
            del out[:n]
        return None

    def _read(self, conn: _Connection) -> None:
        sock = conn.sock
        proto = conn.proto
        assert sock is not None
        got = 0
        while conn.alive:
            # past the budget, go on only while TLS holds decrypted bytes the selector cannot see
            if got >= READ_BUDGET and not (conn.tls and sock.pending()):   # type: ignore[attr-defined]
                return
            try:
                data = sock.recv(_RECV_SIZE)
            except (BlockingIOError, InterruptedError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
                return
            except ssl.SSLZeroReturnError:   # the server's TLS close_notify: as end of stream
                data = b""
            except OSError as e:
                return self._finish(conn, f"receive from {conn.where} failed: {e.strerror or e}")
            if not data:
                proto.receive_eof()
                self._drain(conn)
                if conn.alive:
                    self._finish(conn, f"{conn.where} closed the connection")
                return
            got += len(data)
            proto.receive_data(data)
            self._drain(conn)

    def _drain(self, conn: _Connection) -> None:
        """Turn the protocol's events into callbacks due."""
        proto = conn.proto
        events = proto.events
        h = conn.handler
        queue = self._events.append
        try:
            for kind, value in events:
                if kind == 1 or kind == 2:
                    if conn.onmessage is not None:
                        queue((conn.onmessage, h, value, int(kind)))
                elif kind == EV_OPEN:
                    conn.opened = True
                    conn.deadline = None
                    if conn.onopen is not None:
                        queue((conn.onopen, h))
                elif kind == EV_REJECTED:
                    status, _headers, body = value   # type: ignore[misc]
                    detail = body[:200].decode("utf-8", "replace").strip()
                    self._finish(conn, f"handshake rejected: HTTP {status}"
                                       + (f" ({detail})" if detail else ""), 1006, f"HTTP {status}")
                    break
                elif kind == EV_CLOSED:
                    code, reason = value   # type: ignore[misc]
                    error = None
                    if not conn.opened:
                        error = f"handshake with {conn.where} failed: {reason}"
                    elif not proto.close_received or code in _FAILURE_CODES:
                        error = f"connection failed ({code}): {reason}"
                    self._finish(conn, error, code, reason)
                    break
                # EV_PONG: nothing to tell the service
        finally:
            events.clear()

    def _drop_socket(self, conn: _Connection) -> None:
        sock = conn.sock
        if sock is None:
            return
        if conn.mask and self._selector is not None:
            try:
                self._selector.unregister(sock)
            except (KeyError, ValueError):
                pass
        conn.mask = 0
        conn.sock = None
        conn.connected = False
        sock.close()

    def _finish(self, conn: _Connection, error: str | None, code: int = 1006,
                reason: str | None = None) -> None:
        """The connection is over: close the socket, queue onerror (if `error`) and onclose."""
        if not conn.alive:
            return
        conn.alive = False
        self._conns.pop(conn.handler, None)
        if conn.connected and conn.proto.out:
            self._flush(conn)   # best effort: our close frame, or the echo of the server's
        self._drop_socket(conn)
        h = conn.handler
        if error is not None and conn.onerror is not None:
            self._events.append((conn.onerror, h, error.encode()))
        if conn.onclose is not None:
            if reason is None:
                reason = error or ""
            self._events.append((conn.onclose, h, int(code), reason.encode()))


def install_cws(lua: Any, values: Any = None, tls: TlsOptions | None = None) -> Any:
    """Build the `cws` module table in `lua`; `tls` is what the service's config says about
    wss://. (`values` is taken for symmetry with the other host modules; messages are Lua
    strings, so no conversion is needed.)"""
    client = CwsClient(tls)
    return lua.execute(_CWS_MODULE, client.new, client.send, client.close, client.poll,
                       client.next_event, client.count, name="=cws")
