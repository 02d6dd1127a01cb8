--[[ claims_release: a worker gives back claims whose handler never started — claimable again at
  once, the attempt not counted (execution, cue and index keys are derived from ARGV[2], the
  partition's key prefix, in the same slot)
  KEYS[1] claims: zset, execution id → lease expiry µs
  ARGV[1] now: µs
  ARGV[2] prefix: the partition's key prefix
  ARGV[3] account_id
  ARGV[4] worker_id
  ARGV[5..] execution_ids
  returns the ids released (ids not held by this worker are left alone) ]]
--!include dirty
--!include work_index
--!include exec_index
local now, pfx, acct, worker = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local released = {}
for i = 5, #ARGV do
  local eid = ARGV[i]
  local ek = pfx .. 'exec:' .. eid
  local e = redis.call('HMGET', ek, 'st', 'tr', 'acct', 'cw', 'att', 'sf', 'tk', 'ag', 'od', 'oc')
  if e[1] == 'delivering' and e[2] == 'worker' and e[3] == acct and e[4] == worker then
    local att = math.max((tonumber(e[5]) or 1) - 1, 0)
    redis.call('HSET', ek, 'st', att == 0 and 'pending' or 'retry_ready', 'att', att, 'ua', now,
      'cw', '', 'cla', '', 'lx', '', 'ls', '', 'lh', '')
    dirty(ek)
    if att == 0 then
      redis.call('HSET', ek, 'sa', '', 'la', '')
      if e[9] and e[9] ~= '' and (not e[10] or e[10] == '') then  -- armed by this first claim
        redis.call('HSET', ek, 'od', '')
        redis.call('ZREM', pfx .. 'deadlines', eid)
      end
    end
    exec_reindex(pfx, eid)
    redis.call('ZREM', KEYS[1], eid)
    work_add(pfx, acct, eid, e[6], e[7], e[8], now)
    released[#released + 1] = eid
  end
end
if #released > 0 then work_signal(pfx, acct) end
return released
