-- lib.lua: what the scripts share; jobs_core/scripts.py puts it (after the constants of
-- jobs_core/protocol.py) before the text of start, stop, leave, refresh, unlock, create and time.
--
-- KEYS[1] of every script is <prefix>jobs:running. It routes the call to the namespace's shard
-- on a cluster and gives the prefix; every other key is derived here from the prefix (exactly
-- as jobs_core/keys.py builds it), so every key a script touches lies in the namespace: one hash
-- slot on a cluster (its prefix has a hash tag), and inside an ACL user's ~<prefix>* pattern.
-- KEYS[2] is <prefix>jobs:guard, a key that never exists: while the namespace's slot migrates
-- between cluster nodes, a script declaring a key that is absent is refused before it runs
-- (TRYAGAIN; the client retries), so a script only ever runs where every key of the namespace
-- is (it could otherwise find a key not moved yet missing, or fail half-way on one moved away).
-- tests/test_scripts.py checks all of it, on both clusters and with a prefix-limited ACL user.
local PREFIX = string.sub(KEYS[1], 1, -13)
local T = redis.call('TIME')
local NOW = tonumber(T[1]) + tonumber(T[2]) / 1000000
-- NOW to the microsecond, as string.format('%.6f', NOW) gives it (the sum above is off by less than
-- half a microsecond until the year 2242), without its cost
local NOWS = T[1] .. '.' .. string.sub('00000' .. T[2], -6)

-- x as the text Redis makes of a number passed to a command (%.17g, which costs more than most of
-- the commands here): a script passes a number it uses more than once as this text, made once,
-- and a whole number's text is cheaper to make
local function num(x)
    if x % 1 == 0 and x > 0 and x < 1e15 then
        return string.format('%d', x)
    end
    return string.format('%.17g', x)
end

local function k_out(n) return PREFIX .. n end
local function k_olock(n) return PREFIX .. 'olock:' .. n end
local function k_ilock(n) return PREFIX .. 'ilock:' .. n end
local function k_facts(n) return PREFIX .. 'jobs:output:' .. n end
local function k_queue(n) return PREFIX .. 'jobs:queue:' .. n end
local function k_job(id) return PREFIX .. 'jobs:running:' .. id end
local function k_holder(id) return PREFIX .. 'jobs:holder:' .. id end
local function k_idqueue(id) return PREFIX .. 'jobs:idqueue:' .. id end
local function k_waiter(nonce) return PREFIX .. 'jobs:waiting:' .. nonce end
local function k_limit(l) return PREFIX .. 'jobs:limit:' .. l end
local function k_limitq(l) return PREFIX .. 'jobs:limitq:' .. l end
local K_RUNNING = KEYS[1]
local K_TOKEN = PREFIX .. 'jobs:token'
local K_WAITING = PREFIX .. 'jobs:waiting'
local K_GRAPH_IN = PREFIX .. 'jobs:graph:input'
local K_GRAPH_OUT = PREFIX .. 'jobs:graph:output'
local K_WAKE = PREFIX .. 'jobs:wake'
local K_LIMITS = PREFIX .. 'jobs:limits'

-- what a script publishes, sent at its end (flush): per coordinator channel, lines for its
-- waiting jobs; on the namespace channel, the names whose state changed and the limits whose
-- slots or capacity changed (lims: {{limit, slots}...}), each as the key of its slots without the
-- prefix, jobs:limit:<l> (no name has that form). Its tables are made when first needed (making a
-- table costs on every call): channels and order by notify, names and lims by the script.
local OUTBOX = {publish = 'PUBLISH'}

