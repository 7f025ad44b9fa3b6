"""The fault barrier's bookkeeping, and the hidden hook that tests it.

The barrier itself is a `try` around each connection event in the worker loop (worker.py):
an exception nothing expected, raised while one connection's bytes were read, parsed,
dispatched to Lua, framed or flushed, closes that connection and nothing else. What happens
to the exception is here: it is counted in the worker's slot (`lapps_internal_errors_total`)
and logged with the service, the peer and the traceback, once per site (exception type,
file, line) and interval: a bug that every connection of a flood hits writes one
traceback and then a count, never a line per connection.

Fault injection (tests only, off unless set): `LAPPS_FAULT_INJECT=parser|lua_reply|flush`,
read when a worker starts, makes the connections that send the message `MARKER` fail at
that site. Production pays one comparison per connection, at accept or upgrade time:

- `parser`: the connection's protocol object raises from inside `receive_data`, at the
  moment the marker message completes (mid-read: the rest of the read is abandoned);
- `lua_reply`: the host receives a malformed kept reply for the marker message from Lua's
  onMessage, so framing the reply raises (TypeError) in the host's reply handling;
- `flush`: the connection's socket raises the first time a send carries the marker's echo.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable
from typing import Any

from lapps.logs import RepeatLimiter
from lapps.ipc.slots import SlotWriter
from lapps.ws.protocol import ServerProtocol

FAULT_ENV = "LAPPS_FAULT_INJECT"
SITES = ("parser", "lua_reply", "flush")
MARKER = b"lapps-fault-inject"


class InjectedFault(RuntimeError):
    """Raised by the fault-injection hook; nothing on the barrier treats it specially."""


def injected_site(log: logging.Logger) -> str:
    """The site named by LAPPS_FAULT_INJECT ('' when unset); read once, at worker start."""
    site = os.environ.get(FAULT_ENV, "")
    if site and site not in SITES:
        log.warning("%s=%s ignored: not one of %s", FAULT_ENV, site, ", ".join(SITES))
        return ""
    if site:
        log.warning("fault injection on (%s=%s): a test hook, never for production", FAULT_ENV, site)
    return site


class Barrier:
    """Counts and logs what the worker's fault barrier caught (one per worker)."""

    def __init__(self, limiter: RepeatLimiter, slot: SlotWriter) -> None:
        self.slot = slot
        self.limiter = limiter

    def connection_failed(self, conn: Any, error: Exception) -> None:
        """`error` escaped the work of one connection event; the caller closes `conn`."""
        self.slot.internal_errors += 1
        route = conn.service
        self.limiter.error(_site(error), "internal error on a connection of service %s from %s "
                           "(handler %d): %r; closing that connection",
                           route.config.name if route is not None else "-", conn.peer, conn.handler,
                           error, exc_info=error)

    def handler_failed(self, fd: int, error: Exception) -> None:
        """`error` escaped the handler of a descriptor that is not a client (channel, bus link)."""
        self.slot.internal_errors += 1
        self.limiter.error(_site(error), "internal error in the handler of descriptor %d: %r",
                           fd, error, exc_info=error)


def _site(error: BaseException) -> tuple[str, str, int]:
    """Where `error` was raised: its type and the innermost frame's file and line."""
    tb = error.__traceback__
    if tb is None:
        return type(error).__name__, "?", 0
    while tb.tb_next is not None:
        tb = tb.tb_next
    return type(error).__name__, tb.tb_frame.f_code.co_filename, tb.tb_lineno


# ---------------------------------------------------------------------- the test hook

class FaultyProtocol(ServerProtocol):
    """`parser`: a ServerProtocol whose message callback raises on the marker, so the
    exception leaves `receive_data` from inside the parse loop."""

    __slots__ = ()

    @property   # type: ignore[override]
    def on_message(self) -> Callable[[int, bytes], None] | None:
        return ServerProtocol.on_message.__get__(self)   # type: ignore[attr-defined]

    @on_message.setter
    def on_message(self, callback: Callable[[int, bytes], None] | None) -> None:
        if callback is not None:
            inner = callback

            def callback(opcode: int, payload: bytes) -> None:
                if payload == MARKER:
                    raise InjectedFault("parser")
                inner(opcode, payload)
        ServerProtocol.on_message.__set__(self, callback)   # type: ignore[attr-defined]


def faulty_reply(on_message: Callable[..., Any]) -> Callable[..., Any]:
    """`lua_reply`: Lua's onMessage, except that the marker's reply comes back malformed."""
    def on_message_faulty(handler: int, opcode: int, payload: bytes, used: int) -> Any:
        ok = on_message(handler, opcode, payload, used)
        return (True, opcode, None) if payload == MARKER else ok
    return on_message_faulty


class FaultySocket(socket.socket):
    """`flush`: a client socket whose first send that carries the marker raises."""

    __slots__ = ("tripped",)

    def send(self, data: Any, flags: int = 0) -> int:
        if not getattr(self, "tripped", False) and MARKER in data:
            self.tripped = True
            raise InjectedFault("flush")
        return super().send(data, flags)


def faulty_socket(sock: socket.socket) -> socket.socket:
    """The same descriptor as a FaultySocket (`sock` is detached)."""
    faulty = FaultySocket(sock.family, sock.type, sock.proto, fileno=sock.detach())
    faulty.setblocking(False)
    return faulty
