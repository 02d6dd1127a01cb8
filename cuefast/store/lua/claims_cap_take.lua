--[[ claims_cap_take: reserve permits of the account's per-task claim caps for one claim, before
  the claim itself (the account's slot, shared by every API process; the permit zsets are
  derived from ARGV[2] in the same slot)
  KEYS[1] waiting: hash, task → 1 while a claimer found the task's cap full (a give wakes them)
  ARGV[1] now: µs
  ARGV[2] prefix: "<pfx>:{a:<account>}:tcap:" (task t's permits: zset prefix..t, member → µs it
    expires: a claim's lease expiry, so a dead claimer's permit frees itself)
  ARGV[3] token: this claim's reservation ("<token>|<i>" placeholders, bound or given back by
    claims_cap_bind.lua)
  ARGV[4] until: µs the placeholders expire (the claim's lease expiry)
  ARGV[5..] caps: (task, cap, want) triples
  returns the permits reserved per task, in ARGV order (0: its cap is full and it is marked
    waiting) ]]
local now, pfx, token, untl = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local out = {}
for i = 5, #ARGV - 2, 3 do
  local task, cap, want = ARGV[i], tonumber(ARGV[i + 1]), tonumber(ARGV[i + 2])
  local key = pfx .. task
  redis.call('ZREMRANGEBYSCORE', key, '-inf', '(' .. now)
  local free = cap - redis.call('ZCARD', key)
  local got = math.max(0, math.min(want, free))
  for n = 1, got do redis.call('ZADD', key, untl, token .. '|' .. n) end
  if got < want then redis.call('HSET', KEYS[1], task, 1) end
  if got > 0 then redis.call('PEXPIRE', key, 86400000) end
  out[#out + 1] = got
end
if #out > 0 then redis.call('PEXPIRE', KEYS[1], 86400000) end
return out
