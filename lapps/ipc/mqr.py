"""mqr: named message queues between the server's processes, with flow control.

A broker thread in the master holds the queues (it is the one place every process reaches),
so each posted message goes to exactly one receiver, whichever process asks first. The
links are Unix `SOCK_SEQPACKET` sockets in the abstract namespace (bus.py's `endpoint`).

**Flow control (credit).** A producer may have `WINDOW` posts per queue that the broker has
not yet acknowledged; the broker gives credit back (a grant) as it takes posts in, but only
while that queue holds fewer than `MAX_QUEUE` messages. A producer faster than its consumers
therefore runs out of credit instead of filling the queue: in a standalone service `post`
waits for room (up to `POST_WAIT` seconds, and never past `must_stop()`), in a reactive one
(an IO worker, which must not block) it fails at once with "queue full". Nothing is dropped
and nothing is logged per post; a queue can exceed `MAX_QUEUE` by at most one window per
producer.

**Fairness.** The broker serves at most `PASS_PACKETS` packets of one process per pass of
its loop, so a producer posting in a tight loop cannot starve the receivers' requests (the
original's mqr pair starved that way).

**Batches.** A receiver asks for up to `BATCH` messages at once and keeps what comes in its
inbox, so `recv()` costs one round trip per batch, not per message. Each message is taken
from the queue once: it is in exactly one receiver's inbox, and a receiver that stops
gracefully (`close()`) posts what its inbox still holds back to the queue. A receiver process
that is killed loses what its inbox held, as it loses the message it was working on.

Packets: op (1 byte), name length (1), name, payload. Ops: P post (payload: one message),
W want (payload: u16 how many at most), T try (answered M or E at once), C cancel (leave
the waiters), M messages (payload: u32-length-prefixed messages), E empty, G grant (u32
credits).
"""

from __future__ import annotations

import select
import socket
import struct
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator

from .bus import BUS_BUFFER, BusError, _listen, _packet_socket, endpoint

POST, WANT, TRY, CANCEL, MSGS, EMPTY, GRANT = b"P", b"W", b"T", b"C", b"M", b"E", b"G"
MAX_QUEUE = 100_000      # messages in one queue past which producers get no more credit
WINDOW = 64              # posts per queue a producer may have unacknowledged: below the
                         # kernel's queue of a connected SEQPACKET socket (the listen backlog,
                         # 128), so a post within credit never finds the link full
BATCH = 256              # messages a receiver asks for at once
BATCH_BYTES = 256 * 1024  # ... and bytes in one batch packet (one message may be larger)
PASS_PACKETS = 64        # packets of one process the broker serves per pass
POST_WAIT = 10.0         # seconds a standalone post waits for room before "queue full"
LINK_WAIT = 5.0          # seconds a send waits for a full link to the broker
_U16, _U32 = struct.Struct("!H"), struct.Struct("!I")


# ---- packets (pure) ------------------------------------------------------------------------

def frame(op: bytes, name: bytes, payload: bytes = b"") -> bytes:
    """One packet. `name` is at most 255 bytes (the caller checks)."""
    return op + bytes((len(name),)) + name + payload


def unframe(data: bytes) -> tuple[bytes, bytes, bytes]:
    """(op, name, payload) of one packet."""
    n = data[1] if len(data) > 1 else 0
    return data[:1], data[2:2 + n], data[2 + n:]


def pack_messages(messages: list[bytes]) -> bytes:
    """The payload of an M packet."""
    return b"".join(_U32.pack(len(m)) + m for m in messages)


def unpack_messages(payload: bytes) -> Iterator[bytes]:
    """The messages of an M packet's payload, in order."""
    pos, end = 0, len(payload)
    while pos < end:
        (n,) = _U32.unpack_from(payload, pos)
        pos += 4
        yield payload[pos:pos + n]
        pos += n


def take_batch(queue: deque[bytes], most: int) -> list[bytes]:
    """Up to `most` messages from the head of `queue` and at most BATCH_BYTES of them (at
    least one, however large)."""
    out: list[bytes] = []
    size = 0
    while queue and len(out) < most:
        m = queue[0]
        if out and size + len(m) > BATCH_BYTES:
            break
        out.append(queue.popleft())
        size += len(m) + 4
    return out


# ---- the broker ----------------------------------------------------------------------------

