--[[ workers_heartbeat: upsert a worker in the account's registry (§9.6), within its bounds
  KEYS[1] workers zset (worker id → last heartbeat µs)  KEYS[2] worker info hash (worker id →
  "<registered µs>|<handlers JSON>")
  ARGV[1] worker id  ARGV[2] handlers JSON ("null" when none)  ARGV[3] most workers per account
  ARGV[4] expiry µs: entries not seen for this long are dropped  ARGV[5] alive µs  ARGV[6] now µs
  returns {1, registered µs} | {-1} a new worker, and the registry is full of workers alive now
  Bounded per call: at most SWEEP expired entries are dropped (oldest first); a new worker at the
  limit takes the place of the longest-silent one if that one is no longer alive. Both keys
  expire with the account's last heartbeat + the expiry (nothing is left of a fleet that stopped). ]]
local SWEEP = 100
local worker, handlers = ARGV[1], ARGV[2]
local limit, expire, alive, now = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local now_s = ARGV[6]

local old = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. string.format('%.0f', now - expire),
  'LIMIT', 0, SWEEP)
if #old > 0 then
  redis.call('ZREM', KEYS[1], unpack(old))
  redis.call('HDEL', KEYS[2], unpack(old))
end

if not redis.call('ZSCORE', KEYS[1], worker) and redis.call('ZCARD', KEYS[1]) >= limit then
  local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  if tonumber(oldest[2]) >= now - alive then return {-1} end
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
return {1, since}
