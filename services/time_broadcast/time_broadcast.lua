-- time_broadcast: a standalone service that publishes the server time once a second as an
-- out-of-order notification {cid = 5, message = {milliseconds}} on bcast channel 1000,
-- which reaches every subscriber in every IO worker.

local time_broadcast = {}
local CHANNEL = 1000

function time_broadcast.init()
  bcast:create(CHANNEL)
end

function time_broadcast.run()
  local pause = nap:new()
  while not must_stop() do
    local ok, err = bcast:send(CHANNEL, { cid = 5, message = { time.now() } })
    if not ok then print("broadcast failed: " .. tostring(err)) end
    pause:sleep(1)
  end
end

return time_broadcast
