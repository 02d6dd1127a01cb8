--[[ executions_purge_cue: remove up to a batch of a deleted cue's executions (call until it returns
  less than the batch)
  KEYS[1] registry: the cue's listing index registry (lua/lib/exec_index.lua)
  KEYS[2] leases: zset
  KEYS[3] retries: zset
  KEYS[4] delayed: zset
  KEYS[5] work: the account's work zset
  ARGV[1] prefix: the partition's key prefix "<pfx>:{pNN}:"
  ARGV[2] batch: size
  returns {the number removed, the ids of those that were claimed (worker executions held under a
    lease: the caller gives their task cap permits back)…} (queued outbox entries of removed
    executions are dropped by the dispatcher when it finds them gone) ]]
--!include dirty
--!include work_index
--!include exec_index
local batch = tonumber(ARGV[2])
local n = 0
local claimed = {}
for _, cell in ipairs(redis.call('HKEYS', KEYS[1])) do
  -- ('#<cell>' fields are claimed counts: their zset name is no key, so they list nothing)
  for _, m in ipairs(redis.call('ZRANGE', KEYS[1] .. '|z|' .. cell, 0, batch - n - 1)) do
    local eid = ix_id(m)
    local ek = ARGV[1] .. 'exec:' .. eid
    local e = redis.call('HMGET', ek, 'tr', 'acct', 'tk', 'ag', 'ix')
    if e[1] == 'worker' then  -- the worker transport's indexes (claimable, claims)
      work_rem(ARGV[1], e[2], eid, e[3], e[4])
      if redis.call('ZREM', ARGV[1] .. 'claims', eid) == 1 then claimed[#claimed + 1] = eid end
    end
    if e[5] then
      exec_unindex(ARGV[1], eid)
    else  -- a stray entry: its hash is gone
      ix_take(KEYS[1], KEYS[1] .. '|z|' .. cell, cell, m, eid)
    end
    redis.call('DEL', ek)
    dirty(ek)
    for k = 2, 5 do redis.call('ZREM', KEYS[k], eid) end
    n = n + 1
  end
  if n >= batch then break end
end
return {n, unpack(claimed)}
