
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
