--[[ schedule_move_retries: move executions whose retry time has come back into the outbox
  KEYS[1] retry zset (execution id → next retry µs)  KEYS[2] outbox stream
  ARGV[1] partition key prefix  ARGV[2] batch size  ARGV[3] now µs
  returns number of executions re-queued ]]
--!include dirty
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[3], 'LIMIT', 0, tonumber(ARGV[2]))
local moved = 0
for _, eid in ipairs(ids) do
  redis.call('ZREM', KEYS[1], eid)
  local ek = ARGV[1] .. 'exec:' .. eid
  if redis.call('HGET', ek, 'st') == 'retrying' then
    redis.call('HSET', ek, 'st', 'retry_ready', 'nxr', '', 'ua', ARGV[3])
    dirty(ek)
    redis.call('XADD', KEYS[2], '*', 'e', eid)
    moved = moved + 1
  end
end
return moved
