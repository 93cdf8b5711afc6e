-- start.lua: take every lock a job needs at once, or none of them.
-- KEYS[1] - jobs:running: zset of running job ids scored by lease expiry
-- KEYS[2] - jobs:running:<id>: JSON [inputs..., "", outputs...] (read by jobs.py)
-- KEYS[3] - jobs:holder:<id>: hash token, nonce, host, pid, started, lease, ttl, state
-- KEYS[4] - jobs:token: the namespace's fencing counter
-- KEYS[5] - jobs:graph:input: zset "<input> -> <job>" scored by last seen
-- KEYS[6] - jobs:graph:output: zset "<job> -> <output>" scored by last seen
-- KEYS[7] - jobs:waiting: zset of waiting job ids scored by how long they are alive
-- KEYS[8] - jobs:waiting:<id>: JSON of what the waiting job waits for
-- KEYS[9..] - per input: <name>, olock:<name>, ilock:<name>;
--             then per output: <name>, olock:<name>, ilock:<name>, jobs:queue:<name>
--             (waiting writers, scored by ticket: the time they began to wait)
-- ARGV[1] - job id
-- ARGV[2] - lease in milliseconds
-- ARGV[3] - number of inputs
-- ARGV[4] - mode: "start", "wait" (also keep the waiting record) or "check" (change nothing)
-- ARGV[5] - "1" if existing outputs may be overwritten
-- ARGV[6] - the JSON stored at KEYS[2]
-- ARGV[7] - holder host
-- ARGV[8] - holder pid
-- ARGV[9] - milliseconds left to wait (mode "wait")
-- ARGV[10] - nonce of this start() call: a replay of a call that succeeded returns its token
-- ARGV[11] - output time to live in milliseconds ("0": none), kept in the holder record
-- ARGV[12] - this job's ticket (when it began to wait; "0" before its first failed try): a free
--            output goes to the waiter with the earliest ticket, newcomers after every waiter
-- ARGV[13] - number of input edges; ARGV[14..] input edges, then output edges
-- return {1, token, now} if started ({1, 0, now} if a check finds nothing blocking),
--        else {0, now, reason, name index, holder, until, ...} per blocker
--        (name index 0 is the job itself: "job_running" when another start of this id runs;
--        "output_queued": the output is free but an earlier waiter has it next)
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local nows = string.format('%.6f', now)
local id = ARGV[1]
local lease_ms = tonumber(ARGV[2])
local nin = tonumber(ARGV[3])
local mode = ARGV[4]
local overwrite = ARGV[5] == '1'
local nout = (#KEYS - 8 - 3 * nin) / 4
local names = nin + nout
local ticket = tonumber(ARGV[12])
-- a waiter stays queued this long without trying again (then it is skipped as gone)
local alive_ms = 30000
-- jobs.py hosts read jobs:running:<id> through the zset using their own clock: keep the
-- record a minute past the lease so a host whose clock is behind still finds it
local record_ms = lease_ms + 60000
local out = {0, nows}
local final = false

-- whether something other than writers contending for an output blocks the job
local other_block = false

local function block(reason, i, holder, expiry)
    if reason ~= 'output_locked' and reason ~= 'output_used' and reason ~= 'output_queued' then
        other_block = true
    end
    out[#out + 1] = reason
    out[#out + 1] = i
    out[#out + 1] = holder or ''
    out[#out + 1] = expiry and string.format('%.6f', expiry) or ''
end

local function lock_expiry(key)
    local ms = redis.call('PTTL', key)
    if ms > 0 then
        return now + ms / 1000
    end
    return nil
end

-- first KEYS index of name i
local function base(i)
    if i <= nin then
        return 6 + 3 * i
    end
    return 9 + 3 * nin + 4 * (i - nin - 1)
end

-- the first waiter of a queue still alive (dropping those gone): id, ticket, alive until
local function queue_head(key)
    while true do
        local first = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
        if #first == 0 then
            return nil
        end
        local alive = redis.call('ZSCORE', KEYS[7], first[1])
        if alive and tonumber(alive) > now then
            return first[1], tonumber(first[2]), tonumber(alive)
        end
        redis.call('ZREM', key, first[1])
    end
end

local queue_me = {}
local running = redis.call('HMGET', KEYS[3], 'state', 'nonce', 'token')
if running[1] == 'running' then
    if running[2] == ARGV[10] then
        return {1, tonumber(running[3]), nows}
    end
    block('job_running', 0, id, lock_expiry(KEYS[3]))
end

for i = 1, names do
    local k = base(i)
    local writer = redis.call('GET', KEYS[k + 1])
    if writer == id then
        writer = false
    end
    if i <= nin then
        if writer then
            block('input_missing', i, writer, lock_expiry(KEYS[k + 1]))
        elseif redis.call('EXISTS', KEYS[k]) == 0 then
            block('input_missing', i)
        end
    elseif not overwrite and redis.call('EXISTS', KEYS[k]) == 1 then
        local value = redis.pcall('GET', KEYS[k])
        block('output_exists', i, type(value) == 'string' and value or '')
        final = true
    else
        local busy = #out
        if writer then
            block('output_locked', i, writer, lock_expiry(KEYS[k + 1]))
        elseif redis.call('EXISTS', KEYS[k + 2]) == 1 then
            redis.call('ZREMRANGEBYSCORE', KEYS[k + 2], '-inf', now)
            local readers = redis.call('ZRANGE', KEYS[k + 2], 0, -1, 'WITHSCORES')
            for r = 1, #readers, 2 do
                if readers[r] ~= id then
                    block('output_used', i, readers[r], tonumber(readers[r + 1]))
                end
            end
        end
        if #out == busy then
            local head, head_ticket, head_alive = queue_head(KEYS[k + 3])
            if head and head ~= id and (ticket == 0 or head_ticket < ticket) then
                block('output_queued', i, head, head_alive)
            end
        end
        if #out > busy then
            queue_me[#queue_me + 1] = KEYS[k + 3]
        end
    end
end

if #out > 2 then
    if mode == 'wait' and final then
        -- an existing output (overwrite off) ends the wait: no longer a waiter
        redis.call('ZREM', KEYS[7], id)
        redis.call('DEL', KEYS[8])
    elseif mode == 'wait' then
        local left = tonumber(ARGV[9])
        local alive = math.min(left, alive_ms)
        local since = ticket > 0 and ticket or now
        redis.call('ZREMRANGEBYSCORE', KEYS[7], '-inf', now)
        redis.call('ZADD', KEYS[7], now + alive / 1000, id)
        redis.call('SET', KEYS[8], '{"io":' .. ARGV[6] .. ',"host":' .. cjson.encode(ARGV[7]) ..
            ',"pid":' .. ARGV[8] .. ',"since":' .. string.format('%.6f', since) .. ',"deadline":' ..
            string.format('%.6f', now + left / 1000) .. '}', 'PX', alive)
        if other_block then
            -- it could not run even with its outputs free (a missing input...): keep no place in
            -- line, so it holds up no other writer; it takes its place again (same ticket) later
            for i = nin + 1, names do
                redis.call('ZREM', KEYS[base(i) + 3], id)
            end
        else
            for _, key in ipairs(queue_me) do
                redis.call('ZADD', key, 'NX', since, id)
                redis.call('PEXPIRE', key, 2 * alive_ms)
            end
        end
    end
    return out
end
if mode == 'check' then
    return {1, 0, nows}
end

local expiry = now + lease_ms / 1000
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local token = redis.call('INCR', KEYS[4])
for i = 1, names do
    local k = base(i)
    if i <= nin then
        redis.call('ZADD', KEYS[k + 2], expiry, id)
        if redis.call('PTTL', KEYS[k + 2]) < lease_ms then
            redis.call('PEXPIRE', KEYS[k + 2], lease_ms)
        end
    else
        redis.call('SET', KEYS[k + 1], id, 'PX', lease_ms)
    end
end
redis.call('ZADD', KEYS[1], expiry, id)
redis.call('SET', KEYS[2], ARGV[6], 'PX', record_ms)
redis.call('HSET', KEYS[3], 'token', token, 'nonce', ARGV[10], 'host', ARGV[7], 'pid', ARGV[8],
    'started', nows, 'lease', ARGV[2], 'ttl', ARGV[11], 'state', 'running')
redis.call('PEXPIRE', KEYS[3], lease_ms)
-- one ZADD per graph zset (in chunks: Lua's unpack has a stack limit)
local input_edges = 13 + tonumber(ARGV[13])
local function add_edges(key, first, last)
    for from = first, last, 500 do
        local batch = {}
        for a = from, math.min(last, from + 499) do
            batch[#batch + 1] = now
            batch[#batch + 1] = ARGV[a]
        end
        redis.call('ZADD', key, unpack(batch))
    end
end
add_edges(KEYS[5], 14, input_edges)
add_edges(KEYS[6], input_edges + 1, #ARGV)
if ticket > 0 then
    redis.call('ZREM', KEYS[7], id)
    redis.call('DEL', KEYS[8])
    for i = nin + 1, names do
        redis.call('ZREM', KEYS[base(i) + 3], id)
    end
end
return {1, token, nows}
