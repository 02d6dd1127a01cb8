-- cue_cap: a cue's delivery.max_concurrency (issue 17), kept in the cue's partition slot
-- (docs/DESIGN.md "Concurrency caps"). `<pfx>cap:<cue>` is a zset of the executions holding a
-- permit (execution id → µs after which a holder is checked: its lease expiry once started, the
-- grant time + CAP_GRANT_US before); `<pfx>capq:<cue>` is the FIFO list of executions waiting
-- for one (still pending / retry_ready, with no outbox entry). The execution's `cp` field says
-- which: '1' holds a permit, 'w' waits. A permit is given back by delivery_finish (the attempt
-- is recorded); a hand-back (delivery_release) keeps it for the re-queued attempt.
local CAP_GRANT_US = 60000000
local CAP_PRUNE = 16  -- holders checked per call while the cap is full (bounded work)

-- the cap in the stored config JSON (nil: none); like timeout_of in delivery_start, only the
-- key itself can match '"delivery":{' (a JSON string cannot hold it unescaped)
local function cap_of(cfg)
  local d = string.find(cfg, '"delivery":{', 1, true)
  if not d then return nil end
  return tonumber(string.match(cfg, '^"delivery":{[^}]-"max_concurrency":(%d+)', d))
end

-- drop holders that can no longer use their permit (the execution is gone, ended, or no longer
-- marked as holding one): a leak — a crash between a grant and its delivery of an execution that
-- was then deleted — frees itself here. A holder delivering under an expired lease is kept: the
-- stale recovery (XAUTOCLAIM) re-sends it under the same permit.
local function cap_prune(pfx, cue, now)
  local ck = pfx .. 'cap:' .. cue
  local old = redis.call('ZRANGEBYSCORE', ck, '-inf', string.format('%.0f', tonumber(now)), 'LIMIT', 0, CAP_PRUNE)
  for _, eid in ipairs(old) do
    local e = redis.call('HMGET', pfx .. 'exec:' .. eid, 'st', 'cp')
    local st = e[1]
    if e[2] ~= '1' or not (st == 'delivering' or st == 'pending' or st == 'retry_ready') then
      redis.call('ZREM', ck, eid)
    end
  end
end

-- grant permits to the waiting executions, oldest first, while the cap `n` (nil: none) has room:
-- each gets the permit and a fresh outbox entry (no polling: a freed permit is the wake-up)
local function cap_wake(pfx, cue, n, now)
  local ck, qk = pfx .. 'cap:' .. cue, pfx .. 'capq:' .. cue
  if redis.call('LLEN', qk) == 0 then return end
  if n and redis.call('ZCARD', ck) >= n then cap_prune(pfx, cue, now) end
  while not n or redis.call('ZCARD', ck) < n do
    local eid = redis.call('LPOP', qk)
    if not eid then break end
    local ek = pfx .. 'exec:' .. eid
    local e = redis.call('HMGET', ek, 'st', 'cp')
    if e[2] == 'w' and (e[1] == 'pending' or e[1] == 'retry_ready') then
      redis.call('HSET', ek, 'cp', '1')
      redis.call('ZADD', ck, string.format('%.0f', tonumber(now) + CAP_GRANT_US), eid)
      redis.call('XADD', pfx .. 'outbox', '*', 'e', eid)
    end
  end
end

local function cap_wait(pfx, cue, eid)
  redis.call('RPUSH', pfx .. 'capq:' .. cue, eid)
  redis.call('HSET', pfx .. 'exec:' .. eid, 'cp', 'w')
  return false
end

-- may `eid` (about to be leased, holding no permit: its `cp` field is `cp`) start under the cap
-- `n`? true: a permit is free and no one waits for it — the caller takes it (ZADD to the cap's
-- zset with its lease, `cp` = '1' with its other fields); false: it joined the waiting list (or
-- was on it already). Waiters go first: a raised cap lets them through before `eid` is judged.
local function cap_admit(pfx, cue, eid, n, now, cp)
  if cp == 'w' then  -- a second entry of a waiter: not listed twice, but a permit freed
    cap_wake(pfx, cue, n, now)  -- meanwhile is handed out
    return false
  end
  local ck, qk = pfx .. 'cap:' .. cue, pfx .. 'capq:' .. cue
  if redis.call('LLEN', qk) > 0 then
    cap_wake(pfx, cue, n, now)
    if redis.call('LLEN', qk) > 0 then return cap_wait(pfx, cue, eid) end
  end
  if redis.call('ZCARD', ck) >= n then
    cap_prune(pfx, cue, now)
    if redis.call('ZCARD', ck) >= n then return cap_wait(pfx, cue, eid) end
  end
  return true
end

-- the attempt of `eid` ended (recorded): give its permit back and wake the waiters the cue's
-- current cap (read from its config; none or a gone cue: all of them) lets through
local function cap_release(pfx, cue, eid, now)
  redis.call('ZREM', pfx .. 'cap:' .. cue, eid)
  redis.call('HDEL', pfx .. 'exec:' .. eid, 'cp')
  if redis.call('LLEN', pfx .. 'capq:' .. cue) == 0 then return end
  local cfg = redis.call('GET', pfx .. 'cue:' .. cue .. ':cfg')
  local n = nil
  if cfg then n = cap_of(cfg) end
  cap_wake(pfx, cue, n, now)
end
