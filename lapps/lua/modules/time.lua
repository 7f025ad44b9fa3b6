
local py_now = ...
local time = {}
function time.now() return py_now() end   -- takes no argument: time:now() works too
return time
