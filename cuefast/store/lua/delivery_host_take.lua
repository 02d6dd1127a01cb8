--[[ delivery_host_take: permits of an (account, callback host) concurrency cap for a batch of
  attempts about to be sent (delivery.max_concurrency_per_host; the account's slot, shared by
  every dispatcher; one call for all of a batch's attempts to this host, judged in order)
  KEYS[1] permits: zset, execution id → µs its permit expires (the attempt's lease: a holder
    that died frees it then)
  KEYS[2] waiting: list, "<partition>|<execution id>" of refused attempts, oldest first
  ARGV[1] now: µs
  ARGV[2] grant_until: µs a permit reserved for a waiter expires (if its attempt never comes)
  ARGV[3..] attempts: 4 values per attempt: its cue's max_concurrency_per_host, µs its permit
    expires (the attempt's lease expiry), execution id, partition
  Each attempt, in order: first the room left (expired permits pruned) goes to the oldest
  waiters (reserved: grant_until); then it is taken if the attempt holds a permit (reserved for
  it, or a re-send) or one is free and no one waits; otherwise the attempt joins the waiting
  list (listed once).
  returns {taken₁, …, takenₙ (1 | 0: refused, it is listed as waiting), woken…}; woken: waiters
    ("<partition>|<id>") given a reserved permit meanwhile, for the caller to move to their
    outbox ]]
local now, grant = ARGV[1], ARGV[2]
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. now)
local held, nwait = redis.call('ZCARD', KEYS[1]), redis.call('LLEN', KEYS[2])  -- kept up to date below
local n = (#ARGV - 2) / 4
local out, woken = {}, {}
for i = 0, n - 1 do
  local cap, untl, eid, p = tonumber(ARGV[3 + 4 * i]), ARGV[4 + 4 * i], ARGV[5 + 4 * i], ARGV[6 + 4 * i]
  local taken = false
  while nwait > 0 and held < cap do  -- waiters first
    local w = redis.call('LPOP', KEYS[2])
    nwait = nwait - 1
    local wid = string.match(w, '|(.*)$')
    if wid == eid then
      held = held + redis.call('ZADD', KEYS[1], untl, eid)
      taken = true
    elseif not redis.call('ZSCORE', KEYS[1], wid) then
      held = held + redis.call('ZADD', KEYS[1], grant, wid)
      woken[#woken + 1] = w
    end
  end
  if not taken then
    if redis.call('ZSCORE', KEYS[1], eid) then
      redis.call('ZADD', KEYS[1], untl, eid)
      taken = true
    elseif nwait == 0 and held < cap then
      held = held + redis.call('ZADD', KEYS[1], untl, eid)
      taken = true
    elseif not redis.call('LPOS', KEYS[2], p .. '|' .. eid) then  -- a waiter is listed once
      nwait = redis.call('RPUSH', KEYS[2], p .. '|' .. eid)
    end
  end
  out[#out + 1] = taken and 1 or 0
end
for _, w in ipairs(woken) do out[#out + 1] = w end
redis.call('PEXPIRE', KEYS[1], 86400000)  -- a cap no longer used leaves nothing behind
if nwait > 0 then redis.call('PEXPIRE', KEYS[2], 86400000) end
return out
