-- echo: a raw-protocol service that sends every message back as it came
-- (text as text, binary as binary). The simplest LAppS service there is.

local echo = {}

function echo.onStart()
  print("echo service started")
end

function echo.onMessage(handler, opcode, message)
  local ok, err = ws:send(handler, opcode, message)
  if not ok then
    print("echo: send to " .. handler .. " failed: " .. tostring(err))
  end
  return true
end

function echo.onDisconnect(handler)
end

function echo.onShutdown()
  print("echo service stopped")
end

return echo
