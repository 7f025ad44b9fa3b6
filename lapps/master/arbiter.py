"""The master: binds, forks, supervises, and turns signals into actions.

Signal handlers only record (the wakeup fd wakes the loop); the loop acts, as gunicorn's
Arbiter and nginx's master do. The master never runs Lua and never reads WebSocket bytes.
"""

from __future__ import annotations

import logging
import os
import select
import signal
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import prctl

from ..config import Config
from ..ipc.channel import EXIT_BOOT_FAILURE, make_channel
from ..ipc.slots import SlotBlock, WorkerState
from .acl import Acl
from .listeners import Dispatcher, bind_listener, start_listeners

# (index, config, worker end of the channel, slot block, master pid) -> exit status
WorkerTarget = Callable[[int, Config, socket.socket, SlotBlock, int], int]

_TICK = 0.25                  # seconds between supervision passes
_ABORT_GRACE = 2.0            # seconds between SIGABRT and SIGKILL for a stuck worker
_MAX_BACKOFF = 5.0            # seconds: ceiling of the respawn delay of a crashing slot
_HEALTHY_AFTER = 10.0         # seconds alive after which a worker's crash streak is forgotten


class HaltServer(Exception):
    """A failure the server cannot recover from by respawning (a worker that cannot boot)."""


@dataclass
class WorkerProc:
    """The master's record of the process in one worker slot."""

    index: int
    pid: int = 0
    channel: socket.socket | None = None
    started: float = 0.0
    crashes: int = 0             # consecutive early deaths, for the backoff
    respawn_at: float = 0.0      # 0: no respawn pending
    aborted_at: float = 0.0      # when SIGABRT was sent for a stale heartbeat
    stale_marks: list[float] = field(default_factory=list)


