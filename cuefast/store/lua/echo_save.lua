--[[ echo_save: keep an echo request for a while, at most so many per client IP per hour (§16.5)
  KEYS[1] rate: the IP's hourly counter
  KEYS[2] record: the echo record
  ARGV[1] limit: records per IP and hour
  ARGV[2] record: JSON
  ARGV[3] ttl_s: how long the record is kept
  returns {OK} stored | {LIMIT} over the limit (nothing stored, not counted) ]]
local n = tonumber(redis.call('GET', KEYS[1]) or '0')
if n >= tonumber(ARGV[1]) then return {STATUS.LIMIT} end
redis.call('INCR', KEYS[1])
if n == 0 then redis.call('EXPIRE', KEYS[1], 3600) end
redis.call('SET', KEYS[2], ARGV[2], 'EX', tonumber(ARGV[3]))
return {STATUS.OK}
