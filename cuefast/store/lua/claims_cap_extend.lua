--[[ claims_cap_extend: held claims whose lease was extended (heartbeat, lease renewal) keep
  their permits of the account's per-task claim caps until the new expiry (the account's slot)
  KEYS[1] waiting: hash, task → 1 while a claimer found the task's cap full (names the slot)
  ARGV[1] now: µs
  ARGV[2] prefix: "<pfx>:{a:<account>}:tcap:"
  ARGV[3] tasks: n, the number of capped task names that follow
  ARGV[4..] rest: the n capped tasks, then (execution id, lease expiry, task) triples — task: the
    claim's task when the caller knows it (a heartbeat), "" when not (the reaper's renewals)
  A claim of a known capped task gets its permit moved, or written when it has none (its claimer
    died between the claim and claims_cap_bind.lua: it held only a placeholder, which expires with
    its first lease) — a live claim stays counted; one of an unknown task only has a permit it
    holds moved (on every capped task). Never backwards.
  returns the number of permits moved or written ]]
local pfx, n = ARGV[2], tonumber(ARGV[3])
local capped = {}
for i = 4, 3 + n do capped[ARGV[i]] = true end
local out = 0
for k = 4 + n, #ARGV - 2, 3 do
  local eid, lx, task = ARGV[k], ARGV[k + 1], ARGV[k + 2]
  if task == '' then
    for i = 4, 3 + n do out = out + redis.call('ZADD', pfx .. ARGV[i], 'XX', 'GT', 'CH', lx, eid) end
  elseif capped[task] then
    out = out + redis.call('ZADD', pfx .. task, 'GT', 'CH', lx, eid)
    redis.call('PEXPIRE', pfx .. task, 86400000)
  end
end
return out
