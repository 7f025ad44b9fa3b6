
local py_sleep = ...
local type, error, tostring, setmetatable = type, error, tostring, setmetatable
local huge = math.huge

local methods = {}
local NAP = { __index = methods, __metatable = "nap" }

-- obj:sleep(n) passes the object first; obj.sleep(n) does not
local function sleeper(name, unit, per_second)
  return function(a, b)
    if type(a) == "table" then a = b end
    if type(a) ~= "number" or not (a >= 0 and a < huge) then
      error("nap:" .. name .. ": expects a non-negative number of " .. unit .. ", got "
            .. tostring(a), 2)
    end
    py_sleep(a / per_second)
  end
end
methods.sleep = sleeper("sleep", "seconds", 1)
methods.usleep = sleeper("usleep", "microseconds", 1e6)
methods.nsleep = sleeper("nsleep", "nanoseconds", 1e9)

local nap = {}
function nap.new() return setmetatable({}, NAP) end   -- nap:new() and nap.new() alike
return nap
