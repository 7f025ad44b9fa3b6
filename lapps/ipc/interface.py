"""The bus as a process sees it: one interface, whatever backend carries the messages.

An IO worker and a standalone service use the bus for broadcast channels (`bcast`) and
named queues (`mqr`). They reach it only through `Bus`, which the composition root
(lapps/cli.py) chooses and hands in as an `OpenBus`, so another backend (Redis pub/sub
across nodes, say) can replace the local one (lapps/ipc/local.py) without touching
workers/. A receiving process's loop learns what to poll from `Bus.attach`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from .slots import SlotBlock

# broadcast messages that arrived, as (channel, payload); called once per readable fd
Deliver = Callable[[list[tuple[int, bytes]]], None]


class Poller(Protocol):
    """The loop a receiving bus registers its file descriptors with (the IO worker's)."""

    def watch(self, fd: int, on_readable: Callable[[], None]) -> None: ...
    def unwatch(self, fd: int) -> None: ...


class Bus(Protocol):
    """Broadcast channels that span the server's IO workers, and named queues.

    Operations that cannot be done raise `lapps.ipc.bus.BusError` (a message too large,
    a queue full, the broker gone); none blocks in an IO worker.
    """

    def publish(self, channel: int, payload: bytes) -> None:
        """Send `payload` (an encoded LAppS message) to `channel` in every IO worker, this
        process included when it is one."""

    def subscribe(self, channel: int) -> None:
        """This process has its first local subscriber on `channel`."""

    def unsubscribe(self, channel: int) -> None:
        """This process's last local subscriber on `channel` left."""

    def post(self, queue: str, payload: bytes) -> None:
        """Queue one message on `queue` for exactly one receiver."""

    def try_recv(self, queue: str) -> bytes | None:
        """The next message of `queue`, or None when it is empty; never waits for one."""

    def recv(self, queue: str) -> bytes | None:
        """The next message of `queue`, waiting for it (standalone services only); None
        once the process must stop."""

    def attach(self, poller: Poller, deliver: Deliver) -> None:
        """The poll hook of a receiving process: register with `poller` the descriptors to
        watch; when one is readable the bus reads it and hands what arrived to `deliver`."""

    def close(self) -> None:
        """Release the backend's links (the process is ending)."""


class OpenBus(Protocol):
    """How a process gets its bus, after the fork. `worker`: the IO worker's index (it
    receives broadcasts; queue posts never wait), or None for a standalone service (it
    only publishes; posts wait for room, but never past `must_stop()`). `repeat_interval`:
    [server] log_repeat_interval, for the warnings a backend may repeat per message. A
    backend's own settings are bound by the composition root that chooses it."""

    def __call__(self, master_pid: int, slots: SlotBlock, *, worker: int | None = None,
                 must_stop: Callable[[], bool] | None = None, repeat_interval: float) -> Bus: ...
