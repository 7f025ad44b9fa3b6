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

import prctl

from ..acl import Acl
from ..admin import AdminServer, start_admin
from ..config import Config, ConfigError
from ..logs import reopen_logs
from ..ipc.channel import EXIT_BOOT_FAILURE, make_channel, read_report, send_deploy
from ..ipc.mqr import MqrBroker
from ..ipc.slots import SlotBlock, WorkerState
from ..startup import standalone_order
from ..ws.codec import DESCRIPTION as CODEC
from .children import ServiceProc, WorkerProc, backoff, check_heartbeats, describe_exit
from .deployer import Deployer, DeployHooks
from .listeners import Dispatcher, bind_listener, start_listeners
from .sdnotify import sd_notify

# (index, config, worker end of the channel, slot block, master pid) -> exit status
WorkerTarget = Callable[[int, Config, socket.socket, SlotBlock, int], int]
# (service name, instance index, config, slot block, master pid) -> exit status
ServiceTarget = Callable[[str, int, Config, SlotBlock, int], int]

_TICK = 0.25                  # seconds between supervision passes
_MIN_SLOTS = 16               # worker slots in the shared block, at least
DRAIN_SIGNAL = signal.SIGUSR2  # master -> worker: take no more, finish within drain_timeout, exit


class HaltServer(Exception):
    """A failure the server cannot recover from by respawning (a worker that cannot boot)."""


