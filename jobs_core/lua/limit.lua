-- limit.lua: set (or remove) the capacity of a limit, then start the waiters this lets run.
-- KEYS[1] - jobs:running, KEYS[2] - jobs:guard (the namespace: see lib.lua)
-- ARGV[1] - publish: PUBLISH, or SPUBLISH on a cluster
-- ARGV[2] - limit: its name
-- ARGV[3] - capacity: the slots it has ("0": remove it; its holders keep their slots until they stop)
-- return the capacity it had before (0 if none)
-- (a lower capacity, or none, also ends at once the waits of the jobs asking for more slots)
OUTBOX.publish = ARGV[1]
local before = tonumber(redis.call('HGET', K_LIMITS, ARGV[2]) or 0)
if ARGV[3] == '0' then
    redis.call('HDEL', K_LIMITS, ARGV[2])
else
    redis.call('HSET', K_LIMITS, ARGV[2], ARGV[3])
end
local limit, capacity = ARGV[2], tonumber(ARGV[3])
-- the lines to look at after the change: the limit's (more room: its waiters start), and the
-- other lines of the waiters the change fails (those behind them there may start now)
local names, lims, seen = {}, {{limit, 0}}, {}
if (capacity == 0 or capacity < before) and redis.call('ZCARD', K_WAITING) > 0 then
    -- removed, or less room: a waiter asking for more slots than there now are can never start.
    -- Tell each at once wherever it stands (a scan stops at the first waiter that keeps its
    -- turn): it leaves every line, and learns why at its next try.
    local q, Q = k_limitq(limit), queues()
    for _, member in ipairs(redis.call('ZRANGE', q, 0, LINE_MAX - 1)) do
        local e = Q.entry(q, member)
        if e and (capacity == 0 or Q.asks(e, limit) > capacity) then
            Q.unqueue(e)
            Q.notify(e.ch, e.nonce)
            for i = 1, #e.names + #e.lims do
                local n = e.names[i]
                local key = n and k_queue(n) or k_limitq(e.lims[i - #e.names][1])
                if not seen[key] and #names + #lims <= SCAN_MAX then
                    seen[key] = true
                    if n then
                        names[#names + 1] = n
                    elseif e.lims[i - #e.names][1] ~= limit then
                        lims[#lims + 1] = e.lims[i - #e.names]
                    end
                end
            end
        end
    end
end
OUTBOX.lims = {{limit, 0}}
scan_lines(names, lims)
flush()
return before
