--[[ claims_cap_give: executions no longer held (outcome recorded, released) give their permits
  of the account's per-task claim caps back (the account's slot)
  KEYS[1] waiting: hash, task → 1 while a claimer found the task's cap full
  ARGV[1] now: µs
  ARGV[2] prefix: "<pfx>:{a:<account>}:tcap:"
  ARGV[3] tasks: n, the number of capped task names that follow
  ARGV[4..] rest: the n capped tasks, then the execution ids
  returns 1 when a permit went back while a claimer waits on its task (the caller wakes the
    account's claimers), else 0 ]]
local now, pfx, n = ARGV[1], ARGV[2], tonumber(ARGV[3])
local wake = 0
for i = 4, 3 + n do
  local key, freed = pfx .. ARGV[i], 0
  for k = 4 + n, #ARGV do freed = freed + redis.call('ZREM', key, ARGV[k]) end
  if freed == 0 and redis.call('HEXISTS', KEYS[1], ARGV[i]) == 1 then  -- an expired holder's
    freed = redis.call('ZREMRANGEBYSCORE', key, '-inf', '(' .. now)
  end
  if freed > 0 and redis.call('HDEL', KEYS[1], ARGV[i]) == 1 then wake = 1 end
end
return wake
