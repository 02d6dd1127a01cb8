--[[ worker_heartbeat: upsert a worker in the account's registry (§9.6)
  KEYS[1] workers zset (worker id → last heartbeat µs)  KEYS[2] worker info hash (worker id →
  "<registered µs>|<handlers JSON>")
  ARGV[1] worker id  ARGV[2] handlers JSON ("null" when none)  ARGV[3] now µs
  returns {1, registered µs} ]]
local held = redis.call('HGET', KEYS[2], ARGV[1])
local since = held and string.match(held, '^(%d+)|') or ARGV[3]
redis.call('HSET', KEYS[2], ARGV[1], since .. '|' .. ARGV[2])
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
return {1, since}
