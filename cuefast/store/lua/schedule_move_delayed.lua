--[[ schedule_move_delayed: webhook executions fired with a future send_at → outbox when it comes
  KEYS[1] delayed zset (execution id → send_at µs)  KEYS[2] outbox stream
  ARGV[1] batch size  ARGV[2] now µs
  returns number queued ]]
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[2], 'LIMIT', 0, tonumber(ARGV[1]))
for _, eid in ipairs(ids) do
  redis.call('ZREM', KEYS[1], eid)
  redis.call('XADD', KEYS[2], '*', 'e', eid)
end
return #ids
