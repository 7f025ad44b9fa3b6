"""The message bus between the server's processes: broadcast channels and mqr queues.

Transport: Unix `SOCK_SEQPACKET` sockets in the abstract namespace, named from the
master's pid and a role (`w0`, `w1`… for IO workers, `mqr` for the queue broker), so peers
find each other without a registry and a respawned worker takes over its predecessor's
name. Packets keep their boundaries and the buffers are counted in bytes (datagram
sockets would be capped at `net.unix.max_dgram_qlen` packets, 10 on many systems).

- **Broadcast** (`bcast`): a publisher encodes the LAppS message once (CBOR) and sends one
  packet to every IO worker; each worker frames it once and appends the frame to the
  outbound buffer of each local subscriber. Sends never block: a worker whose buffer is
  full misses that message (counted in `dropped`), as a slow subscriber would.
- **mqr**: named queues with competing consumers and flow control, in mqr.py (a broker
  thread in the master, a client per process), over the same kind of sockets.

Processes reach both only through one interface (`lapps/ipc/interface.py` `Bus`; this
local backend is `lapps/ipc/local.py` `LocalBus`), so that a cluster backend (Redis pub/sub
across nodes) can stand beside them.
"""

from __future__ import annotations

import logging
import socket
import struct
import time

from ..logs import REPEAT_INTERVAL, RepeatLimiter
from .slots import SlotBlock, WorkerState

_CHANNEL = struct.Struct("!q")
_PEERS_TTL = 1.0               # seconds a publisher trusts its list of workers
BUS_BUFFER = 4 * 1024 * 1024   # socket buffers: the largest packet, and the backlog in bytes


class BusError(Exception):
    """A bus operation that could not be done (message too large, broker gone…)."""


def endpoint(master_pid: int, node: str) -> bytes:
    """The abstract-namespace address of one process's bus socket."""
    return f"\0lapps-{master_pid}-{node}".encode()


def worker_node(index: int) -> str:
    return f"w{index}"


def _packet_socket() -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    for opt, force in ((socket.SO_SNDBUF, 32), (socket.SO_RCVBUF, 33)):   # SO_*BUFFORCE
        try:
            s.setsockopt(socket.SOL_SOCKET, force, BUS_BUFFER)
        except OSError:
            s.setsockopt(socket.SOL_SOCKET, opt, BUS_BUFFER)   # not root: capped by the kernel
    return s


def _listen(address: bytes) -> socket.socket:
    s = _packet_socket()
    s.bind(address)
    s.listen(128)
    s.setblocking(False)
    return s


class Broadcast:
    """Publish to broadcast channels that span every IO worker; an IO worker also receives.

    A receiving worker polls `fileno()` (new publishers connecting) and every socket in
    `links_in` (their packets); `accept()` and `receive(sock)` handle each.
    """

    def __init__(self, master_pid: int, slots: SlotBlock, node: str | None = None,
                 repeat_interval: float = REPEAT_INTERVAL) -> None:
        self.master_pid = master_pid
        self.slots = slots
        self.peers: list[bytes] = []
        self.peers_at = -_PEERS_TTL
        self.links_out: dict[bytes, socket.socket] = {}
        self.listener = _listen(endpoint(master_pid, node)) if node is not None else None
        self.dropped = 0   # packets a peer could not take (buffer full, or no such worker now)
        self.repeats = RepeatLimiter(logging.getLogger("lapps.bus"), repeat_interval)   # per publish

    def fileno(self) -> int:
        assert self.listener is not None, "only an IO worker receives broadcasts"
        return self.listener.fileno()

    def publish(self, channel: int, payload: bytes) -> None:
        """Send `payload` (an encoded LAppS message) to channel `channel` on every worker,
        this process included when it is one. Never blocks."""
        packet = _CHANNEL.pack(channel) + payload
        if len(packet) > BUS_BUFFER // 2:
            raise BusError(f"broadcast message of {len(payload)} bytes is over the bus limit")
        now = time.monotonic()
        if now - self.peers_at > _PEERS_TTL:
            self._find_peers(now)
        for peer in self.peers:
            link = self.links_out.get(peer) or self._connect(peer)
            if link is None:
                self.dropped += 1
                continue
            try:
                link.send(packet)
            except BlockingIOError:
                self.dropped += 1   # that worker is behind by BUS_BUFFER bytes: it misses this one
                self.repeats.warning(peer, "bcast: worker %s is %d bytes behind on this link: it misses "
                                     "broadcast messages", peer[1:].decode(), BUS_BUFFER)
            except OSError:
                link.close()        # the worker died; its successor gets a new link next time
                del self.links_out[peer]
                self.dropped += 1

    def _find_peers(self, now: float) -> None:
        """The workers that may hold subscribers, read from the shared slots: the set
        changes with respawns, reloads and SIGTTIN/SIGTTOU, so it is looked up again
        every `_PEERS_TTL` seconds rather than fixed at start."""
        self.peers_at = now
        self.peers = [endpoint(self.master_pid, worker_node(i)) for i, slot in enumerate(self.slots.snapshot())
                      if slot.state in (WorkerState.RUNNING, WorkerState.DRAINING)]
        for gone in set(self.links_out) - set(self.peers):
            self.links_out.pop(gone).close()

    def _connect(self, peer: bytes) -> socket.socket | None:
        s = _packet_socket()
        s.setblocking(False)
        try:
            s.connect(peer)
        except OSError:          # no such worker right now (respawning), or its backlog is full
            s.close()
            return None
        self.links_out[peer] = s
        return s

    def accept(self) -> socket.socket | None:
        """A publisher connected: the new link to poll, or None."""
        try:
            link, _ = self.listener.accept()   # type: ignore[union-attr]
        except (BlockingIOError, InterruptedError):
            return None
        link.setblocking(False)
        return link

    @staticmethod
    def receive(link: socket.socket) -> tuple[list[tuple[int, bytes]], bool]:
        """Packets waiting on `link` as (channel, payload), and whether the publisher left."""
        got = []
        while True:
            try:
                data = link.recv(BUS_BUFFER)
            except (BlockingIOError, InterruptedError):
                return got, False
            except OSError:
                return got, True
            if not data:
                return got, True
            if len(data) >= 8:
                got.append((_CHANNEL.unpack_from(data)[0], data[8:]))

    def close(self) -> None:
        for link in self.links_out.values():
            link.close()
        self.links_out.clear()
        if self.listener is not None:
            self.listener.close()