class MqrBroker(threading.Thread):
    """The queues, held by the master: each posted message goes to exactly one receiver."""

    def __init__(self, master_pid: int, stop: threading.Event) -> None:
        super().__init__(name="mqr-broker", daemon=True)
        self.sock = _listen(endpoint(master_pid, "mqr"))
        self.stop = stop
        self.queues: dict[bytes, deque[bytes]] = {}
        self.waiters: dict[bytes, deque[tuple[socket.socket, int]]] = {}
        self.clients: list[socket.socket] = []
        # credit taken by each (process, queue) and not yet given back; the queues whose
        # producers wait for room
        self.owed: dict[tuple[socket.socket, bytes], int] = {}
        self.blocked: dict[bytes, set[socket.socket]] = {}

    def run(self) -> None:
        while not self.stop.is_set():
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
        for _ in range(PASS_PACKETS):
            try:
                data = client.recv(BUS_BUFFER)
            except (BlockingIOError, InterruptedError):
                return
            except ConnectionResetError:
                # the process closed with our grants unread: what it sent before is still
                # queued here (its give-back posts), so read on to its EOF
                continue
            except OSError:
                data = b""
            if not data:
                return self._forget(client)
            op, name, payload = unframe(data)
            if op == POST:
                self._post(client, name, payload)
            elif op == WANT or op == TRY:
                most = _U16.unpack(payload)[0] if op == WANT and len(payload) == 2 else 1
                self._want(client, name, max(1, most), op == TRY)
            elif op == CANCEL:
                waiting = self.waiters.get(name)
                if waiting:
                    self.waiters[name] = deque(w for w in waiting if w[0] is not client)

    def _forget(self, client: socket.socket) -> None:
        """The process is gone: it waits for nothing and is owed nothing any more."""
        self.clients.remove(client)
        for name, waiting in self.waiters.items():
            self.waiters[name] = deque(w for w in waiting if w[0] is not client)
        for key in [k for k in self.owed if k[0] is client]:
            del self.owed[key]
        for producers in self.blocked.values():
            producers.discard(client)
        client.close()

    def _post(self, client: socket.socket, name: bytes, payload: bytes) -> None:
        q = self.queues.setdefault(name, deque())
        q.append(payload)
        self._hand_out(name, q)
        key = (client, name)
        owed = self.owed.get(key, 0) + 1
        if len(q) >= MAX_QUEUE:
            self.owed[key] = owed
            self.blocked.setdefault(name, set()).add(client)   # credit comes back as q drains
        elif owed >= WINDOW // 2 and self._send(client, frame(GRANT, name, _U32.pack(owed))):
            self.owed[key] = 0
        else:
            self.owed[key] = owed

    def _want(self, client: socket.socket, name: bytes, most: int, just_try: bool) -> None:
        q = self.queues.get(name)
        if q:
            batch = take_batch(q, most)
            if self._send(client, frame(MSGS, name, pack_messages(batch))):
                return self._unblock(name, q)
            q.extendleft(reversed(batch))   # that process cannot take it now: keep it queued
        if just_try:
            self._send(client, frame(EMPTY, name))
        else:
            self.waiters.setdefault(name, deque()).append((client, most))

    def _hand_out(self, name: bytes, q: deque[bytes]) -> None:
        """Give what `q` holds to the processes waiting on it, in the order they asked."""
        waiting = self.waiters.get(name)
        sent = False
        while waiting and q:
            client, most = waiting.popleft()
            batch = take_batch(q, most)
            if self._send(client, frame(MSGS, name, pack_messages(batch))):
                sent = True
            else:
                q.extendleft(reversed(batch))
        if sent:
            self._unblock(name, q)

    def _unblock(self, name: bytes, q: deque[bytes]) -> None:
        """Room again in `q` (below half of MAX_QUEUE): give the waiting producers their credit."""
        producers = self.blocked.get(name)
        if not producers or len(q) >= MAX_QUEUE // 2:
            return
        for client in list(producers):
            owed = self.owed.get((client, name), 0)
            if not owed or self._send(client, frame(GRANT, name, _U32.pack(owed))):
                self.owed[(client, name)] = 0
                producers.discard(client)

    @staticmethod
    def _send(client: socket.socket, packet: bytes) -> bool:
        try:
            client.send(packet)
            return True
        except OSError:
            return False   # gone or full: the caller keeps what it meant to send


# ---- a process's client --------------------------------------------------------------------

