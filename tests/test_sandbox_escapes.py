"""Attempts to leave the Lua sandbox, one test each, against the real server (README "Sandbox").

Every attempt ends one of two ways, as the README's table says: refused with an error that
names the rule (the service sends the error text back), or a Lua error that closes THAT
connection with 1011. Either way the worker lives (same pid) and a bystander connection
to the same service on the same worker (one worker) goes on echoing.
"""

from __future__ import annotations

import pytest

from lapps.ws.constants import Opcode
from wsclient import connect

BUDGET = 20_000_000
MEMORY = 32 * 1024 * 1024
SECRET = "LAPPS_SANDBOX_PROBE"

# `attempts[name](handler)` returns the text to send back, or raises (1011). `refusal`
# runs a call that must fail and returns its error text ("NOT REFUSED" if it did not fail).
ESCAPE_LUA = r"""
local escape = {}
local attempts = {}

local function refusal(f, ...)
  local ok, err = pcall(f, ...)
  if ok then return "NOT REFUSED" end
  return tostring(err)
end

local function spin()
  local n = 0
  for i = 1, 1e12 do n = n + i end
  return n
end

function attempts.jit_on_then_loop(h)
  ws:send(h, 1, refusal(jit.on))
  jit.on()            -- raises the same refusal; were it on, the loop below would be compiled
  spin()
end

function attempts.jit_other_paths()
  local out = {
    refusal(require("jit").on), refusal(package.loaded.jit.on), refusal(jit.flush),
    refusal(jit.opt.start, "hotloop=1"), refusal(require("jit.opt").start, "hotloop=1"),
    refusal(jit.attach, print, "trace"), refusal(require, "jit.util"),
    refusal(require, "jit.profile"), tostring(rawget(jit, "util")),
    tostring(rawget(jit, "profile")), jit.version, tostring((jit.status())),
  }
  return table.concat(out, "\n")
end

function attempts.jit_on_after_loop_starts()
  -- the JIT is off for the whole state: a loop that ran a while is still interpreted
  for i = 1, 1e5 do end
  return tostring((jit.status()))
end

function attempts.string_dump() return tostring(string.dump) end

-- LuaJIT 2.1 bytecode starts "\27LJ\2"; the sandbox refuses at the first byte
local BYTECODE = "\27LJ\2\2\0\0\0\0\0\0\0"
function attempts.loadstring_bytecode()
  local f, err = loadstring(BYTECODE)
  return tostring(f) .. " " .. tostring(err)
end

function attempts.load_mode_b()
  local f1, e1 = load("return 1", "x", "b")
  local f2, e2 = load(BYTECODE, "x", "bt")
  local sent = false
  local f3, e3 = load(function() if sent then return nil end sent = true return BYTECODE end)
  return table.concat({ tostring(f1), e1, tostring(f2), e2, tostring(f3), e3 }, "\n")
end

function attempts.require_binary() return refusal(require, "bytecode") end

function attempts.dofile_loadfile()
  return refusal(dofile, "/etc/passwd") .. "\n" .. refusal(loadfile, "/etc/passwd")
end

function attempts.require_ffi() return refusal(require, "ffi") .. "\n" .. tostring(ffi) end

function attempts.string_buffer() return refusal(require, "string.buffer") end

function attempts.python()
  local host_objects = 0   -- no global is a Python object (userdata)
  for _, v in pairs(_G) do
    if type(v) == "userdata" then host_objects = host_objects + 1 end
  end
  return tostring(python) .. "\n" .. tostring(package.loaded.python) .. "\n" .. refusal(require, "python")
    .. "\n" .. host_objects
end

function attempts.package_loadlib() return refusal(package.loadlib, "/lib/x86_64-linux-gnu/libc.so.6", "*") end

function attempts.widened_paths(h, outside)
  package.path = outside .. "/?.lua;" .. package.path
  package.cpath = outside .. "/?.so;/usr/lib/x86_64-linux-gnu/lua/5.1/?.so"
  return refusal(require, "outside") .. "\n====\n" .. refusal(require, "socket.core")
end

function attempts.require_traversal() return refusal(require, "../../../../../etc/passwd") end

function attempts.debug_getinfo() return refusal(debug.getinfo, 1, "f") end
function attempts.debug_getregistry() return refusal(debug.getregistry) end
function attempts.debug_getupvalue() return refusal(debug.getupvalue, ws.send, 1) end

function attempts.debug_sethook_then_loop(h)
  ws:send(h, 1, refusal(debug.sethook))   -- without the count hook the loop would never end
  spin()
end

function attempts.host_metatables()
  local ok_mt, e_mt = pcall(function() return getmetatable(("x")).__index == string end)
  -- a metatable on a host module: its own view; the functions it has still answer
  setmetatable(nljson, { __index = function() error("no such key") end })
  local encoded = nljson.encode({ 1 })
  setmetatable(nljson, nil)
  return table.concat({
    tostring(getmetatable(nljson.null)), refusal(setmetatable, nljson.null, {}),
    tostring(ok_mt and e_mt), tostring(getmetatable(ws)), tostring(getmetatable(ws.send)),
    encoded,
  }, "\n")
end

function attempts.setfenv_host_functions(h)
  local saved = getfenv(ws.send)
  setfenv(ws.send, {})                  -- host Lua code reads no globals: nothing changes
  setfenv(load, {})
  local ok = ws:send(h, 1, "still sending")
  local f, err = loadstring(BYTECODE)
  setfenv(ws.send, saved)
  setfenv(load, saved)
  return tostring(ok) .. "\n" .. tostring(err) .. "\n" .. refusal(setfenv, string.rep, {})
    .. "\n" .. tostring(getfenv(jit.status) == _G)
end

function attempts.rawset_host_tables(h)
  -- the service's own tables: it may change them (its own view), but raw access finds no
  -- real jit, debug or Python behind them
  local send = rawget(ws, "send")
  rawset(ws, "send", function() error("replaced by the service") end)
  local own = refusal(ws.send, ws, h, 1, "x")
  rawset(ws, "send", send)
  rawset(string, "dump", function() return BYTECODE end)   -- a dump of its own making
  local f, err = loadstring(string.dump(print))
  rawset(string, "dump", nil)
  return table.concat({ own, tostring(err), refusal(rawget(jit, "on")),
    refusal(rawget(rawget(package.loaded, "jit"), "flush")), refusal(rawget(debug, "getregistry")),
    tostring(rawget(_G, "python")), tostring(rawget(package.loaded, "python")) }, "\n")
end

function attempts.replaced_collectgarbage()
  -- after a memory error the host collects with the collector it took at start: a
  -- service's own (which could loop forever, outside any guarded call) is never run
  local saved = collectgarbage
  collectgarbage = function(...)
    print("the service's collectgarbage ran")
    return saved(...)
  end
  local t = {}
  for i = 1, 1e9 do t[i] = { i } end
end

function attempts.collectgarbage_stop()
  ws:send(current, 1, refusal(collectgarbage, "stop"))
  local t = {}
  for i = 1, 1e9 do t[i] = { i } end   -- live data: the cap holds whatever the collector does
end

function attempts.string_rep_bomb() return #string.rep("x", 2 ^ 30) end
function attempts.string_rep_in_loop()
  local t = {}
  for i = 1, 1e6 do t[i] = string.rep("y", 1e5) end
end

function attempts.deep_recursion()
  local function f() return 1 + f() end
  return f()
end

function attempts.deep_metamethod_recursion()
  local t = setmetatable({}, { __index = function(t, k) return t[k] end })
  return t.x
end

-- through C functions: string.gsub keeps 8 KiB of C stack a level; LuaJIT alone would let
-- this crash the worker within a thousand levels
function attempts.deep_gsub_recursion()
  local function f() return (string.gsub("a", ".", f)) end
  return f()
end

function attempts.deep_coroutine_nesting()
  local function f() coroutine.wrap(f)() end
  return f()
end

function attempts.os_getenv(h, name) return tostring(os.getenv(name)) end
function attempts.os_exit() os.exit(1) end
function attempts.os_execute() return refusal(os.execute, "true") .. "\n" .. refusal(os.remove, "/tmp/x") end

function attempts.io_access()
  return table.concat({ refusal(io.open, "/etc/passwd"), refusal(io.popen, "id"),
                        refusal(io.write, "x"), refusal(io.lines, "/etc/passwd"),
                        refusal(package.searchpath, "passwd", "/etc/?") }, "\n")
end

function attempts.coroutine_loops_forever()
  local co = coroutine.create(spin)
  return tostring(coroutine.resume(co))
end

function attempts.coroutine_wrap_in_loop()
  while true do coroutine.wrap(function() for i = 1, 100 do end end)() end
end

function attempts.many_coroutines()
  -- each resume catches its coroutine's error: the budget error comes back all the same
  while true do coroutine.resume(coroutine.create(spin)) end
end

function attempts.pcall_in_loop()
  while true do pcall(spin) end
end

function attempts.xpcall_handler_loops()
  -- a handler that would loop forever, called for the budget's error inside the hook
  xpcall(spin, function(e) while true do end end)
end

function attempts.load_reader_in_loop()
  while true do load(function() spin() end) end
end

function attempts.newproxy_gc()
  return refusal(newproxy, true) .. "\n" .. type(newproxy())
end

function escape.onStart() end
function escape.onShutdown() end
function escape.onDisconnect(h) end
function escape.onMessage(h, opcode, message)
  local name, arg = message:match("^([%w_]+) ?(.*)$")
  local attempt = name and attempts[name]
  if not attempt then
    ws:send(h, opcode, message)       -- anything else is echoed (the bystander)
    return true
  end
  current = h
  ws:send(h, 1, tostring(attempt(h, arg)))
  return true
end
return escape
"""

