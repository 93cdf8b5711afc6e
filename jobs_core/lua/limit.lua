-- limit.lua: set (or remove) the capacity of a limit, then start the waiters this lets run.
-- KEYS[1] - jobs:running, KEYS[2] - jobs:guard (the namespace: see lib.lua)
-- ARGV[1] - publish: PUBLISH, or SPUBLISH on a cluster
-- ARGV[2] - limit: its name
-- ARGV[3] - capacity: the slots it has ("0": remove it; its holders keep their slots until they stop)
-- return the capacity it had before (0 if none)
OUTBOX.publish = ARGV[1]
local before = tonumber(redis.call('HGET', K_LIMITS, ARGV[2]) or 0)
if ARGV[3] == '0' then
    redis.call('HDEL', K_LIMITS, ARGV[2])
else
    redis.call('HSET', K_LIMITS, ARGV[2], ARGV[3])
end
-- more room, or a limit now unknown to those waiting: they start or learn it
OUTBOX.lims = {{ARGV[2], 0}}
scan_lines({}, OUTBOX.lims)
flush()
return before