class Arbiter:
    """Runs the server until a stop; `run()` returns the exit status."""

    def __init__(self, config: Config, worker_target: WorkerTarget, service_target: ServiceTarget,
                 log_level: str | int = "INFO", reload_config: Callable[[], Config] | None = None) -> None:
        self.config = config
        self.worker_target = worker_target
        self.service_target = service_target
        self.log_level = log_level
        self.reload_config = reload_config
        self.log = logging.getLogger("lapps.master")
        n = config.server.workers
        # room for a second generation during a reload and for SIGTTIN
        self.slots = SlotBlock(max(_MIN_SLOTS, 4 * n))
        self.generation = 0
        self.target_workers = n
        self.workers = [WorkerProc(i) for i in range(n)]
        self.reloading = False
        self.serving = False        # the first generation has run: boot failures no longer halt
        self.previous: tuple[Config, int, int] | None = None
        self.actions = {signal.SIGHUP: self._reload, signal.SIGTTIN: self._add_worker,
                        signal.SIGTTOU: self._remove_worker, signal.SIGUSR1: self._reopen_logs}
        self.services = [ServiceProc(name, i) for name in standalone_order(config)
                         for i in range(config.services[name].instances)]
        self.broker: MqrBroker | None = None
        self.admin: AdminServer | None = None
        self.listen_socks: list[socket.socket] = []
        self.stop_event = threading.Event()
        self.dispatcher = Dispatcher(config, self.slots, self._channel)
        self.pending_signals: list[int] = []
        self.stopping = False
        self.stop_deadline = 0.0
        self.exit_status = 0
        self.deployer: Deployer | None = None
        if config.server.deploy_dir and reload_config is not None:
            self.deployer = Deployer(config.server.deploy_dir, DeployHooks(
                lambda: self.config, reload_config, self._apply_deploy, self._serving_workers,
                self._tell_deployed))

    def _channel(self, index: int) -> socket.socket | None:
        for w in self.workers:
            if w.index == index:
                return w.channel
        return None

    def _free_slot(self) -> int:
        used = {w.index for w in self.workers}
        for i in range(self.slots.count):
            if i not in used:
                return i
        raise RuntimeError("no free worker slot")

    # ------------------------------------------------------------------ start

    def run(self) -> int:
        srv = self.config.server
        prctl.set_proctitle("lapps: master")
        prctl.set_name("lapps-master")
        addresses = [(srv.ip, srv.port, srv.tls.enabled)] + [(e.ip, e.port, e.tls) for e in srv.endpoints]
        for ip, port, _ in addresses:
            try:
                self.listen_socks.append(bind_listener(ip, port))
            except OSError as e:
                for s in self.listen_socks:
                    s.close()
                raise OSError(e.errno, f"cannot listen on {ip}:{port}: {e.strerror}") from None
        wake_r, wake_w = socket.socketpair()
        wake_r.setblocking(False)
        wake_w.setblocking(False)
        signal.set_wakeup_fd(wake_w.fileno(), warn_on_full_buffer=False)
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGCHLD, signal.SIGHUP,
                    signal.SIGTTIN, signal.SIGTTOU, signal.SIGUSR1):
            signal.signal(sig, lambda s, f: None)
        for ip, port, tls in addresses:
            self.log.info("listening on %s://%s:%d with %d listener(s)", "wss" if tls else "ws",
                          ip, port, srv.listeners)
        self.log.info("%d worker(s)", srv.workers)
        self.log.info("frame codec: %s", CODEC)   # the workers inherit the master's choice
        for name, svc in self.config.services.items():
            if not svc.standalone and svc.instances not in (1, srv.workers):
                self.log.warning("services.%s.instances = %d: a reactive service runs one instance "
                                 "per worker, so it has %d", name, svc.instances, srv.workers)
        self.broker = MqrBroker(os.getpid(), self.stop_event)
        self.broker.start()
        try:
            self.admin = start_admin(self)   # [admin]: /metrics, /healthz, /readyz, /status
            for w in self.workers:
                self._spawn(w)
            for sp in self.services:
                self._spawn_service(sp)
            acl = Acl(srv.acl.policy, srv.acl.exclude)
            for n, (sock, (_, _, tls)) in enumerate(zip(self.listen_socks, addresses)):
                start_listeners(sock, tls, srv.listeners, 1 + n * srv.listeners, acl,
                                self.dispatcher, self.stop_event)
            self._loop(wake_r)
        except HaltServer as e:
            self.log.critical("%s", e)
            self.exit_status = 1
            self.stopping = True
            self._kill_all(signal.SIGKILL)
            self._reap_all(2.0)
        finally:
            if self.admin is not None:
                self.admin.stop()
            self.stop_event.set()
            for s in self.listen_socks:
                s.close()
            self.broker.sock.close()
            signal.set_wakeup_fd(-1)
            wake_r.close()
            wake_w.close()
        return self.exit_status

    def _fork(self, name: str, run: Callable[[], int]) -> int:
        """Fork a child that runs `run()` and exits with its status.

        The child drops what belongs to the master: signal wiring, listening sockets, the
        broker's socket and every worker channel (a new worker's own is not among them yet).
        """
        pid = os.fork()
        if pid:
            return pid
        status = 1
        try:
            signal.set_wakeup_fd(-1)
            for sig in (signal.SIGTERM, signal.SIGQUIT, signal.SIGCHLD, signal.SIGHUP,
                        signal.SIGTTIN, signal.SIGTTOU, signal.SIGUSR1):
                signal.signal(sig, signal.SIG_DFL)
            for s in self.listen_socks:
                s.close()
            if self.broker is not None:
                self.broker.sock.close()
            for other in self.workers:
                if other.channel is not None:
                    other.channel.close()
            status = run()
        except SystemExit as e:
            status = e.code if isinstance(e.code, int) else 0
        except BaseException:
            logging.getLogger("lapps").exception("%s crashed", name)
        finally:
            logging.shutdown()
            os._exit(status)

    def _spawn(self, w: WorkerProc) -> None:
        """Fork the process for slot `w.index` with a fresh channel and a clean slot."""
        if w.channel is not None:
            w.channel.close()
            w.channel = None
        master_end, worker_end = make_channel()
        self.slots.reset(w.index, 0, WorkerState.BOOTING)
        self.dispatcher.reset(w.index)
        master_pid = os.getpid()

        def run() -> int:
            master_end.close()
            return self.worker_target(w.index, self.config, worker_end, self.slots, master_pid)

        pid = self._fork(f"worker {w.index + 1}", run)
        worker_end.close()
        w.pid, w.channel, w.started = pid, master_end, time.monotonic()
        w.respawn_at = w.aborted_at = w.stale_since = 0.0
        self.log.info("worker %d started (pid %d)", w.index + 1, pid)

    def _spawn_service(self, sp: ServiceProc) -> None:
        master_pid = os.getpid()
        sp.pid = self._fork(f"service {sp.label}",
                            lambda: self.service_target(sp.name, sp.instance, self.config, self.slots, master_pid))
        sp.started = time.monotonic()
        sp.respawn_at = 0.0
        self.log.info("service %s started (pid %d)", sp.label, sp.pid)

    # ------------------------------------------------------------------ supervision

    def _loop(self, wake: socket.socket) -> None:
        while True:
            channels = {w.channel: w.index for w in self.workers if w.channel is not None}
            try:
                readable, _, _ = select.select([wake, *channels], [], [], _TICK)
            except InterruptedError:
                readable = []
            for r in readable:
                if r is wake:
                    try:
                        self.pending_signals.extend(wake.recv(64))
                    except (BlockingIOError, InterruptedError):
                        pass   # a spurious wakeup: nothing to read
                else:
                    self._read_reports(r, channels[r])
            while self.pending_signals:
                self._handle_signal(self.pending_signals.pop(0))
            self._reap()
            now = time.monotonic()
            if self.stopping:
                if not self._children():
                    self.log.info("stopped")
                    return
                if now >= self.stop_deadline:
                    self.log.warning("shutdown_timeout passed: killing what is left")
                    self._kill_all(signal.SIGKILL)
                    self._reap_all(2.0)
                    return
                continue
            check_heartbeats(self.workers, self.slots, self.config.workers.heartbeat_timeout, now,
                             self._signal, self.log)
            self._check_generation()
            if self.deployer is not None and not self.reloading:
                self.deployer.tick(now)
            for w in self.workers:
                if w.pid == 0 and w.respawn_at and now >= w.respawn_at:
                    self._spawn(w)
            for sp in self.services:
                if sp.pid == 0 and sp.respawn_at and now >= sp.respawn_at:
                    self._spawn_service(sp)

    def _read_reports(self, channel: socket.socket, index: int) -> None:
        """A worker reported ended connections (the per-address counts of the listeners)."""
        while True:
            try:
                report = read_report(channel)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return   # the worker is gone; its slot is reset when it is reaped
            if report is None:
                return
            kind, value = report
            if kind == "closed":
                self.dispatcher.closed(index, value)   # type: ignore[arg-type]
            elif self.deployer is not None:
                name, error = value                    # type: ignore[misc]
                self.deployer.report(index, name, error)

    def _handle_signal(self, signum: int) -> None:
        if signum == signal.SIGCHLD:
            return   # _reap runs every pass anyway
        if signum in self.actions and not self.stopping:
            return self.actions[signum]()
        if signum == signal.SIGQUIT or (signum == signal.SIGINT and self.stopping):
            self.log.info("%s: stopping now", signal.Signals(signum).name)
            self._begin_stop(immediate=True)
        elif signum in (signal.SIGTERM, signal.SIGINT) and not self.stopping:
            self.log.info("%s: graceful stop", signal.Signals(signum).name)
            self._begin_stop(immediate=False)

    def _begin_stop(self, immediate: bool) -> None:
        if not self.stopping:
            sd_notify("STOPPING=1")
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

    # ------------------------------------------------------------------ generations

    def _check_generation(self) -> None:
        """Once the current generation is all running: announce readiness the first time,
        and after a reload drain the previous generation (never before: a reload must not
        leave a moment without a running worker)."""
        current = [w for w in self.workers if w.generation == self.generation and not w.draining]
        if not current or any(self.slots.read(w.index).state != WorkerState.RUNNING for w in current):
            return
        if not self.serving:
            self.serving = True
            sd_notify(f"READY=1\nSTATUS=serving with {len(current)} workers")
        if self.reloading:
            self.reloading = False
            old = [w for w in self.workers if w.generation != self.generation and not w.draining]
            for w in old:
                self._drain(w)
            self.log.info("reload done: generation %d serves, %d old worker(s) draining (up to %gs)",
                          self.generation, len(old), self.config.server.drain_timeout)
            sd_notify(f"READY=1\nSTATUS=serving with {len(current)} workers")

    def _drain(self, w: WorkerProc) -> None:
        w.draining = True
        self.dispatcher.retire(w.index)
        if w.pid:
            self._signal(w, DRAIN_SIGNAL)

    def _reload(self) -> None:
        """SIGHUP: re-read the config and the Lua services into a new generation of workers.

        The listening sockets stay, so no connection attempt is refused; the old workers
        keep serving until the new ones run, then finish their connections (drain_timeout).
        A config that does not load is logged and changes nothing.
        """
        if self.reload_config is None or self.reloading:
            self.log.warning("SIGHUP ignored: %s", "a reload is in progress" if self.reloading
                             else "no config file to re-read")
            return
        sd_notify("RELOADING=1")
        try:
            new = self.reload_config()
        except ConfigError as e:
            self.log.error("reload refused, the running generation keeps serving: %s", e)
            sd_notify("READY=1")
            return
        old_srv, new_srv = self.config.server, new.server
        if (old_srv.ip, old_srv.port, old_srv.tls.enabled, old_srv.endpoints) != \
                (new_srv.ip, new_srv.port, new_srv.tls.enabled, new_srv.endpoints):
            self.log.warning("reload: listening addresses and TLS on/off change only with a restart")
        self.previous = (self.config, self.generation, self.target_workers)
        self.config = new
        self.dispatcher.config = new
        self.generation += 1
        self.target_workers = new.server.workers
        self.reloading = True
        self.log.info("SIGHUP: reloading into generation %d", self.generation)
        for _ in range(new.server.workers):
            w = WorkerProc(self._free_slot(), self.generation)
            self.workers.append(w)
            self._spawn(w)
        for sp in self.services:
            sp.retired = True
            if sp.pid:
                self._signal(sp, signal.SIGTERM)
        self.services += [ServiceProc(name, i) for name in standalone_order(new)
                          for i in range(new.services[name].instances)]
        for sp in self.services:
            if not sp.retired:
                self._spawn_service(sp)

    # ------------------------------------------------------------------ hot deploy
    def _apply_deploy(self, new: Config, name: str) -> None:
        """Run with `new` from now on (respawned workers fork with it); a standalone `name`
        gets its instances restarted with the new code."""
        self.config = new
        self.dispatcher.config = new
        for sp in self.services:
            if sp.name == name and not sp.retired:
                sp.retired = True
                if sp.pid:
                    self._signal(sp, signal.SIGTERM)
        if name in standalone_order(new):
            fresh = [ServiceProc(name, i) for i in range(new.services[name].instances)]
            self.services += fresh
            for sp in fresh:
                self._spawn_service(sp)

    def _serving_workers(self) -> list[tuple[int, int]]:
        return [(w.index, w.pid) for w in self.workers
                if w.pid and w.channel is not None and not w.draining]

    def _tell_deployed(self, index: int, name: str) -> bool:
        channel = self._channel(index)
        return channel is not None and send_deploy(channel, name)

    def _abort_reload(self, why: str) -> None:
        """The new generation cannot boot: drop it and go on with the old one."""
        self.log.error("reload failed (%s): generation %d keeps serving", why, self.generation - 1)
        failed = self.generation
        self.config, self.generation, self.target_workers = self.previous
        self.dispatcher.config = self.config
        self.reloading = False
        for w in self.workers:
            if w.generation == failed:
                w.draining = True
                if w.pid:
                    self._signal(w, signal.SIGKILL)
        sd_notify("READY=1")

    def _add_worker(self) -> None:
        """SIGTTIN: one worker more in the current generation."""
        self.target_workers += 1
        w = WorkerProc(self._free_slot(), self.generation)
        self.workers.append(w)
        self._spawn(w)
        self.log.info("SIGTTIN: %d workers", self.target_workers)

    def _remove_worker(self) -> None:
        """SIGTTOU: one worker less; the newest drains its connections and exits."""
        current = [w for w in self.workers if w.generation == self.generation and not w.draining]
        if len(current) <= 1:
            self.log.warning("SIGTTOU ignored: one worker is the minimum")
            return
        self.target_workers -= 1
        self._drain(current[-1])
        self.log.info("SIGTTOU: %d workers (worker %d drains)", self.target_workers, current[-1].index + 1)

    def _reopen_logs(self) -> None:
        """SIGUSR1: reopen log files (after logrotate moved them), here and in every child."""
        reopen_logs()
        for child in (*self.workers, *self.services):
            if child.pid:
                self._signal(child, signal.SIGUSR1)
        self.log.info("SIGUSR1: log files reopened")

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
            for sp in self.services:
                if sp.pid == pid:
                    self._service_exited(sp, status)

    def _children(self) -> list[int]:
        return [c.pid for c in (*self.workers, *self.services) if c.pid]

    def _worker_exited(self, w: WorkerProc, status: int) -> None:
        slot = self.slots.read(w.index)
        w.pid = 0
        code = os.waitstatus_to_exitcode(status)
        if self.stopping:
            return
        boot_failed = code == EXIT_BOOT_FAILURE or (slot.state == WorkerState.BOOTING and code > 0)
        if w.draining or w.generation != self.generation:
            self.workers.remove(w)          # drained, retired or a failed reload: not replaced
            self.slots.reset(w.index)
            self.dispatcher.reset(w.index)
            self.log.info("worker %d (generation %d) exited with %s", w.index + 1, w.generation,
                          describe_exit(code))
            return
        if boot_failed and self.reloading:
            return self._abort_reload(f"worker {w.index + 1} could not boot; see the error above")
        if boot_failed and not self.serving:
            raise HaltServer(f"worker {w.index + 1} could not boot (exit status {code}): "
                             "stopping the server; see the error above")
        self.slots.reset(w.index)
        w.restarts += 1
        delay = backoff(w)
        self.log.warning("worker %d (pid %d) exited with %s; respawning in %.1fs",
                         w.index + 1, slot.pid or 0, describe_exit(code), delay)

    def _service_exited(self, sp: ServiceProc, status: int) -> None:
        """A standalone instance never takes the server down: it is restarted, with backoff."""
        pid, sp.pid = sp.pid, 0
        if self.stopping:
            return
        if sp.retired:
            self.services.remove(sp)
            return
        code = os.waitstatus_to_exitcode(status)
        delay = backoff(sp)
        self.log.warning("service %s (pid %d) exited with %s; restarting in %.1fs",
                         sp.label, pid, describe_exit(code), delay)

    def _signal(self, child: WorkerProc | ServiceProc, sig: int) -> None:
        try:
            os.kill(child.pid, sig)
        except ProcessLookupError:
            pass   # already gone; _reap will see it

    def _kill_all(self, sig: int) -> None:
        for child in (*self.workers, *self.services):
            if child.pid:
                self._signal(child, sig)

    def _reap_all(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while self._children() and time.monotonic() < deadline:
            self._reap()
            time.sleep(0.02)