class Arbiter:
    """Runs the server until a stop; `run()` returns the exit status."""

    def __init__(self, config: Config, worker_target: WorkerTarget, log_level: str | int = "INFO") -> None:
        self.config = config
        self.worker_target = worker_target
        self.log_level = log_level
        self.log = logging.getLogger("lapps.master")
        n = config.server.workers
        self.slots = SlotBlock(n)
        self.workers = [WorkerProc(i) for i in range(n)]
        self.listen_socks: list[socket.socket] = []
        self.stop_event = threading.Event()
        self.dispatcher = Dispatcher(config, self.slots, self._channel)
        self.pending_signals: list[int] = []
        self.stopping = False
        self.stop_deadline = 0.0
        self.exit_status = 0

    def _channel(self, index: int) -> socket.socket | None:
        return self.workers[index].channel

    # ------------------------------------------------------------------ start

    def run(self) -> int:
        srv = self.config.server
        prctl.set_proctitle("lapps: master")
        prctl.set_name("lapps-master")
        try:
            self.listen_socks = [bind_listener(srv.ip, srv.port)]
        except OSError as e:
            raise OSError(e.errno, f"cannot listen on {srv.ip}:{srv.port}: {e.strerror}") from None
        wake_r, wake_w = socket.socketpair()
        wake_r.setblocking(False)
        wake_w.setblocking(False)
        signal.set_wakeup_fd(wake_w.fileno(), warn_on_full_buffer=False)
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGCHLD):
            signal.signal(sig, lambda s, f: None)
        self.log.info("listening on %s:%d with %d listener(s), %d worker(s)",
                      srv.ip, srv.port, srv.listeners, srv.workers)
        for name, svc in self.config.services.items():
            if not svc.standalone and svc.instances not in (1, srv.workers):
                self.log.warning("services.%s.instances = %d: a reactive service runs one instance "
                                 "per worker, so it has %d", name, svc.instances, srv.workers)
        try:
            for w in self.workers:
                self._spawn(w)
            start_listeners(self.listen_socks[0], srv.listeners, Acl(srv.acl.policy, srv.acl.exclude),
                            self.dispatcher, self.stop_event)
            self._loop(wake_r)
        except HaltServer as e:
            self.log.critical("%s", e)
            self.exit_status = 1
            self.stopping = True
            self._kill_all(signal.SIGKILL)
            self._reap_all(2.0)
        finally:
            self.stop_event.set()
            for s in self.listen_socks:
                s.close()
            signal.set_wakeup_fd(-1)
            wake_r.close()
            wake_w.close()
        return self.exit_status

    def _spawn(self, w: WorkerProc) -> None:
        """Fork the process for slot `w.index` with a fresh channel and a clean slot."""
        if w.channel is not None:
            w.channel.close()
        master_end, worker_end = make_channel()
        self.slots.reset(w.index, 0, WorkerState.BOOTING)
        self.dispatcher.reset(w.index)
        master_pid = os.getpid()
        pid = os.fork()
        if pid == 0:
            status = 1
            try:
                signal.set_wakeup_fd(-1)
                for sig in (signal.SIGTERM, signal.SIGQUIT, signal.SIGCHLD):
                    signal.signal(sig, signal.SIG_DFL)
                for s in self.listen_socks:
                    s.close()
                master_end.close()
                for other in self.workers:
                    if other.channel is not None:
                        other.channel.close()
                status = self.worker_target(w.index, self.config, worker_end, self.slots, master_pid)
            except SystemExit as e:
                status = e.code if isinstance(e.code, int) else 0
            except BaseException:
                logging.getLogger("lapps.worker").exception("worker %d crashed", w.index + 1)
            finally:
                logging.shutdown()
                os._exit(status)
        worker_end.close()
        w.pid, w.channel, w.started = pid, master_end, time.monotonic()
        w.respawn_at = w.aborted_at = 0.0
        self.log.info("worker %d started (pid %d)", w.index + 1, pid)

    # ------------------------------------------------------------------ supervision

    def _loop(self, wake: socket.socket) -> None:
        while True:
            try:
                readable, _, _ = select.select([wake], [], [], _TICK)
            except InterruptedError:
                readable = []
            if readable:
                try:
                    self.pending_signals.extend(wake.recv(64))
                except (BlockingIOError, InterruptedError):
                    pass   # a spurious wakeup: nothing to read
            while self.pending_signals:
                self._handle_signal(self.pending_signals.pop(0))
            self._reap()
            now = time.monotonic()
            if self.stopping:
                if all(w.pid == 0 for w in self.workers):
                    self.log.info("stopped")
                    return
                if now >= self.stop_deadline:
                    self.log.warning("shutdown_timeout passed: killing what is left")
                    self._kill_all(signal.SIGKILL)
                    self._reap_all(2.0)
                    return
                continue
            self._check_heartbeats(now)
            for w in self.workers:
                if w.pid == 0 and w.respawn_at and now >= w.respawn_at:
                    self._spawn(w)

    def _handle_signal(self, signum: int) -> None:
        if signum == signal.SIGCHLD:
            return   # _reap runs every pass anyway
        if signum == signal.SIGQUIT or (signum == signal.SIGINT and self.stopping):
            self.log.info("%s: stopping now", signal.Signals(signum).name)
            self._begin_stop(immediate=True)
        elif signum in (signal.SIGTERM, signal.SIGINT):
            self.log.info("%s: graceful stop", signal.Signals(signum).name)
            self._begin_stop(immediate=False)

    def _begin_stop(self, immediate: bool) -> None:
        if not self.stopping:
            self.stop_event.set()           # listeners stop accepting
            for s in self.listen_socks:
                s.close()
        self.stopping = True
        if immediate:
            self._kill_all(signal.SIGQUIT)
            self.stop_deadline = time.monotonic() + 1.0
        else:
            self._kill_all(signal.SIGTERM)
            self.stop_deadline = time.monotonic() + self.config.server.shutdown_timeout + 2.0

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            for w in self.workers:
                if w.pid == pid:
                    self._worker_exited(w, status)

    def _worker_exited(self, w: WorkerProc, status: int) -> None:
        slot = self.slots.read(w.index)
        w.pid = 0
        code = os.waitstatus_to_exitcode(status)
        if self.stopping:
            return
        if code == EXIT_BOOT_FAILURE or (slot.state == WorkerState.BOOTING and code > 0):
            raise HaltServer(f"worker {w.index + 1} could not boot (exit status {code}): "
                             "stopping the server; see the error above")
        self.slots.reset(w.index)
        now = time.monotonic()
        what = f"signal {-code}" if code < 0 else f"status {code}"
        if now - w.started > _HEALTHY_AFTER:
            w.crashes = 0
        delay = 0.0 if w.crashes == 0 else min(_MAX_BACKOFF, 0.1 * 2 ** w.crashes)
        w.crashes += 1
        w.respawn_at = now + delay
        self.log.warning("worker %d (pid %d) exited with %s; respawning in %.1fs",
                         w.index + 1, slot.pid or 0, what, delay)

    def _check_heartbeats(self, now: float) -> None:
        timeout = self.config.workers.heartbeat_timeout
        for w in self.workers:
            if not w.pid:
                continue
            if w.aborted_at:
                if now - w.aborted_at > _ABORT_GRACE:
                    self._signal(w, signal.SIGKILL)
                continue
            slot = self.slots.read(w.index)
            if slot.state == WorkerState.RUNNING and now - slot.heartbeat > timeout:
                self.log.error("worker %d (pid %d) missed its heartbeat for %.1fs: aborting it",
                               w.index + 1, w.pid, now - slot.heartbeat)
                w.aborted_at = now
                self._signal(w, signal.SIGABRT)

    def _signal(self, w: WorkerProc, sig: int) -> None:
        try:
            os.kill(w.pid, sig)
        except ProcessLookupError:
            pass   # already gone; _reap will see it

    def _kill_all(self, sig: int) -> None:
        for w in self.workers:
            if w.pid:
                self._signal(w, sig)

    def _reap_all(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while any(w.pid for w in self.workers) and time.monotonic() < deadline:
            self._reap()
            time.sleep(0.02)
