"""Broadcast delivery: one frame, every local subscriber of a channel, one syscall each.

A broadcast reaches thousands of connections in one loop turn. Queuing the frame on each
connection and flushing them all at the end of the turn cost more Python than the send
itself (an append, a dirty-list entry, a flush call and a `del out[:n]` per subscriber);
so a subscriber with nothing queued gets the frame written straight to its socket, the
same `bytes` object for all of them. Only what the socket does not take (a full kernel
buffer, an error) is queued, and the worker's flush pass then handles it as it handles any
reply: EPOLLOUT, pausing, or dropping a socket that failed. A subscriber with bytes already
queued gets the frame behind them, under the outbound limit (workers/outbound.py), so every
subscriber sees every message in order and a slow one never holds the others up.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from lapps.ws.protocol import State

from .outbound import fits

if TYPE_CHECKING:   # the loop is passed in; importing it here would be a cycle
    from .host import Loop

_OPEN = State.OPEN
_SOFT = (BlockingIOError, InterruptedError)


def send_to_all(loop: Loop, handlers: Iterable[int], frame: bytes, limit: int) -> int:
    """Send `frame` (a complete, encoded WebSocket frame) to each open connection among
    `handlers`; returns how many took it (sent or queued).

    Direct only on plain sockets: TLS connections are queued, since an SSL write that
    wants to be retried must be retried with the same buffer, which the flush pass does.
    `limit` is max_outbound_buffer; a subscriber over it gets its service's slow-consumer
    policy (`loop.make_room`).
    """
    by_handler = loop.by_handler
    mark_dirty = loop.mark_dirty
    size = len(frame)
    taken = sent_bytes = 0
    for handler in handlers:
        conn = by_handler.get(handler)
        if conn is None:
            continue
        proto = conn.proto
        if proto.state != _OPEN:
            continue
        out = proto.out
        if not out and not conn.tls:
            try:
                n = conn.sock.send(frame)
            except _SOFT:
                n = 0
            except OSError:
                n = 0   # the flush pass meets the error again and drops the socket
            sent_bytes += n
            taken += 1
            if n != size:
                proto.send_frame(frame[n:] if n else frame)   # the rest, for the flush pass
                mark_dirty(conn)
            continue
        if not fits(len(out), size, limit) and not loop.make_room(conn):
            continue   # a slow subscriber misses it ("drop") or is being closed ("close")
        proto.send_frame(frame)
        taken += 1
        mark_dirty(conn)
    loop.slot.bytes_out += sent_bytes
    return taken
