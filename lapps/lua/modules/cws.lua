-- The Lua side of `cws` (cws.py): call styles, the connection objects, the callbacks.
-- Loaded with the Python functions it wraps as its chunk arguments.
local py_new, py_send, py_close, py_poll, py_next, py_count = ...
local type, error, rawequal, tostring, setmetatable = type, error, rawequal, tostring, setmetatable

local cws = {}

local function handler_of(x)
  if type(x) == "table" then return x.handler end
  return x
end

local OBJECT = {
  __tostring = function(o) return "cws connection " .. tostring(o.handler) end,
}

function cws.new(a, b, c)
  if rawequal(a, cws) then a, b = b, c end
  local h, err = py_new(a, b)
  if not h then return nil, err end
  local obj = setmetatable({ handler = h }, OBJECT)
  -- obj:send(data, opcode) passes the object first; obj.send(data, opcode) does not
  function obj.send(x, y, z)
    if rawequal(x, obj) then x, y = y, z end
    return py_send(h, x, y)
  end
  function obj.close(x, y, z)
    if rawequal(x, obj) then x, y = y, z end
    return py_close(h, x, y)
  end
  return obj
end

function cws.send(a, b, c, d)
  if rawequal(a, cws) then a, b, c = b, c, d end
  return py_send(handler_of(a), b, c)
end

function cws.close(a, b, c, d)
  if rawequal(a, cws) then a, b, c = b, c, d end
  return py_close(handler_of(a), b, c)
end

function cws.eventLoop(a, b)
  if rawequal(a, cws) then a = b end
  if a ~= nil and not (type(a) == "number" and a >= 0 and a < math.huge) then
    error("cws:eventLoop: the timeout must be a non-negative number of seconds, got "
          .. tostring(a), 2)
  end
  py_poll(a)
  -- one callback at a time: if one raises, the rest stay queued for the next pass
  while true do
    local fn, h, x, y = py_next()
    if not fn then break end
    fn(h, x, y)
  end
  return py_count()
end

return cws