class MqrClient:
    """A process's handle on the mqr queues (post from anywhere; recv where blocking is fine).

    Connects to the broker on first use, so processes that never use mqr cost it nothing.
    `blocking` says whether `post` may wait for credit (standalone services) or must fail
    at once with "queue full" (IO workers).
    """

    def __init__(self, master_pid: int, must_stop: Callable[[], bool] = lambda: False,
                 blocking: bool = True) -> None:
        self.broker = endpoint(master_pid, "mqr")
        self.sock: socket.socket | None = None
        self.must_stop = must_stop
        self.blocking = blocking
        self.credit: dict[bytes, int] = {}
        self.inbox: dict[bytes, deque[bytes]] = {}

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

    def _send(self, packet: bytes, wait: float | None = None) -> None:
        """Send one packet. A full link (the broker is behind by the kernel's queue) is
        waited out for `wait` seconds (default: LINK_WAIT where blocking is allowed, none
        in an IO worker), then BusError."""
        sock = self._link()
        deadline = time.monotonic() + (wait if wait is not None else LINK_WAIT if self.blocking else 0.0)
        while True:
            try:
                sock.send(packet)
                return
            except BlockingIOError:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise BusError("mqr broker is not keeping up: message not sent") from None
                select.select([], [sock], [], left)
            except OSError as e:
                self._drop()
                raise BusError(f"mqr broker unreachable: {e.strerror}") from None

    @staticmethod
    def _name(name: str) -> bytes:
        raw = name.encode()
        if len(raw) > 255:
            raise BusError("mqr queue name over 255 bytes")
        return raw

    def post(self, name: str, payload: bytes) -> None:
        """Queue one message; raises BusError("queue full") when the queue has no room (at
        once, or after waiting up to POST_WAIT seconds where blocking is allowed)."""
        raw = self._name(name)
        credit = self.credit.get(raw, WINDOW)
        if credit <= WINDOW // 2:
            self._take_packets(0.0)          # grants that came meanwhile, without waiting
            credit = self.credit.get(raw, WINDOW)
            if credit <= 0:
                credit = self._wait_credit(raw)
        self._send(frame(POST, raw, payload))
        self.credit[raw] = credit - 1

    def _wait_credit(self, raw: bytes) -> int:
        deadline = time.monotonic() + POST_WAIT
        while self.blocking and not self.must_stop():
            left = deadline - time.monotonic()
            if left <= 0:
                break
            self._take_packets(min(0.5, left))
            credit = self.credit.get(raw, WINDOW)
            if credit > 0:
                return credit
        raise BusError("queue full")

    def try_recv(self, name: str, timeout: float = 2.0) -> bytes | None:
        """The next message of queue `name`, or None when it is empty (one round trip)."""
        raw = self._name(name)
        box = self.inbox.get(raw)
        if box:
            return box.popleft()
        self._send(frame(TRY, raw))
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no answer from the mqr broker")
            answer = self._take_packets(left, raw)
            if answer == EMPTY:
                return None
            box = self.inbox.get(raw)
            if box:
                return box.popleft()

    def recv(self, name: str) -> bytes | None:
        """Block until a message of queue `name` comes; None when the process must stop."""
        raw = self._name(name)
        box = self.inbox.get(raw)
        if box:
            return box.popleft()
        self._send(frame(WANT, raw, _U16.pack(BATCH)))
        while True:
            self._take_packets(0.5, raw)
            box = self.inbox.get(raw)
            if box:
                return box.popleft()
            if self.must_stop():
                return self._cancel(raw)

    def _cancel(self, raw: bytes) -> None:
        """Leave the waiters; what the broker sent meanwhile goes back to the queue."""
        self._send(frame(CANCEL, raw))
        deadline = time.monotonic() + 0.2
        while (left := deadline - time.monotonic()) > 0:
            self._take_packets(left)
        self._give_back()
        return None

    def _take_packets(self, timeout: float, want: bytes | None = None) -> bytes | None:
        """Read what the broker sent: grants add credit, messages go to their queue's inbox.
        Waits up to `timeout` for a packet about queue `want` (any packet when `want` is None),
        then takes what else is there without waiting. Returns the op of the last packet
        about `want` (None if none came)."""
        sock = self._link()
        deadline = time.monotonic() + timeout
        waiting = timeout > 0
        got = None
        while True:
            if waiting:
                left = deadline - time.monotonic()
                if left <= 0 or not select.select([sock], [], [], left)[0]:
                    return got
            try:
                data = sock.recv(BUS_BUFFER)
            except (BlockingIOError, InterruptedError):
                if waiting:
                    continue
                return got
            if not data:
                self._drop()
                raise BusError("the mqr broker is gone")
            op, name, payload = unframe(data)
            if op == GRANT:
                self.credit[name] = self.credit.get(name, WINDOW) + _U32.unpack(payload)[0]
            elif op == MSGS:
                self.inbox.setdefault(name, deque()).extend(unpack_messages(payload))
            if name == want:
                got = op
            if want is None or name == want:
                waiting = False

    def _give_back(self) -> None:
        """Post every message still in an inbox back to its queue (a graceful stop)."""
        for raw, box in self.inbox.items():
            while box:
                try:
                    self._send(frame(POST, raw, box[0]), wait=LINK_WAIT)
                except BusError:
                    return
                box.popleft()

    def close(self) -> None:
        """Give back what the inboxes hold, then drop the link."""
        if self.sock is not None:
            try:
                self._take_packets(0.0)   # what came meanwhile: grants, or messages to give back
                self._give_back()
            except BusError:
                pass                      # the broker is gone: nothing to give back to
            finally:
                self._drop()

    def _drop(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None
