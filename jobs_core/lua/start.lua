-- start.lua: take every lock a job needs at once, or none; a waiting job keeps its place in line.
-- KEYS[1] - jobs:running, KEYS[2] - jobs:guard (the namespace: see lib.lua)
-- ARGV[1] - job_id: the job id ("" for a dry run, mode "check")
-- ARGV[2] - nonce: this start() call; a repeated call, or one granted meanwhile, gets its token
-- ARGV[3] - mode: "start" (one try), "wait" (one try; if blocked, keep its place in the lines of
--           its names, by the time it began to wait), "check" (a dry run: change nothing)
-- ARGV[4] - lease_ms: the lease of every lock, in milliseconds
-- ARGV[5] - renews: "1" if the job renews its leases (a grant may then give a shorter first lease)
-- ARGV[6] - overwrite: "1" if existing outputs may be overwritten
-- ARGV[7] - output_ttl_ms: time to live of the outputs it writes ("0": none), kept in the holder record
-- ARGV[8] - host: the holder's host name
-- ARGV[9] - pid: the holder's process id
-- ARGV[10] - wait_left_ms: milliseconds left to wait (mode "wait"); "0" on its last try, which
--            leaves the lines if still blocked
-- ARGV[11] - channel: the coordinator's channel suffix its grants are published on (mode "wait")
-- ARGV[12] - lineage: the job's name in lineage edges, "" to record none
-- ARGV[13] - publish: PUBLISH, or SPUBLISH on a cluster
-- ARGV[14] - inputs: how many of the names are inputs
-- ARGV[15] - limits: how many limits it takes slots of
-- ARGV[16..] - per limit its name and the slots it takes; then the inputs, then the outputs
-- return {1, token, now, lease ms left} when started (also by a grant or an earlier reply lost in
--        flight), {1, 0, now, 0} when a check finds nothing blocking, else
--        {0, now, final, last token, reason, index, holder, until, holder publishes (1/0), ...}
--        per blocker (index: of its names, then of its limits; 0 is the job id itself); final is 1 when waiting cannot help (an existing output with overwrite off);
--        last token is the namespace's fencing counter (a grant with a token not above it ended
--        before this try: it is no start of this call's)
local r = {
    id = ARGV[1], nonce = ARGV[2], lease = tonumber(ARGV[4]), renews = tonumber(ARGV[5]),
    ow = tonumber(ARGV[6]), ttl = tonumber(ARGV[7]), host = ARGV[8], pid = tonumber(ARGV[9]),
    ch = ARGV[11], lin = ARGV[12], nin = tonumber(ARGV[14]), ticket = 0,
}
r.names, r.lims = names_from(16, tonumber(ARGV[15]))
local mode = ARGV[3]
OUTBOX.publish = ARGV[13]

if r.id ~= '' then
    local h = holder_fields(r.id, 'state', 'nonce', 'token')
    if h[1] == 'running' and h[2] == r.nonce then
        return {1, tonumber(h[3]), NOWS, redis.call('PTTL', k_holder(r.id))}
    end
    r.holder = {h[1], h[2]}  -- for conflicts(): this call's first look at the id's record
end

local record = nil
if mode == 'wait' then
    local raw = redis.call('GET', k_waiter(r.nonce))
    if raw then
        local ok, rec = pcall(cjson.decode, raw)
        if ok and type(rec) == 'table' and tonumber(rec.ticket) then
            record = rec
            r.ticket = tonumber(rec.ticket)
        end
    end
end

local list = blockers(r)
if #list == 0 then
    if mode == 'check' then
        return {1, 0, NOWS, 0}
    end
    local token = take(r, r.lease)
    if r.ticket > 0 and (r.nin > 0 or #r.lims > 0) then
        -- it waited in line: readers behind it may read beside it now, and the jobs behind it in a
        -- limit's line that fit in the slots it left (it found them free at its own look: a lease
        -- that lapsed, which nobody announces) may start with it
        local inputs = {}
        for i = 1, r.nin do
            inputs[i] = r.names[i]
        end
        scan_lines(inputs, r.lims)
        flush()
    end
    return {1, token, NOWS, r.lease}
end

local Q = queues()
local final = Q.is_final(list)
if mode == 'wait' then
    local left = tonumber(ARGV[10])
    if final or left <= 0 then
        if record or r.ticket > 0 then
            Q.unqueue(r)
            OUTBOX.names = r.names
            OUTBOX.lims = r.lims
            scan_lines(r.names, r.lims)
            flush()
        end
    else
        local alive = math.min(left, ALIVE_MS)
        local ticket = record and record.ticket or NOWS
        r.ticket = ticket
        r.tried = NOWS
        r.since = record and record.since or NOWS
        r.deadline = string.format('%.6f', NOW + left / 1000)
        r.passed = nil
        redis.call('ZREMRANGEBYSCORE', K_WAITING, '-inf', NOW)
        redis.call('ZADD', K_WAITING, NOW + alive / 1000, r.nonce)
        redis.call('SET', k_waiter(r.nonce), cjson.encode(r), 'PX', alive)
        for i = 1, #r.names + #r.lims do
            local q = Q.res_queue(r, i)
            redis.call('ZADD', q, 'NX', ticket, r.nonce)
            redis.call('PEXPIRE', q, 2 * ALIVE_MS)
        end
        if list[1][1] == 'job_running' then
            local q = k_idqueue(r.id)
            redis.call('ZADD', q, 'NX', ticket, r.nonce)
            redis.call('PEXPIRE', q, 2 * ALIVE_MS)
        end
    end
end

local out = {0, NOWS, final and 1 or 0, tonumber(redis.call('GET', K_TOKEN) or 0)}
for _, b in ipairs(list) do
    local publishes = 0
    if b[1] == 'input_queued' or b[1] == 'output_queued' or b[1] == 'limit_queued' or b[1] == 'job_running'
        or b[1] == 'limit_full' then
        publishes = 1
    elseif b[3] ~= '' and b[1] ~= 'output_exists' and holder_fields(b[3], 'state')[1] == 'running' then
        publishes = 1
    end
    out[#out + 1] = b[1]
    out[#out + 1] = b[2]
    out[#out + 1] = b[3]
    out[#out + 1] = b[4] and string.format('%.6f', b[4]) or ''
    out[#out + 1] = publishes
end
return out
