-- echo_lapps: the LAppS-protocol demo of the original's browser client.
--   login {user, password}  -> result {{authkey = "..."}}
--   echo  {{authkey}, ...}  -> result {...}            (the params after the key)
--   subscribe {{authkey}}   -> result {}; then an OON {cid = 5, message = {...}} every second
--                              (time_broadcast publishes on bcast channel 1000)
--   logout {{authkey}}      -> result {}
-- Anything else gets a JSON-RPC error object, as the original's examples do.

local echo_lapps = {}

local TIME_CHANNEL = 1000
local sessions = {}          -- handler -> authkey (this instance's connections only)

local function respond(handler, result)
  return ws:send(handler, { cid = 0, status = 1, result = result })
end

local function fail(handler, code, message)
  return ws:send(handler, { cid = 0, status = 0, error = { code = code, message = message } })
end

local function authorized(handler, params)
  local key = params and params[1]
  return type(key) == "table" and sessions[handler] ~= nil and key.authkey == sessions[handler]
end

local methods = {}

function methods.login(handler, params)
  local user, password = params and params[1], params and params[2]
  if type(user) ~= "string" or type(password) ~= "string" or #user == 0 or #password == 0 then
    return fail(handler, -32602, "login needs [user, password]")
  end
  local key = murmur.hashstr(user .. ":" .. handler .. ":" .. time.now() .. ":" .. math.random())
  sessions[handler] = key
  return respond(handler, { { authkey = key } })
end

function methods.echo(handler, params)
  if not authorized(handler, params) then return fail(handler, -32000, "not logged in") end
  local rest = {}
  for i = 2, #params do rest[#rest + 1] = params[i] end
  return respond(handler, rest)
end

function methods.subscribe(handler, params)
  if not authorized(handler, params) then return fail(handler, -32000, "not logged in") end
  bcast:subscribe(TIME_CHANNEL, handler)
  return respond(handler, {})
end

function methods.logout(handler, params)
  if not authorized(handler, params) then return fail(handler, -32000, "not logged in") end
  sessions[handler] = nil
  bcast:unsubscribe(TIME_CHANNEL, handler)
  return respond(handler, {})
end

function echo_lapps.onStart()
  bcast:create(TIME_CHANNEL)
end

-- msg_type: 1/2 client notification (never answered), 3/4 request without/with params
function echo_lapps.onMessage(handler, msg_type, message)
  if msg_type == 1 or msg_type == 2 then
    return true
  end
  local method = methods[message.method]
  if method == nil then
    fail(handler, -32601, "method not found: " .. message.method)
    return true
  end
  method(handler, message.params)
  return true
end

function echo_lapps.onDisconnect(handler)
  sessions[handler] = nil
end

function echo_lapps.onShutdown()
end

return echo_lapps
