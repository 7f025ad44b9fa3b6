"""The local bus backend: this host's processes over Unix packet sockets (bus.py, mqr.py).

Every IO worker receives every broadcast channel and keeps its own subscriber lists, so
`subscribe`/`unsubscribe` have nothing to tell the other processes here; a backend that
spans nodes subscribes at its server instead.
"""

from __future__ import annotations

import socket
from collections.abc import Callable

from .bus import Broadcast, worker_node
from .interface import Bus, Deliver, Poller
from .mqr import MqrClient
from .slots import SlotBlock


class LocalBus:
    """`Bus` over a `Broadcast` (channels) and an `MqrClient` (queues)."""

    def __init__(self, broadcast: Broadcast, queues: MqrClient) -> None:
        self.broadcast = broadcast
        self.queues = queues

    def publish(self, channel: int, payload: bytes) -> None:
        self.broadcast.publish(channel, payload)

    def subscribe(self, channel: int) -> None:
        """Nothing to do: every worker receives every channel."""

    def unsubscribe(self, channel: int) -> None:
        """Nothing to do: every worker receives every channel."""

    def post(self, queue: str, payload: bytes) -> None:
        self.queues.post(queue, payload)

    def try_recv(self, queue: str) -> bytes | None:
        return self.queues.try_recv(queue)

    def recv(self, queue: str) -> bytes | None:
        return self.queues.recv(queue)

    def attach(self, poller: Poller, deliver: Deliver) -> None:
        """Watch the listener (publishers connect) and then each publisher's link."""
        broadcast = self.broadcast

        def receive(link: socket.socket) -> None:
            packets, gone = broadcast.receive(link)
            if packets:
                deliver(packets)
            if gone:
                poller.unwatch(link.fileno())
                link.close()

        def accept() -> None:
            link = broadcast.accept()
            if link is not None:
                poller.watch(link.fileno(), lambda: receive(link))

        poller.watch(broadcast.fileno(), accept)

    def close(self) -> None:
        self.broadcast.close()
        self.queues.close()


def open_local_bus(master_pid: int, slots: SlotBlock, *, worker: int | None = None,
                   must_stop: Callable[[], bool] | None = None, repeat_interval: float) -> Bus:
    """The `OpenBus` of a single-host server (lapps/cli.py hands it to every process)."""
    node = worker_node(worker) if worker is not None else None
    broadcast = Broadcast(master_pid, slots, node, repeat_interval)
    if worker is not None:
        return LocalBus(broadcast, MqrClient(master_pid, blocking=False))   # a worker never waits for room
    return LocalBus(broadcast, MqrClient(master_pid, must_stop or (lambda: False)))
