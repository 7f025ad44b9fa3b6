"""Accept loops in the master: accept → server ACL → balancer → pass the socket.

Each listener is a thread blocked in `accept()` on the shared listening socket (the kernel
hands each new connection to one of them); `accept` and `send_fds` release the GIL, so
threads are enough. The master never reads a byte from a client socket: it only refuses
one outright (ACL: closed at once; every worker full: a canned HTTP 503).
"""

from __future__ import annotations

import logging
import socket
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from .. import SERVER_HEADER
from ..acl import Acl
from ..config import Config
from ..ipc.channel import send_socket
from ..ipc.slots import SlotBlock
from ..logs import RepeatLimiter
from ..ws.handshake import error_response
from .balancer import pick_worker

_ACCEPT_POLL = 0.5   # seconds: how often a blocked accept looks at the stop flag
DISPATCHED, ALL_FULL, IP_LIMIT, CHANNELS_BUSY = 0, 1, 2, 3   # what became of an accepted socket
_BUSY_RETRY = 0.005      # seconds between tries while every worker's channel is full
_BUSY_PATIENCE = 1.0     # seconds a listener waits on full channels before answering 503
RETRY_AFTER = 2          # seconds, in the Retry-After of a 429 or 503 (RFC 6585 §4, RFC 9110 §10.2.3)
_REFUSED = {ALL_FULL: "every worker is at max_connections", IP_LIMIT: "too many connections from its address"}


def bind_listener(ip: str, port: int, backlog: int = 1024) -> socket.socket:
    """The listening socket that every accept loop of this address shares.

    Deliberately without SO_REUSEPORT: with it, a second server started on the same port
    by mistake binds without error and silently takes half the connections. The accept
    loops are threads of one process, so one shared socket serves them just as well (the
    kernel wakes one blocked accept per connection).
    """
    family = socket.AF_INET6 if ":" in ip else socket.AF_INET
    s = socket.socket(family, socket.SOCK_STREAM)
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((ip, port))
        s.listen(backlog)
        s.settimeout(_ACCEPT_POLL)
    except OSError:
        s.close()
        raise
    return s


class Dispatcher:
    """The balancer's state shared by the listener threads: what was sent where.

    `sent[i]` counts sockets passed to the current process in slot i; the worker counts
    what it took in its slot, so the difference is what is still in flight.
    """

    def __init__(self, config: Config, slots: SlotBlock,
                 channels: Callable[[int], socket.socket | None]) -> None:
        self.config = config
        self.slots = slots
        self.channels = channels
        self.sent = [0] * slots.count
        self.lock = threading.Lock()
        self.rr = 0
        self.per_ip_cap = config.limits.max_connections_per_ip
        self.per_ip: Counter[str] = Counter()                        # live connections by address
        self.per_worker: list[Counter[str]] = [Counter() for _ in range(slots.count)]
        self.refused = {IP_LIMIT: 0, ALL_FULL: 0}   # what the listeners answered themselves
        self.retired: set[int] = set()               # slots told to drain: no new connections
        self.log = logging.getLogger("lapps.listener")
        # refusals can come once per connection attempt: one line per kind and interval
        self.repeats = RepeatLimiter(self.log, config.server.log_repeat_interval)

    def give_up(self) -> int:
        """A listener waited its patience out on full channels: it answers 503."""
        with self.lock:
            self.refused[ALL_FULL] += 1
        return ALL_FULL

    def refusals(self) -> dict[str, int]:
        """Handshakes the master answered itself, by HTTP status (for the metrics)."""
        with self.lock:
            return {"429": self.refused[IP_LIMIT], "503": self.refused[ALL_FULL]}

    def retire(self, index: int) -> None:
        """Slot `index` drains: send it nothing more, even before its slot says so."""
        with self.lock:
            self.retired.add(index)

    def reset(self, index: int) -> None:
        """A new process took slot `index`: nothing is in flight to it, and the connections
        its predecessor held are gone."""
        with self.lock:
            self.sent[index] = 0
            self.retired.discard(index)
            self.per_ip -= self.per_worker[index]
            self.per_worker[index].clear()

    def closed(self, index: int, peers: list[str]) -> None:
        """Worker `index` reports that connections from `peers` ended."""
        with self.lock:
            mine = self.per_worker[index]
            for peer in peers:
                if mine[peer] > 0:
                    mine[peer] -= 1
                    self.per_ip[peer] -= 1
            self.per_ip += Counter()   # drop the zero entries

    def dispatch(self, sock: socket.socket, listener_id: int, tls: bool, peer: str) -> int:
        """Pass `sock` to the least-loaded worker: DISPATCHED, ALL_FULL or IP_LIMIT."""
        cfg = self.config
        with self.lock:
            if self.per_ip_cap and self.per_ip[peer] >= self.per_ip_cap:
                self.refused[IP_LIMIT] += 1
                return IP_LIMIT
            snapshot = self.slots.snapshot()
            queued = [max(0, self.sent[i] - s.taken) for i, s in enumerate(snapshot)]
            self.rr = (self.rr + 1) % len(snapshot)
            excluded = set(self.retired)
            busy = False
            while True:
                for i in excluded:
                    queued[i] = cfg.server.max_connections   # treat as full for this pick
                i = pick_worker(snapshot, queued, cfg.server.max_connections,
                                cfg.balancer.connection_weight, cfg.balancer.backlog_weight, self.rr)
                if i is None:
                    if busy:
                        return CHANNELS_BUSY
                    self.refused[ALL_FULL] += 1
                    return ALL_FULL
                chan = self.channels(i)
                if chan is not None:
                    try:
                        send_socket(chan, sock, listener_id, tls, peer)
                        self.sent[i] += 1
                        if self.per_ip_cap:
                            self.per_ip[peer] += 1
                            self.per_worker[i][peer] += 1
                        return DISPATCHED
                    except BlockingIOError:
                        busy = True    # a worker behind on taking sockets: try the next one
                    except (BrokenPipeError, ConnectionResetError):
                        pass           # a dying worker: try the next one
                excluded.add(i)


