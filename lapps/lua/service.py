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

import cbor2

from ..config import ServiceConfig
from ..ipc.bus import BusError
from .modules.basic import install_murmur, install_nap, install_time
from .modules.cws import install_cws
from .modules.cws_tls import TlsOptions
from .modules.nljson import install_nljson
from .runtime import LuaError, LuaMemoryError, Runtime, describe_lua_error, lua_type, new_runtime
from .values import LuaValues

REACTIVE_FUNCTIONS = ("onStart", "onShutdown", "onDisconnect", "onMessage")
STANDALONE_FUNCTIONS = ("init", "run")

# The host modules accept both call styles of the original (`ws:send(...)` and
# `ws.send(...)`): the check runs in Lua, where it costs next to nothing, instead of in
# Python per message. `ws:send(h, table)` is the LAppS-protocol form.
_WS_MODULE = b"""
local py_send, py_send_message, py_close, py_deferred, max_out, py_reply, lapps = ...
local type, unpack, next = type, unpack, next
local ws = {}

-- The usual LAppS answer, {cid = N, status = S, result = {strings, numbers, booleans}},
-- is taken apart here and its pieces passed in one call, so that Python need not walk two
-- tables entry by entry through lupa. Returns #result when `t` has exactly that shape
-- (anything else goes the general way, which converts and checks every table).
local function reply_size(t)
  local result, cid, status = t.result, t.cid, t.status
  if type(result) ~= "table" or (cid ~= nil and type(cid) ~= "number")
      or (status ~= nil and type(status) ~= "number") then
    return nil
  end
  local keys = 1
  for k in next, t do keys = keys + 1 end
  if keys ~= 2 + (cid ~= nil and 1 or 0) + (status ~= nil and 1 or 0) then return nil end
  local n = #result
  if n == 0 or n > 64 then return nil end
  local count = 0
  for k, v in next, result do
    local tv = type(v)
    if (tv ~= "string" and tv ~= "number" and tv ~= "boolean") or type(k) ~= "number"
        or k < 1 or k > n or k % 1 ~= 0 then
      return nil
    end
    count = count + 1
  end
  if count ~= n then return nil end
  return n
end

-- Replies to the connection whose message is being handled are the common case (an echo,
-- a request's answer). They are kept here and handed to Python as onMessage's extra
-- return values: one Lua/Python crossing each way per message instead of two. Only sends
-- whose result is already known qualify, so ws:send returns exactly what the direct path
-- would: a string to `cur`, binary, or the very text that arrived (so valid UTF-8), while
-- the buffer has room by the worker's rule (`used`: the worker's queued bytes plus the
-- frames kept here; -1: keep nothing, e.g. with compression, where sizes are unknown);
-- and, in a LAppS service, a success answer {cid = 0, status = 1, result = {...}} of
-- reply_size's shape (always valid) while nothing at all is queued (so it fits whatever
-- its size). Kept entries: opcode, data (a frame) or 0, #result, result... (an answer).
local cur, cur_text, used, n = nil, nil, -1, 0
local q = {}

local function hand_over()
  -- before anything that must come after the kept replies (a direct send, a close)
  local k = n
  n = 0
  py_deferred(cur, unpack(q, 1, k))
end

function ws.send(a, b, c, d)
  if a == ws then a, b, c = b, c, d end
  if a == cur and used >= 0 and type(c) == "string" and (b == 2 or (b == 1 and c == cur_text)) then
    local len = #c
    if used == 0 or used + len <= max_out then
      used = used + len + (len < 126 and 2 or (len < 65536 and 4 or 10))
      q[n + 1] = b
      q[n + 2] = c
      n = n + 2
      return true
    end
  end
  local size = type(b) == "table" and reply_size(b)
  if size and lapps and used == 0 and a == cur and b.cid == 0 and b.status == 1 then
    q[n + 1] = 0
    q[n + 2] = size
    for i = 1, size do q[n + 2 + i] = b.result[i] end
    n = n + 2 + size
    used = -1   -- its size is known only once encoded: later sends go the direct way
    return true
  end
  if n > 0 then hand_over() end
  if a == cur then used = -1 end   -- the direct path may have changed the connection
  if size then return py_reply(a, b.cid, b.status, unpack(b.result, 1, size)) end
  if type(b) == "table" then return py_send_message(a, b) end
  return py_send(a, b, c)
end

function ws.close(a, b, c, d)
  if a == ws then a, b, c = b, c, d end
  if n > 0 then hand_over() end
  if a == cur then used = -1 end
  return py_close(a, b, c)
end

ws.TEXT = 1
ws.BINARY = 2

local function finish(ok)
  cur, cur_text = nil, nil
  if n == 0 then return ok end
  local k = n
  n = 0
  return ok, unpack(q, 1, k)
end

-- onMessage as the worker calls it: (handler, opcode, message, used) -> ok[, kept...]
local function dispatcher(call)
  return function(h, op, m, u)
    cur, used, n = h, u or -1, 0
    cur_text = op == 1 and m or nil
    return finish(call(h, op, m))
  end
end

-- onMessage of a LAppS-protocol service: (handler, msg_type, used, parts of the message...)
-- -> ok[, kept...]; the table is built here by `build` (values.py's build_request), so it
-- never crosses to Python
local function request_dispatcher(call, build)
  return function(h, mt, u, ...)
    cur, used, n, cur_text = h, u, 0, nil
    return finish(call(h, mt, build(...)))
  end
end

-- after onMessage raised: the replies it made before the error, so they still go out
local function take_kept()
  cur, cur_text = nil, nil
  local k = n
  n = 0
  return unpack(q, 1, k)
end

return ws, dispatcher, take_kept, request_dispatcher
"""

