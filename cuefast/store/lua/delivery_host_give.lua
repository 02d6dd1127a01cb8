--[[ delivery_host_give: an attempt's request to its callback host is over: give its permit of
  the (account, host) concurrency cap back and reserve the room for the oldest waiters (the
  account's slot)
  KEYS[1] permits: zset, execution id → µs its permit expires
  KEYS[2] waiting: list, "<partition>|<execution id>", oldest first
  ARGV[1] now: µs
  ARGV[2] cap: the giving attempt's cue's max_concurrency_per_host
  ARGV[3] execution_id
  ARGV[4] grant_until: µs a permit reserved for a waiter expires (if its attempt never comes)
  returns the waiters given a reserved permit ("<partition>|<id>"), for the caller to move to
    their outbox ]]
local now, cap, eid, grant = ARGV[1], tonumber(ARGV[2]), ARGV[3], ARGV[4]
redis.call('ZREM', KEYS[1], eid)
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
