--[[ claims_cap_bind: after a claim, turn its reserved permits into permits of the executions it
  claimed (each scored by its lease expiry) and give the unused ones back (the account's slot)
  KEYS[1] waiting: hash, task → 1 while a claimer found the task's cap full
  ARGV[1] now: µs
  ARGV[2] prefix: "<pfx>:{a:<account>}:tcap:"
  ARGV[3] token: the reservation claims_cap_take.lua made
  ARGV[4] tasks: n, the number of (task, reserved) pairs that follow
  ARGV[5..] rest: n (task, reserved) pairs, then a (task, execution id, lease expiry) triple per
    execution claimed
  returns 1 when an unused permit went back while a claimer waits on its task (the caller wakes
    the account's claimers), else 0 ]]
local pfx, token, n = ARGV[2], ARGV[3], tonumber(ARGV[4])
local used, at = {}, 5 + 2 * n
for i = at, #ARGV - 2, 3 do
  local task = ARGV[i]
  redis.call('ZADD', pfx .. task, ARGV[i + 2], ARGV[i + 1])
  used[task] = (used[task] or 0) + 1
end
local wake = 0
for i = 5, at - 2, 2 do
  local task, reserved = ARGV[i], tonumber(ARGV[i + 1])
  for k = 1, reserved do redis.call('ZREM', pfx .. task, token .. '|' .. k) end
  if reserved > (used[task] or 0) and redis.call('HDEL', KEYS[1], task) == 1 then wake = 1 end
end
return wake
