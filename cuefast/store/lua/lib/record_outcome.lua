-- record_outcome: write an execution's outcome once, atomically with its status effect. Returns
-- STATUS.OK, status, outcome_state, created_at µs (or nil), account | STATUS.EXISTS (an outcome is
-- already recorded) | STATUS.NOT_FOUND (no such execution, or not of `acct` when `acct` is given).
-- The scheduled execution of a one-time cue decides the cue when this outcome ends it.
-- `states` (optional): verification mode → outcome_state, the state to record instead of `state`
-- when the cue's config has that mode ("none" without one, or without the cue).
-- `defer` collects index removals and dirty marks, `cues` per cue (cue id → {n = runs, exists,
-- cfg = its config JSON or false, reset = a success reset its failure streak}); the caller writes
-- them with outcome_flush (one call per key / cue for a whole batch). Every recorded outcome is
-- counted in its partition's monthly usage hash of its account and creation month,
-- `<prefix>usage:<account>:<YYYY-MM>` (``reported`` and ``succeeded`` / ``failed``; Keys.usage_part,
-- which Usage.counts adds up), written by outcome_flush: the one place outcomes are counted.
-- Redis calls for one worker outcome (bench/outcome_calls.py): one HMGET of the execution, the
-- cue's EXISTS and config GET, one HSET, the listing-index move (ZREM + HINCRBY, ZADD + HINCRBY
-- per registry), then outcome_flush: the cue's HINCRBY + HSET, the ZREMs (leases, work indexes,
-- unclaimed; deadlines and claims only when its od / cw say it is there), one SADD.
--!include dirty
--!include one_time
--!include work_index
--!include alert
--!include exec_index
--!include overlap
local RO_TERMINAL = {success = true, failed = true, missed = true, outcome_timeout = true, skipped = true,
  cancelled = true}  -- an outcome for one of these is stored as late: the status stays
-- the monthly usage counters (CONTRACT.md §13.1) live 62 days from a month's first outcome
-- (cuefast/store/usage.py USAGE_TTL_S, which tests compare)
local RO_USAGE_TTL_S = 5356800
-- this call's usage increments: hash key → {reported, succeeded, failed} (outcome_flush writes them)
local RO_USAGE = {}

