
local py_hashstr, py_hashnum = ...
local type, rawequal, error = type, rawequal, error
local murmur = {}
local function arg(name, a, b)
  if rawequal(a, murmur) then a = b end
  local t = type(a)
  if t ~= "string" and t ~= "number" then
    error("murmur." .. name .. ": expects a string or a number, got " .. t, 3)
  end
  return a
end
function murmur.hashstr(a, b) return (py_hashstr(arg("hashstr", a, b))) end
function murmur.hashnum(a, b) return (py_hashnum(arg("hashnum", a, b))) end
return murmur
