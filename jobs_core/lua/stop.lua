-- stop.lua: release a job's locks, writing its outputs only if it still holds them all.
-- KEYS[1] - jobs:running: zset of running job ids scored by lease expiry
-- KEYS[2] - jobs:running:<id>: the running job's JSON record
-- KEYS[3] - jobs:holder:<id>: hash token, host, pid, started, state
-- KEYS[4] - jobs:waiting: zset of waiting job ids scored by how long they are alive
-- KEYS[5..] - per input: ilock:<input>, jobs:queue:<input>; then per output:
--             <output>, olock:<output>, jobs:output:<output> (facts), jobs:queue:<output>
-- ARGV[1] - job id
-- ARGV[2] - the fencing token this start of the job received
-- ARGV[3] - number of inputs
-- ARGV[4] - "1" to write the outputs (success), "0" to leave them (failure)
-- ARGV[5] - output time to live in milliseconds, "0" for none
-- ARGV[6] - publish command (PUBLISH, or SPUBLISH on a cluster)
-- ARGV[7] - wake-up channel
-- ARGV[8] - the job's names, one per line, in KEYS order; the wake-up message says for each
--           "<name>\t<first waiter queued for it, if any>", so only that waiter retries
-- ARGV[9] - milliseconds to keep the stopped holder record (answers a repeated stop)
-- ARGV[10] - "1" to stop a job that has no holder record (a jobs.py job) by its id alone;
--            ARGV[2] is then "0" and the output facts carry no token
-- return {1, now, state} when stopped now, {2, now, state} when an earlier call
--        already stopped this start, {0, now, state, index of each lost name...}
--        when locks were lost; state is "written", "failed" or "lost"
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local nows = string.format('%.6f', now)
local id = ARGV[1]
local nin = tonumber(ARGV[3])
local nout = (#KEYS - 4 - 2 * nin) / 4
local first_out = 5 + 2 * nin
local commit = ARGV[4] == '1'
local record = redis.call('HMGET', KEYS[3], 'token', 'state')
local mine = record[1] == ARGV[2]
local by_id = not record[1] and ARGV[10] == '1'

if mine and record[2] ~= 'running' then
    return {2, nows, record[2]}
end
local out = {1, nows, ''}
if record[1] and not mine then
    -- a later start of the same job id owns everything now: touch nothing
    out[1] = 0
    out[3] = commit and 'lost' or 'failed'
    for i = 1, nin + nout do
        out[#out + 1] = i
    end
    return out
end

local owned = mine or by_id
for i = 1, nin do
    local k = 3 + 2 * i
    local score = redis.call('ZSCORE', KEYS[k], id)
    if not (owned and score and tonumber(score) > now) then
        out[#out + 1] = i
    end
    if score then
        redis.call('ZREM', KEYS[k], id)
    end
end
for j = 1, nout do
    local k = first_out + 4 * (j - 1)
    local writer = redis.call('GET', KEYS[k + 1])
    if not (owned and writer == id) then
        out[#out + 1] = nin + j
    end
    if writer == id then
        redis.call('DEL', KEYS[k + 1])
    end
end

local lost = #out > 3
local state = 'failed'
if commit and lost then
    state = 'lost'
    out[1] = 0
elseif commit then
    state = 'written'
    local ttl = tonumber(ARGV[5])
    local token = tonumber(ARGV[2])
    local facts = cjson.encode({job = id, token = token > 0 and token or nil, time = now})
    if ttl > 0 then
        for j = 1, nout do
            local k = first_out + 4 * (j - 1)
            redis.call('SET', KEYS[k], id, 'PX', ttl)
            redis.call('SET', KEYS[k + 2], facts, 'PX', ttl)
        end
    else
        -- one MSET per 250 outputs (Lua's unpack has a stack limit)
        for first = 1, nout, 250 do
            local batch = {}
            for j = first, math.min(nout, first + 249) do
                local k = first_out + 4 * (j - 1)
                batch[#batch + 1] = KEYS[k]
                batch[#batch + 1] = id
                batch[#batch + 1] = KEYS[k + 2]
                batch[#batch + 1] = facts
            end
            redis.call('MSET', unpack(batch))
        end
    end
end
out[3] = state

redis.call('ZREM', KEYS[1], id)
redis.call('DEL', KEYS[2])
if mine then
    redis.call('HSET', KEYS[3], 'state', state)
    redis.call('PEXPIRE', KEYS[3], tonumber(ARGV[9]))
end
-- the first waiter of a queue still alive (dropping those gone), or ''
local function queue_head(queue)
    while true do
        local first = redis.call('ZRANGE', queue, 0, 0)
        if #first == 0 then
            return ''
        end
        local alive = redis.call('ZSCORE', KEYS[4], first[1])
        if alive and tonumber(alive) > now then
            return first[1]
        end
        redis.call('ZREM', queue, first[1])
    end
end
local lines, i = {}, 0
for name in string.gmatch(ARGV[8], '[^\n]+') do
    i = i + 1
    lines[i] = name .. '\t' .. queue_head(i <= nin and KEYS[4 + 2 * i] or KEYS[first_out + 4 * (i - nin) - 1])
end
-- pcall: a user allowed the keys but not the channel still stops cleanly (waiters poll)
redis.pcall(ARGV[6], ARGV[7], table.concat(lines, '\n'))
return out
