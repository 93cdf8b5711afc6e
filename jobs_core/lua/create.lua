-- create.lua: mark outputs written without a job (a repair), fencing out writers.
-- KEYS[1] - jobs:token: the namespace's fencing counter
-- KEYS[2] - jobs:op:<nonce>: this call's result, kept a minute so a replay repeats it
-- KEYS[3..] - per output: <output>, olock:<output>, jobs:output:<output> (facts)
-- ARGV[1] - the job id to record as writer
-- ARGV[2] - output time to live in milliseconds, "0" for none
-- ARGV[3] - publish command (PUBLISH, or SPUBLISH on a cluster)
-- ARGV[4] - wake-up channel
-- ARGV[5] - wake-up message: the names created, one per line
-- return the fencing token recorded with the outputs
local done = redis.call('GET', KEYS[2])
if done then
    return tonumber(done)
end
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local token = redis.call('INCR', KEYS[1])
local ttl = tonumber(ARGV[2])
local facts = cjson.encode({job = ARGV[1], token = token, time = now, forced = true})
for k = 3, #KEYS, 3 do
    redis.call('DEL', KEYS[k + 1])
    if ttl > 0 then
        redis.call('SET', KEYS[k], ARGV[1], 'PX', ttl)
        redis.call('SET', KEYS[k + 2], facts, 'PX', ttl)
    else
        redis.call('SET', KEYS[k], ARGV[1])
        redis.call('SET', KEYS[k + 2], facts)
    end
end
redis.call('SET', KEYS[2], token, 'PX', 60000)
redis.pcall(ARGV[3], ARGV[4], ARGV[5])
return token
