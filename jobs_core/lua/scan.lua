-- scan.lua: after a repair (unlock, create) changed names: start the waiters this lets run, tell them.
-- KEYS[1] - jobs:running, KEYS[2] - jobs:guard (the namespace: see lib.lua)
-- ARGV[1] - publish: PUBLISH, or SPUBLISH on a cluster
-- ARGV[2..] - the names that changed
-- return the number of names looked at
OUTBOX.publish = ARGV[1]
local names = names_from(2)
OUTBOX.names = names
scan_lines(names)
flush()
return #names
