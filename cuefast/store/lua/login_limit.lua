--[[ login_limit: one request against a login rate limit, a sliding window log (§16.1)
  KEYS[1] window: list of request times µs, oldest first, at most `limit` long
  ARGV[1] now: µs
  ARGV[2] window_us: the window's length
  ARGV[3] limit: requests allowed in the window
  returns {OK, count} counted (count includes this one) | {LIMIT, oldest µs} over the limit
    (not counted) ]]
local now, span, limit = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local cutoff = now - span
while true do
  local first = redis.call('LINDEX', KEYS[1], 0)
  if not first or tonumber(first) > cutoff then break end
  redis.call('LPOP', KEYS[1])
end
local n = redis.call('LLEN', KEYS[1])
if n >= limit then return {STATUS.LIMIT, tonumber(redis.call('LINDEX', KEYS[1], 0))} end
redis.call('RPUSH', KEYS[1], ARGV[1])
redis.call('PEXPIRE', KEYS[1], math.floor(span / 1000) + 1000)
return {STATUS.OK, n + 1}
