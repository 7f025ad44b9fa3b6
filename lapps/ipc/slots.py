"""Shared-memory counters: one fixed-layout slot per worker, one writer per slot.

The block is an anonymous shared `mmap` made by the master before it forks, so every
child inherits the same pages. A worker writes only its own slot (one packed copy per
loop turn); the master and `lapps status` only read. There are no locks: a reader may
see a slot mid-update, which for counters and a heartbeat is harmless (the next read is
right), and the balancer's decisions are advisory anyway.

A slot has two parts. The core (pid, state, heartbeat, the load figures the balancer
reads, the message and byte counters) is written every loop turn. The tables (handshake
results by HTTP status, close codes sent and received, open WebSockets per service)
change only when a connection opens or ends, so the writer packs them only on a turn
where one of them changed: still one copy per turn, of the whole slot or of its
core, and a message costs nothing more than before.
"""

from __future__ import annotations

import mmap
import struct
from dataclasses import dataclass
from enum import IntEnum


class WorkerState(IntEnum):
    EMPTY = 0      # no process in this slot
    BOOTING = 1    # forked, loading services
    RUNNING = 2    # taking connections
    DRAINING = 3   # finishing its connections, taking none
    STOPPED = 4    # exited


# The fixed tables. Their order is the layout: change it only together with every reader.
# Handshake results: "101" upgraded, an HTTP error status the server answered, "other" (an
# error status not listed), "aborted" (the connection ended before any answer: EOF,
# handshake timeout, failed TLS handshake).
HANDSHAKE_RESULTS = ("101", "400", "403", "404", "426", "429", "431", "503", "other", "aborted")
_HANDSHAKE_INDEX = {int(s): i for i, s in enumerate(HANDSHAKE_RESULTS) if s.isdigit()}
_HS_UPGRADED = HANDSHAKE_RESULTS.index("101")
_HS_OTHER = HANDSHAKE_RESULTS.index("other")
_HS_ABORTED = HANDSHAKE_RESULTS.index("aborted")
# Close codes 1000-1015 (1005: a close frame without a code; 1006: no close frame at all),
# then "other" (application codes 3000-4999 and anything else).
CLOSE_CODES = tuple(str(c) for c in range(1000, 1016)) + ("other",)
_CLOSE_OTHER = len(CLOSE_CODES) - 1
_NO_CLOSE_FRAME = 1006
MAX_SERVICES = 16   # open-WebSocket counters per slot: the first 16 reactive services

_N_HS, _N_CLOSE = len(HANDSHAKE_RESULTS), len(CLOSE_CODES)
_OFF_SENT = _N_HS
_OFF_RECEIVED = _OFF_SENT + _N_CLOSE
_OFF_SERVICES = _OFF_RECEIVED + _N_CLOSE
_N_TABLES = _OFF_SERVICES + MAX_SERVICES

# core: pid, state, heartbeat (CLOCK_MONOTONIC, system-wide on Linux), connections,
# handshakes in progress, connections taken from the channel, messages in/out,
# bytes in/out, outbound backlog bytes, Lua errors, messages dropped for slow consumers,
# internal errors (the fault barrier closed a connection)
_CORE = struct.Struct("=qqdqqqqqqqqqqq")
# core + tables: handshake results, close codes sent, close codes received, per-service connections
_LAYOUT = struct.Struct(_CORE.format + "q" * _N_TABLES)
_LAYOUT_LEGACY_FIELDS = 11   # the core's counters after pid, state, heartbeat
SLOT_SIZE = 640
assert _LAYOUT.size <= SLOT_SIZE
assert _LAYOUT.size == _CORE.size + 8 * _N_TABLES


def service_indexes(services) -> dict[str, int]:
    """Counter index of each reactive service: config order, the first MAX_SERVICES.

    `services` is `Config.services`; the master (labels) and the worker (counting) both
    derive the table from the config the worker was forked with, so they agree.
    """
    names = [name for name, svc in services.items() if not svc.standalone]
    return {name: i for i, name in enumerate(names[:MAX_SERVICES])}


@dataclass(slots=True)
class SlotView:
    """A snapshot of one worker's slot core, as the master and the balancer read it."""

    pid: int
    state: WorkerState
    heartbeat: float
    connections: int
    handshakes: int
    taken: int
    messages_in: int
    messages_out: int
    bytes_in: int
    bytes_out: int
    backlog: int
    lua_errors: int
    dropped: int
    internal_errors: int = 0


@dataclass(slots=True)
class SlotTables:
    """The tables of one slot (for metrics and `lapps status`), each a tuple of counts in
    the order of HANDSHAKE_RESULTS, CLOSE_CODES and the service indexes."""

    handshakes: tuple[int, ...]
    close_sent: tuple[int, ...]
    close_received: tuple[int, ...]
    service_connections: tuple[int, ...]


