"""Hosting Lua service instances: the module table, its entry points, its host modules.

The process that hosts a service (an IO worker for reactive services, a service process
for standalone ones) owns connections, the bus and the clock; this module only knows the
Lua side. It loads the script into a sandboxed runtime, checks the module's shape,
installs the host modules the service may use, and keeps direct references to the entry
points so that a message costs one Lua call and no table lookups.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..config import ServiceConfig
from .modules import HOST_MODULES, OFFERED, PRELOAD, NotOffered
from .modules.bcast import Bcast
from .modules.cws_tls import TlsOptions
from .modules.mqr import Mqr
from .modules.ws import WsHost
from .runtime import LuaError, LuaMemoryError, Runtime, describe_lua_error, lua_type, new_runtime
from .values import LuaValues

REACTIVE_FUNCTIONS = ("onStart", "onShutdown", "onDisconnect", "onMessage")
STANDALONE_FUNCTIONS = ("init", "run")

_HEADROOM = 1 << 20   # bytes of Lua heap a call needs beside its message (make_room)


class ServiceBootError(Exception):
    """A service that cannot start: the message names the service and its file:line."""


class ServiceInstance:
    """One instance (one Lua state) of a service, with the modules its config asks for."""

    def __init__(self, svc: ServiceConfig, log: logging.Logger, *, budget: bool,
                 bcast: Bcast | None = None, mqr: Mqr | None = None, ws: WsHost | None = None) -> None:
        self.name = svc.name
        self.config = svc
        self.log = log
        try:
            self.runtime: Runtime = new_runtime(
                svc.name, svc.directory, svc.allow_exec, log, svc.max_memory,
                svc.instruction_budget if budget else 0, svc.lua_path)
            self.lua = self.runtime.lua
            self.values = LuaValues(self.lua)
            g = self.lua.globals()
            offered = {"lua": self.lua, "values": self.values, "directory": svc.directory,
                       "tls": TlsOptions(svc.cws_verify, svc.cws_ca_file, svc.cws_connect_to),
                       "mqr": mqr, "ws": ws,
                       "bcast": bcast if svc.standalone or svc.protocol == "lapps" else None}
            self._install_modules(g, offered)
            # the sandbox's collectgarbage, taken now: a service that replaces the global
            # must not have its own function run by recover(), outside any guarded call
            self._collect = self.lua.execute(
                b"local collect = collectgarbage return function() collect() collect() end")
        except LuaError as e:
            raise ServiceBootError(f"service {svc.name}: {describe_lua_error(e)}") from None

    def _install_modules(self, g: Any, offered: dict[str, Any]) -> None:
        """The host modules of HOST_MODULES this service has, as globals: those of every
        service, those it names in `preload` (the config has refused the ones it may not
        have), and those the host offers (bcast where there are channels, ws in a worker)."""
        for module in HOST_MODULES.values():
            if module.when == PRELOAD and module.name not in self.config.preload:
                continue
            try:
                g[module.name.encode()] = module.install(offered)
            except NotOffered as e:
                if module.when != OFFERED:
                    raise ServiceBootError(f"service {self.name}: {e}") from None

    def load(self, required: tuple[str, ...]) -> Any:
        """Run the script; check that it returned a table with the `required` functions."""
        svc = self.config
        try:
            module = self.runtime.load(svc.script)
        except LuaError as e:   # LuaSyntaxError too
            raise ServiceBootError(f"service {svc.name}: {describe_lua_error(e)}") from None
        if lua_type(module) != "table":
            raise ServiceBootError(f"service {svc.name}: {svc.script} must return a table, "
                                   f"returned {lua_type(module) or type(module).__name__}")
        missing = [f for f in required if lua_type(module[f.encode()]) != "function"]
        if missing:
            raise ServiceBootError(f"service {svc.name}: {svc.script} lacks function(s) {', '.join(missing)}")
        return module

    def make_room(self, nbytes: int) -> bool:
        """Whether a message of `nbytes` (and a reply as large) fits under the state's memory
        cap, after a full collection if need be. lupa pushes a message onto the Lua stack
        outside any protected call, where an allocation past the cap is not a Lua error but
        a PANIC that aborts the worker: the host asks this first for every big message."""
        cap = self.lua.get_max_memory()
        if not cap:
            return True
        need = 2 * nbytes + _HEADROOM
        if self.lua.get_memory_used() + need <= cap:
            return True
        self._collect()
        return self.lua.get_memory_used() + need <= cap

    def recover(self, error: BaseException) -> None:
        """After a Lua error: a state that hit its memory cap gets its garbage collected
        at once, or the next allocation of any connection would fail too."""
        if isinstance(error, LuaMemoryError):
            self._collect()


class ReactiveService(ServiceInstance):
    """A reactive service instance in an IO worker (raw or LAppS protocol).

    `send`, `send_message`, `close` and `deferred` are the worker's side of the `ws` module
    (modules/ws.py WsHost), which the loader installs with the other host modules.
    """

    def __init__(self, svc: ServiceConfig, log: logging.Logger, send: Callable[..., Any],
                 send_message: Callable[[Any, Any], Any], close: Callable[..., Any],
                 *, deferred: Callable[..., None], max_outbound: int,
                 bcast: Bcast | None = None, mqr: Mqr | None = None) -> None:
        ws = WsHost(send, send_message, close, deferred, max_outbound, svc.protocol == "lapps")
        super().__init__(svc, log, budget=True, bcast=bcast, mqr=mqr, ws=ws)
        values = self.values
        module = self.load(REACTIVE_FUNCTIONS)
        guarded = self.runtime.guarded
        # on_message(handler, opcode, message[, used]): see modules/ws.lua for `used` and the
        # replies it returns after `ok`
        self.on_message = ws.dispatcher(guarded(module[b"onMessage"]))
        # on_request(handler, used, msg_type, *values.request_parts(message)): LAppS protocol
        # (or the same arguments from lapps/lapps_fastpath.py request_args)
        self.on_request = ws.request_dispatcher(guarded(module[b"onMessage"]), values.build_request)
        self.take_kept = ws.take_kept
        self.on_disconnect = guarded(module[b"onDisconnect"])
        self._on_start = guarded(module[b"onStart"])
        self._on_shutdown = guarded(module[b"onShutdown"])

    def start(self) -> None:
        """Run onStart(); an error here is a boot failure of the worker."""
        try:
            self._on_start()
        except LuaError as e:
            raise ServiceBootError(f"service {self.name}: onStart failed: {describe_lua_error(e)}") from None

    def shutdown(self) -> None:
        """Run onShutdown(); an error is logged, the shutdown goes on."""
        try:
            self._on_shutdown()
        except LuaError as e:
            self.log.error("service %s: onShutdown failed: %s", self.name, describe_lua_error(e))

    def disconnect(self, handler: int) -> None:
        """Run onDisconnect(handler); an error is logged and costs nothing else."""
        try:
            self.on_disconnect(handler)
        except LuaError as e:
            self.recover(e)
            self.log.error("service %s: onDisconnect(%d) failed: %s", self.name, handler,
                           describe_lua_error(e))


class StandaloneService(ServiceInstance):
    """A standalone service instance in its own process: `init()` then `run()`.

    `run()` is expected to loop until `must_stop()` says true; the globals `instance_id`
    and `must_stop` are set before the script runs, as in the original.
    """

    def __init__(self, svc: ServiceConfig, log: logging.Logger, instance_id: str,
                 must_stop: Callable[[], bool], bcast: Bcast | None = None, mqr: Mqr | None = None) -> None:
        super().__init__(svc, log, budget=False, bcast=bcast, mqr=mqr)
        g = self.lua.globals()
        g.instance_id = instance_id.encode()
        g.must_stop = must_stop
        module = self.load(STANDALONE_FUNCTIONS)
        self._init = module[b"init"]
        self._run = module[b"run"]

    def run(self) -> None:
        """init() then run(); a Lua error propagates as LuaError for the caller to log."""
        self._init()
        self._run()
