"""Keepalive of an IO worker's connections: pings, dead peers and idle connections.

A mixin of `IOWorker` (worker.py), apart because none of it runs per message: the loop calls
`_sweep` once a second (DESIGN §2 [limits]: ping_interval, ping_timeout, idle_timeout); it
reads the connections and settings the worker holds and closes through the worker's own
`_drop`, `close_connection` and fault barrier (`_fault`).
"""

from __future__ import annotations

import random

from lapps.ws.constants import CloseCode
from lapps.ws.protocol import State

from .connection import Connection


class Keepalive:
    """The sweep `IOWorker` runs once a second."""

    def _sweep(self, now: float) -> None:
        """Once a second: pings, dead peers and idle connections (DESIGN §2 [limits]).

        One pass over the connections instead of a timer per connection: liveness costs
        the hot path only the `last_read` store in `_read`.
        """
        for conn in list(self.conns.values()):
            if conn.proto.state == State.OPEN:
                try:
                    self._keepalive(conn, now)
                except Exception as e:   # the fault barrier, as in run()
                    self._fault(conn, e)
        self._flush_dirty()
        self.repeats.flush()   # the count lines of repeated warnings whose interval ended

    def _keepalive(self, conn: Connection, now: float) -> None:
        """The sweep's look at one open connection: its ping, its liveness, its idleness."""
        proto = conn.proto
        timeout, idle = self.ping_timeout, self.idle_timeout
        if conn.ping_sent:
            # reads are stamped with the clock of the turn before them, so a read after
            # the sweep that sent the ping carries at least that sweep's time
            if conn.last_read >= conn.ping_sent:
                conn.ping_sent = 0.0                     # answered (any bytes count)
            elif timeout and now - conn.ping_sent > timeout:
                if conn.paused:   # it stopped reading: a close frame could not reach it
                    self.repeats.info("stopped reading", "dropping %s (handler %d): it stopped "
                                      "reading, %d bytes unsent", conn.peer, conn.handler, len(proto.out))
                else:
                    self.log.debug("dropping %s: no answer to a ping in %.0fs", conn.peer, timeout)
                return self._drop(conn)
        if self.ping_interval and not conn.ping_sent:
            if not conn.ping_every:
                conn.ping_every = self.ping_interval * random.uniform(0.8, 1.2)
            if now - conn.last_read > conn.ping_every and proto.ping():
                conn.ping_sent = now
                self.mark_dirty(conn)
        if idle:
            if proto.messages != conn.seen or not conn.last_message:
                conn.seen, conn.last_message = proto.messages, now
            elif now - conn.last_message > idle:
                self.close_connection(conn, CloseCode.GOING_AWAY, "idle timeout")
