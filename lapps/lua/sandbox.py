"""The sandbox chunk: what a service's Lua state keeps, loses and gets instead.

README "The Lua sandbox" is the user's side of this: the trust it assumes, every refusal and
why, and the table of attempts that tests/test_sandbox_escapes.py makes against the server.

The chunk (sandbox.lua) runs once in each new runtime, before any host module or service
code, while the state still has the whole standard library. Everything it keeps for itself
(the real `load`, `loadfile`, `jit`, `pcall`, `io.open`) lives in locals of this chunk,
which no service can reach: `debug` (the only door to upvalues and the registry) leaves
with it. Every function it hands out uses only such locals, never globals, so a service
that rewrites its globals, `string`, or a function's environment (`setfenv`) changes its
own view only, never these checks.

What the sandbox stands for:
- the instruction budget cannot be escaped: the JIT stays off (hooks do not run inside
  compiled traces), no service code runs with hooks off (a `__gc` of `newproxy(true)`, an
  xpcall handler for the budget's own error), and a budget error cannot be caught and
  ignored (pcall, xpcall, coroutine.resume/wrap and load's reader raise it again);
- nesting through C functions that call Lua (string.gsub, coroutines) stops at 200 levels
  with a Lua error, before the C stack overflows;
- no native code, raw memory or Python: no bytecode (LuaJIT does not verify it), no FFI,
  no `string.buffer` (its `reserve`/`ref` hand out raw pointers), no C modules, no
  `python` module, no metatable of a host (Python) object;
- `require` reads text chunks from the service's folder and `[server] lua_path` only.
A refused function stays where it was, as a function that raises "X is refused by the
sandbox: why", so that a library that takes `debug.getinfo` at load time still loads and
the first call says what the rule is.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

SANDBOX = (Path(__file__).parent / "sandbox.lua").read_bytes()


def install_sandbox(lua: Any, dirs: list[bytes], log_print: Any, allow_exec: bool,
                    ticks: int) -> tuple[Any, Any]:
    """Run the sandbox chunk in a fresh `lua`; returns (load_script, guard).

    `dirs` are where `require` looks, in order (the service's folder first); `ticks` is
    the instruction budget in millions per guarded call (0: no budget, the JIT stays on).
    """
    return lua.execute(SANDBOX, lua.table_from(dirs), log_print, allow_exec, ticks)
