--[[ executions_reindex: put executions of one partition into the listing indexes their fields call
  for (lua/lib/exec_index.lua) — the upgrade of data written before the indexes existed, and
  seeding in tests; an execution already where it belongs is left alone
  KEYS[1] registry: a slot-mate (any registry of the partition; not read)
  ARGV[1] prefix: the partition's key prefix "<pfx>:{pNN}:"
  ARGV[2..] execution_ids
  returns the number of executions that exist ]]
--!include exec_index
local pfx, n = ARGV[1], 0
for i = 2, #ARGV do
  if redis.call('EXISTS', pfx .. 'exec:' .. ARGV[i]) == 1 then
    exec_reindex(pfx, ARGV[i])
    n = n + 1
  end
end
return n
