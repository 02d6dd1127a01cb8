--[[ claims_arm_deadlines: arm the outcome deadline of worker executions at their first claim
  (§11.5; execution keys derived from ARGV[2], the partition's key prefix)
  KEYS[1] deadlines: zset, execution id → outcome deadline µs
  ARGV[1] now: µs
  ARGV[2] prefix: the partition's key prefix
  ARGV[3..] deadlines: pairs of execution id, deadline µs
  returns the number armed (not armed: already armed, outcome recorded, or no longer claimed) ]]
--!include dirty
local pfx = ARGV[2]
local armed = 0
for i = 3, #ARGV, 2 do
  local eid, od = ARGV[i], ARGV[i + 1]
  local ek = pfx .. 'exec:' .. eid
  local e = redis.call('HMGET', ek, 'st', 'od', 'oc')
  if e[1] == 'delivering' and (not e[2] or e[2] == '') and (not e[3] or e[3] == '') then
    redis.call('HSET', ek, 'od', od)
    dirty(ek)
    redis.call('ZADD', KEYS[1], od, eid)
    armed = armed + 1
  end
end
return armed
