--[[ schedule_move_delayed: webhook executions waiting for a future time → outbox when it comes:
  fires with a future send_at, and scheduled executions whose jittered fire_at was still ahead
  when schedule_materialize.lua created them (one mechanism for both)
  KEYS[1] delayed: zset, execution id → send_at / fire_at µs
  KEYS[2] outbox: stream
  ARGV[1] now: µs
  ARGV[2] batch: size
  returns the number queued ]]
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, eid in ipairs(ids) do
  redis.call('ZREM', KEYS[1], eid)
  redis.call('XADD', KEYS[2], '*', 'e', eid)
end
return #ids
