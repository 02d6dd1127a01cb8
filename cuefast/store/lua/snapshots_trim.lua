--[[ snapshots_trim: remove finished executions that PostgreSQL already holds (retention, the Redis
  half)
  KEYS[1] dirty: the partition's dirty set
  KEYS[2] processing: the partition's processing set
  KEYS[3] handoff: the partition's trim hand-off set
  ARGV[1] prefix: the partition's key prefix "<pfx>:{pNN}:"
  ARGV[2..] executions: 3 values per execution: id, PostgreSQL's updated µs, PostgreSQL's status
  An execution is removed — its hash and every index it can be in, as executions_purge_cue.lua
  — only when its hash still has the snapshotted version (ua, or ca when never updated) and
  status, that status is final, and it is neither dirty nor being snapshotted. One that changed
  is marked dirty (so the next snapshot catches up) and kept. Every removed (or already gone) id
  is added to the hand-off set in the same step: it has left Redis, and until the snapshotter
  has marked its row history in PostgreSQL (in_redis = false; then it leaves the set) listings
  read its row through the set, so it is listed and counted once whichever half a crash
  interrupts.
  returns {removed or already gone ids…, "|", kept ids…} ]]
--!include work_index
--!include exec_index
local pfx = ARGV[1]
local final = {success = true, failed = true, missed = true, outcome_timeout = true, skipped = true,
  cancelled = true}
local gone, kept = {}, {}
for i = 2, #ARGV, 3 do
  local eid, ua, st = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local ek = pfx .. 'exec:' .. eid
  local e = redis.call('HMGET', ek, 'st', 'ua', 'ca', 'cue', 'acct', 'tr', 'tk', 'ag')
  local member = 'exec:' .. eid
  if not e[1] then
    gone[#gone + 1] = eid
  elseif e[1] ~= st or not final[st] or ((e[2] ~= false and e[2] ~= '') and e[2] or e[3]) ~= ua
      or redis.call('SISMEMBER', KEYS[1], member) == 1 or redis.call('SISMEMBER', KEYS[2], member) == 1 then
    if redis.call('SISMEMBER', KEYS[2], member) == 0 then redis.call('SADD', KEYS[1], member) end
    kept[#kept + 1] = eid
  else
    local acct = e[5]
    if e[6] == 'worker' then
      work_rem(pfx, acct, eid, e[7], e[8])
      redis.call('ZREM', pfx .. 'claims', eid)
    end
    exec_unindex(pfx, eid)
    for _, k in ipairs({pfx .. 'leases',
        pfx .. 'retry', pfx .. 'delayed', pfx .. 'deadlines'}) do
      redis.call('ZREM', k, eid)
    end
    redis.call('DEL', ek)
    gone[#gone + 1] = eid
  end
end
for i = 1, #gone, 1000 do redis.call('SADD', KEYS[3], unpack(gone, i, math.min(i + 999, #gone))) end
gone[#gone + 1] = '|'
for _, eid in ipairs(kept) do gone[#gone + 1] = eid end
return gone
