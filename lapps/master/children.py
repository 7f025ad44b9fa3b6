"""The master's records of its children and the pure rules it supervises them by.

`WorkerProc` and `ServiceProc` are what the arbiter (and, read duck-typed, lapps/admin.py) knows
of each process; `backoff` schedules a respawn and `check_heartbeats` decides when a worker is
stuck. Apart from lapps/master/arbiter.py, which forks, reaps and signals, so that these rules
read without the process plumbing around them.
"""

from __future__ import annotations

import logging
import signal
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass

from ..ipc.slots import SlotBlock, WorkerState

_ABORT_GRACE = 2.0            # seconds between SIGABRT and SIGKILL for a stuck worker
_STALE_CONFIRM = 1.0          # seconds a stale heartbeat must stay stale before the abort
_MAX_BACKOFF = 5.0            # seconds: ceiling of the respawn delay of a crashing slot
_HEALTHY_AFTER = 10.0         # seconds alive after which a worker's crash streak is forgotten


def describe_exit(code: int) -> str:
    return f"signal {-code}" if code < 0 else f"status {code}"


@dataclass
class WorkerProc:
    """The master's record of the process in one worker slot."""

    index: int                   # its slot in the shared block (and its bus name)
    generation: int = 0          # the config generation it runs (a reload starts a new one)
    pid: int = 0
    channel: socket.socket | None = None
    started: float = 0.0
    crashes: int = 0             # consecutive early deaths, for the backoff
    respawn_at: float = 0.0      # 0: no respawn pending
    aborted_at: float = 0.0      # when SIGABRT was sent for a stale heartbeat
    stale_since: float = 0.0     # when the master first saw its heartbeat stale
    restarts: int = 0            # respawns after an unexpected exit (lapps_worker_restarts_total)
    draining: bool = False       # told to finish its connections and exit (reload, SIGTTOU)


@dataclass
class ServiceProc:
    """The master's record of one standalone service instance's process."""

    name: str
    instance: int
    pid: int = 0
    started: float = 0.0
    crashes: int = 0
    respawn_at: float = 0.0
    retired: bool = False        # replaced by a reload: not restarted when it exits

    @property
    def label(self) -> str:
        return f"{self.name}#{self.instance + 1}"


def backoff(child: WorkerProc | ServiceProc) -> float:
    """Schedule the respawn: at once after a healthy life, then doubling to a ceiling."""
    now = time.monotonic()
    if now - child.started > _HEALTHY_AFTER:
        child.crashes = 0
    delay = 0.0 if child.crashes == 0 else min(_MAX_BACKOFF, 0.1 * 2 ** child.crashes)
    child.crashes += 1
    child.respawn_at = now + delay
    return delay


def check_heartbeats(workers: list[WorkerProc], slots: SlotBlock, timeout: float, now: float,
                     send: Callable[[WorkerProc, int], None], log: logging.Logger) -> None:
    """One supervision pass over the heartbeats: SIGABRT a worker whose heartbeat stayed stale
    past `timeout` (confirmed a second later), SIGKILL one that outlived its abort's grace.
    `send(worker, signal)` signals it (the arbiter's, which tolerates a worker already gone)."""
    for w in workers:
        if not w.pid:
            continue
        if w.aborted_at:
            if now - w.aborted_at > _ABORT_GRACE:
                send(w, signal.SIGKILL)
            continue
        slot = slots.read(w.index)
        if slot.state not in (WorkerState.RUNNING, WorkerState.DRAINING) or now - slot.heartbeat <= timeout:
            w.stale_since = 0.0
            continue
        # The slot is read without a lock, so one reading can be torn (a new state with
        # an old heartbeat): a worker is aborted only when a second look, a second
        # later, still finds it stale.
        if not w.stale_since:
            w.stale_since = now
        elif now - w.stale_since >= _STALE_CONFIRM:
            log.error("worker %d (pid %d) missed its heartbeat for %.1fs (slot: state %s, "
                      "heartbeat %.3f, now %.3f): aborting it", w.index + 1, w.pid,
                      now - slot.heartbeat, slot.state.name, slot.heartbeat, now)
            w.aborted_at = now
            send(w, signal.SIGABRT)
