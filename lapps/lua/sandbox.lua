
local dirs, log_print, allow_exec, budget_ticks = ...
local error, select, tostring, type = error, select, tostring, type
local raw_load, raw_loadfile, raw_pcall, raw_xpcall = load, loadfile, pcall, xpcall
local raw_resume, raw_create, raw_collect = coroutine.resume, coroutine.create, collectgarbage
local concat, gsub, find = table.concat, string.gsub, string.find
local open = io and io.open
local real_jit, sethook, getinfo, getmetatable_any = jit, debug.sethook, debug.getinfo, debug.getmetatable
local traceback = debug.traceback
local loaded, preload = package.loaded, package.preload

local function refused(name, why)
  local msg = name .. " is refused by the sandbox: " .. why
  return function() error(msg, 2) end
end
local function refused_module(why)
  return function(name)
    loaded[name] = nil   -- not require's "loading" mark: asked again, it says the same
    error("require(\"" .. name .. "\") is refused by the sandbox: " .. why, 3)
  end
end

-- The instruction budget: a count hook every 1e6 VM instructions takes one tick off the
-- call's allowance. `over` stays set from the moment the budget runs out until the next
-- guarded call, and every Lua function that catches errors raises the budget error again
-- while it is set: a loop around pcall cannot buy itself a fresh budget.
local BUDGET = "instruction budget exceeded"
local ticks_left, over, raised = math.huge, false, BUDGET

-- C functions that call back into Lua nest on the C stack, which LuaJIT does not check
-- there: string.gsub (8 KiB of buffer a level) and coroutines recursing into themselves
-- crash the process within a thousand levels. `depth` counts those levels; an error
-- that skips the `leave` is accounted for where it is caught (`caught`) or at the next
-- guarded call.
local MAX_DEPTH = 200
local TOO_DEEP = "C stack overflow: more than " .. MAX_DEPTH
  .. " nested calls through string.gsub and coroutines"
local depth = 0
local function enter()
  if depth >= MAX_DEPTH then error(TOO_DEEP, 3) end
  depth = depth + 1
end
local function leave(...)
  depth = depth - 1
  return ...
end
-- after a call that caught errors: back to the depth it started at; the budget's error
-- goes on up
local function caught(at, ...)
  depth = at
  if over then error(raised, 0) end
  return ...
end

local function guard(fn)
  return function(...)
    ticks_left, over, depth = budget_ticks, false, 0
    return fn(...)
  end
end

pcall = function(...) return caught(depth, raw_pcall(...)) end
-- a message handler called for an error the hook raised runs inside the hook, where
-- hooks are off: for the budget's error it is not called at all
xpcall = function(f, handler, ...)
  if type(handler) ~= "function" then return caught(depth, raw_xpcall(f, handler, ...)) end
  return caught(depth, raw_xpcall(f, function(e)
    if over then return e end
    return handler(e)
  end, ...))
end
coroutine.resume = function(co, ...)
  local at = depth
  enter()
  return caught(at, raw_resume(co, ...))
end
-- wrap as resume does it, with the coroutine's error raised as it is (no position
-- prefix per level)
local function unwrapped(at, ok, ...)
  depth = at
  if over then error(raised, 0) end
  if not ok then error((...), 0) end
  return ...
end
coroutine.wrap = function(f)
  local co = raw_create(f)
  return function(...)
    local at = depth
    enter()
    return unwrapped(at, raw_resume(co, ...))
  end
end
string.gsub = function(s, pattern, repl, n)
  local kind = type(repl)
  if kind == "string" or kind == "number" then return gsub(s, pattern, repl, n) end
  enter()
  return leave(gsub(s, pattern, repl, n))
end

local NO_JIT = "a state with an instruction budget runs interpreted (the count hook does not "
  .. "run inside compiled traces)"