_BCAST_MODULE = b"""
local py_create, py_subscribe, py_unsubscribe, py_send = ...
local bcast = {}
local function args(a, ...)
  if a == bcast then return ... end
  return a, ...
end
function bcast.create(...) return py_create(args(...)) end
function bcast.subscribe(...) return py_subscribe(args(...)) end
function bcast.unsubscribe(...) return py_unsubscribe(args(...)) end
function bcast.send(...) return py_send(args(...)) end
return bcast
"""

_MQR_MODULE = b"""
local py_post, py_recv, py_try_recv = ...
local mqr = {}
function mqr.create(a, b)
  local name = a
  if a == mqr then name = b end
  if type(name) ~= "string" then error("mqr.create: the queue name must be a string", 2) end
  local q = {name = name}
  function q.post(x, y)
    if x == q then x = y end
    return py_post(name, x)
  end
  function q.recv() return py_recv(name) end
  function q.try_recv() return py_try_recv(name) end
  return q
end
return mqr
"""


_HEADROOM = 1 << 20   # bytes of Lua heap a call needs beside its message (make_room)


class ServiceBootError(Exception):
    """A service that cannot start: the message names the service and its file:line."""


@dataclass
class Bcast:
    """The hosting process's side of the `bcast` module; each returns True or (False, why)."""

    create: Callable[[int], Any]
    subscribe: Callable[[int, int], Any]
    unsubscribe: Callable[[int, int], Any]
    publish: Callable[[int, object], Any]   # channel, message as Python data


@dataclass
class Mqr:
    """The hosting process's side of `mqr`: queues of CBOR-encoded messages."""

    post: Callable[[str, bytes], None]
    try_recv: Callable[[str], bytes | None]
    recv: Callable[[str], bytes | None] | None   # None where blocking is not allowed (workers)


def _int_arg(value: Any, what: str) -> int:
    if type(value) is float and value.is_integer():
        return int(value)
    if type(value) is not int:
        raise TypeError(f"{what} must be an integer")
    return value


