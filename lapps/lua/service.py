"""Hosting one reactive Lua service instance (raw protocol) inside an IO worker.

The worker owns the connections; this module only knows the Lua side: it loads the
script into a sandboxed runtime, checks the module's shape, installs the `ws` host
module, and keeps direct references to the four entry points so that a message costs
one Lua call and no table lookups.
"""

from __future__ import annotations

import logging
from typing import Any, Callable

from .runtime import LuaError, describe_lua_error, lua_type, new_runtime

REACTIVE_FUNCTIONS = ("onStart", "onShutdown", "onDisconnect", "onMessage")

# `ws` accepts both call styles of the original (ws:send(...) and ws.send(...)): the
# check runs in Lua, where it costs next to nothing, instead of in Python per message.
_WS_MODULE = b"""
local py_send, py_close = ...
local ws = {}
function ws.send(a, b, c, d)
  if a == ws then return py_send(b, c, d) end
  return py_send(a, b, c)
end
function ws.close(a, b, c, d)
  if a == ws then return py_close(b, c, d) end
  return py_close(a, b, c)
end
ws.TEXT = 1
ws.BINARY = 2
return ws
"""


class ServiceBootError(Exception):
    """A service that cannot start: the message names the service and its file:line."""


SendFn = Callable[[Any, Any, Any], tuple]
CloseFn = Callable[[Any, Any, Any], tuple]


class ReactiveService:
    """One instance (one Lua state) of a reactive service in this worker.

    `send` and `close` are the worker's implementations of `ws:send`/`ws:close`;
    they take `(handler, opcode_or_code, data_or_reason)` and return `(True,)` or
    `(False, errmsg_bytes)`, as the original LAppS API returns.
    """

    def __init__(self, name: str, script: str, directory: str, send: SendFn, close: CloseFn,
                 allow_exec: bool = False, log: logging.Logger | None = None) -> None:
        self.name = name
        self.script = script
        self.log = log or logging.getLogger("lapps.service")
        try:
            self.lua, load = new_runtime(name, directory, allow_exec, self.log)
            self.lua.globals().ws = self.lua.execute(_WS_MODULE, send, close)
            module = load(script)
        except LuaError as e:   # LuaSyntaxError too
            raise ServiceBootError(f"service {name}: {describe_lua_error(e)}") from None
        if lua_type(module) != "table":
            raise ServiceBootError(f"service {name}: {script} must return a table, "
                                   f"returned {lua_type(module) or type(module).__name__}")
        missing = [f for f in REACTIVE_FUNCTIONS if lua_type(module[f.encode()]) != "function"]
        if missing:
            raise ServiceBootError(f"service {name}: {script} lacks function(s) {', '.join(missing)}")
        self.module = module
        self.on_message = module[b"onMessage"]
        self.on_disconnect = module[b"onDisconnect"]
        self._on_start = module[b"onStart"]
        self._on_shutdown = module[b"onShutdown"]

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
            self.log.error("service %s: onDisconnect(%d) failed: %s", self.name, handler,
                           describe_lua_error(e))
