-- echo_lapps: the LAppS-protocol demo of the original's browser client (and of clients/demo).
-- Requests (cid 0, answered in order):
--   login {{user = "admin", password = "admin"}} -> result {{authkey = "..."}}   (the original's form:
--                              the demo users admin/admin and guest/guest; a wrong pair: error 10)
--   login {user, password}   -> the same, for any non-empty user and password (the short form)
--   echo  {{authkey}, ...}   -> result {...}            (the params after the key)
--   subscribe {{authkey}}    -> result {}; then an OON {cid = 5, message = {milliseconds}} every second
--                              (time_broadcast publishes on bcast channel 1000)
--   unsubscribe {{authkey}}  -> result {}; the time stops
--   whoami {{authkey}}       -> result {user}
--   logout {{authkey}}       -> result {}
-- Client notifications, as the original's client sends them (never answered):
--   subscribe {{authkey}} on cid 5: the time on channel 5; unsubscribe likewise
--   logout {{authkey}}: the session ends and the connection closes with 1000, as in the original
--   Not logged in: an error object on cid 3, as the original reports it.
-- Anything else gets a JSON-RPC error object, as the original's examples do.

local echo_lapps = {}

local TIME_CHANNEL = 1000
local TIME_CID = 5
local ERROR_CID = 3
local DEMO_USERS = { admin = "admin", guest = "guest" }   -- the original's lapps_echo_maps.logins
local sessions = {}          -- handler -> {key = authkey, user = name} (this instance's connections only)

local function respond(handler, result)
  return ws:send(handler, { cid = 0, status = 1, result = result })
end

local function fail(handler, code, message, cid)
  return ws:send(handler, { cid = cid or 0, status = 0, error = { code = code, message = message } })
end

local function session_of(handler, params)
  local key = params and params[1]
  local session = sessions[handler]
  if type(key) == "table" and session ~= nil and key.authkey == session.key then
    return session
  end
  return nil
end

local function start_session(handler, user)
  local key = murmur.hashstr(user .. ":" .. handler .. ":" .. time.now() .. ":" .. math.random())
  sessions[handler] = { key = key, user = user }
  return respond(handler, { { authkey = key } })
end

local methods = {}

function methods.login(handler, params)
  local first = params and params[1]
  if type(first) == "table" then            -- the original's {user = ..., password = ...}
    local user, password = first.user, first.password
    if type(user) ~= "string" or type(password) ~= "string" then
      return fail(handler, -32602, "login needs [{user, password}]")
    end
    if DEMO_USERS[user] == nil or DEMO_USERS[user] ~= password then
      return fail(handler, 10, "Authentication error")
    end
    return start_session(handler, user)
  end
  local user, password = first, params and params[2]
  if type(user) ~= "string" or type(password) ~= "string" or #user == 0 or #password == 0 then
    return fail(handler, -32602, "login needs [{user, password}] or [user, password]")
  end
  return start_session(handler, user)
end

function methods.echo(handler, params)
  if not session_of(handler, params) then return fail(handler, -32000, "not logged in") end
  local rest = {}
  for i = 2, #params do rest[#rest + 1] = params[i] end
  return respond(handler, rest)
end

function methods.subscribe(handler, params)
  if not session_of(handler, params) then return fail(handler, -32000, "not logged in") end
  bcast:subscribe(TIME_CHANNEL, handler)
  return respond(handler, {})
end

function methods.unsubscribe(handler, params)
  if not session_of(handler, params) then return fail(handler, -32000, "not logged in") end
  bcast:unsubscribe(TIME_CHANNEL, handler)   -- false when it was not subscribed: fine
  return respond(handler, {})
end

function methods.whoami(handler, params)
  local session = session_of(handler, params)
  if not session then return fail(handler, -32000, "not logged in") end
  return respond(handler, { session.user })
end

function methods.logout(handler, params)
  if not session_of(handler, params) then return fail(handler, -32000, "not logged in") end
  sessions[handler] = nil
  bcast:unsubscribe(TIME_CHANNEL, handler)
  return respond(handler, {})
end

-- the original's client notifications: subscribe/unsubscribe on the time channel, logout
local notifications = {}

function notifications.subscribe(handler, params, cid)
  if not session_of(handler, params) then
    return fail(handler, -32000, "Not authenticated. Permission denied", ERROR_CID)
  end
  if cid == TIME_CID then bcast:subscribe(TIME_CHANNEL, handler) end
end

function notifications.unsubscribe(handler, params, cid)
  if not session_of(handler, params) then
    return fail(handler, -32000, "Not authenticated. Permission denied", ERROR_CID)
  end
  if cid == TIME_CID then bcast:unsubscribe(TIME_CHANNEL, handler) end
end

function notifications.logout(handler, params)
  if not session_of(handler, params) then
    fail(handler, 20, "Can not logout. Not logged in.", ERROR_CID)
  end
  sessions[handler] = nil
  ws:close(handler, 1000)
end

function echo_lapps.onStart()
  bcast:create(TIME_CHANNEL)
end

-- msg_type: 1/2 client notification (never answered), 3/4 request without/with params
function echo_lapps.onMessage(handler, msg_type, message)
  if msg_type == 1 or msg_type == 2 then
    local notification = notifications[message.method]
    if notification ~= nil and msg_type == 2 then
      notification(handler, message.params, message.cid)
    end
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
