--[[ delivery_host_give: attempts' requests to their callback host are over: give their permits
  of the (account, host) concurrency cap back and reserve the room for the oldest waiters (the
  account's slot; one call for a batch's attempts to this host)
  KEYS[1] permits: zset, execution id → µs its permit expires
  KEYS[2] waiting: list, "<partition>|<execution id>", oldest first
  ARGV[1] now: µs
  ARGV[2] grant_until: µs a permit reserved for a waiter expires (if its attempt never comes)
  ARGV[3..] attempts: 2 values per attempt: its cue's max_concurrency_per_host, execution id
  returns the waiters given a reserved permit ("<partition>|<id>"), for the caller to move to
    their outbox ]]
local now, grant = ARGV[1], ARGV[2]
local cap = 0
for i = 3, #ARGV, 2 do
  redis.call('ZREM', KEYS[1], ARGV[i + 1])
  cap = math.max(cap, tonumber(ARGV[i]))  -- the room: the largest cap among the givers
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. now)
local out = {}
while redis.call('ZCARD', KEYS[1]) < cap do
  local w = redis.call('LPOP', KEYS[2])
  if not w then break end
  local wid = string.match(w, '|(.*)$')
  if not redis.call('ZSCORE', KEYS[1], wid) then
    redis.call('ZADD', KEYS[1], grant, wid)
    out[#out + 1] = w
  end
end
return out