class ServiceInstance:
    """One instance (one Lua state) of a service, with the modules its config asks for."""

    def __init__(self, svc: ServiceConfig, log: logging.Logger, *, budget: bool,
                 bcast: Bcast | None = None, mqr: Mqr | None = None) -> None:
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
            g.nljson = install_nljson(self.lua, self.values, svc.directory)
            for name in svc.preload:
                if name == "time":
                    g.time = install_time(self.lua)
                elif name == "murmur":
                    g.murmur = install_murmur(self.lua)
                elif name == "nap":   # the config refuses it for reactive services
                    g.nap = install_nap(self.lua)
                elif name == "mqr":
                    if mqr is None:
                        raise ServiceBootError(f"service {svc.name}: mqr is not available here")
                    g.mqr = self._mqr_module(mqr)
                elif name == "cws":   # WebSocket client; its eventLoop() blocks (standalone services)
                    g.cws = install_cws(self.lua, self.values, TlsOptions(
                        svc.cws_verify, svc.cws_ca_file, svc.cws_connect_to))
            if bcast is not None and (svc.standalone or svc.protocol == "lapps"):
                g.bcast = self._bcast_module(bcast)
            # the sandbox's collectgarbage, taken now: a service that replaces the global
            # must not have its own function run by recover(), outside any guarded call
            self._collect = self.lua.execute(
                b"local collect = collectgarbage return function() collect() collect() end")
        except LuaError as e:
            raise ServiceBootError(f"service {svc.name}: {describe_lua_error(e)}") from None

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

    # ---- host modules ----------------------------------------------------------------

    def _bcast_module(self, bcast: Bcast) -> Any:
        values = self.values

        def create(channel: Any = None) -> Any:
            try:
                return bcast.create(_int_arg(channel, "bcast channel"))
            except TypeError as e:
                return False, str(e).encode()

        def subscribe(channel: Any = None, handler: Any = None) -> Any:
            try:
                return bcast.subscribe(_int_arg(channel, "bcast channel"), _int_arg(handler, "handler"))
            except TypeError as e:
                return False, str(e).encode()

        def unsubscribe(channel: Any = None, handler: Any = None) -> Any:
            try:
                return bcast.unsubscribe(_int_arg(channel, "bcast channel"), _int_arg(handler, "handler"))
            except TypeError as e:
                return False, str(e).encode()

        def send(channel: Any = None, message: Any = None) -> Any:
            try:
                return bcast.publish(_int_arg(channel, "bcast channel"), values.from_lua(message))
            except (TypeError, ValueError) as e:
                return False, str(e).encode()

        return self.lua.execute(_BCAST_MODULE, create, subscribe, unsubscribe, send)

    def _mqr_module(self, mqr: Mqr) -> Any:
        values = self.values

        def post(name: bytes, message: Any = None) -> Any:
            try:
                mqr.post(name.decode(), cbor2.dumps(values.from_lua(message)))
                return True
            except (TypeError, ValueError, BusError) as e:
                return False, str(e).encode()

        def decoded(payload: bytes | None) -> Any:
            return None if payload is None else values.to_lua(cbor2.loads(payload))

        def try_recv(name: bytes) -> Any:
            try:
                return decoded(mqr.try_recv(name.decode()))
            except (BusError, TimeoutError) as e:
                return None, str(e).encode()

        def recv(name: bytes) -> Any:
            if mqr.recv is None:
                raise RuntimeError("mqr recv() blocks: reactive services use try_recv()")
            return decoded(mqr.recv(name.decode()))

        return self.lua.execute(_MQR_MODULE, post, recv, try_recv)


def reply_sender(values: LuaValues, send_message: Callable[[Any, Any], Any]) -> Callable[..., Any]:
    """The Python end of _WS_MODULE's `py_reply`: the pieces of a {cid, status, result}
    table back into the dict `values.from_lua` would have made of the whole table."""
    leaf = values.leaf_from_lua

    def send_reply(handler: Any, cid: Any, status: Any, *result: Any) -> Any:
        message: dict[str, Any] = {"result": [leaf(v) for v in result]}
        if cid is not None:
            message["cid"] = leaf(cid)
        if status is not None:
            message["status"] = leaf(status)
        return send_message(handler, message)
    return send_reply


class ReactiveService(ServiceInstance):
    """A reactive service instance in an IO worker (raw or LAppS protocol).

    `send(handler, opcode, bytes)`, `send_message(handler, python_data)` and
    `close(handler, code, reason)` are the worker's implementations of `ws:send`/`ws:close`;
    each returns True or (False, errmsg_bytes), as the original LAppS API returns.
    """

    def __init__(self, svc: ServiceConfig, log: logging.Logger, send: Callable[..., Any],
                 send_message: Callable[[Any, Any], Any], close: Callable[..., Any],
                 *, deferred: Callable[..., None], max_outbound: int,
                 bcast: Bcast | None = None, mqr: Mqr | None = None) -> None:
        super().__init__(svc, log, budget=True, bcast=bcast, mqr=mqr)
        values = self.values

        def send_table(handler: Any, table: Any) -> Any:
            try:
                message = values.from_lua(table)
            except ValueError as e:
                return False, str(e).encode()
            return send_message(handler, message)

        try:
            ws, dispatcher, self.take_kept, request_dispatcher = self.lua.execute(
                _WS_MODULE, send, send_table, close, deferred, max_outbound,
                reply_sender(values, send_message), svc.protocol == "lapps")
            self.lua.globals().ws = ws
        except LuaError as e:
            raise ServiceBootError(f"service {svc.name}: {describe_lua_error(e)}") from None
        module = self.load(REACTIVE_FUNCTIONS)
        guarded = self.runtime.guarded
        # on_message(handler, opcode, message[, used]): see _WS_MODULE for `used` and the
        # replies it returns after `ok`
        self.on_message = dispatcher(guarded(module[b"onMessage"]))
        # on_request(handler, msg_type, used, *values.request_parts(message)): LAppS protocol
        self.on_request = request_dispatcher(guarded(module[b"onMessage"]), values.build_request)
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
