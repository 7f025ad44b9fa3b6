
local py_send, py_send_message, py_close, py_deferred, max_out, py_reply, lapps = ...
local type, unpack, next = type, unpack, next
local ws = {}

-- The usual LAppS answer, {cid = N, status = S, result = {strings, numbers, booleans}},
-- is taken apart here and its pieces passed in one call, so that Python need not walk two
-- tables entry by entry through lupa. Returns #result when `t` has exactly that shape
-- (anything else goes the general way, which converts and checks every table).
local function reply_size(t)
  local result, cid, status = t.result, t.cid, t.status
  if type(result) ~= "table" or (cid ~= nil and type(cid) ~= "number")
      or (status ~= nil and type(status) ~= "number") then
    return nil
  end
  local keys = 1
  for k in next, t do keys = keys + 1 end
  if keys ~= 2 + (cid ~= nil and 1 or 0) + (status ~= nil and 1 or 0) then return nil end
  local n = #result
  if n == 0 or n > 64 then return nil end
  local count = 0
  for k, v in next, result do
    local tv = type(v)
    if (tv ~= "string" and tv ~= "number" and tv ~= "boolean") or type(k) ~= "number"
        or k < 1 or k > n or k % 1 ~= 0 then
      return nil
    end
    count = count + 1
  end
  if count ~= n then return nil end
  return n
end

-- Replies to the connection whose message is being handled are the common case (an echo,
-- a request's answer). They are kept here and handed to Python as onMessage's extra
-- return values: one Lua/Python crossing each way per message instead of two. Only sends
-- whose result is already known qualify, so ws:send returns exactly what the direct path
-- would: a string to `cur`, binary, or the very text that arrived (so valid UTF-8), while
-- the buffer has room by the worker's rule (`used`: the worker's queued bytes plus the
-- frames kept here; -1: keep nothing, e.g. with compression, where sizes are unknown);
-- and, in a LAppS service, a success answer {cid = 0, status = 1, result = {...}} of
-- reply_size's shape (always valid) while nothing at all is queued (so it fits whatever
-- its size). What they look like on the way out: "The kept-reply wire format" below.
--
-- ## The kept-reply wire format
--
-- The one home of this contract; workers/host.py frame_kept reads it, and
-- docs/architecture.md "The kept-reply contract" explains why it exists.
-- Kept replies travel as a flat list of Lua values, never a table, in three places:
--   * after `ok` in what a dispatcher returns:  ok, e1, e2, ...   (finish below)
--   * as the arguments of py_deferred:          handler, e1, e2, ...   (hand_over below)
--   * as what take_kept returns:                e1, e2, ...
-- Each entry is one of:
--   opcode, data           a WebSocket message: opcode 1 (text, `data` is exactly the text
--                          that arrived, so valid UTF-8) or 2 (binary); `data` a string,
--                          framed as it is (unfragmented, uncompressed)
--   0, k, v1, ..., vk      a LAppS answer {cid = 0, status = 1, result = {v1..vk}}:
--                          1 <= k <= 64, each v a string, number or boolean; the host
--                          encodes it (lapps_protocol encode_answer) and sends it binary
-- Entries keep the order of the ws:send calls that made them; a reader walks the list
-- from its start, and an opcode of 0 is the only way to tell the second kind.
local cur, cur_text, used, n = nil, nil, -1, 0
local q = {}

local function hand_over()
  -- before anything that must come after the kept replies (a direct send, a close)
  local k = n
  n = 0
  py_deferred(cur, unpack(q, 1, k))
end

function ws.send(a, b, c, d)
  if a == ws then a, b, c = b, c, d end
  if a == cur and used >= 0 and type(c) == "string" and (b == 2 or (b == 1 and c == cur_text)) then
    local len = #c
    if used == 0 or used + len <= max_out then   -- workers/outbound.fits in Lua (test_outbound.py)
      used = used + len + (len < 126 and 2 or (len < 65536 and 4 or 10))
      q[n + 1] = b
      q[n + 2] = c
      n = n + 2
      return true
    end
  end
  local size = type(b) == "table" and reply_size(b)
  if size and lapps and used == 0 and a == cur and b.cid == 0 and b.status == 1 then
    q[n + 1] = 0
    q[n + 2] = size
    for i = 1, size do q[n + 2 + i] = b.result[i] end
    n = n + 2 + size
    used = -1   -- its size is known only once encoded: later sends go the direct way
    return true
  end
  if n > 0 then hand_over() end
  if a == cur then used = -1 end   -- the direct path may have changed the connection
  if size then return py_reply(a, b.cid, b.status, unpack(b.result, 1, size)) end
  if type(b) == "table" then return py_send_message(a, b) end
  return py_send(a, b, c)
end

function ws.close(a, b, c, d)
  if a == ws then a, b, c = b, c, d end
  if n > 0 then hand_over() end
  if a == cur then used = -1 end
  return py_close(a, b, c)
end

ws.TEXT = 1
ws.BINARY = 2

local function finish(ok)
  cur, cur_text = nil, nil
  if n == 0 then return ok end
  local k = n
  n = 0
  return ok, unpack(q, 1, k)
end

-- onMessage as the worker calls it: (handler, opcode, message, used) -> ok[, kept...]
local function dispatcher(call)
  return function(h, op, m, u)
    cur, used, n = h, u or -1, 0
    cur_text = op == 1 and m or nil
    return finish(call(h, op, m))
  end
end

-- onMessage of a LAppS-protocol service: (handler, used, msg_type, parts of the message...)
-- -> ok[, kept...]; the table is built here by `build` (values.py's build_request), so it
-- never crosses to Python
local function request_dispatcher(call, build)
  return function(h, u, mt, ...)
    cur, used, n, cur_text = h, u, 0, nil
    return finish(call(h, mt, build(...)))
  end
end

-- after onMessage raised: the replies it made before the error, so they still go out
local function take_kept()
  cur, cur_text = nil, nil
  local k = n
  n = 0
  return unpack(q, 1, k)
end

return ws, dispatcher, take_kept, request_dispatcher
