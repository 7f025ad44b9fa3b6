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
lua_type = luajit21.lua_type


def _deny_attribute(obj: object, name: object, is_setting: bool) -> object:
    raise AttributeError("Python attributes are not reachable from Lua services")


# Runs once in each new runtime, before any service code. It receives the service's
# directory (for `require`), the print sink, and whether os.execute/io.popen stay.
_SANDBOX = b"""
local dir, log_print, allow_exec = ...
local load_file, error, select, tostring = loadfile, error, select, tostring
local concat = table.concat

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
return function(path)
  local chunk, err = load_file(path)
  if not chunk then return nil, err end
  return true, chunk()
end
"""


def new_runtime(service_name: str, directory: str, allow_exec: bool = False,
                log: logging.Logger | None = None) -> tuple[Any, Callable[[str], Any]]:
    """A fresh sandboxed runtime and its script loader for one service instance.

    Returns `(runtime, load)`; `load(path)` runs the script and returns what it returned
    (the service's module table); it raises LuaSyntaxError (file:line, no traceback) for a
    script that does not compile and LuaError for one that fails while running. Lua's `print` goes to `log` with the service name.
    """
    logger = log or logging.getLogger("lapps.lua")
    lua = luajit21.LuaRuntime(encoding=None, register_eval=False, register_builtins=False,
                              unpack_returned_tuples=True, attribute_filter=_deny_attribute)

    def log_print(text: bytes) -> None:
        logger.info("[%s] %s", service_name, text.decode("utf-8", "replace"))

    loader = lua.execute(_SANDBOX, directory.encode(), log_print, allow_exec)

    def load(path: str) -> Any:
        # Lua's multiple returns come back as a tuple, a single one as the bare value
        result = loader(path.encode())
        loaded, module = (result[0], result[1]) if isinstance(result, tuple) else (result, None)
        if not loaded:
            raise LuaSyntaxError(module)
        return module

    return lua, load


def describe_lua_error(err: BaseException) -> str:
    """The Lua error text (it already carries file:line and the Lua stack traceback)."""
    msg = err.args[0] if err.args else str(err)
    if isinstance(msg, bytes):
        msg = msg.decode("utf-8", "replace")
    return str(msg)
