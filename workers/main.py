"""Post-fork entry of an IO worker: name the process, tie it to the master, boot, serve."""

from __future__ import annotations

import logging
import os
import signal
import socket

import prctl

from lapps.config import Config
from lapps.ipc.channel import EXIT_BOOT_FAILURE
from lapps.ipc.interface import OpenBus
from lapps.ipc.slots import SlotBlock
from lapps.logs import name_process
from lapps.lua.service import ServiceBootError

from .worker import IOWorker


def worker_main(index: int, config: Config, channel: socket.socket, slots: SlotBlock,
                master_pid: int, *, open_bus: OpenBus) -> int:
    """Run worker `index` in this freshly forked process; returns its exit status.

    Everything per-process (Lua runtimes, the epoll object, the bus, signal wiring) is
    made here, after the fork, never inherited (STYLE pattern 9); `open_bus` is the bus
    backend lapps/cli.py chose.
    """
    number = index + 1
    prctl.set_proctitle(f"lapps: worker {number}")
    prctl.set_name(f"lapps-worker-{number}"[:15])
    prctl.set_pdeathsig(signal.SIGTERM)
    name_process(f"worker {number}")
    log = logging.getLogger("lapps.worker")
    wake_r, wake_w = install_signal_wakeup()
    slot = slots.writer(index)
    slot.pid = os.getpid()
    if os.getppid() != master_pid:        # the master died before PDEATHSIG was armed
        return 0
    channel.setblocking(False)
    bus = open_bus(master_pid, slots, worker=index, repeat_interval=config.server.log_repeat_interval)
    worker = IOWorker(index, config, channel, slot, wake_r, log, bus)
    try:
        worker.load_services()
    except ServiceBootError as e:
        log.critical("cannot boot: %s", e)
        return EXIT_BOOT_FAILURE
    log.info("serving %d service(s)", len(worker.host.routes))
    try:
        return worker.run()
    finally:
        signal.set_wakeup_fd(-1)      # a late SIGTERM (PDEATHSIG) must not hit a closed fd
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        wake_w.close()


def install_signal_wakeup() -> tuple[socket.socket, socket.socket]:
    """Route SIGTERM/SIGQUIT to a socket pair the loop polls (handlers only record).

    Returns `(read_end, write_end)`; both must stay open. SIGINT is ignored by workers:
    a Ctrl-C in a terminal reaches the whole process group, and the master decides
    what a SIGINT means.
    """
    rsock, wsock = socket.socketpair()
    rsock.setblocking(False)
    wsock.setblocking(False)
    signal.set_wakeup_fd(wsock.fileno(), warn_on_full_buffer=False)
    for sig in (signal.SIGTERM, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2):
        signal.signal(sig, lambda s, f: None)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    return rsock, wsock