if budget_ticks > 0 then
  real_jit.off()
  real_jit.flush()
  sethook(function()
    ticks_left = ticks_left - 1
    if ticks_left < 0 then
      over = true
      ticks_left = budget_ticks   -- room for error handlers; they cannot swallow it (caught)
      local at = getinfo(2, "Sl")   -- where the call was: `caught` raises the same message
      raised = at and at.currentline > 0 and (at.short_src .. ":" .. at.currentline .. ": " .. BUDGET) or BUDGET
      error(raised, 0)
    end
  end, "", 1000000)
  -- jit: readable, but it cannot come back on
  local INTERNALS = "it exposes the compiler's internals and runs callbacks outside the budget"
  local opt = { start = refused("jit.opt.start", NO_JIT) }
  jit = {
    version = real_jit.version, version_num = real_jit.version_num, os = real_jit.os,
    arch = real_jit.arch, status = real_jit.status, security = real_jit.security,
    off = real_jit.off,
    on = refused("jit.on", NO_JIT), flush = refused("jit.flush", NO_JIT), opt = opt,
    attach = refused("jit.attach", INTERNALS),
  }
  loaded.jit, loaded["jit.opt"] = jit, opt
  preload["jit.util"] = refused_module(INTERNALS)
  preload["jit.profile"] = refused_module(INTERNALS)
end

-- text chunks only: LuaJIT loads bytecode without verifying it, and crafted bytecode
-- reads and writes the worker's memory
local BINARY = "binary chunks are refused by the sandbox: load, loadstring and require take Lua source text only"
local function text_only(f, err)
  if f == nil and type(err) == "string" and find(err, "wrong mode", 1, true) then err = BINARY end
  return f, err