# a binary chunk where a module should be: refused at its first byte, before LuaJIT parses it
BYTECODE_MODULE = b"\x1bLJ\x02\x02\x00\x00\x00\x00\x00\x00\x00"


@pytest.fixture(scope="module")
def outside(tmp_path_factory) -> str:
    """A folder the service may not read modules from (it widens package.path to it)."""
    folder = tmp_path_factory.mktemp("outside")
    (folder / "outside.lua").write_text("return 'loaded from outside'\n")
    return str(folder)


@pytest.fixture(scope="module")
def server(lapps_server_module, outside):
    srv = lapps_server_module({"escape": {"instruction_budget": BUDGET, "max_memory": MEMORY}},
                              lua={"escape": ESCAPE_LUA}, workers=1, env={SECRET: "visible"})
    (srv.config.parent / "services" / "escape" / "bytecode.lua").write_bytes(BYTECODE_MODULE)
    return srv


def _echo(c, text: str) -> None:
    c.send_text(text)
    assert c.recv_message() == (Opcode.TEXT, text.encode())


class Attempt:
    """One victim connection that sends an attempt, beside a bystander on the same service
    and worker; on leaving, the bystander still echoes and the worker's pid is unchanged."""

    def __init__(self, server, message: str) -> None:
        self.server, self.message = server, message

    def __enter__(self) -> "Attempt":
        self.pids = self.server.worker_pids()
        assert len(self.pids) == 1
        self.bystander = connect(self.server.port, "/escape")
        self.victim = connect(self.server.port, "/escape")
        assert (self.bystander.status, self.victim.status) == (101, 101)
        _echo(self.bystander, "before")
        self.victim.send_text(self.message)
        return self

    def reply(self) -> str:
        opcode, payload = self.victim.recv_message(timeout=30)
        assert opcode == Opcode.TEXT
        return payload.decode()

    def closed_1011(self, logged: str) -> None:
        """The attempt failed with a Lua error: 1011 for this connection, logged."""
        assert self.victim.recv_close(timeout=30)[0] == 1011
        self.server.wait_log(logged)

    def __exit__(self, *exc: object) -> None:
        try:
            if exc[0] is None:
                _echo(self.bystander, "after")
                assert self.server.worker_pids() == self.pids, "the worker was replaced"
        finally:
            self.bystander.close()
            self.victim.close()


