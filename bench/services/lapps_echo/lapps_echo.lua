-- lapps_echo: the LAppS-protocol echo of bench/bench_lapps.py. Any request is answered on
-- channel 0 with its params as the result (no login, unlike services/echo_lapps), so the
-- benchmark measures the protocol's cost (CBOR decode, Lua table in and out, CBOR encode)
-- and nothing else. Client notifications (msg_type 1 and 2) are never answered.

local lapps_echo = {}

function lapps_echo.onStart() end

function lapps_echo.onMessage(handler, msg_type, message)
  if msg_type == 3 or msg_type == 4 then
    ws:send(handler, { cid = 0, status = 1, result = message.params or {} })
  end
  return true
end

function lapps_echo.onDisconnect(handler) end

function lapps_echo.onShutdown() end

return lapps_echo
