-- mqr_sender: posts a job to the "jobs" queue twice a second; mqr_receiver instances
-- compete for them, each job going to exactly one receiver.

local mqr_sender = {}
local queue

function mqr_sender.init()
  queue = mqr.create("jobs")
end

function mqr_sender.run()
  local pause = nap:new()
  local seq = 0
  while not must_stop() do
    seq = seq + 1
    queue:post({ seq = seq, from = instance_id, at = time.now() })
    pause:usleep(500000)
  end
end

return mqr_sender