class SlotBlock:
    """The shared block of `count` worker slots."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.mem = mmap.mmap(-1, max(SLOT_SIZE * count, mmap.PAGESIZE))

    def read(self, index: int) -> SlotView:
        """The core of slot `index` (what the balancer needs: one small unpack)."""
        pid, state, hb, *rest = _CORE.unpack_from(self.mem, index * SLOT_SIZE)
        return SlotView(pid, WorkerState(state), hb, *rest)

    def read_tables(self, index: int) -> SlotTables:
        t = _LAYOUT.unpack_from(self.mem, index * SLOT_SIZE)[3 + _LAYOUT_LEGACY_FIELDS:]
        return SlotTables(t[:_OFF_SENT], t[_OFF_SENT:_OFF_RECEIVED], t[_OFF_RECEIVED:_OFF_SERVICES],
                          t[_OFF_SERVICES:])

    def snapshot(self) -> list[SlotView]:
        return [self.read(i) for i in range(self.count)]

    def reset(self, index: int, pid: int = 0, state: WorkerState = WorkerState.EMPTY) -> None:
        """Clear a slot for a new process (the master does this before it forks one)."""
        _LAYOUT.pack_into(self.mem, index * SLOT_SIZE, pid, state, 0.0,
                          *([0] * (_LAYOUT_LEGACY_FIELDS + _N_TABLES)))

    def writer(self, index: int) -> "SlotWriter":
        return SlotWriter(self.mem, index * SLOT_SIZE)


class SlotWriter:
    """The worker's handle on its own slot: plain attributes, published in one write.

    The worker bumps the attributes as it goes (cheap Python int arithmetic) and calls
    `publish()` once per loop turn, so the shared memory costs one copy a turn
    however many messages the turn handled. The tables are bumped through the methods
    below (once per connection event), which mark them for the next `publish()`.
    """

    __slots__ = ("_mem", "_offset", "pid", "state", "connections", "handshakes", "taken",
                 "messages_in", "messages_out", "bytes_in", "bytes_out", "backlog", "lua_errors",
                 "dropped", "internal_errors", "tables", "tables_dirty", "services")

    def __init__(self, mem: mmap.mmap, offset: int) -> None:
        self._mem = mem
        self._offset = offset
        self.pid = 0
        self.state = WorkerState.BOOTING
        self.connections = self.handshakes = self.taken = 0
        self.messages_in = self.messages_out = self.bytes_in = self.bytes_out = 0
        self.backlog = self.lua_errors = self.dropped = self.internal_errors = 0
        self.tables = [0] * _N_TABLES
        self.tables_dirty = True
        self.services: dict[str, int] = {}   # service name -> counter index (service_indexes)

    # ------------------------------------------------------------------ tables

    def upgraded(self, service: str) -> None:
        """A handshake succeeded (101) and `service` has one more open WebSocket."""
        t = self.tables
        t[_HS_UPGRADED] += 1
        i = self.services.get(service)
        if i is not None:
            t[_OFF_SERVICES + i] += 1
        self.tables_dirty = True

    def ws_closed(self, service: str, close_code: int | None, close_received: bool) -> None:
        """An upgraded connection ended (called once, with the protocol's final state).

        Sent: the close frame the server sent, by its code (the peer's code echoed, or the
        server's own; 1005 for a codeless one); none when the connection dropped before
        either side closed (1006). Received: the peer's close frame by code, 1006 when the
        connection ended without one (RFC 6455 §7.1.5). When the server started the close,
        the protocol keeps one code, so the peer's answer counts under the server's code.
        """
        t = self.tables
        i = self.services.get(service)
        if i is not None:
            t[_OFF_SERVICES + i] -= 1
        code = close_code if close_code is not None else _NO_CLOSE_FRAME
        k = code - 1000 if 1000 <= code <= 1015 else _CLOSE_OTHER
        if code != _NO_CLOSE_FRAME:
            t[_OFF_SENT + k] += 1
        if close_received:
            t[_OFF_RECEIVED + k] += 1
        else:
            t[_OFF_RECEIVED + _NO_CLOSE_FRAME - 1000] += 1
        self.tables_dirty = True

    def handshake_failed(self, close_code: int | None) -> None:
        """A connection that never upgraded ended: the HTTP status it was answered with
        (the protocol's `close_code` holds it), or "aborted" when it got no answer."""
        if close_code is not None and 100 <= close_code <= 599:
            k = _HANDSHAKE_INDEX.get(close_code, _HS_OTHER)
        else:
            k = _HS_ABORTED
        self.tables[k] += 1
        self.tables_dirty = True

    # ------------------------------------------------------------------ publish

    def publish(self, now: float) -> None:
        """Write every counter and the heartbeat `now` (time.monotonic()) to the slot: the
        whole slot when a table changed since the last publish, else only its core."""
        # pack() then one slice copy, never pack_into() on the shared page: pack_into zeroes
        # the whole span before it writes the fields, and a reader in that moment saw state
        # EMPTY (the balancer answered 503) or heartbeat 0.0 (the master aborted a healthy
        # worker). A copy can only show each byte old or new.
        if self.tables_dirty:
            self.tables_dirty = False
            data = _LAYOUT.pack(self.pid, self.state, now, self.connections,
                                self.handshakes, self.taken, self.messages_in, self.messages_out,
                                self.bytes_in, self.bytes_out, self.backlog, self.lua_errors,
                                self.dropped, self.internal_errors, *self.tables)
        else:
            data = _CORE.pack(self.pid, self.state, now, self.connections,
                              self.handshakes, self.taken, self.messages_in, self.messages_out,
                              self.bytes_in, self.bytes_out, self.backlog, self.lua_errors, self.dropped,
                              self.internal_errors)
        self._mem[self._offset:self._offset + len(data)] = data