-- "YYYY-MM" (UTC) of an instant in µs (days to civil date: H. Hinnant's algorithm)
local function month_of(us)
  local f = math.floor
  local z = f(us / 86400000000) + 719468
  local era = f(z / 146097)
  local doe = z - era * 146097
  local yoe = f((doe - f(doe / 1460) + f(doe / 36524) - f(doe / 146096)) / 365)
  local doy = doe - (365 * yoe + f(yoe / 4) - f(yoe / 100))
  local mp = f((5 * doy + 2) / 153)
  local m = mp < 10 and mp + 3 or mp - 9
  return string.format('%04d-%02d', yoe + era * 400 + (m <= 2 and 1 or 0), m)
end

-- the cue's stored config JSON (without the payload), read once per script (false: none)
local function ro_cfg(pfx, c, cue)
  if c.cfg == nil then c.cfg = alert_cue_config(pfx, cue) or false end
  return c.cfg
end

local function ro_mark(defer, pfx, tail)
  local k = '!' .. pfx .. 'dirty'
  local t = defer[k]
  if not t then t = {}; defer[k] = t end
  t[#t + 1] = tail
end

local function record_outcome(pfx, eid, acct, outcome_json, success, state, err, now, defer, cues, states, ixd)
  local ek = pfx .. 'exec:' .. eid
  local e = redis.call('HMGET', ek, 'st', 'tr', 'cue', 'acct', 'tb', 'oc', 'tk', 'ag', 'ca', 'cla', 'cw', 'ix',
    'vd', 'od')
  if not e[1] or (acct ~= '' and e[4] ~= acct) then return STATUS.NOT_FOUND end
  if e[6] and e[6] ~= '' then return STATUS.EXISTS end
  local st, tr, cue, eacct = e[1], e[2], e[3], e[4]
  local c = cues[cue]
  if not c then
    c = {n = 0, exists = redis.call('EXISTS', pfx .. 'cue:' .. cue) == 1}
    cues[cue] = c
  end
  if states then  -- the cue's verification mode decides the state
    local mode = 'none'
    local blob = ro_cfg(pfx, c, cue)
    if blob then
      local ok, cfg = pcall(cjson.decode, blob)
      if ok and type(cfg) == 'table' and type(cfg.verification) == 'table' then
        local m = cfg.verification.mode
        if type(m) == 'string' then mode = m end
      end
    end
    if states[mode] then state = states[mode] end
  end
  -- cuefast's verification.checks: a success waits for the dispatcher's checks (notice "v")
  local checks = false
  if success == '1' and (state == 'reported_success' or state == 'verified_success') then
    local blob = ro_cfg(pfx, c, cue)
    if blob and string.find(blob, '"checks":', 1, true) then
      state, checks = 'verification_pending', true
    end
  end
  ro_mark(defer, pfx, 'exec:' .. eid)
  local w = {'oc', outcome_json, 'os', state, 'ua', now}
  if not RO_TERMINAL[st] and (tr == 'worker' or st == 'pending_outcome') then
    st = success == '1' and 'success' or 'failed'
    w[#w + 1] = 'st'; w[#w + 1] = st
    if st == 'success' then
      w[#w + 1] = 'da'; w[#w + 1] = now; w[#w + 1] = 'em'; w[#w + 1] = ''
    else
      w[#w + 1] = 'em'; w[#w + 1] = err
    end
    w[#w + 1] = 'od'; w[#w + 1] = ''; w[#w + 1] = 'lx'; w[#w + 1] = ''
    defer_zrem(defer, pfx .. 'leases', eid)
    -- only an armed deadline (od set, the one script that clears it also removes it) is listed
    if e[14] and e[14] ~= '' then defer_zrem(defer, pfx .. 'deadlines', eid) end
    if tr == 'worker' then  -- no longer claimable nor claimed (a late outcome is accepted too)
      work_rem(pfx, eacct, eid, e[7], e[8], defer)
      -- only a claimed one (cw set by every claim, cleared only with its ZREM) is in claims
      if e[11] and e[11] ~= '' then defer_zrem(defer, pfx .. 'claims', eid) end
    end
  end
  -- the listing cells (exec_reindex, with the fields already read: tb, cla and cw do not change)
  local new = ix_of(st, state, e[5], e[10], e[11])
  if ix_move(pfx, eid, eacct, cue, e[9], e[10], e[12] or '', new, ixd) then
    w[#w + 1] = 'ix'; w[#w + 1] = new
  end
  local verdict = not e[13]  -- the first verdict (alert_verdict's HSETNX, folded into this HSET)
  if verdict then w[#w + 1] = 'vd'; w[#w + 1] = '1' end
  redis.call('HSET', ek, unpack(w))
  if st ~= e[1] and decides_cue(pfx, cue, e[5]) then
    set_cue_status(pfx, cue, eacct, st == 'success' and 'completed' or 'failed')
  end
  -- buffer_one: release the waiting one (a cue found with none waiting is not asked again: only
  -- the scheduler makes one wait)
  if st ~= e[1] and c.exists and not c.idle then c.idle = ov_settled(pfx, cue, now) end
  if c.exists and tr == 'worker' then c.n = c.n + 1 end
  if verdict and ro_cfg(pfx, c, cue) then  -- alerts (§12.4): alert_verdict
    c.marked = true
    if success == '1' then
      c.reset = true  -- written by outcome_flush with the cue's other fields
    else
      local ck = pfx .. 'cue:' .. cue
      if c.reset then  -- a success earlier in this batch: its reset first
        redis.call('HSET', ck, 'fs', 0, 'fsa', '')
        c.reset = nil
      end
      alert_streak(pfx, eid, cue, eacct, c.cfg, now)
    end
  end
  if state == 'verification_failed' then alert_verification_failed(pfx, eid, cue, eacct, tr, now) end
  if checks then redis.call('XADD', pfx .. 'notices', '*', 'k', 'v', 'i', eid, 'n', '1') end
  if eacct then  -- usage (§13.1), by the execution's creation month (without one: now's)
    local uk = pfx .. 'usage:' .. eacct .. ':' .. month_of(tonumber(e[9]) or tonumber(now))
    local u = RO_USAGE[uk]
    if not u then u = {0, 0, 0}; RO_USAGE[uk] = u end
    u[1] = u[1] + 1
    if success == '1' then u[2] = u[2] + 1 else u[3] = u[3] + 1 end
  end
  return STATUS.OK, st, state, e[9], eacct
end

local function outcome_flush(pfx, defer, cues, now, ixd)
  if ixd then ix_flush(ixd) end
  for cue, c in pairs(cues) do
    local ck = pfx .. 'cue:' .. cue
    if c.n > 0 then
      redis.call('HINCRBY', ck, 'rc', c.n)
      if c.reset then
        redis.call('HSET', ck, 'lr', now, 'fs', 0, 'fsa', '')
      else
        redis.call('HSET', ck, 'lr', now)
      end
    elseif c.reset then
      redis.call('HSET', ck, 'fs', 0, 'fsa', '')
    end
    if c.n > 0 or c.marked then ro_mark(defer, pfx, 'cue:' .. cue) end
  end
  -- the partition's usage hashes: only record_outcome writes them, every `reported` with one of
  -- the other fields, so the increment that creates a hash (`reported` == its n) sets its TTL
  for uk, u in pairs(RO_USAGE) do
    if redis.call('HINCRBY', uk, 'reported', u[1]) == u[1] then redis.call('EXPIRE', uk, RO_USAGE_TTL_S) end
    if u[2] > 0 then redis.call('HINCRBY', uk, 'succeeded', u[2]) end
    if u[3] > 0 then redis.call('HINCRBY', uk, 'failed', u[3]) end
  end
  RO_USAGE = {}
  defer_flush(defer)
end

-- a call's start (scripts.load_function): no usage increments yet
local function record_outcome_reset()
  RO_USAGE = {}
end
