-- fanout: the broadcast fan-out service of bench/bench_lapps.py (preload = ["time"]).
--   subscribe []    -> result {}; the connection joins bcast channel 1000
--   publish [seq]   -> bcast:send(1000, {cid = 5, message = {seq, time.now()}}) to every
--                      subscriber on every worker, then result {seq}
-- Anything else gets a JSON-RPC "method not found" error object.

local fanout = {}

local CHANNEL = 1000

local function respond(handler, result)
  return ws:send(handler, { cid = 0, status = 1, result = result })
end

function fanout.onStart()
  bcast:create(CHANNEL)
end

function fanout.onMessage(handler, msg_type, message)
  if msg_type == 1 or msg_type == 2 then
    return true
  end
  local method = message.method
  if method == "subscribe" then
    local ok, err = bcast:subscribe(CHANNEL, handler)
    if ok then
      respond(handler, {})
    else
      ws:send(handler, { cid = 0, status = 0, error = { code = -32000, message = tostring(err) } })
    end
  elseif method == "publish" then
    local seq = message.params and message.params[1] or 0
    local ok, err = bcast:send(CHANNEL, { cid = 5, message = { seq, time.now() } })
    if ok then
      respond(handler, { seq })
    else
      ws:send(handler, { cid = 0, status = 0, error = { code = -32000, message = tostring(err) } })
    end
  else
    ws:send(handler, { cid = 0, status = 0, error = { code = -32601, message = "method not found: " .. tostring(method) } })
  end
  return true
end

function fanout.onDisconnect(handler) end

function fanout.onShutdown() end

return fanout
