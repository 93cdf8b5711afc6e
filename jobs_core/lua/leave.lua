-- leave.lua: a waiting start() gives up (its deadline, an interrupt, a cancelled task, a closed
-- coordinator): it leaves every line at once, a start made for it meanwhile (a grant, or a try whose
-- reply was lost) is released, and whoever is next is started or told. Replaying it changes nothing.
-- KEYS[1] - jobs:running, KEYS[2] - jobs:guard (the namespace: see lib.lua)
-- ARGV[1] - job_id: the job id
-- ARGV[2] - nonce: the start() call that gives up
-- ARGV[3] - record_ms: how long a released start's holder record stays
-- ARGV[4] - publish: PUBLISH, or SPUBLISH on a cluster
-- ARGV[5] - inputs: how many of the names are inputs
-- ARGV[6] - limits: how many limits it takes slots of
-- ARGV[7..] - per limit its name and slots; then the inputs, then the outputs
-- return {1 if it still had a place in line, 1 if a start made for it was released, now}
local r = {id = ARGV[1], nonce = ARGV[2], nin = tonumber(ARGV[5])}
r.names, r.lims = names_from(7, tonumber(ARGV[6]))
OUTBOX.publish = ARGV[4]
local queued = redis.call('EXISTS', k_waiter(r.nonce)) == 1 or redis.call('ZSCORE', K_WAITING, r.nonce) ~= false
queues().unqueue(r)

local released = 0
local h = holder_fields(r.id, 'state', 'nonce')
if h[1] == 'running' and h[2] == r.nonce then
    release(r.id, true, r.names, r.nin, r.lims)
    ended(r.id, true, 'failed', r.nonce, tonumber(ARGV[3]))
    released = 1
end
if queued or released == 1 then
    OUTBOX.names = r.names
    OUTBOX.lims = r.lims
    scan_lines(r.names, r.lims)
    if released == 1 and redis.call('EXISTS', k_idqueue(r.id)) == 1 then
        queues().scan(k_idqueue(r.id), true)
        queues().drain()
    end
    flush()
end
return {queued and 1 or 0, released, NOWS}