REFUSED = "is refused by the sandbox"
BINARY = "binary chunks are refused by the sandbox"


def test_jit_on_is_refused_and_the_loop_after_it_ends_1011(server):
    with Attempt(server, "jit_on_then_loop") as a:
        assert a.reply().startswith("jit.on is refused by the sandbox: a state with an instruction budget")
        a.closed_1011(r"escape.lua:\d+: jit.on is refused by the sandbox")


def test_every_path_to_the_jit_switches_is_refused_and_jit_stays_readable(server):
    with Attempt(server, "jit_other_paths") as a:
        lines = a.reply().split("\n")
    names = ["jit.on", "jit.on", "jit.flush", "jit.opt.start", "jit.opt.start", "jit.attach",
             'require("jit.util")', 'require("jit.profile")']
    for line, name in zip(lines, names):
        assert line.startswith(f"{name} {REFUSED}"), line
    assert lines[8:10] == ["nil", "nil"]
    assert lines[10].startswith("LuaJIT 2.1") and lines[11] == "false"


def test_the_jit_stays_off_however_long_a_loop_runs(server):
    with Attempt(server, "jit_on_after_loop_starts") as a:
        assert a.reply() == "false"


def test_string_dump_is_absent(server):
    with Attempt(server, "string_dump") as a:
        assert a.reply() == "nil"


