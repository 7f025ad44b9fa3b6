"""Sandboxed LuaJIT runtimes, one per service instance.

Every runtime is made with `encoding=None` (Lua strings cross as `bytes`, no decode per
message), without `python.eval` or Python builtins, and with an attribute filter that
refuses every Python attribute: the only Python a service can reach is the host API
functions we hand it (STYLE pattern 10; lupa's "Restricting Lua access").
"""

from __future__ import annotations

import logging
from typing import Any, Callable

from lupa import luajit21

LuaError = luajit21.LuaError
LuaSyntaxError = luajit21.LuaSyntaxError
LuaMemoryError = luajit21.LuaMemoryError
lua_type = luajit21.lua_type


def _deny_attribute(obj: object, name: object, is_setting: bool) -> object:
    raise AttributeError("Python attributes are not reachable from Lua services")


# Runs once in each new runtime, before any service code. It receives the service's
# directory (for `require`), the print sink, and whether os.execute/io.popen stay.
_SANDBOX = b"""
local dir, log_print, allow_exec, budget_ticks = ...
local load_file, error, select, tostring = loadfile, error, select, tostring
local concat = table.concat
local sethook = debug.sethook

-- The instruction budget: a count hook every 1e6 VM instructions takes one tick off the
-- call's allowance. LuaJIT runs no hooks inside compiled traces, so a budgeted state runs
-- interpreted (jit.off): an endless loop must not be able to hide in a trace.
local ticks_left = math.huge
local function guard(fn)
  return function(...)
    ticks_left = budget_ticks
    return fn(...)
  end
end
if budget_ticks > 0 then
  jit.off()
  sethook(function()
    ticks_left = ticks_left - 1
    if ticks_left < 0 then
      ticks_left = budget_ticks   -- room for the error handler itself
      error("instruction budget exceeded", 2)
    end
  end, "", 1000000)
end

-- require() finds modules in the service's own directory only; no C modules
package.path = dir .. "/?.lua;" .. dir .. "/?/init.lua"
package.cpath = ""
package.loaded.ffi = nil       -- the FFI reaches raw memory and libc: never
package.preload.ffi = nil
package.loadlib = nil          -- loads native code
dofile = nil                   -- reads arbitrary files; services use require
loadfile = nil                 -- same
os.exit = nil                  -- would end the whole worker, not the service
os.remove = nil                -- filesystem writes are not a service's business
os.rename = nil
os.tmpname = nil
os.setlocale = nil             -- process-wide state shared by every service
if not allow_exec then
  os.execute = nil             -- a shell per call: only where the config allows it
  io = nil                     -- io.popen is the other shell; io file access goes with it
end
debug = { traceback = debug.traceback }  -- the rest of debug breaks the sandbox
package.loaded.debug = debug
package.loaded.io = io
package.loaded.os = os

print = function(...)
  local n = select("#", ...)
  local parts = {}
  for i = 1, n do parts[i] = tostring((select(i, ...))) end
  log_print(concat(parts, "\\t"))
end

-- the loader: runs the service script, whose chunk name is its path (errors say file:line);
-- a script that does not compile comes back as (nil, message): no traceback of this loader
local function load(path)
  local chunk, err = load_file(path)
  if not chunk then return nil, err end
  return true, chunk()
end
return load, guard
"""


class Runtime:
    """A sandboxed Lua state of one service instance, with its loader and call guard."""

    def __init__(self, lua: Any, loader: Any, guard: Any) -> None:
        self.lua = lua
        self._loader = loader
        self._guard = guard

    def load(self, path: str) -> Any:
        """Run the service script; return what it returned (the service's module table).

        Raises LuaSyntaxError (file:line, no traceback) for a script that does not compile
        and LuaError for one that fails while running.
        """
        # Lua's multiple returns come back as a tuple, a single one as the bare value
        result = self._loader(path.encode())
        loaded, module = (result[0], result[1]) if isinstance(result, tuple) else (result, None)
        if not loaded:
            raise LuaSyntaxError(module)
        return module

    def guarded(self, fn: Any) -> Any:
        """`fn` wrapped so that each call starts with a full instruction budget."""
        return self._guard(fn)


def new_runtime(service_name: str, directory: str, allow_exec: bool = False,
                log: logging.Logger | None = None, max_memory: int = 0,
                instruction_budget: int = 0) -> Runtime:
    """A fresh sandboxed runtime for one service instance.

    `max_memory` caps the Lua state's heap in bytes (an allocation past it raises
    LuaMemoryError in the call that made it); `instruction_budget` caps the VM
    instructions of each guarded call (0: no cap), at a granularity of a million.

    Lua's `print` goes to `log` with the service name.
    """
    logger = log or logging.getLogger("lapps.lua")
    lua = luajit21.LuaRuntime(encoding=None, register_eval=False, register_builtins=False,
                              unpack_returned_tuples=True, attribute_filter=_deny_attribute,
                              max_memory=max_memory or None)

    def log_print(text: bytes) -> None:
        logger.info("[%s] %s", service_name, text.decode("utf-8", "replace"))

    ticks = -(-instruction_budget // 1_000_000) if instruction_budget > 0 else 0
    loader, guard = lua.execute(_SANDBOX, directory.encode(), log_print, allow_exec, ticks)
    return Runtime(lua, loader, guard)


def describe_lua_error(err: BaseException) -> str:
    """The Lua error text (it already carries file:line and the Lua stack traceback)."""
    if isinstance(err, LuaMemoryError) and not err.args:
        return "not enough memory: the Lua state reached its max_memory"
    msg = err.args[0] if err.args else str(err)
    if isinstance(msg, bytes):
        msg = msg.decode("utf-8", "replace")
    return str(msg)
