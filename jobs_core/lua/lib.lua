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
local NOWS = string.format('%.6f', NOW)

local function k_out(n) return PREFIX .. n end
local function k_olock(n) return PREFIX .. 'olock:' .. n end
local function k_ilock(n) return PREFIX .. 'ilock:' .. n end
local function k_facts(n) return PREFIX .. 'jobs:output:' .. n end
local function k_queue(n) return PREFIX .. 'jobs:queue:' .. n end
local function k_job(id) return PREFIX .. 'jobs:running:' .. id end
local function k_holder(id) return PREFIX .. 'jobs:holder:' .. id end
local function k_idqueue(id) return PREFIX .. 'jobs:idqueue:' .. id end
local function k_waiter(nonce) return PREFIX .. 'jobs:waiting:' .. nonce end
local K_RUNNING = KEYS[1]
local K_TOKEN = PREFIX .. 'jobs:token'
local K_WAITING = PREFIX .. 'jobs:waiting'
local K_GRAPH_IN = PREFIX .. 'jobs:graph:input'
local K_GRAPH_OUT = PREFIX .. 'jobs:graph:output'
local K_WAKE = PREFIX .. 'jobs:wake'

-- what a script publishes, sent at its end (flush): per coordinator channel, lines for its
-- waiting jobs; on the namespace channel, the names whose state changed
local OUTBOX = {channels = {}, order = {}, names = {}, publish = 'PUBLISH'}

