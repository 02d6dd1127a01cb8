--[[ claims_cap_extend: held claims whose lease was extended (heartbeat, lease renewal) keep
  their permits of the account's per-task claim caps until the new expiry (the account's slot)
  KEYS[1] waiting: hash, task → 1 while a claimer found the task's cap full (names the slot)
  ARGV[1] now: µs
  ARGV[2] prefix: "<pfx>:{a:<account>}:tcap:"
  ARGV[3] tasks: n, the number of capped task names that follow
  ARGV[4..] rest: the n capped tasks, then (execution id, lease expiry) pairs
  returns the number of permits extended ]]
local pfx, n = ARGV[2], tonumber(ARGV[3])
local out = 0
for i = 4, 3 + n do
  local key = pfx .. ARGV[i]
  for k = 4 + n, #ARGV - 1, 2 do out = out + redis.call('ZADD', key, 'XX', 'GT', 'CH', ARGV[k + 1], ARGV[k]) end
end
return out
