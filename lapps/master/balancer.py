"""Least-weight worker selection: a pure function over a snapshot of the slots."""

from __future__ import annotations

from collections.abc import Sequence

from ..ipc.slots import SlotView, WorkerState


def worker_weight(slot: SlotView, queued: int, connection_weight: float, backlog_weight: float) -> float:
    """DESIGN §1: (connections + queued) * connection_weight + backlog_KiB * backlog_weight."""
    return (slot.connections + queued) * connection_weight + (slot.backlog / 1024.0) * backlog_weight


def pick_worker(slots: Sequence[SlotView], queued: Sequence[int], max_connections: int,
                connection_weight: float, backlog_weight: float, start: int = 0) -> int | None:
    """Index of the least-loaded running worker that has room, or None if there is none.

    `queued[i]` counts connections sent to worker i that it has not yet taken (its slot
    lags), so a burst of accepts spreads instead of piling onto the last reading.
    Ties go to the first candidate at or after `start`: the caller rotates `start` to
    get round-robin among equals.
    """
    n = len(slots)
    best: int | None = None
    best_weight = 0.0
    for k in range(n):
        i = (start + k) % n
        s = slots[i]
        if s.state != WorkerState.RUNNING or s.connections + queued[i] >= max_connections:
            continue
        w = worker_weight(s, queued[i], connection_weight, backlog_weight)
        if best is None or w < best_weight:
            best, best_weight = i, w
    return best