local function notify(ch, line)
    if not ch or ch == '' then
        return
    end
    local lines = OUTBOX.channels[ch]
    if not lines then
        lines = {}
        OUTBOX.channels[ch] = lines
        OUTBOX.order[#OUTBOX.order + 1] = ch
    end
    lines[#lines + 1] = line
end

local function flush()
    -- pcall: a user allowed the keys but not the channels still works (its waits poll)
    for _, ch in ipairs(OUTBOX.order) do
        redis.pcall(OUTBOX.publish, K_WAKE .. ':' .. ch, table.concat(OUTBOX.channels[ch], '\n'))
    end
    if #OUTBOX.names > 0 then
        redis.pcall(OUTBOX.publish, K_WAKE, cjson.encode(OUTBOX.names))
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
-- ticket (server time it began to wait, 0: a newcomer), deadline, since.

local function reads(r, i)
    return i <= r.nin
end

-- index of name n in request r, or nil
local function index_of(r, n)
    for i, m in ipairs(r.names) do
        if m == n then
            return i
        end
    end
    return nil
end

local function add(list, reason, i, holder, expiry)
    list[#list + 1] = {reason, i, holder or '', expiry}
end

-- The conflicts of request r with the locks and outputs as they are now (not the lines):
-- appended to list as {reason, name index, holder, expiry}; index 0 is the job id itself.
local function conflicts(r, list)
    if r.id ~= '' then
        local running = redis.call('HMGET', k_holder(r.id), 'state', 'nonce')
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
end

-- a holder that started ahead of an earlier waiter (see the README, "Waiting, in order")
local function is_passer(holder)
    return holder ~= '' and redis.call('HGET', k_holder(holder), 'passer') == '1'
end

-- The waiter a line entry stands for, or nil if it is gone (not alive, or no readable
-- record): dropped from the line then.
local function entry(queue, member)
    local alive = tonumber(redis.call('ZSCORE', K_WAITING, member))
    if alive and alive > NOW then
        local raw = redis.call('GET', k_waiter(member))
        if raw then
            local ok, e = pcall(cjson.decode, raw)
            if ok and type(e) == 'table' and type(e.names) == 'table' and tonumber(e.nin) then
                e.alive = alive
                return e
            end
        end
    end
    redis.call('ZREM', queue, member)
    return nil
end

-- whether waiter e is behind another waiter's place at the head of one of its lines,
-- other than name n's (it cannot run before that one)
local function behind(e, n)
    for i, m in ipairs(e.names) do
        if m ~= n then
            local q = k_queue(m)
            local head = redis.call('ZRANGE', q, 0, 0)
            while head[1] and head[1] ~= e.nonce do
                local h = entry(q, head[1])
                if h then
                    local hi = index_of(h, m)
                    if not (hi and reads(h, hi) and reads(e, i)) then
                        return true
                    end
                    break
                end
                head = redis.call('ZRANGE', q, 0, 0)
            end
        end
    end
    return false
end

-- How waiter e stands on name n, for a start behind it in n's line that needs n too:
-- 'on': blocked on n itself; 'final': it will leave (an existing output, overwrite off);
-- 'passable': it cannot run for another reason that no passer caused, so it may be passed;
-- 'strict': it can run once n is free, or waits only for passers to leave: it keeps its turn.
local function standing(e, n)
    local list = {}
    conflicts(e, list)
    local elsewhere = false
    for _, b in ipairs(list) do
        if b[1] == 'output_exists' then
            return 'final'
        end
        if b[2] > 0 and e.names[b[2]] == n then
            return 'on'
        end
        if b[3] == '' or b[1] == 'job_running' or not is_passer(b[3]) then
            elsewhere = true
        end
    end
    if elsewhere or (#list == 0 and behind(e, n)) then
        return 'passable'
    end
    return 'strict'
end

-- The place of request r in name i's line: nil if no live waiter ahead of it keeps n from
-- it, else that waiter. Entries ahead that it may pass set r.passed.
local function line(r, i)
    local n = r.names[i]
    local q = k_queue(n)
    local members = redis.call('ZRANGE', q, 0, SCAN_MAX - 1, 'WITHSCORES')
    for j = 1, #members, 2 do
        local member, ticket = members[j], tonumber(members[j + 1])
        if member == r.nonce or (r.ticket > 0 and (ticket > r.ticket or (ticket == r.ticket and member > r.nonce)))
        then
            return nil
        end
        local e = entry(q, member)
        if e then
            local ei = index_of(e, n)
            if not (ei and reads(e, ei) and reads(r, i)) then
                local st = standing(e, n)
                if st == 'passable' or st == 'final' then
                    r.passed = true
                else
                    return e
                end
            end
        end
    end
    if #members == 2 * SCAN_MAX then
        -- more waiters than are looked at: keep behind the last one seen
        local e = entry(q, members[#members - 1])
        if e and e.nonce ~= r.nonce then
            return e
        end
    end
    return nil
end

-- Everything that keeps request r from starting now: its conflicts, then for each name
-- free of conflicts the waiter ahead of it in that name's line. Returns the list.
local function blockers(r)
    local list = {}
    conflicts(r, list)
    if redis.call('ZCARD', K_WAITING) == 0 then
        return list
    end
    local busy = {}
    for _, b in ipairs(list) do
        if b[2] > 0 then
            busy[r.names[b[2]]] = true
        end
    end
    for i = 1, #r.names do
        if not busy[r.names[i]] then
            local e = line(r, i)
            if e then
                add(list, reads(r, i) and 'input_queued' or 'output_queued', i, e.id, e.alive)
            end
        end
    end
    return list
end

local function is_final(list)
    for _, b in ipairs(list) do
        if b[1] == 'output_exists' then
            return true
        end
    end
    return false
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

-- Drop request r's waiting record and its places in every line.
local function unqueue(r)
    redis.call('ZREM', K_WAITING, r.nonce)
    redis.call('DEL', k_waiter(r.nonce))
    for _, n in ipairs(r.names) do
        redis.call('ZREM', k_queue(n), r.nonce)
    end
    if r.id ~= '' then
        redis.call('ZREM', k_idqueue(r.id), r.nonce)
    end
end

-- Take every lock of request r (its blockers were just found empty) for lease_ms; returns the
-- fencing token. Its waiting record and places, if any, go.
local function take(r, lease_ms)
    local expiry = NOW + lease_ms / 1000
    local token = redis.call('INCR', K_TOKEN)
    local io = {}
    for i, n in ipairs(r.names) do
        if reads(r, i) then
            local k = k_ilock(n)
            redis.call('ZADD', k, expiry, r.id)
            if redis.call('PTTL', k) < lease_ms then
                redis.call('PEXPIRE', k, lease_ms)
            end
            io[#io + 1] = n
        end
    end
    io[#io + 1] = ''
    for i, n in ipairs(r.names) do
        if not reads(r, i) then
            redis.call('SET', k_olock(n), r.id, 'PX', lease_ms)
            io[#io + 1] = n
        end
    end
    redis.call('ZREMRANGEBYSCORE', K_RUNNING, '-inf', NOW)
    redis.call('ZADD', K_RUNNING, expiry, r.id)
    redis.call('SET', k_job(r.id), cjson.encode(io), 'PX', lease_ms + RECORD_SLACK_MS)
    redis.call('HSET', k_holder(r.id), 'token', token, 'nonce', r.nonce, 'host', r.host, 'pid', r.pid,
        'started', NOWS, 'lease', lease_ms, 'ttl', r.ttl, 'state', 'running', 'passer', r.passed and '1' or '0')
    redis.call('PEXPIRE', k_holder(r.id), lease_ms)
    if r.lin ~= '' then
        local edges = {}
        for i = 1, r.nin do
            edges[#edges + 1] = fold(r.names[i]) .. ' -> ' .. r.lin
        end
        if #edges > 0 then
            zadd_all(K_GRAPH_IN, edges)
        end
        edges = {}
        for i = r.nin + 1, #r.names do
            edges[#edges + 1] = r.lin .. ' -> ' .. fold(r.names[i])
        end
        if #edges > 0 then
            zadd_all(K_GRAPH_OUT, edges)
        end
    end
    if r.ticket > 0 then
        unqueue(r)
    end
    return token
end

-- The lease a grant gives waiter e: its own, but for a job that renews no longer than it has
-- left to live as a waiter (a waiter that died gets nothing it would keep for long).
local function grant_lease(e)
    local lease = tonumber(e.lease)
    if tonumber(e.renews) == 1 then
        lease = math.max(1, math.min(lease, math.floor((e.alive - NOW) * 1000)))
    end
    return lease
end

-- After the state of name n changed (released, written, a waiter left): start, for them, the
-- waiters of n's line that can run now, in line order, and tell them. Stops at the first that
-- keeps its turn; one that waits in vain (an existing output) is told to look (it then leaves).
local function scan(q, n)
    local members = redis.call('ZRANGE', q, 0, SCAN_MAX - 1)
    for _, member in ipairs(members) do
        local e = entry(q, member)
        if e then
            e.ticket = tonumber(e.ticket) or 0
            e.passed = false
            local list = blockers(e)
            if #list == 0 then
                local lease = grant_lease(e)
                local token = take(e, lease)
                notify(e.ch, e.nonce .. '\t' .. token .. '\t' .. lease)
            elseif is_final(list) then
                unqueue(e)
                notify(e.ch, e.nonce)
            elseif n == nil then
                return  -- the line of a job id: only its first may run
            else
                local st = standing(e, n)
                if st == 'on' or st == 'strict' then
                    return
                end
            end
        end
    end
    if #members == SCAN_MAX then
        -- more waiters than are looked at in one call: the next one looks for itself
        local rest = redis.call('ZRANGE', q, SCAN_MAX, SCAN_MAX)
        if rest[1] then
            local e = entry(q, rest[1])
            if e then
                notify(e.ch, e.nonce)
            end
        end
    end
end

local function scan_names(names)
    if redis.call('ZCARD', K_WAITING) == 0 then
        return
    end
    for _, n in ipairs(names) do
        scan(k_queue(n), n)
    end
end

-- Release what job id still holds among names (nin inputs first); owned: whether this start
-- may release them (its holder record is the caller's, or a jobs.py job stopped by id).
-- Returns the indices of the names it no longer held.
local function release(id, owned, names, nin)
    local lost = {}
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
        redis.call('HSET', k_holder(id), 'state', state, 'ended_by', by)
        redis.call('PEXPIRE', k_holder(id), record_ms)
    end
end

-- the names of a script's ARGV from index first on
local function names_from(first)
    local names = {}
    for a = first, #ARGV do
        names[#names + 1] = ARGV[a]
    end
    return names
end
