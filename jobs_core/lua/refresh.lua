-- refresh.lua: renew the leases a job still holds and report the ones it lost.
-- KEYS[1] - jobs:running, KEYS[2] - jobs:guard (the namespace: see lib.lua)
-- ARGV[1] - job_id: the job id
-- ARGV[2] - lease_ms: the new lease in milliseconds; "0" only checks, renewing nothing
-- ARGV[3] - token: the fencing token this start of the job received
-- ARGV[4] - strict: "1" to renew nothing unless every lock is held (taking over a start elsewhere)
-- ARGV[5] - inputs: how many of the names are inputs
-- ARGV[6] - limits: how many limits it holds slots of
-- ARGV[7..] - per limit its name and slots; then the inputs, then the outputs
-- return {1, now} if every lock is held, else {0, now, index of each lost name...}
local id = ARGV[1]
local lease_ms = tonumber(ARGV[2])
local nin = tonumber(ARGV[5])
local names, lims = names_from(7, tonumber(ARGV[6]))
local out = {1, NOWS}
local record = holder_fields(id, 'token', 'state')
local mine = record[1] == ARGV[3] and record[2] == 'running'
local held = {}

for i, n in ipairs(names) do
    local ok = false
    if mine then
        if i <= nin then
            local score = redis.call('ZSCORE', k_ilock(n), id)
            ok = score and tonumber(score) > NOW
        else
            ok = redis.call('GET', k_olock(n)) == id
        end
    end
    if ok then
        held[#held + 1] = i
    else
        out[1] = 0
        out[#out + 1] = i
    end
end
local held_lims = {}
for j, l in ipairs(lims) do
    local ok = mine
    for s = 1, l[2] do
        local score = mine and redis.pcall('ZSCORE', k_limit(l[1]), id .. '#' .. s)  -- garbage: lost
        ok = ok and type(score) == 'string' and tonumber(score) > NOW
    end
    if ok then
        held_lims[#held_lims + 1] = l
    else
        out[1] = 0
        out[#out + 1] = #names + j
    end
end

if mine and lease_ms > 0 and not (ARGV[4] == '1' and out[1] == 0) then
    local expiry, ms = num(NOW + lease_ms / 1000), num(lease_ms)
    for _, i in ipairs(held) do
        local n = names[i]
        if i <= nin then
            local key = k_ilock(n)
            redis.call('ZADD', key, expiry, id)
            keep_for(key, ms)
        else
            redis.call('PEXPIRE', k_olock(n), ms)
        end
    end
    for _, l in ipairs(held_lims) do
        local k = k_limit(l[1])
        for s = 1, l[2] do
            redis.call('ZADD', k, 'XX', expiry, id .. '#' .. s)
        end
        keep_for(k, ms)
    end
    redis.call('ZADD', K_RUNNING, expiry, id)
    redis.call('PEXPIRE', k_job(id), num(lease_ms + RECORD_SLACK_MS))
    redis.call('PEXPIRE', k_holder(id), ms)
end
return out
