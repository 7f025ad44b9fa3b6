
local setmetatable, getmetatable, rawequal, rawget, rawset, error, type, tostring =
      setmetatable, getmetatable, rawequal, rawget, rawset, error, type, tostring
local null = setmetatable({}, {
  __tostring = function() return "null" end,
  __newindex = function() error("nljson.null is read-only", 2) end,
  __metatable = "nljson.null",   -- getmetatable shows this; setmetatable refuses
})
-- The metatables of the containers this runtime decodes. On an OBJECT a number key means
-- its string form, as on the original's nljson objects: t[5] reads t["5"] and t[5] = v
-- writes t["5"] (raw number keys, as a CBOR map may carry, are read as they are). nljson
-- adds __tostring (JSON text) to both.
local OBJECT = {
  __index = function(t, k)
    if type(k) == "number" then return rawget(t, tostring(k)) end
  end,
  __newindex = function(t, k, v)
    if type(k) == "number" then k = tostring(k) end
    rawset(t, k, v)
  end,
}
local ARRAY = {}
local function object() return setmetatable({}, OBJECT) end
local function kind(t)
  if rawequal(t, null) then return "null" end
  if rawequal(getmetatable(t), OBJECT) then return "object" end
  return "array"
end
local function has_repeat(path)
  local seen = {}
  for i = 1, #path do
    local t = path[i]
    if seen[t] then return true end
    seen[t] = true
  end
  return false
end
local function array(...) return setmetatable({...}, ARRAY) end
local function as_array(t) return setmetatable(t, ARRAY) end
local function as_object(t) return setmetatable(t, OBJECT) end
-- a LAppS request or notification as onMessage gets it, in one call: params come as the
-- trailing values (params == true), as one ready table (a long list), or not at all (nil)
local function request(method, cid, params, ...)
  local m = {lapps = 1, method = method, cid = cid}
  if params == true then m.params = setmetatable({...}, ARRAY) elseif params then m.params = params end
  return setmetatable(m, OBJECT)
end
return null, object, kind, OBJECT, ARRAY, has_repeat, array, as_array, as_object, request
