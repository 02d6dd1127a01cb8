--[[ workers_heartbeat: upsert a worker in the account's registry (§9.6), within its bounds
  KEYS[1] workers: zset, worker id → last heartbeat µs
  KEYS[2] info: hash, worker id → "<registered µs>|<handlers JSON>"
  ARGV[1] now: µs
  ARGV[2] worker_id
  ARGV[3] handlers: JSON ("null" when none)
  ARGV[4] limit: most workers per account
  ARGV[5] expire_us: entries not seen for this long are dropped
  ARGV[6] alive_us: a worker seen this recently is alive
  returns {OK, registered µs} | {LIMIT} a new worker, and the registry is full of workers alive now
  Bounded per call: at most SWEEP expired entries are dropped (oldest first); a new worker at the
  limit takes the place of the longest-silent one if that one is no longer alive. Both keys
  expire with the account's last heartbeat + the expiry (nothing is left of a fleet that stopped). ]]
local SWEEP = 100
local now_s, worker, handlers = ARGV[1], ARGV[2], ARGV[3]
local now, limit, expire, alive = tonumber(now_s), tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])

local old = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. string.format('%.0f', now - expire),
  'LIMIT', 0, SWEEP)
if #old > 0 then
  redis.call('ZREM', KEYS[1], unpack(old))
  redis.call('HDEL', KEYS[2], unpack(old))
end

if not redis.call('ZSCORE', KEYS[1], worker) and redis.call('ZCARD', KEYS[1]) >= limit then
  local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  if tonumber(oldest[2]) >= now - alive then return {STATUS.LIMIT} end
  redis.call('ZREM', KEYS[1], oldest[1])
  redis.call('HDEL', KEYS[2], oldest[1])
end

local held = redis.call('HGET', KEYS[2], worker)
local since = held and string.match(held, '^(%d+)|') or now_s
redis.call('HSET', KEYS[2], worker, since .. '|' .. handlers)
redis.call('ZADD', KEYS[1], now_s, worker)
local ttl = math.floor(expire / 1000) + 1000
redis.call('PEXPIRE', KEYS[1], ttl)
redis.call('PEXPIRE', KEYS[2], ttl)
return {STATUS.OK, since}
