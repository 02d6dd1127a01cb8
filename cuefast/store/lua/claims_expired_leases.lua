--[[ claims_expired_leases: worker claims whose lease has expired (the reaper decides what happens to
  each; execution keys derived from ARGV[2])
  KEYS[1] claims: zset, execution id → lease expiry µs
  ARGV[1] now: µs
  ARGV[2] prefix: the partition's key prefix
  ARGV[3] batch: size
  returns 10 values per expired claim: {id, account, worker, claimed_at, last heartbeat
    ("" = none), attempts, cue id, lease expiry, triggered_by, lease µs}; entries of executions
    that are gone or no longer claimed are dropped from the zset ]]
--!include one_time
local pfx = ARGV[2]
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'WITHSCORES', 'LIMIT', 0, tonumber(ARGV[3]))
local out = {}
for i = 1, #ids, 2 do
  local eid, lx = ids[i], ids[i + 1]
  local e = redis.call('HMGET', pfx .. 'exec:' .. eid, 'st', 'tr', 'acct', 'cw', 'cla', 'lh', 'att', 'cue',
    'tb', 'ls')
  if e[1] ~= 'delivering' or e[2] ~= 'worker' then
    redis.call('ZREM', KEYS[1], eid)
  else
    local r = {eid, e[3], e[4] or '', e[5] or '', e[6] or '', e[7] or '0', e[8], lx, triggered_by(e[9]),
      e[10] or ''}
    for _, v in ipairs(r) do out[#out + 1] = v end
  end
end
return out