@dataclass(frozen=True)
class Listener:
    """One listening socket and what its accept loops share; each loop is a thread that
    runs `serve` with its own number."""

    sock: socket.socket
    tls: bool
    acl: Acl
    dispatcher: Dispatcher
    stop: threading.Event

    def serve(self, listener_id: int) -> None:
        """One accept loop, until `stop`."""
        retry = (SERVER_HEADER, ("Retry-After", str(RETRY_AFTER)))
        refusals = {ALL_FULL: error_response(503, "every worker is at max_connections", retry),
                    IP_LIMIT: error_response(429, "too many connections from your address", retry)}
        repeats = self.dispatcher.repeats
        while not self.stop.is_set():
            try:
                client, addr = self.sock.accept()
            except TimeoutError:
                repeats.flush()   # quiet now: the count lines of refusals that stopped
                continue
            except OSError as e:
                if self.stop.is_set():
                    return
                repeats.warning(("accept", e.errno), "listener %d: accept failed: %s", listener_id, e)
                self.stop.wait(0.05)   # EMFILE and friends: do not spin
                continue
            with client:
                if not self.acl.allows(addr[0]):
                    repeats.warning("acl", "refused %s: not allowed by [server.acl]", addr[0])
                    continue
                outcome = self.dispatcher.dispatch(client, listener_id, self.tls, addr[0])
                waited = 0.0
                while outcome == CHANNELS_BUSY and waited < _BUSY_PATIENCE:
                    # the workers are behind, not full: hold this accept (the kernel's backlog
                    # holds the next ones) rather than refuse a client a worker can take soon
                    self.stop.wait(_BUSY_RETRY)
                    waited += _BUSY_RETRY
                    outcome = self.dispatcher.dispatch(client, listener_id, self.tls, addr[0])
                if outcome == CHANNELS_BUSY:
                    outcome = self.dispatcher.give_up()
                if outcome != DISPATCHED:
                    repeats.warning(outcome, "refused %s: %s", addr[0], _REFUSED[outcome])
                if outcome != DISPATCHED and not self.tls:   # no TLS in the master: no answer on wss
                    client.settimeout(1.0)
                    try:
                        client.sendall(refusals[outcome])
                    except OSError:
                        pass   # the client left already


def start_listeners(sock: socket.socket, tls: bool, count: int, first_id: int, acl: Acl,
                    dispatcher: Dispatcher, stop: threading.Event) -> list[threading.Thread]:
    """`count` accept loops on `sock`, numbered from `first_id`."""
    listener = Listener(sock, tls, acl, dispatcher, stop)
    threads = [threading.Thread(target=listener.serve, args=(i,), name=f"listener-{i}", daemon=True)
               for i in range(first_id, first_id + count)]
    for t in threads:
        t.start()
    return threads
