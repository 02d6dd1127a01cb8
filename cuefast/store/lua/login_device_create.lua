--[[ login_device_create: a new device code, unless a live one has that value (§16.1)
  KEYS[1] device: the device code's hash (by the SHA-256 of its value)
  ARGV[1] now: µs
  ARGV[2] expires: µs, when the code expires
  ARGV[3] keep_s: seconds the record is kept (past its expiry, so submit-email can say "expired")
  A code that expired or was claimed may be created again (a new record replaces it).
  returns {OK} | {EXISTS} a live code (not expired, not claimed) has this value ]]
local now = tonumber(ARGV[1])
local held = redis.call('HMGET', KEYS[1], 'st', 'exp')
if held[1] and held[1] ~= 'claimed' and tonumber(held[2]) > now then return {STATUS.EXISTS} end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'st', 'pending', 'ca', ARGV[1], 'exp', ARGV[2])
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[3]))
return {STATUS.OK}
