"""Sandboxed LuaJIT runtimes, one per service instance.

Every runtime is made with `encoding=None` (Lua strings cross as `bytes`, no decode per
message), without `python.eval` or Python builtins, and with an attribute filter that
refuses every Python attribute: the only Python a service can reach is the host API
functions we hand it (STYLE pattern 10; lupa's "Restricting Lua access").
"""

from __future__ import annotations

import logging
from typing import Any

from lupa import luajit21

from .sandbox import install_sandbox

LuaError = luajit21.LuaError
LuaSyntaxError = luajit21.LuaSyntaxError
LuaMemoryError = luajit21.LuaMemoryError
lua_type = luajit21.lua_type


def _deny_attribute(obj: object, name: object, is_setting: bool) -> object:
    raise AttributeError("Python attributes are not reachable from Lua services")


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
                instruction_budget: int = 0, lua_path: tuple[str, ...] = ()) -> Runtime:
    """A fresh sandboxed runtime for one service instance (lapps/lua/sandbox.py).

    `require` finds text modules in `directory`, then in each `lua_path` folder.

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
    dirs = [d.encode() for d in (directory, *lua_path)]
    return Runtime(lua, *install_sandbox(lua, dirs, log_print, allow_exec, ticks))


def describe_lua_error(err: BaseException) -> str:
    """The Lua error text (it already carries file:line and the Lua stack traceback)."""
    if isinstance(err, LuaMemoryError) and not err.args:
        return "not enough memory: the Lua state reached its max_memory"
    msg = err.args[0] if err.args else str(err)
    if isinstance(msg, bytes):
        msg = msg.decode("utf-8", "replace")
    return str(msg)