local function flush()
    -- pcall: a user allowed the keys but not the channels still works (its waits poll)
    for _, ch in ipairs(OUTBOX.order or {}) do
        redis.pcall(OUTBOX.publish, K_WAKE .. ':' .. ch, table.concat(OUTBOX.channels[ch], '\n'))
    end
    local changed = OUTBOX.names or {}
    if OUTBOX.lims and #OUTBOX.lims > 0 then
        changed = {}
        for i, n in ipairs(OUTBOX.names or {}) do
            changed[i] = n
        end
        for _, l in ipairs(OUTBOX.lims) do
            changed[#changed + 1] = string.sub(k_limit(l[1]), #PREFIX + 1)  -- its slots key, unprefixed
        end
    end
    if #changed > 0 then
        redis.pcall(OUTBOX.publish, K_WAKE, cjson.encode(changed))
    end
end

local function lock_until(key)
    local ms = redis.call('PTTL', key)
    if ms > 0 then
        return NOW + ms / 1000
    end
    return nil
end

-- lineage form of a name or job id: every digit run becomes '*' (jobs_core/names.py fold)
local function fold(s)
    return (string.gsub(s, '[0-9][0-9%-]*', '*'))
end

-- A start request, as start.lua receives it and a waiter record keeps it (JSON):
-- id, nonce, nin (number of inputs), names (inputs then outputs), ow (overwrite: 1/0),
-- lease (ms), renews (1 if the job renews its leases), ttl (output time to live, ms, 0: none),
-- host, pid, ch (the coordinator channel its grant goes to), lin (lineage name, '' for none),
-- ticket (server time it began to wait, 0: a newcomer), deadline, since, lims (the limits it
-- takes slots of: {{limit, slots}, ...}).
--
-- A request's resources are its names (1..#names) then its limits (#names+1..): a reply's
-- index, a line, a lost lock all refer to them so.

local function reads(r, i)
    return i <= r.nin
end

local function add(list, reason, i, holder, expiry)
    list[#list + 1] = {reason, i, holder or '', expiry}
end

-- fields of a holder record ({} when there is none, or it is not a hash: one malformed record
-- must not fail the scripts of every job that meets its holder)
local function holder_fields(id, ...)
    local got = redis.pcall('HMGET', k_holder(id), ...)
    if type(got) ~= 'table' or got.err then
        return {}
    end
    return got
end

local queues  -- defined below, once everything its functions use is

-- The conflicts of request r with the locks and outputs as they are now (not the lines):
-- appended to list as {reason, name index, holder, expiry}; index 0 is the job id itself.
local function conflicts(r, list)
    if r.id ~= '' then
        -- r.holder: the fields start.lua already read of this record (read once per script call)
        local running = r.holder or holder_fields(r.id, 'state', 'nonce')
        r.holder = nil
        if running[1] == 'running' and running[2] ~= r.nonce then
            add(list, 'job_running', 0, r.id, lock_until(k_holder(r.id)))
        end
    end
    for i, n in ipairs(r.names) do
        local writer = redis.call('GET', k_olock(n))
        if writer == r.id then
            writer = false
        end
        if reads(r, i) then
            if writer then
                add(list, 'input_missing', i, writer, lock_until(k_olock(n)))
            elseif redis.call('EXISTS', k_out(n)) == 0 then
                add(list, 'input_missing', i)
            end
        elseif r.ow == 0 and redis.call('EXISTS', k_out(n)) == 1 then
            local value = redis.pcall('GET', k_out(n))
            add(list, 'output_exists', i, type(value) == 'string' and value or '')
        elseif writer then
            add(list, 'output_locked', i, writer, lock_until(k_olock(n)))
        else
            local readers = redis.call('ZRANGEBYSCORE', k_ilock(n), '(' .. NOWS, '+inf', 'WITHSCORES')
            for j = 1, #readers, 2 do
                if readers[j] ~= r.id then
                    add(list, 'output_used', i, readers[j], tonumber(readers[j + 1]))
                end
            end
        end
    end
    local base = #r.names
    for j, l in ipairs(r.lims) do
        local cap, used, holders = queues().limit_use(l[1], r.id, true)
        if not cap then
            add(list, 'limit_unknown', base + j)
        elseif l[2] > cap then
            add(list, 'limit_too_small', base + j, '', cap)
        elseif l[2] > cap - used then
            local seen = {}
            for _, h in ipairs(holders) do
                if not seen[h[1]] then
                    seen[h[1]] = true
                    add(list, 'limit_full', base + j, h[1], h[2])
                end
            end
            if #holders == 0 then
                add(list, 'limit_full', base + j)  -- full, holders not listed (never a start past it)
            end
        end
    end
end

-- Everything that keeps request r from starting now: its conflicts or, when there are none, the
-- waiter ahead of it in the line of each of its names (the lines are judged only for a start that
-- could run: a blocked one is no nearer its turn for knowing its place). Returns the list.
local function blockers(r)
    local list = {}
    conflicts(r, list)
    if #list > 0 or redis.call('ZCARD', K_WAITING) == 0 then
        return list
    end
    local line = queues().line
    local n = #r.names
    for i = 1, n + #r.lims do
        local e = line(r, i, 0)
        if e then
            add(list, i > n and 'limit_queued' or (reads(r, i) and 'input_queued' or 'output_queued'), i, e.id,
                e.alive)
        end
    end
    return list
end

-- ZADD in chunks (Lua's unpack has a stack limit)
local function zadd_all(key, members)
    for from = 1, #members, 500 do
        local batch = {}
        for a = from, math.min(#members, from + 499) do
            batch[#batch + 1] = NOWS
            batch[#batch + 1] = members[a]
        end
        redis.call('ZADD', key, unpack(batch))
    end
end

-- Give key a time to live of at least ms (a lock's key outlives each of its holders' leases): one
-- command for a key without one (the usual case: its last holder's release deleted it).
local function keep_for(key, ms)
    if redis.call('PEXPIRE', key, ms, 'NX') == 0 then
        redis.call('PEXPIRE', key, ms, 'GT')
    end
end

-- Take every lock of request r (its blockers were just found empty) for lease_ms; returns the
-- fencing token. Its waiting record and places, if any, go.
local function take(r, lease_ms)
    local expiry = num(NOW + lease_ms / 1000)
    local ms = num(lease_ms)
    local token = redis.call('INCR', K_TOKEN)
    local holder = {'token', num(token), 'nonce', r.nonce, 'host', r.host, 'pid', num(r.pid),
        'started', NOWS, 'lease', ms, 'ttl', num(r.ttl), 'state', 'running', 'passer', r.passed and '1' or '0',
        'lineage', r.lin or ''}
    if #r.lims > 0 then
        -- the limits it holds slots of, for a stop from another process (jobs-core stop)
        holder[#holder + 1] = 'limits'
        holder[#holder + 1] = cjson.encode(r.lims)
        for _, l in ipairs(r.lims) do
            local k = k_limit(l[1])
            redis.call('ZREMRANGEBYSCORE', k, '-inf', NOWS)
            for i = 1, l[2] do
                redis.call('ZADD', k, expiry, r.id .. '#' .. i)
            end
            keep_for(k, ms)
        end
    end
    -- written afresh: the record an earlier start of the id left (it answers a repeated stop for
    -- a while) must lend this start none of its fields (its limits, ended_by, forced), and a key of
    -- another type there goes too
    local kh = k_holder(r.id)
    redis.call('DEL', kh)
    redis.call('HSET', kh, unpack(holder))
    redis.call('PEXPIRE', kh, ms)
    local io = {}
    for i = 1, r.nin do
        local k = k_ilock(r.names[i])
        redis.call('ZADD', k, expiry, r.id)
        keep_for(k, ms)
        io[i] = r.names[i]
    end
    io[#io + 1] = ''
    for i = r.nin + 1, #r.names do
        redis.call('SET', k_olock(r.names[i]), r.id, 'PX', ms)
        io[#io + 1] = r.names[i]
    end
    redis.call('ZREMRANGEBYSCORE', K_RUNNING, '-inf', NOW)
    redis.call('ZADD', K_RUNNING, expiry, r.id)
    redis.call('SET', k_job(r.id), cjson.encode(io), 'PX', num(lease_ms + RECORD_SLACK_MS))
    if r.lin ~= '' and r.nin > 0 then
        -- what it reads is known at its start; what it writes only when it writes it (stop.lua)
        local edges = {}
        for i = 1, r.nin do
            edges[i] = fold(r.names[i]) .. ' -> ' .. r.lin
        end
        zadd_all(K_GRAPH_IN, edges)
    end
    if r.ticket > 0 then
        queues().unqueue(r)
    end
    return token
end

-- The lines, and what only a start that meets a waiter, a limit or a blocker needs. Lua makes a
-- function's closure (and finds each variable it uses from outside) each time a script runs its
-- definition, so these are defined on first use (queues()), and a start or stop that meets none of
-- them pays nothing for them.
local QUEUES
queues = function()
    if QUEUES then
        return QUEUES
    end
    -- tell coordinator channel ch line (sent at the script's end: flush)
    local function notify(ch, line)
        if not ch or ch == '' then
            return
        end
        if not OUTBOX.order then
            OUTBOX.channels, OUTBOX.order = {}, {}
        end
        local lines = OUTBOX.channels[ch]
        if not lines then
            lines = {}
            OUTBOX.channels[ch] = lines
            OUTBOX.order[#OUTBOX.order + 1] = ch
        end
        lines[#lines + 1] = line
    end

    -- the line of request r's i-th resource (a name's, or a limit's)
    local function res_queue(r, i)
        local n = #r.names
        if i <= n then
            return k_queue(r.names[i])
        end
        return k_limitq(r.lims[i - n][1])
    end

    -- How many holders of a full limit a blocker list names (a limit may have any number of holders:
    -- reading them all would make every start's time grow with them)
    local HOLDERS_MAX = 32

    -- the capacity of limit l (nil: unknown), how many live slots of it jobs other than id hold, and
    -- up to HOLDERS_MAX of those slots as {{job id, expiry}...} when holders is true. A slot is the
    -- member "<job id>#<n>" of jobs:limit:<l> (n from 1), scored by its holder's lease expiry;
    -- counting is ZCOUNT, bounded however many hold the limit, and changes nothing (a dry run).
    local function limit_use(l, id, holders)
        local cap = tonumber(redis.call('HGET', K_LIMITS, l))
        if not cap then
            return nil, 0, {}
        end
        local k = k_limit(l)
        local live = '(' .. NOWS
        local used = redis.call('ZCOUNT', k, live, '+inf')
        if used > 0 and id ~= '' then
            -- slots of another start of the same id are not someone else's (it is job_running)
            local i = 1
            while true do
                local score = redis.call('ZSCORE', k, id .. '#' .. i)
                if not score then
                    break
                end
                if tonumber(score) > NOW then
                    used = used - 1
                end
                i = i + 1
            end
        end
        local out = {}
        if holders and used > 0 then
            local members = redis.call('ZRANGEBYSCORE', k, live, '+inf', 'WITHSCORES', 'LIMIT', 0, HOLDERS_MAX + 1)
            for j = 1, #members, 2 do
                local holder = string.match(members[j], '^(.*)#%d+$') or members[j]
                if holder ~= id and #out < HOLDERS_MAX then
                    out[#out + 1] = {holder, tonumber(members[j + 1])}
                end
            end
        end
        return cap, used, out
    end

    -- reasons waiting cannot help with
    local FINAL = {output_exists = true, limit_unknown = true, limit_too_small = true}

    local function is_final(list)
        for _, b in ipairs(list) do
            if FINAL[b[1]] then
                return true
            end
        end
        return false
    end

    -- Drop request r's waiting record and its places in every line.
    local function unqueue(r)
        redis.call('ZREM', K_WAITING, r.nonce)
        redis.call('DEL', k_waiter(r.nonce))
        for _, n in ipairs(r.names) do
            redis.call('ZREM', k_queue(n), r.nonce)
        end
        for _, l in ipairs(r.lims) do
            redis.call('ZREM', k_limitq(l[1]), r.nonce)
        end
        if r.id ~= '' then
            redis.call('ZREM', k_idqueue(r.id), r.nonce)
        end
    end

    -- whether request r only reads name n (it is among its inputs and not among its outputs)
    local function only_reads(r, n)
        if not r.writes then
            r.writes = {}
            for i = r.nin + 1, #r.names do
                r.writes[r.names[i]] = true
            end
        end
        return not r.writes[n]
    end

    -- The waiter a line entry stands for, or nil if it is gone (not alive, or its record is not a
    -- well-formed start request): dropped from the line then.
    local function entry(queue, member)
        local alive = tonumber(redis.call('ZSCORE', K_WAITING, member))
        if alive and alive > NOW then
            local raw = redis.pcall('GET', k_waiter(member))
            if type(raw) == 'string' then
                local ok, e = pcall(cjson.decode, raw)
                if ok and type(e) == 'table' and e.nonce == member and type(e.id) == 'string'
                    and type(e.names) == 'table' and tonumber(e.nin) and tonumber(e.lease) and tonumber(e.renews)
                    and tonumber(e.ow) and tonumber(e.ttl) and tonumber(e.pid) and tonumber(e.ticket)
                    and type(e.host) == 'string' and type(e.ch) == 'string' and type(e.lin) == 'string' then
                    local names_ok = e.nin >= 0 and e.nin <= #e.names and type(e.lims or {}) == 'table'
                    for _, n in ipairs(e.names) do
                        names_ok = names_ok and type(n) == 'string'
                    end
                    e.lims = e.lims or {}
                    for _, l in ipairs(e.lims) do
                        names_ok = names_ok and type(l) == 'table' and type(l[1]) == 'string' and tonumber(l[2])
                    end
                    if names_ok then
                        e.alive = alive
                        e.ticket = tonumber(e.ticket)
                        e.tried = tonumber(e.tried) or NOW
                        return e
                    end
                end
            end
        end
        redis.call('ZREM', queue, member)
        return nil
    end

    -- How far the lines are judged through one another (a waiter behind a waiter behind...): beyond
    -- this depth a waiter counts as able to run (it keeps its turn), which errs towards order.
    local DEPTH_MAX = 2
    -- Line entries one call may judge (WORK_MAX, from jobs_core/protocol.py): past it, whatever is
    -- left unjudged keeps its turn (erring towards order again), so a call's work stays bounded.
    local WORK = {left = WORK_MAX}
    local line

    -- How waiter e stands on the resource whose line is q, for request r behind it there:
    -- 'final': it will leave (an existing output, overwrite off);
    -- 'passable': it cannot run for a reason no job that passed someone caused (a missing input, a
    -- lock held by a job that did not pass anyone or by r's own process, a waiter ahead of it in
    -- another line), so r may pass it;
    -- 'on': blocked only on that resource itself (by readers r joins, by jobs that passed it, by a full
    -- limit): it keeps its turn;
    -- 'strict': it can run once that resource is free, or waits only for jobs that passed someone:
    -- it keeps its turn.
    local function standing(e, q, r, depth, found)
        if WORK.left <= 0 then
            return 'strict'
        end
        WORK.left = WORK.left - 1
        local list = found
        if not list then
            list = {}
            conflicts(e, list)
        end
        local on, elsewhere = false, false
        for _, b in ipairs(list) do
            if FINAL[b[1]] then
                return 'final'
            end
            -- a missing input (nobody writing it) is no reason to keep it from a start: that start
            -- may well be the one that writes it
            local on_n = b[2] > 0 and res_queue(e, b[2]) == q and not (b[1] == 'input_missing' and b[3] == '')
            if on_n then
                on = true
            end
            if not on_n then
                if b[3] == '' or b[1] == 'job_running' or b[1] == 'input_queued' or b[1] == 'output_queued'
                    or b[1] == 'limit_queued' then
                    elsewhere = true
                else
                    local h = holder_fields(b[3], 'passer', 'host', 'pid')
                    if h[1] ~= '1' or (h[2] == r.host and tonumber(h[3]) == r.pid) then
                        elsewhere = true
                    end
                end
            end
        end
        if elsewhere then
            return 'passable'
        end
        if on then
            return 'on'
        end
        if not found and #list == 0 and depth < DEPTH_MAX then
            for i = 1, #e.names + #e.lims do
                if res_queue(e, i) ~= q and line(e, i, depth + 1) then
                    return 'passable'  -- kept out of another resource by a waiter ahead of it there
                end
            end
        end
        return 'strict'
    end

    -- the slots of limit l request e asks for
    local function asks(e, l)
        for _, m in ipairs(e.lims) do
            if m[1] == l then
                return m[2]
            end
        end
        return 0
    end

    -- The place of request r in the line of its i-th resource: nil if no live waiter ahead of it
    -- keeps the resource from it, else that waiter. Entries ahead that it may pass set r.passed.
    -- On a name, a waiter ahead keeps it unless both only read it, or it may be passed; on a limit,
    -- every waiter ahead that may not be passed keeps its slots, and r fits in what is left or not.
    line = function(r, i, depth)
        local n = #r.names
        local name, avail
        if i <= n then
            name = r.names[i]
        else
            local l = r.lims[i - n]
            local cap, used = limit_use(l[1], r.id)
            name, avail = l[1], (cap or 0) - used - l[2]
        end
        local q = res_queue(r, i)
        local from, page = 0, 2
        while true do
            local members = redis.call('ZRANGE', q, from, from + page - 1, 'WITHSCORES')
            for j = 1, #members, 2 do
                local member, ticket = members[j], tonumber(members[j + 1])
                if member == r.nonce or (r.ticket > 0 and (ticket > r.ticket or (ticket == r.ticket and member > r.nonce)))
                then
                    return nil
                end
                local e = entry(q, member)
                if e then
                    if avail or not (only_reads(e, name) and only_reads(r, name) and reads(r, i)) then
                        local st = standing(e, q, r, depth)
                        if st == 'passable' or st == 'final' then
                            r.passed = true
                        elseif not avail then
                            return e
                        else
                            avail = avail - asks(e, name)
                            if avail < 0 then
                                return e
                            end
                        end
                    end
                else
                    from = from - 1  -- it left the line: the next page starts one earlier
                end
            end
            if #members < 2 * page then
                return nil
            end
            if from + page >= LINE_MAX or WORK.left <= 0 then
                -- a line longer than is looked at: keep behind the last one seen
                local e = entry(q, members[#members - 1])
                if e and e.nonce ~= r.nonce then
                    return e
                end
                return nil
            end
            from = from + page
            page = math.min(page * 4, SCAN_MAX)
        end
    end

    -- The lease a grant gives waiter e: its own, but no longer than its place in line would live
    -- (ALIVE_MS after its last try): a waiter that died meanwhile gets nothing it keeps for long.
    -- A job that renews extends it at its first beat; one that does not renews once on receipt.
    local function grant_lease(e)
        return math.max(1, math.min(tonumber(e.lease), math.floor((e.tried - NOW) * 1000) + ALIVE_MS))
    end

    -- A request of nobody's process, for judging who may pass a waiter in a release's scan.
    local NOBODY = {host = '', pid = -1}

    -- The other lines of the waiters a scan found can never start (they leave every line): those
    -- behind them there may start now (drain looks at them). At most SCAN_MAX per script call.
    local LEFT = {list = {}, seen = {}, count = 0}

    -- After the state of a resource changed (a name released or written, slots of a limit freed, a
    -- waiter left): start, for them, the waiters of its line q that can run now, in line order, and
    -- tell them (id_line: q is the line of a job id). Stops at the first that keeps its turn; one
    -- that waits in vain (an existing output) is told to look (it then leaves). At most SCAN_MAX
    -- entries are judged; if more are left, the next one is told to look for itself (its own try
    -- goes on from there). On a limit's line (limit_line) a waiter that keeps its turn for another
    -- reason than the limit only keeps the slots it asks for: those behind it that fit in the rest
    -- are started too (their blockers() count what it keeps), and the scan stops at the first one
    -- blocked by the limit itself.
    local function scan(q, id_line, limit_line)
        local from, looked, page = 0, 0, 2
        while looked < SCAN_MAX do
            local members = redis.call('ZRANGE', q, from, from + math.min(page, SCAN_MAX - looked) - 1)
            page = page * 4
            if #members == 0 then
                return
            end
            for _, member in ipairs(members) do
                looked = looked + 1
                local e = entry(q, member)
                if e then
                    e.passed = false
                    local list = blockers(e)
                    if #list == 0 then
                        local lease = grant_lease(e)
                        local token = take(e, lease)
                        notify(e.ch, e.nonce .. '\t' .. token .. '\t' .. lease .. '\t' .. NOWS)
                    elseif is_final(list) then
                        unqueue(e)
                        notify(e.ch, e.nonce)
                        for i = 1, #e.names + #e.lims do
                            local key = res_queue(e, i)
                            if key ~= q and not LEFT.seen[key] and LEFT.count < SCAN_MAX then
                                LEFT.seen[key] = true
                                LEFT.count = LEFT.count + 1
                                LEFT.list[#LEFT.list + 1] = {key, i > #e.names}
                            end
                        end
                    else
                        from = from + 1
                        if list[1][1] == 'job_running' then
                            -- blocked by another start of its id: woken when that one stops
                            redis.call('ZADD', k_idqueue(e.id), 'NX', e.ticket, e.nonce)
                            redis.call('PEXPIRE', k_idqueue(e.id), 2 * ALIVE_MS)
                        end
                        if id_line then
                            if list[1][1] == 'job_running' then
                                return  -- the id runs again: the others wait for that start
                            end
                        else
                            local st = standing(e, q, NOBODY, 0, list)
                            if st == 'on' or (st == 'strict' and not limit_line) then
                                return
                            end
                        end
                    end
                end
            end
        end
        local rest = redis.call('ZRANGE', q, from, from)
        if rest[1] then
            local e = entry(q, rest[1])
            if e then
                notify(e.ch, e.nonce)
            end
        end
    end

    -- look at the lines the waiters found unable to start left (see LEFT)
    local function drain()
        local list = LEFT.list
        LEFT.list = {}
        for _, x in ipairs(list) do
            scan(x[1], false, x[2])
        end
    end

    QUEUES = {line = line, scan = scan, standing = standing, entry = entry, asks = asks, drain = drain,
        notify = notify, res_queue = res_queue, limit_use = limit_use, is_final = is_final, unqueue = unqueue}
    return QUEUES
end

-- the lines of the names and limits whose state changed (start or tell whoever can run now)
local function scan_lines(names, lims)
    if redis.call('ZCARD', K_WAITING) == 0 then
        return
    end
    local scan = queues().scan
    for _, n in ipairs(names) do
        scan(k_queue(n), false)
    end
    for _, l in ipairs(lims or {}) do
        scan(k_limitq(l[1]), false, true)
    end
    queues().drain()
end

-- Release what job id still holds among names (nin inputs first) and the slots of limits lims;
-- owned: whether this start may release them (its holder record is the caller's, or a jobs.py
-- job stopped by id). Returns the indices of the resources it no longer held.
local function release(id, owned, names, nin, lims)
    local lost = {}
    for j, l in ipairs(lims or {}) do
        local k = k_limit(l[1])
        local held = true
        for i = 1, l[2] do
            local member = id .. '#' .. i
            -- pcall: a slots key of another type (garbage) must not keep a stop from releasing the
            -- job's names; its slots are lost then
            local score = redis.pcall('ZSCORE', k, member)
            if type(score) ~= 'string' then
                score = false
            end
            held = held and score and tonumber(score) > NOW
            if score then
                redis.call('ZREM', k, member)
            end
        end
        if not (owned and held) then
            lost[#lost + 1] = #names + j
        end
    end
    for i, n in ipairs(names) do
        if i <= nin then
            local k = k_ilock(n)
            local score = redis.call('ZSCORE', k, id)
            if not (owned and score and tonumber(score) > NOW) then
                lost[#lost + 1] = i
            end
            if score then
                redis.call('ZREM', k, id)
            end
        else
            local writer = redis.call('GET', k_olock(n))
            if not (owned and writer == id) then
                lost[#lost + 1] = i
            end
            if writer == id then
                redis.call('DEL', k_olock(n))
            end
        end
    end
    return lost
end

-- End the bookkeeping of a start of job id: it leaves jobs:running, and its holder record (if it
-- has one) keeps the outcome for record_ms, with the nonce of the call that ended it.
local function ended(id, has_record, state, by, record_ms)
    redis.call('ZREM', K_RUNNING, id)
    redis.call('DEL', k_job(id))
    if has_record then
        local k = k_holder(id)
        redis.call('HSET', k, 'state', state, 'ended_by', by)
        redis.call('PEXPIRE', k, num(record_ms))
    end
end

-- The limits and names of a script's ARGV from index first on: count limit pairs (limit, slots),
-- then the names to the end. Returns names, lims.
local function names_from(first, count)
    local lims = {}
    count = count or 0
    for j = 0, count - 1 do
        lims[#lims + 1] = {ARGV[first + 2 * j], tonumber(ARGV[first + 2 * j + 1])}
    end
    local names = {}
    for a = first + 2 * count, #ARGV do
        names[#names + 1] = ARGV[a]
    end
    return names, lims
end
