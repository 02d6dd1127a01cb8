--[[ delivery_host_take: a permit of an (account, callback host) concurrency cap for an attempt
  about to be sent (delivery.max_concurrency_per_host; the account's slot, shared by every
  dispatcher)
  KEYS[1] permits: zset, execution id → µs its permit expires (the attempt's lease: a holder
    that died frees it then)
  KEYS[2] waiting: list, "<partition>|<execution id>" of refused attempts, oldest first
  ARGV[1] now: µs
  ARGV[2] cap: the attempt's cue's max_concurrency_per_host
  ARGV[3] until: µs the permit expires (the attempt's lease expiry)
  ARGV[4] execution_id
  ARGV[5] partition: the execution's
  ARGV[6] grant_until: µs a permit reserved for a waiter expires (if its attempt never comes)
  returns {1, woken…} taken (it held one — reserved for it, or a re-send — or one was free
    and no one waited) | {0, woken…} refused: it joined the waiting list; woken: waiters
    ("<partition>|<id>") given a reserved permit meanwhile (expired permits freed room), for
    the caller to move to their outbox ]]
local now, cap, untl, eid, p, grant = ARGV[1], tonumber(ARGV[2]), ARGV[3], ARGV[4], ARGV[5], ARGV[6]
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. now)
local out = {0}
local taken = false
while redis.call('LLEN', KEYS[2]) > 0 and redis.call('ZCARD', KEYS[1]) < cap do  -- waiters first
  local w = redis.call('LPOP', KEYS[2])
  local wid = string.match(w, '|(.*)$')
  if wid == eid then
    redis.call('ZADD', KEYS[1], untl, eid)
    taken = true
  elseif not redis.call('ZSCORE', KEYS[1], wid) then
    redis.call('ZADD', KEYS[1], grant, wid)
    out[#out + 1] = w
  end
end
if not taken then
  if redis.call('ZSCORE', KEYS[1], eid) then
    redis.call('ZADD', KEYS[1], untl, eid)
    taken = true
  elseif redis.call('LLEN', KEYS[2]) == 0 and redis.call('ZCARD', KEYS[1]) < cap then
    redis.call('ZADD', KEYS[1], untl, eid)
    taken = true
  elseif not redis.call('LPOS', KEYS[2], p .. '|' .. eid) then  -- a waiter is listed once
    redis.call('RPUSH', KEYS[2], p .. '|' .. eid)
  end
end
if taken then out[1] = 1 end
redis.call('PEXPIRE', KEYS[1], 86400000)  -- a cap no longer used leaves nothing behind
if redis.call('EXISTS', KEYS[2]) == 1 then redis.call('PEXPIRE', KEYS[2], 86400000) end
return out
