-- unlock.lua: force-release locks (a repair), fencing out their holders; optionally only if
-- they are still held by exactly the holders that were shown (compare-and-release).
-- KEYS[1] - jobs:token: the namespace's fencing counter
-- KEYS[2] - jobs:op:<nonce>: this call's result, kept a minute so a replay repeats it
-- KEYS[3..2+n] - the n lock keys to delete: ilock:<name> for the first ARGV[5], then olock:<name>
-- KEYS[3+n..] - with a compare: jobs:holder:<id> of every holder shown, in ARGV order
-- ARGV[1] - publish command (PUBLISH, or SPUBLISH on a cluster)
-- ARGV[2] - wake-up channel
-- ARGV[3] - wake-up message: the names unlocked, one per line
-- ARGV[4] - n, the number of lock keys
-- ARGV[5] - how many of them are read locks (ilock:)
-- ARGV[6] - "1" to compare with the holders shown, "0" to release whoever holds
-- ARGV[7..] - with a compare, per lock key: the number of holders shown (-1: the key was shown
--             unreadable, of another type), then per holder its job id and fencing token ("0"
--             for none: a jobs.py holder, or a record that could not be read)
-- return {number of lock keys deleted, new fencing token} when done, or {-1, index of each
--        lock key whose holders are no longer those shown...} when nothing was done
local done = redis.call('GET', KEYS[2])
if done then
    return cjson.decode(done)
end
local n = tonumber(ARGV[4])
local nin = tonumber(ARGV[5])

-- the token of a holder record's running start, 0 if none can be read (same rule as the client)
local function token_of(key)
    local record = redis.pcall('HMGET', key, 'state', 'token')
    if record.err or record[1] ~= 'running' or type(record[2]) ~= 'string' or not string.match(record[2], '^%d+$') then
        return 0
    end
    return tonumber(record[2])
end

if ARGV[6] == '1' then
    local t = redis.call('TIME')
    local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
    local changed = {-1}
    local a, h = 7, 3 + n
    for i = 1, n do
        local key = KEYS[2 + i]
        local count = tonumber(ARGV[a])
        local first, first_holder = a + 1, h
        a = a + 1 + 2 * math.max(count, 0)
        h = h + math.max(count, 0)
        local held
        if i <= nin then
            held = redis.pcall('ZRANGEBYSCORE', key, '(' .. string.format('%.6f', now), '+inf')
        else
            held = redis.pcall('GET', key)
            if not held then
                held = {}
            elseif not held.err then
                held = {held}
            end
        end
        local same
        if held.err then
            same = count == -1
        else
            same = count == #held
            local current = {}
            for _, id in ipairs(held) do
                current[id] = true
            end
            for k = 0, (same and count or 0) - 1 do
                local id, token = ARGV[first + 2 * k], tonumber(ARGV[first + 2 * k + 1])
                if not current[id] or token_of(KEYS[first_holder + k]) ~= token then
                    same = false
                end
            end
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

local deleted = 0
for i = 3, 2 + n do
    deleted = deleted + redis.call('DEL', KEYS[i])
end
local result = {deleted, redis.call('INCR', KEYS[1])}
redis.call('SET', KEYS[2], cjson.encode(result), 'PX', 60000)
redis.pcall(ARGV[1], ARGV[2], ARGV[3])
return result
