"""Signals, drain and stop of an IO worker: the part of its loop that ends it.

A mixin of `IOWorker` (worker.py), apart because none of it runs per message: the loop
polls the signal wake-up socket and calls `_handle_signals`, then checks the deadlines
these methods set (`draining`/`drain_deadline`, `stopping`/`stop_deadline`) once a turn.
"""

from __future__ import annotations

import signal
import time

from lapps.ipc.slots import WorkerState
from lapps.logs import reopen_logs
from lapps.ws.constants import CloseCode
from lapps.ws.protocol import State

_DRAIN_QUIET = 0.5       # seconds a draining worker still takes sockets already sent to it


class Stopping:
    """What `IOWorker` does on SIGTERM/SIGINT (stop), SIGUSR2 (drain), SIGQUIT and SIGUSR1."""

    def _handle_signals(self) -> None:
        try:
            data = self.wakeup.recv(64)
        except (BlockingIOError, InterruptedError):
            return
        for signum in data:
            if signum == signal.SIGQUIT:
                self.log.info("SIGQUIT: stopping now")
                raise SystemExit(0)
            if signum in (signal.SIGTERM, signal.SIGINT):
                self._begin_stop()
            elif signum == signal.SIGUSR2:
                self._begin_drain()
            elif signum == signal.SIGUSR1:
                reopen_logs()

    def _begin_drain(self) -> None:
        """The master replaced this worker (reload, SIGTTOU): it gets no new connections;
        the open ones go on until they end or drain_timeout passes, then close with 1001."""
        if self.draining or self.stopping:
            return
        self.draining = True
        self.slot.state = WorkerState.DRAINING
        self.drain_deadline = time.monotonic() + self.config.server.drain_timeout
        # sockets the master sent just before it retired this worker may still be in flight
        self.drain_quiet = time.monotonic() + _DRAIN_QUIET
        self.log.info("draining %d connection(s), for %gs at most", len(self.conns),
                      self.config.server.drain_timeout)

    def _begin_stop(self) -> None:
        """Graceful stop: take no more sockets, close every WebSocket with 1001."""
        if self.stopping:
            return
        self.stopping = True
        self.slot.state = WorkerState.DRAINING
        self.stop_deadline = time.monotonic() + self.config.server.shutdown_timeout
        self.unwatch(self.channel.fileno())
        for conn in list(self.conns.values()):
            state = conn.proto.state
            if state == State.OPEN:
                self.close_connection(conn, CloseCode.GOING_AWAY, "server shutting down")
            elif state < State.OPEN:
                self._drop(conn)
            elif conn.lingering:
                self._release(conn)

    def _finish_stop(self) -> int:
        for conn in list(self.conns.values()):
            self._drop(conn)
        self.host.shutdown()
        self.slot.state = WorkerState.STOPPED
        self.slot.publish(time.monotonic())
        return 0

