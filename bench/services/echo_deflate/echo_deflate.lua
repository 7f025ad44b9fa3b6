-- echo_deflate: services/echo under another name, for the permessage-deflate echo of
-- bench/bench_lapps.py (its config sets `permessage_deflate = true`). It sends every message
-- back as it came (text as text, binary as binary); the server inflates what the client
-- sent and deflates the echo (128 bytes or more), so the benchmark measures compression.

local echo_deflate = {}

function echo_deflate.onStart() end

function echo_deflate.onMessage(handler, opcode, message)
  local ok, err = ws:send(handler, opcode, message)
  if not ok then
    print("echo_deflate: send to " .. handler .. " failed: " .. tostring(err))
  end
  return true
end

function echo_deflate.onDisconnect(handler) end

function echo_deflate.onShutdown() end

return echo_deflate
