-- record_outcome: write an execution's outcome once, atomically with its status effect. Returns
-- STATUS.OK, status | STATUS.EXISTS (an outcome is already recorded) | STATUS.NOT_FOUND (no such
-- execution, or not of `acct` when `acct` is given).
-- The scheduled execution of a one-time cue decides the cue when this outcome ends it.
-- `defer` collects index removals and `cues` the run counts per cue (cue id → {n}); the caller
-- writes them with outcome_flush (one call per key / cue for a whole batch).
--!include dirty
--!include one_time
--!include work_index
--!include alert
--!include exec_index
local function record_outcome(pfx, eid, acct, outcome_json, success, state, err, now, defer, cues)
  local ek = pfx .. 'exec:' .. eid
  local e = redis.call('HMGET', ek, 'st', 'tr', 'cue', 'acct', 'tb', 'oc', 'tk', 'ag')
  if not e[1] or (acct ~= '' and e[4] ~= acct) then return STATUS.NOT_FOUND end
  if e[6] and e[6] ~= '' then return STATUS.EXISTS end
  dirty(ek)
  local st, tr = e[1], e[2]
  local terminal = {success = true, failed = true, missed = true, outcome_timeout = true}
  local c = cues[e[3]]
  if not c then
    c = {n = 0, exists = redis.call('EXISTS', pfx .. 'cue:' .. e[3]) == 1}
    cues[e[3]] = c
  end
  if not terminal[st] and (tr == 'worker' or st == 'pending_outcome') then
    if success == '1' then
      st = 'success'
      redis.call('HSET', ek, 'oc', outcome_json, 'os', state, 'ua', now, 'st', st, 'da', now, 'em', '',
        'od', '', 'lx', '')
    else
      st = 'failed'
      redis.call('HSET', ek, 'oc', outcome_json, 'os', state, 'ua', now, 'st', st, 'em', err, 'od', '',
        'lx', '')
    end
    defer_zrem(defer, pfx .. 'leases', eid)
    defer_zrem(defer, pfx .. 'deadlines', eid)
    if tr == 'worker' then  -- no longer claimable nor claimed (a late outcome is accepted too)
      work_rem(pfx, e[4], eid, e[7], e[8], defer)
      defer_zrem(defer, pfx .. 'claims', eid)
    end
    if decides_cue(pfx, e[3], e[5]) then
      set_cue_status(pfx, e[3], e[4], st == 'success' and 'completed' or 'failed')
    end
  else
    redis.call('HSET', ek, 'oc', outcome_json, 'os', state, 'ua', now)
  end
  exec_reindex(pfx, eid)
  if c.exists and tr == 'worker' then c.n = c.n + 1 end
  alert_outcome(pfx, eid, e[3], e[4], tr, success, state, now)  -- alerts (§12.4)
  return STATUS.OK, st
end

local function outcome_flush(pfx, defer, cues, now)
  defer_flush(defer)
  for cue, c in pairs(cues) do
    if c.n > 0 then
      local ck = pfx .. 'cue:' .. cue
      redis.call('HINCRBY', ck, 'rc', c.n)
      redis.call('HSET', ck, 'lr', now)
      dirty(ck)
    end
  end
end
