"""The worker's side of the Lua host API (`ws`, `bcast`, `mqr`) and message dispatch.

The IO worker owns sockets and the loop; this module owns what services see of them: a
handler is a connection, `ws:send` queues on its protocol, `bcast` channels map to local
subscribers and to the bus, and each connection gets a message callback bound once at
upgrade time (raw or LAppS protocol) so that a message costs one Lua call.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from lapps.config import Config, ConfigError, ServiceConfig, load_config
from lapps.ipc.bus import BusError
from lapps.ipc.interface import Bus
from lapps.startup import reactive_order
from lapps.ipc.slots import SlotWriter
from lapps.lapps_protocol import (INVALID_REQUEST, LappsError, decode_message, encode,
                                  encode_answer, error_response, validate_outgoing)
from lapps.lapps_fastpath import request_args
from lapps.logs import RepeatLimiter
from lapps.lua.runtime import LuaError, describe_lua_error
from lapps.lua.service import Bcast, Mqr, ReactiveService, ServiceBootError
from lapps.acl import Acl
from lapps.ws.constants import CloseCode, is_valid_close_code
from lapps.ws.frames import frame_header
from lapps.ws.protocol import State

from .connection import Connection
from .fanout import send_to_all
from .faults import faulty_reply
from .outbound import fits

_TEXT, _BINARY = 1, 2   # the raw opcodes ws:send accepts
BIG_MESSAGE = 65536     # messages above this ask the service's state for room first


@dataclass(slots=True)
class Route:
    """A reactive service as mounted on its request target in this worker."""

    config: ServiceConfig
    instance: ReactiveService
    acl: Acl
    extra_headers: tuple[tuple[str, str], ...]
    conns: int = 0           # connections it serves (they keep it after a deploy replaced it)
    retired: bool = False    # replaced by a deploy: shut down once its last connection ends


def frame_kept(send_plain: Callable[[int, bytes], None], kept: tuple, i: int) -> int:
    """Queue with `send_plain` (the connection's `ServerProtocol.plain_sender()`) the
    replies Lua kept back, from `kept[i]` on; return how many.

    An entry is `opcode, data` (a raw message) or `0, n, v1..vn` (the LAppS answer
    {cid = 0, status = 1, result = {v1..vn}}): the format is written down once, in
    lapps/lua/modules/ws.lua, "The kept-reply wire format". Lua checked each as ws:send would, and
    keeps none where compression or auto-fragmenting is on, so they are framed plainly.
    """
    n = len(kept)
    count = 0
    while i < n:
        opcode = kept[i]
        if opcode:
            data = kept[i + 1]
            i += 2
        else:
            size = kept[i + 1]
            data = encode_answer(kept[i + 2:i + 2 + size])
            opcode = _BINARY
            i += 2 + size
        send_plain(opcode, data)
        count += 1
    return count


class Loop(Protocol):
    """What the host needs from the IO worker's loop."""

    by_handler: dict[int, Connection]
    slot: SlotWriter
    log: logging.Logger
    repeats: RepeatLimiter

    def mark_dirty(self, conn: Connection) -> None: ...
    def watch(self, fd: int, on_readable: Callable[[], None]) -> None: ...
    def unwatch(self, fd: int) -> None: ...
    def close_connection(self, conn: Connection, code: int, reason: str) -> None: ...
    def make_room(self, conn: Connection) -> bool: ...
    now: float


class ServiceHost:
    """Hosts one instance of every reactive service for one IO worker."""

    def __init__(self, loop: Loop, config: Config, bus: Bus, fault_site: str = "") -> None:
        """`bus`: this worker's, opened for it by the composition root (workers/main.py)."""
        self.loop = loop
        self.fault_site = fault_site   # the test hook of workers/faults.py; '' in production
        self.config = config
        self.log = loop.log
        self.bus = bus
        self.subscribers: dict[int, set[int]] = {}   # bcast channel -> local handlers
        self.max_outbound = config.limits.max_outbound_buffer
        self.rate = config.limits.max_messages_per_second
        self.routes: dict[str, Route] = {}

    def load(self) -> None:
        """One instance of every reactive service the server starts (lapps/startup.py), in
        dependency order; raises ServiceBootError on failure."""
        for name in reactive_order(self.config):   # dependencies first; not started: 404
            route = self._mount(self.config.services[name])
            self.routes[route.config.request_target] = route

    def _mount(self, svc: ServiceConfig) -> Route:
        """A started instance of `svc` and its route; raises ServiceBootError."""
        bcast = Bcast(self.bcast_create, self.bcast_subscribe, self.bcast_unsubscribe, self.bcast_publish)
        mqr = Mqr(self.bus.post, self.bus.try_recv, None)
        instance = ReactiveService(svc, self.log, self.send, self.send_message, self.close,
                                   bcast=bcast, mqr=mqr, deferred=self.deferred,
                                   max_outbound=self.max_outbound)
        instance.start()
        return Route(svc, instance, Acl(svc.acl.policy, svc.acl.exclude), tuple(svc.extra_headers.items()))

    def redeploy(self, name: str, source: str | None) -> str | None:
        """Service `name` was deployed (lapps/deploy.py): serve the version the config file
        `source` now says from here on. New connections get the new instance; those already
        open keep the old one, which shuts down when the last of them ends. Returns why it
        could not (the running version then stays), or None."""
        try:
            config = load_config(source)
        except ConfigError as e:
            return f"config: {e}"
        old = next((r for r in self.routes.values() if r.config.name == name), None)
        svc = config.services.get(name)
        new = None
        if svc is not None and not svc.standalone and name in reactive_order(config):
            try:
                new = self._mount(svc)
            except ServiceBootError as e:
                return str(e)
        if old is not None:
            del self.routes[old.config.request_target]
            self._retire(old)
        if new is not None:
            self.routes[svc.request_target] = new
        self.config = config
        self.log.info("deploy: service %s %s", name, "now served" if new else "no longer served")
        return None

    def _retire(self, route: Route) -> None:
        route.retired = True
        if not route.conns:
            route.instance.shutdown()

    def shutdown(self) -> None:
        for route in self.routes.values():
            route.instance.shutdown()
        self.bus.close()

    # ------------------------------------------------------------------ dispatch

    def dispatcher(self, conn: Connection, route: Route) -> Callable[[int, bytes], None]:
        """The connection's message callback; with a message rate limit, behind a bucket."""
        dispatch = self._dispatcher(conn, route)
        if not self.rate:
            return dispatch
        rate, loop = self.rate, self.loop
        conn.tokens, conn.tokens_at = max(rate, 1.0), loop.now

        def limited(opcode: int, payload: bytes) -> None:
            now = loop.now
            tokens = min(max(rate, 1.0), conn.tokens + (now - conn.tokens_at) * rate)
            conn.tokens_at = now
            if tokens < 1.0:
                return loop.close_connection(conn, CloseCode.POLICY_VIOLATION,
                                             f"over {rate:g} messages per second")
            conn.tokens = tokens - 1.0
            dispatch(opcode, payload)
        return limited

    def _dispatcher(self, conn: Connection, route: Route) -> Callable[[int, bytes], None]:
        """The message callback proper; everything it needs is bound here, once.

        Lua answers onMessage with `ok` alone, or with `ok` and the replies to this
        connection that it kept back (lapps/lua/modules/ws.lua): those are queued
        here with the protocol's plain sender, bound once. The worker's _read, which every
        call runs under, queues the flush. One kept raw reply (an echo) is queued inline;
        anything else goes through `_settle`.
        """
        instance = route.instance
        handler = conn.handler
        slot = self.loop.slot
        proto = conn.proto
        out = proto.out   # read only: its length is what Lua's kept replies join
        send_plain = proto.plain_sender()
        settle, raised, too_big = self._settle, self._raised, self._too_big

        if route.config.protocol != "lapps":
            on_message = instance.on_message
            if self.fault_site == "lua_reply":
                on_message = faulty_reply(on_message)

            def dispatch(opcode: int, payload: bytes) -> None:
                slot.messages_in += 1
                if len(payload) > BIG_MESSAGE and not instance.make_room(len(payload)):
                    return too_big(conn, len(payload))
                # what is queued already, for the replies Lua may keep back; -1 where a
                # frame's size is not known before it is made
                used = -1 if proto.deflate is not None or proto.auto_fragment else len(out)
                try:
                    ok = on_message(handler, opcode, payload, used)
                except Exception as e:   # LuaError, or a bug in a host function it called
                    return raised(conn, e)
                if ok is True:
                    return
                if type(ok) is tuple and len(ok) == 3 and ok[0] is True and ok[1]:
                    send_plain(ok[1], ok[2])
                    slot.messages_out += 1
                    return
                settle(conn, ok, send_plain)
            return dispatch

        on_request = instance.on_request
        request_parts = instance.values.request_parts
        refuse = self._refuser(conn, route.config.lapps_max_errors)
        fast = request_args

        def dispatch_lapps(opcode: int, payload: bytes) -> None:
            slot.messages_in += 1
            if len(payload) > BIG_MESSAGE and not instance.make_room(len(payload)):
                return too_big(conn, len(payload))
            if opcode != _BINARY:
                return refuse(LappsError(INVALID_REQUEST, "LAppS messages are binary CBOR, not text"))
            used = -1 if proto.deflate is not None or proto.auto_fragment else len(out)
            # the common request read straight into onMessage's arguments; None: anything
            # else, which the full path decodes, checks and answers (lapps/lapps_fastpath.py)
            args = fast(payload) if fast is not None else None
            if args is None:
                try:
                    msg_type, message = decode_message(payload)
                except LappsError as e:
                    return refuse(e)
                args = (msg_type, *request_parts(message))
            try:
                ok = on_request(handler, used, *args)
            except Exception as e:
                return raised(conn, e)
            if ok is True:
                return
            # the usual answer alone, {cid = 0, status = 1, result = {scalars}}, inline
            if type(ok) is tuple and ok[0] is True and len(ok) > 2 and ok[1] == 0 and len(ok) == 3 + ok[2]:
                send_plain(_BINARY, encode_answer(ok[3:]))
                slot.messages_out += 1
                return
            settle(conn, ok, send_plain)
        return dispatch_lapps

    def _too_big(self, conn: Connection, nbytes: int) -> None:
        """A message the service's Lua state has no room for, even after a collection."""
        svc = conn.service.config
        self.loop.repeats.warning(("too big", svc.name), "service %s: a message of %d bytes does not fit "
                                  "in its Lua heap (max_memory %d): closed with 1009",
                                  svc.name, nbytes, svc.max_memory)
        self.loop.close_connection(conn, CloseCode.MESSAGE_TOO_BIG, "message too big for the service")

    def _settle(self, conn: Connection, ok: Any, send_plain: Callable[[int, bytes], None]) -> None:
        """onMessage's result other than a bare true: queue the kept replies (with the
        connection's plain sender), then `ok` must be true or the service failed."""
        if type(ok) is tuple:
            self.loop.slot.messages_out += frame_kept(send_plain, ok, 1)
            ok = ok[0]
            if ok is True:
                return
        self.lua_failed(conn, f"onMessage returned {ok!r}, not true")

    def _raised(self, conn: Connection, error: Exception) -> None:
        """onMessage raised: replies it made before the error still go out, then 1011."""
        kept = conn.service.instance.take_kept()
        if kept:
            self._send_kept(conn, kept if type(kept) is tuple else (kept,))
        self.lua_failed(conn, error)

    def _refuser(self, conn: Connection, max_errors: int) -> Callable[[LappsError], None]:
        """What the server itself answers to a message that never reaches Lua (DESIGN §4)."""
        def refuse(error: LappsError) -> None:
            conn.lapps_errors += 1
            conn.proto.send(_BINARY, encode(error_response(error.code, error.message)))
            self.loop.mark_dirty(conn)
            if max_errors and conn.lapps_errors >= max_errors:
                self.loop.close_connection(conn, CloseCode.UNSUPPORTED_DATA,
                                           f"{conn.lapps_errors} invalid LAppS messages")
        return refuse

    def lua_failed(self, conn: Connection, what: str | BaseException) -> None:
        """A service error costs its connection (1011) and nothing else."""
        self.loop.slot.lua_errors += 1
        route = conn.service
        if isinstance(what, LuaError):
            route.instance.recover(what)
            what = describe_lua_error(what)
        elif isinstance(what, BaseException):
            # not the service's fault: a host function failed; keep the Python traceback
            self.loop.repeats.error(("host error", route.config.name, repr(what)), "host error under service %s",
                                    route.config.name, exc_info=what)
            what = f"internal error: {what!r}"
        svc = route.config
        # one line per distinct error and interval: a service failing on every message
        # of every connection must not write a traceback per message
        self.loop.repeats.error((svc.name, what), "service %s (%s), handler %d: %s",
                                svc.name, svc.script, conn.handler, what)
        self.loop.close_connection(conn, CloseCode.INTERNAL_ERROR, "service error")

    def forget(self, conn: Connection) -> None:
        """A connection ended: it leaves its bcast channels, then the service hears of it."""
        if conn.channels:
            for channel in conn.channels:
                subs = self.subscribers.get(channel)
                if subs:
                    subs.discard(conn.handler)
                    if not subs:
                        self.bus.unsubscribe(channel)
            conn.channels = None
        route = conn.service
        route.instance.disconnect(conn.handler)
        route.conns -= 1
        if route.retired and not route.conns:
            route.instance.shutdown()

    # ------------------------------------------------------------------ ws

    def send(self, handler: Any, opcode: Any, data: Any) -> Any:
        """`ws:send(handler, opcode, message)`: queue a frame; never blocks."""
        conn = self.loop.by_handler.get(handler)
        if conn is None:
            return False, b"no such connection"
        if type(data) is not bytes:
            return False, b"message must be a string"
        if opcode == _TEXT:
            try:
                data.decode("utf-8")
            except UnicodeDecodeError:
                return False, b"text message is not valid UTF-8"
        elif opcode != _BINARY:
            return False, b"opcode must be 1 (text) or 2 (binary)"
        return self._queue(conn, opcode, data)

    def _queue(self, conn: Connection, opcode: int, data: bytes) -> Any:
        """Queue one message for `conn` within its outbound buffer's limit; never blocks."""
        if not fits(len(conn.proto.out), len(data), self.max_outbound) and not self.loop.make_room(conn):
            return False, b"outbound buffer full"
        if not conn.proto.send(opcode, data):
            return False, b"connection is closing"
        self.loop.slot.messages_out += 1
        self.loop.mark_dirty(conn)
        return True

    def deferred(self, handler: Any, *kept: Any) -> None:
        """Replies Lua kept back for `handler`, handed over before a send that must follow them."""
        conn = self.loop.by_handler.get(handler)
        if conn is not None:
            self._send_kept(conn, kept)

    def _send_kept(self, conn: Connection, kept: tuple) -> None:
        # kept replies are handed over before any direct send or close, so the connection is
        # still open here; the check keeps proto.send's rule (nothing after the close frame)
        if conn.proto.state == State.OPEN:
            self.loop.slot.messages_out += frame_kept(conn.proto.plain_sender(), kept, 0)
            self.loop.mark_dirty(conn)

    def send_message(self, handler: Any, message: Any) -> Any:
        """`ws:send(handler, table)`: a LAppS message, validated and CBOR-encoded."""
        conn = self.loop.by_handler.get(handler)
        if conn is None:
            return False, b"no such connection"
        if conn.service.config.protocol != "lapps":
            return False, b"ws:send(handler, table) is for LAppS-protocol services"
        try:
            validate_outgoing(message)
        except ValueError as e:
            return False, str(e).encode()
        return self._queue(conn, _BINARY, encode(message))

    def close(self, handler: Any, code: Any = None, reason: Any = None) -> Any:
        """`ws:close(handler, code[, reason])`: start the closing handshake."""
        conn = self.loop.by_handler.get(handler)
        if conn is None:
            return False, b"no such connection"
        code = CloseCode.NORMAL if code is None else code
        if type(code) is float and code.is_integer():
            code = int(code)
        if type(code) is not int or not is_valid_close_code(code):
            return False, b"invalid close code"
        text = ""
        if reason is not None:
            if type(reason) is not bytes:
                return False, b"reason must be a string"
            try:
                text = reason.decode("utf-8")
            except UnicodeDecodeError:
                return False, b"reason is not valid UTF-8"
        self.loop.close_connection(conn, code, text)
        return True

    # ------------------------------------------------------------------ bcast

    def bcast_create(self, channel: int) -> Any:
        """Channels are numbers that exist once used; create is idempotent, as in the original."""
        self.subscribers.setdefault(channel, set())
        return True

    def bcast_subscribe(self, channel: int, handler: int) -> Any:
        conn = self.loop.by_handler.get(handler)
        if conn is None:
            return False, b"no such connection"
        subs = self.subscribers.setdefault(channel, set())
        if not subs:
            self.bus.subscribe(channel)
        subs.add(handler)
        if conn.channels is None:
            conn.channels = set()
        conn.channels.add(channel)
        return True

    def bcast_unsubscribe(self, channel: int, handler: int) -> Any:
        subs = self.subscribers.get(channel)
        if not subs or handler not in subs:
            return False, b"not subscribed"
        subs.discard(handler)
        if not subs:
            self.bus.unsubscribe(channel)
        conn = self.loop.by_handler.get(handler)
        if conn is not None and conn.channels:
            conn.channels.discard(channel)
        return True

    def bcast_publish(self, channel: int, message: Any) -> Any:
        """`bcast:send(channel, table)`: encode once, hand to every worker (this one too)."""
        try:
            validate_outgoing(message)
            self.bus.publish(channel, encode(message))
        except (ValueError, BusError) as e:
            return False, str(e).encode()
        return True

    def deliver(self, packets: list[tuple[int, bytes]]) -> None:
        """Broadcast messages from the bus (its poll hook, `Bus.attach`): frame each once,
        send the same bytes to its local subscribers (workers/fanout.py)."""
        slot = self.loop.slot
        for channel, payload in packets:
            subs = self.subscribers.get(channel)
            if subs:
                frame = frame_header(_BINARY, len(payload)) + payload
                slot.messages_out += send_to_all(self.loop, subs, frame, self.max_outbound)
