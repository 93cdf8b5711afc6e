-- refresh.lua: renew the leases a job still holds and report the ones it lost.
-- KEYS[1] - jobs:running: zset of running job ids scored by lease expiry
-- KEYS[2] - jobs:running:<id>: the running job's JSON record
-- KEYS[3] - jobs:holder:<id>: hash token, host, pid, started, state
-- KEYS[4..] - ilock:<input> for each input, then olock:<output> for each output
-- ARGV[1] - job id
-- ARGV[2] - new lease in milliseconds; 0 only checks, renewing nothing
-- ARGV[3] - number of inputs
-- ARGV[4] - the fencing token this start of the job received
-- ARGV[5] - "1" to renew nothing unless every lock is held (taking over a start elsewhere)
-- return {1, now} if every lock is held, else {0, now, index of each lost name...}
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local id = ARGV[1]
local lease_ms = tonumber(ARGV[2])
local nin = tonumber(ARGV[3])
local out = {1, string.format('%.6f', now)}
local record = redis.call('HMGET', KEYS[3], 'token', 'state')
local mine = record[1] == ARGV[4] and record[2] == 'running'
local held = {}

for i = 1, #KEYS - 3 do
    local key = KEYS[3 + i]
    local ok = false
    if mine then
        if i <= nin then
            local score = redis.call('ZSCORE', key, id)
            ok = score and tonumber(score) > now
        else
            ok = redis.call('GET', key) == id
        end
    end
    if ok then
        held[#held + 1] = i
    else
        out[1] = 0
        out[#out + 1] = i
    end
end

if mine and lease_ms > 0 and not (ARGV[5] == '1' and out[1] == 0) then
    local expiry = now + lease_ms / 1000
    for _, i in ipairs(held) do
        local key = KEYS[3 + i]
        if i <= nin then
            redis.call('ZADD', key, expiry, id)
            if redis.call('PTTL', key) < lease_ms then
                redis.call('PEXPIRE', key, lease_ms)
            end
        else
            redis.call('PEXPIRE', key, lease_ms)
        end
    end
    redis.call('ZADD', KEYS[1], expiry, id)
    redis.call('PEXPIRE', KEYS[2], lease_ms + 60000) -- the slack start.lua gives jobs.py readers
    redis.call('PEXPIRE', KEYS[3], lease_ms)
end
return out
