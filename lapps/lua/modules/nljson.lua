
local py_decode, py_decode_file, py_encode, py_encode_pretty, py_to_cbor, py_from_cbor,
      null, new_object, OBJECT, ARRAY = ...
local type, rawequal, rawget, rawset, next, error, tostring, getmetatable, setmetatable =
      type, rawequal, rawget, rawset, next, error, tostring, getmetatable, setmetatable
local remove, sort = table.remove, table.sort

local M = { null = null }

-- the work done in Python comes back as (ok, result or message): the error is raised at the
-- line that called the nljson function (so a caller keeps its result in a local: not a tail
-- call, whose frame would not count)
local function settled(ok, r)
  if not ok then error(r, 3) end
  return r
end

-- both call styles: nljson:f(x) passes the module first
local function want(fname, what, v, ok)
  if not ok then
    error("nljson." .. fname .. ": expects " .. what .. ", got " .. type(v), 3)
  end
end

-- a function of one argument done in Python: `check` (if any) refuses what it cannot take
local function by_python(fname, what, check, py)
  return function(a, b)
    if rawequal(a, M) then a = b end
    if check then want(fname, what, a, check(a)) end
    local r = settled(py(a))
    return r
  end
end

local function is_string(v) return type(v) == "string" end

M.decode = by_python("decode", "a JSON string", is_string, py_decode)
M.decode_file = by_python("decode_file", "a file name", is_string, py_decode_file)
M.encode = by_python("encode", nil, nil, py_encode)
M.to_cbor = by_python("to_cbor", nil, nil, py_to_cbor)
M.from_cbor = by_python("from_cbor", "a CBOR string", is_string, py_from_cbor)

function M.encode_pretty(a, b, c)
  if rawequal(a, M) then a, b = b, c end
  if b == nil then b = 2 end
  want("encode_pretty", "an indent of 0 to 16", b,
       type(b) == "number" and b >= 0 and b <= 16 and b % 1 == 0)
  local r = settled(py_encode_pretty(a, b))
  return r
end

-- what the original's nljson would call it: an object (string keys) or an array. Decoded
-- containers carry their kind in their metatable; a table the service built is judged by
-- its keys, an empty one being an array (as it encodes)
local function is_object(t)
  local mt = getmetatable(t)
  if rawequal(mt, OBJECT) then return true end
  if rawequal(mt, ARRAY) or rawequal(t, null) then return false end
  return next(t) ~= nil and rawget(t, 1) == nil
end

function M.find(a, b, c)
  if rawequal(a, M) then a, b = b, c end
  want("find", "a table", a, type(a) == "table")
  if b == nil then return nil end
  local v = rawget(a, b)
  if v == nil and type(b) == "number" and is_object(a) then
    v = rawget(a, tostring(b))        -- a number key on an object is its string form
  end
  return v
end

function M.foreach(a, b, c)
  if rawequal(a, M) then a, b = b, c end
  want("foreach", "a table", a, type(a) == "table")
  want("foreach", "a function as its second argument", b, type(b) == "function")
  local n = #a
  for i = 1, n do
    local v = rawget(a, i)
    if v ~= nil then b(i, v) end
  end
  for k, v in next, a do
    if not (type(k) == "number" and k >= 1 and k <= n and k % 1 == 0) then b(k, v) end
  end
end

-- erase follows the original: on an object a key (a number meaning its string form), on
-- an array a 0-based position (nlohmann's erase(idx)), what follows shifting down
function M.erase(a, b, c)
  if rawequal(a, M) then a, b = b, c end
  want("erase", "a table", a, type(a) == "table")
  if rawequal(a, null) or b == nil then return false end
  if is_object(a) then
    if rawget(a, b) == nil then
      if type(b) ~= "number" then return false end
      b = tostring(b)
      if rawget(a, b) == nil then return false end
    end
    rawset(a, b, nil)
    -- a map that erase empties still encodes as a map
    if next(a) == nil and getmetatable(a) == nil then setmetatable(a, OBJECT) end
    return true
  end
  local n = #a
  if type(b) == "number" and b % 1 == 0 and b >= 0 and b < n then
    remove(a, b + 1)
    return true
  end
  return false
end

function M.empty(a, b)
  if rawequal(a, M) then a = b end
  if a == nil or rawequal(a, null) then return true end
  if type(a) == "table" then return next(a) == nil end
  return false
end

function M.typename(a, b)
  if rawequal(a, M) then a = b end
  if a == nil or rawequal(a, null) then return "null" end
  local t = type(a)
  if t ~= "table" then return t end
  if is_object(a) then return "object" end
  return "array"
end

-- traverse(t, fn): fn(key, value) for every entry at every depth, a container's entries
-- before the entry that holds it (the original's order); object keys in sorted order, as
-- nlohmann kept them
local function traverse(t, fn)
  if is_object(t) then
    local keys = {}
    for k in next, t do keys[#keys + 1] = k end
    sort(keys, function(x, y) return tostring(x) < tostring(y) end)
    for i = 1, #keys do
      local k = keys[i]
      local v = rawget(t, k)
      if type(v) == "table" and not rawequal(v, null) then traverse(v, fn) end
      fn(k, v)
    end
  else
    for i = 1, #t do
      local v = rawget(t, i)
      if type(v) == "table" and not rawequal(v, null) then traverse(v, fn) end
      fn(i, v)
    end
  end
end

function M.traverse(a, b, c)
  if rawequal(a, M) then a, b = b, c end
  want("traverse", "a table", a, type(a) == "table")
  want("traverse", "a function as its second argument", b, type(b) == "function")
  traverse(a, b)
end

function M.object()
  return new_object()
end

-- tostring() of a decoded container is its JSON text, as of the original's userdata
local function json_text(t) return M.encode(t) end
OBJECT.__tostring = json_text
ARRAY.__tostring = json_text

return M
