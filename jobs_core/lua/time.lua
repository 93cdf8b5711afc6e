-- time.lua: the server clock of the namespace's shard.
-- KEYS[1] - any key of the namespace (on a cluster it routes the call to the right shard)
-- return the TIME reply: {seconds, microseconds}
return redis.call('TIME')
