"""Shared-memory counters: one fixed-layout slot per worker, one writer per slot.

The block is an anonymous shared `mmap` made by the master before it forks, so every
child inherits the same pages. A worker writes only its own slot (one `pack_into` per
loop turn); the master and `lapps status` only read. There are no locks: a reader may
see a slot mid-update, which for counters and a heartbeat is harmless (the next read is
right), and the balancer's decisions are advisory anyway.
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


# pid, state, heartbeat (CLOCK_MONOTONIC, system-wide on Linux), connections,
# handshakes in progress, connections taken from the channel, messages in/out,
# bytes in/out, outbound backlog bytes, Lua errors, messages dropped for slow consumers
_LAYOUT = struct.Struct("=qqdqqqqqqqqqq")
SLOT_SIZE = 128
assert _LAYOUT.size <= SLOT_SIZE


@dataclass(slots=True)
class SlotView:
    """A snapshot of one worker's slot, as the master and the balancer read it."""

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


class SlotBlock:
    """The shared block of `count` worker slots."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.mem = mmap.mmap(-1, max(SLOT_SIZE * count, mmap.PAGESIZE))

    def read(self, index: int) -> SlotView:
        pid, state, hb, *rest = _LAYOUT.unpack_from(self.mem, index * SLOT_SIZE)
        return SlotView(pid, WorkerState(state), hb, *rest)

    def snapshot(self) -> list[SlotView]:
        return [self.read(i) for i in range(self.count)]

    def reset(self, index: int, pid: int = 0, state: WorkerState = WorkerState.EMPTY) -> None:
        """Clear a slot for a new process (the master does this before it forks one)."""
        _LAYOUT.pack_into(self.mem, index * SLOT_SIZE, pid, state, 0.0, *([0] * 10))

    def writer(self, index: int) -> "SlotWriter":
        return SlotWriter(self.mem, index * SLOT_SIZE)


class SlotWriter:
    """The worker's handle on its own slot: plain attributes, published in one write.

    The worker bumps the attributes as it goes (cheap Python int arithmetic) and calls
    `publish()` once per loop turn, so the shared memory costs one `pack_into` a turn
    however many messages the turn handled.
    """

    __slots__ = ("_mem", "_offset", "pid", "state", "connections", "handshakes", "taken",
                 "messages_in", "messages_out", "bytes_in", "bytes_out", "backlog", "lua_errors",
                 "dropped")

    def __init__(self, mem: mmap.mmap, offset: int) -> None:
        self._mem = mem
        self._offset = offset
        self.pid = 0
        self.state = WorkerState.BOOTING
        self.connections = self.handshakes = self.taken = 0
        self.messages_in = self.messages_out = self.bytes_in = self.bytes_out = 0
        self.backlog = self.lua_errors = self.dropped = 0

    def publish(self, now: float) -> None:
        """Write every counter and the heartbeat `now` (time.monotonic()) to the slot."""
        _LAYOUT.pack_into(self._mem, self._offset, self.pid, self.state, now, self.connections,
                          self.handshakes, self.taken, self.messages_in, self.messages_out,
                          self.bytes_in, self.bytes_out, self.backlog, self.lua_errors, self.dropped)
