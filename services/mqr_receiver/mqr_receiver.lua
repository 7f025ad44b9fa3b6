-- mqr_receiver: takes jobs from the "jobs" queue (see mqr_sender) and logs every tenth.
-- Run several instances: they share the jobs, none is done twice.

local mqr_receiver = {}
local queue

function mqr_receiver.init()
  queue = mqr.create("jobs")
end

function mqr_receiver.run()
  local done = 0
  while not must_stop() do
    local job = queue:recv()          -- nil when the server is stopping
    if job ~= nil then
      done = done + 1
      if done % 10 == 0 then
        print(instance_id .. " took job " .. job.seq .. " (" .. done .. " so far)")
      end
    end
  end
end

return mqr_receiver
