--[[ delivery_wake: move handed-back webhook executions whose turn came (a permit of a host
  concurrency cap was reserved for them) from the delayed zset to the outbox now
  KEYS[1] delayed: zset, execution id → µs it is re-queued at
  KEYS[2] outbox: stream
  ARGV[1] now: µs
  ARGV[2..] execution_ids
  Only an execution still in the delayed zset moves (one already moved, by the scheduler or an
  earlier wake, is not queued twice).
  returns the number moved ]]
local n = 0
for i = 2, #ARGV do
  if redis.call('ZREM', KEYS[1], ARGV[i]) == 1 then
    redis.call('XADD', KEYS[2], '*', 'e', ARGV[i])
    n = n + 1
  end
end
return n
