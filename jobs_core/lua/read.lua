-- read.lua: read records for people, so that one key of an unexpected type cannot fail the read.
-- KEYS[1..] - the keys to read (at most a few hundred per call: the server waits while it runs)
-- ARGV[i] - how to read KEYS[i]: "string" (GET), "hash" (HGETALL) or "zset" (ZRANGE 0 -1 WITHSCORES)
-- return per key: {0} when it does not exist, {1, value, pttl} when it is of the type asked
--        for, {2, error} when reading it failed (another type: the error starts with WRONGTYPE)
local out = {}
for i = 1, #KEYS do
    local key = KEYS[i]
    if redis.call('EXISTS', key) == 0 then
        out[i] = {0}
    else
        local value
        if ARGV[i] == 'hash' then
            value = redis.pcall('HGETALL', key)
        elseif ARGV[i] == 'zset' then
            value = redis.pcall('ZRANGE', key, 0, -1, 'WITHSCORES')
        else
            value = redis.pcall('GET', key)
        end
        if type(value) == 'table' and value.err then
            out[i] = {2, value.err}
        else
            out[i] = {1, value, redis.call('PTTL', key)}
        end
    end
end
return out
