-- limit.lua: set (or remove) the capacity of a limit, then start the waiters this lets run.
-- KEYS[1] - jobs:running, KEYS[2] - jobs:guard (the namespace: see lib.lua)
-- ARGV[1] - publish: PUBLISH, or SPUBLISH on a cluster
-- ARGV[2] - limit: its name
-- ARGV[3] - capacity: the slots it has ("0": remove it; its holders keep their slots until they stop)
-- return the capacity it had before (0 if none)
-- (a lower capacity also ends, at once, the waits of the jobs asking for more slots than it)
OUTBOX.publish = ARGV[1]
local before = tonumber(redis.call('HGET', K_LIMITS, ARGV[2]) or 0)
if ARGV[3] == '0' then
    redis.call('HDEL', K_LIMITS, ARGV[2])
else
    redis.call('HSET', K_LIMITS, ARGV[2], ARGV[3])
end
-- more room, or a limit now unknown to those waiting: they start or learn it
local capacity = tonumber(ARGV[3])
if capacity > 0 and capacity < before and redis.call('ZCARD', K_WAITING) > 0 then
    -- less room: a waiter asking for more slots than there now are can never start. Tell each
    -- at once wherever it stands (a scan stops at the first waiter that keeps its turn): it
    -- leaves the line, and learns why at its next try. Its reservation goes with it.
    local q, Q = k_limitq(ARGV[2]), queues()
    for _, member in ipairs(redis.call('ZRANGE', q, 0, LINE_MAX - 1)) do
        local e = Q.entry(q, member)
        if e and Q.asks(e, ARGV[2]) > capacity then
            unqueue(e)
            notify(e.ch, e.nonce)
        end
    end
end
OUTBOX.lims = {{ARGV[2], 0}}
scan_lines({}, OUTBOX.lims)
flush()
return before