end
local function load_text(chunk, name, mode, env)
  if mode ~= nil and not find(tostring(mode), "t", 1, true) then return nil, BINARY end
  -- a reader function runs inside load, which catches its errors (`caught` raises the
  -- budget's again), on the C stack (`enter`)
  local at = depth
  if type(chunk) == "function" then enter() end
  if env == nil then return text_only(caught(at, raw_load(chunk, name, "t"))) end
  return text_only(caught(at, raw_load(chunk, name, "t", env)))
end
load, loadstring = load_text, load_text
string.dump = nil              -- bytecode out, for nothing can load it back
dofile = refused("dofile", "services load their modules with require")
loadfile = refused("loadfile", "services load their modules with require")

-- require(): text modules from the service's folder and [server] lua_path, whatever
-- package.path and package.cpath say; no C modules
local function module_file(name)
  -- dotted words only: no "/" or ".." (a way out of the folders), no NUL
  if not (find(name, "^[%w_%-]+$") or find(name, "^[%w_%-][%w_%-%.]*[%w_%-]$") and not find(name, "..", 1, true)) then
    return nil, "\n\tmodule names are words (letters, digits, _ and -) joined by dots"
  end
  local rel = gsub(name, "%.", "/")
  local tried = {}
  for i = 1, #dirs do
    local candidates = { dirs[i] .. "/" .. rel .. ".lua", dirs[i] .. "/" .. rel .. "/init.lua" }
    for j = 1, 2 do
      local f = open(candidates[j], "rb")
      if f then
        f:close()
        return candidates[j]
      end
      tried[#tried + 1] = "\n\tno file '" .. candidates[j] .. "'"
    end
  end
  return nil, concat(tried)
end
local function find_module(name)
  local file, tried = module_file(name)
  if not file then return tried end
  local chunk, err = raw_loadfile(file, "t")
  if not chunk then
    local _, why = text_only(nil, err)
    error("error loading module '" .. name .. "' from file '" .. file .. "':\n\t" .. tostring(why), 0)
  end
  return chunk
end
local function find_preloaded(name)
  local loader = preload[name]
  if loader then return loader end
  return "\n\tno field package.preload['" .. name .. "']"
end
local function no_c_module(name)
  return "\n\tC modules are refused by the sandbox: '" .. name .. "' must be a pure-Lua module"
end
package.loaders = { find_preloaded, find_module, no_c_module }
local shown = {}
for i = 1, #dirs do shown[i] = dirs[i] .. "/?.lua;" .. dirs[i] .. "/?/init.lua" end
package.path = concat(shown, ";")   -- for show: find_module does not read it
package.cpath = ""
package.loadlib = refused("package.loadlib", "it loads native code")
preload.ffi = refused_module("the FFI reaches raw memory and native code")
loaded.ffi = nil
-- string.buffer's reserve() and ref() return raw pointers that index any address
preload["string.buffer"] = refused_module("its reserve() and ref() return raw memory pointers")
loaded["string.buffer"] = nil
python, loaded.python = nil, nil
preload.python = refused_module("Python is not reachable from Lua services")

-- Python objects (host functions, a host error caught by pcall) share lupa's metatable:
-- its __gc and __index are not the service's to call or replace
local host_mt = getmetatable_any(log_print)
if host_mt then host_mt.__metatable = "host object" end

-- a finalizer runs with hooks off, so an endless __gc would escape the budget: a proxy
-- without a metatable (no __gc) is all newproxy makes
local raw_newproxy = newproxy
local GC = "newproxy(true) is refused by the sandbox: a __gc finalizer runs outside the instruction budget"
newproxy = function(with_mt)
  if with_mt then error(GC, 2) end
  return raw_newproxy()
end
local PACE = "the memory cap relies on the collector running at the server's pace"
collectgarbage = function(opt, arg)
  if opt == "stop" or opt == "setpause" or opt == "setstepmul" then
    error("collectgarbage(\"" .. opt .. "\") is refused by the sandbox: " .. PACE, 2)
  end
  return raw_collect(opt, arg)
end

local EXIT = "it would end the whole worker, not the service"
os.exit = refused("os.exit", EXIT)
os.remove = refused("os.remove", "filesystem writes are not a service's business")
os.rename = refused("os.rename", "filesystem writes are not a service's business")
os.tmpname = refused("os.tmpname", "filesystem writes are not a service's business")
os.setlocale = refused("os.setlocale", "the locale is process-wide state shared by every service")
if allow_exec then
  -- io file handles share one metatable; its __gc must stay C (see newproxy)
  local file_mt = getmetatable_any(io.stdout)
  if file_mt then file_mt.__metatable = "file" end
else
  local NO_EXEC = "the service config does not set allow_exec = true"
  os.execute = refused("os.execute", NO_EXEC)
  package.searchpath = refused("package.searchpath", NO_EXEC .. " (it tells which files exist)")
  local refused_io = {}
  for _, f in ipairs({ "open", "popen", "lines", "input", "output", "read", "write", "close",
                       "tmpfile", "type", "flush" }) do
    refused_io[f] = refused("io." .. f, NO_EXEC)
  end
  io = refused_io
end
local DEBUG = "it reads and writes any function's locals, upvalues, metatables and hooks"
local safe_debug = { traceback = traceback }
for _, f in ipairs({ "debug", "getfenv", "gethook", "getinfo", "getlocal", "getmetatable",
                     "getregistry", "getupvalue", "setfenv", "sethook", "setlocal",
                     "setmetatable", "setupvalue", "upvalueid", "upvaluejoin" }) do
  safe_debug[f] = refused("debug." .. f, DEBUG)
end
debug = safe_debug
loaded.debug, loaded.io, loaded.os = debug, io, os

print = function(...)
  local n = select("#", ...)
  local parts = {}
  for i = 1, n do parts[i] = tostring((select(i, ...))) end
  log_print(concat(parts, "\t"))
end

-- the loader: runs the service script, whose chunk name is its path (errors say file:line);
-- a script that does not compile comes back as (nil, message): no traceback of this loader
local function load_script(path)
  local chunk, err = raw_loadfile(path, "t")
  if not chunk then
    local _, why = text_only(nil, err)
    return nil, why
  end
  return true, chunk()
end
return load_script, guard