def test_loadstring_of_bytecode_is_refused(server):
    with Attempt(server, "loadstring_bytecode") as a:
        assert a.reply().startswith(f"nil {BINARY}")


def test_load_with_mode_b_or_a_binary_reader_is_refused(server):
    with Attempt(server, "load_mode_b") as a:
        lines = a.reply().split("\n")
    assert lines[0::2] == ["nil", "nil", "nil"]
    assert all(line.startswith(BINARY) for line in lines[1::2]), lines


def test_require_of_a_binary_module_file_is_refused(server):
    with Attempt(server, "require_binary") as a:
        text = a.reply()
    assert "error loading module 'bytecode'" in text and BINARY in text


def test_dofile_and_loadfile_are_refused(server):
    with Attempt(server, "dofile_loadfile") as a:
        assert a.reply().split("\n") == [
            f"dofile {REFUSED}: services load their modules with require",
            f"loadfile {REFUSED}: services load their modules with require"]


def test_require_ffi_is_refused(server):
    with Attempt(server, "require_ffi") as a:
        assert a.reply() == (f'require("ffi") {REFUSED}: the FFI reaches raw memory and native code\nnil')


def test_require_string_buffer_is_refused(server):
    # its reserve() returns a raw uint8_t pointer: pointer arithmetic writes anywhere
    with Attempt(server, "string_buffer") as a:
        assert a.reply().startswith(f'require("string.buffer") {REFUSED}: its reserve() and ref()')


def test_python_is_not_reachable(server):
    with Attempt(server, "python") as a:
        assert a.reply() == (f'nil\nnil\nrequire("python") {REFUSED}: Python is not reachable from Lua '
                             'services\n0')


def test_package_loadlib_is_refused(server):
    with Attempt(server, "package_loadlib") as a:
        assert a.reply() == f"package.loadlib {REFUSED}: it loads native code"


def test_widened_package_path_and_cpath_change_nothing(server, outside):
    with Attempt(server, f"widened_paths {outside}") as a:
        lua_module, c_module = a.reply().split("\n====\n")
    assert "module 'outside' not found" in lua_module and outside not in lua_module
    assert "module 'socket.core' not found" in c_module and ".so" not in c_module
    assert "C modules are refused by the sandbox: 'socket.core' must be a pure-Lua module" in c_module


def test_require_cannot_climb_out_of_its_folders(server):
    with Attempt(server, "require_traversal") as a:
        text = a.reply()
    assert "not found" in text and "module names are words" in text and "no file" not in text


@pytest.mark.parametrize("what", ["getinfo", "getregistry", "getupvalue"])
def test_debug_introspection_is_refused(server, what):
    with Attempt(server, f"debug_{what}") as a:
        assert a.reply().startswith(f"debug.{what} {REFUSED}: it reads and writes")


def test_debug_sethook_is_refused_and_the_budget_still_stops_the_loop(server):
    with Attempt(server, "debug_sethook_then_loop") as a:
        assert a.reply().startswith(f"debug.sethook {REFUSED}")
        a.closed_1011("instruction budget exceeded")


def test_metatable_games_on_host_values(server):
    with Attempt(server, "host_metatables") as a:
        lines = a.reply().split("\n")
    assert lines[0] == "nljson.null"
    assert lines[1] == "cannot change a protected metatable"
    assert lines[2] == "true"   # getmetatable("").__index is the service's own `string`
    assert lines[3:5] == ["nil", "nil"]
    assert lines[5] == "[1]"


def test_setfenv_on_host_functions_changes_nothing_they_do(server):
    with Attempt(server, "setfenv_host_functions") as a:
        assert a.reply() == "still sending"
        lines = a.reply().split("\n")
    assert lines[0] == "true" and lines[1].startswith(BINARY)
    assert lines[2] == "'setfenv' cannot change environment of given object"
    assert lines[3] == "true"


def test_rawget_and_rawset_on_host_tables_reach_nothing_hidden(server):
    with Attempt(server, "rawset_host_tables") as a:
        lines = a.reply().split("\n")
    assert lines[0].endswith("replaced by the service")   # its own ws table, its own calls
    assert lines[1].startswith(BINARY)
    assert lines[2].startswith(f"jit.on {REFUSED}") and lines[3].startswith(f"jit.flush {REFUSED}")
    assert lines[4].startswith(f"debug.getregistry {REFUSED}")
    assert lines[5:] == ["nil", "nil"]


