-- stop.lua: release a job's locks, writing its outputs only if it still holds them all; then start
-- the waiters this lets run (see lib.lua, scan) and tell them.
-- KEYS[1] - jobs:running, KEYS[2] - jobs:guard (the namespace: see lib.lua)
-- ARGV[1] - job_id: the job id
-- ARGV[2] - token: the fencing token of the start being stopped; "0" stops a job that keeps no
--           holder record (a jobs.py job) by its id alone, and its output facts carry no token
-- ARGV[3] - commit: "1" to write the outputs (success), "0" to leave them (failure)
-- ARGV[4] - output_ttl_ms: time to live of the outputs in milliseconds, "0" for none
-- ARGV[5] - nonce: this stop call; a replay of it answers as it did
-- ARGV[6] - record_ms: how long the stopped holder record stays (it answers a repeated stop)
-- ARGV[7] - publish: PUBLISH, or SPUBLISH on a cluster
-- ARGV[8] - forced: "1" when the job is stopped from outside (stop_job, the jobs-core command)
-- ARGV[9] - lineage: the job's name in lineage edges ("" for none): its output edges are recorded
--           when its outputs are written, and only then
-- ARGV[10] - inputs: how many of the names are inputs
-- ARGV[11] - limits: how many limits it holds slots of
-- ARGV[12..] - per limit its name and slots; then the inputs, then the outputs
-- return {1, now, state} when stopped now; {2, now, state} when this call already stopped it (a
--        replay); {3, now, state, forced} when another call ended this start first (1 if from
--        outside, 0 if by a process that resumed it); {0, now, "lost", index of each lost name...}
--        when locks were lost and the outputs were to be written; a failed stop lists the names it
--        no longer held after its state
local id = ARGV[1]
local commit = ARGV[3] == '1'
local nin = tonumber(ARGV[10])
local names, lims = names_from(12, tonumber(ARGV[11]))
OUTBOX.publish = ARGV[7]
local record = holder_fields(id, 'token', 'state', 'ended_by', 'forced')
local mine = record[1] == ARGV[2]

if mine and record[2] ~= 'running' then
    if record[3] == ARGV[5] then
        return {2, NOWS, record[2]}
    end
    return {3, NOWS, record[2], record[4] == '1' and 1 or 0}
end
if record[1] and not mine then
    -- a later start of the same job id owns everything now: touch nothing
    local out = {0, NOWS, commit and 'lost' or 'failed'}
    for i = 1, #names + #lims do
        out[#out + 1] = i
    end
    return out
end

local owned = mine or (not record[1] and ARGV[2] == '0')
local lost = release(id, owned, names, nin, lims)
local state = 'failed'
if commit and #lost > 0 then
    state = 'lost'
elseif commit then
    state = 'written'
    local ttl = tonumber(ARGV[4])
    local token = tonumber(ARGV[2])
    local facts = cjson.encode({job = id, token = token > 0 and token or nil, time = NOW})
    if ttl > 0 then
        for i = nin + 1, #names do
            redis.call('SET', k_out(names[i]), id, 'PX', ttl)
            redis.call('SET', k_facts(names[i]), facts, 'PX', ttl)
        end
    else
        -- one MSET per 250 outputs (Lua's unpack has a stack limit)
        for first = nin + 1, #names, 250 do
            local batch = {}
            for i = first, math.min(#names, first + 249) do
                batch[#batch + 1] = k_out(names[i])
                batch[#batch + 1] = id
                batch[#batch + 1] = k_facts(names[i])
                batch[#batch + 1] = facts
            end
            redis.call('MSET', unpack(batch))
        end
    end
    if ARGV[9] ~= '' and nin < #names then
        local edges = {}
        for i = nin + 1, #names do
            edges[#edges + 1] = ARGV[9] .. ' -> ' .. fold(names[i])
        end
        zadd_all(K_GRAPH_OUT, edges)
    end
end
ended(id, mine, state, ARGV[5], tonumber(ARGV[6]))
if mine and ARGV[8] == '1' then
    redis.call('HSET', k_holder(id), 'forced', '1')
end

OUTBOX.names = names
OUTBOX.lims = lims
if redis.call('ZCARD', K_WAITING) > 0 then
    -- someone waits (a waiter of a job id's line is in jobs:waiting too, or has lapsed)
    scan_lines(names, lims)
    if mine and redis.call('EXISTS', k_idqueue(id)) == 1 then
        queues().scan(k_idqueue(id), true)
        queues().drain()
    end
end
flush()

local out = {state == 'lost' and 0 or 1, NOWS, state}
for _, i in ipairs(lost) do
    out[#out + 1] = i
end
return out
