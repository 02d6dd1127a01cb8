--[[ notices_move_due: notice deliveries whose retry time came → back onto the notices stream
  KEYS[1] retries: zset, "<kind>|<id>|<attempt>[|<event µs>]" → due µs
  KEYS[2] notices: stream
  ARGV[1] now: µs
  ARGV[2] batch: size
  returns the number taken off the retries set (moved, or dropped when malformed: the
  caller repeats while a whole batch was taken) ]]
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, m in ipairs(due) do
  local k, i, n, t = string.match(m, '^([^|]*)|([^|]*)|(%d+)|?(%d*)$')
  redis.call('ZREM', KEYS[1], m)
  if k and t ~= '' then
    redis.call('XADD', KEYS[2], '*', 'k', k, 'i', i, 'n', n, 't', t)
  elseif k then
    redis.call('XADD', KEYS[2], '*', 'k', k, 'i', i, 'n', n)
  end
end
return #due