def test_collectgarbage_stop_is_refused_and_the_memory_cap_holds(server):
    with Attempt(server, "collectgarbage_stop") as a:
        assert a.reply().startswith(f'collectgarbage("stop") {REFUSED}: the memory cap')
        a.closed_1011("not enough memory")


def test_string_rep_bomb_hits_the_memory_cap(server):
    with Attempt(server, "string_rep_bomb") as a:
        a.closed_1011("not enough memory")


def test_string_rep_in_a_loop_hits_the_memory_cap(server):
    with Attempt(server, "string_rep_in_loop") as a:
        a.closed_1011("not enough memory")


def test_deep_recursion_is_a_lua_error(server):
    with Attempt(server, "deep_recursion") as a:
        a.closed_1011("stack overflow")


def test_deep_recursion_through_metamethods_is_a_lua_error(server):
    with Attempt(server, "deep_metamethod_recursion") as a:
        a.closed_1011("stack overflow")


def test_deep_recursion_through_string_gsub_is_a_lua_error_not_a_crash(server):
    with Attempt(server, "deep_gsub_recursion") as a:
        a.closed_1011("C stack overflow: more than 200 nested calls through string.gsub")


def test_coroutines_nested_without_end_are_a_lua_error_not_a_crash(server):
    with Attempt(server, "deep_coroutine_nesting") as a:
        a.closed_1011("C stack overflow: more than 200 nested calls through string.gsub and coroutines")


def test_os_getenv_reads_the_servers_environment(server):
    # documented: a service reads the environment the server was started with
    with Attempt(server, f"os_getenv {SECRET}") as a:
        assert a.reply() == "visible"


def test_os_exit_is_refused(server):
    with Attempt(server, "os_exit") as a:
        a.closed_1011(f"os.exit {REFUSED}: it would end the whole worker, not the service")


def test_os_execute_and_file_removal_are_refused(server):
    with Attempt(server, "os_execute") as a:
        assert a.reply().split("\n") == [
            f"os.execute {REFUSED}: the service config does not set allow_exec = true",
            f"os.remove {REFUSED}: filesystem writes are not a service's business"]


def test_io_is_refused_without_allow_exec(server):
    with Attempt(server, "io_access") as a:
        lines = a.reply().split("\n")
    names = ["io.open", "io.popen", "io.write", "io.lines", "package.searchpath"]
    assert len(lines) == len(names)
    for line, name in zip(lines, names):
        assert line.startswith(f"{name} {REFUSED}: the service config does not set allow_exec = true")


def test_a_coroutine_that_loops_forever_ends_1011(server):
    with Attempt(server, "coroutine_loops_forever") as a:
        a.closed_1011("instruction budget exceeded")


def test_coroutine_wrap_inside_a_loop_ends_1011(server):
    with Attempt(server, "coroutine_wrap_in_loop") as a:
        a.closed_1011("instruction budget exceeded")


def test_many_coroutines_do_not_buy_a_fresh_budget(server):
    with Attempt(server, "many_coroutines") as a:
        a.closed_1011("instruction budget exceeded")


def test_pcall_in_a_loop_does_not_buy_a_fresh_budget(server):
    with Attempt(server, "pcall_in_loop") as a:
        a.closed_1011("instruction budget exceeded")


def test_an_xpcall_handler_that_loops_forever_ends_1011(server):
    with Attempt(server, "xpcall_handler_loops") as a:
        a.closed_1011("instruction budget exceeded")


def test_a_load_reader_in_a_loop_does_not_buy_a_fresh_budget(server):
    with Attempt(server, "load_reader_in_loop") as a:
        a.closed_1011("instruction budget exceeded")


def test_newproxy_with_a_metatable_is_refused(server):
    # a __gc finalizer runs with hooks off: an endless one would hang the worker
    with Attempt(server, "newproxy_gc") as a:
        assert a.reply() == (f"newproxy(true) {REFUSED}: a __gc finalizer runs outside the "
                             "instruction budget\nuserdata")


def test_the_host_never_runs_a_collectgarbage_the_service_put_in_its_place(server):
    with Attempt(server, "replaced_collectgarbage") as a:
        a.closed_1011("not enough memory")
    assert "the service's collectgarbage ran" not in server.log()
