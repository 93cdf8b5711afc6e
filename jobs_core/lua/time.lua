-- time.lua: the server clock of the namespace's shard.
-- KEYS[1] - jobs:running, KEYS[2] - jobs:guard (the namespace: see lib.lua)
-- return the TIME reply: {seconds, microseconds}
return T
