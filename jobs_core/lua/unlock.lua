-- unlock.lua: force-release locks (a repair), fencing out their holders.
-- KEYS[1] - jobs:token: the namespace's fencing counter
-- KEYS[2] - jobs:op:<nonce>: this call's result, kept a minute so a replay repeats it
-- KEYS[3..] - lock keys to delete: ilock:<name> and/or olock:<name>
-- ARGV[1] - publish command (PUBLISH, or SPUBLISH on a cluster)
-- ARGV[2] - wake-up channel
-- ARGV[3] - wake-up message: the names unlocked, one per line
-- return {number of lock keys deleted, new fencing token}
local done = redis.call('GET', KEYS[2])
if done then
    return cjson.decode(done)
end
local deleted = 0
for i = 3, #KEYS do
    deleted = deleted + redis.call('DEL', KEYS[i])
end
local result = {deleted, redis.call('INCR', KEYS[1])}
redis.call('SET', KEYS[2], cjson.encode(result), 'PX', 60000)
redis.pcall(ARGV[1], ARGV[2], ARGV[3])
return result
