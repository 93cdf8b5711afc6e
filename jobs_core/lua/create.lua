-- create.lua: mark outputs written without a job (a repair), fencing out writers; optionally
-- only if each output's writer and write lock are still those that were shown.
-- KEYS[1] - jobs:token: the namespace's fencing counter
-- KEYS[2] - jobs:op:<nonce>: this call's result, kept a minute so a replay repeats it
-- KEYS[3..2+3n] - per output (n of them): <output>, olock:<output>, jobs:output:<output> (facts)
-- KEYS[3+3n..] - with a compare: jobs:holder:<id> of every write lock holder shown, in ARGV order
-- ARGV[1] - the job id to record as writer
-- ARGV[2] - output time to live in milliseconds, "0" for none
-- ARGV[3] - publish command (PUBLISH, or SPUBLISH on a cluster)
-- ARGV[4] - wake-up channel
-- ARGV[5] - wake-up message: the names created, one per line
-- ARGV[6] - n, the number of outputs
-- ARGV[7] - "1" to compare with the state shown, "0" to create whatever the state
-- ARGV[8..] - with a compare, per output: "1" and the writer's id if it was shown written, "0" and
--             "" if not, "-1" and "" if its key was shown unreadable (of another type); then the
--             number of write lock holders shown (0 or 1; -1: shown unreadable) and per holder its
--             job id and fencing token ("0" for none)
-- return the fencing token recorded with the outputs when done, or {-1, index of each output
--        whose state is no longer the one shown...} when nothing was done
local done = redis.call('GET', KEYS[2])
if done then
    if string.sub(done, 1, 1) == '[' then
        return cjson.decode(done)
    end
    return tonumber(done)
end
local n = tonumber(ARGV[6])

-- the token of a holder record's running start, 0 if none can be read (same rule as the client)
local function token_of(key)
    local record = redis.pcall('HMGET', key, 'state', 'token')
    if record.err or record[1] ~= 'running' or type(record[2]) ~= 'string' or not string.match(record[2], '^%d+$') then
        return 0
    end
    return tonumber(record[2])
end

if ARGV[7] == '1' then
    local changed = {-1}
    local a, h = 8, 3 + 3 * n
    for i = 1, n do
        local k = 3 * i
        local written, writer, count = tonumber(ARGV[a]), ARGV[a + 1], tonumber(ARGV[a + 2])
        local first, first_holder = a + 3, h
        a = a + 3 + 2 * math.max(count, 0)
        h = h + math.max(count, 0)
        local value = redis.pcall('GET', KEYS[k])
        local same
        if type(value) == 'table' and value.err then
            same = written == -1
        elseif value then
            same = written == 1 and value == writer
        else
            same = written == 0
        end
        local lock = redis.pcall('GET', KEYS[k + 1])
        if type(lock) == 'table' and lock.err then
            same = same and count == -1
        elseif lock then
            same = same and count == 1 and lock == ARGV[first] and token_of(KEYS[first_holder]) == tonumber(ARGV[first + 1])
        else
            same = same and count == 0
        end
        if not same then
            changed[#changed + 1] = i
        end
    end
    if #changed > 1 then
        redis.call('SET', KEYS[2], cjson.encode(changed), 'PX', 60000)
        return changed
    end
end

local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local token = redis.call('INCR', KEYS[1])
local ttl = tonumber(ARGV[2])
local facts = cjson.encode({job = ARGV[1], token = token, time = now, forced = true})
for k = 3, 2 + 3 * n, 3 do
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
