-- record_outcome: write an execution's outcome once, atomically with its status effect (needs
-- set_cue_status and work_index included first). Returns 1, status | -1 (an outcome is already
-- recorded) | -2 (no such execution, or not of `acct` when `acct` is given).
local function record_outcome(pfx, eid, acct, outcome_json, success, state, err, once, now)
  local ek = pfx .. 'exec:' .. eid
  local e = redis.call('HMGET', ek, 'st', 'tr', 'cue', 'acct', 'tb', 'oc', 'tk', 'ag')
  if not e[1] or (acct ~= '' and e[4] ~= acct) then return -2 end
  if e[6] and e[6] ~= '' then return -1 end
  local st, tr = e[1], e[2]
  redis.call('HSET', ek, 'oc', outcome_json, 'os', state, 'ua', now)
  local terminal = {success = true, failed = true, missed = true, outcome_timeout = true}
  local ck = pfx .. 'cue:' .. e[3]
  local cue_exists = redis.call('EXISTS', ck) == 1
  if not terminal[st] and (tr == 'worker' or st == 'pending_outcome') then
    if success == '1' then
      st = 'success'
      redis.call('HSET', ek, 'st', st, 'da', now, 'em', '', 'od', '')
    else
      st = 'failed'
      redis.call('HSET', ek, 'st', st, 'em', err, 'od', '')
    end
    redis.call('ZREM', pfx .. 'leases', eid)
    if tr == 'worker' then  -- no longer claimable nor claimed (a late outcome is accepted too)
      work_rem(pfx, e[4], eid, e[7], e[8])
      redis.call('ZREM', pfx .. 'claims', eid)
      redis.call('HSET', ek, 'lx', '')
    end
    redis.call('ZREM', pfx .. 'deadlines', eid)
    if cue_exists and once == '1' and e[5] == 'scheduled' then
      set_cue_status(pfx, e[3], e[4], st == 'success' and 'completed' or 'failed')
    end
  end
  if cue_exists and tr == 'worker' then
    redis.call('HINCRBY', ck, 'rc', 1)
    redis.call('HSET', ck, 'lr', now)
  end
  return 1, st
end
