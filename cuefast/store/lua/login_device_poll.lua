--[[ login_device_poll: one poll of a device code, counted against its poll limit (§16.1)
  KEYS[1] device: the device code's hash
  KEYS[2] polls: the code's poll window (list of poll times µs)
  ARGV[1] now: µs
  ARGV[2] limit: polls per minute
  The first poll after approval takes the sealed result (it is deleted) and claims the code.
  returns {OK, status} | {OK, "approved", sealed, account id, email, new} |
    {LIMIT, oldest poll µs} over the limit (not counted) ]]
local now, limit = tonumber(ARGV[1]), tonumber(ARGV[2])
local cutoff = now - 60000000
while true do
  local first = redis.call('LINDEX', KEYS[2], 0)
  if not first or tonumber(first) > cutoff then break end
  redis.call('LPOP', KEYS[2])
end
if redis.call('LLEN', KEYS[2]) >= limit then
  return {STATUS.LIMIT, tonumber(redis.call('LINDEX', KEYS[2], 0))}
end
redis.call('RPUSH', KEYS[2], ARGV[1])
redis.call('PEXPIRE', KEYS[2], 61000)
local held = redis.call('HMGET', KEYS[1], 'st', 'exp', 'sealed', 'acct', 'email', 'new')
local st = held[1]
if not st then return {STATUS.OK, 'expired'} end
if st == 'approved' then
  redis.call('HSET', KEYS[1], 'st', 'claimed')
  redis.call('HDEL', KEYS[1], 'sealed')
  return {STATUS.OK, 'approved', held[3] or '', held[4] or '', held[5] or '', held[6] or '0'}
end
if st ~= 'claimed' and tonumber(held[2]) <= now then return {STATUS.OK, 'expired'} end
return {STATUS.OK, st}
