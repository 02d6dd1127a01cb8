--[[ deliver_start: take a webhook execution for one delivery attempt (lease it)
  KEYS[1] execution hash  KEYS[2] leases zset (execution id → lease expiry µs)
  ARGV[1] execution id  ARGV[2] lease µs (how long before the attempt counts as stale)
  ARGV[3] partition key prefix "<pfx>:{pNN}:" (the cue hash is derived in the same slot)
  ARGV[4] now µs
  returns {1, cue id, scheduled_for, attempts, payload, cue cfg, cue name, account, triggered_by}
        | {0} not deliverable (gone, finished, not webhook): drop the stream entry
        | {-1} another attempt holds a live lease: leave the entry pending ]]
local now = tonumber(ARGV[4])
local e = redis.call('HMGET', KEYS[1], 'st', 'tr', 'cue', 'sf', 'att', 'pl', 'acct', 'tb', 'sa')
local st = e[1]
if not st or e[2] ~= 'webhook' then return {0} end
local recovered = false
if st == 'delivering' then
  local lease = redis.call('ZSCORE', KEYS[2], ARGV[1])
  if lease and tonumber(lease) > now then return {-1} end
  recovered = true
elseif st ~= 'pending' and st ~= 'retry_ready' then
  return {0}
end
local c = redis.call('HMGET', ARGV[3] .. 'cue:' .. e[3], 'cfg', 'name')
if not c[1] then return {0} end
local now_s = string.format('%.0f', now)
if recovered then
  local last = tonumber(redis.call('HGET', KEYS[1], 'la') or now)
  redis.call('HSET', KEYS[1], 'em', 'Recovered from stale delivering state after ' ..
    string.format('%d', math.floor((now - last) / 1000000)) .. 's')
end
redis.call('HSET', KEYS[1], 'st', 'delivering', 'la', now_s, 'ua', now_s)
if not e[9] then redis.call('HSET', KEYS[1], 'sa', now_s) end
redis.call('ZADD', KEYS[2], string.format('%.0f', now + tonumber(ARGV[2])), ARGV[1])
return {1, e[3], e[4], e[5] or '0', e[6], c[1], c[2], e[7], e[8] or 'scheduled'}
