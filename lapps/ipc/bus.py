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
- **mqr**: named queues with competing consumers. A broker thread in the master holds the
  queues, so each message goes to exactly one receiver, whichever process asks first.

Both are behind small interfaces (`Broadcast.publish/receive`, `MqrClient.post/try_recv/
recv`) so that a cluster backend (Redis pub/sub across nodes) can stand beside them.
"""

from __future__ import annotations

import logging
import select
import socket
import struct
import threading
import time
from collections import deque
from collections.abc import Callable

from ..logs import REPEAT_INTERVAL, RepeatLimiter
from .slots import SlotBlock, WorkerState

_POST, _WANT, _TRY, _CANCEL, _MSG, _EMPTY = b"P", b"W", b"T", b"C", b"M", b"E"
_CHANNEL = struct.Struct("!q")
_PEERS_TTL = 1.0               # seconds a publisher trusts its list of workers
BUS_BUFFER = 4 * 1024 * 1024   # socket buffers: the largest packet, and the backlog in bytes
MAX_QUEUE = 100_000            # messages waiting in one mqr queue before posts are dropped


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


def _frame(op: bytes, name: bytes, payload: bytes = b"") -> bytes:
    return op + bytes((len(name),)) + name + payload


def _unframe(data: bytes) -> tuple[bytes, bytes, bytes]:
    n = data[1] if len(data) > 1 else 0
    return data[:1], data[2:2 + n], data[2 + n:]


class MqrBroker(threading.Thread):
    """The queues, held by the master: each posted message goes to exactly one receiver."""

    def __init__(self, master_pid: int, stop: threading.Event, repeat_interval: float = REPEAT_INTERVAL) -> None:
        super().__init__(name="mqr-broker", daemon=True)
        self.sock = _listen(endpoint(master_pid, "mqr"))
        self.stop = stop
        self.queues: dict[bytes, deque[bytes]] = {}
        self.waiters: dict[bytes, deque[socket.socket]] = {}
        self.clients: list[socket.socket] = []
        self.repeats = RepeatLimiter(logging.getLogger("lapps.mqr"), repeat_interval)   # per post

    def run(self) -> None:
        while not self.stop.is_set():
            self.repeats.flush()
            try:
                ready, _, _ = select.select([self.sock, *self.clients], [], [], 0.5)
            except (OSError, ValueError):
                if self.stop.is_set():
                    return
                raise
            for s in ready:
                if s is self.sock:
                    self._accept()
                else:
                    self._serve(s)

    def _accept(self) -> None:
        try:
            client, _ = self.sock.accept()
        except (BlockingIOError, InterruptedError):
            return
        client.setblocking(False)
        self.clients.append(client)

    def _serve(self, client: socket.socket) -> None:
        while True:
            try:
                data = client.recv(BUS_BUFFER)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                data = b""
            if not data:   # the process is gone: forget it as a waiter
                self.clients.remove(client)
                for waiting in self.waiters.values():
                    while client in waiting:
                        waiting.remove(client)
                client.close()
                return
            op, name, payload = _unframe(data)
            if op == _POST:
                self._post(name, payload)
            elif op == _WANT or op == _TRY:
                q = self.queues.get(name)
                if q and self._send(client, _frame(_MSG, name, q[0])):
                    q.popleft()
                elif op == _TRY:
                    self._send(client, _frame(_EMPTY, name))
                else:
                    self.waiters.setdefault(name, deque()).append(client)
            elif op == _CANCEL:
                waiting = self.waiters.get(name)
                if waiting and client in waiting:
                    waiting.remove(client)

    def _post(self, name: bytes, payload: bytes) -> None:
        waiting = self.waiters.get(name)
        while waiting:
            if self._send(waiting.popleft(), _frame(_MSG, name, payload)):
                return
        q = self.queues.setdefault(name, deque())
        if len(q) >= MAX_QUEUE:
            self.repeats.warning(name, "mqr queue %s is full (%d messages): a post was dropped",
                                 name.decode("utf-8", "replace"), MAX_QUEUE)
            return
        q.append(payload)

    @staticmethod
    def _send(client: socket.socket, packet: bytes) -> bool:
        try:
            client.send(packet)
            return True
        except OSError:
            return False   # gone or full: the message stays queued


class MqrClient:
    """A process's handle on the mqr queues (post from anywhere; recv where blocking is fine).

    Connects to the broker on first use, so processes that never use mqr cost it nothing.
    """

    def __init__(self, master_pid: int, must_stop: Callable[[], bool] = lambda: False) -> None:
        self.broker = endpoint(master_pid, "mqr")
        self.sock: socket.socket | None = None
        self.must_stop = must_stop

    def _link(self) -> socket.socket:
        if self.sock is None:
            s = _packet_socket()
            try:
                s.connect(self.broker)
            except OSError as e:
                s.close()
                raise BusError(f"mqr broker unreachable: {e.strerror}") from None
            s.setblocking(False)
            self.sock = s
        return self.sock

    def _send(self, packet: bytes) -> None:
        try:
            self._link().send(packet)
        except BlockingIOError:
            raise BusError("mqr broker is not keeping up: message not sent") from None
        except OSError as e:
            self.close()
            raise BusError(f"mqr broker unreachable: {e.strerror}") from None

    def post(self, name: str, payload: bytes) -> None:
        raw = name.encode()
        if len(raw) > 255:
            raise BusError("mqr queue name over 255 bytes")
        self._send(_frame(_POST, raw, payload))

    def try_recv(self, name: str, timeout: float = 2.0) -> bytes | None:
        """The next message of queue `name`, or None when it is empty (one round trip)."""
        raw = name.encode()
        self._send(_frame(_TRY, raw))
        while True:
            op, got_name, payload = self._wait(timeout)
            if got_name == raw:
                return payload if op == _MSG else None

    def recv(self, name: str) -> bytes | None:
        """Block until a message of queue `name` comes; None when the process must stop."""
        raw = name.encode()
        self._send(_frame(_WANT, raw))
        while True:
            try:
                op, got_name, payload = self._wait(0.5)
            except TimeoutError:
                if self.must_stop():
                    return self._cancel(raw)
                continue
            if op == _MSG and got_name == raw:
                return payload

    def _cancel(self, raw: bytes) -> None:
        """Leave the waiters; a message the broker sent meanwhile goes back to the queue."""
        self._send(_frame(_CANCEL, raw))
        try:
            while True:
                op, got_name, payload = self._wait(0.2)
                if op == _MSG:
                    self._send(_frame(_POST, got_name, payload))
        except TimeoutError:
            return None

    def _wait(self, timeout: float) -> tuple[bytes, bytes, bytes]:
        sock = self._link()
        ready, _, _ = select.select([sock], [], [], timeout)
        if not ready:
            raise TimeoutError("no answer from the mqr broker")
        data = sock.recv(BUS_BUFFER)
        if not data:
            self.close()
            raise BusError("the mqr broker is gone")
        return _unframe(data)

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None
