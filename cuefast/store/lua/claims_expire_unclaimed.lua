--[[ claims_expire_unclaimed: claimable worker executions nobody claimed within the window → missed
  (execution, cue and index keys are derived from ARGV[2], the partition's key prefix, in the
  same slot)
  KEYS[1] unclaimed: zset, execution id → when it became claimable µs
  ARGV[1] now: µs
  ARGV[2] prefix: the partition's key prefix
  ARGV[3] cutoff: µs (now − window: claimable before it = missed)
  ARGV[4] batch: size
  returns {number of entries taken, then 4 values per missed execution: id, cue id, account,
    attempts} ]]
--!include dirty
--!include set_cue_status
--!include one_time
--!include work_index
--!include alert
--!include exec_index
--!include overlap
local now, pfx = ARGV[1], ARGV[2]
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[3], 'LIMIT', 0, tonumber(ARGV[4]))
local out = {#ids}
for _, eid in ipairs(ids) do
  redis.call('ZREM', KEYS[1], eid)
  local ek = pfx .. 'exec:' .. eid
  local e = redis.call('HMGET', ek, 'st', 'tr', 'acct', 'cue', 'tb', 'tk', 'ag', 'att')
  if e[2] == 'worker' and (e[1] == 'pending' or e[1] == 'retry_ready') then
    redis.call('HSET', ek, 'st', 'missed', 'ua', now,
      'em', 'No worker claimed this execution within timeout window')
    dirty(ek)
    exec_reindex(pfx, eid)
    work_rem(pfx, e[3], eid, e[6], e[7])
    alert_final_failure(pfx, eid, e[4], e[3], now)  -- streak, on_failure pause and notices (§12)
    local ck = pfx .. 'cue:' .. e[4]
    if redis.call('EXISTS', ck) == 1 then
      redis.call('HSET', ck, 'lr', now)
      dirty(ck)
      if decides_cue(pfx, e[4], e[5]) then set_cue_status(pfx, e[4], e[3], 'failed') end
      ov_settled(pfx, e[4], now)  -- buffer_one: release the execution waiting behind it
    end
    for _, v in ipairs({eid, e[4], e[3], e[8] or '0'}) do out[#out + 1] = v end
  end
end
return out
