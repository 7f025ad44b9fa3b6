"""Post-fork entry of a standalone service instance: `init()` then `run()` in its own process.

A standalone service has no connections: it produces (broadcasts, mqr posts) or consumes
(mqr) on its own schedule. Its `run()` loops until `must_stop()` turns true, which a
SIGTERM (a graceful stop of the server, or the master's death through PDEATHSIG) does.
"""

from __future__ import annotations

import logging
import os
import signal

import prctl

from lapps.config import Config
from lapps.ipc.bus import BusError
from lapps.ipc.channel import EXIT_BOOT_FAILURE
from lapps.ipc.interface import OpenBus
from lapps.ipc.slots import SlotBlock
from lapps.lapps_protocol import encode, validate_outgoing
from lapps.logs import name_process, reopen_logs
from lapps.lua.runtime import LuaError, describe_lua_error
from lapps.lua.service import Bcast, Mqr, ServiceBootError, StandaloneService


def standalone_main(name: str, instance: int, config: Config, slots: SlotBlock, master_pid: int,
                    *, open_bus: OpenBus) -> int:
    """Run instance `instance` (0-based) of standalone service `name`; returns the exit status.
    `open_bus` is the bus backend lapps/cli.py chose."""
    label = f"{name}#{instance + 1}"
    prctl.set_proctitle(f"lapps: service {label}")
    prctl.set_name(f"lapps-{name}"[:15])
    prctl.set_pdeathsig(signal.SIGTERM)
    name_process(f"service {label}")
    log = logging.getLogger("lapps.service")
    stopping = []
    signal.signal(signal.SIGTERM, lambda s, f: stopping.append(s))
    signal.signal(signal.SIGINT, signal.SIG_IGN)   # the master decides what a Ctrl-C means
    signal.signal(signal.SIGUSR1, lambda s, f: reopen_logs())
    if os.getppid() != master_pid:
        return 0

    def must_stop() -> bool:
        return bool(stopping)

    svc = config.services[name]
    bus = open_bus(master_pid, slots, must_stop=must_stop, repeat_interval=config.server.log_repeat_interval)

    def publish(channel: int, message: object) -> object:
        try:
            validate_outgoing(message)
            bus.publish(channel, encode(message))
        except (ValueError, BusError) as e:
            return False, str(e).encode()
        return True

    def no_handlers(channel: int, handler: int) -> object:
        return False, b"a standalone service has no connections to subscribe"

    try:
        service = StandaloneService(
            svc, log, label, must_stop,
            bcast=Bcast(lambda channel: True, no_handlers, no_handlers, publish),
            mqr=Mqr(bus.post, bus.try_recv, bus.recv))
    except ServiceBootError as e:
        log.critical("cannot boot: %s", e)
        return EXIT_BOOT_FAILURE
    log.info("started")
    try:
        service.run()
    except LuaError as e:
        log.error("service %s (%s) failed: %s", name, svc.script, describe_lua_error(e))
        return 1
    finally:
        bus.close()
    if not stopping:
        log.warning("run() returned before must_stop(): the instance ended")
        return 1
    log.info("stopped")
    return 0
