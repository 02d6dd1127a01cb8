--[[ claims_reap_leases: apply the reaper's decision to expired worker claims, each only if the claim
  is still the one that was judged (same status and lease expiry; execution, cue and index keys
  are derived from ARGV[2], same slot)
  KEYS[1] claims: zset, execution id → lease expiry µs
  ARGV[1] now: µs
  ARGV[2] prefix: the partition's key prefix
  ARGV[3..] decisions: 3 values per claim: execution id, the lease expiry µs that was judged,
    and the decision: "renew:<new expiry µs>" (its worker is alive) | "reoffer" (attempts left)
    | "fail" (attempts exhausted)
  returns the resulting status per claim ("" = changed meanwhile, left alone) ]]
--!include dirty
--!include set_cue_status
--!include one_time
--!include work_index
--!include exec_index
--!include overlap
--!include alert
local now, pfx = ARGV[1], ARGV[2]
local out = {}
for i = 3, #ARGV, 3 do
  local eid, judged, decision = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local ek = pfx .. 'exec:' .. eid
  local e = redis.call('HMGET', ek, 'st', 'tr', 'acct', 'sf', 'tk', 'ag', 'cue', 'tb')
  local lx = redis.call('ZSCORE', KEYS[1], eid)
  local res = ''
  if e[1] == 'delivering' and e[2] == 'worker' and lx and tonumber(lx) == tonumber(judged) then
    local acct = e[3]
    dirty(ek)
    if string.sub(decision, 1, 6) == 'renew:' then
      local new_lx = string.sub(decision, 7)
      redis.call('HSET', ek, 'lx', new_lx)
      redis.call('ZADD', KEYS[1], new_lx, eid)
      res = 'delivering'
    else
      redis.call('ZREM', KEYS[1], eid)
      if decision == 'reoffer' then
        res = 'retry_ready'
        redis.call('HSET', ek, 'st', res, 'ua', now, 'cw', '', 'cla', '', 'lx', '', 'ls', '', 'lh', '',
          'em', 'Worker lease expired; execution re-offered')
        exec_reindex(pfx, eid)
        work_add(pfx, acct, eid, e[4], e[5], e[6], now)
        work_signal(pfx, acct)
      else
        res = 'failed'
        redis.call('HSET', ek, 'st', res, 'ua', now, 'lx', '',
          'em', 'Worker lease expired; max attempts exhausted')
        exec_reindex(pfx, eid)
        alert_final_failure(pfx, eid, e[7], acct, now)  -- streak, on_failure pause and notices (§12)
        local ck = pfx .. 'cue:' .. e[7]
        if redis.call('EXISTS', ck) == 1 then
          redis.call('HSET', ck, 'lr', now)
          dirty(ck)
          if decides_cue(pfx, e[7], e[8]) then set_cue_status(pfx, e[7], acct, 'failed') end
          ov_settled(pfx, e[7], now)  -- buffer_one: release the execution waiting behind it
        end
      end
    end
  end
  out[#out + 1] = res
end
return out
