
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
