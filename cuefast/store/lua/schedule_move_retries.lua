--[[ schedule_move_retries: move executions whose retry time has come back into the outbox
  KEYS[1] retries: zset, execution id → next retry µs
  KEYS[2] outbox: stream
  ARGV[1] now: µs
  ARGV[2] prefix: the partition's key prefix
  ARGV[3] batch: size
  returns the number of executions re-queued ]]
--!include dirty
--!include exec_index
local now, pfx = ARGV[1], ARGV[2]
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[3]))
local moved = 0
for _, eid in ipairs(ids) do
  redis.call('ZREM', KEYS[1], eid)
  local ek = pfx .. 'exec:' .. eid
  if redis.call('HGET', ek, 'st') == 'retrying' then
    redis.call('HSET', ek, 'st', 'retry_ready', 'nxr', '', 'ua', now)
    dirty(ek)
    exec_reindex(pfx, eid)
    redis.call('XADD', KEYS[2], '*', 'e', eid)
    moved = moved + 1
  end
end
return moved
