--[[ executions_purge_cue: remove up to a batch of a deleted cue's executions (call until it returns
  less than the batch)
  KEYS[1] cue_executions: zset, the cue's executions
  KEYS[2] leases: zset
  KEYS[3] retries: zset
  KEYS[4] delayed: zset
  KEYS[5] work: the account's work zset
  ARGV[1] prefix: the partition's key prefix "<pfx>:{pNN}:"
  ARGV[2] batch: size
  returns the number removed (queued outbox entries of removed executions are dropped by the
    dispatcher when it finds them gone) ]]
--!include dirty
--!include work_index
--!include exec_index
local ids = redis.call('ZRANGE', KEYS[1], 0, tonumber(ARGV[2]) - 1)
for _, eid in ipairs(ids) do
  local ek = ARGV[1] .. 'exec:' .. eid
  local e = redis.call('HMGET', ek, 'tr', 'acct', 'tk', 'ag')
  if e[1] == 'worker' then  -- the worker transport's indexes (claimable, claims)
    work_rem(ARGV[1], e[2], eid, e[3], e[4])
    redis.call('ZREM', ARGV[1] .. 'claims', eid)
  end
  exec_unindex(ARGV[1], eid)
  redis.call('DEL', ek)
  dirty(ek)
  redis.call('ZREM', KEYS[1], eid)
  for k = 2, 5 do redis.call('ZREM', KEYS[k], eid) end
end
return #ids
